//! The lifecycle-event port.

use serde_json::Value;

/// Something that happened in the SDK, as delivered to [`EventBus`] subscribers.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum SdkEvent {
    /// A valid config is installed and the SDK can decide (`"ready"`).
    Ready,
    /// A refresh installed a different config (`"config.updated"`).
    ConfigUpdated,
    /// A decision was returned to the integrator (`"bucketing"`): every decision, a sticky
    /// one included, as the reference fires it. It is not the tracking event, which is sent
    /// only for a fresh decision.
    Bucketing {
        /// Visitor id.
        visitor_id: String,
        /// Experience key (absent for a disabled feature).
        experience_key: Option<String>,
        /// Variation key, for experience decisions.
        variation_key: Option<String>,
        /// Feature key, for feature decisions.
        feature_key: Option<String>,
        /// `"enabled"`/`"disabled"`, for feature decisions.
        status: Option<String>,
    },
    /// A conversion event was queued (`"conversion"`).
    Conversion {
        /// Visitor id.
        visitor_id: String,
        /// Goal key.
        goal_key: String,
    },
    /// A location became active (`"location.activated"`).
    LocationActivated {
        /// Visitor id.
        visitor_id: String,
        /// `{id, key, name}` of the location.
        location: Value,
    },
    /// A location stopped being active (`"location.deactivated"`).
    LocationDeactivated {
        /// Visitor id.
        visitor_id: String,
        /// `{id, key, name}` of the location.
        location: Value,
    },
    /// A tracking batch was delivered or failed (`"api.queue.released"`).
    QueueReleased {
        /// Why it was released (`"size"`, `"timeout"`, `"flush"`, ...).
        reason: String,
        /// Visitors in the batch.
        visitors: usize,
        /// Events in the batch.
        events: usize,
        /// `None` on success, else what failed.
        error: Option<String>,
        /// The HTTP status of the answer, when one was received.
        status: Option<u16>,
        /// Events of the batch given up for good (a permanent 4xx, or a single event too large
        /// for the server); 0 on success and on a transient failure, whose events are kept
        /// and retried.
        dropped: usize,
    },
    /// The data store failed; the SDK carried on without stored state.
    DataStoreError {
        /// What failed.
        message: String,
    },
    /// A data store's circuit breaker changed state (`"datastore.circuit"`): `"open"` (the store
    /// is skipped), `"half-open"` (one call probes it) or `"closed"` (in use again).
    DataStoreCircuit {
        /// The store's name (`DataStore::name`).
        store: String,
        /// The new state.
        state: String,
    },
}

impl SdkEvent {
    /// The reference SDK's event name.
    pub fn name(&self) -> &'static str {
        match self {
            SdkEvent::Ready => "ready",
            SdkEvent::ConfigUpdated => "config.updated",
            SdkEvent::Bucketing { .. } => "bucketing",
            SdkEvent::Conversion { .. } => "conversion",
            SdkEvent::LocationActivated { .. } => "location.activated",
            SdkEvent::LocationDeactivated { .. } => "location.deactivated",
            SdkEvent::QueueReleased { .. } => "api.queue.released",
            SdkEvent::DataStoreError { .. } => "datastore.error",
            SdkEvent::DataStoreCircuit { .. } => "datastore.circuit",
        }
    }
}

/// Receives lifecycle events. Called synchronously on the thread that produced the event; an
/// implementation must return quickly and must not panic (the SDK's own bus isolates handlers).
pub trait EventBus: Send + Sync + 'static {
    /// Delivers one event.
    fn publish(&self, event: &SdkEvent);
}
