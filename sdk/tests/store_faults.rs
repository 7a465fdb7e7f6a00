//! The store fault suite: several SDK instances (each with its own store client, as app servers
//! of a fleet) convert the same goals for the same visitors while the store misbehaves: Redis
//! killed with SIGKILL and restarted, SIGSTOPped, at `maxmemory` with `noeviction`, a socket that
//! accepts and never answers, a corrupt record; SQLite locked, on a full disk, read-only, a
//! corrupt file. (`async_store_faults.rs` runs the Redis cases through the async facade.)
//!
//! Each run asserts: no duplicate conversion (counted from what the tracking transports
//! received), no conversion lost without being counted in `metrics()`, every public call back
//! within its store deadline plus slack (counted by a watchdog thread), and a bounded number of
//! log lines (counted by a test logger).
#![cfg(all(feature = "redis", feature = "sqlite"))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod support;

use convert_sdk::stores::{RedisStore, SqliteOptions, SqliteStore};
use convert_sdk::{BucketingAttributes, ConversionAttributes, Core, DataStore};
use convert_store_tests::redis_server::{RedisServer, redis_available};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::Recorder;
use support::faults::{
    CONFIG, GOALS, Outcome, ProcessFleet, VISITORS, Watchdog, durable_redis, epoch,
    kill9_and_restart, out_of_memory, redis_options, serial, stop_and_continue, store_options,
    visitor, wait_for_stop, worker_env,
};

const INSTANCES: usize = 3;

fn sdk(store: Arc<dyn DataStore>, rec: &Recorder) -> Core {
    Core::builder()
        .config_json(CONFIG)
        .shared_data_store(store)
        .store_options(store_options())
        .transport(rec.clone())
        .tracking(false)
        .build()
        .unwrap()
}

/// Runs `INSTANCES` SDK instances (each with a store from `make_store`) converting both goals for
/// the same visitors, and deciding, while `fault` runs on this thread; then `heal` (when the
/// fault is lifted, the fleet runs on for a while so held conversions reconcile), then flushes
/// and closes every instance.
fn fleet(
    make_store: impl Fn() -> Arc<dyn DataStore>,
    fault: impl FnOnce(),
    heals: bool,
) -> Outcome {
    fleet_of(INSTANCES, make_store, fault, heals)
}

