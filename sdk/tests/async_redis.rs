//! The async facade on the async Redis store, against a real `redis-server` started by the test:
//! behind a loopback proxy that delays every Redis reply by 100 ms, 2,000 concurrent decisions
//! on one current-thread runtime all wait at once, on a handful of OS threads, while a ticker
//! task on the same runtime keeps running; and conversions stay exactly-once across two
//! runtimes (two SDK instances) sharing the Redis.
//!
//! Without `redis-server` on PATH this test says so and passes, unless `CONVERT_REQUIRE_REDIS=1`.
#![cfg(all(feature = "redis", feature = "tokio"))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod support;

use convert_sdk::stores::{AsyncRedisStore, RedisStore};
use convert_sdk::{
    BucketingAttributes, ConversionAttributes, ConversionOutcome, Core, DataStore, Decision,
    StoreOptions,
};
use convert_store_tests::redis_server::{RedisServer, redis_available};
use convert_testkit::delay_proxy::DelayProxy;
use convert_testkit::os_threads;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;
use support::faults::redis_commands;
use support::{Recorder, conversion_events};

const CONFIG: &str = r#"{"account_id":"10","project":{"id":"20"},
  "experiences":[{"id":"100","key":"exp","variations":[{"id":"101","key":"a","traffic_allocation":50},{"id":"102","key":"b","traffic_allocation":50}]}],
  "goals":[{"id":"7","key":"purchase"}]}"#;
const DELAY: Duration = Duration::from_millis(100);
const DECISIONS: usize = 2_000;
const CONVERTING: usize = 200;

async fn sdk(url: &str, recorder: &Recorder) -> Core {
    let store = AsyncRedisStore::open(url).await.unwrap();
    Core::builder()
        .config_json(CONFIG)
        .async_data_store(store)
        // Generous for a loaded 2-core machine: a fresh decision is two delayed round trips.
        .store_options(StoreOptions::default().call_deadline(Duration::from_secs(10)))
        .transport(recorder.clone())
        .tracking(false)
        .build()
        .unwrap()
}

