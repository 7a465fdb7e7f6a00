//! The command line of `convert`, declared with clap's derive API.

use clap::{Args, Parser, Subcommand, ValueEnum};
use serde_json::{Map, Value};
use std::path::PathBuf;

const EXIT_ALL: &str = "\
Exit status:
  0  success
  1  `validate` found errors (or warnings, with --strict)
  2  usage error, unreadable or invalid input, network failure (details on stderr)

Run `convert <COMMAND> --help` for a command's options and exit statuses.";

const EXIT_DECIDE: &str = "\
Exit status:
  0  the decisions were printed
  2  usage error, or the config cannot be read or parsed

When no experience runs in the chosen environment, a note says so on stderr.";

const EXIT_VALIDATE: &str = "\
Exit status:
  0  no errors (warnings allowed unless --strict)
  1  errors found (or any warning, with --strict); a file that is not JSON is an error
  2  usage error, or the file cannot be read";

const EXIT_SIMULATE: &str = "\
Exit status:
  0  the table was printed
  2  usage error, the config cannot be read or parsed, or the experience is unknown";

const EXIT_FETCH: &str = "\
Exit status:
  0  the config was fetched, checked and written
  2  usage error, network failure, an HTTP status other than 200, an invalid config, or the
     output file cannot be written (the message names the URL, with secrets redacted)";

const EXIT_BATCH: &str = "\
The request (batch evaluation protocol, docs/batch-protocol.md in the repository):
  {\"config\": {...}, \"sdk\": {...}, \"state\": \"isolated\"|\"shared\", \"cases\": [{\"op\": ...}, ...]}
The output is a JSON array with one record per case.

Exit status:
  0  every case ran (a failed SDK call, unknown op or missing field still produces a record)
  2  the request cannot be read, is not valid JSON, or is not of the protocol's shape (the
     message names the JSON path, e.g. `cases[3].attributes: invalid type: ...`); no case runs";

const EXIT_BENCH: &str = "\
Exit status:
  0  the measurements were printed
  2  the request cannot be read, is not valid JSON, or is not of the protocol's shape (the
     message names the JSON path, e.g. `bench.mode: unknown variant ...`)";

const EXIT_COMPLETIONS: &str = "\
Exit status:
  0  the script was printed
  2  unknown shell

Install, for example:
  convert completions bash > ~/.local/share/bash-completion/completions/convert
  convert completions zsh  > ~/.zfunc/_convert
  convert completions fish > ~/.config/fish/completions/convert.fish";

/// `convert`: Convert Experiences Full Stack decisions, offline.
#[derive(Debug, Parser)]
#[command(
    name = "convert",
    version,
    about = "Convert Experiences Full Stack decisions, offline: explain, lint, simulate, fetch, replay",
    after_help = EXIT_ALL,
    arg_required_else_help = true
)]
pub struct Cli {
    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
    /// Show the SDK's log on stderr: -v warnings, -vv info, -vvv debug
    #[arg(short, long, global = true, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    pub verbose: u8,
    /// No notes on stderr (errors are still printed)
    #[arg(short, long, global = true)]
    pub quiet: bool,
}

impl Cli {
    /// The log level the `-v` count asks for (`Off` without `-v`).
    pub fn log_level(&self) -> log::LevelFilter {
        match self.verbose {
            0 => log::LevelFilter::Off,
            1 => log::LevelFilter::Warn,
            2 => log::LevelFilter::Info,
            _ => log::LevelFilter::Debug,
        }
    }
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// One visitor's decisions (and features); with --explain, the reason for each
    #[command(after_help = EXIT_DECIDE)]
    Decide(DecideArgs),
    /// Check a project config: every problem with its JSON path, errors and warnings
    #[command(after_help = EXIT_VALIDATE)]
    Validate(ValidateArgs),
    /// N synthetic visitors through an experience: observed vs configured split, and why not
    #[command(after_help = EXIT_SIMULATE)]
    Simulate(SimulateArgs),
    /// Download a project config from the CDN, check it, save it
    #[command(after_help = EXIT_FETCH)]
    Fetch(FetchArgs),
    /// Evaluate a batch request (batch evaluation protocol) and print the records as JSON
    #[command(after_help = EXIT_BATCH)]
    Batch(InputArgs),
    /// Measure decisions per second for a bench request
    #[command(after_help = EXIT_BENCH)]
    Bench(InputArgs),
    /// Print a shell completion script
    #[command(after_help = EXIT_COMPLETIONS)]
    Completions(CompletionsArgs),
}

/// `--config FILE`.
#[derive(Debug, Args)]
pub struct ConfigArg {
    /// Project config (JSON); a batch request file is accepted too (its `config` is used)
    #[arg(short, long, value_name = "FILE")]
    pub config: PathBuf,
}

