//! The SQLite store against real files in a temporary directory.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use convert_ports::{DataStore, StoreData, StoreError};
use convert_store_sqlite::{SqliteOptions, SqliteStore};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use std::time::Duration;

/// A database path in its own temporary directory, removed on drop.
struct TempDb {
    dir: PathBuf,
    path: PathBuf,
}

impl Drop for TempDb {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl AsRef<std::path::Path> for TempDb {
    fn as_ref(&self) -> &std::path::Path {
        &self.path
    }
}

impl AsRef<std::ffi::OsStr> for TempDb {
    fn as_ref(&self) -> &std::ffi::OsStr {
        self.path.as_os_str()
    }
}

fn temp_db(tag: &str) -> TempDb {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "convert-sqlite-{}-{}-{}",
        std::process::id(),
        tag,
        N.fetch_add(1, Ordering::SeqCst)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    TempDb {
        path: dir.join("visitors.db"),
        dir,
    }
}

/// A store on a fresh file, deleted with the store.
struct Fresh {
    store: SqliteStore,
    _db: TempDb,
}

impl DataStore for Fresh {
    fn get(&self, key: &str) -> Result<Option<StoreData>, StoreError> {
        self.store.get(key)
    }
    fn set(&self, key: &str, value: &StoreData) -> Result<(), StoreError> {
        self.store.set(key, value)
    }
    fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.store.delete(key)
    }
    fn update(
        &self,
        key: &str,
        f: &mut dyn FnMut(&mut StoreData) -> bool,
    ) -> Result<bool, StoreError> {
        self.store.update(key, f)
    }
}

fn fresh() -> Fresh {
    let db = temp_db("contract");
    Fresh {
        store: SqliteStore::open(&db).unwrap(),
        _db: db,
    }
}

convert_store_tests::contract_tests!(fresh);

#[test]
fn contract_update_discards_changes_when_false() {
    convert_store_tests::update_discards_changes_when_false(&fresh());
}

#[test]
fn four_connections_incrementing_one_counter_lose_nothing() {
    let path = temp_db("counter");
    let stores: Vec<Arc<dyn DataStore>> = (0..4)
        .map(|_| Arc::new(SqliteStore::open(&path).unwrap()) as Arc<dyn DataStore>)
        .collect();
    convert_store_tests::counter_across_instances(stores);
}

/// Set in the child processes of `processes_sharing_one_file_lose_nothing_and_dedup`.
const CHILD_DB: &str = "CONVERT_SQLITE_TEST_CHILD_DB";

/// The work of one child process (a no-op in a normal test run): 20 rounds of 5 counter
/// increments and one attempt to mark the round's goal first; prints how many it won.
#[test]
fn child_process_worker() {
    let Some(path) = std::env::var_os(CHILD_DB) else {
        return;
    };
    let store = SqliteStore::open(path).unwrap();
    let mut wins = 0;
    for round in 0..20 {
        for _ in 0..5 {
            store
                .update("1-2-counter", &mut |d| {
                    let n = d
                        .extra()
                        .and_then(|e| e.get("n"))
                        .and_then(|v| v.as_u64())
                        .unwrap_or(0);
                    d.extra_mut().insert("n".into(), (n + 1).into());
                    true
                })
                .unwrap();
        }
        let won = store
            .update(&format!("1-2-visitor-{round}"), &mut |d| {
                d.mark_goal("purchase")
            })
            .unwrap();
        wins += usize::from(won);
    }
    println!("WINS={wins}");
}

