//! Cross-SDK vectors driven through the public SDK: full decision path, mutual exclusion, entity
//! lookups and custom segments, features, pinned outcomes of the reference test configs, and the
//! tracking payload.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

#[path = "../../core/tests/common/mod.rs"]
mod common;

use convert_core::engine::{
    Effects, Engine, EngineSettings, Notice, RunOptions, VisitorProps, VisitorState,
};
use convert_sdk::{
    BucketingAttributes, ConversionAttributes, ConversionOutcome, Core, Decision, EntityType,
    FeatureStatus, HttpRequest, HttpResponse, StoreData, Transport, TransportError,
};
use serde_json::{Map, Value, json};
use std::sync::{Arc, Mutex};

#[derive(Default)]
struct Recorder(Mutex<Vec<HttpRequest>>);

impl Transport for Recorder {
    fn send(&self, request: &HttpRequest) -> Result<HttpResponse, TransportError> {
        self.0.lock().unwrap().push(request.clone());
        Ok(HttpResponse {
            status: 200,
            body: Vec::new(),
        })
    }
}

fn sdk(config: Value, recorder: &Arc<Recorder>) -> Core {
    Core::builder()
        .config(config)
        .shared_transport(recorder.clone())
        .tracking(false)
        .build()
        .unwrap()
}

fn obj(v: Value) -> Map<String, Value> {
    v.as_object().cloned().unwrap()
}

fn arr(v: &Value) -> &Vec<Value> {
    v.as_array().unwrap()
}

fn variation_id(d: &Decision) -> Option<String> {
    match d {
        Decision::Variation(v) => Some(v.variation_id.to_string()),
        _ => None,
    }
}

#[test]
fn cross_sdk_bucketing_through_the_sdk() {
    let Some(dir) = common::conformance_dir() else {
        return;
    };
    let file = common::load(&dir, "javascript-sdk/cross-sdk-bucketing-vectors.json");
    let mut n = 0;
    for v in arr(&file) {
        let config = json!({
            "account_id": "1", "project": {"id": "2"},
            "experiences": [{
                "id": v["experienceId"], "key": v["experienceId"], "name": "vector",
                "type": "a/b_fullstack", "audiences": [], "goals": [],
                "variations": v["variations"], "version": v["version"]
            }]
        });
        let rec = Arc::new(Recorder::default());
        let core = sdk(config, &rec);
        let ctx = core.create_context(v["visitorId"].as_str().unwrap(), None);
        let attrs = BucketingAttributes::new()
            .ignore_location_properties(true)
            .enable_tracking(false);
        let d = ctx.run_experience(v["experienceId"].as_str().unwrap(), &attrs);
        match v["expected"].as_str() {
            Some(id) => assert_eq!(
                variation_id(&d).as_deref(),
                Some(id),
                "{}",
                v["description"]
            ),
            None => assert_eq!(d, Decision::NotDecided, "{}", v["description"]),
        }
        assert_eq!(core.queued_events(), 0);
        n += 1;
    }
    assert_eq!(n, 59);
    println!("javascript-sdk/cross-sdk-bucketing-vectors.json via the SDK: {n} passed, 0 skipped");
}

#[test]
fn bucketing_event_wire_shape() {
    let Some(dir) = common::conformance_dir() else {
        return;
    };
    let file = common::load(&dir, "python-sdk/bucketing_event_vectors.json");
    let mut n = 0;
    for v in arr(&file["vectors"]) {
        let config = json!({
            "account_id": "1", "project": {"id": "2"},
            "experiences": [{"id": v["experienceId"], "key": "exp",
                             "variations": [{"id": v["variationId"], "key": "only", "traffic_allocation": 100}]}]
        });
        let rec = Arc::new(Recorder::default());
        let core = sdk(config, &rec);
        let d = core
            .create_context("visitor-event", None)
            .run_experience("exp", &BucketingAttributes::new());
        assert!(matches!(d, Decision::Variation(_)));
        core.flush().unwrap();
        let sent = rec.0.lock().unwrap();
        let body: Value = serde_json::from_str(sent[0].body.as_deref().unwrap()).unwrap();
        assert_eq!(body["visitors"][0]["events"][0], v["expected_event"]);
        n += 1;
    }
    assert_eq!(n, 2);
    println!("python-sdk/bucketing_event_vectors.json: {n} passed, 0 skipped");
}

