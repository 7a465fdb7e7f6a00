//! The SDK instance: configuration, lifecycle, and the handle integrators share.

use crate::context::Context;
use crate::error::Error;
use crate::events::{EventHub, EventKind};
pub use crate::runtime::{
    BatchLimits, EventsOptions, HEALTHY_SLACK, MAX_RETRY_AFTER, Metrics, RetryPolicy, USER_AGENT,
};
use crate::runtime::{NetOptions, Readiness, Shared, Workers};
pub use crate::store_guard::StoreOptions;
use convert_core::tracking;
use convert_core::{EngineSettings, ProjectConfig, TrackingEvent};
use convert_ports::{DataStore, EventBus, HttpRequest, SdkEvent, StoreData, Transport};
use convert_store_memory::MemoryStore;
use serde_json::Value;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

pub(crate) struct Inner {
    pub(crate) shared: Arc<Shared>,
    pub(crate) settings: EngineSettings,
    pub(crate) workers: Arc<Workers>,
    close_timeout: Duration,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.shared.guard.abandon_held();
        #[cfg(feature = "tokio")]
        if let Some(a) = &self.shared.async_store {
            a.guard.abandon_held();
        }
        let close = FinalClose {
            shared: Arc::clone(&self.shared),
            workers: Arc::clone(&self.workers),
            timeout: self.close_timeout,
            done: false,
        };
        // In a tokio task, the wait for the delivery would hold the runtime thread (and every
        // task on it) for up to the close timeout: the runtime's blocking pool runs it instead,
        // and dropping the runtime waits for it. A pool that cannot take it (the runtime is
        // shutting down, or no thread can be started) drops it, and then it runs here, in
        // `FinalClose`'s drop. Outside a task (in `block_on`, or no runtime) it runs here, so
        // that what is queued is delivered before the drop returns, as without tokio.
        #[cfg(feature = "tokio")]
        if tokio::task::try_id().is_some() {
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
                    drop(runtime.spawn_blocking(move || close.run()));
                }));
                return;
            }
        }
        close.run();
    }
}

/// What the drop of the last handle still has to do: deliver what is queued within the close
/// timeout, stop the background threads, and mark the SDK closed. Done once, when run or, if
/// never run, when dropped.
struct FinalClose {
    shared: Arc<Shared>,
    workers: Arc<Workers>,
    timeout: Duration,
    done: bool,
}

impl FinalClose {
    fn run(mut self) {
        self.close_now();
    }

    fn close_now(&mut self) {
        if std::mem::replace(&mut self.done, true) {
            return;
        }
        self.workers.stop(&self.shared, self.timeout);
        if self.workers.on_worker_thread() {
            // The last handle went with an event handler on the SDK's own thread, which cannot
            // wait for itself: that thread delivers the queue when the handler returns, as it
            // was told to stop.
            self.mark_closed();
            return;
        }
        // Events queued after an explicit `close` have nobody left to send them.
        let left = self.shared.lock_queue().take_all().len();
        if left > 0 {
            self.shared
                .counters
                .abandoned
                .fetch_add(left as u64, Ordering::Relaxed);
            log::warn!(
                "convert: dropped with {left} tracking events queued after close (counted as abandoned)"
            );
        }
        self.mark_closed();
    }

    fn mark_closed(&self) {
        let mut r = self
            .shared
            .readiness
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        *r = Readiness::Closed;
    }
}

/// What a loop settling held conversions ([`Core::settle_held`], and the async store's
/// `Core::settle_async_held`) does after a reconciliation left `after` of `before` held.
pub(crate) enum Settle {
    /// `until` has passed, or nothing settles and nothing is worth waiting for.
    Done,
    /// The batch settled some: take the next one.
    Again,
    /// Another call is probing the store, or (`wait_for_store`) the circuit cools down before
    /// the next probe: wait this long, within `until`, then try again.
    Pause(Duration),
}

