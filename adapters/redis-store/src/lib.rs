#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

use convert_ports::{DataStore, StoreData, StoreError};
use redis::{Client, Connection, ConnectionLike, ErrorKind, RedisError, Value};
use std::hash::{BuildHasher, Hasher};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// Options of [`RedisStore::open_with`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisOptions {
    /// Prepended to every store key (default `"convert:"`, the Ruby SDK's layout).
    pub prefix: String,
    /// Expiry set on a visitor's key at every write (default: none). Sub-millisecond parts are
    /// rounded down, with a minimum of 1 ms.
    pub ttl: Option<Duration>,
    /// Connect timeout, including the connection's setup commands (default 2 s).
    pub connect_timeout: Duration,
    /// Read and write timeout of every command (default 2 s).
    pub io_timeout: Duration,
    /// Attempts of an optimistic update before [`StoreError::Contention`] (default 50).
    pub max_update_attempts: u32,
    /// Idle connections kept for reuse (default 8). Calls from several threads run on several
    /// connections at once; connections beyond this number are closed after use.
    pub max_idle_connections: usize,
    /// PEM certificate(s) of the CA that signed the server's certificate, for `rediss://` URLs
    /// (default: the system's trust store). Needs the `tls` feature.
    pub tls_ca_pem: Option<Vec<u8>>,
}

impl Default for RedisOptions {
    fn default() -> Self {
        RedisOptions {
            prefix: "convert:".into(),
            ttl: None,
            connect_timeout: Duration::from_secs(2),
            io_timeout: Duration::from_secs(2),
            max_update_attempts: 50,
            max_idle_connections: 8,
            tls_ca_pem: None,
        }
    }
}

/// A [`DataStore`] on Redis: one key per visitor, the shared JSON value, atomic updates with
/// `WATCH`/`MULTI`/`EXEC`, a small pool of connections re-made after failures.
pub struct RedisStore {
    client: Client,
    idle: Mutex<Vec<Connection>>,
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

/// Whether the connection is broken (to be dropped, and the call failing as unavailable).
fn is_connection_error(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_timeout()
        || e.is_unrecoverable_error()
        || matches!(e.kind(), ErrorKind::Io)
}

/// Where a call failed.
enum Failure {
    /// Redis (or the connection to it) failed.
    Redis(RedisError),
    /// The stored value is not visitor data.
    Store(StoreError),
}

impl From<RedisError> for Failure {
    fn from(e: RedisError) -> Self {
        Failure::Redis(e)
    }
}

/// A short pause before retrying a conflicting update: exponential (50 µs doubling up to ~3 ms)
/// with jitter, so racing clients do not retry in lockstep.
fn backoff(attempt: u32) {
    let base = 50u64 << attempt.min(6);
    let jitter = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish()
        % base.max(1);
    std::thread::sleep(Duration::from_micros(base / 2 + jitter));
}

impl RedisStore {
    /// Connects to `url` (`redis://[[user]:password@]host[:port][/db]`; `rediss://` with the `tls`
    /// feature) with default options.
    pub fn open(url: &str) -> Result<RedisStore, StoreError> {
        Self::open_with(url, RedisOptions::default())
    }

    /// Connects to `url` with `options`. The URL is checked here; connections are made when
    /// needed and re-made after a failure, so a store can be created while Redis is down.
    pub fn open_with(url: &str, options: RedisOptions) -> Result<RedisStore, StoreError> {
        let tls = url.starts_with("rediss://");
        if tls && !cfg!(feature = "tls") {
            return Err(StoreError::Other(
                "rediss:// (TLS) URLs need the `tls` feature of convert-store-redis".into(),
            ));
        }
        let client = Self::client(url, tls, &options)
            .map_err(|e| StoreError::Other(format!("invalid Redis URL: {}", describe(&e))))?;
        Ok(RedisStore {
            client,
            idle: Mutex::new(Vec::new()),
            options,
        })
    }

    #[cfg(feature = "tls")]
    fn client(url: &str, tls: bool, options: &RedisOptions) -> Result<Client, RedisError> {
        if tls {
            // rustls needs a process-wide crypto provider; install ring's unless the application
            // chose one (without one, the first TLS handshake would abort the process).
            if rustls::crypto::CryptoProvider::get_default().is_none() {
                // Losing a race against another installer is fine: some provider is installed.
                let _ = rustls::crypto::ring::default_provider().install_default();
            }
            if let Some(ca) = &options.tls_ca_pem {
                return Client::build_with_tls(
                    url,
                    redis::TlsCertificates {
                        client_tls: None,
                        root_cert: Some(ca.clone()),
                    },
                );
            }
        }
        Client::open(url)
    }

    #[cfg(not(feature = "tls"))]
    fn client(url: &str, _tls: bool, _options: &RedisOptions) -> Result<Client, RedisError> {
        Client::open(url)
    }

    /// The Redis key of a store key (`prefix` + key).
    pub fn redis_key(&self, key: &str) -> String {
        format!("{}{key}", self.options.prefix)
    }

    /// The options this store was opened with.
    pub fn options(&self) -> &RedisOptions {
        &self.options
    }

    /// Whether Redis answers `PING` (for health checks).
    pub fn ping(&self) -> Result<(), StoreError> {
        self.with_conn(|c| redis::cmd("PING").query::<()>(c).map_err(Failure::from))
    }

