//! Running the `convert` binary from the CLI's integration tests.
#![allow(dead_code)]

use serde_json::Value;
use std::io::Write;
use std::process::{Command, Stdio};

/// Runs `convert` with `args` and no input; returns the exit code, standard output and standard
/// error.
pub fn convert(args: &[&str]) -> (i32, String, String) {
    convert_with_input(args, b"")
}

/// [`convert`], feeding it `stdin` (then end of input).
pub fn convert_with_input(args: &[&str], stdin: &[u8]) -> (i32, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_convert"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Written from another thread, so a large input cannot block against a full output pipe.
    let mut pipe = child.stdin.take().unwrap();
    let input = stdin.to_vec();
    let writer = std::thread::spawn(move || pipe.write_all(&input));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The records printed by a `convert batch` run that must succeed.
pub fn records((code, stdout, stderr): (i32, String, String)) -> Vec<Value> {
    assert_eq!(code, 0, "{stderr}");
    serde_json::from_str(&stdout).unwrap()
}

/// `convert batch` on `request`, given on standard input.
pub fn batch(request: &Value) -> Vec<Value> {
    records(convert_with_input(
        &["batch"],
        request.to_string().as_bytes(),
    ))
}
