//! The Redis store against real `redis-server` processes that the tests start on free ports.
//!
//! Without `redis-server` on PATH these tests say so and pass, unless `CONVERT_REQUIRE_REDIS=1`
//! (set by `cargo xtask test` and CI), which makes a missing server a failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use convert_ports::{DataStore, StoreData, StoreError};
use convert_store_redis::{RedisOptions, RedisStore};
use convert_store_tests::redis_server::{RedisServer as Server, redis_available};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

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

/// A plain redis-rs connection, to look at what the store wrote.
fn raw(url: &str) -> redis::Connection {
    redis::Client::open(url).unwrap().get_connection().unwrap()
}

#[test]
fn contract_update_discards_changes_when_false() {
    let Some(s) = store() else { return };
    convert_store_tests::update_discards_changes_when_false(&s);
}

#[test]
fn four_clients_incrementing_one_counter_lose_nothing() {
    let Some(url) = shared() else { return };
    let stores: Vec<Arc<dyn DataStore>> = (0..4)
        .map(|_| Arc::new(RedisStore::open(url).unwrap()) as Arc<dyn DataStore>)
        .collect();
    convert_store_tests::counter_across_instances(stores);
}

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
    let data = StoreData::from_value(serde_json::json!({"goals": {"purchase": true}})).unwrap();
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

/// Writes a record through a store with `ttl`, and returns the key's `PTTL` in Redis.
fn ttl_after_a_write(url: &str, ttl: Duration, key: &str) -> i64 {
    let store = RedisStore::open_with(url, RedisOptions::default().ttl(ttl)).unwrap();
    store
        .update(key, &mut |d| {
            d.extra_mut().insert("x".into(), serde_json::json!(1));
            true
        })
        .unwrap();
    assert!(store.get(key).unwrap().is_some());
    let mut raw = redis::Client::open(url).unwrap().get_connection().unwrap();
    redis::cmd("PTTL")
        .arg(format!("convert:{key}"))
        .query(&mut raw)
        .unwrap()
}

#[test]
fn ttl_is_applied_on_every_write() {
    let Some(url) = shared() else { return };
    let ttl = ttl_after_a_write(url, Duration::from_secs(60), "ttl-1-2-v");
    assert!(ttl > 50_000 && ttl <= 60_000, "{ttl}");
}

