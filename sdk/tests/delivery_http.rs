//! The delivery fault suite: tracking delivery through the real ureq transport against a
//! scriptable local server (`convert-testkit`, on tiny_http) that answers 200, 204, 500, 429 with
//! `Retry-After`, 413 above a body limit, 400, hangs, breaks the connection, trickles its answer
//! or loses its acknowledgement. For each: the exact multiset of events the server accepted, the
//! number of requests, and that public calls kept completing meanwhile (a watchdog that counts
//! calls, never a wall-clock threshold).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use convert_sdk::{
    BatchLimits, ConversionAttributes, Core, CoreBuilder, Error, EventKind, RetryPolicy, SdkEvent,
};
use convert_testkit::{FakeConvert, Mode, eventually};
use convert_transport_ureq::UreqTransport;
use serde_json::{Value, json};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const GOALS: usize = 60;

fn config() -> Value {
    let goals: Vec<Value> = (0..GOALS)
        .map(|i| json!({"id": format!("{}", 700 + i), "key": format!("g{i}")}))
        .collect();
    json!({"account_id": "1", "project": {"id": "2"}, "goals": goals})
}

/// An SDK delivering to `server` in requests of at most 10 events, released by `flush` (or by
/// the retry timer after a failure), with a transport timing out after `timeout`.
fn builder(server: &FakeConvert, timeout: Duration) -> CoreBuilder {
    Core::builder()
        .config(config())
        .transport(
            UreqTransport::builder()
                .timeout(timeout)
                .connect_timeout(timeout)
                .build(),
        )
        .track_endpoint(format!("{}/v1/", server.base_url()))
        .events(1000, Duration::from_secs(3600), 10_000)
        .batch_limits(BatchLimits::default().max_events(10))
        .close_timeout(Duration::from_millis(200))
        .retry(
            RetryPolicy::default()
                .initial(Duration::from_millis(10))
                .max(Duration::from_millis(50)),
        )
}

fn sdk(server: &FakeConvert) -> Core {
    builder(server, Duration::from_secs(5)).build().unwrap()
}

/// Tracks `n` conversions (visitor `v{i % 5}`, goal `g{i}`); returns the expected multiset.
fn track(core: &Core, n: usize) -> Vec<(String, String)> {
    let mut expected = Vec::new();
    for i in 0..n {
        let visitor = format!("v{}", i % 5);
        core.create_context(&visitor, None)
            .track_conversion(&format!("g{i}"), &ConversionAttributes::new())
            .unwrap();
        expected.push((visitor, format!("{}", 700 + i)));
    }
    expected.sort();
    expected
}

/// Makes `calls` rounds of public calls that must never wait on the network (a context, a
/// repeated conversion, the queue length, the counters) on its own thread, counting each.
struct Watchdog {
    done: Arc<AtomicUsize>,
    calls: usize,
}

impl Watchdog {
    fn start(core: &Core, calls: usize) -> Watchdog {
        let done = Arc::new(AtomicUsize::new(0));
        let (d, core) = (Arc::clone(&done), core.clone());
        // One conversion is queued up front; the repeats are already converted and queue
        // nothing, so the watchdog does not change what the server should receive.
        std::thread::spawn(move || {
            for _ in 0..calls {
                let ctx = core.create_context("v0", None);
                let _ = ctx.track_conversion("g0", &ConversionAttributes::new());
                let _ = core.queued_events();
                let _ = core.metrics();
                d.fetch_add(1, Ordering::SeqCst);
            }
        });
        Watchdog { done, calls }
    }

    fn completed(&self) -> bool {
        self.done.load(Ordering::SeqCst) == self.calls
    }
}

/// Runs `flush` on another thread while a watchdog makes public calls; returns the flush result.
fn flush_under_watch(core: &Core) -> Result<usize, Error> {
    let c = core.clone();
    let flusher = std::thread::spawn(move || c.flush());
    let wd = Watchdog::start(core, 200);
    eventually("the watchdog's calls", || wd.completed());
    flusher.join().unwrap()
}

/// `(status, events, dropped)` of each `QueueReleased`.
type ReleaseLog = Arc<Mutex<Vec<(Option<u16>, usize, usize)>>>;

fn released_events(core: &Core) -> ReleaseLog {
    let log = Arc::new(Mutex::new(Vec::new()));
    let l = Arc::clone(&log);
    core.on(EventKind::QueueReleased, move |e| {
        if let SdkEvent::QueueReleased {
            events,
            status,
            dropped,
            ..
        } = e
        {
            l.lock().unwrap().push((*status, *events, *dropped));
        }
    });
    log
}

