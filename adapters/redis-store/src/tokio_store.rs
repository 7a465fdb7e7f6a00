//! The async Redis store (cargo feature `tokio`).

use crate::{
    Cas, Failure, RedisOptions, RedisStore, apply_step, cas_invocation, cas_reply, classify,
    is_connection_error, set_nx_get, set_nx_get_reply, ttl_ms, unavailable, unchanged,
};
use convert_ports::{
    Applied, AsyncDataStore, Backoff, StoreData, StoreError, StoreFuture, StoreOp,
};
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// An [`AsyncDataStore`] on Redis, for tokio hosts: the keys, JSON records and one-round-trip
/// writes of [`RedisStore`] (`GET`; `SET … NX GET`; the same compare-and-set script via
/// `EVALSHA`), over one multiplexed connection shared by every task (redis-rs's
/// `ConnectionManager`, which reconnects by itself after a failure). With a
/// `redis+cluster://host:port[,host:port...]` URL, over redis-rs's async cluster connection
/// (one multiplexed connection per node, commands routed by key, topology refreshed after
/// `MOVED`), made on first use.
///
/// The SDK bounds each call's store work with its call deadline and drives its circuit breaker
/// around every operation; `RedisOptions::io_timeout` bounds each command as well. Pool options
/// (`max_connections`, `pool_wait`, …) do not apply: there is one connection (per node).
///
/// ```no_run
/// # async fn demo() -> Result<(), convert_ports::StoreError> {
/// let store = convert_store_redis::AsyncRedisStore::open("redis://127.0.0.1:6379/").await?;
/// # Ok(()) }
/// ```
pub struct AsyncRedisStore {
    link: Link,
    options: RedisOptions,
    /// Set once the server refused `SET … NX GET` (Redis before 7.0).
    no_set_nx_get: AtomicBool,
}

/// Where the store's commands go.
enum Link {
    Single(ConnectionManager),
    /// Connected on first use (and again on the next call while connecting fails).
    Cluster(Box<(ClusterClient, tokio::sync::OnceCell<ClusterConnection>)>),
}

/// A connection handle for one operation (both kinds are cheap clones of a shared connection).
#[derive(Clone)]
enum Handle {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Handle {
    fn req_packed_command<'a>(
        &'a mut self,
        cmd: &'a redis::Cmd,
    ) -> redis::RedisFuture<'a, redis::Value> {
        match self {
            Handle::Single(c) => c.req_packed_command(cmd),
            Handle::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<redis::Value>> {
        match self {
            Handle::Single(c) => c.req_packed_commands(cmd, offset, count),
            Handle::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Handle::Single(c) => c.get_db(),
            Handle::Cluster(c) => c.get_db(),
        }
    }
}

impl std::fmt::Debug for AsyncRedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncRedisStore")
            .field("prefix", &self.options.prefix)
            .field("ttl", &self.options.ttl)
            .finish_non_exhaustive()
    }
}

impl AsyncRedisStore {
    /// Opens a store on `url` (`redis://`, `redis+cluster://host:port[,host:port...]` or, with
    /// the `tls` feature, `rediss://`, `rediss+cluster://`) with default options. The connection
    /// is made on first use, so a server that is down now is not an error here. Must be called
    /// from within a tokio runtime.
    pub async fn open(url: &str) -> Result<AsyncRedisStore, StoreError> {
        Self::open_with(url, RedisOptions::default()).await
    }

