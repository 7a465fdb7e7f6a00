//! The pinned outcomes of the reference test configs, through the public SDK:
//!
//! * README §4: `javascript-sdk/test-config.json`, `ruby-sdk/test-config.json` (the same data
//!   without the envelope) and `javascript-sdk/test-config.no-matching-options.json` (Part A Q9:
//!   a missing `settings.matching_options` means "any"; the reference throws): the decisions of
//!   visitors `XXX` and `visitor-1`, and the exact conversion request (URL, headers, body).
//! * README §5: `javascript-sdk/static-config.json`, the serving-API-shaped config of the JS
//!   full-chain test: a location-gated experience, feature-2's typed variables, conversion dedup.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

#[path = "../../core/tests/common/mod.rs"]
mod common;
mod support;

use convert_sdk::{
    BucketingAttributes, ConversionAttributes, ConversionOutcome, Core, Decision, FeatureStatus,
    HttpRequest, Method, NotMatchedReason,
};
use serde_json::{Map, Value, json};
use support::{Recorder, sdk_flushing_to};

fn obj(v: Value) -> Map<String, Value> {
    v.as_object().cloned().unwrap()
}

fn variation_id(d: &Decision) -> Option<&str> {
    match d {
        Decision::Variation(v) => Some(&v.variation_id),
        _ => None,
    }
}

/// Visitor properties plus the location the test configs' site area asks for.
fn convert_com(props: Value) -> BucketingAttributes {
    BucketingAttributes::new()
        .visitor_properties(obj(props))
        .location_property("url", "https://convert.com/")
}

const TRACK_URL: &str =
    "https://10025986.metrics.convertexperiments.com/v1/track/10022898/10025986";

/// One POST to the track URL with exactly the reference's headers (SPEC §10.4); returns its body.
fn the_track_request(sent: &[HttpRequest], what: &str) -> String {
    assert_eq!(sent.len(), 1, "{what}: one request");
    let r = &sent[0];
    assert_eq!(r.method, Method::Post, "{what}");
    assert_eq!(r.url, TRACK_URL, "{what}");
    assert_eq!(
        r.headers,
        vec![
            ("Content-Type".to_string(), "application/json".to_string()),
            ("User-Agent".to_string(), "ConvertAgent/1.0".to_string()),
        ],
        "{what}: headers"
    );
    r.body.clone().unwrap()
}

