//! A fresh decision through the SDK facade, store write included, on the two workloads of
//! `docs/performance.md` ("Engine"): `bench-3arm` (one location rule) and `bench-targeted` (a
//! two-key location map, four location rules, a permanent audience with two rules). Compare with
//! `cargo bench -p convert-core --bench workloads` (`hash_and_rules`: the same rules and the bucket
//! hash alone). Run with `cargo bench -p convert-sdk --bench workloads`.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::{WORKLOADS, fresh_context, workload};

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
