//! Project automation for convert-rs, in the style of rust-analyzer's xtask: plain `std`, no
//! dependencies.
//!
//! - `cargo xtask test`: a fixed list of steps run in order, stopping at the first failure:
//!   formatting check, clippy with `-D warnings`, every test (unit, conformance, golden vectors,
//!   doctests), and the examples. A missing `redis-server` is installed with apt only in CI
//!   (`CI=true`) or when asked (`cargo xtask test --install`), never with `sudo` on a developer's
//!   machine unasked; otherwise the Redis tests are skipped and listed.
//! - `cargo xtask bench-axum [ARGS]`: the axum service benchmark of issue 13 (the async facade
//!   vs `spawn_blocking` + the sync Redis store), a release build of
//!   `axum_service --bench ARGS` (see `examples/support/axum_bench.rs`).
//! - `cargo xtask vectors`: regenerates the golden vectors under `tests/golden/` by running the
//!   published `@convertcom/js-sdk` through the batch protocol.
//! - `cargo xtask differential [--seed N] [--rounds N]`: random configs, visitors and operations
//!   replayed through the published `@convertcom/js-sdk` and the release `convert batch`.
//! - `cargo xtask regex-differential [--seed N] [--rounds N]`: the same for `regexMatches` alone,
//!   on random ECMAScript patterns and values.
//!
//! Only `vectors` and the two differentials need Node.js and npm.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

const HELP: &str = "\
cargo xtask <command>

COMMANDS:
    test       fmt check, clippy -D warnings, all tests (incl. conformance and golden vectors), examples
      --install  install redis-server with apt-get (sudo -n when not root) when it is missing;
                 done anyway in CI (CI=true). Elsewhere a missing redis-server skips the Redis
                 tests, and the list of skipped tests is printed.
    bench-axum [ARGS]
               the axum service on Redis, async facade vs spawn_blocking + the sync store, at
               concurrency 64 (needs redis-server): runs the release build of
               `axum_service --bench ARGS`; one JSON line per run (rps, p50/p99/max ms, errors,
               max OS threads). ARGS: --requests N (20000), --warmup N (N/10),
               --concurrency C (64), --redis-delay-ms D[,D...] (0), --modes async,blocking,
               --rounds R (1; interleaved, then median lines), --redis-url URL (default: a
               throw-away redis-server on a free port)
    vectors    regenerate tests/golden/**/*.js-output.json with the published @convertcom/js-sdk
               (needs node + npm, as the differentials do; nothing else does)
    differential [--seed N] [--rounds N]
               random configs, visitors and operations replayed through the published
               @convertcom/js-sdk and the release `convert batch`, compared record by record
               (needs node + npm; xtask/js-harness/differential.js). Seeds default to the clock;
               rounds to 200. A disagreement prints the case and keeps its request in the
               system temp folder. Not part of `test`.
    regex-differential [--seed N] [--rounds N]
               `regexMatches` alone: random ECMAScript patterns (look-around, backreferences,
               named groups, quantifiers, Annex B corners, patterns JavaScript rejects) and
               values with case-folding corners, asked as `ruleMatch` cases of both tools and
               compared (needs node + npm; xtask/js-harness/regex-differential.js). Seeds
               default to the clock; rounds (300 patterns each) to 20. Patterns V8 needs over
               20 ms for are left out. A disagreement prints the pattern, the value and both
               answers, and keeps the round's request in the system temp folder. Not part of
               `test`.
    help       this text

ENVIRONMENT:
    CONVERT_CONFORMANCE_DIR   the shared conformance data; `test` sets it to ../shared/conformance
                              when unset and that folder exists; `vectors` reads the configs of
                              tests/golden/shared-config from it (default ../shared/conformance)";

/// The workspace root. `cargo xtask` (`cargo run -p xtask`) sets `CARGO_MANIFEST_DIR` when it
/// runs us; that beats the path compiled in, which is stale when two checkouts share one
/// `CARGO_TARGET_DIR` and cargo reuses a binary built from the other one.
fn root() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

fn in_dir(program: &str, dir: &Path) -> Command {
    let mut c = Command::new(program);
    c.current_dir(dir);
    c
}

fn have(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

// ---- steps ----------------------------------------------------------------------------------

/// How a step's output is handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Output {
    /// Inherited: streamed as it comes.
    Stream,
    /// Streamed line by line while the `test result:` lines are summed.
    CountTests,
}

/// One command of a pipeline, named for the messages.
struct Step {
    name: &'static str,
    cmd: Command,
    output: Output,
}

impl Step {
    fn new(name: &'static str, cmd: Command) -> Self {
        Self {
            name,
            cmd,
            output: Output::Stream,
        }
    }

    fn counting(mut self) -> Self {
        self.output = Output::CountTests;
        self
    }
}

/// Test totals summed over `test result:` lines.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Totals {
    passed: usize,
    failed: usize,
}

