//! `python-sdk/state_vectors.json` (entity lookups and custom-segment selection, README "Python"
//! §4) and `python-sdk/feature_vectors.json` (feature resolution and variable casting, §3),
//! driven through the public SDK. Custom-segment selection also goes through the engine's
//! `run_custom_segments`, the only way to express "no rule data" (a null `segment_rule`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

#[path = "../../core/tests/common/mod.rs"]
mod common;
mod support;

use convert_core::engine::{Effects, Engine, EngineSettings, VisitorState};
use convert_core::rules::RuleData;
use convert_sdk::{BucketingAttributes, Core, EntityType, FeatureStatus, StoreData};
use serde_json::{Map, Value, json};
use support::Recorder;

fn sdk(config: Value) -> Core {
    Core::builder()
        .config(config)
        .transport(Recorder::default())
        .tracking(false)
        .build()
        .unwrap()
}

/// The config entry of plural `collection` whose `field` equals `value`, as served.
fn config_entry<'a>(
    config: &'a Value,
    collection: &str,
    field: &str,
    value: &str,
) -> Option<&'a Value> {
    config[collection]
        .as_array()?
        .iter()
        .find(|e| e[field].as_str() == Some(value))
}

/// The ids of the custom segments in a segments map (`[]` when none).
fn custom_segments(segments: Option<&Map<String, Value>>) -> Value {
    segments
        .and_then(|s| s.get("customSegments"))
        .cloned()
        .unwrap_or_else(|| json!([]))
}

#[test]
fn state_vectors() {
    let Some(dir) = common::conformance_dir() else {
        return;
    };
    let rel = "python-sdk/state_vectors.json";
    let file = common::load(&dir, rel);
    let vectors = file["vectors"].as_array().unwrap();
    assert_eq!(vectors.len(), 18, "{rel}: record count");
    let mut passed = 0;
    let mut by_op: std::collections::BTreeMap<String, usize> = Default::default();
    for v in vectors {
        let id = v["id"].as_str().unwrap();
        let config = &v["config"];
        let core = sdk(config.clone());
        let ctx = core.create_context("state-visitor", None);
        let op = &v["operation"];
        let op_name = op["op"].as_str().unwrap();
        let collection = op["entity_type"].as_str().unwrap_or_default();
        let ty = || EntityType::parse(collection).unwrap();
        // A found entity must be the served config entry itself; its id is what is compared.
        let id_of = |found: Option<Value>, field: &str, value: &str| match found {
            None => Value::Null,
            Some(e) => {
                assert_eq!(
                    Some(&e),
                    config_entry(config, collection, field, value),
                    "{rel} {id}: the entity as served"
                );
                e["id"].clone()
            }
        };
        let got = match op_name {
            "get_entity" => {
                let key = op["key"].as_str().unwrap();
                id_of(ctx.get_config_entity(key, ty()), "key", key)
            }
            "get_entity_by_id" => {
                let eid = op["id"].as_str().unwrap();
                id_of(ctx.get_config_entity_by_id(eid, ty()), "id", eid)
            }
            // `get_entities`: repeated lookups, unknown keys skipped.
            "get_entities" => Value::Array(
                op["keys"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|k| k.as_str().unwrap())
                    .map(|k| id_of(ctx.get_config_entity(k, ty()), "key", k))
                    .filter(|id| !id.is_null())
                    .collect(),
            ),
            "select_custom_segments" => {
                let keys: Vec<&str> = op["segment_keys"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|k| k.as_str().unwrap())
                    .collect();
                // null = "no rule data": every listed segment is taken without evaluation.
                let rule: Option<&Map<String, Value>> = match &op["segment_rule"] {
                    Value::Null => None,
                    Value::Object(m) => Some(m),
                    other => panic!("{rel} {id}: segment_rule {other}"),
                };
                let cfg = core.config();
                let settings = EngineSettings::default();
                let mut data = StoreData::default();
                let mut effects = Effects::default();
                let selected = Engine::new(&cfg, &settings)
                    .run_custom_segments(
                        &mut VisitorState::new("state-visitor", &mut data),
                        &keys,
                        rule.map(|m| m as &dyn RuleData),
                        true,
                        &mut effects,
                    )
                    .unwrap_or_else(|e| panic!("{rel} {id}: rule error {e:?}"));
                let engine_ids = custom_segments(selected.as_ref());
                // Something new recorded ⇔ a store write is asked for.
                assert_eq!(
                    !effects.store.is_empty(),
                    engine_ids != json!([]),
                    "{rel} {id}: store ops {:?}",
                    effects.store
                );
                if let Some(rule) = rule {
                    // Through the public API (rule data is always an object there) the visitor
                    // ends up with the same segments, stored.
                    let returned = ctx
                        .run_custom_segments(&keys, rule)
                        .unwrap_or_else(|e| panic!("{rel} {id}: rule error {e:?}"));
                    assert_eq!(
                        custom_segments(returned.as_ref()),
                        engine_ids,
                        "{rel} {id}: SDK return value"
                    );
                    assert_eq!(
                        custom_segments(ctx.get_visitor_data().segments()),
                        engine_ids,
                        "{rel} {id}: stored custom segments"
                    );
                }
                engine_ids
            }
            other => panic!("{rel} {id}: unknown op {other}"),
        };
        assert_eq!(got, v["expected"], "{rel} {id}");
        *by_op.entry(op_name.to_string()).or_default() += 1;
        passed += 1;
    }
    assert_eq!(passed, 18);
    println!("{rel}: {passed} passed, 0 skipped ({by_op:?})");
}

