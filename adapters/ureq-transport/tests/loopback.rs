//! `UreqTransport` against real HTTP servers on 127.0.0.1 (tiny_http on port 0, or a bare
//! `TcpListener`). Nothing here contacts any other address.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::{SocketAddr, TcpListener};
use std::sync::mpsc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use convert_ports::transport::{HttpRequest, Method, Transport, TransportError};
use convert_transport_ureq::{TransportConfig, UreqTransport};
use tiny_http::{Header, Response, ResponseBox, Server, StatusCode};

/// What the server saw.
#[derive(Debug)]
struct Recorded {
    method: String,
    url: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Recorded {
    fn headers_named(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// Starts a tiny_http server on 127.0.0.1:0 that answers one request with `response`.
/// Returns `http://127.0.0.1:<port>` and a handle yielding what the server received.
fn serve_once(response: ResponseBox) -> (String, JoinHandle<Recorded>) {
    let server = Server::http("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let addr: SocketAddr = server.server_addr().to_ip().expect("ip listener");
    let handle = thread::spawn(move || {
        let mut request = server
            .recv_timeout(Duration::from_secs(5))
            .expect("recv")
            .expect("no request within 5 s");
        let mut body = Vec::new();
        request
            .as_reader()
            .read_to_end(&mut body)
            .expect("read body");
        let recorded = Recorded {
            method: request.method().as_str().to_string(),
            url: request.url().to_string(),
            headers: request
                .headers()
                .iter()
                .map(|h| {
                    (
                        h.field.as_str().as_str().to_string(),
                        h.value.as_str().to_string(),
                    )
                })
                .collect(),
            body,
        };
        // The client may hang up early (e.g. TooLarge); that is not the server's problem.
        let _ = request.respond(response);
        recorded
    });
    (format!("http://{addr}"), handle)
}

fn transport() -> UreqTransport {
    UreqTransport::builder()
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(3))
        .build()
}

fn json_response(status: u16, body: &str) -> ResponseBox {
    Response::from_data(body.as_bytes().to_vec())
        .with_status_code(StatusCode(status))
        .with_header(Header::from_bytes("Content-Type", "application/json").unwrap())
        .boxed()
}

const TRACKING_BODY: &str = concat!(
    r#"{"enrichData":true,"accountId":"10022898","projectId":"10025986","#,
    r#""visitors":[{"visitorId":"visitor-1","events":[{"eventType":"bucketing","data":{"experienceId":"100218245","variationId":"100299457"}},"#,
    r#"{"eventType":"conversion","data":{"goalId":"100215960","goalData":[{"key":"amount","value":10.5}],"bucketingData":{"100218245":"100299457"}}}],"#,
    r#""segments":{"browser":"CH","country":"US","customSegments":["x"]}}],"source":"js5.0.1","note":"ünïcødé ✓"}"#
);

#[test]
fn response_headers_reach_the_caller() {
    let (base, server) = serve_once(
        Response::from_data(Vec::new())
            .with_status_code(StatusCode(429))
            .with_header(Header::from_bytes("Retry-After", "7").unwrap())
            .boxed(),
    );
    let request = HttpRequest {
        method: Method::Post,
        url: format!("{base}/v1/track/a/b"),
        headers: Vec::new(),
        body: Some("{}".into()),
    };
    let response = transport().send(&request).expect("send");
    server.join().expect("server thread");
    assert_eq!(response.status, 429);
    assert_eq!(
        response.retry_after(std::time::SystemTime::now()),
        Some(Duration::from_secs(7))
    );
}

#[test]
fn post_sends_method_path_headers_and_body_verbatim() {
    let (base, server) = serve_once(json_response(200, r#"{"ok":true}"#));
    let request = HttpRequest {
        method: Method::Post,
        url: format!("{base}/v1/track/10022898/10025986"),
        headers: vec![
            ("Content-Type".into(), "application/json".into()),
            ("User-Agent".into(), "ConvertAgent/1.0".into()),
            ("Authorization".into(), "Bearer s3cr3t-key".into()),
        ],
        body: Some(TRACKING_BODY.into()),
    };
    let response = transport().send(&request).expect("send");
    assert_eq!(response.status, 200);
    assert_eq!(response.body, br#"{"ok":true}"#.to_vec());
    assert_eq!(response.header("content-type"), Some("application/json"));

    let seen = server.join().expect("server thread");
    assert_eq!(seen.method, "POST");
    assert_eq!(seen.url, "/v1/track/10022898/10025986");
    assert_eq!(seen.headers_named("Content-Type"), ["application/json"]);
    assert_eq!(seen.headers_named("User-Agent"), ["ConvertAgent/1.0"]);
    assert_eq!(seen.headers_named("Authorization"), ["Bearer s3cr3t-key"]);
    assert_eq!(
        seen.headers_named("Content-Length"),
        [TRACKING_BODY.len().to_string().as_str()]
    );
    assert_eq!(seen.body, TRACKING_BODY.as_bytes());
}

#[test]
fn get_passes_the_query_string_through_unchanged() {
    let config = r#"{"account_id":"10022898","project":{"id":"10025986"},"experiences":[]}"#;
    let (base, server) = serve_once(json_response(200, config));
    let path_and_query = "/api/v1/config/10022898/10025986?environment=staging&_conv_low_cache=1&debug_token=tok%2Ben%2Fval%3Dx%26z";
    let request = HttpRequest {
        method: Method::Get,
        url: format!("{base}{path_and_query}"),
        headers: vec![
            ("Content-Type".into(), "application/json".into()),
            ("User-Agent".into(), "ConvertAgent/1.0".into()),
        ],
        body: None,
    };
    let response = transport().send(&request).expect("send");
    assert_eq!(response.status, 200);
    assert_eq!(response.body, config.as_bytes());

    let seen = server.join().expect("server thread");
    assert_eq!(seen.method, "GET");
    assert_eq!(seen.url, path_and_query);
    assert_eq!(seen.headers_named("Content-Type"), ["application/json"]);
    assert_eq!(seen.headers_named("User-Agent"), ["ConvertAgent/1.0"]);
    assert!(seen.headers_named("Authorization").is_empty(), "{seen:?}");
    assert!(seen.body.is_empty());
}

#[test]
fn status_500_is_returned_as_ok() {
    let (base, server) = serve_once(json_response(500, "boom"));
    let request = get(format!("{base}/api/v1/config/k"));
    let response = transport()
        .send(&request)
        .expect("a 500 is not a transport error");
    assert_eq!(response.status, 500);
    assert_eq!(response.body, b"boom");
    server.join().expect("server thread");
}

/// `Duration::MAX` timeouts ("no limit") are taken as a century: ureq panicked adding them to
/// an `Instant`.
#[test]
fn the_longest_timeouts_do_not_panic() {
    let (base, server) = serve_once(json_response(200, "{}"));
    let request = get(format!("{base}/api/v1/config/k"));
    let response = UreqTransport::builder()
        .connect_timeout(Duration::MAX)
        .timeout(Duration::MAX)
        .build()
        .send(&request)
        .expect("a 200");
    assert_eq!(response.status, 200);
    server.join().expect("server thread");
}

#[test]
fn status_404_is_returned_as_ok() {
    let (base, server) = serve_once(json_response(404, r#"{"error":"not found"}"#));
    let request = get(format!("{base}/api/v1/config/missing"));
    let response = transport()
        .send(&request)
        .expect("a 404 is not a transport error");
    assert_eq!(response.status, 404);
    assert_eq!(response.body, br#"{"error":"not found"}"#);
    server.join().expect("server thread");
}

#[test]
fn loopback_redirect_is_returned_not_followed() {
    let response = Response::empty(StatusCode(302))
        .with_header(Header::from_bytes("Location", "http://example.com/elsewhere").unwrap())
        .boxed();
    let (base, server) = serve_once(response);
    let got = transport()
        .send(&get(format!("{base}/moved")))
        .expect("send");
    assert_eq!(got.status, 302);
    server.join().expect("server thread");
}

#[test]
fn server_that_never_answers_times_out() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (done_tx, done_rx) = mpsc::channel::<()>();
    // Accepts, then holds the connection open without reading or writing until the test ends.
    let server = thread::spawn(move || {
        let conn = listener.accept();
        let _ = done_rx.recv();
        drop(conn);
    });
    let transport = UreqTransport::builder()
        .connect_timeout(Duration::from_millis(300))
        .timeout(Duration::from_millis(300))
        .build();
    let result = transport.send(&get(format!("http://{addr}/api/v1/config/k")));
    assert_eq!(result, Err(TransportError::Timeout));
    drop(done_tx);
    server.join().unwrap();
}

#[test]
fn closed_port_is_a_connect_error() {
    // Bind to get a free port, then close it: nothing listens there any more.
    let addr = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let result = transport().send(&get(format!("http://{addr}/api/v1/config/k")));
    assert!(
        matches!(result, Err(TransportError::Connect(_))),
        "{result:?}"
    );
    // The message names the server that could not be reached.
    let message = result.unwrap_err().to_string();
    assert!(message.contains(&addr.to_string()), "{message}");
}

#[test]
fn connect_errors_name_the_host_without_credentials() {
    let addr = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let result = transport().send(&get(format!("http://user:hunter2@{addr}/v1/track")));
    let message = result.unwrap_err().to_string();
    assert!(message.contains(&addr.to_string()), "{message}");
    assert!(!message.contains("hunter2"), "{message}");
}

fn limited(limit: u64) -> UreqTransport {
    UreqTransport::builder()
        .timeout(Duration::from_secs(3))
        .max_response_bytes(limit)
        .build()
}

#[test]
fn body_over_the_limit_with_content_length_is_too_large() {
    let (base, server) = serve_once(Response::from_data(vec![b'a'; 4096]).boxed());
    let result = limited(1024).send(&get(format!("{base}/big")));
    assert_eq!(result, Err(TransportError::TooLarge(1024)));
    server.join().expect("server thread");
}

#[test]
fn chunked_body_over_the_limit_is_too_large() {
    // A chunk threshold of 1 makes tiny_http send `Transfer-Encoding: chunked`, no length.
    let response = Response::from_data(vec![b'a'; 4096])
        .with_chunked_threshold(1)
        .boxed();
    let (base, server) = serve_once(response);
    let result = limited(1024).send(&get(format!("{base}/big")));
    assert_eq!(result, Err(TransportError::TooLarge(1024)));
    server.join().expect("server thread");
}

#[test]
fn body_exactly_at_the_limit_is_accepted() {
    let response = Response::from_data(vec![b'a'; 1024])
        .with_chunked_threshold(1)
        .boxed();
    let (base, server) = serve_once(response);
    let got = limited(1024)
        .send(&get(format!("{base}/exact")))
        .expect("send");
    assert_eq!(got.body.len(), 1024);
    server.join().expect("server thread");
}

#[test]
fn plain_http_to_a_remote_host_is_refused_without_network() {
    let t = transport();
    for url in [
        "http://example.com/api/v1/config/k?environment=live&debug_token=tok-secret",
        "http://10.1.2.3/v1/track/a/b",
        "http://[2001:db8::1]/x",
        "ftp://127.0.0.1/x",
    ] {
        let mut request = get(url.to_string());
        request
            .headers
            .push(("Authorization".into(), "Bearer s3cr3t-key".into()));
        let err = t.send(&request).unwrap_err();
        assert!(matches!(err, TransportError::Refused(_)), "{url}: {err:?}");
        let shown = format!("{err} {err:?}");
        assert!(!shown.contains("tok-secret"), "{shown}");
        assert!(!shown.contains("s3cr3t-key"), "{shown}");
    }
}

#[test]
fn malformed_input_is_an_error_not_a_panic() {
    let t = transport();
    for url in [
        "",
        "not a url",
        "http://",
        "https://",
        "http://[::1",
        "https://exa mple.com/x",
        "/relative",
    ] {
        let result = t.send(&get(url.to_string()));
        assert!(
            matches!(
                result,
                Err(TransportError::Refused(_) | TransportError::Other(_))
            ),
            "{url:?}: {result:?}"
        );
    }

    // A header value that cannot be sent: rejected before connecting, secret not echoed.
    let mut request = get("http://127.0.0.1:9/x".to_string());
    request
        .headers
        .push(("Authorization".into(), "Bearer s3cr3t\r\nkey".into()));
    let err = t.send(&request).unwrap_err();
    assert!(matches!(err, TransportError::Other(_)), "{err:?}");
    assert!(!format!("{err} {err:?}").contains("s3cr3t"));

    // A GET cannot carry a body.
    let mut request = get("http://127.0.0.1:9/x".to_string());
    request.body = Some("{}".into());
    assert!(matches!(t.send(&request), Err(TransportError::Other(_))));
}

#[test]
fn debug_output_never_shows_secrets() {
    let request = HttpRequest {
        method: Method::Get,
        url: "http://127.0.0.1:9/api/v1/config/k?environment=live&_conv_low_cache=1&debug_token=tok-secret".into(),
        headers: vec![
            ("User-Agent".into(), "ConvertAgent/1.0".into()),
            ("Authorization".into(), "Bearer s3cr3t-key".into()),
        ],
        body: None,
    };
    let shown = format!("{request:?}");
    assert!(!shown.contains("s3cr3t-key"), "{shown}");
    assert!(!shown.contains("tok-secret"), "{shown}");

    let t = transport();
    let shown = format!("{t:?}");
    assert!(
        shown.contains("UreqTransport") && shown.contains("timeout"),
        "{shown}"
    );

    // An error from a request carrying both secrets (closed port) does not echo them either.
    let addr = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut request = request;
    request.url = format!("http://{addr}/api/v1/config/k?debug_token=tok-secret");
    let err = t.send(&request).unwrap_err();
    let shown = format!("{err} {err:?}");
    assert!(
        !shown.contains("s3cr3t-key") && !shown.contains("tok-secret"),
        "{shown}"
    );
}

#[test]
fn defaults_match_the_documented_values() {
    let config = UreqTransport::new().config().clone();
    assert_eq!(config, TransportConfig::default());
    assert_eq!(config.connect_timeout, Duration::from_secs(5));
    assert_eq!(config.timeout, Duration::from_secs(10));
    assert_eq!(config.max_response_bytes, 8 * 1024 * 1024);
}

fn get(url: String) -> HttpRequest {
    HttpRequest {
        method: Method::Get,
        url,
        headers: vec![
            ("Content-Type".into(), "application/json".into()),
            ("User-Agent".into(), "ConvertAgent/1.0".into()),
        ],
        body: None,
    }
}