#[test]
fn mode_200_delivers_everything_once_in_bounded_requests() {
    let server = FakeConvert::start();
    let core = sdk(&server);
    let expected = track(&core, 30);
    assert_eq!(flush_under_watch(&core).unwrap(), 30);
    assert_eq!(server.accepted_events(), expected);
    assert_eq!(server.posts(), 3, "30 events in requests of at most 10");
    assert_eq!(core.metrics().undelivered_events(), 0);
}

#[test]
fn mode_204_is_a_success() {
    // Measured before: a 204 was a failure; the batch was POSTed again and again.
    let server = FakeConvert::start();
    server.post_default(Mode::Accept(204, String::new()));
    let core = sdk(&server);
    let expected = track(&core, 20);
    assert_eq!(flush_under_watch(&core).unwrap(), 20);
    assert_eq!(server.accepted_events(), expected);
    assert_eq!(server.posts(), 2);
    assert_eq!(core.metrics().failed_batches, 0);
    assert_eq!(core.metrics().delivered_events, 20);
}

#[test]
fn mode_500_is_retried_until_delivered_once() {
    let server = FakeConvert::start();
    server.then_post([Mode::Status(500), Mode::Status(503)]);
    let core = sdk(&server);
    let expected = track(&core, 30);
    assert!(matches!(
        flush_under_watch(&core),
        Err(Error::Http { status: 500 })
    ));
    eventually("delivery after the 5xx", || {
        core.metrics().delivered_events == 30
    });
    assert_eq!(server.accepted_events(), expected);
    assert_eq!(server.posts(), 5, "two refusals, then three batches");
    assert_eq!(core.metrics().failed_batches, 2);
    assert_eq!(core.metrics().undelivered_events(), 0);
}

#[test]
fn mode_429_waits_as_long_as_retry_after_says() {
    // Measured before: Retry-After was ignored (the port carried no response headers).
    let server = FakeConvert::start();
    server.then_post([Mode::RetryAfter("1".into())]);
    let core = sdk(&server);
    let expected = track(&core, 10);
    assert!(matches!(
        flush_under_watch(&core),
        Err(Error::Http { status: 429 })
    ));
    eventually("delivery after the 429", || {
        core.metrics().delivered_events == 10
    });
    assert_eq!(server.accepted_events(), expected);
    let seen = server.seen();
    assert_eq!(seen.len(), 2);
    // A lower bound only (the retry came no sooner than asked), never an upper one: our own
    // backoff is 10-50 ms, so an earlier retry means the header was ignored.
    assert!(seen[1].at.duration_since(seen[0].at) >= Duration::from_secs(1));
}

#[test]
fn mode_413_splits_batches_and_drops_only_a_single_oversized_event() {
    let server = FakeConvert::start();
    let limit = 1200;
    server.post_default(Mode::BodyLimit(limit));
    let core = sdk(&server);
    let released = released_events(&core);
    let mut expected = track(&core, 30);
    // One conversion whose goal data alone is larger than the server accepts.
    core.create_context("big", None)
        .track_conversion(
            "g40",
            &ConversionAttributes::new().data("blob", "x".repeat(2 * limit)),
        )
        .unwrap();
    // The conversion itself (without goal data) is a separate, small event.
    expected.push(("big".into(), "740".into()));
    expected.sort();
    let _ = flush_under_watch(&core);
    eventually("the backlog delivered", || core.queued_events() == 0);
    assert_eq!(server.accepted_events(), expected);
    let seen = server.seen();
    let too_large = seen.iter().filter(|s| s.body.len() > limit).count();
    assert!(
        too_large >= 2,
        "whole batches first, then halves: {too_large}"
    );
    assert_eq!(seen.len(), server.accepted().len() + too_large);
    assert!(server.accepted().iter().all(|b| b.len() <= limit));
    let m = core.metrics();
    assert_eq!(m.too_large_events, 1, "{m:?}");
    assert_eq!(m.delivered_events, 31);
    assert!(
        released.lock().unwrap().contains(&(Some(413), 1, 1)),
        "the dropped event is announced with its status"
    );
}

