//! The SDK's error type.

use convert_core::ConfigError;
use convert_ports::{StoreError, TransportError};

/// What can go wrong building the SDK or delivering its requests.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The config is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Neither a static config nor an SDK key was given.
    #[error("either a static config or an SDK key must be given")]
    NoConfig,
    /// A request was needed but no transport is configured.
    #[error("no transport is configured")]
    NoTransport,
    /// The transport failed.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// The server answered with a status that is not a success (not 2xx).
    #[error("HTTP status {status}")]
    Http {
        /// The status code.
        status: u16,
    },
    /// No valid config was installed within the wait.
    #[error("the SDK is not ready: {cause}")]
    NotReady {
        /// The last config fetch failure, or why there is no config yet.
        cause: String,
    },
    /// The wait for a background operation elapsed (it goes on in the background).
    #[error("timed out waiting for the background delivery")]
    Timeout,
    /// The SDK was closed.
    #[error("the SDK is closed")]
    Closed,
    /// A tracking event is too large to send on its own (HTTP 413, or above the configured
    /// request size); it was dropped.
    #[error("a tracking event is too large to send and was dropped")]
    TooLarge,
    /// `flush` was called from an event handler running on the delivery thread, which cannot
    /// wait for itself. The delivery of the backlog goes on as soon as the handler returns.
    #[error(
        "flush() called from a handler on the delivery thread; delivery goes on after it returns"
    )]
    Reentrant,
    /// The data store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}
