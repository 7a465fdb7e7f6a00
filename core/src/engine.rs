//! The decision flow (SPEC §5.2–§5.7): which variation of an experience a visitor gets.
//!
//! The engine reads a [`ProjectConfig`] snapshot and the visitor's [`StoreData`], and records
//! what should happen as data in [`Effects`]: store writes, tracking events, and notices for the
//! SDK's lifecycle events. It updates the visitor state it is given as it goes, so several
//! decisions in one call (e.g. `run_experiences`) see each other's writes, exactly as the
//! reference SDK sees its own store.

use crate::config::{Experience, LocationTarget, ProjectConfig, Str};
use crate::hash::bucket_value;
use crate::js;
use crate::rules::{RuleData, RuleError, RuleOutcome};
use crate::store::{
    StoreData, StoreOp, StoredValue, ValueList, merge_into, merge_value, report_segments, strict_eq,
};
use crate::tracking::{EventData, TrackingEvent};
use serde_json::{Map, Value};
use std::borrow::Cow;

/// Engine settings that come from the SDK configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct EngineSettings {
    /// The SDK environment (default `"staging"`), compared with `experience.environment`.
    pub environment: String,
    /// Hash seed (default 9999).
    pub hash_seed: u32,
    /// Bucket scale (default 10000).
    pub max_traffic: f64,
    /// Hash the visitor id alone, without the experience id prefix.
    pub exclude_experience_id_hash: bool,
}

impl Default for EngineSettings {
    fn default() -> Self {
        EngineSettings {
            environment: "staging".into(),
            hash_seed: 9999,
            max_traffic: 10000.0,
            exclude_experience_id_hash: false,
        }
    }
}

/// Per-call switches (SPEC §1.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunOptions<'a> {
    /// Location data for `site_area` and location rules. `None` is treated as an empty map (a
    /// deliberate fix of the reference, which then matches nothing).
    pub location_properties: Option<&'a Map<String, Value>>,
    /// Skip location and site-area evaluation entirely.
    pub ignore_location_properties: bool,
    /// Overrides the SDK environment for this call.
    pub environment: Option<&'a str>,
    /// Forces this variation when the experience has it (status and traffic are not checked).
    pub force_variation_id: Option<&'a str>,
    /// Queue a bucketing event for a fresh decision (default true).
    pub enable_tracking: bool,
    /// Write the decision and location list to the store (default true).
    pub enable_storage: bool,
    /// Suppress location activation notices.
    pub suppress_events: bool,
    /// Also store the merged visitor properties under `segments` on a fresh decision.
    pub update_visitor_properties: bool,
    /// Cast feature variables to their declared types (default true).
    pub type_casting: bool,
}

impl Default for RunOptions<'_> {
    fn default() -> Self {
        RunOptions {
            location_properties: None,
            ignore_location_properties: false,
            environment: None,
            force_variation_id: None,
            enable_tracking: true,
            enable_storage: true,
            suppress_events: false,
            update_visitor_properties: false,
            type_casting: true,
        }
    }
}

/// The visitor properties a rule sees: call attributes over context properties over stored
/// segments, combined with the reference's deep merge, without copying in the common case.
#[derive(Debug, Clone, Default)]
pub struct VisitorProps<'a> {
    layers: [Option<&'a Map<String, Value>>; 3],
    /// Whether the merged properties hold `name: "RuleData"` (the reference then takes them for
    /// a custom rule-data object): found at the first rule tree evaluated on them, and kept for
    /// the others. A decision whose experience has no audience never looks.
    names_rule_data: std::cell::Cell<Option<bool>>,
}

impl<'a> VisitorProps<'a> {
    /// Layers in precedence order: per-call attributes, the context's properties, stored segments.
    #[inline]
    pub fn new(
        call: Option<&'a Map<String, Value>>,
        context: Option<&'a Map<String, Value>>,
        stored: Option<&'a Map<String, Value>>,
    ) -> Self {
        VisitorProps {
            layers: [call, context, stored],
            names_rule_data: std::cell::Cell::new(None),
        }
    }

    /// Whether the merged `name` is the string `"RuleData"`. The merged `name` is the top
    /// layer's when that is a string (a lower layer's value only merges into an array or an
    /// object, never a string).
    fn find_rule_data_name(&self) -> bool {
        let found = self
            .layers
            .iter()
            .flatten()
            .find_map(|layer| crate::rules::property(layer, "name"))
            .is_some_and(|name| name.as_str() == Some("RuleData"));
        self.names_rule_data.set(Some(found));
        found
    }

    /// The merged properties as one map (`merge(stored, merge(context, call))`).
    pub fn materialize(&self) -> Map<String, Value> {
        let mut acc = Map::new();
        for layer in self.layers.iter().rev().flatten() {
            merge_into(&mut acc, layer);
        }
        acc
    }
}

fn same_kind(a: &Value, b: &Value) -> bool {
    matches!(
        (a, b),
        (Value::Array(_), Value::Array(_)) | (Value::Object(_), Value::Object(_))
    )
}

impl RuleData for VisitorProps<'_> {
    #[inline]
    fn lookup(&self, key: &str) -> Option<Cow<'_, Value>> {
        let mut layers = self.layers.iter();
        while let Some(layer) = layers.next() {
            let Some(top) = layer.and_then(|l| crate::rules::property(l, key)) else {
                continue;
            };
            if !matches!(top, Value::Array(_) | Value::Object(_)) {
                return Some(Cow::Borrowed(top));
            }
            let lower = layers
                .flatten()
                .filter_map(|l| crate::rules::property(l, key));
            return Some(merged(top, lower));
        }
        None
    }

    #[inline]
    fn is_empty(&self) -> bool {
        self.layers.iter().flatten().all(|l| l.is_empty())
    }

    #[inline]
    fn names_rule_data(&self) -> bool {
        match self.names_rule_data.get() {
            Some(known) => known,
            None => self.find_rule_data_name(),
        }
    }
}

/// An array or object `top` merged with the values the lower layers hold under the same key
/// (`found`).
#[cold]
fn merged<'v>(top: &'v Value, found: impl Iterator<Item = &'v Value>) -> Cow<'v, Value> {
    let lower: Vec<&Value> = found.collect();
    if !lower.iter().any(|v| same_kind(v, top)) {
        return Cow::Borrowed(top);
    }
    let mut acc = top.clone();
    for lv in lower {
        let mut o = lv.clone();
        merge_value(&mut o, &acc);
        acc = o;
    }
    Cow::Owned(acc)
}

