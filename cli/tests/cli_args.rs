//! Command-line conventions of `convert`: help for every command, `--version`, short flags,
//! shell completions, documented exit statuses, and the messages of `fetch` and `simulate`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod support;

use support::convert;

const COMMANDS: [&str; 7] = [
    "decide",
    "validate",
    "simulate",
    "fetch",
    "batch",
    "bench",
    "completions",
];

fn data(name: &str) -> String {
    format!("{}/../examples/data/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn temp_file(name: &str, text: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("convert-cli-args-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn every_command_has_help_with_its_exit_statuses() {
    let (code, top, err) = convert(&["--help"]);
    assert_eq!(code, 0, "{err}");
    for cmd in COMMANDS {
        assert!(
            top.contains(cmd),
            "`{cmd}` missing from convert --help:\n{top}"
        );
    }
    assert!(top.contains("Exit status"), "{top}");
    for cmd in COMMANDS {
        for form in [vec![cmd, "--help"], vec!["help", cmd], vec![cmd, "-h"]] {
            let (code, out, err) = convert(&form);
            assert_eq!(code, 0, "convert {form:?}: {err}");
            assert!(
                out.contains(&format!("Usage: convert {cmd}")),
                "convert {form:?}:\n{out}"
            );
            assert!(out.contains("Exit status"), "convert {form:?}:\n{out}");
        }
    }
    let (_, decide, _) = convert(&["decide", "--help"]);
    for flag in [
        "--config",
        "--visitor",
        "--experience",
        "--explain",
        "--attr",
        "--location",
        "--environment",
    ] {
        assert!(decide.contains(flag), "{flag} missing:\n{decide}");
    }
}

#[test]
fn version_is_printed() {
    for flag in ["--version", "-V"] {
        let (code, out, err) = convert(&[flag]);
        assert_eq!(code, 0, "{err}");
        assert_eq!(
            out.trim(),
            format!("convert {}", env!("CARGO_PKG_VERSION")),
            "{flag}"
        );
    }
}

#[test]
fn short_v_is_not_the_visitor() {
    let (code, out, err) = convert(&[
        "decide",
        "--config",
        &data("demo-config.json"),
        "-v",
        "alice",
    ]);
    assert_eq!(code, 2, "{out}");
    assert!(out.is_empty(), "{out}");
    assert!(err.contains("unexpected argument 'alice'"), "{err}");
    // The long form and the remaining short flags work.
    let (code, out, err) = convert(&[
        "decide",
        "-c",
        &data("demo-config.json"),
        "--visitor",
        "alice",
        "-e",
        "checkout-button",
        "-a",
        "cart_items=2",
        "-l",
        "url=https://shop.example/checkout",
        "--environment",
        "production",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("visitor \"alice\""), "{out}");
    assert!(
        out.contains("experience \"checkout-button\": variation"),
        "{out}"
    );
}

#[test]
fn usage_errors_exit_with_status_2() {
    for args in [
        &["frobnicate"][..],
        &[][..],
        &["decide", "--visitor", "alice"][..],
        &["simulate", "--config", "x.json"][..],
        &[
            "simulate",
            "--config",
            "x.json",
            "-e",
            "k",
            "--visitors",
            "many",
        ][..],
        &[
            "decide",
            "--config",
            "x.json",
            "--visitor",
            "a",
            "--attr",
            "novalue",
        ][..],
        &["completions", "tcsh"][..],
    ] {
        let (code, out, err) = convert(args);
        assert_eq!(code, 2, "convert {args:?}: {out}{err}");
        assert!(!err.is_empty(), "convert {args:?}");
    }
    // A missing file is a runtime error, reported with its name.
    let (code, _, err) = convert(&[
        "decide",
        "--config",
        "/nonexistent/x.json",
        "--visitor",
        "a",
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("/nonexistent/x.json"), "{err}");
}

#[test]
fn completions_are_generated_for_each_shell() {
    for (shell, needle) in [
        ("bash", "_convert()"),
        ("zsh", "#compdef convert"),
        ("fish", "complete -c convert"),
    ] {
        let (code, out, err) = convert(&["completions", shell]);
        assert_eq!(code, 0, "{shell}: {err}");
        assert!(out.contains(needle), "{shell}:\n{out}");
        assert!(
            out.contains("simulate") && out.contains("visitor"),
            "{shell}"
        );
    }
}

#[test]
fn fetch_errors_name_the_url_without_secrets() {
    // A port nobody listens on: bind, read the port, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let endpoint = format!("http://user:hunter2@127.0.0.1:{port}/api/");
    let (code, out, err) = convert(&[
        "fetch",
        "--sdk-key",
        "10/20",
        "--secret",
        "s3cr3t",
        "--endpoint",
        &endpoint,
    ]);
    assert_eq!(code, 2, "{out}");
    assert!(
        err.contains(&format!("127.0.0.1:{port}/api/config/10/20")),
        "{err}"
    );
    assert!(!err.contains("hunter2") && !err.contains("s3cr3t"), "{err}");
}

#[test]
fn simulate_reports_bad_allocations_instead_of_nan() {
    let cfg = temp_file(
        "bad-alloc.json",
        r#"{"account_id":"1","project":{"id":"2"},"experiences":[{"id":"9","key":"e",
            "variations":[{"id":"a","key":"a","traffic_allocation":"lots"},
                          {"id":"b","key":"b","traffic_allocation":50}]}]}"#,
    );
    let (code, out, err) = convert(&[
        "simulate",
        "--config",
        cfg.to_str().unwrap(),
        "-e",
        "e",
        "-n",
        "200",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(!out.contains("NaN"), "{out}");
    assert!(
        out.contains("traffic_allocation") && out.contains("\"lots\""),
        "the bad allocation is named:\n{out}"
    );
}

/// `convert simulate` of the demo's checkout experience with 100 visitors and `extra` options.
fn simulate_demo(extra: &[&str]) -> (i32, String, String) {
    let demo = data("demo-config.json");
    let mut args = vec![
        "simulate",
        "--config",
        &demo,
        "-e",
        "checkout-button",
        "-n",
        "100",
    ];
    args.extend_from_slice(extra);
    convert(&args)
}

/// Whether a "not matched" line of `out` names `reason` for all 100 visitors.
fn all_not_matched_for(out: &str, reason: &str) -> bool {
    out.lines()
        .any(|l| l.contains("not matched") && l.contains(reason) && l.contains("100"))
}

#[test]
fn simulate_says_why_visitors_are_not_matched() {
    // The demo config runs in production; the default environment is staging.
    let (code, out, err) = simulate_demo(&[]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("production") && err.contains("staging"),
        "{err}"
    );
    assert!(all_not_matched_for(&out, "environment"), "{out}");
    // In production without the checkout page: the location is the reason.
    let prod = ["--environment", "production"];
    let (code, out, err) =
        simulate_demo(&[&prod[..], &["-l", "url=https://shop.example/"]].concat());
    assert_eq!(code, 0, "{err}");
    assert!(err.is_empty(), "{err}");
    assert!(all_not_matched_for(&out, "location"), "{out}");
    // On the checkout page without a cart: the audience is the reason.
    let checkout = ["-l", "url=https://shop.example/checkout"];
    let (_, out, _) = simulate_demo(&[&prod[..], &checkout[..]].concat());
    assert!(all_not_matched_for(&out, "audience"), "{out}");
    // With a cart, nobody is left out.
    let (_, out, _) = simulate_demo(&[&prod[..], &checkout[..], &["-a", "cart_items=1"]].concat());
    assert!(!out.contains("not matched,"), "{out}");
}

#[test]
fn decide_says_when_nothing_runs_in_the_environment() {
    let (code, out, err) = convert(&[
        "decide",
        "--config",
        &data("demo-config.json"),
        "--visitor",
        "alice",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("not matched"), "{out}");
    assert!(
        err.contains("no experience runs in environment \"staging\"")
            && err.contains("\"production\""),
        "{err}"
    );
    let (_, _, err) = convert(&[
        "decide",
        "--config",
        &data("demo-config.json"),
        "--visitor",
        "alice",
        "--environment",
        "production",
    ]);
    assert!(!err.contains("no experience runs"), "{err}");
}

#[test]
fn the_readme_documents_each_commands_exit_status() {
    let readme =
        std::fs::read_to_string(format!("{}/README.md", env!("CARGO_MANIFEST_DIR"))).unwrap();
    let (_, top, _) = convert(&["--help"]);
    // The command names listed by `convert --help` (indented, before the options).
    let commands: Vec<&str> = top
        .split("Commands:")
        .nth(1)
        .unwrap()
        .split("Options:")
        .next()
        .unwrap()
        .lines()
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .collect();
    assert_eq!(commands.len(), COMMANDS.len(), "{top}");
    for cmd in commands {
        assert!(
            readme.contains(&format!("| `{cmd}` |")),
            "cli/README.md has no exit-status row for `{cmd}`"
        );
    }
}

#[test]
fn verbose_shows_the_sdk_log_and_quiet_hides_notes() {
    let cfg = temp_file(
        "regex.json",
        r#"{"account_id":"1","project":{"id":"2"},"audiences":[{"id":"5","key":"aud","rules":{"OR":[{"AND":[{"OR_WHEN":[
            {"rule_type":"generic_text_key_value","key":"k","value":"(a)\\1","matching":{"match_type":"regexMatches","negated":false}}]}]}]}}]}"#,
    );
    let cfg = cfg.to_str().unwrap();
    let (code, _, err) = convert(&["decide", "-c", cfg, "--visitor", "a"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.is_empty(), "silent without -v: {err}");
    let (code, _, err) = convert(&["decide", "-c", cfg, "--visitor", "a", "-v"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("WARN") && err.contains("(a)\\\\1"), "{err}");
    // The environment note, and -q without it.
    let demo = data("demo-config.json");
    let (_, _, err) = convert(&["decide", "-c", &demo, "--visitor", "a"]);
    assert!(err.contains("note: no experience runs"), "{err}");
    let (code, out, err) = convert(&["-q", "decide", "-c", &demo, "--visitor", "a"]);
    assert_eq!(code, 0);
    assert!(err.is_empty() && out.contains("not matched"), "{err}");
    let (code, _, _) = convert(&["decide", "-c", &demo, "--visitor", "a", "-q", "-v"]);
    assert_eq!(code, 2, "-q and -v conflict");
}
