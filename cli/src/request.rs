//! The typed requests of `convert batch` and `convert bench` (shared/BATCH-PROTOCOL.md).
//!
//! A request is first read with JSON.parse semantics ([`convert_core::js::json_parse`]), then
//! deserialized into these types through `serde_path_to_error`, so a request of the wrong shape is
//! refused (exit status 2) with the JSON path of the value at fault:
//! `cases[3].attributes: invalid type: string "plan", expected a map`.
//!
//! The protocol is shared with the reference SDKs' runners, so every request they accept keeps its
//! meaning here. The leniency that implies is deliberate, and spelled out field by field:
//! - unknown keys are ignored everywhere (a runner may add its own, such as `configFile`);
//! - `null` is the same as an absent field, except where the protocol tells them apart (marked
//!   "present" below: an explicit `null` is a value, as `undefined` and `null` are in JS);
//! - switches (`enableTracking`, `typeCasting`, `updateVisitorProperties`, `captureTracking`,
//!   `excludeExperienceIdHash`, `negation`, `forceMultipleTransactions`) take any JSON value and
//!   use its JS truthiness; `ignoreLocationProperties` counts only `true`;
//! - keys, ids and `forceVariationId` take any JSON value and use JS `String(value)`; a visitor id
//!   is a string or a number;
//! - the engine operations (`hash`, `bucketValue`, `selectBucket`, `ruleMatch`, `compare`) exist to
//!   probe the engine with arbitrary JSON: their arguments stay raw JSON values, coerced as the
//!   reference coerces them (a non-number `seed` means the default 9999, a non-number `value` NaN);
//! - a `dataStore` string this build does not know, or a case that cannot run (unknown `op`,
//!   missing `visitorId` or `key`, unknown `entityType`), is reported in that case's record, not as
//!   a request error, so a request written for another SDK still runs here.
//!
//! What is typed strictly: the request and each case are JSON objects; `cases` is an array;
//! `state` is `"isolated"` or `"shared"`; the `sdk` block and its `bucketing` / `events` blocks are
//! objects with numbers where numbers are expected and a string `environment` / `dataStore`;
//! visitor data (`attributes`, `visitorAttributes`, `locationProperties`, `ruleData`, `segments`,
//! `properties`, `visitorProperties`, `bucketing`) are objects; `experienceKeys` and
//! `conversionData` are arrays; `segmentKeys` is an array or one string; `session`, `environment`
//! and `entityType` are strings. The values inside visitor data, configs and rule sets are opaque
//! JSON passed to the engine unchanged.

use convert_core::js;
use serde::de::{self, Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::{Map, Value};
use std::fmt;
use std::marker::PhantomData;
use std::ops::Deref;

/// A request that is not of the protocol's shape (exit status 2).
#[derive(Debug)]
pub struct RequestError(pub String);

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Deserializes a request (a JSON object) from its parsed JSON; an error names the JSON path of
/// the value at fault (`bench.mode: unknown variant ...`), or says what the whole request should be.
pub fn parse<'de, T: Deserialize<'de>>(request: &'de Value) -> Result<T, RequestError> {
    serde_path_to_error::deserialize(request)
        .map(|Obj(request)| request)
        .map_err(|e| RequestError(e.to_string()))
}

/// JSON objects only: serde's derived structs also take an array (fields by position), which the
/// protocol never meant.
#[derive(Debug, Clone, Default)]
pub struct Obj<T>(pub T);

impl<T> Deref for Obj<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Obj<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct ObjectVisitor<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for ObjectVisitor<T> {
            type Value = T;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(de::value::MapAccessDeserializer::new(map))
            }
        }
        d.deserialize_map(ObjectVisitor(PhantomData)).map(Obj)
    }
}

/// A field where an explicit `null` differs from an absent one: `None` when absent, the value
/// (`null` included) when present. Use with `#[serde(default, deserialize_with = "present")]`.
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

/// A setting whose explicit `null` overrides a value inherited from the request's `sdk` block:
/// `None` when absent, `Some(None)` for `null`.
pub type Given<T> = Option<Option<T>>;

/// Reads a [`Given`] field (with `#[serde(default, deserialize_with = "given")]`).
fn given<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Given<T>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// Any JSON value, read as its JS truthiness.
fn truthy<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    Value::deserialize(d).map(|v| js::truthy(&v))
}

