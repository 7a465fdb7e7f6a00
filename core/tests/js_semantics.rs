//! JavaScript semantics of `convert_core::js` (SPEC §0, §7.3) through the public API, and
//! property tests for `JSON.stringify` and `regexMatches`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use convert_core::js::{
    is_nan, js_trim, json_stringify, number_to_string, number_value, opt_to_js_string, opt_truthy,
    parse_float, parse_int, string_to_number, to_js_string, to_number, truthy,
};
use convert_core::keyorder::js_key_order;
use convert_core::rules::{RuleSet, compare};
use proptest::prelude::*;
use serde_json::{Map, Number, Value, json};
use std::time::{Duration, Instant};

#[test]
fn string_conversion_of_spec_section_0() {
    assert_eq!(to_js_string(&json!(100.0)), "100");
    assert_eq!(to_js_string(&json!(1e21)), "1e+21");
    assert_eq!(to_js_string(&json!(0.1 + 0.2)), "0.30000000000000004");
    assert_eq!(to_js_string(&json!(null)), "null");
    assert_eq!(opt_to_js_string(None), "undefined");
    assert_eq!(to_js_string(&json!(true)), "true");
    assert_eq!(to_js_string(&json!(false)), "false");
    assert_eq!(
        to_js_string(&json!(["a", 1, null, ["b", [2.5]]])),
        "a,1,,b,2.5"
    );
    assert_eq!(to_js_string(&json!({"k": "v"})), "[object Object]");
    assert_eq!(to_js_string(&json!(-0.0)), "0");
    assert_eq!(to_js_string(&json!(1e-7)), "1e-7");
    assert_eq!(to_js_string(&json!(0.000001)), "0.000001");
    assert_eq!(number_to_string(f64::NAN), "NaN");
    assert_eq!(number_to_string(f64::NEG_INFINITY), "-Infinity");
    // Integers beyond 2^53 are doubles in JS.
    assert_eq!(
        to_js_string(&json!(9007199254740993u64)),
        "9007199254740992"
    );
}

#[test]
fn number_conversion_of_spec_section_0() {
    assert_eq!(to_number(Some(&json!("12"))), 12.0);
    assert_eq!(to_number(Some(&json!(""))), 0.0);
    assert_eq!(to_number(Some(&json!(null))), 0.0);
    assert!(to_number(None).is_nan());
    assert_eq!(to_number(Some(&json!("0x10"))), 16.0);
    assert_eq!(to_number(Some(&json!("  \u{2029}-1.5e2\t"))), -150.0);
    assert!(to_number(Some(&json!("12px"))).is_nan());
    assert!(to_number(Some(&json!("1_000"))).is_nan());
    assert!(to_number(Some(&json!("+0x10"))).is_nan());
    assert_eq!(to_number(Some(&json!("0b11"))), 3.0);
    assert_eq!(to_number(Some(&json!("0O17"))), 15.0);
    assert_eq!(to_number(Some(&json!(["7"]))), 7.0);
    assert_eq!(string_to_number("+.5"), 0.5);
    assert!(is_nan(None));
    assert!(!is_nan(Some(&json!(null))));
    assert!(!is_nan(Some(&json!("50"))));
    assert!(is_nan(Some(&json!("abc"))));
    assert!(is_nan(Some(&json!({}))));
    assert!(!is_nan(Some(&json!([]))));
}

#[test]
fn parse_int_and_parse_float_of_spec_section_7_3() {
    // castType "integer" runs parseInt(String(value)).
    let int = |v: Value| parse_int(&to_js_string(&v));
    assert_eq!(int(json!("42.9")), 42.0);
    assert_eq!(int(json!("0x10")), 16.0);
    assert_eq!(int(json!("1e3")), 1.0);
    assert_eq!(int(json!(1e21)), 1.0);
    assert_eq!(int(json!("5e-7")), 5.0);
    assert_eq!(int(json!(" 12 ")), 12.0);
    assert!(int(json!("abc")).is_nan());
    assert!(int(json!(null)).is_nan());
    assert_eq!(int(json!("\u{a0}-0x1A")), -26.0);
    assert_eq!(int(json!("99999999999999999999")), 1e20);
    let float = |v: Value| parse_float(&to_js_string(&v));
    assert_eq!(float(json!("3.9abc")), 3.9);
    assert!(float(json!("abc")).is_nan());
    assert_eq!(float(json!("Infinity")), f64::INFINITY);
    assert_eq!(float(json!("-Infinityx")), f64::NEG_INFINITY);
    assert_eq!(float(json!(".5.5")), 0.5);
    assert_eq!(float(json!("1e")), 1.0);
    assert_eq!(float(json!("1e-2x")), 0.01);
    assert_eq!(float(json!("0x10")), 0.0);
    // NaN and infinities serialize as null.
    assert_eq!(number_value(parse_float("abc")), Value::Null);
    assert_eq!(number_value(parse_int("42.9")), json!(42));
}

