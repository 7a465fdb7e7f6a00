#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

use convert_ports::{
    Applied, DataStore, StoreData, StoreError, StoreOp, apply_ops, store_time_left,
};
use rusqlite::types::ValueRef;
use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension, TransactionBehavior, params};
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Options of [`SqliteStore::open_with`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct SqliteOptions {
    /// How long a write waits for another connection's lock before failing (default 5 s).
    pub busy_timeout: Duration,
    /// Records not written for this long (counted in whole seconds) are treated as absent and
    /// removed by [`SqliteStore::cleanup`] (default: kept forever).
    pub ttl: Option<Duration>,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        SqliteOptions {
            busy_timeout: Duration::from_secs(5),
            ttl: None,
        }
    }
}

impl SqliteOptions {
    /// Sets [`SqliteOptions::busy_timeout`].
    pub fn busy_timeout(mut self, value: Duration) -> Self {
        self.busy_timeout = value;
        self
    }

    /// Sets [`SqliteOptions::ttl`] (records older than this are treated as absent).
    pub fn ttl(mut self, value: Duration) -> Self {
        self.ttl = Some(value);
        self
    }
}

/// `d` within what SQLite's busy handler takes (`i32` milliseconds, about 24.8 days; rusqlite
/// panics beyond it): a longer wait is that long.
fn busy_limit(d: Duration) -> Duration {
    d.min(Duration::from_millis(i32::MAX.unsigned_abs().into()))
}

/// A [`DataStore`] in one SQLite file (bundled SQLite, WAL mode), safe for several processes on
/// one host.
///
/// Each store holds one connection, used by one call at a time; `update` is a `BEGIN IMMEDIATE`
/// transaction. A database locked by another writer for longer than the busy timeout gives
/// [`StoreError::Unavailable`]. Within an SDK call's store deadline, both waits (for this
/// store's connection, held by other threads' calls, and for the database) end at the
/// deadline.
pub struct SqliteStore {
    conn: Mutex<Connection>,
    /// Turns at `conn` for the calls that have a deadline: a wait for a `Mutex` cannot be
    /// bounded, and with several threads one could wait for many holders in a row.
    turns: Turns,
    path: PathBuf,
    ttl: Option<Duration>,
    busy_timeout: Duration,
}

/// The `file:` URI of `path` opened as immutable (`None` for a path that is not UTF-8).
fn immutable_uri(path: &Path) -> Option<String> {
    let mut uri = String::from("file:");
    for c in path.to_str()?.chars() {
        match c {
            '%' => uri.push_str("%25"),
            '?' => uri.push_str("%3f"),
            '#' => uri.push_str("%23"),
            c => uri.push(c),
        }
    }
    uri.push_str("?immutable=1");
    Some(uri)
}

/// Turns at the connection, taken one at a time and waited for until a deadline.
#[derive(Default)]
struct Turns {
    busy: Mutex<bool>,
    freed: Condvar,
}

impl Turns {
    /// Waits for the turn until `until` (`None`: as long as it takes); `None` when the time
    /// ran out first.
    fn take(&self, until: Option<Instant>) -> Option<Turn<'_>> {
        let mut busy = self.busy.lock().unwrap_or_else(PoisonError::into_inner);
        while *busy {
            busy = match until {
                None => self
                    .freed
                    .wait(busy)
                    .unwrap_or_else(PoisonError::into_inner),
                Some(until) => {
                    let left = until.checked_duration_since(Instant::now())?;
                    if left.is_zero() {
                        return None;
                    }
                    self.freed
                        .wait_timeout(busy, left)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0
                }
            };
        }
        *busy = true;
        Some(Turn(self))
    }
}

/// A turn at the connection, given back when dropped (also when unwinding).
struct Turn<'a>(&'a Turns);

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        *self.0.busy.lock().unwrap_or_else(PoisonError::into_inner) = false;
        self.0.freed.notify_one();
    }
}

/// The connection during a turn. The connection's lock is released before the turn.
struct Held<'a> {
    conn: MutexGuard<'a, Connection>,
    _turn: Turn<'a>,
}

impl std::ops::Deref for Held<'_> {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        &self.conn
    }
}

impl std::ops::DerefMut for Held<'_> {
    fn deref_mut(&mut self) -> &mut Connection {
        &mut self.conn
    }
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS convert_visitors (
    key TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL,
    updated_at INTEGER NOT NULL
)";

