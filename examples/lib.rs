//! Runnable examples for convert-rs; see the `[[example]]` targets.
