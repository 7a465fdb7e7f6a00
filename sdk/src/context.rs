//! The per-visitor facade.

use crate::attributes::{BucketingAttributes, ConversionAttributes, EntityType};
use crate::core::Core;
use crate::store_guard::{HeldConversion, HoldOutcome, StoreGuard, Unanswered};
use convert_core::engine::{Engine, Notice, Outcome, RunOptions, VisitorProps, VisitorState};
use convert_core::features::{BucketedFeature, FeatureFilter, FeatureStatus};
use convert_core::store::{StoreOp, report_segments};
use convert_core::{
    BucketedVariation, ConversionOutcome, Decision, Effects, NotMatchedReason, ProjectConfig,
    RuleError, StoreData, TrackingEvent,
};
use convert_ports::{Applied, SdkEvent};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

#[cfg(feature = "tokio")]
mod async_ops;

/// One visitor's view of the SDK. Cheap to create; create one per request.
///
/// # Error model of the run methods
///
/// A run method returns what was decided; not getting a variation is an *outcome*, never an
/// error: [`Decision::NotMatched`] (the visitor does not qualify; its [`NotMatchedReason`] says
/// which check failed), [`Decision::NotDecided`] (no variation covers the bucket: traffic), [`Decision::NotReady`] (no config yet; for features
/// [`FeatureDecision::not_ready`]). The one *error* is a targeting rule that needed visitor data
/// the call did not give ([`RuleError`]; with plain key/value data it does not occur). Every run
/// method hands it to `?`, converting into [`crate::Error::Rule`] or a `Box<dyn Error>`:
///
/// | method | returns | with `?` |
/// |---|---|---|
/// | `run_experience` | [`Decision`] (`Decision::RuleError`) | `.into_result()?` |
/// | `run_feature` | [`FeatureDecision`] (`rule_errors`) | `.into_result()?` |
/// | `run_features` | `Result<Vec<BucketedFeature>, RuleErrors>` | `?` |
///
/// The decisions themselves stay values (rather than `Result`s) because the common case,
/// "decide and render", matches on them, and the batch protocol prints rule errors as records.
///
/// ```
/// # fn main() -> Result<(), convert_sdk::Error> {
/// # let sdk = convert_sdk::Core::builder()
/// #     .config_json(std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/data/demo-config.json")).unwrap())
/// #     .environment("production").tracking(false).build()?;
/// let visitor = sdk.create_context("visitor-1", [("plan", "premium")]);
/// let attrs = convert_sdk::BucketingAttributes::new().location_property("url", "https://shop.example/checkout");
/// let decision = visitor.run_experience("checkout-button", &attrs).into_result()?;
/// println!("variation {:?}", decision.variation_key());
/// let features = visitor.run_features(&attrs)?;
/// assert!(!features.is_empty());
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Context {
    core: Core,
    visitor_id: String,
    /// The store key, once [`Context::store_key`] has been asked for it. Until then each call
    /// builds the key in a per-thread buffer, so a context allocates nothing for it.
    store_key: std::sync::OnceLock<String>,
    properties: Map<String, Value>,
    /// Report segments given at creation on an SDK with an async store: not written then (that
    /// would block on the sync store, which is not where the async calls keep the record), but
    /// by the first call that reads or writes the record ([`Seeded`]). Shared by clones.
    seeded: Option<std::sync::Arc<Seeded>>,
    preview: Option<Preview>,
}

/// Report segments given at `create_context` on an SDK with an async store, stored by the
/// context's first call that reads or writes the visitor's record (a decision, a conversion, a
/// segment or property write): that call merges them into the record first
/// ([`VisitorState::seed_segments`]), as `create_context` writes them on other SDKs, and later
/// calls leave the record to what was written since.
#[derive(Debug)]
struct Seeded {
    segments: Map<String, Value>,
    /// [`SEED_PENDING`], [`SEED_UNCONFIRMED`] or [`SEED_STORED`].
    state: std::sync::atomic::AtomicU8,
}

/// No call has tried to store the segments given at creation yet.
const SEED_PENDING: u8 = 2;
/// A call tried and its store did not confirm (no answer: they may or may not be stored). The
/// next call that reads the record stores those the record does not hold
/// ([`VisitorState::seed_absent_segments`]), so a newer value written since is not undone.
const SEED_UNCONFIRMED: u8 = 1;
/// Stored (or given up on, see [`Context::seed_stored`]).
const SEED_STORED: u8 = 0;

/// The segments given at creation, for a call that stores them: all of them, or (after an
/// unconfirmed attempt) only those the record does not hold.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Seed<'a> {
    segments: &'a Map<String, Value>,
    absent_only: bool,
}

impl Seed<'_> {
    /// Merges the segments into the record about to be decided on.
    fn merge(self, vs: &mut VisitorState<'_>, fx: &mut Effects) {
        if self.absent_only {
            vs.seed_absent_segments(self.segments, fx);
        } else {
            vs.seed_segments(self.segments, fx);
        }
    }

    /// Merges the segments into a copy of the record's segments (preview and `explain`, which
    /// store nothing), as [`Seed::merge`] would merge them into the record.
    fn merge_into_segments(self, segments: &mut Map<String, Value>) {
        if self.absent_only {
            let absent = convert_core::store::absent_segments(Some(segments), self.segments);
            convert_core::store::merge_into(segments, &absent);
        } else {
            convert_core::store::merge_into(segments, self.segments);
        }
    }

    /// The segments as a write of their own, when the record is not read first: only before any
    /// attempt (after one, they wait for a call that reads the record).
    fn as_blind_write(self) -> Option<StoreOp> {
        (!self.absent_only).then(|| StoreOp::MergeSegments(self.segments.clone()))
    }
}

/// An active preview (QA) forcing of one variation in this context.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Preview {
    experience_key: String,
    experience_index: usize,
    variation_index: usize,
}

/// Why [`Context::set_preview`] refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PreviewError {
    /// The experience id is not in the served config.
    #[error("experience {0} is not in the config")]
    UnknownExperience(String),
    /// The experience has no variation with that id.
    #[error("experience {experience} has no variation {variation}")]
    UnknownVariation {
        /// The experience id.
        experience: String,
        /// The variation id.
        variation: String,
    },
}

/// Parses a preview parameter of the form `"{experienceId}.{variationId}"` (both all digits, one
/// dot), as found in QA links. Returns `None` for anything else; never panics.
pub fn parse_preview_param(value: &str) -> Option<(String, String)> {
    let (exp, var) = value.split_once('.')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    (digits(exp) && digits(var)).then(|| (exp.to_string(), var.to_string()))
}

