#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

use convert_ports::{
    Applied, Backoff, DataStore, StoreData, StoreError, StoreOp, apply_ops, create_with_update,
    store_wait_limit,
};
use redis::cluster::{ClusterClient, ClusterConfig, ClusterConnection};
use redis::{Client, Connection, ConnectionLike, ErrorKind, RedisError, Script, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

#[cfg(feature = "tokio")]
mod tokio_store;
#[cfg(feature = "tokio")]
#[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
pub use tokio_store::AsyncRedisStore;

/// Options of [`RedisStore::open_with`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
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
    /// connections at once; idle connections beyond this number are closed after use.
    pub max_idle_connections: usize,
    /// Connections open at once, idle and in use (default 32). A call that finds them all busy
    /// waits for one up to `pool_wait` (and never past the SDK call's store deadline), then fails
    /// with [`StoreError::Unavailable`].
    pub max_connections: usize,
    /// How long a call may wait for a free connection (default 100 ms).
    pub pool_wait: Duration,
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
            max_connections: 32,
            pool_wait: Duration::from_millis(100),
            tls_ca_pem: None,
        }
    }
}

impl RedisOptions {
    /// Sets [`RedisOptions::prefix`].
    pub fn prefix(mut self, value: impl Into<String>) -> Self {
        self.prefix = value.into();
        self
    }

    /// Sets [`RedisOptions::ttl`] (an expiry at every write).
    pub fn ttl(mut self, value: Duration) -> Self {
        self.ttl = Some(value);
        self
    }

    /// Sets [`RedisOptions::connect_timeout`].
    pub fn connect_timeout(mut self, value: Duration) -> Self {
        self.connect_timeout = value;
        self
    }

    /// Sets [`RedisOptions::io_timeout`].
    pub fn io_timeout(mut self, value: Duration) -> Self {
        self.io_timeout = value;
        self
    }

    /// Sets [`RedisOptions::max_update_attempts`].
    pub fn max_update_attempts(mut self, value: u32) -> Self {
        self.max_update_attempts = value;
        self
    }

    /// Sets [`RedisOptions::max_idle_connections`].
    pub fn max_idle_connections(mut self, value: usize) -> Self {
        self.max_idle_connections = value;
        self
    }

    /// Sets [`RedisOptions::max_connections`].
    pub fn max_connections(mut self, value: usize) -> Self {
        self.max_connections = value;
        self
    }

    /// Sets [`RedisOptions::pool_wait`].
    pub fn pool_wait(mut self, value: Duration) -> Self {
        self.pool_wait = value;
        self
    }

    /// Sets [`RedisOptions::tls_ca_pem`] (PEM CA certificate(s) for `rediss://`).
    pub fn tls_ca_pem(mut self, value: impl Into<Vec<u8>>) -> Self {
        self.tls_ca_pem = Some(value.into());
        self
    }
}

/// A [`DataStore`] on Redis (one server, or a Redis Cluster with `redis+cluster://` URLs): one key
/// per visitor holding the shared JSON value, atomic writes with one compare-and-set script
/// (`EVALSHA`), a bounded pool of connections re-made after failures.
pub struct RedisStore {
    client: Target,
    pool: Mutex<Pool>,
    freed: Condvar,
    options: RedisOptions,
    /// Set once the server refused `SET … NX GET` (Redis before 7.0).
    no_set_nx_get: AtomicBool,
}

/// Where the store connects.
enum Target {
    /// The client, whose handshake selects no database, and the database to select (0: none).
    Single(Client, i64),
    /// The client and the number of seed nodes in the URL.
    Cluster(ClusterClient, u32),
}

/// One connection of the pool, with the read/write timeout last set on it.
struct Conn {
    link: Link,
    timeout: Option<Duration>,
}

enum Link {
    Single(Connection),
    Cluster(Box<ClusterConnection>),
}

/// How far a connection's timeout may be from the wanted one before it is set again (two
/// system calls): calls in quick succession reuse it.
const TIMEOUT_SLACK: Duration = Duration::from_millis(2);

impl Conn {
    fn new(link: Link) -> Conn {
        Conn {
            link,
            timeout: None,
        }
    }

