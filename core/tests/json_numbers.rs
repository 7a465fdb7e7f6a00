//! Config numbers are the doubles JavaScript's `JSON.parse` yields (correctly rounded), whether or
//! not some crate of the build enables serde_json's `float_roundtrip` feature (issue 12, item 7).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use convert_core::ProjectConfig;
use convert_core::rules::RuleOutcome;
use serde_json::{Map, Value, json};

/// Read by serde_json 1.0.154 without `float_roundtrip` as `123.45678901234568` (one ULP up);
/// `JSON.parse("123.45678901234567")` is `123.45678901234567`, the correctly rounded double.
const MISROUNDED: &str = "123.45678901234567";

fn config(value: &str) -> String {
    format!(
        r#"{{"account_id":"1","project":{{"id":"2"}},"audiences":[{{"id":"7","key":"a","rules":
        {{"OR":[{{"AND":[{{"OR_WHEN":[{{"rule_type":"custom","key":"score",
        "matching":{{"match_type":"equals","negated":false}},"value":{value}}}]}}]}}]}}}}]}}"#
    )
}

#[test]
fn config_numbers_are_read_like_json_parse() {
    let cfg = ProjectConfig::from_json(&config(MISROUNDED)).expect("valid config");
    let served = &cfg.raw()["audiences"][0]["rules"]["OR"][0]["AND"][0]["OR_WHEN"][0]["value"];
    let want: f64 = 123.456_789_012_345_67;
    assert_eq!(served.as_f64().map(f64::to_bits), Some(want.to_bits()));

    // The visitor's value is the same double: the rule matches, as it does in JavaScript.
    let mut visitor = Map::new();
    visitor.insert("score".into(), json!(want));
    let rules = cfg.audiences[0].rules.as_ref().expect("rules");
    assert_eq!(rules.evaluate(&visitor), RuleOutcome::Matched);
    // …and the neighbouring double a mis-rounding parser would have produced does not.
    visitor.insert("score".into(), json!(f64::from_bits(want.to_bits() + 1)));
    assert_eq!(rules.evaluate(&visitor), RuleOutcome::NotMatched);
}

#[test]
fn stored_numbers_survive_a_round_trip_through_the_store() {
    let want: f64 = 2.729_254_981_960_025e-119;
    let mut data = convert_core::StoreData::default();
    data.segments_mut().insert("x".into(), json!(want));
    let back = convert_core::StoreData::from_json(&data.to_json()).expect("valid record");
    let got = back
        .segments()
        .and_then(|s| s.get("x"))
        .and_then(Value::as_f64);
    assert_eq!(got.map(f64::to_bits), Some(want.to_bits()));
    assert_eq!(back, data);
}