/// A TTL too long for Redis (`Duration::MAX`, "keep for ever") is sent as a century: every write
/// failed with "value is not an integer or out of range" before.
#[test]
fn the_longest_ttl_is_kept_as_a_century() {
    let Some(url) = shared() else { return };
    let ttl = ttl_after_a_write(url, Duration::MAX, "ttl-max-1-2-v");
    assert!(ttl > 99 * 365 * 24 * 3600 * 1000, "{ttl}");
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
            d.mark_goal("purchase");
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
    assert!(matches!(
        store.update("1-2-visitor", &mut |_| true),
        Err(StoreError::Unavailable(_))
    ));
    assert!(store.ping().is_err());
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
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
    // Port 1 on loopback is never a Redis (an ephemeral port could be taken by a parallel test).
    let store = RedisStore::open_with(
        "redis://127.0.0.1:1/",
        RedisOptions::default().connect_timeout(Duration::from_millis(200)),
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

#[test]
fn wrong_types_and_bytes_under_a_key_are_corrupt() {
    let Some(url) = shared() else { return };
    let mut raw = raw(url);
    redis::cmd("HSET")
        .arg("convert:hash-1-2-v")
        .arg("goals")
        .arg("x")
        .query::<()>(&mut raw)
        .unwrap();
    redis::cmd("SET")
        .arg("convert:bytes-1-2-v")
        .arg(&[0xff_u8, 0xfe, b'{'][..])
        .query::<()>(&mut raw)
        .unwrap();
    redis::cmd("SET")
        .arg("convert:array-1-2-v")
        .arg("[1,2]")
        .query::<()>(&mut raw)
        .unwrap();
    let store = RedisStore::open(url).unwrap();
    for key in ["hash-1-2-v", "bytes-1-2-v", "array-1-2-v"] {
        match store.get(key) {
            Err(StoreError::Corrupt { key: k, .. }) => assert_eq!(k, key),
            other => panic!("{key}: {other:?}"),
        }
        assert!(
            matches!(
                store.update(key, &mut |_| true),
                Err(StoreError::Corrupt { .. })
            ),
            "{key}"
        );
    }
    // The store keeps working on the same connections afterwards.
    store.set("fine-1-2-v", &StoreData::default()).unwrap();
    assert_eq!(store.get("fine-1-2-v").unwrap(), Some(StoreData::default()));
}

#[test]
fn password_and_database_come_from_the_url() {
    if !redis_available() {
        return;
    }
    let server = Server::start_with("auth", &["--requirepass".into(), "s3cret".into()]);
    let port = server.port();
    let store = RedisStore::open(&format!("redis://:s3cret@127.0.0.1:{port}/3")).unwrap();
    let data = StoreData::from_value(serde_json::json!({"goals": {"g": true}})).unwrap();
    store.set("1-2-v", &data).unwrap();
    assert_eq!(store.get("1-2-v").unwrap(), Some(data));
    let mut db3 = raw(&format!("redis://:s3cret@127.0.0.1:{port}/3"));
    let value: Option<String> = redis::cmd("GET")
        .arg("convert:1-2-v")
        .query(&mut db3)
        .unwrap();
    assert_eq!(value.as_deref(), Some(r#"{"goals":{"g":true}}"#));
    let mut db0 = raw(&format!("redis://:s3cret@127.0.0.1:{port}/0"));
    let value: Option<String> = redis::cmd("GET")
        .arg("convert:1-2-v")
        .query(&mut db0)
        .unwrap();
    assert_eq!(value, None, "written to database 3 only");

    let wrong = RedisStore::open(&format!("redis://:nope@127.0.0.1:{port}/3")).unwrap();
    let err = wrong.get("1-2-v").unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    assert!(!err.to_string().contains("nope"), "{err}");
    assert!(!format!("{wrong:?}").contains("nope"));
}

#[test]
fn a_hung_server_times_out_instead_of_blocking() {
    if !redis_available() {
        return;
    }
    let server = Server::start("hung");
    let store = RedisStore::open_with(
        &server.url(),
        RedisOptions::default()
            .connect_timeout(Duration::from_millis(300))
            .io_timeout(Duration::from_millis(300)),
    )
    .unwrap();
    store.set("1-2-v", &StoreData::default()).unwrap();
    let pid = server.pid().unwrap().to_string();
    /// Resumes the server even when an assertion fails, so it can be shut down.
    struct Resume(String);
    impl Drop for Resume {
        fn drop(&mut self) {
            let _ = std::process::Command::new("kill")
                .args(["-CONT", &self.0])
                .status();
        }
    }
    assert!(
        std::process::Command::new("kill")
            .args(["-STOP", &pid])
            .status()
            .unwrap()
            .success()
    );
    let resume = Resume(pid);
    // The pooled connection times out (not retried: a timeout is no stale connection); a new
    // connection's setup times out too.
    for _ in 0..2 {
        let t = Instant::now();
        assert!(matches!(
            store.get("1-2-v"),
            Err(StoreError::Unavailable(_))
        ));
        assert!(
            t.elapsed() < Duration::from_millis(1500),
            "{:?}",
            t.elapsed()
        );
    }
    let t = Instant::now();
    assert!(matches!(
        store.update("1-2-v", &mut |_| true),
        Err(StoreError::Unavailable(_))
    ));
    assert!(
        t.elapsed() < Duration::from_millis(1500),
        "{:?}",
        t.elapsed()
    );
    drop(resume);
    // Once the server runs again, so does the store.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match store.get("1-2-v") {
            Ok(v) => {
                assert_eq!(v, Some(StoreData::default()));
                break;
            }
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => panic!("{e}"),
        }
    }
}

#[test]
fn many_threads_share_a_small_pool() {
    let Some(url) = shared() else { return };
    let store = Arc::new(
        RedisStore::open_with(url, RedisOptions::default().max_idle_connections(2)).unwrap(),
    );
    let threads: Vec<_> = (0..16)
        .map(|i| {
            let store = Arc::clone(&store);
            std::thread::spawn(move || {
                for j in 0..20 {
                    let key = format!("pool-1-2-v{i}-{j}");
                    store.set(&key, &StoreData::default()).unwrap();
                    assert!(store.get(&key).unwrap().is_some());
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert!(store.ping().is_ok());
}

/// A burst of threads opens at most `max_connections` connections (the server's own count of
/// clients is checked), waiting for a free one instead of opening more.
#[test]
fn a_burst_of_threads_stays_within_max_connections() {
    if !redis_available() {
        return;
    }
    let server = Server::start("pool-bound");
    let store = Arc::new(
        RedisStore::open_with(
            &server.url(),
            RedisOptions::default()
                .max_connections(3)
                .pool_wait(Duration::from_secs(5)),
        )
        .unwrap(),
    );
    let clients = |s: &Server| -> usize {
        s.cli(&["INFO", "clients"])
            .lines()
            .find_map(|l| l.strip_prefix("connected_clients:"))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0)
    };
    let threads: Vec<_> = (0..24)
        .map(|i| {
            let store = Arc::clone(&store);
            std::thread::spawn(move || {
                for j in 0..30 {
                    let key = format!("burst-1-2-v{i}-{j}");
                    store.update(&key, &mut |d| d.mark_goal("g")).unwrap();
                }
            })
        })
        .collect();
    let mut most_seen = 0;
    let mut most_open = 0;
    while threads.iter().any(|t| !t.is_finished()) {
        // The sampling connection of redis-cli is one of the clients.
        most_seen = most_seen.max(clients(&server).saturating_sub(1));
        most_open = most_open.max(store.open_connections());
        std::thread::sleep(Duration::from_millis(5));
    }
    for t in threads {
        t.join().unwrap();
    }
    assert!(most_open <= 3, "{most_open} connections open in the pool");
    assert!(most_seen <= 3, "the server saw {most_seen} clients");
    assert!(most_open >= 1);
}

#[test]
fn rediss_needs_the_tls_feature() {
    let r = RedisStore::open("rediss://127.0.0.1:6380/");
    if cfg!(feature = "tls") {
        assert!(r.is_ok());
    } else {
        let err = r.unwrap_err().to_string();
        assert!(err.contains("`tls` feature"), "{err}");
    }
}

/// `rediss://` against a TLS `redis-server` with a throw-away CA (`cargo test --features tls`).
#[cfg(feature = "tls")]
#[test]
fn tls_with_a_private_ca() {
    use std::process::Command;
    if !redis_available() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("convert-redis-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let script = "set -e
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
          -keyout ca.key -out ca.crt -days 1 -subj /CN=convert-test-ca
        openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
          -keyout server.key -out server.csr -subj /CN=127.0.0.1
        printf 'subjectAltName=IP:127.0.0.1\\nbasicConstraints=CA:FALSE\\n' > ext.cnf
        openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial \
          -out server.crt -days 1 -extfile ext.cnf";
    let made = Command::new("sh")
        .args(["-c", script])
        .current_dir(&dir)
        .output();
    if !made.as_ref().is_ok_and(|o| o.status.success()) {
        eprintln!("SKIPPED: openssl could not make test certificates: {made:?}");
        return;
    }
    let tls_port = convert_store_tests::redis_server::free_port();
    let file = |name: &str| dir.join(name).display().to_string();
    let server = Server::start_with(
        "tls",
        &[
            "--tls-port".into(),
            tls_port.to_string(),
            "--tls-cert-file".into(),
            file("server.crt"),
            "--tls-key-file".into(),
            file("server.key"),
            "--tls-ca-cert-file".into(),
            file("ca.crt"),
            "--tls-auth-clients".into(),
            "no".into(),
        ],
    );
    let url = format!("rediss://127.0.0.1:{tls_port}/");
    let store = RedisStore::open_with(
        &url,
        RedisOptions::default().tls_ca_pem(std::fs::read(dir.join("ca.crt")).unwrap()),
    )
    .unwrap();
    let data = StoreData::from_value(serde_json::json!({"goals": {"tls": true}})).unwrap();
    store.set("1-2-v", &data).unwrap();
    assert!(store.update("1-2-v", &mut |_| false).is_ok());
    assert_eq!(store.get("1-2-v").unwrap(), Some(data));
    // The same key seen over the plain port.
    let value: Option<String> = redis::cmd("GET")
        .arg("convert:1-2-v")
        .query(&mut raw(&server.url()))
        .unwrap();
    assert_eq!(value.as_deref(), Some(r#"{"goals":{"tls":true}}"#));
    // Without the CA the certificate is not trusted: an error, not a panic.
    let untrusted = RedisStore::open(&url).unwrap();
    let err = untrusted.get("1-2-v").unwrap_err();
    eprintln!("untrusted: {err}");
    assert!(
        matches!(err, StoreError::Unavailable(_) | StoreError::Other(_)),
        "{err:?}"
    );
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A new connection makes no round trip before its first command. redis-rs sends
/// `CLIENT SETINFO` by default, pipelined with two replies, and waits for each with all the
/// time the call has left: against a hung (SIGSTOPped) server, every call on a new connection
/// took twice its store deadline. The server's command statistics show what was sent.
#[test]
fn new_connections_send_nothing_before_the_first_command() {
    if !redis_available() {
        return;
    }
    let server = Server::start("setinfo");
    server.cli(&["CONFIG", "RESETSTAT"]);
    let store = RedisStore::open(&server.url()).unwrap();
    assert_eq!(store.get("k").unwrap(), None);
    let stats = server.cli(&["INFO", "commandstats"]);
    let errors = server.cli(&["INFO", "errorstats"]);
    // The store's read is there (so the statistics do count its connection) ...
    assert!(stats.contains("cmdstat_get:"), "{stats}");
    // ... and no `CLIENT` command: a server that knows `SETINFO` (7.2 and later) lists it, an
    // older one rejects both of its parts as errors.
    assert!(!stats.contains("cmdstat_client"), "{stats}");
    assert!(!errors.contains("errorstat_"), "{errors}");
}

/// A server that accepts connections and never answers: what a hung Redis looks like from the
/// client. It records the bytes each connection sent.
fn silent_server() -> (String, Arc<std::sync::Mutex<Vec<u8>>>) {
    use std::io::Read;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = Arc::clone(&seen);
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let sink = Arc::clone(&sink);
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n @ 1..) = conn.read(&mut buf) {
                    sink.lock().unwrap().extend_from_slice(&buf[..n]);
                }
            });
        }
    });
    (format!("127.0.0.1:{}", addr.port()), seen)
}

#[test]
fn a_password_and_a_database_put_one_reply_in_flight_at_a_time() {
    // redis-rs sends `AUTH` and `SELECT` as one pipeline and, when the first reply times out,
    // waits for the second one as long again: against a hung server, a call on a new
    // connection took twice the store's connect limit. The store selects the database itself,
    // after the handshake's reply, so a hung server sees `AUTH` and nothing after it.
    let (addr, seen) = silent_server();
    let options = RedisOptions::default()
        .connect_timeout(Duration::from_millis(300))
        .io_timeout(Duration::from_millis(300));
    let store = RedisStore::open_with(&format!("redis://:secret@{addr}/3"), options).unwrap();
    assert!(matches!(store.get("k"), Err(StoreError::Unavailable(_))));
    let sent = String::from_utf8_lossy(&seen.lock().unwrap()).to_uppercase();
    assert!(sent.contains("AUTH"), "{sent:?}");
    assert!(!sent.contains("SELECT"), "{sent:?}");
}

#[test]
fn a_database_in_the_url_is_selected_with_a_password() {
    if !redis_available() {
        return;
    }
    let server = Server::start("select-db");
    server.cli(&["CONFIG", "SET", "requirepass", "secret"]);
    let port = server
        .url()
        .rsplit(':')
        .next()
        .unwrap()
        .trim_end_matches('/')
        .to_string();
    let url = format!("redis://:secret@127.0.0.1:{port}/3");
    let store = RedisStore::open(&url).unwrap();
    let data = StoreData::from_value(serde_json::json!({"goals": {"g": true}})).unwrap();
    store.set("db-check", &data).unwrap();
    assert_eq!(store.get("db-check").unwrap(), Some(data));
    // The key is in database 3, not in database 0.
    let mut c = raw(&url);
    let in_3: bool = redis::cmd("EXISTS")
        .arg("convert:db-check")
        .query(&mut c)
        .unwrap();
    let mut c0 = raw(&format!("redis://:secret@127.0.0.1:{port}/0"));
    let in_0: bool = redis::cmd("EXISTS")
        .arg("convert:db-check")
        .query(&mut c0)
        .unwrap();
    assert!(in_3 && !in_0, "db 3: {in_3}, db 0: {in_0}");
}
