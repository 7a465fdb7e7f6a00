//! With the endpoint down and the queue full, every new event drops the oldest in constant time
//! and the SDK logs a handful of lines, not one per dropped event (measured before: 67,748 WARN
//! lines). Its own test binary, because it installs the process-wide logger.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use convert_sdk::{ConversionAttributes, Core};
use convert_testkit::{FakeConvert, Mode};
use convert_transport_ureq::UreqTransport;
use std::time::Duration;

#[path = "support/warnings.rs"]
mod warnings;

static WARNINGS: warnings::CountWarnings = warnings::CountWarnings::new("");

#[test]
fn an_outage_with_a_full_queue_logs_a_few_lines_and_counts_every_drop() {
    WARNINGS.install();
    let server = FakeConvert::start();
    server.post_default(Mode::Status(503));
    let core = Core::builder()
        .config(warnings::one_goal_config())
        .transport(UreqTransport::new())
        .track_endpoint(format!("{}/v1/", server.base_url()))
        .events(10, Duration::from_millis(5), 100)
        .retry(warnings::quick_retry())
        .build()
        .unwrap();
    for i in 0..5_000 {
        core.create_context(format!("v{i}"), None)
            .track_conversion("g", &ConversionAttributes::new())
            .unwrap();
    }
    // A flush that fails leaves the queue settled: the failed batch is back, bounded.
    assert!(core.flush().is_err());
    let m = core.metrics();
    assert_eq!(core.queued_events(), 100);
    assert_eq!(m.dropped_events, 4_900, "{m:?}");
    assert_eq!(m.delivered_events, 0);
    let lines = WARNINGS.count();
    assert!(lines <= 5, "{lines} WARN lines for one outage");
    assert!(
        lines >= 2,
        "the outage and the overflow are both reported: {lines}"
    );
}
