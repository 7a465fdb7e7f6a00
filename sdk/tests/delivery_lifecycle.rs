//! Delivery lifecycle faults measured on the previous implementation: a `QueueReleased` handler
//! calling `flush()` while another thread calls `close()` (a permanent deadlock), a visitor
//! attribute nested 10,000 levels deep (a stack overflow that aborted the process on the delivery
//! thread), and `tracking(false)` + `close()` abandoning queued events without a trace.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use convert_sdk::{BatchLimits, ConversionAttributes, Core, Error, EventKind, SdkEvent};
use convert_testkit::{FakeConvert, eventually};
use convert_transport_ureq::UreqTransport;
use serde_json::{Map, Value, json};
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn config() -> Value {
    let goals: Vec<Value> = (0..10)
        .map(|i| json!({"id": format!("{}", 700 + i), "key": format!("g{i}")}))
        .collect();
    json!({"account_id": "1", "project": {"id": "2"}, "goals": goals})
}

fn sdk(server: &FakeConvert, tracking: bool) -> Core {
    Core::builder()
        .config(config())
        .transport(UreqTransport::new())
        .track_endpoint(format!("{}/v1/", server.base_url()))
        .events(1000, Duration::from_secs(3600), 10_000)
        .batch_limits(BatchLimits::default().max_events(1))
        .tracking(tracking)
        .build()
        .unwrap()
}

#[test]
fn a_handler_calling_flush_while_another_thread_closes_cannot_deadlock() {
    let server = FakeConvert::start();
    let core = sdk(&server, true);
    let answers = Arc::new(Mutex::new(Vec::new()));
    let (c, a) = (core.clone(), Arc::clone(&answers));
    core.on(EventKind::QueueReleased, move |_| {
        // On the delivery thread: flush cannot wait for itself and says so at once.
        let r = c.flush();
        a.lock()
            .unwrap()
            .push(matches!(r, Err(Error::Reentrant | Error::Closed)));
    });
    for i in 0..5 {
        core.create_context(format!("v{i}"), None)
            .track_conversion("g1", &ConversionAttributes::new())
            .unwrap();
    }
    // Five one-event requests: the handler runs five times while close() runs here.
    let c = core.clone();
    let flusher = std::thread::spawn(move || c.flush());
    let c = core.clone();
    let closer = std::thread::spawn(move || c.close(Duration::from_secs(5)));
    eventually("close to return", || closer.is_finished());
    eventually("flush to return", || flusher.is_finished());
    let answers = answers.lock().unwrap().clone();
    assert!(
        !answers.is_empty() && answers.iter().all(|ok| *ok),
        "{answers:?}"
    );
    let m = core.metrics();
    assert_eq!(m.delivered_events + m.abandoned_events, 5, "{m:?}");
    assert_eq!(server.accepted_events().len() as u64, m.delivered_events);
}

#[test]
fn a_handler_calling_close_on_the_delivery_thread_returns() {
    let server = FakeConvert::start();
    let core = sdk(&server, true);
    let (c, closed) = (core.clone(), Arc::new(Mutex::new(0)));
    let cl = Arc::clone(&closed);
    core.on(EventKind::QueueReleased, move |_| {
        c.close(Duration::from_secs(5)); // starts the shutdown, cannot wait for itself
        *cl.lock().unwrap() += 1;
    });
    for i in 0..3 {
        core.create_context(format!("v{i}"), None)
            .track_conversion("g1", &ConversionAttributes::new())
            .unwrap();
    }
    let c = core.clone();
    let flusher = std::thread::spawn(move || c.flush());
    eventually("flush to return", || flusher.is_finished());
    assert!(*closed.lock().unwrap() >= 1);
    // The shutdown sent what was queued: every event is delivered or counted.
    eventually("the delivery thread to finish", || {
        let m = core.metrics();
        m.delivered_events + m.abandoned_events == 3
    });
}

/// `{"a": {"a": ... 1 ...}}`, `depth` levels deep, built without recursion.
fn nested(depth: usize) -> Value {
    let mut v = json!(1);
    for _ in 0..depth {
        let mut m = Map::new();
        m.insert("a".into(), v);
        v = Value::Object(m);
    }
    v
}

