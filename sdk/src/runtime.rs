//! Shared state and the background threads: tracking delivery and config refresh.
//!
//! The worker threads own an `Arc<Shared>`, never the `Core` handle itself, so dropping the last
//! `Core` can stop them, deliver what is queued and join them.

use crate::error::Error;
use crate::events::EventHub;
use arc_swap::ArcSwapOption;
use convert_core::tracking::{self, PayloadMeta, TrackingQueue};
use convert_core::{ProjectConfig, StoreData, TrackingEvent};
use convert_ports::{
    Backoff, DataStore, HttpRequest, Method, SdkEvent, StatusClass, Transport, instant_after,
};
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime};

/// The `User-Agent` sent with every request (the reference's bot-filter invariant).
pub const USER_AGENT: &str = "ConvertAgent/1.0";

/// Tracking queue settings, given to
/// [`CoreBuilder::events_options`](crate::CoreBuilder::events_options).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct EventsOptions {
    /// Release when this many events are queued (default 10).
    pub batch_size: usize,
    /// Release at least this often while events are queued (default 1 s).
    pub release_interval: Duration,
    /// Keep at most this many events while delivery fails; beyond it the oldest are dropped and
    /// counted (default 10,000). While deliveries succeed the queue may briefly hold
    /// [`HEALTHY_SLACK`] times as many, so that a healthy endpoint never loses an event.
    pub max_queue: usize,
}

impl Default for EventsOptions {
    fn default() -> Self {
        EventsOptions {
            batch_size: 10,
            release_interval: Duration::from_secs(1),
            max_queue: 10_000,
        }
    }
}

impl EventsOptions {
    /// Sets [`EventsOptions::batch_size`].
    pub fn batch_size(mut self, value: usize) -> Self {
        self.batch_size = value;
        self
    }

    /// Sets [`EventsOptions::release_interval`].
    pub fn release_interval(mut self, value: Duration) -> Self {
        self.release_interval = value;
        self
    }

    /// Sets [`EventsOptions::max_queue`].
    pub fn max_queue(mut self, value: usize) -> Self {
        self.max_queue = value;
        self
    }
}

/// Retry policy for failed deliveries and config fetches: exponential backoff with ±25 % jitter
/// (the shared [`convert_ports::Backoff`]). A `Retry-After` answer is honoured instead when it
/// asks for longer, up to [`MAX_RETRY_AFTER`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetryPolicy {
    /// First retry delay (default 500 ms).
    pub initial: Duration,
    /// Upper bound of the delay (default 30 s).
    pub max: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            initial: Duration::from_millis(500),
            max: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// Sets the first retry delay.
    pub fn initial(mut self, value: Duration) -> Self {
        self.initial = value;
        self
    }

    /// Sets the upper bound of the delay.
    pub fn max(mut self, value: Duration) -> Self {
        self.max = value;
        self
    }
}

impl RetryPolicy {
    /// The delay before retry number `attempt` (1-based): `initial × 2^(attempt-1)`, capped, with
    /// ±25 % jitter so a fleet does not retry in lockstep.
    pub fn delay(&self, attempt: u32) -> Duration {
        Backoff::new(self.initial, self.max).delay(attempt)
    }

    /// The delay before retry number `attempt` when the server answered `Retry-After: wait`:
    /// the longer of the two, the server's wait capped at [`MAX_RETRY_AFTER`].
    pub fn delay_after(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let own = self.delay(attempt);
        retry_after.map_or(own, |w| own.max(w.min(MAX_RETRY_AFTER)))
    }
}

/// The longest `Retry-After` wait honoured (10 minutes); longer requests are cut to this.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(600);

/// Limits of one tracking request: a backlog goes out as several requests, oldest events first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct BatchLimits {
    /// Most events in one POST (default 100).
    pub max_events: usize,
    /// Most body bytes in one POST (default 256 KiB); a larger batch is split in halves, and a
    /// single event larger than this is dropped and counted in [`Metrics::too_large_events`].
    pub max_bytes: usize,
}

impl Default for BatchLimits {
    fn default() -> Self {
        BatchLimits {
            max_events: 100,
            max_bytes: 256 * 1024,
        }
    }
}

impl BatchLimits {
    /// Sets the most events in one POST (at least 1).
    pub fn max_events(mut self, n: usize) -> Self {
        self.max_events = n.max(1);
        self
    }

    /// Sets the most body bytes in one POST (at least 1 KiB).
    pub fn max_bytes(mut self, n: usize) -> Self {
        self.max_bytes = n.max(1024);
        self
    }
}

/// Counters an integrator can watch. Every tracking event ends up in exactly one of
/// `delivered_events` or an undelivered reason, unless it is still queued or in flight.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Metrics {
    /// Tracking events dropped because the queue was full (oldest first, while delivery failed).
    pub dropped_events: u64,
    /// Data store operations that failed.
    pub store_errors: u64,
    /// Tracking events delivered (answered with a 2xx).
    pub delivered_events: u64,
    /// Delivery attempts that failed transiently (their events were kept and retried).
    pub failed_batches: u64,
    /// Config fetches that failed.
    pub config_fetch_errors: u64,
    /// Tracking events the server refused for good (a 4xx other than 408, 413 and 429).
    pub rejected_events: u64,
    /// Tracking events too large to send on their own (413 or above [`BatchLimits::max_bytes`]).
    pub too_large_events: u64,
    /// Tracking events refused when queued: goal data nested deeper than the SDK serializes.
    pub invalid_events: u64,
    /// Tracking events still undelivered when the SDK was closed or dropped.
    pub abandoned_events: u64,
    /// Tracking events discarded at close because automatic delivery was off
    /// ([`crate::CoreBuilder::tracking`]`(false)`) and no flush sent them.
    pub discarded_events: u64,
    /// Store operations skipped because the store's circuit was open.
    pub store_skipped: u64,
    /// Whether the store's circuit is open or half-open now (the store is being skipped).
    pub store_circuit_open: bool,
    /// Times the store's circuit opened.
    pub store_circuit_opened: u64,
    /// Stored records that could not be parsed (each is replaced by the next write).
    pub store_corrupt_records: u64,
    /// Public calls whose store work overran twice the call deadline (a store that does not
    /// honour the deadline).
    pub store_deadline_overruns: u64,
    /// Conversions held now, waiting for the store to confirm them.
    pub held_conversions: u64,
    /// Held conversions confirmed by the store and sent.
    pub held_conversions_sent: u64,
    /// Held conversions not sent because the store already had the goal marked (another
    /// process converted it first, or this process's own mark landed but its reply was lost).
    pub held_conversions_already_marked: u64,
    /// Conversions dropped because the held list was full.
    pub held_conversions_overflow: u64,
    /// Held conversions still unconfirmed when the SDK was closed (not sent).
    pub held_conversions_unconfirmed: u64,
    /// Held conversions dropped because their goal left the config before they were confirmed.
    pub held_conversions_discarded: u64,
}