/// A decided variation (the reference's `BucketedVariation`).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct BucketedVariation {
    /// Experience id.
    pub experience_id: Str,
    /// Experience key.
    pub experience_key: Str,
    /// Experience name.
    pub experience_name: Option<Str>,
    /// Variation id.
    pub variation_id: Str,
    /// Variation key.
    pub variation_key: Option<Str>,
    /// Variation name.
    pub variation_name: Option<Str>,
    /// The bucket value (0–9999) of a fresh decision; `None` for a stored (sticky) one, and for a
    /// forced variation when the allocation walk itself selected no variation (every arm stopped,
    /// or the value beyond the arms' total), as in the reference.
    pub bucketing_allocation: Option<u32>,
    /// Index of the experience in the config.
    #[serde(skip)]
    pub experience_index: usize,
    /// Index of the variation in the experience.
    #[serde(skip)]
    pub variation_index: usize,
}

/// Borrowing accessors: the fields are [`Str`] (`SmolStr`, which clones without allocating on the
/// decision path); these give plain `&str` so callers need not name that type.
impl BucketedVariation {
    /// Experience id.
    pub fn experience_id(&self) -> &str {
        &self.experience_id
    }

    /// Experience key.
    pub fn experience_key(&self) -> &str {
        &self.experience_key
    }

    /// Experience name.
    pub fn experience_name(&self) -> Option<&str> {
        self.experience_name.as_deref()
    }

    /// Variation id.
    pub fn variation_id(&self) -> &str {
        &self.variation_id
    }

    /// Variation key.
    pub fn variation_key(&self) -> Option<&str> {
        self.variation_key.as_deref()
    }

    /// Variation name.
    pub fn variation_name(&self) -> Option<&str> {
        self.variation_name.as_deref()
    }
    /// The decision for variation `vi` of `exp`; `allocation` is the bucket value of a fresh
    /// decision (`None` for a stored or forced-preview one).
    #[inline(always)]
    pub fn of(exp: &Experience, vi: usize, allocation: Option<u32>) -> BucketedVariation {
        let v = &exp.variations[vi];
        BucketedVariation {
            experience_id: exp.id.clone(),
            experience_key: exp.key.clone(),
            experience_name: exp.name.clone(),
            variation_id: v.id.clone(),
            variation_key: v.key.clone(),
            variation_name: v.name.clone(),
            bucketing_allocation: allocation,
            experience_index: exp.index,
            variation_index: vi,
        }
    }

    /// The reference's JSON shape: `{experienceId, experienceName, experienceKey,
    /// bucketingAllocation?, ...variation}` (variation members win on a name clash). Ids, keys
    /// and names are the served values: an experience id served as a JSON number stays a number.
    pub fn to_js_value(&self, config: &ProjectConfig) -> Value {
        let served = config.experience_raw(self.experience_index);
        let member = |k: &str, typed: &Str| {
            served
                .and_then(|e| e.get(k))
                .cloned()
                .unwrap_or_else(|| Value::String(typed.to_string()))
        };
        let mut m = Map::new();
        m.insert("experienceId".into(), member("id", &self.experience_id));
        if let Some(n) = served.and_then(|e| e.get("name")) {
            m.insert("experienceName".into(), n.clone());
        }
        m.insert("experienceKey".into(), member("key", &self.experience_key));
        if let Some(a) = self.bucketing_allocation {
            m.insert("bucketingAllocation".into(), Value::from(a));
        }
        if let Some(v) = config.variation_raw(self.experience_index, self.variation_index) {
            for (k, val) in v {
                m.insert(k.clone(), val.clone());
            }
        }
        Value::Object(m)
    }
}

/// The outcome of one experience decision. Serializes as `{"type": "variation", "value": {...}}`,
/// `{"type": "notMatched", "value": "audience"}`, `{"type": "ruleError", "value": "convert.com_..."}`,
/// `{"type": "notDecided"}` or `{"type": "notReady"}`.
///
/// Why the visitor got no variation is known without extra work: [`Decision::NotMatched`]
/// carries a [`NotMatchedReason`] (environment, location, audience, segments, ...),
/// [`Decision::NotDecided`] means the traffic allocation left the visitor out and
/// [`Decision::NotReady`] that there was no config yet.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(tag = "type", content = "value", rename_all = "camelCase")]
#[non_exhaustive]
pub enum Decision {
    /// The visitor is in this variation.
    Variation(BucketedVariation),
    /// The experience did not match; the reason says which check failed. The reference returns
    /// `null`.
    NotMatched(NotMatchedReason),
    /// A rule needed data it did not have.
    RuleError(RuleError),
    /// The visitor qualified but no variation covers their bucket
    /// (`"convert.com_variation_not_decided"`).
    NotDecided,
    /// The SDK has no project config yet (SDK-key mode before the first successful fetch), so
    /// nothing was decided, stored or tracked. The reference returns `null`, as for
    /// [`Decision::NotMatched`]; ask again once the SDK is ready.
    NotReady,
}

impl Decision {
    /// The variation, when the visitor is in one.
    pub fn variation(&self) -> Option<&BucketedVariation> {
        match self {
            Decision::Variation(v) => Some(v),
            _ => None,
        }
    }

    /// Whether the visitor is in a variation.
    pub fn is_variation(&self) -> bool {
        matches!(self, Decision::Variation(_))
    }

    /// The variation's key, when the visitor is in a variation that has one.
    pub fn variation_key(&self) -> Option<&str> {
        self.variation().and_then(BucketedVariation::variation_key)
    }

    /// The variation's id, when the visitor is in a variation.
    pub fn variation_id(&self) -> Option<&str> {
        self.variation().map(BucketedVariation::variation_id)
    }

    /// Why the experience did not match, when the decision is [`Decision::NotMatched`].
    ///
    /// A `Copy` value read from the decision itself: asking costs nothing, and the decision was
    /// no slower for carrying it.
    ///
    /// ```
    /// use convert_core::{Decision, NotMatchedReason};
    ///
    /// let d = Decision::NotMatched(NotMatchedReason::Audience);
    /// assert_eq!(d.not_matched_reason(), Some(NotMatchedReason::Audience));
    /// assert_eq!(Decision::NotDecided.not_matched_reason(), None);
    /// match d {
    ///     Decision::NotMatched(NotMatchedReason::Environment) => println!("environment"),
    ///     Decision::NotMatched(reason) => println!("not matched: {reason}"),
    ///     _ => {}
    /// }
    /// ```
    pub fn not_matched_reason(&self) -> Option<NotMatchedReason> {
        match self {
            Decision::NotMatched(r) => Some(*r),
            _ => None,
        }
    }

