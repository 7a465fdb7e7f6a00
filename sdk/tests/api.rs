//! The integrator-facing API: thread-safety, typed variables and their errors, lifecycle events
//! through handlers and an external EventBus.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use convert_sdk::{
    BucketingAttributes, Context, Core, EventBus, EventKind, SdkEvent, VariableError,
};
use serde_json::json;
use std::sync::{Arc, Mutex};

fn assert_send_sync_clone<T: Send + Sync + Clone + 'static>() {}

#[test]
fn core_and_context_can_be_shared() {
    assert_send_sync_clone::<Core>();
    assert_send_sync_clone::<Context>();
}

fn config() -> serde_json::Value {
    json!({
        "account_id": "1", "project": {"id": "2"},
        "features": [{"id": "9", "key": "banner", "variables": [
            {"key": "on", "type": "boolean"}, {"key": "max", "type": "integer"},
            {"key": "ratio", "type": "float"}, {"key": "label", "type": "string"},
            {"key": "cfg", "type": "json"}]}],
        "experiences": [{"id": "100", "key": "exp", "locations": ["50"], "variations": [
            {"id": "101", "key": "only", "traffic_allocation": 100, "changes": [
                {"type": "fullStackFeature", "data": {"feature_id": 9, "variables_data": {
                    "on": "true", "max": "7", "ratio": "0.25", "label": 3, "cfg": "{\"depth\":2,\"tags\":[\"a\"]}"}}}]}]}],
        "locations": [{"id": "50", "key": "home", "name": "Home", "rules": {"OR": [{"AND": [{"OR_WHEN": [
            {"key": "page", "matching": {"match_type": "equals", "negated": false}, "value": "home"}]}]}]}}]
    })
}

#[derive(serde::Deserialize, Debug, PartialEq)]
struct Cfg {
    depth: u8,
    tags: Vec<String>,
}

#[test]
fn typed_variables_and_their_errors() {
    let sdk = Core::builder()
        .config(config())
        .tracking(false)
        .build()
        .unwrap();
    let ctx = sdk.create_context("v", None);
    let home = BucketingAttributes::new().location_property("page", "home");
    let f = ctx.run_feature("banner", &home);
    assert!(f.is_enabled());
    assert!(f.variable::<bool>("on").unwrap());
    assert_eq!(f.variable::<i64>("max").unwrap(), 7);
    assert_eq!(f.variable::<f64>("ratio").unwrap(), 0.25);
    assert_eq!(f.variable::<String>("label").unwrap(), "3");
    assert_eq!(
        f.variable::<Cfg>("cfg").unwrap(),
        Cfg {
            depth: 2,
            tags: vec!["a".into()]
        }
    );
    assert!(matches!(
        f.variable::<i64>("label"),
        Err(VariableError::Type { .. })
    ));
    assert!(matches!(
        f.variable::<i64>("nope"),
        Err(VariableError::Missing { .. })
    ));
    let off = ctx.run_feature(
        "banner",
        &BucketingAttributes::new().location_property("page", "cart"),
    );
    assert!(!off.is_enabled());
    assert!(off.is_declared());
    assert!(matches!(
        off.variable::<bool>("on"),
        Err(VariableError::Disabled(_))
    ));
    // The same through run_features: one entry per declared feature, with its variables.
    let all = ctx.run_features(&home).unwrap();
    let banner = all
        .iter()
        .find(|e| e.feature_key() == Some("banner"))
        .unwrap();
    assert!(banner.is_enabled());
    assert_eq!(
        banner.variables().and_then(|m| m.get("max")),
        Some(&json!(7))
    );
    let all_off = ctx
        .run_features(&BucketingAttributes::new().location_property("page", "cart"))
        .unwrap();
    assert!(
        all_off
            .iter()
            .all(|e| !e.is_enabled() && e.variables().is_none())
    );
    // A key the config does not declare decides like a disabled feature (as in the reference),
    // but says so when a variable is asked for.
    let unknown = ctx.run_feature("baner", &home);
    assert!(!unknown.is_enabled());
    assert!(!unknown.is_declared());
    assert!(matches!(
        unknown.variable::<bool>("on"),
        Err(VariableError::UnknownFeature(k)) if k == "baner"
    ));
}

/// A config with a goal, a report segment to store and a custom segment that matches.
fn config_with_goal_and_segment() -> serde_json::Value {
    let mut cfg = config();
    cfg["goals"] = json!([{"id": "70", "key": "buy", "type": "advanced"}]);
    cfg["segments"] = json!([{"id": "80", "key": "vip", "rules": {"OR": [{"AND": [{"OR_WHEN": [
        {"key": "plan", "matching": {"match_type": "equals", "negated": false}, "value": "gold"}]}]}]}}]);
    cfg
}

