//! Fresh decisions on several threads: CPU time per decision and decisions per second, for the
//! memory store's scaling (issue 10). Not a divan bench: wall clock on a shared machine says
//! little, so each thread also reports the CPU time it spent deciding
//! (`/proc/thread-self/schedstat`, Linux; 0 elsewhere), which shows what sharing costs even when
//! other processes compete for the cores.
//!
//! ```sh
//! cargo bench -p convert-sdk --bench threads -- [workload] [visitors] [threads] [layout] [mode]
//! # e.g. bench-3arm 1000000 2 shared; layouts:
//! #   shared        one SDK instance (one store) for all threads, as `convert bench`
//! #   shared-store  an SDK instance per thread, one MemoryStore shared by all
//! #   separate      an SDK instance and a store per thread (nothing shared)
//! # modes:
//! #   decide        contexts created before the timed loop (`convert bench`'s decide-only mode)
//! #   context       a context created, used and dropped per visitor in the timed loop
//! #                 (`convert bench`'s default mode)
//! ```
//!
//! Each thread decides for its own fresh visitors after a warm-up that fills the store (10,000
//! visitors, the default).
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use convert_sdk::Core;
use convert_sdk::stores::MemoryStore;
use convert_testkit::thread_cpu_ns;
use std::sync::{Arc, Barrier};
use std::time::Instant;
use support::{Workload, workload, workload_with_store};

fn main() {
    // `cargo bench` passes `--bench`; positional arguments are ours.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let name = args.first().map_or("bench-3arm", String::as_str);
    let n: usize = args
        .get(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let threads: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(2).max(1);
    let layout = args.get(3).map_or("shared", String::as_str);
    let per_visitor_context = match args.get(4).map_or("decide", String::as_str) {
        "decide" => false,
        "context" => true,
        other => panic!("unknown mode {other}"),
    };
    let Workload { core, attrs, key } = workload(name);
    let store = Arc::new(MemoryStore::new());
    let instance = || -> Core {
        match layout {
            "shared" => core.clone(),
            "shared-store" => workload_with_store(name, Arc::clone(&store)).core,
            "separate" => workload(name).core,
            other => panic!("unknown layout {other}"),
        }
    };
    let per = n / threads;
    let start = Barrier::new(threads);
    let results: Vec<(u64, f64)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let core = instance();
                let (key, attrs, start) = (&key, &attrs, &start);
                s.spawn(move || {
                    for i in 0..20_000 {
                        let ctx = core.create_context(format!("warmup-{t}-{i}"), None);
                        std::hint::black_box(ctx.run_experience(key, attrs));
                    }
                    let ids = t * per..(t + 1) * per;
                    let id = |i: usize| format!("bench-visitor-{i}");
                    let (contexts, ids): (Vec<_>, Vec<_>) = if per_visitor_context {
                        (Vec::new(), ids.map(id).collect())
                    } else {
                        let c = ids.map(|i| core.create_context(id(i), None)).collect();
                        (c, Vec::new())
                    };
                    start.wait();
                    let (cpu, wall) = (thread_cpu_ns(), Instant::now());
                    for ctx in &contexts {
                        std::hint::black_box(ctx.run_experience(key, attrs));
                    }
                    for id in ids {
                        let ctx = core.create_context(id, None);
                        std::hint::black_box(ctx.run_experience(key, attrs));
                    }
                    (
                        (thread_cpu_ns() - cpu) / per as u64,
                        wall.elapsed().as_secs_f64(),
                    )
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let slowest = results.iter().map(|r| r.1).fold(0.0, f64::max);
    let cpu: Vec<u64> = results.iter().map(|r| r.0).collect();
    println!(
        "{name} threads={threads} layout={layout} context_per_visitor={per_visitor_context} cpu_ns_per_decision={cpu:?} decisions_per_second={:.0}",
        (per * threads) as f64 / slowest
    );
}
