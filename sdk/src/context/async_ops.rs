//! The async variants of the context methods that may touch a network store (cargo feature
//! `tokio`).
//!
//! A decision is "decide as for a new visitor (sync, pure), one round trip (await), and only
//! for a returning visitor decide again on the stored record and write what changed (await)":
//! each decision step runs the very same sync method on a record handed to
//! `Context::with_state_on` through a per-thread slot for the length of that step (which contains
//! no await); the store writes it produced are collected there, and the effects and events of
//! the speculative first step are held until its decision is known to stand. A conversion is
//! "read (await), decide (sync), mark the goal atomically (await)".

use super::{
    Context, FeatureDecision, Stored, Who, convert_on, default_segments_op, mark_lost, settle_held,
    visitor_properties_op,
};
use crate::asynchronous::{AsyncStore, detached};
use crate::attributes::{BucketingAttributes, ConversionAttributes};
use crate::core::Core;
use crate::store_guard::Unanswered;
use convert_core::engine::{Effects, Engine, VisitorState};
use convert_core::features::BucketedFeature;
use convert_core::{BucketedVariation, ConversionOutcome, Decision, RuleError, StoreData};
use convert_ports::{SdkEvent, StoreOp};
use serde_json::{Map, Value};
use std::cell::RefCell;
use std::time::Instant;

thread_local! {
    /// The record an async call decides on, and what its sync decision step produced.
    static PREFETCHED: RefCell<Option<Prefetched>> = const { RefCell::new(None) };
}

struct Prefetched {
    record: StoreData,
    ops: Vec<StoreOp>,
    /// `Some` while the decision is speculative (made as for a new visitor before the store
    /// answered): its effects and SDK events are kept here, and take effect only if it stands.
    held: Option<Held>,
}

/// The effects and SDK events of a speculative decision.
#[derive(Default)]
struct Held {
    effects: Vec<Effects>,
    events: Vec<SdkEvent>,
}

/// The slot filled for one sync decision step; emptied when dropped, even by unwinding.
struct Slot;

impl Slot {
    fn fill(record: StoreData, speculative: bool) -> Slot {
        PREFETCHED.with(|p| {
            *p.borrow_mut() = Some(Prefetched {
                record,
                ops: Vec::new(),
                held: speculative.then(Held::default),
            })
        });
        Slot
    }

    /// The store writes of the step, and (speculative) its held effects and events.
    fn take(self) -> (Vec<StoreOp>, Option<Held>) {
        PREFETCHED
            .with(|p| p.borrow_mut().take())
            .map(|p| (p.ops, p.held))
            .unwrap_or_default()
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let _ = PREFETCHED.try_with(|p| p.borrow_mut().take());
    }
}

impl Context {
    /// Inside an async call's decision step: decides on the loaded record, keeps the store
    /// writes for the write-back, and handles the events as the sync path does (or holds them,
    /// in a speculative step). `None` outside one (then nothing is done).
    pub(super) fn decide_prefetched<R>(
        &self,
        f: &mut impl FnMut(&Engine<'_>, &mut VisitorState<'_>, &mut Effects) -> R,
    ) -> Option<R> {
        let mut pre = PREFETCHED
            .try_with(|p| p.borrow_mut().take())
            .ok()
            .flatten()?;
        let cfg = self.core.config();
        let engine = Engine::new(&cfg, &self.core.inner.settings);
        let mut fx = Effects::default();
        let r = f(
            &engine,
            &mut VisitorState::new(&self.visitor_id, &mut pre.record),
            &mut fx,
        );
        pre.ops.append(&mut fx.store);
        match &mut pre.held {
            Some(held) => held.effects.push(fx),
            None => self.apply(&cfg, None, fx),
        }
        PREFETCHED.with(|p| *p.borrow_mut() = Some(pre));
        Some(r)
    }

    /// An SDK event about to be fired: kept (`None`) while a speculative decision step runs
    /// on this thread, to be fired only if that decision stands; otherwise handed back.
    pub(crate) fn hold_event(event: SdkEvent) -> Option<SdkEvent> {
        PREFETCHED
            .try_with(
                |p| match p.borrow_mut().as_mut().and_then(|p| p.held.as_mut()) {
                    Some(held) => {
                        held.events.push(event);
                        None
                    }
                    None => Some(event),
                },
            )
            .unwrap_or(None)
    }

