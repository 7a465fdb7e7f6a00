//! `convert batch` / `convert bench` requests of the wrong shape: exit status 2, nothing on
//! standard output, and a message on standard error that names the JSON path of the value at
//! fault. And the other side of the contract: the protocol's lenient inputs (JS coercions,
//! `null` as absent, unknown keys) are still accepted with their old meaning.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod support;

use serde_json::{Value, json};
use support::{batch, convert_with_input};

/// The exit status of a request that is not of the protocol's shape (docs/batch-protocol.md).
const REQUEST_ERROR: i32 = 2;

fn config() -> Value {
    json!({
        "account_id": "10", "project": {"id": "20"},
        "experiences": [{"id": "100", "key": "exp", "variations": [
            {"id": "101", "key": "a", "traffic_allocation": 50},
            {"id": "102", "key": "b", "traffic_allocation": 50}]}],
        "goals": [{"id": "7", "key": "purchase"}]
    })
}

fn run_case(visitor: Value) -> Value {
    json!({"op": "runExperience", "visitorId": visitor, "key": "exp"})
}

/// Runs `convert <command>` on `request`; asserts exit status 2 and no output, and returns the
/// message (standard error without the `convert <command>: ` prefix and the newline).
fn refused(command: &str, request: &Value) -> String {
    let (code, stdout, stderr) = convert_with_input(&[command], request.to_string().as_bytes());
    assert_eq!(code, REQUEST_ERROR, "{request}: {stderr}");
    assert!(stdout.is_empty(), "{request}: {stdout}");
    let prefix = format!("convert {command}: ");
    stderr
        .strip_prefix(&prefix)
        .and_then(|m| m.strip_suffix('\n'))
        .unwrap_or_else(|| panic!("{request}: unexpected stderr {stderr:?}"))
        .to_string()
}

#[test]
fn a_request_that_is_not_an_object_says_what_it_should_be() {
    for (request, found) in [
        (json!([1, 2]), "sequence"),
        (json!("request"), "string \"request\""),
        (json!(42), "integer `42`"),
        (json!(null), "null"),
    ] {
        for command in ["batch", "bench"] {
            assert_eq!(
                refused(command, &request),
                format!("invalid type: {found}, expected a JSON object")
            );
        }
    }
}

#[test]
fn missing_required_fields_are_named() {
    assert_eq!(
        refused("batch", &json!({"config": config()})),
        "missing field `cases`"
    );
    assert_eq!(
        refused("bench", &json!({"bench": {"key": "exp"}})),
        "missing field `config`"
    );
    assert_eq!(
        refused("bench", &json!({"config": config(), "bench": {"n": 10}})),
        "bench: missing field `key`"
    );
}

#[test]
fn wrong_types_name_the_path() {
    let cases = |extra: Value| {
        let mut case = run_case(json!("v"));
        case.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        json!({"config": config(), "cases": [run_case(json!("v0")), run_case(json!("v1")), case]})
    };
    for (request, message) in [
        (
            cases(json!({"attributes": "plan"})),
            "cases[2].attributes: invalid type: string \"plan\", expected a JSON object",
        ),
        (
            cases(json!({"experienceKeys": "exp"})),
            "cases[2].experienceKeys: invalid type: string \"exp\", expected a sequence",
        ),
        (
            cases(json!({"segmentKeys": 5})),
            "cases[2].segmentKeys: invalid type: integer `5`, expected an array of keys or one key",
        ),
        (
            cases(json!({"conversionData": [{"key": "a", "value": 1}, 3]})),
            "cases[2].conversionData[1]: invalid type: integer `3`, expected a JSON object",
        ),
        (
            cases(json!({"entityType": 3})),
            "cases[2].entityType: invalid type: integer `3`, expected a string",
        ),
        (
            cases(json!({"visitorId": true})),
            "cases[2].visitorId: invalid type: boolean `true`, expected a string or a number",
        ),
        (
            cases(json!({"sdk": {"dataStore": 6379}})),
            "cases[2].sdk.dataStore: invalid type: integer `6379`, expected a string",
        ),
        (
            json!({"config": config(), "cases": [run_case(json!("v")), "runExperience"]}),
            "cases[1]: invalid type: string \"runExperience\", expected a JSON object",
        ),
        (
            json!({"config": config(), "cases": {"op": "hash"}}),
            "cases: invalid type: map, expected a sequence",
        ),
        (
            json!({"config": config(), "sdk": {"bucketing": {"hash_seed": "9999"}}, "cases": []}),
            "sdk.bucketing.hash_seed: invalid type: string \"9999\", expected a number",
        ),
        (
            json!({"config": config(), "sdk": {"events": {"batch_size": 2.5}}, "cases": []}),
            "sdk.events.batch_size: invalid type: floating point `2.5`, expected a non-negative integer",
        ),
        (
            json!({"config": config(), "sdk": "memory", "cases": []}),
            "sdk: invalid type: string \"memory\", expected a JSON object",
        ),
    ] {
        assert_eq!(refused("batch", &request), message);
    }
}

