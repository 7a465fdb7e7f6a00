//! `convert fetch` against a local HTTP server on 127.0.0.1.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod support;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use support::convert;

/// Serves `body` with `status` to every request; records request lines and headers.
fn serve(status: u16, body: &'static str) -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = Arc::clone(&seen);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                s.lock().unwrap().push(line.trim_end().to_string());
            }
            let _ = write!(
                stream,
                "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (port, seen)
}

const CONFIG: &str = r#"{"account_id":"10","project":{"id":"20"},"experiences":[{"id":"1","key":"e","variations":[]}]}"#;

#[test]
fn fetch_writes_a_checked_config() {
    let (port, seen) = serve(200, CONFIG);
    let dir = std::env::temp_dir().join(format!("convert-fetch-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("config.json");
    let endpoint = format!("http://127.0.0.1:{port}/api/v1/");
    let (code, stdout, stderr) = convert(&[
        "fetch",
        "--sdk-key",
        "10/20",
        "--environment",
        "live",
        "--secret",
        "s3cr3t",
        "--endpoint",
        &endpoint,
        "--output",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("account 10, project 20: 1 experiences"),
        "{stdout}"
    );
    assert_eq!(std::fs::read_to_string(&out).unwrap(), CONFIG);
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen[0],
        "GET /api/v1/config/10/20?environment=live HTTP/1.1"
    );
    assert!(
        seen.iter()
            .any(|h| h.eq_ignore_ascii_case("authorization: Bearer s3cr3t"))
    );
    assert!(
        seen.iter()
            .any(|h| h.eq_ignore_ascii_case("user-agent: ConvertAgent/1.0"))
    );
    assert!(!stderr.contains("s3cr3t") && !stdout.contains("s3cr3t"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn fetch_reports_http_errors_and_invalid_configs() {
    let (port, _) = serve(404, "");
    let endpoint = format!("http://127.0.0.1:{port}/");
    let (code, _, stderr) = convert(&["fetch", "--sdk-key", "k", "--endpoint", &endpoint]);
    assert_eq!(code, 2);
    assert!(stderr.contains("404"), "{stderr}");
    let (port, _) = serve(200, r#"{"account_id": "1"}"#);
    let endpoint = format!("http://127.0.0.1:{port}/");
    let (code, _, stderr) = convert(&["fetch", "--sdk-key", "k", "--endpoint", &endpoint]);
    assert_eq!(code, 2);
    assert!(stderr.contains("project.id"), "{stderr}");
}