    /// A speculative decision stands: its effects and events take effect now.
    fn release(&self, held: Option<Held>) {
        let Some(held) = held else { return };
        let cfg = self.core.config();
        for fx in held.effects {
            self.apply(&cfg, None, fx);
        }
        let events = &self.core.inner.shared.events;
        for e in held.events {
            events.fire(&e);
        }
    }

    /// Runs the sync method `decide` against the async store in as few round trips as the sync
    /// path (`Context::decide_remote`): `decide` runs as for a new visitor, its effects and
    /// events held; then one round trip: `create` its record (`SET … NX GET`), or, when it
    /// writes nothing, `get`. A new visitor's decision then stands; a returning visitor is
    /// decided again on the stored record and only what changed is written, against it. When
    /// the store does not answer, the decision comes from the hash and nothing is written (a
    /// stored decision the store shows later is not overwritten). The `_async` methods run this
    /// to its end even when their caller stops awaiting ([`Context::decide_detached`]), so a
    /// caller's drop cannot cut it between the store's command and the events. Without an async
    /// store (or a config), `decide` runs as is.
    async fn decide_async<R>(&self, decide: impl Fn(&Context) -> R) -> R {
        let shared = &self.core.inner.shared;
        // Without a visitor id nothing is decided or stored: there is no record to read.
        let (Some(astore), Some(key), false) = (
            shared.async_store.as_ref(),
            self.store_key(),
            self.visitor_id.is_empty(),
        ) else {
            return decide(self);
        };
        let events = &shared.events;
        let deadline = astore.deadline();
        // Both steps merge the segments given at creation; this call stores them.
        let seeding = self.seed_to_store().is_some();
        let slot = Slot::fill(StoreData::default(), true);
        let first = decide(self);
        let (ops, held) = slot.take();
        // Whether this call's writes (and the segments given at creation among them) are stored.
        let mut written = true;
        let stored = if ops.is_empty() {
            astore.read(events, key, deadline).await
        } else {
            let mut record = StoreData::default();
            record.apply_all(&ops);
            match astore.create(events, key, &record, deadline).await {
                Ok(Ok(found)) => Ok(found),
                // Unreadable: decided as new, and the record is replaced by this call's writes.
                Ok(Err(_)) => {
                    let r = astore.apply(events, key, None, &ops, deadline).await;
                    written = matches!(r, Ok(Ok(_)));
                    Ok(None)
                }
                Err(e) => Err(e),
            }
        };
        let answered = stored.is_ok();
        let out = match stored {
            Ok(Some(stored)) => {
                drop(held);
                let slot = Slot::fill(stored.clone(), false);
                let out = decide(self);
                let (ops, _) = slot.take();
                if !ops.is_empty() {
                    // A failure is counted and logged by the guard; the write is not retried.
                    let r = astore
                        .apply(events, key, Some(&stored), &ops, deadline)
                        .await;
                    written = matches!(r, Ok(Ok(_)));
                }
                out
            }
            Ok(None) | Err(_) => {
                self.release(held);
                first
            }
        };
        // The segments given at creation are stored with this call's writes once the store
        // confirmed them; otherwise a later call that reads the record stores what it lacks.
        if seeding {
            self.seed_attempted(answered && written);
        }
        if answered {
            reconcile_held_async(&self.core, astore, deadline, false).await;
        }
        out
    }

    /// Whether the `_async` methods have an async store to work on for this context (otherwise
    /// they are the sync methods).
    fn uses_async_store(&self) -> bool {
        self.core.inner.shared.async_store.is_some() && !self.visitor_id.is_empty()
    }

