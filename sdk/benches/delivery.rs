//! Tracking enqueue cost (run with `cargo bench -p convert-sdk --bench delivery`).
//!
//! `queue_full_endpoint_down`: the tracking endpoint refuses every connection and the queue is
//! full, so each conversion drops the oldest event (measured before the ring buffer: the whole
//! 10,000-event queue was sorted and rebuilt for every event). `queue_ring_buffer_full` is the
//! queue operation alone. `tracking_off` is the same conversion with nothing queued, for scale.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use convert_core::tracking::{EventData, TrackingEvent, TrackingQueue};
use convert_sdk::{
    ConversionAttributes, Core, HttpRequest, HttpResponse, Transport, TransportError,
};
use serde_json::json;
use std::time::Duration;

fn main() {
    divan::main();
}

struct Down;

impl Transport for Down {
    fn send(&self, _: &HttpRequest) -> Result<HttpResponse, TransportError> {
        Err(TransportError::Connect("connection refused".into()))
    }
}

const MAX_QUEUE: usize = 10_000;

fn sdk(tracking: bool) -> Core {
    Core::builder()
        .config(json!({"account_id": "1", "project": {"id": "2"}, "goals": [{"id": "7", "key": "buy"}]}))
        .transport(Down)
        .events(10, Duration::from_secs(1), MAX_QUEUE)
        .tracking(tracking)
        .build()
        .unwrap()
}

/// A transaction on every call (forced), so every call queues one event.
fn attrs() -> ConversionAttributes {
    ConversionAttributes::new()
        .revenue(12.5)
        .force_multiple_transactions(true)
}

#[divan::bench(sample_count = 500, sample_size = 200)]
fn queue_full_endpoint_down(bencher: divan::Bencher) {
    let core = sdk(true);
    let ctx = core.create_context("visitor", None);
    let attrs = attrs();
    for _ in 0..2 * MAX_QUEUE {
        ctx.track_conversion("buy", &attrs).unwrap();
    }
    assert!(core.metrics().dropped_events > 0, "the queue is full");
    bencher.bench_local(|| ctx.track_conversion("buy", &attrs));
}

#[divan::bench(sample_count = 500, sample_size = 200)]
fn tracking_off(bencher: divan::Bencher) {
    // Manual delivery and a queue of one: the event is queued and the previous one dropped.
    let core = Core::builder()
        .config(json!({"account_id": "1", "project": {"id": "2"}, "goals": [{"id": "7", "key": "buy"}]}))
        .transport(Down)
        .events(10, Duration::from_secs(1), 1)
        .tracking(false)
        .build()
        .unwrap();
    let ctx = core.create_context("visitor", None);
    let attrs = attrs();
    bencher.bench_local(|| ctx.track_conversion("buy", &attrs));
}

#[divan::bench(sample_count = 500, sample_size = 200)]
fn queue_ring_buffer_full(bencher: divan::Bencher) {
    let event = TrackingEvent {
        visitor_id: "visitor".into(),
        data: EventData::Conversion {
            goal_id: json!("7"),
            goal_data: Some(json!([{"key": "amount", "value": 12.5}])),
            bucketing_data: None,
        },
        segments: None,
    };
    let mut q = TrackingQueue::new();
    for _ in 0..MAX_QUEUE {
        q.push(event.clone());
    }
    bencher
        .with_inputs(|| event.clone())
        .bench_local_values(|e| {
            q.push(e);
            q.drop_oldest(q.len() - MAX_QUEUE)
        });
}