impl Metrics {
    /// Every tracking event that was not and will not be delivered, whatever the reason.
    pub fn undelivered_events(&self) -> u64 {
        self.dropped_events
            + self.rejected_events
            + self.too_large_events
            + self.invalid_events
            + self.abandoned_events
            + self.discarded_events
    }
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub dropped: AtomicU64,
    pub store_errors: AtomicU64,
    pub delivered: AtomicU64,
    pub failed_batches: AtomicU64,
    pub fetch_errors: AtomicU64,
    pub rejected: AtomicU64,
    pub too_large: AtomicU64,
    pub invalid: AtomicU64,
    pub abandoned: AtomicU64,
    pub discarded: AtomicU64,
    /// Report segments removed from events for being nested too deep.
    pub stripped_segments: AtomicU64,
}

impl Counters {
    pub fn snapshot(&self) -> Metrics {
        let r = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Metrics {
            dropped_events: r(&self.dropped),
            store_errors: r(&self.store_errors),
            delivered_events: r(&self.delivered),
            failed_batches: r(&self.failed_batches),
            config_fetch_errors: r(&self.fetch_errors),
            rejected_events: r(&self.rejected),
            too_large_events: r(&self.too_large),
            invalid_events: r(&self.invalid),
            abandoned_events: r(&self.abandoned),
            discarded_events: r(&self.discarded),
            ..Metrics::default()
        }
    }
}

/// Adds `n` to `counter` and tells whether this is worth a log line: the first time and then at
/// every power of two, so a flood of the same problem logs O(log n) lines.
fn count_and_sample(counter: &AtomicU64, n: u64) -> Option<u64> {
    let before = counter.fetch_add(n, Ordering::Relaxed);
    let after = before + n;
    (before == 0 || (after.ilog2() > before.ilog2())).then_some(after)
}

/// Where the SDK stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Readiness {
    /// No valid config yet; the last failure, if any.
    Pending(Option<String>),
    /// A valid config is installed.
    Ready,
    /// The SDK was closed.
    Closed,
}

/// Network settings.
#[derive(Debug, Clone)]
pub(crate) struct NetOptions {
    pub sdk_key: Option<String>,
    pub sdk_key_secret: Option<String>,
    pub config_endpoint: String,
    pub track_endpoint: String,
    pub environment: String,
    pub debug_token: Option<String>,
    pub low_cache: bool,
    pub refresh_interval: Duration,
    pub tracking_enabled: bool,
    pub events: EventsOptions,
    pub batch: BatchLimits,
    pub retry: RetryPolicy,
}

pub(crate) struct Shared {
    /// The config snapshot: read lock-free on every decision, replaced whole by `install`.
    pub config: ArcSwapOption<ProjectConfig>,
    /// Serializes installs (compare with the current snapshot, then swap).
    pub install_lock: Mutex<()>,
    pub readiness: Mutex<Readiness>,
    pub ready_cv: Condvar,
    pub events: EventHub,
    pub queue: Mutex<TrackingQueue>,
    pub transport: Option<Arc<dyn Transport>>,
    pub store: Arc<dyn DataStore>,
    /// Breaker, deadline and held conversions of `store`.
    pub guard: crate::store_guard::StoreGuard,
    /// The async store, its breaker and held conversions (the `_async` methods use it).
    #[cfg(feature = "tokio")]
    pub async_store: Option<crate::asynchronous::AsyncStore>,
    pub net: NetOptions,
    pub counters: Counters,
    /// Set (under the queue lock) once `close` gave up waiting: a batch whose request is still
    /// unanswered is then counted as abandoned if it fails, instead of going back to the queue.
    pub abandoned: AtomicBool,
    /// Set, once, when the background threads are told to stop (`close`, or the last drop):
    /// `flush` then fails with `Closed`, and a config refresh still in its request neither
    /// writes the config cache nor installs what it fetched.
    pub stopping: AtomicBool,
    /// Whether the "queue full" warning of the current overflow was logged (re-armed when a
    /// delivery succeeds with the queue back under `max_queue`).
    pub overflow_warned: AtomicBool,
    /// The delivery thread sleeps and wants a wake-up for a first event or a full batch.
    pub parked: AtomicBool,
    /// The last delivery attempt succeeded (see [`HEALTHY_SLACK`]).
    pub healthy: AtomicBool,
}

/// While delivery is healthy (the last attempt succeeded), the queue may hold this many times
/// `max_queue` before the oldest events are dropped, so that a delivery thread briefly starved of
/// CPU loses nothing; `max_queue` itself applies whenever delivery is failing, has not succeeded
/// yet, or is manual.
pub const HEALTHY_SLACK: usize = 8;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

pub(crate) fn base_headers(secret: Option<&str>, json_body: bool) -> Vec<(String, String)> {
    let mut h = Vec::with_capacity(3);
    if json_body {
        h.push(("Content-Type".into(), "application/json".into()));
    }
    h.push(("User-Agent".into(), USER_AGENT.into()));
    if let Some(s) = secret.filter(|s| !s.is_empty()) {
        h.push(("Authorization".into(), format!("Bearer {s}")));
    }
    h
}

impl Shared {
    /// Whether the background threads were told to stop (`close`, or the last drop).
    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    pub fn config(&self) -> Option<Arc<ProjectConfig>> {
        self.config.load_full()
    }

