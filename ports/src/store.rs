//! The visitor-state port.

pub use convert_core::StoreData;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backend could not be reached or refused the operation (connection refused, timeout,
    /// database locked). The SDK logs it, counts it, and decides without stored state.
    #[error("data store unavailable: {0}")]
    Unavailable(String),
    /// A stored value could not be read as visitor data.
    #[error("stored value for `{key}` is not valid visitor data: {reason}")]
    Corrupt {
        /// The store key.
        key: String,
        /// What was wrong.
        reason: String,
    },
    /// An optimistic update kept conflicting with concurrent writers.
    #[error("too many concurrent updates of `{0}`")]
    Contention(String),
    /// Any other backend error.
    #[error("data store error: {0}")]
    Other(String),
}

/// Where visitor state lives: sticky decisions, segments, active locations and converted goals.
///
/// Keys are `{accountId}-{projectId}-{visitorId}`; values are [`StoreData`], stored by persistent
/// backends as the JSON the reference SDKs use. Implementations must be safe to share between
/// threads; errors must be returned, never panicked.
pub trait DataStore: Send + Sync + 'static {
    /// Reads a visitor's record.
    fn get(&self, key: &str) -> Result<Option<StoreData>, StoreError>;

    /// Replaces a visitor's record.
    fn set(&self, key: &str, value: &StoreData) -> Result<(), StoreError>;

    /// Deletes a visitor's record (absent keys are not an error).
    fn delete(&self, key: &str) -> Result<(), StoreError>;

    /// Atomically reads, modifies and writes one visitor's record.
    ///
    /// `f` receives the current record (an empty one when absent) and changes it in place,
    /// returning whether anything changed; nothing is written when it returns `false`, so `f` must
    /// return `true` whenever it changed the record (an in-memory store may already hold the
    /// edit, a persistent one discards it). No other
    /// writer of the same key may interleave between the read and the write, across threads and,
    /// for shared backends, across processes. `f` may be called more than once when an optimistic
    /// backend retries after a conflict, so it must compute its result from the record it is given
    /// each time. Returns whether a record was written.
    fn update(
        &self,
        key: &str,
        f: &mut dyn FnMut(&mut StoreData) -> bool,
    ) -> Result<bool, StoreError>;

    /// A short name for logs and metrics (`"memory"`, `"redis"`, `"sqlite"`).
    fn name(&self) -> &'static str {
        "custom"
    }

    /// Whether the state outlives the process (decides the payload's `enrichData`).
    fn is_persistent(&self) -> bool {
        false
    }

    /// Whether an `update` costs no more than a `get` (records live in this process) and calls
    /// `f` exactly once. The SDK then makes each decision inside a single `update`, on the stored
    /// record itself: one lookup, no copy. Stores that talk to a server leave this `false`, so a
    /// sticky decision stays a single read. Default `false`.
    fn updates_in_place(&self) -> bool {
        false
    }
}

impl<T: DataStore + ?Sized> DataStore for std::sync::Arc<T> {
    fn get(&self, key: &str) -> Result<Option<StoreData>, StoreError> {
        (**self).get(key)
    }
    fn set(&self, key: &str, value: &StoreData) -> Result<(), StoreError> {
        (**self).set(key, value)
    }
    fn delete(&self, key: &str) -> Result<(), StoreError> {
        (**self).delete(key)
    }
    fn update(
        &self,
        key: &str,
        f: &mut dyn FnMut(&mut StoreData) -> bool,
    ) -> Result<bool, StoreError> {
        (**self).update(key, f)
    }
    fn name(&self) -> &'static str {
        (**self).name()
    }
    fn is_persistent(&self) -> bool {
        (**self).is_persistent()
    }
    fn updates_in_place(&self) -> bool {
        (**self).updates_in_place()
    }
}
