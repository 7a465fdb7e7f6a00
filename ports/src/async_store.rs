//! The async sibling of the visitor-state port (cargo feature `async`).
//!
//! [`AsyncDataStore`] has the semantics of [`DataStore`](crate::DataStore) for the operations the
//! SDK's decision and conversion paths use (`get`, `apply`, `create`, `delete`), with methods that
//! return boxed `Send` futures, so the SDK can hold a store as `Arc<dyn AsyncDataStore>` and its
//! async calls stay `Send` (usable from `tokio::spawn` and axum handlers). No runtime is named
//! here: an adapter brings its own (the Redis one uses tokio).

use crate::store::{Applied, StoreData, StoreError, StoreOp};
use std::future::Future;
use std::pin::Pin;

/// The future every [`AsyncDataStore`] method returns.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// Where visitor state lives, for async hosts: the same records, keys and atomicity as
/// [`DataStore`](crate::DataStore).
///
/// Implementations must not block the calling thread (no blocking I/O, no long locks) and must
/// return errors, never panic. The SDK bounds each call's store work with its call deadline; a
/// future dropped at the deadline must leave the store consistent (every write is one atomic
/// command, so a dropped write either happened entirely or not at all).
pub trait AsyncDataStore: Send + Sync + 'static {
    /// Reads a visitor's record.
    fn get<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<StoreData>>;

    /// Applies `ops` to a visitor's record in one atomic operation; see
    /// [`DataStore::apply`](crate::DataStore::apply) (the conversion dedup rests on the per-op
    /// flags of [`StoreOp::Goal`]).
    fn apply<'a>(
        &'a self,
        key: &'a str,
        seen: Option<&'a StoreData>,
        ops: &'a [StoreOp],
    ) -> StoreFuture<'a, Applied>;

    /// Writes `record` when no record is stored under `key` (`Ok(None)`), otherwise returns the
    /// stored record and writes nothing; see [`DataStore::create`](crate::DataStore::create).
    fn create<'a>(
        &'a self,
        key: &'a str,
        record: &'a StoreData,
    ) -> StoreFuture<'a, Option<StoreData>>;

    /// Deletes a visitor's record (absent keys are not an error).
    fn delete<'a>(&'a self, key: &'a str) -> StoreFuture<'a, ()>;

    /// A short name for logs and metrics (`"redis"`).
    fn name(&self) -> &'static str {
        "custom"
    }

    /// Whether the state outlives the process.
    fn is_persistent(&self) -> bool {
        false
    }
}

impl<T: AsyncDataStore + ?Sized> AsyncDataStore for std::sync::Arc<T> {
    fn get<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<StoreData>> {
        (**self).get(key)
    }
    fn apply<'a>(
        &'a self,
        key: &'a str,
        seen: Option<&'a StoreData>,
        ops: &'a [StoreOp],
    ) -> StoreFuture<'a, Applied> {
        (**self).apply(key, seen, ops)
    }
    fn create<'a>(
        &'a self,
        key: &'a str,
        record: &'a StoreData,
    ) -> StoreFuture<'a, Option<StoreData>> {
        (**self).create(key, record)
    }
    fn delete<'a>(&'a self, key: &'a str) -> StoreFuture<'a, ()> {
        (**self).delete(key)
    }
    fn name(&self) -> &'static str {
        (**self).name()
    }
    fn is_persistent(&self) -> bool {
        (**self).is_persistent()
    }
}
