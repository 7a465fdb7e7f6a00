//! SDK lifecycle: background delivery, retries, bounds, flush/close/drop, SDK-key mode readiness,
//! refresh, and failure handling. The transport is scripted in-process (the HTTP adapter has its
//! own tests against a real local server).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use convert_sdk::{
    ConversionAttributes, Core, Error, EventKind, HttpRequest, HttpResponse, Method, RetryPolicy,
    SdkEvent, Transport, TransportError,
};
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

type Reply = Result<HttpResponse, TransportError>;

/// A transport that answers from a script per method and records every request.
#[derive(Default)]
struct Scripted {
    get: Mutex<VecDeque<Reply>>,
    post: Mutex<VecDeque<Reply>>,
    get_default: Mutex<Option<Reply>>,
    post_default: Mutex<Option<Reply>>,
    log: Mutex<Vec<HttpRequest>>,
}

fn ok(body: &str) -> Reply {
    Ok(HttpResponse::new(200, body.as_bytes().to_vec()))
}

fn status(code: u16) -> Reply {
    Ok(HttpResponse::new(code, Vec::new()))
}

impl Scripted {
    fn new() -> Arc<Self> {
        let s = Scripted::default();
        *s.post_default.lock().unwrap() = Some(ok(""));
        Arc::new(s)
    }
    fn then_post(&self, r: Reply) {
        self.post.lock().unwrap().push_back(r);
    }
    fn set_post_default(&self, r: Reply) {
        *self.post_default.lock().unwrap() = Some(r);
    }
    fn then_get(&self, r: Reply) {
        self.get.lock().unwrap().push_back(r);
    }
    fn set_get_default(&self, r: Reply) {
        *self.get_default.lock().unwrap() = Some(r);
    }
    fn posts(&self) -> Vec<HttpRequest> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.method == Method::Post)
            .cloned()
            .collect()
    }
    fn gets(&self) -> usize {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.method == Method::Get)
            .count()
    }
}

impl Transport for Scripted {
    fn send(&self, request: &HttpRequest) -> Result<HttpResponse, TransportError> {
        self.log.lock().unwrap().push(request.clone());
        let (queue, default) = match request.method {
            Method::Get => (&self.get, &self.get_default),
            Method::Post => (&self.post, &self.post_default),
            other => panic!("unexpected method {other:?}"),
        };
        if let Some(r) = queue.lock().unwrap().pop_front() {
            return r;
        }
        default
            .lock()
            .unwrap()
            .clone()
            .unwrap_or(Err(TransportError::Connect("no script".into())))
    }
}

fn config(goal_count: usize) -> Value {
    let goals: Vec<Value> = (0..goal_count)
        .map(|i| json!({"id": format!("{}", 500 + i), "key": format!("goal-{i}"), "rules": null}))
        .collect();
    json!({"account_id": "10", "project": {"id": "20"}, "goals": goals})
}

fn fast_retry() -> RetryPolicy {
    RetryPolicy::default()
        .initial(Duration::from_millis(5))
        .max(Duration::from_millis(40))
}

/// Waits (bounded) for a condition that background threads make true.
fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if cond() {
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    panic!("timed out waiting for: {what}");
}

fn events_in(posts: &[HttpRequest]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for p in posts {
        let body: Value = serde_json::from_str(p.body.as_deref().unwrap()).unwrap();
        for v in body["visitors"].as_array().unwrap() {
            for e in v["events"].as_array().unwrap() {
                out.push((
                    v["visitorId"].as_str().unwrap().to_string(),
                    e["data"]["goalId"].as_str().unwrap_or_default().to_string(),
                ));
            }
        }
    }
    out
}

/// An SDK on the scripted transport `t`, with a config of `goals` goals, releasing a batch at
/// `batch` events or every `release`, with a queue of 100.
fn on_scripted(t: &Arc<Scripted>, goals: usize, batch: usize, release: Duration) -> Core {
    Core::builder()
        .config(config(goals))
        .shared_transport(t.clone())
        .events(batch, release, 100)
        .build()
        .unwrap()
}

