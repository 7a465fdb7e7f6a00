//! Runnable examples for convert-rs (see the `[[example]]` targets), and the demo project config
//! they share.
#![deny(missing_docs)]

/// A demo project config (an online shop with a checkout experiment, a search rollout, three
/// features and two goals), embedded so the examples run offline.
pub const DEMO_CONFIG: &str = include_str!("data/demo-config.json");
