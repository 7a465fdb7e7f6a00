#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

use convert_ports::{DataStore, StoreData, StoreError};
use redis::{Client, Connection, ErrorKind, RedisError, Value};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// Options of [`RedisStore::open_with`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisOptions {
    /// Prepended to every store key (default `"convert:"`, the Ruby SDK's layout).
    pub prefix: String,
    /// Expiry set on a visitor's key at every write (default: none).
    pub ttl: Option<Duration>,
    /// Connect timeout (default 2 s).
    pub connect_timeout: Duration,
    /// Read and write timeout of every command (default 2 s).
    pub io_timeout: Duration,
    /// Attempts of an optimistic update before [`StoreError::Contention`] (default 50).
    pub max_update_attempts: u32,
}

impl Default for RedisOptions {
    fn default() -> Self {
        RedisOptions {
            prefix: "convert:".into(),
            ttl: None,
            connect_timeout: Duration::from_secs(2),
            io_timeout: Duration::from_secs(2),
            max_update_attempts: 50,
        }
    }
}

/// A [`DataStore`] on Redis: one key per visitor, the shared JSON value, atomic updates with
/// `WATCH`/`MULTI`/`EXEC`, automatic reconnection.
pub struct RedisStore {
    client: Client,
    conn: Mutex<Option<Connection>>,
    options: RedisOptions,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The connection info may hold a password: show only where it points.
        let info = self.client.get_connection_info();
        f.debug_struct("RedisStore")
            .field("addr", &info.addr().to_string())
            .field("prefix", &self.options.prefix)
            .field("ttl", &self.options.ttl)
            .finish_non_exhaustive()
    }
}

/// One line describing a Redis error (its Display never includes the password).
fn describe(e: &RedisError) -> String {
    e.to_string().lines().next().unwrap_or_default().to_string()
}

fn unavailable(e: &RedisError) -> StoreError {
    StoreError::Unavailable(format!("redis: {}", describe(e)))
}

/// Whether the connection should be dropped and re-established.
fn is_connection_error(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_timeout()
        || matches!(e.kind(), ErrorKind::Io)
}

impl RedisStore {
    /// Connects to `url` (`redis://[:password@]host[:port][/db]`; `rediss://` with the `tls`
    /// feature) with default options.
    pub fn open(url: &str) -> Result<RedisStore, StoreError> {
        Self::open_with(url, RedisOptions::default())
    }

    /// Connects to `url` with `options`. The URL is checked here; the connection is made lazily
    /// and re-made after a failure, so a store can be created while Redis is down.
    pub fn open_with(url: &str, options: RedisOptions) -> Result<RedisStore, StoreError> {
        let client = Client::open(url)
            .map_err(|e| StoreError::Other(format!("invalid Redis URL: {}", describe(&e))))?;
        Ok(RedisStore {
            client,
            conn: Mutex::new(None),
            options,
        })
    }

    /// The Redis key of a store key.
    pub fn redis_key(&self, key: &str) -> String {
        format!("{}{key}", self.options.prefix)
    }

    fn lock(&self) -> MutexGuard<'_, Option<Connection>> {
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn connect(&self) -> Result<Connection, RedisError> {
        let c = self
            .client
            .get_connection_with_timeout(self.options.connect_timeout)?;
        c.set_read_timeout(Some(self.options.io_timeout))?;
        c.set_write_timeout(Some(self.options.io_timeout))?;
        Ok(c)
    }

    /// Runs `f` on a live connection, reconnecting once when the connection turns out dead
    /// (e.g. after a Redis restart).
    fn with_conn<T>(
        &self,
        mut f: impl FnMut(&mut Connection) -> Result<T, RedisError>,
    ) -> Result<T, StoreError> {
        let mut guard = self.lock();
        for attempt in 0..2 {
            if guard.is_none() {
                match self.connect() {
                    Ok(c) => *guard = Some(c),
                    Err(e) => return Err(unavailable(&e)),
                }
            }
            let Some(conn) = guard.as_mut() else { continue };
            match f(conn) {
                Ok(v) => return Ok(v),
                Err(e) if is_connection_error(&e) => {
                    *guard = None;
                    if attempt == 1 {
                        return Err(unavailable(&e));
                    }
                }
                Err(e) => return Err(StoreError::Other(format!("redis: {}", describe(&e)))),
            }
        }
        Err(StoreError::Unavailable("redis: no connection".into()))
    }

    fn parse(key: &str, text: Option<String>) -> Result<Option<StoreData>, StoreError> {
        match text {
            None => Ok(None),
            Some(t) => StoreData::from_json(&t)
                .map(Some)
                .map_err(|e| StoreError::Corrupt {
                    key: key.to_string(),
                    reason: e.to_string(),
                }),
        }
    }

    fn set_cmd(&self, rkey: &str, value: &StoreData) -> redis::Cmd {
        let mut cmd = redis::cmd("SET");
        cmd.arg(rkey).arg(value.to_json());
        if let Some(ttl) = self.options.ttl {
            cmd.arg("PX")
                .arg(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1));
        }
        cmd
    }
}

impl DataStore for RedisStore {
    fn get(&self, key: &str) -> Result<Option<StoreData>, StoreError> {
        let rkey = self.redis_key(key);
        let text: Option<String> = self.with_conn(|c| redis::cmd("GET").arg(&rkey).query(c))?;
        Self::parse(key, text)
    }

    fn set(&self, key: &str, value: &StoreData) -> Result<(), StoreError> {
        let cmd = self.set_cmd(&self.redis_key(key), value);
        self.with_conn(|c| cmd.query::<()>(c))
    }

    fn delete(&self, key: &str) -> Result<(), StoreError> {
        let rkey = self.redis_key(key);
        self.with_conn(|c| redis::cmd("DEL").arg(&rkey).query::<()>(c))
    }

    fn update(
        &self,
        key: &str,
        f: &mut dyn FnMut(&mut StoreData) -> bool,
    ) -> Result<bool, StoreError> {
        let rkey = self.redis_key(key);
        for _ in 0..self.options.max_update_attempts {
            // WATCH, read, decide, then MULTI/SET/EXEC: EXEC answers nil when another client
            // wrote the key in between, and we start over from the new value. The inner result
            // carries a corrupt stored value; the outer one the connection's errors.
            let outcome: Result<Option<bool>, StoreError> = self
                .with_conn(|c| {
                    redis::cmd("WATCH").arg(&rkey).query::<()>(c)?;
                    let text: Option<String> = redis::cmd("GET").arg(&rkey).query(c)?;
                    let mut data = match Self::parse(key, text) {
                        Ok(d) => d.unwrap_or_default(),
                        Err(corrupt) => {
                            redis::cmd("UNWATCH").query::<()>(c)?;
                            return Ok(Err(corrupt));
                        }
                    };
                    if !f(&mut data) {
                        redis::cmd("UNWATCH").query::<()>(c)?;
                        return Ok(Ok(Some(false)));
                    }
                    let mut pipe = redis::pipe();
                    pipe.atomic()
                        .add_command(self.set_cmd(&rkey, &data))
                        .ignore();
                    let done: Value = pipe.query(c)?;
                    Ok(Ok(match done {
                        Value::Nil => None, // conflict: retry
                        _ => Some(true),
                    }))
                })
                .and_then(|inner| inner);
            match outcome {
                Ok(Some(written)) => return Ok(written),
                Ok(None) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(StoreError::Contention(key.to_string()))
    }

    fn name(&self) -> &'static str {
        "redis"
    }

    fn is_persistent(&self) -> bool {
        true
    }
}
