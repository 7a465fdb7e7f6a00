//! `CoreBuilder::build_async` and `Core::ready` in SDK-key mode against a local stand-in for
//! Convert (`convert-testkit`): the first config fetch hangs, and a ticker task on the same
//! current-thread runtime is the one that releases it, which it can only do if the build does not
//! block the runtime's thread. The SDK then gets its config from the background retry and
//! `ready().await` returns.
#![cfg(feature = "tokio")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use convert_sdk::Core;
use convert_testkit::{FakeConvert, Mode};
use convert_transport_ureq::UreqTransport;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

const CONFIG: &str = r#"{"account_id":"10","project":{"id":"20"},
  "experiences":[{"id":"100","key":"exp","variations":[{"id":"101","key":"a","traffic_allocation":100}]}],
  "goals":[]}"#;

#[test]
fn build_async_and_ready_do_not_block_the_runtime() {
    let server = Arc::new(FakeConvert::start());
    server
        .then_get([Mode::Hang])
        .get_default(Mode::Accept(200, CONFIG.to_string()));
    // Fallback so a regression fails instead of hanging: releases the fetch after a long while.
    let watchdog = {
        let server = Arc::clone(&server);
        std::thread::spawn(move || {
            for _ in 0..3_000 {
                std::thread::sleep(Duration::from_millis(10));
                if server.hung() == 0 && Arc::strong_count(&server) == 1 {
                    return;
                }
            }
            server.release_hung();
        })
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let port = server.port();
    let released_by_ticker = Arc::new(AtomicBool::new(false));
    let ticks = Arc::new(AtomicUsize::new(0));
    rt.block_on(async {
        let ticker = {
            let (server, released, ticks) = (
                Arc::clone(&server),
                Arc::clone(&released_by_ticker),
                Arc::clone(&ticks),
            );
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                    ticks.fetch_add(1, Ordering::SeqCst);
                    if server.hung() > 0 {
                        released.store(true, Ordering::SeqCst);
                        server.release_hung();
                        return;
                    }
                }
            })
        };
        let core = Core::builder()
            .sdk_key("10/20")
            .transport(UreqTransport::new())
            .config_endpoint(format!("http://127.0.0.1:{port}/api/v1/"))
            .track_endpoint(format!("http://127.0.0.1:{port}/[project_id]/v1/"))
            .tracking(false)
            .build_async()
            .await
            .unwrap();
        assert!(
            released_by_ticker.load(Ordering::SeqCst),
            "the build finished without the ticker releasing its fetch ({} ticks)",
            ticks.load(Ordering::SeqCst)
        );
        ticker.await.unwrap();
        core.ready(Duration::from_secs(20)).await.unwrap();
        assert!(core.is_ready());
        assert!(core.config().experience_by_key("exp").is_some());
    });
    drop(server);
    watchdog.join().unwrap();
}

/// A task on the current runtime that releases `server`'s hanging requests as soon as there is
/// one, and records that it did. Bounded, so that a regression fails instead of hanging.
fn releasing_ticker(
    server: &Arc<FakeConvert>,
    released: &Arc<AtomicBool>,
) -> tokio::task::JoinHandle<()> {
    let (server, released) = (Arc::clone(server), Arc::clone(released));
    tokio::spawn(async move {
        for _ in 0..5_000 {
            tokio::time::sleep(Duration::from_millis(2)).await;
            if server.hung() > 0 {
                released.store(true, Ordering::SeqCst);
                server.release_hung();
                return;
            }
        }
    })
}

/// A local server whose first tracking POST hangs (until released) and later ones succeed, and
/// an SDK (`configure`d) tracking to it with one bucketing event queued.
fn one_event_before_a_hanging_post(
    configure: impl FnOnce(convert_sdk::CoreBuilder) -> convert_sdk::CoreBuilder,
) -> (Arc<FakeConvert>, Core) {
    let server = Arc::new(FakeConvert::start());
    server.then_post([Mode::Hang]).post_default(Mode::ok());
    let port = server.port();
    let core = configure(
        Core::builder()
            .config_json(CONFIG)
            .transport(UreqTransport::new())
            .track_endpoint(format!("http://127.0.0.1:{port}/[project_id]/v1/")),
    )
    .build()
    .unwrap();
    assert!(
        core.create_context("v", None)
            .run_experience("exp", &convert_sdk::BucketingAttributes::new())
            .is_variation()
    );
    (server, core)
}

