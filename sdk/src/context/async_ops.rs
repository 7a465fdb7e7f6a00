//! The async variants of the context methods that may touch a network store (cargo feature
//! `tokio`).
//!
//! Each is "load the visitor record (await), decide (sync, pure), write back (await)": the
//! decision runs the very same sync method on the record loaded beforehand (handed to
//! `Context::with_state` through a per-thread slot for the length of that sync step, which
//! contains no await), and the store writes it produced are collected and written back
//! afterwards, in one atomic operation against the record read.

use super::{Context, FeatureDecision, Stored, convert_on, mark_lost, settle_held};
use crate::asynchronous::AsyncStore;
use crate::attributes::{BucketingAttributes, ConversionAttributes};
use crate::core::Core;
use crate::store_guard::{HeldConversion, Unanswered};
use convert_core::engine::{Effects, Engine, VisitorState};
use convert_core::features::BucketedFeature;
use convert_core::{BucketedVariation, ConversionOutcome, Decision, RuleError, StoreData};
use convert_ports::StoreOp;
use serde_json::{Map, Value};
use std::cell::RefCell;
use std::collections::VecDeque;
use std::time::Instant;

thread_local! {
    /// The record an async call loaded, and the writes its sync decision step produced.
    static PREFETCHED: RefCell<Option<Prefetched>> = const { RefCell::new(None) };
}

struct Prefetched {
    record: StoreData,
    ops: Vec<StoreOp>,
}

/// The slot filled for one sync decision step; emptied when dropped, even by unwinding.
struct Slot;

impl Slot {
    fn fill(record: StoreData) -> Slot {
        PREFETCHED.with(|p| {
            *p.borrow_mut() = Some(Prefetched {
                record,
                ops: Vec::new(),
            })
        });
        Slot
    }

    fn take_ops(self) -> Vec<StoreOp> {
        PREFETCHED
            .with(|p| p.borrow_mut().take())
            .map(|p| p.ops)
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
    /// writes for the write-back, and handles the events as the sync path does. `None` outside
    /// one (then nothing is done).
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
        self.apply(&cfg, None, fx);
        PREFETCHED.with(|p| *p.borrow_mut() = Some(pre));
        Some(r)
    }

    /// Runs the sync method `decide` on the visitor's record loaded from the async store, then
    /// writes its store writes back. Without an async store (or a config), `decide` runs as is.
    async fn decide_async<R>(&self, decide: impl FnOnce(&Context) -> R) -> R {
        let shared = &self.core.inner.shared;
        let (Some(astore), Some(key)) = (shared.async_store.as_ref(), self.store_key()) else {
            return decide(self);
        };
        let deadline = astore.deadline();
        let seen = astore.read(&shared.events, key, deadline).await;
        // Not answered: the decision comes from the hash and nothing is written (a stored
        // decision the store shows later is not overwritten), as on the sync path.
        let answered = seen.is_ok();
        let seen = seen.unwrap_or_default();
        let slot = Slot::fill(seen.clone().unwrap_or_default());
        let out = decide(self);
        let ops = slot.take_ops();
        if answered {
            if !ops.is_empty() {
                self.write_back(astore, key, seen, &ops, deadline).await;
            }
            reconcile_held_async(&self.core, astore, deadline).await;
        }
        out
    }

    /// Writes a decision's store writes back in one atomic operation against the record read.
    /// A failure is counted and logged by the guard; the write is not retried.
    async fn write_back(
        &self,
        astore: &AsyncStore,
        key: &str,
        seen: Option<StoreData>,
        ops: &[StoreOp],
        deadline: Instant,
    ) {
        let events = &self.core.inner.shared.events;
        let Some(seen) = seen else {
            let mut record = StoreData::default();
            record.apply_all(ops);
            match astore.create(events, key, &record, deadline).await {
                // Another writer created the record since it was read: its sticky decisions
                // stay, the rest of this call's writes are added.
                Ok(Ok(Some(stored))) => {
                    let rest: Vec<StoreOp> = ops
                        .iter()
                        .filter(|op| {
                            !matches!(op, StoreOp::Bucketing { experience_id, .. }
                                if stored.has_bucketing(experience_id))
                        })
                        .cloned()
                        .collect();
                    let _ = astore
                        .apply(events, key, Some(&stored), &rest, deadline)
                        .await;
                }
                // Unreadable: replaced by this call's writes.
                Ok(Err(_)) => {
                    let _ = astore.apply(events, key, None, ops, deadline).await;
                }
                Ok(Ok(None)) | Err(_) => {}
            }
            return;
        };
        let _ = astore.apply(events, key, Some(&seen), ops, deadline).await;
    }

    /// [`Context::run_experience`] for async hosts: the visitor's record comes from the async
    /// store (`CoreBuilder::async_data_store`) without blocking the task. Without an async store
    /// this is `run_experience`.
    pub async fn run_experience_async(&self, key: &str, attrs: &BucketingAttributes) -> Decision {
        self.decide_async(|c| c.run_experience(key, attrs)).await
    }

