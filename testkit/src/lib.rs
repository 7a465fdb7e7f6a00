//! Test helpers of convert-rs (not published).
//!
//! [`FakeConvert`] is a scriptable HTTP server on 127.0.0.1 built on `tiny_http`, standing in for
//! Convert's tracking endpoint (POST) and CDN (GET) in tests and examples. Each request is
//! answered by the next [`Mode`] of its method's script, then by the method's default mode; the
//! server records every request and which bodies it *accepted* (as Convert would have stored
//! them), so a test can compare the exact multiset of events received.
//!
//! With the `tokio` feature, [`delay_proxy::DelayProxy`] delays every reply of a TCP server
//! (Redis) by a fixed time.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[cfg(feature = "tokio")]
pub mod delay_proxy;
pub mod process;

pub use process::{ThreadTimes, os_threads, thread_cpu_ns, timed_threads};

use serde_json::Value;
use std::collections::VecDeque;
use std::io::{Read, Write};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use tiny_http::{Header, Request, Response, Server, StatusCode};

/// How the server answers one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// Accepts the body and answers this status (200, 204, ...) with `body`.
    Accept(u16, String),
    /// Does not accept the body; answers this status (500, 400, ...).
    Status(u16),
    /// Does not accept the body; answers 429 with `Retry-After: <value>`.
    RetryAfter(String),
    /// Accepts a body of at most this many bytes (answers 200); a larger one gets 413.
    BodyLimit(usize),
    /// Reads the request and never answers until [`FakeConvert::release_hung`] is called; the
    /// connection is then closed without an answer. Nothing is accepted.
    Hang,
    /// Breaks the connection: reads the request and writes bytes that are not HTTP. Nothing is
    /// accepted.
    Reset,
    /// Accepts the body and answers 200 with a body trickled one byte per `delay`.
    Trickle(usize, Duration),
    /// Accepts the body, then breaks the connection instead of answering: the client never
    /// learns that the request succeeded (a lost acknowledgement).
    LostAck,
}

impl Mode {
    /// `Accept(200, "")`.
    pub fn ok() -> Mode {
        Mode::Accept(200, String::new())
    }
}

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    /// `GET` or `POST`.
    pub method: String,
    /// Path and query.
    pub url: String,
    /// Headers as `(name, value)`.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
    /// The mode that answered it.
    pub mode: Mode,
    /// When it arrived.
    pub at: std::time::Instant,
}

impl Seen {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Default)]
struct State {
    post: VecDeque<Mode>,
    get: VecDeque<Mode>,
    post_default: Option<Mode>,
    get_default: Option<Mode>,
    seen: Vec<Seen>,
    accepted: Vec<Vec<u8>>,
    hung: usize,
    released: bool,
}