#[test]
fn mode_400_drops_the_batch_once_counts_and_announces_it() {
    // Measured before: a permanent 4xx was retried forever.
    let server = FakeConvert::start();
    server.then_post([Mode::Status(400)]);
    let core = sdk(&server);
    let released = released_events(&core);
    let expected = track(&core, 30);
    assert!(matches!(
        flush_under_watch(&core),
        Err(Error::Http { status: 400 })
    ));
    // The first batch (the ten oldest events) was refused for good; the rest got through.
    let mut delivered: Vec<(String, String)> = expected.clone();
    let first: Vec<(String, String)> = (0..10)
        .map(|i| (format!("v{}", i % 5), format!("{}", 700 + i)))
        .collect();
    delivered.retain(|e| !first.contains(e));
    assert_eq!(server.accepted_events(), delivered);
    assert_eq!(core.flush().unwrap(), 0, "nothing left to retry");
    assert_eq!(server.posts(), 3, "the refused batch is never sent again");
    assert_eq!(core.metrics().rejected_events, 10);
    assert!(released.lock().unwrap().contains(&(Some(400), 10, 10)));
}

#[test]
fn mode_reset_is_retried_until_delivered_once() {
    let server = FakeConvert::start();
    server.then_post([Mode::Reset, Mode::Reset]);
    let core = sdk(&server);
    let expected = track(&core, 20);
    assert!(matches!(flush_under_watch(&core), Err(Error::Transport(_))));
    eventually("delivery after the resets", || {
        core.metrics().delivered_events == 20
    });
    assert_eq!(server.accepted_events(), expected);
    assert_eq!(server.posts(), 4);
}

#[test]
fn mode_slow_trickle_within_the_timeout_is_delivered_once() {
    let server = FakeConvert::start();
    server.post_default(Mode::Trickle(5, Duration::from_millis(10)));
    let core = sdk(&server);
    let expected = track(&core, 20);
    assert_eq!(flush_under_watch(&core).unwrap(), 20);
    assert_eq!(server.accepted_events(), expected);
    assert_eq!(server.posts(), 2);
}

#[test]
fn mode_lost_acknowledgement_is_the_only_duplicate() {
    let server = FakeConvert::start();
    server.then_post([Mode::LostAck]);
    let core = sdk(&server);
    let expected = track(&core, 20);
    assert!(flush_under_watch(&core).is_err());
    eventually("delivery after the lost answer", || {
        core.metrics().delivered_events == 20
    });
    // At-least-once in exactly this window: the first batch arrived, its answer did not, so it
    // was sent again. Everything else arrived once.
    let mut with_duplicate = expected.clone();
    with_duplicate.extend((0..10).map(|i| (format!("v{}", i % 5), format!("{}", 700 + i))));
    with_duplicate.sort();
    assert_eq!(server.accepted_events(), with_duplicate);
    assert_eq!(server.posts(), 3);
}

#[test]
fn mode_hang_blocks_nobody_and_close_abandons_the_request() {
    // Measured before: flush() on one thread blocked a concurrent track_conversion for 18.4 s,
    // and close(1 s) took the transport's 10 s timeout.
    let server = FakeConvert::start();
    server.then_post([Mode::Hang]);
    // The transport would wait a minute: only close() can end the wait.
    let core = builder(&server, Duration::from_secs(60)).build().unwrap();
    track(&core, 20);
    let c = core.clone();
    let flusher = std::thread::spawn(move || c.flush_timeout(Duration::from_secs(120)));
    eventually("the request hanging", || server.hung() == 1);
    let wd = Watchdog::start(&core, 200);
    eventually("the watchdog's calls during the hang", || wd.completed());
    assert_eq!(
        server.hung(),
        1,
        "the calls completed while the request hung"
    );
    // close(100 ms) returns while the server still hangs: nothing waits for the network.
    let c = core.clone();
    let closer = std::thread::spawn(move || c.close(Duration::from_millis(100)));
    eventually("close to return", || closer.is_finished());
    assert_eq!(
        server.hung(),
        1,
        "close returned while the request still hung"
    );
    assert!(matches!(flusher.join().unwrap(), Err(Error::Closed)));
    let queued_at_close = core.metrics().abandoned_events;
    assert_eq!(
        queued_at_close, 10,
        "the batch not yet sent is counted as abandoned"
    );
    server.release_hung();
    // The hung request fails: its ten events are abandoned too, and nothing else is sent.
    eventually("the in-flight batch counted", || {
        core.metrics().abandoned_events == 20
    });
    assert_eq!(server.posts(), 1);
    assert!(server.accepted_events().is_empty());
}

#[test]
fn a_closed_port_keeps_events_until_close() {
    // Port 1 on loopback: privileged and unused, so the connection is refused every time.
    let core = Core::builder()
        .config(config())
        .transport(UreqTransport::new())
        .track_endpoint("http://127.0.0.1:1/v1/")
        .events(1, Duration::from_millis(10), 100)
        .retry(
            RetryPolicy::default()
                .initial(Duration::from_millis(10))
                .max(Duration::from_millis(50)),
        )
        .build()
        .unwrap();
    core.create_context("v", None)
        .track_conversion("g1", &ConversionAttributes::new())
        .unwrap();
    eventually("a failed attempt", || core.metrics().failed_batches >= 1);
    eventually("the event back in the queue", || core.queued_events() == 1);
    assert!(core.flush().is_err());
    assert_eq!(core.queued_events(), 1);
    core.close(Duration::from_millis(50));
    assert_eq!(core.metrics().abandoned_events, 1);
    assert_eq!(core.metrics().undelivered_events(), 1);
}

