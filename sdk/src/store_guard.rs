//! The SDK's side of the data store: a circuit breaker, the per-call store deadline, rate-limited
//! store logs, and conversions held while the store is unavailable (see `docs/stores.md`).

use crate::events::EventHub;
use convert_ports::{Applied, DataStore, SdkEvent, StoreData, StoreError, StoreOp};
use serde_json::Value;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// How the SDK treats its data store: the deadline of a call's store work, the circuit breaker,
/// the list of conversions held during an outage and the rate of store-error logs.
///
/// ```
/// use convert_sdk::StoreOptions;
/// use std::time::Duration;
/// let opts = StoreOptions::default()
///     .call_deadline(Duration::from_millis(50))
///     .failure_threshold(3)
///     .cooldown(Duration::from_millis(500));
/// assert_eq!(opts.get_call_deadline(), Duration::from_millis(50));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct StoreOptions {
    call_deadline: Duration,
    failure_threshold: u32,
    cooldown: Duration,
    max_held_conversions: usize,
    log_interval: Duration,
    reconcile_batch: usize,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            call_deadline: Duration::from_millis(150),
            failure_threshold: 5,
            cooldown: Duration::from_secs(1),
            max_held_conversions: 10_000,
            log_interval: Duration::from_secs(10),
            reconcile_batch: 64,
        }
    }
}

impl StoreOptions {
    /// The most time one public SDK call spends on store work, all of its store operations
    /// together (default 150 ms). Stores that can wait (network, locks) give up at it. At least
    /// 1 ms; at most [`convert_ports::LONGEST_WAIT`] (a longer one, such as `Duration::MAX`, is
    /// that).
    pub fn call_deadline(mut self, d: Duration) -> Self {
        self.call_deadline = d.clamp(Duration::from_millis(1), convert_ports::LONGEST_WAIT);
        self
    }

    /// Consecutive failed store operations that open the circuit (default 5).
    pub fn failure_threshold(mut self, n: u32) -> Self {
        self.failure_threshold = n.max(1);
        self
    }

    /// How long an open circuit skips the store before one call probes it (default 1 s).
    pub fn cooldown(mut self, d: Duration) -> Self {
        self.cooldown = d;
        self
    }

    /// Conversions held in this process while the store is unavailable (default 10,000); beyond
    /// it new ones are dropped and counted in `Metrics::held_conversions_overflow`.
    pub fn max_held_conversions(mut self, n: usize) -> Self {
        self.max_held_conversions = n;
        self
    }

    /// At most one store-error log line per this interval (default 10 s); the lines in between
    /// are counted and the count is logged with the next line.
    pub fn log_interval(mut self, d: Duration) -> Self {
        self.log_interval = d;
        self
    }

    /// Held conversions reconciled by one SDK call once the store answers again (default 64).
    pub fn reconcile_batch(mut self, n: usize) -> Self {
        self.reconcile_batch = n.max(1);
        self
    }

    /// The configured call deadline.
    pub fn get_call_deadline(&self) -> Duration {
        self.call_deadline
    }
}

const CLOSED: u8 = 0;
const OPEN: u8 = 1;
const HALF_OPEN: u8 = 2;

/// A conversion made while the store could not confirm it.
#[derive(Debug, Clone)]
pub(crate) struct HeldConversion {
    pub visitor_id: String,
    pub key: String,
    pub goal_key: String,
    pub goal_data: Option<Value>,
    pub force: bool,
}

/// Counters of the store handling (copied into `Metrics`).
#[derive(Debug, Default)]
pub(crate) struct StoreCounters {
    pub skipped: AtomicU64,
    pub circuit_opened: AtomicU64,
    pub corrupt: AtomicU64,
    pub reconciled: AtomicU64,
    pub already_marked: AtomicU64,
    pub overflow: AtomicU64,
    pub unreconciled_at_close: AtomicU64,
    pub deadline_exceeded: AtomicU64,
    pub discarded: AtomicU64,
    pub errors: AtomicU64,
}