    fn like(&mut self) -> &mut dyn ConnectionLike {
        match &mut self.link {
            Link::Single(c) => c,
            Link::Cluster(c) => &mut **c,
        }
    }

    fn is_open(&self) -> bool {
        match &self.link {
            Link::Single(c) => c.is_open(),
            Link::Cluster(c) => c.is_open(),
        }
    }

    /// Bounds the next command's wait to `limit` (within [`TIMEOUT_SLACK`]).
    fn set_timeouts(&mut self, limit: Duration) -> Result<(), RedisError> {
        if self
            .timeout
            .is_some_and(|t| t.abs_diff(limit) <= TIMEOUT_SLACK)
        {
            return Ok(());
        }
        self.timeout = None;
        match &self.link {
            Link::Single(c) => {
                c.set_read_timeout(Some(limit))?;
                c.set_write_timeout(Some(limit))?;
            }
            Link::Cluster(c) => {
                c.set_read_timeout(Some(limit))?;
                c.set_write_timeout(Some(limit))?;
            }
        }
        self.timeout = Some(limit);
        Ok(())
    }
}

/// The connection pool: idle connections and how many exist in all.
#[derive(Default)]
struct Pool {
    idle: Vec<Conn>,
    open: usize,
}

/// The compare-and-set script behind every write: `KEYS[1]` the key, `ARGV[1]` `"1"` when a value
/// is expected (`ARGV[2]`) and `"0"` when the key is expected absent, `ARGV[3]` the new value,
/// `ARGV[4]` the TTL in ms (`"0"`: none). Returns 1 when it wrote, else the current value in a
/// one-element array (empty: absent), so the caller recomputes without another `GET`.
const CAS_SCRIPT: &str = r"
local cur = redis.call('GET', KEYS[1])
local same
if ARGV[1] == '0' then same = (cur == false) else same = (cur == ARGV[2]) end
if same then
  if ARGV[4] ~= '0' then
    redis.call('SET', KEYS[1], ARGV[3], 'PX', ARGV[4])
  else
    redis.call('SET', KEYS[1], ARGV[3])
  end
  return 1
end
if cur == false then return {} end
return {cur}
";

fn cas_script() -> &'static Script {
    static SCRIPT: std::sync::OnceLock<Script> = std::sync::OnceLock::new();
    SCRIPT.get_or_init(|| Script::new(CAS_SCRIPT))
}

/// What the compare-and-set found.
enum Cas {
    Written,
    /// The key holds this value (`None`: absent) instead of the expected one.
    Current(Option<Vec<u8>>),
}

/// The longest TTL sent, [`convert_ports::LONGEST_WAIT`] in ms. Redis refuses an expiry past what
/// its clock can add (`Duration::MAX` made every write fail with "value is not an integer or out
/// of range").
const MAX_TTL_MS: u64 = convert_ports::LONGEST_WAIT.as_secs() * 1000;

/// The TTL argument of the writes, in ms (`0`: none).
fn ttl_ms(options: &RedisOptions) -> u64 {
    options.ttl.map_or(0, |t| {
        u64::try_from(t.as_millis())
            .unwrap_or(u64::MAX)
            .clamp(1, MAX_TTL_MS)
    })
}

/// `SET key new NX GET [PX ttl]`: writes a key that is absent, else returns its value.
fn set_nx_get(rkey: &str, new: &str, ttl: u64) -> redis::Cmd {
    let mut cmd = redis::cmd("SET");
    cmd.arg(rkey).arg(new).arg("NX").arg("GET");
    if ttl > 0 {
        cmd.arg("PX").arg(ttl);
    }
    cmd
}