/// The step after one reconciliation of a settling loop (see [`Core::settle_held`]).
pub(crate) fn settle_step(
    guard: &crate::store_guard::StoreGuard,
    before: u64,
    after: u64,
    until: Instant,
    wait_for_store: bool,
) -> Settle {
    let now = Instant::now();
    if now >= until {
        Settle::Done
    } else if after < before {
        Settle::Again
    } else if !guard.probe_in_flight() && !wait_for_store {
        Settle::Done
    } else {
        Settle::Pause((until - now).min(Duration::from_millis(10)))
    }
}

impl Drop for FinalClose {
    fn drop(&mut self) {
        self.close_now();
    }
}

/// A handle that does not keep the SDK alive ([`Core::downgrade`]), for what the SDK itself holds:
/// an event handler, or a cache. [`WeakCore::upgrade`] gives a [`Core`] while some other handle
/// (a `Core` or a `Context`) is alive.
#[derive(Clone, Debug)]
pub struct WeakCore {
    inner: std::sync::Weak<Inner>,
}

impl WeakCore {
    /// The SDK, unless every `Core` and `Context` handle has been dropped.
    #[must_use]
    pub fn upgrade(&self) -> Option<Core> {
        self.inner.upgrade().map(|inner| Core { inner })
    }
}

/// The SDK: a cheap, cloneable handle (`Send + Sync`) shared by every thread of the application.
///
/// Build it once with [`Core::builder`], then create a [`Context`] per visitor. Dropping the last
/// handle stops the background threads after delivering what is queued (see [`Core::close`]).
/// With the `tokio` feature, a last handle dropped in a tokio task does not hold the runtime
/// thread: the delivery runs on the runtime's blocking pool, and dropping the runtime waits for
/// it (`shutdown_background` and `shutdown_timeout` do not). [`Core::close_async`] can be
/// awaited, and also settles what an async store held.
#[derive(Clone)]
pub struct Core {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Core {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let cfg = self.inner.shared.config();
        let net = &self.inner.shared.net;
        f.debug_struct("Core")
            .field("account_id", &cfg.as_ref().map(|c| c.account_id.clone()))
            .field("project_id", &cfg.as_ref().map(|c| c.project_id.clone()))
            .field("environment", &self.inner.settings.environment)
            .field("store", &self.inner.shared.store.name())
            .field("sdk_key", &net.sdk_key.as_ref().map(|_| "<set>"))
            .field(
                "sdk_key_secret",
                &net.sdk_key_secret.as_ref().map(|_| "<redacted>"),
            )
            .finish_non_exhaustive()
    }
}

/// Builds a [`Core`].
#[derive(Default)]
pub struct CoreBuilder {
    config_text: Option<String>,
    config_value: Option<Value>,
    config: Option<ProjectConfig>,
    sdk_key: Option<String>,
    sdk_key_secret: Option<String>,
    debug_token: Option<String>,
    low_cache: bool,
    environment: Option<String>,
    settings: EngineSettings,
    store: Option<Arc<dyn DataStore>>,
    transport: Option<Arc<dyn Transport>>,
    bus: Option<Arc<dyn EventBus>>,
    events: EventsOptions,
    batch: BatchLimits,
    retry: RetryPolicy,
    refresh_interval: Option<Duration>,
    close_timeout: Option<Duration>,
    tracking: Option<bool>,
    config_endpoint: Option<String>,
    track_endpoint: Option<String>,
    store_options: crate::store_guard::StoreOptions,
    #[cfg(feature = "tokio")]
    pub(crate) async_store: Option<Arc<dyn convert_ports::AsyncDataStore>>,
}

impl std::fmt::Debug for CoreBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CoreBuilder")
            .field("environment", &self.environment)
            .field("sdk_key", &self.sdk_key.as_ref().map(|_| "<set>"))
            .field(
                "sdk_key_secret",
                &self.sdk_key_secret.as_ref().map(|_| "<redacted>"),
            )
            .field(
                "debug_token",
                &self.debug_token.as_ref().map(|_| "<redacted>"),
            )
            .finish_non_exhaustive()
    }
}

impl CoreBuilder {
    /// Uses a static project config given as JSON text (the config itself or the
    /// `{"environment", "data"}` envelope).
    pub fn config_json(mut self, json: impl Into<String>) -> Self {
        self.config_text = Some(json.into());
        self
    }