#[test]
fn truthiness_and_trim() {
    for v in [json!(0), json!(-0.0), json!(""), json!(null), json!(false)] {
        assert!(!truthy(&v), "{v}");
    }
    assert!(!opt_truthy(None));
    for v in [json!({}), json!([]), json!("0"), json!("false"), json!(-1)] {
        assert!(truthy(&v), "{v}");
    }
    assert_eq!(js_trim("\u{feff}\u{a0}\u{2028}\u{3000} x \u{b}\u{c}"), "x");
    assert_eq!(js_trim("\u{200b}x"), "\u{200b}x"); // ZERO WIDTH SPACE is not JS whitespace
}

#[test]
fn stringify_key_order_and_numbers() {
    let v: Value = serde_json::from_str(
        r#"{"z":1,"4294967295":2,"10":3,"01":4,"-1":5,"2":6,"1.5":7,"4294967294":8,"a":[1.0,-0.0,1e21,1e-7,12345678901234567890]}"#,
    )
    .unwrap();
    // Array-index keys first, ascending; then the other members in the map's own order:
    // insertion order when some crate of the build enables serde_json's `preserve_order`,
    // sorted otherwise (`JSON.parse` keeps insertion order: convert-core never relies on it).
    let want = if map_keeps_insertion_order() {
        r#"{"2":6,"10":3,"4294967294":8,"z":1,"4294967295":2,"01":4,"-1":5,"1.5":7,"a":[1,0,1e+21,1e-7,12345678901234567000]}"#
    } else {
        r#"{"2":6,"10":3,"4294967294":8,"-1":5,"01":4,"1.5":7,"4294967295":2,"a":[1,0,1e+21,1e-7,12345678901234567000],"z":1}"#
    };
    assert_eq!(json_stringify(&v), want);
    assert_eq!(
        json_stringify(&json!("tab\t nl\n quote\" bs\\ ctl\u{1} del\u{7f} é 😀")),
        "\"tab\\t nl\\n quote\\\" bs\\\\ ctl\\u0001 del\u{7f} é 😀\""
    );
    assert_eq!(json_stringify(&json!([])), "[]");
    assert_eq!(json_stringify(&json!({})), "{}");
}

/// Arbitrary JSON values, with keys that are often array-index-like.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| Number::from_f64(f).map_or(Value::Null, Value::Number)),
        "\\PC{0,12}".prop_map(Value::String),
        "[\\x00-\\x1f\"\\\\a]{0,6}".prop_map(Value::String),
    ];
    let key = prop_oneof![
        "[0-9]{1,11}",
        "0[0-9]{0,3}",
        "-?[0-9a-z.]{0,5}",
        "\\PC{0,6}"
    ];
    leaf.prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((key.clone(), inner), 0..6)
                .prop_map(|pairs| Value::Object(pairs.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// Equality up to number representation (JS has only doubles) and object member order.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| same(p, q))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

/// Whether `serde_json::Map` iterates in insertion order in this build (`preserve_order`).
fn map_keeps_insertion_order() -> bool {
    let m: Map<String, Value> = [
        ("b".to_string(), Value::Null),
        ("a".to_string(), Value::Null),
    ]
    .into_iter()
    .collect();
    m.keys().next().map(String::as_str) == Some("b")
}

/// A JSON document with object members in document order, whatever map type serde_json uses.
enum Doc {
    Leaf,
    Array(Vec<Doc>),
    Object(Vec<(String, Doc)>),
}

impl<'de> serde::Deserialize<'de> for Doc {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Doc, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Doc;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("JSON")
            }
            fn visit_bool<E>(self, _: bool) -> Result<Doc, E> {
                Ok(Doc::Leaf)
            }
            fn visit_i64<E>(self, _: i64) -> Result<Doc, E> {
                Ok(Doc::Leaf)
            }
            fn visit_u64<E>(self, _: u64) -> Result<Doc, E> {
                Ok(Doc::Leaf)
            }
            fn visit_f64<E>(self, _: f64) -> Result<Doc, E> {
                Ok(Doc::Leaf)
            }
            fn visit_str<E>(self, _: &str) -> Result<Doc, E> {
                Ok(Doc::Leaf)
            }
            fn visit_unit<E>(self) -> Result<Doc, E> {
                Ok(Doc::Leaf)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut a: A) -> Result<Doc, A::Error> {
                let mut v = Vec::new();
                while let Some(x) = a.next_element()? {
                    v.push(x);
                }
                Ok(Doc::Array(v))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut a: A) -> Result<Doc, A::Error> {
                let mut v = Vec::new();
                while let Some(e) = a.next_entry()? {
                    v.push(e);
                }
                Ok(Doc::Object(v))
            }
        }
        d.deserialize_any(V)
    }
}

