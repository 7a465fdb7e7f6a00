//! A caller that stops awaiting an `_async` call (a timeout, `select!`, a client that went away)
//! after the store ran its command, but before the reply came back: what the store holds and
//! what is sent must still agree. The async store here runs each command at once on a memory
//! store and holds the reply to a write back for a while, as a slow network would.
#![cfg(feature = "tokio")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod support;

use convert_ports::{Applied, StoreOp};
use convert_sdk::stores::MemoryStore;
use convert_sdk::{
    AsyncDataStore, BucketingAttributes, ConversionAttributes, ConversionOutcome, Core, DataStore,
    StoreData, StoreError, StoreFuture, StoreOptions,
};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use support::{DEMO_CONFIG, Recorder, conversion_events, current_thread_runtime};

/// Runs every command on `inner` at once, and replies to a write (`apply`, `create`) after
/// `delay_ms`; fails every command while `down` is set.
#[derive(Default)]
struct SlowReplies {
    inner: MemoryStore,
    delay_ms: AtomicU64,
    down: AtomicBool,
}

impl SlowReplies {
    async fn reply<T>(
        &self,
        write: bool,
        run: impl FnOnce() -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable("down".into()));
        }
        let out = run();
        let delay = self.delay_ms.load(Ordering::SeqCst);
        if write && delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        out
    }
}

impl AsyncDataStore for SlowReplies {
    fn get<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<StoreData>> {
        Box::pin(self.reply(false, move || self.inner.get(key)))
    }
    fn apply<'a>(
        &'a self,
        key: &'a str,
        seen: Option<&'a StoreData>,
        ops: &'a [StoreOp],
    ) -> StoreFuture<'a, Applied> {
        Box::pin(self.reply(true, move || self.inner.apply(key, seen, ops)))
    }
    fn create<'a>(
        &'a self,
        key: &'a str,
        record: &'a StoreData,
    ) -> StoreFuture<'a, Option<StoreData>> {
        Box::pin(self.reply(true, move || self.inner.create(key, record)))
    }
    fn delete<'a>(&'a self, key: &'a str) -> StoreFuture<'a, ()> {
        Box::pin(self.reply(false, move || self.inner.delete(key)))
    }
}

/// An SDK on the demo config whose async store is `store` (a call deadline of 2 s, far longer
/// than the replies take), tracking delivered only by `flush`, to `recorder`.
fn sdk(store: &Arc<SlowReplies>, recorder: &Recorder) -> Core {
    sdk_with_deadline(store, recorder, Duration::from_secs(2))
}

fn sdk_with_deadline(store: &Arc<SlowReplies>, recorder: &Recorder, deadline: Duration) -> Core {
    Core::builder()
        .config_json(DEMO_CONFIG)
        .environment("production")
        .tracking(false)
        .transport(recorder.clone())
        .store_options(StoreOptions::default().call_deadline(deadline))
        .async_data_store(Arc::clone(store))
        .build()
        .unwrap()
}

fn checkout() -> BucketingAttributes {
    BucketingAttributes::new()
        .location_property("url", "https://shop.example/checkout")
        .visitor_property("plan", "premium")
}

/// The events of `event_type` sent for `visitor`.
fn events_of(recorder: &Recorder, visitor: &str, event_type: &str) -> usize {
    recorder
        .requests()
        .iter()
        .map(|r| serde_json::from_str::<serde_json::Value>(r.body.as_deref().unwrap()).unwrap())
        .flat_map(|body| body["visitors"].as_array().cloned().unwrap_or_default())
        .filter(|v| v["visitorId"] == visitor)
        .flat_map(|v| v["events"].as_array().cloned().unwrap_or_default())
        .filter(|e| e["eventType"] == event_type)
        .count()
}

