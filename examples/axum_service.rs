//! An axum HTTP service that picks a checkout-button variation per request, on the SDK's async
//! path: no `spawn_blocking`, and no runtime thread ever waits on Redis.
//!
//! One `Core` is shared by every request (it is a cheap `Clone` handle); each request gets its own
//! `Context` and calls the `_async` methods. With `--redis-url URL` (or `$REDIS_URL`) visitor state
//! lives in Redis through `AsyncRedisStore` (one multiplexed connection shared by all requests):
//! each call awaits its store round trips, so one slow Redis reply never holds a worker thread.
//! Without a Redis URL the in-memory store is used and the `_async` methods run the sync ones
//! directly (no await, no I/O). This example runs offline: it builds the SDK with
//! `.tracking(false)`, so tracking events stay queued in memory and nothing is sent. Without
//! that line the SDK's own background thread delivers them, and never blocks a request.
//!
//! Run it with `cargo run --example axum_service --features convert-sdk/redis,convert-sdk/tokio`
//! and open `http://127.0.0.1:3000/checkout?visitor=alice`. With `--self-test` it binds a free
//! port, requests three visitors from itself and exits (that is what `cargo xtask test` runs).
//! With `--bench` it measures this service against the same handlers on `spawn_blocking` and
//! the sync `RedisStore` (see `support/axum_bench.rs` and `cargo xtask bench-axum`).

use axum::extract::{Query, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use convert_examples::{
    DEMO_CONFIG, checkout_answer, checkout_attributes, checkout_query, purchase_answer,
    purchase_attributes,
};

#[path = "support/axum_bench.rs"]
mod bench;
#[path = "support/http.rs"]
mod http;
use convert_sdk::stores::AsyncRedisStore;
use convert_sdk::{Core, CoreBuilder};
use http::get_body;
use serde_json::Value;
use std::collections::HashMap;

/// The routes: `/checkout?visitor=ID[&cart_items=N]` answers the visitor's variation and the
/// checkout-cta feature variables as JSON; `POST /purchase?visitor=ID` tracks the visitor's
/// `purchase` conversion (exactly once per visitor) and answers whether this call fired it.
pub fn app(sdk: Core) -> Router {
    Router::new()
        .route("/checkout", get(checkout))
        .route("/purchase", post(purchase))
        .with_state(sdk)
}

async fn checkout(
    State(sdk): State<Core>,
    Query(q): Query<HashMap<String, String>>,
) -> Json<Value> {
    let (visitor, cart_items) = checkout_query(&q);
    let ctx = sdk.create_context(&visitor, None);
    let attrs = checkout_attributes(cart_items);
    let variation = ctx.run_experience_async("checkout-button", &attrs).await;
    let cta = ctx.run_feature_async("checkout-cta", &attrs).await;
    Json(checkout_answer(&visitor, &variation, &cta))
}

async fn purchase(
    State(sdk): State<Core>,
    Query(q): Query<HashMap<String, String>>,
) -> Json<Value> {
    let (visitor, _) = checkout_query(&q);
    let ctx = sdk.create_context(&visitor, None);
    let outcome = ctx
        .track_conversion_async("purchase", &purchase_attributes())
        .await;
    Json(purchase_answer(&visitor, &outcome))
}

/// The SDK's builder without a store: the demo config, offline.
fn builder() -> CoreBuilder {
    // `.tracking(false)` keeps events queued in memory so this example sends nothing; a real
    // service drops that line and uses an SDK key (`build_async` and `ready().await`).
    Core::builder()
        .config_json(DEMO_CONFIG)
        .environment("production")
        .tracking(false)
}

/// The SDK, on Redis when `redis_url` is given.
async fn sdk(redis_url: Option<&str>) -> Result<Core, Box<dyn std::error::Error>> {
    let mut builder = builder();
    if let Some(url) = redis_url {
        builder = builder.async_data_store(AsyncRedisStore::open(url).await?);
    }
    Ok(builder.build()?)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--bench") {
        // Builds its own runtimes: the service's and the load generator's.
        return bench::run(&args);
    }
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(serve(&args))
}

/// Serves on port 3000, or with `--self-test` on a free port for three requests of its own.
async fn serve(args: &[String]) -> Result<(), Box<dyn std::error::Error>> {
    let self_test = args.iter().any(|a| a == "--self-test");
    let redis_url = args
        .iter()
        .position(|a| a == "--redis-url")
        .and_then(|i| args.get(i + 1).cloned())
        .or_else(|| std::env::var("REDIS_URL").ok());
    let addr = if self_test {
        "127.0.0.1:0"
    } else {
        "127.0.0.1:3000"
    };
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let server =
        tokio::spawn(axum::serve(listener, app(sdk(redis_url.as_deref()).await?)).into_future());
    if !self_test {
        println!("listening on http://{local}/checkout?visitor=alice");
        server.await??;
        return Ok(());
    }
    for visitor in ["alice", "bob", "carol"] {
        let body = get_body(local, &format!("/checkout?visitor={visitor}&cart_items=2")).await?;
        let v: Value = serde_json::from_str(&body)?;
        println!("{visitor}: {v}");
        if v["visitor"] != visitor || !v["variation"]["id"].is_string() {
            return Err(format!("unexpected answer for {visitor}: {body}").into());
        }
    }
    server.abort();
    Ok(())
}
