//! The async facade's plumbing (cargo feature `tokio`): the async store with its own circuit
//! breaker, call deadline and held conversions, the builder's async entry points, and
//! `Core::ready`. The `Context::*_async` methods are in `context/async_ops.rs`.

use crate::core::{Core, CoreBuilder, Settle, settle_step};
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
    /// Work of async calls whose caller stopped awaiting, still running as tasks of their own
    /// ([`detached`]); `flush_async` and `close_async` wait for it.
    pub unfinished: Arc<std::sync::atomic::AtomicUsize>,
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
        AsyncStore {
            store,
            guard,
            unfinished: Arc::default(),
        }
    }

    /// The end of the store work of a call starting now.
    pub fn deadline(&self) -> Instant {
        convert_ports::instant_after(Instant::now(), self.guard.call_deadline())
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

/// Runs `f` on tokio's blocking pool and waits for it without blocking the task; outside a
/// tokio runtime (another executor), runs it in place rather than panicking. `None` when the
/// pool could not run it to the end (the runtime shutting down, or `f` panicked).
async fn on_blocking_pool<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    if tokio::runtime::Handle::try_current().is_err() {
        return Some(f());
    }
    match tokio::task::spawn_blocking(f).await {
        Ok(t) => Some(t),
        Err(e) => {
            log::error!("convert: a task on the blocking pool failed: {e}");
            None
        }
    }
}

/// Runs `work` to its end even if the caller stops awaiting (a timeout, `select!`, a client that
/// went away), so that a store operation cannot be cut from what must follow it (the events of a
/// stored decision, the conversion of a marked goal). The caller's task polls `work` in place
/// (no task is spawned for a call that runs to its end); if the caller drops it unfinished, the
/// rest runs as a tokio task of its own. Polled outside a tokio runtime and dropped unfinished,
/// the rest is abandoned with a log line naming `what`.
pub(crate) async fn detached<T: Send + 'static>(
    astore: &AsyncStore,
    what: &'static str,
    work: impl std::future::Future<Output = T> + Send + 'static,
) -> T {
    let mut guard = FinishOnDrop {
        work: Some(Box::pin(work)),
        what,
        unfinished: &astore.unfinished,
    };
    let out = std::future::poll_fn(|cx| match guard.work.as_mut() {
        Some(work) => work.as_mut().poll(cx),
        // Taken only below, after the work is done; never polled again after that.
        None => std::task::Poll::Pending,
    })
    .await;
    guard.work = None;
    out
}

/// The unfinished work of [`detached`]: spawned when dropped before it is done.
struct FinishOnDrop<'a, T: Send + 'static> {
    work: Option<std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send>>>,
    what: &'static str,
    unfinished: &'a Arc<std::sync::atomic::AtomicUsize>,
}

/// Counts one spawned [`FinishOnDrop`] task as unfinished until it ends (or is dropped by a
/// runtime shutting down).
struct Unfinished(Arc<std::sync::atomic::AtomicUsize>);

impl Unfinished {
    fn start(count: &Arc<std::sync::atomic::AtomicUsize>) -> Unfinished {
        count.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        Unfinished(Arc::clone(count))
    }
}

impl Drop for Unfinished {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

impl<T: Send + 'static> Drop for FinishOnDrop<'_, T> {
    fn drop(&mut self) {
        let Some(work) = self.work.take() else {
            return;
        };
        if std::thread::panicking() {
            // Dropped while unwinding (the work itself may be what panicked): not resumed.
            log::warn!(
                "convert: a {} was dropped unfinished during a panic; the rest of its work is abandoned",
                self.what
            );
            return;
        }
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                let unfinished = Unfinished::start(self.unfinished);
                runtime.spawn(async move {
                    let _ = work.await;
                    drop(unfinished);
                });
            }
            Err(_) => log::warn!(
                "convert: a {} was dropped unfinished outside a tokio runtime; the rest of its work is abandoned",
                self.what
            ),
        }
    }
}

