//! A test kit for code that uses the SDK (cargo feature `test-util`): build a project config in
//! code, force a visitor's variation, and assert what was tracked, without network.
//!
//! ```
//! use convert_sdk::testing::{TestConfig, VariableType};
//! use convert_sdk::{BucketingAttributes, ConversionAttributes};
//!
//! let (sdk, tracked) = TestConfig::new()
//!     .feature("search-v2", [("max_results", VariableType::Integer)])
//!     .audience("premium", "plan", "premium")
//!     .experience("search-test", |e| {
//!         e.audience("premium")
//!             .variation("control", 50)
//!             .variation_with_feature("wide", 50, "search-v2", [("max_results", 50)])
//!     })
//!     .goal("purchase")
//!     .sdk()?;
//!
//! let visitor = sdk.create_context("alice", [("plan", "premium")]);
//! convert_sdk::testing::force_variation(&visitor, "search-test", "wide")?;
//! let attrs = BucketingAttributes::new();
//! assert_eq!(visitor.run_experience("search-test", &attrs).variation_key(), Some("wide"));
//! let search = visitor.run_feature("search-v2", &attrs);
//! assert_eq!(search.variable::<i64>("max_results")?, 50);
//! visitor.track_conversion("purchase", &ConversionAttributes::new())?;
//!
//! sdk.flush()?;
//! let events = tracked.events();
//! assert!(events.iter().any(|e| e.visitor_id == "alice" && e.event_type == "conversion"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::sync::{Arc, Mutex, PoisonError};

use convert_core::store::StoreOp;
use serde_json::{Map, Value, json};

use crate::{Attributes, Context, Core, Error, HttpRequest, HttpResponse, Transport};
use convert_ports::TransportError;

/// The declared type of a feature variable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum VariableType {
    /// `"string"`.
    String,
    /// `"integer"`.
    Integer,
    /// `"float"`.
    Float,
    /// `"boolean"`.
    Boolean,
    /// `"json"`.
    Json,
}

impl VariableType {
    fn as_str(self) -> &'static str {
        match self {
            VariableType::String => "string",
            VariableType::Integer => "integer",
            VariableType::Float => "float",
            VariableType::Boolean => "boolean",
            VariableType::Json => "json",
        }
    }
}

/// A project config built in code. Ids are generated; everything is referred to by key. The
/// experiences run in every environment, with no location targeting.
#[derive(Debug, Clone, Default)]
pub struct TestConfig {
    features: Vec<(String, Vec<(String, VariableType)>)>,
    audiences: Vec<(String, String, Value)>,
    experiences: Vec<ExperienceBuilder>,
    goals: Vec<String>,
}

/// One experience of a [`TestConfig`].
#[derive(Debug, Clone, Default)]
pub struct ExperienceBuilder {
    key: String,
    audiences: Vec<String>,
    variations: Vec<(String, u32, Option<FeatureChange>)>,
}

/// A feature a variation turns on: its key and variable values.
type FeatureChange = (String, Attributes);

impl ExperienceBuilder {
    /// Adds a variation with `traffic_allocation` percent of the visitors.
    pub fn variation(mut self, key: impl Into<String>, traffic_allocation: u32) -> Self {
        self.variations.push((key.into(), traffic_allocation, None));
        self
    }

    /// Adds a variation that turns feature `feature_key` on with these variable values.
    pub fn variation_with_feature(
        mut self,
        key: impl Into<String>,
        traffic_allocation: u32,
        feature_key: impl Into<String>,
        variables: impl Into<Attributes>,
    ) -> Self {
        self.variations.push((
            key.into(),
            traffic_allocation,
            Some((feature_key.into(), variables.into())),
        ));
        self
    }

    /// Targets the audience `key` (declared with [`TestConfig::audience`]).
    pub fn audience(mut self, key: impl Into<String>) -> Self {
        self.audiences.push(key.into());
        self
    }
}

fn id(kind: u32, i: usize) -> String {
    format!("{kind}{i:04}")
}