#[test]
fn an_empty_visitor_id_decides_and_stores_nothing() {
    use convert_sdk::{ConversionAttributes, ConversionOutcome, Decision, NotMatchedReason};
    let sdk = Core::builder()
        .config(config_with_goal_and_segment())
        .tracking(false)
        .build()
        .unwrap();
    let home = BucketingAttributes::new().location_property("page", "home");
    let anon = sdk.create_context("", json!({"country": "US", "plan": "gold"}));
    anon.set_default_segments(json!({"browser": "CH"}));
    anon.update_visitor_properties(json!({"tier": 3}));
    assert_eq!(
        anon.run_custom_segments(&["vip"], json!({"plan": "gold"})),
        Ok(None)
    );
    assert_eq!(
        anon.track_conversion("buy", &ConversionAttributes::default()),
        Ok(ConversionOutcome::NoVisitorId)
    );
    assert_eq!(
        anon.run_experience("exp", &home),
        Decision::NotMatched(NotMatchedReason::NoVisitorId)
    );
    assert!(anon.run_experiences(&home).is_empty());
    assert!(matches!(
        anon.run_feature("banner", &home).variable::<bool>("on"),
        Err(VariableError::NotDecided(_))
    ));
    // Nothing reached the key every id-less context would share.
    let store = sdk.data_store();
    assert_eq!(store.get("1-2-").unwrap(), None);
    assert_eq!(anon.get_visitor_data(), convert_sdk::StoreData::default());

    // The same calls with an id store what they should, so the checks above can fail.
    let named = sdk.create_context("v", json!({"country": "US", "plan": "gold"}));
    named.set_default_segments(json!({"browser": "CH"}));
    named.update_visitor_properties(json!({"tier": 3}));
    assert!(
        named
            .run_custom_segments(&["vip"], json!({"plan": "gold"}))
            .unwrap()
            .is_some()
    );
    assert!(
        named
            .track_conversion("buy", &ConversionAttributes::default())
            .unwrap()
            .fired()
    );
    let stored = store
        .get("1-2-v")
        .unwrap()
        .expect("a record for the named visitor");
    let segments = stored.segments().cloned().unwrap_or_default();
    assert_eq!(segments.get("country"), Some(&json!("US")));
    assert_eq!(segments.get("browser"), Some(&json!("CH")));
    assert_eq!(segments.get("customSegments"), Some(&json!(["80"])));
    assert_eq!(segments.get("tier"), Some(&json!(3)));
}

#[derive(Default)]
struct Bus(Mutex<Vec<String>>);

impl EventBus for Bus {
    fn publish(&self, event: &SdkEvent) {
        self.0.lock().unwrap().push(event.name().to_string());
    }
}

#[test]
fn location_and_bucketing_events_reach_handlers_and_the_bus() {
    let bus = Arc::new(Bus::default());
    struct Shared(Arc<Bus>);
    impl EventBus for Shared {
        fn publish(&self, e: &SdkEvent) {
            self.0.publish(e);
        }
    }
    let sdk = Core::builder()
        .config(config())
        .event_bus(Shared(Arc::clone(&bus)))
        .tracking(false)
        .build()
        .unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = Arc::clone(&seen);
    sdk.on(EventKind::LocationActivated, move |e| {
        if let SdkEvent::LocationActivated { location, .. } = e {
            s.lock().unwrap().push(format!("on:{}", location["key"]));
        }
    });
    let s = Arc::clone(&seen);
    sdk.on(EventKind::LocationDeactivated, move |e| {
        if let SdkEvent::LocationDeactivated { location, .. } = e {
            s.lock().unwrap().push(format!("off:{}", location["key"]));
        }
    });
    let ctx = sdk.create_context("walker", None);
    ctx.run_experience(
        "exp",
        &BucketingAttributes::new().location_property("page", "home"),
    );
    ctx.run_experience(
        "exp",
        &BucketingAttributes::new().location_property("page", "home"),
    );
    ctx.run_experience(
        "exp",
        &BucketingAttributes::new().location_property("page", "cart"),
    );
    assert_eq!(*seen.lock().unwrap(), ["on:\"home\"", "off:\"home\""]);
    let names = bus.0.lock().unwrap().clone();
    assert_eq!(names[0], "ready");
    assert_eq!(
        names.iter().filter(|n| *n == "location.activated").count(),
        1
    );
    assert_eq!(
        names
            .iter()
            .filter(|n| *n == "location.deactivated")
            .count(),
        1
    );
    assert_eq!(names.iter().filter(|n| *n == "bucketing").count(), 2);
}

/// `run_experience` announces the decision it returns: the experience and variation keys of a
/// fresh and of a sticky variation, and nothing for a decision without one.
#[test]
fn bucketing_events_name_the_decided_variation() {
    let sdk = Core::builder()
        .config(config())
        .tracking(false)
        .build()
        .unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = Arc::clone(&seen);
    sdk.on(EventKind::Bucketing, move |e| {
        if let SdkEvent::Bucketing {
            visitor_id,
            experience_key,
            variation_key,
            feature_key,
            status,
        } = e
        {
            s.lock().unwrap().push(format!(
                "{visitor_id} {experience_key:?} {variation_key:?} {feature_key:?} {status:?}"
            ));
        }
    });
    let ctx = sdk.create_context("v", None);
    let home = BucketingAttributes::new().location_property("page", "home");
    for _ in 0..2 {
        let d = ctx.run_experience("exp", &home);
        let v = d.variation().unwrap();
        assert_eq!(
            (v.experience_key(), v.variation_key()),
            ("exp", Some("only"))
        );
    }
    let cart = BucketingAttributes::new().location_property("page", "cart");
    assert!(ctx.run_experience("exp", &cart).variation().is_none());
    assert!(ctx.run_experience("missing", &home).variation().is_none());
    let want = "v Some(\"exp\") Some(\"only\") None None";
    assert_eq!(*seen.lock().unwrap(), [want, want]);
}
