//! The store fault suite: several SDK instances (each with its own store client, as app servers
//! of a fleet) convert the same goals for the same visitors while the store misbehaves: Redis
//! killed with SIGKILL and restarted, SIGSTOPped, at `maxmemory` with `noeviction`, a socket that
//! accepts and never answers, a corrupt record; SQLite locked, on a full disk, read-only, a
//! corrupt file.
//!
//! Each run asserts: no duplicate conversion (counted from what the tracking transports
//! received), no conversion lost without being counted in `metrics()`, every public call back
//! within its store deadline plus slack (counted by a watchdog thread), and a bounded number of
//! log lines (counted by a test logger).
#![cfg(all(feature = "redis", feature = "sqlite"))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod support;

use convert_sdk::stores::{RedisOptions, RedisStore, SqliteOptions, SqliteStore};
use convert_sdk::{
    BucketingAttributes, ConversionAttributes, Core, DataStore, Metrics, StoreOptions,
};
use convert_store_tests::redis_server::{RedisServer, redis_available};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use support::Recorder;

const CONFIG: &str = r#"{"account_id":"10","project":{"id":"20"},
  "experiences":[{"id":"100","key":"exp","variations":[{"id":"101","key":"a","traffic_allocation":50},{"id":"102","key":"b","traffic_allocation":50}]}],
  "goals":[{"id":"7","key":"purchase"},{"id":"8","key":"signup"}]}"#;
const GOALS: [&str; 2] = ["purchase", "signup"];
const VISITORS: usize = 6;
/// How long a set of visitors is converted before the next set.
const EPOCH: Duration = Duration::from_millis(100);
const INSTANCES: usize = 3;
const DEADLINE: Duration = Duration::from_millis(100);
/// Scheduling slack on a loaded 2-core machine: a call counts as overrunning past this.
const SLACK: Duration = Duration::from_millis(400);
const MAX_LOG_LINES: usize = 30;

/// Counts the SDK's warn and error lines.
struct CountingLogger;
static LOG_LINES: AtomicUsize = AtomicUsize::new(0);
impl log::Log for CountingLogger {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        m.level() <= log::Level::Warn
    }
    fn log(&self, r: &log::Record<'_>) {
        if self.enabled(r.metadata()) {
            LOG_LINES.fetch_add(1, Ordering::SeqCst);
        }
    }
    fn flush(&self) {}
}

/// The fault runs share the logger's counter: one at a time.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    static LOGGER: CountingLogger = CountingLogger;
    let _ = log::set_logger(&LOGGER).map(|()| log::set_max_level(log::LevelFilter::Warn));
    let g = LOCK
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    LOG_LINES.store(0, Ordering::SeqCst);
    g
}

fn store_options() -> StoreOptions {
    StoreOptions::default()
        .call_deadline(DEADLINE)
        .failure_threshold(3)
        .cooldown(Duration::from_millis(150))
}

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

/// Conversion events received per (visitor, goal id).
fn conversions(recs: &[Recorder]) -> HashMap<(String, String), usize> {
    let mut out = HashMap::new();
    for rec in recs {
        for r in rec.requests() {
            let body: serde_json::Value = serde_json::from_str(r.body.as_deref().unwrap()).unwrap();
            for v in body["visitors"].as_array().unwrap() {
                for e in v["events"].as_array().unwrap() {
                    if e["eventType"] == "conversion" && e["data"]["goalData"].is_null() {
                        let key = (
                            v["visitorId"].as_str().unwrap().to_string(),
                            e["data"]["goalId"].as_str().unwrap().to_string(),
                        );
                        *out.entry(key).or_insert(0) += 1;
                    }
                }
            }
        }
    }
    out
}