/// What a `SET NX GET` reply means; `Ok(None)` when the server does not know the command form
/// (Redis before 7.0: use the script).
fn set_nx_get_reply(
    reply: Result<Option<Vec<u8>>, RedisError>,
    key: &str,
) -> Result<Option<Cas>, Failure> {
    match reply {
        Ok(None) => Ok(Some(Cas::Written)),
        Ok(Some(cur)) => Ok(Some(Cas::Current(Some(cur)))),
        Err(e) if e.code() == Some("WRONGTYPE") => Err(RedisStore::corrupt(
            key,
            "the Redis key does not hold a string",
        )),
        Err(e) if e.code() == Some("ERR") && e.to_string().contains("syntax") => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// One call of the compare-and-set script.
fn cas_invocation(
    rkey: &str,
    expected: Option<&[u8]>,
    new: &str,
    ttl: u64,
) -> redis::ScriptInvocation<'static> {
    let mut inv = cas_script().key(rkey);
    inv.arg(if expected.is_some() { "1" } else { "0" })
        .arg(expected.unwrap_or_default())
        .arg(new)
        .arg(ttl);
    inv
}

/// What a compare-and-set script reply means.
fn cas_reply(reply: Result<Value, RedisError>, key: &str) -> Result<Cas, Failure> {
    match reply {
        Ok(Value::Int(1)) => Ok(Cas::Written),
        Ok(Value::Array(items)) => match items.into_iter().next() {
            None => Ok(Cas::Current(None)),
            Some(Value::BulkString(b)) => Ok(Cas::Current(Some(b))),
            Some(other) => Err(RedisStore::corrupt(
                key,
                format!("unexpected reply {other:?}"),
            )),
        },
        Ok(other) => Err(RedisStore::corrupt(
            key,
            format!("unexpected reply {other:?}"),
        )),
        Err(e) if e.to_string().contains("WRONGTYPE") => Err(RedisStore::corrupt(
            key,
            "the Redis key does not hold a string",
        )),
        Err(e) => Err(e.into()),
    }
}

/// One attempt of [`DataStore::apply`] on the value `cur` found: the record to write (`None`:
/// nothing changed) and the per-op flags. An unreadable value is replaced by what the ops write.
fn apply_step(
    cur: Option<&[u8]>,
    key: &str,
    ops: &[StoreOp],
) -> Result<(Option<StoreData>, Applied), Failure> {
    let mut data = match RedisStore::parse(cur, key) {
        Ok(d) => d.unwrap_or_default(),
        Err(Failure::Store(StoreError::Corrupt { .. })) => StoreData::default(),
        Err(e) => return Err(e),
    };
    let out = apply_ops(&mut data, ops);
    Ok(if out.written() {
        (Some(data), out)
    } else {
        (None, out)
    })
}

/// Whether applying `ops` to `seen` (what the caller just read) would change nothing: then
/// [`DataStore::apply`] needs no round trip.
fn unchanged(seen: Option<&StoreData>, ops: &[StoreOp]) -> Option<Applied> {
    let mut probe = seen?.clone();
    let out = apply_ops(&mut probe, ops);
    (!out.written()).then_some(out)
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The connection info may hold a password: show only where it points.
        let addr = match &self.client {
            Target::Single(c, _) => c.get_connection_info().addr().to_string(),
            Target::Cluster(..) => "cluster".to_string(),
        };
        f.debug_struct("RedisStore")
            .field("addr", &addr)
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

/// A Redis error as a store error: `Unavailable` for the ones that mean "not reachable now".
/// TCP settings for every connection: `TCP_NODELAY` on. Commands are small; with Nagle's
/// algorithm a command written while an earlier one is unacknowledged waits for that ACK (up to
/// the peer's delayed-ACK timer), which the async store's shared, pipelined connection hits all
/// the time (measured: 20 ms Redis latency, concurrency 64, 520 → 988 requests/s).
fn tcp_settings() -> redis::io::tcp::TcpSettings {
    redis::io::tcp::TcpSettings::default().set_nodelay(true)
}

/// The connection info of `url` with [`tcp_settings`].
fn no_delay(url: &str) -> Result<redis::ConnectionInfo, RedisError> {
    use redis::IntoConnectionInfo;
    let info = url.into_connection_info()?;
    // No `CLIENT SETINFO` at connect: a round trip per new connection for a name in
    // `CLIENT LIST`, and against a hung server its two replies were each waited for with the
    // whole time left, which doubled a call's store deadline.
    let handshake = info.redis_settings().clone().set_skip_set_lib_name();
    Ok(info
        .set_tcp_settings(tcp_settings())
        .set_redis_settings(handshake))
}

/// `info` without its database, and that database, for the sync store to select after the
/// handshake. redis-rs sends the handshake's commands (`AUTH` or `HELLO`, then `SELECT`) as one
/// pipeline and, when a reply times out, still waits for the next one with the same timeout: a
/// URL with both a password and a database waited twice the connect limit for a hung server.
fn without_select(info: redis::ConnectionInfo) -> (redis::ConnectionInfo, i64) {
    let db = info.redis_settings().db();
    let settings = info.redis_settings().clone().set_db(0);
    (info.set_redis_settings(settings), db)
}

fn classify(e: &RedisError) -> StoreError {
    match e.kind() {
        // Redis errors that mean "not reachable right now" rather than a bug.
        ErrorKind::Server(_)
            if matches!(
                e.code(),
                Some("LOADING" | "BUSY" | "MASTERDOWN" | "OOM" | "CLUSTERDOWN" | "TRYAGAIN")
            ) =>
        {
            unavailable(e)
        }
        ErrorKind::AuthenticationFailed => unavailable(e),
        _ => StoreError::Other(format!("redis: {}", describe(e))),
    }
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

/// A short pause before retrying a conflicting update: exponential (100 µs doubling up to
/// 3.2 ms) with ±50 % jitter (the SDK's shared [`Backoff`]), so racing clients do not retry in
/// lockstep.
fn backoff(attempt: u32) {
    const CONFLICT: Backoff =
        Backoff::new(Duration::from_micros(100), Duration::from_micros(3_200));
    std::thread::sleep(CONFLICT.with_jitter(0.5).delay(attempt));
}

/// The node list of a `redis+cluster://host:port[,host:port...]` URL as `redis://` URLs (the
/// user, password and TLS scheme of the first node apply to all).
fn cluster_nodes(url: &str) -> Option<Vec<String>> {
    let (scheme, rest) = if let Some(r) = url.strip_prefix("redis+cluster://") {
        ("redis", r)
    } else {
        ("rediss", url.strip_prefix("rediss+cluster://")?)
    };
    let rest = rest.trim_end_matches('/');
    let (auth, hosts) = match rest.rsplit_once('@') {
        Some((a, h)) => (format!("{a}@"), h),
        None => (String::new(), rest),
    };
    let nodes: Vec<String> = hosts
        .split(',')
        .filter(|h| !h.is_empty())
        .map(|h| format!("{scheme}://{auth}{h}/"))
        .collect();
    (!nodes.is_empty()).then_some(nodes)
}

/// The URL forms [`RedisStore::open`] accepts, for error messages.
const URL_FORMS: &str = "redis://[[user]:password@]host[:port][/db], rediss://... (TLS), \
redis+cluster://[[user]:password@]host:port[,host:port...] or unix:///path/to/redis.sock";

/// `url` with its password replaced by `***`, for messages.
fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => {
            let user = rest[..at].split(':').next().unwrap_or_default();
            let pass = if rest[..at].contains(':') { ":***" } else { "" };
            format!("{scheme}://{user}{pass}@{}", &rest[at + 1..])
        }
        None => url.to_string(),
    }
}

/// What is wrong with `url`, checked before the Redis client sees it so that the message says
/// more than "did not parse".
fn url_problem(url: &str) -> Option<String> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return Some(
            "no scheme (it must start with redis://, rediss:// or redis+cluster://)".into(),
        );
    };
    match scheme {
        "redis" | "rediss" | "redis+cluster" | "rediss+cluster" => {}
        "unix" | "redis+unix" => return None,
        other => return Some(format!("unknown scheme `{other}`")),
    }
    let authority = &rest[..rest.find('/').unwrap_or(rest.len())];
    let hosts = authority
        .rfind('@')
        .map_or(authority, |at| &authority[at + 1..]);
    if hosts.is_empty() {
        return Some("no host".into());
    }
    if !scheme.ends_with("+cluster") && hosts.contains(',') {
        return Some(
            "several hosts in a single-server URL (use redis+cluster:// for a cluster)".into(),
        );
    }
    for host in hosts.split(',') {
        if host.is_empty() {
            return Some("an empty host in the host list".into());
        }
        // `[::1]:6379`, `host:6379`, `host`.
        let port = match host.strip_prefix('[') {
            Some(v6) => v6.split_once("]:").map(|(_, p)| p),
            None => host.split_once(':').map(|(_, p)| p),
        };
        if let Some(p) = port {
            if p.parse::<u16>().is_err() {
                return Some(format!("port `{p}` is not a number from 0 to 65535"));
            }
        }
    }
    None
}