impl TestConfig {
    /// An empty project.
    pub fn new() -> Self {
        Self::default()
    }

    /// Declares a feature with typed variables.
    pub fn feature<K: Into<String>>(
        mut self,
        key: impl Into<String>,
        variables: impl IntoIterator<Item = (K, VariableType)>,
    ) -> Self {
        let vars = variables.into_iter().map(|(k, t)| (k.into(), t)).collect();
        self.features.push((key.into(), vars));
        self
    }

    /// Declares an audience of the visitors whose property `property` equals `value`
    /// (compared as text, as the reference's `matches` rule does).
    pub fn audience(
        mut self,
        key: impl Into<String>,
        property: impl Into<String>,
        value: impl Into<Value>,
    ) -> Self {
        self.audiences
            .push((key.into(), property.into(), value.into()));
        self
    }

    /// Adds an experience, described by `build`.
    pub fn experience(
        mut self,
        key: impl Into<String>,
        build: impl FnOnce(ExperienceBuilder) -> ExperienceBuilder,
    ) -> Self {
        let e = build(ExperienceBuilder {
            key: key.into(),
            ..ExperienceBuilder::default()
        });
        self.experiences.push(e);
        self
    }

    /// Declares a goal (no rules: any conversion of it counts).
    pub fn goal(mut self, key: impl Into<String>) -> Self {
        self.goals.push(key.into());
        self
    }

    /// The config as the JSON the Convert CDN serves.
    pub fn to_json(&self) -> Value {
        let feature_id = |key: &str| {
            self.features
                .iter()
                .position(|(k, _)| k == key)
                .map(|i| id(6, i))
        };
        let audience_id = |key: &str| {
            self.audiences
                .iter()
                .position(|(k, _, _)| k == key)
                .map(|i| id(5, i))
        };
        let features: Vec<Value> = self
            .features
            .iter()
            .enumerate()
            .map(|(i, (key, vars))| {
                let vars: Vec<Value> = vars
                    .iter()
                    .map(|(k, t)| json!({"key": k, "type": t.as_str()}))
                    .collect();
                json!({"id": id(6, i), "key": key, "name": key, "variables": vars})
            })
            .collect();
        let audiences: Vec<Value> = self
            .audiences
            .iter()
            .enumerate()
            .map(|(i, (key, property, value))| {
                json!({"id": id(5, i), "key": key, "name": key, "type": "permanent",
                    "rules": {"OR": [{"AND": [{"OR_WHEN": [{"rule_type": "generic_text_key_value",
                        "key": property, "matching": {"match_type": "matches", "negated": false},
                        "value": value}]}]}]}})
            })
            .collect();
        let experiences: Vec<Value> = self
            .experiences
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let variations: Vec<Value> = e
                    .variations
                    .iter()
                    .enumerate()
                    .map(|(j, (key, traffic, feature))| {
                        let changes: Vec<Value> = feature
                            .iter()
                            .map(|(fk, vars)| {
                                json!({"id": j + 1, "type": "fullStackFeature", "data": {
                                    "feature_id": feature_id(fk).unwrap_or_default(),
                                    "variables_data": vars.as_map()}})
                            })
                            .collect();
                        json!({"id": format!("{}{j:02}", id(3, i)), "key": key, "name": key,
                            "status": "running", "traffic_allocation": traffic, "changes": changes})
                    })
                    .collect();
                let audiences: Vec<String> =
                    e.audiences.iter().filter_map(|a| audience_id(a)).collect();
                json!({"id": id(3, i), "key": e.key, "name": e.key, "type": "a/b_fullstack",
                    "status": "active", "version": 11, "locations": [], "audiences": audiences,
                    "settings": {"matching_options": {"audiences": "any", "locations": "any"}},
                    "variations": variations})
            })
            .collect();
        let goals: Vec<Value> = self
            .goals
            .iter()
            .enumerate()
            .map(|(i, k)| json!({"id": id(7, i), "key": k, "name": k, "type": "dom_interaction"}))
            .collect();
        json!({"account_id": "100000", "project": {"id": "200000", "name": "test"},
            "experiences": experiences, "features": features, "audiences": audiences,
            "segments": [], "locations": [], "goals": goals})
    }

    /// An SDK on this config whose tracking goes (on [`Core::flush`]) to the returned
    /// [`RecordingTransport`]; nothing leaves the process.
    pub fn sdk(&self) -> Result<(Core, RecordingTransport), Error> {
        let transport = RecordingTransport::default();
        let core = Core::builder()
            .config(self.to_json())
            .transport(transport.clone())
            .tracking(false)
            .build()?;
        Ok((core, transport))
    }
}

