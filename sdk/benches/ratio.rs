//! Issue 11's bound, measured in pairs: a fresh decision through the SDK (memory store, store
//! write included, as `workloads`' `fresh_decision`) ÷ hash + rules alone (convert-core's
//! `hash_and_rules`, the same code: `core/benches/shared/floor.rs`).
//!
//! Not a divan bench. Timing the two in separate processes, as `cargo bench -p convert-core` and
//! `cargo bench -p convert-sdk` do, lets a shared machine change speed between them: on the
//! development VM the same-round ratio of those two figures ranged from 4.5× to 11.7×. Here each
//! round times a batch of 2,000 of each back to back in one process (the order alternates
//! between rounds), and the figure is the median of the per-round ratios. Contexts are created
//! outside the timed loops; each decision is dropped in it, as a caller drops it (keeping 2,000
//! decisions, 350 KB, to drop later pushed the store out of the cache and cost a third more).
//!
//! ```sh
//! cargo bench -p convert-sdk --bench ratio -- [rounds]     # default 200
//! ```
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../../core/benches/shared/floor.rs"]
mod floor;
mod support;

use convert_core::ProjectConfig;
use convert_core::engine::VisitorProps;
use convert_sdk::Context;
use std::hint::black_box;
use std::time::Instant;
use support::{WORKLOADS, fresh_context, request, workload};

/// Calls per timed batch.
const BATCH: usize = 2_000;

fn main() {
    // `cargo bench` passes `--bench`; the first other argument is the number of rounds.
    let rounds = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .map_or(200, |a| a.parse().expect("rounds: a number"));
    println!("workload         hash+rules  fresh      fresh ÷ hash+rules: median (p10–p90)");
    for name in WORKLOADS {
        run(name, rounds.max(1));
    }
}

/// Nanoseconds per call of `f`, run `BATCH` times.
fn per_call(mut f: impl FnMut(usize)) -> f64 {
    let start = Instant::now();
    for i in 0..BATCH {
        f(i);
    }
    start.elapsed().as_nanos() as f64 / BATCH as f64
}

fn run(name: &str, rounds: usize) {
    let req = request(name);
    let cfg = ProjectConfig::from_value(req["config"].clone()).unwrap();
    let w = workload(name);
    let exp = cfg.experience_by_key(&w.key).unwrap();
    let location = w.attrs.location_properties.clone().unwrap_or_default();
    let props = VisitorProps::new(w.attrs.visitor_properties.as_ref(), None, None);
    // Fill the store, so that every decision below evicts a visitor, as in the steady state.
    for _ in 0..20_000 {
        black_box(fresh_context(&w.core).run_experience(&w.key, &w.attrs));
    }
    let mut floors = Vec::with_capacity(rounds);
    let mut fresh = Vec::with_capacity(rounds);
    let mut ratios = Vec::with_capacity(rounds);
    for round in 0..rounds {
        let contexts: Vec<Context> = (0..BATCH).map(|_| fresh_context(&w.core)).collect();
        let time_floor = || {
            per_call(|_| {
                black_box(floor::hash_and_rules(
                    &cfg,
                    exp,
                    black_box(&location),
                    black_box(&props),
                    black_box("bench-visitor-123456"),
                ));
            })
        };
        let time_fresh =
            || per_call(|i| drop(black_box(contexts[i].run_experience(&w.key, &w.attrs))));
        let (f, d) = if round % 2 == 0 {
            let f = time_floor();
            (f, time_fresh())
        } else {
            let d = time_fresh();
            (time_floor(), d)
        };
        drop(contexts);
        floors.push(f);
        fresh.push(d);
        ratios.push(d / f);
    }
    println!(
        "{name:<16} {:>7.1} ns  {:>7.1} ns  {:.2}× ({:.2}–{:.2}×), {rounds} rounds",
        quantile(&mut floors, 0.5),
        quantile(&mut fresh, 0.5),
        quantile(&mut ratios, 0.5),
        quantile(&mut ratios, 0.1),
        quantile(&mut ratios, 0.9),
    );
}

/// The `q` quantile (nearest rank) of `v`.
fn quantile(v: &mut [f64], q: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    let i = ((v.len() - 1) as f64 * q).round() as usize;
    v[i.min(v.len() - 1)]
}
