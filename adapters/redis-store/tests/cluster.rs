//! The Redis store against a real 3-master Redis Cluster on loopback ports
//! (`redis+cluster://` URLs): the shared contract, and keys spread over the nodes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use convert_ports::{DataStore, StoreOp};
use convert_store_redis::RedisStore;
use convert_store_tests::redis_server::{RedisCluster, redis_available};
use std::sync::OnceLock;

/// One cluster shared by the cases of this file (keys are prefixed per case).
fn shared() -> Option<&'static RedisCluster> {
    static CLUSTER: OnceLock<Option<&'static RedisCluster>> = OnceLock::new();
    *CLUSTER.get_or_init(|| {
        if !redis_available() {
            return None;
        }
        // Leaked on purpose: it lives as long as the test process; the nodes' watchdogs stop it.
        Some(&*Box::leak(Box::new(RedisCluster::start("cluster"))))
    })
}

fn store() -> Option<RedisStore> {
    shared().map(|c| RedisStore::open(&c.url()).unwrap())
}

convert_store_tests::contract_tests!(optional store);

#[test]
fn keys_spread_over_the_masters_and_each_write_is_one_key() {
    let Some(cluster) = shared() else { return };
    let s = RedisStore::open(&cluster.url()).unwrap();
    assert!(s.is_cluster());
    for i in 0..60 {
        let key = format!("spread-1-2-visitor-{i}");
        let out = s
            .apply(&key, None, &[StoreOp::Goal("purchase".into())])
            .unwrap();
        assert_eq!(out.changed, vec![true]);
        assert!(s.get(&key).unwrap().unwrap().goal_triggered("purchase"));
    }
    for node in cluster.nodes() {
        let keys: u64 = node.cli(&["DBSIZE"]).trim().parse().unwrap_or(0);
        assert!(keys > 0, "node {} holds none of the keys", node.port());
    }
}

#[test]
fn a_cluster_url_without_hosts_is_refused() {
    assert!(RedisStore::open("redis+cluster://").is_err());
}