/// Why [`force_variation`] could not force.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ForceError {
    /// The SDK has no config yet.
    #[error("the SDK has no config yet")]
    NotReady,
    /// The context has an empty visitor id: it stores nothing, so nothing can be forced.
    #[error("the context has no visitor id")]
    NoVisitorId,
    /// No experience with that key.
    #[error("no experience with key `{0}`")]
    UnknownExperience(String),
    /// The experience has no variation with that key.
    #[error("experience `{experience}` has no variation with key `{variation}`")]
    UnknownVariation {
        /// Experience key.
        experience: String,
        /// Variation key.
        variation: String,
    },
}

/// Stores `variation_key` as the visitor's sticky decision for `experience_key`: from then on
/// the visitor gets that variation (and the features it turns on) whenever they qualify for
/// the experience, as a returning visitor would.
pub fn force_variation(
    visitor: &Context,
    experience_key: &str,
    variation_key: &str,
) -> Result<(), ForceError> {
    if visitor.visitor_id().is_empty() {
        return Err(ForceError::NoVisitorId);
    }
    let cfg = visitor.core().try_config().ok_or(ForceError::NotReady)?;
    let exp = cfg
        .experience_by_key(experience_key)
        .ok_or_else(|| ForceError::UnknownExperience(experience_key.into()))?;
    let var = exp
        .variations
        .iter()
        .find(|v| v.key.as_deref() == Some(variation_key))
        .ok_or_else(|| ForceError::UnknownVariation {
            experience: experience_key.into(),
            variation: variation_key.into(),
        })?;
    visitor.write_for_tests(&[StoreOp::Bucketing {
        experience_id: exp.id.clone(),
        variation_id: var.id.clone(),
    }]);
    Ok(())
}

/// One tracking event the SDK sent.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct TrackedEvent {
    /// The visitor.
    pub visitor_id: String,
    /// `"bucketing"` or `"conversion"`.
    pub event_type: String,
    /// The event's data (`experienceId`/`variationId`, or `goalId`/`goalData`).
    pub data: Value,
}

/// A [`Transport`] that records every request and answers 200; clones share the record.
#[derive(Debug, Clone, Default)]
pub struct RecordingTransport(Arc<Mutex<Vec<HttpRequest>>>);

impl Transport for RecordingTransport {
    fn send(&self, request: &HttpRequest) -> Result<HttpResponse, TransportError> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(request.clone());
        Ok(HttpResponse::new(200, Vec::new()))
    }
}

impl RecordingTransport {
    /// Every request sent so far, oldest first.
    pub fn requests(&self) -> Vec<HttpRequest> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Every tracking event sent so far, in order (call [`Core::flush`] first).
    pub fn events(&self) -> Vec<TrackedEvent> {
        let mut out = Vec::new();
        for r in self.requests() {
            let Some(body) = r.body.as_deref() else {
                continue;
            };
            let Ok(Value::Object(batch)) = convert_core::js::json_parse(body) else {
                continue;
            };
            for v in batch
                .get("visitors")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let visitor_id = v
                    .get("visitorId")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                for e in v
                    .get("events")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    out.push(TrackedEvent {
                        visitor_id: visitor_id.to_string(),
                        event_type: e
                            .get("eventType")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_string(),
                        data: e.get("data").cloned().unwrap_or(Value::Object(Map::new())),
                    });
                }
            }
        }
        out
    }
}
