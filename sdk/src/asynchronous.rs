//! The async facade's plumbing (cargo feature `tokio`): the async store with its own circuit
//! breaker, call deadline and held conversions, the builder's async entry points, and
//! `Core::ready`. The `Context::*_async` methods are in `context/async_ops.rs`.

use crate::core::{Core, CoreBuilder};
use crate::error::Error;
use crate::events::EventHub;
use crate::store_guard::{StoreGuard, StoreOptions, Unanswered};
use convert_ports::{Applied, AsyncDataStore, DataStore, StoreData, StoreError, StoreOp};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// An async store and the breaker, deadline and held conversions that guard it (separate from
/// the sync store's: the two may be different backends).
pub(crate) struct AsyncStore {
    pub store: Arc<dyn AsyncDataStore>,
    pub guard: StoreGuard,
}

/// Stands for the async store inside its [`StoreGuard`], which only asks it for its name (the
/// guard's sync `call` is never used with it).
struct Named(&'static str);

impl DataStore for Named {
    fn get(&self, _: &str) -> Result<Option<StoreData>, StoreError> {
        Err(StoreError::Other(
            "async store: use the async methods".into(),
        ))
    }
    fn set(&self, _: &str, _: &StoreData) -> Result<(), StoreError> {
        Err(StoreError::Other(
            "async store: use the async methods".into(),
        ))
    }
    fn delete(&self, _: &str) -> Result<(), StoreError> {
        Err(StoreError::Other(
            "async store: use the async methods".into(),
        ))
    }
    fn update(
        &self,
        _: &str,
        _: &mut dyn FnMut(&mut StoreData) -> bool,
    ) -> Result<bool, StoreError> {
        Err(StoreError::Other(
            "async store: use the async methods".into(),
        ))
    }
    fn name(&self) -> &'static str {
        self.0
    }
}

impl AsyncStore {
    pub fn new(store: Arc<dyn AsyncDataStore>, opts: StoreOptions) -> AsyncStore {
        let guard = StoreGuard::new(Arc::new(Named(store.name())), opts);
        AsyncStore { store, guard }
    }

    /// The end of the store work of a call starting now.
    pub fn deadline(&self) -> Instant {
        Instant::now() + self.guard.call_deadline()
    }

    /// Reads a record; an unreadable one counts as absent (the next write replaces it).
    pub async fn read(
        &self,
        events: &EventHub,
        key: &str,
        deadline: Instant,
    ) -> Result<Option<StoreData>, Unanswered> {
        match self
            .guard
            .call_async(events, deadline, || self.store.get(key))
            .await?
        {
            Ok(d) => Ok(d),
            Err(_) => Ok(None),
        }
    }

    /// Applies `ops` atomically.
    pub async fn apply(
        &self,
        events: &EventHub,
        key: &str,
        seen: Option<&StoreData>,
        ops: &[StoreOp],
        deadline: Instant,
    ) -> Result<Result<Applied, StoreError>, Unanswered> {
        self.guard
            .call_async(events, deadline, || self.store.apply(key, seen, ops))
            .await
    }

    /// Creates a record unless one is stored (then returned).
    pub async fn create(
        &self,
        events: &EventHub,
        key: &str,
        record: &StoreData,
        deadline: Instant,
    ) -> Result<Result<Option<StoreData>, StoreError>, Unanswered> {
        self.guard
            .call_async(events, deadline, || self.store.create(key, record))
            .await
    }
}

impl CoreBuilder {
    /// Where visitor state lives for the `Context::*_async` methods (cargo feature `tokio`):
    /// an [`AsyncDataStore`] such as `stores::AsyncRedisStore`. It has its own circuit breaker,
    /// call deadline and held conversions, configured by [`CoreBuilder::store_options`].
    ///
    /// The sync methods keep using the sync store ([`CoreBuilder::data_store`], memory by
    /// default): a service that also calls them for the same visitors should give both a store
    /// on the same backend (for Redis, a `RedisStore` and an `AsyncRedisStore` on the same URL
    /// share keys and records).
    pub fn async_data_store(mut self, store: impl AsyncDataStore) -> Self {
        self.async_store = Some(Arc::new(store));
        self
    }

    /// [`CoreBuilder::async_data_store`], shared with other owners.
    pub fn shared_async_data_store(mut self, store: Arc<dyn AsyncDataStore>) -> Self {
        self.async_store = Some(store);
        self
    }

    /// [`CoreBuilder::build`] without blocking the calling task: the build (in SDK-key mode,
    /// the first config fetch, made with the sync transport) runs on tokio's blocking pool, one
    /// blocking thread for the duration of that one fetch. Use [`Core::ready`] to wait for a
    /// config.
    pub async fn build_async(self) -> Result<Core, Error> {
        tokio::task::spawn_blocking(move || self.build())
            .await
            .unwrap_or_else(|e| {
                log::error!("convert: the SDK build task failed: {e}");
                Err(Error::NoConfig)
            })
    }
}

impl Core {
    /// Waits, without blocking the calling task, until a valid config is installed, up to
    /// `timeout`; fails with [`Error::NotReady`] as [`Core::wait_until_ready`] does. Returns at
    /// once when ready; otherwise the wait runs on tokio's blocking pool.
    pub async fn ready(&self, timeout: Duration) -> Result<(), Error> {
        if self.is_ready() {
            return Ok(());
        }
        let core = self.clone();
        tokio::task::spawn_blocking(move || core.wait_until_ready(timeout))
            .await
            .unwrap_or_else(|_| self.wait_until_ready(Duration::ZERO))
    }
}
