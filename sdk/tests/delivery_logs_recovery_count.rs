//! The warning logged when delivery recovers gives the number of events dropped on overflow
//! during the outage, including those dropped while its first request hung (before it failed).
//! Its own test binary, because it installs the process-wide logger.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use convert_sdk::{
    ConversionAttributes, Core, HttpRequest, HttpResponse, Method, Transport, TransportError,
};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

#[path = "support/warnings.rs"]
mod warnings;

static RECOVERIES: warnings::CountWarnings = warnings::CountWarnings::new("recovered");

/// A tracking endpoint whose first request hangs until the test opens the gate and then fails
/// (HTTP 503); every later request succeeds.
struct HangThenFail {
    posts: AtomicUsize,
    hanging: AtomicBool,
    gate: crossbeam_channel::Receiver<()>,
}

impl Transport for HangThenFail {
    fn send(&self, request: &HttpRequest) -> Result<HttpResponse, TransportError> {
        if request.method == Method::Post && self.posts.fetch_add(1, Ordering::SeqCst) == 0 {
            self.hanging.store(true, Ordering::SeqCst);
            let _ = self.gate.recv_timeout(Duration::from_secs(10));
            return Ok(HttpResponse::new(503, Vec::new()));
        }
        Ok(HttpResponse::new(200, Vec::new()))
    }
}

fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Before: the count started at the first failure, so the events dropped while the first
/// request hung were left out of the line ("1 events dropped" with 191 dropped).
#[test]
fn the_recovery_warning_counts_the_drops_while_the_first_request_hung() {
    RECOVERIES.install();
    let (open, gate) = crossbeam_channel::unbounded();
    let t = std::sync::Arc::new(HangThenFail {
        posts: AtomicUsize::new(0),
        hanging: AtomicBool::new(false),
        gate,
    });
    let core = Core::builder()
        .config(warnings::one_goal_config())
        .shared_transport(t.clone())
        .events(1, Duration::from_millis(5), 10)
        .retry(warnings::quick_retry())
        .build()
        .unwrap();
    let convert = |i: usize| {
        core.create_context(format!("v{i}"), None)
            .track_conversion("g", &ConversionAttributes::new())
            .unwrap();
    };
    convert(0);
    eventually("the first request hanging", || {
        t.hanging.load(Ordering::SeqCst)
    });
    // Nothing delivered yet, so the queue keeps 10: about 190 dropped while the request hangs.
    for i in 1..=200 {
        convert(i);
    }
    assert!(core.metrics().dropped_events >= 180);
    open.send(()).unwrap();
    eventually("delivery recovered", || RECOVERIES.count() > 0);
    let dropped = core.metrics().dropped_events;
    let line = RECOVERIES.lines()[0].clone();
    assert!(
        line.contains(&format!("; {dropped} events dropped on overflow")),
        "{line} (dropped_events = {dropped})"
    );
}
