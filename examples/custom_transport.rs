//! Custom transport: wrap any `Transport` to add behaviour, here a retry policy and a request log.
//!
//! The SDK only needs `Transport::send(&HttpRequest) -> Result<HttpResponse, TransportError>`, so
//! cross-cutting concerns (metrics, proxies, request signing, test doubles) are plain wrappers.
//! This example runs offline: the innermost transport is a stand-in for the network that fails
//! twice, then accepts.
//!
//! Run it with `cargo run --example custom_transport`.

use convert_examples::DEMO_CONFIG;
use convert_sdk::{
    BucketingAttributes, ConversionAttributes, Core, HttpRequest, HttpResponse, Transport,
    TransportError,
};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Retries failed requests (transport errors and 5xx) a few times with a short pause.
struct Retrying<T> {
    inner: T,
    attempts: usize,
    pause: Duration,
}

impl<T: Transport> Transport for Retrying<T> {
    fn send(&self, request: &HttpRequest) -> Result<HttpResponse, TransportError> {
        let mut last = Err(TransportError::Other("no attempt".into()));
        for attempt in 1..=self.attempts {
            last = self.inner.send(request);
            match &last {
                Ok(r) if r.status < 500 => return last,
                _ => println!("  attempt {attempt} failed: {last:?}"),
            }
            std::thread::sleep(self.pause);
        }
        last
    }
}

/// Keeps every request it forwards (handy in tests and audits).
struct Recording<T> {
    inner: T,
    log: Arc<Mutex<Vec<HttpRequest>>>,
}

impl<T: Transport> Transport for Recording<T> {
    fn send(&self, request: &HttpRequest) -> Result<HttpResponse, TransportError> {
        if let Ok(mut log) = self.log.lock() {
            log.push(request.clone());
        }
        self.inner.send(request)
    }
}

/// Stands in for the network: refuses the first two requests, then answers 200.
struct Flaky {
    calls: AtomicUsize,
}

impl Transport for Flaky {
    fn send(&self, _request: &HttpRequest) -> Result<HttpResponse, TransportError> {
        match self.calls.fetch_add(1, Ordering::SeqCst) {
            0 => Err(TransportError::Connect("connection reset by peer".into())),
            1 => Ok(HttpResponse::new(503, Vec::new())),
            _ => Ok(HttpResponse::new(200, Vec::new())),
        }
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let log = Arc::new(Mutex::new(Vec::new()));
    let transport = Recording {
        inner: Retrying {
            inner: Flaky {
                calls: AtomicUsize::new(0),
            },
            attempts: 5,
            pause: Duration::from_millis(20),
        },
        log: Arc::clone(&log),
    };
    let sdk = Core::builder()
        .config_json(DEMO_CONFIG)
        .environment("production")
        .transport(transport)
        .tracking(false) // deliver on flush() only, to keep the example deterministic
        .build()?;

    let visitor = sdk.create_context("visitor-77", None);
    let attrs = BucketingAttributes::new()
        .location_property("url", "https://shop.example/checkout")
        .visitor_property("cart_items", 2);
    println!(
        "checkout-button -> {:?}",
        visitor.run_experience("checkout-button", &attrs)
    );
    visitor.track_conversion("purchase", &ConversionAttributes::new().revenue(12.5))?;

    println!("flushing {} queued events", sdk.queued_events());
    let sent = sdk.flush()?;
    println!("delivered {sent} events");

    let log = log.lock().map_err(|_| "request log poisoned")?;
    println!("the recording wrapper saw {} request(s):", log.len());
    for r in log.iter() {
        println!(
            "  {} {} ({} bytes)",
            r.method.as_str(),
            r.url,
            r.body.as_ref().map_or(0, String::len)
        );
    }
    assert_eq!(sent, 3, "one bucketing event and two conversion events");
    Ok(())
}
