//! Fresh inserts into one shared [`MemoryStore`] from several threads: thread CPU time per
//! operation, to see what sharing the store costs (issue 10). Not a divan bench: wall clock on a
//! shared machine says little, so each thread reports the CPU time it spent
//! (`/proc/thread-self/schedstat`, Linux; 0 elsewhere), which shows the cost of cache lines moving
//! between cores even when other processes compete for the cores.
//!
//! ```sh
//! cargo bench -p convert-store-memory --bench store_threads -- [ops] [threads] [mode] [layout]
//! # e.g. 4000000 2 fresh shared; modes:
//! #   fresh   every operation is an `update` for a visitor never seen (a new decision: it
//! #           evicts the least recently used visitor of its set, as in the SDK's threads bench)
//! #   sticky  every operation is an `update` that reads a stored visitor and changes nothing
//! # layouts: shared (one store for all threads), separate (a store per thread: what sharing
//! # costs is the difference)
//! ```
//!
//! Each thread first fills the store (10,000 visitors, the default capacity) with its own keys,
//! then times its own operations; the record written is a decision's (one bucketing entry and
//! one location), keys shaped as the SDK's (`{account}-{project}-{visitor}`).
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use convert_ports::{DataStore, StoreData};
use convert_store_memory::MemoryStore;
use convert_testkit::timed_threads;
use std::fmt::Write;

/// The update of a bench operation: a new visitor gets the decision `template`; a stored one is
/// read and left unchanged.
fn decide(template: &StoreData) -> impl FnMut(&mut StoreData) -> bool + '_ {
    move |d: &mut StoreData| {
        let fresh = d.is_empty();
        if fresh {
            d.clone_from(template);
        }
        fresh
    }
}

/// A decision's record: one bucketing entry and one location.
fn decision() -> StoreData {
    let mut d = StoreData::default();
    d.set_bucketing("900100", "900101");
    d.set_locations(vec!["910".into()]);
    d
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let n: usize = args
        .first()
        .and_then(|s| s.parse().ok())
        .unwrap_or(4_000_000);
    let threads: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(2).max(1);
    let mode = args.get(2).map_or("fresh", String::as_str);
    let layout = args.get(3).map_or("shared", String::as_str);
    let (prefix, sticky) = match mode {
        "fresh" => ("100123-200456-bench-visitor-", 0),
        "sticky" => ("100123-200456-warmup-", 300),
        other => panic!("unknown mode {other}"),
    };
    let shared = MemoryStore::new();
    let template = decision();
    let per = n / threads;
    // A thread works on the shared store, or on its own (made by its setup).
    let times = timed_threads(
        threads,
        per,
        |t| {
            let own = match layout {
                "shared" => None,
                "separate" => Some(MemoryStore::new()),
                other => panic!("unknown layout {other}"),
            };
            let store = own.as_ref().unwrap_or(&shared);
            for i in 0..20_000 {
                let key = format!("100123-200456-warmup-{t}-{i}");
                let _ = store.update(&key, &mut decide(&template));
            }
            own
        },
        |t, own| {
            let store = own.as_ref().unwrap_or(&shared);
            let mut decide = decide(&template);
            // Keys are written into one buffer as they are used, so that the timed loop reads no
            // memory but the store's.
            let mut key = String::with_capacity(64);
            for i in t * per..(t + 1) * per {
                key.clear();
                key.push_str(prefix);
                if sticky == 0 {
                    let _ = write!(key, "{i}");
                } else {
                    let _ = write!(key, "{t}-{}", 20_000 - 1 - i % sticky);
                }
                let _ = std::hint::black_box(store.update(&key, &mut decide));
            }
        },
    );
    let (cpu, per_second) = (times.cpu_ns_per_op, times.ops_per_second);
    println!(
        "store threads={threads} mode={mode} layout={layout} cpu_ns_per_op={cpu:?} ops_per_second={per_second:.0}"
    );
}