    /// Uses a static project config given as a JSON value.
    pub fn config(mut self, config: Value) -> Self {
        self.config_value = Some(config);
        self
    }

    /// Uses an already parsed config.
    pub fn project_config(mut self, config: ProjectConfig) -> Self {
        self.config = Some(config);
        self
    }

    /// Fetches the config from Convert's CDN with this SDK key (needs a transport) and keeps it
    /// fresh in the background.
    pub fn sdk_key(mut self, key: impl Into<String>) -> Self {
        self.sdk_key = Some(key.into());
        self
    }

    /// Sends `Authorization: Bearer <secret>` with every request of this instance.
    pub fn sdk_key_secret(mut self, secret: impl Into<String>) -> Self {
        self.sdk_key_secret = Some(secret.into());
        self
    }

    /// Adds `debug_token` (and `_conv_low_cache=1`) to config fetches. Never logged.
    pub fn debug_token(mut self, token: impl Into<String>) -> Self {
        self.debug_token = Some(token.into());
        self
    }

    /// Asks the CDN for a low-cache config (`_conv_low_cache=1`).
    pub fn low_cache(mut self, yes: bool) -> Self {
        self.low_cache = yes;
        self
    }

    /// The environment (default: the envelope's, else `"staging"`).
    pub fn environment(mut self, env: impl Into<String>) -> Self {
        self.environment = Some(env.into());
        self
    }

    /// The hash seed (default 9999).
    pub fn hash_seed(mut self, seed: u32) -> Self {
        self.settings.hash_seed = seed;
        self
    }

    /// The bucket scale (default 10000; 0 means the default). Other values make bucketing
    /// inconsistent with the fixed variation widths, exactly as in the reference; keep the default.
    pub fn max_traffic(mut self, max: u32) -> Self {
        self.settings.max_traffic = f64::from(if max == 0 { 10_000 } else { max });
        self
    }

    /// Hash the visitor id alone, without the experience id prefix.
    pub fn exclude_experience_id_hash(mut self, yes: bool) -> Self {
        self.settings.exclude_experience_id_hash = yes;
        self
    }

    /// Where visitor state lives (default: a bounded [`MemoryStore`]).
    pub fn data_store(mut self, store: impl DataStore) -> Self {
        self.store = Some(Arc::new(store));
        self
    }

    /// How the SDK treats its data store: call deadline, circuit breaker, held conversions
    /// (see [`StoreOptions`] and `docs/stores.md`).
    pub fn store_options(mut self, options: StoreOptions) -> Self {
        self.store_options = options;
        self
    }

    /// Where visitor state lives, shared with other owners.
    pub fn shared_data_store(mut self, store: Arc<dyn DataStore>) -> Self {
        self.store = Some(store);
        self
    }

    /// How requests reach Convert (default with the `ureq` feature: an HTTPS `UreqTransport`).
    pub fn transport(mut self, transport: impl Transport) -> Self {
        self.transport = Some(Arc::new(transport));
        self
    }

    /// How requests reach Convert, shared with other owners.
    pub fn shared_transport(mut self, transport: Arc<dyn Transport>) -> Self {
        self.transport = Some(transport);
        self
    }

    /// An external bus that receives every event.
    pub fn event_bus(mut self, bus: impl EventBus) -> Self {
        self.bus = Some(Arc::new(bus));
        self
    }

    /// Tracking queue settings: release at `batch_size` events or every `release_interval`, keep
    /// at most `max_queue` events while delivery fails (see [`EventsOptions::max_queue`]).
    pub fn events(self, batch_size: usize, release_interval: Duration, max_queue: usize) -> Self {
        self.events_options(EventsOptions {
            batch_size,
            release_interval,
            max_queue,
        })
    }

    /// [`CoreBuilder::events`] from an [`EventsOptions`]. Zero values are raised to the
    /// smallest that work: a batch of 1, an interval of 1 ms, a queue of 1.
    pub fn events_options(mut self, options: EventsOptions) -> Self {
        self.events = EventsOptions {
            batch_size: options.batch_size.max(1),
            release_interval: options.release_interval.max(Duration::from_millis(1)),
            max_queue: options.max_queue.max(1),
        };
        self
    }