    /// The snapshot for the duration of one call, without touching its reference count.
    pub fn config_guard(&self) -> arc_swap::Guard<Option<Arc<ProjectConfig>>> {
        self.config.load()
    }

    pub fn lock_queue(&self) -> MutexGuard<'_, TrackingQueue> {
        lock(&self.queue)
    }

    pub fn readiness(&self) -> Readiness {
        lock(&self.readiness).clone()
    }

    /// Installs a config; fires `ready` the first time and `config.updated` when it changed.
    pub fn install(&self, config: ProjectConfig) {
        for w in config.regex_warnings() {
            log::warn!(
                "convert: {}: regexMatches pattern {:?}: {}",
                w.place,
                w.pattern,
                w.concern
            );
        }
        let changed = {
            let _installing = lock(&self.install_lock);
            let changed = self
                .config
                .load()
                .as_ref()
                .is_none_or(|old| !old.same_served(&config));
            if changed {
                self.config.store(Some(Arc::new(config)));
            }
            changed
        };
        let became_ready = {
            let mut r = lock(&self.readiness);
            let was_ready = *r == Readiness::Ready;
            if matches!(*r, Readiness::Pending(_)) {
                *r = Readiness::Ready;
            }
            !was_ready && *r == Readiness::Ready
        };
        self.ready_cv.notify_all();
        if became_ready {
            self.events.fire(&SdkEvent::Ready);
        } else if changed {
            self.events.fire(&SdkEvent::ConfigUpdated);
        }
    }

    /// The config URL as it may be shown in logs and errors: the query's secrets redacted and
    /// the SDK key replaced by `<sdk key>` (the endpoint is what a typo usually hides in).
    pub fn config_url_shown(&self) -> String {
        let (Some(req), Some(key)) = (self.config_request(), self.net.sdk_key.as_deref()) else {
            return String::new();
        };
        let shown = convert_ports::transport::redact_url(&req.url);
        let (base, query) = shown.split_once('?').unwrap_or((&shown, ""));
        let base = base.strip_suffix(key).map_or_else(
            || base.to_string(),
            |endpoint| format!("{endpoint}<sdk key>"),
        );
        if query.is_empty() {
            base
        } else {
            format!("{base}?{query}")
        }
    }

    /// Counts a failed config fetch of `url` ([`Shared::config_url_shown`]) and, until the SDK
    /// is ready, keeps it as the cause `wait_until_ready` reports.
    pub fn note_fetch_failure(&self, error: &Error, url: &str) {
        self.counters.fetch_errors.fetch_add(1, Ordering::Relaxed);
        let mut r = lock(&self.readiness);
        if let Readiness::Pending(last) = &mut *r {
            *last = Some(format!("{error} (GET {url})"));
        }
    }

    pub fn sdk_key_or_default(&self, cfg: &ProjectConfig) -> String {
        match &self.net.sdk_key {
            Some(k) => k.clone(),
            None => format!("{}/{}", cfg.account_id, cfg.project_id),
        }
    }

    /// Whether visitor state outlives the process: the sync store or the async store is
    /// persistent (Redis, SQLite). Decides the tracking payload's `enrichData`.
    fn keeps_visitors(&self) -> bool {
        #[cfg(feature = "tokio")]
        if self
            .async_store
            .as_ref()
            .is_some_and(|a| a.store.is_persistent())
        {
            return true;
        }
        self.store.is_persistent()
    }

    pub fn track_request<'a>(
        &self,
        cfg: &ProjectConfig,
        events: impl IntoIterator<Item = &'a TrackingEvent>,
    ) -> HttpRequest {
        let meta = PayloadMeta {
            enrich_data: !self.keeps_visitors(),
            account_id: &cfg.account_id,
            project_id: &cfg.project_id,
            source: tracking::SOURCE,
        };
        HttpRequest {
            method: Method::Post,
            url: tracking::track_url(
                &self.net.track_endpoint,
                &cfg.project_id,
                &self.sdk_key_or_default(cfg),
            ),
            headers: base_headers(self.net.sdk_key_secret.as_deref(), true),
            body: Some(tracking::payload_json(&meta, events)),
        }
    }

    pub fn config_request(&self) -> Option<HttpRequest> {
        let key = self.net.sdk_key.as_deref()?;
        Some(HttpRequest {
            method: Method::Get,
            url: tracking::config_url(
                &self.net.config_endpoint,
                key,
                Some(&self.net.environment),
                self.net.low_cache,
                self.net.debug_token.as_deref(),
            ),
            headers: base_headers(self.net.sdk_key_secret.as_deref(), false),
            body: None,
        })
    }

    /// Fetches the config once: `Ok` with the parsed config, or a typed error.
    pub fn fetch_config(&self) -> Result<ProjectConfig, Error> {
        self.fetch_config_classified().map_err(|f| f.error)
    }

    /// [`Shared::fetch_config`], telling a failure worth retrying soon from a permanent one.
    fn fetch_config_classified(&self) -> Result<ProjectConfig, FetchFailure> {
        let transport = self.transport.as_ref().ok_or(Error::NoTransport)?;
        let req = self.config_request().ok_or(Error::NoConfig)?;
        let resp = transport.send(&req).map_err(Error::from)?;
        match resp.class() {
            StatusClass::Success => {}
            class => {
                return Err(FetchFailure {
                    error: Error::Http {
                        status: resp.status,
                    },
                    retry_after: resp.retry_after(SystemTime::now()),
                    permanent: class == StatusClass::Permanent,
                });
            }
        }
        let text = String::from_utf8_lossy(&resp.body);
        let cfg = ProjectConfig::from_json(&text).map_err(Error::from)?;
        if let Some(e) = self.other_project(&cfg) {
            return Err(FetchFailure {
                error: e,
                retry_after: None,
                permanent: true,
            });
        }
        if !self.is_stopping() {
            self.save_cached_config(&text);
        }
        Ok(cfg)
    }

    /// The error for a fetched (or cached) config of another account or project than the SDK
    /// key names, when the key has the `account/project` form of Convert's keys (two numeric
    /// ids). Installing it would make decisions from another project's experiences and send
    /// tracking to that project. A key of another form names no project: nothing is checked
    /// (the config in use is no safe reference: a wrong first config would refuse every
    /// right one after it).
    fn other_project(&self, cfg: &ProjectConfig) -> Option<Error> {
        let numeric = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        let (account, project) = self
            .net
            .sdk_key
            .as_deref()
            .and_then(|k| k.split_once('/'))
            .filter(|(a, p)| numeric(a) && numeric(p))?;
        if *cfg.account_id == *account && *cfg.project_id == *project {
            return None;
        }
        Some(Error::OtherProject {
            expected: format!("{account}/{project}"),
            found: format!("{}/{}", cfg.account_id, cfg.project_id),
        })
    }

    fn cache_key(&self) -> Option<String> {
        self.net
            .sdk_key
            .as_ref()
            .map(|k| format!("convert-config-cache:{k}:{}", self.net.environment))
    }

    /// Saves the last good config text in a persistent store (a no-op for memory stores).
    fn save_cached_config(&self, text: &str) {
        if !self.store.is_persistent() {
            return;
        }
        let (Some(key), Ok(value)) = (self.cache_key(), convert_core::js::json_parse(text)) else {
            return;
        };
        let mut data = StoreData::default();
        data.extra_mut().insert("config".into(), value);
        if let Err(e) = self.store.set(&key, &data) {
            log::warn!("convert: could not cache the config in the data store: {e}");
        }
    }

    /// The last good config saved by a previous run, if the store has one.
    pub fn load_cached_config(&self) -> Option<ProjectConfig> {
        let key = self.cache_key()?;
        if !self.store.is_persistent() {
            return None;
        }
        let data = self.store.get(&key).ok().flatten()?;
        let value = data.extra()?.get("config")?.clone();
        let cfg = ProjectConfig::from_value(value).ok()?;
        if let Some(e) = self.other_project(&cfg) {
            log::warn!("convert: the cached config is not used: {e}");
            return None;
        }
        Some(cfg)
    }

    /// Queues events (constant time per event; the oldest are dropped beyond `max_queue`).
    /// Returns whether the delivery thread should be woken: it is parked and the queue was
    /// empty (its release timer must start) or reached the batch size.
    pub fn enqueue(&self, mut events: Vec<TrackingEvent>) -> bool {
        events.retain_mut(|e| self.admit(e));
        if events.is_empty() {
            return false;
        }
        let max = self.queue_bound();
        let batch = self.net.events.batch_size;
        let (before, after, dropped) = {
            let mut q = self.lock_queue();
            let before = q.len();
            for e in events {
                q.push(e);
            }
            let over = q.len().saturating_sub(max);
            let dropped = q.drop_oldest(over);
            (before, q.len(), dropped)
        };
        if dropped > 0 {
            self.counters
                .dropped
                .fetch_add(dropped as u64, Ordering::Relaxed);
            if !self.overflow_warned.swap(true, Ordering::Relaxed) {
                log::warn!(
                    "convert: tracking queue full ({max} events): dropping the oldest until delivery catches up (counted in metrics().dropped_events)"
                );
            }
        }
        (before == 0 || after >= batch)
            && self.parked.load(Ordering::Relaxed)
            && self.parked.swap(false, Ordering::SeqCst)
    }

    /// How many events the queue may hold now (see [`HEALTHY_SLACK`]).
    fn queue_bound(&self) -> usize {
        let max = self.net.events.max_queue;
        if self.net.tracking_enabled && self.healthy.load(Ordering::Relaxed) {
            max.saturating_mul(HEALTHY_SLACK)
        } else {
            max
        }
    }

    /// Bounds the nesting of the event's user data; `false` when the event must be refused.
    fn admit(&self, e: &mut TrackingEvent) -> bool {
        match e.bound_depth() {
            Ok(0) => true,
            Ok(n) => {
                if let Some(total) = count_and_sample(&self.counters.stripped_segments, n as u64) {
                    log::warn!(
                        "convert: a report segment of visitor {:?} is nested deeper than {} levels and was left out of its tracking event ({total} so far)",
                        e.visitor_id,
                        tracking::MAX_EVENT_DEPTH
                    );
                }
                true
            }
            Err(err) => {
                if let Some(total) = count_and_sample(&self.counters.invalid, 1) {
                    log::warn!(
                        "convert: tracking event of visitor {:?} refused: {err} ({total} so far, counted in metrics().invalid_events)",
                        e.visitor_id
                    );
                }
                false
            }
        }
    }

    fn fire_released(&self, reason: &str, batch: &[TrackingEvent], outcome: &Released) {
        if !self.events.has_subscribers() {
            return;
        }
        let visitors = batch
            .iter()
            .map(|e| e.visitor_id.as_str())
            .collect::<HashSet<_>>()
            .len();
        self.events.fire(&SdkEvent::QueueReleased {
            reason: reason.into(),
            visitors,
            events: batch.len(),
            error: outcome.error.clone(),
            status: outcome.status,
            dropped: outcome.dropped,
        });
    }
}

