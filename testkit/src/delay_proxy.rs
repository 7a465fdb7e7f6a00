//! A loopback TCP proxy that delays every reply of its upstream server (Redis in the tests and
//! the axum benchmark), standing in for network latency.

use std::io;
use std::net::SocketAddr;
use std::thread::JoinHandle;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};

/// A loopback TCP proxy to `127.0.0.1:upstream` that holds every chunk the server sends for a
/// fixed delay before passing it on, in order; the delays of consecutive replies overlap, as
/// network latency does. Requests go through at once. It runs on one thread of its own (a
/// current-thread tokio runtime) whatever the number of connections; dropping it closes every
/// connection and joins that thread.
pub struct DelayProxy {
    port: u16,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl DelayProxy {
    /// Starts the proxy on a free port of 127.0.0.1.
    pub fn start(upstream: u16, delay: Duration) -> io::Result<DelayProxy> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let listener = runtime.block_on(TcpListener::bind("127.0.0.1:0"))?;
        let port = listener.local_addr()?.port();
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("delay-proxy".into())
            .spawn(move || {
                runtime.spawn(accept_loop(listener, upstream, delay));
                // Returns when `stop` is sent or dropped; dropping the runtime then cancels
                // every connection task and closes its sockets.
                let _ = runtime.block_on(stopped);
            })?;
        Ok(DelayProxy {
            port,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// The proxy's port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:{port}/`: the proxy as a Redis URL.
    pub fn redis_url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }
}

impl Drop for DelayProxy {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn accept_loop(listener: TcpListener, upstream: u16, delay: Duration) {
    while let Ok((client, _)) = listener.accept().await {
        tokio::spawn(relay(
            client,
            SocketAddr::from(([127, 0, 0, 1], upstream)),
            delay,
        ));
    }
}

/// One proxied connection: requests copied through, replies released `delay` after they came.
async fn relay(client: TcpStream, upstream: SocketAddr, delay: Duration) {
    let Ok(server) = TcpStream::connect(upstream).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    tokio::spawn(async move {
        let _ = tokio::io::copy(&mut cr, &mut sw).await;
    });
    let (due_tx, mut due_rx) = mpsc::unbounded_channel::<(tokio::time::Instant, Vec<u8>)>();
    tokio::spawn(async move {
        while let Some((due, bytes)) = due_rx.recv().await {
            tokio::time::sleep_until(due).await;
            if cw.write_all(&bytes).await.is_err() {
                return;
            }
        }
    });
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match sr.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                let due = tokio::time::Instant::now() + delay;
                if due_tx.send((due, buf[..n].to_vec())).is_err() {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    /// An echo server on a free port that counts the connections it accepted.
    fn echo_server() -> u16 {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut c) = conn else { return };
                std::thread::spawn(move || {
                    let mut buf = [0u8; 1024];
                    while let Ok(n) = c.read(&mut buf) {
                        if n == 0 || c.write_all(&buf[..n]).is_err() {
                            return;
                        }
                    }
                });
            }
        });
        port
    }

    #[test]
    fn relays_both_ways_in_order_and_closes_connections_on_drop() {
        let proxy = DelayProxy::start(echo_server(), Duration::from_millis(1)).unwrap();
        let mut c = std::net::TcpStream::connect(("127.0.0.1", proxy.port())).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        for word in ["one", "two", "three"] {
            c.write_all(word.as_bytes()).unwrap();
            let mut got = vec![0u8; word.len()];
            c.read_exact(&mut got).unwrap();
            assert_eq!(got, word.as_bytes());
        }
        assert_eq!(
            proxy.redis_url(),
            format!("redis://127.0.0.1:{}/", proxy.port())
        );
        drop(proxy);
        // The proxy's side of the connection is gone: the read sees end of stream (or a reset).
        let mut rest = [0u8; 8];
        assert!(matches!(c.read(&mut rest), Ok(0) | Err(_)));
    }
}
