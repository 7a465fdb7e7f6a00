//! Decision throughput of the SDK facade (run with `cargo bench -p convert-sdk`).
//!
//! The experience is the bench fixture of `examples/data/bench-3arm.json`: three arms, one
//! location rule, memory store, tracking off. `fresh` decides a new visitor each iteration (store
//! write included); `sticky` re-reads a stored decision; `context_and_decide` also creates the
//! context.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::{fresh_context, fresh_visitor_id, workload};

fn main() {
    divan::main();
}

#[divan::bench]
fn fresh_decision(bencher: divan::Bencher) {
    let w = workload("bench-3arm");
    bencher
        .with_inputs(|| fresh_context(&w.core))
        .bench_local_refs(|ctx| ctx.run_experience(&w.key, &w.attrs));
}

#[divan::bench]
fn sticky_decision(bencher: divan::Bencher) {
    let w = workload("bench-3arm");
    let ctx = w.core.create_context("sticky-visitor", None);
    ctx.run_experience(&w.key, &w.attrs);
    bencher.bench_local(|| ctx.run_experience(&w.key, &w.attrs));
}

#[divan::bench]
fn context_and_decide(bencher: divan::Bencher) {
    let w = workload("bench-3arm");
    bencher
        .with_inputs(fresh_visitor_id)
        .bench_local_values(|id| {
            w.core
                .create_context(id, None)
                .run_experience(&w.key, &w.attrs)
        });
}

/// A sticky decision with five visitor properties passed in the call (each call checks them
/// against the visitor data limits).
#[divan::bench]
fn sticky_decision_with_properties(bencher: divan::Bencher) {
    let w = workload("bench-3arm");
    let attrs = w
        .attrs
        .visitor_property("plan", "pro")
        .visitor_property("age", 42)
        .visitor_property("beta", true)
        .visitor_property("tags", serde_json::json!(["a", "b", "c"]))
        .visitor_property(
            "profile",
            serde_json::json!({"city": "Paris", "visits": 12}),
        );
    let ctx = w.core.create_context("sticky-visitor-props", None);
    ctx.run_experience(&w.key, &attrs);
    bencher.bench_local(|| ctx.run_experience(&w.key, &attrs));
}
