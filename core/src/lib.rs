//! # convert-core
//!
//! The pure decision engine of the Convert Experiences Full Stack SDK for Rust. It holds the config
//! model, bucketing, the rules engine, the decision flow, feature resolution and tracking payload
//! building. It does no I/O, starts no threads and reads no clock: callers hand it the visitor's
//! stored state and get back decisions plus the effects to apply (store writes, tracking events,
//! lifecycle events) as plain data.
//!
//! Decisions are identical to the reference JavaScript SDK (`@convertcom/js-sdk`) except where the
//! project's specification deliberately fixes a reference bug.
#![doc = include_str!("../README.md")]

pub mod bucketing;
pub mod config;
pub mod engine;
pub mod features;
pub mod goals;
pub mod hash;
pub mod js;
pub mod keyorder;
pub mod rules;
pub mod store;
pub mod tracking;

pub use config::{ConfigError, ProjectConfig};
pub use engine::{
    BucketedVariation, Decision, Effects, Engine, EngineSettings, Notice, RunOptions, VisitorProps,
    VisitorState,
};
pub use features::{BucketedFeature, FeatureFilter, FeatureStatus};
pub use goals::ConversionOutcome;
pub use rules::RuleError;
pub use store::{StoreData, StoreOp};
pub use tracking::{EventData, TrackingEvent, TrackingQueue};