/// What became of one batch.
struct Released {
    error: Option<String>,
    status: Option<u16>,
    dropped: usize,
}

/// A config fetch that failed, and whether retrying soon can help.
pub(crate) struct FetchFailure {
    pub error: Error,
    pub retry_after: Option<Duration>,
    pub permanent: bool,
}

impl From<Error> for FetchFailure {
    fn from(error: Error) -> Self {
        FetchFailure {
            error,
            retry_after: None,
            permanent: false,
        }
    }
}

/// Commands for the delivery thread.
pub(crate) enum Command {
    /// Deliver what is queued now and answer with the number of events delivered.
    Flush(Sender<Result<usize, Error>>),
    /// Deliver what can be delivered before the deadline, then stop.
    Shutdown(Instant),
}

/// One background thread: its handle and a channel that disconnects when it ends.
struct Thread {
    handle: std::thread::JoinHandle<()>,
    done: Receiver<()>,
}

impl Thread {
    fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> std::io::Result<Thread> {
        let (done_tx, done) = crossbeam_channel::bounded::<()>(0);
        let handle = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                let _done = done_tx; // dropped when the thread ends, however it ends
                f();
            })?;
        Ok(Thread { handle, done })
    }

    fn is_current(&self) -> bool {
        self.handle.thread().id() == std::thread::current().id()
    }

    /// Waits until the thread ended or `deadline` passed; joins it if it ended, else leaves it
    /// to finish on its own. Returns whether it ended.
    fn finish(self, deadline: Instant) -> bool {
        if self.is_current() {
            return false;
        }
        match self.done.recv_deadline(deadline) {
            Err(RecvTimeoutError::Disconnected) | Ok(()) => {
                let _ = self.handle.join();
                true
            }
            Err(RecvTimeoutError::Timeout) => false,
        }
    }
}