/// Why a store operation did not give an answer.
#[derive(Debug)]
pub(crate) enum Unanswered {
    /// The circuit is open: the store was not called.
    Skipped,
    /// The store failed (already counted and logged, rate-limited).
    Failed,
}

/// The breaker, deadline and held conversions of one SDK instance's store.
pub(crate) struct StoreGuard {
    store: Arc<dyn DataStore>,
    /// `store.updates_in_place()`, asked once (a property of the store, not of the moment): the
    /// per-call checks read this field instead of making a virtual call.
    in_place: bool,
    opts: StoreOptions,
    state: AtomicU8,
    failures: AtomicU32,
    /// When the circuit opened, in ms since `base`.
    opened_at: AtomicU64,
    probing: AtomicBool,
    base: Instant,
    held: Mutex<VecDeque<HeldConversion>>,
    held_len: AtomicU64,
    /// When the last store-error line was logged (ms since `base` + 1; 0: never).
    last_log: AtomicU64,
    suppressed: AtomicU64,
    /// When the last "circuit open" line was logged at warn level (as `last_log`).
    last_open_log: AtomicU64,
    pub counters: StoreCounters,
}

impl StoreGuard {
    pub fn new(store: Arc<dyn DataStore>, opts: StoreOptions) -> Self {
        StoreGuard {
            in_place: store.updates_in_place(),
            store,
            opts,
            state: AtomicU8::new(CLOSED),
            failures: AtomicU32::new(0),
            opened_at: AtomicU64::new(0),
            probing: AtomicBool::new(false),
            base: Instant::now(),
            held: Mutex::new(VecDeque::new()),
            held_len: AtomicU64::new(0),
            last_log: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
            last_open_log: AtomicU64::new(0),
            counters: StoreCounters::default(),
        }
    }

