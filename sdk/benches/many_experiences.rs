//! `run_experiences` for one visitor against a project with many experiences (run with
//! `cargo bench -p convert-sdk --bench many_experiences`).
//!
//! Each iteration decides a new visitor into every experience (n sticky writes into one
//! record), then decides the same visitor again (n stored lookups). Both should grow linearly
//! with n.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use convert_sdk::{BucketingAttributes, Core};
use serde_json::{Value, json};
use std::sync::atomic::{AtomicU64, Ordering};

fn main() {
    divan::main();
}

/// A project with `n` two-arm experiences, no audiences and no locations.
fn sdk(n: usize) -> Core {
    let experiences: Vec<Value> = (0..n)
        .map(|i| {
            let id = 1_000_000 + 10 * i;
            json!({
                "id": id.to_string(),
                "key": format!("exp-{i}"),
                "name": format!("Experience {i}"),
                "type": "a/b_fullstack",
                "version": 1,
                "settings": {"matching_options": {"audiences": "any", "locations": "any"}},
                "variations": [
                    {"id": (id + 1).to_string(), "key": "a", "status": "running", "traffic_allocation": 50.0},
                    {"id": (id + 2).to_string(), "key": "b", "status": "running", "traffic_allocation": 50.0}
                ]
            })
        })
        .collect();
    let config = json!({
        "account_id": "100123",
        "project": {"id": "200456"},
        "experiences": experiences,
    });
    Core::builder()
        .config(config)
        .events(1_000_000, std::time::Duration::from_secs(3600), 1_000_000)
        .build()
        .unwrap()
}

static NEXT: AtomicU64 = AtomicU64::new(0);

#[divan::bench(args = [5_000, 20_000, 40_000], sample_count = 5, sample_size = 1)]
fn fresh_then_sticky(bencher: divan::Bencher, n: usize) {
    let core = sdk(n);
    let attrs = BucketingAttributes::new().enable_tracking(false);
    bencher
        .with_inputs(|| {
            let i = NEXT.fetch_add(1, Ordering::Relaxed);
            core.create_context(format!("many-visitor-{i}"), None)
        })
        .bench_local_refs(|ctx| {
            let fresh = ctx.run_experiences(&attrs).len();
            let sticky = ctx.run_experiences(&attrs).len();
            assert_eq!(fresh, sticky);
            fresh
        });
}