/// Handles of the background threads. Nothing here is locked while anyone waits: the senders
/// are shared as they are, and a thread handle is only taken out of its slot.
pub(crate) struct Workers {
    wake: Option<Sender<()>>,
    ctl: Option<Sender<Command>>,
    delivery_id: Option<std::thread::ThreadId>,
    refresher_id: Option<std::thread::ThreadId>,
    delivery: Mutex<Option<Thread>>,
    refresher: Mutex<Option<(Sender<()>, Thread)>>,
    /// Dropped by `stop`: disconnects `closed`, which wakes every caller waiting in `flush`.
    closing: Mutex<Option<Sender<()>>>,
    closed: Receiver<()>,
}

impl Workers {
    pub fn start(shared: &Arc<Shared>, refresh: bool, retry_soon: bool) -> Workers {
        let (closing, closed) = crossbeam_channel::bounded::<()>(0);
        let mut w = Workers {
            closing: Mutex::new(Some(closing)),
            closed,
            wake: None,
            ctl: None,
            delivery_id: None,
            refresher_id: None,
            delivery: Mutex::new(None),
            refresher: Mutex::new(None),
        };
        if shared.transport.is_some() {
            // Wake-ups go through a channel of one slot (coalesced); commands have their own.
            let (wake_tx, wake_rx) = crossbeam_channel::bounded::<()>(1);
            let (ctl_tx, ctl_rx) = crossbeam_channel::unbounded::<Command>();
            let s = Arc::clone(shared);
            match Thread::spawn("convert-delivery", move || {
                Delivery::new(&s, ctl_rx).run(&wake_rx);
            }) {
                Ok(t) => {
                    w.wake = Some(wake_tx);
                    w.ctl = Some(ctl_tx);
                    w.delivery_id = Some(t.handle.thread().id());
                    w.delivery = Mutex::new(Some(t));
                }
                Err(e) => log::error!("convert: cannot start the delivery thread: {e}"),
            }
        }
        if refresh && shared.net.sdk_key.is_some() && shared.transport.is_some() {
            let (stop_tx, stop_rx) = crossbeam_channel::bounded::<()>(1);
            let s = Arc::clone(shared);
            match Thread::spawn("convert-config", move || {
                refresh_loop(&s, &stop_rx, u32::from(retry_soon));
            }) {
                Ok(t) => {
                    w.refresher_id = Some(t.handle.thread().id());
                    w.refresher = Mutex::new(Some((stop_tx, t)));
                }
                Err(e) => log::error!("convert: cannot start the config refresher: {e}"),
            }
        }
        w
    }

    /// Wakes the delivery thread (coalesced: one pending wake-up is enough, it re-reads the
    /// queue). Never blocks.
    pub fn wake(&self) {
        if let Some(wake) = &self.wake {
            let _ = wake.try_send(());
        }
    }

    /// Whether the caller is one of the SDK's own threads (an event handler runs there).
    pub fn on_worker_thread(&self) -> bool {
        let me = Some(std::thread::current().id());
        me == self.delivery_id || me == self.refresher_id
    }

    /// Asks the delivery thread to deliver what is queued and waits up to `timeout` for it.
    pub fn flush(&self, shared: &Shared, timeout: Duration) -> Result<usize, Error> {
        if shared.is_stopping() {
            return Err(Error::Closed);
        }
        let Some(ctl) = &self.ctl else {
            return Err(Error::NoTransport);
        };
        if Some(std::thread::current().id()) == self.delivery_id {
            // An event handler running on the delivery thread: it cannot wait for itself.
            // Delivery of the backlog goes on as soon as the handler returns.
            self.wake();
            return Err(Error::Reentrant);
        }
        let (tx, rx) = crossbeam_channel::bounded(1);
        ctl.send(Command::Flush(tx)).map_err(|_| Error::Closed)?;
        crossbeam_channel::select! {
            recv(rx) -> r => r.unwrap_or(Err(Error::Closed)),
            // Closed meanwhile: an answer that is already there still counts.
            recv(self.closed) -> _ => rx.try_recv().unwrap_or(Err(Error::Closed)),
            default(timeout) => Err(Error::Timeout),
        }
    }

    /// Stops the threads: the delivery thread sends what it can until `timeout` has elapsed.
    /// Returns within `timeout` plus a few milliseconds whatever the transport does. Returns
    /// whether the delivery thread ended (`false`: it is still in a request and was abandoned,
    /// or this is called from a worker thread, which cannot wait for itself).
    pub fn stop(&self, shared: &Shared, timeout: Duration) -> bool {
        if shared.stopping.swap(true, Ordering::AcqRel) {
            return true;
        }
        let deadline = instant_after(Instant::now(), timeout);
        drop(lock(&self.closing).take());
        if let Some(ctl) = &self.ctl {
            let _ = ctl.send(Command::Shutdown(deadline));
        }
        let refresher = lock(&self.refresher).take();
        if let Some((stop, _)) = &refresher {
            let _ = stop.try_send(());
        }
        let delivery = lock(&self.delivery).take();
        if self.on_worker_thread() {
            return false;
        }
        // A small grace past the deadline lets a thread that has just finished end cleanly.
        let grace = instant_after(deadline, Duration::from_millis(20));
        let ended = delivery.is_none_or(|t| t.finish(grace));
        if let Some((_, t)) = refresher {
            // Nobody needs a refresh any more: a refresher that does not end at once is in a
            // request, and is left to end when that request does (it was told to stop).
            t.finish(instant_after(Instant::now(), Duration::from_millis(20)));
        }
        if !ended {
            // The delivery thread is stuck in a request past the deadline: give up on it.
            let left = {
                let mut q = shared.lock_queue();
                shared.abandoned.store(true, Ordering::Release);
                q.take_all().len()
            };
            shared
                .counters
                .abandoned
                .fetch_add(left as u64, Ordering::Relaxed);
            log::warn!(
                "convert: closed while a tracking request was still unanswered: {left} queued events abandoned; the request in flight is counted as delivered only if it succeeds"
            );
        }
        ended
    }
}

