//! The public surface an integrator touches: `Decision` helpers, `&str` accessors, re-exported
//! explain steps, and option structs built with `Default` + setters (they are non-exhaustive).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::time::Duration;

use convert_sdk::{BucketingAttributes, Decision, EventsOptions, RetryPolicy, Step, Str};

mod support;

use support::demo_core as core;

#[test]
fn decision_helpers_agree_with_the_variant() {
    let core = core();
    let attrs = BucketingAttributes::new()
        .location_property("url", "https://shop.example/checkout")
        .visitor_property("plan", "premium");
    let d = core
        .create_context("visitor-1", None)
        .run_experience("checkout-button", &attrs);
    let Decision::Variation(v) = &d else {
        panic!("{d:?}")
    };
    assert!(d.is_variation());
    assert_eq!(d.variation_id(), Some(&*v.variation_id));
    assert_eq!(d.variation_key(), v.variation_key.as_deref());
    assert!(d.variation_key().is_some());
    assert_eq!(v.experience_key(), "checkout-button");
    assert_eq!(d.variation().map(|v| v.variation_id()), d.variation_id());
    // The public string type compares with &str.
    let key: &Str = &v.experience_key;
    assert_eq!(key, "checkout-button");

    // Without the audience's data: no variation, and every helper says so.
    let none = core.create_context("visitor-2", None).run_experience(
        "checkout-button",
        &BucketingAttributes::new().location_property("url", "https://shop.example/checkout"),
    );
    assert!(!none.is_variation(), "{none:?}");
    assert_eq!(none.variation_key(), None);
    assert_eq!(none.variation_id(), None);
}

#[test]
fn explain_returns_reexported_steps() {
    let core = core();
    let (d, steps): (Decision, Vec<Step>) =
        core.create_context("visitor-1", None).explain_experience(
            "checkout-button",
            &BucketingAttributes::new()
                .location_property("url", "https://shop.example/checkout")
                .visitor_property("plan", "premium"),
        );
    assert!(d.is_variation());
    assert!(
        steps
            .iter()
            .any(|s| matches!(s, Step::Bucket { .. } | Step::Sticky(_))),
        "{steps:?}"
    );
}

#[test]
fn feature_accessors_borrow() {
    let core = core();
    let f = core
        .create_context("visitor-1", None)
        .run_feature("search-v2", &BucketingAttributes::new());
    for e in &f.entries {
        assert_eq!(e.feature_key(), e.feature_key.as_deref());
        assert_eq!(e.variation_key(), e.variation_key.as_deref());
    }
    assert!(
        f.entries
            .iter()
            .any(|e| e.feature_key() == Some("search-v2"))
    );
}

#[test]
fn option_structs_are_built_with_setters() {
    let retry = RetryPolicy::default()
        .initial(Duration::from_millis(5))
        .max(Duration::from_millis(40));
    assert_eq!(
        (retry.initial, retry.max),
        (Duration::from_millis(5), Duration::from_millis(40))
    );
    let events = EventsOptions::default()
        .batch_size(3)
        .release_interval(Duration::from_millis(20))
        .max_queue(50);
    assert_eq!((events.batch_size, events.max_queue), (3, 50));
    assert_eq!(events.release_interval, Duration::from_millis(20));
    #[cfg(feature = "redis")]
    {
        let o = convert_sdk::stores::RedisOptions::default()
            .prefix("app:")
            .ttl(Duration::from_secs(60))
            .max_connections(4);
        assert_eq!(
            (o.prefix.as_str(), o.ttl, o.max_connections),
            ("app:", Some(Duration::from_secs(60)), 4)
        );
    }
    #[cfg(feature = "sqlite")]
    {
        let o = convert_sdk::stores::SqliteOptions::default().ttl(Duration::from_secs(60));
        assert_eq!(o.ttl, Some(Duration::from_secs(60)));
    }
}
