//! Shared state and the background threads: tracking delivery and config refresh.
//!
//! The worker threads own an `Arc<Shared>`, never the `Core` handle itself, so dropping the last
//! `Core` can stop them, deliver what is queued and join them.

use crate::error::Error;
use crate::events::EventHub;
use arc_swap::ArcSwapOption;
use convert_core::tracking::{self, PayloadMeta, QueuedVisitor, TrackingQueue};
use convert_core::{ProjectConfig, StoreData, TrackingEvent};
use convert_ports::{DataStore, HttpRequest, Method, SdkEvent, Transport};
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// The `User-Agent` sent with every request (the reference's bot-filter invariant).
pub const USER_AGENT: &str = "ConvertAgent/1.0";

/// Tracking queue settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventsOptions {
    /// Release when this many events are queued (default 10).
    pub batch_size: usize,
    /// Release at least this often while events are queued (default 1 s).
    pub release_interval: Duration,
    /// Keep at most this many events; beyond it the oldest are dropped and counted (default 10,000).
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

/// Retry policy for failed deliveries and config fetches: exponential backoff with jitter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
    /// The delay before retry number `attempt` (1-based): `initial × 2^(attempt-1)`, capped, with
    /// ±25 % jitter so a fleet does not retry in lockstep.
    pub fn delay(&self, attempt: u32) -> Duration {
        let base = self
            .initial
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
            .min(self.max);
        let jitter = jitter_fraction(); // in [-0.25, 0.25)
        let ms = base.as_secs_f64() * 1000.0 * (1.0 + jitter);
        Duration::from_micros((ms * 1000.0) as u64).min(self.max)
    }
}

fn jitter_fraction() -> f64 {
    // xorshift over the clock and a per-process counter: enough to spread retries, no crate needed.
    static COUNTER: AtomicU64 = AtomicU64::new(0x9e37_79b9_7f4a_7c15);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mut x = t ^ COUNTER.fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed);
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    (x % 10_000) as f64 / 20_000.0 - 0.25
}