/// An SDK delivering to `server` on its own: batches of 4 released every 10 ms, at most 8
/// events kept while delivery fails, retried after 10–50 ms.
fn small_queue_sdk(server: &FakeConvert) -> Core {
    Core::builder()
        .config(config())
        .transport(UreqTransport::new())
        .track_endpoint(format!("{}/v1/", server.base_url()))
        .events(4, Duration::from_millis(10), 8)
        .retry(
            RetryPolicy::default()
                .initial(Duration::from_millis(10))
                .max(Duration::from_millis(50)),
        )
        .build()
        .unwrap()
}

#[test]
fn the_queue_stays_bounded_while_the_server_is_down_and_recovers() {
    let server = FakeConvert::start();
    server.post_default(Mode::Status(503));
    let core = small_queue_sdk(&server);
    eventually("nothing sent yet", || server.posts() == 0);
    track(&core, 30);
    assert!(core.queued_events() <= 8);
    eventually("a refused attempt", || server.posts() >= 1);
    server.post_default(Mode::ok());
    eventually("recovery", || {
        core.queued_events() == 0 && !server.accepted().is_empty()
    });
    // The queue can be empty while its last batch is still in flight (accepted by the server,
    // not yet counted): a flush is handled by the delivery thread after that send completes.
    let _ = core.flush();
    let m = core.metrics();
    let delivered = server.accepted_events();
    // Every event is delivered or counted as dropped, and only the oldest were dropped.
    assert_eq!(m.delivered_events + m.dropped_events, 30, "{m:?}");
    assert_eq!(delivered.len() as u64, m.delivered_events);
    let goals: Vec<&str> = delivered.iter().map(|(_, g)| g.as_str()).collect();
    assert!(
        goals.contains(&"729"),
        "the newest event survives: {goals:?}"
    );
    assert!(
        !goals.contains(&"700"),
        "the oldest were dropped: {goals:?}"
    );
}

/// After deliveries have succeeded, an outage bounds the queue by `max_queue` again. The
/// allowance for a healthy endpoint (`HEALTHY_SLACK` × `max_queue`) used to stay on for the
/// life of the SDK after the first success: an outage then held 8 times the configured bound.
#[test]
fn an_outage_after_a_success_bounds_the_queue_by_max_queue() {
    let server = FakeConvert::start();
    let core = small_queue_sdk(&server);
    track(&core, 1);
    eventually("a first success", || core.metrics().delivered_events == 1);
    server.post_default(Mode::Status(503));
    core.create_context("w", None)
        .track_conversion("g1", &ConversionAttributes::new())
        .unwrap();
    eventually("a failed attempt", || core.metrics().failed_batches >= 1);
    // 29 more events (the first visitor's first goal is already converted).
    track(&core, 30);
    assert!(
        core.queued_events() <= 8,
        "{} events queued during the outage",
        core.queued_events()
    );
    server.post_default(Mode::ok());
    let _ = core.flush();
    let m = core.metrics();
    assert_eq!(m.delivered_events + m.dropped_events, 31, "{m:?}");
}

#[test]
fn a_healthy_but_slow_endpoint_loses_nothing() {
    // Each answer trickles in over ~20 ms, so the delivery thread falls behind a burst of
    // events larger than max_queue; while deliveries succeed, nothing may be dropped.
    let server = FakeConvert::start();
    server.post_default(Mode::Trickle(2, Duration::from_millis(10)));
    let core = builder(&server, Duration::from_secs(5))
        .events(10, Duration::from_millis(5), 20)
        .build()
        .unwrap();
    core.create_context("first", None)
        .track_conversion("g59", &ConversionAttributes::new())
        .unwrap();
    eventually("a first success", || core.metrics().delivered_events == 1);
    let mut expected = track(&core, 50);
    expected.push(("first".into(), "759".into()));
    expected.sort();
    assert_eq!(core.metrics().dropped_events, 0, "{:?}", core.metrics());
    eventually("the burst delivered", || {
        core.metrics().delivered_events == 51
    });
    assert_eq!(server.accepted_events(), expected);
    assert_eq!(core.metrics().undelivered_events(), 0);
}