    /// Whether the store updates records in place ([`DataStore::updates_in_place`], asked once
    /// when the guard was made).
    #[inline]
    pub fn updates_in_place(&self) -> bool {
        self.in_place
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.base.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Runs `f` (one public call's store work) under the call deadline. Stores that live in this
    /// process need none.
    #[inline]
    pub fn within_deadline<R>(&self, f: impl FnOnce() -> R) -> R {
        if self.in_place {
            return f();
        }
        let deadline = convert_ports::instant_after(Instant::now(), self.opts.call_deadline);
        let out = convert_ports::with_store_deadline(deadline, f);
        if Instant::now() > convert_ports::instant_after(deadline, self.opts.call_deadline) {
            self.counters
                .deadline_exceeded
                .fetch_add(1, Ordering::Relaxed);
        }
        out
    }

    /// Whether less than half of the call deadline is left (`left`): reconciliation stops
    /// there, so it never makes a call overrun (a deadline miss counts as a store failure).
    fn short(&self, left: Duration) -> bool {
        left < self.opts.call_deadline / 2
    }

    /// [`StoreGuard::short`] for the sync path, whose deadline is set on the calling thread.
    pub fn time_short(&self) -> bool {
        convert_ports::store_time_left().is_some_and(|left| self.short(left))
    }

    /// [`StoreGuard::short`] for the async path, whose deadline travels with the call.
    #[cfg(feature = "tokio")]
    pub fn time_short_until(&self, deadline: Instant) -> bool {
        self.short(deadline.saturating_duration_since(Instant::now()))
    }

    /// Whether the circuit is open (the store is being skipped).
    pub fn is_open(&self) -> bool {
        self.state.load(Ordering::Relaxed) != CLOSED
    }

    /// Whether a call would be let through now ([`StoreGuard::admit`] without its effects): the
    /// circuit is closed, or open with its cooldown over, or half-open with no probe under way.
    fn may_probe(&self) -> bool {
        match self.state.load(Ordering::Acquire) {
            CLOSED => true,
            OPEN => self.cooled(),
            _ => !self.probing.load(Ordering::Acquire),
        }
    }

    /// Whether the circuit is half-open with a probe under way (its answer closes or reopens it).
    pub fn probe_in_flight(&self) -> bool {
        self.state.load(Ordering::Acquire) == HALF_OPEN && self.probing.load(Ordering::Acquire)
    }

    /// Whether the cooldown of an open circuit is over.
    fn cooled(&self) -> bool {
        self.now_ms()
            .saturating_sub(self.opened_at.load(Ordering::Relaxed))
            >= u64::try_from(self.opts.cooldown.as_millis()).unwrap_or(u64::MAX)
    }

    /// Whether a call may use the store now; moves an open circuit whose cooldown is over to
    /// half-open (this call is then the probe).
    #[inline]
    fn admit(&self, events: &EventHub) -> bool {
        if self.state.load(Ordering::Acquire) == CLOSED {
            return true;
        }
        self.admit_not_closed(events)
    }

    /// [`StoreGuard::admit`] when the circuit was not closed.
    #[cold]
    fn admit_not_closed(&self, events: &EventHub) -> bool {
        match self.state.load(Ordering::Acquire) {
            CLOSED => true,
            OPEN => {
                if self.cooled()
                    && self
                        .state
                        .compare_exchange(OPEN, HALF_OPEN, Ordering::AcqRel, Ordering::Relaxed)
                        .is_ok()
                {
                    self.probing.store(true, Ordering::Release);
                    self.announce(events, "half-open");
                    return true;
                }
                false
            }
            _ => {
                // Half-open: one probe at a time.
                self.probing
                    .compare_exchange(false, true, Ordering::AcqRel, Ordering::Relaxed)
                    .is_ok()
            }
        }
    }

    /// A store operation was answered: clears the failure count and closes the circuit.
    #[inline]
    fn succeeded(&self, events: &EventHub) {
        // The usual case (closed, no failures) is two relaxed loads.
        if self.failures.load(Ordering::Relaxed) != 0
            || self.state.load(Ordering::Relaxed) != CLOSED
        {
            self.recovered(events);
        }
    }

    /// [`StoreGuard::succeeded`] after failures or with the circuit not closed.
    #[cold]
    fn recovered(&self, events: &EventHub) {
        if self.failures.load(Ordering::Relaxed) != 0 {
            self.failures.store(0, Ordering::Relaxed);
        }
        if self.state.load(Ordering::Relaxed) != CLOSED
            && self.state.swap(CLOSED, Ordering::AcqRel) != CLOSED
        {
            self.probing.store(false, Ordering::Release);
            self.announce(events, "closed");
        }
    }

    fn failed(&self, events: &EventHub, e: &StoreError) {
        self.counters.errors.fetch_add(1, Ordering::Relaxed);
        self.log_failure(e);
        events.fire(&SdkEvent::DataStoreError {
            message: e.to_string(),
        });
        let n = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
        let state = self.state.load(Ordering::Acquire);
        let reopen = state == HALF_OPEN;
        if (reopen || (state == CLOSED && n >= self.opts.failure_threshold))
            && self
                .state
                .compare_exchange(state, OPEN, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        {
            self.opened_at.store(self.now_ms(), Ordering::Relaxed);
            self.probing.store(false, Ordering::Release);
            if reopen {
                // A failed probe: announced, logged only at debug level.
                log::debug!("convert: data store `{}` probe failed", self.store.name());
                events.fire(&SdkEvent::DataStoreCircuit {
                    store: self.store.name().to_string(),
                    state: "open".to_string(),
                });
            } else {
                self.counters.circuit_opened.fetch_add(1, Ordering::Relaxed);
                self.announce(events, "open");
            }
        }
    }

    fn announce(&self, events: &EventHub, state: &str) {
        let name = self.store.name();
        match state {
            // A store that fails only some operations (writes refused at `maxmemory`) can
            // open the circuit again and again: one warn line per `log_interval`.
            "open" if self.log_due(&self.last_open_log) => log::warn!(
                "convert: data store `{name}` circuit open after {} consecutive failures: skipping it for {:?}",
                self.failures.load(Ordering::Relaxed),
                self.opts.cooldown
            ),
            "open" => log::debug!("convert: data store `{name}` circuit open again"),
            "closed" => {
                log::info!("convert: data store `{name}` circuit closed: the store answers again")
            }
            _ => log::debug!("convert: data store `{name}` circuit half-open: probing"),
        }
        events.fire(&SdkEvent::DataStoreCircuit {
            store: name.to_string(),
            state: state.to_string(),
        });
    }

    /// Whether a line rate-limited by `last` (when it was last logged, ms since `base` + 1;
    /// 0: never) may be logged now, once per `log_interval`; if so, `last` becomes now.
    fn log_due(&self, last: &AtomicU64) -> bool {
        let now = self.now_ms() + 1;
        let seen = last.load(Ordering::Relaxed);
        let every = u64::try_from(self.opts.log_interval.as_millis()).unwrap_or(u64::MAX);
        (seen == 0 || now.saturating_sub(seen) >= every)
            && last
                .compare_exchange(seen, now, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
    }

    /// Logs a store failure at most once per `log_interval`.
    fn log_failure(&self, e: &StoreError) {
        if self.log_due(&self.last_log) {
            let n = self.suppressed.swap(0, Ordering::Relaxed);
            log::warn!(
                "convert: data store `{}` failed: {e}; deciding without stored state ({n} similar messages suppressed)",
                self.store.name()
            );
        } else {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Runs one store operation through the breaker. Corrupt records and contention are
    /// answers (the store works); anything else is a failure.
    #[inline]
    pub fn call<T>(
        &self,
        events: &EventHub,
        f: impl FnOnce(&dyn DataStore) -> Result<T, StoreError>,
    ) -> Result<Result<T, StoreError>, Unanswered> {
        if !self.admit(events) {
            self.counters.skipped.fetch_add(1, Ordering::Relaxed);
            return Err(Unanswered::Skipped);
        }
        self.settle(events, f(&*self.store))
    }

    /// Runs one async store operation through the breaker, bounded by `deadline` (a deadline
    /// miss is a failure, as a timeout of a sync store is). The future is only created when the
    /// circuit admits the call; a call dropped while it awaits frees the half-open probe.
    #[cfg(feature = "tokio")]
    pub async fn call_async<T, F>(
        &self,
        events: &EventHub,
        deadline: Instant,
        f: impl FnOnce() -> F,
    ) -> Result<Result<T, StoreError>, Unanswered>
    where
        F: std::future::Future<Output = Result<T, StoreError>>,
    {
        if !self.admit(events) {
            self.counters.skipped.fetch_add(1, Ordering::Relaxed);
            return Err(Unanswered::Skipped);
        }
        /// Frees the probe slot when the call is dropped before it settles.
        struct Unsettled<'g>(&'g AtomicBool);
        impl Drop for Unsettled<'_> {
            fn drop(&mut self) {
                self.0.store(false, Ordering::Release);
            }
        }
        let unsettled = Unsettled(&self.probing);
        // The deadline needs tokio's timer; polled by another executor the call runs without
        // it (bounded by the store's own timeouts) rather than panicking.
        let out = if tokio::runtime::Handle::try_current().is_err() {
            f().await
        } else {
            match tokio::time::timeout_at(deadline.into(), f()).await {
                Ok(r) => r,
                Err(_) => Err(StoreError::Unavailable(
                    "the call's store deadline passed".into(),
                )),
            }
        };
        std::mem::forget(unsettled);
        self.settle(events, out)
    }

    /// The configured call deadline.
    #[cfg(feature = "tokio")]
    pub fn call_deadline(&self) -> Duration {
        self.opts.call_deadline
    }

    /// Records the outcome of one admitted store operation.
    #[inline]
    fn settle<T>(
        &self,
        events: &EventHub,
        out: Result<T, StoreError>,
    ) -> Result<Result<T, StoreError>, Unanswered> {
        match out {
            Ok(v) => {
                self.succeeded(events);
                Ok(Ok(v))
            }
            Err(e) => self.settle_error(events, e).map(Err),
        }
    }

    /// [`StoreGuard::settle`] of an error: `Ok(e)` when it is an answer (a corrupt record,
    /// contention), else `Err` (a failure, counted).
    #[cold]
    fn settle_error(&self, events: &EventHub, e: StoreError) -> Result<StoreError, Unanswered> {
        match e {
            e @ (StoreError::Corrupt { .. } | StoreError::Contention(_)) => {
                self.succeeded(events);
                if matches!(e, StoreError::Corrupt { .. }) {
                    self.counters.corrupt.fetch_add(1, Ordering::Relaxed);
                    self.log_failure(&e);
                }
                Ok(e)
            }
            e => {
                self.failed(events, &e);
                Err(Unanswered::Failed)
            }
        }
    }

    /// Reads a record: `Ok(Some(record))` when the store answered (an unreadable record counts
    /// as absent, once: the next write replaces it), `Err` when it did not.
    pub fn read(&self, events: &EventHub, key: &str) -> Result<Option<StoreData>, Unanswered> {
        match self.call(events, |s| s.get(key))? {
            Ok(d) => Ok(d),
            Err(_) => Ok(None),
        }
    }

    /// Applies `ops` atomically; `Err` when the store did not answer.
    pub fn apply(
        &self,
        events: &EventHub,
        key: &str,
        seen: Option<&StoreData>,
        ops: &[StoreOp],
    ) -> Result<Result<Applied, StoreError>, Unanswered> {
        self.call(events, |s| s.apply(key, seen, ops))
    }

    fn held(&self) -> MutexGuard<'_, VecDeque<HeldConversion>> {
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Holds a conversion until the store can confirm it. Returns `false` when the same goal of
    /// the same visitor is already held (a duplicate within this process, suppressed) or the
    /// list is full (counted as overflow and logged).
    pub fn hold(&self, c: HeldConversion) -> HoldOutcome {
        let mut held = self.held();
        if !c.force
            && held
                .iter()
                .any(|h| !h.force && h.key == c.key && h.goal_key == c.goal_key)
        {
            return HoldOutcome::Duplicate;
        }
        if held.len() >= self.opts.max_held_conversions {
            drop(held);
            let n = self.counters.overflow.fetch_add(1, Ordering::Relaxed) + 1;
            if n == 1 || n.is_power_of_two() {
                log::warn!(
                    "convert: {n} conversion(s) dropped: the data store is unavailable and {} are already held (StoreOptions::max_held_conversions)",
                    self.opts.max_held_conversions
                );
            }
            return HoldOutcome::Overflow;
        }
        held.push_back(c);
        self.held_len.store(held.len() as u64, Ordering::Relaxed);
        HoldOutcome::Held
    }

    /// Number of held conversions.
    pub fn held_count(&self) -> u64 {
        self.held_len.load(Ordering::Relaxed)
    }

    /// Takes up to one batch of held conversions, to reconcile now, while the circuit is closed;
    /// with `probe`, also when it may be probed (the cooldown is over and no probe is under way:
    /// the batch's first store call is then the probe, so that `reconcile_store`, `flush` and
    /// `close` settle held conversions without waiting for a decision to probe; a decision that
    /// just used the store does not probe again). What the batch still holds when dropped goes
    /// back to the front of the list. `None` when nothing is held (the usual case: one relaxed
    /// load, nothing built or dropped) or the store may not be called.
    #[inline]
    pub fn take_batch(&self, probe: bool) -> Option<HeldBatch<'_>> {
        if self.held_count() == 0 {
            return None;
        }
        self.take_held_batch(probe)
    }

    /// [`StoreGuard::take_batch`] when something is held.
    #[cold]
    fn take_held_batch(&self, probe: bool) -> Option<HeldBatch<'_>> {
        let callable = if probe {
            self.may_probe()
        } else {
            !self.is_open()
        };
        if !callable {
            return None;
        }
        let mut held = self.held();
        let n = held.len().min(self.opts.reconcile_batch);
        let rest: VecDeque<HeldConversion> = held.drain(..n).collect();
        self.held_len.store(held.len() as u64, Ordering::Relaxed);
        Some(HeldBatch { guard: self, rest })
    }

    /// Puts back conversions that could not be reconciled yet (at the front, in order).
    fn put_back(&self, rest: VecDeque<HeldConversion>) {
        if rest.is_empty() {
            return;
        }
        let mut held = self.held();
        for c in rest.into_iter().rev() {
            held.push_front(c);
        }
        self.held_len.store(held.len() as u64, Ordering::Relaxed);
    }

    /// Counts and logs the conversions still held when the SDK closes.
    pub fn abandon_held(&self) {
        let n = {
            let mut held = self.held();
            let n = held.len();
            held.clear();
            self.held_len.store(0, Ordering::Relaxed);
            n
        };
        if n > 0 {
            self.counters
                .unreconciled_at_close
                .fetch_add(n as u64, Ordering::Relaxed);
            log::warn!(
                "convert: {n} conversion(s) made while the data store was unavailable were never confirmed by it and are not sent"
            );
        }
    }

    /// A conversion was dropped at reconciliation: the store already had the goal marked.
    pub fn note_already_marked(&self) {
        self.counters.already_marked.fetch_add(1, Ordering::Relaxed);
    }

    /// A held conversion was confirmed and sent.
    pub fn note_reconciled(&self) {
        self.counters.reconciled.fetch_add(1, Ordering::Relaxed);
    }

    /// A held conversion was dropped at reconciliation: its goal is no longer in the config.
    pub fn note_discarded(&self) {
        self.counters.discarded.fetch_add(1, Ordering::Relaxed);
    }

    /// Whether a goal op for `goal` in `ops` was marked by this call.
    pub fn goal_won(applied: &Applied, ops: &[StoreOp], goal: &str) -> bool {
        ops.iter()
            .zip(&applied.changed)
            .any(|(op, changed)| *changed && matches!(op, StoreOp::Goal(g) if g.as_str() == goal))
    }
}

/// Held conversions taken for reconciliation: settle them front first
/// ([`HeldBatch::next`], [`HeldBatch::settled`]); the ones not settled when the batch is dropped
/// (time short, no answer, or the reconciling call no longer awaited) go back to the held list.
pub(crate) struct HeldBatch<'g> {
    guard: &'g StoreGuard,
    rest: VecDeque<HeldConversion>,
}

impl HeldBatch<'_> {
    /// The next conversion to settle (it stays in the batch until [`HeldBatch::settled`]).
    pub fn next(&self) -> Option<HeldConversion> {
        self.rest.front().cloned()
    }

