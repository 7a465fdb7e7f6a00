//! A fresh decision through the SDK facade, store write included, on the two workloads of
//! `docs/performance.md` ("Engine"): `bench-3arm` (one location rule) and `bench-targeted` (a
//! two-key location map, four location rules, a permanent audience with two rules). Compare with
//! `cargo bench -p convert-core --bench workloads` (`hash_and_rules`: the same rules and the bucket
//! hash alone). `fresh_decision_keep_nothing` is the same call through a store that keeps
//! nothing, which separates the SDK and engine layers from the store's own work. Run with
//! `cargo bench -p convert-sdk --bench workloads`.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::{KeepNothing, WORKLOADS, fresh_context, workload, workload_with_store};

fn main() {
    divan::main();
}

/// A new visitor each iteration: rules, bucketing and the store write.
#[divan::bench(args = WORKLOADS)]
fn fresh_decision(bencher: divan::Bencher, name: &str) {
    let w = workload(name);
    bencher
        .with_inputs(|| fresh_context(&w.core))
        .bench_local_refs(|ctx| ctx.run_experience(&w.key, &w.attrs));
}

/// [`fresh_decision`] through a store that keeps nothing ([`KeepNothing`]): the SDK and engine
/// layers alone, without the memory store's lookup, insert and eviction.
#[divan::bench(args = WORKLOADS)]
fn fresh_decision_keep_nothing(bencher: divan::Bencher, name: &str) {
    let w = workload_with_store(name, KeepNothing);
    bencher
        .with_inputs(|| fresh_context(&w.core))
        .bench_local_refs(|ctx| ctx.run_experience(&w.key, &w.attrs));
}
