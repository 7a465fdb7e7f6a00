//! How decisions use the `DataStore`: one in-place `update` for an in-process store, a `get`
//! followed by an `update` only when something changed for a store that talks to a server, and
//! the same answers and stored records either way, failures included.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod support;

use convert_sdk::DataStore;
use convert_sdk::{BucketingAttributes, ConversionAttributes, Core, Decision, NotMatchedReason};
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use support::InstrumentedStore;

fn config() -> serde_json::Value {
    json!({
        "account_id": "1", "project": {"id": "2"},
        "experiences": [
            {"id": "100", "key": "exp-a", "locations": ["50"], "variations": [
                {"id": "101", "key": "a1", "traffic_allocation": 50},
                {"id": "102", "key": "a2", "traffic_allocation": 50}]},
            {"id": "200", "key": "exp-b", "variations": [
                {"id": "201", "key": "b1", "traffic_allocation": 30},
                {"id": "202", "key": "b2", "traffic_allocation": 70}]}
        ],
        "goals": [{"id": "9", "key": "buy"}],
        "locations": [{"id": "50", "key": "home", "rules": {"OR": [{"AND": [{"OR_WHEN": [
            {"key": "page", "matching": {"match_type": "equals", "negated": false}, "value": "home"}]}]}]}}]
    })
}

fn sdk(store: Arc<InstrumentedStore>) -> Core {
    Core::builder()
        .config(config())
        .shared_data_store(store)
        .tracking(false)
        .build()
        .unwrap()
}

fn attrs() -> BucketingAttributes {
    BucketingAttributes::new().location_property("page", "home")
}

#[test]
fn an_in_place_store_gets_one_update_per_decision_and_no_read() {
    let store = InstrumentedStore::new(true);
    let core = sdk(Arc::clone(&store));
    let ctx = core.create_context("visitor-1", None);
    let first = ctx.run_experience("exp-a", &attrs());
    assert!(matches!(&first, Decision::Variation(v) if v.bucketing_allocation.is_some()));
    assert_eq!(
        store.take_counts(),
        (0, 1, 1),
        "fresh: one update that wrote"
    );
    let again = ctx.run_experience("exp-a", &attrs());
    assert!(matches!(&again, Decision::Variation(v) if v.bucketing_allocation.is_none()));
    assert_eq!(
        store.take_counts(),
        (0, 1, 0),
        "sticky: one update that wrote nothing"
    );
    let stored = ctx.get_visitor_data();
    assert_eq!(
        stored.to_value()["locations"],
        json!(["home"]),
        "the location list was stored in the same update"
    );
}

#[test]
fn a_server_store_is_called_once_per_decision_and_written_only_on_change() {
    let store = InstrumentedStore::new(false);
    let core = sdk(Arc::clone(&store));
    let ctx = core.create_context("visitor-1", None);
    ctx.run_experience("exp-a", &attrs());
    // `create` (here the port's default, one atomic update) stores a new visitor's decision.
    assert_eq!(
        store.take_counts(),
        (0, 1, 1),
        "fresh: one create-or-read that wrote"
    );
    ctx.run_experience("exp-a", &attrs());
    assert_eq!(
        store.take_counts(),
        (0, 1, 0),
        "sticky: one create-or-read that found the record and wrote nothing"
    );
    // A returning visitor deciding a new experience: create-or-read, then one write of what
    // changed.
    ctx.run_experience("exp-b", &attrs());
    assert_eq!(store.take_counts(), (0, 2, 1));
    // A decision that stores nothing for a new visitor is a single read.
    let other = core.create_context("visitor-2", None);
    assert_eq!(
        other.run_experience("exp-missing", &attrs()),
        Decision::NotMatched(NotMatchedReason::UnknownExperience)
    );
    assert_eq!(store.take_counts(), (1, 0, 0));
}

