//! The two decision workloads of `docs/performance.md` ("Engine"), engine side (run with
//! `cargo bench -p convert-core --bench workloads`):
//!
//! * `bench-3arm`: one location rule on a one-key location map;
//! * `bench-targeted`: a two-key location map, two locations with four rules, a permanent audience
//!   with two rules.
//!
//! `hash_and_rules` is the floor of a fresh decision: the experience's location and audience rule
//! trees evaluated as a decision evaluates them, plus the bucket hash. `engine_decision` is the
//! whole engine decision without a store. The fresh decision through the SDK (store write
//! included) is `cargo bench -p convert-sdk --bench workloads`. `config_load` parses and indexes a
//! generated 1.7 MB config (500 experiences × 5 variations, 1,000 audiences; see
//! [`large_config`]); dropping the loaded config is not timed there but in `config_drop` (a
//! reload pays both; the JS SDK's garbage collection is not measured). `config_parse_only` is
//! `serde_json` reading the same text into a `Value` (which the load no longer builds), for
//! comparison.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use convert_core::engine::{
    Effects, Engine, EngineSettings, RunOptions, VisitorProps, VisitorState,
};
use convert_core::{ProjectConfig, StoreData};
use serde_json::{Map, Value, json};

#[path = "shared/floor.rs"]
mod floor;

fn main() {
    // `CONVERT_DUMP_LARGE_CONFIG=path` writes the generated config for the JS comparison.
    if let Some(path) = std::env::var_os("CONVERT_DUMP_LARGE_CONFIG") {
        std::fs::write(path, large_config()).unwrap();
        return;
    }
    divan::main();
}

const WORKLOADS: [&str; 2] = ["bench-3arm", "bench-targeted"];

fn request(name: &str) -> Value {
    let text = match name {
        "bench-3arm" => include_str!("../../examples/data/bench-3arm.json"),
        _ => include_str!("../../examples/data/bench-targeted.json"),
    };
    serde_json::from_str(text).unwrap()
}

struct Workload {
    cfg: ProjectConfig,
    key: String,
    location: Map<String, Value>,
    attributes: Map<String, Value>,
}

fn workload(name: &str) -> Workload {
    let req = request(name);
    let bench = &req["bench"];
    Workload {
        cfg: ProjectConfig::from_value(req["config"].clone()).unwrap(),
        key: bench["key"].as_str().unwrap().to_string(),
        location: bench["locationProperties"]
            .as_object()
            .cloned()
            .unwrap_or_default(),
        attributes: bench["attributes"].as_object().cloned().unwrap_or_default(),
    }
}

/// Location rules ("any"), audience rules ("any") and the bucket hash of one visitor
/// ([`floor::hash_and_rules`]).
#[divan::bench(args = WORKLOADS)]
fn hash_and_rules(bencher: divan::Bencher, name: &str) {
    let w = workload(name);
    let exp = w.cfg.experience_by_key(&w.key).unwrap();
    let props = VisitorProps::new(Some(&w.attributes), None, None);
    bencher.bench_local(|| {
        floor::hash_and_rules(
            &w.cfg,
            exp,
            divan::black_box(&w.location),
            divan::black_box(&props),
            divan::black_box("bench-visitor-123456"),
        )
    });
}

/// A whole fresh decision in the engine, without a store (effects produced and dropped).
#[divan::bench(args = WORKLOADS)]
fn engine_decision(bencher: divan::Bencher, name: &str) {
    let w = workload(name);
    let settings = EngineSettings::default();
    let engine = Engine::new(&w.cfg, &settings);
    let opts = RunOptions {
        location_properties: Some(&w.location),
        enable_tracking: false,
        ..RunOptions::default()
    };
    let props = VisitorProps::new(Some(&w.attributes), None, None);
    let mut fx = Effects::default();
    bencher.bench_local(|| {
        let mut data = StoreData::default();
        let mut vs = VisitorState::new(divan::black_box("bench-visitor-123456"), &mut data);
        fx.clear();
        engine.run_experience(&mut vs, &w.key, &props, &opts, &mut fx)
    });
}