/// `flush_async` and `close_async` wait for delivery without blocking the runtime: the tracking
/// POST hangs, and a ticker task on the same current-thread runtime is the one that releases it.
#[test]
fn flush_async_and_close_async_do_not_block_the_runtime() {
    let (server, core) = one_event_before_a_hanging_post(|b| b.tracking(false));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let released_by_ticker = Arc::new(AtomicBool::new(false));
    rt.block_on(async {
        let ticker = releasing_ticker(&server, &released_by_ticker);
        let sent = core.flush_async(Duration::from_secs(20)).await;
        assert!(
            released_by_ticker.load(Ordering::SeqCst),
            "the flush finished without the ticker releasing its request"
        );
        ticker.await.unwrap();
        // The released request ended without an answer: a transient failure, events kept.
        assert!(sent.is_err(), "{sent:?}");
        let again = core.flush_async(Duration::from_secs(20)).await;
        assert!(again.is_ok(), "{again:?}");
        core.close_async(Duration::from_secs(5)).await;
    });
    // The bucketing event arrived once, on the retry, and close left nothing behind.
    let events = server.accepted_events();
    assert_eq!(events.len(), 1, "{events:?}");
    let m = core.metrics();
    assert_eq!((m.abandoned_events, m.discarded_events), (0, 0), "{m:?}");

    // close_async delivering with automatic delivery on: its request hangs too (on a second
    // server: a released one lets every later request through), and only the ticker on the
    // same runtime can release it.
    let (server, live) =
        one_event_before_a_hanging_post(|b| b.events(1_000, Duration::from_secs(3600), 10_000));
    let released = Arc::new(AtomicBool::new(false));
    rt.block_on(async {
        let ticker = releasing_ticker(&server, &released);
        live.close_async(Duration::from_secs(10)).await;
        assert!(
            released.load(Ordering::SeqCst),
            "close finished without the ticker releasing its request"
        );
        ticker.await.unwrap();
    });
}

/// The async entry points polled by another executor (no tokio runtime): they run in place
/// instead of panicking on the missing runtime.
#[test]
fn async_entry_points_run_in_place_outside_tokio() {
    use convert_sdk::stores::{BlockingPool, MemoryStore};
    use convert_sdk::{AsyncDataStore, DataStore};
    use std::future::Future;
    use std::task::{Context, Poll, Waker};

    /// Polls `f` once; everything here completes on its first poll.
    fn poll_once<F: Future>(f: F) -> Poll<F::Output> {
        let mut f = std::pin::pin!(f);
        f.as_mut().poll(&mut Context::from_waker(Waker::noop()))
    }

    let memory = Arc::new(MemoryStore::new());
    let core = poll_once(
        Core::builder()
            .config_json(CONFIG)
            .tracking(false)
            .async_data_store(BlockingPool::new(memory.clone()))
            .build_async(),
    );
    let Poll::Ready(Ok(core)) = core else {
        panic!("build_async did not finish in place")
    };
    assert!(matches!(
        poll_once(core.ready(Duration::from_secs(1))),
        Poll::Ready(Ok(()))
    ));
    // A decision through the async store: no tokio timer for its deadline, no panic.
    let ctx = core.create_context("v", None);
    // No tracking event: the flush below then has nothing to send anywhere.
    let attrs = convert_sdk::BucketingAttributes::new().enable_tracking(false);
    assert!(matches!(
        poll_once(ctx.run_experience_async("exp", &attrs)),
        Poll::Ready(d) if d.is_variation()
    ));
    let key = ctx.store_key().unwrap().to_string();
    let stored = memory.get(&key).unwrap();
    assert_eq!(
        stored.as_ref().and_then(|r| r.bucketed_variation("100")),
        Some("101"),
        "{stored:?}"
    );
    let pool = BlockingPool::new(memory);
    assert!(matches!(poll_once(pool.get(&key)), Poll::Ready(Ok(r)) if r == stored));
    // Nothing queued: the flush has nothing to send and returns at once.
    assert!(matches!(
        poll_once(core.flush_async(Duration::from_secs(1))),
        Poll::Ready(Ok(0))
    ));
    assert!(poll_once(core.close_async(Duration::from_secs(1))).is_ready());
}