/// Gives up on `call` after 30 ms while `store` holds a write's reply back for 300 ms, lets the
/// runtime run for 600 ms, then has the store reply at once again.
fn abandon<F: std::future::Future>(
    store: &SlowReplies,
    runtime: &tokio::runtime::Runtime,
    call: F,
) {
    store.delay_ms.store(300, Ordering::SeqCst);
    runtime.block_on(async {
        let given_up = tokio::time::timeout(Duration::from_millis(30), call).await;
        assert!(
            given_up.is_err(),
            "the call finished before the caller gave up"
        );
        tokio::time::sleep(Duration::from_millis(600)).await;
    });
    store.delay_ms.store(0, Ordering::SeqCst);
}

/// A new visitor's decision whose caller gave up after the store wrote it is still reported:
/// its bucketing event is sent once. (It was never sent: the record said the visitor was
/// bucketed, later decisions were sticky and sent nothing, and conversions went out with
/// bucketing data for an experience the visitor was never reported in.)
#[test]
fn a_decision_abandoned_after_its_write_is_still_reported() {
    let store = Arc::new(SlowReplies::default());
    let recorder = Recorder::default();
    let core = sdk(&store, &recorder);
    let ctx = core.create_context("abandoned", None);
    let runtime = current_thread_runtime();
    abandon(
        &store,
        &runtime,
        ctx.run_experience_async("checkout-button", &checkout()),
    );
    let stored = store.inner.get(ctx.store_key().unwrap()).unwrap().unwrap();
    assert!(stored.bucketing().next().is_some(), "{stored:?}");
    let again = runtime.block_on(ctx.run_experience_async("checkout-button", &checkout()));
    assert!(again.is_variation(), "{again:?}");
    core.flush().unwrap();
    assert_eq!(events_of(&recorder, "abandoned", "bucketing"), 1);
}

/// A segment write whose caller gave up after the store applied it is not undone by the
/// segments given at `create_context` (they were still marked "not stored", so the next call
/// merged `US` back over `DE`).
#[test]
fn an_abandoned_segment_write_is_not_undone_by_the_creation_segments() {
    let store = Arc::new(SlowReplies::default());
    let core = sdk(&store, &Recorder::default());
    let ctx = core.create_context("moved", serde_json::json!({"country": "US"}));
    let runtime = current_thread_runtime();
    abandon(
        &store,
        &runtime,
        ctx.set_default_segments_async(serde_json::json!({"country": "DE"})),
    );
    let _ = runtime.block_on(ctx.run_experience_async("checkout-button", &checkout()));
    let stored = store.inner.get(ctx.store_key().unwrap()).unwrap().unwrap();
    assert_eq!(stored.segments().unwrap()["country"], "DE", "{stored:?}");
}

/// A held conversion whose reconciliation was abandoned after its goal was marked is still
/// sent, once. (The batch went back to the held list with the goal marked; the next
/// reconciliation found it marked, counted it as converted elsewhere, and sent nothing.)
#[test]
fn an_abandoned_reconciliation_still_sends_the_conversion() {
    let store = Arc::new(SlowReplies::default());
    let recorder = Recorder::default();
    let core = sdk(&store, &recorder);
    let ctx = core.create_context("held", None);
    let runtime = current_thread_runtime();
    store.down.store(true, Ordering::SeqCst);
    let outcome = runtime
        .block_on(ctx.track_conversion_async("purchase", &ConversionAttributes::new()))
        .unwrap();
    assert_eq!(outcome, ConversionOutcome::Deferred);
    store.down.store(false, Ordering::SeqCst);
    abandon(&store, &runtime, core.reconcile_store_async());
    assert_eq!(runtime.block_on(core.reconcile_store_async()), 0);
    core.flush().unwrap();
    assert!(conversion_events(&recorder) >= 1, "the conversion was lost");
    assert_eq!(events_of(&recorder, "held", "conversion"), 1);
    assert_eq!(core.metrics().held_conversions_already_marked, 0);
}

