#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

mod attributes;
mod context;
mod core;
mod error;
pub mod events;
mod runtime;

pub use crate::attributes::{BucketingAttributes, ConversionAttributes, EntityType};
pub use crate::context::{
    Context, FeatureDecision, PreviewError, VariableError, parse_preview_param,
};
pub use crate::core::{
    BatchLimits, Core, CoreBuilder, EventsOptions, HEALTHY_SLACK, MAX_RETRY_AFTER, Metrics,
    RetryPolicy, USER_AGENT,
};
pub use crate::error::Error;
pub use crate::events::EventKind;
pub use convert_core::{
    BucketedFeature, BucketedVariation, ConfigError, ConversionOutcome, Decision, FeatureStatus,
    ProjectConfig, RuleError, StoreData,
};
pub use convert_ports::{
    Backoff, DataStore, EventBus, HttpRequest, HttpResponse, Method, SdkEvent, StatusClass,
    StoreError, Transport, TransportError,
};

/// Data store adapters (Redis and SQLite under the `redis` and `sqlite` cargo features).
pub mod stores {
    pub use convert_store_memory::MemoryStore;
    #[cfg(feature = "redis")]
    pub use convert_store_redis::{RedisOptions, RedisStore};
    #[cfg(feature = "sqlite")]
    pub use convert_store_sqlite::{SqliteOptions, SqliteStore};
}

/// Transport adapters (the ureq transport under the default `ureq` cargo feature).
pub mod transports {
    #[cfg(feature = "ureq")]
    pub use convert_transport_ureq::{UreqTransport, UreqTransportBuilder};
}

/// The workspace README's example, compiled as a doctest so it cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
mod readme_doctest {}