    /// The conversion [`HeldBatch::next`] gave is settled.
    pub fn settled(&mut self) {
        self.rest.pop_front();
    }
}

impl Drop for HeldBatch<'_> {
    fn drop(&mut self) {
        self.guard.put_back(std::mem::take(&mut self.rest));
    }
}

/// What [`StoreGuard::hold`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HoldOutcome {
    Held,
    Duplicate,
    Overflow,
}

#[cfg(test)]
mod tests {
    use super::*;
    use convert_store_memory::MemoryStore;

    /// A memory store that claims either store mode and can be made to fail.
    struct ModeStore {
        inner: MemoryStore,
        in_place: bool,
        error: Mutex<Option<StoreError>>,
    }

    impl ModeStore {
        fn new(in_place: bool) -> Arc<Self> {
            Arc::new(ModeStore {
                inner: MemoryStore::new(),
                in_place,
                error: Mutex::new(None),
            })
        }

        fn fail_with(&self, e: Option<StoreError>) {
            *self.error.lock().unwrap_or_else(PoisonError::into_inner) = e;
        }

        fn check(&self) -> Result<(), StoreError> {
            let e = self.error.lock().unwrap_or_else(PoisonError::into_inner);
            match &*e {
                None => Ok(()),
                Some(StoreError::Corrupt { key, reason }) => Err(StoreError::Corrupt {
                    key: key.clone(),
                    reason: reason.clone(),
                }),
                Some(e) => Err(StoreError::Unavailable(e.to_string())),
            }
        }
    }