    /// Limits of one tracking request (default 100 events, 256 KiB): a backlog goes out as
    /// several requests, oldest first.
    pub fn batch_limits(mut self, limits: BatchLimits) -> Self {
        self.batch = BatchLimits::default()
            .max_events(limits.max_events)
            .max_bytes(limits.max_bytes);
        self
    }

    /// Backoff for failed deliveries and config fetches.
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// How often the config is re-fetched in SDK-key mode (default 300 s).
    pub fn refresh_interval(mut self, every: Duration) -> Self {
        self.refresh_interval = Some(every.max(Duration::from_millis(10)));
        self
    }

    /// How long dropping the last handle may spend delivering queued events (default 5 s).
    pub fn close_timeout(mut self, timeout: Duration) -> Self {
        self.close_timeout = Some(timeout);
        self
    }

    /// Turns automatic tracking delivery on or off (default on). When off, events are queued and
    /// sent only by [`Core::flush`].
    pub fn tracking(mut self, enabled: bool) -> Self {
        self.tracking = Some(enabled);
        self
    }

    /// Overrides the config endpoint (default Convert's CDN).
    pub fn config_endpoint(mut self, url: impl Into<String>) -> Self {
        self.config_endpoint = Some(url.into());
        self
    }

    /// Overrides the tracking endpoint (`[project_id]` is replaced by the project id).
    pub fn track_endpoint(mut self, url: impl Into<String>) -> Self {
        self.track_endpoint = Some(url.into());
        self
    }

    /// Builds the SDK.
    ///
    /// With a static config this fails with a typed error when the config is invalid, and the SDK
    /// is ready at once. With an SDK key the first fetch happens here; when it fails the SDK starts
    /// from the config cached in a persistent store if there is one (and is ready), otherwise it
    /// keeps retrying in the background: see [`Core::wait_until_ready`].
    pub fn build(self) -> Result<Core, Error> {
        let static_config = if let Some(c) = self.config {
            Some(c)
        } else if let Some(v) = self.config_value {
            Some(ProjectConfig::from_value(v)?)
        } else if let Some(t) = &self.config_text {
            Some(ProjectConfig::from_json(t)?)
        } else {
            None
        };
        let sdk_key = self.sdk_key.filter(|k| !k.is_empty());
        if static_config.is_some() && sdk_key.is_some() {
            // The reference fetches by key when given both; here the explicit config wins.
            log::warn!(
                "convert: both a static config and an SDK key were given; the static config is used and never refreshed, the SDK key is not used to fetch"
            );
        }
        #[cfg(feature = "ureq")]
        let transport: Option<Arc<dyn Transport>> = self
            .transport
            .or_else(|| Some(Arc::new(convert_transport_ureq::UreqTransport::new())));
        #[cfg(not(feature = "ureq"))]
        let transport: Option<Arc<dyn Transport>> = self.transport;
        if static_config.is_none() {
            if sdk_key.is_none() {
                return Err(Error::NoConfig);
            }
            if transport.is_none() {
                return Err(Error::NoTransport);
            }
        }
        let mut settings = self.settings;
        settings.environment = self
            .environment
            .or_else(|| {
                static_config
                    .as_ref()
                    .and_then(|c| c.envelope_environment.clone())
            })
            .unwrap_or_else(|| "staging".into());
        let store: Arc<dyn DataStore> = self.store.unwrap_or_else(|| Arc::new(MemoryStore::new()));
        let net = NetOptions {
            sdk_key: sdk_key.clone(),
            sdk_key_secret: self.sdk_key_secret.filter(|k| !k.is_empty()),
            config_endpoint: self
                .config_endpoint
                .unwrap_or_else(|| tracking::DEFAULT_CONFIG_ENDPOINT.into()),
            track_endpoint: self
                .track_endpoint
                .unwrap_or_else(|| tracking::DEFAULT_TRACK_ENDPOINT.into()),
            environment: settings.environment.clone(),
            debug_token: self.debug_token.filter(|t| !t.is_empty()),
            low_cache: self.low_cache,
            refresh_interval: self.refresh_interval.unwrap_or(Duration::from_secs(300)),
            tracking_enabled: self.tracking.unwrap_or(true),
            events: self.events,
            batch: self.batch,
            retry: self.retry,
        };
        let shared = Arc::new(Shared {
            config: arc_swap::ArcSwapOption::empty(),
            install_lock: Mutex::new(()),
            readiness: Mutex::new(Readiness::Pending(None)),
            ready_cv: Condvar::new(),
            events: EventHub::new(self.bus),
            queue: Mutex::new(convert_core::TrackingQueue::new()),
            transport,
            #[cfg(feature = "tokio")]
            async_store: self
                .async_store
                .map(|s| crate::asynchronous::AsyncStore::new(s, self.store_options.clone())),
            guard: crate::store_guard::StoreGuard::new(Arc::clone(&store), self.store_options),
            store,
            net,
            counters: Default::default(),
            abandoned: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            overflow_warned: AtomicBool::new(false),
            parked: AtomicBool::new(false),
            healthy: AtomicBool::new(false),
        });
        let mut refresh = false;
        let mut retry_soon = false;
        match static_config {
            Some(cfg) => shared.install(cfg),
            None => {
                refresh = true;
                match shared.fetch_config() {
                    Ok(cfg) => shared.install(cfg),
                    Err(e) => {
                        let url = shared.config_url_shown();
                        log::warn!("convert: the first config fetch (GET {url}) failed: {e}");
                        shared.note_fetch_failure(&e, &url);
                        retry_soon = true;
                        if let Some(cached) = shared.load_cached_config() {
                            log::warn!(
                                "convert: starting from the config cached in the `{}` store until a fetch succeeds",
                                shared.store.name()
                            );
                            shared.install(cached);
                        }
                    }
                }
            }
        }
        let workers = Workers::start(&shared, refresh, retry_soon);
        Ok(Core {
            inner: Arc::new(Inner {
                shared,
                settings,
                workers: Arc::new(workers),
                close_timeout: self.close_timeout.unwrap_or(Duration::from_secs(5)),
            }),
        })
    }
}

