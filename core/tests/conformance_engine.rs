//! Cross-SDK vectors for the pure engine: hashes, bucket values, layouts, operators and rule trees.
//! Each runner asserts how many vectors it ran, so an empty or truncated file fails.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use convert_core::bucketing::{AnchoredLayout, ArmSpec, PackedLayout, is_anchored, select_bucket};
use convert_core::hash::{bucket_value, murmur3_32};
use convert_core::rules::{RuleSet, compare};
use serde_json::{Map, Value};

fn arr(v: &Value) -> &Vec<Value> {
    v.as_array().expect("array")
}

#[test]
fn ruby_hash_vectors() {
    let Some(dir) = common::conformance_dir() else {
        return;
    };
    let file = common::load(&dir, "ruby-sdk/test-vectors.json");
    let mut n = 0;
    for v in arr(&file) {
        let input = v["input"].as_str().unwrap();
        let seed = v["seed"].as_u64().unwrap() as u32;
        let expected = v["expected"].as_u64().unwrap() as u32;
        assert_eq!(murmur3_32(input.as_bytes(), seed), expected, "{v}");
        if seed == 9999 {
            let value = ((f64::from(expected) / 4_294_967_296.0) * 10000.0).trunc() as u32;
            assert_eq!(bucket_value("", input, 9999, 10000.0), value, "{v}");
        }
        n += 1;
    }
    assert_eq!(n, 75);
    println!("ruby-sdk/test-vectors.json: {n} passed, 0 skipped");
}

#[test]
fn python_hash_vectors() {
    let Some(dir) = common::conformance_dir() else {
        return;
    };
    let file = common::load(&dir, "python-sdk/bucketing_vectors.json");
    let mut n = 0;
    for v in arr(&file["vectors"]) {
        let input = v["value"].as_str().unwrap();
        let seed = v["seed"].as_u64().unwrap() as u32;
        assert_eq!(
            u64::from(murmur3_32(input.as_bytes(), seed)),
            v["expected"].as_u64().unwrap(),
            "{v}"
        );
        n += 1;
    }
    assert_eq!(n, 80);
    println!("python-sdk/bucketing_vectors.json: {n} passed, 0 skipped");
}

#[test]
fn android_hash_parity_vectors() {
    let Some(dir) = common::conformance_dir() else {
        return;
    };
    let file = common::load(&dir, "android-sdk/hash-parity-vectors.json");
    let mut n = 0;
    for v in arr(&file) {
        let seed = v["seed"].as_u64().unwrap() as u32;
        let value = bucket_value(
            v["experienceId"].as_str().unwrap(),
            v["visitorId"].as_str().unwrap(),
            seed,
            10000.0,
        );
        assert_eq!(
            u64::from(value),
            v["expectedValue"].as_u64().unwrap(),
            "{}",
            v["description"]
        );
        let buckets: Vec<(String, Value)> = v["buckets"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, w)| (k.clone(), w.clone()))
            .collect();
        assert_eq!(
            select_bucket(&buckets, f64::from(value)),
            v["expectedVariationId"].as_str(),
            "{}",
            v["description"]
        );
        n += 1;
    }
    assert_eq!(n, 69);
    println!("android-sdk/hash-parity-vectors.json: {n} passed (138 checks), 0 skipped");
}

fn run_layout_vectors(rel: &str) {
    let Some(dir) = common::conformance_dir() else {
        return;
    };
    let file = common::load(&dir, rel);
    let (mut packed, mut anchored) = (0, 0);
    let mut tags = String::new();
    for v in arr(&file) {
        let desc = v["description"].as_str().unwrap();
        tags.push_str(desc);
        let variations = arr(&v["variations"]);
        let ids: Vec<Option<String>> = variations
            .iter()
            .map(|x| x.get("id").and_then(Value::as_str).map(str::to_string))
            .collect();
        let arms: Vec<ArmSpec<'_>> = variations
            .iter()
            .zip(&ids)
            .map(|(x, id)| ArmSpec {
                id: id.as_deref().filter(|s| !s.is_empty()),
                traffic_allocation: x.get("traffic_allocation"),
                status: x.get("status"),
            })
            .collect();
        let value = f64::from(bucket_value(
            v["experienceId"].as_str().unwrap(),
            v["visitorId"].as_str().unwrap(),
            9999,
            10000.0,
        ));
        let chosen = if is_anchored(v.get("version")) {
            anchored += 1;
            AnchoredLayout::build(&arms).select(value)
        } else {
            packed += 1;
            PackedLayout::build(&arms).select(value)
        };
        let got = chosen.and_then(|i| ids[i].as_deref());
        assert_eq!(got, v["expected"].as_str(), "{desc} (bucket value {value})");
    }
    assert_eq!((packed, anchored), (19, 40), "{rel}");
    for tag in [
        "packed-regression",
        "anchored-basic-thirds",
        "per-sliver-admission",
        "anchored-idle",
        "stopped-arm-stability",
        "ta-zero-width",
        "nan-default",
        "single-arm-v11-eq-v12",
        "100pct-total-v11-eq-v12",
        "boundary-hit",
        "total-weight-zero",
    ] {
        assert!(
            tags.contains(&format!("[{tag}]")),
            "tag {tag} missing from {rel}"
        );
    }
    println!(
        "{rel}: {} passed ({packed} packed, {anchored} anchored), 0 skipped",
        packed + anchored
    );
}