/// A sync [`DataStore`] (SQLite, a custom one) used as an [`AsyncDataStore`]: each operation
/// runs on tokio's blocking thread pool, so the `Context::*_async` methods never block a
/// runtime thread on the store's I/O (cargo feature `tokio`).
///
/// ```no_run
/// # #[cfg(feature = "sqlite")]
/// # fn demo(config: serde_json::Value) -> Result<(), Box<dyn std::error::Error>> {
/// use convert_sdk::stores::{BlockingPool, SqliteStore};
/// use std::sync::Arc;
///
/// let sqlite = Arc::new(SqliteStore::open("visitors.sqlite3")?);
/// let core = convert_sdk::Core::builder()
///     .config(config)
///     // The sync methods and the async ones share the same file.
///     .shared_data_store(sqlite.clone())
///     .async_data_store(BlockingPool::new(sqlite))
///     .build()?;
/// # let _ = core; Ok(()) }
/// ```
///
/// Only the `*_async` methods use the async store. Report segments given to `create_context`
/// are not written when the context is made: the context's first call that reads or writes the
/// visitor's record merges them in and stores them, so they reach the async store (when that
/// call is an async one) and the tracking payloads. The sync methods (`set_default_segments`,
/// `update_visitor_properties`, `get_visitor_data`, ...) use the sync store on the calling
/// thread; in a tokio service call their `_async` forms (`set_default_segments_async`,
/// `update_visitor_properties_async`, `get_visitor_data_async`), which use the async store.
///
/// Each operation is atomic in the wrapped store. When the SDK stops waiting for one (its
/// call deadline), the operation still runs to its end on the pool, as a command already sent
/// to a remote store would. Polled outside a tokio runtime, an operation runs in place.
#[derive(Debug)]
pub struct BlockingPool<S: ?Sized> {
    store: Arc<S>,
}

impl<S: DataStore + ?Sized> BlockingPool<S> {
    /// Wraps `store` (an `Arc`, so that the sync methods can share it through
    /// [`CoreBuilder::shared_data_store`]).
    pub fn new(store: Arc<S>) -> BlockingPool<S> {
        BlockingPool { store }
    }

    /// Runs `op` on the blocking pool (see [`on_blocking_pool`]).
    async fn run<T: Send + 'static>(
        &self,
        op: impl FnOnce(&S) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let store = Arc::clone(&self.store);
        on_blocking_pool(move || op(&store))
            .await
            .unwrap_or_else(|| Err(StoreError::Other("the store task failed".into())))
    }
}

impl<S: DataStore + ?Sized> AsyncDataStore for BlockingPool<S> {
    fn get<'a>(&'a self, key: &'a str) -> convert_ports::StoreFuture<'a, Option<StoreData>> {
        let key = key.to_string();
        Box::pin(self.run(move |s| s.get(&key)))
    }

    fn apply<'a>(
        &'a self,
        key: &'a str,
        seen: Option<&'a StoreData>,
        ops: &'a [StoreOp],
    ) -> convert_ports::StoreFuture<'a, Applied> {
        let (key, seen, ops) = (key.to_string(), seen.cloned(), ops.to_vec());
        Box::pin(self.run(move |s| s.apply(&key, seen.as_ref(), &ops)))
    }

    fn create<'a>(
        &'a self,
        key: &'a str,
        record: &'a StoreData,
    ) -> convert_ports::StoreFuture<'a, Option<StoreData>> {
        let (key, record) = (key.to_string(), record.clone());
        Box::pin(self.run(move |s| s.create(&key, &record)))
    }

    fn delete<'a>(&'a self, key: &'a str) -> convert_ports::StoreFuture<'a, ()> {
        let key = key.to_string();
        Box::pin(self.run(move |s| s.delete(&key)))
    }

    fn name(&self) -> &'static str {
        self.store.name()
    }

    fn is_persistent(&self) -> bool {
        self.store.is_persistent()
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
    /// share keys and records; for SQLite or a custom sync store, the store itself and a
    /// [`BlockingPool`] around it).
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
    /// config. Polled outside a tokio runtime, the build runs in place.
    pub async fn build_async(self) -> Result<Core, Error> {
        on_blocking_pool(move || self.build())
            .await
            .unwrap_or(Err(Error::NoConfig))
    }
}

impl Core {
    /// Waits, without blocking the calling task, until a valid config is installed, up to
    /// `timeout`; fails with [`Error::NotReady`] as [`Core::wait_until_ready`] does. Returns at
    /// once when ready; otherwise the wait runs on tokio's blocking pool (in place when polled
    /// outside a tokio runtime).
    pub async fn ready(&self, timeout: Duration) -> Result<(), Error> {
        if self.is_ready() {
            return Ok(());
        }
        let core = self.clone();
        on_blocking_pool(move || core.wait_until_ready(timeout))
            .await
            .unwrap_or_else(|| self.wait_until_ready(Duration::ZERO))
    }

