//! Cross-SDK rule vectors (conformance README §1.6, §7 and Python §2) run through
//! [`convert_core::rules`]: operator cases via `compare`, rule trees via `RuleSet`.
//!
//! Every runner counts what it checked and asserts the totals, so an empty, truncated or renamed
//! file fails instead of passing silently. Vectors whose expectation contradicts the reference
//! JavaScript SDK are listed in [`SKIPS`] with the reason, and asserted with the reference's
//! answer instead of the file's.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use convert_core::rules::{RuleSet, compare};
use serde_json::{Map, Value};
use std::path::Path;

/// A vector whose file expectation is not what the reference JS SDK does.
struct Skip {
    file: &'static str,
    /// The operator method, or `""` for a rule-tree case.
    method: &'static str,
    /// Matches the case: for operators, `value` and `testAgainst` (as JSON text); for trees, the
    /// `category` (Ruby) or `id` (Python).
    selector: &'static str,
    /// What the JS reference answers (asserted instead of the file's expectation).
    js_answer: bool,
    reason: &'static str,
}

const RUBY: &str = "ruby-sdk/rule-test-vectors.json";
const RUBY_EXT: &str = "ruby-sdk/rule-test-vectors-ruby-extensions.json";
const PYTHON: &str = "python-sdk/rule_vectors.json";

const SKIPS: &[Skip] = &[
    Skip {
        file: RUBY,
        method: "isIn",
        selector: r#""A" "a|b|c""#,
        js_answer: false,
        reason: "isIn keeps the case of the visitor's tokens: \"A\" is not among the lower-cased \
                 rule items (the file comes from the PHP SDK)",
    },
    Skip {
        file: RUBY,
        method: "",
        selector: "case_insensitive_keys",
        js_answer: false,
        reason: "keys are always case-sensitive, as in the JS SDK (whose keys_case_sensitive switch \
                 cannot be turned off); we offer no such switch, so {\"COUNTRY\"} does not match \
                 key \"country\"",
    },
    Skip {
        file: PYTHON,
        method: "",
        selector: "not_exists_missing_key",
        js_answer: false,
        reason: "on a missing key JS only runs exists/doesNotExist; not_exists is false there",
    },
];

fn skip_for(file: &str, method: &str, selector: &str) -> Option<&'static Skip> {
    SKIPS
        .iter()
        .find(|s| s.file == file && s.method == method && s.selector == selector)
}

fn arr(v: &Value) -> &Vec<Value> {
    v.as_array().expect("array")
}

fn data_of(v: &Value) -> Map<String, Value> {
    v.as_object().cloned().expect("data object")
}

/// Counts for one file.
#[derive(Default, Debug, PartialEq, Eq)]
struct Tally {
    operators: usize,
    trees: usize,
    /// Asserted with the JS reference's answer (see [`SKIPS`]).
    overridden: usize,
}

impl Tally {
    fn passed_as_is(&self) -> usize {
        self.operators + self.trees - self.overridden
    }
}

/// Checks one result against the file's expectation, or the reference's answer for a skip.
fn check(tally: &mut Tally, skip: Option<&Skip>, got: bool, expected: &Value, what: &str) {
    let want = match skip {
        Some(s) => {
            tally.overridden += 1;
            assert_ne!(
                Some(s.js_answer),
                expected.as_bool(),
                "skip no longer needed: {what}"
            );
            s.js_answer
        }
        None => expected.as_bool().expect("boolean expectation"),
    };
    let reason = skip.map_or("", |s| s.reason);
    assert_eq!(got, want, "{what} {reason}");
}

