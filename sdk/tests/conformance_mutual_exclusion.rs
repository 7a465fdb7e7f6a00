//! `javascript-sdk/mutual-exclusion-rule-fixture.json` through the public SDK (README §3, SPEC
//! §5.7–§5.8): the `bucketed_into_experience_key` audience rule.
//!
//! Per row: exp-b gets a transient audience holding the single exclusion rule, the visitor's stored
//! bucketing is seeded into the data store (convert-rs has no separate memory layer, so
//! `dataStoreOnly` rows seed the same store), and exp-b is evaluated with no location
//! restriction and empty visitor properties. Checked: whether the visitor gets a variation of
//! exp-b (`expectedMatched`); that the check is read-only (no bucketing of exp-a is written or
//! tracked, the record changes only by exp-b's own fresh decision); and that the SDK logs a
//! warning naming the key exactly for the rows with `expectWarn` (and no warning otherwise).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

#[path = "../../core/tests/common/mod.rs"]
mod common;
mod support;

use convert_sdk::{BucketingAttributes, Core, DataStore, Decision, StoreData};
use serde_json::{Map, Value, json};
use std::sync::{Mutex, OnceLock};
use std::thread::ThreadId;
use support::{InstrumentedStore, Recorder};

const EXP_A_ID: &str = "100111";
const EXP_B_ID: &str = "100222";
const EXP_B_VARIATION: &str = "100902";

/// Captures `log` records per thread, so parallel tests do not see each other's lines.
struct CaptureLogger(Mutex<Vec<(ThreadId, log::Level, String)>>);

impl log::Log for CaptureLogger {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, record: &log::Record<'_>) {
        self.0.lock().unwrap().push((
            std::thread::current().id(),
            record.level(),
            record.args().to_string(),
        ));
    }
    fn flush(&self) {}
}

fn logger() -> &'static CaptureLogger {
    static LOGGER: OnceLock<&'static CaptureLogger> = OnceLock::new();
    LOGGER.get_or_init(|| {
        let l: &'static CaptureLogger = Box::leak(Box::new(CaptureLogger(Mutex::new(Vec::new()))));
        log::set_logger(l).unwrap();
        log::set_max_level(log::LevelFilter::Trace);
        l
    })
}

/// Takes this thread's captured warnings (and clears this thread's records).
fn take_warnings() -> Vec<String> {
    let me = std::thread::current().id();
    let mut all = logger().0.lock().unwrap();
    let (mine, others): (Vec<_>, Vec<_>) = all.drain(..).partition(|(t, _, _)| *t == me);
    *all = others;
    mine.into_iter()
        .filter(|(_, level, _)| *level <= log::Level::Warn)
        .map(|(_, _, msg)| msg)
        .collect()
}