/// Counters an integrator can watch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Metrics {
    /// Tracking events dropped because the queue was full.
    pub dropped_events: u64,
    /// Data store operations that failed.
    pub store_errors: u64,
    /// Tracking events delivered.
    pub delivered_events: u64,
    /// Delivery attempts that failed (their events were kept).
    pub failed_batches: u64,
    /// Config fetches that failed.
    pub config_fetch_errors: u64,
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
    pub net: NetOptions,
    pub dropped: AtomicU64,
    pub store_errors: AtomicU64,
    pub delivered: AtomicU64,
    pub failed_batches: AtomicU64,
    pub fetch_errors: AtomicU64,
}

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
                .is_none_or(|old| old.raw() != config.raw());
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

    pub fn note_fetch_failure(&self, message: String) {
        self.fetch_errors.fetch_add(1, Ordering::Relaxed);
        let mut r = lock(&self.readiness);
        if let Readiness::Pending(last) = &mut *r {
            *last = Some(message);
        }
    }

    pub fn sdk_key_or_default(&self, cfg: &ProjectConfig) -> String {
        match &self.net.sdk_key {
            Some(k) => k.clone(),
            None => format!("{}/{}", cfg.account_id, cfg.project_id),
        }
    }

    pub fn track_request(&self, cfg: &ProjectConfig, visitors: &[QueuedVisitor]) -> HttpRequest {
        let meta = PayloadMeta {
            enrich_data: !self.store.is_persistent(),
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
            body: Some(tracking::payload_json(&meta, visitors)),
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
        let transport = self.transport.as_ref().ok_or(Error::NoTransport)?;
        let req = self.config_request().ok_or(Error::NoConfig)?;
        let resp = transport.send(&req)?;
        if resp.status != 200 {
            return Err(Error::Http {
                status: resp.status,
            });
        }
        let text = String::from_utf8_lossy(&resp.body);
        let cfg = ProjectConfig::from_json(&text)?;
        self.save_cached_config(&text);
        Ok(cfg)
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
        let (Some(key), Ok(value)) = (self.cache_key(), serde_json::from_str(text)) else {
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
        ProjectConfig::from_value(value).ok()
    }

    fn enforce_bound(&self, q: &mut TrackingQueue) {
        let max = self.net.events.max_queue;
        if q.len() > max {
            let dropped = q.drop_oldest(q.len() - max);
            self.dropped.fetch_add(dropped as u64, Ordering::Relaxed);
            log::warn!("convert: tracking queue full ({max} events); dropped the {dropped} oldest");
        }
    }

    /// Queues events; tells the delivery thread what it needs to know: that the batch size is
    /// reached, or that the queue is no longer empty (so its release timer must start).
    pub fn enqueue(&self, events: Vec<TrackingEvent>) -> Option<Command> {
        let mut q = self.lock_queue();
        let was_empty = q.is_empty();
        for e in events {
            q.push(e);
        }
        self.enforce_bound(&mut q);
        if q.len() >= self.net.events.batch_size {
            Some(Command::Kick)
        } else if was_empty && !q.is_empty() {
            Some(Command::Arm)
        } else {
            None
        }
    }

    /// Sends one batch of everything queued now. On failure the batch goes back to the front.
    pub fn release_once(&self, reason: &str) -> Result<usize, Error> {
        let transport = self.transport.as_ref().ok_or(Error::NoTransport)?;
        let Some(cfg) = self.config() else {
            return Ok(0);
        };
        let batch = {
            let mut q = self.lock_queue();
            if q.is_empty() {
                return Ok(0);
            }
            q.take()
        };
        let events: usize = batch.iter().map(|v| v.events.len()).sum();
        let visitors = batch.len();
        let request = self.track_request(&cfg, &batch);
        let outcome = match transport.send(&request) {
            Ok(r) if r.status == 200 => Ok(()),
            Ok(r) => Err(Error::Http { status: r.status }),
            Err(e) => Err(Error::Transport(e)),
        };
        match outcome {
            Ok(()) => {
                self.delivered.fetch_add(events as u64, Ordering::Relaxed);
                self.events.fire(&SdkEvent::QueueReleased {
                    reason: reason.into(),
                    visitors,
                    events,
                    error: None,
                });
                Ok(events)
            }
            Err(e) => {
                self.failed_batches.fetch_add(1, Ordering::Relaxed);
                log::warn!(
                    "convert: tracking delivery failed ({e}); {events} events kept for retry"
                );
                {
                    let mut q = self.lock_queue();
                    q.restore(batch);
                    self.enforce_bound(&mut q);
                }
                self.events.fire(&SdkEvent::QueueReleased {
                    reason: reason.into(),
                    visitors,
                    events,
                    error: Some(e.to_string()),
                });
                Err(e)
            }
        }
    }

    /// Sends batches until the queue is empty or a send fails.
    pub fn release_all(&self, reason: &str) -> Result<usize, Error> {
        let mut sent = 0;
        loop {
            let n = self.release_once(reason)?;
            if n == 0 {
                return Ok(sent);
            }
            sent += n;
        }
    }
}

/// Commands for the delivery thread.
pub(crate) enum Command {
    /// The batch size was reached.
    Kick,
    /// The queue was empty and is not any more: start the release timer.
    Arm,
    /// Deliver everything now and answer.
    Flush(Sender<Result<usize, Error>>),
    /// Deliver what can be delivered before the deadline, then stop.
    Shutdown(Instant),
}

/// Handles of the background threads.
pub(crate) struct Workers {
    delivery: Option<(
        Sender<Command>,
        Sender<Command>,
        std::thread::JoinHandle<()>,
    )>,
    refresher: Option<(Sender<()>, std::thread::JoinHandle<()>)>,
}

impl Workers {
    pub fn none() -> Self {
        Workers {
            delivery: None,
            refresher: None,
        }
    }

    pub fn start(shared: &Arc<Shared>, refresh: bool, retry_soon: bool) -> Workers {
        let mut w = Workers::none();
        if shared.transport.is_some() {
            // Kicks go through a channel of one slot (coalesced); control commands have their own.
            let (kick_tx, kick_rx) = crossbeam_channel::bounded::<Command>(1);
            let (ctl_tx, ctl_rx) = crossbeam_channel::unbounded::<Command>();
            let s = Arc::clone(shared);
            match std::thread::Builder::new()
                .name("convert-delivery".into())
                .spawn(move || delivery_loop(&s, &kick_rx, &ctl_rx))
            {
                Ok(h) => w.delivery = Some((kick_tx, ctl_tx, h)),
                Err(e) => log::error!("convert: cannot start the delivery thread: {e}"),
            }
        }
        if refresh && shared.net.sdk_key.is_some() && shared.transport.is_some() {
            let (stop_tx, stop_rx) = crossbeam_channel::bounded::<()>(1);
            let s = Arc::clone(shared);
            match std::thread::Builder::new()
                .name("convert-config".into())
                .spawn(move || refresh_loop(&s, &stop_rx, u32::from(retry_soon)))
            {
                Ok(h) => w.refresher = Some((stop_tx, h)),
                Err(e) => log::error!("convert: cannot start the config refresher: {e}"),
            }
        }
        w
    }

    /// Passes `Kick` or `Arm` to the delivery thread (dropped when one is already pending: the
    /// thread re-reads the queue either way).
    pub fn kick(&self, command: Command) {
        if let Some((kick, _, _)) = &self.delivery {
            match kick.try_send(command) {
                Ok(()) | Err(TrySendError::Full(_)) => {}
                Err(TrySendError::Disconnected(_)) => {
                    log::warn!("convert: the delivery thread is gone; events stay queued");
                }
            }
        }
    }

    pub fn flush(&self, timeout: Duration) -> Result<usize, Error> {
        let Some((_, ctl, _)) = &self.delivery else {
            return Err(Error::NoTransport);
        };
        let (tx, rx) = crossbeam_channel::bounded(1);
        ctl.send(Command::Flush(tx)).map_err(|_| Error::Closed)?;
        match rx.recv_timeout(timeout) {
            Ok(r) => r,
            Err(_) => Err(Error::Timeout),
        }
    }

    /// Stops the threads; the delivery thread first sends what it can before `timeout`.
    pub fn stop(&mut self, timeout: Duration) {
        if let Some((stop, h)) = self.refresher.take() {
            let _ = stop.send(());
            if h.thread().id() != std::thread::current().id() {
                let _ = h.join();
            }
        }
        if let Some((_, ctl, h)) = self.delivery.take() {
            let _ = ctl.send(Command::Shutdown(Instant::now() + timeout));
            if h.thread().id() != std::thread::current().id() {
                let _ = h.join();
            }
        }
    }
}

fn delivery_loop(shared: &Shared, kicks: &Receiver<Command>, ctl: &Receiver<Command>) {
    let mut failures: u32 = 0;
    let mut retry_at: Option<Instant> = None;
    loop {
        let interval = shared.net.events.release_interval;
        let auto = shared.net.tracking_enabled;
        let queued = !shared.lock_queue().is_empty();
        let wait = match retry_at {
            Some(t) => t.saturating_duration_since(Instant::now()),
            None if queued && auto => interval,
            None => Duration::from_secs(3600),
        };
        let cmd = crossbeam_channel::select! {
            recv(ctl) -> c => c.ok(),
            recv(kicks) -> c => c.ok(),
            default(wait) => None,
        };
        let reason = match cmd {
            Some(Command::Flush(reply)) => {
                let r = shared.release_all("flush");
                failures = if r.is_ok() { 0 } else { failures + 1 };
                retry_at = r
                    .is_err()
                    .then(|| Instant::now() + shared.net.retry.delay(failures));
                let _ = reply.send(r);
                continue;
            }
            Some(Command::Shutdown(deadline)) => {
                if auto {
                    shutdown_drain(shared, deadline);
                }
                return;
            }
            Some(Command::Kick) => {
                if retry_at.is_some() || !auto {
                    continue; // a retry is already scheduled, or delivery is manual
                }
                "size"
            }
            Some(Command::Arm) => {
                // The wait is recomputed from the queue at the top of the loop; a pending `Arm`
                // may have kept a `Kick` out of the channel, so check the size here.
                let full = shared.lock_queue().len() >= shared.net.events.batch_size;
                if !full || retry_at.is_some() || !auto {
                    continue;
                }
                "size"
            }
            None => {
                if !(auto || retry_at.is_some()) || shared.lock_queue().is_empty() {
                    retry_at = None;
                    continue;
                }
                if retry_at.is_some() {
                    "retry"
                } else {
                    "timeout"
                }
            }
        };
        match shared.release_all(reason) {
            Ok(_) => {
                failures = 0;
                retry_at = None;
            }
            Err(_) => {
                failures += 1;
                retry_at = Some(Instant::now() + shared.net.retry.delay(failures));
            }
        }
    }
}

fn shutdown_drain(shared: &Shared, deadline: Instant) {
    let mut attempt = 0;
    while !shared.lock_queue().is_empty() && Instant::now() < deadline {
        match shared.release_all("close") {
            Ok(_) => return,
            Err(_) => {
                attempt += 1;
                let pause = shared
                    .net
                    .retry
                    .delay(attempt)
                    .min(deadline.saturating_duration_since(Instant::now()));
                std::thread::sleep(pause);
            }
        }
    }
    let left = shared.lock_queue().len();
    if left > 0 {
        log::warn!("convert: closed with {left} tracking events undelivered");
    }
}

fn refresh_loop(shared: &Shared, stop: &Receiver<()>, initial_failures: u32) {
    let mut failures: u32 = initial_failures;
    loop {
        let ready = shared.readiness() == Readiness::Ready;
        let wait = if failures > 0 {
            shared
                .net
                .retry
                .delay(failures)
                .min(shared.net.refresh_interval)
        } else if ready {
            shared.net.refresh_interval
        } else {
            Duration::ZERO
        };
        match stop.recv_timeout(wait) {
            Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
            Err(RecvTimeoutError::Timeout) => {}
        }
        match shared.fetch_config() {
            Ok(cfg) => {
                failures = 0;
                shared.install(cfg);
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                log::warn!("convert: config fetch failed: {e}; the current config stays in use");
                shared.note_fetch_failure(e.to_string());
            }
        }
    }
}
