//! The visitor-state port.

pub use convert_core::StoreData;
pub use convert_core::store::StoreOp;
use std::cell::Cell;
use std::time::{Duration, Instant};

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
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

    /// Applies `ops` to a visitor's record in one atomic operation and reports, op by op, whether
    /// it changed the record (for [`StoreOp::Goal`]: whether *this* call marked the goal first —
    /// the conversion dedup of every process sharing the store rests on it).
    ///
    /// `seen` is the record as the caller read it just before (`None`: absent or unknown). A
    /// store may use it to write conditionally in one round trip; it must still apply the ops to
    /// the record actually stored, whatever `seen` says. A stored record that cannot be parsed
    /// ([`StoreError::Corrupt`]) may be replaced by one built from `ops` alone; the default
    /// implementation, on top of [`DataStore::update`], returns the error instead.
    fn apply(
        &self,
        key: &str,
        seen: Option<&StoreData>,
        ops: &[StoreOp],
    ) -> Result<Applied, StoreError> {
        let _ = seen;
        apply_with_update(self, key, ops)
    }

    /// Writes `record` under `key` when no record is stored there (an empty one counts as none)
    /// and returns `Ok(None)`; otherwise writes nothing and returns the stored record. One atomic
    /// operation: the SDK's first access to a visitor, so a new visitor's decision is stored in
    /// one round trip and a returning visitor's record is read by the same one. The default
    /// implementation is on top of [`DataStore::update`].
    fn create(&self, key: &str, record: &StoreData) -> Result<Option<StoreData>, StoreError> {
        create_with_update(self, key, record)
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
    fn apply(
        &self,
        key: &str,
        seen: Option<&StoreData>,
        ops: &[StoreOp],
    ) -> Result<Applied, StoreError> {
        (**self).apply(key, seen, ops)
    }
    fn create(&self, key: &str, record: &StoreData) -> Result<Option<StoreData>, StoreError> {
        (**self).create(key, record)
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

/// What [`DataStore::apply`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Applied {
    /// One entry per op, in order: whether applying it changed the stored record.
    pub changed: Vec<bool>,
}

impl Applied {
    /// An outcome from the per-op flags.
    pub fn new(changed: Vec<bool>) -> Applied {
        Applied { changed }
    }

    /// Whether anything was written.
    pub fn written(&self) -> bool {
        self.changed.iter().any(|c| *c)
    }
}

/// Applies `ops` to `data` in order; the per-op change flags. What every store's
/// [`DataStore::apply`] computes against the record it holds.
pub fn apply_ops(data: &mut StoreData, ops: &[StoreOp]) -> Applied {
    Applied::new(ops.iter().map(|op| data.apply(op)).collect())
}

/// [`DataStore::apply`] on top of [`DataStore::update`] (the default implementation).
pub fn apply_with_update<S: DataStore + ?Sized>(
    store: &S,
    key: &str,
    ops: &[StoreOp],
) -> Result<Applied, StoreError> {
    let mut out = Applied::default();
    store.update(key, &mut |d| {
        // `update` may call back again after a conflict: start from the record given each time.
        out = apply_ops(d, ops);
        out.written()
    })?;
    Ok(out)
}

/// [`DataStore::create`] on top of [`DataStore::update`] (the default implementation).
pub fn create_with_update<S: DataStore + ?Sized>(
    store: &S,
    key: &str,
    record: &StoreData,
) -> Result<Option<StoreData>, StoreError> {
    let mut existing = None;
    store.update(key, &mut |d| {
        if d.is_empty() {
            existing = None;
            *d = record.clone();
            true
        } else {
            existing = Some(d.clone());
            false
        }
    })?;
    Ok(existing)
}

thread_local! {
    static DEADLINE: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// Runs `f` with `deadline` as the end of the store work of the current SDK call on this thread.
///
/// The SDK sets it around each public call; stores that can wait (network, locks) read it with
/// [`store_time_left`] and give up with [`StoreError::Unavailable`] instead of waiting past it.
/// Nested calls keep the earlier deadline.
pub fn with_store_deadline<R>(deadline: Instant, f: impl FnOnce() -> R) -> R {
    let outer = DEADLINE.with(Cell::get);
    let effective = outer.map_or(deadline, |o| o.min(deadline));
    DEADLINE.with(|d| d.set(Some(effective)));
    struct Restore(Option<Instant>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let outer = self.0;
            DEADLINE.with(|d| d.set(outer));
        }
    }
    let _restore = Restore(outer);
    f()
}

/// The time left before the current call's store deadline (`None`: no deadline set on this
/// thread; `Some(ZERO)`: it has passed).
pub fn store_time_left() -> Option<Duration> {
    DEADLINE
        .with(Cell::get)
        .map(|d| d.saturating_duration_since(Instant::now()))
}

/// `limit`, shortened to the time left before the current call's store deadline; `None` when
/// the deadline has passed (the store should not start the operation).
pub fn store_wait_limit(limit: Duration) -> Option<Duration> {
    match store_time_left() {
        None => Some(limit),
        Some(left) if left.is_zero() => None,
        Some(left) => Some(left.min(limit)),
    }
}
