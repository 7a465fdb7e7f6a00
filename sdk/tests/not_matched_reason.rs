//! Why a visitor got no variation: each check of the matching gives its own
//! [`NotMatchedReason`], traffic gives `NotDecided` and a missing config `NotReady`, all read
//! from the decision itself through the public SDK.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use convert_sdk::{BucketingAttributes, Core, Decision, NotMatchedReason};
use serde_json::json;

/// One experience per check, each failing only that check for a visitor with no properties in
/// the default environment (`staging`).
fn core() -> Core {
    let variations = json!([{"id": "1001", "key": "only", "traffic_allocation": 100}]);
    Core::builder()
        .config(json!({
            "account_id": "1", "project": {"id": "2"},
            "archived_experiences": ["110"],
            "experiences": [
                {"id": "100", "key": "open", "variations": variations},
                {"id": "110", "key": "archived", "variations": variations},
                {"id": "120", "key": "production-only", "environment": "production",
                 "variations": variations},
                {"id": "130", "key": "home-page", "locations": ["50"], "variations": variations},
                {"id": "140", "key": "premium", "audiences": ["900"], "variations": variations},
                {"id": "150", "key": "vip-segment", "audiences": ["800"], "variations": variations},
                {"id": "160", "key": "empty", "variations": []},
                {"id": "170", "key": "numeric-variation-id",
                 "variations": [{"id": 1701, "key": "only", "traffic_allocation": 100}]},
                {"id": "180", "key": "no-traffic",
                 "variations": [{"id": "1801", "key": "only", "traffic_allocation": 0}]}
            ],
            "locations": [{"id": "50", "key": "home", "rules": {"OR": [{"AND": [{"OR_WHEN": [
                {"key": "page", "matching": {"match_type": "equals", "negated": false},
                 "value": "home"}]}]}]}}],
            "audiences": [{"id": "900", "key": "premium", "rules": {"OR": [{"AND": [{"OR_WHEN": [
                {"key": "plan", "matching": {"match_type": "equals", "negated": false},
                 "value": "premium"}]}]}]}}],
            "segments": [{"id": "800", "key": "vip"}]
        }))
        .tracking(false)
        .build()
        .unwrap()
}

fn reason(key: &str) -> Option<NotMatchedReason> {
    let d = core()
        .create_context("visitor-1", None)
        .run_experience(key, &BucketingAttributes::new());
    assert!(matches!(d, Decision::NotMatched(_)), "{key}: {d:?}");
    d.not_matched_reason()
}

#[test]
fn a_variation_has_no_reason() {
    let d = core()
        .create_context("visitor-1", None)
        .run_experience("open", &BucketingAttributes::new());
    assert!(d.is_variation(), "{d:?}");
    assert_eq!(d.not_matched_reason(), None);
}

#[test]
fn unknown_experience() {
    assert_eq!(
        reason("no-such-key"),
        Some(NotMatchedReason::UnknownExperience)
    );
}

#[test]
fn archived() {
    assert_eq!(reason("archived"), Some(NotMatchedReason::Archived));
}

#[test]
fn environment() {
    assert_eq!(
        reason("production-only"),
        Some(NotMatchedReason::Environment)
    );
    // The same experience matches in its own environment.
    let d = core().create_context("visitor-1", None).run_experience(
        "production-only",
        &BucketingAttributes::new().environment("production"),
    );
    assert!(d.is_variation(), "{d:?}");
}

#[test]
fn location() {
    assert_eq!(reason("home-page"), Some(NotMatchedReason::Location));
    let d = core().create_context("visitor-1", None).run_experience(
        "home-page",
        &BucketingAttributes::new().location_properties([("page", "home")]),
    );
    assert!(d.is_variation(), "{d:?}");
}

#[test]
fn audience() {
    assert_eq!(reason("premium"), Some(NotMatchedReason::Audience));
    let d = core()
        .create_context("visitor-1", [("plan", "premium")])
        .run_experience("premium", &BucketingAttributes::new());
    assert!(d.is_variation(), "{d:?}");
}

#[test]
fn segments() {
    assert_eq!(reason("vip-segment"), Some(NotMatchedReason::Segments));
}

#[test]
fn no_variations() {
    assert_eq!(reason("empty"), Some(NotMatchedReason::NoVariations));
}

#[test]
fn no_visitor_id() {
    let d = core()
        .create_context("", None)
        .run_experience("open", &BucketingAttributes::new());
    assert_eq!(d, Decision::NotMatched(NotMatchedReason::NoVisitorId));
}

#[test]
fn invalid_config() {
    assert_eq!(
        reason("numeric-variation-id"),
        Some(NotMatchedReason::InvalidConfig)
    );
}

#[test]
fn traffic_is_not_decided() {
    let d = core()
        .create_context("visitor-1", None)
        .run_experience("no-traffic", &BucketingAttributes::new());
    assert_eq!(d, Decision::NotDecided);
    assert_eq!(d.not_matched_reason(), None);
}

#[test]
fn reasons_serialize_and_display() {
    let d = Decision::NotMatched(NotMatchedReason::Audience);
    assert_eq!(
        serde_json::to_value(&d).unwrap(),
        json!({"type": "notMatched", "value": "audience"})
    );
    assert_eq!(
        format!("not matched: {}", NotMatchedReason::NoVisitorId),
        "not matched: no visitor id"
    );
}
