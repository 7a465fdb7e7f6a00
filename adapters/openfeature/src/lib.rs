#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

use convert_sdk::{BucketingAttributes, Core, FeatureDecision, FeatureStatus, ProjectConfig};
use open_feature::provider::{
    FeatureProvider, ProviderMetadata, ProviderStatus, ResolutionDetails,
};
use open_feature::{
    EvaluationContext, EvaluationContextFieldValue, EvaluationError, EvaluationErrorCode,
    EvaluationReason, EvaluationResult, FlagMetadata, StructValue, Value as OfValue,
};
use serde_json::{Map, Number, Value};
use std::time::Duration;

/// The name the provider reports in its [`ProviderMetadata`].
pub const PROVIDER_NAME: &str = "convert";

/// The evaluation-context field whose structure becomes the location properties (URL, page
/// type, ...) used by the experiences' location rules. Every other field is a visitor property.
pub const LOCATION_PROPERTIES_FIELD: &str = "locationProperties";

/// Flag-metadata key: the id of the feature (always present on a resolved flag).
pub const META_FEATURE_ID: &str = "featureId";
/// Flag-metadata key: the key of the feature (always present on a resolved flag).
pub const META_FEATURE_KEY: &str = "featureKey";
/// Flag-metadata key: the id of the experience that delivers the feature (when it is on).
pub const META_EXPERIENCE_ID: &str = "experienceId";
/// Flag-metadata key: the key of the experience that delivers the feature (when it is on).
pub const META_EXPERIENCE_KEY: &str = "experienceKey";
/// Flag-metadata key: the id of the variation that delivers the feature (when it is on).
pub const META_VARIATION_ID: &str = "variationId";
/// Flag-metadata key: the key of the variation that delivers the feature (when it is on; the
/// same value is the resolution's `variant`).
pub const META_VARIATION_KEY: &str = "variationKey";

/// An OpenFeature [`FeatureProvider`] backed by a convert-rs [`Core`].
///
/// Flag `FEATURE_KEY` resolves a boolean (whether the feature is on for the visitor) and
/// `FEATURE_KEY.VARIABLE` resolves one of the feature's typed variables. The evaluation
/// context's targeting key is the visitor id; its other fields are visitor properties, and the
/// structure under [`LOCATION_PROPERTIES_FIELD`] holds the location properties. Every decision is
/// [`convert_sdk::Context::run_feature`] on a context built from the evaluation context, so it
/// is stored and tracked exactly as that call is. See the crate documentation for the full
/// mapping of results, reasons and error codes.
///
/// The provider decides through the SDK's async facade (`Context::run_feature_async`): with an
/// async data store (`CoreBuilder::async_data_store`) the visitor's record is read and written
/// without blocking the task; without one, the SDK's store is used in place (the default
/// in-memory store does no I/O).
#[derive(Debug, Clone)]
pub struct ConvertProvider {
    core: Core,
    metadata: ProviderMetadata,
    init_timeout: Duration,
}

/// How long [`FeatureProvider::initialize`] (awaited by `OpenFeature::set_provider`) waits by
/// default for the SDK's first project config.
pub const DEFAULT_INIT_TIMEOUT: Duration = Duration::from_secs(5);

impl ConvertProvider {
    /// A provider deciding with `core` (a cheap clone of the application's SDK handle).
    pub fn new(core: Core) -> Self {
        ConvertProvider {
            core,
            metadata: ProviderMetadata::new(PROVIDER_NAME),
            init_timeout: DEFAULT_INIT_TIMEOUT,
        }
    }

    /// How long `initialize` (which `OpenFeature::set_provider` awaits) waits for the SDK's first
    /// project config ([`DEFAULT_INIT_TIMEOUT`] by default; `Duration::ZERO` does not wait).
    /// With a static config the SDK is ready at once; in SDK-key mode this is the time the first
    /// fetch, and its retries, get before `set_provider` returns. The open-feature crate holds
    /// its provider registry while it initializes a provider, so evaluations of other clients
    /// wait for this too.
    pub fn with_init_timeout(mut self, timeout: Duration) -> Self {
        self.init_timeout = timeout;
        self
    }

    /// The SDK this provider decides with.
    pub fn core(&self) -> &Core {
        &self.core
    }

