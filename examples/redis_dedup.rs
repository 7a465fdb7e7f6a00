//! Conversion dedup shared by processes through Redis.
//!
//! Two worker processes (think: two app servers) track the same goal for the same 20 visitors at
//! the same time; then a third run (think: a deploy restarting the app) tracks them again. Redis
//! holds the dedup state, so each visitor converts exactly once in total.
//!
//! Uses `$REDIS_URL` when set; otherwise starts a throw-away `redis-server` on a free port (it must
//! be on PATH). Run it with `cargo run --example redis_dedup --features convert-sdk/redis`.

use convert_examples::DEMO_CONFIG;
use convert_sdk::stores::RedisStore;
use convert_sdk::{ConversionAttributes, Core};
use std::process::Command;

const VISITORS: usize = 20;

/// One "app server": tracks a purchase for every visitor and prints how many conversions fired.
fn worker(url: &str) -> Result<(), Box<dyn std::error::Error>> {
    let sdk = Core::builder()
        .config_json(DEMO_CONFIG)
        .environment("production")
        .data_store(RedisStore::open(url)?)
        .tracking(false)
        .build()?;
    let mut fired = 0;
    for i in 0..VISITORS {
        let ctx = sdk.create_context(format!("shopper-{i}"), None);
        if ctx
            .track_conversion("purchase", &ConversionAttributes::new().revenue(20.0))?
            .fired()
        {
            fired += 1;
        }
    }
    println!("{fired}");
    Ok(())
}

fn run_workers(url: &str, n: usize) -> Result<usize, Box<dyn std::error::Error>> {
    let exe = std::env::current_exe()?;
    let children: Vec<_> = (0..n)
        .map(|_| {
            Command::new(&exe)
                .args(["--worker", url])
                .stdout(std::process::Stdio::piped())
                .spawn()
        })
        .collect::<Result<_, _>>()?;
    let mut total = 0;
    for child in children {
        let out = child.wait_with_output()?;
        if !out.status.success() {
            return Err("a worker failed".into());
        }
        total += String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse::<usize>()?;
    }
    Ok(total)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--worker") {
        return worker(args.get(2).ok_or("--worker needs a Redis URL")?);
    }
    let mut local = None;
    let url = match std::env::var("REDIS_URL") {
        Ok(u) => u,
        Err(_) => {
            let server =
                convert_store_tests::redis_server::RedisServer::start("redis-dedup-example");
            let u = server.url();
            local = Some(server);
            u
        }
    };
    let concurrent = run_workers(&url, 2)?;
    println!("two concurrent processes: {concurrent} conversions for {VISITORS} visitors");
    let after_restart = run_workers(&url, 1)?;
    println!("after a restart:          {after_restart} more conversions");
    drop(local);
    if concurrent != VISITORS || after_restart != 0 {
        return Err("dedup failed".into());
    }
    println!("each visitor converted exactly once");
    Ok(())
}