/// Parses one line of libtest output: `test result: ok. 12 passed; 0 failed; ...`.
fn parse_test_result(line: &str) -> Option<Totals> {
    let rest = line.trim_start().strip_prefix("test result: ")?;
    let count = |what: &str| {
        rest.split(';')
            .find_map(|part| {
                part.trim()
                    .strip_suffix(what)?
                    .split_whitespace()
                    .last()?
                    .parse::<usize>()
                    .ok()
            })
            .unwrap_or(0)
    };
    Some(Totals {
        passed: count(" passed"),
        failed: count(" failed"),
    })
}

fn run_step(step: &mut Step, totals: &mut Totals) -> Result<(), String> {
    use std::io::{BufRead, BufReader, Write};
    let name = step.name;
    eprintln!("\n==> {name}: {:?}", step.cmd);
    let status = match step.output {
        Output::Stream => step
            .cmd
            .status()
            .map_err(|e| format!("step `{name}`: cannot start: {e}"))?,
        Output::CountTests => {
            let mut child = step
                .cmd
                .stdout(Stdio::piped())
                .spawn()
                .map_err(|e| format!("step `{name}`: cannot start: {e}"))?;
            if let Some(out) = child.stdout.take() {
                let stdout = std::io::stdout();
                for line in BufReader::new(out).lines().map_while(Result::ok) {
                    let _ = writeln!(stdout.lock(), "{line}");
                    if let Some(t) = parse_test_result(&line) {
                        totals.passed += t.passed;
                        totals.failed += t.failed;
                    }
                }
            }
            child.wait().map_err(|e| format!("step `{name}`: {e}"))?
        }
    };
    if status.success() {
        Ok(())
    } else {
        Err(format!("step `{name}` failed ({status})"))
    }
}

/// Runs the steps in order and stops at the first failure, naming it and the steps not run.
fn run_pipeline(what: &str, steps: Vec<Step>) -> Result<Totals, String> {
    let mut totals = Totals::default();
    let names: Vec<&str> = steps.iter().map(|s| s.name).collect();
    for (i, mut step) in steps.into_iter().enumerate() {
        if let Err(e) = run_step(&mut step, &mut totals) {
            if step.output == Output::CountTests {
                println!("{} passed, {} failed", totals.passed, totals.failed);
            }
            let skipped = &names[i + 1..];
            return Err(if skipped.is_empty() {
                format!("{what}: {e}")
            } else {
                format!("{what}: {e}; not run: {}", skipped.join(", "))
            });
        }
    }
    eprintln!("\n{what}: all {} steps passed", names.len());
    Ok(totals)
}

// ---- cargo xtask test -----------------------------------------------------------------------

/// The tests that need `redis-server`; listed when they are skipped.
const REDIS_TESTS: &[&str] = &[
    "adapters/redis-store/tests/redis.rs (the Redis store: contract suite, outages, TLS)",
    "sdk/tests/persistence.rs (Redis deduplication and outage cases)",
    "cli/tests/persistent_batch.rs (batch runs with a Redis store)",
    "the redis_dedup example",
    "the async_redis example",
    "the axum_service benchmark smoke run",
];

/// The examples that start their own `redis-server`; without one they cannot run.
const REDIS_EXAMPLES: &[&str] = &[
    "example redis_dedup",
    "example async_redis",
    "example axum_service bench (smoke)",
];

/// What `cargo xtask test` does about `redis-server`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RedisPlan {
    /// It is installed: the Redis tests run and must pass (`CONVERT_REQUIRE_REDIS=1`).
    Use,
    /// Install it with apt-get (through `sudo -n` when not root), then use it.
    Install {
        /// Whether apt-get runs through `sudo -n`.
        sudo: bool,
    },
    /// A developer's machine without it, not asked to install: the Redis tests are skipped.
    Skip,
}

/// Installing is done only in CI or when asked (`--install`); `sudo` is never used unasked on a
/// developer's machine.
fn redis_plan(installed: bool, ci: bool, install: bool, root: bool, apt: bool) -> RedisPlan {
    if installed {
        RedisPlan::Use
    } else if (ci || install) && apt {
        RedisPlan::Install { sudo: !root }
    } else {
        RedisPlan::Skip
    }
}

/// Whether we run in CI: `CI` set to anything but empty, `0` or `false` (CI services set
/// `CI=true`; so does `.ci/run`).
fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !matches!(v.trim(), "" | "0" | "false" | "FALSE"))
}

