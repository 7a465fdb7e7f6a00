#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

pub mod bucketing;
pub mod config;
mod ecma;
pub mod engine;
pub mod features;
pub mod goals;
pub mod hash;
pub mod intern;
pub mod js;
pub mod json;
pub mod keyorder;
pub mod rules;
pub mod store;
pub mod tracking;
mod tree;

pub use config::{ConfigError, ProjectConfig};
pub use engine::{
    BucketedVariation, Decision, Effects, Engine, EngineSettings, NotMatchedReason, Notice,
    RunOptions, VisitorProps, VisitorState,
};
pub use features::{BucketedFeature, FeatureFilter, FeatureStatus};
pub use goals::ConversionOutcome;
pub use rules::RuleError;
pub use store::{StoreData, StoreOp, ValueList};
pub use tracking::{EventData, TrackingEvent, TrackingQueue};
