//! The store circuit breaker and held conversions, on a store that can be switched off: the
//! circuit opens after consecutive failures and then skips the store without calling it, one
//! call probes it after the cooldown, every change is an event, and a conversion made while the
//! store was off is sent once the store confirms it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod support;

use convert_sdk::{
    BucketingAttributes, ConversionAttributes, ConversionOutcome, Core, EventKind, SdkEvent,
    StoreOptions,
};
use serde_json::json;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::{InstrumentedStore, Recorder};

fn sdk(store: Arc<InstrumentedStore>, rec: &Recorder) -> Core {
    sdk_cooling(store, rec, Duration::from_millis(50))
}

/// [`sdk`] with another circuit cooldown.
fn sdk_cooling(store: Arc<InstrumentedStore>, rec: &Recorder, cooldown: Duration) -> Core {
    Core::builder()
        .config(json!({
            "account_id": "1", "project": {"id": "2"},
            "experiences": [{"id": "100", "key": "exp", "variations": [
                {"id": "101", "key": "a", "traffic_allocation": 50},
                {"id": "102", "key": "b", "traffic_allocation": 50}]}],
            "goals": [{"id": "9", "key": "buy"}]
        }))
        .shared_data_store(store)
        .store_options(
            StoreOptions::default()
                .failure_threshold(2)
                .cooldown(cooldown),
        )
        .transport(rec.clone())
        .tracking(false)
        .build()
        .unwrap()
}

fn conversions(rec: &Recorder) -> usize {
    rec.requests()
        .iter()
        .map(|r| r.body.as_deref().unwrap().matches("\"conversion\"").count())
        .sum()
}

#[test]
fn the_circuit_opens_skips_probes_and_closes_and_held_conversions_are_sent_once() {
    let store = InstrumentedStore::new(false);
    let rec = Recorder::default();
    let core = sdk(Arc::clone(&store), &rec);
    let states = Arc::new(Mutex::new(Vec::new()));
    let s = Arc::clone(&states);
    core.on(EventKind::DataStoreCircuit, move |e| {
        if let SdkEvent::DataStoreCircuit { state, .. } = e {
            s.lock().unwrap().push(state.clone());
        }
    });
    let attrs = BucketingAttributes::new();
    let ctx = core.create_context("v1", None);

    store.failing.store(true, Ordering::SeqCst);
    ctx.run_experience("exp", &attrs);
    ctx.run_experience("exp", &attrs);
    assert_eq!(*states.lock().unwrap(), ["open"]);
    assert!(core.metrics().store_circuit_open);
    assert_eq!(core.metrics().store_circuit_opened, 1);

    // Open: the store is not called at all.
    store.take_counts();
    for _ in 0..5 {
        ctx.run_experience("exp", &attrs);
    }
    assert_eq!(
        ctx.track_conversion("buy", &ConversionAttributes::new())
            .unwrap(),
        ConversionOutcome::Deferred
    );
    assert_eq!(
        ctx.track_conversion("buy", &ConversionAttributes::new())
            .unwrap(),
        ConversionOutcome::AlreadyConverted,
        "a repeat while held is suppressed in the process"
    );
    assert_eq!(store.take_counts(), (0, 0, 0));
    assert!(core.metrics().store_skipped >= 6);
    assert_eq!(core.metrics().held_conversions, 1);

    // Cooldown over, the store back: one call probes, the circuit closes, the conversion is
    // confirmed and sent.
    store.failing.store(false, Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(80));
    ctx.run_experience("exp", &attrs);
    assert_eq!(*states.lock().unwrap(), ["open", "half-open", "closed"]);
    let m = core.metrics();
    assert!(!m.store_circuit_open);
    assert_eq!((m.held_conversions, m.held_conversions_sent), (0, 1));
    core.flush().unwrap();
    assert_eq!(conversions(&rec), 1);
    assert_eq!(
        ctx.track_conversion("buy", &ConversionAttributes::new())
            .unwrap(),
        ConversionOutcome::AlreadyConverted
    );
    core.flush().unwrap();
    assert_eq!(conversions(&rec), 1);
}

#[test]
fn a_failed_probe_reopens_and_held_conversions_left_at_close_are_counted() {
    let (_store, rec, core) = holding(3, Duration::from_millis(50));
    std::thread::sleep(Duration::from_millis(80));
    // The probe fails: open again, counted once as an opening.
    core.create_context("v9", None)
        .run_experience("exp", &BucketingAttributes::new());
    let m = core.metrics();
    assert!(m.store_circuit_open);
    assert_eq!(m.store_circuit_opened, 1);
    assert_eq!(m.held_conversions, 3);
    core.close(Duration::from_millis(100));
    let m = core.metrics();
    assert_eq!((m.held_conversions, m.held_conversions_unconfirmed), (0, 3));
    assert_eq!(conversions(&rec), 0, "never sent without the store's mark");
}