/// The error for a bad `url`.
fn bad_url(url: &str, problem: &str) -> StoreError {
    StoreError::Other(format!(
        "invalid Redis URL {:?}: {problem}; expected {URL_FORMS}",
        redact(url)
    ))
}

impl RedisStore {
    /// Connects to `url` (`redis://[[user]:password@]host[:port][/db]`; `rediss://` with the `tls`
    /// feature; `redis+cluster://[[user]:password@]host:port[,host:port...]` for a Redis Cluster)
    /// with default options.
    pub fn open(url: &str) -> Result<RedisStore, StoreError> {
        Self::open_with(url, RedisOptions::default())
    }

    /// Connects to `url` with `options`. The URL is checked here; connections are made when
    /// needed and re-made after a failure, so a store can be created while Redis is down.
    pub fn open_with(url: &str, options: RedisOptions) -> Result<RedisStore, StoreError> {
        if let Some(problem) = url_problem(url) {
            return Err(bad_url(url, &problem));
        }
        let tls = url.starts_with("rediss://") || url.starts_with("rediss+cluster://");
        if tls && !cfg!(feature = "tls") {
            return Err(StoreError::Other(
                "rediss:// (TLS) URLs need the `tls` feature of convert-store-redis".into(),
            ));
        }
        let client = if url.contains("+cluster://") {
            let (client, seeds) = Self::cluster_client(url, &options)?;
            Target::Cluster(client, u32::try_from(seeds).unwrap_or(u32::MAX).max(1))
        } else {
            let invalid = |e: RedisError| bad_url(url, &describe(&e));
            let (info, db) = without_select(no_delay(url).map_err(invalid)?);
            Target::Single(Self::client(info, tls, &options).map_err(invalid)?, db)
        };
        Ok(RedisStore {
            client,
            pool: Mutex::new(Pool::default()),
            freed: Condvar::new(),
            options,
            no_set_nx_get: AtomicBool::new(false),
        })
    }

