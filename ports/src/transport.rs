//! The HTTP port: config fetches and tracking posts.

use std::fmt;
use std::time::{Duration, SystemTime};

/// HTTP method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Method {
    /// `GET` (config fetch).
    Get,
    /// `POST` (tracking).
    Post,
}

impl Method {
    /// The method name.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
        }
    }
}

/// A request the SDK wants sent.
#[derive(Clone, PartialEq, Eq)]
pub struct HttpRequest {
    /// Method.
    pub method: Method,
    /// Absolute URL.
    pub url: String,
    /// Headers in order.
    pub headers: Vec<(String, String)>,
    /// Body (tracking payload JSON), if any.
    pub body: Option<String>,
}

impl HttpRequest {
    /// The value of header `name` (case-insensitive), if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// `Debug` never prints the `Authorization` header or a `debug_token` query value.
impl fmt::Debug for HttpRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let headers: Vec<(&str, &str)> = self
            .headers
            .iter()
            .map(|(k, v)| {
                if k.eq_ignore_ascii_case("authorization") {
                    (k.as_str(), "<redacted>")
                } else {
                    (k.as_str(), v.as_str())
                }
            })
            .collect();
        f.debug_struct("HttpRequest")
            .field("method", &self.method)
            .field("url", &redact_url(&self.url))
            .field("headers", &headers)
            .field("body_len", &self.body.as_ref().map(String::len))
            .finish()
    }
}

/// The URL with the value of any `debug_token` query parameter replaced by `<redacted>`.
pub fn redact_url(url: &str) -> String {
    let Some((base, query)) = url.split_once('?') else {
        return url.to_string();
    };
    let parts: Vec<String> = query
        .split('&')
        .map(|p| match p.split_once('=') {
            Some(("debug_token", _)) => "debug_token=<redacted>".to_string(),
            _ => p.to_string(),
        })
        .collect();
    format!("{base}?{}", parts.join("&"))
}

/// A response.
///
/// Build one with [`HttpResponse::new`] and [`HttpResponse::with_header`] (the struct is
/// `#[non_exhaustive]` so that fields can be added without breaking transports).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// Response headers in order (names as received; look them up with [`HttpResponse::header`]).
    pub headers: Vec<(String, String)>,
    /// Body bytes.
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// A response with `status`, `body` and no header.
    pub fn new(status: u16, body: impl Into<Vec<u8>>) -> Self {
        HttpResponse {
            status,
            headers: Vec::new(),
            body: body.into(),
        }
    }

    /// The same response with one more header.
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// The value of header `name` (case-insensitive; the first one if repeated).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// How the SDK treats this status (see [`StatusClass`]).
    pub fn class(&self) -> StatusClass {
        StatusClass::of(self.status)
    }

    /// The wait the server asked for with `Retry-After` (delta-seconds or an HTTP date), if any.
    pub fn retry_after(&self, now: SystemTime) -> Option<Duration> {
        parse_retry_after(self.header("retry-after")?, now)
    }
}

/// How an HTTP status is handled, for tracking posts and config fetches alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StatusClass {
    /// Any 2xx: delivered.
    Success,
    /// 408, 429, 5xx (and, outside this enum, timeouts and connection errors): retried with
    /// backoff, honouring `Retry-After`.
    Transient,
    /// 413: the body is too large; a tracking batch is split in halves.
    TooLarge,
    /// Any other status (other 4xx, 1xx, 3xx): retrying cannot help; the request is given up.
    Permanent,
}

impl StatusClass {
    /// The class of `status`.
    pub fn of(status: u16) -> StatusClass {
        match status {
            200..=299 => StatusClass::Success,
            408 | 429 | 500..=599 => StatusClass::Transient,
            413 => StatusClass::TooLarge,
            _ => StatusClass::Permanent,
        }
    }
}

/// Parses a `Retry-After` value: delta-seconds (`"120"`) or an HTTP date
/// (`"Wed, 21 Oct 2015 07:28:00 GMT"`, relative to `now`; a date in the past is zero).
/// `None` when the value is neither.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let v = value.trim();
    if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) {
        // Absurdly long digit strings saturate instead of failing.
        return Some(Duration::from_secs(v.parse::<u64>().unwrap_or(u64::MAX)));
    }
    let at = httpdate::parse_http_date(v).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Why a request failed before a response was read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// Connection refused, reset, DNS failure.
    #[error("connection failed: {0}")]
    Connect(String),
    /// The connect or read timeout elapsed.
    #[error("request timed out")]
    Timeout,
    /// The response body exceeded the size limit.
    #[error("response larger than {0} bytes")]
    TooLarge(u64),
    /// The URL is not allowed (e.g. plain HTTP to a non-loopback host).
    #[error("refused URL: {0}")]
    Refused(String),
    /// Anything else.
    #[error("transport error: {0}")]
    Other(String),
}

/// Sends HTTP requests (synchronously; the SDK calls it from its own background threads).
pub trait Transport: Send + Sync + 'static {
    /// Sends one request and returns the response, whatever its status.
    fn send(&self, request: &HttpRequest) -> Result<HttpResponse, TransportError>;
}

impl<T: Transport + ?Sized> Transport for std::sync::Arc<T> {
    fn send(&self, request: &HttpRequest) -> Result<HttpResponse, TransportError> {
        (**self).send(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_classes() {
        for s in [200, 201, 202, 204, 299] {
            assert_eq!(StatusClass::of(s), StatusClass::Success, "{s}");
        }
        for s in [408, 429, 500, 502, 503, 504, 599] {
            assert_eq!(StatusClass::of(s), StatusClass::Transient, "{s}");
        }
        assert_eq!(StatusClass::of(413), StatusClass::TooLarge);
        for s in [100, 301, 304, 400, 401, 403, 404, 410, 422] {
            assert_eq!(StatusClass::of(s), StatusClass::Permanent, "{s}");
        }
    }

    #[test]
    fn retry_after_seconds_and_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_400); // 2015-10-21 07:26:40 GMT
        assert_eq!(
            parse_retry_after(" 120 ", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now),
            Some(Duration::from_secs(80))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-5", now), None);
        assert_eq!(parse_retry_after("", now), None);
        let r = HttpResponse::new(429, "").with_header("Retry-After", "3");
        assert_eq!(r.retry_after(now), Some(Duration::from_secs(3)));
        assert_eq!(r.header("RETRY-AFTER"), Some("3"));
        assert_eq!(r.class(), StatusClass::Transient);
    }

    #[test]
    fn debug_redacts_secrets() {
        let r = HttpRequest {
            method: Method::Get,
            url: "https://x/config/k?environment=live&_conv_low_cache=1&debug_token=s3cret".into(),
            headers: vec![("Authorization".into(), "Bearer topsecret".into())],
            body: None,
        };
        let dbg = format!("{r:?}");
        assert!(!dbg.contains("s3cret"), "{dbg}");
        assert!(!dbg.contains("topsecret"), "{dbg}");
        assert!(dbg.contains("environment=live"));
        assert_eq!(r.header("authorization"), Some("Bearer topsecret"));
    }
}