/// Makes `redis-server` available for the Redis store tests when it is installed, in CI, or when
/// asked (`--install`). Sets `CONVERT_REQUIRE_REDIS=1` when it is there, so the tests fail instead
/// of skipping. Returns whether the Redis tests run.
fn ensure_redis(env: &mut Vec<(String, String)>, install: bool) -> Result<bool, String> {
    let ci = in_ci();
    let plan = redis_plan(
        have("redis-server"),
        ci,
        install,
        is_root(),
        have("apt-get"),
    );
    if let RedisPlan::Install { sudo } = plan {
        eprintln!(
            "\n==> redis-server not found; installing it with {}apt-get ({})",
            if sudo { "sudo -n " } else { "" },
            if install { "--install" } else { "CI" }
        );
        let apt = |args: &[&str]| {
            let mut c = if sudo {
                let mut c = Command::new("sudo");
                c.args(["-n", "apt-get"]);
                c
            } else {
                Command::new("apt-get")
            };
            c.args(args).env("DEBIAN_FRONTEND", "noninteractive");
            c.status().is_ok_and(|s| s.success())
        };
        let _ = apt(&["update", "-qq"]);
        if !apt(&["install", "-y", "-qq", "redis-server"]) {
            eprintln!("    could not install redis-server");
        }
    }
    if have("redis-server") {
        env.push(("CONVERT_REQUIRE_REDIS".into(), "1".into()));
        return Ok(true);
    }
    if ci || install {
        return Err(
            "redis-server is required (CI or --install) and could not be installed: apt-get install redis-server"
                .into(),
        );
    }
    eprintln!("\n==> redis-server not found: SKIPPING the tests that need it:");
    for t in REDIS_TESTS {
        eprintln!("      - {t}");
    }
    eprintln!(
        "    Install it (e.g. `sudo apt-get install redis-server`) or run `cargo xtask test --install`."
    );
    Ok(false)
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// The environment every test step gets, and whether the Redis tests run.
fn test_env(install: bool) -> Result<(Vec<(String, String)>, bool), String> {
    let mut env = Vec::new();
    if std::env::var_os("CONVERT_CONFORMANCE_DIR").is_none() {
        let shared = root().join("../shared/conformance");
        if shared.is_dir() {
            // Absolute: cargo runs each test binary in its own crate directory.
            let shared = shared.canonicalize().unwrap_or(shared);
            env.push((
                "CONVERT_CONFORMANCE_DIR".into(),
                shared.display().to_string(),
            ));
        }
    }
    let redis = ensure_redis(&mut env, install)?;
    Ok((env, redis))
}

/// The steps of `cargo xtask test`, in order. Add new checks here.
fn test_steps(env: &[(String, String)]) -> Vec<Step> {
    let cargo_with_env = |args: &[&str]| {
        let mut c = cargo();
        c.current_dir(root()).args(args);
        for (k, v) in env {
            c.env(k, v);
        }
        c
    };
    vec![
        Step::new("format", cargo_with_env(&["fmt", "--all", "--", "--check"])),
        Step::new(
            "clippy",
            cargo_with_env(&[
                "clippy",
                "--workspace",
                "--all-targets",
                "--all-features",
                "--",
                "-D",
                "warnings",
            ]),
        ),
        // The SDK's code under `cfg(not(feature = ...))` is only compiled without the features.
        Step::new(
            "clippy (convert-sdk, default features)",
            cargo_with_env(&[
                "clippy",
                "-p",
                "convert-sdk",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ]),
        ),
        Step::new("docs", {
            let mut c = cargo_with_env(&[
                "doc",
                "--workspace",
                "--no-deps",
                "--all-features",
                "--quiet",
            ]);
            c.env("RUSTDOCFLAGS", "-D warnings");
            c
        }),
        Step::new(
            "tests",
            cargo_with_env(&["test", "--workspace", "--all-features"]),
        )
        .counting(),
        // `--workspace` unifies the `convert` binary's serde_json features (preserve_order,
        // float_roundtrip) into every crate; the library crates alone build without them, as in
        // an integrator's program, and must pass there too.
        Step::new(
            "library tests without the CLI's serde_json features",
            cargo_with_env(&[
                "test",
                "-p",
                "convert-core",
                "-p",
                "convert-sdk",
                "-p",
                "convert-ports",
                "-p",
                "convert-store-memory",
                "-p",
                "convert-openfeature",
                "--all-features",
            ]),
        )
        .counting(),
        Step::new(
            "example quickstart",
            cargo_with_env(&["run", "--quiet", "--example", "quickstart"]),
        ),
        Step::new(
            "example custom_transport",
            cargo_with_env(&["run", "--quiet", "--example", "custom_transport"]),
        ),
        Step::new(
            "example sdk_key",
            cargo_with_env(&["run", "--quiet", "--example", "sdk_key"]),
        ),
        Step::new(
            "example sqlite_store",
            cargo_with_env(&[
                "run",
                "--quiet",
                "--example",
                "sqlite_store",
                "--features",
                "convert-sdk/sqlite",
            ]),
        ),
        Step::new(
            "example redis_dedup",
            cargo_with_env(&[
                "run",
                "--quiet",
                "--example",
                "redis_dedup",
                "--features",
                "convert-sdk/redis",
            ]),
        ),
        Step::new(
            "example async_redis",
            cargo_with_env(&[
                "run",
                "--quiet",
                "--example",
                "async_redis",
                "--features",
                "convert-sdk/redis,convert-sdk/tokio",
                "--",
                "--self-test",
                "--visitors",
                "2000",
            ]),
        ),
        Step::new(
            "example axum_service",
            cargo_with_env(&[
                "run",
                "--quiet",
                "--example",
                "axum_service",
                "--features",
                "convert-sdk/redis,convert-sdk/tokio",
                "--",
                "--self-test",
            ]),
        ),
        // The benchmark's smoke run, so it cannot rot: both modes, a few hundred requests; it
        // fails unless every request was answered as expected without a store error.
        Step::new(
            "example axum_service bench (smoke)",
            cargo_with_env(
                &[
                    &["run", "--quiet"][..],
                    AXUM_BENCH,
                    &["--requests", "300", "--warmup", "30"],
                ]
                .concat(),
            ),
        ),
        Step::new(
            "example openfeature_axum",
            cargo_with_env(&[
                "run",
                "--quiet",
                "--example",
                "openfeature_axum",
                "--",
                "--self-test",
            ]),
        ),
    ]
}

/// The crates that must not appear in a crate's normal dependency tree with some features.
const BOUNDARIES: &[(&str, &[&str], &[&str])] = &[
    // The pure core: no I/O, no threads.
    (
        "convert-core",
        &[],
        &["ureq", "redis", "rusqlite", "crossbeam-channel", "tokio"],
    ),
    // tokio only behind the `tokio`/`async` features (the async facade and store).
    ("convert-sdk", &[], &["tokio"]),
    ("convert-sdk", &["--features", "redis,sqlite"], &["tokio"]),
    ("convert-ports", &["--features", "async"], &["tokio"]),
    ("convert-store-redis", &[], &["tokio"]),
    // The SDK without features: no transport or store backend compiled.
    (
        "convert-sdk",
        &["--no-default-features"],
        &["ureq", "redis", "rusqlite"],
    ),
    (
        "convert-sdk",
        &["--no-default-features", "--features", "redis"],
        &["ureq", "rusqlite"],
    ),
    (
        "convert-sdk",
        &["--no-default-features", "--features", "sqlite"],
        &["ureq", "redis"],
    ),
];

/// Checks the dependency boundaries with `cargo tree`.
fn check_boundaries() -> Result<(), String> {
    eprintln!("\n==> dependency boundaries");
    for (krate, flags, forbidden) in BOUNDARIES {
        let out = cargo()
            .current_dir(root())
            .args(["tree", "-p", krate, "-e", "normal", "--prefix", "none"])
            .args(*flags)
            .output()
            .map_err(|e| format!("cargo tree: {e}"))?;
        if !out.status.success() {
            return Err(format!("cargo tree -p {krate} {flags:?} failed"));
        }
        let tree = String::from_utf8_lossy(&out.stdout);
        for dep in *forbidden {
            if tree.lines().any(|l| l.starts_with(&format!("{dep} "))) {
                return Err(format!("{krate} {flags:?} depends on {dep}"));
            }
        }
        eprintln!("    {krate} {flags:?}: none of {forbidden:?}");
    }
    Ok(())
}

/// The published library crates: none may enable a `serde_json` feature in [`SERDE_JSON_FORBIDDEN`]
/// (features unify into the integrator's program; issue 12 item 7).
const LIBRARIES: &[&str] = &[
    "convert-core",
    "convert-ports",
    "convert-sdk",
    "convert-store-memory",
    "convert-transport-ureq",
    "convert-store-redis",
    "convert-store-sqlite",
    "convert-openfeature",
];

/// `serde_json` features that change how the integrator's own JSON behaves.
const SERDE_JSON_FORBIDDEN: &[&str] = &["preserve_order", "float_roundtrip", "arbitrary_precision"];

/// The `serde_json` features listed in `cargo tree -e normal,features --prefix none` output.
fn serde_json_features(tree: &str) -> Vec<&str> {
    let mut out: Vec<&str> = tree
        .lines()
        .filter_map(|l| l.strip_prefix("serde_json feature \""))
        .filter_map(|l| l.split('"').next())
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// Checks with `cargo tree` that no library crate, built alone with all its features (as an
/// integrator's program would build it), enables a forbidden `serde_json` feature.
fn check_serde_json_features() -> Result<(), String> {
    eprintln!("\n==> serde_json features of the library crates");
    for krate in LIBRARIES {
        let out = cargo()
            .current_dir(root())
            .args([
                "tree",
                "-p",
                krate,
                "--all-features",
                "-e",
                "normal,features",
            ])
            .args(["--prefix", "none"])
            .output()
            .map_err(|e| format!("cargo tree: {e}"))?;
        if !out.status.success() {
            return Err(format!("cargo tree -p {krate} -e features failed"));
        }
        let tree = String::from_utf8_lossy(&out.stdout);
        let features = serde_json_features(&tree);
        if let Some(bad) = features.iter().find(|f| SERDE_JSON_FORBIDDEN.contains(f)) {
            return Err(format!(
                "{krate} enables serde_json feature `{bad}`, which would leak into every program \
                 depending on it (see docs/architecture.md, \"serde_json features\")"
            ));
        }
        eprintln!("    {krate}: serde_json features {features:?}");
    }
    Ok(())
}

/// The only file allowed to use `unsafe` (the workspace denies `unsafe_code`; see its
/// `Cargo.toml`).
const UNSAFE_ALLOWED_IN: &str = "adapters/memory-store/src/prefetch.rs";

/// Whether Rust source `text` has an attribute that opts out of the workspace's `unsafe_code`
/// lint (`allow`, `expect`, also inside `cfg_attr`).
fn allows_unsafe(text: &str) -> bool {
    text.lines().any(|l| {
        let l = l.trim_start();
        (l.starts_with("#[") || l.starts_with("#!["))
            && l.contains("unsafe_code")
            && (l.contains("allow") || l.contains("expect"))
    })
}

/// Whether a member crate's manifest `text` takes the workspace's lints (and so its
/// `unsafe_code = "deny"`).
fn uses_workspace_lints(text: &str) -> bool {
    let mut in_lints = false;
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            in_lints = line == "[lints]";
        } else if in_lints && line.replace(' ', "") == "workspace=true" {
            return true;
        }
    }
    false
}