    /// The decision, or the rule error as `Err` so that `?` can pass it on: a missing
    /// variation (`NotMatched`, `NotDecided`, `NotReady`) is an outcome, not an error.
    pub fn into_result(self) -> Result<Decision, RuleError> {
        match self {
            Decision::RuleError(e) => Err(e),
            d => Ok(d),
        }
    }
}

/// Which check kept the visitor out of an experience ([`Decision::NotMatched`]), in the order the
/// engine makes them. A small `Copy` value: recording it allocates nothing. Serializes as a
/// camelCase string (`"noVisitorId"`); [`Display`](std::fmt::Display) gives the words
/// (`no visitor id`), as in `not matched: audience`.
///
/// Traffic allocation is not here: a qualified visitor whose bucket no variation covers gets
/// [`Decision::NotDecided`]; before the first config the decision is [`Decision::NotReady`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub enum NotMatchedReason {
    /// The config has no experience with this key.
    UnknownExperience,
    /// The experience is archived.
    Archived,
    /// The experience runs in another environment.
    Environment,
    /// The location (or site area) rules did not match the location properties.
    Location,
    /// The audiences did not match the visitor's properties.
    Audience,
    /// The visitor is in none of the experience's segments.
    Segments,
    /// The experience has no variations.
    NoVariations,
    /// The call had an empty visitor id.
    NoVisitorId,
    /// The config cannot be decided on as the reference does: the experience has no id, or the
    /// chosen variation's id is not a string (the reference then returns `null` too).
    InvalidConfig,
}

impl std::fmt::Display for NotMatchedReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            NotMatchedReason::UnknownExperience => "unknown experience",
            NotMatchedReason::Archived => "archived",
            NotMatchedReason::Environment => "environment",
            NotMatchedReason::Location => "location",
            NotMatchedReason::Audience => "audience",
            NotMatchedReason::Segments => "segments",
            NotMatchedReason::NoVariations => "no variations",
            NotMatchedReason::NoVisitorId => "no visitor id",
            NotMatchedReason::InvalidConfig => "invalid config",
        })
    }
}

/// The reference's sentinel for [`Decision::NotDecided`].
pub const VARIATION_NOT_DECIDED: &str = "convert.com_variation_not_decided";

/// A lifecycle notice the SDK turns into an event or a log line.
#[derive(Debug, Clone, PartialEq)]
pub enum Notice {
    /// A location became active for the visitor (index into [`ProjectConfig::locations`]).
    LocationActivated(usize),
    /// A location stopped being active for the visitor.
    LocationDeactivated(usize),
    /// A `bucketed_into_experience_key` rule names an experience key the config does not have;
    /// the visitor is treated as not bucketed into it (to be logged as a warning).
    UnknownExclusionTarget(String),
}

/// Which variation layout decided a fresh bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub enum Layout {
    /// Cumulative walk in JS key order (experience version ≤ 11).
    Packed,
    /// Fixed anchors per arm (experience version > 11).
    Anchored,
}

/// One step of a decision, recorded when [`Effects::trace`] is `Some` (for `--explain` output).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Step {
    /// The experience was not found by key.
    UnknownExperience(String),
    /// The experience is archived.
    Archived,
    /// The experience's environment was compared with the call's.
    Environment {
        /// The experience's `environment`.
        experience: String,
        /// The environment asked for.
        wanted: String,
        /// Whether they are equal.
        matched: bool,
    },
    /// Location targeting was skipped (`ignore_location_properties`).
    LocationIgnored,
    /// No location targeting.
    LocationUnrestricted,
    /// A location entity was evaluated.
    Location {
        /// Location key.
        key: String,
        /// Its outcome.
        outcome: RuleOutcome,
    },
    /// The site-area rules were evaluated.
    SiteArea(RuleOutcome),
    /// An audience was evaluated (or skipped as permanent for a bucketed visitor).
    Audience {
        /// Audience key.
        key: String,
        /// Its outcome; `None` when skipped or when it has no rules.
        outcome: Option<RuleOutcome>,
        /// Set for a mutual-exclusion audience: the target experience key.
        exclusion_target: Option<String>,
    },
    /// The audience verdict.
    Audiences {
        /// `"all"` or `"any"`.
        all: bool,
        /// Audiences that matched.
        matched: usize,
        /// Audiences checked.
        checked: usize,
    },
    /// Custom-segment membership.
    Segments {
        /// Whether the visitor is in one of the experience's segments.
        matched: bool,
    },
    /// The experience has no variations.
    NoVariations,
    /// A stored (sticky) decision was reused.
    Sticky(String),
    /// A forced variation was applied.
    Forced(String),
    /// A fresh bucket was computed.
    Bucket {
        /// The bucket value (0–9999).
        value: u32,
        /// The layout used.
        layout: Layout,
        /// The variation chosen, if any.
        variation: Option<String>,
    },
}

/// Everything a call asks the SDK to do, in order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Effects {
    /// Writes to the visitor's stored record.
    pub store: Vec<StoreOp>,
    /// Events for the tracking queue.
    pub tracking: Vec<TrackingEvent>,
    /// Lifecycle notices.
    pub notices: Vec<Notice>,
    /// The decision steps, recorded only when this is `Some` (set it to `Some(Vec::new())` to
    /// explain a decision).
    pub trace: Option<Vec<Step>>,
}

impl Effects {
    /// Whether nothing is asked.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.store.is_empty() && self.tracking.is_empty() && self.notices.is_empty()
    }

    /// Clears all lists, keeping their allocations.
    #[inline]
    pub fn clear(&mut self) {
        self.store.clear();
        self.tracking.clear();
        self.notices.clear();
        if let Some(t) = &mut self.trace {
            t.clear();
        }
    }

    /// Drops these effects. When none of the lists holds an allocation (the usual case after a
    /// decision that asked for nothing) there is nothing to free, and the lists' drop code is
    /// skipped.
    #[inline]
    pub fn discard(self) {
        if self.store.capacity() == 0
            && self.tracking.capacity() == 0
            && self.notices.capacity() == 0
            && self.trace.is_none()
        {
            // Owns no memory: forgetting it frees nothing that dropping it would.
            std::mem::forget(self);
        }
    }

    /// Records a step when tracing.
    #[inline]
    fn step(&mut self, f: impl FnOnce() -> Step) {
        if let Some(t) = &mut self.trace {
            t.push(f());
        }
    }
}

/// The decision engine over one config snapshot.
#[derive(Debug, Clone, Copy)]
pub struct Engine<'a> {
    /// The config snapshot.
    pub config: &'a ProjectConfig,
    /// The SDK settings.
    pub settings: &'a EngineSettings,
}