fn convert(core: &Core, visitor: &str, goal: usize) {
    let ctx = core.create_context(visitor, None);
    ctx.track_conversion(&format!("goal-{goal}"), &ConversionAttributes::new())
        .unwrap();
}

#[test]
fn size_trigger_delivers_in_background_without_flush() {
    let t = Scripted::new();
    let core = on_scripted(&t, 5, 3, Duration::from_secs(3600));
    for g in 0..3 {
        convert(&core, "v1", g);
    }
    eventually("a size-triggered POST", || t.posts().len() == 1);
    assert_eq!(events_in(&t.posts()).len(), 3);
    assert_eq!(core.queued_events(), 0);
}

#[test]
fn release_interval_delivers_a_partial_batch() {
    let t = Scripted::new();
    let core = on_scripted(&t, 1, 100, Duration::from_millis(20));
    convert(&core, "v1", 0);
    eventually("a timer-triggered POST", || t.posts().len() == 1);
}

#[test]
fn an_idle_delivery_thread_starts_its_timer_for_the_first_event() {
    // Regression: the delivery thread, idle on an empty queue, used to sleep until the next
    // batch-size kick, so a lone event below the batch size waited indefinitely.
    let t = Scripted::new();
    let core = on_scripted(&t, 2, 100, Duration::from_millis(20));
    std::thread::sleep(Duration::from_millis(100)); // let the thread settle on the empty queue
    convert(&core, "v1", 0);
    eventually("the first partial batch", || t.posts().len() == 1);
    // The queue is empty again and the thread idle: the next lone event re-arms the timer.
    std::thread::sleep(Duration::from_millis(100));
    convert(&core, "v2", 1);
    eventually("the second partial batch", || t.posts().len() == 2);
    assert_eq!(
        events_in(&t.posts()),
        vec![("v1".into(), "500".into()), ("v2".into(), "501".into())]
    );
}

#[test]
fn failed_posts_keep_events_in_order_until_the_server_recovers() {
    let t = Scripted::new();
    t.then_post(status(500));
    t.then_post(Err(TransportError::Timeout));
    t.then_post(Err(TransportError::Connect("connection reset".into())));
    let released = Arc::new(Mutex::new(Vec::new()));
    let core = Core::builder()
        .config(config(6))
        .shared_transport(t.clone())
        .events(2, Duration::from_millis(10), 100)
        .retry(fast_retry())
        .build()
        .unwrap();
    let r = Arc::clone(&released);
    core.on(EventKind::QueueReleased, move |e| {
        if let SdkEvent::QueueReleased { error, .. } = e {
            r.lock().unwrap().push(error.is_none());
        }
    });
    for g in 0..6 {
        convert(&core, &format!("v{}", g % 2), g);
    }
    eventually("all six events delivered", || {
        core.queued_events() == 0 && core.metrics().delivered_events == 6
    });
    let posts = t.posts();
    // Three failures then successes; every event was delivered exactly once.
    let ok_posts: Vec<HttpRequest> = posts[3..].to_vec();
    let mut delivered = events_in(&ok_posts);
    delivered.sort();
    let mut expected: Vec<(String, String)> = (0..6)
        .map(|g| (format!("v{}", g % 2), format!("{}", 500 + g)))
        .collect();
    expected.sort();
    assert_eq!(delivered, expected);
    assert_eq!(core.metrics().failed_batches, 3);
    let outcomes = released.lock().unwrap().clone();
    assert_eq!(
        outcomes.iter().filter(|ok| !**ok).count(),
        3,
        "{outcomes:?}"
    );
}

