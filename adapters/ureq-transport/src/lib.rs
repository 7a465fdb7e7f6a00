#![doc = include_str!("../README.md")]

use std::fmt;
use std::io;
use std::net::IpAddr;
use std::time::Duration;

use convert_ports::transport::{
    HttpRequest, HttpResponse, Method, Transport, TransportError, redact_url,
};
use ureq::Agent;
use ureq::config::{AutoHeaderValue, RedirectAuthHeaders};
use ureq::http;

/// Default time allowed to establish a TCP (and TLS) connection: 5 seconds.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Default end-to-end time allowed for one request, from name resolution to the last
/// byte of the response body: 10 seconds.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Default maximum size of a response body, after decompression: 8 MiB.
pub const DEFAULT_MAX_RESPONSE_BYTES: u64 = 8 * 1024 * 1024;

/// Default number of redirects followed for HTTPS requests (never to plain HTTP): 5.
pub const DEFAULT_MAX_REDIRECTS: u32 = 5;

/// The settings of a [`UreqTransport`]; see [`UreqTransportBuilder`] for what each means.
///
/// Holds no secret: this is everything `UreqTransport`'s `Debug` output shows.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TransportConfig {
    /// Time allowed to establish a connection (TCP connect, per attempt).
    pub connect_timeout: Duration,
    /// End-to-end time allowed for one request, including reading the whole body.
    pub timeout: Duration,
    /// Largest response body accepted, in bytes (after decompression).
    pub max_response_bytes: u64,
    /// Redirects followed for HTTPS requests (redirects to plain HTTP are refused).
    pub max_redirects: u32,
}

impl Default for TransportConfig {
    fn default() -> Self {
        Self {
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            timeout: DEFAULT_TIMEOUT,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            max_redirects: DEFAULT_MAX_REDIRECTS,
        }
    }
}

/// Builds a [`UreqTransport`] with non-default settings.
///
/// ```
/// use std::time::Duration;
/// use convert_transport_ureq::UreqTransport;
///
/// let transport = UreqTransport::builder()
///     .connect_timeout(Duration::from_secs(2))
///     .timeout(Duration::from_secs(5))
///     .max_response_bytes(1024 * 1024)
///     .build();
/// assert_eq!(transport.config().timeout, Duration::from_secs(5));
/// ```
#[derive(Debug, Clone, Default)]
pub struct UreqTransportBuilder {
    config: TransportConfig,
}

impl UreqTransportBuilder {
    /// A builder with the default settings.
    pub fn new() -> Self {
        Self::default()
    }

    /// Time allowed to establish a connection (default [`DEFAULT_CONNECT_TIMEOUT`]).
    /// When it elapses the request fails with [`TransportError::Timeout`].
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.config.connect_timeout = timeout;
        self
    }

    /// End-to-end time allowed for one request, from name resolution to the last byte of
    /// the body (default [`DEFAULT_TIMEOUT`]). When it elapses the request fails with
    /// [`TransportError::Timeout`].
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.config.timeout = timeout;
        self
    }

    /// Largest response body accepted, in bytes, after any content decoding (default
    /// [`DEFAULT_MAX_RESPONSE_BYTES`]). A larger body fails the request with
    /// [`TransportError::TooLarge`]; a body of exactly this size is accepted.
    pub fn max_response_bytes(mut self, limit: u64) -> Self {
        self.config.max_response_bytes = limit;
        self
    }

    /// Redirects followed for HTTPS requests (default [`DEFAULT_MAX_REDIRECTS`]; `0`
    /// returns the 3xx response itself). A redirect to plain HTTP fails with
    /// [`TransportError::Refused`]. Plain-HTTP loopback requests never follow redirects.
    pub fn max_redirects(mut self, redirects: u32) -> Self {
        self.config.max_redirects = redirects;
        self
    }

    /// Builds the transport. Never fails: TLS is set up on first use.
    pub fn build(self) -> UreqTransport {
        UreqTransport::with_config(self.config)
    }
}

/// A [`Transport`] built on the blocking HTTP client [ureq](https://docs.rs/ureq) 3 with
/// rustls.
///
/// * Sends the request's headers verbatim (it adds no `User-Agent` of its own) and its body
///   byte for byte.
/// * Any HTTP status, including 4xx and 5xx, is returned as `Ok(HttpResponse)`.
/// * HTTPS only; plain `http://` is allowed only to loopback hosts
///   (`127.0.0.0/8`, `::1`, `localhost`). Anything else is [`TransportError::Refused`]
///   before any connection is made.
/// * Cheap to share: connections are pooled and reused across threads.
///
/// `Debug` shows the [`TransportConfig`] only.
#[derive(Clone)]
pub struct UreqTransport {
    config: TransportConfig,
    /// For `https://` URLs: HTTPS-only (also across redirects), proxy from the environment.
    secure: Agent,
    /// For `http://` loopback URLs: no proxy, no redirects.
    loopback: Agent,
}

