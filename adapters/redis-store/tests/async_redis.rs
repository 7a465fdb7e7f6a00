//! The async Redis store (`tokio` feature) against a real `redis-server` started by the test:
//! the records are the sync store's (same keys, same JSON), and goal marks stay exactly-once
//! under concurrent tasks.
#![cfg(feature = "tokio")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use convert_ports::{AsyncDataStore, DataStore, StoreData, StoreOp};
use convert_store_redis::{AsyncRedisStore, RedisStore};
use convert_store_tests::redis_server::{RedisServer, redis_available};
use std::sync::Arc;

fn goal(g: &str) -> StoreOp {
    StoreOp::Goal(g.into())
}

#[tokio::test(flavor = "current_thread")]
async fn async_store_shares_records_with_the_sync_store_and_marks_goals_once() {
    if !redis_available() {
        return;
    }
    let server = RedisServer::start("async-store");
    let url = server.url();
    let store = Arc::new(AsyncRedisStore::open(&url).await.unwrap());
    let sync = RedisStore::open(&url).unwrap();

    // create: written when absent, else the stored record comes back.
    let mut rec = StoreData::default();
    rec.apply(&goal("g0"));
    assert_eq!(store.create("v1", &rec).await.unwrap(), None);
    let back = store
        .create("v1", &StoreData::default())
        .await
        .unwrap()
        .unwrap();
    assert!(back.goal_triggered("g0"));
    // The sync store reads what the async one wrote.
    assert!(sync.get("v1").unwrap().unwrap().goal_triggered("g0"));

    // apply against a stale `seen` still applies to the stored record.
    let applied = store.apply("v1", None, &[goal("g1")]).await.unwrap();
    assert_eq!(applied.changed, vec![true]);
    let again = store.apply("v1", Some(&back), &[goal("g1")]).await.unwrap();
    assert_eq!(again.changed, vec![false], "g1 was already marked");

    // 200 concurrent tasks race to mark the same goal: exactly one wins.
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..200 {
        let s = Arc::clone(&store);
        set.spawn(async move {
            let seen = s.get("race").await.unwrap();
            s.apply("race", seen.as_ref(), &[goal("g")]).await.unwrap()
        });
    }
    let mut wins = 0;
    while let Some(r) = set.join_next().await {
        wins += usize::from(r.unwrap().written());
    }
    assert_eq!(wins, 1);

    store.delete("v1").await.unwrap();
    assert_eq!(store.get("v1").await.unwrap(), None);
}

#[tokio::test(flavor = "current_thread")]
async fn async_store_reports_a_down_server_as_unavailable() {
    if !redis_available() {
        return;
    }
    let port = convert_store_tests::redis_server::free_port();
    let store = AsyncRedisStore::open(&format!("redis://127.0.0.1:{port}/"))
        .await
        .unwrap();
    let err = store.get("x").await.unwrap_err();
    assert!(
        matches!(err, convert_ports::StoreError::Unavailable(_)),
        "{err:?}"
    );
}

/// The async store seen through the sync `DataStore` contract: `get`, `apply`, `create` and
/// `delete` go to the [`AsyncRedisStore`] (driven by a tokio runtime of this test), while `set`
/// and `update`, which the async port does not have, go to a sync [`RedisStore`] on the same
/// server and prefix (so the cases also check that both read and write the same records).
struct Bridge {
    rt: tokio::runtime::Handle,
    async_store: AsyncRedisStore,
    sync_store: RedisStore,
}

impl DataStore for Bridge {
    fn get(&self, key: &str) -> Result<Option<StoreData>, convert_ports::StoreError> {
        self.rt.block_on(self.async_store.get(key))
    }
    fn set(&self, key: &str, value: &StoreData) -> Result<(), convert_ports::StoreError> {
        self.sync_store.set(key, value)
    }
    fn delete(&self, key: &str) -> Result<(), convert_ports::StoreError> {
        self.rt
            .block_on(AsyncDataStore::delete(&self.async_store, key))
    }
    fn update(
        &self,
        key: &str,
        f: &mut dyn FnMut(&mut StoreData) -> bool,
    ) -> Result<bool, convert_ports::StoreError> {
        self.sync_store.update(key, f)
    }
    fn apply(
        &self,
        key: &str,
        seen: Option<&StoreData>,
        ops: &[StoreOp],
    ) -> Result<convert_ports::Applied, convert_ports::StoreError> {
        self.rt.block_on(self.async_store.apply(key, seen, ops))
    }
    fn create(
        &self,
        key: &str,
        record: &StoreData,
    ) -> Result<Option<StoreData>, convert_ports::StoreError> {
        self.rt.block_on(self.async_store.create(key, record))
    }
}

#[test]
fn async_store_passes_the_contract_suite() {
    if !redis_available() {
        return;
    }
    let server = RedisServer::start("async-contract");
    let url = server.url();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let n = std::sync::atomic::AtomicUsize::new(0);
    convert_store_tests::run_all(|| {
        let options = convert_store_redis::RedisOptions::default().prefix(format!(
            "async-contract-{}:",
            n.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
        ));
        Bridge {
            rt: rt.handle().clone(),
            async_store: rt
                .block_on(AsyncRedisStore::open_with(&url, options.clone()))
                .unwrap(),
            sync_store: RedisStore::open_with(&url, options).unwrap(),
        }
    });
}

/// One server shared by the async contract cases of this file (each case uses its own keys).
fn contract_server() -> Option<&'static RedisServer> {
    static SERVER: std::sync::OnceLock<Option<&'static RedisServer>> = std::sync::OnceLock::new();
    *SERVER.get_or_init(|| {
        // Leaked on purpose: it lives as long as the test process; its watchdog stops it.
        redis_available().then(|| &*Box::leak(Box::new(RedisServer::start("async-contract-ts"))))
    })
}

convert_store_tests::async_contract_tests!(|| async {
    let url = contract_server()?.url();
    let store = AsyncRedisStore::open(&url).await.unwrap();
    Some(Arc::new(store) as convert_store_tests::asynchronous::Shared)
});

/// Two async stores (two multiplexed connections) on one server race to mark the same goal.
#[test]
fn async_contract_one_winner_across_instances() {
    let Some(server) = contract_server() else {
        return;
    };
    let url = server.url();
    convert_store_tests::asynchronous::block_on(|| async {
        let a = Arc::new(AsyncRedisStore::open(&url).await.unwrap());
        let b = Arc::new(AsyncRedisStore::open(&url).await.unwrap());
        convert_store_tests::asynchronous::one_winner_across_instances(a, b).await;
    });
}