#[test]
fn the_queue_is_bounded_and_drops_the_oldest() {
    let t = Scripted::new();
    t.set_post_default(status(503));
    let core = Core::builder()
        .config(config(20))
        .shared_transport(t.clone())
        .events(1000, Duration::from_secs(3600), 5)
        .tracking(false)
        .build()
        .unwrap();
    for g in 0..20 {
        convert(&core, "v", g);
    }
    assert_eq!(core.queued_events(), 5);
    assert_eq!(core.metrics().dropped_events, 15);
    // The newest five are the ones kept.
    t.set_post_default(ok(""));
    assert_eq!(core.flush().unwrap(), 5);
    let kept: Vec<String> = events_in(&t.posts()).into_iter().map(|(_, g)| g).collect();
    let last = t.posts().len() - 1;
    let kept_last: Vec<String> = events_in(&t.posts()[last..])
        .into_iter()
        .map(|(_, g)| g)
        .collect();
    assert_eq!(kept_last, ["515", "516", "517", "518", "519"], "{kept:?}");
}

#[test]
fn tracking_off_means_only_flush_sends() {
    let t = Scripted::new();
    let core = Core::builder()
        .config(config(3))
        .shared_transport(t.clone())
        .events(1, Duration::from_millis(1), 100)
        .tracking(false)
        .build()
        .unwrap();
    convert(&core, "v", 0);
    convert(&core, "v", 1);
    std::thread::sleep(Duration::from_millis(50));
    assert!(t.posts().is_empty());
    assert_eq!(core.flush().unwrap(), 2);
    assert_eq!(t.posts().len(), 1);
}

#[test]
fn flush_reports_failure_and_keeps_events() {
    let t = Scripted::new();
    t.set_post_default(status(500));
    let core = Core::builder()
        .config(config(1))
        .shared_transport(t.clone())
        .tracking(false)
        .build()
        .unwrap();
    convert(&core, "v", 0);
    assert!(matches!(core.flush(), Err(Error::Http { status: 500 })));
    assert_eq!(core.queued_events(), 1);
}

#[test]
fn dropping_the_last_handle_delivers_what_is_queued() {
    let t = Scripted::new();
    {
        let core = on_scripted(&t, 2, 100, Duration::from_secs(3600));
        let clone = core.clone();
        convert(&clone, "v", 0);
        convert(&core, "v", 1);
        drop(clone);
        assert!(
            t.posts().is_empty(),
            "a clone going away must not close the SDK"
        );
    }
    assert_eq!(events_in(&t.posts()).len(), 2);
}

#[test]
fn close_then_decisions_still_work() {
    let t = Scripted::new();
    let core = on_scripted(&t, 2, 100, Duration::from_secs(3600));
    convert(&core, "v", 0);
    core.close(Duration::from_secs(2));
    assert_eq!(events_in(&t.posts()).len(), 1);
    convert(&core, "v", 1);
    assert_eq!(core.queued_events(), 1);
    assert!(matches!(core.flush(), Err(Error::Closed)));
}

const CONFIG_A: &str =
    r#"{"account_id":"10","project":{"id":"20"},"goals":[{"id":"1","key":"a"}]}"#;
const CONFIG_B: &str =
    r#"{"account_id":"10","project":{"id":"20"},"goals":[{"id":"2","key":"b"}]}"#;

#[test]
fn sdk_key_mode_fetches_at_build_with_the_documented_request() {
    let t = Scripted::new();
    t.then_get(ok(CONFIG_A));
    let core = Core::builder()
        .sdk_key("acc/proj")
        .sdk_key_secret("s3cr3t")
        .environment("live")
        .config_endpoint("https://cdn.example/api/v1/")
        .shared_transport(t.clone())
        .build()
        .unwrap();
    assert!(core.is_ready());
    let get = t.log.lock().unwrap()[0].clone();
    assert_eq!(
        get.url,
        "https://cdn.example/api/v1/config/acc/proj?environment=live"
    );
    assert_eq!(get.header("User-Agent"), Some("ConvertAgent/1.0"));
    assert_eq!(get.header("Authorization"), Some("Bearer s3cr3t"));
    assert!(!format!("{core:?}").contains("s3cr3t"));
}