/// README §4's pinned decisions and conversion payloads on one of the three test-config files.
fn test_config(rel: &str) -> usize {
    let Some(dir) = common::conformance_dir() else {
        return 0;
    };
    let recorder = Recorder::default();
    let core = sdk_flushing_to(common::load(&dir, rel), &recorder);
    let mut checks = 0;

    // Visitor XXX, {varName3: "something"} at https://convert.com/ → 100299456, bucket value 201.
    let xxx = core.create_context("XXX", None);
    match xxx.run_experience(
        "test-experience-ab-fullstack-2",
        &convert_com(json!({"varName3": "something"})),
    ) {
        Decision::Variation(v) => {
            assert_eq!(&*v.experience_id, "100218245", "{rel}");
            assert_eq!(&*v.variation_id, "100299456", "{rel}: XXX");
            assert_eq!(
                v.bucketing_allocation,
                Some(201),
                "{rel}: XXX's bucket value"
            );
        }
        other => panic!("{rel}: XXX got {other:?}"),
    }
    checks += 1;

    // visitor-1 with {varName1: "value1", varName2: "value2"} (the Ruby full-chain test).
    let v1 = core.create_context("visitor-1", None);
    let props = convert_com(json!({"varName1": "value1", "varName2": "value2"}));
    let a = v1.run_experience("test-experience-ab-fullstack-2", &props);
    let b = v1.run_experience("test-experience-ab-fullstack-3", &props);
    assert_eq!(variation_id(&a), Some("100299457"), "{rel}: visitor-1 / 2");
    assert_eq!(variation_id(&b), Some("100299461"), "{rel}: visitor-1 / 3");
    checks += 2;
    // Experience 4's only variation has no id: a qualifying visitor is never decided.
    assert_eq!(
        v1.run_experience("test-experience-ab-fullstack-4", &props),
        Decision::NotDecided,
        "{rel}: experience 4"
    );
    checks += 1;
    // The three fresh decisions were queued as bucketing events; deliver them first.
    assert_eq!(core.flush().unwrap(), 3, "{rel}");
    let body = the_track_request(&recorder.take(), rel);
    assert_eq!(
        body,
        concat!(
            r#"{"enrichData":true,"accountId":"10022898","projectId":"10025986","visitors":["#,
            r#"{"visitorId":"XXX","events":[{"eventType":"bucketing","data":{"experienceId":"100218245","variationId":"100299456"}}]},"#,
            r#"{"visitorId":"visitor-1","events":[{"eventType":"bucketing","data":{"experienceId":"100218245","variationId":"100299457"}},"#,
            r#"{"eventType":"bucketing","data":{"experienceId":"100218246","variationId":"100299461"}}]}],"source":"rust-sdk"}"#
        ),
        "{rel}: bucketing payload"
    );
    checks += 1;

    // trackConversion("increase-engagement", ruleData {action: "buy"}, conversionData
    // [{amount 10.3}, {productsCount 2}]) for a visitor with no bucketing: a bare conversion
    // event, then a transaction event, in one batch. Compared byte for byte: envelope key order
    // enrichData, accountId, projectId, visitors, source; no whitespace; JS number formatting.
    let conversion = ConversionAttributes::new()
        .rule("action", "buy")
        .data("amount", 10.3)
        .data("productsCount", 2);
    let fresh = core.create_context("no-bucketing", None);
    let outcome = fresh
        .track_conversion("increase-engagement", &conversion)
        .unwrap();
    assert_eq!(outcome, ConversionOutcome::Converted { events: 2 }, "{rel}");
    assert!(outcome.fired());
    assert_eq!(core.flush().unwrap(), 2, "{rel}");
    let body = the_track_request(&recorder.take(), rel);
    assert_eq!(
        body,
        concat!(
            r#"{"enrichData":true,"accountId":"10022898","projectId":"10025986","visitors":[{"visitorId":"no-bucketing","events":["#,
            r#"{"eventType":"conversion","data":{"goalId":"100215960"}},"#,
            r#"{"eventType":"conversion","data":{"goalId":"100215960","goalData":[{"key":"amount","value":10.3},{"key":"productsCount","value":2}]}}"#,
            r#"]}],"source":"rust-sdk"}"#
        ),
        "{rel}: conversion payload without bucketing"
    );
    checks += 1;

    // The same conversion by visitor-1, who has bucketing: each event carries the visitor's
    // whole stored map as bucketingData (keys in JS order), after goalId / goalData.
    let outcome = v1
        .track_conversion("increase-engagement", &conversion)
        .unwrap();
    assert_eq!(outcome, ConversionOutcome::Converted { events: 2 }, "{rel}");
    assert_eq!(core.flush().unwrap(), 2, "{rel}");
    let body = the_track_request(&recorder.take(), rel);
    assert_eq!(
        body,
        concat!(
            r#"{"enrichData":true,"accountId":"10022898","projectId":"10025986","visitors":[{"visitorId":"visitor-1","events":["#,
            r#"{"eventType":"conversion","data":{"goalId":"100215960","bucketingData":{"100218245":"100299457","100218246":"100299461"}}},"#,
            r#"{"eventType":"conversion","data":{"goalId":"100215960","goalData":[{"key":"amount","value":10.3},{"key":"productsCount","value":2}],"bucketingData":{"100218245":"100299457","100218246":"100299461"}}}"#,
            r#"]}],"source":"rust-sdk"}"#
        ),
        "{rel}: conversion payload with bucketing"
    );
    checks += 1;

    // A repeat converts nothing (SPEC §9 step 5) and sends nothing.
    let again = v1
        .track_conversion("increase-engagement", &conversion)
        .unwrap();
    assert_eq!(again, ConversionOutcome::AlreadyConverted, "{rel}");
    assert!(!again.fired());
    assert_eq!(core.queued_events(), 0, "{rel}");
    checks += 1;

    // Report segments given at context creation travel with the visitor's events; other
    // visitor properties never leave the process (Part A Q14).
    let seg = core.create_context(
        "with-segments",
        Some(obj(
            json!({"browser": "CH", "plan": "gold", "country": "US"}),
        )),
    );
    let outcome = seg
        .track_conversion("increase-engagement", &ConversionAttributes::new())
        .unwrap();
    assert_eq!(outcome, ConversionOutcome::Converted { events: 1 }, "{rel}");
    assert_eq!(core.flush().unwrap(), 1, "{rel}");
    let body = the_track_request(&recorder.take(), rel);
    assert_eq!(
        body,
        concat!(
            r#"{"enrichData":true,"accountId":"10022898","projectId":"10025986","visitors":[{"visitorId":"with-segments","events":["#,
            r#"{"eventType":"conversion","data":{"goalId":"100215960"}}],"segments":{"browser":"CH","country":"US"}}],"source":"rust-sdk"}"#
        ),
        "{rel}: report segments only"
    );
    checks += 1;

    // Sticky: the same call again reuses the stored decision and queues nothing.
    match v1.run_experience("test-experience-ab-fullstack-2", &props) {
        Decision::Variation(v) => {
            assert_eq!(&*v.variation_id, "100299457");
            assert_eq!(v.bucketing_allocation, None, "{rel}: a stored decision");
        }
        other => panic!("{rel}: {other:?}"),
    }
    assert_eq!(core.queued_events(), 0, "{rel}");
    checks += 1;
    checks
}

