//! `convert validate`: every problem, with its JSON path, as errors or warnings, in text or JSON.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod support;

use serde_json::Value;
use support::convert;

fn temp_file(name: &str, text: &str) -> String {
    let dir = std::env::temp_dir().join(format!("convert-validate-all-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

/// A config with five mistakes the SDK would silently accept or misread: three errors, two
/// warnings.
const MISTAKES: &str = r#"{
  "account_id": "1",
  "project": {"id": "2"},
  "experinces": [],
  "experiences": [{
    "id": "10", "key": "exp", "environment": "staging",
    "settings": {"matching_options": {"audiences": "any"}},
    "variations": [
      {"id": "a", "key": "a", "traffic_allocation": "half"},
      {"id": "b", "key": "b", "traffic_allocation": 50, "stauts": "running"}
    ]
  }],
  "goals": [{"id": "7", "key": "buy", "rules": {"OR": "x"}}],
  "features": [{"id": "6", "key": "f", "variables": [{"key": "v", "type": "bogus"}]}]
}"#;

fn problems(json: &Value) -> Vec<(String, String, String)> {
    json["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["severity"].as_str().unwrap().to_string(),
                p["path"].as_str().unwrap().to_string(),
                p["message"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn every_mistake_is_reported_with_its_path() {
    let file = temp_file("mistakes.json", MISTAKES);
    let (code, out, err) = convert(&["validate", "--config", &file]);
    assert_eq!(code, 1, "errors fail validation:\n{out}{err}");
    for needle in [
        "warning: experinces: unknown key",
        "did you mean `experiences`",
        "error: experiences[0].variations[0].traffic_allocation:",
        "warning: experiences[0].variations[1].stauts: unknown key",
        "did you mean `status`",
        "error: goals[0].rules.OR:",
        "error: features[0].variables[0].type:",
        "\"bogus\"",
        "3 errors",
    ] {
        assert!(out.contains(needle), "{needle:?} missing from:\n{out}");
    }
    // A non-numeric allocation is not counted as 100 %.
    assert!(!out.contains("add up to"), "{out}");
}

#[test]
fn duplicate_experience_ids_and_keys_are_warned_about() {
    let cfg = r#"{"account_id": "1", "project": {"id": "2"}, "experiences": [
      {"id": "10", "key": "a", "variations": [{"id": "101", "key": "x", "traffic_allocation": 100}]},
      {"id": "10", "key": "b", "variations": [{"id": "102", "key": "y", "traffic_allocation": 100}]},
      {"id": "11", "key": "a", "variations": [{"id": "103", "key": "z", "traffic_allocation": 100}]}
    ]}"#;
    let file = temp_file("duplicates.json", cfg);
    let (_, out, err) = convert(&["validate", "--config", &file]);
    for needle in [
        "warning: experiences[1].id: experience id \"10\" is also used by experiences[0]",
        "warning: experiences[2].key: experience key \"a\" is also used by experiences[0]",
    ] {
        assert!(out.contains(needle), "{needle:?} missing from:\n{out}{err}");
    }
}

/// Two arms with one id share a bucket: the split is not what the allocations say (it was
/// "ok: no problems found").
#[test]
fn duplicate_variation_ids_are_warned_about() {
    let cfg = r#"{"account_id": "1", "project": {"id": "2"}, "experiences": [
      {"id": "10", "key": "a", "variations": [
        {"id": "101", "key": "x", "traffic_allocation": 50},
        {"id": "101", "key": "y", "traffic_allocation": 50}]}
    ]}"#;
    let file = temp_file("duplicate-variations.json", cfg);
    let (code, out, err) = convert(&["validate", "--config", &file]);
    let needle = "warning: experiences[0].variations[1].id: variation id \"101\" is also used by variations[0]";
    assert!(out.contains(needle), "{needle:?} missing from:\n{out}{err}");
    assert_eq!(code, 0, "a warning");
}

/// A file that is not UTF-8 is a file that is not JSON: exit 1 with the error in the report,
/// in text and JSON (it exited 2, "cannot read", and printed nothing with `--format json`).
#[test]
fn a_file_that_is_not_utf8_fails_validation() {
    let dir = std::env::temp_dir().join(format!("convert-validate-bytes-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("binary.json");
    std::fs::write(&path, [b'{', 0xff, 0xfe, b'}']).unwrap();
    let file = path.display().to_string();
    let (code, out, err) = convert(&["validate", "--config", &file]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("not UTF-8"), "{out}{err}");
    let (code, out, _) = convert(&["validate", "--config", &file, "--format", "json"]);
    assert_eq!(code, 1);
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["errors"], 1, "{report}");
}

#[test]
fn json_output_lists_every_problem() {
    let file = temp_file("mistakes-json.json", MISTAKES);
    let (code, out, err) = convert(&["validate", "--config", &file, "--format", "json"]);
    assert_eq!(code, 1, "{err}");
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["file"], file.as_str());
    assert_eq!(report["errors"], 3, "{report:#}");
    let list = problems(&report);
    let paths: Vec<(&str, &str)> = list
        .iter()
        .map(|(s, p, _)| (s.as_str(), p.as_str()))
        .collect();
    for expected in [
        ("warning", "experinces"),
        ("error", "experiences[0].variations[0].traffic_allocation"),
        ("warning", "experiences[0].variations[1].stauts"),
        ("error", "goals[0].rules.OR"),
        ("error", "features[0].variables[0].type"),
    ] {
        assert!(paths.contains(&expected), "{expected:?} not in {paths:?}");
    }
    let typo = report["problems"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["path"] == "experinces")
        .unwrap();
    assert_eq!(typo["suggestion"], "experiences");
}

#[test]
fn strict_makes_warnings_fail() {
    let file = temp_file(
        "typo-only.json",
        r#"{"account_id":"1","project":{"id":"2"},"experinces":[]}"#,
    );
    let (code, out, _) = convert(&["validate", "--config", &file]);
    assert_eq!(code, 0, "warnings alone pass:\n{out}");
    assert!(out.contains("did you mean `experiences`"), "{out}");
    let (code, out, _) = convert(&["validate", "--config", &file, "--strict"]);
    assert_eq!(code, 1, "--strict fails on warnings:\n{out}");
}

#[test]
fn unknown_keys_are_found_in_nested_entities() {
    let file = temp_file(
        "nested.json",
        r#"{"account_id":"1","project":{"id":"2"},
            "audiences":[{"id":"5","key":"a","rulez":null}],
            "features":[{"id":"6","key":"f","variabels":[]}],
            "goals":[{"id":"7","key":"g","rules":{"OR":[{"AND":[{"OR_WHEN":[
                {"rule_type":"generic_text_key_value","key":"k","value":"x",
                 "matching":{"match_type":"equal","negated":false}}]}]}]}}],
            "experiences":[{"id":"1","key":"e","variations":[],"setings":{}}]}"#,
    );
    let (code, out, _) = convert(&["validate", "--config", &file, "--format", "json"]);
    let report: Value = serde_json::from_str(&out).unwrap();
    let find = |path: &str| {
        report["problems"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["path"] == path)
            .cloned()
            .unwrap_or_else(|| panic!("{path} not reported: {report:#}"))
    };
    assert_eq!(find("audiences[0].rulez")["suggestion"], "rules");
    assert_eq!(find("features[0].variabels")["suggestion"], "variables");
    assert_eq!(find("experiences[0].setings")["suggestion"], "settings");
    let op = find("goals[0].rules.OR[0].AND[0].OR_WHEN[0].matching.match_type");
    assert_eq!(op["severity"], "error");
    assert_eq!(op["suggestion"], "equals");
    assert_eq!(code, 1);
}

