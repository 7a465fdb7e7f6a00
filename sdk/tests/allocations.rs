//! Heap allocations per fresh decision through the SDK with the default memory store, counted on
//! the deciding thread (`allocation-counter`): a regression guard for the decision path (issue
//! 11, item 3). The store is first filled past its 10,000 visitors, so each fresh visitor evicts
//! one (the steady state the benches measure).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

// The benches' setup: the bench requests' SDK as `convert bench` builds it.
#[path = "../benches/support/mod.rs"]
mod support;

use support::{Workload, workload};

/// Allocations per fresh visitor in the steady state: (`run_experience` alone, context creation
/// + `run_experience` + drop of the context), the visitor ids being made beforehand.
fn per_visitor(name: &str) -> (f64, f64) {
    const N: usize = 2_000;
    let Workload { core, attrs, key } = workload(name);
    for i in 0..20_000 {
        let ctx = core.create_context(format!("warmup-{i}"), None);
        assert!(ctx.run_experience(&key, &attrs).is_variation());
    }
    let contexts: Vec<_> = (0..N)
        .map(|i| core.create_context(format!("decide-{i}"), None))
        .collect();
    let mut decided = 0;
    let decide = allocation_counter::measure(|| {
        for ctx in &contexts {
            decided += usize::from(ctx.run_experience(&key, &attrs).is_variation());
        }
    })
    .count_total;
    drop(contexts);
    let ids: Vec<String> = (0..N).map(|i| format!("visitor-{i}")).collect();
    let visitor = allocation_counter::measure(|| {
        for id in ids {
            let ctx = core.create_context(id, None);
            decided += usize::from(ctx.run_experience(&key, &attrs).is_variation());
        }
    })
    .count_total;
    assert_eq!(decided, 2 * N, "every visitor gets a variation");
    (decide as f64 / N as f64, visitor as f64 / N as f64)
}

/// A fresh decision allocates nothing: not the decision, the record (one decision and one
/// location, kept inline), the store key (a per-thread buffer) nor the context; the store reuses
/// the evicted record's key buffer, growing it now and then for a longer key (a few in a
/// hundred visitors here, depending on the store's random hash seed).
#[test]
fn a_fresh_decision_allocates_nothing_in_the_steady_state() {
    for name in support::WORKLOADS {
        let (decide, visitor) = per_visitor(name);
        println!("{name}: {decide:.3} allocations per decision, {visitor:.3} per visitor");
        assert!(decide <= 0.05, "{name}: {decide} allocations per decision");
        assert!(visitor <= 0.25, "{name}: {visitor} allocations per visitor");
    }
}