/// The outcome of [`Context::run_feature`]: one entry per experience that delivers the feature,
/// or a single disabled entry (without a feature id when the config does not declare the key).
/// Nothing is decided, and `entries` is empty, before the first config (`not_ready`), on a rule
/// error (`rule_errors`), and for a context without a visitor id.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureDecision {
    /// The requested feature key.
    pub key: String,
    /// Enabled entries (one per delivering experience) or one disabled entry.
    pub entries: Vec<BucketedFeature>,
    /// Rule errors, when a rule needed data it did not have (then `entries` is empty).
    pub rule_errors: crate::RuleErrors,
    /// The SDK had no config yet: nothing was decided (`entries` is empty).
    pub not_ready: bool,
}

/// Why a typed variable could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VariableError {
    /// The feature is disabled for this visitor.
    #[error("feature `{0}` is disabled for this visitor")]
    Disabled(String),
    /// The config declares no feature with this key (the decision is a disabled entry without
    /// a feature id, as the reference returns).
    #[error("feature `{0}` is not in the config")]
    UnknownFeature(String),
    /// Nothing was decided: no config yet ([`FeatureDecision::not_ready`]), no visitor id, or
    /// rule errors ([`FeatureDecision::rule_errors`]).
    #[error("feature `{0}` was not decided (no config yet, no visitor id, or a rule error)")]
    NotDecided(String),
    /// The variation carries no variable of that name.
    #[error("feature `{feature}` has no variable `{name}`")]
    Missing {
        /// Feature key.
        feature: String,
        /// Variable name.
        name: String,
    },
    /// The value does not have the requested type.
    #[error("variable `{name}` of feature `{feature}` is not of the requested type: {source}")]
    Type {
        /// Feature key.
        feature: String,
        /// Variable name.
        name: String,
        /// The deserialization error.
        source: serde_json::Error,
    },
}

impl FeatureDecision {
    /// The decision, or its rule errors as `Err` so that `?` can pass them on (a disabled
    /// feature is an outcome, not an error).
    pub fn into_result(self) -> Result<FeatureDecision, crate::RuleErrors> {
        if self.rule_errors.is_empty() {
            Ok(self)
        } else {
            Err(self.rule_errors)
        }
    }

    /// Whether the feature is on for the visitor.
    pub fn is_enabled(&self) -> bool {
        self.entries.iter().any(BucketedFeature::is_enabled)
    }

    /// Whether the config declares the requested feature. An unknown key decides like a
    /// disabled feature (as in the reference), with an entry that has no feature id; this tells
    /// the two apart. `false` when nothing was decided.
    pub fn is_declared(&self) -> bool {
        self.entries.iter().any(|e| e.feature_id.is_some())
    }

    /// The variables of the first enabled entry.
    pub fn variables(&self) -> Option<&Map<String, Value>> {
        self.entries
            .iter()
            .find(|e| e.is_enabled())
            .and_then(BucketedFeature::variables)
    }

    /// Variable `name` of the first enabled entry, as `T` (`bool`, `i64`, `f64`, `String`,
    /// `serde_json::Value`, or any `DeserializeOwned` type for JSON variables).
    pub fn variable<T: DeserializeOwned>(&self, name: &str) -> Result<T, VariableError> {
        if !self.is_enabled() {
            return Err(if self.entries.is_empty() {
                VariableError::NotDecided(self.key.clone())
            } else if !self.is_declared() {
                VariableError::UnknownFeature(self.key.clone())
            } else {
                VariableError::Disabled(self.key.clone())
            });
        }
        let v =
            self.variables()
                .and_then(|m| m.get(name))
                .ok_or_else(|| VariableError::Missing {
                    feature: self.key.clone(),
                    name: name.into(),
                })?;
        serde_json::from_value(v.clone()).map_err(|source| VariableError::Type {
            feature: self.key.clone(),
            name: name.into(),
            source,
        })
    }
}

/// Writes `{accountId}-{projectId}-{visitorId}` into `key`, without the formatting machinery.
fn push_store_key(key: &mut String, cfg: &ProjectConfig, visitor_id: &str) {
    key.reserve(cfg.account_id.len() + cfg.project_id.len() + visitor_id.len() + 2);
    key.push_str(&cfg.account_id);
    key.push('-');
    key.push_str(&cfg.project_id);
    key.push('-');
    key.push_str(visitor_id);
}

fn store_key_of(cfg: &ProjectConfig, visitor_id: &str) -> String {
    let mut key = String::new();
    push_store_key(&mut key, cfg, visitor_id);
    key
}

/// A config snapshot held for one call (no reference count touched).
type ConfigGuard = arc_swap::Guard<Option<std::sync::Arc<ProjectConfig>>>;

/// Scratch space in which a call builds its store key. It keeps the
/// `{accountId}-{projectId}-` prefix of the last config it was built under, so a call under the
/// same config only appends its visitor id.
struct KeyBuf {
    buf: String,
    /// The config `buf`'s prefix was built from. Weak, so that the config is freed as usual, but
    /// its allocation (not what the config owns) stays until this thread's next key under
    /// another config: no other config can take the address while it is compared.
    prefix_of: std::sync::Weak<ProjectConfig>,
    prefix_len: usize,
}

impl KeyBuf {
    /// The store key of `visitor_id` under `cfg`.
    #[inline(always)]
    fn key(&mut self, cfg: &std::sync::Arc<ProjectConfig>, visitor_id: &str) -> &str {
        if std::ptr::eq(self.prefix_of.as_ptr(), std::sync::Arc::as_ptr(cfg)) {
            self.buf.truncate(self.prefix_len);
            self.buf.push_str(visitor_id);
        } else {
            self.buf.clear();
            push_store_key(&mut self.buf, cfg, visitor_id);
            self.prefix_len = self.buf.len() - visitor_id.len();
            self.prefix_of = std::sync::Arc::downgrade(cfg);
        }
        &self.buf
    }
}

thread_local! {
    static KEY_BUF: std::cell::RefCell<KeyBuf> = const {
        std::cell::RefCell::new(KeyBuf {
            buf: String::new(),
            prefix_of: std::sync::Weak::new(),
            prefix_len: 0,
        })
    };
}

impl Context {
    pub(crate) fn new(core: Core, visitor_id: String, attributes: crate::Attributes) -> Self {
        // Without attributes (the usual case) their empty map becomes the context's properties:
        // no second map is made, and none is dropped here (dropping even an empty map walks it).
        let mut ctx = Context {
            core,
            visitor_id,
            store_key: std::sync::OnceLock::new(),
            properties: attributes.into_map(),
            seeded: None,
            preview: None,
        };
        if !ctx.properties.is_empty() {
            crate::attributes::retain_checked(&mut ctx.properties, "visitor attribute");
            if let Some(report) = report_segments(&ctx.properties) {
                if ctx.core.has_async_store() && !ctx.visitor_id.is_empty() {
                    ctx.seeded = Some(std::sync::Arc::new(Seeded {
                        segments: report,
                        state: std::sync::atomic::AtomicU8::new(SEED_PENDING),
                    }));
                } else {
                    ctx.write(&[StoreOp::MergeSegments(report)]);
                }
            }
            ctx.properties
                .retain(|k, _| !convert_core::store::is_report_segment_key(k));
        }
        ctx
    }