impl Core {
    /// Starts building an SDK instance.
    pub fn builder() -> CoreBuilder {
        CoreBuilder::default()
    }

    /// Whether a valid config is installed.
    pub fn is_ready(&self) -> bool {
        self.inner.shared.readiness() == Readiness::Ready
    }

    /// Waits until a valid config is installed. Returns at once when ready; otherwise waits up to
    /// `timeout` and fails with [`Error::NotReady`] naming the last fetch failure.
    pub fn wait_until_ready(&self, timeout: Duration) -> Result<(), Error> {
        let shared = &self.inner.shared;
        let deadline = convert_ports::instant_after(Instant::now(), timeout);
        let mut r = shared
            .readiness
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        loop {
            match &*r {
                Readiness::Ready => return Ok(()),
                Readiness::Closed => return Err(Error::Closed),
                Readiness::Pending(cause) => {
                    let now = Instant::now();
                    if now >= deadline {
                        return Err(Error::NotReady {
                            cause: cause
                                .clone()
                                .unwrap_or_else(|| "no config fetched yet".into()),
                        });
                    }
                    r = shared
                        .ready_cv
                        .wait_timeout(r, deadline - now)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0;
                }
            }
        }
    }

    /// Whether the SDK was built with an async data store (`CoreBuilder::async_data_store`).
    pub(crate) fn has_async_store(&self) -> bool {
        #[cfg(feature = "tokio")]
        {
            self.inner.shared.async_store.is_some()
        }
        #[cfg(not(feature = "tokio"))]
        false
    }

    /// The config snapshot in use (`None` before the first valid config is installed).
    pub fn try_config(&self) -> Option<Arc<ProjectConfig>> {
        self.inner.shared.config()
    }

    /// The config snapshot in use. Before the SDK is ready this is an empty config (no
    /// experiences); decisions then return [`Decision::NotReady`](crate::Decision::NotReady).
    pub fn config(&self) -> Arc<ProjectConfig> {
        self.inner.shared.config().unwrap_or_else(empty_config)
    }