#[test]
fn unknown_variants_list_the_accepted_ones() {
    assert_eq!(
        refused(
            "batch",
            &json!({"config": config(), "state": "global", "cases": []})
        ),
        "state: unknown variant `global`, expected `isolated` or `shared`"
    );
    assert_eq!(
        refused(
            "bench",
            &json!({"config": config(), "bench": {"key": "exp", "mode": "fast"}})
        ),
        "bench.mode: unknown variant `fast`, expected `context+decide` or `decide-only`"
    );
}

#[test]
fn bench_numbers_and_switches_are_checked() {
    for (bench, message) in [
        (
            json!({"key": "exp", "n": "1000"}),
            "bench.n: invalid type: string \"1000\", expected a non-negative integer",
        ),
        (
            json!({"key": "exp", "threads": -2}),
            "bench.threads: invalid type: integer `-2`, expected a non-negative integer",
        ),
        (
            json!({"key": "exp", "sink": "yes"}),
            "bench.sink: invalid type: string \"yes\", expected a boolean",
        ),
        (
            json!({"key": "exp", "attributes": []}),
            "bench.attributes: invalid type: sequence, expected a JSON object",
        ),
        (
            json!({"key": 7}),
            "bench.key: invalid type: integer `7`, expected a string",
        ),
        // Beyond the bounds: a thread panicked with a capacity overflow (exit 0, figures of
        // nothing) or the process aborted allocating every context (exit 134).
        (
            json!({"key": "exp", "n": u64::MAX}),
            "bench.n: 18446744073709551615 is more than 1000000000, the most a context+decide run takes",
        ),
        (
            json!({"key": "exp", "n": 1u64 << 40, "mode": "decide-only"}),
            "bench.n: 1099511627776 is more than 20000000, the most a decide-only run takes",
        ),
        (
            json!({"key": "exp", "warmup": u64::MAX}),
            "bench.warmup: 18446744073709551615 is more than 1000000000",
        ),
    ] {
        let request = json!({"config": config(), "bench": bench});
        assert_eq!(refused("bench", &request), message);
    }
}

