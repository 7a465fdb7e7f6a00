//! Every form of visitor data the public API accepts ([`Attributes`] conversions) compiles at
//! every method taking visitor data, and decides exactly as the equivalent `serde_json::Map`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::collections::{BTreeMap, HashMap};

use convert_sdk::{
    Attributes, AttributesError, BucketingAttributes, ConversionAttributes, Core, Decision,
};
use serde_json::{Map, Value, json};

mod support;

use support::demo_core as new_core;

fn map(v: Value) -> Map<String, Value> {
    v.as_object().cloned().unwrap()
}

#[derive(serde::Serialize)]
struct Visitor {
    plan: &'static str,
}

/// The same `{"plan": "premium"}` in every accepted form.
fn premium_forms() -> Vec<(&'static str, Attributes)> {
    vec![
        ("Map", map(json!({"plan": "premium"})).into()),
        ("&Map", (&map(json!({"plan": "premium"}))).into()),
        ("Some(Map)", Some(map(json!({"plan": "premium"}))).into()),
        ("json!", json!({"plan": "premium"}).into()),
        (
            "HashMap<String, String>",
            HashMap::from([("plan".to_string(), "premium".to_string())]).into(),
        ),
        (
            "HashMap<&str, &str>",
            HashMap::from([("plan", "premium")]).into(),
        ),
        (
            "BTreeMap",
            BTreeMap::from([("plan", json!("premium"))]).into(),
        ),
        ("[(k, v)]", [("plan", "premium")].into()),
        ("Vec<(k, v)>", vec![("plan", "premium")].into()),
        (
            "iterator",
            ["plan"].iter().map(|k| (*k, "premium")).collect(),
        ),
        (
            "Serialize",
            Attributes::from_serialize(&Visitor { plan: "premium" }).unwrap(),
        ),
        ("builder", Attributes::new().with("plan", "premium")),
    ]
}

/// Compile-level: each method taking visitor data accepts each form directly.
#[test]
fn every_method_accepts_every_form() {
    let core = new_core();
    let ctx = core.create_context("v", None);
    let _ = core.create_context("v", Some(map(json!({"plan": "premium"}))));
    let _ = core.create_context("v", json!({"plan": "premium"}));
    let _ = core.create_context("v", HashMap::from([("cart_items", 3_i64)]));
    let _ = core.create_context("v", [("plan", "premium")]);
    let _ = core.create_context("v", Attributes::new());

    ctx.update_visitor_properties(map(json!({"a": 1})));
    ctx.update_visitor_properties(HashMap::from([("a".to_string(), "x".to_string())]));
    ctx.update_visitor_properties([("a", 1)]);
    ctx.update_visitor_properties(json!({"a": 1}));

    ctx.set_default_segments(map(json!({"country": "US"})));
    ctx.set_default_segments([("country", "US")]);
    ctx.set_default_segments(json!({"country": "US"}));

    ctx.run_custom_segments(&["big-spenders"], None).unwrap();
    ctx.run_custom_segments(&["big-spenders"], [("lifetime_value", 10)])
        .unwrap();
    ctx.run_custom_segments(&["big-spenders"], map(json!({"lifetime_value": 10})))
        .unwrap();

    let _ = BucketingAttributes::new()
        .visitor_properties(HashMap::from([("cart_items", 3_i64)]))
        .location_properties(json!({"url": "https://shop.example/"}));
    let _ = BucketingAttributes::new()
        .visitor_properties(map(json!({"plan": "premium"})))
        .location_properties([("url", "https://shop.example/")]);
    let _ = ConversionAttributes::new().rule_data([("amount", 10)]);
    let _ = ConversionAttributes::new().rule_data(json!({"amount": 10}));
}

fn decide(core: &Core, visitor: &str, ctx_attrs: Attributes, call: Option<Attributes>) -> Decision {
    let ctx = core.create_context(visitor, ctx_attrs);
    let mut attrs = BucketingAttributes::new()
        .location_property("url", "https://shop.example/checkout")
        .enable_tracking(false);
    if let Some(call) = call {
        attrs = attrs.visitor_properties(call);
    }
    ctx.run_experience("checkout-button", &attrs)
}

/// Each form decides as the `Map` does, as context attributes and as call properties, and the
/// data matters (without it no visitor is bucketed).
#[test]
fn every_form_decides_like_the_map() {
    let core = new_core();
    for i in 0..20 {
        let visitor = format!("visitor-{i}");
        let reference = decide(
            &core,
            &visitor,
            map(json!({"plan": "premium"})).into(),
            None,
        );
        assert!(matches!(reference, Decision::Variation(_)), "{reference:?}");
        let without = decide(&core, &format!("{visitor}-plain"), Attributes::new(), None);
        assert!(!matches!(without, Decision::Variation(_)), "{without:?}");
        for (name, form) in premium_forms() {
            // A fresh visitor id per form so no stored decision is reused.
            let id = format!("{visitor}-{name}");
            let expected = decide(&core, &id, map(json!({"plan": "premium"})).into(), None);
            let fresh = new_core();
            assert_eq!(
                decide(&fresh, &id, form.clone(), None),
                expected,
                "{name} (context)"
            );
            let fresh = new_core();
            assert_eq!(
                decide(&fresh, &id, Attributes::new(), Some(form)),
                expected,
                "{name} (call)"
            );
        }
    }
}

/// Visitor properties stored through each form read back the same.
#[test]
fn stored_properties_are_the_same_whatever_the_form() {
    let expected = {
        let core = new_core();
        let ctx = core.create_context("s", None);
        ctx.update_visitor_properties(map(json!({"plan": "premium"})));
        ctx.get_visitor_data()
    };
    assert!(format!("{expected:?}").contains("premium"));
    for (name, form) in premium_forms() {
        let core = new_core();
        let ctx = core.create_context("s", None);
        ctx.update_visitor_properties(form);
        assert_eq!(ctx.get_visitor_data(), expected, "{name}");
    }
}

#[test]
fn values_that_are_not_objects_are_refused_clearly() {
    let err = Attributes::from_serialize(&"premium").unwrap_err();
    assert!(
        matches!(err, AttributesError::NotAnObject("a string")),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "visitor data must be a JSON object (a map or a struct), not a string"
    );
    assert!(matches!(
        Attributes::try_from_value(json!([1])),
        Err(AttributesError::NotAnObject("an array"))
    ));
    assert!(Attributes::try_from_value(Value::Null).is_err());
    // The infallible conversion ignores (and logs) a non-object.
    assert!(Attributes::from(json!(3)).is_empty());
    // Keys follow `serde_json::Map`'s own order in the program: insertion order when it enables
    // serde_json's `preserve_order`, sorted otherwise (convert-sdk imposes neither).
    let a: Attributes = [("z", 1), ("a", 2)].into();
    let keys: Vec<&String> = a.as_map().keys().collect();
    let map: serde_json::Map<String, Value> = [("z".to_string(), json!(1)), ("a".into(), json!(2))]
        .into_iter()
        .collect();
    assert_eq!(keys, map.keys().collect::<Vec<_>>());
}