#[test]
fn not_ready_until_a_valid_config_then_ready_fires_once() {
    let t = Scripted::new();
    t.then_get(status(503));
    t.then_get(ok("{not json"));
    t.then_get(ok(r#"{"account_id": 5}"#));
    t.set_get_default(ok(CONFIG_A));
    let readies = Arc::new(AtomicUsize::new(0));
    let core = Core::builder()
        .sdk_key("k")
        .shared_transport(t.clone())
        .retry(
            RetryPolicy::default()
                .initial(Duration::from_millis(200))
                .max(Duration::from_millis(200)),
        )
        .build()
        .unwrap();
    assert!(!core.is_ready());
    match core.wait_until_ready(Duration::from_millis(1)) {
        Err(Error::NotReady { cause }) => {
            assert!(cause.contains("503"), "{cause}");
            // It names what was fetched, without the SDK key.
            assert!(cause.contains("/config/<sdk key>"), "{cause}");
        }
        other => panic!("expected NotReady, got {other:?}"),
    }
    let r = Arc::clone(&readies);
    core.on(EventKind::Ready, move |_| {
        r.fetch_add(1, Ordering::SeqCst);
    });
    core.wait_until_ready(Duration::from_secs(10)).unwrap();
    assert!(t.gets() >= 4);
    eventually("ready fired", || readies.load(Ordering::SeqCst) == 1);
    // A late subscriber is told once, itself.
    let late = Arc::new(AtomicUsize::new(0));
    let l = Arc::clone(&late);
    core.on(EventKind::Ready, move |_| {
        l.fetch_add(1, Ordering::SeqCst);
    });
    assert_eq!(late.load(Ordering::SeqCst), 1);
    assert_eq!(readies.load(Ordering::SeqCst), 1);
}

#[test]
fn refresh_swaps_the_snapshot_and_keeps_the_old_one_on_bad_configs() {
    let t = Scripted::new();
    t.then_get(ok(CONFIG_A));
    t.then_get(status(404));
    t.then_get(ok("[]"));
    t.then_get(ok(&format!(
        "{{\"account_id\":\"10\",\"pad\":\"{}\"",
        "x".repeat(100_000)
    )));
    t.then_get(ok(
        r#"{"account_id":"10","project":{"id":"20"},"goals":{}}"#,
    ));
    t.set_get_default(ok(CONFIG_B));
    let updates = Arc::new(AtomicUsize::new(0));
    let core = Core::builder()
        .sdk_key("k")
        .shared_transport(t.clone())
        .refresh_interval(Duration::from_millis(10))
        .retry(fast_retry())
        .build()
        .unwrap();
    let u = Arc::clone(&updates);
    core.on(EventKind::ConfigUpdated, move |_| {
        u.fetch_add(1, Ordering::SeqCst);
    });
    assert!(core.config().goal_by_key("a").is_some());
    eventually("config B installed", || {
        core.config().goal_by_key("b").is_some()
    });
    assert!(core.metrics().config_fetch_errors >= 4);
    eventually("one update event", || updates.load(Ordering::SeqCst) >= 1);
    // Unchanged configs do not fire again.
    let before = updates.load(Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(60));
    assert_eq!(updates.load(Ordering::SeqCst), before);
}

/// A fetched config of another account or project than the SDK key names (`account/project`)
/// is refused and the config in use kept, at the first fetch and at a refresh. It was
/// installed: decisions from another project's experiences, tracking sent to that project.
/// A key of another form names no project, and nothing is refused.
#[test]
fn a_config_of_another_project_is_refused() {
    const OTHER: &str = r#"{"account_id":"1","project":{"id":"2"},"goals":[{"id":"9","key":"x"}]}"#;
    // The first fetch brings 1/2.
    let t = Scripted::new();
    t.then_get(ok(OTHER));
    t.set_get_default(ok(CONFIG_A));
    let core = Core::builder()
        .sdk_key("10/20")
        .shared_transport(t.clone())
        .retry(fast_retry())
        .build()
        .unwrap();
    assert!(!core.is_ready());
    let why = core
        .wait_until_ready(Duration::ZERO)
        .unwrap_err()
        .to_string();
    assert!(why.contains("for project 1/2, not 10/20"), "{why}");
    eventually("the key's own config", || core.is_ready());
    assert!(core.config().goal_by_key("a").is_some());

    // Refreshes bring 1/2.
    let t = Scripted::new();
    t.then_get(ok(CONFIG_A));
    t.set_get_default(ok(OTHER));
    let core = Core::builder()
        .sdk_key("10/20")
        .shared_transport(t.clone())
        .refresh_interval(Duration::from_millis(10))
        .retry(fast_retry())
        .build()
        .unwrap();
    eventually("refused refreshes", || {
        core.metrics().config_fetch_errors >= 3
    });
    assert!(core.config().goal_by_key("a").is_some());
    assert!(core.config().goal_by_key("x").is_none());

    // An opaque key: the config is whatever the CDN serves for it.
    let t = Scripted::new();
    t.set_get_default(ok(OTHER));
    let core = Core::builder()
        .sdk_key("k")
        .shared_transport(t.clone())
        .build()
        .unwrap();
    assert!(core.config().goal_by_key("x").is_some());
}

#[test]
fn authorization_is_per_instance() {
    let t1 = Scripted::new();
    let t2 = Scripted::new();
    let a = Core::builder()
        .config(config(1))
        .sdk_key_secret("first")
        .shared_transport(t1.clone())
        .tracking(false)
        .build()
        .unwrap();
    let b = Core::builder()
        .config(config(1))
        .shared_transport(t2.clone())
        .tracking(false)
        .build()
        .unwrap();
    convert(&a, "v", 0);
    convert(&b, "v", 0);
    a.flush().unwrap();
    b.flush().unwrap();
    assert_eq!(t1.posts()[0].header("Authorization"), Some("Bearer first"));
    assert_eq!(t2.posts()[0].header("Authorization"), None);
}

#[test]
fn a_panicking_handler_is_contained() {
    let t = Scripted::new();
    let core = Core::builder()
        .config(config(1))
        .shared_transport(t.clone())
        .tracking(false)
        .build()
        .unwrap();
    let seen = Arc::new(AtomicUsize::new(0));
    core.on(EventKind::Conversion, |_| panic!("handler bug"));
    let s = Arc::clone(&seen);
    core.on(EventKind::Conversion, move |_| {
        s.fetch_add(1, Ordering::SeqCst);
    });
    convert(&core, "v", 0);
    assert_eq!(seen.load(Ordering::SeqCst), 1);
    assert_eq!(core.queued_events(), 1);
}

#[test]
fn build_errors_are_typed() {
    assert!(matches!(Core::builder().build(), Err(Error::NoConfig)));
    // Without the default `ureq` transport, an SDK key alone cannot fetch anything.
    #[cfg(not(feature = "ureq"))]
    assert!(matches!(
        Core::builder().sdk_key("k").build(),
        Err(Error::NoTransport)
    ));
    assert!(matches!(
        Core::builder().config_json("{").build(),
        Err(Error::Config(_))
    ));
    assert!(matches!(
        Core::builder().config(json!({"account_id": "1"})).build(),
        Err(Error::Config(_))
    ));
}

/// A config endpoint whose first GET answers and whose later GETs hang until the test opens a
/// gate (or a safety timeout passes, which it records).
struct HangingRefresh {
    gets: AtomicUsize,
    gate: crossbeam_channel::Receiver<()>,
    in_request: std::sync::atomic::AtomicBool,
    answered_on_timeout: AtomicUsize,
}

impl Transport for HangingRefresh {
    fn send(&self, request: &HttpRequest) -> Result<HttpResponse, TransportError> {
        if request.method != Method::Get {
            return Ok(HttpResponse::new(200, Vec::new()));
        }
        if self.gets.fetch_add(1, Ordering::SeqCst) == 0 {
            return ok(CONFIG_A);
        }
        self.in_request.store(true, Ordering::SeqCst);
        if self.gate.recv_timeout(Duration::from_secs(2)).is_err() {
            self.answered_on_timeout.fetch_add(1, Ordering::SeqCst);
        }
        self.in_request.store(false, Ordering::SeqCst);
        ok(CONFIG_B)
    }
}

/// `close` with nothing to deliver returns while a config refresh hangs, rather than waiting
/// for the refresher (whose result nobody needs any more) up to its timeout. Before: it waited
/// until the refresh ended (here the endpoint's 2 s safety timeout; with the default transport,
/// the close timeout: dropping the last handle took 5 s with nothing queued).
#[test]
fn close_does_not_wait_for_a_hanging_config_refresh() {
    let (open, gate) = crossbeam_channel::unbounded();
    let t = Arc::new(HangingRefresh {
        gets: AtomicUsize::new(0),
        gate,
        in_request: std::sync::atomic::AtomicBool::new(false),
        answered_on_timeout: AtomicUsize::new(0),
    });
    let core = Core::builder()
        .sdk_key("k")
        .shared_transport(t.clone())
        .refresh_interval(Duration::from_millis(10))
        .build()
        .unwrap();
    assert!(core.is_ready());
    eventually("a refresh in its request", || {
        t.in_request.load(Ordering::SeqCst)
    });
    core.close(Duration::from_secs(30));
    assert!(
        t.in_request.load(Ordering::SeqCst),
        "close waited for the refresh to end"
    );
    open.send(()).unwrap();
    eventually("the refresh answered", || {
        !t.in_request.load(Ordering::SeqCst)
    });
    assert_eq!(t.answered_on_timeout.load(Ordering::SeqCst), 0);
    assert_eq!(t.gets.load(Ordering::SeqCst), 2, "no refresh after close");
    // What the refresh brought after close is not installed.
    std::thread::sleep(Duration::from_millis(30));
    assert!(core.config().goal_by_key("b").is_none());
    assert!(core.config().goal_by_key("a").is_some());
}

/// The application drops its last handle while a `QueueReleased` handler holds an upgraded
/// `WeakCore`: the handler's handle is the last one, dropped on the delivery thread, which then
/// delivers what is queued. Before: that drop counted the queue as abandoned and emptied it
/// (1 of 2 conversions sent; found by the review).
#[test]
fn the_last_handle_dropped_by_a_handler_on_the_delivery_thread_still_delivers() {
    let t = Scripted::new();
    let core = on_scripted(&t, 1, 1, Duration::from_secs(3600));
    let (holding, held) = crossbeam_channel::bounded::<()>(1);
    let (release, released) = crossbeam_channel::bounded::<()>(1);
    let weak = core.downgrade();
    let first = std::sync::atomic::AtomicBool::new(true);
    core.on(EventKind::QueueReleased, move |_| {
        if !first.swap(false, Ordering::SeqCst) {
            return;
        }
        let sdk = weak.upgrade();
        holding.send(()).unwrap();
        released.recv_timeout(Duration::from_secs(10)).unwrap();
        drop(sdk); // the last handle, on the delivery thread
    });
    convert(&core, "v1", 0);
    held.recv_timeout(Duration::from_secs(10)).unwrap();
    convert(&core, "v2", 0);
    drop(core);
    release.send(()).unwrap();
    eventually("both conversions sent", || events_in(&t.posts()).len() == 2);
}

/// A handler that needs the SDK holds a `WeakCore`: the SDK is freed when the application's
/// last handle goes (a handler holding a `Core` kept the instance and its threads forever: 200
/// such instances left 381 threads behind in the resource trial).
#[test]
fn a_handler_holding_a_weak_handle_lets_the_sdk_go() {
    let t = Scripted::new();
    let core = on_scripted(&t, 1, 1, Duration::from_secs(3600));
    let weak = core.downgrade();
    let delivered = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&delivered);
    core.on(EventKind::QueueReleased, move |_| {
        if let Some(sdk) = weak.upgrade() {
            seen.store(
                usize::try_from(sdk.metrics().delivered_events).unwrap(),
                Ordering::SeqCst,
            );
        }
    });
    convert(&core, "v1", 0);
    eventually("the handler saw the delivery", || {
        delivered.load(Ordering::SeqCst) == 1
    });
    let after = core.downgrade();
    drop(core);
    // (A handler still running may hold an upgraded handle for a moment.)
    eventually("the SDK freed", || after.upgrade().is_none());
}
