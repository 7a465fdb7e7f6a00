//! Bucketing conformance through the public SDK (not the engine internals):
//!
//! * `javascript-sdk/cross-sdk-bucketing-vectors.json` (README §2): one experience config and a
//!   fresh SDK per vector, no location restriction, empty visitor properties, tracking off. All 59
//!   must pass: convert-rs implements the anchored layout (experience `version` > 11), which the
//!   published JS 4.4.3 does not (it reproduces 47/59; js-sdk ≥ 5.0.0 and Python 2.1.0 give 59/59).
//! * `python-sdk/bucketing_event_vectors.json` (README "Python" §5): after a fresh decision the
//!   queued tracking payload's `visitors[0].events[0]` equals `expected_event` exactly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

#[path = "../../core/tests/common/mod.rs"]
mod common;
mod support;

use convert_sdk::{BucketingAttributes, Decision, HttpRequest};
use serde_json::{Value, json};
use support::{Recorder, sdk_flushing_to};

fn body(request: &HttpRequest) -> Value {
    serde_json::from_str(request.body.as_deref().unwrap()).unwrap()
}

/// The bucket value a vector's description quotes ("value 293 (visitor …)"), if any.
fn quoted_value(description: &str) -> Option<u32> {
    let rest = &description[description.find("value ")? + "value ".len()..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

#[test]
fn cross_sdk_bucketing_vectors_through_the_sdk() {
    let Some(dir) = common::conformance_dir() else {
        return;
    };
    let rel = "javascript-sdk/cross-sdk-bucketing-vectors.json";
    let file = common::load(&dir, rel);
    let vectors = file.as_array().unwrap();
    assert_eq!(vectors.len(), 59, "{rel}: record count");
    for tag in common::REQUIRED_TAGS {
        assert!(
            vectors.iter().any(|v| v["description"]
                .as_str()
                .unwrap()
                .contains(&format!("[{tag}]"))),
            "{rel}: no vector tagged [{tag}]"
        );
    }

    let (mut passed, mut packed, mut anchored, mut values_checked) = (0, 0, 0, 0);
    let mut failures = Vec::new();
    for (i, v) in vectors.iter().enumerate() {
        let description = v["description"].as_str().unwrap();
        let experience_id = v["experienceId"].as_str().unwrap();
        let visitor_id = v["visitorId"].as_str().unwrap();
        match v["version"].as_u64().unwrap() {
            11 => packed += 1,
            12 => anchored += 1,
            other => panic!("{rel} #{i}: unexpected version {other}"),
        }
        // README §2 step 1: one experience, the vector's variations verbatim.
        let config = json!({
            "account_id": "100",
            "project": {"id": "200"},
            "experiences": [{
                "id": experience_id,
                "key": experience_id,
                "name": format!("vector {i}"),
                "type": "a/b_fullstack",
                "audiences": [],
                "goals": [],
                "variations": v["variations"],
                "version": v["version"],
            }]
        });
        // Step 2: a fresh SDK (and store) per vector: visitor ids repeat across vectors.
        let recorder = Recorder::default();
        let core = sdk_flushing_to(config, &recorder);
        let ctx = core.create_context(visitor_id, None);
        // Step 3: no location restriction, empty visitor properties, tracking off.
        let attrs = BucketingAttributes::new()
            .ignore_location_properties(true)
            .enable_tracking(false);
        let decision = ctx.run_experience(experience_id, &attrs);
        // Step 4.
        let ok = match (v["expected"].as_str(), &decision) {
            (Some(want), Decision::Variation(got)) => {
                let mut ok = &*got.variation_id == want && &*got.experience_id == experience_id;
                // A fresh decision reports the bucket value the description quotes.
                if let Some(value) = quoted_value(description) {
                    ok &= got.bucketing_allocation == Some(value);
                    values_checked += 1;
                } else {
                    ok &= got.bucketing_allocation.is_some();
                }
                ok
            }
            // `null`: "variation not decided" (the reference's sentinel), not "not matched".
            (None, Decision::NotDecided) => true,
            _ => false,
        };
        if !ok {
            failures.push(format!(
                "#{i} {visitor_id} v{}: expected {}, got {decision:?} — {description}",
                v["version"], v["expected"]
            ));
            continue;
        }
        // Tracking off: nothing queued, nothing sent.
        assert_eq!(core.queued_events(), 0, "{rel} #{i}: tracking is off");
        assert!(core.pending_requests().is_empty(), "{rel} #{i}");
        assert_eq!(core.flush().unwrap(), 0, "{rel} #{i}");
        assert!(recorder.requests().is_empty(), "{rel} #{i}");
        passed += 1;
    }
    assert!(
        failures.is_empty(),
        "{rel}: {} of 59 vectors failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_eq!((packed, anchored), (19, 40), "{rel}: layout split");
    assert_eq!(passed, 59);
    // 43 vectors decide a variation; 39 of their descriptions quote the bucket value.
    assert_eq!(values_checked, 39, "{rel}: quoted bucket values checked");
    println!(
        "{rel}: {passed} passed, 0 skipped ({packed} packed, {anchored} anchored; {values_checked} quoted bucket values confirmed)"
    );
}

#[test]
fn bucketing_event_vectors() {
    let Some(dir) = common::conformance_dir() else {
        return;
    };
    let rel = "python-sdk/bucketing_event_vectors.json";
    let file = common::load(&dir, rel);
    let vectors = file["vectors"].as_array().unwrap();
    assert_eq!(vectors.len(), 2, "{rel}: record count");
    let mut passed = 0;
    for v in vectors {
        let experience_id = v["experienceId"].as_str().unwrap();
        let variation_id = v["variationId"].as_str().unwrap();
        let config = json!({
            "account_id": "100",
            "project": {"id": "200"},
            "experiences": [{
                "id": experience_id, "key": "the-experience", "name": "event vector",
                "type": "a/b_fullstack", "audiences": [], "goals": [],
                "variations": [{"id": variation_id, "key": "only", "status": "running", "traffic_allocation": 100}]
            }]
        });
        let recorder = Recorder::default();
        let core = sdk_flushing_to(config, &recorder);
        let ctx = core.create_context("event-visitor", None);
        let attrs = BucketingAttributes::new().ignore_location_properties(true);
        match ctx.run_experience("the-experience", &attrs) {
            Decision::Variation(b) => {
                assert_eq!(&*b.variation_id, variation_id, "{rel}");
                assert!(b.bucketing_allocation.is_some(), "{rel}: a fresh decision");
            }
            other => panic!("{rel}: {experience_id}: {other:?}"),
        }
        // A sticky repeat queues nothing more (SPEC §5.3 step 3).
        assert!(matches!(
            ctx.run_experience("the-experience", &attrs),
            Decision::Variation(ref b) if b.bucketing_allocation.is_none()
        ));
        assert_eq!(core.queued_events(), 1, "{rel}");

        // The queued payload, before delivery ...
        let pending = core.pending_requests();
        assert_eq!(pending.len(), 1, "{rel}");
        let queued = body(&pending[0]);
        assert_eq!(queued["visitors"][0]["visitorId"], "event-visitor");
        assert_eq!(
            queued["visitors"][0]["events"],
            json!([v["expected_event"]]),
            "{rel}: {experience_id}"
        );
        // ... and the body actually POSTed.
        assert_eq!(core.flush().unwrap(), 1, "{rel}");
        let sent = recorder.requests();
        assert_eq!(sent.len(), 1, "{rel}");
        assert_eq!(sent[0].body, pending[0].body, "{rel}: flushed = pending");
        assert_eq!(
            body(&sent[0])["visitors"][0]["events"][0],
            v["expected_event"],
            "{rel}: {experience_id}"
        );
        assert_eq!(core.queued_events(), 0);
        passed += 1;
    }
    assert_eq!(passed, 2);
    println!("{rel}: {passed} passed, 0 skipped");
}