    /// The single call into the SDK: one visitor context, one `run_feature_async`. With an async
    /// data store (`CoreBuilder::async_data_store`) the visitor's record is read and written
    /// without blocking the task; without one, the SDK's store is used in place (the memory
    /// store does no I/O).
    async fn run_feature(&self, visitor: Visitor, feature_key: &str) -> FeatureDecision {
        let attrs = BucketingAttributes {
            location_properties: visitor.location_properties,
            ..BucketingAttributes::default()
        };
        self.core
            .create_context(visitor.id, Some(visitor.properties))
            .run_feature_async(feature_key, &attrs)
            .await
    }

    /// Resolves `flag_key` as `kind`: checks what the config alone can tell (readiness, flag,
    /// variable, type), decides, then reads the value.
    async fn resolve(
        &self,
        flag_key: &str,
        context: &EvaluationContext,
        kind: Kind,
    ) -> EvaluationResult<ResolutionDetails<OfValue>> {
        let not_ready = |why: String| {
            error(
                EvaluationErrorCode::ProviderNotReady,
                format!("the Convert SDK has no project config yet: {why}"),
            )
        };
        let config = match self.core.try_config() {
            Some(config) => config,
            // Ready since `try_config`: the config installed meanwhile is used.
            None => match self.core.wait_until_ready(Duration::ZERO) {
                Ok(()) => self
                    .core
                    .try_config()
                    .ok_or_else(|| not_ready("no config installed".into()))?,
                Err(e) => return Err(not_ready(e.to_string())),
            },
        };
        let flag = Flag::parse(&config, flag_key)?;
        let declared = match &flag {
            Flag::Feature { .. } if kind != Kind::Bool => {
                return Err(error(
                    EvaluationErrorCode::TypeMismatch,
                    format!("flag `{flag_key}` is a feature: it resolves a boolean, not {kind}"),
                ));
            }
            Flag::Feature { .. } => None,
            Flag::Variable { declared, .. } => {
                let declared = Kind::of_declared(declared);
                if declared.is_some_and(|d| d != kind) {
                    return Err(error(
                        EvaluationErrorCode::TypeMismatch,
                        format!(
                            "variable `{flag_key}` is declared {}, not {kind}",
                            declared.map_or("?", Kind::name)
                        ),
                    ));
                }
                declared
            }
        };
        let visitor = Visitor::from_context(context)?;
        let feature_key = flag.feature_key().to_string();
        let feature_id = flag.feature_id().to_string();
        // An archived experience, or one restricted to another environment, delivers nothing.
        let environment = self.core.environment();
        let has_experience = config
            .experiences
            .iter()
            .any(|e| !e.archived && e.runs_in(environment) && e.carries_feature(&feature_id));
        drop(config);
        let decision = self.run_feature(visitor, &feature_key).await;
        if !decision.rule_errors.is_empty() {
            let codes: Vec<&str> = decision.rule_errors.iter().map(|e| e.code()).collect();
            return Err(error(
                EvaluationErrorCode::InvalidContext,
                format!(
                    "a targeting rule of feature `{feature_key}` needs data the evaluation context does not carry ({})",
                    codes.join(", ")
                ),
            ));
        }
        let mut metadata = FlagMetadata::default()
            .with_value(META_FEATURE_ID, feature_id)
            .with_value(META_FEATURE_KEY, feature_key.as_str());
        let Some(entry) = decision
            .entries
            .iter()
            .find(|e| e.status == FeatureStatus::Enabled)
        else {
            // Off for this visitor: DEFAULT when no experience that can run here delivers the
            // feature at all (nothing was targeted), DISABLED when targeting ran and did not.
            let reason = if has_experience {
                EvaluationReason::Disabled
            } else {
                EvaluationReason::Default
            };
            return match flag {
                Flag::Feature { .. } => Ok(ResolutionDetails {
                    value: OfValue::Bool(false),
                    variant: None,
                    reason: Some(reason),
                    flag_metadata: Some(metadata),
                }),
                Flag::Variable { .. } => Err(error(
                    EvaluationErrorCode::General(reason.to_string()),
                    format!(
                        "feature `{feature_key}` is off for this visitor, so `{flag_key}` has no value; the caller's default applies"
                    ),
                )),
            };
        };
        let variant = entry
            .variation_key
            .as_deref()
            .or(entry.variation_id.as_deref())
            .map(str::to_string);
        for (key, value) in [
            (META_EXPERIENCE_ID, &entry.experience_id),
            (META_EXPERIENCE_KEY, &entry.experience_key),
            (META_VARIATION_ID, &entry.variation_id),
            (META_VARIATION_KEY, &entry.variation_key),
        ] {
            if let Some(v) = value {
                metadata.add_value(key, &**v);
            }
        }
        let value = match &flag {
            Flag::Feature { .. } => OfValue::Bool(true),
            Flag::Variable { name, .. } => {
                let raw = entry
                    .variables
                    .as_ref()
                    .and_then(Value::as_object)
                    .and_then(|m| m.get(*name))
                    .ok_or_else(|| {
                        error(
                            EvaluationErrorCode::FlagNotFound,
                            format!(
                                "the variation delivering feature `{feature_key}` carries no value for variable `{name}`"
                            ),
                        )
                    })?;
                read_value(raw, kind, declared.is_some()).map_err(|code| {
                    error(
                        code,
                        format!("variable `{flag_key}` holds {raw}, which is not a {kind}"),
                    )
                })?
            }
        };
        Ok(ResolutionDetails {
            value,
            variant,
            reason: Some(EvaluationReason::TargetingMatch),
            flag_metadata: Some(metadata),
        })
    }
}