    /// [`AsyncRedisStore::open`] with options (see [`RedisOptions`]).
    pub async fn open_with(
        url: &str,
        options: RedisOptions,
    ) -> Result<AsyncRedisStore, StoreError> {
        if let Some(problem) = crate::url_problem(url) {
            return Err(crate::bad_url(url, &problem));
        }
        let tls = url.starts_with("rediss://") || url.starts_with("rediss+cluster://");
        if tls && !cfg!(feature = "tls") {
            return Err(StoreError::Other(
                "rediss:// (TLS) URLs need the `tls` feature of convert-store-redis".into(),
            ));
        }
        let invalid = |e: redis::RedisError| {
            StoreError::Other(format!("invalid Redis URL: {}", crate::describe(&e)))
        };
        if url.contains("+cluster://") {
            let (client, _) = RedisStore::cluster_client(url, &options)?;
            return Ok(AsyncRedisStore {
                link: Link::Cluster(Box::new((client, tokio::sync::OnceCell::new()))),
                options,
                no_set_nx_get: AtomicBool::new(false),
            });
        }
        let client = RedisStore::client(crate::no_delay(url).map_err(invalid)?, tls, &options)
            .map_err(invalid)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(options.connect_timeout))
            .set_response_timeout(Some(options.io_timeout))
            // Reconnection happens in the background; a call never waits for it.
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let conn = ConnectionManager::new_lazy_with_config(client, config).map_err(invalid)?;
        Ok(AsyncRedisStore {
            link: Link::Single(conn),
            options,
            no_set_nx_get: AtomicBool::new(false),
        })
    }

    /// The Redis key of a store key (the prefix, then the key).
    pub fn redis_key(&self, key: &str) -> String {
        format!("{}{key}", self.options.prefix)
    }

    /// The options the store was opened with.
    pub fn options(&self) -> &RedisOptions {
        &self.options
    }

    /// Whether this store talks to a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        matches!(self.link, Link::Cluster(..))
    }

    /// The connection for one operation (connecting to the cluster on first use).
    async fn conn(&self) -> Result<Handle, StoreError> {
        match &self.link {
            Link::Single(c) => Ok(Handle::Single(c.clone())),
            Link::Cluster(cluster) => cluster
                .1
                .get_or_try_init(|| cluster.0.get_async_connection())
                .await
                .map(|c| Handle::Cluster(c.clone()))
                .map_err(|e| unavailable(&e)),
        }
    }

    /// A failure as a store error.
    fn error(f: Failure) -> StoreError {
        match f {
            Failure::Store(e) => e,
            Failure::Redis(e) if is_connection_error(&e) => unavailable(&e),
            Failure::Redis(e) => classify(&e),
        }
    }

    async fn read_raw(&self, rkey: &str, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let mut c = self.conn().await?;
        match redis::cmd("GET").arg(rkey).query_async(&mut c).await {
            Ok(v) => Ok(v),
            Err(e) if e.code() == Some("WRONGTYPE") => Err(Self::error(RedisStore::corrupt(
                key,
                "the Redis key does not hold a string",
            ))),
            Err(e) => Err(Self::error(e.into())),
        }
    }

    /// [`RedisStore`]'s compare-and-set, on the shared connection.
    async fn cas(
        &self,
        rkey: &str,
        expected: Option<&[u8]>,
        new: &str,
        key: &str,
    ) -> Result<Cas, StoreError> {
        let ttl = ttl_ms(&self.options);
        let mut c = self.conn().await?;
        if expected.is_none() && !self.no_set_nx_get.load(Ordering::Relaxed) {
            let reply = set_nx_get(rkey, new, ttl).query_async(&mut c).await;
            match set_nx_get_reply(reply, key).map_err(Self::error)? {
                Some(found) => return Ok(found),
                None => self.no_set_nx_get.store(true, Ordering::Relaxed),
            }
        }
        let reply = cas_invocation(rkey, expected, new, ttl)
            .invoke_async(&mut c)
            .await;
        cas_reply(reply, key).map_err(Self::error)
    }

    /// [`RedisStore`]'s write loop: `step` computes the record to write from the value found,
    /// one compare-and-set per attempt, a short async pause between conflicting attempts.
    async fn write_loop<T>(
        &self,
        key: &str,
        mut current: Option<Vec<u8>>,
        mut step: impl FnMut(Option<&[u8]>) -> Result<(Option<StoreData>, T), Failure>,
    ) -> Result<T, StoreError> {
        const CONFLICT: Backoff =
            Backoff::new(Duration::from_micros(100), Duration::from_micros(3_200));
        let rkey = self.redis_key(key);
        for attempt in 0..self.options.max_update_attempts.max(1) {
            if attempt > 1 {
                tokio::time::sleep(CONFLICT.with_jitter(0.5).delay(attempt)).await;
            }
            let (new, out) = step(current.as_deref()).map_err(Self::error)?;
            let Some(new) = new else { return Ok(out) };
            let json = new.to_json();
            match self.cas(&rkey, current.as_deref(), &json, key).await? {
                Cas::Written => return Ok(out),
                Cas::Current(v) => current = v,
            }
        }
        Err(StoreError::Contention(key.to_string()))
    }
}

impl AsyncDataStore for AsyncRedisStore {
    fn get<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<StoreData>> {
        Box::pin(async move {
            let raw = self.read_raw(&self.redis_key(key), key).await?;
            RedisStore::parse(raw.as_deref(), key).map_err(Self::error)
        })
    }

    fn apply<'a>(
        &'a self,
        key: &'a str,
        seen: Option<&'a StoreData>,
        ops: &'a [StoreOp],
    ) -> StoreFuture<'a, Applied> {
        Box::pin(async move {
            if let Some(out) = unchanged(seen, ops) {
                return Ok(out);
            }
            let start = seen.map(|s| s.to_json().into_bytes());
            self.write_loop(key, start, |cur| apply_step(cur, key, ops))
                .await
        })
    }

    fn create<'a>(
        &'a self,
        key: &'a str,
        record: &'a StoreData,
    ) -> StoreFuture<'a, Option<StoreData>> {
        Box::pin(async move {
            let rkey = self.redis_key(key);
            let json = record.to_json();
            let raw = match self.cas(&rkey, None, &json, key).await? {
                Cas::Written | Cas::Current(None) => return Ok(None),
                Cas::Current(Some(raw)) => raw,
            };
            match RedisStore::parse(Some(&raw), key).map_err(Self::error)? {
                // An empty record counts as none: fill it, atomically.
                Some(d) if d.is_empty() => {
                    self.write_loop(key, Some(raw), |cur| {
                        let found = RedisStore::parse(cur, key)?.filter(|d| !d.is_empty());
                        Ok(match found {
                            Some(d) => (None, Some(d)),
                            None => (Some(record.clone()), None),
                        })
                    })
                    .await
                }
                d => Ok(d),
            }
        })
    }

    fn delete<'a>(&'a self, key: &'a str) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let mut c = self.conn().await?;
            redis::cmd("DEL")
                .arg(self.redis_key(key))
                .query_async::<()>(&mut c)
                .await
                .map_err(|e| Self::error(e.into()))
        })
    }

    fn name(&self) -> &'static str {
        "redis"
    }

    fn is_persistent(&self) -> bool {
        true
    }
}