/// A switch whose default is on: `null` is the default (as an absent field), any other value
/// its JS truthiness.
fn truthy_or_yes<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    Value::deserialize(d).map(|v| v.is_null() || js::truthy(&v))
}

/// Any JSON value when present (`null` included), read as its JS truthiness.
fn present_truthy<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    truthy(d).map(Some)
}

/// An object of opaque JSON values; `null` is none.
fn object<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Map<String, Value>>, D::Error> {
    match Value::deserialize(d)? {
        Value::Object(m) => Ok(Some(m)),
        Value::Null => Ok(None),
        other => Err(de::Error::invalid_type(
            unexpected(&other),
            &"a JSON object",
        )),
    }
}

/// A non-negative integer; `null` is none.
fn count<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    match Value::deserialize(d)? {
        Value::Null => Ok(None),
        v => v
            .as_u64()
            .map(Some)
            .ok_or_else(|| de::Error::invalid_type(unexpected(&v), &"a non-negative integer")),
    }
}

/// [`count`] for a [`Given`] field.
fn given_count<'de, D: Deserializer<'de>>(d: D) -> Result<Given<u64>, D::Error> {
    count(d).map(Some)
}

/// Any JSON number; `null` is none, for a [`Given`] field.
fn given_number<'de, D: Deserializer<'de>>(d: D) -> Result<Given<f64>, D::Error> {
    match Value::deserialize(d)? {
        Value::Null => Ok(Some(None)),
        v => v
            .as_f64()
            .map(|n| Some(Some(n)))
            .ok_or_else(|| de::Error::invalid_type(unexpected(&v), &"a number")),
    }
}

fn yes() -> bool {
    true
}

/// `segmentKeys`: an array of keys (each JS `String(key)`), or one key; `null` is none.
fn key_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    match Value::deserialize(d)? {
        Value::Array(a) => Ok(a.iter().map(|k| js::to_js_string(k).into_owned()).collect()),
        Value::String(s) => Ok(vec![s]),
        Value::Null => Ok(Vec::new()),
        other => Err(de::Error::invalid_type(
            unexpected(&other),
            &"an array of keys or one key",
        )),
    }
}

/// serde's description of a JSON value, for "invalid type" messages.
pub fn unexpected(v: &Value) -> de::Unexpected<'_> {
    match v {
        Value::Null => de::Unexpected::Unit,
        Value::Bool(b) => de::Unexpected::Bool(*b),
        Value::Number(n) => match (n.as_u64(), n.as_i64()) {
            (Some(u), _) => de::Unexpected::Unsigned(u),
            (None, Some(i)) => de::Unexpected::Signed(i),
            _ => de::Unexpected::Float(js::number_f64(n)),
        },
        Value::String(s) => de::Unexpected::Str(s),
        Value::Array(_) => de::Unexpected::Seq,
        Value::Object(_) => de::Unexpected::Map,
    }
}

/// A `convert batch` request.
#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchRequest {
    /// The project config, or the `{"environment", "data"}` envelope (present: `null` is a
    /// config, which then fails to load in each case that uses it).
    #[serde(default, deserialize_with = "present")]
    pub config: Option<Value>,
    /// SDK options for every instance.
    #[serde(default)]
    pub sdk: Option<Obj<SdkOptions>>,
    /// `isolated` (default) or `shared`.
    #[serde(default)]
    pub state: Option<State>,
    /// Flush after each case and attach what would be sent (default true, also for `null`;
    /// otherwise JS truthiness).
    #[serde(default = "yes", deserialize_with = "truthy_or_yes")]
    pub capture_tracking: bool,
    /// The cases, run in order.
    pub cases: Vec<Obj<Case>>,
}

/// How cases share SDK instances.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// A fresh SDK instance per case.
    Isolated,
    /// One instance for all cases, one context per visitor.
    Shared,
}

/// The `sdk` options block. Every field is a [`Given`]: a case's block overrides the request's
/// field by field (an explicit `null` unsets it), `bucketing` and `events` member by member.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SdkOptions {
    /// The environment (default: the envelope's, else `staging`).
    #[serde(default, deserialize_with = "given")]
    pub environment: Given<String>,
    /// Bucketing options.
    #[serde(default, deserialize_with = "given")]
    pub bucketing: Given<Obj<BucketingOptions>>,
    /// Event queue options.
    #[serde(default, deserialize_with = "given")]
    pub events: Given<Obj<EventOptions>>,
    /// The data store (default `memory`).
    #[serde(default, deserialize_with = "given")]
    pub data_store: Given<DataStore>,
}

