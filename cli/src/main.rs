//! The `convert` command.
fn main() {}
