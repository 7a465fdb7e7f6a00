//! The SDK instance: configuration, shared state and the tracking queue.

use crate::context::Context;
use crate::error::Error;
use crate::events::{EventHub, EventKind};
use convert_core::tracking::{self, PayloadMeta, TrackingQueue};
use convert_core::{EngineSettings, ProjectConfig, TrackingEvent};
use convert_ports::{
    DataStore, EventBus, HttpRequest, Method, SdkEvent, StoreData, Transport,
};
use convert_store_memory::MemoryStore;
use serde_json::{Map, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

/// The `User-Agent` sent with every request (the reference's bot-filter invariant).
pub const USER_AGENT: &str = "ConvertAgent/1.0";

/// Tracking queue settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventsOptions {
    /// Release when this many events are queued (default 10).
    pub batch_size: usize,
    /// Release at least this often (default 1 s).
    pub release_interval: Duration,
    /// Keep at most this many events; the oldest are dropped (and counted) beyond it (default 10,000).
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

/// Counters an integrator can watch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Metrics {
    /// Tracking events dropped because the queue was full.
    pub dropped_events: u64,
    /// Data store operations that failed.
    pub store_errors: u64,
    /// Tracking events delivered.
    pub delivered_events: u64,
    /// Batches whose delivery failed (their events were kept).
    pub failed_batches: u64,
}

pub(crate) struct Inner {
    pub(crate) config: RwLock<Arc<ProjectConfig>>,
    pub(crate) settings: EngineSettings,
    pub(crate) store: Arc<dyn DataStore>,
    pub(crate) transport: Option<Arc<dyn Transport>>,
    pub(crate) events: EventHub,
    pub(crate) queue: Mutex<TrackingQueue>,
    pub(crate) events_options: EventsOptions,
    pub(crate) tracking_enabled: bool,
    pub(crate) sdk_key: Option<String>,
    sdk_key_secret: Option<String>,
    track_endpoint: String,
    dropped: AtomicU64,
    store_errors: AtomicU64,
    delivered: AtomicU64,
    failed_batches: AtomicU64,
}

/// The SDK: a cheap, cloneable handle (`Send + Sync`) shared by every thread of the application.
///
/// Build it once with [`Core::builder`], then create a [`Context`] per visitor.
#[derive(Clone)]
pub struct Core {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Core {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let cfg = self.config();
        f.debug_struct("Core")
            .field("account_id", &cfg.account_id)
            .field("project_id", &cfg.project_id)
            .field("environment", &self.inner.settings.environment)
            .field("store", &self.inner.store.name())
            .field("sdk_key", &self.inner.sdk_key.as_ref().map(|_| "<set>"))
            .field("sdk_key_secret", &self.inner.sdk_key_secret.as_ref().map(|_| "<redacted>"))
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
    environment: Option<String>,
    settings: EngineSettings,
    store: Option<Arc<dyn DataStore>>,
    transport: Option<Arc<dyn Transport>>,
    bus: Option<Arc<dyn EventBus>>,
    events: EventsOptions,
    tracking: Option<bool>,
    config_endpoint: Option<String>,
    track_endpoint: Option<String>,
}

impl std::fmt::Debug for CoreBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CoreBuilder")
            .field("environment", &self.environment)
            .field("sdk_key", &self.sdk_key.as_ref().map(|_| "<set>"))
            .field("sdk_key_secret", &self.sdk_key_secret.as_ref().map(|_| "<redacted>"))
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

    /// Fetches the config from Convert's CDN with this SDK key (needs a transport).
    pub fn sdk_key(mut self, key: impl Into<String>) -> Self {
        self.sdk_key = Some(key.into());
        self
    }

    /// Sends `Authorization: Bearer <secret>` with every request of this instance.
    pub fn sdk_key_secret(mut self, secret: impl Into<String>) -> Self {
        self.sdk_key_secret = Some(secret.into());
        self
    }

    /// The environment (default: the envelope's, else `"staging"`).
    pub fn environment(mut self, env: impl Into<String>) -> Self {
        self.environment = Some(env.into());
        self
    }

    /// The hash seed (default 9999; 0 is a real seed here, unlike the reference's `||` default).
    pub fn hash_seed(mut self, seed: u32) -> Self {
        self.settings.hash_seed = seed;
        self
    }

    /// The bucket scale (default 10000). Other values make bucketing inconsistent with the fixed
    /// variation widths, exactly as in the reference; keep the default.
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

    /// Where visitor state lives, shared with other owners.
    pub fn shared_data_store(mut self, store: Arc<dyn DataStore>) -> Self {
        self.store = Some(store);
        self
    }

    /// How requests reach Convert.
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

    /// Tracking queue settings.
    pub fn events(mut self, batch_size: usize, release_interval: Duration, max_queue: usize) -> Self {
        self.events = EventsOptions {
            batch_size: batch_size.max(1),
            release_interval,
            max_queue: max_queue.max(1),
        };
        self
    }