/// A deterministic config of about 1.7 MB: 1,000 audiences (two rules each), 100 locations, 500
/// experiences of 5 variations, each with 4 audiences, 2 locations and a few goals.
pub fn large_config() -> String {
    let rule = |key: &str, op: &str, value: Value| {
        json!({"rule_type": "generic_text_key_value", "key": key,
               "matching": {"match_type": op, "negated": false}, "value": value})
    };
    let audiences: Vec<Value> = (0..1000)
        .map(|i| {
            json!({"id": format!("{}", 300000 + i), "key": format!("audience-{i}"),
                   "name": format!("Audience number {i}"), "type": if i % 5 == 0 { "permanent" } else { "transient" },
                   "rules": {"OR": [{"AND": [{"OR_WHEN": [rule("country", "equals", json!(format!("c{}", i % 40)))]},
                                             {"OR_WHEN": [rule("plan", "contains", json!(format!("p{}", i % 7)))]}]}]}})
        })
        .collect();
    let locations: Vec<Value> = (0..100)
        .map(|i| {
            json!({"id": format!("{}", 400000 + i), "key": format!("location-{i}"), "name": format!("Location {i}"),
                   "rules": {"OR": [{"AND": [{"OR_WHEN": [rule("url", "contains", json!(format!("/section-{i}/")))]}]}]}})
        })
        .collect();
    let experiences: Vec<Value> = (0..500)
        .map(|i| {
            json!({"id": format!("{}", 100000 + i), "key": format!("experience-{i}"),
                   "name": format!("Experience number {i}"), "type": "a/b_fullstack", "status": "active",
                   "version": 11, "environment": "production",
                   "audiences": (0..4).map(|k| format!("{}", 300000 + (i * 7 + k * 131) % 1000)).collect::<Vec<_>>(),
                   "locations": (0..2).map(|k| format!("{}", 400000 + (i + k * 37) % 100)).collect::<Vec<_>>(),
                   "goals": [format!("{}", 500000 + i % 20)],
                   "settings": {"matching_options": {"audiences": "any", "locations": "any"}},
                   "variations": (0..5).map(|v| json!({
                       "id": format!("{}", 1000000 + i * 10 + v), "key": format!("variation-{v}"),
                       "name": format!("Variation {v} of experience {i}"), "status": "running",
                       "traffic_allocation": 20,
                       "changes": [{"id": 2000000 + i * 10 + v, "type": "richStructure",
                                    "data": {"text": "x".repeat(260)}}]})).collect::<Vec<_>>()})
        })
        .collect();
    let goals: Vec<Value> = (0..20)
        .map(|i| json!({"id": format!("{}", 500000 + i), "key": format!("goal-{i}"), "name": format!("Goal {i}"), "type": "advanced",
                        "rules": {"OR": [{"AND": [{"OR_WHEN": [rule("action", "equals", json!(format!("a{i}")))]}]}]}}))
        .collect();
    serde_json::to_string(&json!({
        "account_id": "100123", "project": {"id": "200456", "name": "Large"},
        "experiences": experiences, "audiences": audiences, "locations": locations,
        "segments": [], "goals": goals, "features": [], "archived_experiences": []
    }))
    .unwrap()
}

/// Parsing and indexing the generated 1.7 MB config from its text.
#[divan::bench(sample_count = 30)]
fn config_load(bencher: divan::Bencher) {
    let text = large_config();
    bencher.bench_local(|| ProjectConfig::from_json(divan::black_box(&text)).unwrap());
}

/// `serde_json` parsing the same text into a `Value`, nothing else (the load reads the text into a
/// compact tree of its own instead).
#[divan::bench(sample_count = 30)]
fn config_parse_only(bencher: divan::Bencher) {
    let text = large_config();
    bencher.bench_local(|| serde_json::from_str::<Value>(divan::black_box(&text)).unwrap());
}

/// Dropping the config `config_load` builds (not timed there).
#[divan::bench(sample_count = 30)]
fn config_drop(bencher: divan::Bencher) {
    let text = large_config();
    bencher
        .with_inputs(|| ProjectConfig::from_json(&text).unwrap())
        .bench_local_values(drop);
}

/// Backtracking patterns (look-around, backreferences) in a one-rule tree, on short values as
/// audiences and locations see them: `regexMatches` on the backtracking engine, compile excluded.
#[divan::bench(args = ["^(?!free)", "(.)\\1", "^(?!.*/admin)(?=.*/shop)", "(?<=//)shop\\."])]
fn backtracking_rule(bencher: divan::Bencher, pattern: &str) {
    let rules = convert_core::rules::RuleSet::compile(&json!({"OR": [{"AND": [{"OR_WHEN": [
        {"key": "v", "matching": {"match_type": "regexMatches", "negated": false}, "value": pattern}
    ]}]}]}));
    let data = json!({"v": "https://www.example.com/shop/item-42?ref=newsletter"});
    let data = data.as_object().unwrap();
    bencher.bench_local(|| rules.evaluate(divan::black_box(data)));
}