#[test]
fn parse_errors_name_the_file_and_position() {
    let file = temp_file("broken.json", "{\n  \"account_id\": \"1\",\n  oops\n}");
    let (code, out, _) = convert(&["validate", "--config", &file]);
    assert_eq!(code, 1);
    assert!(out.contains(&format!("{file}:3:")), "{out}");
    assert!(out.contains("not valid JSON"), "{out}");
    let (code, out, _) = convert(&["validate", "--config", &file, "--format", "json"]);
    assert_eq!(code, 1);
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["errors"], 1);
    assert_eq!(report["problems"][0]["line"], 3);
}

#[test]
fn the_demo_and_shared_configs_have_no_problems() {
    let demo = format!(
        "{}/../examples/data/demo-config.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let (code, out, _) = convert(&["validate", "--config", &demo, "--strict"]);
    assert_eq!(code, 0, "{out}");
    // The realistic snapshot of a served config: no unknown-key warnings.
    let Ok(dir) = std::env::var("CONVERT_CONFORMANCE_DIR") else {
        eprintln!("SKIPPED: CONVERT_CONFORMANCE_DIR is not set");
        return;
    };
    for name in [
        "derived/realistic-config.json",
        "javascript-sdk/test-config.json",
    ] {
        let path = format!("{dir}/{name}");
        let (_, out, _) = convert(&["validate", "--config", &path, "--format", "json"]);
        let report: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(report["errors"], 0, "{name}: {report:#}");
        let unknown: Vec<&Value> = report["problems"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["message"].as_str().unwrap().contains("unknown key"))
            .collect();
        assert!(unknown.is_empty(), "{name}: {unknown:#?}");
    }
}

#[test]
fn an_environment_the_project_does_not_have_is_flagged() {
    let file = temp_file(
        "env.json",
        r#"{"account_id":"1","project":{"id":"2","environments":{"production":"Production","staging":"Staging"}},
            "experiences":[{"id":"1","key":"e","environment":"prodution","variations":[{"id":"v"}]},
                           {"id":"2","key":"f","environment":"staging","variations":[{"id":"w"}]}]}"#,
    );
    let (code, out, _) = convert(&["validate", "--config", &file, "--format", "json"]);
    assert_eq!(code, 0, "a warning:\n{out}");
    let report: Value = serde_json::from_str(&out).unwrap();
    let list = report["problems"].as_array().unwrap();
    assert_eq!(list.len(), 1, "{report:#}");
    assert_eq!(list[0]["path"], "experiences[0].environment");
    assert_eq!(list[0]["suggestion"], "production");
}