#[open_feature::async_trait]
impl FeatureProvider for ConvertProvider {
    /// Waits, up to the provider's init timeout ([`ConvertProvider::with_init_timeout`]), for the
    /// SDK's first project config, so that evaluations after `set_provider` do not answer
    /// `PROVIDER_NOT_READY` while the first fetch is under way. Without a config by then, logs
    /// why and returns: the SDK keeps fetching, and the provider answers once it has one.
    async fn initialize(&mut self, _context: &EvaluationContext) {
        if let Err(e) = self.core.ready(self.init_timeout).await {
            log::warn!(
                "convert-openfeature: no project config after {:?} ({e}); evaluations answer PROVIDER_NOT_READY until the SDK has one",
                self.init_timeout
            );
        }
    }

    /// `Ready` once the SDK has a project config (at once with a static config; after the first
    /// successful fetch in SDK-key mode). Before that, `Error` once a config fetch has failed
    /// (the SDK keeps retrying; resolutions name the failure), and `NotReady` otherwise.
    /// Resolutions answer `PROVIDER_NOT_READY` until it is `Ready`.
    fn status(&self) -> ProviderStatus {
        if self.core.is_ready() {
            ProviderStatus::Ready
        } else if self.core.metrics().config_fetch_errors > 0 {
            ProviderStatus::Error
        } else {
            ProviderStatus::NotReady
        }
    }

    fn metadata(&self) -> &ProviderMetadata {
        &self.metadata
    }

    async fn resolve_bool_value(
        &self,
        flag_key: &str,
        evaluation_context: &EvaluationContext,
    ) -> EvaluationResult<ResolutionDetails<bool>> {
        self.resolve(flag_key, evaluation_context, Kind::Bool)
            .await
            .and_then(|d| typed(d, OfValue::as_bool))
    }

    async fn resolve_int_value(
        &self,
        flag_key: &str,
        evaluation_context: &EvaluationContext,
    ) -> EvaluationResult<ResolutionDetails<i64>> {
        self.resolve(flag_key, evaluation_context, Kind::Int)
            .await
            .and_then(|d| typed(d, OfValue::as_i64))
    }

    async fn resolve_float_value(
        &self,
        flag_key: &str,
        evaluation_context: &EvaluationContext,
    ) -> EvaluationResult<ResolutionDetails<f64>> {
        self.resolve(flag_key, evaluation_context, Kind::Float)
            .await
            .and_then(|d| typed(d, OfValue::as_f64))
    }

    async fn resolve_string_value(
        &self,
        flag_key: &str,
        evaluation_context: &EvaluationContext,
    ) -> EvaluationResult<ResolutionDetails<String>> {
        self.resolve(flag_key, evaluation_context, Kind::String)
            .await
            .and_then(|d| typed(d, |v| v.as_str().map(str::to_string)))
    }

    async fn resolve_struct_value(
        &self,
        flag_key: &str,
        evaluation_context: &EvaluationContext,
    ) -> EvaluationResult<ResolutionDetails<StructValue>> {
        self.resolve(flag_key, evaluation_context, Kind::Struct)
            .await
            .and_then(|d| typed(d, |v| v.as_struct().cloned()))
    }
}

/// Narrows a resolved [`OfValue`] to the requested Rust type. `resolve` already produced a value
/// of the requested kind, so the error branch is a guard, not an expected path.
fn typed<T>(
    details: ResolutionDetails<OfValue>,
    narrow: impl FnOnce(&OfValue) -> Option<T>,
) -> EvaluationResult<ResolutionDetails<T>> {
    let value = narrow(&details.value).ok_or_else(|| {
        error(
            EvaluationErrorCode::TypeMismatch,
            format!("resolved value {:?} has another type", details.value),
        )
    })?;
    Ok(ResolutionDetails {
        value,
        variant: details.variant,
        reason: details.reason,
        flag_metadata: details.flag_metadata,
    })
}