    /// The visitor id.
    pub fn visitor_id(&self) -> &str {
        &self.visitor_id
    }

    /// The key of this visitor's record in the data store (`{accountId}-{projectId}-{visitorId}`);
    /// `None` until the SDK has a config. Once returned, the context keeps using this key.
    pub fn store_key(&self) -> Option<&str> {
        if let Some(k) = self.store_key.get() {
            return Some(k);
        }
        let cfg = self.core.try_config()?;
        Some(
            self.store_key
                .get_or_init(|| store_key_of(&cfg, &self.visitor_id)),
        )
    }

    /// Runs `f` once with the visitor's store key under `cfg` (`None` when there is no config
    /// yet). The key is built in a per-thread buffer; a nested call (a store calling back into
    /// the SDK) builds its own.
    #[inline]
    fn with_key(
        &self,
        cfg: Option<&std::sync::Arc<ProjectConfig>>,
        mut f: impl FnMut(Option<&str>),
    ) {
        if let Some(k) = self.store_key.get() {
            return f(Some(k));
        }
        let Some(cfg) = cfg else {
            return f(None);
        };
        let done = KEY_BUF
            .try_with(|cell| {
                let Ok(mut buf) = cell.try_borrow_mut() else {
                    return false;
                };
                f(Some(buf.key(cfg, &self.visitor_id)));
                true
            })
            .unwrap_or(false);
        if !done {
            f(Some(&store_key_of(cfg, &self.visitor_id)));
        }
    }

    /// [`Context::with_key`] under the current config.
    fn with_current_key(&self, f: impl FnMut(Option<&str>)) {
        if self.store_key.get().is_some() {
            return self.with_key(None, f);
        }
        let guard = self.core.inner.shared.config_guard();
        self.with_key(guard.as_ref(), f)
    }

    /// The context's own (non-report) visitor properties.
    pub fn properties(&self) -> &Map<String, Value> {
        &self.properties
    }

    /// [`Context::write`] for the test kit.
    #[cfg(feature = "test-util")]
    pub(crate) fn write_for_tests(&self, ops: &[StoreOp]) {
        self.write(ops);
    }

    /// Writes `ops` to the visitor's record. A context without a visitor id writes nothing: every
    /// such context would share one record (`{accountId}-{projectId}-`).
    fn write(&self, ops: &[StoreOp]) {
        if ops.is_empty() {
            return;
        }
        if self.visitor_id.is_empty() {
            log::debug!("convert: no visitor id; visitor data not stored");
            return;
        }
        if let Some(all) = self.with_blind_seed(ops) {
            self.with_current_key(|key| self.write_at(key, &all));
            self.seed_stored();
            return;
        }
        self.with_current_key(|key| self.write_at(key, ops));
    }

    fn write_at(&self, key: Option<&str>, ops: &[StoreOp]) {
        if ops.is_empty() {
            return;
        }
        let Some(key) = key else {
            log::debug!("convert: no config yet; visitor data not stored");
            return;
        };
        let shared = &self.core.inner.shared;
        // A failure is counted and logged by the guard; the write is not retried.
        let _ = shared
            .guard
            .within_deadline(|| shared.guard.apply(&shared.events, key, None, ops));
    }

    /// Runs `f` against the visitor's stored state, then applies its effects.
    ///
    /// With a store that updates in place (the memory store), `f` runs inside one atomic
    /// `update` on the stored record itself: one lookup, no copy. Otherwise the record is read,
    /// `f` runs on the copy, and its writes are applied in one `update` afterwards.
    /// `guard` is the config snapshot the caller loaded (one load per call).
    fn with_state_on<R>(
        &self,
        guard: &ConfigGuard,
        mut f: impl FnMut(&Engine<'_>, &mut VisitorState<'_>, &mut Effects) -> R,
    ) -> R {
        let seed = self.seed_to_store();
        // Mutable for the async step below, which exists with the `tokio` feature only.
        #[cfg_attr(not(feature = "tokio"), allow(unused_mut))]
        let mut f = |engine: &Engine<'_>, vs: &mut VisitorState<'_>, fx: &mut Effects| {
            if let Some(seed) = seed {
                seed.merge(vs, fx);
            }
            f(engine, vs, fx)
        };
        // A step of an async call, which marks the segments stored once it is done.
        #[cfg(feature = "tokio")]
        if let Some(r) = self.decide_prefetched(&mut f) {
            return r;
        }
        let r = self.with_stored_state(guard, f);
        if seed.is_some() {
            self.seed_stored();
        }
        r
    }

    /// `ops` after the segments given at creation, when they go with a write that does not read
    /// the record first ([`Seed::as_blind_write`]); they go first, so that `ops` win.
    fn with_blind_seed(&self, ops: &[StoreOp]) -> Option<Vec<StoreOp>> {
        let seed = self.seed_to_store().and_then(Seed::as_blind_write)?;
        let mut all = Vec::with_capacity(ops.len() + 1);
        all.push(seed);
        all.extend_from_slice(ops);
        Some(all)
    }

