//! Producers that outpace a healthy (slow) endpoint for a while: the "tracking queue full"
//! warning is logged once for the overflow, not once per successful delivery (measured before:
//! a line every ~40 ms, 60+ in 2 s). Its own test binary, because it installs the process-wide
//! logger.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use convert_sdk::{ConversionAttributes, Core};
use convert_testkit::{FakeConvert, Mode};
use convert_transport_ureq::UreqTransport;
use std::time::{Duration, Instant};

#[path = "support/warnings.rs"]
mod warnings;

static QUEUE_FULL: warnings::CountWarnings = warnings::CountWarnings::new("tracking queue full");

#[test]
fn an_overload_of_a_healthy_endpoint_warns_once() {
    QUEUE_FULL.install();
    let server = FakeConvert::start();
    // Every answer takes ~20 ms: far fewer events per second than the producer below makes.
    server.post_default(Mode::Trickle(2, Duration::from_millis(10)));
    let core = Core::builder()
        .config(warnings::one_goal_config())
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
    let lines = QUEUE_FULL.count();
    assert_eq!(lines, 1, "{lines} \"queue full\" lines for one overload");
    core.close(Duration::from_millis(100));
}
