//! SDK-key mode: the config comes from a CDN and stays fresh; tracking is delivered in the
//! background; lifecycle events tell you what happened.
//!
//! So that it runs anywhere, the example starts its own stand-in for Convert's CDN and tracking
//! endpoint on 127.0.0.1: it serves the demo config, switches to a second version after a moment,
//! and records tracking POSTs. In production, drop the two endpoint overrides.
//!
//! Run it with `cargo run --example sdk_key`.

use convert_examples::DEMO_CONFIG;
use convert_sdk::transports::UreqTransport;
use convert_sdk::{BucketingAttributes, Core, EventKind, SdkEvent};
use convert_testkit::{FakeConvert, Mode};
use std::time::Duration;

/// A stand-in for the CDN (GET /config/...) and the tracking endpoint (POST) on 127.0.0.1: the
/// first fetch gets version 1 of the config, later refreshes get version 2.
fn start_fake_convert() -> FakeConvert {
    let updated = DEMO_CONFIG
        .replace("\"Demo shop\"", "\"Demo shop (v2)\"")
        .replace(
            "\"traffic_allocation\": 50,",
            "\"traffic_allocation\": 100,",
        );
    let server = FakeConvert::start();
    server
        .then_get([Mode::Accept(200, DEMO_CONFIG.to_string())])
        .get_default(Mode::Accept(200, updated));
    server
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let server = start_fake_convert();
    let port = server.port();
    let sdk = Core::builder()
        .sdk_key("100123/200456")
        .environment("production")
        .transport(UreqTransport::new())
        .config_endpoint(format!("http://127.0.0.1:{port}/api/v1/"))
        .track_endpoint(format!("http://127.0.0.1:{port}/[project_id]/v1/"))
        .refresh_interval(Duration::from_millis(300))
        .events(10, Duration::from_millis(100), 10_000)
        .build()?;
    sdk.on(EventKind::All, |e| match e {
        SdkEvent::Ready => println!("event: ready"),
        SdkEvent::ConfigUpdated => println!("event: config.updated"),
        SdkEvent::QueueReleased { events, error, .. } => {
            println!("event: api.queue.released ({events} events, error: {error:?})")
        }
        SdkEvent::Bucketing {
            experience_key,
            variation_key,
            ..
        } => println!("event: bucketing {experience_key:?} -> {variation_key:?}"),
        _ => {}
    });
    sdk.wait_until_ready(Duration::from_secs(5))?;
    println!("config: project {} ready", sdk.config().project_id);

    let attrs =
        BucketingAttributes::new().location_property("url", "https://shop.example/checkout");
    for visitor in ["ann", "ben", "cho"] {
        let d = sdk
            .create_context(visitor, None)
            .run_experience("search-rollout", &attrs);
        println!("{visitor}: {d:?}");
    }

    // Wait for a refresh to bring version 2, then for the background delivery.
    std::thread::sleep(Duration::from_millis(700));
    sdk.flush()?;
    let posts = server.accepted();
    println!("tracking POSTs received by the stand-in: {}", posts.len());
    for p in &posts {
        println!("  {}", String::from_utf8_lossy(p));
    }
    if posts.is_empty() {
        return Err("no tracking request arrived".into());
    }
    Ok(())
}
