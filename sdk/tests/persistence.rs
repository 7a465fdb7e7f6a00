//! The SDK over persistent stores: conversion dedup across SDK instances (separate clients), a
//! store outage, and the config cache at boot. Needs the `redis` and `sqlite` features.
#![cfg(all(feature = "redis", feature = "sqlite"))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod support;

use convert_sdk::stores::{RedisOptions, RedisStore, SqliteOptions, SqliteStore};
use convert_sdk::{
    BucketingAttributes, ConversionAttributes, Core, DataStore, Decision, EventKind, HttpRequest,
    HttpResponse, Transport, TransportError,
};
use convert_store_tests::redis_server::{RedisServer, redis_available};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Duration;
use support::{Recorder, conversion_events};

const CONFIG: &str = r#"{"account_id":"10","project":{"id":"20"},
  "experiences":[{"id":"100","key":"exp","variations":[{"id":"101","key":"a","traffic_allocation":50},{"id":"102","key":"b","traffic_allocation":50}]}],
  "goals":[{"id":"7","key":"purchase"}]}"#;

fn sdk(store: Arc<dyn DataStore>, rec: &Recorder) -> Core {
    support::sdk_on_store(CONFIG, store, rec)
}

/// Two SDK instances, each with its own store client, convert the same goal for the same visitors
/// at the same moment: exactly one conversion event per visitor in total.
fn one_conversion_across_instances(make_store: impl Fn() -> Arc<dyn DataStore>) {
    let rec_a = Recorder::default();
    let rec_b = Recorder::default();
    let a = sdk(make_store(), &rec_a);
    let b = sdk(make_store(), &rec_b);
    let visitors = 30;
    for i in 0..visitors {
        let barrier = Arc::new(Barrier::new(2));
        let threads: Vec<_> = [a.clone(), b.clone()]
            .into_iter()
            .map(|core| {
                let barrier = Arc::clone(&barrier);
                std::thread::spawn(move || {
                    let ctx = core.create_context(format!("racer-{i}"), None);
                    barrier.wait();
                    ctx.track_conversion("purchase", &ConversionAttributes::new().revenue(5.0))
                        .unwrap()
                })
            })
            .collect();
        let fired = threads
            .into_iter()
            .filter(|_| true)
            .map(|t| t.join().unwrap().fired())
            .filter(|f| *f)
            .count();
        assert_eq!(fired, 1, "visitor {i}");
    }
    a.flush().ok();
    b.flush().ok();
    assert_eq!(
        conversion_events(&rec_a) + conversion_events(&rec_b),
        2 * visitors,
        "one conversion + one transaction event per visitor"
    );
}

#[test]
fn redis_dedup_across_sdk_instances() {
    if !redis_available() {
        return;
    }
    let server = RedisServer::start("sdk-dedup");
    let url = server.url();
    one_conversion_across_instances(|| Arc::new(RedisStore::open(&url).unwrap()));
}