/// A visitor as the engine sees it: id and mutable stored state.
///
/// Two modes: with [`VisitorState::new`] the record is the caller's copy and every write is also
/// returned in [`Effects::store`] for the caller to apply to its data store; with
/// [`VisitorState::in_place`] the record is the stored one itself (the engine runs inside the data
/// store's atomic update), so writes are applied to it directly and not returned.
#[derive(Debug)]
pub struct VisitorState<'a> {
    /// The visitor id.
    pub id: &'a str,
    /// The visitor's stored record.
    pub data: &'a mut StoreData,
    in_place: bool,
    changed: bool,
}

impl<'a> VisitorState<'a> {
    /// A visitor whose record is a copy: writes are returned in [`Effects::store`].
    pub fn new(id: &'a str, data: &'a mut StoreData) -> Self {
        VisitorState {
            id,
            data,
            in_place: false,
            changed: false,
        }
    }

    /// A visitor whose record is the stored one: writes are applied to `data` at once and
    /// [`VisitorState::changed`] tells whether it must be saved.
    pub fn in_place(id: &'a str, data: &'a mut StoreData) -> Self {
        VisitorState {
            id,
            data,
            in_place: true,
            changed: false,
        }
    }

    /// Whether an in-place write changed the record.
    pub fn changed(&self) -> bool {
        self.changed
    }

    /// Merges report segments the visitor was given outside a decision (an SDK context's
    /// attributes) into the record, so that the decision or conversion about to run sees them
    /// and its write-back stores them. Written like a decision's own writes (in place, or
    /// returned in `fx.store`), and only when they change the record: a visitor that already
    /// holds them writes nothing. Returns whether they changed it.
    pub fn seed_segments(&mut self, segments: &Map<String, Value>, fx: &mut Effects) -> bool {
        let op = StoreOp::MergeSegments(segments.clone());
        if !self.data.apply(&op) {
            return false;
        }
        if self.in_place {
            self.changed = true;
        } else {
            fx.store.push(op);
        }
        true
    }

    /// [`VisitorState::seed_segments`] for the segments the record does not hold yet: a segment
    /// it holds, whatever its value, is left as it is. For segments that may have been stored
    /// already by an earlier write whose outcome is unknown (its reply never came): merging them
    /// again in full could undo a newer value written since. Returns whether they changed it.
    pub fn seed_absent_segments(
        &mut self,
        segments: &Map<String, Value>,
        fx: &mut Effects,
    ) -> bool {
        let absent = crate::store::absent_segments(self.data.segments(), segments);
        !absent.is_empty() && self.seed_segments(&absent, fx)
    }

    /// Records a write. In place it is applied to the record; otherwise it is returned in
    /// `fx.store`, and also applied to the local copy when `mirror` is set (later decisions of the
    /// same call must see it).
    pub(crate) fn write(&mut self, op: StoreOp, fx: &mut Effects, mirror: bool) {
        if self.in_place {
            self.changed |= self.data.apply_owned(op);
            return;
        }
        if mirror {
            self.data.apply(&op);
        }
        fx.store.push(op);
    }

    /// [`VisitorState::write`] of a sticky decision. In place, the ids go straight into the
    /// record, without building the op.
    fn write_bucketing(
        &mut self,
        experience_id: &Str,
        variation_id: &Str,
        fx: &mut Effects,
        mirror: bool,
    ) {
        if self.in_place {
            self.changed |= self
                .data
                .set_bucketing(experience_id.clone(), variation_id.clone());
            return;
        }
        let op = StoreOp::Bucketing {
            experience_id: experience_id.clone(),
            variation_id: variation_id.clone(),
        };
        self.write(op, fx, mirror);
    }

    /// [`VisitorState::write`] of the active-location list. In place, the list goes straight
    /// into the record, without building the op.
    #[inline(always)]
    fn write_locations(&mut self, list: ValueList, fx: &mut Effects, mirror: bool) {
        if self.in_place {
            self.changed |= self.data.set_locations(list);
            return;
        }
        self.write(StoreOp::Locations(list), fx, mirror);
    }
}

static EMPTY_MAP: std::sync::LazyLock<Map<String, Value>> = std::sync::LazyLock::new(Map::new);

impl<'a> Engine<'a> {
    /// Creates an engine.
    pub fn new(config: &'a ProjectConfig, settings: &'a EngineSettings) -> Self {
        Engine { config, settings }
    }

    /// Decides experience `key` for the visitor (SPEC §5.2–§5.3).
    #[inline(always)]
    pub fn run_experience(
        &self,
        visitor: &mut VisitorState<'_>,
        key: &str,
        props: &VisitorProps<'_>,
        opts: &RunOptions<'_>,
        fx: &mut Effects,
    ) -> Decision {
        let (index, outcome) = self.run_experience_outcome(visitor, key, props, opts, fx);
        outcome.decision_for(index.and_then(|i| self.config.experiences.get(i)))
    }

    /// [`Engine::run_experience`] without building the decision: the index of the experience in
    /// the config (`None` when no experience has key `key`) and what deciding it came to. The
    /// caller builds the [`Decision`] with [`Outcome::decision`] where it wants it, rather than
    /// having it copied out of the call.
    #[inline(always)]
    pub fn run_experience_outcome(
        &self,
        visitor: &mut VisitorState<'_>,
        key: &str,
        props: &VisitorProps<'_>,
        opts: &RunOptions<'_>,
        fx: &mut Effects,
    ) -> (Option<usize>, Outcome) {
        match self.config.experience_by_key(key) {
            // A single decision: its writes need not be mirrored into the local state.
            Some(exp) => (
                Some(exp.index),
                self.outcome(visitor, exp, props, opts, fx, false),
            ),
            None => {
                fx.step(|| Step::UnknownExperience(key.to_string()));
                (
                    None,
                    Outcome::NotMatched(NotMatchedReason::UnknownExperience),
                )
            }
        }
    }

    /// Decides every experience in config order, keeping only decided variations.
    pub fn run_experiences(
        &self,
        visitor: &mut VisitorState<'_>,
        props: &VisitorProps<'_>,
        opts: &RunOptions<'_>,
        fx: &mut Effects,
    ) -> Vec<BucketedVariation> {
        let mut out = Vec::new();
        for exp in &self.config.experiences {
            if let Decision::Variation(v) = self.decide(visitor, exp, props, opts, fx) {
                out.push(v);
            }
        }
        out
    }