    /// Turns automatic tracking delivery on or off (default on). When off, events are queued
    /// and sent only by an explicit flush.
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

    /// Builds the SDK. Fails with a typed error when no valid config can be installed.
    pub fn build(self) -> Result<Core, Error> {
        let config = if let Some(c) = self.config {
            c
        } else if let Some(v) = self.config_value {
            ProjectConfig::from_value(v)?
        } else if let Some(t) = &self.config_text {
            ProjectConfig::from_json(t)?
        } else if let Some(key) = self.sdk_key.as_deref().filter(|k| !k.is_empty()) {
            let Some(transport) = &self.transport else {
                return Err(Error::NoTransport);
            };
            let env = self.environment.as_deref().unwrap_or("staging");
            let url = tracking::config_url(
                self.config_endpoint
                    .as_deref()
                    .unwrap_or(tracking::DEFAULT_CONFIG_ENDPOINT),
                key,
                Some(env),
                false,
                None,
            );
            let req = HttpRequest {
                method: Method::Get,
                url,
                headers: base_headers(self.sdk_key_secret.as_deref(), false),
                body: None,
            };
            let resp = transport.send(&req)?;
            if resp.status != 200 {
                return Err(Error::Http {
                    status: resp.status,
                });
            }
            let text = String::from_utf8_lossy(&resp.body);
            ProjectConfig::from_json(&text)?
        } else {
            return Err(Error::NoConfig);
        };
        let mut settings = self.settings;
        settings.environment = self
            .environment
            .or_else(|| config.envelope_environment.clone())
            .unwrap_or_else(|| "staging".into());
        let store: Arc<dyn DataStore> = self
            .store
            .unwrap_or_else(|| Arc::new(MemoryStore::new()));
        let inner = Inner {
            config: RwLock::new(Arc::new(config)),
            settings,
            store,
            transport: self.transport,
            events: EventHub::new(self.bus),
            queue: Mutex::new(TrackingQueue::new()),
            events_options: self.events,
            tracking_enabled: self.tracking.unwrap_or(true),
            sdk_key: self.sdk_key.filter(|k| !k.is_empty()),
            sdk_key_secret: self.sdk_key_secret.filter(|k| !k.is_empty()),
            track_endpoint: self
                .track_endpoint
                .unwrap_or_else(|| tracking::DEFAULT_TRACK_ENDPOINT.into()),
            dropped: AtomicU64::new(0),
            store_errors: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            failed_batches: AtomicU64::new(0),
        };
        let core = Core {
            inner: Arc::new(inner),
        };
        core.inner.events.fire(&SdkEvent::Ready);
        Ok(core)
    }
}