/// What a fleet run observed.
#[derive(Debug)]
struct Outcome {
    pairs: usize,
    duplicates: usize,
    unsent: usize,
    counted_losses: u64,
    overruns: u64,
    calls: u64,
    log_lines: usize,
    metrics: Vec<Metrics>,
    /// Conversion events per (visitor, goal id).
    sent: HashMap<(String, String), usize>,
    /// Visitor ids converted.
    attempted: HashSet<String>,
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
    let calls = Arc::new(AtomicU64::new(0));
    let attempted = Arc::new(Mutex::new(HashSet::<String>::new()));
    let overruns = Arc::new(AtomicU64::new(0));
    // Per worker: when its current call started (ms since `t0`, +1; 0 = idle) and its number.
    let t0 = Instant::now();
    let started: Arc<Vec<AtomicU64>> =
        Arc::new((0..instances).map(|_| AtomicU64::new(0)).collect());
    let seq: Arc<Vec<AtomicU64>> = Arc::new((0..instances).map(|_| AtomicU64::new(0)).collect());
    let watchdog = {
        let (stop, started, seq, overruns) =
            (stop.clone(), started.clone(), seq.clone(), overruns.clone());
        std::thread::spawn(move || {
            let limit = (DEADLINE + SLACK).as_millis() as u64;
            let mut flagged = vec![u64::MAX; instances];
            while !stop.load(Ordering::SeqCst) {
                let now = t0.elapsed().as_millis() as u64 + 1;
                for w in 0..instances {
                    let s = started[w].load(Ordering::SeqCst);
                    let n = seq[w].load(Ordering::SeqCst);
                    if s != 0 && now.saturating_sub(s) > limit && flagged[w] != n {
                        flagged[w] = n;
                        overruns.fetch_add(1, Ordering::SeqCst);
                    }
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    let workers: Vec<_> = cores
        .iter()
        .cloned()
        .enumerate()
        .map(|(w, core)| {
            let (stop, started, seq, calls, attempted) = (
                stop.clone(),
                started.clone(),
                seq.clone(),
                calls.clone(),
                attempted.clone(),
            );
            std::thread::spawn(move || {
                let timed = |f: &mut dyn FnMut()| {
                    seq[w].fetch_add(1, Ordering::SeqCst);
                    started[w].store(t0.elapsed().as_millis() as u64 + 1, Ordering::SeqCst);
                    f();
                    started[w].store(0, Ordering::SeqCst);
                    calls.fetch_add(1, Ordering::SeqCst);
                };
                let mut round = 0usize;
                while !stop.load(Ordering::SeqCst) {
                    // New visitors every EPOCH, so first conversions keep happening through the
                    // fault; every instance converts the same visitors at the same time.
                    // Wall-clock epochs, so separate processes convert the same visitors too.
                    let epoch = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .unwrap()
                        .as_millis()
                        / EPOCH.as_millis();
                    for v in 0..VISITORS {
                        // Instances walk the visitors in different orders, so they race.
                        let v = (v + w * 5 + round) % VISITORS;
                        let id = format!("visitor-{epoch}-{v}");
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
    watchdog.join().unwrap();
    for core in &cores {
        for _ in 0..20 {
            if core.reconcile_store() == 0 {
                break;
            }
        }
        let _ = core.flush_timeout(Duration::from_secs(5));
        core.close(Duration::from_secs(1));
    }
    let sent = conversions(&recs);
    let duplicates = sent.values().map(|n| n.saturating_sub(1)).sum();
    let attempted = std::mem::take(&mut *attempted.lock().unwrap());
    let pairs = attempted.len() * GOALS.len();
    let unsent = pairs - sent.len();
    let metrics: Vec<Metrics> = cores.iter().map(Core::metrics).collect();
    let counted_losses = metrics
        .iter()
        .map(|m| {
            m.held_conversions_already_marked
                + m.held_conversions_overflow
                + m.held_conversions_unconfirmed
                + m.held_conversions_discarded
        })
        .sum();
    Outcome {
        pairs,
        duplicates,
        unsent,
        counted_losses,
        overruns: overruns.load(Ordering::SeqCst),
        calls: calls.load(Ordering::SeqCst),
        log_lines: LOG_LINES.load(Ordering::SeqCst),
        metrics,
        sent,
        attempted,
    }
}

fn check(name: &str, o: &Outcome) {
    eprintln!(
        "{name}: pairs {} calls {} duplicates {} unsent {} counted losses {} overruns {} log lines {}; held sent {:?}; circuit opened {:?}; skipped {:?}",
        o.pairs,
        o.calls,
        o.duplicates,
        o.unsent,
        o.counted_losses,
        o.overruns,
        o.log_lines,
        o.metrics
            .iter()
            .map(|m| m.held_conversions_sent)
            .collect::<Vec<_>>(),
        o.metrics
            .iter()
            .map(|m| m.store_circuit_opened)
            .collect::<Vec<_>>(),
        o.metrics
            .iter()
            .map(|m| m.store_skipped)
            .collect::<Vec<_>>(),
    );
    assert_eq!(o.duplicates, 0, "{name}: duplicate conversions");
    assert!(
        o.unsent as u64 <= o.counted_losses,
        "{name}: {} (visitor, goal) pairs never sent but only {} losses counted",
        o.unsent,
        o.counted_losses
    );
    assert_eq!(o.overruns, 0, "{name}: calls past the deadline");
    assert!(
        o.log_lines <= MAX_LOG_LINES,
        "{name}: {} log lines",
        o.log_lines
    );
    assert!(
        o.metrics.iter().all(|m| m.held_conversions == 0),
        "{name}: conversions left held"
    );
}

fn redis_options() -> RedisOptions {
    RedisOptions::default()
        .connect_timeout(Duration::from_millis(100))
        .io_timeout(Duration::from_millis(100))
}

fn redis_fleet(server: &RedisServer, fault: impl FnOnce(), heals: bool) -> Outcome {
    let url = server.url();
    fleet(
        || Arc::new(RedisStore::open_with(&url, redis_options()).unwrap()),
        fault,
        heals,
    )
}

/// A durable Redis: exactly-once across a crash needs every acknowledged mark on disk.
fn durable_redis(tag: &str) -> RedisServer {
    RedisServer::start_with(tag, &["--appendfsync".into(), "always".into()])
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
        || {
            server.kill9();
            std::thread::sleep(Duration::from_millis(800));
            server.launch();
        },
        true,
    );
    check("redis kill -9", &o);
    assert!(o.metrics.iter().any(|m| m.store_circuit_opened > 0));
}

#[test]
fn redis_stopped_and_continued() {
    if !redis_available() {
        return;
    }
    let _s = serial();
    let server = durable_redis("fault-stop");
    let o = redis_fleet(
        &server,
        || {
            server.signal("-STOP");
            std::thread::sleep(Duration::from_millis(800));
            server.signal("-CONT");
        },
        true,
    );
    check("redis SIGSTOP", &o);
    assert!(o.metrics.iter().any(|m| m.store_circuit_opened > 0));
}

#[test]
fn redis_at_maxmemory_with_noeviction() {
    if !redis_available() {
        return;
    }
    let _s = serial();
    let server = durable_redis("fault-oom");
    let o = redis_fleet(
        &server,
        || {
            server.cli(&["CONFIG", "SET", "maxmemory-policy", "noeviction"]);
            server.cli(&["CONFIG", "SET", "maxmemory", "1"]);
            std::thread::sleep(Duration::from_millis(800));
            server.cli(&["CONFIG", "SET", "maxmemory", "0"]);
        },
        true,
    );
    check("redis maxmemory noeviction", &o);
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
    check("black-hole socket", &o);
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
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
        / EPOCH.as_millis();
    for e in now..now + 20 {
        server.cli(&["SET", &format!("convert:10-20-visitor-{e}-3"), "{not json"]);
    }
    let o = redis_fleet(
        &server,
        || std::thread::sleep(Duration::from_millis(300)),
        true,
    );
    check("redis corrupt record", &o);
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
    check("sqlite locked", &o);
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
    check("sqlite corrupt file", &o);
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
    check("sqlite disk full", &o);
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
    let o = sqlite_fleet(
        &view,
        || std::thread::sleep(Duration::from_millis(300)),
        false,
    );
    check("sqlite read-only", &o);
    assert!(o.metrics.iter().all(|m| m.store_circuit_opened > 0));
    let _ = std::fs::remove_dir_all(&dir);
}

/// The child side of [`redis_killed_and_restarted_under_three_processes`]: one SDK instance
/// converting until the parent creates the stop file, then reporting on stdout. A no-op when run
/// as an ordinary test.
#[test]
fn fleet_process_worker() {
    let (Some(url), Some(stop)) = (
        std::env::var_os("CONVERT_FAULT_WORKER_URL"),
        std::env::var_os("CONVERT_FAULT_WORKER_STOP"),
    ) else {
        return;
    };
    let _s = serial();
    let url = url.to_string_lossy().into_owned();
    let stop = PathBuf::from(stop);
    let o = fleet_of(
        1,
        || Arc::new(RedisStore::open_with(&url, redis_options()).unwrap()),
        || {
            while !stop.exists() {
                std::thread::sleep(Duration::from_millis(10));
            }
        },
        true,
    );
    for ((visitor, goal), n) in &o.sent {
        println!("SENT\t{visitor}\t{goal}\t{n}");
    }
    for v in &o.attempted {
        println!("ATTEMPTED\t{v}");
    }
    println!(
        "STATS\t{}\t{}\t{}\t{}\t{}",
        o.counted_losses,
        o.overruns,
        o.log_lines,
        o.calls,
        o.metrics
            .iter()
            .map(|m| m.store_circuit_opened)
            .sum::<u64>()
    );
}

/// Three processes (this test binary, run as [`fleet_process_worker`]) converting the same goals
/// for the same visitors while Redis is killed with SIGKILL and restarted.
#[test]
fn redis_killed_and_restarted_under_three_processes() {
    if !redis_available() {
        return;
    }
    let _s = serial();
    let mut server = durable_redis("fault-procs");
    let dir = sqlite_dir("procs");
    let stop = dir.join("stop");
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..3)
        .map(|_| {
            std::process::Command::new(&exe)
                .args([
                    "fleet_process_worker",
                    "--exact",
                    "--nocapture",
                    "--test-threads",
                    "1",
                ])
                .env("CONVERT_FAULT_WORKER_URL", server.url())
                .env("CONVERT_FAULT_WORKER_STOP", &stop)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    server.kill9();
    std::thread::sleep(Duration::from_millis(800));
    server.launch();
    std::thread::sleep(Duration::from_millis(300));
    std::fs::write(&stop, b"").unwrap();
    let mut sent: HashMap<(String, String), usize> = HashMap::new();
    let mut attempted = HashSet::new();
    let (mut losses, mut overruns, mut logs, mut calls, mut opened) =
        (0u64, 0u64, 0u64, 0u64, 0u64);
    let mut reports = 0;
    for child in children {
        let out = child.wait_with_output().unwrap();
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let f: Vec<&str> = line.split('\t').collect();
            match f.as_slice() {
                ["SENT", v, g, n] => {
                    *sent.entry((v.to_string(), g.to_string())).or_insert(0) +=
                        n.parse::<usize>().unwrap();
                }
                ["ATTEMPTED", v] => {
                    attempted.insert(v.to_string());
                }
                ["STATS", l, o, g, c, op] => {
                    reports += 1;
                    losses += l.parse::<u64>().unwrap();
                    overruns += o.parse::<u64>().unwrap();
                    logs += g.parse::<u64>().unwrap();
                    calls += c.parse::<u64>().unwrap();
                    opened += op.parse::<u64>().unwrap();
                }
                _ => {}
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(reports, 3, "every worker process reported");
    let duplicates: usize = sent.values().map(|n| n.saturating_sub(1)).sum();
    let unsent = attempted.len() * GOALS.len() - sent.len();
    eprintln!(
        "3 processes, redis kill -9: pairs {} calls {calls} duplicates {duplicates} unsent {unsent} counted losses {losses} overruns {overruns} log lines {logs} circuit opened {opened}",
        attempted.len() * GOALS.len()
    );
    assert_eq!(duplicates, 0, "duplicate conversions across processes");
    assert!(
        unsent as u64 <= losses,
        "{unsent} never sent, {losses} counted"
    );
    assert_eq!(overruns, 0, "calls past the deadline");
    assert!(logs <= 3 * MAX_LOG_LINES as u64, "{logs} log lines");
    assert!(opened >= 1, "the outage was seen");
}
