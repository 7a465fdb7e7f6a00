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
//! A fifth batch (`least`) is the least an SDK with this API could do for a fresh decision on the
//! default memory store, written straight, with no layers: load the config snapshot (arc-swap, as
//! the SDK), find the experience by key, build the store key in a reused buffer, and in one
//! `update` of a third full memory store evaluate every location rule and the audiences, hash, pick
//! the variation and write the location list and the variation; then build the decision (its six
//! strings) and drop it. No options, no effects, no preview, segment or tracking checks. Its ratio
//! to hash + rules is what the 4× bound leaves to an implementation of this API on this store and
//! machine.
//!
//! ```sh
//! cargo bench -p convert-sdk --bench ratio -- [rounds] [workload]   # default 200, both
//! RATIO_ONLY=fresh cargo bench -p convert-sdk --bench ratio -- 20 bench-3arm  # for a profiler
//! ```
//! `RATIO_ONLY` (`floor`, `store`, `fresh`, `nothing` or `least`) times that batch alone, in a
//! function of its own (`ratio::only`), for `perf` or `valgrind --toggle-collect`.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../../core/benches/shared/floor.rs"]
mod floor;
mod support;

use convert_core::config::{Experience, LocationTarget};
use convert_core::engine::{BucketedVariation, Decision};
use convert_core::store::StoredValue;
use convert_core::{ProjectConfig, ValueList};

use convert_core::engine::{
    Effects, Engine, EngineSettings, RunOptions, VisitorProps, VisitorState,
};
use convert_sdk::stores::MemoryStore;
use convert_sdk::{Context, DataStore, StoreData};
use serde_json::{Map, Value};
use std::cell::RefCell;
use std::hint::black_box;
use std::sync::Arc;
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
        "workload         hash+rules  +store write  fresh      no store    least       +store write ÷ h+r      no store ÷ h+r          least ÷ h+r             fresh ÷ hash+rules: median (p10–p90)"
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
    /// The config as the SDK holds it, for the `least` batch.
    swap: &'a arc_swap::ArcSwapOption<ProjectConfig>,
    /// The `least` batch's store (full, as `store`) and its key buffer, which holds the
    /// `{account}-{project}-` prefix.
    least_store: &'a MemoryStore,
    key_buf: &'a RefCell<String>,
    prefix_len: usize,
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

    /// The `least` batch's decision for `contexts[i]`'s visitor (see the module's doc).
    #[inline(always)]
    fn least(&self, i: usize) -> Option<Decision> {
        let guard = self.swap.load();
        let cfg = guard.as_deref()?;
        let exp = cfg.experience_by_key(black_box(self.key))?;
        let visitor = self.contexts[i].visitor_id();
        let mut key = self.key_buf.borrow_mut();
        key.truncate(self.prefix_len);
        key.push_str(visitor);
        let location = black_box(self.location);
        let props = black_box(self.props);
        let mut chosen = None;
        let _ = self.least_store.update(&key, &mut |d| {
            // A returning visitor keeps its variation (never the case in this batch).
            if let Some(vi) = d
                .bucketed_variation(&exp.id)
                .and_then(|v| exp.variation_by_id(v))
            {
                chosen = Some((vi, None));
                return false;
            }
            let mut list = ValueList::new();
            if let LocationTarget::Locations(ids) = &exp.location {
                for &li in ids {
                    let loc = &cfg.locations[li];
                    if loc
                        .rules
                        .as_ref()
                        .is_some_and(|r| r.evaluate(location).is_match())
                    {
                        list.push(StoredValue::Str(loc.key.clone()));
                    }
                }
                if list.as_slice().is_empty() {
                    return false;
                }
            }
            let audiences = exp.audiences.iter().map(|&a| {
                cfg.audiences[a]
                    .rules
                    .as_ref()
                    .is_some_and(|r| r.evaluate(props).is_match())
            });
            if !exp.audiences.is_empty() && !audiences.fold(false, |any, m| any | m) {
                return false;
            }
            let value = convert_core::hash::bucket_value(&exp.id, visitor, 9999, 10000.0);
            let Some(vi) = exp.packed.select(f64::from(value)) else {
                return false;
            };
            d.set_locations(list);
            d.set_bucketing(exp.id.clone(), exp.variations[vi].id.clone());
            chosen = Some((vi, Some(value)));
            true
        });
        let (vi, value) = chosen?;
        Some(Decision::Variation(BucketedVariation::of(exp, vi, value)))
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
            "least" => per_call(|i| drop(black_box(self.least(i)))),
            other => panic!("RATIO_ONLY: floor, store, fresh, nothing or least, not {other:?}"),
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
    let least_store = MemoryStore::new();
    let swap = arc_swap::ArcSwapOption::new(Some(Arc::clone(&cfg)));
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
        let key = format!("fill-{n}");
        for s in [&store, &least_store] {
            s.update(&key, &mut |d| record(d)).unwrap();
        }
    }
    let prefix = format!("{}-{}-", cfg.account_id, cfg.project_id);
    let key_buf = RefCell::new(prefix.clone());
    let mut times: [Vec<f64>; 5] = Default::default();
    let mut ratios: [Vec<f64>; 4] = Default::default();
    const ORDER: [&str; 5] = ["floor", "store", "fresh", "nothing", "least"];
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
            swap: &swap,
            least_store: &least_store,
            key_buf: &key_buf,
            prefix_len: prefix.len(),
        };
        // The least batch stores under the key a context stores under.
        assert_eq!(format!("{prefix}{}", contexts[0].visitor_id()), keys[0]);
        if let Some(what) = only_batch {
            times[0].push(only(&batch, what));
            continue;
        }
        let mut t = [0.0; 5];
        // Each batch takes each place in the order in turn.
        for k in 0..5 {
            let j = (round + k) % 5;
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
    let [floor, store, fresh, nothing, least] = &mut times;
    let [store_ratio, fresh_ratio, nothing_ratio, least_ratio] = &mut ratios;
    let spread = |v: &mut Vec<f64>| {
        format!(
            "{:.2}× ({:.2}–{:.2}×)",
            quantile(v, 0.5),
            quantile(v, 0.1),
            quantile(v, 0.9)
        )
    };
    println!(
        "{name:<16} {:>7.1} ns  {:>8.1} ns  {:>7.1} ns  {:>7.1} ns  {:>7.1} ns  {:<22}  {:<22}  {:<22}  {}, {rounds} rounds",
        quantile(floor, 0.5),
        quantile(store, 0.5),
        quantile(fresh, 0.5),
        quantile(nothing, 0.5),
        quantile(least, 0.5),
        spread(store_ratio),
        spread(nothing_ratio),
        spread(least_ratio),
        spread(fresh_ratio),
    );
}

/// The `q` quantile (nearest rank) of `v`.
fn quantile(v: &mut [f64], q: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    let i = ((v.len() - 1) as f64 * q).round() as usize;
    v[i.min(v.len() - 1)]
}