    /// The cluster client of a `redis+cluster://` URL (sync and async stores), and its number
    /// of seed nodes.
    fn cluster_client(
        url: &str,
        options: &RedisOptions,
    ) -> Result<(ClusterClient, usize), StoreError> {
        let nodes = cluster_nodes(url)
            .ok_or_else(|| bad_url(url, "a cluster URL needs at least one host:port"))?;
        let seeds = nodes.len();
        let client = ClusterClient::builder(nodes)
            .tcp_settings(tcp_settings())
            .connection_timeout(options.connect_timeout)
            .response_timeout(options.io_timeout)
            .retries(2)
            .build()
            .map_err(|e| bad_url(url, &describe(&e)))?;
        Ok((client, seeds))
    }

    /// The client of connection info `info` (from [`no_delay`]), with the TLS root of `options`.
    #[cfg(feature = "tls")]
    fn client(
        info: redis::ConnectionInfo,
        tls: bool,
        options: &RedisOptions,
    ) -> Result<Client, RedisError> {
        if tls {
            // rustls needs a process-wide crypto provider; install ring's unless the application
            // chose one (without one, the first TLS handshake would abort the process).
            if rustls::crypto::CryptoProvider::get_default().is_none() {
                // Losing a race against another installer is fine: some provider is installed.
                let _ = rustls::crypto::ring::default_provider().install_default();
            }
            if let Some(ca) = &options.tls_ca_pem {
                return Client::build_with_tls(
                    info,
                    redis::TlsCertificates {
                        client_tls: None,
                        root_cert: Some(ca.clone()),
                    },
                );
            }
        }
        Client::open(info)
    }

