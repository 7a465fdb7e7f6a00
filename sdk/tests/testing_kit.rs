//! The `test-util` kit: configs built in code decide as described, forcing sticks, and the
//! recording transport sees what was tracked.
#![cfg(feature = "test-util")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use convert_sdk::testing::{ForceError, TestConfig, VariableType, force_variation};
use convert_sdk::{BucketingAttributes, ConversionAttributes, Decision, NotMatchedReason};

fn config() -> TestConfig {
    TestConfig::new()
        .feature(
            "search-v2",
            [
                ("max_results", VariableType::Integer),
                ("label", VariableType::String),
            ],
        )
        .audience("premium", "plan", "premium")
        .experience("search-test", |e| {
            e.audience("premium")
                .variation("control", 50)
                .variation_with_feature(
                    "wide",
                    50,
                    "search-v2",
                    [
                        ("max_results", serde_json::json!("50")),
                        ("label", serde_json::json!("Wide")),
                    ],
                )
        })
        .goal("purchase")
}

#[test]
fn the_config_decides_as_built() {
    let (sdk, _) = config().sdk().unwrap();
    let attrs = BucketingAttributes::new();
    let mut seen = std::collections::BTreeMap::new();
    for i in 0..200 {
        let premium = sdk.create_context(format!("p{i}"), [("plan", "premium")]);
        let d = premium.run_experience("search-test", &attrs);
        *seen
            .entry(d.variation_key().unwrap().to_string())
            .or_insert(0) += 1;
        let f = premium.run_feature("search-v2", &attrs);
        // The variable is declared an integer: the string "50" is cast.
        assert_eq!(f.is_enabled(), d.variation_key() == Some("wide"));
        if f.is_enabled() {
            assert_eq!(f.variable::<i64>("max_results").unwrap(), 50);
            assert_eq!(f.variable::<String>("label").unwrap(), "Wide");
        }
        let basic = sdk.create_context(format!("b{i}"), [("plan", "basic")]);
        assert_eq!(
            basic.run_experience("search-test", &attrs),
            Decision::NotMatched(NotMatchedReason::Audience)
        );
    }
    // Both arms of a 50/50 split are used.
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(seen.values().all(|n| *n > 50), "{seen:?}");
}

#[test]
fn forced_variations_stick_and_events_are_recorded() {
    let (sdk, tracked) = config().sdk().unwrap();
    let attrs = BucketingAttributes::new();
    for i in 0..40 {
        let want = if i % 2 == 0 { "wide" } else { "control" };
        let v = sdk.create_context(format!("v{i}"), [("plan", "premium")]);
        force_variation(&v, "search-test", want).unwrap();
        assert_eq!(
            v.run_experience("search-test", &attrs).variation_key(),
            Some(want)
        );
        assert_eq!(
            v.run_feature("search-v2", &attrs).is_enabled(),
            want == "wide"
        );
    }
    let v = sdk.create_context("buyer", [("plan", "premium")]);
    force_variation(&v, "search-test", "wide").unwrap();
    v.run_experience("search-test", &attrs);
    v.track_conversion("purchase", &ConversionAttributes::new().revenue(10.0))
        .unwrap();
    sdk.flush().unwrap();
    let events = tracked.events();
    let buyer: Vec<_> = events.iter().filter(|e| e.visitor_id == "buyer").collect();
    assert!(
        buyer.iter().any(|e| e.event_type == "conversion"),
        "{buyer:?}"
    );
    assert!(!tracked.requests().is_empty());

    assert!(matches!(
        force_variation(&v, "nope", "wide"),
        Err(ForceError::UnknownExperience(_))
    ));
    assert!(matches!(
        force_variation(&v, "search-test", "nope"),
        Err(ForceError::UnknownVariation { .. })
    ));
    // A context without a visitor id stores nothing: forcing says so instead of doing nothing.
    assert!(matches!(
        force_variation(&sdk.create_context("", None), "search-test", "wide"),
        Err(ForceError::NoVisitorId)
    ));
}

#[test]
fn recorded_events_keep_numbers_exact() {
    // serde_json without `float_roundtrip` (convert-sdk does not enable it) would decode the sent
    // `123.45678901234567` as the neighbouring double; the recording transport decodes as
    // `JSON.parse` does.
    let amount: f64 = 123.456_789_012_345_67;
    let (sdk, tracked) = config().sdk().unwrap();
    let v = sdk.create_context("buyer", [("plan", "premium")]);
    v.track_conversion("purchase", &ConversionAttributes::new().revenue(amount))
        .unwrap();
    sdk.flush().unwrap();
    let sent: Vec<f64> = tracked
        .events()
        .iter()
        .filter(|e| e.event_type == "conversion")
        .flat_map(|e| e.data["goalData"].as_array().cloned().unwrap_or_default())
        .filter(|d| d["key"] == "amount")
        .filter_map(|d| d["value"].as_f64())
        .collect();
    assert_eq!(
        sent.iter().map(|f| f.to_bits()).collect::<Vec<_>>(),
        [amount.to_bits()]
    );
}