#[test]
fn async_decisions_overlap_on_few_threads_and_conversions_stay_exactly_once() {
    if !redis_available() {
        return;
    }
    let server = RedisServer::start("async-sdk");
    let proxy = DelayProxy::start(server.port(), DELAY).unwrap();
    let proxied = proxy.redis_url();

    // 1. 2,000 concurrent decisions through the delaying proxy, on one current-thread runtime.
    let rt = support::current_thread_runtime();
    let recorder = Recorder::default();
    let (max_in_flight, max_threads, ticks_while_busy, variations) = rt.block_on(async {
        let core = sdk(&proxied, &recorder).await;
        let in_flight = Arc::new(AtomicUsize::new(0));
        let max_in_flight = Arc::new(AtomicUsize::new(0));
        let max_threads = Arc::new(AtomicUsize::new(os_threads()));
        let ticks = Arc::new(AtomicUsize::new(0));
        let done = Arc::new(AtomicBool::new(false));
        let ticker = {
            let (in_flight, ticks, done, max_threads) = (
                Arc::clone(&in_flight),
                Arc::clone(&ticks),
                Arc::clone(&done),
                Arc::clone(&max_threads),
            );
            tokio::spawn(async move {
                while !done.load(Ordering::SeqCst) {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    if in_flight.load(Ordering::SeqCst) > 0 {
                        ticks.fetch_add(1, Ordering::SeqCst);
                    }
                    max_threads.fetch_max(os_threads(), Ordering::SeqCst);
                }
            })
        };
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..DECISIONS {
            let ctx = core.create_context(format!("visitor-{i}"), None);
            let (in_flight, max_in_flight) = (Arc::clone(&in_flight), Arc::clone(&max_in_flight));
            tasks.spawn(async move {
                let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                max_in_flight.fetch_max(now, Ordering::SeqCst);
                let d = ctx
                    .run_experience_async("exp", &BucketingAttributes::default())
                    .await;
                in_flight.fetch_sub(1, Ordering::SeqCst);
                d
            });
        }
        let mut variations = 0;
        while let Some(d) = tasks.join_next().await {
            variations += usize::from(matches!(d.unwrap(), Decision::Variation(_)));
        }
        done.store(true, Ordering::SeqCst);
        ticker.await.unwrap();
        max_threads.fetch_max(os_threads(), Ordering::SeqCst);
        (
            max_in_flight.load(Ordering::SeqCst),
            max_threads.load(Ordering::SeqCst),
            ticks.load(Ordering::SeqCst),
            variations,
        )
    });
    eprintln!(
        "async decisions: max_in_flight {max_in_flight}, max_threads {max_threads}, ticks while busy {ticks_while_busy}"
    );
    assert_eq!(variations, DECISIONS, "every visitor is bucketed");
    assert!(max_in_flight >= 1_000, "max_in_flight {max_in_flight}");
    assert!(max_threads <= 16, "max_threads {max_threads}");
    assert!(
        ticks_while_busy >= 3,
        "the ticker ran {ticks_while_busy} times while decisions were in flight"
    );
    // The decisions are stored: the sync store on the same Redis reads them back.
    let sync = RedisStore::open(&server.url()).unwrap();
    for i in [0, DECISIONS / 2, DECISIONS - 1] {
        let rec = sync.get(&format!("10-20-visitor-{i}")).unwrap().unwrap();
        assert!(rec.has_bucketing("100"), "visitor {i}: {rec:?}");
    }

    // 2. Two runtimes on two threads, each with its own SDK and connection, convert the same
    // goal for the same visitors at once: each conversion is sent exactly once in all.
    let direct = server.url();
    let recorders = [Recorder::default(), Recorder::default()];
    let fired: usize = std::thread::scope(|s| {
        let handles: Vec<_> = recorders
            .iter()
            .map(|recorder| {
                let direct = direct.clone();
                s.spawn(move || {
                    let rt = support::current_thread_runtime();
                    rt.block_on(async {
                        let core = sdk(&direct, recorder).await;
                        let mut tasks = tokio::task::JoinSet::new();
                        for i in 0..CONVERTING {
                            let ctx = core.create_context(format!("buyer-{i}"), None);
                            tasks.spawn(async move {
                                ctx.track_conversion_async(
                                    "purchase",
                                    &ConversionAttributes::default(),
                                )
                                .await
                            });
                        }
                        let mut fired = 0;
                        while let Some(r) = tasks.join_next().await {
                            let o = r.unwrap().unwrap();
                            assert!(
                                matches!(
                                    o,
                                    ConversionOutcome::Converted { .. }
                                        | ConversionOutcome::AlreadyConverted
                                ),
                                "{o:?}"
                            );
                            fired += usize::from(o.fired());
                        }
                        core.flush().unwrap();
                        fired
                    })
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    assert_eq!(fired, CONVERTING);
    let sent: usize = recorders.iter().map(conversion_events).sum();
    assert_eq!(sent, CONVERTING, "conversions sent by both instances");
}

/// Redis down: async decisions come from the hash without a store answer, conversions are held
/// (a repeat in the process is suppressed at once) and, once Redis is back, reconciled by later
/// async calls and sent exactly once.
#[test]
fn async_conversions_made_while_redis_is_down_are_reconciled_once() {
    if !redis_available() {
        return;
    }
    let mut server = RedisServer::start("async-outage");
    let url = server.url();
    let rt = support::current_thread_runtime();
    let recorder = Recorder::default();
    rt.block_on(async {
        let store = AsyncRedisStore::open(&url).await.unwrap();
        let core = Core::builder()
            .config_json(CONFIG)
            .async_data_store(store)
            .store_options(
                StoreOptions::default()
                    .call_deadline(Duration::from_secs(2))
                    .cooldown(Duration::from_millis(50)),
            )
            .transport(recorder.clone())
            .tracking(false)
            .build()
            .unwrap();
        server.stop();
        let attrs = ConversionAttributes::default();
        for i in 0..10 {
            let ctx = core.create_context(format!("down-{i}"), None);
            let d = ctx
                .run_experience_async("exp", &BucketingAttributes::default())
                .await;
            assert!(matches!(d, Decision::Variation(_)), "{d:?}");
            let first = ctx
                .track_conversion_async("purchase", &attrs)
                .await
                .unwrap();
            assert_eq!(first, ConversionOutcome::Deferred);
            let again = ctx
                .track_conversion_async("purchase", &attrs)
                .await
                .unwrap();
            assert_eq!(again, ConversionOutcome::AlreadyConverted);
        }
        assert_eq!(core.metrics().held_conversions, 10);
        assert!(core.metrics().store_errors > 0);
        server.launch();
        // Later async calls reconcile the held conversions once the store answers again
        // (bounded attempts; the connection is re-made in the background).
        let mut attempts = 0;
        while core.metrics().held_conversions > 0 {
            attempts += 1;
            assert!(attempts < 500, "{:?}", core.metrics());
            tokio::time::sleep(Duration::from_millis(20)).await;
            core.create_context("probe", None)
                .run_experience_async("exp", &BucketingAttributes::default())
                .await;
        }
        let m = core.metrics();
        assert_eq!(m.held_conversions_sent, 10, "{m:?}");
        // A repeat after reconciliation finds the mark in Redis.
        let ctx = core.create_context("down-0", None);
        let o = ctx
            .track_conversion_async("purchase", &attrs)
            .await
            .unwrap();
        assert_eq!(o, ConversionOutcome::AlreadyConverted);
        core.flush().unwrap();
    });
    assert_eq!(conversion_events(&recorder), 10);
}

/// The async path decides like the sync one, in as few round trips: a new visitor's decision is
/// one `SET … NX GET` (its record written, nothing read first), a returning visitor's is the
/// same single command (the stored record comes back, nothing is written), and a visitor stored
/// with another variation keeps it. Counted with `INFO commandstats`, not timed; the bucketing
/// events are fired once per decision.
#[test]
fn async_fresh_and_sticky_decisions_are_one_round_trip() {
    if !redis_available() {
        return;
    }
    const N: u64 = 20;
    let server = RedisServer::start("async-round-trips");
    let url = server.url();
    let rt = support::current_thread_runtime();
    let recorder = Recorder::default();
    let bucketing_events = Arc::new(AtomicUsize::new(0));
    rt.block_on(async {
        let core = sdk(&url, &recorder).await;
        let counter = Arc::clone(&bucketing_events);
        core.on(convert_sdk::EventKind::Bucketing, move |_| {
            counter.fetch_add(1, Ordering::SeqCst);
        });
        // The connection is made (and its handshake done) before counting.
        let warm = core.create_context("warm-up", None);
        warm.run_experience_async("exp", &BucketingAttributes::default())
            .await;
        // A returning visitor stored (by the sync store) with the variation the hash would not
        // give, to see that the stored one is kept.
        let sync = RedisStore::open(&url).unwrap();
        let mut stored = convert_sdk::StoreData::default();
        stored.set_bucketing("100", "101");
        sync.set("10-20-stored-a", &stored).unwrap();
        stored.set_bucketing("100", "102");
        sync.set("10-20-stored-b", &stored).unwrap();
        bucketing_events.store(0, Ordering::SeqCst);

        server.cli(&["CONFIG", "RESETSTAT"]);
        let mut first = Vec::new();
        for i in 0..N {
            let ctx = core.create_context(format!("fresh-{i}"), None);
            first.push(
                ctx.run_experience_async("exp", &BucketingAttributes::default())
                    .await,
            );
        }
        let fresh = redis_commands(&server);
        eprintln!("{N} fresh decisions: {fresh:?}");
        assert_eq!(fresh.values().sum::<u64>(), N, "fresh: {fresh:?}");
        assert_eq!(fresh.get("set"), Some(&N), "fresh: {fresh:?}");

        server.cli(&["CONFIG", "RESETSTAT"]);
        for (i, before) in first.iter().enumerate() {
            let ctx = core.create_context(format!("fresh-{i}"), None);
            let again = ctx
                .run_experience_async("exp", &BucketingAttributes::default())
                .await;
            let variation = |d: &Decision| match d {
                Decision::Variation(v) => v.variation_id.clone(),
                other => panic!("fresh-{i}: {other:?}"),
            };
            assert_eq!(variation(&again), variation(before), "fresh-{i} is sticky");
        }
        for (v, variation) in [("stored-a", "a"), ("stored-b", "b")] {
            let d = core
                .create_context(v, None)
                .run_experience_async("exp", &BucketingAttributes::default())
                .await;
            match d {
                Decision::Variation(bv) => {
                    assert_eq!(bv.variation_key.as_deref(), Some(variation), "{v}")
                }
                other => panic!("{v}: {other:?}"),
            }
        }
        let sticky = redis_commands(&server);
        eprintln!("{} sticky decisions: {sticky:?}", N + 2);
        assert_eq!(sticky.values().sum::<u64>(), N + 2, "sticky: {sticky:?}");
        // Nothing was rewritten: the stored records are as they were.
        for (v, id) in [("stored-a", "101"), ("stored-b", "102")] {
            let rec = sync.get(&format!("10-20-{v}")).unwrap().unwrap();
            assert_eq!(rec.bucketed_variation("100"), Some(id), "{v}");
        }
    });
    assert_eq!(
        bucketing_events.load(Ordering::SeqCst) as u64,
        2 * N + 2,
        "one bucketing event per decision"
    );
}
