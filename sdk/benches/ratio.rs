//! Issue 11's bound, measured in pairs: a fresh decision through the SDK (memory store, store
//! write included, as `workloads`' `fresh_decision`) ÷ hash + rules alone (convert-core's
//! `hash_and_rules`, the same code: `core/benches/shared/floor.rs`).
//!
//! Not a divan bench. Timing the two in separate processes, as `cargo bench -p convert-core` and
//! `cargo bench -p convert-sdk` do, lets a shared machine change speed between them: on the
//! development VM the same-round ratio of those two figures ranged from 4.5× to 11.7×. Here each
//! round times a batch of 2,000 of each back to back in one process (the order rotates between
//! rounds), and the figure is the median of the per-round ratios. Contexts are created outside
//! the timed loops; each decision is dropped in it, as a caller drops it (keeping 2,000
//! decisions, 350 KB, to drop later pushed the store out of the cache and cost a third more).
//!
//! A third batch times the least any fresh decision on the default store can cost: hash +
//! rules, then one `update` of a second memory store (10,000 visitors, also full) that writes
//! for a new visitor key what a fresh decision writes (its location list and its variation),
//! with no SDK, no engine and no result. Its ratio to hash + rules is the bound's floor on
//! this store: a fresh decision can come no closer to hash + rules than that.
//!
//! A fourth batch times the same fresh decision through an SDK whose store keeps nothing
//! (`support::KeepNothing`: every `update` runs on a new, empty record, then drops it): the SDK
//! and the engine without any of the store's own work. Its ratio to hash + rules is what those
//! layers cost on top of the rules and the hash, whatever store the SDK is given.
//!
//! ```sh
//! cargo bench -p convert-sdk --bench ratio -- [rounds] [workload]   # default 200, both
//! RATIO_ONLY=fresh cargo bench -p convert-sdk --bench ratio -- 20 bench-3arm  # for a profiler
//! ```
//! `RATIO_ONLY` (`floor`, `store`, `fresh` or `nothing`) times that batch alone, in a function
//! of its own (`ratio::only`), for `perf` or `valgrind --toggle-collect`.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../../core/benches/shared/floor.rs"]
mod floor;
mod support;

use convert_core::ProjectConfig;
use convert_core::config::Experience;

use convert_core::engine::{
    Effects, Engine, EngineSettings, RunOptions, VisitorProps, VisitorState,
};
use convert_sdk::stores::MemoryStore;
use convert_sdk::{Context, DataStore, StoreData};
use serde_json::{Map, Value};
use std::hint::black_box;
use std::time::Instant;
use support::{WORKLOADS, fresh_context, workload};

/// Calls per timed batch.
const BATCH: usize = 2_000;

fn main() {
    // `cargo bench` passes `--bench`; the other arguments are the rounds and a workload.
    let mut args = std::env::args().skip(1).filter(|a| !a.starts_with('-'));
    let rounds = args
        .next()
        .map_or(200, |a| a.parse().expect("rounds: a number"));
    let only_workload = args.next();
    let only = std::env::var("RATIO_ONLY").ok();
    println!(
        "workload         hash+rules  +store write  fresh      no store    +store write ÷ h+r      no store ÷ h+r          fresh ÷ hash+rules: median (p10–p90)"
    );
    for name in WORKLOADS {
        if only_workload.as_deref().is_none_or(|w| w == name) {
            run(name, rounds.max(1), only.as_deref());
        }
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

/// What one timed batch needs.
struct Batch<'a> {
    cfg: &'a ProjectConfig,
    exp: &'a Experience,
    location: &'a Map<String, Value>,
    props: &'a VisitorProps<'a>,
    contexts: &'a [Context],
    /// Contexts of an SDK whose store keeps nothing ([`support::KeepNothing`]).
    nothing: &'a [Context],
    /// The store keys of `contexts`' visitors, for the store-write batch.
    keys: &'a [String],
    store: &'a MemoryStore,
    /// Writes what a fresh decision writes.
    record: &'a dyn Fn(&mut StoreData) -> bool,
    key: &'a str,
    attrs: &'a convert_sdk::BucketingAttributes,
}

impl Batch<'_> {
    #[inline(always)]
    fn floor(&self, i: usize) {
        black_box(floor::hash_and_rules(
            self.cfg,
            self.exp,
            black_box(self.location),
            black_box(self.props),
            black_box(self.contexts[i].visitor_id()),
        ));
    }

    fn time(&self, what: &str) -> f64 {
        match what {
            "floor" => per_call(|i| self.floor(i)),
            "store" => per_call(|i| {
                self.floor(i);
                let written = self.store.update(&self.keys[i], &mut |d| (self.record)(d));
                black_box(written.unwrap());
            }),
            "fresh" => per_call(|i| {
                drop(black_box(
                    self.contexts[i].run_experience(self.key, self.attrs),
                ))
            }),
            "nothing" => per_call(|i| {
                drop(black_box(
                    self.nothing[i].run_experience(self.key, self.attrs),
                ))
            }),
            other => panic!("RATIO_ONLY: floor, store, fresh or nothing, not {other:?}"),
        }
    }
}

