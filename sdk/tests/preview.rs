//! Preview (QA) mode, the preview parameter parser, and serializable decisions.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use convert_sdk::{
    BucketingAttributes, ConversionAttributes, ConversionOutcome, Core, Decision, EventKind,
    NotMatchedReason, PreviewError, parse_preview_param,
};
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

fn core() -> Core {
    Core::builder()
        .config(json!({
            "account_id": "1", "project": {"id": "2"},
            "experiences": [
                {"id": "100", "key": "paused-exp", "status": "paused", "environment": "production",
                 "audiences": ["900"], "settings": {"matching_options": {"audiences": "all"}},
                 "variations": [
                    {"id": "101", "key": "control", "traffic_allocation": 100},
                    {"id": "102", "key": "stopped-one", "status": "stopped", "traffic_allocation": 0}]},
                {"id": "200", "key": "open", "variations": [{"id": "201", "key": "only", "traffic_allocation": 100}]}
            ],
            "audiences": [{"id": "900", "key": "never", "rules": {"OR": [{"AND": [{"OR_WHEN": [
                {"key": "x", "matching": {"match_type": "equals", "negated": false}, "value": "nope"}]}]}]}}],
            "goals": [{"id": "7", "key": "goal"}]
        }))
        .tracking(false)
        .build()
        .unwrap()
}

#[test]
fn preview_forces_a_variation_and_leaves_no_trace() {
    let core = core();
    let events = Arc::new(AtomicUsize::new(0));
    let e = Arc::clone(&events);
    core.on(EventKind::All, move |_| {
        e.fetch_add(1, Ordering::SeqCst);
    });
    let ready_events = events.load(Ordering::SeqCst);
    let mut ctx = core.create_context("qa-visitor", None);
    let attrs = BucketingAttributes::new();
    assert_eq!(
        ctx.run_experience("paused-exp", &attrs),
        Decision::NotMatched(NotMatchedReason::Environment)
    );

    ctx.set_preview("100", "102").unwrap();
    assert!(ctx.is_preview());
    match ctx.run_experience("paused-exp", &attrs) {
        Decision::Variation(v) => {
            assert_eq!(&*v.variation_id, "102");
            assert_eq!(v.bucketing_allocation, None);
        }
        other => panic!("{other:?}"),
    }
    // Other experiences decide normally but nothing is stored or tracked.
    assert!(matches!(
        ctx.run_experience("open", &attrs),
        Decision::Variation(_)
    ));
    let all = ctx.run_experiences(&attrs);
    assert_eq!(all.last().map(|v| &*v.variation_id), Some("102"));
    assert_eq!(
        ctx.track_conversion("goal", &ConversionAttributes::new())
            .unwrap(),
        ConversionOutcome::Preview
    );
    ctx.update_visitor_properties(json!({"plan": "x"}).as_object().cloned().unwrap());
    assert!(
        ctx.get_visitor_data().is_empty(),
        "{:?}",
        ctx.get_visitor_data()
    );
    assert_eq!(core.queued_events(), 0);
    assert_eq!(
        events.load(Ordering::SeqCst),
        ready_events,
        "no events in preview"
    );

    ctx.clear_preview();
    assert!(matches!(
        ctx.run_experience("open", &attrs),
        Decision::Variation(_)
    ));
    assert_eq!(core.queued_events(), 1);
}

#[test]
fn preview_rejects_unknown_ids() {
    let core = core();
    let mut ctx = core.create_context("qa", None);
    assert_eq!(
        ctx.set_preview("999", "1"),
        Err(PreviewError::UnknownExperience("999".into()))
    );
    assert!(matches!(
        ctx.set_preview("100", "999"),
        Err(PreviewError::UnknownVariation { .. })
    ));
    assert!(!ctx.is_preview());
}

#[test]
fn preview_param_parsing() {
    assert_eq!(
        parse_preview_param("123.456"),
        Some(("123".into(), "456".into()))
    );
    for bad in [
        "", "123", "123.", ".456", "a.b", "12a.34", "1.2.3", "  ", "-1.2", "1 .2",
    ] {
        assert_eq!(parse_preview_param(bad), None, "{bad:?}");
    }
}

#[test]
fn decisions_serialize() {
    let core = core();
    let ctx = core.create_context("v", None);
    let d = ctx.run_experience("open", &BucketingAttributes::new());
    let v = serde_json::to_value(&d).unwrap();
    assert_eq!(v["type"], "variation");
    assert_eq!(v["value"]["variationId"], "201");
    assert_eq!(v["value"]["experienceKey"], "open");
    assert!(v["value"]["bucketingAllocation"].is_u64());
    assert_eq!(
        serde_json::to_value(Decision::NotMatched(NotMatchedReason::NoVisitorId)).unwrap(),
        json!({"type": "notMatched", "value": "noVisitorId"})
    );
    let f = ctx.run_features(&BucketingAttributes::new()).unwrap();
    assert!(serde_json::to_value(&f).unwrap().is_array());
    let c = ctx
        .track_conversion("goal", &ConversionAttributes::new())
        .unwrap();
    assert_eq!(
        serde_json::to_value(c).unwrap(),
        json!({"type": "converted", "events": 1})
    );
}