/// The `.rs` and `Cargo.toml` files under `dir`, skipping build output and Node modules.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for entry in entries {
        let path = entry.map_err(|e| format!("{}: {e}", dir.display()))?.path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if path.is_dir() {
            if !matches!(name, "target" | "node_modules" | ".git") {
                rust_files(&path, out)?;
            }
        } else if name.ends_with(".rs") || name == "Cargo.toml" {
            out.push(path);
        }
    }
    Ok(())
}

/// Checks that every member crate takes the workspace's lints and that no file but
/// [`UNSAFE_ALLOWED_IN`] allows `unsafe` code.
fn check_unsafe() -> Result<(), String> {
    eprintln!("\n==> unsafe code");
    let root = root();
    let mut files = Vec::new();
    rust_files(&root, &mut files)?;
    let allowed = root.join(UNSAFE_ALLOWED_IN);
    for file in files {
        let text =
            std::fs::read_to_string(&file).map_err(|e| format!("{}: {e}", file.display()))?;
        if file.ends_with("Cargo.toml") {
            if file != root.join("Cargo.toml") && !uses_workspace_lints(&text) {
                return Err(format!(
                    "{} does not take the workspace's lints ([lints] workspace = true)",
                    file.display()
                ));
            }
        } else if file != allowed && allows_unsafe(&text) {
            return Err(format!(
                "{} allows unsafe_code; only {UNSAFE_ALLOWED_IN} may",
                file.display()
            ));
        }
    }
    eprintln!("    only {UNSAFE_ALLOWED_IN} allows it");
    Ok(())
}