/// The delivery thread's state.
struct Delivery<'a> {
    shared: &'a Shared,
    ctl: Receiver<Command>,
    /// Consecutive transient failures.
    failures: u32,
    retry_at: Option<Instant>,
    /// When the release timer of a partial batch fires.
    timer: Option<Instant>,
    /// Halves of a batch split for size, sent before anything else.
    split: VecDeque<Vec<TrackingEvent>>,
    outage: Option<Outage>,
    /// `dropped_events` at the last successful delivery: an outage counts its drops from there,
    /// so that those made while its first request hung (before it failed) are counted too.
    dropped_at_success: u64,
    /// Full batches keep coming: poll every [`BUSY_POLL`] instead of waiting to be woken.
    busy: bool,
    /// While shutting down: when to stop sending, however many events producers still add.
    stop_by: Option<Instant>,
}

/// How often a busy delivery thread looks at the queue on its own.
const BUSY_POLL: Duration = Duration::from_millis(1);

/// A stretch of failed deliveries, for rate-limited logging.
struct Outage {
    since: Instant,
    last_summary: Instant,
    attempts: u32,
    dropped_at_start: u64,
}

/// How often a summary is logged while delivery keeps failing.
const OUTAGE_SUMMARY_EVERY: Duration = Duration::from_secs(60);

impl<'a> Delivery<'a> {
    fn new(shared: &'a Shared, ctl: Receiver<Command>) -> Self {
        Delivery {
            shared,
            ctl,
            failures: 0,
            retry_at: None,
            timer: None,
            split: VecDeque::new(),
            outage: None,
            dropped_at_success: shared.counters.dropped.load(Ordering::Relaxed),
            busy: false,
            stop_by: None,
        }
    }

    fn queued(&self) -> usize {
        self.shared.lock_queue().len() + self.split.iter().map(Vec::len).sum::<usize>()
    }

    /// The loop: sleeps until a command, a wake-up, the release timer or the retry time.
    ///
    /// Wake-ups cost the producing thread a system call, so they are rare: a producer wakes
    /// the thread only when it is *parked* (idle, no retry pending) and the queue just became
    /// non-empty (to start the release timer) or reached the batch size. While traffic keeps
    /// the queue at the batch size, the thread is *busy*: it polls every [`BUSY_POLL`] on its
    /// own and producers never wake it.
    fn run(mut self, wake: &Receiver<()>) {
        let auto = self.shared.net.tracking_enabled;
        let batch_size = self.shared.net.events.batch_size;
        loop {
            let now = Instant::now();
            let queued = self.queued();
            if queued == 0 {
                self.timer = None;
            } else if self.timer.is_none() {
                self.timer = Some(instant_after(now, self.shared.net.events.release_interval));
            }
            let due = match (auto, self.retry_at, self.timer) {
                (false, _, _) => None,
                (true, Some(at), _) => Some(at),
                (true, None, _) if queued >= batch_size => Some(now),
                (true, None, t) if self.busy => {
                    Some(t.map_or(now + BUSY_POLL, |t| t.min(now + BUSY_POLL)))
                }
                (true, None, t) => t,
            };
            if auto && self.retry_at.is_none() && !self.busy && queued < batch_size {
                // Publish that wake-ups are wanted, then look again: an event queued meanwhile
                // is either seen here or its producer sees the flag.
                self.shared.parked.store(true, Ordering::SeqCst);
                let again = self.queued();
                if again >= batch_size || (again > 0 && queued == 0) {
                    self.shared.parked.store(false, Ordering::SeqCst);
                    continue;
                }
            }
            let wait = due.map_or(Duration::from_secs(3600), |d| {
                d.saturating_duration_since(now)
            });
            let command = crossbeam_channel::select! {
                recv(self.ctl) -> c => match c {
                    Ok(c) => Some(c),
                    // Every handle is gone without a shutdown (cannot happen in practice).
                    Err(_) => Some(Command::Shutdown(Instant::now())),
                },
                recv(wake) -> _ => None,
                default(wait) => None,
            };
            self.shared.parked.store(false, Ordering::SeqCst);
            match command {
                Some(Command::Flush(reply)) => {
                    let limit = self.queued();
                    let r = self.release("flush", limit);
                    let _ = reply.send(r);
                }
                Some(Command::Shutdown(deadline)) => {
                    self.shutdown(deadline);
                    return;
                }
                None => {
                    let now = Instant::now();
                    let full = self.queued() >= batch_size;
                    let ready = match (self.retry_at, self.timer) {
                        (Some(at), _) => now >= at,
                        (None, _) if full => true,
                        (None, Some(t)) => now >= t,
                        (None, None) => false,
                    };
                    if auto && ready {
                        let reason = if self.retry_at.is_some() {
                            "retry"
                        } else if full {
                            "size"
                        } else {
                            "timeout"
                        };
                        let r = self.release(reason, usize::MAX);
                        // Traffic fills batches: poll instead of being woken.
                        self.busy = reason == "size" && r.is_ok();
                    } else {
                        self.busy = false;
                    }
                }
            }
        }
    }

