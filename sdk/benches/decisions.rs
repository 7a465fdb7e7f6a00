//! Decision throughput of the SDK facade (run with `cargo bench -p convert-sdk`).
//!
//! The experience is the bench fixture of `examples/data/bench-3arm.json`: three arms, one
//! location rule, memory store, tracking off. `fresh` decides a new visitor each iteration (store
//! write included); `sticky` re-reads a stored decision; `context_and_decide` also creates the
//! context.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use convert_sdk::{BucketingAttributes, Core};
use std::sync::atomic::{AtomicU64, Ordering};

fn main() {
    divan::main();
}

fn sdk() -> (Core, BucketingAttributes) {
    let req: serde_json::Value =
        serde_json::from_str(include_str!("../../examples/data/bench-3arm.json")).unwrap();
    let core = Core::builder()
        .config(req["config"].clone())
        .events(1_000_000, std::time::Duration::from_secs(3600), 1_000_000)
        .data_store(convert_sdk::stores::MemoryStore::with_capacity(5_000_000))
        .build()
        .unwrap();
    let attrs = BucketingAttributes::new()
        .location_property("page", "pricing")
        .enable_tracking(false);
    (core, attrs)
}

static NEXT: AtomicU64 = AtomicU64::new(0);

#[divan::bench]
fn fresh_decision(bencher: divan::Bencher) {
    let (core, attrs) = sdk();
    bencher
        .with_inputs(|| {
            let i = NEXT.fetch_add(1, Ordering::Relaxed);
            core.create_context(format!("bench-visitor-{i}"), None)
        })
        .bench_local_refs(|ctx| ctx.run_experience("three-arms", &attrs));
}

#[divan::bench]
fn sticky_decision(bencher: divan::Bencher) {
    let (core, attrs) = sdk();
    let ctx = core.create_context("sticky-visitor", None);
    ctx.run_experience("three-arms", &attrs);
    bencher.bench_local(|| ctx.run_experience("three-arms", &attrs));
}

#[divan::bench]
fn context_and_decide(bencher: divan::Bencher) {
    let (core, attrs) = sdk();
    bencher
        .with_inputs(|| format!("bench-visitor-c{}", NEXT.fetch_add(1, Ordering::Relaxed)))
        .bench_local_values(|id| {
            core.create_context(id, None)
                .run_experience("three-arms", &attrs)
        });
}

/// A sticky decision with five visitor properties passed in the call (each call checks them
/// against the visitor data limits).
#[divan::bench]
fn sticky_decision_with_properties(bencher: divan::Bencher) {
    let (core, attrs) = sdk();
    let attrs = attrs
        .visitor_property("plan", "pro")
        .visitor_property("age", 42)
        .visitor_property("beta", true)
        .visitor_property("tags", serde_json::json!(["a", "b", "c"]))
        .visitor_property(
            "profile",
            serde_json::json!({"city": "Paris", "visits": 12}),
        );
    let ctx = core.create_context("sticky-visitor-props", None);
    ctx.run_experience("three-arms", &attrs);
    bencher.bench_local(|| ctx.run_experience("three-arms", &attrs));
}
