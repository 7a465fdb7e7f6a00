//! Limits on visitor data at the public boundary: a property too deep or too large for the store
//! is rejected (the rest of the call is kept), so that no visitor record becomes unreadable. Runs
//! against the memory store and (with the `sqlite` feature) a SQLite file.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod support;

use convert_sdk::{
    BucketingAttributes, ConversionAttributes, Core, DataStore, Decision, MAX_VISITOR_DATA_DEPTH,
    MAX_VISITOR_VALUE_BYTES,
};
use serde_json::{Map, Value, json};
use std::sync::Arc;
use support::{Recorder, conversion_events};

const CONFIG: &str = r#"{"account_id":"10","project":{"id":"20"},
  "experiences":[{"id":"100","key":"exp","variations":[{"id":"101","key":"a","traffic_allocation":50},{"id":"102","key":"b","traffic_allocation":50}]}],
  "goals":[{"id":"7","key":"purchase"}]}"#;

fn sdk(store: Arc<dyn DataStore>, rec: &Recorder) -> Core {
    support::sdk_on_store(CONFIG, store, rec)
}

/// `{"d":{"d":…1…}}`, `levels` objects deep.
fn nested(levels: usize) -> Value {
    (0..levels).fold(json!(1), |v, _| json!({ "d": v }))
}

fn map(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// Every way a caller hands visitor data to the SDK, each with one value nested 200 levels
/// deep: afterwards the visitor's record still reads back, dedup holds (10 conversions → 1
/// conversion), the decision is sticky, and the well-formed properties were kept.
fn deep_properties_do_not_poison_the_visitor(store: Arc<dyn DataStore>) {
    let rec = Recorder::default();
    let core = sdk(Arc::clone(&store), &rec);
    let ctx = core.create_context(
        "deep-visitor",
        Some(map(
            json!({"country": "US", "customSegments": nested(200), "tier": nested(200)}),
        )),
    );
    ctx.update_visitor_properties(map(json!({"plan": "pro", "deep": nested(200)})));
    ctx.set_default_segments(map(json!({"browser": "FF", "campaign": nested(200)})));
    let attrs = BucketingAttributes::new()
        .visitor_property("bucketing-deep", nested(200))
        .visitor_property("seen", true)
        .update_visitor_properties(true);
    let Decision::Variation(first) = ctx.run_experience("exp", &attrs) else {
        panic!("not bucketed");
    };
    let conversion = ConversionAttributes::new()
        .revenue(10.0)
        .data("customDimension1", nested(200));
    let fired = (0..10)
        .filter(|_| {
            ctx.track_conversion("purchase", &conversion)
                .unwrap()
                .fired()
        })
        .count();
    assert_eq!(fired, 1, "repeat conversions fired again");
    core.flush().unwrap();
    assert_eq!(
        conversion_events(&rec),
        2,
        "one conversion + one transaction event (the revenue); the deep dimension dropped"
    );
    let sent: String = rec
        .requests()
        .iter()
        .filter_map(|r| r.body.clone())
        .collect();
    assert!(
        sent.contains("amount") && !sent.contains("customDimension1"),
        "{sent}"
    );

    // A second SDK on the same store (a restart, or another process) reads the record back.
    let rec2 = Recorder::default();
    let again = sdk(store, &rec2).create_context("deep-visitor", None);
    // Sticky: read from the record (no bucketing allocation computed), same variation.
    let Decision::Variation(sticky) = again.run_experience("exp", &attrs) else {
        panic!("not bucketed on return");
    };
    assert_eq!(sticky.variation_id, first.variation_id);
    assert_eq!(
        sticky.bucketing_allocation, None,
        "decided afresh, not from the record"
    );
    let converted = again
        .track_conversion("purchase", &ConversionAttributes::new())
        .unwrap();
    assert!(!converted.fired(), "dedup mark lost");
    let data = again.get_visitor_data();
    assert_eq!(data.bucketed_variation("100"), Some(&*first.variation_id));
    let segments = data.segments().cloned().unwrap_or_default();
    for kept in ["country", "plan", "browser", "seen"] {
        assert!(
            segments.contains_key(kept),
            "{kept} missing from {segments:?}"
        );
    }
    for rejected in [
        "customSegments",
        "tier",
        "deep",
        "campaign",
        "bucketing-deep",
    ] {
        assert!(!segments.contains_key(rejected), "{rejected} was stored");
    }
}

/// The deepest and the largest values the limits allow are stored and read back whole.
fn values_at_the_limits_round_trip(store: Arc<dyn DataStore>) {
    let rec = Recorder::default();
    let core = sdk(Arc::clone(&store), &rec);
    let ctx = core.create_context("limit-visitor", None);
    let deepest = nested(MAX_VISITOR_DATA_DEPTH);
    let largest = Value::String("x".repeat(MAX_VISITOR_VALUE_BYTES - 100));
    let props = map(json!({"deepest": deepest, "largest": largest}));
    ctx.update_visitor_properties(&props);
    // One level more, or a few bytes more, is one too many.
    ctx.update_visitor_properties(map(json!({
        "too-deep": nested(MAX_VISITOR_DATA_DEPTH + 1),
        "too-large": "x".repeat(MAX_VISITOR_VALUE_BYTES + 1),
    })));
    let back = sdk(store, &rec)
        .create_context("limit-visitor", None)
        .get_visitor_data();
    assert_eq!(back.segments(), Some(&props));
}

#[test]
fn memory_store_deep_properties_do_not_poison_the_visitor() {
    deep_properties_do_not_poison_the_visitor(Arc::new(convert_sdk::stores::MemoryStore::new()));
}

#[test]
fn memory_store_values_at_the_limits_round_trip() {
    values_at_the_limits_round_trip(Arc::new(convert_sdk::stores::MemoryStore::new()));
}

#[cfg(feature = "sqlite")]
mod sqlite {
    use super::*;
    use convert_sdk::stores::SqliteStore;

    fn store(name: &str) -> (std::path::PathBuf, Arc<dyn DataStore>) {
        let dir =
            std::env::temp_dir().join(format!("convert-sdk-limits-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let store = SqliteStore::open(dir.join("visitors.db")).unwrap();
        (dir, Arc::new(store))
    }

    #[test]
    fn sqlite_deep_properties_do_not_poison_the_visitor() {
        let (dir, store) = store("deep");
        deep_properties_do_not_poison_the_visitor(store);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn sqlite_values_at_the_limits_round_trip() {
        let (dir, store) = store("edge");
        values_at_the_limits_round_trip(store);
        let _ = std::fs::remove_dir_all(dir);
    }
}