#[test]
fn mutual_exclusion_fixture() {
    let Some(dir) = common::conformance_dir() else {
        return;
    };
    let fx = common::load(&dir, "javascript-sdk/mutual-exclusion-rule-fixture.json");
    let rows = arr(&fx["rows"]);
    assert_eq!(rows.len(), 8);
    assert_eq!(
        rows.iter().filter(|r| r["expectedMatched"] == true).count(),
        4
    );
    assert_eq!(rows.iter().filter(|r| r["expectWarn"] == true).count(), 2);
    for row in rows {
        let mut rule = fx["ruleDefaults"].clone();
        rule["matching"]["negated"] = row["negated"].clone();
        rule["value"] = row["ruleValue"].clone();
        let mut config = fx["config"].clone();
        config["account_id"] = json!("1");
        config["project"] = json!({"id": "2"});
        config["audiences"] = json!([{"id": "900", "key": "exclusion", "type": "transient",
            "rules": {"OR": [{"AND": [{"OR_WHEN": [rule]}]}]}}]);
        config["experiences"][1]["audiences"] = json!(["900"]);
        config["experiences"][1]["settings"] = json!({"matching_options": {"audiences": "all"}});

        let rec = Arc::new(Recorder::default());
        let core = sdk(config.clone(), &rec);
        let ctx = core.create_context("visitor-mx", None);
        let seeded: Map<String, Value> = row["storedBucketing"].as_object().cloned().unwrap();
        let store = core.data_store();
        let key = ctx.store_key().unwrap().to_string();
        if !seeded.is_empty() {
            store
                .update(&key, &mut |d: &mut StoreData| {
                    d.bucketing = Some(seeded.clone());
                    true
                })
                .unwrap();
        }
        let attrs = BucketingAttributes::new().ignore_location_properties(true);
        let d = ctx.run_experience("exp-b", &attrs);
        let want = row["expectedMatched"].as_bool().unwrap();
        assert_eq!(
            matches!(d, Decision::Variation(_)),
            want,
            "row {}",
            row["row"]
        );
        // Read-only check: exp-a was neither bucketed nor written.
        let after = store.get(&key).unwrap().unwrap_or_default();
        assert_eq!(
            after
                .bucketing
                .as_ref()
                .and_then(|b| b.get("100111"))
                .cloned(),
            seeded.get("100111").cloned(),
            "row {}",
            row["row"]
        );
        // The warning for an unknown target comes out of the engine as a notice.
        let cfg = convert_core::ProjectConfig::from_value(config).unwrap();
        let settings = EngineSettings::default();
        let mut data = StoreData {
            bucketing: (!seeded.is_empty()).then(|| seeded.clone()),
            ..StoreData::default()
        };
        let mut effects = Effects::default();
        let opts = RunOptions {
            ignore_location_properties: true,
            ..RunOptions::default()
        };
        Engine::new(&cfg, &settings).run_experience(
            &mut VisitorState {
                id: "visitor-mx",
                data: &mut data,
            },
            "exp-b",
            &VisitorProps::default(),
            &opts,
            &mut effects,
        );
        let warned = effects
            .notices
            .iter()
            .any(|n| matches!(n, Notice::UnknownExclusionTarget(k) if *k == row["ruleValue"]));
        assert_eq!(
            warned,
            row["expectWarn"].as_bool().unwrap(),
            "row {}",
            row["row"]
        );
    }
    println!("javascript-sdk/mutual-exclusion-rule-fixture.json: 8 passed, 0 skipped");
}

#[test]
fn state_vectors() {
    let Some(dir) = common::conformance_dir() else {
        return;
    };
    let file = common::load(&dir, "python-sdk/state_vectors.json");
    let mut n = 0;
    for v in arr(&file["vectors"]) {
        let rec = Arc::new(Recorder::default());
        let core = sdk(v["config"].clone(), &rec);
        let ctx = core.create_context("state-visitor", None);
        let op = &v["operation"];
        let ty = || EntityType::parse(op["entity_type"].as_str().unwrap()).unwrap();
        let id_of = |e: Option<Value>| e.map_or(Value::Null, |e| e["id"].clone());
        let got = match op["op"].as_str().unwrap() {
            "get_entity" => id_of(ctx.get_config_entity(op["key"].as_str().unwrap(), ty())),
            "get_entity_by_id" => {
                id_of(ctx.get_config_entity_by_id(op["id"].as_str().unwrap(), ty()))
            }
            "get_entities" => Value::Array(
                arr(&op["keys"])
                    .iter()
                    .filter_map(|k| ctx.get_config_entity(k.as_str().unwrap(), ty()))
                    .map(|e| e["id"].clone())
                    .collect(),
            ),
            "select_custom_segments" => {
                // Through the engine, so that "no rule data" (null) can be expressed.
                let cfg = core.config();
                let settings = EngineSettings::default();
                let keys: Vec<&str> = arr(&op["segment_keys"])
                    .iter()
                    .map(|k| k.as_str().unwrap())
                    .collect();
                let rule_data = op["segment_rule"].as_object().cloned();
                let mut data = StoreData::default();
                let mut fx = Effects::default();
                let r = Engine::new(&cfg, &settings)
                    .run_custom_segments(
                        &mut VisitorState {
                            id: "state-visitor",
                            data: &mut data,
                        },
                        &keys,
                        rule_data
                            .as_ref()
                            .map(|m| m as &dyn convert_core::rules::RuleData),
                        true,
                        &mut fx,
                    )
                    .unwrap();
                match r {
                    Some(seg) => seg["customSegments"].clone(),
                    None => json!([]),
                }
            }
            other => panic!("unknown op {other}"),
        };
        assert_eq!(got, v["expected"], "{}", v["id"]);
        n += 1;
    }
    assert_eq!(n, 18);
    println!("python-sdk/state_vectors.json: {n} passed, 0 skipped");
}