impl fmt::Debug for UreqTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UreqTransport")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Default for UreqTransport {
    fn default() -> Self {
        Self::new()
    }
}

impl UreqTransport {
    /// A transport with the default settings ([`TransportConfig::default`]).
    pub fn new() -> Self {
        Self::with_config(TransportConfig::default())
    }

    /// A builder for non-default settings.
    pub fn builder() -> UreqTransportBuilder {
        UreqTransportBuilder::new()
    }

    /// A transport with the given settings.
    pub fn with_config(config: TransportConfig) -> Self {
        // ureq adds its timeouts to an `Instant` and panics past what one holds.
        let connect_timeout = config.connect_timeout.min(convert_ports::LONGEST_WAIT);
        let timeout = config.timeout.min(convert_ports::LONGEST_WAIT);
        let secure = Agent::config_builder()
            .https_only(true)
            .max_redirects(config.max_redirects)
            .max_redirects_will_error(false)
            .redirect_auth_headers(RedirectAuthHeaders::SameHost)
            .http_status_as_error(false)
            .user_agent(AutoHeaderValue::None)
            .timeout_connect(Some(connect_timeout))
            .timeout_global(Some(timeout))
            .tls_config(tls_config())
            .build()
            .new_agent();
        let loopback = Agent::config_builder()
            .proxy(None)
            .max_redirects(0)
            .max_redirects_will_error(false)
            .http_status_as_error(false)
            .user_agent(AutoHeaderValue::None)
            .timeout_connect(Some(connect_timeout))
            .timeout_global(Some(timeout))
            .build()
            .new_agent();
        Self {
            config,
            secure,
            loopback,
        }
    }

    /// The settings in use.
    pub fn config(&self) -> &TransportConfig {
        &self.config
    }

    /// The TLS stack and trust store chosen by this crate's cargo features:
    /// `"rustls, webpki roots"` (default), `"rustls, platform verifier"` (`platform-verifier`)
    /// or `"native-tls, platform roots"` (`native-tls`, which wins when both are on).
    pub fn tls_backend(&self) -> &'static str {
        TLS_BACKEND
    }

    fn send_inner(&self, request: &HttpRequest) -> Result<HttpResponse, TransportError> {
        let uri = parse_and_check(&request.url)?;
        // `host[:port]`, no user information: named in a connection error ("connection refused"
        // alone does not say which of the SDK's endpoints failed).
        let server = match (uri.host(), uri.port_u16()) {
            (Some(host), Some(port)) => format!("{host}:{port}"),
            (host, _) => host.unwrap_or_default().to_string(),
        };
        let agent = if uri.scheme() == Some(&http::uri::Scheme::HTTPS) {
            &self.secure
        } else {
            &self.loopback
        };

        let mut builder = http::Request::builder()
            .method(match request.method {
                Method::Get => http::Method::GET,
                Method::Post => http::Method::POST,
                other => {
                    return Err(TransportError::Other(format!(
                        "HTTP method {other:?} is not supported by this transport"
                    )));
                }
            })
            .uri(uri);
        for (name, value) in &request.headers {
            builder = builder.header(name.as_str(), value.as_str());
        }
        let body: Vec<u8> = match (request.method, &request.body) {
            (Method::Get, Some(_)) => {
                return Err(TransportError::Other(
                    "a GET request cannot carry a body".into(),
                ));
            }
            (_, Some(body)) => body.as_bytes().to_vec(),
            (_, None) => Vec::new(),
        };
        let http_request = builder
            .body(body)
            .map_err(|e| TransportError::Other(format!("invalid request: {e}")))?;

        let response = agent.run(http_request).map_err(|e| {
            match map_error(e, self.config.max_response_bytes) {
                TransportError::Connect(m) => TransportError::Connect(format!("{server}: {m}")),
                other => other,
            }
        })?;
        let status = response.status().as_u16();
        let headers: Vec<(String, String)> = response
            .headers()
            .iter()
            .filter_map(|(name, value)| {
                Some((name.as_str().to_string(), value.to_str().ok()?.to_string()))
            })
            .collect();

        let limit = self.config.max_response_bytes;
        let declared = response
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        let encoded = response
            .headers()
            .contains_key(http::header::CONTENT_ENCODING);
        // A declared length over the limit fails early, unless the body is encoded (its decoded
        // size, which the limit is about, is then unknown until read).
        if !encoded && declared.is_some_and(|n| n > limit) {
            return Err(TransportError::TooLarge(limit));
        }
        let body = response
            .into_body()
            .with_config()
            .limit(limit)
            .read_to_vec()
            .map_err(|e| map_error(e, limit))?;
        let mut out = HttpResponse::new(status, body);
        out.headers = headers;
        Ok(out)
    }
}

