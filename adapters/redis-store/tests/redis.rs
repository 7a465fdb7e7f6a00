//! The Redis store against real `redis-server` processes that the tests start on free ports.
//!
//! Without `redis-server` on PATH these tests say so and pass, unless `CONVERT_REQUIRE_REDIS=1`
//! (set by `cargo xtask test` and CI), which makes a missing server a failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use convert_ports::{DataStore, StoreData, StoreError};
use convert_store_redis::{RedisOptions, RedisStore};
use convert_store_tests::redis_server::{RedisServer as Server, free_port, redis_available};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// One server shared by the contract cases (keys are prefixed per case).
fn shared() -> Option<&'static String> {
    static URL: OnceLock<Option<String>> = OnceLock::new();
    URL.get_or_init(|| {
        if !redis_available() {
            return None;
        }
        // Leaked on purpose: it lives as long as the test process, and its watchdog stops it.
        let s = Box::leak(Box::new(Server::start("shared")));
        Some(s.url())
    })
    .as_ref()
}

/// A store on the shared server; `None` (after the SKIPPED message) when Redis is unavailable.
fn store() -> Option<RedisStore> {
    shared().map(|url| RedisStore::open(url).unwrap())
}

convert_store_tests::contract_tests!(optional store);

#[test]
fn two_clients_racing_on_a_goal_have_one_winner() {
    let Some(url) = shared() else { return };
    let a: Arc<dyn DataStore> = Arc::new(RedisStore::open(url).unwrap());
    let b: Arc<dyn DataStore> = Arc::new(RedisStore::open(url).unwrap());
    convert_store_tests::one_winner_across_instances(a, b);
}

#[test]
fn keys_use_the_ruby_sdk_layout() {
    let Some(url) = shared() else { return };
    let store = RedisStore::open(url).unwrap();
    let data = StoreData {
        goals: serde_json::json!({"purchase": true}).as_object().cloned(),
        ..StoreData::default()
    };
    store.set("10022898-10025986-layout", &data).unwrap();
    let mut raw = redis::Client::open(url.as_str())
        .unwrap()
        .get_connection()
        .unwrap();
    let value: String = redis::cmd("GET")
        .arg("convert:10022898-10025986-layout")
        .query(&mut raw)
        .unwrap();
    assert_eq!(value, r#"{"goals":{"purchase":true}}"#);
}

#[test]
fn ttl_is_applied_on_every_write() {
    let Some(url) = shared() else { return };
    let store = RedisStore::open_with(
        url,
        RedisOptions {
            ttl: Some(Duration::from_secs(60)),
            ..RedisOptions::default()
        },
    )
    .unwrap();
    store
        .update("ttl-1-2-v", &mut |d| {
            d.extra.insert("x".into(), serde_json::json!(1));
            true
        })
        .unwrap();
    let mut raw = redis::Client::open(url.as_str())
        .unwrap()
        .get_connection()
        .unwrap();
    let ttl: i64 = redis::cmd("PTTL")
        .arg("convert:ttl-1-2-v")
        .query(&mut raw)
        .unwrap();
    assert!(ttl > 50_000 && ttl <= 60_000, "{ttl}");
}

#[test]
fn corrupt_values_are_reported() {
    let Some(url) = shared() else { return };
    let mut raw = redis::Client::open(url.as_str())
        .unwrap()
        .get_connection()
        .unwrap();
    redis::cmd("SET")
        .arg("convert:corrupt-1-2-v")
        .arg("{not json")
        .query::<()>(&mut raw)
        .unwrap();
    let store = RedisStore::open(url).unwrap();
    assert!(matches!(
        store.get("corrupt-1-2-v"),
        Err(StoreError::Corrupt { .. })
    ));
    assert!(matches!(
        store.update("corrupt-1-2-v", &mut |_| true),
        Err(StoreError::Corrupt { .. })
    ));
}

#[test]
fn data_and_the_client_survive_a_redis_restart() {
    if !redis_available() {
        return;
    }
    let mut server = Server::start("restart");
    let store = RedisStore::open(&server.url()).unwrap();
    let mut first = false;
    store
        .update("1-2-visitor", &mut |d| {
            first = !d.goal_triggered("purchase");
            d.goals
                .get_or_insert_with(Default::default)
                .insert("purchase".into(), true.into());
            true
        })
        .unwrap();
    assert!(first);
    server.stop();
    // Redis is down: errors, quickly and without panicking.
    let t = Instant::now();
    assert!(matches!(
        store.get("1-2-visitor"),
        Err(StoreError::Unavailable(_))
    ));
    assert!(t.elapsed() < Duration::from_secs(5));
    server.launch();
    // The same store reconnects; the append-only file kept the data.
    let d = store.get("1-2-visitor").unwrap().unwrap();
    assert!(
        d.goal_triggered("purchase"),
        "dedup state survived the restart"
    );
}

#[test]
fn an_unreachable_server_is_unavailable() {
    let port = free_port();
    let store = RedisStore::open_with(
        &format!("redis://127.0.0.1:{port}/"),
        RedisOptions {
            connect_timeout: Duration::from_millis(200),
            ..RedisOptions::default()
        },
    )
    .unwrap();
    assert!(matches!(store.get("k"), Err(StoreError::Unavailable(_))));
    assert!(matches!(
        store.update("k", &mut |_| true),
        Err(StoreError::Unavailable(_))
    ));
    assert!(RedisStore::open("not a url").is_err());
    assert!(
        !format!(
            "{:?}",
            RedisStore::open("redis://:hunter2@127.0.0.1:1/").unwrap()
        )
        .contains("hunter2")
    );
}