fn map_err(e: rusqlite::Error) -> StoreError {
    match e.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
            StoreError::Unavailable(format!("sqlite: {e}"))
        }
        Some(ErrorCode::CannotOpen | ErrorCode::ReadOnly | ErrorCode::DiskFull) => {
            StoreError::Unavailable(format!("sqlite: {e}"))
        }
        _ => StoreError::Other(format!("sqlite: {e}")),
    }
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

impl SqliteStore {
    /// Opens (creating if needed) the store at `path` with default options.
    pub fn open(path: impl AsRef<Path>) -> Result<SqliteStore, StoreError> {
        Self::open_with(path, SqliteOptions::default())
    }

    /// Opens (creating if needed) the store at `path`: WAL journal, the busy timeout, the schema.
    pub fn open_with(
        path: impl AsRef<Path>,
        options: SqliteOptions,
    ) -> Result<SqliteStore, StoreError> {
        let path = path.as_ref().to_path_buf();
        let conn = match Self::open_rw(&path, &options) {
            Ok(c) => c,
            // A file (or file system) that cannot be written: open it for reading, so decisions
            // still see stored state; every write fails with `StoreError::Unavailable`.
            Err(StoreError::Unavailable(why)) if path.exists() => {
                let conn = Self::open_read_only(&path, &options)?;
                log::warn!(
                    "convert: SQLite store {} opened read-only ({why}): writes will fail",
                    path.display()
                );
                conn
            }
            Err(e) => return Err(e),
        };
        Ok(SqliteStore {
            conn: Mutex::new(conn),
            turns: Turns::default(),
            path,
            ttl: options.ttl,
            busy_timeout: options.busy_timeout,
        })
    }

    /// The file opened for reading. A WAL database needs its shared-memory file (`-shm`) even
    /// to be read; where that cannot be created (a read-only file system or directory) every
    /// read failed, so the file is then opened as immutable: read as it is, without the WAL
    /// (which a clean close has folded into it), and without seeing later changes.
    fn open_read_only(path: &Path, options: &SqliteOptions) -> Result<Connection, StoreError> {
        let conn =
            Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(map_err)?;
        conn.busy_timeout(busy_limit(options.busy_timeout))
            .map_err(map_err)?;
        let readable = |c: &Connection| {
            c.query_row("SELECT count(*) FROM sqlite_master", [], |_| Ok(()))
                .is_ok()
        };
        if readable(&conn) {
            return Ok(conn);
        }
        let Some(uri) = immutable_uri(path) else {
            return Ok(conn);
        };
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_URI;
        match Connection::open_with_flags(&uri, flags) {
            Ok(immutable) if readable(&immutable) => {
                log::warn!(
                    "convert: SQLite store {} read as immutable (its directory cannot be written): changes other processes make to it are not seen",
                    path.display()
                );
                Ok(immutable)
            }
            _ => Ok(conn),
        }
    }

    fn open_rw(path: &Path, options: &SqliteOptions) -> Result<Connection, StoreError> {
        let conn = Connection::open(path).map_err(map_err)?;
        conn.busy_timeout(busy_limit(options.busy_timeout))
            .map_err(map_err)?;
        // WAL lets readers proceed while one process writes; NORMAL sync is durable across
        // application crashes (an OS crash may lose the last commits).
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(map_err)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(map_err)?;
        conn.execute_batch(SCHEMA).map_err(map_err)?;
        Ok(conn)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Deletes records older than the TTL; returns how many. Without a TTL it deletes nothing.
    pub fn cleanup(&self) -> Result<usize, StoreError> {
        let Some(ttl) = self.ttl else { return Ok(0) };
        let cutoff = now_secs() - i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX);
        // A turn like any call, so that no call waits for the connection behind it without a
        // bound; outside an SDK call no deadline applies, and SQLite waits the busy timeout.
        let conn = self.lock_within_deadline()?;
        conn.execute(
            "DELETE FROM convert_visitors WHERE updated_at < ?1",
            params![cutoff],
        )
        .map_err(map_err)
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // The connection stays usable after a panic elsewhere: every statement is atomic.
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The connection, its lock wait cut to the SDK call's store deadline (when one is set):
    /// both the wait for this store's connection (other threads' calls) and SQLite's wait for
    /// the database (other connections' transactions).
    fn lock_within_deadline(&self) -> Result<Held<'_>, StoreError> {
        let until =
            store_time_left().map(|left| convert_ports::instant_after(Instant::now(), left));
        let turn = self.turns.take(until).ok_or_else(|| {
            StoreError::Unavailable(
                "sqlite: the call's store deadline passed while other calls held the connection"
                    .into(),
            )
        })?;
        let conn = Held {
            conn: self.lock(),
            _turn: turn,
        };
        if let Some(left) = store_time_left() {
            if left.is_zero() {
                return Err(StoreError::Unavailable(
                    "sqlite: the call's store deadline passed".into(),
                ));
            }
            conn.busy_timeout(busy_limit(left.min(self.busy_timeout)))
                .map_err(map_err)?;
        } else {
            conn.busy_timeout(busy_limit(self.busy_timeout))
                .map_err(map_err)?;
        }
        Ok(conn)
    }

