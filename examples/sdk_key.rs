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
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A minimal HTTP/1.1 stand-in for the CDN (GET /config/...) and the tracking endpoint (POST).
fn start_fake_convert() -> std::io::Result<(u16, Arc<Mutex<Vec<String>>>)> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    let posts = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&posts);
    let gets = AtomicUsize::new(0);
    let updated = DEMO_CONFIG
        .replace("\"Demo shop\"", "\"Demo shop (v2)\"")
        .replace(
            "\"traffic_allocation\": 50,",
            "\"traffic_allocation\": 100,",
        );
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let Ok(clone) = stream.try_clone() else {
                continue;
            };
            let mut reader = BufReader::new(clone);
            let mut request_line = String::new();
            let _ = reader.read_line(&mut request_line);
            let mut length = 0;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            let answer = if request_line.starts_with("GET") {
                // The first fetch gets version 1; later refreshes get version 2.
                if gets.fetch_add(1, Ordering::SeqCst) == 0 {
                    DEMO_CONFIG.to_string()
                } else {
                    updated.clone()
                }
            } else {
                if let Ok(mut p) = seen.lock() {
                    p.push(String::from_utf8_lossy(&body).into_owned());
                }
                String::new()
            };
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
                answer.len()
            );
        }
    });
    Ok((port, posts))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (port, posts) = start_fake_convert()?;
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
    let posts = posts.lock().map_err(|_| "poisoned")?;
    println!("tracking POSTs received by the stand-in: {}", posts.len());
    for p in posts.iter() {
        println!("  {p}");
    }
    if posts.is_empty() {
        return Err("no tracking request arrived".into());
    }
    Ok(())
}