/// With no decisions or conversions after the store comes back, `reconcile_store` and `close`
/// are what settle the held conversions: after the cooldown they probe the store themselves.
/// Before: they skipped the held list while the circuit was open, and only a decision or a
/// conversion could probe, so `reconcile_store` sent nothing and `close` gave them all up
/// (found by the resource trial: 10,000 held conversions lost at close with Redis back).
#[test]
fn reconcile_store_and_close_probe_the_store_and_send_held_conversions() {
    for by_close in [false, true] {
        // More than one reconciliation batch (64 by default), and a cooldown long enough that
        // no scheduling stall ends it before the check below.
        let (store, rec, core) = held_hundred(Duration::from_millis(400));
        assert!(core.metrics().store_circuit_open);
        // Still cooling down: the store is not probed.
        assert_eq!(core.reconcile_store(), 100);
        assert_eq!(store.take_counts(), (0, 0, 0));
        std::thread::sleep(Duration::from_millis(450));
        if by_close {
            core.close(Duration::from_secs(5));
        } else {
            // One batch, as documented; `flush` settles the rest.
            assert_eq!(core.reconcile_store(), 36);
            core.flush().unwrap();
        }
        let m = core.metrics();
        assert!(
            !m.store_circuit_open,
            "closed by the probe (close: {by_close})"
        );
        assert_eq!(
            (m.held_conversions_sent, m.held_conversions_unconfirmed),
            (100, 0),
            "close: {by_close}"
        );
        if !by_close {
            assert_eq!(conversions(&rec), 100);
        }
    }
}

/// An SDK holding `n` conversions of `n` visitors, deferred while its store fails (which opens
/// the circuit); the store still fails.
fn holding(n: usize, cooldown: Duration) -> (Arc<InstrumentedStore>, Recorder, Core) {
    let store = InstrumentedStore::new(false);
    let rec = Recorder::default();
    let core = sdk_cooling(Arc::clone(&store), &rec, cooldown);
    store.failing.store(true, Ordering::SeqCst);
    for i in 0..n {
        let ctx = core.create_context(format!("v{i}"), None);
        assert_eq!(
            ctx.track_conversion("buy", &ConversionAttributes::new())
                .unwrap(),
            ConversionOutcome::Deferred
        );
    }
    (store, rec, core)
}

/// An SDK holding 100 conversions ([`holding`]), with the store switched on again and its call
/// counts reset.
fn held_hundred(cooldown: Duration) -> (Arc<InstrumentedStore>, Recorder, Core) {
    let (store, rec, core) = holding(100, cooldown);
    store.failing.store(false, Ordering::SeqCst);
    store.take_counts();
    (store, rec, core)
}

/// The held conversions sent and given up as unconfirmed so far.
fn sent_and_unconfirmed(core: &Core) -> (u64, u64) {
    let m = core.metrics();
    (m.held_conversions_sent, m.held_conversions_unconfirmed)
}

/// A close with no time to settle marks no goal it could not send. Before: it reconciled a whole
/// batch whatever its timeout (a `close(1 ms)` took 50 ms on Redis, and in a fleet the goals
/// it marked but could not deliver were lost to the other processes; found by the fleet
/// trial).
#[test]
fn a_close_without_time_to_settle_marks_nothing() {
    let (store, _rec, core) = held_hundred(Duration::from_millis(50));
    std::thread::sleep(Duration::from_millis(80));
    core.close(Duration::from_millis(1));
    assert_eq!(store.take_counts(), (0, 0, 0), "the store was called");
    assert_eq!(sent_and_unconfirmed(&core), (0, 100));
}

/// `close` waits out the circuit's cooldown (within half its timeout) and settles the held
/// conversions; `flush` does not wait (it delivers tracking). Before: `close` gave them all up
/// while the circuit was still cooling after the store came back (fleet trial: 3,000 of 3,000
/// unconfirmed 0.2 s after a restart).
#[test]
fn close_waits_out_the_cooldown_and_flush_does_not() {
    let (_store, _rec, core) = held_hundred(Duration::from_millis(300));
    core.flush().unwrap();
    assert_eq!(
        core.metrics().held_conversions,
        100,
        "flush waited for the store"
    );
    core.close(Duration::from_secs(5));
    assert_eq!(sent_and_unconfirmed(&core), (100, 0));
}

#[test]
fn a_full_held_list_drops_and_counts() {
    let store = InstrumentedStore::new(false);
    let core = Core::builder()
        .config(json!({"account_id": "1", "project": {"id": "2"}, "goals": [{"id": "9", "key": "buy"}]}))
        .shared_data_store(Arc::clone(&store) as Arc<dyn convert_sdk::DataStore>)
        .store_options(StoreOptions::default().max_held_conversions(2))
        .tracking(false)
        .build()
        .unwrap();
    store.failing.store(true, Ordering::SeqCst);
    let outcomes: Vec<ConversionOutcome> = (0..5)
        .map(|i| {
            core.create_context(format!("v{i}"), None)
                .track_conversion("buy", &ConversionAttributes::new())
                .unwrap()
        })
        .collect();
    let m = core.metrics();
    assert_eq!((m.held_conversions, m.held_conversions_overflow), (2, 3));
    // The caller is told which ones were dropped: they are not `Deferred` (held to be sent).
    use ConversionOutcome::{Deferred, Dropped};
    assert_eq!(outcomes, [Deferred, Deferred, Dropped, Dropped, Dropped]);
}