    fn fresh(&self, updated_at: i64) -> bool {
        match self.ttl {
            Some(ttl) => {
                now_secs() - updated_at <= i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX)
            }
            None => true,
        }
    }

    fn read(&self, conn: &Connection, key: &str) -> Result<Option<StoreData>, StoreError> {
        let corrupt = |reason: String| StoreError::Corrupt {
            key: key.to_string(),
            reason,
        };
        let row: Option<(Result<String, String>, Option<i64>)> = conn
            .prepare_cached("SELECT value, updated_at FROM convert_visitors WHERE key = ?1")
            .map_err(map_err)?
            .query_row(params![key], |r| {
                // Another writer may have stored a blob, a number or bytes that are not UTF-8.
                let text = match r.get_ref(0)? {
                    ValueRef::Text(b) | ValueRef::Blob(b) => std::str::from_utf8(b)
                        .map(str::to_string)
                        .map_err(|e| e.to_string()),
                    other => Err(format!("the value is {:?}, not text", other.data_type())),
                };
                Ok((text, r.get(1).ok().flatten()))
            })
            .optional()
            .map_err(map_err)?;
        match row {
            // A row without a time (written by another tool) never expires.
            Some((text, at)) if at.is_none_or(|at| self.fresh(at)) => {
                let text = text.map_err(corrupt)?;
                StoreData::from_json(&text)
                    .map(Some)
                    .map_err(|e| corrupt(e.to_string()))
            }
            _ => Ok(None),
        }
    }

    fn write(conn: &Connection, key: &str, value: &StoreData) -> Result<(), StoreError> {
        conn.prepare_cached(
            "INSERT INTO convert_visitors (key, value, updated_at) VALUES (?1, ?2, ?3)
             ON CONFLICT(key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
        )
        .and_then(|mut st| st.execute(params![key, value.to_json(), now_secs()]))
        .map(|_| ())
        .map_err(map_err)
    }
}

impl DataStore for SqliteStore {
    fn get(&self, key: &str) -> Result<Option<StoreData>, StoreError> {
        let conn = self.lock_within_deadline()?;
        self.read(&conn, key)
    }

    fn set(&self, key: &str, value: &StoreData) -> Result<(), StoreError> {
        let conn = self.lock_within_deadline()?;
        Self::write(&conn, key, value)
    }

    fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.lock_within_deadline()?
            .execute("DELETE FROM convert_visitors WHERE key = ?1", params![key])
            .map(|_| ())
            .map_err(map_err)
    }

    fn update(
        &self,
        key: &str,
        f: &mut dyn FnMut(&mut StoreData) -> bool,
    ) -> Result<bool, StoreError> {
        let mut conn = self.lock_within_deadline()?;
        // IMMEDIATE takes the write lock up front, so no other connection (or process) can write
        // between our read and our write.
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(map_err)?;
        let mut data = self.read(&tx, key)?.unwrap_or_default();
        let changed = f(&mut data);
        if changed {
            Self::write(&tx, key, &data)?;
        }
        tx.commit().map_err(map_err)?;
        Ok(changed)
    }

    /// One `BEGIN IMMEDIATE` transaction: read, apply, write. A stored value that is not visitor
    /// data is replaced by a record built from `ops`.
    fn apply(
        &self,
        key: &str,
        _seen: Option<&StoreData>,
        ops: &[StoreOp],
    ) -> Result<Applied, StoreError> {
        let mut conn = self.lock_within_deadline()?;
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(map_err)?;
        let mut data = match self.read(&tx, key) {
            Ok(d) => d.unwrap_or_default(),
            Err(StoreError::Corrupt { .. }) => StoreData::default(),
            Err(e) => return Err(e),
        };
        let out = apply_ops(&mut data, ops);
        if out.written() {
            Self::write(&tx, key, &data)?;
        }
        tx.commit().map_err(map_err)?;
        Ok(out)
    }

    fn name(&self) -> &'static str {
        "sqlite"
    }

    fn is_persistent(&self) -> bool {
        true
    }
}
