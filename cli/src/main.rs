//! `convert`: replay, benchmark and inspect Convert Full Stack decisions offline.

mod batch;
mod bench;
mod tools;

use serde_json::Value;
use std::io::Read;
use std::process::ExitCode;

const HELP: &str = "\
convert — Convert Experiences Full Stack decisions, offline

USAGE:
    convert decide   --config FILE --visitor ID [--experience KEY] [--explain]
                     [--attr KEY=VALUE]... [--location KEY=VALUE]... [--environment ENV] [--ignore-location]
                                   one visitor's decisions (and features), with --explain the reasons
    convert validate --config FILE  parse and lint a project config
    convert simulate --config FILE --experience KEY [--visitors N] [--attr ..] [--location ..]
                                   N synthetic visitors: observed split vs configured allocation
    convert fetch    --sdk-key KEY [--environment ENV] [--secret S] [--endpoint URL] [--output FILE]
                                   download a project config from the CDN, check it, save it
    convert batch [--input FILE]    evaluate a batch request (JSON on stdin or FILE), print results
    convert bench [--input FILE]    measure decisions per second for a bench request
    convert --help | --version

VALUEs of --attr/--location are JSON when they parse (3, true, \"x\"), else strings.

The request format is the batch evaluation protocol (see the project's docs/batch-protocol.md):
    {\"config\": {...}, \"sdk\": {...}, \"state\": \"isolated\"|\"shared\", \"cases\": [{\"op\": ...}]}

Exit status: 0 when every case ran (failed SDK calls still produce a record); 2 when the request
is not valid JSON or not of the protocol's shape.";

fn read_input(args: &[String]) -> Result<String, String> {
    let mut input = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--input" | "-i" => {
                input = Some(it.next().ok_or("--input needs a file name")?.clone());
            }
            other => return Err(format!("unexpected argument `{other}`")),
        }
    }
    match input {
        Some(path) => {
            std::fs::read_to_string(&path).map_err(|e| format!("cannot read {path}: {e}"))
        }
        None => {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .map_err(|e| format!("cannot read standard input: {e}"))?;
            Ok(s)
        }
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(cmd) = args.first() else {
        eprintln!("{HELP}");
        return ExitCode::from(2);
    };
    match cmd.as_str() {
        "-h" | "--help" | "help" => {
            println!("{HELP}");
            ExitCode::SUCCESS
        }
        "-V" | "--version" => {
            println!("convert {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        "batch" | "bench" => {
            let text = match read_input(&args[1..]) {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("convert {cmd}: {e}");
                    return ExitCode::from(2);
                }
            };
            let request: Value = match convert_core::js::json_parse(&text) {
                Ok(v) => v,
                Err(e) => {
                    eprintln!("convert {cmd}: the request is not valid JSON: {e}");
                    return ExitCode::from(2);
                }
            };
            let result = if cmd == "batch" {
                batch::run(&request)
            } else {
                bench::run(&request)
            };
            match result {
                Ok(v) => {
                    println!("{}", convert_core::js::json_stringify(&v));
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("convert {cmd}: {e}");
                    ExitCode::from(2)
                }
            }
        }
        "decide" | "simulate" | "fetch" => {
            let r = match cmd.as_str() {
                "decide" => tools::decide(&args[1..]),
                "simulate" => tools::simulate(&args[1..]),
                _ => tools::fetch(&args[1..]),
            };
            match r {
                Ok(text) => {
                    print!("{text}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("convert {cmd}: {e}");
                    ExitCode::from(2)
                }
            }
        }
        "validate" => match tools::validate(&args[1..]) {
            Ok((text, failed)) => {
                print!("{text}");
                if failed {
                    ExitCode::from(1)
                } else {
                    ExitCode::SUCCESS
                }
            }
            Err(e) => {
                eprintln!("convert validate: {e}");
                ExitCode::from(2)
            }
        },
        other => {
            eprintln!("convert: unknown command `{other}`\n\n{HELP}");
            ExitCode::from(2)
        }
    }
}
