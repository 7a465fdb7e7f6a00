//! The async Redis store against a real 3-master Redis Cluster on loopback ports
//! (`redis+cluster://` URLs): the async contract, two connections racing on goal marks, keys
//! spread over the masters, and records shared with the sync cluster store.
#![cfg(feature = "tokio")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use convert_ports::{AsyncDataStore, DataStore, StoreOp};
use convert_store_redis::{AsyncRedisStore, RedisStore};
use convert_store_tests::asynchronous::{Shared, block_on, one_winner_across_instances};
use convert_store_tests::redis_server::{RedisCluster, redis_available};
use std::sync::{Arc, OnceLock};

/// One cluster shared by the cases of this file (each case uses its own keys).
fn shared() -> Option<&'static RedisCluster> {
    static CLUSTER: OnceLock<Option<&'static RedisCluster>> = OnceLock::new();
    *CLUSTER.get_or_init(|| {
        // Leaked on purpose: it lives as long as the test process; the nodes' watchdogs stop it.
        redis_available().then(|| &*Box::leak(Box::new(RedisCluster::start("async-cluster"))))
    })
}

async fn store(cluster: &RedisCluster) -> AsyncRedisStore {
    let s = AsyncRedisStore::open(&cluster.url()).await.unwrap();
    assert!(s.is_cluster());
    s
}

convert_store_tests::async_contract_tests!(|| async {
    Some(Arc::new(store(shared()?).await) as Shared)
});

#[test]
fn async_cluster_one_winner_across_instances() {
    let Some(cluster) = shared() else { return };
    block_on(|| async {
        let a = Arc::new(store(cluster).await);
        let b = Arc::new(store(cluster).await);
        one_winner_across_instances(a, b).await;
    });
}

/// Keys land on every master, and the sync cluster store reads what the async one wrote.
#[test]
fn async_cluster_keys_spread_over_the_masters_and_are_shared_with_the_sync_store() {
    let Some(cluster) = shared() else { return };
    let sync = RedisStore::open(&cluster.url()).unwrap();
    block_on(|| async {
        let s = store(cluster).await;
        for i in 0..60 {
            let key = format!("aspread-1-2-visitor-{i}");
            let out = s
                .apply(&key, None, &[StoreOp::Goal("purchase".into())])
                .await
                .unwrap();
            assert_eq!(out.changed, vec![true]);
            assert!(sync.get(&key).unwrap().unwrap().goal_triggered("purchase"));
        }
    });
    for node in cluster.nodes() {
        let keys: u64 = node.cli(&["DBSIZE"]).trim().parse().unwrap_or(0);
        assert!(keys > 0, "node {} holds none of the keys", node.port());
    }
}

/// A cluster that is not there: calls fail as unavailable (and a later call tries again).
#[test]
fn async_cluster_that_is_down_is_unavailable() {
    let port = convert_store_tests::redis_server::free_port();
    block_on(|| async move {
        let s = AsyncRedisStore::open(&format!("redis+cluster://127.0.0.1:{port}"))
            .await
            .unwrap();
        for _ in 0..2 {
            let err = s.get("down-1-2-v").await.unwrap_err();
            assert!(
                matches!(err, convert_ports::StoreError::Unavailable(_)),
                "{err:?}"
            );
        }
    });
}
