//! The HTTP port: config fetches and tracking posts.

use std::fmt;

/// HTTP method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// Body bytes.
    pub body: Vec<u8>,
}

/// Why a request failed before a response was read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
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
