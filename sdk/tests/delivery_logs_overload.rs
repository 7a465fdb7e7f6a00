//! Producers that outpace a healthy (slow) endpoint for a while: the "tracking queue full"
//! warning is logged once for the overflow, not once per successful delivery (measured before:
//! a line every ~40 ms, 60+ in 2 s). Its own test binary, because it installs the process-wide
//! logger.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use convert_sdk::{ConversionAttributes, Core};
use convert_testkit::{FakeConvert, Mode};
use convert_transport_ureq::UreqTransport;
use serde_json::json;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

static QUEUE_FULL: AtomicUsize = AtomicUsize::new(0);

struct CountQueueFull;

impl log::Log for CountQueueFull {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        m.level() <= log::Level::Warn
    }
    fn log(&self, r: &log::Record<'_>) {
        if r.args().to_string().contains("tracking queue full") {
            QUEUE_FULL.fetch_add(1, Ordering::SeqCst);
        }
    }
    fn flush(&self) {}
}

#[test]
fn an_overload_of_a_healthy_endpoint_warns_once() {
    log::set_logger(&CountQueueFull).unwrap();
    log::set_max_level(log::LevelFilter::Warn);
    let server = FakeConvert::start();
    // Every answer takes ~20 ms: far fewer events per second than the producer below makes.
    server.post_default(Mode::Trickle(2, Duration::from_millis(10)));
    let core = Core::builder()
        .config(
            json!({"account_id": "1", "project": {"id": "2"}, "goals": [{"id": "7", "key": "g"}]}),
        )
        .transport(UreqTransport::new())
        .track_endpoint(format!("{}/v1/", server.base_url()))
        .events(10, Duration::from_millis(5), 20)
        .build()
        .unwrap();
    let until = Instant::now() + Duration::from_millis(800);
    let mut i = 0u64;
    while Instant::now() < until {
        core.create_context(format!("v{i}"), None)
            .track_conversion("g", &ConversionAttributes::new())
            .unwrap();
        i += 1;
    }
    let m = core.metrics();
    assert!(
        m.delivered_events >= 20,
        "deliveries succeeded meanwhile: {m:?}"
    );
    assert!(m.dropped_events > 0, "the queue overflowed: {m:?}");
    let lines = QUEUE_FULL.load(Ordering::SeqCst);
    assert_eq!(lines, 1, "{lines} \"queue full\" lines for one overload");
    core.close(Duration::from_millis(100));
}
