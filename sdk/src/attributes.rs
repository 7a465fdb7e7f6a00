//! Per-call options of the visitor methods.

use serde_json::{Map, Value};

/// Options of `run_experience(s)` and `run_feature(s)` (the reference's `BucketingAttributes`).
///
/// Built with [`BucketingAttributes::new`] and the chained setters, or as a struct literal with
/// `..Default::default()`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BucketingAttributes {
    /// Visitor properties for audience rules (merged over the context's and the stored ones).
    pub visitor_properties: Option<Map<String, Value>>,
    /// Location data for `site_area` and location rules. Absent means an empty map: experiences
    /// without location targeting run, others are evaluated against no data.
    pub location_properties: Option<Map<String, Value>>,
    /// Skip location targeting entirely (experiences only).
    pub ignore_location_properties: bool,
    /// Overrides the SDK environment for this call.
    pub environment: Option<String>,
    /// Forces a variation by id when the experience has it (experiences only).
    pub force_variation_id: Option<String>,
    /// Queue a bucketing event for a fresh decision; default `true` (experiences only).
    pub enable_tracking: Option<bool>,
    /// Also store the merged visitor properties on a fresh decision.
    pub update_visitor_properties: bool,
    /// Cast feature variables to their declared types; default `true` (features only).
    pub type_casting: Option<bool>,
    /// Restrict feature resolution to these experience keys (`run_feature` only).
    pub experience_keys: Option<Vec<String>>,
}

impl BucketingAttributes {
    /// Empty options (all defaults).
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets one visitor property.
    pub fn visitor_property(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.visitor_properties
            .get_or_insert_with(Map::new)
            .insert(key.into(), value.into());
        self
    }

    /// Sets all visitor properties.
    pub fn visitor_properties(mut self, props: Map<String, Value>) -> Self {
        self.visitor_properties = Some(props);
        self
    }

    /// Sets one location property.
    pub fn location_property(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.location_properties
            .get_or_insert_with(Map::new)
            .insert(key.into(), value.into());
        self
    }

    /// Sets all location properties.
    pub fn location_properties(mut self, props: Map<String, Value>) -> Self {
        self.location_properties = Some(props);
        self
    }

    /// Skips location targeting.
    pub fn ignore_location_properties(mut self, yes: bool) -> Self {
        self.ignore_location_properties = yes;
        self
    }

    /// Overrides the environment.
    pub fn environment(mut self, env: impl Into<String>) -> Self {
        self.environment = Some(env.into());
        self
    }

    /// Forces a variation.
    pub fn force_variation(mut self, variation_id: impl Into<String>) -> Self {
        self.force_variation_id = Some(variation_id.into());
        self
    }

    /// Turns the bucketing event of a fresh decision on or off.
    pub fn enable_tracking(mut self, yes: bool) -> Self {
        self.enable_tracking = Some(yes);
        self
    }

    /// Stores the merged visitor properties on a fresh decision.
    pub fn update_visitor_properties(mut self, yes: bool) -> Self {
        self.update_visitor_properties = yes;
        self
    }

    /// Turns feature variable casting on or off.
    pub fn type_casting(mut self, yes: bool) -> Self {
        self.type_casting = Some(yes);
        self
    }

    /// Restricts `run_feature` to these experiences.
    pub fn experience_keys<I: IntoIterator<Item = S>, S: Into<String>>(mut self, keys: I) -> Self {
        self.experience_keys = Some(keys.into_iter().map(Into::into).collect());
        self
    }
}

/// Options of `track_conversion`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConversionAttributes {
    /// Data for the goal's rules. When absent the rules are not checked; when present a goal
    /// without rules does not convert (as in the reference).
    pub rule_data: Option<Map<String, Value>>,
    /// `[{key, value}]` transaction data (`amount`, `productsCount`, `transactionId`,
    /// `customDimension1..5`).
    pub conversion_data: Vec<(String, Value)>,
    /// Send the transaction again even when the goal was already converted.
    pub force_multiple_transactions: bool,
}

impl ConversionAttributes {
    /// Empty options.
    pub fn new() -> Self {
        Self::default()
    }

    /// Revenue: adds `{key: "amount", value}` first.
    pub fn revenue(mut self, amount: f64) -> Self {
        let v = convert_core::js::number_value(amount);
        self.conversion_data.insert(0, ("amount".into(), v));
        self
    }

    /// Adds one `{key, value}` goal-data entry.
    pub fn data(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.conversion_data.push((key.into(), value.into()));
        self
    }

    /// Sets one rule-data property.
    pub fn rule(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.rule_data
            .get_or_insert_with(Map::new)
            .insert(key.into(), value.into());
        self
    }

    /// Forces a repeated transaction.
    pub fn force_multiple_transactions(mut self, yes: bool) -> Self {
        self.force_multiple_transactions = yes;
        self
    }

    pub(crate) fn goal_data(&self) -> Option<Value> {
        if self.conversion_data.is_empty() {
            return None;
        }
        Some(Value::Array(
            self.conversion_data
                .iter()
                .map(|(k, v)| {
                    let mut m = Map::new();
                    m.insert("key".into(), Value::String(k.clone()));
                    m.insert("value".into(), v.clone());
                    Value::Object(m)
                })
                .collect(),
        ))
    }
}

/// The config entity types of `get_config_entity`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EntityType {
    /// An audience.
    Audience,
    /// A location.
    Location,
    /// A segment.
    Segment,
    /// A feature.
    Feature,
    /// A goal.
    Goal,
    /// An experience.
    Experience,
    /// A variation (searched across all experiences).
    Variation,
}

impl EntityType {
    /// The reference's name (`"audience"`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            EntityType::Audience => "audience",
            EntityType::Location => "location",
            EntityType::Segment => "segment",
            EntityType::Feature => "feature",
            EntityType::Goal => "goal",
            EntityType::Experience => "experience",
            EntityType::Variation => "variation",
        }
    }

    /// Parses a singular or plural name.
    pub fn parse(name: &str) -> Option<EntityType> {
        Some(match name.trim_end_matches('s') {
            "audience" => EntityType::Audience,
            "location" => EntityType::Location,
            "segment" => EntityType::Segment,
            "feature" => EntityType::Feature,
            "goal" => EntityType::Goal,
            "experience" => EntityType::Experience,
            "variation" => EntityType::Variation,
            _ => return None,
        })
    }
}