/// `sdk.bucketing`.
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct BucketingOptions {
    /// The MurmurHash seed (ECMAScript ToUint32 of the number; 0 means the default 9999).
    #[serde(default, deserialize_with = "given_number")]
    pub hash_seed: Given<f64>,
    /// The bucket space (default 10000).
    #[serde(default, deserialize_with = "given_count")]
    pub max_traffic: Given<u64>,
    /// Hash the visitor id alone (JS truthiness of any value; present: `null` is false).
    #[serde(
        default,
        rename = "excludeExperienceIdHash",
        deserialize_with = "given_truthy"
    )]
    pub exclude_experience_id_hash: Given<bool>,
}

fn given_truthy<'de, D: Deserializer<'de>>(d: D) -> Result<Given<bool>, D::Error> {
    truthy(d).map(|b| Some(Some(b)))
}

/// `sdk.events`.
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct EventOptions {
    /// Events per tracking request (0 means the default 10).
    #[serde(default, deserialize_with = "given_count")]
    pub batch_size: Given<u64>,
}

/// `sdk.dataStore`: the store adapter behind every instance of the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataStore {
    /// `"memory"` (the default).
    Memory,
    /// `redis://`, `rediss://`, `redis+cluster://` or `rediss+cluster://` URL.
    Redis(String),
    /// `sqlite://` followed by the database file's path (empty when none was given).
    Sqlite(String),
    /// Any other string: reported in the record of each case that needs the store (a request
    /// written for another SDK still runs).
    Unsupported(String),
}

impl<'de> Deserialize<'de> for DataStore {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let url = String::deserialize(d)?;
        Ok(if url == "memory" {
            DataStore::Memory
        } else if [
            "redis://",
            "rediss://",
            "redis+cluster://",
            "rediss+cluster://",
        ]
        .iter()
        .any(|scheme| url.starts_with(scheme))
        {
            DataStore::Redis(url)
        } else if let Some(path) = url.strip_prefix("sqlite://") {
            DataStore::Sqlite(path.to_string())
        } else {
            DataStore::Unsupported(url)
        })
    }
}

/// Deep-merges two nested option blocks: a field the case gives wins.
fn merge_block<T: Clone>(
    base: &Given<Obj<T>>,
    over: &Given<Obj<T>>,
    merge: fn(&T, &T) -> T,
) -> Given<Obj<T>> {
    match (base, over) {
        (Some(Some(b)), Some(Some(o))) => Some(Some(Obj(merge(b, o)))),
        (_, Some(o)) => Some(o.clone()),
        (b, None) => b.clone(),
    }
}

impl SdkOptions {
    /// `self` overridden by a case's block: a field the case gives wins (an explicit `null`
    /// unsets it), and `bucketing` / `events` merge member by member, as the protocol's deep merge
    /// of the two JSON blocks does.
    pub fn merged_with(&self, over: &SdkOptions) -> SdkOptions {
        SdkOptions {
            environment: over
                .environment
                .clone()
                .or_else(|| self.environment.clone()),
            bucketing: merge_block(&self.bucketing, &over.bucketing, |b, o| BucketingOptions {
                hash_seed: o.hash_seed.or(b.hash_seed),
                max_traffic: o.max_traffic.or(b.max_traffic),
                exclude_experience_id_hash: o
                    .exclude_experience_id_hash
                    .or(b.exclude_experience_id_hash),
            }),
            events: merge_block(&self.events, &over.events, |b, o| EventOptions {
                batch_size: o.batch_size.or(b.batch_size),
            }),
            data_store: over.data_store.clone().or_else(|| self.data_store.clone()),
        }
    }

    /// The data store (`memory` when not given).
    pub fn data_store(&self) -> &DataStore {
        self.data_store
            .as_ref()
            .and_then(Option::as_ref)
            .unwrap_or(&DataStore::Memory)
    }
}