#[test]
fn both_modes_decide_and_store_the_same() {
    let in_place = InstrumentedStore::new(true);
    let copy = InstrumentedStore::new(false);
    let a = sdk(Arc::clone(&in_place));
    let b = sdk(Arc::clone(&copy));
    for i in 0..200 {
        let id = format!("visitor-{i}");
        let (ca, cb) = (a.create_context(&*id, None), b.create_context(&*id, None));
        assert_eq!(
            ca.run_experience("exp-a", &attrs()),
            cb.run_experience("exp-a", &attrs())
        );
        assert_eq!(ca.run_experiences(&attrs()), cb.run_experiences(&attrs()));
        assert_eq!(
            ca.track_conversion("buy", &ConversionAttributes::default()),
            cb.track_conversion("buy", &ConversionAttributes::default())
        );
        assert_eq!(ca.get_visitor_data(), cb.get_visitor_data(), "{id}");
        assert!(ca.get_visitor_data().bucketed_variation("200").is_some());
    }
}

#[test]
fn a_failing_in_place_store_still_decides_and_counts_the_failure() {
    let store = InstrumentedStore::new(true);
    let core = sdk(Arc::clone(&store));
    let healthy = core
        .create_context("visitor-7", None)
        .run_experience("exp-b", &attrs());
    store.inner.clear();
    store.failing.store(true, Ordering::SeqCst);
    let ctx = core.create_context("visitor-7", None);
    let down = ctx.run_experience("exp-b", &attrs());
    // The same variation from the hash, as a fresh decision.
    match (&healthy, &down) {
        (Decision::Variation(h), Decision::Variation(d)) => {
            assert_eq!(h.variation_id, d.variation_id);
            assert!(d.bucketing_allocation.is_some());
        }
        other => panic!("expected two variations, got {other:?}"),
    }
    assert!(core.metrics().store_errors >= 1);
    // Back up: the decision is stored by the next call and is sticky after that.
    store.failing.store(false, Ordering::SeqCst);
    ctx.run_experience("exp-b", &attrs());
    let sticky = ctx.run_experience("exp-b", &attrs());
    assert!(matches!(&sticky, Decision::Variation(v) if v.bucketing_allocation.is_none()));
}

/// A store that, while serving one visitor's update, runs another visitor's decision on the same
/// thread (as a store with its own instrumentation might call back into the SDK).
struct CallsBack {
    inner: convert_sdk::stores::MemoryStore,
    core: std::sync::OnceLock<Core>,
    nested: std::sync::Mutex<Option<Decision>>,
}

impl DataStore for CallsBack {
    fn get(&self, key: &str) -> Result<Option<convert_sdk::StoreData>, convert_sdk::StoreError> {
        self.inner.get(key)
    }
    fn set(
        &self,
        key: &str,
        value: &convert_sdk::StoreData,
    ) -> Result<(), convert_sdk::StoreError> {
        self.inner.set(key, value)
    }
    fn delete(&self, key: &str) -> Result<(), convert_sdk::StoreError> {
        self.inner.delete(key)
    }
    fn update(
        &self,
        key: &str,
        f: &mut dyn FnMut(&mut convert_sdk::StoreData) -> bool,
    ) -> Result<bool, convert_sdk::StoreError> {
        if key.ends_with("-outer") {
            if let Some(core) = self.core.get() {
                let d = core
                    .create_context("inner", None)
                    .run_experience("exp-b", &BucketingAttributes::new());
                *self.nested.lock().unwrap() = Some(d);
            }
        }
        self.inner.update(key, f)
    }
    fn updates_in_place(&self) -> bool {
        true
    }
}