    /// The segments given at creation while no call has stored them.
    fn seed_pending(&self) -> Option<Seed<'_>> {
        let s = self.seeded.as_deref()?;
        match s.state.load(std::sync::atomic::Ordering::Acquire) {
            SEED_STORED => None,
            state => Some(Seed {
                segments: &s.segments,
                absent_only: state == SEED_UNCONFIRMED,
            }),
        }
    }

    /// [`Context::seed_pending`] for a call that stores them: never in preview mode, which
    /// stores nothing.
    fn seed_to_store(&self) -> Option<Seed<'_>> {
        self.seed_pending().filter(|_| self.preview.is_none())
    }

    /// The segments given at creation were merged by a call whose write the store confirmed;
    /// or by a sync call, which does not know (a sync store that did not answer loses them, as
    /// it loses `create_context`'s own write on an SDK without an async store).
    fn seed_stored(&self) {
        if let Some(s) = &self.seeded {
            s.state
                .store(SEED_STORED, std::sync::atomic::Ordering::Release);
        }
    }

    /// An async call tried to store the segments given at creation: stored when its store
    /// `confirmed` the write ([`Context::seed_stored`]); otherwise the next call that reads the
    /// record stores those the record does not hold.
    #[cfg(feature = "tokio")]
    fn seed_attempted(&self, confirmed: bool) {
        if confirmed {
            return self.seed_stored();
        }
        if let Some(s) = &self.seeded {
            let _ = s.state.compare_exchange(
                SEED_PENDING,
                SEED_UNCONFIRMED,
                std::sync::atomic::Ordering::AcqRel,
                std::sync::atomic::Ordering::Acquire,
            );
        }
    }

    /// In preview mode, which stores nothing, the segments given at creation count for the
    /// rules until stored: `stored` with them merged in.
    fn with_preview_seed(&self, stored: Option<Map<String, Value>>) -> Option<Map<String, Value>> {
        let Some(seed) = self.seed_pending().filter(|_| self.preview.is_some()) else {
            return stored;
        };
        let mut merged = stored.unwrap_or_default();
        seed.merge_into_segments(&mut merged);
        Some(merged)
    }

    /// [`Context::with_state_on`] on the stored record (the sync store).
    fn with_stored_state<R>(
        &self,
        guard: &ConfigGuard,
        mut f: impl FnMut(&Engine<'_>, &mut VisitorState<'_>, &mut Effects) -> R,
    ) -> R {
        let empty;
        let cfg: &ProjectConfig = match guard.as_deref() {
            Some(cfg) => cfg,
            None => {
                empty = self.core.config();
                &empty
            }
        };
        let engine = Engine::new(cfg, &self.core.inner.settings);
        let shared = &self.core.inner.shared;
        // The result is written once, here, rather than handed back through the closures.
        let mut out = None;
        shared.guard.within_deadline(|| {
            self.with_key(guard.as_ref(), |key| {
                let mut fx = Effects::default();
                if let Some(key) = key.filter(|_| shared.guard.updates_in_place()) {
                    // In place: the decision is made on the stored record, in one update.
                    let _ = shared.guard.call(&shared.events, |store| {
                        store.update(key, &mut |data| {
                            // Empty unless the store runs the update again.
                            if !fx.is_empty() {
                                fx.clear();
                            }
                            let mut vs = VisitorState::in_place(&self.visitor_id, data);
                            out = Some(f(&engine, &mut vs, &mut fx));
                            vs.changed()
                        })
                    });
                }
                if out.is_none() {
                    out = Some(self.decide_remote(&engine, key, &mut fx, &mut f));
                }
                self.apply(cfg, key, fx);
            });
            reconcile_held(&self.core, false);
        });
        match out {
            Some(r) => r,
            // `with_key` always calls back once; decide on an empty record if it ever did not.
            None => {
                let mut data = StoreData::default();
                let mut vs = VisitorState::new(&self.visitor_id, &mut data);
                f(&engine, &mut vs, &mut Effects::default())
            }
        }
    }

    /// A decision against a store that is not in this process, in as few round trips as the
    /// store allows: decide as for a new visitor and `create` that record (one round trip that
    /// also returns the stored record of a returning visitor); a returning visitor is decided
    /// again on the stored record and only what changed is written, against what was read. A
    /// decision that writes nothing for a new visitor is a single read. When the store does not
    /// answer, the decision comes from the hash and nothing is written: a stored decision the
    /// store shows later is not overwritten.
    fn decide_remote<R>(
        &self,
        engine: &Engine<'_>,
        key: Option<&str>,
        fx: &mut Effects,
        f: &mut impl FnMut(&Engine<'_>, &mut VisitorState<'_>, &mut Effects) -> R,
    ) -> R {
        let shared = &self.core.inner.shared;
        fx.clear();
        let mut fresh = StoreData::default();
        let first = f(
            engine,
            &mut VisitorState::new(&self.visitor_id, &mut fresh),
            fx,
        );
        let Some(key) = key else {
            fx.store.clear();
            return first;
        };
        let stored = if fx.store.is_empty() {
            // Nothing to store for a new visitor: read, and decide again only on a record.
            match shared.guard.read(&shared.events, key) {
                Ok(None) => return first,
                Ok(Some(d)) => d,
                Err(_) => return first,
            }
        } else {
            let mut record = StoreData::default();
            record.apply_all(&fx.store);
            match shared
                .guard
                .call(&shared.events, |s| s.create(key, &record))
            {
                Ok(Ok(None)) => {
                    fx.store.clear();
                    return first;
                }
                Ok(Ok(Some(d))) => d,
                // Unreadable: decided as new, and the record is replaced by this write.
                Ok(Err(_)) => {
                    let _ = shared.guard.apply(&shared.events, key, None, &fx.store);
                    fx.store.clear();
                    return first;
                }
                Err(_) => {
                    fx.store.clear();
                    return first;
                }
            }
        };
        fx.clear();
        let mut data = stored.clone();
        let out = f(
            engine,
            &mut VisitorState::new(&self.visitor_id, &mut data),
            fx,
        );
        if !fx.store.is_empty() {
            let _ = shared
                .guard
                .apply(&shared.events, key, Some(&stored), &fx.store);
            fx.store.clear();
        }
        out
    }

    /// [`Context::with_state_on`] with the visitor properties of this call: the call's data over the
    /// context's properties over the stored segments. The stored segments are a snapshot taken
    /// before any write of this call, as the reference computes the properties once per call.
    fn with_props<R>(
        &self,
        call: Option<&Map<String, Value>>,
        f: impl FnMut(&Engine<'_>, &mut VisitorState<'_>, &VisitorProps<'_>, &mut Effects) -> R,
    ) -> R {
        self.with_props_on(&self.core.inner.shared.config_guard(), call, f)
    }

    /// [`Context::with_props`] under a config guard the caller already loaded.
    fn with_props_on<R>(
        &self,
        guard: &ConfigGuard,
        call: Option<&Map<String, Value>>,
        mut f: impl FnMut(&Engine<'_>, &mut VisitorState<'_>, &VisitorProps<'_>, &mut Effects) -> R,
    ) -> R {
        self.with_state_on(guard, |engine, vs, fx| {
            let mut stored = vs.data.segments().cloned();
            if self.seeded.is_some() {
                stored = self.with_preview_seed(stored);
            }
            let props = VisitorProps::new(call, Some(&self.properties), stored.as_ref());
            f(engine, vs, &props, fx)
        })
    }

    /// Carries out a call's effects: store writes, tracking events, notices. In line, so that
    /// the usual empty case (nothing to do, and nothing to free when it owns no memory: see
    /// `Effects::discard`) costs no call.
    #[inline]
    fn apply(&self, cfg: &ProjectConfig, key: Option<&str>, fx: Effects) {
        if fx.is_empty() {
            fx.discard();
        } else {
            self.apply_effects(cfg, key, fx);
        }
    }

    fn apply_effects(&self, cfg: &ProjectConfig, key: Option<&str>, fx: Effects) {
        self.write_at(key, &fx.store);
        self.core.enqueue(fx.tracking);
        for n in fx.notices {
            let (li, activated) = match n {
                Notice::LocationActivated(i) => (i, true),
                Notice::LocationDeactivated(i) => (i, false),
                Notice::UnknownExclusionTarget(key) => {
                    log::warn!(
                        "convert: mutual-exclusion rule target experience key {key:?} not found in the config; treating the visitor as not bucketed into it"
                    );
                    continue;
                }
            };
            let Some(loc) = cfg.locations.get(li) else {
                continue;
            };
            self.core.fire(|| {
                let mut m = Map::new();
                m.insert("id".into(), Value::String(loc.id.to_string()));
                m.insert("key".into(), Value::String(loc.key.to_string()));
                if let Some(n) = &loc.name {
                    m.insert("name".into(), Value::String(n.to_string()));
                }
                let location = Value::Object(m);
                let visitor_id = self.visitor_id.clone();
                if activated {
                    SdkEvent::LocationActivated {
                        visitor_id,
                        location,
                    }
                } else {
                    SdkEvent::LocationDeactivated {
                        visitor_id,
                        location,
                    }
                }
            });
        }
    }

    fn run_options<'a>(
        &self,
        attrs: &'a BucketingAttributes,
        for_features: bool,
    ) -> RunOptions<'a> {
        RunOptions {
            location_properties: attrs.location_properties.as_ref(),
            ignore_location_properties: !for_features && attrs.ignore_location_properties,
            environment: attrs.environment.as_deref(),
            force_variation_id: if for_features {
                None
            } else {
                attrs.force_variation_id.as_deref()
            },
            enable_tracking: self.preview.is_none()
                && (for_features || attrs.enable_tracking.unwrap_or(true)),
            enable_storage: self.preview.is_none(),
            // Location notices only become events; without a subscriber they are not recorded.
            suppress_events: self.preview.is_some()
                || !self.core.inner.shared.events.has_subscribers(),
            update_visitor_properties: attrs.update_visitor_properties,
            type_casting: attrs.type_casting.unwrap_or(true),
        }
    }

    /// Announces a bucketing; `keys` gives the experience key and the variation key, called
    /// only when someone subscribes (never in preview mode).
    fn bucketing_event(&self, keys: impl FnOnce() -> (String, Option<String>)) {
        if self.preview.is_some() {
            return;
        }
        self.core.fire(|| {
            let (experience_key, variation_key) = keys();
            SdkEvent::Bucketing {
                visitor_id: self.visitor_id.clone(),
                experience_key: Some(experience_key),
                variation_key,
                feature_key: None,
                status: None,
            }
        });
    }

    fn feature_event(&self, feature_key: Option<&str>, f: &BucketedFeature) {
        if self.preview.is_some() {
            return;
        }
        self.core.fire(|| SdkEvent::Bucketing {
            visitor_id: self.visitor_id.clone(),
            experience_key: f.experience_key.as_deref().map(str::to_string),
            variation_key: None,
            feature_key: feature_key
                .map(str::to_string)
                .or_else(|| f.feature_key.as_deref().map(str::to_string)),
            status: Some(match f.status {
                FeatureStatus::Enabled => "enabled".into(),
                FeatureStatus::Disabled => "disabled".into(),
            }),
        });
    }

    /// Which variation of experience `key` the visitor gets.
    pub fn run_experience(&self, key: &str, attrs: &BucketingAttributes) -> Decision {
        if self.visitor_id.is_empty() {
            log::debug!("convert: run_experience without a visitor id");
            return Decision::NotMatched(NotMatchedReason::NoVisitorId);
        }
        // Loaded once: the readiness check and the decision use the same snapshot.
        let guard = self.core.inner.shared.config_guard();
        if guard.is_none() {
            return Decision::NotReady;
        }
        if let Some(p) = self.preview.as_ref().filter(|p| p.experience_key == key) {
            return self.preview_decision(p);
        }
        let opts = self.run_options(attrs, false);
        // The closure hands back the small outcome, and the decision (about 170 bytes for a
        // variation) is built once, in the value returned, rather than copied out of the closures.
        let mut out = (None, Outcome::NotDecided);
        self.with_props_on(
            &guard,
            attrs.call_properties().as_deref(),
            |engine, vs, props, fx| {
                out = engine.run_experience_outcome(vs, key, props, &opts, fx);
            },
        );
        let (index, outcome) = out;
        let exp = index.and_then(|i| guard.as_deref()?.experiences.get(i));
        if let (Some(exp), Outcome::Variation { index, .. }) = (exp, outcome) {
            self.bucketing_event(|| {
                let variation = exp.variations.get(index);
                let variation_key = variation.and_then(|v| v.key.as_deref()).map(str::to_string);
                (exp.key.to_string(), variation_key)
            });
        }
        outcome.decision_for(exp)
    }

    /// Forces `variation_id` of experience `experience_id` for this context (preview / QA mode).
    ///
    /// While a preview is active: `run_experience` of that experience returns the forced variation
    /// without checking status, environment, audiences, locations or traffic; every other decision
    /// is made normally but nothing is stored, tracked or announced; `track_conversion` and
    /// `update_visitor_properties` do nothing; segment calls evaluate without storing. Feature
    /// resolution does not apply the forced variation. The experience must be in the served config.
    pub fn set_preview(
        &mut self,
        experience_id: &str,
        variation_id: &str,
    ) -> Result<(), PreviewError> {
        let cfg = self.core.config();
        let exp = cfg
            .experience_by_id(experience_id)
            .ok_or_else(|| PreviewError::UnknownExperience(experience_id.to_string()))?;
        let vi = exp
            .variations
            .iter()
            .position(|v| &*v.id == variation_id)
            .ok_or_else(|| PreviewError::UnknownVariation {
                experience: experience_id.to_string(),
                variation: variation_id.to_string(),
            })?;
        self.preview = Some(Preview {
            experience_key: exp.key.to_string(),
            experience_index: exp.index,
            variation_index: vi,
        });
        Ok(())
    }

    /// Ends preview mode.
    pub fn clear_preview(&mut self) {
        self.preview = None;
    }

    /// Whether a preview is active.
    pub fn is_preview(&self) -> bool {
        self.preview.is_some()
    }

    fn preview_decision(&self, p: &Preview) -> Decision {
        let cfg = self.core.config();
        match cfg.experiences.get(p.experience_index) {
            Some(exp) if p.variation_index < exp.variations.len() => {
                Decision::Variation(BucketedVariation::of(exp, p.variation_index, None))
            }
            _ => Decision::NotMatched(NotMatchedReason::UnknownExperience),
        }
    }

    /// Explains the decision for experience `key` without side effects: nothing is stored, tracked
    /// or announced. Returns the decision the visitor would get now and the steps that led to it.
    /// An active preview ([`Context::set_preview`]) is not applied: the explanation is the
    /// engine's own decision.
    pub fn explain_experience(
        &self,
        key: &str,
        attrs: &BucketingAttributes,
    ) -> (Decision, Vec<crate::Step>) {
        let mut opts = self.run_options(attrs, false);
        opts.enable_storage = false;
        opts.enable_tracking = false;
        opts.suppress_events = true;
        let cfg = self.core.config();
        let mut data = self
            .store_key()
            .map(|k| self.core.load(k))
            .unwrap_or_default();
        let engine = Engine::new(&cfg, &self.core.inner.settings);
        let mut fx = Effects {
            trace: Some(Vec::new()),
            ..Effects::default()
        };
        // Segments given at creation and not stored yet count as the decision would count them.
        self.merge_pending_seed(&mut data);
        let stored = data.segments().cloned();
        let props = VisitorProps::new(
            attrs.visitor_properties.as_ref(),
            Some(&self.properties),
            stored.as_ref(),
        );
        let mut vs = VisitorState::new(&self.visitor_id, &mut data);
        let d = engine.run_experience(&mut vs, key, &props, &opts, &mut fx);
        (d, fx.trace.unwrap_or_default())
    }

    /// Every experience the visitor is in, in config order (a previewed experience, see
    /// [`Context::set_preview`], comes last, with its forced variation).
    pub fn run_experiences(&self, attrs: &BucketingAttributes) -> Vec<BucketedVariation> {
        if self.visitor_id.is_empty() {
            return Vec::new();
        }
        let opts = self.run_options(attrs, false);
        let mut list = self.with_props(
            attrs.call_properties().as_deref(),
            |engine, vs, props, fx| engine.run_experiences(vs, props, &opts, fx),
        );
        if let Some(p) = &self.preview {
            list.retain(|v| *v.experience_key != *p.experience_key);
            if let Decision::Variation(v) = self.preview_decision(p) {
                list.push(v);
            }
        }
        for v in &list {
            self.bucketing_event(|| {
                let variation_key = v.variation_key.as_deref().map(str::to_string);
                (v.experience_key.to_string(), variation_key)
            });
        }
        list
    }

    /// Whether feature `key` is on for the visitor, with its typed variables.
    pub fn run_feature(&self, key: &str, attrs: &BucketingAttributes) -> FeatureDecision {
        let mut out = FeatureDecision {
            key: key.to_string(),
            entries: Vec::new(),
            rule_errors: crate::RuleErrors::default(),
            not_ready: false,
        };
        if self.visitor_id.is_empty() {
            return out;
        }
        if self.core.inner.shared.config_guard().is_none() {
            out.not_ready = true;
            return out;
        }
        let opts = self.run_options(attrs, true);
        let exp_keys: Option<Vec<&str>> = attrs
            .experience_keys
            .as_ref()
            .map(|v| v.iter().map(String::as_str).collect());
        let r = self.with_props(
            attrs.call_properties().as_deref(),
            |engine, vs, props, fx| {
                engine.run_feature(vs, key, props, &opts, exp_keys.as_deref(), fx)
            },
        );
        match r {
            Ok(entries) => {
                for e in &entries {
                    self.feature_event(Some(key), e);
                }
                out.entries = entries;
            }
            Err(errors) => out.rule_errors = errors.into(),
        }
        out
    }

    /// Every declared feature: enabled entries first (per delivering experience), then the
    /// disabled ones in the reference's roster order. Each entry has
    /// [`is_enabled`](BucketedFeature::is_enabled) and [`variables`](BucketedFeature::variables).
    pub fn run_features(
        &self,
        attrs: &BucketingAttributes,
    ) -> Result<Vec<BucketedFeature>, crate::RuleErrors> {
        if self.visitor_id.is_empty() {
            return Ok(Vec::new());
        }
        let opts = self.run_options(attrs, true);
        let r = self.with_props(
            attrs.call_properties().as_deref(),
            |engine, vs, props, fx| {
                engine.run_features(vs, props, &opts, &FeatureFilter::default(), fx)
            },
        );
        if let Ok(list) = &r {
            for e in list {
                self.feature_event(None, e);
            }
        }
        r.map_err(Into::into)
    }

    /// Tracks a conversion of goal `goal_key`. The dedup check and the goal mark happen in one
    /// atomic update of the visitor's record, so concurrent calls produce one conversion.
    pub fn track_conversion(
        &self,
        goal_key: &str,
        attrs: &ConversionAttributes,
    ) -> Result<ConversionOutcome, RuleError> {
        let key = match self.conversion_key() {
            Ok(key) => key,
            Err(outcome) => return Ok(outcome),
        };
        let goal_data = attrs.goal_data();
        let rule_data = attrs
            .rule_data
            .as_ref()
            .map(|m| m as &dyn convert_core::rules::RuleData);
        let force = attrs.force_multiple_transactions;
        let shared = &self.core.inner.shared;
        let stored = shared.guard.within_deadline(|| {
            let r = convert_in_store(
                &self.core,
                Who {
                    id: &self.visitor_id,
                    seeded: self.seed_to_store(),
                },
                key,
                goal_key,
                rule_data,
                goal_data.as_ref(),
                force,
            );
            self.seed_stored();
            if r.is_ok() {
                reconcile_held(&self.core, false);
            }
            r
        });
        let result = match stored {
            Ok((result, events)) => {
                self.core.enqueue(events);
                result
            }
            Err(_) => {
                self.convert_unanswered(&shared.guard, key, goal_key, rule_data, goal_data, force)
            }
        };
        self.conversion_done(goal_key, &result);
        result
    }

    /// The store key a conversion is tracked under, or the outcome when there is nothing to
    /// track (no visitor id, preview mode, no config yet).
    fn conversion_key(&self) -> Result<&str, ConversionOutcome> {
        if self.visitor_id.is_empty() {
            log::debug!("convert: track_conversion without a visitor id");
            return Err(ConversionOutcome::NoVisitorId);
        }
        if self.preview.is_some() {
            return Err(ConversionOutcome::Preview);
        }
        self.store_key().ok_or(ConversionOutcome::NotReady)
    }

    /// A conversion the store did not answer for: checks the goal and its rules on an empty
    /// record, then holds the conversion until the store can confirm it was not counted already.
    fn convert_unanswered(
        &self,
        guard: &StoreGuard,
        key: &str,
        goal_key: &str,
        rule_data: Option<&dyn convert_core::rules::RuleData>,
        goal_data: Option<Value>,
        force: bool,
    ) -> Result<ConversionOutcome, RuleError> {
        let mut data = StoreData::default();
        match convert_on(
            &self.core,
            Who {
                id: &self.visitor_id,
                seeded: None,
            },
            goal_key,
            rule_data,
            goal_data.as_ref(),
            force,
            &mut data,
        )
        .0
        {
            Ok(ConversionOutcome::Converted { .. }) => match guard.hold(HeldConversion {
                visitor_id: self.visitor_id.clone(),
                key: key.to_string(),
                goal_key: goal_key.to_string(),
                goal_data,
                force,
            }) {
                HoldOutcome::Duplicate => Ok(ConversionOutcome::AlreadyConverted),
                HoldOutcome::Held => Ok(ConversionOutcome::Deferred),
                HoldOutcome::Overflow => Ok(ConversionOutcome::Dropped),
            },
            other => other,
        }
    }

    /// Announces a conversion that fired.
    fn conversion_done(&self, goal_key: &str, result: &Result<ConversionOutcome, RuleError>) {
        if let Ok(o) = result {
            if o.fired() {
                self.core.fire(|| SdkEvent::Conversion {
                    visitor_id: self.visitor_id.clone(),
                    goal_key: goal_key.to_string(),
                });
            }
        }
    }

    /// Stores report segments (`country`, `browser`, `devices`, `source`, `campaign`,
    /// `visitorType`, `customSegments`); other keys are ignored. Values over the visitor data
    /// limits ([`crate::MAX_VISITOR_DATA_DEPTH`], [`crate::MAX_VISITOR_VALUE_BYTES`],
    /// [`crate::MAX_VISITOR_DATA_BYTES`]) are dropped with a log line; the rest is stored.
    ///
    /// Takes anything [`Attributes`](crate::Attributes) converts from (`&Map`, `HashMap`,
    /// `[(k, v)]`, `json!({...})`, ...). Writes the sync store: on an SDK with an async store,
    /// call `set_default_segments_async` (feature `tokio`).
    pub fn set_default_segments(&self, segments: impl Into<crate::Attributes>) {
        if self.preview.is_some() {
            return;
        }
        if let Some(op) = default_segments_op(segments.into()) {
            self.write(&[op]);
        }
    }

    /// Evaluates custom segments `segment_keys` against `rule_data` merged over the context's
    /// properties and the visitor's stored segments, and stores the ids that matched. Returns the
    /// visitor's updated segments, or `None` when nothing new was added. `rule_data` takes
    /// anything [`Attributes`](crate::Attributes) converts from; `None` (or empty data) evaluates
    /// the segments against the context's own data alone, so they can still match (a segment
    /// without rules always matches).
    pub fn run_custom_segments(
        &self,
        segment_keys: &[&str],
        rule_data: impl Into<crate::Attributes>,
    ) -> Result<Option<Map<String, Value>>, RuleError> {
        if self.visitor_id.is_empty() {
            log::debug!("convert: run_custom_segments without a visitor id");
            return Ok(None);
        }
        let rule_data = rule_data.into();
        let rule_data = Some(rule_data.as_map()).filter(|m| !m.is_empty());
        self.with_props(rule_data, |engine, vs, props, fx| {
            engine.run_custom_segments(vs, segment_keys, Some(props), self.preview.is_none(), fx)
        })
    }

    /// Stores arbitrary visitor properties under the visitor's `segments` (they stay in the data
    /// store and feed audience rules; only report segments are ever sent to Convert). Values over
    /// the visitor data limits ([`crate::MAX_VISITOR_DATA_DEPTH`],
    /// [`crate::MAX_VISITOR_VALUE_BYTES`], [`crate::MAX_VISITOR_DATA_BYTES`]) are dropped with a
    /// log line; the rest is stored, so every record the SDK writes can be read back.
    ///
    /// Takes anything [`Attributes`](crate::Attributes) converts from (`&Map`, `HashMap`,
    /// `[(k, v)]`, `json!({...})`, ...). Writes the sync store: on an SDK with an async store,
    /// call `update_visitor_properties_async` (feature `tokio`).
    pub fn update_visitor_properties(&self, properties: impl Into<crate::Attributes>) {
        if self.preview.is_some() {
            return;
        }
        self.write(&[visitor_properties_op(properties.into())]);
    }

    /// A config entity by key, as served.
    pub fn get_config_entity(&self, key: &str, entity_type: EntityType) -> Option<Value> {
        self.core
            .config()
            .entity_by_key(key, entity_type.as_str())
            .cloned()
    }

    /// A config entity by id, as served.
    pub fn get_config_entity_by_id(&self, id: &str, entity_type: EntityType) -> Option<Value> {
        self.core
            .config()
            .entity_by_id(id, entity_type.as_str())
            .cloned()
    }

    /// The visitor's stored record (empty for a context without a visitor id, which stores
    /// nothing). On an SDK with an async store this reads the sync store; see
    /// `get_visitor_data_async`. Either way the report segments given at `create_context` are
    /// merged in while no call has stored them yet.
    pub fn get_visitor_data(&self) -> StoreData {
        if self.visitor_id.is_empty() {
            return StoreData::default();
        }
        let mut data: StoreData = self
            .store_key()
            .map(|k| self.core.load(k))
            .unwrap_or_default();
        self.merge_pending_seed(&mut data);
        data
    }

    /// `data` as the context's next call will see it: with the segments given at creation
    /// merged in while no call has stored them (after an unconfirmed attempt, only those it
    /// lacks).
    fn merge_pending_seed(&self, data: &mut StoreData) {
        if let Some(seed) = self.seed_pending() {
            seed.merge_into_segments(data.segments_mut());
        }
    }

    /// Delivers queued tracking events now (see [`Core::flush`]).
    pub fn release_queues(&self) -> Result<usize, crate::Error> {
        self.core.flush()
    }

    /// The SDK this context belongs to.
    pub fn core(&self) -> &Core {
        &self.core
    }
}

