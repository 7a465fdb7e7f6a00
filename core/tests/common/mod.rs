//! Shared helpers for conformance tests: locating `shared/conformance` and loading its files.
#![allow(dead_code)]

use std::path::PathBuf;

/// The conformance folder, or `None` (with a message) when it is absent and not required.
///
/// `CONVERT_CONFORMANCE_DIR` names it explicitly; when that variable is set the folder is required
/// and a missing folder fails the test. Without the variable the default `../shared/conformance`
/// (relative to the workspace root) is used when present, and the test is skipped otherwise.
pub fn conformance_dir() -> Option<PathBuf> {
    let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    match std::env::var_os("CONVERT_CONFORMANCE_DIR") {
        Some(dir) => {
            let mut p = PathBuf::from(dir);
            if p.is_relative() {
                p = workspace.join(p);
            }
            assert!(
                p.is_dir(),
                "CONVERT_CONFORMANCE_DIR is set but {} is not a directory",
                p.display()
            );
            Some(p)
        }
        None => {
            let p = workspace.join("../shared/conformance");
            if p.is_dir() {
                Some(p)
            } else {
                eprintln!(
                    "SKIPPED: conformance folder not found at {} (set CONVERT_CONFORMANCE_DIR to run these tests)",
                    p.display()
                );
                None
            }
        }
    }
}

/// Reads and parses one conformance file (path relative to the conformance folder).
pub fn load(dir: &std::path::Path, rel: &str) -> serde_json::Value {
    let path = dir.join(rel);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("cannot parse {}: {e}", path.display()))
}

/// The tags the JS reference runner requires to appear in at least one description of
/// `javascript-sdk/cross-sdk-bucketing-vectors.json`.
pub const REQUIRED_TAGS: [&str; 11] = [
    "packed-regression",
    "anchored-basic-thirds",
    "per-sliver-admission",
    "anchored-idle",
    "stopped-arm-stability",
    "ta-zero-width",
    "nan-default",
    "single-arm-v11-eq-v12",
    "100pct-total-v11-eq-v12",
    "boundary-hit",
    "total-weight-zero",
];