#[test]
fn a_store_calling_back_into_the_sdk_gets_each_visitor_under_its_own_key() {
    let store = Arc::new(CallsBack {
        inner: convert_sdk::stores::MemoryStore::new(),
        core: std::sync::OnceLock::new(),
        nested: std::sync::Mutex::new(None),
    });
    let core = Core::builder()
        .config(config())
        .shared_data_store(Arc::clone(&store) as Arc<dyn DataStore>)
        .tracking(false)
        .build()
        .unwrap();
    assert!(store.core.set(core.clone()).is_ok());
    let outer = core
        .create_context("outer", None)
        .run_experience("exp-b", &BucketingAttributes::new());

    // The same visitors through a plain SDK give the same answers.
    let plain = Core::builder()
        .config(config())
        .tracking(false)
        .build()
        .unwrap();
    let expect = |visitor: &str| {
        plain
            .create_context(visitor, None)
            .run_experience("exp-b", &BucketingAttributes::new())
    };
    assert_eq!(outer, expect("outer"));
    let nested = store.nested.lock().unwrap().take();
    assert_eq!(nested, Some(expect("inner")));
    for visitor in ["outer", "inner"] {
        let record = store.inner.get(&format!("1-2-{visitor}")).unwrap();
        let Some(Decision::Variation(v)) = Some(expect(visitor)) else {
            panic!("{visitor} is not bucketed");
        };
        assert_eq!(
            record.as_ref().and_then(|d| d.bucketed_variation("200")),
            Some(&*v.variation_id),
            "{visitor}'s record"
        );
    }
}

/// Round trips with the Redis store (issue 10: a fresh decision used to be 6 commands in 4 round
/// trips, a first conversion 3 round trips), counted with `INFO commandstats` on a real
/// `redis-server`, not timed.
#[cfg(feature = "redis")]
mod redis_round_trips {
    use super::*;
    use convert_sdk::ConversionOutcome;
    use convert_sdk::stores::RedisStore;
    use convert_store_tests::redis_server::{RedisServer, redis_available};
    use support::faults::redis_commands;

    /// A fresh decision is one command (`SET … NX GET`: the record written, nothing read
    /// first). A first conversion is two: `GET`, then the compare-and-set script through
    /// `EVALSHA`; `INFO commandstats` also counts the script's own `GET` and `SET`, which run
    /// inside Redis.
    #[test]
    fn a_fresh_decision_is_one_round_trip_and_a_first_conversion_two() {
        if !redis_available() {
            return;
        }
        const N: u64 = 20;
        let server = RedisServer::start("sync-round-trips");
        let core = Core::builder()
            .config(config())
            .data_store(RedisStore::open(&server.url()).unwrap())
            .tracking(false)
            .build()
            .unwrap();
        let attrs = BucketingAttributes::default();
        // The connection is made and the script loaded before counting.
        let warm = core.create_context("warm-up", None);
        assert!(matches!(
            warm.run_experience("exp-b", &attrs),
            Decision::Variation(_)
        ));
        warm.track_conversion("buy", &ConversionAttributes::new())
            .unwrap();

        server.cli(&["CONFIG", "RESETSTAT"]);
        for i in 0..N {
            let ctx = core.create_context(format!("visitor-{i}"), None);
            assert!(matches!(
                ctx.run_experience("exp-b", &attrs),
                Decision::Variation(_)
            ));
        }
        let fresh = redis_commands(&server);
        assert_eq!(
            fresh.values().sum::<u64>(),
            N,
            "{N} fresh decisions: {fresh:?}"
        );
        assert_eq!(fresh.get("set"), Some(&N), "{N} fresh decisions: {fresh:?}");

        server.cli(&["CONFIG", "RESETSTAT"]);
        for i in 0..N {
            let ctx = core.create_context(format!("visitor-{i}"), None);
            let outcome = ctx.track_conversion("buy", &ConversionAttributes::new());
            assert!(
                matches!(outcome, Ok(ConversionOutcome::Converted { .. })),
                "visitor-{i}: {outcome:?}"
            );
        }
        let converted = redis_commands(&server);
        let expected = [("evalsha", N), ("get", 2 * N), ("set", N)]
            .map(|(c, n)| (c.to_string(), n))
            .into_iter()
            .collect::<std::collections::BTreeMap<_, _>>();
        assert_eq!(converted, expected, "{N} first conversions");
    }
}