    /// [`Context::decide_async`], run to its end even if the caller stops awaiting
    /// ([`detached`]): a new visitor's decision the store wrote still sends its events, and a
    /// reconciliation is not stopped halfway.
    async fn decide_detached<R: Send + 'static>(
        &self,
        decide: impl Fn(&Context) -> R + Send + Sync + 'static,
    ) -> R {
        let Some(astore) = self.core.inner.shared.async_store.as_ref() else {
            return decide(self);
        };
        let ctx = self.clone();
        detached(
            astore,
            "decision",
            async move { ctx.decide_async(decide).await },
        )
        .await
    }

    /// [`Context::run_experience`] for async hosts: the visitor's record comes from the async
    /// store (`CoreBuilder::async_data_store`) without blocking the task. Dropping this future
    /// before it is done stops the wait, not the work (the rest runs as a tokio task), so a
    /// decision the store wrote is still reported. Without an async store this is
    /// `run_experience`.
    pub async fn run_experience_async(&self, key: &str, attrs: &BucketingAttributes) -> Decision {
        if !self.uses_async_store() {
            return self.run_experience(key, attrs);
        }
        let (key, attrs) = (key.to_owned(), attrs.clone());
        self.decide_detached(move |c| c.run_experience(&key, &attrs))
            .await
    }

    /// [`Context::run_experiences`] on the async store (see [`Context::run_experience_async`]).
    pub async fn run_experiences_async(
        &self,
        attrs: &BucketingAttributes,
    ) -> Vec<BucketedVariation> {
        if !self.uses_async_store() {
            return self.run_experiences(attrs);
        }
        let attrs = attrs.clone();
        self.decide_detached(move |c| c.run_experiences(&attrs))
            .await
    }

    /// [`Context::run_feature`] on the async store (see [`Context::run_experience_async`]).
    pub async fn run_feature_async(
        &self,
        key: &str,
        attrs: &BucketingAttributes,
    ) -> FeatureDecision {
        if !self.uses_async_store() {
            return self.run_feature(key, attrs);
        }
        let (key, attrs) = (key.to_owned(), attrs.clone());
        self.decide_detached(move |c| c.run_feature(&key, &attrs))
            .await
    }

    /// [`Context::run_features`] on the async store (see [`Context::run_experience_async`]).
    pub async fn run_features_async(
        &self,
        attrs: &BucketingAttributes,
    ) -> Result<Vec<BucketedFeature>, crate::RuleErrors> {
        if !self.uses_async_store() {
            return self.run_features(attrs);
        }
        let attrs = attrs.clone();
        self.decide_detached(move |c| c.run_features(&attrs)).await
    }

    /// [`Context::run_custom_segments`] on the async store (see
    /// [`Context::run_experience_async`]).
    pub async fn run_custom_segments_async(
        &self,
        segment_keys: &[&str],
        rule_data: impl Into<crate::Attributes>,
    ) -> Result<Option<Map<String, Value>>, RuleError> {
        let rule_data = rule_data.into();
        if !self.uses_async_store() {
            return self.run_custom_segments(segment_keys, rule_data.as_map());
        }
        let keys: Vec<String> = segment_keys.iter().map(|k| (*k).to_owned()).collect();
        self.decide_detached(move |c| {
            let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
            c.run_custom_segments(&keys, rule_data.as_map())
        })
        .await
    }

    /// [`Context::set_default_segments`] on the async store: the report segments are merged into
    /// the visitor's record there in one atomic write, bounded by the call deadline. When the
    /// store does not answer, the write is counted and logged, not retried (as with the sync
    /// store). Without an async store this is `set_default_segments`.
    pub async fn set_default_segments_async(&self, segments: impl Into<crate::Attributes>) {
        if self.preview.is_some() {
            return;
        }
        if let Some(op) = default_segments_op(segments.into()) {
            self.write_async(op).await;
        }
    }

    /// [`Context::update_visitor_properties`] on the async store (see
    /// [`Context::set_default_segments_async`]).
    pub async fn update_visitor_properties_async(&self, properties: impl Into<crate::Attributes>) {
        if self.preview.is_some() {
            return;
        }
        self.write_async(visitor_properties_op(properties.into()))
            .await;
    }

    /// [`Context::get_visitor_data`] from the async store: the visitor's record as stored, with
    /// the report segments given at `create_context` merged in while no call has stored them
    /// yet (the record as the context's next call sees it). An empty record when the store does
    /// not answer within the call deadline, or without a visitor id. Without an async store this
    /// is `get_visitor_data`.
    pub async fn get_visitor_data_async(&self) -> StoreData {
        let shared = &self.core.inner.shared;
        let Some(astore) = shared.async_store.as_ref() else {
            return self.get_visitor_data();
        };
        let Some(key) = self.store_key().filter(|_| !self.visitor_id.is_empty()) else {
            return StoreData::default();
        };
        let mut data = astore
            .read(&shared.events, key, astore.deadline())
            .await
            .ok()
            .flatten()
            .unwrap_or_default();
        self.merge_pending_seed(&mut data);
        data
    }

    /// Writes `op` to the visitor's record in the async store, after the report segments given
    /// at creation when they are not stored yet (so this write wins over them).
    async fn write_async(&self, op: StoreOp) {
        let Some(astore) = self.core.inner.shared.async_store.as_ref() else {
            return self.write(&[op]);
        };
        if self.visitor_id.is_empty() {
            log::debug!("convert: no visitor id; visitor data not stored");
            return;
        }
        let Some(key) = self.store_key() else {
            log::debug!("convert: no config yet; visitor data not stored");
            return;
        };
        // After an unconfirmed attempt, the segments given at creation wait for a call that reads
        // the record: merged blind, they could undo a newer value.
        let seeded = self.with_blind_seed(std::slice::from_ref(&op));
        let seeding = seeded.is_some();
        let ops = seeded.unwrap_or_else(|| vec![op]);
        // Run to its end even if the caller stops awaiting, so that the segments given at
        // creation are marked stored exactly when the write that holds them was (a dropped
        // caller cannot leave them to be merged again over this newer write).
        let (ctx, key) = (self.clone(), key.to_owned());
        detached(astore, "segment write", async move {
            let Some(astore) = ctx.core.inner.shared.async_store.as_ref() else {
                return;
            };
            let events = &ctx.core.inner.shared.events;
            // A failure is counted and logged by the guard; the write is not retried, and the
            // segments given at creation are left to a later call.
            let written = astore
                .apply(events, &key, None, &ops, astore.deadline())
                .await;
            if seeding {
                ctx.seed_attempted(matches!(written, Ok(Ok(_))));
            }
        })
        .await;
    }

    /// [`Context::track_conversion`] on the async store: the same exactly-once protocol (the
    /// goal mark and the decision to send are one atomic store operation; while the store does
    /// not answer, the conversion is held and reconciled later). The work runs to its end even
    /// if the caller stops awaiting (the rest runs as a tokio task), so a client that
    /// disconnected cannot leave a goal marked in the store without its conversion queued.
    pub async fn track_conversion_async(
        &self,
        goal_key: &str,
        attrs: &ConversionAttributes,
    ) -> Result<ConversionOutcome, RuleError> {
        let Some(astore) = self.core.inner.shared.async_store.as_ref() else {
            return self.track_conversion(goal_key, attrs);
        };
        let ctx = self.clone();
        let goal = goal_key.to_string();
        let attrs = attrs.clone();
        detached(astore, "conversion", async move {
            ctx.convert_async(&goal, &attrs).await
        })
        .await
    }

    async fn convert_async(
        &self,
        goal_key: &str,
        attrs: &ConversionAttributes,
    ) -> Result<ConversionOutcome, RuleError> {
        let shared = &self.core.inner.shared;
        let Some(astore) = shared.async_store.as_ref() else {
            return self.track_conversion(goal_key, attrs);
        };
        let key = match self.conversion_key() {
            Ok(key) => key,
            Err(outcome) => return Ok(outcome),
        };
        let goal_data = attrs.goal_data();
        let force = attrs.force_multiple_transactions;
        let deadline = astore.deadline();
        let stored = convert_in_async_store(
            &self.core,
            astore,
            Who {
                id: &self.visitor_id,
                seeded: self.seed_to_store(),
            },
            key,
            goal_key,
            attrs.rule_data.as_ref(),
            goal_data.as_ref(),
            force,
            deadline,
        )
        .await;
        self.seed_attempted(stored.is_ok());
        let result = match stored {
            Ok((result, events)) => {
                self.core.enqueue(events);
                reconcile_held_async(&self.core, astore, deadline, false).await;
                result
            }
            Err(_) => self.convert_unanswered(
                &astore.guard,
                key,
                goal_key,
                attrs
                    .rule_data
                    .as_ref()
                    .map(|m| m as &dyn convert_core::rules::RuleData),
                goal_data,
                force,
            ),
        };
        self.conversion_done(goal_key, &result);
        result
    }
}