/// The segments given at `create_context` are kept for a later call when the first one finds
/// the store down (they were marked stored anyway, and never reached it).
#[test]
fn creation_segments_outlive_a_first_call_during_an_outage() {
    let store = Arc::new(SlowReplies::default());
    let core = sdk(&store, &Recorder::default());
    let ctx = core.create_context("early", serde_json::json!({"country": "US"}));
    let runtime = current_thread_runtime();
    store.down.store(true, Ordering::SeqCst);
    let first = runtime.block_on(ctx.run_experience_async("checkout-button", &checkout()));
    assert!(first.is_variation(), "{first:?}");
    store.down.store(false, Ordering::SeqCst);
    let _ = runtime.block_on(ctx.run_experience_async("checkout-button", &checkout()));
    let stored = store.inner.get(ctx.store_key().unwrap()).unwrap().unwrap();
    assert_eq!(
        stored.segments().map(|s| s["country"].clone()),
        Some(serde_json::json!("US")),
        "{stored:?}"
    );
}

/// A segment write that reached the store but whose reply came after the call deadline is not
/// undone either: the segments given at creation, unconfirmed, are later stored only where the
/// record lacks them (merged in full again, `US` went back over `DE`); those it lacks are still
/// stored.
#[test]
fn a_write_answered_after_the_deadline_is_not_undone_by_the_creation_segments() {
    let store = Arc::new(SlowReplies::default());
    let core = sdk_with_deadline(&store, &Recorder::default(), Duration::from_millis(50));
    let ctx = core.create_context("late", serde_json::json!({"country": "US"}));
    let key = ctx.store_key().unwrap().to_string();
    let runtime = current_thread_runtime();
    store.delay_ms.store(200, Ordering::SeqCst);
    runtime.block_on(ctx.set_default_segments_async(serde_json::json!({"country": "DE"})));
    store.delay_ms.store(0, Ordering::SeqCst);
    // The write landed (country DE, with US merged first) though the call gave up waiting.
    let landed = store.inner.get(&key).unwrap().unwrap();
    assert_eq!(landed.segments().unwrap()["country"], "DE", "{landed:?}");
    // And the record as the next call sees it says DE too.
    let seen = runtime.block_on(ctx.get_visitor_data_async());
    assert_eq!(seen.segments().unwrap()["country"], "DE", "{seen:?}");
    let _ = runtime.block_on(ctx.run_experience_async("checkout-button", &checkout()));
    let stored = store.inner.get(&key).unwrap().unwrap();
    assert_eq!(stored.segments().unwrap()["country"], "DE", "{stored:?}");

    // Unconfirmed and never stored: the next call that reads the record stores them.
    let other = core.create_context("late-2", serde_json::json!({"country": "US"}));
    store.down.store(true, Ordering::SeqCst);
    runtime.block_on(other.set_default_segments_async(serde_json::json!({"browser": "FF"})));
    store.down.store(false, Ordering::SeqCst);
    let _ = runtime.block_on(other.run_experience_async("checkout-button", &checkout()));
    let stored = store
        .inner
        .get(other.store_key().unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(stored.segments().unwrap()["country"], "US", "{stored:?}");
}

/// `flush_async` and `close_async` right after a caller gave up wait for the abandoned work: the
/// decision's bucketing event is queued before they deliver (it was queued after, and was not
/// sent by them).
#[test]
fn flush_async_and_close_async_wait_for_abandoned_work() {
    for close in [false, true] {
        let store = Arc::new(SlowReplies::default());
        let recorder = Recorder::default();
        let core = Core::builder()
            .config_json(DEMO_CONFIG)
            .environment("production")
            .transport(recorder.clone())
            .events(100, Duration::from_secs(3600), 1000)
            .async_data_store(Arc::clone(&store))
            .build()
            .unwrap();
        let ctx = core.create_context("closing", None);
        store.delay_ms.store(300, Ordering::SeqCst);
        let runtime = current_thread_runtime();
        runtime.block_on(async {
            let given_up = tokio::time::timeout(
                Duration::from_millis(30),
                ctx.run_experience_async("checkout-button", &checkout()),
            )
            .await;
            assert!(given_up.is_err());
            if close {
                core.close_async(Duration::from_secs(5)).await;
            } else {
                core.flush_async(Duration::from_secs(5)).await.unwrap();
            }
        });
        assert_eq!(
            events_of(&recorder, "closing", "bucketing"),
            1,
            "close: {close}"
        );
    }
}