/// Whose conversion: the visitor id, and the report segments its record is seeded with
/// ([`Seed`]; `None` for a held conversion, made without its context).
#[derive(Clone, Copy)]
pub(crate) struct Who<'a> {
    id: &'a str,
    seeded: Option<Seed<'a>>,
}

/// The store write of [`Context::set_default_segments`]: the report segments among `segments`
/// that are within the visitor data limits (`None` when there are none).
fn default_segments_op(segments: crate::Attributes) -> Option<StoreOp> {
    let segments = crate::attributes::checked(segments.as_map(), "segment");
    report_segments(&segments).map(StoreOp::MergeSegments)
}

/// The store write of [`Context::update_visitor_properties`]: the properties within the
/// visitor data limits.
fn visitor_properties_op(properties: crate::Attributes) -> StoreOp {
    let properties = crate::attributes::checked(properties.as_map(), "visitor property");
    StoreOp::MergeSegments(properties.into_owned())
}

/// A conversion decided against the store: read the record, decide, then mark the goal in one
/// atomic store operation; the conversion's events are kept only when this call's mark won (a
/// mark lost to another process or thread is re-decided on the record with the goal marked, so
/// only forced repeat transactions remain). `Err` when the store did not answer.
#[allow(clippy::too_many_arguments)]
fn convert_in_store(
    core: &Core,
    who: Who<'_>,
    key: &str,
    goal_key: &str,
    rule_data: Option<&dyn convert_core::rules::RuleData>,
    goal_data: Option<&Value>,
    force: bool,
) -> Stored {
    let shared = &core.inner.shared;
    let cfg = core.config();
    let engine = Engine::new(&cfg, &core.inner.settings);
    let convert = |data: &mut StoreData, fx: &mut Effects| {
        fx.clear();
        let mut vs = VisitorState::new(who.id, data);
        if let Some(seed) = who.seeded {
            seed.merge(&mut vs, fx);
        }
        engine.convert(&mut vs, goal_key, rule_data, goal_data, force, fx)
    };
    let mut fx = Effects::default();
    if shared.guard.updates_in_place() {
        let mut result: Result<ConversionOutcome, RuleError> = Ok(ConversionOutcome::GoalNotFound);
        let updated = shared.guard.call(&shared.events, |s| {
            s.update(key, &mut |d| {
                result = convert(d, &mut fx);
                !fx.store.is_empty()
            })
        })?;
        if updated.is_ok() {
            return Ok((result, std::mem::take(&mut fx.tracking)));
        }
    }
    let seen = shared.guard.read(&shared.events, key)?;
    let mut data = seen.clone().unwrap_or_default();
    let mut result = convert(&mut data, &mut fx);
    if fx.store.is_empty() {
        return Ok((result, std::mem::take(&mut fx.tracking)));
    }
    let applied = match shared
        .guard
        .apply(&shared.events, key, seen.as_ref(), &fx.store)?
    {
        Ok(a) => a,
        // Endless contention: treated as no answer (the conversion is held).
        Err(_) => return Err(Unanswered::Failed),
    };
    if mark_lost(seen.as_ref(), &applied, &fx.store, goal_key) {
        let mut marked = seen.unwrap_or_default();
        marked.mark_goal(goal_key);
        result = convert(&mut marked, &mut fx);
    }
    Ok((result, std::mem::take(&mut fx.tracking)))
}