fn test(install: bool) -> Result<(), String> {
    check_unsafe()?;
    check_boundaries()?;
    check_serde_json_features()?;
    let (env, redis) = test_env(install)?;
    let mut steps = test_steps(&env);
    if !redis {
        // The example starts its own redis-server; without one it cannot run.
        steps.retain(|s| !REDIS_EXAMPLES.contains(&s.name));
    }
    let result = run_pipeline("xtask test", steps);
    if !redis {
        eprintln!(
            "\nnote: the Redis tests were SKIPPED (redis-server not installed; see the list above)"
        );
    }
    let totals = result?;
    println!("{} passed, {} failed", totals.passed, totals.failed);
    Ok(())
}

// ---- cargo xtask bench-axum ----------------------------------------------------------------

/// The features the axum_service example needs.
const AXUM_FEATURES: &str = "convert-sdk/redis,convert-sdk/tokio";

/// `cargo run` arguments after `run [--release]` for `axum_service --bench`.
const AXUM_BENCH: &[&str] = &[
    "--example",
    "axum_service",
    "--features",
    AXUM_FEATURES,
    "--",
    "--bench",
];

/// `cargo run --release` of `axum_service --bench` with `args`.
fn bench_axum_command(args: &[String]) -> Command {
    let mut c = cargo();
    c.current_dir(root())
        .args(["run", "--release", "--quiet"])
        .args(AXUM_BENCH)
        .args(args);
    c
}

fn bench_axum(args: &[String]) -> Result<(), String> {
    if !have("redis-server") {
        return Err("bench-axum needs redis-server on PATH (apt-get install redis-server)".into());
    }
    let status = bench_axum_command(args)
        .status()
        .map_err(|e| format!("cargo run: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("axum_service --bench failed ({status})"))
    }
}

// ---- cargo xtask differential, cargo xtask regex-differential --------------------------------

/// A random differential against the published @convertcom/js-sdk: a script of
/// `xtask/js-harness` that replays its requests through `batch.js` and the release `convert batch`.
struct Differential {
    /// The xtask command, for the messages.
    command: &'static str,
    /// The script in `xtask/js-harness`.
    script: &'static str,
    /// `--rounds` when none is given.
    rounds: &'static str,
}

/// Random configs, visitors and operations (`differential.js`).
const CONFIGS: Differential = Differential {
    command: "differential",
    script: "differential.js",
    rounds: "200",
};

/// Random ECMAScript patterns and values for `regexMatches` (`regex-differential.js`).
const REGEX: Differential = Differential {
    command: "regex-differential",
    script: "regex-differential.js",
    rounds: "20",
};

/// The arguments a differential script takes from `cargo xtask <command> ARGS`: `--seed N` and
/// `--rounds N`, checked here so that a typo fails before anything is built.
fn differential_args(d: &Differential, args: &[String]) -> Result<Vec<String>, String> {
    let command = d.command;
    let mut out = Vec::new();
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        if flag != "--seed" && flag != "--rounds" {
            return Err(format!("{command}: unknown argument `{flag}`\n\n{HELP}"));
        }
        match it.next() {
            Some(n) if n.parse::<u64>().is_ok() => out.extend([flag.clone(), n.clone()]),
            _ => return Err(format!("{command}: `{flag}` needs a whole number")),
        }
    }
    if !out.iter().any(|a| a == "--rounds") {
        out.extend(["--rounds".to_string(), d.rounds.to_string()]);
    }
    Ok(out)
}

