//! The SQLite store against real files in a temporary directory.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use convert_ports::{DataStore, StoreData, StoreError};
use convert_store_sqlite::{SqliteOptions, SqliteStore};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use std::time::Duration;

fn temp_db(tag: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "convert-sqlite-{}-{}-{}",
        std::process::id(),
        tag,
        N.fetch_add(1, Ordering::SeqCst)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("visitors.db")
}

fn fresh() -> SqliteStore {
    SqliteStore::open(temp_db("contract")).unwrap()
}

convert_store_tests::contract_tests!(fresh);

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
    let d = StoreData {
        goals: serde_json::json!({"purchase": true}).as_object().cloned(),
        ..StoreData::default()
    };
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
        SqliteOptions {
            busy_timeout: Duration::from_millis(50),
            ttl: None,
        },
    )
    .unwrap();
    store.set("k", &StoreData::default()).unwrap();
    // Another connection takes the write lock and keeps it.
    let other = rusqlite::Connection::open(&path).unwrap();
    other.execute_batch("BEGIN IMMEDIATE").unwrap();
    let err = store.update("k", &mut |_| true).unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
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
        SqliteOptions {
            busy_timeout: Duration::from_secs(1),
            ttl: Some(Duration::from_secs(0)),
        },
    )
    .unwrap();
    store.set("old", &StoreData::default()).unwrap();
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(
        store.get("old").unwrap(),
        None,
        "expired records read as absent"
    );
    assert_eq!(store.cleanup().unwrap(), 1);
    let keep = SqliteStore::open(temp_db("ttl-none")).unwrap();
    assert_eq!(keep.cleanup().unwrap(), 0);
}