/// Visitor attributes and the environment.
#[derive(Debug, Args)]
pub struct Targeting {
    /// Visitor attribute; VALUE is JSON when it parses (3, true, "x"), else a string
    #[arg(short, long = "attr", value_name = "KEY=VALUE", value_parser = key_value)]
    pub attrs: Vec<(String, Value)>,
    /// Location properties (`--location`).
    #[arg(
        short,
        long = "location",
        value_name = "KEY=VALUE",
        value_parser = key_value,
        help = "Location property (e.g. url=https://shop.example/checkout); VALUE as for --attr"
    )]
    pub location: Vec<(String, Value)>,
    /// Environment to decide in [default: the config envelope's, else staging]
    #[arg(long, value_name = "ENV")]
    pub environment: Option<String>,
    /// Skip location targeting
    #[arg(long)]
    pub ignore_location: bool,
}

impl Targeting {
    /// The `--attr` values as a JSON object (a repeated key keeps its last value).
    pub fn attrs_map(&self) -> Map<String, Value> {
        self.attrs.iter().cloned().collect()
    }

    /// The `--location` values as a JSON object.
    pub fn location_map(&self) -> Map<String, Value> {
        self.location.iter().cloned().collect()
    }
}

/// `convert decide`.
#[derive(Debug, Args)]
pub struct DecideArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub config: ConfigArg,
    /// Visitor id
    #[arg(long, value_name = "ID")]
    pub visitor: String,
    /// Only this experience (default: every experience, then the features)
    #[arg(short, long, value_name = "KEY")]
    pub experience: Option<String>,
    /// List the steps of each decision: environment, locations, audiences, segments, bucket
    #[arg(long)]
    pub explain: bool,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub targeting: Targeting,
}

/// Output format of `validate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// One line per problem, then a summary
    Text,
    /// One JSON object: file, counts and the list of problems
    Json,
}

/// `convert validate`.
#[derive(Debug, Args)]
pub struct ValidateArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub config: ConfigArg,
    /// Fail (exit status 1) on warnings too
    #[arg(long)]
    pub strict: bool,
    /// Report format
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

/// `convert simulate`.
#[derive(Debug, Args)]
pub struct SimulateArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub config: ConfigArg,
    /// The experience to simulate
    #[arg(short, long, value_name = "KEY")]
    pub experience: String,
    /// Number of synthetic visitors (at least 1)
    #[arg(short = 'n', long, value_name = "N", default_value_t = 10_000,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub visitors: usize,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub targeting: Targeting,
}

/// `convert fetch`.
#[derive(Debug, Args)]
pub struct FetchArgs {
    /// SDK key (`account_id/project_id`)
    #[arg(
        long,
        value_name = "KEY",
        env = "CONVERT_SDK_KEY",
        hide_env_values = true
    )]
    pub sdk_key: String,
    /// Environment whose config to fetch
    #[arg(long, value_name = "ENV", default_value = "staging")]
    pub environment: String,
    /// SDK key secret, sent as a bearer token (never printed)
    #[arg(
        long,
        value_name = "SECRET",
        env = "CONVERT_SDK_SECRET",
        hide_env_values = true
    )]
    pub secret: Option<String>,
    /// Config endpoint [default: Convert's CDN]
    #[arg(long, value_name = "URL")]
    pub endpoint: Option<String>,
    /// Write the config to FILE and print a summary (default: print the config)
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// `convert batch` and `convert bench`.
#[derive(Debug, Args)]
pub struct InputArgs {
    /// Request file (default: standard input)
    #[arg(short, long, value_name = "FILE")]
    pub input: Option<PathBuf>,
}

/// `convert completions`.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell
    #[arg(value_enum)]
    pub shell: Shell,
}

/// The shells completion scripts are generated for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Shell {
    /// Bash
    Bash,
    /// Zsh
    Zsh,
    /// Fish
    Fish,
}

/// Parses `KEY=VALUE`; VALUE keeps its JSON type when it is JSON, else it is a string.
fn key_value(arg: &str) -> Result<(String, Value), String> {
    let (k, v) = arg
        .split_once('=')
        .ok_or_else(|| format!("expected KEY=VALUE, got `{arg}`"))?;
    if k.is_empty() {
        return Err(format!("expected KEY=VALUE, got `{arg}` (empty key)"));
    }
    let value = serde_json::from_str::<Value>(v).unwrap_or_else(|_| Value::String(v.to_string()));
    Ok((k.to_string(), value))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn values_keep_their_json_type() {
        assert_eq!(key_value("n=3").unwrap(), ("n".into(), Value::from(3)));
        assert_eq!(
            key_value("plan=premium").unwrap(),
            ("plan".into(), Value::from("premium"))
        );
        assert!(key_value("novalue").is_err());
        assert!(key_value("=x").is_err());
    }
}
