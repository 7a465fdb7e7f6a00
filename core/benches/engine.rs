//! Hot-path costs of the pure engine (run with `cargo bench -p convert-core`).
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use convert_core::engine::{
    Effects, Engine, EngineSettings, RunOptions, VisitorProps, VisitorState,
};
use convert_core::hash::{bucket_value, murmur3_32};
use convert_core::{ProjectConfig, StoreData};
use serde_json::{Map, Value, json};

fn main() {
    divan::main();
}

#[divan::bench(args = ["visitor-1", "a-somewhat-longer-visitor-identifier-0123456789"])]
fn murmur3(input: &str) -> u32 {
    murmur3_32(divan::black_box(input.as_bytes()), 9999)
}

#[divan::bench]
fn bucket_value_of_visitor() -> u32 {
    bucket_value(
        divan::black_box("900100"),
        divan::black_box("bench-visitor-123456"),
        9999,
        10000.0,
    )
}

fn config() -> ProjectConfig {
    let req: Value =
        serde_json::from_str(include_str!("../../examples/data/bench-3arm.json")).unwrap();
    ProjectConfig::from_value(req["config"].clone()).unwrap()
}

/// One fresh decision in the engine alone: no store, no queue (effects are produced and dropped).
#[divan::bench]
fn engine_fresh_decision(bencher: divan::Bencher) {
    let cfg = config();
    let settings = EngineSettings::default();
    let engine = Engine::new(&cfg, &settings);
    let loc: Map<String, Value> = json!({"page": "pricing"}).as_object().cloned().unwrap();
    let opts = RunOptions {
        location_properties: Some(&loc),
        enable_tracking: false,
        ..RunOptions::default()
    };
    let props = VisitorProps::default();
    let mut fx = Effects::default();
    bencher.bench_local(|| {
        let mut data = StoreData::default();
        let mut vs = VisitorState::new(divan::black_box("bench-visitor-123456"), &mut data);
        fx.clear();
        engine.run_experience(&mut vs, "three-arms", &props, &opts, &mut fx)
    });
}