/// `convert_in_store` on the async store: read, decide, mark the goal in one atomic operation,
/// and keep the events only when this call's mark won.
#[allow(clippy::too_many_arguments)]
async fn convert_in_async_store(
    core: &Core,
    astore: &AsyncStore,
    who: Who<'_>,
    key: &str,
    goal_key: &str,
    rule_data: Option<&Map<String, Value>>,
    goal_data: Option<&Value>,
    force: bool,
    deadline: Instant,
) -> Stored {
    let events = &core.inner.shared.events;
    let rules = || rule_data.map(|m| m as &dyn convert_core::rules::RuleData);
    let seen = astore.read(events, key, deadline).await?;
    let mut data = seen.clone().unwrap_or_default();
    let (mut result, mut fx) =
        convert_on(core, who, goal_key, rules(), goal_data, force, &mut data);
    if fx.store.is_empty() {
        return Ok((result, fx.tracking));
    }
    let applied = match astore
        .apply(events, key, seen.as_ref(), &fx.store, deadline)
        .await?
    {
        Ok(a) => a,
        // Endless contention: treated as no answer (the conversion is held).
        Err(_) => return Err(Unanswered::Failed),
    };
    if mark_lost(seen.as_ref(), &applied, &fx.store, goal_key) {
        let mut marked = seen.unwrap_or_default();
        marked.mark_goal(goal_key);
        (result, fx) = convert_on(core, who, goal_key, rules(), goal_data, force, &mut marked);
    }
    Ok((result, fx.tracking))
}

