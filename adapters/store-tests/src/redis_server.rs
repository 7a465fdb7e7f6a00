//! A `redis-server` on 127.0.0.1 for tests, on a free port in its own directory.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `redis-server` (append-only persistence on). It is started through `sh` with a
/// watchdog that stops it when the test process exits, so no server outlives the tests; dropping
/// it shuts it down and removes its directory.
pub struct RedisServer {
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

/// Whether `redis-server` is on PATH. When it is not and `CONVERT_REQUIRE_REDIS` is set (as
/// `cargo xtask test` and CI do), this panics with the fix; otherwise it prints a SKIPPED line.
pub fn redis_available() -> bool {
    let ok = Command::new("redis-server")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok && std::env::var_os("CONVERT_REQUIRE_REDIS").is_some() {
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
        let dir = std::env::temp_dir().join(format!("convert-redis-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        if let Err(e) = std::fs::create_dir_all(&dir) {
            panic!("cannot create {}: {e}", dir.display());
        }
        let mut s = RedisServer {
            port: free_port(),
            dir,
            child: None,
        };
        s.launch();
        s
    }

    /// (Re)starts the server process on the same port and directory.
    pub fn launch(&mut self) {
        let script = format!(
            "redis-server --port {port} --bind 127.0.0.1 --dir '{dir}' --appendonly yes --save '' \
             --daemonize no --protected-mode no & rp=$!; \
             while kill -0 {parent} 2>/dev/null && kill -0 $rp 2>/dev/null; do sleep 0.2; done; \
             kill $rp 2>/dev/null; wait $rp",
            port = self.port,
            dir = self.dir.display(),
            parent = std::process::id()
        );
        match Command::new("sh")
            .arg("-c")
            .arg(script)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
        {
            Ok(c) => self.child = Some(c),
            Err(e) => panic!("cannot start redis-server: {e}"),
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("redis-server did not start on port {}", self.port);
    }

    /// Stops the server gracefully (`SHUTDOWN` writes the append-only file).
    pub fn stop(&mut self) {
        let _ = Command::new("redis-cli")
            .args(["-p", &self.port.to_string(), "shutdown"])
            .output();
        if let Some(mut c) = self.child.take() {
            let _ = c.wait();
        }
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