/// Whether every object in `out` (the text's document order) lists its members in JS order of
/// the matching object in `orig` (array-index keys ascending, then the map's own order).
fn js_ordered(orig: &Value, out: &Doc) -> bool {
    match (orig, out) {
        (Value::Array(x), Doc::Array(y)) => x.iter().zip(y).all(|(p, q)| js_ordered(p, q)),
        (Value::Object(x), Doc::Object(y)) => {
            let keys: Vec<&str> = x.keys().map(String::as_str).collect();
            let want: Vec<&str> = js_key_order(&keys).into_iter().map(|i| keys[i]).collect();
            let got: Vec<&str> = y.iter().map(|(k, _)| k.as_str()).collect();
            want == got
                && y.iter()
                    .all(|(k, d)| x.get(k).is_some_and(|v| js_ordered(v, d)))
        }
        _ => true,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// JSON.stringify output is valid JSON that parses back to the same value, in JS key order.
    #[test]
    fn stringify_parses_back(v in json_value()) {
        let text = json_stringify(&v);
        // Read back as `JSON.parse` reads it (correctly rounded, with or without serde_json's
        // `float_roundtrip`).
        let back: Value = convert_core::js::json_parse(&text).expect("valid JSON");
        prop_assert!(same(&v, &back), "{v} -> {text}");
        let doc: Doc = serde_json::from_str(&text).expect("valid JSON");
        prop_assert!(js_ordered(&v, &doc), "{v} -> {text}");
    }

    /// String(n) parses back to n (Number and parseFloat), for every finite double.
    #[test]
    fn number_strings_round_trip(n in any::<f64>().prop_filter("finite", |f| f.is_finite())) {
        let s = number_to_string(n);
        // (-0 prints as "0", and 0 == -0.)
        prop_assert_eq!(string_to_number(&s), n);
        prop_assert_eq!(parse_float(&s), n);
    }

    /// parseInt of a decimal digit string is the correctly rounded value.
    #[test]
    fn parse_int_of_digits(digits in "[0-9]{1,40}") {
        prop_assert_eq!(parse_int(&digits), digits.parse::<f64>().unwrap());
    }

    /// regexMatches never panics and finishes quickly, whatever the pattern and input.
    #[test]
    fn regex_matches_is_total_and_fast(
        pattern in prop_oneof![
            "\\PC{0,40}",
            "[-a()|*+?{}\\[\\]^$.\\\\0-9dwsbBkcxu<=!:,]{0,40}",
        ],
        input in "\\PC{0,300}",
        negated in any::<bool>(),
    ) {
        let start = Instant::now();
        let _ = compare("regexMatches", Some(&json!(input)), Some(&json!(pattern)), negated);
        let rule = RuleSet::compile(&json!({"OR": [{"AND": [{"OR_WHEN": [
            {"key": "k", "matching": {"match_type": "regexMatches", "negated": negated}, "value": pattern}
        ]}]}]}));
        let data: Map<String, Value> = [("k".to_string(), json!(input))].into_iter().collect();
        let _ = rule.evaluate(&data);
        prop_assert!(start.elapsed() < Duration::from_secs(2));
    }
}

#[test]
fn hostile_regexes_finish() {
    let long = format!("{}!", "a".repeat(100_000));
    for pattern in ["(a+)+$", "(a|aa)+$", "(a*)*b", "^(\\w+\\s?)*$", "(.*a){20}"] {
        let start = Instant::now();
        let m = compare(
            "regexMatches",
            Some(&json!(long)),
            Some(&json!(pattern)),
            false,
        );
        assert!(!m || pattern == "(.*a){20}", "{pattern}");
        assert!(start.elapsed() < Duration::from_secs(5), "{pattern}");
    }
    // Huge counted repetitions are too large for the linear engine; the backtracking one counts
    // them instead of unrolling them, so the pattern runs as in JS: no match, and negated, true.
    assert!(compare(
        "regexMatches",
        Some(&json!("a")),
        Some(&json!("(?:a{1000}){1000}")),
        true
    ));
    assert!(compare(
        "regexMatches",
        Some(&json!("a".repeat(1_000_000))),
        Some(&json!("^(?:a{1000}){1000}$")),
        false
    ));
}