    /// Replaces the config snapshot (decisions in flight finish on the old one). Fires
    /// `config.updated` when it differs, or `ready` if the SDK was not ready yet.
    pub fn set_config(&self, config: ProjectConfig) {
        self.inner.shared.install(config);
    }

    /// The environment decisions are made for.
    pub fn environment(&self) -> &str {
        &self.inner.settings.environment
    }

    /// The data store behind this instance.
    pub fn data_store(&self) -> Arc<dyn DataStore> {
        Arc::clone(&self.inner.shared.store)
    }

    /// A handle that does not keep the SDK alive (see [`Core::on`]).
    #[must_use]
    pub fn downgrade(&self) -> WeakCore {
        WeakCore {
            inner: Arc::downgrade(&self.inner),
        }
    }

    /// Creates the context of one visitor. `attributes` are the visitor's properties: report
    /// segments among them (`country`, `browser`, `devices`, `source`, `campaign`, `visitorType`,
    /// `customSegments`) are stored; the others are kept by the context for audience rules.
    ///
    /// `attributes` takes anything [`Attributes`](crate::Attributes) converts from: `None`,
    /// `Some(serde_json::Map)`, a `HashMap` (owned or borrowed), an array of pairs, a
    /// `json!({...})` object (pass it as is, not in `Some`; `Value::Null` means none).
    ///
    /// An empty `visitor_id` gives a context that decides and stores nothing, as the reference
    /// refuses such calls: `run_experience` returns
    /// [`NotMatched(NoVisitorId)`](crate::NotMatchedReason::NoVisitorId), the list calls return
    /// nothing, `run_feature` decides nothing ([`crate::VariableError::NotDecided`]),
    /// `track_conversion` returns [`ConversionOutcome::NoVisitorId`](crate::ConversionOutcome),
    /// and segments and properties are not written (they would all land in one record shared
    /// by every such context).
    pub fn create_context(
        &self,
        visitor_id: impl Into<String>,
        attributes: impl Into<crate::Attributes>,
    ) -> Context {
        Context::new(self.clone(), visitor_id.into(), attributes.into())
    }

    /// Subscribes `handler` to events of `kind`. A panicking handler is contained and logged. A
    /// `Ready` subscriber added after the SDK became ready is called once, at once.
    ///
    /// Handlers live as long as the SDK. A handler that needs the SDK (to read its metrics, or
    /// to flush) should hold a [`WeakCore`] ([`Core::downgrade`]) rather than a `Core`: a `Core`
    /// held by its own handler keeps the instance, with its threads, from ever being freed.
    ///
    /// ```
    /// # use convert_sdk::{Core, EventKind};
    /// # let sdk = Core::builder().config(serde_json::json!({"account_id": "1", "project": {"id": "2"}})).build()?;
    /// let weak = sdk.downgrade();
    /// sdk.on(EventKind::QueueReleased, move |_| {
    ///     if let Some(sdk) = weak.upgrade() {
    ///         log::info!("{} events delivered so far", sdk.metrics().delivered_events);
    ///     }
    /// });
    /// # Ok::<(), convert_sdk::Error>(())
    /// ```
    pub fn on(&self, kind: EventKind, handler: impl Fn(&SdkEvent) + Send + Sync + 'static) {
        self.inner.shared.events.on(kind, Arc::new(handler));
    }