    /// Reconciles the conversions the async store held while it did not answer, before a
    /// flush or a close (which gives them up). The sync store's are left to `flush_timeout`
    /// and `close`, on the blocking pool.
    async fn settle_async_held(&self, until: Instant, wait_for_store: bool) {
        let Some(astore) = self.inner.shared.async_store.as_ref() else {
            return;
        };
        // Batch after batch, as `close` does for the sync store's (`Core::settle_held`); none
        // once the SDK is closed (nobody would send what a reconciliation queues).
        if self.inner.shared.is_stopping() {
            return;
        }
        loop {
            let before = astore.guard.held_count();
            if before == 0 {
                return;
            }
            let after = self.reconcile_async_until(Some(until)).await;
            match settle_step(&astore.guard, before, after, until, wait_for_store) {
                Settle::Done => return,
                Settle::Again => tokio::task::yield_now().await,
                // On the blocking pool: this needs neither tokio's timer (a runtime may be
                // built without it) nor a tokio runtime at all (outside one, it sleeps in place).
                Settle::Pause(pause) => {
                    on_blocking_pool(move || std::thread::sleep(pause)).await;
                }
            }
        }
    }

    /// Waits up to `timeout` for the work of async calls whose callers stopped awaiting (a
    /// decision's events, a conversion) to end, so that a flush or close that follows includes
    /// what it queues. Returns the time it took.
    async fn wait_unfinished(&self, timeout: Duration) -> Duration {
        let started = Instant::now();
        let Some(astore) = self.inner.shared.async_store.as_ref() else {
            return Duration::ZERO;
        };
        // Such work only exists on a tokio runtime, whose timer the wait needs.
        if tokio::runtime::Handle::try_current().is_err() {
            return Duration::ZERO;
        }
        let deadline = convert_ports::instant_after(started, timeout);
        while astore.unfinished.load(std::sync::atomic::Ordering::Acquire) > 0
            && Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        started.elapsed()
    }

    /// [`Core::flush_timeout`] without blocking the calling task, after waiting (within `timeout`)
    /// for the work of async calls whose callers stopped awaiting and reconciling the
    /// conversions the async store held ([`Core::reconcile_store_async`]): the wait for delivery
    /// runs on tokio's blocking pool. [`Error::Timeout`] when `timeout` elapses (delivery then
    /// goes on in the background) or when the pool could not run the wait. Polled outside a
    /// tokio runtime, the wait runs in place.
    pub async fn flush_async(&self, timeout: Duration) -> Result<usize, Error> {
        let timeout = timeout.saturating_sub(self.wait_unfinished(timeout).await);
        let started = Instant::now();
        self.settle_async_held(convert_ports::instant_after(started, timeout / 2), false)
            .await;
        let timeout = timeout.saturating_sub(started.elapsed());
        let core = self.clone();
        on_blocking_pool(move || core.flush_timeout(timeout))
            .await
            .unwrap_or(Err(Error::Timeout))
    }

    /// [`Core::close`] without blocking the calling task: waits (within `timeout`) for the
    /// work of async calls whose callers stopped awaiting, reconciles the conversions the async
    /// store held ([`Core::reconcile_store_async`], batch after batch within half of
    /// `timeout`; `close` alone settles only the sync store's), then delivers what it can within
    /// the rest of `timeout` and stops the background threads, waiting on tokio's blocking pool.
    /// Call it on shutdown: dropping the last handle in a task does not block the runtime thread
    /// either (the delivery then runs on the blocking pool, and dropping the runtime waits for
    /// it), but it gives up the held conversions and cannot be awaited. Polled outside a tokio
    /// runtime, the wait runs in place.
    pub async fn close_async(&self, timeout: Duration) {
        let timeout = timeout.saturating_sub(self.wait_unfinished(timeout).await);
        let started = Instant::now();
        self.settle_async_held(convert_ports::instant_after(started, timeout / 2), true)
            .await;
        let timeout = timeout.saturating_sub(started.elapsed());
        let core = self.clone();
        on_blocking_pool(move || core.close(timeout)).await;
    }
}