struct Inner {
    state: Mutex<State>,
    changed: Condvar,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A scriptable stand-in for Convert on 127.0.0.1 (see the crate docs). Stops when dropped.
pub struct FakeConvert {
    port: u16,
    inner: Arc<Inner>,
    server: Arc<Server>,
}

impl FakeConvert {
    /// Starts a server whose POSTs and GETs are answered with 200 (accepted) by default.
    pub fn start() -> FakeConvert {
        let server = Arc::new(Server::http("127.0.0.1:0").expect("bind 127.0.0.1:0"));
        let port = server.server_addr().to_ip().expect("an IP listener").port();
        let inner = Arc::new(Inner {
            state: Mutex::new(State {
                post_default: Some(Mode::ok()),
                get_default: Some(Mode::ok()),
                ..State::default()
            }),
            changed: Condvar::new(),
        });
        let (s, i) = (Arc::clone(&server), Arc::clone(&inner));
        std::thread::spawn(move || {
            for request in s.incoming_requests() {
                let i = Arc::clone(&i);
                // One thread per request, so a hanging answer does not hold up the others.
                std::thread::spawn(move || handle(&i, request));
            }
        });
        FakeConvert {
            port,
            inner,
            server,
        }
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:<port>`.
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Answers the next POSTs with `modes`, in order, before the default.
    pub fn then_post(&self, modes: impl IntoIterator<Item = Mode>) -> &Self {
        self.inner.lock().post.extend(modes);
        self
    }

    /// Answers POSTs with `mode` once the script is used up.
    pub fn post_default(&self, mode: Mode) -> &Self {
        self.inner.lock().post_default = Some(mode);
        self
    }

    /// Answers the next GETs with `modes`, in order, before the default.
    pub fn then_get(&self, modes: impl IntoIterator<Item = Mode>) -> &Self {
        self.inner.lock().get.extend(modes);
        self
    }

    /// Answers GETs with `mode` once the script is used up.
    pub fn get_default(&self, mode: Mode) -> &Self {
        self.inner.lock().get_default = Some(mode);
        self
    }

    /// Every request seen so far, in arrival order.
    pub fn seen(&self) -> Vec<Seen> {
        self.inner.lock().seen.clone()
    }

    /// Number of POST requests seen so far.
    pub fn posts(&self) -> usize {
        self.inner
            .lock()
            .seen
            .iter()
            .filter(|s| s.method == "POST")
            .count()
    }

    /// The bodies of the POSTs accepted so far, in order.
    pub fn accepted(&self) -> Vec<Vec<u8>> {
        self.inner.lock().accepted.clone()
    }

    /// The events in the accepted tracking bodies as `(visitorId, id)` pairs, `id` being the
    /// goal id of a conversion or the variation id of a bucketing event, sorted (a multiset).
    pub fn accepted_events(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> =
            self.accepted().iter().flat_map(|b| events_of(b)).collect();
        out.sort();
        out
    }

    /// How many requests are hanging now ([`Mode::Hang`]).
    pub fn hung(&self) -> usize {
        self.inner.lock().hung
    }

    /// Lets every hanging request (and any later one) end without an answer.
    pub fn release_hung(&self) {
        self.inner.lock().released = true;
        self.inner.changed.notify_all();
    }
}

impl Drop for FakeConvert {
    fn drop(&mut self) {
        self.release_hung();
        self.server.unblock();
    }
}

/// The events of one tracking body as `(visitorId, goal or variation id)` pairs, in order.
pub fn events_of(body: &[u8]) -> Vec<(String, String)> {
    let doc: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let mut out = Vec::new();
    for v in doc["visitors"].as_array().into_iter().flatten() {
        let visitor = v["visitorId"].as_str().unwrap_or_default().to_string();
        for e in v["events"].as_array().into_iter().flatten() {
            let d = &e["data"];
            let id = match (&d["goalId"], &d["variationId"]) {
                (Value::String(g), _) => g.clone(),
                (Value::Null, Value::String(v)) => v.clone(),
                (other, _) => other.to_string(),
            };
            out.push((visitor.clone(), id));
        }
    }
    out
}

fn handle(inner: &Inner, mut request: Request) {
    let mut body = Vec::new();
    let _ = request.as_reader().read_to_end(&mut body);
    let method = request.method().as_str().to_string();
    let mode = {
        let mut guard = inner.lock();
        let st = &mut *guard;
        let (script, default) = if method == "GET" {
            (&mut st.get, &st.get_default)
        } else {
            (&mut st.post, &st.post_default)
        };
        let mode = script
            .pop_front()
            .or_else(|| default.clone())
            .unwrap_or_else(Mode::ok);
        let accepted = match &mode {
            Mode::Accept(..) | Mode::Trickle(..) | Mode::LostAck => true,
            Mode::BodyLimit(limit) => body.len() <= *limit,
            _ => false,
        };
        if accepted && method == "POST" {
            st.accepted.push(body.clone());
        }
        st.seen.push(Seen {
            method,
            url: request.url().to_string(),
            headers: request
                .headers()
                .iter()
                .map(|h| (h.field.to_string(), h.value.to_string()))
                .collect(),
            body: body.clone(),
            mode: mode.clone(),
            at: std::time::Instant::now(),
        });
        mode
    };
    let respond = |request: Request, status: u16, body: &str, headers: &[(&str, &str)]| {
        let mut r = Response::from_string(body).with_status_code(StatusCode(status));
        for (k, v) in headers {
            if let Ok(h) = Header::from_bytes(k.as_bytes(), v.as_bytes()) {
                r = r.with_header(h);
            }
        }
        let _ = request.respond(r);
    };
    match mode {
        Mode::Accept(status, text) => respond(
            request,
            status,
            &text,
            &[("Content-Type", "application/json")],
        ),
        Mode::Status(status) => respond(request, status, "", &[]),
        Mode::RetryAfter(value) => respond(request, 429, "", &[("Retry-After", &value)]),
        Mode::BodyLimit(limit) => {
            respond(
                request,
                if body.len() <= limit { 200 } else { 413 },
                "",
                &[],
            );
        }
        Mode::Hang => {
            let mut st = inner.lock();
            st.hung += 1;
            while !st.released {
                st = inner
                    .changed
                    .wait(st)
                    .unwrap_or_else(PoisonError::into_inner);
            }
            st.hung -= 1;
            drop(st);
            break_connection(request);
        }
        Mode::Reset | Mode::LostAck => break_connection(request),
        Mode::Trickle(len, delay) => {
            let reader = Trickle { left: len, delay };
            let _ = request.respond(Response::new(
                StatusCode(200),
                Vec::new(),
                reader,
                Some(len),
                None,
            ));
        }
    }
}

/// Writes bytes that are not an HTTP response: the client fails to read an answer.
fn break_connection(request: Request) {
    let mut w = request.into_writer();
    let _ = w.write_all(b"\x00\x00 not http \r\n\r\n");
    let _ = w.flush();
}

/// A response body that yields one byte per `delay`.
struct Trickle {
    left: usize,
    delay: Duration,
}

impl Read for Trickle {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.left == 0 || buf.is_empty() {
            return Ok(0);
        }
        std::thread::sleep(self.delay);
        buf[0] = b' ';
        self.left -= 1;
        Ok(1)
    }
}

/// Waits for a condition that background threads make true, checking every 5 ms; panics naming
/// `what` after 30 s (a bound for a broken build, never a timing assertion).
pub fn eventually(what: &str, cond: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while std::time::Instant::now() < deadline {
        if cond() {
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    panic!("timed out waiting for {what}");
}
