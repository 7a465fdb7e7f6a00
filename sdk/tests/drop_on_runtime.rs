//! Dropping the last `Core` handle on a tokio runtime thread (cargo feature `tokio`): the close
//! that delivers what is queued must not hold the runtime thread (an OpenFeature
//! `set_provider` that replaces the provider drops the old one there), and must still deliver.
#![cfg(feature = "tokio")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use convert_sdk::{
    ConversionAttributes, Core, HttpRequest, HttpResponse, Transport, TransportError,
};
use crossbeam_channel::{Receiver, Sender};
use serde_json::json;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

/// A tracking endpoint that holds each request until the test opens its gate, or until a
/// safety timeout (then it answers too, and records that the gate was not opened).
struct Gated {
    gate: Receiver<()>,
    in_request: AtomicBool,
    answered_on_gate: AtomicUsize,
    answered_on_timeout: AtomicUsize,
    bodies: Mutex<Vec<String>>,
}

const SAFETY: Duration = Duration::from_secs(3);

impl Transport for Gated {
    fn send(&self, request: &HttpRequest) -> Result<HttpResponse, TransportError> {
        self.in_request.store(true, Ordering::SeqCst);
        let opened = self.gate.recv_timeout(SAFETY).is_ok();
        self.bodies
            .lock()
            .unwrap()
            .push(request.body.clone().unwrap_or_default());
        if opened {
            self.answered_on_gate.fetch_add(1, Ordering::SeqCst);
        } else {
            self.answered_on_timeout.fetch_add(1, Ordering::SeqCst);
        }
        self.in_request.store(false, Ordering::SeqCst);
        Ok(HttpResponse::new(200, Vec::new()))
    }
}

fn gated() -> (std::sync::Arc<Gated>, Sender<()>) {
    let (open, gate) = crossbeam_channel::unbounded();
    let t = std::sync::Arc::new(Gated {
        gate,
        in_request: AtomicBool::new(false),
        answered_on_gate: AtomicUsize::new(0),
        answered_on_timeout: AtomicUsize::new(0),
        bodies: Mutex::new(Vec::new()),
    });
    (t, open)
}

fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn core_with_one_conversion(t: std::sync::Arc<Gated>) -> Core {
    let core = Core::builder()
        .config(json!({"account_id": "10", "project": {"id": "20"},
                       "goals": [{"id": "500", "key": "goal-0", "rules": null}]}))
        .shared_transport(t)
        .events(100, Duration::from_secs(3600), 100)
        .close_timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    core.create_context("v1", None)
        .track_conversion("goal-0", &ConversionAttributes::new())
        .unwrap();
    core
}

/// The last handle dropped in a task returns at once, while the delivery of the queued
/// conversion is still in its request; the runtime's shutdown then waits for that delivery.
/// Before: the drop held the runtime thread until the request was answered (here, until the
/// endpoint's safety timeout, since the gate is opened by the same thread).
#[test]
fn dropping_the_last_handle_on_a_runtime_thread_does_not_hold_it() {
    let (t, open) = gated();
    let rt = current_thread();
    let core = core_with_one_conversion(t.clone());
    let endpoint = t.clone();
    let held = rt.block_on(async move {
        tokio::spawn(async move {
            drop(core);
            // Still in the request, or not yet in it: the drop did not wait for it.
            let held = endpoint.in_request.load(Ordering::SeqCst)
                || endpoint.bodies.lock().unwrap().is_empty();
            open.send(()).unwrap();
            held
        })
        .await
        .unwrap()
    });
    assert!(held, "the drop waited for the delivery to end");
    // Dropping the runtime waits for the close it handed to the blocking pool.
    drop(rt);
    assert_eq!(t.answered_on_timeout.load(Ordering::SeqCst), 0);
    assert_eq!(t.answered_on_gate.load(Ordering::SeqCst), 1);
    let body: serde_json::Value = serde_json::from_str(&t.bodies.lock().unwrap()[0]).unwrap();
    assert_eq!(body["visitors"][0]["visitorId"], "v1");
}

/// Outside a task (in `block_on` itself) nothing else waits on the thread, and the process may
/// exit right after: the drop delivers before it returns, as without tokio. (Handing the close
/// to the blocking pool there lost it when the runtime was never dropped.)
#[test]
fn dropping_the_last_handle_in_block_on_delivers_before_it_returns() {
    let (t, open) = gated();
    open.send(()).unwrap();
    let rt = current_thread();
    let core = core_with_one_conversion(t.clone());
    let endpoint = t.clone();
    let delivered = rt.block_on(async move {
        drop(core);
        endpoint.answered_on_gate.load(Ordering::SeqCst)
    });
    assert_eq!(delivered, 1);
    std::mem::forget(rt); // as a runtime kept in a static is never dropped
}