    /// Sends batches, oldest first, until `limit` events were dealt with, the queue is empty, a
    /// transient failure stops it, or a command is waiting. Returns the events delivered, or the
    /// failure (a transient one after which the events were kept, or the last permanent one).
    fn release(&mut self, reason: &str, limit: usize) -> Result<usize, Error> {
        let mut delivered = 0;
        let mut handled = 0;
        let mut permanent: Option<Error> = None;
        while handled < limit {
            let Some(batch) = self.next_batch() else {
                break;
            };
            match self.send(reason, batch) {
                Ok(Some(sent)) => {
                    delivered += sent;
                    handled += sent;
                }
                Ok(None) => {} // split for size: the halves come next
                Err(Failure::Permanent(e, dropped)) => {
                    handled += dropped;
                    permanent = Some(e);
                }
                Err(Failure::Transient(e)) => return Err(e),
            }
            if reason != "flush" && reason != "close" && !self.ctl.is_empty() {
                break; // a flush or shutdown is waiting; the backlog goes on after it
            }
            if self.stop_by.is_some_and(|t| Instant::now() >= t) {
                break; // shutting down: producers may keep the queue full for ever
            }
        }
        self.timer = None;
        match permanent {
            Some(e) => Err(e),
            None => Ok(delivered),
        }
    }

    /// The next batch: a pending half of a split batch, or the oldest queued events.
    fn next_batch(&mut self) -> Option<Vec<TrackingEvent>> {
        if let Some(b) = self.split.pop_front() {
            return Some(b);
        }
        let batch = self
            .shared
            .lock_queue()
            .take_front(self.shared.net.batch.max_events);
        (!batch.is_empty()).then_some(batch)
    }

    /// Splits `batch` in halves to be sent next, in order.
    fn split(&mut self, mut batch: Vec<TrackingEvent>) {
        let second = batch.split_off(batch.len() / 2);
        self.split.push_front(second);
        self.split.push_front(batch);
    }

    /// Sends one batch. `Ok(Some(n))`: delivered; `Ok(None)`: split in halves for size.
    fn send(&mut self, reason: &str, batch: Vec<TrackingEvent>) -> Result<Option<usize>, Failure> {
        let shared = self.shared;
        let (Some(transport), Some(cfg)) = (shared.transport.as_ref(), shared.config()) else {
            // No config yet (SDK-key mode before the first fetch): keep the events.
            self.keep(batch);
            self.retry_at = Some(instant_after(Instant::now(), shared.net.retry.delay(1)));
            return Err(Failure::Transient(Error::NotReady {
                cause: "no config yet".into(),
            }));
        };
        let request = shared.track_request(&cfg, &batch);
        let body_len = request.body.as_ref().map_or(0, String::len);
        if body_len > shared.net.batch.max_bytes {
            return self.too_large(reason, batch, None);
        }
        let (status, error, retry_after) = match transport.send(&request) {
            Ok(r) => match r.class() {
                StatusClass::Success => (Some(r.status), None, None),
                StatusClass::TooLarge => return self.too_large(reason, batch, Some(r.status)),
                StatusClass::Permanent => {
                    let e = Error::Http { status: r.status };
                    return Err(self.reject(reason, batch, r.status, e));
                }
                StatusClass::Transient => (
                    Some(r.status),
                    Some(Error::Http { status: r.status }),
                    r.retry_after(SystemTime::now()),
                ),
            },
            Err(e) => (None, Some(Error::Transport(e)), None),
        };
        match error {
            None => {
                let n = batch.len();
                shared
                    .counters
                    .delivered
                    .fetch_add(n as u64, Ordering::Relaxed);
                self.recovered();
                shared.fire_released(
                    reason,
                    &batch,
                    &Released {
                        error: None,
                        status,
                        dropped: 0,
                    },
                );
                Ok(Some(n))
            }
            Some(e) => {
                shared
                    .counters
                    .failed_batches
                    .fetch_add(1, Ordering::Relaxed);
                self.failures = self.failures.saturating_add(1);
                self.retry_at = Some(instant_after(
                    Instant::now(),
                    shared.net.retry.delay_after(self.failures, retry_after),
                ));
                // Failing: the queue is bounded by `max_queue` again (`keep` trims it below).
                shared.healthy.store(false, Ordering::Relaxed);
                self.note_failure(&e);
                let released = Released {
                    error: Some(e.to_string()),
                    status,
                    dropped: 0,
                };
                shared.fire_released(reason, &batch, &released);
                self.keep(batch);
                Err(Failure::Transient(e))
            }
        }
    }

    /// Puts a batch that could not be sent (and any pending halves) back at the front of the
    /// queue, then applies the queue bound (the oldest go first). After an abandoning close
    /// the events are counted as abandoned instead.
    fn keep(&mut self, batch: Vec<TrackingEvent>) {
        let shared = self.shared;
        let mut events = batch;
        for half in self.split.drain(..) {
            events.extend(half);
        }
        let dropped = {
            let mut q = shared.lock_queue();
            if shared.abandoned.load(Ordering::Acquire) {
                drop(q);
                shared
                    .counters
                    .abandoned
                    .fetch_add(events.len() as u64, Ordering::Relaxed);
                return;
            }
            q.restore_front(events);
            let max = shared.queue_bound();
            let over = q.len().saturating_sub(max);
            q.drop_oldest(over)
        };
        if dropped > 0 {
            shared
                .counters
                .dropped
                .fetch_add(dropped as u64, Ordering::Relaxed);
        }
    }

    /// A batch too large for the server (413) or for [`BatchLimits::max_bytes`]: split in
    /// halves, or dropped and counted when it is a single event.
    fn too_large(
        &mut self,
        reason: &str,
        batch: Vec<TrackingEvent>,
        status: Option<u16>,
    ) -> Result<Option<usize>, Failure> {
        if batch.len() > 1 {
            self.split(batch);
            return Ok(None);
        }
        let shared = self.shared;
        if let Some(total) = count_and_sample(&shared.counters.too_large, 1) {
            log::warn!(
                "convert: a tracking event of visitor {:?} is too large to send{} and was dropped ({total} so far, counted in metrics().too_large_events)",
                batch.first().map_or("", |e| e.visitor_id.as_str()),
                status.map_or_else(String::new, |s| format!(" (HTTP {s})")),
            );
        }
        let released = Released {
            error: Some(Error::TooLarge.to_string()),
            status,
            dropped: 1,
        };
        shared.fire_released(reason, &batch, &released);
        Err(Failure::Permanent(Error::TooLarge, 1))
    }