/// [`Batch::time`] in a function that a profiler can single out.
#[inline(never)]
fn only(batch: &Batch<'_>, what: &str) -> f64 {
    batch.time(what)
}

fn run(name: &str, rounds: usize, only_batch: Option<&str>) {
    let w = workload(name);
    let keep_nothing = support::workload_with_store(name, support::KeepNothing);
    // The snapshot the SDK decides on, so that hash + rules reads the config the decisions read.
    let cfg = w.core.config();
    let exp = cfg.experience_by_key(&w.key).unwrap();
    let location = w.attrs.location_properties.clone().unwrap_or_default();
    let props = VisitorProps::new(w.attrs.visitor_properties.as_ref(), None, None);
    let store = MemoryStore::new();
    // What a fresh decision writes, as the engine asks for it (for bench-3arm: the location
    // list, then the variation).
    let settings = EngineSettings::default();
    let opts = RunOptions {
        location_properties: Some(&location),
        enable_tracking: false,
        ..RunOptions::default()
    };
    let mut fx = Effects::default();
    let mut first = StoreData::default();
    Engine::new(&cfg, &settings).run_experience(
        &mut VisitorState::new("bench-visitor-0", &mut first),
        &w.key,
        &props,
        &opts,
        &mut fx,
    );
    let ops = fx.store;
    assert!(
        !ops.is_empty(),
        "{name}: a fresh decision writes its record"
    );
    let record = |d: &mut StoreData| d.apply_all(&ops);
    // Fill both stores, so that every decision below evicts a visitor, as in the steady state.
    for n in 0..20_000 {
        black_box(fresh_context(&w.core).run_experience(&w.key, &w.attrs));
        store
            .update(&format!("fill-{n}"), &mut |d| record(d))
            .unwrap();
    }
    let mut times: [Vec<f64>; 4] = Default::default();
    let mut ratios: [Vec<f64>; 3] = Default::default();
    const ORDER: [&str; 4] = ["floor", "store", "fresh", "nothing"];
    for round in 0..rounds {
        let contexts: Vec<Context> = (0..BATCH).map(|_| fresh_context(&w.core)).collect();
        let nothing: Vec<Context> = (0..BATCH)
            .map(|_| fresh_context(&keep_nothing.core))
            .collect();
        let keys: Vec<String> = contexts
            .iter()
            // From a clone: the context itself keeps building its key per call, as in use.
            .map(|c| c.clone().store_key().unwrap().to_string())
            .collect();
        let batch = Batch {
            cfg: &cfg,
            exp,
            location: &location,
            props: &props,
            contexts: &contexts,
            nothing: &nothing,
            keys: &keys,
            store: &store,
            record: &record,
            key: &w.key,
            attrs: &w.attrs,
        };
        if let Some(what) = only_batch {
            times[0].push(only(&batch, what));
            continue;
        }
        let mut t = [0.0; 4];
        // Each batch takes each place in the order in turn.
        for k in 0..4 {
            let j = (round + k) % 4;
            t[j] = batch.time(ORDER[j]);
        }
        for (j, v) in t.iter().enumerate() {
            times[j].push(*v);
        }
        for (r, v) in ratios.iter_mut().zip(&t[1..]) {
            r.push(v / t[0]);
        }
    }
    if only_batch.is_some() {
        println!("{name:<16} {:.1} ns", quantile(&mut times[0], 0.5));
        return;
    }
    let [floor, store, fresh, nothing] = &mut times;
    let [store_ratio, fresh_ratio, nothing_ratio] = &mut ratios;
    let spread = |v: &mut Vec<f64>| {
        format!(
            "{:.2}× ({:.2}–{:.2}×)",
            quantile(v, 0.5),
            quantile(v, 0.1),
            quantile(v, 0.9)
        )
    };
    println!(
        "{name:<16} {:>7.1} ns  {:>8.1} ns  {:>7.1} ns  {:>7.1} ns  {:<22}  {:<22}  {}, {rounds} rounds",
        quantile(floor, 0.5),
        quantile(store, 0.5),
        quantile(fresh, 0.5),
        quantile(nothing, 0.5),
        spread(store_ratio),
        spread(nothing_ratio),
        spread(fresh_ratio),
    );
}

/// The `q` quantile (nearest rank) of `v`.
fn quantile(v: &mut [f64], q: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    let i = ((v.len() - 1) as f64 * q).round() as usize;
    v[i.min(v.len() - 1)]
}
