//! `convert fetch` against a local HTTP server on 127.0.0.1.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod support;

use convert_testkit::{FakeConvert, Mode};
use support::convert;

/// A local server answering every GET with `status` and `body`.
fn serve(status: u16, body: &str) -> FakeConvert {
    let server = FakeConvert::start();
    server.get_default(if (200..300).contains(&status) {
        Mode::Accept(status, body.to_string())
    } else {
        Mode::Status(status)
    });
    server
}

const CONFIG: &str = r#"{"account_id":"10","project":{"id":"20"},"experiences":[{"id":"1","key":"e","variations":[]}]}"#;

#[test]
fn fetch_writes_a_checked_config() {
    let server = serve(200, CONFIG);
    let port = server.port();
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
    let seen = server.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].method, "GET");
    assert_eq!(seen[0].url, "/api/v1/config/10/20?environment=live");
    assert_eq!(seen[0].header("authorization"), Some("Bearer s3cr3t"));
    assert_eq!(seen[0].header("user-agent"), Some("ConvertAgent/1.0"));
    assert!(!stderr.contains("s3cr3t") && !stdout.contains("s3cr3t"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn fetch_reports_http_errors_and_invalid_configs() {
    let server = serve(404, "");
    let endpoint = format!("{}/", server.base_url());
    let (code, _, stderr) = convert(&["fetch", "--sdk-key", "k", "--endpoint", &endpoint]);
    assert_eq!(code, 2);
    assert!(stderr.contains("404"), "{stderr}");
    let server = serve(200, r#"{"account_id": "1"}"#);
    let endpoint = format!("{}/", server.base_url());
    let (code, _, stderr) = convert(&["fetch", "--sdk-key", "k", "--endpoint", &endpoint]);
    assert_eq!(code, 2);
    assert!(stderr.contains("project.id"), "{stderr}");
    // Any 2xx is a success (a 204 carries no config, which is then reported as invalid).
    let server = serve(204, "");
    let endpoint = format!("{}/", server.base_url());
    let (code, _, stderr) = convert(&["fetch", "--sdk-key", "k", "--endpoint", &endpoint]);
    assert_eq!(code, 2);
    assert!(!stderr.contains("HTTP 204"), "{stderr}");
}