#[test]
fn a_visitor_attribute_nested_10000_levels_deep_never_aborts_delivery() {
    let server = FakeConvert::start();
    // The application's own thread with a main-thread-sized stack: building, cloning and
    // dropping such a value is recursive in serde_json itself, which is the application's
    // business; the SDK's background threads must never recurse on it.
    let s = server.base_url();
    let outcome = std::thread::Builder::new()
        .stack_size(512 << 20)
        .spawn(move || {
            let server_url = s;
            let core = Core::builder()
                .config(config())
                .transport(UreqTransport::new())
                .track_endpoint(format!("{server_url}/v1/"))
                .events(1000, Duration::from_secs(3600), 10_000)
                .build()
                .unwrap();
            let mut attrs = Map::new();
            attrs.insert("browser".into(), json!("CH"));
            attrs.insert("country".into(), nested(10_000));
            let ctx = core.create_context("deep", Some(attrs));
            ctx.track_conversion("g1", &ConversionAttributes::new())
                .unwrap();
            let deep_goal_data = ConversionAttributes::new().data("blob", nested(10_000));
            ctx.track_conversion("g2", &deep_goal_data).unwrap();
            let flushed = core.flush();
            let m = core.metrics();
            drop(ctx);
            core.close(Duration::from_secs(5));
            drop(core);
            (flushed.map_err(|e| e.to_string()), m)
        })
        .unwrap()
        .join()
        .unwrap();
    let (flushed, m) = outcome;
    // Two conversions are sent (g1, and g2 without goal data): the too-deep `blob` entry is
    // dropped at the public boundary (`MAX_VISITOR_DATA_DEPTH`), so no transaction is left to
    // refuse when queued (the queue's own depth check stays as a second line of defence).
    assert_eq!(flushed, Ok(2));
    assert_eq!(m.invalid_events, 0, "{m:?}");
    assert_eq!(m.undelivered_events(), 0, "{m:?}");
    let bodies = server.accepted();
    assert_eq!(bodies.len(), 1);
    let body: Value = serde_json::from_slice(&bodies[0]).unwrap();
    let events = body["visitors"][0]["events"].as_array().unwrap();
    assert_eq!(events.len(), 2, "{events:?}");
    assert!(
        events.iter().all(|e| e["data"].get("goalData").is_none()),
        "{events:?}"
    );
    assert_eq!(
        body["visitors"][0]["segments"],
        json!({"browser": "CH"}),
        "the too-deep segment is left out, the others are kept"
    );
}

#[test]
fn tracking_off_then_close_counts_and_reports_the_queued_events() {
    // Measured before: 500 queued events were abandoned at close without a warning or metric.
    let server = FakeConvert::start();
    let core = sdk(&server, false);
    for i in 0..50 {
        core.create_context(format!("v{i}"), None)
            .track_conversion("g1", &ConversionAttributes::new())
            .unwrap();
    }
    assert_eq!(core.queued_events(), 50);
    core.close(Duration::from_secs(1));
    let m = core.metrics();
    assert_eq!(m.discarded_events, 50, "{m:?}");
    assert_eq!(m.undelivered_events(), 50);
    assert_eq!(server.posts(), 0);
}

#[test]
fn queue_released_announces_success_with_its_status() {
    let server = FakeConvert::start();
    let core = sdk(&server, true);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = Arc::clone(&seen);
    core.on(EventKind::QueueReleased, move |e| {
        if let SdkEvent::QueueReleased {
            status,
            error,
            dropped,
            events,
            ..
        } = e
        {
            s.lock()
                .unwrap()
                .push((*status, error.clone(), *dropped, *events));
        }
    });
    core.create_context("v", None)
        .track_conversion("g1", &ConversionAttributes::new())
        .unwrap();
    assert_eq!(core.flush().unwrap(), 1);
    assert_eq!(*seen.lock().unwrap(), [(Some(200), None, 0, 1)]);
}

/// `close` stops delivery even while producers keep the queue full: four threads keep
/// converting, each event a batch of its own, and after `close` returns the server sees at
/// most the one request that was in flight. (The delivery loop used to take batch after batch
/// until the queue was empty, which producers never let happen: it went on sending after
/// `close` returned, for as long as they ran.)
#[test]
fn close_stops_delivery_while_producers_keep_the_queue_full() {
    let server = FakeConvert::start();
    let core = sdk(&server, true);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let producers: Vec<_> = (0..4)
        .map(|t| {
            let (core, stop) = (core.clone(), Arc::clone(&stop));
            std::thread::spawn(move || {
                let mut i = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let ctx = core.create_context(format!("p{t}-{i}"), None);
                    let _ = ctx.track_conversion("g1", &ConversionAttributes::new());
                    i += 1;
                }
            })
        })
        .collect();
    eventually("deliveries under way", || server.posts() > 10);
    core.close(Duration::from_millis(300));
    let at_close = server.posts();
    // Producers go on; a delivery thread still running would keep posting.
    std::thread::sleep(Duration::from_millis(300));
    let after = server.posts();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for p in producers {
        p.join().unwrap();
    }
    assert!(
        after <= at_close + 1,
        "{} requests after close returned",
        after - at_close
    );
    assert!(core.metrics().abandoned_events > 0, "{:?}", core.metrics());
}