/// Whether a conversion's goal mark was lost to another writer: the goal was not marked in the
/// record the decision read, and this call's atomic write did not mark it. The conversion is
/// then decided again on the record with the goal marked.
fn mark_lost(seen: Option<&StoreData>, applied: &Applied, ops: &[StoreOp], goal_key: &str) -> bool {
    let was_marked = seen.is_some_and(|s| s.goal_triggered(goal_key));
    !was_marked && !StoreGuard::goal_won(applied, ops, goal_key)
}

/// Decides a conversion on `data` (pure: the store ops and events are in the effects).
fn convert_on(
    core: &Core,
    who: Who<'_>,
    goal_key: &str,
    rule_data: Option<&dyn convert_core::rules::RuleData>,
    goal_data: Option<&Value>,
    force: bool,
    data: &mut StoreData,
) -> (Result<ConversionOutcome, RuleError>, Effects) {
    let cfg = core.config();
    let engine = Engine::new(&cfg, &core.inner.settings);
    let mut fx = Effects::default();
    let mut vs = VisitorState::new(who.id, data);
    if let Some(seed) = who.seeded {
        seed.merge(&mut vs, &mut fx);
    }
    let r = engine.convert(&mut vs, goal_key, rule_data, goal_data, force, &mut fx);
    (r, fx)
}