    /// The client of connection info `info` (from [`no_delay`]).
    #[cfg(not(feature = "tls"))]
    fn client(
        info: redis::ConnectionInfo,
        _tls: bool,
        _options: &RedisOptions,
    ) -> Result<Client, RedisError> {
        Client::open(info)
    }

    /// Whether this store talks to a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        matches!(self.client, Target::Cluster(..))
    }

    /// The Redis key of a store key (`prefix` + key).
    pub fn redis_key(&self, key: &str) -> String {
        format!("{}{key}", self.options.prefix)
    }

    /// The options this store was opened with.
    pub fn options(&self) -> &RedisOptions {
        &self.options
    }

    /// Connections open now (idle and in use), for monitoring.
    pub fn open_connections(&self) -> usize {
        self.pool().open
    }

    /// Whether Redis answers `PING` (for health checks).
    pub fn ping(&self) -> Result<(), StoreError> {
        self.with_conn(|c| redis::cmd("PING").query::<()>(c).map_err(Failure::from))
    }

    fn pool(&self) -> MutexGuard<'_, Pool> {
        // The pool is consistent after a panic elsewhere: every change is one push/pop/count.
        self.pool.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn connect(&self, limit: Duration) -> Result<Conn, RedisError> {
        match &self.client {
            Target::Single(client, db) => {
                let start = Instant::now();
                let mut c = client.get_connection_with_timeout(limit)?;
                if *db != 0 {
                    // On its own, after the handshake's reply: see [`without_select`].
                    let left = limit
                        .checked_sub(start.elapsed())
                        .filter(|l| !l.is_zero())
                        .ok_or_else(|| {
                            RedisError::from(std::io::Error::from(std::io::ErrorKind::TimedOut))
                        })?;
                    c.set_read_timeout(Some(left))?;
                    c.set_write_timeout(Some(left))?;
                    redis::cmd("SELECT").arg(*db).query::<()>(&mut c)?;
                }
                Ok(Conn::new(Link::Single(c)))
            }
            // The client's own timeouts are the store's upper bounds; this connection's are cut
            // so that connecting fits in the time the call has left: the seeds are tried one
            // after another, each with a connect and a first command (`READONLY`) to wait for.
            Target::Cluster(client, seeds) => {
                let step = (limit / (2 * seeds)).max(Duration::from_millis(1));
                let config = ClusterConfig::new()
                    .set_connection_timeout(step)
                    .set_response_timeout(step);
                let c = client.get_connection_with_config(config)?;
                Ok(Conn::new(Link::Cluster(Box::new(c))))
            }
        }
    }

    /// A connection for one call: an idle one, a new one while fewer than `max_connections` are
    /// open, else the first one freed within the wait limit (`pool_wait`, cut to the call's store
    /// deadline). The flag says whether the connection came from the pool.
    fn checkout(&self) -> Result<(Conn, bool), StoreError> {
        let gone = || StoreError::Unavailable("redis: the call's store deadline passed".into());
        let wait = store_wait_limit(self.options.pool_wait).ok_or_else(gone)?;
        let until = convert_ports::instant_after(Instant::now(), wait);
        let mut pool = self.pool();
        loop {
            while let Some(c) = pool.idle.pop() {
                if c.is_open() {
                    return Ok((c, true));
                }
                pool.open = pool.open.saturating_sub(1);
            }
            if pool.open < self.options.max_connections.max(1) {
                pool.open += 1;
                drop(pool);
                let limit = store_wait_limit(self.options.connect_timeout).ok_or_else(gone);
                let made = limit.and_then(|l| self.connect(l).map_err(|e| unavailable(&e)));
                if made.is_err() {
                    self.release(None);
                }
                return made.map(|c| (c, false));
            }
            let now = Instant::now();
            if now >= until {
                return Err(StoreError::Unavailable(format!(
                    "redis: all {} connections busy",
                    pool.open
                )));
            }
            pool = self
                .freed
                .wait_timeout(pool, until - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// Returns a connection to the pool (`None`: it was closed).
    fn release(&self, conn: Option<Conn>) {
        let mut pool = self.pool();
        match conn {
            Some(c) if pool.idle.len() < self.options.max_idle_connections => pool.idle.push(c),
            _ => pool.open = pool.open.saturating_sub(1),
        }
        drop(pool);
        self.freed.notify_one();
    }

    /// Runs `f` on a pooled connection with timeouts cut to the call's store deadline. A pooled
    /// connection that turns out dead (Redis restarted, idle timeout) is dropped with the rest
    /// of the idle ones and `f` runs again once on a new connection. A connection goes back to
    /// the pool only after `f` succeeded, so no half-read reply leaks into the next call.
    fn with_conn<T>(
        &self,
        mut f: impl FnMut(&mut dyn ConnectionLike) -> Result<T, Failure>,
    ) -> Result<T, StoreError> {
        let mut retried = false;
        loop {
            let (mut conn, from_pool) = self.checkout()?;
            let Some(limit) = store_wait_limit(self.options.io_timeout) else {
                self.release(Some(conn));
                return Err(StoreError::Unavailable(
                    "redis: the call's store deadline passed".into(),
                ));
            };
            if let Err(e) = conn.set_timeouts(limit) {
                self.release(None);
                return Err(unavailable(&e));
            }
            match f(conn.like()) {
                Ok(v) => {
                    self.release(Some(conn));
                    return Ok(v);
                }
                Err(Failure::Store(e)) => {
                    self.release(Some(conn));
                    return Err(e);
                }
                // A timeout means Redis is slow or hung, not that the connection went stale:
                // trying again would only double the wait.
                Err(Failure::Redis(e))
                    if from_pool && !retried && is_connection_error(&e) && !e.is_timeout() =>
                {
                    self.release(None);
                    let stale = std::mem::take(&mut self.pool().idle);
                    for _ in stale {
                        self.release(None);
                    }
                    retried = true;
                }
                Err(Failure::Redis(e)) if is_connection_error(&e) => {
                    self.release(None);
                    return Err(unavailable(&e));
                }
                Err(Failure::Redis(e)) => {
                    // A server error reply leaves the connection usable.
                    self.release(Some(conn));
                    return Err(classify(&e));
                }
            }
        }
    }

    fn corrupt(key: &str, reason: impl std::fmt::Display) -> Failure {
        Failure::Store(StoreError::Corrupt {
            key: key.to_string(),
            reason: reason.to_string(),
        })
    }

    /// Reads a visitor's raw value on `c`.
    fn read_raw(
        c: &mut dyn ConnectionLike,
        rkey: &str,
        key: &str,
    ) -> Result<Option<Vec<u8>>, Failure> {
        match redis::cmd("GET").arg(rkey).query(c) {
            Ok(v) => Ok(v),
            // Another client stored a hash, list, … under the key.
            Err(e) if e.code() == Some("WRONGTYPE") => {
                Err(Self::corrupt(key, "the Redis key does not hold a string"))
            }
            Err(e) => Err(e.into()),
        }
    }

    fn parse(raw: Option<&[u8]>, key: &str) -> Result<Option<StoreData>, Failure> {
        let Some(bytes) = raw else { return Ok(None) };
        let text = std::str::from_utf8(bytes).map_err(|e| Self::corrupt(key, e))?;
        StoreData::from_json(text)
            .map(Some)
            .map_err(|e| Self::corrupt(key, e))
    }

    /// One compare-and-set round trip (`EVALSHA`; the script is loaded on first use).
    fn cas(
        &self,
        c: &mut dyn ConnectionLike,
        rkey: &str,
        expected: Option<&[u8]>,
        new: &str,
        key: &str,
    ) -> Result<Cas, Failure> {
        let ttl = ttl_ms(&self.options);
        if expected.is_none() && !self.no_set_nx_get.load(Ordering::Relaxed) {
            match set_nx_get_reply(set_nx_get(rkey, new, ttl).query(c), key)? {
                Some(found) => return Ok(found),
                None => self.no_set_nx_get.store(true, Ordering::Relaxed),
            }
        }
        cas_reply(cas_invocation(rkey, expected, new, ttl).invoke(c), key)
    }

    fn write_loop<T>(
        &self,
        key: &str,
        mut current: Option<Vec<u8>>,
        mut step: impl FnMut(Option<&[u8]>) -> Result<(Option<StoreData>, T), Failure>,
    ) -> Result<T, StoreError> {
        let rkey = self.redis_key(key);
        for attempt in 0..self.options.max_update_attempts.max(1) {
            if attempt > 1 {
                backoff(attempt);
            }
            let (new, out) = match step(current.as_deref()) {
                Ok(v) => v,
                Err(Failure::Store(e)) => return Err(e),
                Err(Failure::Redis(e)) => return Err(classify(&e)),
            };
            let Some(new) = new else { return Ok(out) };
            let json = new.to_json();
            let expected = current.clone();
            match self.with_conn(|c| self.cas(c, &rkey, expected.as_deref(), &json, key))? {
                Cas::Written => return Ok(out),
                Cas::Current(v) => current = v,
            }
        }
        Err(StoreError::Contention(key.to_string()))
    }
}

impl DataStore for RedisStore {
    fn get(&self, key: &str) -> Result<Option<StoreData>, StoreError> {
        let rkey = self.redis_key(key);
        self.with_conn(|c| Self::parse(Self::read_raw(c, &rkey, key)?.as_deref(), key))
    }

    fn set(&self, key: &str, value: &StoreData) -> Result<(), StoreError> {
        let rkey = self.redis_key(key);
        let mut cmd = redis::cmd("SET");
        cmd.arg(&rkey).arg(value.to_json());
        if let Some(ttl) = self.options.ttl {
            cmd.arg("PX")
                .arg(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1));
        }
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

    /// `GET`, then one compare-and-set script call per attempt: two round trips when nobody
    /// wrote the key in between. A stored value that is not visitor data is reported as
    /// [`StoreError::Corrupt`] and left untouched.
    fn update(
        &self,
        key: &str,
        f: &mut dyn FnMut(&mut StoreData) -> bool,
    ) -> Result<bool, StoreError> {
        let rkey = self.redis_key(key);
        let raw = self.with_conn(|c| Self::read_raw(c, &rkey, key))?;
        self.write_loop(key, raw, |cur| {
            let mut data = Self::parse(cur, key)?.unwrap_or_default();
            Ok(if f(&mut data) {
                (Some(data), true)
            } else {
                (None, false)
            })
        })
    }

    /// One compare-and-set round trip against `seen` (re-serialized) when `seen` is what is
    /// stored; on a mismatch the script hands back the stored value and the ops are applied to it
    /// (a second round trip). A stored value that is not visitor data is replaced by a record
    /// built from `ops`.
    fn apply(
        &self,
        key: &str,
        seen: Option<&StoreData>,
        ops: &[StoreOp],
    ) -> Result<Applied, StoreError> {
        if let Some(out) = unchanged(seen, ops) {
            return Ok(out);
        }
        let start = seen.map(|s| s.to_json().into_bytes());
        self.write_loop(key, start, |cur| apply_step(cur, key, ops))
    }

    /// One round trip: `SET NX GET` (Redis 7), or the compare-and-set script on older servers.
    /// A stored value that is not visitor data is reported as [`StoreError::Corrupt`].
    fn create(&self, key: &str, record: &StoreData) -> Result<Option<StoreData>, StoreError> {
        let rkey = self.redis_key(key);
        let json = record.to_json();
        let found = self.with_conn(|c| self.cas(c, &rkey, None, &json, key))?;
        match found {
            Cas::Written => Ok(None),
            Cas::Current(raw) => match raw {
                None => Ok(None),
                Some(raw) => match Self::parse(Some(&raw), key) {
                    // An empty record counts as none: fill it, atomically.
                    Ok(Some(d)) if d.is_empty() => create_with_update(self, key, record),
                    Ok(d) => Ok(d),
                    Err(Failure::Store(e)) => Err(e),
                    Err(Failure::Redis(e)) => Err(classify(&e)),
                },
            },
        }
    }

    fn name(&self) -> &'static str {
        "redis"
    }

    fn is_persistent(&self) -> bool {
        true
    }
}