impl Transport for UreqTransport {
    fn send(&self, request: &HttpRequest) -> Result<HttpResponse, TransportError> {
        let redacted = redact_url(&request.url);
        log::debug!("{} {}", request.method.as_str(), redacted);
        match self.send_inner(request) {
            Ok(response) => {
                log::debug!(
                    "{} {} -> {} ({} bytes)",
                    request.method.as_str(),
                    redacted,
                    response.status,
                    response.body.len()
                );
                Ok(response)
            }
            Err(error) => {
                let error = scrub_error(error, request);
                log::debug!("{} {} failed: {}", request.method.as_str(), redacted, error);
                Err(error)
            }
        }
    }
}

/// Parses `url` and applies the scheme policy: `https` to any host, `http` to loopback only.
fn parse_and_check(url: &str) -> Result<http::Uri, TransportError> {
    let uri: http::Uri = url.parse().map_err(|_| {
        TransportError::Refused(format!("not an absolute URL: {}", redact_url(url)))
    })?;
    let Some(host) = uri.host().filter(|h| !h.is_empty()) else {
        return Err(TransportError::Refused(format!(
            "URL has no host: {}",
            redact_url(url)
        )));
    };
    match uri.scheme_str() {
        Some(s) if s.eq_ignore_ascii_case("https") => Ok(uri),
        Some(s) if s.eq_ignore_ascii_case("http") => {
            if is_loopback_host(host) {
                Ok(uri)
            } else {
                Err(TransportError::Refused(format!(
                    "plain HTTP is only allowed to loopback hosts: {}",
                    redact_url(url)
                )))
            }
        }
        _ => Err(TransportError::Refused(format!(
            "only https:// URLs are allowed: {}",
            redact_url(url)
        ))),
    }
}

