//! A fresh decision through the SDK facade, store write included, on the two workloads of
//! `docs/performance.md` ("Engine"): `bench-3arm` (one location rule) and `bench-targeted` (a
//! two-key location map, four location rules, a permanent audience with two rules). Compare with
//! `cargo bench -p convert-core --bench workloads` (`hash_and_rules`: the same rules and the bucket
//! hash alone). Run with `cargo bench -p convert-sdk --bench workloads`.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use convert_sdk::{BucketingAttributes, Core};
use serde_json::Value;
use std::sync::atomic::{AtomicU64, Ordering};

fn main() {
    divan::main();
}

const WORKLOADS: [&str; 2] = ["bench-3arm", "bench-targeted"];

fn sdk(name: &str) -> (Core, BucketingAttributes, String) {
    let text = match name {
        "bench-3arm" => include_str!("../../examples/data/bench-3arm.json"),
        _ => include_str!("../../examples/data/bench-targeted.json"),
    };
    let req: Value = serde_json::from_str(text).unwrap();
    let bench = &req["bench"];
    let core = Core::builder()
        .config(req["config"].clone())
        .events(1_000_000, std::time::Duration::from_secs(3600), 1_000_000)
        .data_store(convert_sdk::stores::MemoryStore::with_capacity(5_000_000))
        .build()
        .unwrap();
    let attrs = BucketingAttributes {
        visitor_properties: bench["attributes"].as_object().cloned(),
        location_properties: bench["locationProperties"].as_object().cloned(),
        enable_tracking: Some(false),
        ..Default::default()
    };
    (core, attrs, bench["key"].as_str().unwrap().to_string())
}

static NEXT: AtomicU64 = AtomicU64::new(0);

/// A new visitor each iteration: rules, bucketing and the store write.
#[divan::bench(args = WORKLOADS)]
fn fresh_decision(bencher: divan::Bencher, name: &str) {
    let (core, attrs, key) = sdk(name);
    bencher
        .with_inputs(|| {
            let i = NEXT.fetch_add(1, Ordering::Relaxed);
            core.create_context(format!("bench-visitor-{i}"), None)
        })
        .bench_local_refs(|ctx| ctx.run_experience(&key, &attrs));
}
