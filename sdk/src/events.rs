//! In-process event hub: subscribers per event kind, panic isolation, `ready` replay.

pub use convert_ports::{EventBus, SdkEvent};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

/// The kinds of [`SdkEvent`] a handler can subscribe to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EventKind {
    /// [`SdkEvent::Ready`].
    Ready,
    /// [`SdkEvent::ConfigUpdated`].
    ConfigUpdated,
    /// [`SdkEvent::Bucketing`].
    Bucketing,
    /// [`SdkEvent::Conversion`].
    Conversion,
    /// [`SdkEvent::LocationActivated`].
    LocationActivated,
    /// [`SdkEvent::LocationDeactivated`].
    LocationDeactivated,
    /// [`SdkEvent::QueueReleased`].
    QueueReleased,
    /// [`SdkEvent::DataStoreError`].
    DataStoreError,
    /// [`SdkEvent::DataStoreCircuit`].
    DataStoreCircuit,
    /// Every event.
    All,
}

impl EventKind {
    /// The kind of `event`.
    pub fn of(event: &SdkEvent) -> EventKind {
        match event {
            SdkEvent::Ready => EventKind::Ready,
            SdkEvent::ConfigUpdated => EventKind::ConfigUpdated,
            SdkEvent::Bucketing { .. } => EventKind::Bucketing,
            SdkEvent::Conversion { .. } => EventKind::Conversion,
            SdkEvent::LocationActivated { .. } => EventKind::LocationActivated,
            SdkEvent::LocationDeactivated { .. } => EventKind::LocationDeactivated,
            SdkEvent::QueueReleased { .. } => EventKind::QueueReleased,
            SdkEvent::DataStoreError { .. } => EventKind::DataStoreError,
            SdkEvent::DataStoreCircuit { .. } => EventKind::DataStoreCircuit,
            // An event newer than this SDK's kinds reaches the `All` subscribers only.
            _ => EventKind::All,
        }
    }
}

type Handler = Arc<dyn Fn(&SdkEvent) + Send + Sync>;

/// Subscribers and the optional external bus. Handlers run synchronously on the thread that
/// produced the event; a panicking handler is caught and logged, and the others still run.
#[derive(Default)]
pub(crate) struct EventHub {
    handlers: Mutex<Vec<(EventKind, Handler)>>,
    /// Number of handlers, read without locking on the decision path.
    count: AtomicUsize,
    ready: Mutex<bool>,
    bus: Option<Arc<dyn EventBus>>,
}

impl EventHub {
    pub(crate) fn new(bus: Option<Arc<dyn EventBus>>) -> Self {
        EventHub {
            handlers: Mutex::new(Vec::new()),
            count: AtomicUsize::new(0),
            ready: Mutex::new(false),
            bus,
        }
    }

    /// Subscribes `f`. A `Ready` (or `All`) subscriber added after the SDK became ready is told
    /// once, itself (and no other event is replayed).
    pub(crate) fn on(&self, kind: EventKind, f: Handler) {
        self.handlers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((kind, Arc::clone(&f)));
        self.count.fetch_add(1, Ordering::Release);
        let ready = *self.ready.lock().unwrap_or_else(PoisonError::into_inner);
        if ready && matches!(kind, EventKind::Ready | EventKind::All) {
            call(&f, &SdkEvent::Ready);
        }
    }

    #[inline]
    pub(crate) fn has_subscribers(&self) -> bool {
        self.bus.is_some() || self.count.load(Ordering::Acquire) > 0
    }

    pub(crate) fn fire(&self, event: &SdkEvent) {
        let kind = EventKind::of(event);
        if kind == EventKind::Ready {
            *self.ready.lock().unwrap_or_else(PoisonError::into_inner) = true;
        }
        let targets: Vec<Handler> = self
            .handlers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter(|(k, _)| *k == kind || *k == EventKind::All)
            .map(|(_, h)| Arc::clone(h))
            .collect();
        for h in targets {
            call(&h, event);
        }
        if let Some(bus) = &self.bus {
            if catch_unwind(AssertUnwindSafe(|| bus.publish(event))).is_err() {
                log::error!(
                    "convert: the event bus panicked on `{}`; ignored",
                    event.name()
                );
            }
        }
    }
}

fn call(h: &Handler, event: &SdkEvent) {
    if catch_unwind(AssertUnwindSafe(|| h(event))).is_err() {
        log::error!(
            "convert: a `{}` event handler panicked; the panic was contained",
            event.name()
        );
    }
}

impl std::fmt::Debug for EventHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventHub").finish_non_exhaustive()
    }
}
