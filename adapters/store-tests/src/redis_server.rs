//! A `redis-server` on 127.0.0.1 for tests, on a free port in its own directory.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `redis-server` (append-only persistence on). Dropping it stops the server (`SHUTDOWN`,
/// then a kill if it does not exit within 5 s) and removes its directory; a watchdog process also
/// kills it when the test process exits without dropping it (a leaked or shared server).
pub struct RedisServer {
    port: u16,
    dir: PathBuf,
    extra: Vec<String>,
    server: Option<Child>,
    watchdog: Option<Child>,
}

/// Whether `redis-server` is on PATH. When it is not and `CONVERT_REQUIRE_REDIS` is set (as
/// `cargo xtask test` and CI do), this panics with the fix; otherwise it prints a SKIPPED line.
pub fn redis_available() -> bool {
    let ok = Command::new("redis-server")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok && std::env::var_os("CONVERT_REQUIRE_REDIS").is_some_and(|v| v != "0") {
        panic!(
            "CONVERT_REQUIRE_REDIS is set but redis-server is not on PATH (apt-get install redis-server)"
        );
    }
    if !ok {
        eprintln!("SKIPPED: redis-server not found on PATH");
    }
    ok
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

impl RedisServer {
    /// Starts a server (panics when it does not come up within 10 s).
    pub fn start(tag: &str) -> RedisServer {
        Self::start_with(tag, &[])
    }

    /// Starts a server with extra `redis-server` arguments (e.g. `--tls-port`).
    pub fn start_with(tag: &str, extra: &[String]) -> RedisServer {
        let dir = std::env::temp_dir().join(format!("convert-redis-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        if let Err(e) = std::fs::create_dir_all(&dir) {
            panic!("cannot create {}: {e}", dir.display());
        }
        let mut s = RedisServer {
            port: free_port(),
            dir,
            extra: extra.to_vec(),
            server: None,
            watchdog: None,
        };
        s.launch();
        s
    }

    /// (Re)starts the server process on the same port and directory.
    pub fn launch(&mut self) {
        let port = self.port.to_string();
        let dir = self.dir.display().to_string();
        let mut args: Vec<&str> = vec![
            "--port",
            &port,
            "--bind",
            "127.0.0.1",
            "--dir",
            &dir,
            "--appendonly",
            "yes",
            "--save",
            "",
            "--daemonize",
            "no",
            "--protected-mode",
            "no",
        ];
        args.extend(self.extra.iter().map(String::as_str));
        let server = match Command::new("redis-server")
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
        {
            Ok(c) => c,
            Err(e) => panic!("cannot start redis-server: {e}"),
        };
        // Stops the server and removes its directory when the test process goes away without
        // dropping us (a server shared by a whole test binary).
        let watchdog = format!(
            "while kill -0 {parent} 2>/dev/null && kill -0 {rp} 2>/dev/null; do sleep 0.2; done; \
             if ! kill -0 {parent} 2>/dev/null; then \
               kill -CONT {rp} 2>/dev/null; kill {rp} 2>/dev/null; i=0; \
               while kill -0 {rp} 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done; \
               kill -9 {rp} 2>/dev/null; rm -rf '{dir}'; \
             fi",
            parent = std::process::id(),
            rp = server.id(),
        );
        self.watchdog = Command::new("sh")
            .arg("-c")
            .arg(watchdog)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok();
        self.server = Some(server);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if answers_ping(self.port) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("redis-server did not start on port {}", self.port);
    }

    /// Stops the server gracefully (`SIGTERM`: Redis flushes the append-only file and exits, also
    /// when a password is set); kills it when it has not exited 5 s later.
    pub fn stop(&mut self) {
        if let Some(mut server) = self.server.take() {
            let pid = server.id().to_string();
            for signal in ["-CONT", "-TERM"] {
                let _ = Command::new("kill")
                    .args([signal, &pid])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
            }
            let deadline = Instant::now() + Duration::from_secs(5);
            while matches!(server.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            if matches!(server.try_wait(), Ok(None)) {
                let _ = server.kill();
            }
            let _ = server.wait();
        }
        if let Some(mut w) = self.watchdog.take() {
            // It notices the server is gone within 0.2 s.
            let _ = w.wait();
        }
    }

    /// Kills the server with `SIGKILL` (no shutdown, no final flush of the append-only file) and
    /// reaps it; [`RedisServer::launch`] restarts it on the same port and directory.
    pub fn kill9(&mut self) {
        if let Some(mut server) = self.server.take() {
            let _ = server.kill();
            let _ = server.wait();
        }
        if let Some(mut w) = self.watchdog.take() {
            let _ = w.wait();
        }
    }

    /// Sends `signal` (e.g. `"-STOP"`, `"-CONT"`) to the running server.
    pub fn signal(&self, signal: &str) {
        if let Some(pid) = self.pid() {
            let _ = Command::new("kill")
                .args([signal, &pid.to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }

    /// Runs `redis-cli` against the server with `args`; its standard output.
    pub fn cli(&self, args: &[&str]) -> String {
        Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(args)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    }

    /// The `redis-server` process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.server.as_ref().map(Child::id)
    }

    /// The plain-text port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's working directory (removed on drop).
    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    /// `redis://127.0.0.1:{port}/`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A Redis Cluster of three masters (no replicas) on free loopback ports, each a
/// [`RedisServer`] with `--cluster-enabled yes`, joined with `redis-cli --cluster create`.
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts the three nodes and creates the cluster; panics when it is not `ok` within 20 s.
    pub fn start(tag: &str) -> RedisCluster {
        let nodes: Vec<RedisServer> = (0..3)
            .map(|i| {
                let extra: Vec<String> = [
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    "2000",
                ]
                .iter()
                .map(|s| s.to_string())
                .collect();
                RedisServer::start_with(&format!("{tag}-node{i}"), &extra)
            })
            .collect();
        let addrs: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port()))
            .collect();
        let created = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !created {
            panic!("redis-cli --cluster create failed for {addrs:?}");
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if nodes
                .iter()
                .all(|n| n.cli(&["CLUSTER", "INFO"]).contains("cluster_state:ok"))
            {
                return RedisCluster { nodes };
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("the Redis Cluster on {addrs:?} did not reach cluster_state:ok");
    }

    /// `redis+cluster://127.0.0.1:p1,127.0.0.1:p2,127.0.0.1:p3`.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port()))
            .collect();
        format!("redis+cluster://{}", hosts.join(","))
    }

    /// The nodes.
    pub fn nodes(&self) -> &[RedisServer] {
        &self.nodes
    }
}

/// Whether the server on `port` answers commands: it accepts connections while it is still
/// loading its append-only file, and answers `-LOADING` until it is done. A password-protected
/// server answers `-NOAUTH`, which also means it is serving.
fn answers_ping(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut c) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = c.set_read_timeout(Some(Duration::from_millis(500)));
    if c.write_all(b"*1\r\n$4\r\nPING\r\n").is_err() {
        return false;
    }
    let mut reply = [0u8; 16];
    match c.read(&mut reply) {
        Ok(n) => reply[..n].starts_with(b"+PONG") || reply[..n].starts_with(b"-NOAUTH"),
        Err(_) => false,
    }
}
