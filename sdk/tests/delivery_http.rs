//! Tracking delivery through the real ureq transport against a local HTTP server that misbehaves:
//! a 500, a request that hangs past the timeout, a dropped connection. No event may be lost, the
//! queue stays bounded, and delivery resumes when the server recovers.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use convert_sdk::{ConversionAttributes, Core, RetryPolicy};
use convert_transport_ureq::UreqTransport;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug)]
enum Answer {
    Status500,
    Hang,
    Drop,
    Ok,
}

/// A one-connection-at-a-time HTTP server on 127.0.0.1 following a script, then answering 200.
struct Server {
    port: u16,
    bodies: Arc<Mutex<Vec<Value>>>,
}

fn read_request(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut len = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        if line == "\r\n" {
            break;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            len = v.trim().parse().ok()?;
        }
    }
    let mut body = vec![0; len];
    reader.read_exact(&mut body).ok()?;
    Some(body)
}

impl Server {
    fn start(script: Vec<Answer>) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let b = Arc::clone(&bodies);
        std::thread::spawn(move || {
            let mut script = script.into_iter();
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let Some(body) = read_request(&mut stream) else {
                    continue;
                };
                match script.next().unwrap_or(Answer::Ok) {
                    Answer::Status500 => {
                        let _ = stream.write_all(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                    }
                    Answer::Hang => std::thread::sleep(Duration::from_millis(700)),
                    Answer::Drop => drop(stream),
                    Answer::Ok => {
                        b.lock()
                            .unwrap()
                            .push(serde_json::from_slice(&body).unwrap());
                        let _ = stream.write_all(
                            b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                        );
                    }
                }
            }
        });
        Server { port, bodies }
    }

    fn delivered(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for body in self.bodies.lock().unwrap().iter() {
            for v in body["visitors"].as_array().unwrap() {
                for e in v["events"].as_array().unwrap() {
                    out.push((
                        v["visitorId"].as_str().unwrap().to_string(),
                        e["data"]["goalId"].as_str().unwrap().to_string(),
                    ));
                }
            }
        }
        out
    }
}

fn sdk(port: u16, max_queue: usize) -> Core {
    let goals: Vec<Value> = (0..50)
        .map(|i| json!({"id": format!("{}", 700 + i), "key": format!("g{i}")}))
        .collect();
    Core::builder()
        .config(json!({"account_id": "1", "project": {"id": "2"}, "goals": goals}))
        .transport(
            UreqTransport::builder()
                .timeout(Duration::from_millis(250))
                .connect_timeout(Duration::from_millis(250))
                .build(),
        )
        .track_endpoint(format!("http://127.0.0.1:{port}/v1/"))
        .events(4, Duration::from_millis(10), max_queue)
        .close_timeout(Duration::from_millis(200))
        .retry(RetryPolicy {
            initial: Duration::from_millis(10),
            max: Duration::from_millis(50),
        })
        .build()
        .unwrap()
}

fn wait_for(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if cond() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("timed out waiting for {what}");
}

#[test]
fn no_event_is_lost_through_500_timeout_and_reset() {
    let server = Server::start(vec![
        Answer::Status500,
        Answer::Hang,
        Answer::Drop,
        Answer::Status500,
    ]);
    let core = sdk(server.port, 1000);
    let mut expected = BTreeSet::new();
    for i in 0..20 {
        let visitor = format!("v{}", i % 5);
        core.create_context(&visitor, None)
            .track_conversion(&format!("g{i}"), &ConversionAttributes::new())
            .unwrap();
        expected.insert((visitor, format!("{}", 700 + i)));
    }
    wait_for("every event delivered", || {
        let got: BTreeSet<_> = server.delivered().into_iter().collect();
        got == expected && core.queued_events() == 0
    });
    let m = core.metrics();
    assert!(m.failed_batches >= 4, "{m:?}");
    // At-least-once: a batch whose answer was lost may arrive twice, but every event arrived.
    assert!(server.delivered().len() >= expected.len());
}

#[test]
fn the_queue_stays_bounded_while_the_server_is_down_and_recovers() {
    // Refuse everything for a while: every POST is a 500.
    let server = Server::start(vec![Answer::Status500; 40]);
    let core = sdk(server.port, 8);
    for i in 0..30 {
        core.create_context("v", None)
            .track_conversion(&format!("g{i}"), &ConversionAttributes::new())
            .unwrap();
        assert!(core.queued_events() <= 8);
    }
    // Memory holds at most the queue (8) plus the one batch in flight (at most 8 more).
    assert!(
        core.metrics().dropped_events >= 30 - 2 * 8,
        "{:?}",
        core.metrics()
    );
    // The server recovers after its 40 failures; the newest events get through.
    wait_for("recovery", || {
        core.queued_events() == 0 && !server.delivered().is_empty()
    });
    let goals: BTreeSet<String> = server.delivered().into_iter().map(|(_, g)| g).collect();
    assert!(
        goals.contains("729"),
        "the newest event survives: {goals:?}"
    );
    assert!(!goals.contains("700"), "the oldest were dropped: {goals:?}");
}

#[test]
fn a_closed_port_keeps_events_until_close() {
    // Port 1 on loopback: privileged and unused, so the connection is refused every time (a
    // released ephemeral port could be taken by a parallel test's server).
    let port = 1;
    let core = sdk(port, 100);
    core.create_context("v", None)
        .track_conversion("g1", &ConversionAttributes::new())
        .unwrap();
    wait_for("a failed attempt", || core.metrics().failed_batches >= 1);
    assert_eq!(core.queued_events(), 1);
    assert!(core.flush().is_err());
    assert_eq!(core.queued_events(), 1);
}