    /// The full decision for one experience. Its writes are also applied to `visitor.data`, so
    /// that further decisions in the same call see them.
    pub fn decide(
        &self,
        visitor: &mut VisitorState<'_>,
        exp: &Experience,
        props: &VisitorProps<'_>,
        opts: &RunOptions<'_>,
        fx: &mut Effects,
    ) -> Decision {
        // Built here from the small `Outcome`, so that a variation's `BucketedVariation` (about
        // 170 bytes) is written once, where the caller wants it.
        self.outcome(visitor, exp, props, opts, fx, true)
            .decision(exp)
    }

    /// The matching (steps 2–8) and the bucketing of one experience.
    fn outcome(
        &self,
        visitor: &mut VisitorState<'_>,
        exp: &Experience,
        props: &VisitorProps<'_>,
        opts: &RunOptions<'_>,
        fx: &mut Effects,
        mirror: bool,
    ) -> Outcome {
        match self.qualify(visitor, exp, props, opts, fx, mirror) {
            Ok(None) => self.bucket(visitor, exp, props, opts, fx, mirror),
            Ok(Some(reason)) => Outcome::NotMatched(reason),
            Err(e) => Outcome::RuleError(e),
        }
    }

    /// Steps 2–8 of the matching: archived, environment, location, audiences, segments.
    /// `Ok(None)` when the visitor qualifies, else the check that failed.
    fn qualify(
        &self,
        visitor: &mut VisitorState<'_>,
        exp: &Experience,
        props: &VisitorProps<'_>,
        opts: &RunOptions<'_>,
        fx: &mut Effects,
        mirror: bool,
    ) -> Result<Option<NotMatchedReason>, RuleError> {
        if exp.archived {
            fx.step(|| Step::Archived);
            return Ok(Some(NotMatchedReason::Archived));
        }
        if let Some(env) = &exp.environment {
            let wanted = opts.environment.unwrap_or(&self.settings.environment);
            let matched = exp.runs_in(wanted);
            fx.step(|| Step::Environment {
                experience: js::to_js_string(env).into_owned(),
                wanted: wanted.to_string(),
                matched,
            });
            if !matched {
                return Ok(Some(NotMatchedReason::Environment));
            }
        }
        let is_bucketed = visitor
            .data
            .bucketed_variation(&exp.id)
            .is_some_and(|vid| exp.variation_by_id(vid).is_some());

        if opts.ignore_location_properties {
            fx.step(|| Step::LocationIgnored);
        } else {
            let loc_props = opts.location_properties.unwrap_or_else(|| &EMPTY_MAP);
            let matched = match &exp.location {
                LocationTarget::Unrestricted => {
                    fx.step(|| Step::LocationUnrestricted);
                    true
                }
                LocationTarget::Locations(idx) if idx.is_empty() => false,
                LocationTarget::Locations(idx) => {
                    self.select_locations(visitor, idx, loc_props, opts, fx, mirror)?
                }
                LocationTarget::SiteArea(rules) => {
                    let outcome = rules.evaluate(loc_props);
                    fx.step(|| Step::SiteArea(outcome));
                    match outcome {
                        RuleOutcome::Matched => true,
                        RuleOutcome::NotMatched => false,
                        RuleOutcome::Error(e) => return Err(e),
                    }
                }
            };
            if !matched {
                return Ok(Some(NotMatchedReason::Location));
            }
        }

        if !exp.audiences.is_empty() {
            let mut checked = 0usize;
            let mut matched = 0usize;
            let mut first_error = None;
            for &ai in &exp.audiences {
                let aud = &self.config.audiences[ai];
                if is_bucketed && aud.permanent {
                    fx.step(|| Step::Audience {
                        key: aud.key.to_string(),
                        outcome: None,
                        exclusion_target: None,
                    });
                    continue;
                }
                checked += 1;
                let Some(rules) = &aud.rules else {
                    fx.step(|| Step::Audience {
                        key: aud.key.to_string(),
                        outcome: None,
                        exclusion_target: None,
                    });
                    continue;
                };
                let exclusion = rules.exclusion_rule();
                let outcome = match exclusion {
                    Some(rule) => {
                        let raw = match self.config.experience_by_key(&rule.target_key) {
                            Some(target) => visitor.data.has_bucketing(&target.id),
                            None => {
                                fx.notices
                                    .push(Notice::UnknownExclusionTarget(rule.target_key.clone()));
                                false
                            }
                        };
                        if raw != rule.negated {
                            RuleOutcome::Matched
                        } else {
                            RuleOutcome::NotMatched
                        }
                    }
                    None => rules.evaluate(props),
                };
                fx.step(|| Step::Audience {
                    key: aud.key.to_string(),
                    outcome: Some(outcome),
                    exclusion_target: exclusion.map(|r| r.target_key.clone()),
                });
                match outcome {
                    RuleOutcome::Matched => matched += 1,
                    RuleOutcome::NotMatched => {}
                    RuleOutcome::Error(e) => {
                        first_error.get_or_insert(e);
                    }
                }
            }
            if let Some(e) = first_error {
                return Err(e);
            }
            if checked > 0 {
                fx.step(|| Step::Audiences {
                    all: exp.audiences_all,
                    matched,
                    checked,
                });
                let ok = if exp.audiences_all {
                    matched == checked
                } else {
                    matched > 0
                };
                if !ok {
                    return Ok(Some(NotMatchedReason::Audience));
                }
            }
        }

        if !exp.segments.is_empty() {
            let member = visitor
                .data
                .segments()
                .and_then(|s| s.get("customSegments"))
                .and_then(Value::as_array);
            let any = exp.segments.iter().any(|&si| {
                let id = self
                    .config
                    .segment_id_values
                    .get(si)
                    .and_then(Option::as_ref);
                match (member, id) {
                    (Some(list), Some(id)) => list.iter().any(|v| strict_eq(v, id)),
                    _ => false,
                }
            });
            fx.step(|| Step::Segments { matched: any });
            if !any {
                return Ok(Some(NotMatchedReason::Segments));
            }
        }
        if exp.variations.is_empty() {
            fx.step(|| Step::NoVariations);
            return Ok(Some(NotMatchedReason::NoVariations));
        }
        Ok(None)
    }

