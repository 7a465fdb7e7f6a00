//! `convert batch` with a persistent store, run twice as separate processes (an application
//! restart): the second run sees the stored decisions (`bucketingAllocation: null`, no bucketing
//! event) and converts nothing again.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod support;

use convert_store_tests::redis_server::{RedisServer, redis_available};
use serde_json::{Value, json};
use support::batch;

fn request(data_store: &str) -> Value {
    json!({
        "config": {
            "account_id": "10", "project": {"id": "20"},
            "experiences": [{"id": "100", "key": "exp", "variations": [
                {"id": "101", "key": "a", "traffic_allocation": 50},
                {"id": "102", "key": "b", "traffic_allocation": 50}]}],
            "goals": [{"id": "7", "key": "purchase"}]
        },
        "sdk": {"dataStore": data_store},
        "state": "shared",
        "cases": [
            {"op": "runExperience", "visitorId": "returning", "key": "exp", "locationProperties": {}},
            {"op": "trackConversion", "visitorId": "returning", "key": "purchase", "revenue": 10}
        ]
    })
}

fn check_restart(data_store: &str) {
    let req = request(data_store);
    let first = batch(&req);
    let r = &first[0]["result"];
    assert_eq!(r["type"], "variation");
    assert!(r["bucketingAllocation"].is_u64(), "fresh decision: {r}");
    assert_eq!(first[0]["tracking"].as_array().unwrap().len(), 1);
    assert_eq!(first[1]["result"]["fired"], true);
    // enrichData is false with a persistent store, as in the reference.
    assert_eq!(first[0]["tracking"][0]["body"]["enrichData"], false);

    let second = batch(&req);
    let r2 = &second[0]["result"];
    assert_eq!(
        r2["variationId"], r["variationId"],
        "sticky across restarts"
    );
    assert_eq!(r2["bucketingAllocation"], Value::Null, "a stored decision");
    assert_eq!(
        second[0]["tracking"],
        json!([]),
        "no bucketing event for a stored decision"
    );
    assert_eq!(second[1]["result"]["fired"], false, "no second conversion");
    assert_eq!(second[1]["tracking"], json!([]));
}

#[test]
fn sqlite_state_survives_a_restart() {
    let dir = std::env::temp_dir().join(format!("convert-persist-sqlite-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let db = dir.join("state.db");
    check_restart(&format!("sqlite://{}", db.display()));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn redis_state_survives_a_restart() {
    if !redis_available() {
        return;
    }
    let server = RedisServer::start("cli-restart");
    check_restart(&server.url());
}

#[test]
fn unknown_store_urls_are_reported_per_case() {
    let out = batch(&request("mongodb://nope"));
    assert_eq!(out[0]["result"]["type"], "error");
    assert!(out[0]["error"].as_str().unwrap().contains("sdk.dataStore"));
}