#[test]
fn mutual_exclusion_rule_fixture() {
    let Some(dir) = common::conformance_dir() else {
        return;
    };
    let rel = "javascript-sdk/mutual-exclusion-rule-fixture.json";
    let fx = common::load(&dir, rel);
    let rows = fx["rows"].as_array().unwrap();
    // The JS runner's own sanity checks on the file.
    assert_eq!(rows.len(), 8, "{rel}: row count");
    assert_eq!(
        rows.iter().filter(|r| r["expectedMatched"] == true).count(),
        4
    );
    assert_eq!(rows.iter().filter(|r| r["expectWarn"] == true).count(), 2);
    assert_eq!(fx["config"]["experiences"][0]["id"], EXP_A_ID);
    assert_eq!(fx["config"]["experiences"][1]["id"], EXP_B_ID);
    logger();

    let mut passed = 0;
    let mut failures = Vec::new();
    for row in rows {
        let n = &row["row"];
        let rule_value = row["ruleValue"].as_str().unwrap();
        // Step 1: the config, with exp-b behind an audience holding the single rule.
        let mut rule = fx["ruleDefaults"].clone();
        rule["matching"]["negated"] = row["negated"].clone();
        rule["value"] = row["ruleValue"].clone();
        let mut config = fx["config"].clone();
        config["account_id"] = json!("100");
        config["project"] = json!({"id": "200"});
        config["audiences"] = json!([{
            "id": "100333", "key": "not-in-target", "name": "exclusion", "type": "transient",
            "rules": {"OR": [{"AND": [{"OR_WHEN": [rule]}]}]}
        }]);
        config["experiences"][1]["audiences"] = json!(["100333"]);
        config["experiences"][1]["settings"] = json!({"matching_options": {"audiences": "all"}});

        let store = InstrumentedStore::new(false);
        let recorder = Recorder::default();
        let core = Core::builder()
            .config(config)
            .shared_data_store(store.clone())
            .transport(recorder.clone())
            .tracking(false)
            .build()
            .unwrap();
        let ctx = core.create_context("mx-visitor", None);
        let key = ctx.store_key().unwrap().to_string();

        // Step 2: seed the stored bucketing (memory and DataStore are one store here).
        let seeded: Map<String, Value> = row["storedBucketing"].as_object().cloned().unwrap();
        if !seeded.is_empty() {
            store
                .set(
                    &key,
                    &StoreData::from_value(json!({ "bucketing": seeded })).unwrap(),
                )
                .unwrap();
        }
        let before = store.get(&key).unwrap();
        store.take_written();
        take_warnings();

        // Step 3: evaluate exp-b.
        let attrs = BucketingAttributes::new().ignore_location_properties(true);
        let decision = ctx.run_experience("exp-b", &attrs);
        let warnings = take_warnings();
        let matched =
            matches!(&decision, Decision::Variation(v) if &*v.variation_id == EXP_B_VARIATION);
        let mut problems = Vec::new();
        if !matches!(decision, Decision::Variation(_) | Decision::NotMatched(_)) {
            problems.push(format!("unexpected decision {decision:?}"));
        }
        if matched != row["expectedMatched"].as_bool().unwrap() {
            problems.push(format!(
                "matched = {matched}, expected {}",
                row["expectedMatched"]
            ));
        }

        // Step 4a: read-only. The record changes only by exp-b's own fresh decision.
        let already_in_b = seeded.contains_key(EXP_B_ID);
        let mut want_bucketing = seeded.clone();
        if matched {
            want_bucketing.insert(EXP_B_ID.into(), json!(EXP_B_VARIATION));
        }
        let after = store.get(&key).unwrap();
        let after_bucketing = after
            .as_ref()
            .and_then(StoreData::bucketing_map)
            .unwrap_or_default();
        if after_bucketing != want_bucketing {
            problems.push(format!(
                "stored bucketing {after_bucketing:?}, expected {want_bucketing:?}"
            ));
        }
        if after_bucketing.get(EXP_A_ID) != seeded.get(EXP_A_ID) {
            problems.push("exp-a's bucketing was written".into());
        }
        let writes = store.take_written();
        let fresh_b = matched && !already_in_b;
        if writes.len() != usize::from(fresh_b) {
            problems.push(format!(
                "{} store writes, expected {} (before {before:?}, writes {writes:?})",
                writes.len(),
                usize::from(fresh_b)
            ));
        }
        // Tracking: only exp-b's fresh bucketing event, never one for exp-a.
        let events: Vec<Value> = core
            .pending_requests()
            .iter()
            .flat_map(|r| {
                let body: Value = serde_json::from_str(r.body.as_deref().unwrap()).unwrap();
                body["visitors"][0]["events"].as_array().cloned().unwrap()
            })
            .collect();
        let want_events = if fresh_b {
            vec![
                json!({"eventType": "bucketing", "data": {"experienceId": EXP_B_ID, "variationId": EXP_B_VARIATION}}),
            ]
        } else {
            Vec::new()
        };
        if events != want_events {
            problems.push(format!("tracking events {events:?}"));
        }

        // Step 4b: a warning naming the key exactly when expected, and no warning otherwise.
        let expect_warn = row["expectWarn"].as_bool().unwrap();
        let named = warnings.iter().filter(|w| w.contains(rule_value)).count();
        if expect_warn && (named != 1 || warnings.len() != 1) {
            problems.push(format!(
                "expected one warning naming {rule_value:?}, got {warnings:?}"
            ));
        }
        if !expect_warn && !warnings.is_empty() {
            problems.push(format!("unexpected warnings {warnings:?}"));
        }

        if problems.is_empty() {
            passed += 1;
        } else {
            failures.push(format!(
                "row {n} ({}): {}",
                row["description"],
                problems.join("; ")
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{rel}: {} of 8 rows failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_eq!(passed, 8);
    println!("{rel}: {passed} passed, 0 skipped");
}