    /// Location activation for experiences with a `locations` list (SPEC §5.6). Returns whether
    /// any location matched.
    fn select_locations(
        &self,
        visitor: &mut VisitorState<'_>,
        locations: &[usize],
        loc_props: &Map<String, Value>,
        opts: &RunOptions<'_>,
        fx: &mut Effects,
        mirror: bool,
    ) -> Result<bool, RuleError> {
        let stored = visitor.data.locations().unwrap_or_default();
        let mut list: Option<ValueList> = None; // copied only when it changes
        let mut any = false;
        let mut first_error = None;
        for &li in locations {
            let loc = &self.config.locations[li];
            let Some(rules) = &loc.rules else { continue };
            let identity = &*loc.key;
            let current = list.as_deref().unwrap_or(stored);
            let pos = current.iter().position(|v| v.as_str() == Some(identity));
            let outcome = rules.evaluate(loc_props);
            fx.step(|| Step::Location {
                key: identity.to_string(),
                outcome,
            });
            match outcome {
                RuleOutcome::Matched => {
                    if pos.is_none() {
                        if !opts.suppress_events {
                            fx.notices.push(Notice::LocationActivated(li));
                        }
                        let value = StoredValue::Str(loc.key.clone());
                        match &mut list {
                            Some(l) => l.push(value),
                            None => list = Some(ValueList::with_pushed(stored, value)),
                        }
                    }
                    any = true;
                }
                RuleOutcome::Error(e) => {
                    first_error.get_or_insert(e);
                }
                RuleOutcome::NotMatched => {
                    if let Some(p) = pos {
                        if !opts.suppress_events {
                            fx.notices.push(Notice::LocationDeactivated(li));
                        }
                        list.get_or_insert_with(|| ValueList::from(stored))
                            .remove(p);
                    }
                }
            }
        }
        // The list is written when it changed, or the first time (as the reference does).
        if opts.enable_storage && (list.is_some() || visitor.data.locations().is_none()) {
            let list = list.unwrap_or_else(|| ValueList::from(stored));
            visitor.write_locations(list, fx, mirror);
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(any),
        }
    }

    /// `_retrieveBucketing`: forced, sticky or fresh decision with its effects.
    fn bucket(
        &self,
        visitor: &mut VisitorState<'_>,
        exp: &Experience,
        props: &VisitorProps<'_>,
        opts: &RunOptions<'_>,
        fx: &mut Effects,
        mirror: bool,
    ) -> Outcome {
        if visitor.id.is_empty() {
            return Outcome::NotMatched(NotMatchedReason::NoVisitorId);
        }
        if !exp.has_id {
            return Outcome::NotMatched(NotMatchedReason::InvalidConfig);
        }
        let forced = opts
            .force_variation_id
            .filter(|f| !f.is_empty())
            .and_then(|f| exp.variation_by_id(f));
        if let Some(stored) = visitor.data.bucketed_variation(&exp.id) {
            let agrees = opts
                .force_variation_id
                .filter(|_| forced.is_some())
                .is_none_or(|f| f == stored);
            if agrees {
                if let Some(vi) = exp.variation_by_id(stored) {
                    fx.step(|| Step::Sticky(stored.to_string()));
                    return Outcome::Variation {
                        index: vi,
                        allocation: None,
                    };
                }
            }
        }
        let prefix: &str = if self.settings.exclude_experience_id_hash {
            ""
        } else {
            &exp.id
        };
        let value = bucket_value(
            prefix,
            visitor.id,
            self.settings.hash_seed,
            self.settings.max_traffic,
        );
        // The layout is walked even for a forced variation: the reference reports the bucket
        // value only when the walk selected a variation, forced or not.
        let selected = if exp.anchored {
            exp.anchored_layout.select(f64::from(value))
        } else {
            exp.packed.select(f64::from(value))
        };
        let chosen = forced.or(selected);
        fx.step(|| Step::Bucket {
            value,
            layout: if exp.anchored {
                Layout::Anchored
            } else {
                Layout::Packed
            },
            variation: chosen.map(|i| exp.variations[i].id.to_string()),
        });
        if let Some(i) = forced {
            fx.step(|| Step::Forced(exp.variations[i].id.to_string()));
        }
        let Some(vi) = chosen else {
            return Outcome::NotDecided;
        };
        let variation = &exp.variations[vi];
        // Taken before the writes below; only a tracking event carries it.
        let segments_before = if opts.enable_tracking {
            visitor.data.segments().and_then(report_segments)
        } else {
            None
        };
        if opts.enable_storage {
            visitor.write_bucketing(&exp.id, &variation.id, fx, mirror);
            if opts.update_visitor_properties {
                visitor.write(StoreOp::MergeSegments(props.materialize()), fx, mirror);
            }
        }
        if opts.enable_tracking {
            fx.tracking.push(TrackingEvent {
                visitor_id: Str::from(visitor.id),
                data: EventData::Bucketing {
                    experience_id: exp.id.clone(),
                    variation_id: variation.id.clone(),
                },
                segments: segments_before,
            });
        }
        // The reference re-reads the variation by its id among the string ids: a non-string id
        // finds nothing, a duplicated one the first variation that has it.
        let Some(returned) = variation.returned_as else {
            return Outcome::NotMatched(NotMatchedReason::InvalidConfig);
        };
        Outcome::Variation {
            index: returned,
            allocation: selected.map(|_| value),
        }
    }
}

/// What deciding one experience came to, before its [`Decision`] is built (a few bytes, where a
/// decision for a variation is about 170).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// Variation `index` of the experience; `allocation` is the bucket of a fresh decision.
    Variation {
        /// Index of the variation in the experience.
        index: usize,
        /// As [`BucketedVariation::bucketing_allocation`].
        allocation: Option<u32>,
    },
    /// As [`Decision::NotMatched`].
    NotMatched(NotMatchedReason),
    /// As [`Decision::RuleError`].
    RuleError(RuleError),
    /// As [`Decision::NotDecided`].
    NotDecided,
}

impl Outcome {
    /// The decision this outcome of experience `exp` stands for.
    #[inline(always)]
    pub fn decision(self, exp: &Experience) -> Decision {
        match self {
            Outcome::Variation { index, allocation } => {
                Decision::Variation(BucketedVariation::of(exp, index, allocation))
            }
            Outcome::NotMatched(reason) => Decision::NotMatched(reason),
            Outcome::RuleError(e) => Decision::RuleError(e),
            Outcome::NotDecided => Decision::NotDecided,
        }
    }

    /// The decision for what [`Engine::run_experience_outcome`] found: `exp` is the experience
    /// at the index it returned, `None` when no experience has the key asked for (the decision
    /// is then `NotMatched(UnknownExperience)`, the only outcome reported without an index).
    #[inline(always)]
    pub fn decision_for(self, exp: Option<&Experience>) -> Decision {
        match exp {
            Some(exp) => self.decision(exp),
            None => Decision::NotMatched(NotMatchedReason::UnknownExperience),
        }
    }
}

/// JS truthiness of an optional JSON value (re-exported for the SDK's convenience).
pub fn truthy(v: Option<&Value>) -> bool {
    js::opt_truthy(v)
}