fn run_differential(d: &Differential, args: &[String]) -> Result<(), String> {
    let forwarded = differential_args(d, args)?;
    for tool in ["node", "npm"] {
        if !have(tool) {
            return Err(format!(
                "`cargo xtask {}` needs Node.js and npm on PATH (`{tool}` not found)",
                d.command
            ));
        }
    }
    let harness = root().join("xtask/js-harness");
    let mut build = cargo();
    build
        .current_dir(root())
        .args(["build", "--release", "-p", "convert-cli"]);
    let mut steps = vec![Step::new("build convert (release)", build)];
    if !harness.join("node_modules/@convertcom/js-sdk").is_dir() {
        steps.push(Step::new("npm ci", {
            let mut c = in_dir("npm", &harness);
            c.args(["ci", "--no-audit", "--no-fund"]);
            c
        }));
    }
    run_pipeline(&format!("xtask {}", d.command), steps)?;
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root().join("target"), PathBuf::from);
    let convert = target.join("release/convert");
    let status = in_dir("node", &harness)
        .arg(d.script)
        .arg("--convert")
        .arg(&convert)
        .args(&forwarded)
        .status()
        .map_err(|e| format!("cannot run node: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err("the reference and convert-rs disagreed (cases above)".into())
    }
}

fn differential(args: &[String]) -> Result<(), String> {
    run_differential(&CONFIGS, args)
}

fn regex_differential(args: &[String]) -> Result<(), String> {
    run_differential(&REGEX, args)
}

// ---- cargo xtask vectors --------------------------------------------------------------------

/// The golden requests: `tests/golden/*.request.json` (compared by `cli/tests/golden.rs`) and
/// `tests/golden/informative/*.request.json` (recorded only).
fn golden_requests(golden: &Path) -> Result<Vec<PathBuf>, String> {
    let mut found = Vec::new();
    for dir in [golden.to_path_buf(), golden.join("informative")] {
        if !dir.is_dir() {
            continue;
        }
        let entries =
            std::fs::read_dir(&dir).map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
        found.extend(
            entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.is_file() && p.to_string_lossy().ends_with(".request.json")),
        );
    }
    found.sort();
    Ok(found)
}

