//! The store fault suite's Redis cases through the async facade (`AsyncRedisStore`,
//! `Context::*_async`): two SDK instances, each on its own current-thread runtime with two
//! tasks (or in its own process), convert the same goals for the same visitors while Redis is
//! killed with SIGKILL and restarted, SIGSTOPped, or at `maxmemory` with `noeviction`.
//!
//! Each run asserts what the sync suite does (`support/faults.rs`): no duplicate conversion
//! (counted from what the recording transports received), no conversion lost without being
//! counted in `metrics()`, every call back within its store deadline plus slack (counted by a
//! watchdog thread, not timed), and a bounded number of log lines.
#![cfg(all(feature = "redis", feature = "tokio"))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod support;

use convert_sdk::stores::AsyncRedisStore;
use convert_sdk::{BucketingAttributes, ConversionAttributes, Core};
use convert_store_tests::redis_server::redis_available;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::Recorder;
use support::faults::{
    CONFIG, GOALS, Outcome, ProcessFleet, VISITORS, Watch, Watchdog, durable_redis, epoch,
    kill9_and_restart, out_of_memory, redis_options, serial, stop_and_continue, store_options,
    visitor, wait_for_stop, worker_env,
};

const RUNTIMES: usize = 2;
const TASKS: usize = 2;

/// One task's loop: new visitors every epoch, a decision and both conversions for each, every
/// call watched in `slot`.
async fn convert_until_stopped(
    core: Core,
    slot: usize,
    watch: Watch,
    stop: Arc<AtomicBool>,
    attempted: Arc<Mutex<HashSet<String>>>,
) {
    let mut round = 0usize;
    while !stop.load(Ordering::SeqCst) {
        let epoch = epoch();
        for v in 0..VISITORS {
            // Tasks walk the visitors in different orders, so they race.
            let id = visitor(epoch, (v + slot * 5 + round) % VISITORS);
            attempted.lock().unwrap().insert(id.clone());
            let ctx = core.create_context(id, None);
            watch.begin(slot);
            ctx.run_experience_async("exp", &BucketingAttributes::new())
                .await;
            watch.end(slot);
            for g in GOALS {
                watch.begin(slot);
                let _ = ctx
                    .track_conversion_async(g, &ConversionAttributes::new())
                    .await;
                watch.end(slot);
            }
        }
        round += 1;
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
}

/// `runtimes` SDK instances, each with its own `AsyncRedisStore` on `url` and its own
/// current-thread runtime on its own OS thread running [`TASKS`] converting tasks, while
/// `fault` runs on this thread; then (when `heals`) on for a while so held conversions
/// reconcile, then each instance reconciles what it still holds, flushes and closes.
fn async_fleet(runtimes: usize, url: &str, fault: impl FnOnce(), heals: bool) -> Outcome {
    let recs: Vec<Recorder> = (0..runtimes).map(|_| Recorder::default()).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let attempted = Arc::new(Mutex::new(HashSet::<String>::new()));
    let watchdog = Watchdog::start(runtimes * TASKS);
    let (core_tx, core_rx) = std::sync::mpsc::channel();
    let threads: Vec<_> = recs
        .iter()
        .enumerate()
        .map(|(r, rec)| {
            let (url, rec, stop, attempted, watch, core_tx) = (
                url.to_string(),
                rec.clone(),
                stop.clone(),
                attempted.clone(),
                watchdog.watch(),
                core_tx.clone(),
            );
            std::thread::spawn(move || {
                let rt = support::current_thread_runtime();
                rt.block_on(async move {
                    let store = AsyncRedisStore::open_with(&url, redis_options())
                        .await
                        .unwrap();
                    let core = Core::builder()
                        .config_json(CONFIG)
                        .async_data_store(store)
                        .store_options(store_options())
                        .transport(rec)
                        .tracking(false)
                        .build()
                        .unwrap();
                    core_tx.send((r, core.clone())).unwrap();
                    let tasks: Vec<_> = (0..TASKS)
                        .map(|t| {
                            tokio::spawn(convert_until_stopped(
                                core.clone(),
                                r * TASKS + t,
                                watch.clone(),
                                stop.clone(),
                                attempted.clone(),
                            ))
                        })
                        .collect();
                    for t in tasks {
                        t.await.unwrap();
                    }
                    for _ in 0..20 {
                        if core.reconcile_store_async().await == 0 {
                            break;
                        }
                    }
                });
            })
        })
        .collect();
    let mut cores: Vec<(usize, Core)> = (0..runtimes).map(|_| core_rx.recv().unwrap()).collect();
    cores.sort_by_key(|(r, _)| *r);
    std::thread::sleep(Duration::from_millis(150));
    fault();
    // Run on after the fault: held conversions reconcile on later calls.
    std::thread::sleep(Duration::from_millis(if heals { 700 } else { 300 }));
    stop.store(true, Ordering::SeqCst);
    for t in threads {
        t.join().unwrap();
    }
    let watched = watchdog.stop();
    let cores: Vec<Core> = cores.into_iter().map(|(_, c)| c).collect();
    let attempted = std::mem::take(&mut *attempted.lock().unwrap());
    Outcome::collect(&cores, &recs, attempted, watched)
}

#[test]
fn async_redis_killed_and_restarted() {
    if !redis_available() {
        return;
    }
    let _s = serial();
    let mut server = durable_redis("afault-kill9");
    let url = server.url();
    let o = async_fleet(RUNTIMES, &url, || kill9_and_restart(&mut server), true);
    o.check("async redis kill -9");
    assert!(o.metrics.iter().any(|m| m.store_circuit_opened > 0));
}

#[test]
fn async_redis_stopped_and_continued() {
    if !redis_available() {
        return;
    }
    let _s = serial();
    let server = durable_redis("afault-stop");
    let o = async_fleet(RUNTIMES, &server.url(), || stop_and_continue(&server), true);
    o.check("async redis SIGSTOP");
    assert!(o.metrics.iter().any(|m| m.store_circuit_opened > 0));
}

#[test]
fn async_redis_at_maxmemory_with_noeviction() {
    if !redis_available() {
        return;
    }
    let _s = serial();
    let server = durable_redis("afault-oom");
    let o = async_fleet(RUNTIMES, &server.url(), || out_of_memory(&server), true);
    o.check("async redis maxmemory noeviction");
    assert!(
        o.metrics.iter().any(|m| m.store_errors > 0),
        "the fault was seen"
    );
}

/// The child side of [`async_redis_killed_and_restarted_under_two_processes`]: one async SDK
/// instance converting until the parent creates the stop file, then reporting on stdout. A
/// no-op when run as an ordinary test.
#[test]
fn async_fleet_process_worker() {
    let Some((url, stop)) = worker_env() else {
        return;
    };
    let _s = serial();
    async_fleet(1, &url, || wait_for_stop(&stop), true).report();
}

/// Two processes (this test binary, run as [`async_fleet_process_worker`]) converting the same
/// goals for the same visitors through the async facade while Redis is killed with SIGKILL and
/// restarted.
#[test]
fn async_redis_killed_and_restarted_under_two_processes() {
    if !redis_available() {
        return;
    }
    let _s = serial();
    ProcessFleet::through_kill9(
        2,
        "async_fleet_process_worker",
        "2 async processes, redis kill -9",
    );
}
