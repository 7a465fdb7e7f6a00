//! `convert`: replay, benchmark and inspect Convert Full Stack decisions offline.

mod args;
mod batch;
mod bench;
mod request;
mod tools;
mod validate;

use args::{Cli, Command, InputArgs, Shell};
use clap::{CommandFactory, Parser};
use serde_json::Value;
use std::io::Read;
use std::process::ExitCode;

/// Exit status of usage errors and of commands that could not run (clap uses 2 as well).
const USAGE: u8 = 2;

fn read_input(a: &InputArgs) -> Result<String, String> {
    match &a.input {
        Some(path) => std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display())),
        None => {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .map_err(|e| format!("cannot read standard input: {e}"))?;
            Ok(s)
        }
    }
}

/// `batch` and `bench`: a JSON request in, one JSON document out.
fn run_request(
    a: &InputArgs,
    run: fn(&Value) -> Result<Value, request::RequestError>,
) -> Result<String, String> {
    let text = read_input(a)?;
    let request: Value = convert_core::js::json_parse(&text)
        .map_err(|e| format!("the request is not valid JSON: {e}"))?;
    let result = run(&request).map_err(|e| e.to_string())?;
    Ok(format!("{}\n", convert_core::js::json_stringify(&result)))
}

fn completions(shell: Shell) -> String {
    let shell = match shell {
        Shell::Bash => clap_complete::Shell::Bash,
        Shell::Zsh => clap_complete::Shell::Zsh,
        Shell::Fish => clap_complete::Shell::Fish,
    };
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "convert", &mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// Writes the SDK's log records to stderr (`-v`, `-vv`, `-vvv`).
struct StderrLog;

impl log::Log for StderrLog {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            eprintln!("[{} {}] {}", record.level(), record.target(), record.args());
        }
    }

    fn flush(&self) {}
}

static LOGGER: StderrLog = StderrLog;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.log_level() != log::LevelFilter::Off && log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(cli.log_level());
    }
    let (name, result) = match &cli.command {
        Command::Decide(a) => ("decide", tools::decide(a, cli.quiet).map(|t| (t, false))),
        Command::Validate(a) => ("validate", tools::validate(a)),
        Command::Simulate(a) => (
            "simulate",
            tools::simulate(a, cli.quiet).map(|t| (t, false)),
        ),
        Command::Fetch(a) => ("fetch", tools::fetch(a).map(|t| (t, false))),
        Command::Batch(a) => ("batch", run_request(a, batch::run).map(|t| (t, false))),
        Command::Bench(a) => ("bench", run_request(a, bench::run).map(|t| (t, false))),
        Command::Completions(a) => ("completions", Ok((completions(a.shell), false))),
    };
    match result {
        Ok((text, failed)) => {
            print!("{text}");
            if failed {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("convert {name}: {e}");
            ExitCode::from(USAGE)
        }
    }
}