#[test]
fn feature_vectors() {
    let Some(dir) = common::conformance_dir() else {
        return;
    };
    let rel = "python-sdk/feature_vectors.json";
    let file = common::load(&dir, rel);
    let vectors = file["vectors"].as_array().unwrap();
    assert_eq!(vectors.len(), 4, "{rel}: record count");
    let (mut enabled, mut disabled) = (0, 0);
    for v in vectors {
        let id = v["id"].as_str().unwrap();
        let key = v["feature_key"].as_str().unwrap();
        let core = sdk(v["config"].clone());
        let ctx = core.create_context(v["visitor_id"].as_str().unwrap(), None);
        // Empty attributes, no location restriction (Part A Q2: absent = an empty map, and these
        // experiences have no locations or site area).
        let f = ctx.run_feature(key, &BucketingAttributes::new());
        assert!(f.rule_errors.is_empty(), "{rel} {id}: {:?}", f.rule_errors);
        assert_eq!(f.key, key);
        match v["expected"].as_object() {
            // null ≙ JS `{key, status: "disabled"}` (with `id` and `name` when declared).
            None => {
                assert!(!f.is_enabled(), "{rel} {id}: {f:?}");
                assert_eq!(f.entries.len(), 1, "{rel} {id}: {f:?}");
                let e = &f.entries[0];
                assert_eq!(e.status, FeatureStatus::Disabled);
                assert_eq!(e.feature_key.as_deref(), Some(key), "{rel} {id}");
                let declared = config_entry(&v["config"], "features", "key", key);
                assert_eq!(
                    e.feature_id.as_deref(),
                    declared.and_then(|d| d["id"].as_str()),
                    "{rel} {id}: id only when declared"
                );
                assert_eq!(e.experience_key, None, "{rel} {id}");
                assert_eq!(e.variables, None, "{rel} {id}");
                assert_eq!(core.queued_events(), 0, "{rel} {id}: nothing decided");
                disabled += 1;
            }
            Some(want) => {
                assert!(f.is_enabled(), "{rel} {id}: {f:?}");
                assert_eq!(f.entries.len(), 1, "{rel} {id}: {f:?}");
                let e = &f.entries[0];
                assert_eq!(e.status, FeatureStatus::Enabled, "{rel} {id}");
                assert_eq!(want["status"], "enabled");
                assert_eq!(e.feature_key.as_deref(), want["feature_key"].as_str());
                // The id as a string (JS `String(feature_id)`).
                assert_eq!(e.feature_id.as_deref(), want["feature_id"].as_str());
                assert_eq!(e.experience_key.as_deref(), want["experience_key"].as_str());
                // Exposed only by the Python SDK's result; convert-rs has it too.
                assert_eq!(e.variation_key.as_deref(), want["variation_key"].as_str());
                // Variables by value: "true" → true, "7" → 7, "{\"a\":1}" → object.
                assert_eq!(e.variables.as_ref(), Some(&want["variables"]), "{rel} {id}");
                assert_eq!(
                    f.variables().map(|m| Value::Object(m.clone())).as_ref(),
                    Some(&want["variables"])
                );
                // The decision behind it queued one bucketing event.
                assert_eq!(core.queued_events(), 1, "{rel} {id}");
                enabled += 1;
            }
        }
    }
    assert_eq!((enabled, disabled), (2, 2));
    println!(
        "{rel}: {} passed, 0 skipped ({enabled} enabled, {disabled} null ≙ disabled)",
        enabled + disabled
    );
}