    impl DataStore for ModeStore {
        fn get(&self, key: &str) -> Result<Option<StoreData>, StoreError> {
            self.check()?;
            self.inner.get(key)
        }
        fn set(&self, key: &str, value: &StoreData) -> Result<(), StoreError> {
            self.check()?;
            self.inner.set(key, value)
        }
        fn delete(&self, key: &str) -> Result<(), StoreError> {
            self.inner.delete(key)
        }
        fn update(
            &self,
            key: &str,
            f: &mut dyn FnMut(&mut StoreData) -> bool,
        ) -> Result<bool, StoreError> {
            self.check()?;
            self.inner.update(key, f)
        }
        fn updates_in_place(&self) -> bool {
            self.in_place
        }
    }

    /// A `Duration::MAX` call deadline ("no limit") leaves a call all of its time: the deadline
    /// saturates at `LONGEST_WAIT`, and so does the setting, so reconciliation is not stopped for
    /// want of time (the setting stayed `MAX`, half of which was more than any deadline left).
    #[test]
    fn the_longest_call_deadline_leaves_time_to_reconcile() {
        let guard = StoreGuard::new(
            ModeStore::new(false),
            StoreOptions::default().call_deadline(Duration::MAX),
        );
        assert!(guard.within_deadline(|| !guard.time_short()));
        assert_eq!(
            StoreOptions::default()
                .call_deadline(Duration::MAX)
                .get_call_deadline(),
            convert_ports::LONGEST_WAIT
        );
    }

