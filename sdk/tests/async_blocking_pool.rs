//! A sync store behind `stores::BlockingPool` serves the `Context::*_async` methods without
//! running its I/O on the runtime's thread: a real SQLite file, shared with the sync methods.
#![cfg(all(feature = "tokio", feature = "sqlite"))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod support;

use convert_sdk::stores::{BlockingPool, SqliteStore};
use convert_sdk::{
    BucketingAttributes, ConversionAttributes, ConversionOutcome, Core, DataStore, Decision,
    StoreData, StoreError,
};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::ThreadId;
use support::{DEMO_CONFIG, current_thread_runtime};

/// The SQLite store, noting the thread each operation ran on, and failing every operation
/// while `down` is set (`apply` and `create` take the trait's defaults, built on `update`).
#[derive(Debug)]
struct Noting {
    inner: SqliteStore,
    threads: Mutex<Vec<ThreadId>>,
    down: AtomicBool,
}

impl Noting {
    fn open(db: &std::path::Path) -> Arc<Noting> {
        Arc::new(Noting {
            inner: SqliteStore::open(db).unwrap(),
            threads: Mutex::new(Vec::new()),
            down: AtomicBool::new(false),
        })
    }

    fn note(&self) -> Result<(), StoreError> {
        self.threads
            .lock()
            .unwrap()
            .push(std::thread::current().id());
        if self.down.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable("switched off by the test".into()));
        }
        Ok(())
    }

    fn take(&self) -> Vec<ThreadId> {
        std::mem::take(&mut *self.threads.lock().unwrap())
    }
}

impl DataStore for Noting {
    fn get(&self, key: &str) -> Result<Option<StoreData>, StoreError> {
        self.note()?;
        self.inner.get(key)
    }
    fn set(&self, key: &str, value: &StoreData) -> Result<(), StoreError> {
        self.note()?;
        self.inner.set(key, value)
    }
    fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.note()?;
        self.inner.delete(key)
    }
    fn update(
        &self,
        key: &str,
        f: &mut dyn FnMut(&mut StoreData) -> bool,
    ) -> Result<bool, StoreError> {
        self.note()?;
        self.inner.update(key, f)
    }
    fn name(&self) -> &'static str {
        self.inner.name()
    }
    fn is_persistent(&self) -> bool {
        self.inner.is_persistent()
    }
}

fn checkout() -> BucketingAttributes {
    BucketingAttributes::new()
        .location_property("url", "https://shop.example/checkout")
        .visitor_property("plan", "premium")
}

