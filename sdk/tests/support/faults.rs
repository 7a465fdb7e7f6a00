//! What the store fault suites (`store_faults.rs`, sync; `async_store_faults.rs`, async) share:
//! the project, the pace and limits of a run, the log-line counter, the call watchdog, the
//! conversion count from the tracking transports, the checks, and the child-process protocol.

use super::Recorder;
use convert_sdk::stores::RedisOptions;
use convert_sdk::{Core, Metrics, StoreOptions};
use convert_store_tests::redis_server::RedisServer;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

pub const CONFIG: &str = r#"{"account_id":"10","project":{"id":"20"},
  "experiences":[{"id":"100","key":"exp","variations":[{"id":"101","key":"a","traffic_allocation":50},{"id":"102","key":"b","traffic_allocation":50}]}],
  "goals":[{"id":"7","key":"purchase"},{"id":"8","key":"signup"}]}"#;
pub const GOALS: [&str; 2] = ["purchase", "signup"];
pub const VISITORS: usize = 6;
/// How long a set of visitors is converted before the next set.
pub const EPOCH: Duration = Duration::from_millis(100);
pub const DEADLINE: Duration = Duration::from_millis(100);
/// Scheduling slack on a loaded 2-core machine: a call counts as overrunning past this.
pub const SLACK: Duration = Duration::from_millis(400);
pub const MAX_LOG_LINES: usize = 30;

/// Counts the SDK's warn and error lines.
struct CountingLogger;
pub static LOG_LINES: AtomicUsize = AtomicUsize::new(0);
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
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    static LOGGER: CountingLogger = CountingLogger;
    let _ = log::set_logger(&LOGGER).map(|()| log::set_max_level(log::LevelFilter::Warn));
    let g = LOCK
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    LOG_LINES.store(0, Ordering::SeqCst);
    g
}

pub fn store_options() -> StoreOptions {
    StoreOptions::default()
        .call_deadline(DEADLINE)
        .failure_threshold(3)
        .cooldown(Duration::from_millis(150))
}

pub fn redis_options() -> RedisOptions {
    RedisOptions::default()
        .connect_timeout(Duration::from_millis(100))
        .io_timeout(Duration::from_millis(100))
}

/// A durable Redis: exactly-once across a crash needs every acknowledged mark on disk.
pub fn durable_redis(tag: &str) -> RedisServer {
    RedisServer::start_with(tag, &["--appendfsync".into(), "always".into()])
}

/// The outage of the kill cases: Redis killed with SIGKILL, down for 0.8 s, restarted.
pub fn kill9_and_restart(server: &mut RedisServer) {
    server.kill9();
    std::thread::sleep(Duration::from_millis(800));
    server.launch();
}

/// Redis frozen (SIGSTOP) for 0.8 s, then continued.
pub fn stop_and_continue(server: &RedisServer) {
    server.signal("-STOP");
    std::thread::sleep(Duration::from_millis(800));
    server.signal("-CONT");
}

/// Redis refusing every write for 0.8 s: `maxmemory 1` with `noeviction`.
pub fn out_of_memory(server: &RedisServer) {
    server.cli(&["CONFIG", "SET", "maxmemory-policy", "noeviction"]);
    server.cli(&["CONFIG", "SET", "maxmemory", "1"]);
    std::thread::sleep(Duration::from_millis(800));
    server.cli(&["CONFIG", "SET", "maxmemory", "0"]);
}

/// The visitor set of now: new visitors every [`EPOCH`] of wall-clock time, so instances (and
/// separate processes) convert the same visitors at the same time, and first conversions keep
/// happening through a fault.
pub fn epoch() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
        / EPOCH.as_millis()
}

/// The id of visitor `v` of `epoch`.
pub fn visitor(epoch: u128, v: usize) -> String {
    format!("visitor-{epoch}-{v}")
}

