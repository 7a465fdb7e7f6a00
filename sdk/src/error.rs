//! The SDK's error type.

use convert_core::{ConfigError, RuleError};
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
    /// A fetched config belongs to another account or project than the SDK key names (a key of
    /// Convert's `account/project` form): refused, the config in use is kept.
    #[error("the fetched config is for project {found}, not {expected}")]
    OtherProject {
        /// `account/project` of the SDK key.
        expected: String,
        /// `account/project` of the fetched config.
        found: String,
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
    /// A targeting rule needed visitor data the call did not give (from a run method, through
    /// [`Decision::into_result`](crate::Decision::into_result),
    /// [`FeatureDecision::into_result`](crate::FeatureDecision::into_result) or
    /// [`Context::run_features`](crate::Context::run_features)).
    #[error(transparent)]
    Rule(#[from] RuleErrors),
}

impl From<RuleError> for Error {
    fn from(e: RuleError) -> Self {
        Error::Rule(RuleErrors(vec![e]))
    }
}

/// One or more rule errors of a feature run: each a rule that needed visitor data the call did
/// not give. An [`std::error::Error`], so `?` passes it on (into [`Error::Rule`] or a
/// `Box<dyn Error>`); derefs to the slice of [`RuleError`]s.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuleErrors(pub Vec<RuleError>);

impl std::fmt::Display for RuleErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a targeting rule needs visitor data that was not given:")?;
        for e in &self.0 {
            write!(f, " {}", e.code())?;
        }
        Ok(())
    }
}

impl std::error::Error for RuleErrors {}

impl std::ops::Deref for RuleErrors {
    type Target = [RuleError];
    fn deref(&self) -> &[RuleError] {
        &self.0
    }
}

impl From<Vec<RuleError>> for RuleErrors {
    fn from(v: Vec<RuleError>) -> Self {
        RuleErrors(v)
    }
}

impl IntoIterator for RuleErrors {
    type Item = RuleError;
    type IntoIter = std::vec::IntoIter<RuleError>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}