/// Reconciles held conversions (a batch per call) once the store answers again: each is marked
/// atomically and sent only when its mark wins.
#[inline]
pub(crate) fn reconcile_held(core: &Core, probe: bool) {
    // Nothing held (the usual case): no batch, after one relaxed load (inlined into the caller).
    if let Some(batch) = core.inner.shared.guard.take_batch(probe) {
        reconcile_batch(core, batch);
    }
}

/// [`reconcile_held`] of a batch taken.
#[inline(never)]
fn reconcile_batch(core: &Core, mut batch: crate::store_guard::HeldBatch<'_>) {
    let guard = &core.inner.shared.guard;
    while let Some(h) = batch.next() {
        if guard.time_short() {
            return;
        }
        let outcome = convert_in_store(
            core,
            Who {
                id: &h.visitor_id,
                seeded: None,
            },
            &h.key,
            &h.goal_key,
            None,
            h.goal_data.as_ref(),
            h.force,
        );
        if !settle_held(core, guard, &h, outcome) {
            return;
        }
        batch.settled();
    }
}

/// What a conversion decided against the store produced: its outcome and tracking events, or
/// `Err` when the store did not answer.
type Stored = Result<(Result<ConversionOutcome, RuleError>, Vec<TrackingEvent>), Unanswered>;