#[test]
fn feature_vectors() {
    let Some(dir) = common::conformance_dir() else {
        return;
    };
    let file = common::load(&dir, "python-sdk/feature_vectors.json");
    let mut n = 0;
    for v in arr(&file["vectors"]) {
        let rec = Arc::new(Recorder::default());
        let core = sdk(v["config"].clone(), &rec);
        let ctx = core.create_context(v["visitor_id"].as_str().unwrap(), None);
        let f = ctx.run_feature(
            v["feature_key"].as_str().unwrap(),
            &BucketingAttributes::new(),
        );
        match v["expected"].as_object() {
            None => assert!(!f.is_enabled(), "{}", v["id"]),
            Some(e) => {
                assert!(f.is_enabled(), "{}", v["id"]);
                let entry = &f.entries[0];
                assert_eq!(entry.feature_key.as_deref(), e["feature_key"].as_str());
                assert_eq!(entry.feature_id.as_deref(), e["feature_id"].as_str());
                assert_eq!(entry.status, FeatureStatus::Enabled);
                assert_eq!(
                    entry.experience_key.as_deref(),
                    e["experience_key"].as_str()
                );
                assert_eq!(entry.variation_key.as_deref(), e["variation_key"].as_str());
                assert_eq!(
                    entry.variables.as_ref(),
                    Some(&e["variables"]),
                    "{}",
                    v["id"]
                );
            }
        }
        n += 1;
    }
    assert_eq!(n, 4);
    println!("python-sdk/feature_vectors.json: {n} passed, 0 skipped");
}

fn url_attrs(props: Value) -> BucketingAttributes {
    BucketingAttributes::new()
        .visitor_properties(obj(props))
        .location_property("url", "https://convert.com/")
}

fn pinned_outcomes(rel: &str) {
    let Some(dir) = common::conformance_dir() else {
        return;
    };
    let rec = Arc::new(Recorder::default());
    let core = sdk(common::load(&dir, rel), &rec);
    let xxx = core.create_context("XXX", None);
    match xxx.run_experience(
        "test-experience-ab-fullstack-2",
        &url_attrs(json!({"varName3": "something"})),
    ) {
        Decision::Variation(v) => {
            assert_eq!(&*v.variation_id, "100299456", "{rel}");
            assert_eq!(v.bucketing_allocation, Some(201), "{rel}");
        }
        other => panic!("{rel}: XXX got {other:?}"),
    }
    let v1 = core.create_context("visitor-1", None);
    let props = url_attrs(json!({"varName1": "value1", "varName2": "value2"}));
    let a = v1.run_experience("test-experience-ab-fullstack-2", &props);
    let b = v1.run_experience("test-experience-ab-fullstack-3", &props);
    assert_eq!(variation_id(&a).as_deref(), Some("100299457"), "{rel}");
    assert_eq!(variation_id(&b).as_deref(), Some("100299461"), "{rel}");
    // Sticky: the same call again reuses the stored decision.
    match v1.run_experience("test-experience-ab-fullstack-2", &props) {
        Decision::Variation(v) => assert_eq!(v.bucketing_allocation, None),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        v1.run_experience("test-experience-ab-fullstack-4", &props),
        Decision::NotDecided,
        "{rel}: experience 4's only variation has no id"
    );
    println!("{rel}: pinned decisions passed");
}

#[test]
fn test_config_pinned_outcomes() {
    pinned_outcomes("javascript-sdk/test-config.json");
    pinned_outcomes("ruby-sdk/test-config.json");
    // Part A Q9: without settings.matching_options the audiences are matched as "any".
    pinned_outcomes("javascript-sdk/test-config.no-matching-options.json");
}