fn error(code: EvaluationErrorCode, message: impl Into<String>) -> EvaluationError {
    EvaluationError {
        code,
        message: Some(message.into()),
    }
}

/// The OpenFeature value types, matched to Convert's declared variable types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Bool,
    Int,
    Float,
    String,
    Struct,
}

impl Kind {
    /// The kind a Convert variable type (`boolean`, `integer`, `float`, `string`, `json`) reads
    /// as; `None` for a type this provider does not know (then the value's shape decides).
    fn of_declared(declared: &str) -> Option<Kind> {
        Some(match declared {
            "boolean" => Kind::Bool,
            "integer" => Kind::Int,
            "float" => Kind::Float,
            "string" => Kind::String,
            "json" => Kind::Struct,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Kind::Bool => "boolean",
            Kind::Int => "integer",
            Kind::Float => "float",
            Kind::String => "string",
            Kind::Struct => "structure",
        }
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Reads a variable value (already cast by the SDK to its declared type) as `kind`. When the
/// type was declared, a value of another shape means the configured text could not be read as
/// that type: `PARSE_ERROR`. With an unknown declared type the value's own shape is compared with
/// the request: `TYPE_MISMATCH`.
fn read_value(raw: &Value, kind: Kind, declared: bool) -> Result<OfValue, EvaluationErrorCode> {
    let read = match (kind, raw) {
        (Kind::Bool, Value::Bool(b)) => Some(OfValue::Bool(*b)),
        (Kind::Int, Value::Number(n)) => n.as_i64().map(OfValue::Int),
        (Kind::Float, Value::Number(n)) => n.as_f64().map(OfValue::Float),
        (Kind::String, Value::String(s)) => Some(OfValue::String(s.clone())),
        (Kind::Struct, Value::Object(m)) => Some(OfValue::Struct(
            struct_of(m).map_err(|_| EvaluationErrorCode::ParseError)?,
        )),
        _ => None,
    };
    read.ok_or(if declared {
        EvaluationErrorCode::ParseError
    } else {
        EvaluationErrorCode::TypeMismatch
    })
}

/// A JSON object as an OpenFeature structure. OpenFeature values have no null: a null anywhere
/// makes the structure unreadable (`Err(())`), rather than being dropped silently.
fn struct_of(map: &Map<String, Value>) -> Result<StructValue, ()> {
    let mut out = StructValue::default();
    for (k, v) in map {
        out.add_field(k.as_str(), of_value(v)?);
    }
    Ok(out)
}

fn of_value(v: &Value) -> Result<OfValue, ()> {
    Ok(match v {
        Value::Null => return Err(()),
        Value::Bool(b) => OfValue::Bool(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => OfValue::Int(i),
            None => OfValue::Float(n.as_f64().ok_or(())?),
        },
        Value::String(s) => OfValue::String(s.clone()),
        Value::Array(a) => OfValue::Array(a.iter().map(of_value).collect::<Result<_, _>>()?),
        Value::Object(m) => OfValue::Struct(struct_of(m)?),
    })
}

/// An OpenFeature value as JSON (for visitor and location properties).
fn json_of(v: &OfValue) -> Option<Value> {
    Some(match v {
        OfValue::Bool(b) => Value::Bool(*b),
        OfValue::Int(i) => Value::from(*i),
        OfValue::Float(f) => Value::Number(Number::from_f64(*f)?),
        OfValue::String(s) => Value::String(s.clone()),
        OfValue::Array(a) => Value::Array(a.iter().map(json_of).collect::<Option<_>>()?),
        OfValue::Struct(s) => Value::Object(json_map_of(s)?),
    })
}

fn json_map_of(s: &StructValue) -> Option<Map<String, Value>> {
    let mut fields: Vec<_> = s.fields.iter().collect();
    // A HashMap has no order; sort so the same context always yields the same properties.
    fields.sort_by(|a, b| a.0.cmp(b.0));
    fields
        .into_iter()
        .map(|(k, v)| Some((k.clone(), json_of(v)?)))
        .collect()
}

/// What a flag key names in the served config.
enum Flag<'a> {
    /// A declared feature: resolves a boolean.
    Feature { id: String, key: &'a str },
    /// A declared variable of a declared feature.
    Variable {
        id: String,
        key: &'a str,
        name: &'a str,
        declared: String,
    },
}

impl<'a> Flag<'a> {
    /// `FEATURE_KEY` when the whole key is a declared feature, otherwise `FEATURE_KEY.VARIABLE`:
    /// feature keys may hold dots, so every split of the key at a dot is tried, the longest
    /// feature key first, and the first split whose feature declares the variable wins.
    fn parse(config: &ProjectConfig, flag_key: &'a str) -> EvaluationResult<Flag<'a>> {
        if let Some(f) = config.feature_by_key(flag_key) {
            return Ok(Flag::Feature {
                id: f.id.to_string(),
                key: flag_key,
            });
        }
        // The longest feature key that is a prefix, for the error when no split resolves.
        let mut nearest = None;
        for (dot, _) in flag_key.rmatch_indices('.') {
            let (key, name) = (&flag_key[..dot], &flag_key[dot + 1..]);
            let Some(f) = config.feature_by_key(key) else {
                continue;
            };
            if let Some((_, declared)) = f.variables.iter().find(|(n, _)| n == name) {
                return Ok(Flag::Variable {
                    id: f.id.to_string(),
                    key,
                    name,
                    declared: declared.clone(),
                });
            }
            nearest.get_or_insert((key, name));
        }
        Err(error(
            EvaluationErrorCode::FlagNotFound,
            match nearest {
                Some((key, name)) => format!("feature `{key}` declares no variable `{name}`"),
                None => format!("no feature `{flag_key}` in the project config"),
            },
        ))
    }

    fn feature_key(&self) -> &'a str {
        match self {
            Flag::Feature { key, .. } | Flag::Variable { key, .. } => key,
        }
    }

    fn feature_id(&self) -> &str {
        match self {
            Flag::Feature { id, .. } | Flag::Variable { id, .. } => id,
        }
    }
}

/// The visitor an evaluation context describes.
struct Visitor {
    id: String,
    properties: Map<String, Value>,
    location_properties: Option<Map<String, Value>>,
}

impl Visitor {
    fn from_context(context: &EvaluationContext) -> EvaluationResult<Visitor> {
        let id = context
            .targeting_key
            .as_deref()
            .filter(|k| !k.is_empty())
            .ok_or_else(|| {
                error(
                    EvaluationErrorCode::TargetingKeyMissing,
                    "the targeting key (the Convert visitor id) is missing",
                )
            })?;
        let mut fields: Vec<_> = context.custom_fields.iter().collect();
        fields.sort_by(|a, b| a.0.cmp(b.0));
        let mut properties = Map::new();
        let mut location_properties = None;
        for (name, field) in fields {
            let invalid = |what: &str| {
                error(
                    EvaluationErrorCode::InvalidContext,
                    format!("context field `{name}` {what}"),
                )
            };
            let value = field_json(field).ok_or_else(|| {
                invalid("holds a value the provider cannot read (use serde_json::Value, a JSON map or open_feature::StructValue for structures, and finite floats)")
            })?;
            if name == LOCATION_PROPERTIES_FIELD {
                match value {
                    Value::Object(m) => location_properties = Some(m),
                    _ => return Err(invalid("must be a structure")),
                }
            } else {
                properties.insert(name.clone(), value);
            }
        }
        Ok(Visitor {
            id: id.to_string(),
            properties,
            location_properties,
        })
    }
}

/// An evaluation-context field as JSON. A date-time becomes its Unix timestamp in seconds; a
/// structure is read when it holds a `serde_json::Value`, a `serde_json::Map` or an OpenFeature
/// `StructValue`/`Value`.
fn field_json(field: &EvaluationContextFieldValue) -> Option<Value> {
    Some(match field {
        EvaluationContextFieldValue::Bool(b) => Value::Bool(*b),
        EvaluationContextFieldValue::Int(i) => Value::from(*i),
        EvaluationContextFieldValue::Float(f) => Value::Number(Number::from_f64(*f)?),
        EvaluationContextFieldValue::String(s) => Value::String(s.clone()),
        EvaluationContextFieldValue::DateTime(t) => Value::from(t.unix_timestamp()),
        EvaluationContextFieldValue::Struct(any) => {
            if let Some(v) = any.downcast_ref::<Value>() {
                v.clone()
            } else if let Some(m) = any.downcast_ref::<Map<String, Value>>() {
                Value::Object(m.clone())
            } else if let Some(s) = any.downcast_ref::<StructValue>() {
                Value::Object(json_map_of(s)?)
            } else if let Some(v) = any.downcast_ref::<OfValue>() {
                json_of(v)?
            } else {
                return None;
            }
        }
    })
}