#[test]
fn processes_sharing_one_file_lose_nothing_and_dedup() {
    if std::env::var_os(CHILD_DB).is_some() {
        return;
    }
    let path = temp_db("processes");
    drop(SqliteStore::open(&path).unwrap());
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..4)
        .map(|_| {
            std::process::Command::new(&exe)
                .args([
                    "--exact",
                    "child_process_worker",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(CHILD_DB, &path)
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut wins = 0;
    for child in children {
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{stdout}");
        // libtest may print "test child_process_worker ... " on the same line.
        let after = stdout.split("WINS=").nth(1).unwrap();
        let digits: String = after.chars().take_while(char::is_ascii_digit).collect();
        wins += digits.parse::<usize>().unwrap();
    }
    assert_eq!(
        wins, 20,
        "each visitor's goal marked first by exactly one process"
    );
    let store = SqliteStore::open(&path).unwrap();
    let counter = store.get("1-2-counter").unwrap().unwrap();
    assert_eq!(
        counter.extra().and_then(|e| e.get("n")),
        Some(&serde_json::json!(400))
    );
}

#[test]
fn two_connections_to_one_file_have_one_winner() {
    let path = temp_db("race");
    let a: Arc<dyn DataStore> = Arc::new(SqliteStore::open(&path).unwrap());
    let b: Arc<dyn DataStore> = Arc::new(SqliteStore::open(&path).unwrap());
    convert_store_tests::one_winner_across_instances(a, b);
}

#[test]
fn data_survives_reopening_the_file() {
    let path = temp_db("reopen");
    let d = StoreData::from_value(serde_json::json!({"goals": {"purchase": true}})).unwrap();
    {
        let s = SqliteStore::open(&path).unwrap();
        s.set("1-2-visitor", &d).unwrap();
    }
    let s = SqliteStore::open(&path).unwrap();
    assert_eq!(s.get("1-2-visitor").unwrap(), Some(d));
    assert!(s.is_persistent());
}

#[test]
fn a_locked_database_is_unavailable_not_a_panic() {
    let path = temp_db("locked");
    let store = SqliteStore::open_with(
        &path,
        SqliteOptions::default().busy_timeout(Duration::from_millis(50)),
    )
    .unwrap();
    store.set("k", &StoreData::default()).unwrap();
    // Another connection takes the write lock and keeps it.
    let other = rusqlite::Connection::open(&path).unwrap();
    other.execute_batch("BEGIN IMMEDIATE").unwrap();
    let t = std::time::Instant::now();
    let err = store.update("k", &mut |_| true).unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    let waited = t.elapsed();
    assert!(
        waited >= Duration::from_millis(40) && waited < Duration::from_secs(2),
        "gave up after the busy timeout, not at once nor never: {waited:?}"
    );
    assert!(matches!(
        store.set("k", &StoreData::default()),
        Err(StoreError::Unavailable(_))
    ));
    assert!(matches!(store.delete("k"), Err(StoreError::Unavailable(_))));
    // Reads still work in WAL mode while another connection writes.
    assert!(store.get("k").unwrap().is_some());
    other.execute_batch("COMMIT").unwrap();
    // After the lock is released the store writes again.
    assert!(store.update("k", &mut |_| true).unwrap());
}

#[test]
fn corrupt_rows_are_reported() {
    let path = temp_db("corrupt");
    let store = SqliteStore::open(&path).unwrap();
    let raw = rusqlite::Connection::open(&path).unwrap();
    raw.execute(
        "INSERT INTO convert_visitors (key, value, updated_at) VALUES ('k', '{not json', 0)",
        [],
    )
    .unwrap();
    assert!(matches!(store.get("k"), Err(StoreError::Corrupt { .. })));
    raw.execute(
        "INSERT INTO convert_visitors (key, value, updated_at) VALUES ('n', 42, 0), ('b', X'FFFE7B', 0)",
        [],
    )
    .unwrap();
    assert!(matches!(store.get("n"), Err(StoreError::Corrupt { .. })));
    assert!(matches!(store.get("b"), Err(StoreError::Corrupt { .. })));
    // A bad row is reported, never overwritten silently by a read.
    assert!(matches!(
        store.update("k", &mut |_| true),
        Err(StoreError::Corrupt { .. })
    ));
}

#[test]
fn ttl_hides_and_cleans_old_records() {
    let path = temp_db("ttl");
    let store = SqliteStore::open_with(
        &path,
        SqliteOptions::default()
            .busy_timeout(Duration::from_secs(1))
            .ttl(Duration::from_secs(1)),
    )
    .unwrap();
    let record = StoreData::from_value(serde_json::json!({"goals": {"purchase": true}})).unwrap();
    store.set("old", &record).unwrap();
    // updated_at has whole seconds: 2.1 s later the record is more than 1 s old.
    std::thread::sleep(Duration::from_millis(2100));
    store.set("new", &record).unwrap();
    assert_eq!(
        store.get("old").unwrap(),
        None,
        "expired records read as absent"
    );
    assert_eq!(store.get("new").unwrap(), Some(record.clone()));
    let mut seen = None;
    store
        .update("old", &mut |d| {
            seen = Some(d.clone());
            false
        })
        .unwrap();
    assert_eq!(
        seen,
        Some(StoreData::default()),
        "update starts from an empty record"
    );
    assert_eq!(store.cleanup().unwrap(), 1, "only the expired row goes");
    assert_eq!(store.cleanup().unwrap(), 0);
    assert_eq!(store.get("new").unwrap(), Some(record));
    let raw = rusqlite::Connection::open(&path).unwrap();
    let rows: i64 = raw
        .query_row("SELECT COUNT(*) FROM convert_visitors", [], |r| r.get(0))
        .unwrap();
    assert_eq!(rows, 1);

    let none = temp_db("ttl-none");
    let keep = SqliteStore::open(&none).unwrap();
    assert_eq!(keep.cleanup().unwrap(), 0);
}