/// Counts calls, and the calls still running [`DEADLINE`] + [`SLACK`] after they began, from
/// its own thread (each in-flight call is counted once): no wall-clock assertion on totals.
pub struct Watchdog {
    watch: Watch,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Where callers say when a call begins and ends; `slot` identifies one caller (a thread or a
/// task), which makes one call at a time.
#[derive(Clone)]
pub struct Watch(Arc<Slots>);

pub struct Slots {
    t0: Instant,
    /// When the slot's current call began (ms since `t0`, +1; 0 = idle).
    started: Vec<AtomicU64>,
    /// The slot's call number.
    seq: Vec<AtomicU64>,
    overruns: AtomicU64,
    calls: AtomicU64,
    stop: AtomicBool,
}

impl Watch {
    pub fn begin(&self, slot: usize) {
        let s = &self.0;
        s.seq[slot].fetch_add(1, Ordering::SeqCst);
        s.started[slot].store(s.t0.elapsed().as_millis() as u64 + 1, Ordering::SeqCst);
    }

    pub fn end(&self, slot: usize) {
        self.0.started[slot].store(0, Ordering::SeqCst);
        self.0.calls.fetch_add(1, Ordering::SeqCst);
    }
}

impl Watchdog {
    pub fn start(slots: usize) -> Watchdog {
        let watch = Watch(Arc::new(Slots {
            t0: Instant::now(),
            started: (0..slots).map(|_| AtomicU64::new(0)).collect(),
            seq: (0..slots).map(|_| AtomicU64::new(0)).collect(),
            overruns: AtomicU64::new(0),
            calls: AtomicU64::new(0),
            stop: AtomicBool::new(false),
        }));
        let s = Arc::clone(&watch.0);
        let thread = std::thread::spawn(move || {
            let limit = (DEADLINE + SLACK).as_millis() as u64;
            let mut flagged = vec![u64::MAX; slots];
            while !s.stop.load(Ordering::SeqCst) {
                let now = s.t0.elapsed().as_millis() as u64 + 1;
                for ((started, seq), flagged) in s.started.iter().zip(&s.seq).zip(&mut flagged) {
                    let began = started.load(Ordering::SeqCst);
                    let n = seq.load(Ordering::SeqCst);
                    if began != 0 && now.saturating_sub(began) > limit && *flagged != n {
                        *flagged = n;
                        s.overruns.fetch_add(1, Ordering::SeqCst);
                    }
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        Watchdog {
            watch,
            thread: Some(thread),
        }
    }

    pub fn watch(&self) -> Watch {
        self.watch.clone()
    }

    /// Stops watching: `(overruns, calls)`.
    pub fn stop(mut self) -> (u64, u64) {
        let s = &self.watch.0;
        s.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        (
            s.overruns.load(Ordering::SeqCst),
            s.calls.load(Ordering::SeqCst),
        )
    }
}

/// Conversion events received per (visitor, goal id).
pub fn conversions(recs: &[Recorder]) -> HashMap<(String, String), usize> {
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
pub struct Outcome {
    pub pairs: usize,
    pub duplicates: usize,
    pub unsent: usize,
    pub counted_losses: u64,
    pub overruns: u64,
    pub calls: u64,
    pub log_lines: usize,
    pub metrics: Vec<Metrics>,
    /// Conversion events per (visitor, goal id).
    pub sent: HashMap<(String, String), usize>,
    /// Visitor ids converted.
    pub attempted: HashSet<String>,
}

/// Conversions that were never sent and are counted as such in `m`.
pub fn counted_losses(m: &Metrics) -> u64 {
    m.held_conversions_already_marked
        + m.held_conversions_overflow
        + m.held_conversions_unconfirmed
        + m.held_conversions_discarded
}

impl Outcome {
    /// Flushes and closes every instance (after the caller reconciled what it could), then
    /// counts what the tracking transports received against what was attempted.
    pub fn collect(
        cores: &[Core],
        recs: &[Recorder],
        attempted: HashSet<String>,
        (overruns, calls): (u64, u64),
    ) -> Outcome {
        for core in cores {
            let _ = core.flush_timeout(Duration::from_secs(5));
            core.close(Duration::from_secs(1));
        }
        let sent = conversions(recs);
        let duplicates = sent.values().map(|n| n.saturating_sub(1)).sum();
        let pairs = attempted.len() * GOALS.len();
        let metrics: Vec<Metrics> = cores.iter().map(Core::metrics).collect();
        Outcome {
            pairs,
            duplicates,
            unsent: pairs - sent.len(),
            counted_losses: metrics.iter().map(counted_losses).sum(),
            overruns,
            calls,
            log_lines: LOG_LINES.load(Ordering::SeqCst),
            metrics,
            sent,
            attempted,
        }
    }

    /// Prints the run's figures and asserts the bar: no duplicate, no loss without a count, no
    /// call past the deadline, bounded log lines, nothing left held.
    pub fn check(&self, name: &str) {
        let per = |f: fn(&Metrics) -> u64| self.metrics.iter().map(f).collect::<Vec<_>>();
        eprintln!(
            "{name}: pairs {} calls {} duplicates {} unsent {} counted losses {} overruns {} log lines {}; held sent {:?}; circuit opened {:?}; skipped {:?}",
            self.pairs,
            self.calls,
            self.duplicates,
            self.unsent,
            self.counted_losses,
            self.overruns,
            self.log_lines,
            per(|m| m.held_conversions_sent),
            per(|m| m.store_circuit_opened),
            per(|m| m.store_skipped),
        );
        assert_eq!(self.duplicates, 0, "{name}: duplicate conversions");
        assert!(
            self.unsent as u64 <= self.counted_losses,
            "{name}: {} (visitor, goal) pairs never sent but only {} losses counted",
            self.unsent,
            self.counted_losses
        );
        assert_eq!(self.overruns, 0, "{name}: calls past the deadline");
        assert!(
            self.log_lines <= MAX_LOG_LINES,
            "{name}: {} log lines",
            self.log_lines
        );
        assert!(
            self.metrics.iter().all(|m| m.held_conversions == 0),
            "{name}: conversions left held"
        );
    }

    /// A child process's report on stdout, read back by [`ProcessFleet::wait`].
    pub fn report(&self) {
        for ((visitor, goal), n) in &self.sent {
            println!("SENT\t{visitor}\t{goal}\t{n}");
        }
        for v in &self.attempted {
            println!("ATTEMPTED\t{v}");
        }
        println!(
            "STATS\t{}\t{}\t{}\t{}\t{}",
            self.counted_losses,
            self.overruns,
            self.log_lines,
            self.calls,
            self.metrics
                .iter()
                .map(|m| m.store_circuit_opened)
                .sum::<u64>()
        );
    }
}

/// Child processes of this test binary, each running `worker` (a test that converts until the
/// stop file exists, then prints [`Outcome::report`]), with the store at `url`.
pub struct ProcessFleet {
    children: Vec<std::process::Child>,
    dir: std::path::PathBuf,
}

/// The environment of a worker process: the store URL and the stop file. `None` when the test
/// runs as an ordinary test (the worker is then a no-op).
pub fn worker_env() -> Option<(String, std::path::PathBuf)> {
    let url = std::env::var_os("CONVERT_FAULT_WORKER_URL")?;
    let stop = std::env::var_os("CONVERT_FAULT_WORKER_STOP")?;
    Some((url.to_string_lossy().into_owned(), stop.into()))
}

/// Waits until the stop file of [`worker_env`] exists.
pub fn wait_for_stop(stop: &std::path::Path) {
    while !stop.exists() {
        std::thread::sleep(Duration::from_millis(10));
    }
}

impl ProcessFleet {
    /// `n` worker processes on a durable Redis that is killed with SIGKILL and restarted while
    /// they convert; then the checks of [`ProcessFleet::stop_and_check`].
    pub fn through_kill9(n: usize, worker: &str, name: &str) {
        let mut server = durable_redis(&format!("fault-procs-{n}"));
        let fleet = ProcessFleet::spawn(n, worker, &server.url());
        std::thread::sleep(Duration::from_millis(500));
        kill9_and_restart(&mut server);
        std::thread::sleep(Duration::from_millis(300));
        fleet.stop_and_check(name);
    }

    pub fn spawn(n: usize, worker: &str, url: &str) -> ProcessFleet {
        let dir = std::env::temp_dir().join(format!(
            "convert-faults-{}-procs-{worker}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let exe = std::env::current_exe().unwrap();
        let children = (0..n)
            .map(|_| {
                std::process::Command::new(&exe)
                    .args([worker, "--exact", "--nocapture", "--test-threads", "1"])
                    .env("CONVERT_FAULT_WORKER_URL", url)
                    .env("CONVERT_FAULT_WORKER_STOP", dir.join("stop"))
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::null())
                    .spawn()
                    .unwrap()
            })
            .collect();
        ProcessFleet { children, dir }
    }

    /// Tells the workers to stop, then sums their reports and asserts the bar across
    /// processes (no duplicate, no loss without a count, no overrun, bounded logs, the outage
    /// seen).
    pub fn stop_and_check(self, name: &str) {
        std::fs::write(self.dir.join("stop"), b"").unwrap();
        let n = self.children.len();
        let mut sent: HashMap<(String, String), usize> = HashMap::new();
        let mut attempted = HashSet::new();
        let (mut losses, mut overruns, mut logs, mut calls, mut opened) =
            (0u64, 0u64, 0u64, 0u64, 0u64);
        let mut reports = 0;
        for child in self.children {
            let out = child.wait_with_output().unwrap();
            for line in String::from_utf8_lossy(&out.stdout).lines() {
                let f: Vec<&str> = line.split('\t').collect();
                match f.as_slice() {
                    ["SENT", v, g, k] => {
                        *sent.entry((v.to_string(), g.to_string())).or_insert(0) +=
                            k.parse::<usize>().unwrap();
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
        let _ = std::fs::remove_dir_all(&self.dir);
        assert_eq!(reports, n, "every worker process reported");
        let duplicates: usize = sent.values().map(|k| k.saturating_sub(1)).sum();
        let unsent = attempted.len() * GOALS.len() - sent.len();
        eprintln!(
            "{name}: pairs {} calls {calls} duplicates {duplicates} unsent {unsent} counted losses {losses} overruns {overruns} log lines {logs} circuit opened {opened}",
            attempted.len() * GOALS.len()
        );
        assert!(calls > 0, "the workers made calls");
        assert_eq!(
            duplicates, 0,
            "{name}: duplicate conversions across processes"
        );
        assert!(
            unsent as u64 <= losses,
            "{name}: {unsent} never sent, {losses} counted"
        );
        assert_eq!(overruns, 0, "{name}: calls past the deadline");
        assert!(
            logs <= (n * MAX_LOG_LINES) as u64,
            "{name}: {logs} log lines"
        );
        assert!(opened >= 1, "{name}: the outage was seen");
    }
}

/// Commands Redis executed since the last `CONFIG RESETSTAT`, from `INFO commandstats`, by
/// command (`set`, `get`, `evalsha`, …), without the test's own `config` and `info`.
pub fn redis_commands(server: &RedisServer) -> std::collections::BTreeMap<String, u64> {
    server
        .cli(&["INFO", "commandstats"])
        .lines()
        .filter_map(|l| {
            let (name, stats) = l.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = stats
                .strip_prefix("calls=")?
                .split(',')
                .next()?
                .parse()
                .ok()?;
            (!name.starts_with("config") && name != "info").then(|| (name.to_string(), calls))
        })
        .collect()
}