/// One case of a batch request. Fields the operation does not use are ignored.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Case {
    /// Echoed in the record; also the entity id of `getConfigEntityById` (present).
    #[serde(default, deserialize_with = "present")]
    pub id: Option<Value>,
    /// The operation (present; echoed in the record as given, `null` when absent; a non-string
    /// is an unknown operation).
    #[serde(default, deserialize_with = "present")]
    pub op: Option<Value>,
    /// The visitor (present; echoed): a string or a number for visitor operations, any value
    /// (JS `String(value)`) for `bucketValue`.
    #[serde(default, deserialize_with = "present")]
    pub visitor_id: Option<Value>,
    /// Experience, feature or goal key (present; echoed; JS `String(value)`).
    #[serde(default, deserialize_with = "present")]
    pub key: Option<Value>,
    /// Cases with the same session share one SDK instance.
    #[serde(default)]
    pub session: Option<String>,
    /// This case's own config, used when its instance is created (present).
    #[serde(default, deserialize_with = "present")]
    pub config: Option<Value>,
    /// This case's SDK options, merged over the request's when its instance is created.
    #[serde(default)]
    pub sdk: Option<Obj<SdkOptions>>,

    /// Context attributes, given when the visitor's context is created.
    #[serde(default, deserialize_with = "object")]
    pub visitor_attributes: Option<Map<String, Value>>,
    /// Per-call visitor properties.
    #[serde(default, deserialize_with = "object")]
    pub attributes: Option<Map<String, Value>>,
    /// Per-call location properties.
    #[serde(default, deserialize_with = "object")]
    pub location_properties: Option<Map<String, Value>>,
    /// Skip location checks (only `true` counts).
    #[serde(default)]
    pub ignore_location_properties: Value,
    /// JS truthiness (present: `null` disables tracking).
    #[serde(default, deserialize_with = "present_truthy")]
    pub enable_tracking: Option<bool>,
    /// Forces a variation when truthy (JS `String(value)`).
    #[serde(default)]
    pub force_variation_id: Value,
    /// JS truthiness.
    #[serde(default, deserialize_with = "truthy")]
    pub update_visitor_properties: bool,
    /// Per-call environment (an empty string is none).
    #[serde(default)]
    pub environment: Option<String>,
    /// JS truthiness (present).
    #[serde(default, deserialize_with = "present_truthy")]
    pub type_casting: Option<bool>,
    /// Restricts the experiences (each JS `String(key)`).
    #[serde(default)]
    pub experience_keys: Option<Vec<Value>>,

    /// Conversion / segment rule data.
    #[serde(default, deserialize_with = "object")]
    pub rule_data: Option<Map<String, Value>>,
    /// Conversion data, in order.
    #[serde(default)]
    pub conversion_data: Option<Vec<Obj<ConversionDatum>>>,
    /// Revenue, sent first as `{key: "amount", value}` (present: `null` is sent too).
    #[serde(default, deserialize_with = "present")]
    pub revenue: Option<Value>,
    /// Conversion settings.
    #[serde(default)]
    pub conversion_setting: Option<Obj<ConversionSetting>>,
    /// Custom segment keys.
    #[serde(default, deserialize_with = "key_list")]
    pub segment_keys: Vec<String>,
    /// Report segments of `setDefaultSegments`.
    #[serde(default, deserialize_with = "object")]
    pub segments: Option<Map<String, Value>>,
    /// `updateVisitorProperties`: the properties (else `visitorProperties`, else `attributes`).
    #[serde(default, deserialize_with = "object")]
    pub properties: Option<Map<String, Value>>,
    /// See `properties`.
    #[serde(default, deserialize_with = "object")]
    pub visitor_properties: Option<Map<String, Value>>,
    /// `getConfigEntity(ById)`: the entity type, singular or plural.
    #[serde(default)]
    pub entity_type: Option<String>,
    /// `seedBucketing`: `{experienceId: variationId}` (ids JS `String(value)`).
    #[serde(default, deserialize_with = "object")]
    pub bucketing: Option<Map<String, Value>>,

    /// Engine operations' arguments: raw JSON values (see the module docs).
    #[serde(flatten)]
    pub engine: EngineArgs,
}

