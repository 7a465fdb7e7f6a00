//! `Duration::MAX` (or any duration too long for an `Instant`) given to any timing knob or
//! timeout reads as "no limit": the SDK works on, it does not panic. (Each deadline was
//! `Instant::now() + d`, which panics on overflow: in `wait_until_ready`, `close`, `Drop` with
//! such a close timeout, every decision on a store with such a call deadline, and the delivery
//! thread, which died and took every later event with it. Found by fuzzing the public API.)
#![cfg(feature = "sqlite")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod support;

use convert_sdk::stores::{SqliteOptions, SqliteStore};
use convert_sdk::{
    BucketingAttributes, Core, HttpRequest, HttpResponse, RetryPolicy, StoreOptions, Transport,
    TransportError,
};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;
use support::DEMO_CONFIG;

/// Answers 500 while `failing` is set, 200 after; counts the requests answered 200. Clones
/// share one state.
#[derive(Default, Clone)]
struct Switch(Arc<SwitchState>);

#[derive(Default)]
struct SwitchState {
    failing: AtomicBool,
    delivered: AtomicUsize,
}

impl std::ops::Deref for Switch {
    type Target = SwitchState;
    fn deref(&self) -> &SwitchState {
        &self.0
    }
}

impl Transport for Switch {
    fn send(&self, _request: &HttpRequest) -> Result<HttpResponse, TransportError> {
        if self.failing.load(Ordering::SeqCst) {
            return Ok(HttpResponse::new(500, Vec::new()));
        }
        self.delivered.fetch_add(1, Ordering::SeqCst);
        Ok(HttpResponse::new(200, Vec::new()))
    }
}

#[test]
fn the_longest_durations_read_as_no_limit() {
    let dir = std::env::temp_dir().join(format!("convert-sdk-huge-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let store = SqliteStore::open_with(
        dir.join("visitors.sqlite3"),
        SqliteOptions::default().busy_timeout(Duration::MAX),
    )
    .unwrap();
    let transport = Switch::default();
    let core = Core::builder()
        .config_json(DEMO_CONFIG)
        .environment("production")
        .transport(transport.clone())
        .data_store(store)
        .events(100, Duration::MAX, 1000)
        .close_timeout(Duration::MAX)
        .retry(
            RetryPolicy::default()
                .initial(Duration::MAX)
                .max(Duration::MAX),
        )
        .store_options(
            StoreOptions::default()
                .call_deadline(Duration::MAX)
                .cooldown(Duration::MAX)
                .log_interval(Duration::MAX),
        )
        .build()
        .unwrap();
    core.wait_until_ready(Duration::MAX).unwrap();
    let _ = RetryPolicy::default()
        .initial(Duration::MAX)
        .max(Duration::MAX)
        .delay(1);

    let attrs = BucketingAttributes::new()
        .location_property("url", "https://shop.example/checkout")
        .visitor_property("plan", "premium")
        .visitor_property("cart_items", 2);
    let decide = |n: usize| {
        let bucketed: usize = (0..n)
            .map(|i| {
                let ctx = core.create_context(format!("visitor-{i}"), None);
                ctx.run_experiences(&attrs).len()
            })
            .sum();
        assert!(bucketed > 0);
    };
    // A partial batch waits for the release interval; a failed delivery for the retry delay.
    transport.failing.store(true, Ordering::SeqCst);
    decide(30);
    std::thread::sleep(Duration::from_millis(200));
    assert!(core.flush_timeout(Duration::from_millis(300)).is_err());
    // The delivery thread is alive: once the endpoint answers, a flush delivers everything.
    transport.failing.store(false, Ordering::SeqCst);
    core.flush_timeout(Duration::from_secs(5)).unwrap();
    assert!(transport.delivered.load(Ordering::SeqCst) > 0);
    assert_eq!(core.metrics().dropped_events, 0);
    decide(5);
    core.close(Duration::MAX);
    drop(core);
    let _ = std::fs::remove_dir_all(&dir);
}