/// [`fleet`] with `instances` SDK instances in this process.
fn fleet_of(
    instances: usize,
    make_store: impl Fn() -> Arc<dyn DataStore>,
    fault: impl FnOnce(),
    heals: bool,
) -> Outcome {
    let recs: Vec<Recorder> = (0..instances).map(|_| Recorder::default()).collect();
    let cores: Vec<Core> = recs.iter().map(|r| sdk(make_store(), r)).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let attempted = Arc::new(Mutex::new(HashSet::<String>::new()));
    let watchdog = Watchdog::start(instances);
    let workers: Vec<_> = cores
        .iter()
        .cloned()
        .enumerate()
        .map(|(w, core)| {
            let (stop, attempted, watch) = (stop.clone(), attempted.clone(), watchdog.watch());
            std::thread::spawn(move || {
                let timed = |f: &mut dyn FnMut()| {
                    watch.begin(w);
                    f();
                    watch.end(w);
                };
                let mut round = 0usize;
                while !stop.load(Ordering::SeqCst) {
                    let epoch = epoch();
                    for v in 0..VISITORS {
                        // Instances walk the visitors in different orders, so they race.
                        let id = visitor(epoch, (v + w * 5 + round) % VISITORS);
                        attempted.lock().unwrap().insert(id.clone());
                        let ctx = core.create_context(id, None);
                        timed(&mut || {
                            ctx.run_experience("exp", &BucketingAttributes::new());
                        });
                        for g in GOALS {
                            timed(&mut || {
                                let _ = ctx.track_conversion(g, &ConversionAttributes::new());
                            });
                        }
                    }
                    round += 1;
                    std::thread::sleep(Duration::from_millis(3));
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(150));
    fault();
    // Run on after the fault: held conversions reconcile on later calls.
    std::thread::sleep(Duration::from_millis(if heals { 700 } else { 300 }));
    stop.store(true, Ordering::SeqCst);
    for w in workers {
        w.join().unwrap();
    }
    let watched = watchdog.stop();
    for core in &cores {
        for _ in 0..20 {
            if core.reconcile_store() == 0 {
                break;
            }
        }
    }
    let attempted = std::mem::take(&mut *attempted.lock().unwrap());
    Outcome::collect(&cores, &recs, attempted, watched)
}

fn redis_fleet(server: &RedisServer, fault: impl FnOnce(), heals: bool) -> Outcome {
    let url = server.url();
    fleet(
        || Arc::new(RedisStore::open_with(&url, redis_options()).unwrap()),
        fault,
        heals,
    )
}

#[test]
fn redis_killed_and_restarted() {
    if !redis_available() {
        return;
    }
    let _s = serial();
    let mut server = durable_redis("fault-kill9");
    let url = server.url();
    let o = fleet(
        || Arc::new(RedisStore::open_with(&url, redis_options()).unwrap()),
        || kill9_and_restart(&mut server),
        true,
    );
    o.check("redis kill -9");
    assert!(o.metrics.iter().any(|m| m.store_circuit_opened > 0));
}

#[test]
fn redis_stopped_and_continued() {
    if !redis_available() {
        return;
    }
    let _s = serial();
    let server = durable_redis("fault-stop");
    let o = redis_fleet(&server, || stop_and_continue(&server), true);
    o.check("redis SIGSTOP");
    assert!(o.metrics.iter().any(|m| m.store_circuit_opened > 0));
}

#[test]
fn redis_at_maxmemory_with_noeviction() {
    if !redis_available() {
        return;
    }
    let _s = serial();
    let server = durable_redis("fault-oom");
    let o = redis_fleet(&server, || out_of_memory(&server), true);
    o.check("redis maxmemory noeviction");
}

#[test]
fn redis_socket_that_never_answers() {
    let _s = serial();
    // Accepts connections, reads nothing, answers nothing.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let held = Arc::new(Mutex::new(Vec::new()));
    let h = held.clone();
    std::thread::spawn(move || {
        for s in listener.incoming().flatten() {
            h.lock().unwrap().push(s);
        }
    });
    let url = format!("redis://127.0.0.1:{port}/");
    let o = fleet(
        || Arc::new(RedisStore::open_with(&url, redis_options()).unwrap()),
        || std::thread::sleep(Duration::from_millis(600)),
        false,
    );
    o.check("black-hole socket");
    assert!(o.metrics.iter().all(|m| m.store_skipped > 0));
}

#[test]
fn redis_corrupt_record_is_treated_once() {
    if !redis_available() {
        return;
    }
    let _s = serial();
    let server = durable_redis("fault-corrupt");
    // Unparsable records for visitor 3 of each epoch of the coming 2 s.
    let now = epoch();
    for e in now..now + 20 {
        server.cli(&["SET", &format!("convert:10-20-visitor-{e}-3"), "{not json"]);
    }
    let o = redis_fleet(
        &server,
        || std::thread::sleep(Duration::from_millis(300)),
        true,
    );
    o.check("redis corrupt record");
    let corrupt: u64 = o.metrics.iter().map(|m| m.store_corrupt_records).sum();
    eprintln!("redis corrupt record: {corrupt} corrupt reads counted");
    // Each corrupt record is seen by few calls (each instance at most once or twice), not by
    // every call: the first write replaces it.
    assert!(
        (1..=20 * INSTANCES as u64 * 2).contains(&corrupt),
        "{corrupt}"
    );
    // Every seeded record that the fleet met was replaced by a good one.
    let met: Vec<String> = (now..now + 20)
        .map(|e| format!("visitor-{e}-3"))
        .filter(|v| o.attempted.contains(v))
        .collect();
    assert!(!met.is_empty());
    for v in met {
        let stored = server.cli(&["GET", &format!("convert:10-20-{v}")]);
        assert!(stored.contains("\"goals\""), "{v}: {stored}");
    }
}

fn sqlite_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("convert-faults-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn sqlite_fleet(db: &Path, fault: impl FnOnce(), heals: bool) -> Outcome {
    let opts = SqliteOptions::default().busy_timeout(Duration::from_millis(100));
    fleet(
        || Arc::new(SqliteStore::open_with(db, opts).unwrap()),
        fault,
        heals,
    )
}

#[test]
fn sqlite_locked_by_another_writer() {
    let _s = serial();
    let dir = sqlite_dir("locked");
    let db = dir.join("v.db");
    let o = sqlite_fleet(
        &db,
        || {
            let c = rusqlite::Connection::open(&db).unwrap();
            c.execute_batch("BEGIN EXCLUSIVE").unwrap();
            std::thread::sleep(Duration::from_millis(800));
            c.execute_batch("COMMIT").unwrap();
        },
        true,
    );
    o.check("sqlite locked");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn sqlite_corrupt_file() {
    let _s = serial();
    let dir = sqlite_dir("corrupt");
    let db = dir.join("v.db");
    let o = sqlite_fleet(
        &db,
        || {
            // Garbage over the database and its write-ahead log, in place (the open connections
            // keep their file handles).
            for f in ["v.db", "v.db-wal"] {
                std::fs::write(dir.join(f), vec![0x5a; 64 * 1024]).unwrap();
            }
            std::thread::sleep(Duration::from_millis(400));
        },
        false,
    );
    o.check("sqlite corrupt file");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A small tmpfs (root only): `None` with a SKIPPED line otherwise.
struct Tmpfs(PathBuf);
impl Tmpfs {
    fn mount(tag: &str, size: &str) -> Option<Tmpfs> {
        let dir = sqlite_dir(tag);
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&dir)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!("SKIPPED: cannot mount a tmpfs (needs root)");
            let _ = std::fs::remove_dir_all(&dir);
            return None;
        }
        Some(Tmpfs(dir))
    }
}
impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn sqlite_disk_full() {
    let _s = serial();
    let Some(fs) = Tmpfs::mount("diskfull", "2m") else {
        return;
    };
    let db = fs.0.join("v.db");
    let filler = fs.0.join("filler");
    let o = sqlite_fleet(
        &db,
        || {
            // Fill every free byte, hold it, then free it.
            let _ = std::fs::write(&filler, vec![0u8; 4 * 1024 * 1024]);
            std::thread::sleep(Duration::from_millis(800));
            let _ = std::fs::remove_file(&filler);
        },
        true,
    );
    o.check("sqlite disk full");
}

#[test]
fn sqlite_read_only_file() {
    let _s = serial();
    let dir = sqlite_dir("readonly");
    let db = dir.join("v.db");
    // A database with some history, then opened by the fleet through a read-only bind mount.
    let seeded = sdk(
        Arc::new(SqliteStore::open(&db).unwrap()),
        &Recorder::default(),
    );
    seeded
        .create_context("visitor-0-0", None)
        .run_experience("exp", &BucketingAttributes::new());
    drop(seeded);
    let ro = sqlite_dir("readonly-view");
    let mounted = std::process::Command::new("mount")
        .args(["--bind", "-o", "ro"])
        .arg(&dir)
        .arg(&ro)
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        eprintln!("SKIPPED: cannot bind-mount read-only (needs root)");
        return;
    }
    let _ = std::process::Command::new("mount")
        .args(["-o", "remount,ro,bind"])
        .arg(&ro)
        .status();
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
            let _ = std::fs::remove_dir(&self.0);
        }
    }
    let _unmount = Unmount(ro.clone());
    let view = ro.join("v.db");
    // Decisions still read stored state: the record written before is there (a WAL database
    // needs a `-shm` file even to be read, which this directory cannot hold).
    let reader = SqliteStore::open(&view).unwrap();
    let key = "10-20-visitor-0-0"; // account and project of `CONFIG`
    assert!(reader.get(key).unwrap().is_some(), "the stored record");
    assert!(reader.set(key, &convert_sdk::StoreData::default()).is_err());
    drop(reader);
    let o = sqlite_fleet(
        &view,
        || std::thread::sleep(Duration::from_millis(300)),
        false,
    );
    o.check("sqlite read-only");
    // Reads answer and writes fail at once (counted): the circuit has no reason to open.
    assert!(
        o.metrics.iter().all(|m| m.store_errors > 0),
        "{:?}",
        o.metrics
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The child side of [`redis_killed_and_restarted_under_three_processes`]: one SDK instance
/// converting until the parent creates the stop file, then reporting on stdout. A no-op when run
/// as an ordinary test.
#[test]
fn fleet_process_worker() {
    let Some((url, stop)) = worker_env() else {
        return;
    };
    let _s = serial();
    fleet_of(
        1,
        || Arc::new(RedisStore::open_with(&url, redis_options()).unwrap()),
        || wait_for_stop(&stop),
        true,
    )
    .report();
}

/// Three processes (this test binary, run as [`fleet_process_worker`]) converting the same goals
/// for the same visitors while Redis is killed with SIGKILL and restarted.
#[test]
fn redis_killed_and_restarted_under_three_processes() {
    if !redis_available() {
        return;
    }
    let _s = serial();
    ProcessFleet::through_kill9(3, "fleet_process_worker", "3 processes, redis kill -9");
}

/// Eight threads deciding through one SQLite store while another connection holds the database
/// locked: every call gives up within the call deadline. The store's one connection used to be
/// taken with a plain `Mutex`, whose wait has no bound: a thread could wait for several
/// holders in a row, each waiting for the database until its own deadline (measured: 904 ms
/// for one call at a 150 ms deadline, 25 calls over twice the deadline). Each call now waits
/// for its turn at the connection only until its deadline.
#[test]
fn sqlite_locked_with_many_threads_stays_within_the_deadline() {
    let _s = serial();
    let dir = sqlite_dir("turns");
    let db = dir.join("v.db");
    let store = Arc::new(SqliteStore::open(&db).unwrap());
    let core = Core::builder()
        .config_json(CONFIG)
        .shared_data_store(store as Arc<dyn DataStore>)
        // Every call goes to the store (no open circuit to skip it).
        .store_options(
            convert_sdk::StoreOptions::default()
                .call_deadline(Duration::from_millis(100))
                .failure_threshold(u32::MAX)
                .cooldown(Duration::ZERO),
        )
        .tracking(false)
        .build()
        .unwrap();
    let locker = rusqlite::Connection::open(&db).unwrap();
    locker.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let locked = Arc::new(AtomicBool::new(true));
    let workers: Vec<_> = (0..8)
        .map(|t| {
            let core = core.clone();
            let locked = Arc::clone(&locked);
            std::thread::spawn(move || {
                let mut calls = 0;
                while locked.load(Ordering::SeqCst) {
                    let ctx = core.create_context(format!("turns-{t}-{calls}"), None);
                    let _ = ctx.run_experience("exp", &BucketingAttributes::default());
                    calls += 1;
                }
                calls
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    locked.store(false, Ordering::SeqCst);
    let calls: usize = workers.into_iter().map(|w| w.join().unwrap()).sum();
    locker.execute_batch("COMMIT").unwrap();
    let m = core.metrics();
    assert!(calls >= 8 && m.store_errors > 0, "{calls} calls, {m:?}");
    assert_eq!(m.store_deadline_overruns, 0, "{calls} calls, {m:?}");
    drop(core);
    let _ = std::fs::remove_dir_all(&dir);
}