/// Settles one held conversion after its reconciliation against the store: sent when its mark
/// won, otherwise counted. `false` when the store did not answer (the caller puts it back).
fn settle_held(core: &Core, guard: &StoreGuard, h: &HeldConversion, outcome: Stored) -> bool {
    match outcome {
        Ok((Ok(o), events)) if o.fired() => {
            core.enqueue(events);
            guard.note_reconciled();
            core.fire(|| SdkEvent::Conversion {
                visitor_id: h.visitor_id.clone(),
                goal_key: h.goal_key.clone(),
            });
        }
        Ok((Ok(ConversionOutcome::AlreadyConverted | ConversionOutcome::Converted { .. }), _)) => {
            guard.note_already_marked()
        }
        Ok(_) => guard.note_discarded(),
        Err(_) => return false,
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn config(account: &str, project: &str) -> Arc<ProjectConfig> {
        let value = serde_json::json!({"account_id": account, "project": {"id": project}});
        match ProjectConfig::from_value(value) {
            Ok(cfg) => Arc::new(cfg),
            Err(e) => unreachable!("test config: {e:?}"),
        }
    }

    #[test]
    fn key_buffer_rebuilds_its_prefix_for_every_other_config() {
        let mut kb = KeyBuf {
            buf: String::new(),
            prefix_of: std::sync::Weak::new(),
            prefix_len: 0,
        };
        let first = config("1", "22");
        assert_eq!(kb.key(&first, "visitor-a"), "1-22-visitor-a");
        assert_eq!(kb.key(&first, "b"), "1-22-b");
        assert_eq!(kb.key(&first, ""), "1-22-");
        let second = config("333", "4");
        assert_eq!(kb.key(&second, "visitor-a"), "333-4-visitor-a");
        assert_eq!(kb.key(&first, "c"), "1-22-c");
        // A config made after the one the prefix came from was dropped never reuses the prefix,
        // even when it takes the same address.
        drop(first);
        for i in 0..50 {
            let other = config(&format!("9{i}"), "8");
            assert_eq!(kb.key(&other, "v"), format!("9{i}-8-v"));
            drop(other);
        }
    }
}