/// The engine operations' arguments, raw JSON coerced as the reference does.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EngineArgs {
    /// `hash`: the input (JS `String(value)`, absent `"undefined"`; present).
    #[serde(default, deserialize_with = "present")]
    pub input: Option<Value>,
    /// MurmurHash seed: absent is 9999; any value, `null` included, is JavaScript's
    /// `ToUint32(Number(value))` (`"12"` is 12, `null`, `"abc"` and `{}` are 0), as the reference
    /// feeds it to the hash's bit operations.
    #[serde(default, deserialize_with = "present")]
    pub seed: Option<Value>,
    /// `bucketValue`: the experience id (JS `String(value)`, absent `""`; present).
    #[serde(default, deserialize_with = "present")]
    pub experience_id: Option<Value>,
    /// `bucketValue`: the bucket space (a number; otherwise 10000).
    #[serde(default)]
    pub max_traffic: Value,
    /// `selectBucket`: `{id: percent}` (an object; otherwise none).
    #[serde(default)]
    pub buckets: Value,
    /// `selectBucket`: the bucket value (a number, otherwise NaN); `compare`: the value (present).
    #[serde(default, deserialize_with = "present")]
    pub value: Option<Value>,
    /// `ruleMatch`: the data (an object; otherwise empty).
    #[serde(default)]
    pub data: Value,
    /// `ruleMatch`: the rule set.
    #[serde(default)]
    pub rule_set: Value,
    /// `compare`: the method (a string; otherwise none).
    #[serde(default)]
    pub method: Value,
    /// `compare`: the value compared against (present).
    #[serde(default, deserialize_with = "present")]
    pub test_against: Option<Value>,
    /// `compare`: JS truthiness.
    #[serde(default, deserialize_with = "truthy")]
    pub negation: bool,
}

/// One `conversionData` entry.
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct ConversionDatum {
    /// The key (JS `String(value)`, absent `"undefined"`; present).
    #[serde(default, deserialize_with = "present")]
    pub key: Option<Value>,
    /// The value (absent is `null`).
    #[serde(default)]
    pub value: Value,
}

/// `conversionSetting`.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConversionSetting {
    /// JS truthiness.
    #[serde(default, deserialize_with = "truthy")]
    pub force_multiple_transactions: bool,
}

/// A `convert bench` request.
#[derive(Debug, serde::Deserialize)]
pub struct BenchRequest {
    /// The project config (required; `null` fails to load).
    pub config: Value,
    /// SDK options.
    #[serde(default)]
    pub sdk: Option<Obj<SdkOptions>>,
    /// What to measure.
    pub bench: Obj<BenchOptions>,
}

/// The `bench` block. `null` is the same as an absent field.
#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BenchOptions {
    /// The experience key (required).
    pub key: String,
    /// Timed decisions (default 100000).
    #[serde(default, deserialize_with = "count")]
    pub n: Option<u64>,
    /// Untimed decisions first, on other visitors (default 10000).
    #[serde(default, deserialize_with = "count")]
    pub warmup: Option<u64>,
    /// Visitor ids are this prefix and a decimal index (default `bench-visitor-`).
    #[serde(default)]
    pub visitor_prefix: Option<String>,
    /// Visitor properties of every decision.
    #[serde(default, deserialize_with = "object")]
    pub attributes: Option<Map<String, Value>>,
    /// Location properties of every decision.
    #[serde(default, deserialize_with = "object")]
    pub location_properties: Option<Map<String, Value>>,
    /// Queue and deliver tracking events (default false).
    #[serde(default)]
    pub enable_tracking: Option<bool>,
    /// Deliver to an in-process transport that answers 200 at once (default false).
    #[serde(default)]
    pub sink: Option<bool>,
    /// What is timed (default `context+decide`).
    #[serde(default)]
    pub mode: Option<BenchMode>,
    /// Threads sharing the work (default 1, at most 256).
    #[serde(default, deserialize_with = "count")]
    pub threads: Option<u64>,
}

/// What a bench times.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
pub enum BenchMode {
    /// Create a context and run the experience, per visitor.
    #[serde(rename = "context+decide")]
    ContextDecide,
    /// Contexts are created first; only the decisions are timed.
    #[serde(rename = "decide-only")]
    DecideOnly,
}

impl BenchMode {
    /// The protocol's name.
    pub fn as_str(self) -> &'static str {
        match self {
            BenchMode::ContextDecide => "context+decide",
            BenchMode::DecideOnly => "decide-only",
        }
    }
}
