//! The one HTTP client of the examples' `--self-test` modes: a plain `GET` over TCP, so the
//! examples need no HTTP client crate. Included with `#[path = "support/http.rs"] mod http;`.

/// Sends `GET path` to `addr` over a plain TCP connection and returns the response body.
pub async fn get_body(addr: std::net::SocketAddr, path: &str) -> std::io::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).await?;
    Ok(buf.split("\r\n\r\n").nth(1).unwrap_or_default().to_string())
}
