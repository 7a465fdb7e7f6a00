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
use convert_testkit::timed_threads;
use std::sync::Arc;
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
    let times = timed_threads(
        threads,
        per,
        |t| {
            let core = instance();
            for i in 0..20_000 {
                let ctx = core.create_context(format!("warmup-{t}-{i}"), None);
                std::hint::black_box(ctx.run_experience(&key, &attrs));
            }
            let ids = t * per..(t + 1) * per;
            let id = |i: usize| format!("bench-visitor-{i}");
            if per_visitor_context {
                (core, Vec::new(), ids.map(id).collect())
            } else {
                let contexts = ids.map(|i| core.create_context(id(i), None)).collect();
                (core, contexts, Vec::new())
            }
        },
        |_, (core, contexts, ids): (Core, Vec<_>, Vec<String>)| {
            for ctx in &contexts {
                std::hint::black_box(ctx.run_experience(&key, &attrs));
            }
            for id in ids {
                let ctx = core.create_context(id, None);
                std::hint::black_box(ctx.run_experience(&key, &attrs));
            }
        },
    );
    let (cpu, per_second) = (times.cpu_ns_per_op, times.ops_per_second);
    println!(
        "{name} threads={threads} layout={layout} context_per_visitor={per_visitor_context} cpu_ns_per_decision={cpu:?} decisions_per_second={per_second:.0}"
    );
}