    /// The counters, including every tracking event not delivered, by reason.
    pub fn metrics(&self) -> Metrics {
        let s = &self.inner.shared;
        let g = &s.guard.counters;
        let r = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
        let mut m = s.counters.snapshot();
        m.store_errors += r(&g.errors);
        m.store_skipped = r(&g.skipped);
        m.store_circuit_open = s.guard.is_open();
        m.store_circuit_opened = r(&g.circuit_opened);
        m.store_corrupt_records = r(&g.corrupt);
        m.store_deadline_overruns = r(&g.deadline_exceeded);
        m.held_conversions = s.guard.held_count();
        m.held_conversions_sent = r(&g.reconciled);
        m.held_conversions_already_marked = r(&g.already_marked);
        m.held_conversions_overflow = r(&g.overflow);
        m.held_conversions_unconfirmed = r(&g.unreconciled_at_close);
        m.held_conversions_discarded = r(&g.discarded);
        #[cfg(feature = "tokio")]
        if let Some(a) = &s.async_store {
            // The async store's breaker and held conversions count in the same fields.
            let g = &a.guard.counters;
            m.store_errors += r(&g.errors);
            m.store_skipped += r(&g.skipped);
            m.store_circuit_open |= a.guard.is_open();
            m.store_circuit_opened += r(&g.circuit_opened);
            m.store_corrupt_records += r(&g.corrupt);
            m.held_conversions += a.guard.held_count();
            m.held_conversions_sent += r(&g.reconciled);
            m.held_conversions_already_marked += r(&g.already_marked);
            m.held_conversions_overflow += r(&g.overflow);
            m.held_conversions_unconfirmed += r(&g.unreconciled_at_close);
            m.held_conversions_discarded += r(&g.discarded);
        }
        m
    }

    /// Number of tracking events waiting for delivery (not counting a batch in flight).
    pub fn queued_events(&self) -> usize {
        self.inner.shared.lock_queue().len()
    }

    /// The tracking requests that would be sent now for the queued events (one per
    /// [`BatchLimits::max_events`] events, oldest first), without sending them or emptying the
    /// queue (for inspection and dry runs).
    pub fn pending_requests(&self) -> Vec<HttpRequest> {
        let shared = &self.inner.shared;
        let Some(cfg) = shared.config() else {
            return Vec::new();
        };
        let q = shared.lock_queue();
        let events: Vec<&TrackingEvent> = q.iter().collect();
        events
            .chunks(shared.net.batch.max_events)
            .map(|chunk| shared.track_request(&cfg, chunk.iter().copied()))
            .collect()
    }

    /// Delivers every event queued now (on the delivery thread, in requests of at most
    /// [`BatchLimits`]) and waits up to 30 s for the outcome. Returns the number of events
    /// delivered. On a transient failure the events are kept, in order, for a retry; events
    /// the server refused for good are dropped and counted ([`Metrics`]).
    ///
    /// Blocks only its caller: decisions, tracking calls and handlers on other threads never
    /// wait behind it. Called from an event handler on the delivery thread (a `QueueReleased`
    /// handler), it cannot wait for itself and returns [`Error::Reentrant`] at once; delivery goes
    /// on after the handler returns.
    pub fn flush(&self) -> Result<usize, Error> {
        self.flush_timeout(Duration::from_secs(30))
    }

    /// [`Core::flush`] with an explicit wait limit ([`Error::Timeout`] when it elapses; delivery
    /// then goes on in the background).
    pub fn flush_timeout(&self, timeout: Duration) -> Result<usize, Error> {
        let started = Instant::now();
        self.settle_held(convert_ports::instant_after(started, timeout / 2), false);
        self.inner.workers.flush(
            &self.inner.shared,
            timeout.saturating_sub(started.elapsed()),
        )
    }

    /// Reconciles held conversions batch after batch, each within the call deadline and none
    /// started with less than half a call deadline left before `until` (a conversion marked
    /// must leave time to send it), until none is held or `until` has passed. Without
    /// `wait_for_store` (`flush`) it stops at the first batch that settles none, unless another
    /// call is probing the store; with it (`close`) it waits out the circuit's cooldown and
    /// probes again, so that a store back from an outage a moment ago, or one whose first call
    /// after it fails, still gets the held conversions.
    ///
    /// On one of the SDK's own threads (an event handler), or once the SDK is closed, it takes
    /// one batch at most: a handler's `flush` and `close` return at once, and after `close`
    /// nobody would send what a reconciliation queues.
    fn settle_held(&self, until: Instant, wait_for_store: bool) {
        let workers = &self.inner.workers;
        if self.inner.shared.is_stopping() {
            return;
        }
        let bounded = || convert_ports::with_store_deadline(until, || self.reconcile_store());
        if workers.on_worker_thread() {
            bounded();
            return;
        }
        let guard = &self.inner.shared.guard;
        loop {
            let before = guard.held_count();
            if before == 0 {
                return;
            }
            let after = bounded();
            match settle_step(guard, before, after, until, wait_for_store) {
                Settle::Done => return,
                Settle::Again => {}
                Settle::Pause(pause) => std::thread::sleep(pause),
            }
        }
    }