fn base_headers(secret: Option<&str>, json_body: bool) -> Vec<(String, String)> {
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

impl Core {
    /// Starts building an SDK instance.
    pub fn builder() -> CoreBuilder {
        CoreBuilder::default()
    }

    /// The config snapshot in use.
    pub fn config(&self) -> Arc<ProjectConfig> {
        Arc::clone(
            &self
                .inner
                .config
                .read()
                .unwrap_or_else(PoisonError::into_inner),
        )
    }

    /// Replaces the config snapshot (decisions in flight finish on the old one).
    pub fn set_config(&self, config: ProjectConfig) {
        *self
            .inner
            .config
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Arc::new(config);
        self.inner.events.fire(&SdkEvent::ConfigUpdated);
    }

    /// The data store behind this instance.
    pub fn data_store(&self) -> Arc<dyn DataStore> {
        Arc::clone(&self.inner.store)
    }

    /// The environment decisions are made for.
    pub fn environment(&self) -> &str {
        &self.inner.settings.environment
    }

    /// Creates the context of one visitor. `attributes` are the visitor's properties: report
    /// segments among them (`country`, `browser`, `devices`, `source`, `campaign`, `visitorType`,
    /// `customSegments`) are stored; the others are kept by the context for audience rules.
    pub fn create_context(
        &self,
        visitor_id: impl Into<String>,
        attributes: Option<Map<String, Value>>,
    ) -> Context {
        Context::new(self.clone(), visitor_id.into(), attributes)
    }

    /// Subscribes `handler` to events of `kind`. A panicking handler is contained and logged.
    pub fn on(&self, kind: EventKind, handler: impl Fn(&SdkEvent) + Send + Sync + 'static) {
        self.inner.events.on(kind, Arc::new(handler));
    }

    /// The counters.
    pub fn metrics(&self) -> Metrics {
        Metrics {
            dropped_events: self.inner.dropped.load(Ordering::Relaxed),
            store_errors: self.inner.store_errors.load(Ordering::Relaxed),
            delivered_events: self.inner.delivered.load(Ordering::Relaxed),
            failed_batches: self.inner.failed_batches.load(Ordering::Relaxed),
        }
    }

    /// Number of tracking events waiting for delivery.
    pub fn queued_events(&self) -> usize {
        self.lock_queue().len()
    }

    /// The tracking requests that would be sent now for the queued events, without sending them
    /// or emptying the queue (for inspection and dry runs).
    pub fn pending_requests(&self) -> Vec<HttpRequest> {
        let q = self.lock_queue();
        if q.is_empty() {
            return Vec::new();
        }
        vec![self.track_request(q.visitors())]
    }

    /// Delivers every queued event now through the transport. On failure the events are kept (in
    /// order, ahead of newer ones) and the error is returned. Returns the number of events sent.
    pub fn flush(&self) -> Result<usize, Error> {
        self.release("flush")
    }

    pub(crate) fn release(&self, reason: &str) -> Result<usize, Error> {
        let Some(transport) = self.inner.transport.clone() else {
            return Err(Error::NoTransport);
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
        let request = self.track_request(&batch);
        let outcome = match transport.send(&request) {
            Ok(r) if r.status == 200 => Ok(()),
            Ok(r) => Err(Error::Http { status: r.status }),
            Err(e) => Err(Error::Transport(e)),
        };
        match outcome {
            Ok(()) => {
                self.inner.delivered.fetch_add(events as u64, Ordering::Relaxed);
                self.inner.events.fire(&SdkEvent::QueueReleased {
                    reason: reason.into(),
                    visitors,
                    events,
                    error: None,
                });
                Ok(events)
            }
            Err(e) => {
                self.inner.failed_batches.fetch_add(1, Ordering::Relaxed);
                log::warn!("convert: tracking delivery failed ({e}); {events} events kept for retry");
                {
                    let mut q = self.lock_queue();
                    q.restore(batch);
                    self.enforce_bound(&mut q);
                }
                self.inner.events.fire(&SdkEvent::QueueReleased {
                    reason: reason.into(),
                    visitors,
                    events,
                    error: Some(e.to_string()),
                });
                Err(e)
            }
        }
    }

    fn track_request(&self, visitors: &[convert_core::tracking::QueuedVisitor]) -> HttpRequest {
        let cfg = self.config();
        let default_key;
        let sdk_key = match &self.inner.sdk_key {
            Some(k) => k.as_str(),
            None => {
                default_key = format!("{}/{}", cfg.account_id, cfg.project_id);
                default_key.as_str()
            }
        };
        let meta = PayloadMeta {
            enrich_data: !self.inner.store.is_persistent(),
            account_id: &cfg.account_id,
            project_id: &cfg.project_id,
            source: tracking::SOURCE,
        };
        HttpRequest {
            method: Method::Post,
            url: tracking::track_url(&self.inner.track_endpoint, &cfg.project_id, sdk_key),
            headers: base_headers(self.inner.sdk_key_secret.as_deref(), true),
            body: Some(tracking::payload_json(&meta, visitors)),
        }
    }

    fn lock_queue(&self) -> std::sync::MutexGuard<'_, TrackingQueue> {
        self.inner.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn enforce_bound(&self, q: &mut TrackingQueue) {
        let max = self.inner.events_options.max_queue;
        if q.len() > max {
            let dropped = q.drop_oldest(q.len() - max);
            self.inner.dropped.fetch_add(dropped as u64, Ordering::Relaxed);
            log::warn!("convert: tracking queue full ({max} events); dropped the {dropped} oldest");
        }
    }

    pub(crate) fn enqueue(&self, events: Vec<TrackingEvent>) {
        if events.is_empty() {
            return;
        }
        let release = {
            let mut q = self.lock_queue();
            for e in events {
                q.push(e);
            }
            self.enforce_bound(&mut q);
            q.len() >= self.inner.events_options.batch_size
        };
        if release && self.inner.tracking_enabled && self.inner.transport.is_some() {
            // Failures keep the events queued; they were logged and reported as an event.
            let _ = self.release("size");
        }
    }

    pub(crate) fn load(&self, key: &str) -> StoreData {
        match self.inner.store.get(key) {
            Ok(d) => d.unwrap_or_default(),
            Err(e) => {
                self.store_failed(&e.to_string());
                StoreData::default()
            }
        }
    }

    pub(crate) fn store_failed(&self, message: &str) {
        self.inner.store_errors.fetch_add(1, Ordering::Relaxed);
        log::warn!(
            "convert: data store `{}` failed: {message}; deciding without stored state",
            self.inner.store.name()
        );
        self.inner.events.fire(&SdkEvent::DataStoreError {
            message: message.to_string(),
        });
    }

    pub(crate) fn fire(&self, event: impl FnOnce() -> SdkEvent) {
        if self.inner.events.has_subscribers() {
            self.inner.events.fire(&event());
        }
    }
}
