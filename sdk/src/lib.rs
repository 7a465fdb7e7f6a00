#![doc = include_str!("../README.md")]
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "tokio")]
mod asynchronous;
mod attributes;
mod context;
mod core;
mod error;
pub mod events;
mod runtime;
mod store_guard;
#[cfg(feature = "test-util")]
#[cfg_attr(docsrs, doc(cfg(feature = "test-util")))]
pub mod testing;

pub use crate::attributes::{
    Attributes, AttributesError, BucketingAttributes, ConversionAttributes, EntityType,
    MAX_VISITOR_DATA_BYTES, MAX_VISITOR_DATA_DEPTH, MAX_VISITOR_VALUE_BYTES,
};
pub use crate::context::{
    Context, FeatureDecision, PreviewError, VariableError, parse_preview_param,
};
pub use crate::core::{
    BatchLimits, Core, CoreBuilder, EventsOptions, HEALTHY_SLACK, MAX_RETRY_AFTER, Metrics,
    RetryPolicy, StoreOptions, USER_AGENT, WeakCore,
};
pub use crate::error::{Error, RuleErrors};
pub use crate::events::EventKind;
/// The string type of ids, keys and names in decisions ([`BucketedVariation`],
/// [`BucketedFeature`]): `smol_str::SmolStr`, re-exported on purpose. It derefs to `&str`,
/// compares with `&str` and `String`, and clones without allocating for strings up to 23 bytes,
/// which keeps the decision path free of allocations (see the performance guide). Most callers
/// never name it: the accessors (`variation_key()`, ...) return `&str`.
pub use convert_core::config::Str;
pub use convert_core::engine::{Layout, Step};
pub use convert_core::rules::RuleOutcome;
pub use convert_core::{
    BucketedFeature, BucketedVariation, ConfigError, ConversionOutcome, Decision, FeatureStatus,
    NotMatchedReason, ProjectConfig, RuleError, StoreData,
};
#[cfg(feature = "tokio")]
#[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
pub use convert_ports::{AsyncDataStore, StoreFuture};
pub use convert_ports::{
    Backoff, DataStore, EventBus, HttpRequest, HttpResponse, Method, SdkEvent, StatusClass,
    StoreError, Transport, TransportError,
};

/// Data store adapters (Redis and SQLite under the `redis` and `sqlite` cargo features).
pub mod stores {
    #[cfg(feature = "tokio")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
    pub use crate::asynchronous::BlockingPool;
    pub use convert_store_memory::MemoryStore;
    #[cfg(all(feature = "redis", feature = "tokio"))]
    #[cfg_attr(docsrs, doc(cfg(all(feature = "redis", feature = "tokio"))))]
    pub use convert_store_redis::AsyncRedisStore;
    #[cfg(feature = "redis")]
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    pub use convert_store_redis::{RedisOptions, RedisStore};
    #[cfg(feature = "sqlite")]
    #[cfg_attr(docsrs, doc(cfg(feature = "sqlite")))]
    pub use convert_store_sqlite::{SqliteOptions, SqliteStore};
}

/// Transport adapters (the ureq transport under the default `ureq` cargo feature).
pub mod transports {
    #[cfg(feature = "ureq")]
    #[cfg_attr(docsrs, doc(cfg(feature = "ureq")))]
    pub use convert_transport_ureq::{UreqTransport, UreqTransportBuilder};
}

/// The workspace README's example, compiled as a doctest so it cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
mod readme_doctest {}

/// Every Rust block of the workspace guides, compiled (and run unless marked `no_run`) as
/// doctests so they cannot rot. Their hidden lines find the repository's files through
/// `CARGO_MANIFEST_DIR`.
#[cfg(doctest)]
mod docs_doctest {
    #[doc = include_str!("../../docs/architecture.md")]
    mod architecture {}
    #[doc = include_str!("../../docs/batch-protocol.md")]
    mod batch_protocol {}
    #[doc = include_str!("../../docs/configuration.md")]
    mod configuration {}
    #[doc = include_str!("../../docs/delivery.md")]
    mod delivery {}
    #[doc = include_str!("../../docs/differences-from-js.md")]
    mod differences_from_js {}
    #[doc = include_str!("../../docs/getting-started.md")]
    mod getting_started {}
    #[doc = include_str!("../../docs/migration-from-js.md")]
    mod migration_from_js {}
    #[doc = include_str!("../../docs/performance.md")]
    mod performance {}
    #[doc = include_str!("../../docs/stores.md")]
    mod stores {}
}