    /// Stops the background threads after delivering what can be delivered within `timeout`,
    /// and returns within `timeout` plus a few milliseconds whatever the network does: a request
    /// still unanswered then is abandoned (counted as delivered only if it later succeeds), and
    /// the events still queued are counted in [`Metrics::abandoned_events`] (or
    /// [`Metrics::discarded_events`] with automatic delivery off). Later decisions still work;
    /// their events stay queued. Dropping the last handle does the same with the configured
    /// close timeout. A second `close` returns at once.
    ///
    /// Called from an event handler on one of the SDK's own threads, it starts the shutdown and
    /// returns at once (a thread cannot wait for itself).
    pub fn close(&self, timeout: Duration) {
        let started = Instant::now();
        self.settle_held(convert_ports::instant_after(started, timeout / 2), true);
        let timeout = timeout.saturating_sub(started.elapsed());
        self.inner.shared.guard.abandon_held();
        #[cfg(feature = "tokio")]
        if let Some(a) = &self.inner.shared.async_store {
            a.guard.abandon_held();
        }
        self.inner.workers.stop(&self.inner.shared, timeout);
    }

    /// Reconciles conversions held while the store was unavailable, one batch (see
    /// `docs/stores.md`); decisions and conversions do this too, once the store answers again.
    /// Returns the number still held.
    pub fn reconcile_store(&self) -> u64 {
        let guard = &self.inner.shared.guard;
        guard.within_deadline(|| crate::context::reconcile_held(self, true));
        guard.held_count()
    }

    pub(crate) fn enqueue(&self, events: Vec<TrackingEvent>) {
        if events.is_empty() {
            return;
        }
        if self.inner.shared.enqueue(events) {
            self.inner.workers.wake();
        }
    }

    pub(crate) fn load(&self, key: &str) -> StoreData {
        let shared = &self.inner.shared;
        shared
            .guard
            .within_deadline(|| shared.guard.read(&shared.events, key))
            .ok()
            .flatten()
            .unwrap_or_default()
    }

    /// Builds and delivers an event, only when someone listens. The check is inlined into the
    /// caller: without subscribers (the usual case on the decision path) no call is made.
    #[inline]
    pub(crate) fn fire(&self, event: impl FnOnce() -> SdkEvent) {
        if self.inner.shared.events.has_subscribers() {
            self.fire_now(event);
        }
    }

    /// [`Core::fire`] once there are subscribers.
    #[inline(never)]
    fn fire_now(&self, event: impl FnOnce() -> SdkEvent) {
        let event = event();
        // Held while an async call's speculative decision step runs (`context/async_ops.rs`).
        #[cfg(feature = "tokio")]
        let Some(event) = crate::context::Context::hold_event(event) else {
            return;
        };
        self.inner.shared.events.fire(&event);
    }
}

fn empty_config() -> Arc<ProjectConfig> {
    static EMPTY: std::sync::OnceLock<Arc<ProjectConfig>> = std::sync::OnceLock::new();
    Arc::clone(EMPTY.get_or_init(|| Arc::new(ProjectConfig::empty())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_options_are_clamped_like_events() {
        let zero = EventsOptions::default()
            .batch_size(0)
            .release_interval(Duration::ZERO)
            .max_queue(0);
        let from_struct = Core::builder().events_options(zero).events;
        let from_args = Core::builder().events(0, Duration::ZERO, 0).events;
        let smallest = EventsOptions::default()
            .batch_size(1)
            .release_interval(Duration::from_millis(1))
            .max_queue(1);
        assert_eq!(from_struct, smallest);
        assert_eq!(from_args, smallest);
        let custom = EventsOptions::default().batch_size(7);
        assert_eq!(Core::builder().events_options(custom).events, custom);
    }
}
