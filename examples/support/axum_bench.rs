//! `axum_service --bench`: the example's async service against the same handlers run on
//! `tokio::task::spawn_blocking` with the sync `RedisStore`, both on Redis, driven by a closed-loop
//! load generator. Included by `axum_service.rs` only; `cargo xtask bench-axum` runs it.
//!
//! ```text
//! axum_service --bench [--requests N] [--warmup N] [--concurrency C] [--redis-delay-ms D[,D...]]
//!                      [--modes async,blocking] [--rounds R] [--redis-url URL]
//! ```
//!
//! - A real `redis-server` on a free loopback port (or `--redis-url`); with a delay D > 0 the
//!   services reach it through `convert_testkit::delay_proxy::DelayProxy`, which holds every
//!   Redis reply for D ms. D = 0 connects directly.
//! - Each run builds a fresh service on a multi-threaded tokio runtime with default settings
//!   (one worker per core, the default blocking pool of 512 threads) and a fresh SDK:
//!   `async`: the example's own `app` (async facade, `AsyncRedisStore`);
//!   `blocking`: the same handler code inside `spawn_blocking`, on the sync `RedisStore` with
//!   `max_connections` = C (so its pool never makes a request wait). Both use a 2 s store call
//!   deadline, so a loaded machine does not turn slow store calls into degraded decisions.
//! - The load generator runs on the main thread (a current-thread runtime): C keep-alive
//!   HTTP/1.1 connections, each sending its next request when the previous answer is in. Every
//!   request is for a new visitor (a fresh decision: a Redis read and a write), except that every
//!   fourth is `POST /purchase` for the visitor the connection checked out just before (an
//!   exactly-once conversion, which must fire). `--warmup` requests (default N/10) run first and
//!   are not measured.
//! - One JSON line per run: `mode`, `redis_delay_ms`, `concurrency`, `requests`, `rps`,
//!   `p50_ms`, `p99_ms`, `max_ms`, `errors` (failed or unexpected answers), `store_errors` (SDK
//!   store operations failed or skipped, from `Core::metrics`), `max_threads` (the process's OS
//!   threads, highest seen, from `/proc/self/status`) and `harness_threads` (the threads before
//!   the service started: the load generator's and the proxy's). With `--rounds R` > 1 the runs are
//!   interleaved (the mode order alternates per round) and one `"median": true` line per mode and
//!   delay follows. It exits with an error when a run had errors or store errors, or did not
//!   answer every request.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use convert_examples::{
    checkout_answer, checkout_attributes, checkout_query, purchase_answer, purchase_attributes,
};
use convert_sdk::stores::{AsyncRedisStore, RedisOptions, RedisStore};
use convert_sdk::{Core, StoreOptions};
use convert_store_tests::redis_server::RedisServer;
use convert_testkit::delay_proxy::DelayProxy;
use convert_testkit::os_threads;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

type BoxError = Box<dyn std::error::Error>;

/// The store call deadline of both modes (see the module docs).
const CALL_DEADLINE: Duration = Duration::from_secs(2);

/// The example's routes with the same handler code run on the blocking pool and the sync store:
/// what a service without the async facade does.
fn blocking_app(sdk: Core) -> Router {
    Router::new()
        .route("/checkout", get(checkout_blocking))
        .route("/purchase", post(purchase_blocking))
        .with_state(sdk)
}

async fn checkout_blocking(
    State(sdk): State<Core>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, StatusCode> {
    tokio::task::spawn_blocking(move || {
        let (visitor, cart_items) = checkout_query(&q);
        let ctx = sdk.create_context(&visitor, None);
        let attrs = checkout_attributes(cart_items);
        let variation = ctx.run_experience("checkout-button", &attrs);
        let cta = ctx.run_feature("checkout-cta", &attrs);
        Json(checkout_answer(&visitor, &variation, &cta))
    })
    .await
    .map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)
}

async fn purchase_blocking(
    State(sdk): State<Core>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, StatusCode> {
    tokio::task::spawn_blocking(move || {
        let (visitor, _) = checkout_query(&q);
        let ctx = sdk.create_context(&visitor, None);
        let outcome = ctx.track_conversion("purchase", &purchase_attributes());
        Json(purchase_answer(&visitor, &outcome))
    })
    .await
    .map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)
}

/// The service's flavour.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    /// The example's async handlers on `AsyncRedisStore`.
    Async,
    /// The same handlers in `spawn_blocking` on `RedisStore`.
    Blocking,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Async => "async",
            Mode::Blocking => "blocking",
        }
    }
}