#[test]
fn javascript_test_config() {
    let rel = "javascript-sdk/test-config.json";
    let n = test_config(rel);
    if n > 0 {
        assert_eq!(n, 10);
        println!("{rel}: {n} passed, 0 skipped");
    }
}

#[test]
fn ruby_test_config() {
    let rel = "ruby-sdk/test-config.json";
    let n = test_config(rel);
    if n > 0 {
        assert_eq!(n, 10);
        println!("{rel}: {n} passed, 0 skipped");
    }
}

/// Part A Q9: without `settings.matching_options` the audiences are matched as "any" — the same
/// outcomes as with the block (all three experiences have a single audience), and no error.
#[test]
fn no_matching_options_test_config() {
    let rel = "javascript-sdk/test-config.no-matching-options.json";
    let n = test_config(rel);
    if n > 0 {
        assert_eq!(n, 10);
        println!("{rel}: {n} passed, 0 skipped (Part A Q9: missing matching_options = any)");
    }
}

#[test]
fn static_config() {
    let Some(dir) = common::conformance_dir() else {
        return;
    };
    let rel = "javascript-sdk/static-config.json";
    let recorder = Recorder::default();
    let core = Core::builder()
        .config(common::load(&dir, rel))
        .environment("staging")
        .transport(recorder.clone())
        .tracking(false)
        .build()
        .unwrap();
    let pricing = BucketingAttributes::new().location_property("location", "pricing");
    const VISITORS: usize = 40;
    let mut seen = std::collections::BTreeSet::new();
    for i in 0..VISITORS {
        let ctx = core.create_context(format!("static-visitor-{i}"), None);
        // runExperience("test-experience-ab-fullstack-4", {locationProperties: {location:
        // "pricing"}}) → one of its two variations.
        let d = ctx.run_experience("test-experience-ab-fullstack-4", &pricing);
        let vid = variation_id(&d).unwrap_or_else(|| panic!("{rel}: visitor {i}: {d:?}"));
        assert!(
            ["1003180877", "1003180878"].contains(&vid),
            "{rel}: visitor {i}: {vid}"
        );
        seen.insert(vid.to_string());
        // runFeature("feature-2"): both variations carry it, so it is on for every visitor there.
        let f = ctx.run_feature("feature-2", &pricing);
        assert!(f.rule_errors.is_empty(), "{rel}");
        assert!(f.is_enabled(), "{rel}: visitor {i}: {f:?}");
        assert_eq!(
            f.entries.len(),
            1,
            "{rel}: only experience 4 carries feature-2"
        );
        let e = &f.entries[0];
        assert_eq!(e.status, FeatureStatus::Enabled);
        assert_eq!(e.feature_id.as_deref(), Some("100334"), "{rel}: String(id)");
        assert_eq!(
            e.experience_key.as_deref(),
            Some("test-experience-ab-fullstack-4")
        );
        assert_eq!(
            e.variation_id.as_deref(),
            Some(vid),
            "{rel}: the same decision"
        );
        // price === 100 (a float variable: integer or float representation both fine).
        let vars = f.variables().unwrap();
        assert_eq!(vars["price"].as_f64(), Some(100.0), "{rel}: {vars:?}");
        assert_eq!(f.variable::<f64>("price").unwrap(), 100.0);
        assert_eq!(f.variable::<i64>("button-height").unwrap(), 40);
        assert_eq!(
            f.variable::<Value>("additionalData").unwrap(),
            json!({"foo": "bar", "v": 2})
        );
        // Without location data the pricing location does not match (Part A Q2: an empty map).
        let other = core.create_context(format!("no-location-{i}"), None);
        assert_eq!(
            other.run_experience(
                "test-experience-ab-fullstack-4",
                &BucketingAttributes::new()
            ),
            Decision::NotMatched(NotMatchedReason::Location),
            "{rel}"
        );
        // Another environment does not match the experiences' `environment: "staging"`.
        assert_eq!(
            other.run_experience(
                "test-experience-ab-fullstack-4",
                &pricing.clone().environment("production")
            ),
            Decision::NotMatched(NotMatchedReason::Environment),
            "{rel}: SPEC §5.2 step 3"
        );
    }
    assert_eq!(
        seen.len(),
        2,
        "{rel}: both variations among {VISITORS} visitors"
    );
    // One bucketing event per visitor (the feature call reused the sticky decision).
    assert_eq!(core.queued_events(), VISITORS, "{rel}");
    assert_eq!(core.flush().unwrap(), VISITORS);
    recorder.take();

    // Conversion and dedup with the in-memory store: the first conversion fires one event
    // carrying the visitor's bucketing, the second fires nothing.
    let ctx = core.create_context("static-visitor-0", None);
    let first = ctx
        .track_conversion("increase-engagement", &ConversionAttributes::new())
        .unwrap();
    assert_eq!(first, ConversionOutcome::Converted { events: 1 }, "{rel}");
    assert!(first.fired());
    assert_eq!(core.queued_events(), 1);
    let second = ctx
        .track_conversion("increase-engagement", &ConversionAttributes::new())
        .unwrap();
    assert_eq!(second, ConversionOutcome::AlreadyConverted, "{rel}");
    assert!(!second.fired(), "{rel}: a repeat fires nothing");
    assert_eq!(core.queued_events(), 1, "{rel}: a repeat queues nothing");
    assert_eq!(core.flush().unwrap(), 1);
    let sent = recorder.take();
    assert_eq!(sent.len(), 1);
    assert_eq!(
        sent[0].url,
        "https://10034190.metrics.convertexperiments.com/v1/track/10035569/10034190"
    );
    let body: Value = serde_json::from_str(sent[0].body.as_deref().unwrap()).unwrap();
    let stored = ctx.get_visitor_data().bucketing_map().unwrap();
    assert_eq!(
        body["visitors"][0]["events"],
        json!([{"eventType": "conversion", "data": {"goalId": "100322783", "bucketingData": stored}}]),
        "{rel}"
    );
    assert_eq!(
        ctx.get_visitor_data().to_value()["goals"],
        json!({"increase-engagement": true})
    );
    // Checked: the location-gated decision, feature-2 and its variables, the location and
    // environment gates, conversion with dedup.
    println!(
        "{rel}: 5 passed, 0 skipped ({VISITORS} visitors decided into both variations, feature-2 enabled with price 100, conversion dedup)"
    );
}