    #[test]
    fn only_a_store_that_does_not_update_in_place_gets_a_deadline() {
        let remote = StoreGuard::new(ModeStore::new(false), StoreOptions::default());
        assert!(!remote.updates_in_place());
        assert!(remote.within_deadline(|| convert_ports::store_time_left().is_some()));
        let local = StoreGuard::new(ModeStore::new(true), StoreOptions::default());
        assert!(local.updates_in_place());
        assert!(local.within_deadline(|| convert_ports::store_time_left().is_none()));
    }

    #[test]
    fn corrupt_is_an_answer_and_failures_open_then_a_success_closes_the_circuit() {
        let store = ModeStore::new(true);
        let opts = StoreOptions::default()
            .failure_threshold(2)
            .cooldown(Duration::ZERO);
        let guard = StoreGuard::new(store.clone(), opts);
        let events = EventHub::default();

        store.fail_with(Some(StoreError::Corrupt {
            key: "k".into(),
            reason: "test".into(),
        }));
        assert!(matches!(
            guard.read(&events, "k"),
            Ok(None) // an unreadable record reads as absent
        ));
        assert!(matches!(
            guard.call(&events, |s| s.get("k")),
            Ok(Err(StoreError::Corrupt { .. }))
        ));
        assert_eq!(guard.counters.corrupt.load(Ordering::Relaxed), 2);
        assert!(!guard.is_open());

        store.fail_with(Some(StoreError::Unavailable("down".into())));
        assert!(matches!(guard.read(&events, "k"), Err(Unanswered::Failed)));
        assert!(!guard.is_open());
        assert!(matches!(guard.read(&events, "k"), Err(Unanswered::Failed)));
        assert!(guard.is_open());
        assert_eq!(guard.counters.errors.load(Ordering::Relaxed), 2);
        assert_eq!(guard.counters.circuit_opened.load(Ordering::Relaxed), 1);

        // Cooled down at once: the next call is the probe, and its success closes the circuit
        // and clears the failure count.
        store.fail_with(None);
        assert!(matches!(guard.read(&events, "k"), Ok(None)));
        assert!(!guard.is_open());
        assert_eq!(guard.failures.load(Ordering::Relaxed), 0);
        store.fail_with(Some(StoreError::Unavailable("down".into())));
        assert!(matches!(guard.read(&events, "k"), Err(Unanswered::Failed)));
        assert!(
            !guard.is_open(),
            "one failure after the reset is below the threshold"
        );
    }
}