/// The command line of `--bench`.
struct Options {
    requests: usize,
    warmup: usize,
    concurrency: usize,
    delays_ms: Vec<u64>,
    modes: Vec<Mode>,
    rounds: usize,
    redis_url: Option<String>,
}

fn value<'a>(args: &'a [String], flag: &str) -> Option<&'a str> {
    args.iter()
        .position(|a| a == flag)
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
}

fn number(args: &[String], flag: &str, default: usize) -> Result<usize, BoxError> {
    match value(args, flag) {
        Some(v) => v.parse().map_err(|e| format!("{flag} {v}: {e}").into()),
        None => Ok(default),
    }
}

impl Options {
    fn parse(args: &[String]) -> Result<Options, BoxError> {
        let requests = number(args, "--requests", 20_000)?;
        let delays_ms = value(args, "--redis-delay-ms")
            .unwrap_or("0")
            .split(',')
            .map(|d| d.trim().parse::<u64>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("--redis-delay-ms: {e}"))?;
        let modes = value(args, "--modes")
            .unwrap_or("async,blocking")
            .split(',')
            .map(|m| match m.trim() {
                "async" => Ok(Mode::Async),
                "blocking" => Ok(Mode::Blocking),
                other => Err(format!("--modes: unknown mode `{other}` (async, blocking)")),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let o = Options {
            requests,
            warmup: number(args, "--warmup", requests / 10)?,
            concurrency: number(args, "--concurrency", 64)?,
            delays_ms,
            modes,
            rounds: number(args, "--rounds", 1)?,
            redis_url: value(args, "--redis-url").map(str::to_string),
        };
        if o.requests == 0 || o.concurrency == 0 || o.rounds == 0 || o.modes.is_empty() {
            return Err(
                "--requests, --concurrency, --rounds and --modes must not be 0 or empty".into(),
            );
        }
        Ok(o)
    }
}

/// One run's figures.
#[derive(Debug, Clone)]
struct RunResult {
    mode: Mode,
    delay_ms: u64,
    answered: usize,
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    errors: usize,
    store_errors: u64,
    max_threads: usize,
    harness_threads: usize,
}

/// Runs the benchmark (see the module docs).
pub fn run(args: &[String]) -> Result<(), BoxError> {
    let o = Options::parse(args)?;
    let mut local = None;
    let url = match o.redis_url.clone() {
        Some(u) => u,
        None => {
            let server = RedisServer::start("axum-bench");
            let u = server.url();
            local = Some(server);
            u
        }
    };
    let upstream_port = url
        .trim_start_matches("redis://")
        .split(['/', ':'])
        .nth(1)
        .and_then(|p| p.parse::<u16>().ok())
        .ok_or_else(|| format!("cannot read the port of {url} (expected redis://HOST:PORT/)"))?;
    let mut results = Vec::new();
    let mut failed = false;
    for round in 0..o.rounds {
        for &delay_ms in &o.delays_ms {
            let proxy = match delay_ms {
                0 => None,
                d => Some(DelayProxy::start(upstream_port, Duration::from_millis(d))?),
            };
            let target = proxy
                .as_ref()
                .map_or_else(|| url.clone(), DelayProxy::redis_url);
            let mut modes = o.modes.clone();
            if round % 2 == 1 {
                modes.reverse();
            }
            for mode in modes {
                let r = run_once(&o, mode, delay_ms, &target, &format!("r{round}d{delay_ms}"))?;
                println!("{}", line(&o, &r));
                failed |= r.errors > 0 || r.store_errors > 0 || r.answered != o.requests;
                results.push(r);
            }
        }
    }
    if o.rounds > 1 {
        for &delay_ms in &o.delays_ms {
            for &mode in &o.modes {
                let runs: Vec<&RunResult> = results
                    .iter()
                    .filter(|r| r.mode == mode && r.delay_ms == delay_ms)
                    .collect();
                println!("{}", median_line(&o, mode, delay_ms, &runs));
            }
        }
    }
    drop(local);
    if failed {
        return Err(
            "a run had failed requests or store errors, or did not answer every request".into(),
        );
    }
    Ok(())
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn line(o: &Options, r: &RunResult) -> Value {
    json!({
        "mode": r.mode.name(),
        "redis_delay_ms": r.delay_ms,
        "concurrency": o.concurrency,
        "requests": r.answered,
        "rps": r.rps.round(),
        "p50_ms": round3(r.p50_ms),
        "p99_ms": round3(r.p99_ms),
        "max_ms": round3(r.max_ms),
        "errors": r.errors,
        "store_errors": r.store_errors,
        "max_threads": r.max_threads,
        "harness_threads": r.harness_threads,
    })
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    match xs.len() {
        0 => 0.0,
        n if n % 2 == 1 => xs[n / 2],
        n => (xs[n / 2 - 1] + xs[n / 2]) / 2.0,
    }
}

fn median_line(o: &Options, mode: Mode, delay_ms: u64, runs: &[&RunResult]) -> Value {
    let of = |f: fn(&RunResult) -> f64| median(runs.iter().map(|r| f(r)).collect());
    json!({
        "median": true,
        "runs": runs.len(),
        "mode": mode.name(),
        "redis_delay_ms": delay_ms,
        "concurrency": o.concurrency,
        "requests": o.requests,
        "rps": of(|r| r.rps).round(),
        "p50_ms": round3(of(|r| r.p50_ms)),
        "p99_ms": round3(of(|r| r.p99_ms)),
        "max_ms": round3(of(|r| r.max_ms)),
        "errors": runs.iter().map(|r| r.errors).sum::<usize>(),
        "store_errors": runs.iter().map(|r| r.store_errors).sum::<u64>(),
        "max_threads": of(|r| r.max_threads as f64),
        "harness_threads": of(|r| r.harness_threads as f64),
    })
}

/// One service, one mode: start it, warm it up, measure it, stop it.
fn run_once(
    o: &Options,
    mode: Mode,
    delay_ms: u64,
    redis_url: &str,
    run_id: &str,
) -> Result<RunResult, BoxError> {
    let load_runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let harness_threads = os_threads();
    // The service: a multi-threaded runtime with default settings.
    let service_runtime = tokio::runtime::Runtime::new()?;
    let store_options = StoreOptions::default().call_deadline(CALL_DEADLINE);
    let (sdk, app) = match mode {
        Mode::Async => {
            let store = service_runtime.block_on(AsyncRedisStore::open(redis_url))?;
            let sdk = super::builder()
                .async_data_store(store)
                .store_options(store_options)
                .build()?;
            (sdk.clone(), super::app(sdk))
        }
        Mode::Blocking => {
            let store = RedisStore::open_with(
                redis_url,
                RedisOptions::default()
                    .max_connections(o.concurrency)
                    .max_idle_connections(o.concurrency),
            )?;
            let sdk = super::builder()
                .data_store(store)
                .store_options(store_options)
                .build()?;
            (sdk.clone(), blocking_app(sdk))
        }
    };
    let listener = service_runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
    let addr = listener.local_addr()?;
    service_runtime.spawn(axum::serve(listener, app).into_future());

    let load = load_runtime.block_on(async {
        let max_threads = Arc::new(AtomicUsize::new(os_threads()));
        let done = Arc::new(AtomicBool::new(false));
        let sampler = {
            let (max_threads, done) = (Arc::clone(&max_threads), Arc::clone(&done));
            tokio::spawn(async move {
                while !done.load(Ordering::Relaxed) {
                    max_threads.fetch_max(os_threads(), Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            })
        };
        let mut conns = Vec::with_capacity(o.concurrency);
        for _ in 0..o.concurrency {
            conns.push(Conn::open(addr).await?);
        }
        let (conns, _) = phase(conns, &format!("{run_id}w-{}", mode.name()), o.warmup).await;
        let start = Instant::now();
        let (_, stats) = phase(conns, &format!("{run_id}m-{}", mode.name()), o.requests).await;
        let wall = start.elapsed();
        done.store(true, Ordering::Relaxed);
        let _ = sampler.await;
        max_threads.fetch_max(os_threads(), Ordering::Relaxed);
        Ok::<_, BoxError>((stats, wall, max_threads.load(Ordering::Relaxed)))
    });
    let metrics = sdk.metrics();
    drop(sdk);
    service_runtime.shutdown_timeout(Duration::from_secs(5));
    let (mut stats, wall, max_threads) = load?;
    stats.latencies_us.sort_unstable();
    let pct = |q: f64| {
        let n = stats.latencies_us.len();
        if n == 0 {
            return 0.0;
        }
        let rank = ((q * n as f64).ceil() as usize).clamp(1, n);
        f64::from(stats.latencies_us[rank - 1]) / 1000.0
    };
    Ok(RunResult {
        mode,
        delay_ms,
        answered: stats.answered,
        rps: stats.answered as f64 / wall.as_secs_f64(),
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
        max_ms: pct(1.0),
        errors: stats.errors,
        store_errors: metrics.store_errors + metrics.store_skipped,
        max_threads,
        harness_threads,
    })
}

/// What one phase of the load saw.
#[derive(Default)]
struct Stats {
    /// Requests answered as expected.
    answered: usize,
    /// Requests that failed or were answered unexpectedly.
    errors: usize,
    /// Latency of every answered request, in µs.
    latencies_us: Vec<u32>,
}

/// Sends `requests` requests over `conns` (one task per connection, each sending its next
/// request when the previous answer is in); visitor ids are `{tag}-{n}`.
async fn phase(conns: Vec<Conn>, tag: &str, requests: usize) -> (Vec<Conn>, Stats) {
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for conn in conns {
        let (next, tag) = (Arc::clone(&next), tag.to_string());
        tasks.spawn(drive(conn, next, tag, requests));
    }
    let mut conns = Vec::new();
    let mut total = Stats::default();
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok((conn, stats)) => {
                conns.extend(conn);
                total.answered += stats.answered;
                total.errors += stats.errors;
                total.latencies_us.extend(stats.latencies_us);
            }
            Err(_) => total.errors += 1,
        }
    }
    (conns, total)
}

/// One connection's share of a phase: every fourth request converts the visitor this
/// connection checked out before.
async fn drive(
    mut conn: Conn,
    next: Arc<AtomicUsize>,
    tag: String,
    requests: usize,
) -> (Option<Conn>, Stats) {
    let mut stats = Stats::default();
    let mut last_visitor: Option<String> = None;
    loop {
        let n = next.fetch_add(1, Ordering::Relaxed);
        if n >= requests {
            return (Some(conn), stats);
        }
        let (request, expect) = match last_visitor.take() {
            Some(v) if n % 4 == 3 => (
                format!(
                    "POST /purchase?visitor={v} HTTP/1.1\r\nHost: bench\r\nContent-Length: 0\r\n\r\n"
                ),
                "\"fired\":true",
            ),
            _ => {
                let v = format!("{tag}-{n}");
                let request = format!(
                    "GET /checkout?visitor={v}&cart_items=2 HTTP/1.1\r\nHost: bench\r\n\r\n"
                );
                last_visitor = Some(v);
                (request, "\"variation\":{")
            }
        };
        let sent = Instant::now();
        match conn.exchange(&request).await {
            Ok((200, body)) if body.contains(expect) => {
                stats.answered += 1;
                let us = sent.elapsed().as_micros();
                stats
                    .latencies_us
                    .push(u32::try_from(us).unwrap_or(u32::MAX));
            }
            Ok(_) => stats.errors += 1,
            Err(_) => {
                stats.errors += 1;
                match Conn::open(conn.addr).await {
                    Ok(c) => conn = c,
                    Err(_) => return (None, stats),
                }
            }
        }
    }
}

/// A keep-alive HTTP/1.1 client connection that understands `Content-Length` answers (what
/// hyper sends for these JSON bodies).
struct Conn {
    addr: SocketAddr,
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    async fn open(addr: SocketAddr) -> std::io::Result<Conn> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Conn {
            addr,
            stream,
            buf: Vec::with_capacity(4096),
        })
    }

    /// Sends `request` and reads its answer: the status code and the body.
    async fn exchange(&mut self, request: &str) -> std::io::Result<(u16, String)> {
        use std::io::{Error, ErrorKind};
        self.stream.write_all(request.as_bytes()).await?;
        self.buf.clear();
        let mut chunk = [0u8; 4096];
        let head_end = loop {
            if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let n = self.stream.read(&mut chunk).await?;
            if n == 0 {
                return Err(ErrorKind::UnexpectedEof.into());
            }
            self.buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&self.buf[..head_end]).to_ascii_lowercase();
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse::<u16>().ok())
            .ok_or_else(|| Error::new(ErrorKind::InvalidData, "no status code"))?;
        let length = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse::<usize>().ok())
            .ok_or_else(|| Error::new(ErrorKind::InvalidData, "no content-length"))?;
        while self.buf.len() < head_end + length {
            let n = self.stream.read(&mut chunk).await?;
            if n == 0 {
                return Err(ErrorKind::UnexpectedEof.into());
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
        let body = String::from_utf8_lossy(&self.buf[head_end..head_end + length]).into_owned();
        Ok((status, body))
    }
}