    fn idle(&self) -> MutexGuard<'_, Vec<Connection>> {
        // The list is consistent after a panic elsewhere: every change is one push/pop/clear.
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn connect(&self) -> Result<Connection, RedisError> {
        let c = self
            .client
            .get_connection_with_timeout(self.options.connect_timeout)?;
        c.set_read_timeout(Some(self.options.io_timeout))?;
        c.set_write_timeout(Some(self.options.io_timeout))?;
        Ok(c)
    }

    fn checkin(&self, conn: Connection) {
        let mut idle = self.idle();
        if idle.len() < self.options.max_idle_connections {
            idle.push(conn);
        }
    }

    /// Runs `f` on a connection: an idle one when there is one, else a new one. A pooled
    /// connection that turns out dead (Redis restarted, idle timeout) is dropped with the rest of
    /// the pool and `f` runs again once on a new connection. A connection is reused only after
    /// `f` succeeded, so no half-done `WATCH` or `MULTI` leaks into the next call.
    fn with_conn<T>(
        &self,
        mut f: impl FnMut(&mut Connection) -> Result<T, Failure>,
    ) -> Result<T, StoreError> {
        let pooled = self.idle().pop().filter(|c| c.is_open());
        let from_pool = pooled.is_some();
        let mut conn = match pooled {
            Some(c) => c,
            None => self.connect().map_err(|e| unavailable(&e))?,
        };
        match f(&mut conn) {
            Ok(v) => {
                self.checkin(conn);
                return Ok(v);
            }
            Err(Failure::Store(e)) => return Err(e),
            // A timeout means Redis is slow or hung, not that the connection went stale: trying
            // again would only double the wait.
            Err(Failure::Redis(e)) if from_pool && is_connection_error(&e) && !e.is_timeout() => {
                self.idle().clear();
            }
            Err(Failure::Redis(e)) if is_connection_error(&e) => return Err(unavailable(&e)),
            Err(Failure::Redis(e)) => return Err(self.classify(&e)),
        }
        let mut conn = self.connect().map_err(|e| unavailable(&e))?;
        match f(&mut conn) {
            Ok(v) => {
                self.checkin(conn);
                Ok(v)
            }
            Err(Failure::Store(e)) => Err(e),
            Err(Failure::Redis(e)) if is_connection_error(&e) => Err(unavailable(&e)),
            Err(Failure::Redis(e)) => Err(self.classify(&e)),
        }
    }

    fn classify(&self, e: &RedisError) -> StoreError {
        match e.kind() {
            // Redis errors that mean "not reachable right now" rather than a bug.
            ErrorKind::Server(_) if matches!(e.code(), Some("LOADING" | "BUSY" | "MASTERDOWN")) => {
                unavailable(e)
            }
            ErrorKind::AuthenticationFailed => unavailable(e),
            _ => StoreError::Other(format!("redis: {}", describe(e))),
        }
    }

    fn corrupt(key: &str, reason: impl std::fmt::Display) -> Failure {
        Failure::Store(StoreError::Corrupt {
            key: key.to_string(),
            reason: reason.to_string(),
        })
    }

    /// Reads and parses a visitor's value on `c`.
    fn read(c: &mut Connection, rkey: &str, key: &str) -> Result<Option<StoreData>, Failure> {
        let raw: Option<Vec<u8>> = match redis::cmd("GET").arg(rkey).query(c) {
            Ok(v) => v,
            // Another client stored a hash, list, … under the key.
            Err(e) if e.code() == Some("WRONGTYPE") => {
                return Err(Self::corrupt(key, "the Redis key does not hold a string"));
            }
            Err(e) => return Err(e.into()),
        };
        let Some(bytes) = raw else { return Ok(None) };
        let text = std::str::from_utf8(&bytes).map_err(|e| Self::corrupt(key, e))?;
        StoreData::from_json(text)
            .map(Some)
            .map_err(|e| Self::corrupt(key, e))
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
        self.with_conn(|c| Self::read(c, &rkey, key))
    }

    fn set(&self, key: &str, value: &StoreData) -> Result<(), StoreError> {
        let cmd = self.set_cmd(&self.redis_key(key), value);
        self.with_conn(|c| cmd.query::<()>(c).map_err(Failure::from))
    }

    fn delete(&self, key: &str) -> Result<(), StoreError> {
        let rkey = self.redis_key(key);
        self.with_conn(|c| {
            redis::cmd("DEL")
                .arg(&rkey)
                .query::<()>(c)
                .map_err(Failure::from)
        })
    }

    fn update(
        &self,
        key: &str,
        f: &mut dyn FnMut(&mut StoreData) -> bool,
    ) -> Result<bool, StoreError> {
        let rkey = self.redis_key(key);
        for attempt in 0..self.options.max_update_attempts.max(1) {
            if attempt > 0 {
                backoff(attempt);
            }
            // WATCH, read, decide, then MULTI/SET/EXEC: EXEC answers nil when another client
            // wrote the key in between, and we start over from the new value.
            let outcome = self.with_conn(|c| {
                redis::cmd("WATCH").arg(&rkey).query::<()>(c)?;
                let mut data = Self::read(c, &rkey, key)?.unwrap_or_default();
                if !f(&mut data) {
                    redis::cmd("UNWATCH").query::<()>(c)?;
                    return Ok(Some(false));
                }
                let mut pipe = redis::pipe();
                pipe.atomic()
                    .add_command(self.set_cmd(&rkey, &data))
                    .ignore();
                let done: Value = pipe.query(c)?;
                Ok(match done {
                    Value::Nil => None, // conflict: retry
                    _ => Some(true),
                })
            })?;
            if let Some(written) = outcome {
                return Ok(written);
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