    /// A permanent refusal: the batch is dropped, counted and announced; never retried.
    fn reject(
        &mut self,
        reason: &str,
        batch: Vec<TrackingEvent>,
        status: u16,
        error: Error,
    ) -> Failure {
        let shared = self.shared;
        let n = batch.len();
        if let Some(total) = count_and_sample(&shared.counters.rejected, n as u64) {
            log::warn!(
                "convert: the tracking endpoint refused a batch for good (HTTP {status}); {n} events dropped ({total} so far, counted in metrics().rejected_events)"
            );
        }
        let released = Released {
            error: Some(error.to_string()),
            status: Some(status),
            dropped: n,
        };
        shared.fire_released(reason, &batch, &released);
        Failure::Permanent(error, n)
    }

    fn note_failure(&mut self, e: &Error) {
        let now = Instant::now();
        let shared = self.shared;
        match &mut self.outage {
            None => {
                log::warn!(
                    "convert: tracking delivery failing ({e}); events are kept and retried with backoff"
                );
                self.outage = Some(Outage {
                    since: now,
                    last_summary: now,
                    attempts: 1,
                    dropped_at_start: self.dropped_at_success,
                });
            }
            Some(o) => {
                o.attempts += 1;
                if now.duration_since(o.last_summary) >= OUTAGE_SUMMARY_EVERY {
                    o.last_summary = now;
                    log::warn!(
                        "convert: tracking delivery still failing after {} attempts over {:?} ({e}); {} events queued, {} dropped on overflow during this outage",
                        o.attempts,
                        now.duration_since(o.since),
                        shared.lock_queue().len(),
                        shared.counters.dropped.load(Ordering::Relaxed) - o.dropped_at_start
                    );
                }
            }
        }
    }

    fn recovered(&mut self) {
        self.shared.healthy.store(true, Ordering::Relaxed);
        self.failures = 0;
        self.retry_at = None;
        let shared = self.shared;
        if let Some(o) = self.outage.take() {
            log::warn!(
                "convert: tracking delivery recovered after {} failed attempts over {:?}; {} events dropped on overflow meanwhile",
                o.attempts,
                o.since.elapsed(),
                shared.counters.dropped.load(Ordering::Relaxed) - o.dropped_at_start
            );
        }
        self.dropped_at_success = shared.counters.dropped.load(Ordering::Relaxed);
        // The next overflow is a new one (worth a warning) once the queue is back under
        // `max_queue`; while producers outpace a healthy endpoint (the queue near its healthy
        // bound), every success would otherwise re-arm it.
        if shared.lock_queue().len() < shared.net.events.max_queue {
            shared.overflow_warned.store(false, Ordering::Relaxed);
        }
    }

    /// Sends what can be sent before `deadline` (with automatic delivery on), then counts what
    /// is left: abandoned, or discarded when delivery was manual.
    fn shutdown(&mut self, deadline: Instant) {
        let shared = self.shared;
        self.stop_by = Some(deadline);
        if shared.net.tracking_enabled {
            while self.queued() > 0 && Instant::now() < deadline {
                if self.release("close", usize::MAX).is_ok() {
                    continue;
                }
                let pause = self
                    .retry_at
                    .map_or(Duration::ZERO, |t| {
                        t.saturating_duration_since(Instant::now())
                    })
                    .min(deadline.saturating_duration_since(Instant::now()));
                std::thread::sleep(pause);
            }
        }
        let mut left = self.split.drain(..).map(|b| b.len()).sum::<usize>();
        left += shared.lock_queue().take_all().len();
        if left == 0 {
            return;
        }
        if shared.net.tracking_enabled {
            shared
                .counters
                .abandoned
                .fetch_add(left as u64, Ordering::Relaxed);
            log::warn!(
                "convert: closed with {left} tracking events undelivered (counted in metrics().abandoned_events)"
            );
        } else {
            shared
                .counters
                .discarded
                .fetch_add(left as u64, Ordering::Relaxed);
            log::warn!(
                "convert: closed with {left} tracking events queued and automatic delivery off; call flush() before close() to send them (counted in metrics().discarded_events)"
            );
        }
    }
}

/// Why a batch was not delivered.
enum Failure {
    /// Kept for a retry.
    Transient(Error),
    /// Given up: the error and the number of events dropped.
    Permanent(Error, usize),
}

fn refresh_loop(shared: &Shared, stop: &Receiver<()>, initial_failures: u32) {
    let mut failures: u32 = initial_failures;
    let mut retry_after: Option<Duration> = None;
    let mut permanent = false;
    loop {
        let ready = shared.readiness() == Readiness::Ready;
        let interval = shared.net.refresh_interval;
        let wait = if permanent {
            // Retrying soon cannot help (e.g. 404 for a wrong SDK key): try again later.
            interval
        } else if failures > 0 {
            shared
                .net
                .retry
                .delay_after(failures, retry_after)
                .min(interval.max(retry_after.unwrap_or_default().min(MAX_RETRY_AFTER)))
        } else if ready {
            interval
        } else {
            Duration::ZERO
        };
        match stop.recv_timeout(wait) {
            Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
            Err(RecvTimeoutError::Timeout) => {}
        }
        let fetched = shared.fetch_config_classified();
        if shared.is_stopping() {
            // Closed while the request was out: nobody wants its config any more.
            return;
        }
        match fetched {
            Ok(cfg) => {
                failures = 0;
                retry_after = None;
                permanent = false;
                shared.install(cfg);
            }
            Err(f) => {
                failures = failures.saturating_add(1);
                retry_after = f.retry_after;
                permanent = f.permanent;
                let url = shared.config_url_shown();
                if failures == 1 || failures.is_power_of_two() {
                    log::warn!(
                        "convert: config fetch (GET {url}) failed: {} ({failures} in a row); {}",
                        f.error,
                        if ready {
                            "the current config stays in use"
                        } else {
                            "no config yet, retrying"
                        }
                    );
                }
                shared.note_fetch_failure(&f.error, &url);
            }
        }
    }
}