impl std::fmt::Display for RuleError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RuleError::NoDataFound => {
                f.write_str("a rule found no data to evaluate (convert.com_no_data_found)")
            }
            RuleError::NeedMoreData => {
                f.write_str("a rule needs more data (convert.com_need_more_data)")
            }
        }
    }
}

impl std::error::Error for RuleError {}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn absent_seeded_segments_leave_held_ones_alone() {
        let mut data = StoreData::default();
        data.segments_mut().insert("country".into(), json!("DE"));
        let seg: Map<String, Value> =
            serde_json::from_value(json!({"country": "US", "source": "ad"})).unwrap_or_default();
        let mut fx = Effects::default();
        let mut vs = VisitorState::new("v", &mut data);
        assert!(vs.seed_absent_segments(&seg, &mut fx));
        assert!(!vs.seed_absent_segments(&seg, &mut fx));
        let segments = data.segments().cloned().unwrap_or_default();
        assert_eq!(segments.get("country"), Some(&json!("DE")));
        assert_eq!(segments.get("source"), Some(&json!("ad")));
    }

    #[test]
    fn seeded_segments_are_written_once_in_either_mode() {
        let seg = json!({"country": "US"})
            .as_object()
            .cloned()
            .unwrap_or_default();
        // A copy: the op is returned, and the copy shows the segments to the decision.
        let mut data = StoreData::default();
        let mut fx = Effects::default();
        let mut vs = VisitorState::new("v", &mut data);
        assert!(vs.seed_segments(&seg, &mut fx));
        assert_eq!(fx.store, vec![StoreOp::MergeSegments(seg.clone())]);
        assert_eq!(vs.data.segments(), Some(&seg));
        // Already held: nothing to write.
        fx.clear();
        assert!(!vs.seed_segments(&seg, &mut fx));
        assert!(fx.store.is_empty());
        // In place: applied to the record and reported as a change, no op returned.
        let mut stored = StoreData::default();
        let mut vs = VisitorState::in_place("v", &mut stored);
        assert!(vs.seed_segments(&seg, &mut fx));
        assert!(vs.changed() && fx.store.is_empty());
        assert_eq!(stored.segments(), Some(&seg));
    }

    #[test]
    fn js_value_carries_the_served_experience_name_and_variation_members() {
        let cfg = ProjectConfig::from_value(json!({
            "account_id": "1", "project": {"id": "2"},
            "experiences": [
                {"id": 10, "key": "first", "variations": [{"id": "11"}]},
                {"id": "20", "key": "second", "name": 5, "variations": [
                    {"id": "21", "key": "a"},
                    {"id": "22", "key": "b", "traffic_allocation": 50,
                     "experienceKey": "clash", "changes": [{"data": {"x": [1]}}]}
                ]}
            ]
        }));
        assert!(cfg.is_ok(), "{:?}", cfg.err());
        let Ok(cfg) = cfg else { return };
        let exp = cfg.experience_by_key("second");
        assert!(exp.is_some());
        let Some(exp) = exp else { return };
        let v = BucketedVariation::of(exp, 1, Some(4200)).to_js_value(&cfg);
        assert_eq!(
            v,
            json!({"experienceId": "20", "experienceName": 5, "experienceKey": "clash",
                   "bucketingAllocation": 4200, "id": "22", "key": "b", "traffic_allocation": 50,
                   "changes": [{"data": {"x": [1]}}]})
        );
        // An id served as a number is echoed as one (the typed field holds its string form).
        let first = cfg.experience_by_key("first");
        assert!(first.is_some());
        let Some(first) = first else { return };
        let v = BucketedVariation::of(first, 0, None);
        assert_eq!(v.experience_id(), "10");
        assert_eq!(
            v.to_js_value(&cfg),
            json!({"experienceId": 10, "experienceKey": "first", "id": "11"})
        );
    }

    /// Threads deciding for the same experience must not share a reference count: every id,
    /// key and name a decision carries copies without touching shared memory, even when it is
    /// longer than the 23 bytes a `Str` holds inline.
    #[test]
    fn long_ids_keys_and_names_are_copied_without_a_reference_count() {
        let long = |what: &str| format!("{what} long enough not to fit inline in a Str");
        let cfg = ProjectConfig::from_value(json!({
            "account_id": "1", "project": {"id": "2"},
            "experiences": [{"id": long("experience id"), "key": long("experience key"),
                "name": long("experience name"),
                "variations": [{"id": long("variation id"), "key": long("variation key"),
                                "name": long("variation name")}]}]
        }));
        assert!(cfg.is_ok(), "{:?}", cfg.err());
        let Ok(cfg) = cfg else { return };
        let exp = cfg.experience_by_key(&long("experience key"));
        assert!(exp.is_some(), "the experience is indexed by its key");
        let Some(exp) = exp else { return };
        let v = BucketedVariation::of(exp, 0, Some(1));
        let fields = [
            Some(&v.experience_id),
            Some(&v.experience_key),
            v.experience_name.as_ref(),
            Some(&v.variation_id),
            v.variation_key.as_ref(),
            v.variation_name.as_ref(),
        ];
        assert!(fields.iter().all(Option::is_some), "every field is set");
        for f in fields.into_iter().flatten() {
            assert!(f.len() > 23, "{f}");
            assert!(!f.is_heap_allocated(), "{f} is reference-counted");
        }
        assert_eq!(v.variation_name.as_deref(), Some(&*long("variation name")));
    }

    /// A forced variation reports the bucket value only when the layout walk selected a
    /// variation itself (the reference's `getBucketForVisitor` answers nothing otherwise): an
    /// experience whose only arm is stopped, and one whose arms cover 30 % of the range, decide
    /// the forced arm with no `bucketingAllocation` for a visitor the walk leaves out, and with
    /// it for one the walk covers. Found by the random differential (`cargo xtask differential`).
    #[test]
    fn a_forced_variation_has_an_allocation_only_when_the_walk_selected_one() {
        let cfg = ProjectConfig::from_value(json!({
            "account_id": "1", "project": {"id": "2"},
            "experiences": [
                {"id": "10", "key": "stopped", "variations": [
                    {"id": "11", "traffic_allocation": 100, "status": "stopped"}]},
                {"id": "20", "key": "partial", "variations": [
                    {"id": "21", "traffic_allocation": 10}, {"id": "22", "traffic_allocation": 20}]}
            ]
        }));
        assert!(cfg.is_ok(), "{:?}", cfg.err());
        let Ok(cfg) = cfg else { return };
        let settings = EngineSettings::default();
        let engine = Engine::new(&cfg, &settings);
        let decide = |key: &str, visitor: &str, forced: Option<&str>| {
            let opts = RunOptions {
                ignore_location_properties: true,
                force_variation_id: forced,
                ..RunOptions::default()
            };
            let mut data = StoreData::default();
            let mut vs = VisitorState::new(visitor, &mut data);
            let props = VisitorProps::new(None, None, None);
            engine.run_experience(&mut vs, key, &props, &opts, &mut Effects::default())
        };
        let value = |exp: &str, visitor: &str| {
            crate::hash::bucket_value(exp, visitor, settings.hash_seed, settings.max_traffic)
        };
        let allocation = |d: &Decision| match d {
            Decision::Variation(v) => Some((v.variation_id().to_string(), v.bucketing_allocation)),
            _ => None,
        };
        // The stopped arm is never selected by the walk: no allocation, forced or not.
        assert_eq!(decide("stopped", "v-1", None), Decision::NotDecided);
        assert_eq!(
            allocation(&decide("stopped", "v-1", Some("11"))),
            Some(("11".to_string(), None))
        );
        // 10 % + 20 %: the walk covers values below 3,000.
        let visitors: Vec<String> = (0..200).map(|i| format!("visitor-{i}")).collect();
        let outside = visitors.iter().find(|v| value("20", v) >= 3000);
        let inside = visitors.iter().find(|v| value("20", v) < 3000);
        assert!(outside.is_some() && inside.is_some());
        let (Some(outside), Some(inside)) = (outside, inside) else {
            return;
        };
        assert_eq!(
            allocation(&decide("partial", outside, Some("22"))),
            Some(("22".to_string(), None))
        );
        assert_eq!(
            allocation(&decide("partial", inside, Some("22"))),
            Some(("22".to_string(), Some(value("20", inside))))
        );
    }

    /// A decision made in place (writes applied to the record at once, some without building the
    /// op) must leave the record a copy plus its returned writes would, and report a change
    /// exactly when the record changed: locations activated, kept and deactivated.
    #[test]
    fn in_place_writes_match_the_returned_ops() {
        let rule = |page: &str| {
            json!({"OR": [{"AND": [{"OR_WHEN": [{"key": "page",
                "matching": {"match_type": "equals", "negated": false}, "value": page}]}]}]})
        };
        let cfg = ProjectConfig::from_value(json!({
            "account_id": "1", "project": {"id": "2"},
            "experiences": [{"id": "100", "key": "exp", "locations": ["50", "51"],
                "variations": [{"id": "101", "key": "a", "traffic_allocation": 100}]}],
            "locations": [{"id": "50", "key": "home", "rules": rule("home")},
                          {"id": "51", "key": "shop", "rules": rule("shop")}]
        }));
        assert!(cfg.is_ok(), "{:?}", cfg.err());
        let Ok(cfg) = cfg else { return };
        let settings = EngineSettings::default();
        let engine = Engine::new(&cfg, &settings);
        let props = VisitorProps::default();
        let mut in_place = StoreData::default();
        let mut copy = StoreData::default();
        for page in ["home", "home", "shop", "none", "none", "home"] {
            let loc = json!({"page": page});
            let loc = loc.as_object();
            let opts = RunOptions {
                location_properties: loc,
                ..RunOptions::default()
            };
            let before = in_place.clone();
            let mut fx = Effects::default();
            let mut vs = VisitorState::in_place("v", &mut in_place);
            let a = engine.run_experience(&mut vs, "exp", &props, &opts, &mut fx);
            let changed = vs.changed();
            assert!(fx.store.is_empty(), "{page}: in place, nothing is returned");
            let mut fx = Effects::default();
            let mut work = copy.clone();
            let mut vs = VisitorState::new("v", &mut work);
            let b = engine.run_experience(&mut vs, "exp", &props, &opts, &mut fx);
            copy.apply_all(&fx.store);
            assert_eq!(a, b, "{page}");
            assert_eq!(in_place.to_json(), copy.to_json(), "{page}");
            assert_eq!(changed, before.to_json() != in_place.to_json(), "{page}");
        }
        assert_eq!(in_place.locations().map(<[_]>::len), Some(1));
    }

    /// The `name: "RuleData"` flag `VisitorProps` finds once must say what a lookup of `name`
    /// through the layers says, and make the properties a custom provider (every rule false).
    #[test]
    fn visitor_props_rule_data_flag_matches_the_merged_lookup() {
        use crate::rules::RuleSet;
        let obj = |v: Value| v.as_object().cloned().unwrap_or_default();
        let layers = [
            None,
            Some(obj(json!({}))),
            Some(obj(json!({"a": 1}))),
            Some(obj(json!({"a": 1, "name": "RuleData"}))),
            Some(obj(json!({"name": "other"}))),
            Some(obj(json!({"name": {"x": "RuleData"}}))),
            Some(obj(json!({"name": ["RuleData"]}))),
            Some(obj(json!({"name": null}))),
        ];
        let any = RuleSet::compile(&json!({"OR": [{"AND": [{"OR_WHEN": [
            {"key": "a", "matching": {"match_type": "exists", "negated": false}}
        ]}]}]}));
        let mut custom_seen = 0;
        for call in &layers {
            for context in &layers {
                for stored in &layers {
                    let props = VisitorProps::new(call.as_ref(), context.as_ref(), stored.as_ref());
                    let by_lookup = props
                        .lookup("name")
                        .is_some_and(|v| v.as_str() == Some("RuleData"));
                    assert_eq!(props.names_rule_data(), by_lookup, "{props:?}");
                    let has_a = props.lookup("a").is_some();
                    assert_eq!(
                        any.evaluate(&props).is_match(),
                        has_a && !by_lookup,
                        "{props:?}"
                    );
                    let dynamic: &dyn RuleData = &props;
                    assert_eq!(any.evaluate(dynamic), any.evaluate(&props));
                    custom_seen += usize::from(by_lookup);
                }
            }
        }
        assert!(custom_seen > 0);
        // A lower layer's marker is hidden by an upper layer's other `name`.
        let top = obj(json!({"name": "x", "a": 1}));
        let low = obj(json!({"name": "RuleData"}));
        let props = VisitorProps::new(Some(&top), None, Some(&low));
        assert!(!props.names_rule_data());
        assert!(any.evaluate(&props).is_match());
        let props = VisitorProps::new(None, Some(&low), Some(&top));
        assert!(props.names_rule_data());
        assert!(!any.evaluate(&props).is_match());
        assert!(!VisitorProps::default().names_rule_data());
    }
}
