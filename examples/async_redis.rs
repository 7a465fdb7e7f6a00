//! The async facade on Redis: many visitors decided and converted concurrently on one
//! current-thread tokio runtime, over one multiplexed Redis connection, without blocking it.
//!
//! `--self-test [--redis-url URL] [--visitors N]` runs N concurrent tasks (default 1,000), each
//! deciding `checkout-button` and converting `purchase` for its own visitor, and prints exactly
//! one JSON line: `{"decisions": N, "conversions": N, "wall_ms": ..., "max_in_flight": ...,
//! "max_threads": ...}` (`max_in_flight`: the most SDK calls awaiting at once; `max_threads`: the
//! process's OS threads, highest seen, from `/proc/self/status`). It exits with an error when a
//! decision or a conversion is missing. Without `--redis-url` (or `$REDIS_URL`) it starts a
//! throw-away `redis-server` on a free port (it must be on PATH). That is what
//! `cargo xtask test` runs.
//!
//! Run it with
//! `cargo run --example async_redis --features convert-sdk/redis,convert-sdk/tokio -- --self-test`.

use convert_examples::DEMO_CONFIG;
use convert_sdk::stores::AsyncRedisStore;
use convert_sdk::{BucketingAttributes, ConversionAttributes, Core, Decision};
use convert_testkit::os_threads;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The value after `flag` on the command line.
fn arg(args: &[String], flag: &str) -> Option<String> {
    args.iter()
        .position(|a| a == flag)
        .and_then(|i| args.get(i + 1).cloned())
}

/// Counters shared by the tasks.
#[derive(Default)]
struct Gauges {
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    max_threads: AtomicUsize,
    decisions: AtomicUsize,
    conversions: AtomicUsize,
}

impl Gauges {
    fn enter(&self) {
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_in_flight.fetch_max(now, Ordering::SeqCst);
    }
    fn leave(&self) {
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn self_test(url: &str, visitors: usize) -> Result<(), Box<dyn std::error::Error>> {
    let sdk = Core::builder()
        .config_json(DEMO_CONFIG)
        .environment("production")
        .async_data_store(AsyncRedisStore::open(url).await?)
        .store_options(convert_sdk::StoreOptions::default().call_deadline(Duration::from_secs(5)))
        .tracking(false)
        .build()?;
    let gauges = Arc::new(Gauges::default());
    gauges.max_threads.store(os_threads(), Ordering::SeqCst);
    let done = Arc::new(AtomicBool::new(false));
    // Samples the thread count while the tasks run, on the same runtime.
    let sampler = {
        let (gauges, done) = (Arc::clone(&gauges), Arc::clone(&done));
        tokio::spawn(async move {
            while !done.load(Ordering::SeqCst) {
                gauges.max_threads.fetch_max(os_threads(), Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    };
    let start = Instant::now();
    let attrs = Arc::new(
        BucketingAttributes::new()
            .location_property("url", "https://shop.example/checkout")
            .visitor_property("cart_items", 2),
    );
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..visitors {
        let attrs = Arc::clone(&attrs);
        let ctx = sdk.create_context(format!("async-shopper-{i}"), None);
        let gauges = Arc::clone(&gauges);
        tasks.spawn(async move {
            gauges.enter();
            let d = ctx.run_experience_async("checkout-button", &attrs).await;
            gauges.leave();
            if matches!(d, Decision::Variation(_)) {
                gauges.decisions.fetch_add(1, Ordering::SeqCst);
            }
            gauges.enter();
            let c = ctx
                .track_conversion_async("purchase", &ConversionAttributes::new().revenue(20.0))
                .await;
            gauges.leave();
            if c.is_ok_and(|o| o.fired()) {
                gauges.conversions.fetch_add(1, Ordering::SeqCst);
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r?;
    }
    let wall_ms = start.elapsed().as_millis();
    done.store(true, Ordering::SeqCst);
    sampler.await?;
    gauges.max_threads.fetch_max(os_threads(), Ordering::SeqCst);
    let decisions = gauges.decisions.load(Ordering::SeqCst);
    let conversions = gauges.conversions.load(Ordering::SeqCst);
    println!(
        "{}",
        serde_json::json!({
            "decisions": decisions,
            "conversions": conversions,
            "wall_ms": wall_ms,
            "max_in_flight": gauges.max_in_flight.load(Ordering::SeqCst),
            "max_threads": gauges.max_threads.load(Ordering::SeqCst),
        })
    );
    if decisions != visitors || conversions != visitors {
        return Err(format!(
            "expected {visitors} decisions and conversions, got {decisions} and {conversions}"
        )
        .into());
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if !args.iter().any(|a| a == "--self-test") {
        eprintln!("usage: async_redis --self-test [--redis-url URL] [--visitors N]");
        return Ok(());
    }
    let visitors: usize = match arg(&args, "--visitors") {
        Some(n) => n.parse()?,
        None => 1_000,
    };
    let mut local = None;
    let url = match arg(&args, "--redis-url").or_else(|| std::env::var("REDIS_URL").ok()) {
        Some(u) => u,
        None => {
            let server =
                convert_store_tests::redis_server::RedisServer::start("async-redis-example");
            let u = server.url();
            local = Some(server);
            u
        }
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let out = runtime.block_on(self_test(&url, visitors));
    drop(local);
    out
}
