//! The user commands: decide --explain, validate, simulate.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod support;

use support::convert;

fn demo() -> String {
    format!(
        "{}/../examples/data/demo-config.json",
        env!("CARGO_MANIFEST_DIR")
    )
}

#[test]
fn decide_explains_each_step() {
    let (code, out, err) = convert(&[
        "decide",
        "--config",
        &demo(),
        "--visitor",
        "alice",
        "--environment",
        "production",
        "--experience",
        "checkout-button",
        "--location",
        "url=https://shop.example/checkout",
        "--attr",
        "cart_items=2",
        "--explain",
    ]);
    assert_eq!(code, 0, "{err}");
    for needle in [
        "environment: experience runs in \"production\"",
        "location \"checkout-page\": matched",
        "audience \"shoppers\": matched",
        "(packed layout) -> variation",
    ] {
        assert!(out.contains(needle), "{needle} missing from:\n{out}");
    }
    // Elsewhere the location does not match, and the explanation says so.
    let (_, out, _) = convert(&[
        "decide",
        "--config",
        &demo(),
        "--visitor",
        "alice",
        "--environment",
        "production",
        "--experience",
        "checkout-button",
        "--location",
        "url=https://shop.example/",
        "--explain",
    ]);
    assert!(
        out.contains("not matched") && out.contains("location \"checkout-page\": not matched"),
        "{out}"
    );
}

#[test]
fn validate_reports_errors_and_warnings() {
    let (code, out, _) = convert(&["validate", "--config", &demo()]);
    assert_eq!(code, 0);
    assert!(
        out.contains("2 experiences") && out.contains("no problems"),
        "{out}"
    );
    let dir = std::env::temp_dir().join(format!("convert-validate-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.json");
    std::fs::write(
        &bad,
        r#"{"account_id":"1","project":{"id":"2"},"experiences":[{"variations":{}}]}"#,
    )
    .unwrap();
    let (code, out, _) = convert(&["validate", "--config", bad.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(out.contains("experiences[0].variations"), "{out}");
    let warn = dir.join("warn.json");
    std::fs::write(
        &warn,
        r#"{"account_id":"1","project":{"id":"2"},"audiences":[{"id":"a","key":"aud","rules":null}],
            "experiences":[{"id":"1","key":"e","audiences":["a","ghost"],
              "variations":[{"id":"v","traffic_allocation":60},{"id":"w","traffic_allocation":60}]}]}"#,
    )
    .unwrap();
    let (code, out, _) = convert(&["validate", "--config", warn.to_str().unwrap()]);
    assert_eq!(code, 0);
    assert!(out.contains("add up to 120%"), "{out}");
    assert!(out.contains("no settings.matching_options"), "{out}");
    assert!(out.contains("only 1 resolve"), "{out}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn simulate_matches_the_configured_split() {
    let bench = format!(
        "{}/../examples/data/bench-3arm.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let (code, out, err) = convert(&[
        "simulate",
        "--config",
        &bench,
        "--experience",
        "three-arms",
        "--location",
        "page=pricing",
        "--visitors",
        "30000",
    ]);
    assert_eq!(code, 0, "{err}");
    // Each arm's observed share is within 1.5 points of its configured ~33.3 %.
    let shares: Vec<f64> = out
        .lines()
        .filter(|l| l.starts_with("a (") || l.starts_with("b (") || l.starts_with("c ("))
        .map(|l| l.split_whitespace().rev().nth(1).unwrap().parse().unwrap())
        .collect();
    assert_eq!(shares.len(), 3, "{out}");
    for s in shares {
        assert!((s - 33.33).abs() < 1.5, "{s} in\n{out}");
    }
}

/// Variations whose ids are JSON numbers are bucketed but never returned: simulate gives one
/// reason per variation (it printed one line per bucket value, 10,010 of them).
#[test]
fn simulate_groups_variations_that_are_never_returned() {
    let cfg = r#"{"account_id": "1", "project": {"id": "2"}, "experiences": [
      {"id": "10", "key": "numeric", "variations": [
        {"id": 101, "key": "x", "traffic_allocation": 50},
        {"id": 102, "key": "y", "traffic_allocation": 50}]}]}"#;
    let dir = std::env::temp_dir().join(format!("convert-simulate-ids-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("numeric-ids.json");
    std::fs::write(&file, cfg).unwrap();
    let (code, out, err) = convert(&[
        "simulate",
        "--config",
        &file.display().to_string(),
        "--experience",
        "numeric",
        "--visitors",
        "5000",
    ]);
    assert_eq!(code, 0, "{err}");
    let reasons: Vec<&str> = out
        .lines()
        .filter(|l| l.starts_with("  not matched"))
        .collect();
    assert_eq!(reasons.len(), 2, "{out}");
    assert!(
        reasons.iter().all(|r| r.contains("is not a string")),
        "{out}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
