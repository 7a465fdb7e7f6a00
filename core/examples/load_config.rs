//! Loads a config file `N` times with `ProjectConfig::from_json` (parse, index, drop): the driver
//! for the config-load instruction counts and CPU times of `docs/performance.md` ("Engine").
//!
//! ```sh
//! cargo build --release -p convert-core --example load_config
//! valgrind --tool=callgrind target/release/examples/load_config /tmp/large-config.json 1
//! ```
use convert_core::ProjectConfig;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let (Some(path), n) = (args.next(), args.next()) else {
        eprintln!("usage: load_config CONFIG.json [N]");
        return ExitCode::from(2);
    };
    let n: usize = match n.map(|s| s.parse()) {
        None => 1,
        Some(Ok(n)) => n,
        Some(Err(e)) => {
            eprintln!("N: {e}");
            return ExitCode::from(2);
        }
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("{path}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut experiences = 0;
    for _ in 0..n {
        match ProjectConfig::from_json(std::hint::black_box(&text)) {
            Ok(c) => experiences += c.experiences.len(),
            Err(e) => {
                eprintln!("{path}: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    println!("{n} loads, {experiences} experiences");
    ExitCode::SUCCESS
}