#[test]
fn async_calls_use_a_sync_store_off_the_runtime_thread() {
    let dir = std::env::temp_dir().join(format!("convert-sdk-pool-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let db = dir.join("visitors.sqlite3");
    let store = Noting::open(&db);
    let core = Core::builder()
        .config_json(DEMO_CONFIG)
        .environment("production")
        .tracking(false)
        .shared_data_store(store.clone())
        .async_data_store(BlockingPool::new(store.clone()))
        .build()
        .unwrap();
    let runtime = current_thread_runtime();
    let ctx = core.create_context("pooled-visitor", None);
    let attrs = checkout();

    // A current-thread runtime runs its tasks on this thread: the store must not.
    let (decided, converted) = runtime.block_on(async {
        let d = ctx.run_experience_async("checkout-button", &attrs).await;
        let c = ctx
            .track_conversion_async("purchase", &ConversionAttributes::new())
            .await;
        (d, c)
    });
    let Decision::Variation(fresh) = decided else {
        panic!("{decided:?}")
    };
    assert!(fresh.bucketing_allocation.is_some(), "a fresh decision");
    assert!(converted.unwrap().fired());
    let here = std::thread::current().id();
    let threads = store.take();
    assert!(!threads.is_empty(), "the async calls used the store");
    assert!(
        threads.iter().all(|t| *t != here),
        "a store operation ran on the runtime's thread"
    );

    // The sync methods see what the async ones stored, in the same file: the sticky decision
    // (no bucket value) and the converted goal.
    let again = core.create_context("pooled-visitor", None);
    match again.run_experience("checkout-button", &attrs) {
        Decision::Variation(v) => {
            assert_eq!(v.variation_id, fresh.variation_id);
            assert_eq!(v.bucketing_allocation, None, "read back, not decided again");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        again.track_conversion("purchase", &ConversionAttributes::new()),
        Ok(ConversionOutcome::AlreadyConverted)
    );
    // And another process opening the file finds the record.
    let reopened = SqliteStore::open(&db).unwrap();
    let key = ctx.store_key().unwrap().to_string();
    assert!(reopened.get(&key).unwrap().is_some());
    drop(core);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A pooled store on one file, its SDK, and the file's directory (removed by the caller).
fn pooled(name: &str) -> (Arc<Noting>, Core, std::path::PathBuf) {
    pooled_with(
        name,
        convert_sdk::StoreOptions::default()
            .failure_threshold(100)
            .cooldown(std::time::Duration::ZERO),
    )
}

/// [`pooled`] with other store options.
fn pooled_with(
    name: &str,
    options: convert_sdk::StoreOptions,
) -> (Arc<Noting>, Core, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("convert-sdk-pool-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let store = Noting::open(&dir.join("visitors.sqlite3"));
    let core = Core::builder()
        .config_json(DEMO_CONFIG)
        .environment("production")
        .tracking(false)
        .store_options(options)
        .shared_data_store(store.clone())
        .async_data_store(BlockingPool::new(store.clone()))
        .build()
        .unwrap();
    (store, core, dir)
}

/// A conversion held while the async store was down is settled by `close_async` once the store
/// answers again (`close` alone gives held conversions up).
#[test]
fn close_async_settles_conversions_the_async_store_held() {
    let (store, core, dir) = pooled("held");
    let runtime = current_thread_runtime();
    runtime.block_on(async {
        store.down.store(true, Ordering::SeqCst);
        let ctx = core.create_context("held-visitor", None);
        let held = ctx
            .track_conversion_async("purchase", &ConversionAttributes::new())
            .await;
        assert_eq!(held, Ok(ConversionOutcome::Deferred));
        store.down.store(false, Ordering::SeqCst);
        core.close_async(std::time::Duration::from_secs(5)).await;
    });
    let m = core.metrics();
    assert_eq!(
        (
            m.held_conversions,
            m.held_conversions_sent,
            m.held_conversions_unconfirmed
        ),
        (0, 1, 0),
        "{m:?}"
    );
    // The goal is marked in the file: a later conversion is a duplicate.
    let again = core.create_context("held-visitor", None);
    assert_eq!(
        again.track_conversion("purchase", &ConversionAttributes::new()),
        Ok(ConversionOutcome::AlreadyConverted)
    );
    drop(core);
    let _ = std::fs::remove_dir_all(&dir);
}

/// With the async store's circuit open and more held conversions than one reconciliation batch,
/// `close_async` probes the store once the cooldown is over and settles them all. Before: it
/// skipped them while the circuit was open (only a decision could probe), then gave them up.
#[test]
fn close_async_probes_an_open_circuit_and_settles_every_batch() {
    let (store, core, dir) = pooled_with(
        "held-open",
        convert_sdk::StoreOptions::default()
            .failure_threshold(1)
            .cooldown(std::time::Duration::from_millis(50)),
    );
    let runtime = current_thread_runtime();
    runtime.block_on(async {
        store.down.store(true, Ordering::SeqCst);
        for i in 0..100 {
            let ctx = core.create_context(format!("held-{i}"), None);
            let held = ctx
                .track_conversion_async("purchase", &ConversionAttributes::new())
                .await;
            assert_eq!(held, Ok(ConversionOutcome::Deferred));
        }
        assert!(core.metrics().store_circuit_open || core.metrics().store_circuit_opened > 0);
        store.down.store(false, Ordering::SeqCst);
        tokio::time::sleep(std::time::Duration::from_millis(80)).await;
        core.close_async(std::time::Duration::from_secs(5)).await;
    });
    let m = core.metrics();
    assert_eq!(
        (m.held_conversions_sent, m.held_conversions_unconfirmed),
        (100, 0),
        "{m:?}"
    );
    drop(core);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A context without a visitor id makes no store call on the async path either.
#[test]
fn async_calls_without_a_visitor_id_touch_no_store() {
    let (store, core, dir) = pooled("anon");
    let runtime = current_thread_runtime();
    let anon = core.create_context("", None);
    let attrs = checkout();
    runtime.block_on(async {
        assert!(
            !anon
                .run_experience_async("checkout-button", &attrs)
                .await
                .is_variation()
        );
        assert!(anon.run_experiences_async(&attrs).await.is_empty());
        assert_eq!(
            anon.track_conversion_async("purchase", &ConversionAttributes::new())
                .await,
            Ok(ConversionOutcome::NoVisitorId)
        );
        assert_eq!(
            anon.run_custom_segments_async(&["vip"], serde_json::json!({"plan": "gold"}))
                .await,
            Ok(None)
        );
    });
    assert!(
        store.take().is_empty(),
        "a store call for an empty visitor id"
    );
    // The same calls with an id do use the store.
    let named = core.create_context("named", None);
    runtime.block_on(async {
        let _ = named.run_experience_async("checkout-button", &attrs).await;
    });
    assert!(!store.take().is_empty());
    drop(core);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Report segments given at `create_context` on an SDK with an async store reach that store
/// and the tracking payload, and creating the context does no sync-store I/O (it ran on the
/// runtime's thread and, with a network store, blocked it for the store's deadline). The
/// payload's `enrichData` follows the async store too: `false`, the state is persistent.
#[test]
fn segments_given_at_create_context_go_to_the_async_store() {
    let dir = std::env::temp_dir().join(format!("convert-sdk-seeded-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // The memory store (not persistent) for the sync methods, counting its calls.
    let sync_store = support::InstrumentedStore::new(true);
    let async_file = Arc::new(SqliteStore::open(dir.join("async.sqlite3")).unwrap());
    let recorder = support::Recorder::default();
    let core = Core::builder()
        .config_json(DEMO_CONFIG)
        .environment("production")
        .tracking(false)
        .transport(recorder.clone())
        .shared_data_store(sync_store.clone() as Arc<dyn DataStore>)
        .async_data_store(BlockingPool::new(Arc::clone(&async_file)))
        .build()
        .unwrap();
    let ctx = core.create_context("seeded-visitor", serde_json::json!({"country": "US"}));
    assert_eq!(
        sync_store.take_counts(),
        (0, 0, 0),
        "create_context used the sync store"
    );

    let runtime = current_thread_runtime();
    let (decided, converted) = runtime.block_on(async {
        let d = ctx
            .run_experience_async("checkout-button", &checkout())
            .await;
        let c = ctx
            .track_conversion_async("purchase", &ConversionAttributes::new())
            .await;
        (d, c)
    });
    assert!(decided.is_variation(), "{decided:?}");
    assert!(converted.unwrap().fired());
    assert_eq!(
        sync_store.take_counts(),
        (0, 0, 0),
        "an async call used the sync store"
    );

    let key = ctx.store_key().unwrap().to_string();
    let record = async_file.get(&key).unwrap().unwrap();
    assert_eq!(
        record.segments().and_then(|s| s.get("country")),
        Some(&serde_json::json!("US")),
        "{record:?}"
    );
    core.flush().unwrap();
    let bodies: Vec<serde_json::Value> = recorder
        .requests()
        .iter()
        .map(|r| serde_json::from_str(r.body.as_deref().unwrap()).unwrap())
        .collect();
    assert!(!bodies.is_empty());
    for body in &bodies {
        assert_eq!(body["enrichData"], false, "{body}");
        for visitor in body["visitors"].as_array().unwrap() {
            assert_eq!(visitor["segments"]["country"], "US", "{visitor}");
        }
    }
    drop(core);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Preview mode stores nothing, the segments given at `create_context` included: they are
/// stored by the first call after the preview ends.
#[test]
fn seeded_segments_wait_for_the_preview_to_end() {
    let (core, file, dir) = us_core("preview");
    let mut ctx = core.create_context("qa-visitor", serde_json::json!({"country": "US"}));
    ctx.set_preview("20", "21").unwrap();
    let key = ctx.store_key().unwrap().to_string();
    let runtime = current_thread_runtime();
    let plain = BucketingAttributes::new();
    runtime.block_on(async {
        let _ = ctx.run_experience_async("us-only", &plain).await;
        let _ = ctx.run_features_async(&plain).await;
    });
    assert_eq!(file.get(&key).unwrap(), None, "stored during a preview");
    ctx.clear_preview();
    runtime.block_on(async {
        let _ = ctx.run_experience_async("us-only", &plain).await;
    });
    let record = file.get(&key).unwrap().unwrap();
    assert!(
        record
            .segments()
            .is_some_and(|s| s.get("country").is_some()),
        "{record:?}"
    );
    drop(core);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Two experiences, the first for visitors whose `country` is US.
const US_CONFIG: &str = r#"{"account_id": "1", "project": {"id": "2"},
  "audiences": [{"id": "5", "key": "us", "rules": {"OR": [{"AND": [{"OR_WHEN": [
    {"rule_type": "generic_text_key_value", "key": "country",
     "matching": {"match_type": "equals", "negated": false}, "value": "US"}]}]}]}}],
  "experiences": [
    {"id": "10", "key": "us-only", "audiences": ["5"],
     "variations": [{"id": "11", "key": "a", "traffic_allocation": 100}]},
    {"id": "20", "key": "other",
     "variations": [{"id": "21", "key": "b", "traffic_allocation": 100}]}]}"#;

/// An SDK on `US_CONFIG` whose async store is a SQLite file in a new directory.
fn us_core(tag: &str) -> (Core, Arc<SqliteStore>, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("convert-sdk-seed-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = Arc::new(SqliteStore::open(dir.join("async.sqlite3")).unwrap());
    let core = Core::builder()
        .config_json(US_CONFIG)
        .tracking(false)
        .async_data_store(BlockingPool::new(Arc::clone(&file)))
        .build()
        .unwrap();
    (core, file, dir)
}

/// The segments given at `create_context` are stored once, by the first call, as
/// `create_context` stores them on other SDKs: a later write wins, and a segment holding an
/// object is not appended again by every call. (Merged by every call, they reverted a newer
/// `country` and grew `devices` by one object per decision.)
#[test]
fn seeded_segments_are_stored_once_and_later_writes_win() {
    let (core, file, dir) = us_core("once");
    let runtime = current_thread_runtime();
    let moved = core.create_context("moved", serde_json::json!({"country": "US"}));
    let mobile = core.create_context(
        "mobile",
        serde_json::json!({"devices": [{"type": "mobile"}]}),
    );
    let update = BucketingAttributes::new()
        .visitor_property("country", "DE")
        .update_visitor_properties(true);
    runtime.block_on(async {
        // The first decision stores the segments given at creation, then its own `country`.
        let _ = moved.run_experience_async("other", &update).await;
        for ctx in [&moved, &mobile, &mobile, &mobile] {
            let _ = ctx
                .run_experience_async("other", &BucketingAttributes::new())
                .await;
        }
    });
    let segments = |ctx: &convert_sdk::Context| {
        let record = file.get(ctx.store_key().unwrap()).unwrap().unwrap();
        record.segments().cloned().unwrap_or_default()
    };
    assert_eq!(segments(&moved)["country"], "DE");
    let devices = segments(&mobile)["devices"].clone();
    assert_eq!(devices.as_array().map(Vec::len), Some(1), "{devices}");
    drop(core);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Until they are stored, the segments given at `create_context` count in `explain_experience`
/// and in the decisions of a preview (which stores nothing), as they would have on an SDK
/// without an async store (both said "audience did not match").
#[test]
fn seeded_segments_count_before_they_are_stored() {
    let (core, file, dir) = us_core("explain");
    let mut ctx = core.create_context("us-visitor", serde_json::json!({"country": "US"}));
    let key = ctx.store_key().unwrap().to_string();
    let (explained, _) = ctx.explain_experience("us-only", &BucketingAttributes::new());
    assert!(explained.is_variation(), "{explained:?}");
    ctx.set_preview("20", "21").unwrap();
    let runtime = current_thread_runtime();
    let decided =
        runtime.block_on(ctx.run_experience_async("us-only", &BucketingAttributes::new()));
    assert!(decided.is_variation(), "{decided:?}");
    assert_eq!(file.get(&key).unwrap(), None, "stored during a preview");
    drop(core);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Segment and property writes have async forms that write the async store (the sync
/// `set_default_segments` and `update_visitor_properties` write the sync store, which an async
/// SDK's async calls do not read). The first of them stores the segments given at
/// `create_context` too, before its own, so its own win; `get_visitor_data_async` reads the
/// record back, and shows segments given at creation before any call stored them.
#[test]
fn segment_and_property_writes_have_async_forms() {
    let (core, file, dir) = us_core("writes");
    let runtime = current_thread_runtime();
    let ctx = core.create_context(
        "writer",
        serde_json::json!({"country": "US", "source": "ad"}),
    );
    let key = ctx.store_key().unwrap().to_string();
    let seeded_view = runtime.block_on(ctx.get_visitor_data_async());
    assert_eq!(
        seeded_view.segments().map(|s| s["country"].clone()),
        Some(serde_json::json!("US")),
        "{seeded_view:?}"
    );
    assert_eq!(file.get(&key).unwrap(), None, "a read stored the record");

    runtime.block_on(async {
        ctx.set_default_segments_async(
            serde_json::json!({"country": "DE", "browser": "FF", "plan": "x"}),
        )
        .await;
        ctx.update_visitor_properties_async(serde_json::json!({"plan": "pro"}))
            .await;
    });
    let stored = file.get(&key).unwrap().unwrap();
    let segments = stored.segments().cloned().unwrap_or_default();
    assert_eq!(segments["country"], "DE", "{stored:?}");
    assert_eq!(segments["browser"], "FF", "{stored:?}");
    assert_eq!(segments["source"], "ad", "{stored:?}");
    // `plan` is not a report segment: only the property write stores it.
    assert_eq!(segments["plan"], "pro", "{stored:?}");
    assert_eq!(runtime.block_on(ctx.get_visitor_data_async()), stored);
    // The sync store was not written.
    assert_eq!(ctx.get_visitor_data(), StoreData::default());

    // In preview mode nothing is stored.
    let mut qa = core.create_context("qa", serde_json::json!({}));
    qa.set_preview("20", "21").unwrap();
    runtime.block_on(async {
        qa.set_default_segments_async(serde_json::json!({"country": "FR"}))
            .await;
        qa.update_visitor_properties_async(serde_json::json!({"plan": "pro"}))
            .await;
    });
    assert_eq!(file.get(qa.store_key().unwrap()).unwrap(), None);
    drop(core);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Without an async store, the async forms are the sync methods.
#[test]
fn async_segment_writes_without_an_async_store_use_the_sync_store() {
    let core = Core::builder()
        .config_json(US_CONFIG)
        .tracking(false)
        .build()
        .unwrap();
    let ctx = core.create_context("plain", serde_json::json!({}));
    let runtime = current_thread_runtime();
    runtime.block_on(async {
        ctx.set_default_segments_async(serde_json::json!({"country": "DE"}))
            .await;
        ctx.update_visitor_properties_async(serde_json::json!({"plan": "pro"}))
            .await;
    });
    let record = ctx.get_visitor_data();
    assert_eq!(
        record.segments().map(|s| s["country"].clone()),
        Some(serde_json::json!("DE"))
    );
    assert_eq!(
        record.segments().map(|s| s["plan"].clone()),
        Some(serde_json::json!("pro"))
    );
    assert_eq!(runtime.block_on(ctx.get_visitor_data_async()), record);
}