    /// [`Context::run_experiences`] on the async store (see [`Context::run_experience_async`]).
    pub async fn run_experiences_async(
        &self,
        attrs: &BucketingAttributes,
    ) -> Vec<BucketedVariation> {
        self.decide_async(|c| c.run_experiences(attrs)).await
    }

    /// [`Context::run_feature`] on the async store (see [`Context::run_experience_async`]).
    pub async fn run_feature_async(
        &self,
        key: &str,
        attrs: &BucketingAttributes,
    ) -> FeatureDecision {
        self.decide_async(|c| c.run_feature(key, attrs)).await
    }

    /// [`Context::run_features`] on the async store (see [`Context::run_experience_async`]).
    pub async fn run_features_async(
        &self,
        attrs: &BucketingAttributes,
    ) -> Result<Vec<BucketedFeature>, crate::RuleErrors> {
        self.decide_async(|c| c.run_features(attrs)).await
    }

    /// [`Context::run_custom_segments`] on the async store (see
    /// [`Context::run_experience_async`]).
    pub async fn run_custom_segments_async(
        &self,
        segment_keys: &[&str],
        rule_data: impl Into<crate::Attributes>,
    ) -> Result<Option<Map<String, Value>>, RuleError> {
        let rule_data = rule_data.into();
        self.decide_async(|c| c.run_custom_segments(segment_keys, rule_data.as_map()))
            .await
    }

    /// [`Context::track_conversion`] on the async store: the same exactly-once protocol (the
    /// goal mark and the decision to send are one atomic store operation; while the store does
    /// not answer, the conversion is held and reconciled later). The work runs as its own tokio
    /// task, so a caller that stops awaiting (a client that disconnected) cannot leave a goal
    /// marked in the store without its conversion queued (outside a tokio runtime it runs inline).
    pub async fn track_conversion_async(
        &self,
        goal_key: &str,
        attrs: &ConversionAttributes,
    ) -> Result<ConversionOutcome, RuleError> {
        if self.core.inner.shared.async_store.is_none() {
            return self.track_conversion(goal_key, attrs);
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            // Not polled by tokio: the work runs inline (and cannot be detached from the caller).
            return self.convert_async(goal_key, attrs).await;
        };
        let ctx = self.clone();
        let goal = goal_key.to_string();
        let attrs = attrs.clone();
        match runtime
            .spawn(async move { ctx.convert_async(&goal, &attrs).await })
            .await
        {
            Ok(r) => r,
            Err(e) => {
                log::error!("convert: conversion task of goal `{goal_key}` failed: {e}");
                Ok(ConversionOutcome::Deferred)
            }
        }
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
            &self.visitor_id,
            key,
            goal_key,
            attrs.rule_data.as_ref(),
            goal_data.as_ref(),
            force,
            deadline,
        )
        .await;
        let result = match stored {
            Ok((result, events)) => {
                self.core.enqueue(events);
                reconcile_held_async(&self.core, astore, deadline).await;
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
    visitor_id: &str,
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
    let (mut result, mut fx) = convert_on(
        core,
        visitor_id,
        goal_key,
        rules(),
        goal_data,
        force,
        &mut data,
    );
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
        (result, fx) = convert_on(
            core,
            visitor_id,
            goal_key,
            rules(),
            goal_data,
            force,
            &mut marked,
        );
    }
    Ok((result, fx.tracking))
}

/// Held conversions not yet settled; put back in the held list when dropped (also when the
/// reconciling call stops being awaited).
struct Batch<'a> {
    astore: &'a AsyncStore,
    rest: VecDeque<HeldConversion>,
}

impl Drop for Batch<'_> {
    fn drop(&mut self) {
        self.astore
            .guard
            .put_back(std::mem::take(&mut self.rest).into());
    }
}

/// `reconcile_held` on the async store: a batch of held conversions, each marked atomically and
/// sent only when its mark wins, while at least half of the call's deadline is left.
async fn reconcile_held_async(core: &Core, astore: &AsyncStore, deadline: Instant) {
    let guard = &astore.guard;
    let mut batch = Batch {
        astore,
        rest: guard.take_batch().into(),
    };
    while let Some(h) = batch.rest.front().cloned() {
        if Instant::now() + guard.call_deadline() / 2 > deadline {
            return;
        }
        let outcome = convert_in_async_store(
            core,
            astore,
            &h.visitor_id,
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
        batch.rest.pop_front();
    }
}

impl Core {
    /// [`Core::reconcile_store`] for the async store (`CoreBuilder::async_data_store`): one
    /// batch of the conversions it held while it did not answer, each marked atomically and sent
    /// only when its mark wins, within one call deadline. Returns the number the async store
    /// still holds (without an async store: `reconcile_store`). Async calls do this too, once
    /// the store answers again; call it before `close` to settle what is left.
    pub async fn reconcile_store_async(&self) -> u64 {
        let Some(astore) = self.inner.shared.async_store.as_ref() else {
            return self.reconcile_store();
        };
        reconcile_held_async(self, astore, astore.deadline()).await;
        astore.guard.held_count()
    }
}