/// `tests/golden/shared-config/*.request.json`: requests whose config is a file of the shared
/// conformance folder (named by `configFile`, never committed here).
fn shared_config_requests(dir: &Path) -> Result<Vec<PathBuf>, String> {
    if !dir.is_dir() {
        return Ok(Vec::new());
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("cannot list {}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.to_string_lossy().ends_with(".request.json"))
        .collect();
    found.sort();
    Ok(found)
}

fn vectors() -> Result<(), String> {
    for tool in ["node", "npm"] {
        if !have(tool) {
            return Err(format!(
                "`cargo xtask vectors` needs Node.js and npm on PATH (`{tool}` not found); \
                 only it and the differentials need them"
            ));
        }
    }
    let harness = root().join("xtask/js-harness");
    // The lock file pins @convertcom/js-sdk 4.4.3 (with its integrity) and murmurhash 2.0.1;
    // .npmrc keeps npm from chasing the SDK's open-ended peer dependencies (its bundle is
    // self-contained).
    let install: &[&str] = if harness.join("package-lock.json").is_file() {
        &["ci", "--no-audit", "--no-fund"]
    } else {
        &["install", "--no-audit", "--no-fund"]
    };
    let mut steps = vec![Step::new("npm install", {
        let mut c = in_dir("npm", &harness);
        c.args(install);
        c
    })];
    if harness.join("make-requests.js").is_file() {
        steps.push(Step::new("write the golden requests", {
            let mut c = in_dir("node", &harness);
            c.arg("make-requests.js");
            c
        }));
    }
    run_pipeline("xtask vectors", steps)?;

    let requests = golden_requests(&root().join("tests/golden"))?;
    if requests.is_empty() {
        return Err("no tests/golden/*.request.json found".into());
    }
    // Requests on a shared conformance config name it in `configFile`; batch.js loads it.
    let shared = shared_config_requests(&root().join("tests/golden/shared-config"))?;
    let conformance = if shared.is_empty() {
        None
    } else {
        let dir = std::env::var_os("CONVERT_CONFORMANCE_DIR")
            .map_or_else(|| root().join("../shared/conformance"), PathBuf::from);
        if !dir.is_dir() {
            return Err(format!(
                "tests/golden/shared-config needs the shared conformance folder; {} is not one \
                 (set CONVERT_CONFORMANCE_DIR)",
                dir.display()
            ));
        }
        Some(dir)
    };
    for req in requests.into_iter().chain(shared) {
        let out_path = PathBuf::from(
            req.to_string_lossy()
                .replace(".request.json", ".js-output.json"),
        );
        eprintln!("==> {} -> {}", req.display(), out_path.display());
        let mut node = Command::new("node");
        node.arg(harness.join("batch.js")).arg("--input").arg(&req);
        if let Some(dir) = &conformance {
            node.arg("--conformance-dir").arg(dir);
        }
        let out = node.output().map_err(|e| format!("cannot run node: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "batch.js failed on {}: {}",
                req.display(),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        std::fs::write(&out_path, &out.stdout)
            .map_err(|e| format!("cannot write {}: {e}", out_path.display()))?;
    }
    eprintln!("\nxtask vectors: done");
    Ok(())
}

/// A command that takes the rest of the command line.
type WithArgs = fn(&[String]) -> Result<(), String>;

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1).peekable();
    let command = args.next().unwrap_or_default();
    let install = command == "test" && args.next_if(|a| a == "--install").is_some();
    // Commands that take their own arguments get the rest of the command line.
    let with_args: Option<WithArgs> = match command.as_str() {
        "differential" => Some(differential),
        "regex-differential" => Some(regex_differential),
        "bench-axum" => Some(bench_axum),
        _ => None,
    };
    if let Some(run) = with_args {
        let rest: Vec<String> = args.collect();
        return exit_code(run(&rest));
    }
    if let Some(extra) = args.next() {
        eprintln!("xtask: unexpected argument `{extra}`\n\n{HELP}");
        return ExitCode::FAILURE;
    }
    let result = match command.as_str() {
        "test" => test(install),
        "vectors" => vectors(),
        "" | "help" | "--help" | "-h" => {
            println!("{HELP}");
            return ExitCode::SUCCESS;
        }
        other => Err(format!("unknown command `{other}`\n\n{HELP}")),
    };
    exit_code(result)
}

/// A command's result as the process exit status, its error printed.
fn exit_code(result: Result<(), String>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("\nxtask: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Command-line arguments as `cargo xtask` receives them.
    fn args(v: &[&str]) -> Vec<String> {
        v.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn redis_is_installed_only_in_ci_or_when_asked() {
        // (installed, ci, install, root, apt)
        assert_eq!(redis_plan(true, true, true, false, true), RedisPlan::Use);
        assert_eq!(redis_plan(true, false, false, false, true), RedisPlan::Use);
        // A developer's machine, not asked: no apt-get, no sudo.
        assert_eq!(
            redis_plan(false, false, false, false, true),
            RedisPlan::Skip
        );
        assert_eq!(redis_plan(false, false, false, true, true), RedisPlan::Skip);
        // Asked, or in CI: apt-get, through sudo -n only when not root.
        assert_eq!(
            redis_plan(false, false, true, false, true),
            RedisPlan::Install { sudo: true }
        );
        assert_eq!(
            redis_plan(false, true, false, true, true),
            RedisPlan::Install { sudo: false }
        );
        // No apt-get: nothing to run.
        assert_eq!(redis_plan(false, true, true, true, false), RedisPlan::Skip);
    }

    #[test]
    fn lists_serde_json_features_from_cargo_tree() {
        let tree = "convert-sdk v0.1.0 (/w/sdk)\nserde_json feature \"std\"\nserde_json v1.0.154\n\
                    serde_json feature \"preserve_order\" (*)\nindexmap feature \"std\"\n\
                    serde_json feature \"std\"\n";
        assert_eq!(serde_json_features(tree), ["preserve_order", "std"]);
        assert!(serde_json_features("serde_json v1.0.154\n").is_empty());
    }

    #[test]
    fn differential_forwards_seed_and_rounds_and_rejects_anything_else() {
        assert_eq!(
            differential_args(&CONFIGS, &args(&["--seed", "7"])).unwrap(),
            args(&["--seed", "7", "--rounds", "200"])
        );
        assert_eq!(
            differential_args(&CONFIGS, &args(&["--rounds", "5", "--seed", "1"])).unwrap(),
            args(&["--rounds", "5", "--seed", "1"])
        );
        assert!(differential_args(&CONFIGS, &args(&["--seed"])).is_err());
        assert!(differential_args(&CONFIGS, &args(&["--seed", "x"])).is_err());
        assert!(differential_args(&CONFIGS, &args(&["--out", "/tmp"])).is_err());
    }

    #[test]
    fn regex_differential_defaults_to_20_rounds_and_rejects_anything_else() {
        assert_eq!(
            differential_args(&REGEX, &[]).unwrap(),
            args(&["--rounds", "20"])
        );
        assert_eq!(
            differential_args(&REGEX, &args(&["--seed", "1"])).unwrap(),
            args(&["--seed", "1", "--rounds", "20"])
        );
        assert_eq!(
            differential_args(&REGEX, &args(&["--seed", "3", "--rounds", "2"])).unwrap(),
            args(&["--seed", "3", "--rounds", "2"])
        );
        assert!(differential_args(&REGEX, &args(&["--rounds", "-1"])).is_err());
        // --patterns and --out are the script's own; the command does not forward them.
        let err = differential_args(&REGEX, &args(&["--patterns", "10"])).unwrap_err();
        assert!(
            err.starts_with("regex-differential: unknown argument `--patterns`"),
            "{err}"
        );
        // The script the command runs is in the harness folder.
        assert!(root().join("xtask/js-harness").join(REGEX.script).is_file());
    }

    #[test]
    fn bench_axum_runs_the_release_example_with_the_given_arguments() {
        let args = ["--redis-delay-ms".to_string(), "0,20".to_string()];
        let c = bench_axum_command(&args);
        let got: Vec<String> = c
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let at = |flag: &str| got.iter().position(|a| a == flag).unwrap();
        assert!(got.contains(&"--release".to_string()));
        assert_eq!(got[at("--example") + 1], "axum_service");
        assert_eq!(got[at("--features") + 1], AXUM_FEATURES);
        // The benchmark's own arguments come after `--`, in order.
        assert_eq!(got[at("--") + 1..], ["--bench", "--redis-delay-ms", "0,20"]);
    }

    #[test]
    fn finds_files_that_allow_unsafe_code() {
        assert!(allows_unsafe("#[allow(unsafe_code)]\nfn f() {}"));
        assert!(allows_unsafe("#![allow(unsafe_code)]"));
        assert!(allows_unsafe("#[expect(unsafe_code)]"));
        assert!(allows_unsafe("  #[cfg_attr(x, allow(unsafe_code))]"));
        assert!(!allows_unsafe(
            "// allow(unsafe_code) in a comment\nfn f() {}"
        ));
        assert!(!allows_unsafe("#![deny(unsafe_code)]"));
        let mut files = Vec::new();
        rust_files(&root(), &mut files).unwrap();
        let allowing: Vec<_> = files
            .iter()
            .filter(|f| f.extension().is_some_and(|e| e == "rs"))
            .filter(|f| allows_unsafe(&std::fs::read_to_string(f).unwrap()))
            .collect();
        assert_eq!(allowing, [&root().join(UNSAFE_ALLOWED_IN)]);
        assert!(uses_workspace_lints(
            "[package]\nname = \"x\"\n\n[lints]\nworkspace = true\n"
        ));
        assert!(!uses_workspace_lints(
            "[package]\nworkspace = true\n[lints.rust]\nunsafe_code = \"allow\"\n"
        ));
        assert!(check_unsafe().is_ok());
    }

    #[test]
    fn parses_libtest_summaries() {
        assert_eq!(
            parse_test_result(
                "test result: ok. 12 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.01s"
            ),
            Some(Totals {
                passed: 12,
                failed: 0
            })
        );
        assert_eq!(
            parse_test_result("test result: FAILED. 3 passed; 2 failed; 0 ignored"),
            Some(Totals {
                passed: 3,
                failed: 2
            })
        );
        assert_eq!(parse_test_result("running 3 tests"), None);
    }

    fn shell(name: &'static str, script: &str) -> Step {
        let mut c = Command::new("sh");
        c.args(["-c", script]);
        Step::new(name, c)
    }

    #[test]
    fn pipeline_stops_at_the_first_failing_step() {
        let marker = std::env::temp_dir().join(format!("xtask-pipeline-{}", std::process::id()));
        let _ = std::fs::remove_file(&marker);
        let steps = vec![
            shell("first", "true"),
            shell("second", "exit 3"),
            shell("third", &format!("touch '{}'", marker.display())),
        ];
        let err = run_pipeline("demo", steps).unwrap_err();
        assert!(err.contains("step `second` failed"), "{err}");
        assert!(err.ends_with("not run: third"), "{err}");
        assert!(!marker.exists(), "a step after the failure ran");
    }

    #[test]
    fn pipeline_passes_when_every_step_passes() {
        let steps = vec![shell("a", "true"), shell("b", "true")];
        assert_eq!(run_pipeline("demo", steps), Ok(Totals::default()));
    }

    #[test]
    fn shared_config_requests_are_listed_apart_from_the_golden_ones() {
        let shared = shared_config_requests(&root().join("tests/golden/shared-config")).unwrap();
        assert!(
            shared
                .iter()
                .any(|p| p.ends_with("shared-config/realistic.request.json"))
        );
        let golden = golden_requests(&root().join("tests/golden")).unwrap();
        assert!(golden.iter().all(|p| !shared.contains(p)));
    }

    #[test]
    fn golden_requests_include_the_informative_folder() {
        let found = golden_requests(&root().join("tests/golden")).unwrap();
        assert!(
            found
                .iter()
                .any(|p| p.ends_with("informative/anchored-layout.request.json"))
        );
        assert!(
            found
                .iter()
                .all(|p| p.to_string_lossy().ends_with(".request.json"))
        );
    }
}