fn run_ruby_file(dir: &Path, rel: &'static str) -> Tally {
    let file = common::load(dir, rel);
    let mut t = Tally::default();
    for group in arr(&file["comparison_operators"]) {
        let method = group["method"].as_str().expect("method");
        for case in arr(&group["cases"]) {
            // A member absent from the case is JS undefined; JSON null is null.
            let value = case.get("value");
            let test = case.get("testAgainst");
            let negation = case["negation"].as_bool().unwrap_or(false);
            let got = compare(method, value, test, negation);
            let selector = format!(
                "{} {}",
                value.map_or("undefined".into(), Value::to_string),
                test.map_or("undefined".into(), Value::to_string)
            );
            let skip = skip_for(rel, method, &selector);
            check(
                &mut t,
                skip,
                got,
                &case["expected"],
                &format!("{method}: {case}"),
            );
            t.operators += 1;
        }
    }
    for case in arr(&file["rule_evaluation"]) {
        let category = case["category"].as_str().unwrap_or_default();
        let got = RuleSet::compile(&case["ruleSet"])
            .evaluate(&data_of(&case["data"]))
            .is_match();
        let skip = skip_for(rel, "", category);
        if case.get("keysCaseSensitive") == Some(&Value::Bool(false)) {
            assert!(
                skip.is_some(),
                "a case-insensitive case must be listed: {category}"
            );
        }
        check(
            &mut t,
            skip,
            got,
            &case["expected"],
            &format!("{category}: {case}"),
        );
        t.trees += 1;
    }
    t
}

#[test]
fn ruby_rule_test_vectors() {
    let Some(dir) = common::conformance_dir() else {
        return;
    };
    let t = run_ruby_file(&dir, RUBY);
    println!(
        "{RUBY}: {}/{} passed as given, {} asserted with the JS answer (skip list)",
        t.passed_as_is(),
        t.operators + t.trees,
        t.overridden
    );
    assert_eq!(
        t,
        Tally {
            operators: 65,
            trees: 12,
            overridden: 2
        }
    );
    assert_eq!(t.passed_as_is(), 75);
}

#[test]
fn ruby_rule_test_vector_extensions() {
    let Some(dir) = common::conformance_dir() else {
        return;
    };
    let t = run_ruby_file(&dir, RUBY_EXT);
    println!(
        "{RUBY_EXT}: {}/{} passed as given, {} asserted with the JS answer (skip list)",
        t.passed_as_is(),
        t.operators + t.trees,
        t.overridden
    );
    assert_eq!(
        t,
        Tally {
            operators: 10,
            trees: 5,
            overridden: 0
        }
    );
}

#[test]
fn python_rule_vectors() {
    let Some(dir) = common::conformance_dir() else {
        return;
    };
    let file = common::load(&dir, PYTHON);
    let mut t = Tally::default();
    for v in arr(&file["vectors"]) {
        let id = v["id"].as_str().expect("id");
        let got = RuleSet::compile(&v["rule"])
            .evaluate(&data_of(&v["data"]))
            .is_match();
        check(&mut t, skip_for(PYTHON, "", id), got, &v["expected"], id);
        t.trees += 1;
    }
    println!(
        "{PYTHON}: {}/{} passed as given, {} asserted with the JS answer (skip list)",
        t.passed_as_is(),
        t.trees,
        t.overridden
    );
    assert_eq!(
        t,
        Tally {
            operators: 0,
            trees: 44,
            overridden: 1
        }
    );
}

#[test]
fn every_skip_was_used() {
    // Each skip names a case that exists (a renamed case would otherwise make its skip dead).
    let Some(dir) = common::conformance_dir() else {
        return;
    };
    for skip in SKIPS {
        let file = common::load(&dir, skip.file);
        let found = if skip.file == PYTHON {
            arr(&file["vectors"])
                .iter()
                .any(|v| v["id"] == skip.selector)
        } else if skip.method.is_empty() {
            arr(&file["rule_evaluation"])
                .iter()
                .any(|c| c["category"] == skip.selector)
        } else {
            arr(&file["comparison_operators"])
                .iter()
                .filter(|g| g["method"] == skip.method)
                .flat_map(|g| arr(&g["cases"]))
                .any(|c| {
                    let sel = format!("{} {}", c["value"], c["testAgainst"]);
                    sel == skip.selector
                })
        };
        assert!(found, "skip not found in {}: {}", skip.file, skip.selector);
    }
}
