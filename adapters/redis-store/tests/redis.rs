//! The Redis store against real `redis-server` processes that the tests start on free ports.
//!
//! Without `redis-server` on PATH these tests say so and pass, unless `CONVERT_REQUIRE_REDIS=1`
//! (set by `cargo xtask test` and CI), which makes a missing server a failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use convert_ports::{DataStore, StoreData, StoreError};
use convert_store_redis::{RedisOptions, RedisStore};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// A redis-server on 127.0.0.1. It is started through `sh` with a watchdog that stops it when
/// the test process exits, so no server outlives the tests.
struct Server {
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

fn redis_available() -> bool {
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

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Server {
    fn start(tag: &str) -> Server {
        let dir = std::env::temp_dir().join(format!("convert-redis-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut s = Server {
            port: free_port(),
            dir,
            child: None,
        };
        s.launch();
        s
    }

    fn launch(&mut self) {
        let script = format!(
            "redis-server --port {port} --bind 127.0.0.1 --dir '{dir}' --appendonly yes --save '' \
             --daemonize no --protected-mode no & rp=$!; \
             while kill -0 {parent} 2>/dev/null && kill -0 $rp 2>/dev/null; do sleep 0.2; done; kill $rp 2>/dev/null; wait $rp",
            port = self.port,
            dir = self.dir.display(),
            parent = std::process::id()
        );
        let child = Command::new("sh")
            .arg("-c")
            .arg(script)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("redis-server did not start on port {}", self.port);
    }

    /// Stops the server gracefully (SHUTDOWN writes the append-only file).
    fn stop(&mut self) {
        let _ = Command::new("redis-cli")
            .args(["-p", &self.port.to_string(), "shutdown"])
            .output();
        if let Some(mut c) = self.child.take() {
            let _ = c.wait();
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One server shared by the contract cases (keys are prefixed per case).
fn shared() -> Option<&'static String> {
    static URL: OnceLock<Option<String>> = OnceLock::new();
    URL.get_or_init(|| {
        if !redis_available() {
            return None;
        }
        // Leaked on purpose: it lives as long as the test process, and its watchdog stops it.
        let s = Box::leak(Box::new(Server::start("shared")));
        Some(s.url())
    })
    .as_ref()
}

/// A store on the shared server; `None` (after the SKIPPED message) when Redis is unavailable.
fn store() -> Option<RedisStore> {
    shared().map(|url| RedisStore::open(url).unwrap())
}

convert_store_tests::contract_tests!(optional store);

#[test]
fn two_clients_racing_on_a_goal_have_one_winner() {
    let Some(url) = shared() else { return };
    let a: Arc<dyn DataStore> = Arc::new(RedisStore::open(url).unwrap());
    let b: Arc<dyn DataStore> = Arc::new(RedisStore::open(url).unwrap());
    convert_store_tests::one_winner_across_instances(a, b);
}

#[test]
fn keys_use_the_ruby_sdk_layout() {
    let Some(url) = shared() else { return };
    let store = RedisStore::open(url).unwrap();
    let data = StoreData {
        goals: serde_json::json!({"purchase": true}).as_object().cloned(),
        ..StoreData::default()
    };
    store.set("10022898-10025986-layout", &data).unwrap();
    let mut raw = redis::Client::open(url.as_str())
        .unwrap()
        .get_connection()
        .unwrap();
    let value: String = redis::cmd("GET")
        .arg("convert:10022898-10025986-layout")
        .query(&mut raw)
        .unwrap();
    assert_eq!(value, r#"{"goals":{"purchase":true}}"#);
}

#[test]
fn ttl_is_applied_on_every_write() {
    let Some(url) = shared() else { return };
    let store = RedisStore::open_with(
        url,
        RedisOptions {
            ttl: Some(Duration::from_secs(60)),
            ..RedisOptions::default()
        },
    )
    .unwrap();
    store
        .update("ttl-1-2-v", &mut |d| {
            d.extra.insert("x".into(), serde_json::json!(1));
            true
        })
        .unwrap();
    let mut raw = redis::Client::open(url.as_str())
        .unwrap()
        .get_connection()
        .unwrap();
    let ttl: i64 = redis::cmd("PTTL")
        .arg("convert:ttl-1-2-v")
        .query(&mut raw)
        .unwrap();
    assert!(ttl > 50_000 && ttl <= 60_000, "{ttl}");
}

#[test]
fn corrupt_values_are_reported() {
    let Some(url) = shared() else { return };
    let mut raw = redis::Client::open(url.as_str())
        .unwrap()
        .get_connection()
        .unwrap();
    redis::cmd("SET")
        .arg("convert:corrupt-1-2-v")
        .arg("{not json")
        .query::<()>(&mut raw)
        .unwrap();
    let store = RedisStore::open(url).unwrap();
    assert!(matches!(
        store.get("corrupt-1-2-v"),
        Err(StoreError::Corrupt { .. })
    ));
    assert!(matches!(
        store.update("corrupt-1-2-v", &mut |_| true),
        Err(StoreError::Corrupt { .. })
    ));
}

#[test]
fn data_and_the_client_survive_a_redis_restart() {
    if !redis_available() {
        return;
    }
    let mut server = Server::start("restart");
    let store = RedisStore::open(&server.url()).unwrap();
    let mut first = false;
    store
        .update("1-2-visitor", &mut |d| {
            first = !d.goal_triggered("purchase");
            d.goals
                .get_or_insert_with(Default::default)
                .insert("purchase".into(), true.into());
            true
        })
        .unwrap();
    assert!(first);
    server.stop();
    // Redis is down: errors, quickly and without panicking.
    let t = Instant::now();
    assert!(matches!(
        store.get("1-2-visitor"),
        Err(StoreError::Unavailable(_))
    ));
    assert!(t.elapsed() < Duration::from_secs(5));
    server.launch();
    // The same store reconnects; the append-only file kept the data.
    let d = store.get("1-2-visitor").unwrap().unwrap();
    assert!(
        d.goal_triggered("purchase"),
        "dedup state survived the restart"
    );
}

#[test]
fn an_unreachable_server_is_unavailable() {
    let port = free_port();
    let store = RedisStore::open_with(
        &format!("redis://127.0.0.1:{port}/"),
        RedisOptions {
            connect_timeout: Duration::from_millis(200),
            ..RedisOptions::default()
        },
    )
    .unwrap();
    assert!(matches!(store.get("k"), Err(StoreError::Unavailable(_))));
    assert!(matches!(
        store.update("k", &mut |_| true),
        Err(StoreError::Unavailable(_))
    ));
    assert!(RedisStore::open("not a url").is_err());
    assert!(
        !format!(
            "{:?}",
            RedisStore::open("redis://:hunter2@127.0.0.1:1/").unwrap()
        )
        .contains("hunter2")
    );
}