#[test]
fn sqlite_dedup_across_sdk_instances() {
    let dir = std::env::temp_dir().join(format!("convert-sdk-sqlite-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let db = dir.join("v.db");
    one_conversion_across_instances(|| Arc::new(SqliteStore::open(&db).unwrap()));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn decisions_survive_a_redis_outage_and_state_stays_consistent() {
    if !redis_available() {
        return;
    }
    let mut server = RedisServer::start("sdk-outage");
    let store = RedisStore::open_with(
        &server.url(),
        RedisOptions::default()
            .connect_timeout(Duration::from_millis(200))
            .io_timeout(Duration::from_millis(500)),
    )
    .unwrap();
    let rec = Recorder::default();
    let core = sdk(Arc::new(store), &rec);
    let errors = Arc::new(AtomicUsize::new(0));
    let e = Arc::clone(&errors);
    core.on(EventKind::DataStoreError, move |_| {
        e.fetch_add(1, Ordering::SeqCst);
    });
    let attrs = BucketingAttributes::new();
    let ctx = core.create_context("outage-visitor", None);
    let before = ctx.run_experience("exp", &attrs);
    let Decision::Variation(v) = &before else {
        panic!("{before:?}")
    };

    server.stop();
    // Redis down: decisions still return (the hash gives the same variation), errors are counted.
    match ctx.run_experience("exp", &attrs) {
        Decision::Variation(w) => assert_eq!(w.variation_id, v.variation_id),
        other => panic!("{other:?}"),
    }
    assert!(core.metrics().store_errors >= 1);
    assert!(errors.load(Ordering::SeqCst) >= 1);

    server.launch();
    // After recovery the stored decision is read back (sticky, no new bucket value).
    match ctx.run_experience("exp", &attrs) {
        Decision::Variation(w) => {
            assert_eq!(w.variation_id, v.variation_id);
            assert_eq!(
                w.bucketing_allocation, None,
                "read from the recovered store"
            );
        }
        other => panic!("{other:?}"),
    }
}

/// A CDN stand-in that fails every request.
struct Down;
impl Transport for Down {
    fn send(&self, _r: &HttpRequest) -> Result<HttpResponse, TransportError> {
        Err(TransportError::Connect("unreachable".into()))
    }
}

/// A CDN stand-in that serves CONFIG.
struct Cdn;
impl Transport for Cdn {
    fn send(&self, r: &HttpRequest) -> Result<HttpResponse, TransportError> {
        Ok(HttpResponse::new(
            200,
            if r.method == convert_sdk::Method::Get {
                CONFIG.as_bytes().to_vec()
            } else {
                Vec::new()
            },
        ))
    }
}

#[test]
fn the_last_good_config_is_used_when_the_cdn_is_down_at_boot() {
    let dir = std::env::temp_dir().join(format!("convert-sdk-cache-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let db = dir.join("cache.db");
    {
        let online = Core::builder()
            .sdk_key("10/20")
            .data_store(SqliteStore::open(&db).unwrap())
            .transport(Cdn)
            .tracking(false)
            .build()
            .unwrap();
        assert!(online.is_ready());
    }
    let offline = Core::builder()
        .sdk_key("10/20")
        .data_store(SqliteStore::open(&db).unwrap())
        .transport(Down)
        .tracking(false)
        .refresh_interval(Duration::from_secs(3600))
        .build()
        .unwrap();
    assert!(offline.is_ready(), "started from the cached config");
    assert!(offline.config().experience_by_key("exp").is_some());
    assert!(offline.metrics().config_fetch_errors >= 1);
    // Without a cache the same boot is not ready.
    let empty = dir.join("empty.db");
    let cold = Core::builder()
        .sdk_key("10/20")
        .data_store(SqliteStore::open(&empty).unwrap())
        .transport(Down)
        .tracking(false)
        .build()
        .unwrap();
    assert!(!cold.is_ready());
    let _ = std::fs::remove_dir_all(&dir);
}

/// A cached config of another project than the SDK key names (left by a version that took
/// one from the CDN) is not installed when the CDN is down at boot.
#[test]
fn a_cached_config_of_another_project_is_not_used() {
    let dir = std::env::temp_dir().join(format!("convert-sdk-cache-other-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let db = dir.join("cache.db");
    let store = SqliteStore::open(&db).unwrap();
    let mut cached = convert_sdk::StoreData::default();
    let other: serde_json::Value = serde_json::from_str(CONFIG).unwrap();
    let mut other = other.as_object().cloned().unwrap();
    other.insert("account_id".into(), serde_json::json!("1"));
    cached
        .extra_mut()
        .insert("config".into(), serde_json::Value::Object(other));
    store
        .set("convert-config-cache:10/20:staging", &cached)
        .unwrap();
    let offline = Core::builder()
        .sdk_key("10/20")
        .data_store(store)
        .transport(Down)
        .tracking(false)
        .refresh_interval(Duration::from_secs(3600))
        .build()
        .unwrap();
    assert!(!offline.is_ready(), "started from another project's config");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn decisions_survive_a_locked_sqlite_database() {
    let dir = std::env::temp_dir().join(format!("convert-sdk-locked-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let db = dir.join("locked.db");
    let store = SqliteStore::open_with(
        &db,
        SqliteOptions::default().busy_timeout(Duration::from_millis(50)),
    )
    .unwrap();
    let rec = Recorder::default();
    let core = sdk(Arc::new(store), &rec);
    let attrs = BucketingAttributes::new();

    // Another process holds the write lock.
    let other = rusqlite::Connection::open(&db).unwrap();
    other.execute_batch("BEGIN IMMEDIATE").unwrap();
    let ctx = core.create_context("locked-visitor", None);
    let d = ctx.run_experience("exp", &attrs);
    let Decision::Variation(v) = &d else {
        panic!("{d:?}")
    };
    assert!(
        core.metrics().store_errors >= 1,
        "the failed write is counted"
    );
    let c = ctx
        .track_conversion("purchase", &ConversionAttributes::new())
        .unwrap();
    // Not lost, not sent blindly either: held until the store can confirm it.
    assert_eq!(c, convert_sdk::ConversionOutcome::Deferred);
    assert_eq!(core.metrics().held_conversions, 1);
    assert_eq!(
        ctx.track_conversion("purchase", &ConversionAttributes::new())
            .unwrap(),
        convert_sdk::ConversionOutcome::AlreadyConverted,
        "a repeat in the same process is suppressed at once"
    );
    other.execute_batch("COMMIT").unwrap();

    // After the lock is released, the next decision stores normally and later reads are sticky.
    let again = ctx.run_experience("exp", &attrs);
    let Decision::Variation(w) = &again else {
        panic!("{again:?}")
    };
    assert_eq!(w.variation_id, v.variation_id);
    let third = ctx.run_experience("exp", &attrs);
    let Decision::Variation(x) = &third else {
        panic!("{third:?}")
    };
    assert_eq!(x.bucketing_allocation, None, "stored after recovery");
    // The held conversion was confirmed by the store (its mark won) and sent, once.
    assert_eq!(core.metrics().held_conversions, 0);
    assert_eq!(core.metrics().held_conversions_sent, 1);
    core.flush().unwrap();
    assert_eq!(conversion_events(&rec), 1);
    assert!(ctx.get_visitor_data().goal_triggered("purchase"));
    let _ = std::fs::remove_dir_all(&dir);
}