/// `reconcile_held` on the async store: a batch of held conversions, each marked atomically and
/// sent only when its mark wins, while at least half of the call's deadline is left (`probe`:
/// as [`StoreGuard::take_batch`](crate::store_guard::StoreGuard::take_batch)).
async fn reconcile_held_async(core: &Core, astore: &AsyncStore, deadline: Instant, probe: bool) {
    let guard = &astore.guard;
    let Some(mut batch) = guard.take_batch(probe) else {
        return;
    };
    while let Some(h) = batch.next() {
        if guard.time_short_until(deadline) {
            return;
        }
        let outcome = convert_in_async_store(
            core,
            astore,
            Who {
                id: &h.visitor_id,
                seeded: None,
            },
            &h.key,
            &h.goal_key,
            None,
            h.goal_data.as_ref(),
            h.force,
            deadline,
        )
        .await;
        if !settle_held(core, guard, &h, outcome) {
            return;
        }
        batch.settled();
    }
}

impl Core {
    /// [`Core::reconcile_store`] for the async store (`CoreBuilder::async_data_store`): one
    /// batch of the conversions it held while it did not answer, each marked atomically and sent
    /// only when its mark wins, within one call deadline. Returns the number the async store
    /// still holds (without an async store: `reconcile_store`). Async calls do this too, once
    /// the store answers again; call it before `close` to settle what is left.
    pub async fn reconcile_store_async(&self) -> u64 {
        self.reconcile_async_until(None).await
    }

    /// [`Core::reconcile_store_async`], stopping (as it stops at half its call deadline) when
    /// less than half a call deadline is left before `until`.
    pub(crate) async fn reconcile_async_until(&self, until: Option<Instant>) -> u64 {
        let Some(astore) = self.inner.shared.async_store.as_ref() else {
            return self.reconcile_store();
        };
        // Run to its end even if the caller stops awaiting: it cannot be stopped between a
        // goal's mark and its conversion.
        let core = self.clone();
        detached(astore, "reconciliation", async move {
            if let Some(astore) = core.inner.shared.async_store.as_ref() {
                let deadline = astore.deadline();
                let deadline = until.map_or(deadline, |u| u.min(deadline));
                reconcile_held_async(&core, astore, deadline, true).await;
            }
        })
        .await;
        astore.guard.held_count()
    }
}
