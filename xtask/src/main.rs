//! Project automation for convert-rs, in the style of rust-analyzer's xtask: plain `std`, no
//! dependencies.
//!
//! - `cargo xtask test`: formatting check, clippy with `-D warnings`, every test (unit,
//!   conformance, golden vectors, doctests), and the examples. Installs `redis-server` with apt when
//!   it is missing and that is possible, so the Redis tests run for real.
//! - `cargo xtask vectors`: regenerates the golden vectors under `tests/golden/` by running the
//!   published `@convertcom/js-sdk` through the batch protocol (needs Node.js and npm).

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

const HELP: &str = "\
cargo xtask <command>

COMMANDS:
    test       fmt check, clippy -D warnings, all tests (incl. conformance and golden vectors), examples
    vectors    regenerate tests/golden/*.js-output.json with the published @convertcom/js-sdk (needs node + npm)
    help       this text";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

fn run(step: &str, cmd: &mut Command) -> Result<(), String> {
    eprintln!("\n==> {step}: {cmd:?}");
    let status = cmd
        .current_dir(root())
        .status()
        .map_err(|e| format!("{step}: cannot start: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{step} failed ({status})"))
    }
}

/// Runs a test command, streaming its output, and sums the `test result:` lines.
fn run_counting(step: &str, cmd: &mut Command) -> Result<(usize, usize), String> {
    use std::io::{BufRead, BufReader, Write};
    eprintln!("\n==> {step}: {cmd:?}");
    let mut child = cmd
        .current_dir(root())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("{step}: cannot start: {e}"))?;
    let (mut passed, mut failed) = (0, 0);
    if let Some(out) = child.stdout.take() {
        let stdout = std::io::stdout();
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            let _ = writeln!(stdout.lock(), "{line}");
            if let Some(rest) = line.strip_prefix("test result: ") {
                let count = |what: &str| {
                    rest.split(';')
                        .find_map(|p| {
                            p.trim()
                                .strip_suffix(what)?
                                .split_whitespace()
                                .last()?
                                .parse::<usize>()
                                .ok()
                        })
                        .unwrap_or(0)
                };
                passed += count("passed");
                failed += count("failed");
            }
        }
    }
    let status = child.wait().map_err(|e| format!("{step}: {e}"))?;
    if status.success() {
        Ok((passed, failed))
    } else {
        println!("{passed} passed, {failed} failed");
        Err(format!("{step} failed ({status})"))
    }
}

fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

fn have(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Makes `redis-server` available for the Redis store tests: installed with apt when missing and
/// possible. Sets `CONVERT_REQUIRE_REDIS=1` when it is there, so the tests fail instead of skipping.
fn ensure_redis(cmd_env: &mut Vec<(String, String)>) -> Result<(), String> {
    if !have("redis-server") && have("apt-get") {
        eprintln!("\n==> redis-server not found; installing it with apt-get");
        let sudo = if is_root() {
            vec![]
        } else {
            vec!["sudo", "-n"]
        };
        let apt = |args: &[&str]| {
            let mut c = Command::new(if sudo.is_empty() { "apt-get" } else { "sudo" });
            if !sudo.is_empty() {
                c.arg("-n").arg("apt-get");
            }
            c.args(args).env("DEBIAN_FRONTEND", "noninteractive");
            c.status().is_ok_and(|s| s.success())
        };
        let _ = apt(&["update", "-qq"]);
        if !apt(&["install", "-y", "-qq", "redis-server"]) {
            eprintln!("    could not install redis-server");
        }
    }
    if have("redis-server") {
        cmd_env.push(("CONVERT_REQUIRE_REDIS".into(), "1".into()));
        Ok(())
    } else if std::env::var_os("CI").is_some() {
        Err("redis-server is required in CI and could not be installed (apt-get install redis-server)".into())
    } else {
        eprintln!("    warning: redis-server unavailable; the Redis store tests will be skipped");
        Ok(())
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn test() -> Result<(), String> {
    let mut env: Vec<(String, String)> = Vec::new();
    if std::env::var_os("CONVERT_CONFORMANCE_DIR").is_none() {
        let shared = root().join("../shared/conformance");
        if shared.is_dir() {
            env.push((
                "CONVERT_CONFORMANCE_DIR".into(),
                shared.display().to_string(),
            ));
        }
    }
    ensure_redis(&mut env)?;
    let with_env = |mut c: Command| {
        for (k, v) in &env {
            c.env(k, v);
        }
        c
    };
    run("format", cargo().args(["fmt", "--all", "--", "--check"]))?;
    run(
        "clippy",
        cargo().args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--all-features",
            "--",
            "-D",
            "warnings",
        ]),
    )?;
    let (passed, failed) = run_counting(
        "tests",
        with_env(cargo()).args(["test", "--workspace", "--all-features"]),
    )?;
    run(
        "example quickstart",
        with_env(cargo()).args(["run", "--quiet", "--example", "quickstart"]),
    )?;
    eprintln!("\nxtask test: all steps passed");
    println!("{passed} passed, {failed} failed");
    Ok(())
}

fn in_dir(program: &str, dir: &Path) -> Command {
    let mut c = Command::new(program);
    c.current_dir(dir);
    c
}

fn vectors() -> Result<(), String> {
    if !have("node") || !have("npm") {
        return Err("`cargo xtask vectors` needs Node.js and npm on PATH".into());
    }
    let harness = root().join("xtask/js-harness");
    // The lock file pins @convertcom/js-sdk 4.4.3 (with its integrity) and murmurhash 2.0.1;
    // .npmrc keeps npm from chasing the SDK's open-ended peer dependencies (its bundle is
    // self-contained).
    eprintln!("\n==> npm ci in {}", harness.display());
    if !in_dir("npm", &harness)
        .args(["ci", "--no-audit", "--no-fund"])
        .status()
        .is_ok_and(|s| s.success())
    {
        return Err("npm ci failed".into());
    }
    eprintln!("==> writing the golden requests");
    if !in_dir("node", &harness)
        .arg("make-requests.js")
        .status()
        .is_ok_and(|s| s.success())
    {
        return Err("make-requests.js failed".into());
    }
    let golden = root().join("tests/golden");
    let mut entries: Vec<PathBuf> = std::fs::read_dir(&golden)
        .map_err(|e| format!("cannot list {}: {e}", golden.display()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().ends_with(".request.json"))
        .collect();
    entries.sort();
    for req in entries {
        let name = req
            .to_string_lossy()
            .replace(".request.json", ".js-output.json");
        eprintln!("==> {} -> {name}", req.display());
        let out = Command::new("node")
            .arg(harness.join("batch.js"))
            .arg("--input")
            .arg(&req)
            .output()
            .map_err(|e| format!("cannot run node: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "batch.js failed on {}: {}",
                req.display(),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        std::fs::write(&name, &out.stdout).map_err(|e| format!("cannot write {name}: {e}"))?;
    }
    Ok(())
}

fn main() -> ExitCode {
    let arg = std::env::args().nth(1).unwrap_or_default();
    let result = match arg.as_str() {
        "test" => test(),
        "vectors" => vectors(),
        "" | "help" | "--help" | "-h" => {
            println!("{HELP}");
            return ExitCode::SUCCESS;
        }
        other => Err(format!("unknown command `{other}`\n\n{HELP}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("\nxtask: {e}");
            ExitCode::FAILURE
        }
    }
}