#[test]
fn conversion_payload_matches_the_reference_shape() {
    let Some(dir) = common::conformance_dir() else {
        return;
    };
    let rec = Arc::new(Recorder::default());
    let core = sdk(common::load(&dir, "javascript-sdk/test-config.json"), &rec);
    let conv = ConversionAttributes::new()
        .rule("action", "buy")
        .data("amount", 10.3)
        .data("productsCount", 2);
    let fresh = core.create_context("no-bucketing", None);
    assert_eq!(
        fresh
            .track_conversion("increase-engagement", &conv)
            .unwrap(),
        ConversionOutcome::Converted { events: 2 }
    );
    assert_eq!(core.flush().unwrap(), 2);
    let sent = rec.0.lock().unwrap().clone();
    assert_eq!(sent.len(), 1);
    let req = &sent[0];
    assert_eq!(
        req.url,
        "https://10025986.metrics.convertexperiments.com/v1/track/10022898/10025986"
    );
    assert_eq!(
        req.headers,
        vec![
            ("Content-Type".to_string(), "application/json".to_string()),
            ("User-Agent".to_string(), "ConvertAgent/1.0".to_string()),
        ]
    );
    // Byte-for-byte body: member order, number formatting, no whitespace.
    assert_eq!(
        req.body.as_deref().unwrap(),
        r#"{"enrichData":true,"accountId":"10022898","projectId":"10025986","visitors":[{"visitorId":"no-bucketing","events":[{"eventType":"conversion","data":{"goalId":"100215960"}},{"eventType":"conversion","data":{"goalId":"100215960","goalData":[{"key":"amount","value":10.3},{"key":"productsCount","value":2}]}}]}],"source":"rust-sdk"}"#
    );
    // A repeat converts nothing; with prior bucketing the events carry bucketingData.
    assert_eq!(
        fresh
            .track_conversion("increase-engagement", &conv)
            .unwrap(),
        ConversionOutcome::AlreadyConverted
    );
    let v1 = core.create_context(
        "visitor-1",
        Some(obj(json!({"browser": "CH", "country": "US", "plan": "x"}))),
    );
    let props = url_attrs(json!({"varName1": "value1", "varName2": "value2"}));
    v1.run_experience("test-experience-ab-fullstack-3", &props);
    v1.run_experience("test-experience-ab-fullstack-2", &props);
    v1.track_conversion(
        "increase-engagement",
        &ConversionAttributes::new().data("amount", 10.5),
    )
    .unwrap();
    core.flush().unwrap();
    let sent = rec.0.lock().unwrap().clone();
    let body: Value = serde_json::from_str(sent[1].body.as_deref().unwrap()).unwrap();
    let visitor = &body["visitors"][0];
    assert_eq!(
        visitor["segments"],
        json!({"browser": "CH", "country": "US"}),
        "only report segments leave the process"
    );
    let events = arr(&visitor["events"]);
    assert_eq!(events.len(), 4);
    assert_eq!(
        events[2]["data"]["bucketingData"],
        json!({"100218245": "100299457", "100218246": "100299461"})
    );
    // bucketingData keys in JS order (numeric ascending), whatever the decision order was.
    assert!(
        sent[1]
            .body
            .as_deref()
            .unwrap()
            .contains(r#""bucketingData":{"100218245":"100299457","100218246":"100299461"}"#)
    );
}

#[test]
fn static_config_integration() {
    let Some(dir) = common::conformance_dir() else {
        return;
    };
    let rec = Arc::new(Recorder::default());
    let core = Core::builder()
        .config(common::load(&dir, "javascript-sdk/static-config.json"))
        .environment("staging")
        .shared_transport(rec.clone())
        .tracking(false)
        .build()
        .unwrap();
    let pricing = BucketingAttributes::new().location_property("location", "pricing");
    let mut enabled = 0;
    for i in 0..20 {
        let ctx = core.create_context(format!("static-visitor-{i}"), None);
        let d = ctx.run_experience("test-experience-ab-fullstack-4", &pricing);
        let vid = variation_id(&d).unwrap_or_default();
        assert!(
            ["1003180877", "1003180878"].contains(&vid.as_str()),
            "{d:?}"
        );
        let f = ctx.run_feature("feature-2", &pricing);
        if f.is_enabled() {
            enabled += 1;
            assert_eq!(f.variable::<f64>("price").unwrap(), 100.0);
            assert_eq!(f.variable::<i64>("button-height").unwrap(), 40);
            assert!(f.variable::<Value>("additionalData").unwrap().is_object());
        }
        // Without location data the pricing location does not match (Part A Q2: empty map).
        assert_eq!(
            core.create_context(format!("other-{i}"), None)
                .run_experience(
                    "test-experience-ab-fullstack-4",
                    &BucketingAttributes::new()
                ),
            Decision::NotMatched
        );
    }
    assert!(enabled > 0, "feature-2 must be delivered to some visitors");
    let ctx = core.create_context("static-visitor-0", None);
    let first = ctx
        .track_conversion("increase-engagement", &ConversionAttributes::new())
        .unwrap();
    assert!(first.fired());
    let second = ctx
        .track_conversion("increase-engagement", &ConversionAttributes::new())
        .unwrap();
    assert_eq!(second, ConversionOutcome::AlreadyConverted);
    println!("javascript-sdk/static-config.json: passed ({enabled}/20 visitors with feature-2)");
}