#[test]
fn a_refused_request_runs_no_case() {
    let dir = std::env::temp_dir().join(format!("convert-request-errors-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let db = dir.join("state.db");
    let store = format!("sqlite://{}", db.display());
    let mut request = json!({
        "config": config(), "sdk": {"dataStore": store}, "state": "shared",
        "cases": [run_case(json!("v")), {"op": "getVisitorData", "visitorId": "v", "attributes": 1}]
    });
    assert_eq!(
        refused("batch", &request),
        "cases[1].attributes: invalid type: integer `1`, expected a JSON object"
    );
    assert!(
        !db.exists(),
        "the first case ran before the request was refused"
    );

    // The same request with the second case fixed runs both and creates the store.
    request["cases"][1]["attributes"] = json!({});
    let out = batch(&request);
    assert_eq!(out[0]["result"]["type"], "variation");
    assert!(db.exists());
    let _ = std::fs::remove_dir_all(&dir);
}

/// The result of `case` alone on the test config (isolated state).
fn result_of(case: Value) -> Value {
    let out = batch(&json!({"config": config(), "cases": [case]}));
    out[0]["result"].clone()
}

#[test]
fn lenient_inputs_keep_their_meaning() {
    // A number as visitor id is that number's decimal string; it is echoed as given.
    let numeric = batch(&json!({"config": config(), "cases": [run_case(json!(42))]}));
    assert_eq!(numeric[0]["visitorId"], json!(42));
    assert_eq!(numeric[0]["result"], result_of(run_case(json!("42"))));

    // Keys take JS String(): a number key is looked up as its string.
    assert_eq!(
        result_of(
            json!({"op": "getConfigEntityById", "visitorId": "v", "id": 100, "entityType": "experiences"})
        )["id"],
        "100"
    );

    // Switches take JS truthiness: "" disables tracking as false does.
    let untracked = |enable: Value| {
        let out = batch(&json!({"config": config(), "cases": [
            {"op": "runExperience", "visitorId": "v", "key": "exp", "enableTracking": enable}
        ]}));
        out[0]["tracking"].as_array().unwrap().is_empty()
    };
    assert!(untracked(json!("")));
    assert!(untracked(json!(0)));
    assert!(!untracked(json!("yes")));

    // `null` is the same as absent for visitor data; unknown keys are ignored.
    let with_nulls = json!({
        "op": "runExperience", "visitorId": "v", "key": "exp", "attributes": null,
        "locationProperties": null, "experienceKeys": null, "anotherSdksField": {"x": 1}
    });
    assert_eq!(result_of(with_nulls), result_of(run_case(json!("v"))));

    // Cases that cannot run are records, not request errors.
    let out = batch(
        &json!({"config": config(), "configFile": "ignored.json", "cases": [
            {"op": "noSuchOp", "visitorId": "v"},
            {"op": "runExperience", "key": "exp"},
            {"op": "runExperience", "visitorId": null, "key": "exp"},
            {"op": "getConfigEntity", "visitorId": "v", "key": "exp", "entityType": "planet"},
            {"op": "runExperience", "visitorId": "v", "key": "exp", "sdk": {"dataStore": "mongodb://db"}},
            {"visitorId": "v"},
            {"op": 5, "visitorId": "v"}
        ]}),
    );
    let errors: Vec<&str> = out.iter().map(|r| r["error"].as_str().unwrap()).collect();
    assert_eq!(errors[0], "unknown op `noSuchOp`");
    // A missing or non-string op is named as JavaScript's `String(op)` names it (it was empty).
    assert_eq!(errors[5], "unknown op `undefined`");
    assert_eq!(errors[6], "unknown op `5`");
    assert_eq!(errors[1], "missing field `visitorId`");
    assert_eq!(errors[2], "missing field `visitorId`");
    assert_eq!(errors[3], "missing or unknown field `entityType`");
    assert!(
        errors[4].starts_with("sdk.dataStore must be"),
        "{}",
        errors[4]
    );
}

#[test]
fn a_case_sdk_block_overrides_the_request_one_member_by_member() {
    // The request's seed changes the bucket; a case giving only `max_traffic` keeps that seed,
    // and a case setting the seed to null gets the default seed back.
    let with_sdk = |sdk: Value, case_sdk: Value| {
        let mut case = run_case(json!("visitor-7"));
        if !case_sdk.is_null() {
            case["sdk"] = case_sdk;
        }
        let out = batch(&json!({"config": config(), "sdk": sdk, "cases": [case]}));
        out[0]["result"]["bucketingAllocation"].clone()
    };
    let default_seed = with_sdk(json!({}), Value::Null);
    let seeded = with_sdk(json!({"bucketing": {"hash_seed": 12345}}), Value::Null);
    assert_ne!(
        default_seed, seeded,
        "the seed must matter for this visitor"
    );
    assert_eq!(
        with_sdk(
            json!({"bucketing": {"hash_seed": 12345}}),
            json!({"bucketing": {"max_traffic": 10000}})
        ),
        seeded
    );
    assert_eq!(
        with_sdk(
            json!({"bucketing": {"hash_seed": 12345}}),
            json!({"bucketing": {"hash_seed": null}})
        ),
        default_seed
    );
}

/// A numeric `visitorId` is the visitor JavaScript's `String(value)` names: `100.0` and `1e2`
/// are visitor "100", and `-0.0` is "0" (they were visitors "100.0" and "-0.0", with buckets of
/// their own). Each case runs on a fresh instance, so each decision is a fresh one, tracked
/// under the visitor id it was made for.
#[test]
fn numeric_visitor_ids_are_their_javascript_strings() {
    let case = |id: Value| json!({"op": "runExperience", "visitorId": id, "key": "exp"});
    let records = batch(&json!({
        "config": config(),
        "state": "isolated",
        "cases": [case(json!("100")), case(json!(100.0)), case(json!(1e2)),
                  case(json!("0")), case(json!(-0.0))]
    }));
    let tracked = |r: &Value| r["tracking"][0]["body"]["visitors"][0]["visitorId"].clone();
    for (r, named) in records.iter().zip(["100", "100", "100", "0", "0"]) {
        assert_eq!(tracked(r), json!(named), "{r}");
    }
    assert_eq!(records[1]["result"], records[0]["result"]);
    assert_eq!(records[2]["result"], records[0]["result"]);
    assert_eq!(records[4]["result"], records[3]["result"]);
}

/// `captureTracking: null` is an absent field: tracking is captured (it was turned off).
#[test]
fn capture_tracking_null_captures() {
    let records = batch(&json!({
        "config": config(),
        "captureTracking": null,
        "cases": [{"op": "runExperience", "visitorId": "v", "key": "exp"}]
    }));
    let tracking = records[0]["tracking"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(!tracking.is_empty(), "{}", records[0]);
}

/// The engine operations' `seed` is read as the reference feeds it to the hash's bit operations:
/// absent is 9999, anything else `ToUint32(Number(seed))`. Non-numbers were all 9999.
#[test]
fn engine_seeds_are_javascript_numbers() {
    let hash = |seed: Option<Value>| {
        let mut case = json!({"op": "hash", "input": "abc"});
        if let Some(s) = seed {
            case["seed"] = s;
        }
        batch(&json!({"cases": [case]}))[0]["result"]["value"].clone()
    };
    assert_eq!(hash(None), hash(Some(json!(9999))));
    assert_eq!(hash(Some(json!("12"))), hash(Some(json!(12))));
    assert_eq!(hash(Some(json!(true))), hash(Some(json!(1))));
    assert_eq!(hash(Some(json!([5]))), hash(Some(json!(5))));
    assert_eq!(hash(Some(json!("0x10"))), hash(Some(json!(16))));
    for zero in [json!(null), json!("abc"), json!({})] {
        assert_eq!(hash(Some(zero.clone())), hash(Some(json!(0))), "{zero}");
    }
    assert_ne!(hash(Some(json!(0))), hash(None));
}