#[test]
fn js_cross_sdk_bucketing_vectors() {
    run_layout_vectors("javascript-sdk/cross-sdk-bucketing-vectors.json");
}

#[test]
fn python_anchored_bucketing_vectors() {
    run_layout_vectors("python-sdk/anchored_bucketing_vectors.json");
}

/// Vectors whose expectation contradicts the reference JavaScript SDK (conformance README §7 and
/// Python §2): what the reference gives instead.
fn js_override(method: &str, case: &Value) -> Option<bool> {
    (method == "isIn" && case["value"] == "A" && case["testAgainst"] == "a|b|c").then_some(false)
}

fn run_rule_file(rel: &str, operators: usize, trees: usize) {
    let Some(dir) = common::conformance_dir() else {
        return;
    };
    let file = common::load(&dir, rel);
    let (mut ops, mut walks, mut overridden) = (0, 0, 0);
    for group in arr(&file["comparison_operators"]) {
        let method = group["method"].as_str().unwrap();
        for case in arr(&group["cases"]) {
            let got = compare(
                method,
                Some(&case["value"]),
                Some(&case["testAgainst"]),
                case["negation"].as_bool().unwrap_or(false),
            );
            let want = match js_override(method, case) {
                Some(js) => {
                    overridden += 1;
                    js
                }
                None => case["expected"].as_bool().unwrap(),
            };
            assert_eq!(got, want, "{method}: {case}");
            ops += 1;
        }
    }
    for case in arr(&file["rule_evaluation"]) {
        let data: Map<String, Value> = case["data"].as_object().cloned().unwrap_or_default();
        let got = RuleSet::compile(&case["ruleSet"])
            .evaluate(&data)
            .is_match();
        let want = if case.get("keysCaseSensitive") == Some(&Value::Bool(false)) {
            // Keys are always case-sensitive, as in the reference (no switch is offered).
            overridden += 1;
            false
        } else {
            case["expected"].as_bool().unwrap()
        };
        assert_eq!(got, want, "{}", case["description"]);
        walks += 1;
    }
    assert_eq!((ops, walks), (operators, trees), "{rel}");
    println!(
        "{rel}: {} passed ({ops} operators, {walks} rule trees), {overridden} asserted with the reference's answer instead of the file's",
        ops + walks
    );
}

#[test]
fn ruby_rule_vectors() {
    run_rule_file("ruby-sdk/rule-test-vectors.json", 65, 12);
}

#[test]
fn ruby_rule_extension_vectors() {
    run_rule_file("ruby-sdk/rule-test-vectors-ruby-extensions.json", 10, 5);
}

#[test]
fn python_rule_vectors() {
    let Some(dir) = common::conformance_dir() else {
        return;
    };
    let file = common::load(&dir, "python-sdk/rule_vectors.json");
    let (mut n, mut overridden) = (0, 0);
    for v in arr(&file["vectors"]) {
        let data: Map<String, Value> = v["data"].as_object().cloned().unwrap_or_default();
        let got = RuleSet::compile(&v["rule"]).evaluate(&data).is_match();
        let want = if v["id"] == "not_exists_missing_key" {
            // The reference gives false: only exists/doesNotExist look at a missing key.
            overridden += 1;
            false
        } else {
            v["expected"].as_bool().unwrap()
        };
        assert_eq!(got, want, "{}", v["id"]);
        n += 1;
    }
    assert_eq!(n, 44);
    println!(
        "python-sdk/rule_vectors.json: {n} passed, {overridden} asserted with the reference's answer (not_exists_missing_key)"
    );
}