/// `localhost`, `127.0.0.0/8` or `::1` (as `[::1]` in a URL).
fn is_loopback_host(host: &str) -> bool {
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Maps a ureq error to the port's error type.
fn map_error(error: ureq::Error, limit: u64) -> TransportError {
    match error {
        ureq::Error::Timeout(_) => TransportError::Timeout,
        ureq::Error::BodyExceedsLimit(_) => TransportError::TooLarge(limit),
        ureq::Error::HostNotFound => TransportError::Connect("host not found".into()),
        ureq::Error::ConnectionFailed => TransportError::Connect("connection failed".into()),
        ureq::Error::RequireHttpsOnly(_) => {
            TransportError::Refused("redirect to a plain HTTP URL".into())
        }
        ureq::Error::BadUri(_) => TransportError::Refused("invalid URL".into()),
        ureq::Error::Io(e) => map_io_error(&e),
        other => TransportError::Other(other.to_string()),
    }
}

fn map_io_error(error: &io::Error) -> TransportError {
    use io::ErrorKind as K;
    match error.kind() {
        K::TimedOut | K::WouldBlock => TransportError::Timeout,
        K::ConnectionRefused
        | K::ConnectionReset
        | K::ConnectionAborted
        | K::NotConnected
        | K::AddrNotAvailable
        | K::AddrInUse
        | K::BrokenPipe
        | K::UnexpectedEof
        | K::HostUnreachable
        | K::NetworkUnreachable
        | K::NetworkDown => TransportError::Connect(error.to_string()),
        _ => TransportError::Other(error.to_string()),
    }
}

/// See [`UreqTransport::tls_backend`].
const TLS_BACKEND: &str = if cfg!(feature = "native-tls") {
    "native-tls, platform roots"
} else if cfg!(feature = "platform-verifier") {
    "rustls, platform verifier"
} else {
    "rustls, webpki roots"
};

/// The TLS settings of HTTPS requests, per the cargo features (see [`TLS_BACKEND`]).
fn tls_config() -> ureq::tls::TlsConfig {
    use ureq::tls::{RootCerts, TlsConfig, TlsProvider};
    let builder = TlsConfig::builder();
    if cfg!(feature = "native-tls") {
        builder
            .provider(TlsProvider::NativeTls)
            .root_certs(RootCerts::PlatformVerifier)
            .build()
    } else if cfg!(feature = "platform-verifier") {
        builder.root_certs(RootCerts::PlatformVerifier).build()
    } else {
        builder.build()
    }
}

/// Removes the request's secrets (the `Authorization` value, the `debug_token` value and
/// the unredacted URL) from an error message, in case a lower layer echoed them.
fn scrub_error(error: TransportError, request: &HttpRequest) -> TransportError {
    let scrub = |msg: String| scrub_message(msg, request);
    match error {
        TransportError::Connect(m) => TransportError::Connect(scrub(m)),
        TransportError::Refused(m) => TransportError::Refused(scrub(m)),
        TransportError::Other(m) => TransportError::Other(scrub(m)),
        e => e,
    }
}

fn scrub_message(mut msg: String, request: &HttpRequest) -> String {
    if msg.contains(request.url.as_str()) {
        msg = msg.replace(request.url.as_str(), &redact_url(&request.url));
    }
    let mut secrets: Vec<&str> = Vec::new();
    for (name, value) in &request.headers {
        if name.eq_ignore_ascii_case("authorization") {
            secrets.push(value.as_str());
            if let Some((_, token)) = value.split_once(' ') {
                secrets.push(token.trim());
            }
        }
    }
    if let Some((_, query)) = request.url.split_once('?') {
        for pair in query.split('&') {
            if let Some(("debug_token", value)) = pair.split_once('=') {
                secrets.push(value);
            }
        }
    }
    // Longest first, so a token inside a longer header value is not left half-replaced.
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    for secret in secrets {
        if !secret.is_empty() && msg.contains(secret) {
            msg = msg.replace(secret, "<redacted>");
        }
    }
    msg
}

#[cfg(test)]
mod tls_tests {
    use super::*;
    use ureq::tls::{RootCerts, TlsProvider};

    /// The agent for HTTPS uses the stack the features ask for.
    #[test]
    fn https_agent_uses_the_features_tls_stack() {
        let t = UreqTransport::new();
        let tls = t.secure.config().tls_config();
        let native = cfg!(feature = "native-tls");
        let platform = native || cfg!(feature = "platform-verifier");
        assert_eq!(tls.provider() == TlsProvider::NativeTls, native, "{tls:?}");
        assert_eq!(
            matches!(tls.root_certs(), RootCerts::PlatformVerifier),
            platform,
            "{tls:?}"
        );
        assert_eq!(t.tls_backend(), TLS_BACKEND);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts() {
        for h in ["localhost", "LOCALHOST", "127.0.0.1", "127.1.2.3", "[::1]"] {
            assert!(is_loopback_host(h), "{h}");
        }
        for h in [
            "example.com",
            "10.0.0.1",
            "[::2]",
            "localhost.example.com",
            "128.0.0.1",
            "",
        ] {
            assert!(!is_loopback_host(h), "{h}");
        }
    }

    #[test]
    fn url_policy() {
        assert!(parse_and_check("https://cdn-4.convertexperiments.com/api/v1/config/k").is_ok());
        assert!(parse_and_check("http://127.0.0.1:8080/x").is_ok());
        assert!(parse_and_check("http://localhost/x").is_ok());
        assert!(parse_and_check("http://[::1]:9/x").is_ok());
        for bad in [
            "http://example.com/x",
            "http://10.0.0.1/x",
            "ftp://127.0.0.1/x",
            "file:///etc/passwd",
            "/relative/path",
            "",
            "not a url",
            "https://",
            "http://127.0.0.1.example.com/x",
        ] {
            assert!(
                matches!(parse_and_check(bad), Err(TransportError::Refused(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn refusal_message_redacts_debug_token() {
        let err = parse_and_check("http://example.com/c?debug_token=s3cret").err();
        let msg = format!("{err:?}");
        assert!(!msg.contains("s3cret"), "{msg}");
    }

    #[test]
    fn error_mapping() {
        assert_eq!(
            map_error(ureq::Error::Timeout(ureq::Timeout::Global), 1),
            TransportError::Timeout
        );
        assert_eq!(
            map_error(ureq::Error::BodyExceedsLimit(7), 9),
            TransportError::TooLarge(9)
        );
        assert!(matches!(
            map_error(ureq::Error::HostNotFound, 1),
            TransportError::Connect(_)
        ));
        assert!(matches!(
            map_error(ureq::Error::RequireHttpsOnly("http://x/?debug_token=t".into()), 1),
            TransportError::Refused(m) if !m.contains("debug_token")
        ));
        assert!(matches!(
            map_error(io::Error::from(io::ErrorKind::ConnectionRefused).into(), 1),
            TransportError::Connect(_)
        ));
        assert_eq!(
            map_error(io::Error::from(io::ErrorKind::TimedOut).into(), 1),
            TransportError::Timeout
        );
        assert!(matches!(
            map_error(ureq::Error::Tls("bad cert"), 1),
            TransportError::Other(_)
        ));
    }

    #[test]
    fn scrub_removes_secrets() {
        let request = HttpRequest {
            method: Method::Get,
            url: "https://h/config/k?environment=live&debug_token=tok123".into(),
            headers: vec![("Authorization".into(), "Bearer sec456".into())],
            body: None,
        };
        let msg = scrub_message(
            format!(
                "failed {} with Bearer sec456 and sec456 tok123",
                request.url
            ),
            &request,
        );
        assert!(!msg.contains("tok123"), "{msg}");
        assert!(!msg.contains("sec456"), "{msg}");
        assert!(msg.contains("environment=live"), "{msg}");
    }
}