#[test]
fn patterns_the_engine_cannot_run_are_warned_about_with_their_path() {
    let file = temp_file(
        "regex.json",
        r#"{"account_id":"1","project":{"id":"2"},
            "audiences":[{"id":"5","key":"aud","rules":{"OR":[{"AND":[{"OR_WHEN":[
              {"rule_type":"generic_text_key_value","key":"k","value":"(a)\\1",
               "matching":{"match_type":"regexMatches","negated":false}}]}]}]}}]}"#,
    );
    let (code, out, _) = convert(&["validate", "--config", &file]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("warning: audiences[0].rules: regexMatches pattern"),
        "{out}"
    );
}

#[test]
fn paths_point_into_envelopes_and_batch_requests() {
    let config = r#"{"account_id":"1","project":{"id":"2"},"experinces":[]}"#;
    for (name, text, path) in [
        (
            "envelope.json",
            format!(r#"{{"data":{config}}}"#),
            "data.experinces",
        ),
        (
            "request.json",
            format!(r#"{{"config":{config},"cases":[]}}"#),
            "config.experinces",
        ),
    ] {
        let file = temp_file(name, &text);
        let (code, out, _) = convert(&["validate", "--config", &file, "--format", "json"]);
        assert_eq!(code, 0, "{out}");
        let report: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(report["problems"][0]["path"], path, "{report:#}");
    }
}
