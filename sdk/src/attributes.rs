//! Per-call options of the visitor methods, and the [`Attributes`] every method taking visitor
//! data accepts.

use std::collections::{BTreeMap, HashMap};

use serde_json::{Map, Value};

/// Visitor data: an ordered map of property names to JSON values.
///
/// Every method taking visitor data (`create_context`'s attributes,
/// [`Context::update_visitor_properties`](crate::Context::update_visitor_properties),
/// [`Context::set_default_segments`](crate::Context::set_default_segments),
/// [`Context::run_custom_segments`](crate::Context::run_custom_segments)'s rule data,
/// [`BucketingAttributes::visitor_properties`], [`BucketingAttributes::location_properties`] and
/// [`ConversionAttributes::rule_data`]) takes `impl Into<Attributes>`, so any of these works:
///
/// ```
/// use std::collections::HashMap;
/// use convert_sdk::Attributes;
/// use serde_json::json;
///
/// let a: Attributes = [("plan", "premium")].into(); // an array of pairs
/// let b: Attributes = HashMap::from([("plan".to_string(), "premium".to_string())]).into();
/// let c: Attributes = HashMap::from([("cart_items", 3_i64)]).into();
/// let d: Attributes = json!({"plan": "premium"}).into(); // a JSON object
/// let e: Attributes = vec![("plan", json!("premium"))].into();
/// let f: Attributes = ["a", "b"].iter().map(|k| (*k, 1)).collect(); // any iterator of pairs
/// let g: Attributes = None.into(); // no data (as `Option<serde_json::Map>`)
///
/// #[derive(serde::Serialize)]
/// struct Visitor { plan: &'static str, cart_items: u32 }
/// let h = Attributes::from_serialize(&Visitor { plan: "premium", cart_items: 3 })?;
/// assert_eq!(h.get("cart_items"), Some(&json!(3)));
/// assert_eq!(a, d);
/// assert!(g.is_empty());
/// // A value that is not an object is refused with a clear error.
/// let err = Attributes::from_serialize(&[1, 2]).unwrap_err();
/// assert_eq!(err.to_string(), "visitor data must be a JSON object (a map or a struct), not an array");
/// # Ok::<(), convert_sdk::AttributesError>(())
/// ```
///
/// Keys iterate in the order of `serde_json::Map` in your build: sorted by key, or in insertion
/// order when some crate enables serde_json's `preserve_order` feature. A JSON value that is not
/// an object converts (through `From<Value>`) to empty attributes and logs a warning; use
/// [`Attributes::try_from_value`] or [`Attributes::from_serialize`] to get an error instead.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Attributes(Map<String, Value>);

/// Why a value could not become [`Attributes`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AttributesError {
    /// The value is JSON but not an object.
    #[error("visitor data must be a JSON object (a map or a struct), not {0}")]
    NotAnObject(&'static str),
    /// The value could not be serialized to JSON.
    #[error("visitor data could not be serialized: {0}")]
    Serialize(#[from] serde_json::Error),
}

impl Attributes {
    /// No data.
    pub fn new() -> Self {
        Self::default()
    }

    /// A JSON object's entries; an error for any other JSON value (`null` included).
    pub fn try_from_value(value: Value) -> Result<Self, AttributesError> {
        match value {
            Value::Object(m) => Ok(Attributes(m)),
            other => Err(AttributesError::NotAnObject(
                convert_core::config::type_name(&other),
            )),
        }
    }

    /// The fields of a `Serialize` value that serializes to a JSON object (a struct, a map);
    /// an error for anything else.
    pub fn from_serialize<T: serde::Serialize + ?Sized>(
        value: &T,
    ) -> Result<Self, AttributesError> {
        Self::try_from_value(serde_json::to_value(value)?)
    }

    /// Sets one entry (builder style).
    pub fn with(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.0.insert(key.into(), value.into());
        self
    }

    /// Sets one entry; returns the previous value.
    pub fn insert(&mut self, key: impl Into<String>, value: impl Into<Value>) -> Option<Value> {
        self.0.insert(key.into(), value.into())
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.0.get(key)
    }

    /// Whether there is no entry.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The number of entries.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// The entries as a JSON map.
    pub fn as_map(&self) -> &Map<String, Value> {
        &self.0
    }

    /// The entries as a JSON map (no copy).
    pub fn into_map(self) -> Map<String, Value> {
        self.0
    }
}

impl<K: Into<String>, V: Into<Value>> FromIterator<(K, V)> for Attributes {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        Attributes(
            iter.into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        )
    }
}

impl<K: Into<String>, V: Into<Value>> Extend<(K, V)> for Attributes {
    fn extend<I: IntoIterator<Item = (K, V)>>(&mut self, iter: I) {
        self.0
            .extend(iter.into_iter().map(|(k, v)| (k.into(), v.into())));
    }
}

impl IntoIterator for Attributes {
    type Item = (String, Value);
    type IntoIter = serde_json::map::IntoIter;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl From<Map<String, Value>> for Attributes {
    fn from(m: Map<String, Value>) -> Self {
        Attributes(m)
    }
}

impl From<&Map<String, Value>> for Attributes {
    fn from(m: &Map<String, Value>) -> Self {
        Attributes(m.clone())
    }
}

/// `None` is no data: keeps `create_context(id, None)` and `create_context(id, Some(map))`.
impl From<Option<Map<String, Value>>> for Attributes {
    fn from(m: Option<Map<String, Value>>) -> Self {
        Attributes(m.unwrap_or_default())
    }
}

impl From<&Attributes> for Attributes {
    fn from(a: &Attributes) -> Self {
        a.clone()
    }
}

/// A JSON object's entries. Any other value gives empty attributes and logs a warning (this
/// conversion cannot fail); [`Attributes::try_from_value`] returns an error instead.
impl From<Value> for Attributes {
    fn from(v: Value) -> Self {
        match v {
            Value::Null => Attributes::new(),
            other => Attributes::try_from_value(other).unwrap_or_else(|e| {
                log::warn!("convert: {e}; it is ignored");
                Attributes::new()
            }),
        }
    }
}

impl<K: Into<String>, V: Into<Value>, S> From<HashMap<K, V, S>> for Attributes {
    fn from(m: HashMap<K, V, S>) -> Self {
        m.into_iter().collect()
    }
}

/// A borrowed `HashMap`, copied.
impl<K: Clone + Into<String>, V: Clone + Into<Value>, S> From<&HashMap<K, V, S>> for Attributes {
    fn from(m: &HashMap<K, V, S>) -> Self {
        m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }
}

impl<K: Into<String>, V: Into<Value>> From<BTreeMap<K, V>> for Attributes {
    fn from(m: BTreeMap<K, V>) -> Self {
        m.into_iter().collect()
    }
}

/// A borrowed `BTreeMap`, copied.
impl<K: Clone + Into<String>, V: Clone + Into<Value>> From<&BTreeMap<K, V>> for Attributes {
    fn from(m: &BTreeMap<K, V>) -> Self {
        m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }
}

impl<K: Into<String>, V: Into<Value>> From<Vec<(K, V)>> for Attributes {
    fn from(m: Vec<(K, V)>) -> Self {
        m.into_iter().collect()
    }
}

impl<K: Into<String>, V: Into<Value>, const N: usize> From<[(K, V); N]> for Attributes {
    fn from(m: [(K, V); N]) -> Self {
        m.into_iter().collect()
    }
}

impl From<Attributes> for Map<String, Value> {
    fn from(a: Attributes) -> Self {
        a.0
    }
}

impl From<Attributes> for Value {
    fn from(a: Attributes) -> Self {
        Value::Object(a.0)
    }
}

impl serde::Serialize for Attributes {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

/// Options of `run_experience(s)` and `run_feature(s)` (the reference's `BucketingAttributes`).
///
/// Built with [`BucketingAttributes::new`] and the chained setters, or as a struct literal with
/// `..Default::default()`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BucketingAttributes {
    /// Visitor properties for audience rules (merged over the context's and the stored ones).
    /// When they are to be stored (`update_visitor_properties`), entries over the visitor data
    /// limits ([`MAX_VISITOR_DATA_DEPTH`], [`MAX_VISITOR_VALUE_BYTES`],
    /// [`MAX_VISITOR_DATA_BYTES`]) are dropped and logged first.
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

    /// Sets all visitor properties (anything [`Attributes`] converts from).
    pub fn visitor_properties(mut self, props: impl Into<Attributes>) -> Self {
        self.visitor_properties = Some(props.into().0);
        self
    }

    /// Sets one location property.
    pub fn location_property(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.location_properties
            .get_or_insert_with(Map::new)
            .insert(key.into(), value.into());
        self
    }

    /// Sets all location properties (anything [`Attributes`] converts from).
    pub fn location_properties(mut self, props: impl Into<Attributes>) -> Self {
        self.location_properties = Some(props.into().0);
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

    /// Forces variation `variation_id` of the experience `run_experience` decides, as the
    /// reference's `forceVariationId` does: the experience's environment, location, audience and
    /// segment checks still apply; an id the experience does not have is ignored; the forced
    /// variation is stored like a fresh decision, so later calls without the force keep it.
    /// `Context::set_preview` is the QA view that skips the checks and stores nothing.
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

    /// The visitor properties of this call; when they are to be stored
    /// (`update_visitor_properties`), without the entries over the visitor data limits.
    pub(crate) fn call_properties(&self) -> Option<std::borrow::Cow<'_, Map<String, Value>>> {
        let props = self.visitor_properties.as_ref()?;
        Some(if self.update_visitor_properties {
            checked(props, "visitor property")
        } else {
            std::borrow::Cow::Borrowed(props)
        })
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
    /// `customDimension1..5`). Entries over the visitor data limits ([`MAX_VISITOR_DATA_DEPTH`],
    /// [`MAX_VISITOR_VALUE_BYTES`], [`MAX_VISITOR_DATA_BYTES`]) are dropped and logged.
    pub conversion_data: Vec<(String, Value)>,
    /// Send the transaction again even when the goal was already converted.
    pub force_multiple_transactions: bool,
}

impl ConversionAttributes {
    /// Empty options.
    pub fn new() -> Self {
        Self::default()
    }

    /// Revenue: adds `{key: "amount", value}` first. Sent as given, as the reference sends it: a
    /// negative amount stays negative, and a non-finite one (NaN, infinity) goes out as `null`
    /// (with a warning in the log).
    pub fn revenue(mut self, amount: f64) -> Self {
        if !amount.is_finite() {
            log::warn!("convert: revenue {amount} is not a finite number; it is sent as null");
        }
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

    /// Sets all rule data (anything [`Attributes`] converts from).
    pub fn rule_data(mut self, data: impl Into<Attributes>) -> Self {
        self.rule_data = Some(data.into().0);
        self
    }

    /// Forces a repeated transaction.
    pub fn force_multiple_transactions(mut self, yes: bool) -> Self {
        self.force_multiple_transactions = yes;
        self
    }

    /// The goal data sent with the conversion, without entries over the visitor data limits.
    pub(crate) fn goal_data(&self) -> Option<Value> {
        let keep = check_entries(
            self.conversion_data.iter().map(|(k, v)| (k.as_str(), v)),
            "conversion data",
        );
        let items: Vec<Value> = self
            .conversion_data
            .iter()
            .enumerate()
            .filter(|(i, _)| keep.as_ref().is_none_or(|k| k.get(*i) == Some(&true)))
            .map(|(_, (k, v))| {
                let mut m = Map::new();
                m.insert("key".into(), Value::String(k.clone()));
                m.insert("value".into(), v.clone());
                Value::Object(m)
            })
            .collect();
        (!items.is_empty()).then_some(Value::Array(items))
    }
}

/// The config entity types of `get_config_entity`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
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

/// Deepest nesting of arrays and objects accepted in one value of visitor data (a visitor
/// property, a segment, a conversion data value): a number or string is depth 0, `{"a": 1}`
/// and `[1]` are depth 1. Deeper values are dropped (see [`MAX_VISITOR_VALUE_BYTES`]).
///
/// A stored record nests its values two levels down (`{"segments": {"key": value}}`), so with
/// this limit every record the SDK writes stays far below the depth of 128 at which JSON
/// readers (serde_json, and so the Redis and SQLite stores) refuse a document.
pub const MAX_VISITOR_DATA_DEPTH: usize = 32;

/// Largest entry of visitor data accepted, in bytes of its JSON text (`"key":value`).
///
/// Applies to visitor properties and segments (`create_context` attributes,
/// [`Context::update_visitor_properties`](crate::Context::update_visitor_properties),
/// [`Context::set_default_segments`](crate::Context::set_default_segments),
/// [`BucketingAttributes::visitor_properties`] when `update_visitor_properties` stores them)
/// and conversion data
/// ([`ConversionAttributes::conversion_data`]). An entry over a limit is dropped, the rest of
/// the call is kept, and one warning per kind of limit is logged (later ones at debug level).
pub const MAX_VISITOR_VALUE_BYTES: usize = 16 * 1024;

/// Largest total of visitor data accepted in one call, in bytes of JSON text: entries are
/// accepted in order until the next one would pass this total; that one is dropped.
pub const MAX_VISITOR_DATA_BYTES: usize = 64 * 1024;

/// Which limit an entry broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Limit {
    Depth,
    EntrySize,
    CallSize,
}

/// Whether the first warning for each [`Limit`] was logged.
static WARNED: [std::sync::atomic::AtomicBool; 3] = [
    std::sync::atomic::AtomicBool::new(false),
    std::sync::atomic::AtomicBool::new(false),
    std::sync::atomic::AtomicBool::new(false),
];

/// Logs one dropped entry: a warning the first time per limit, at debug level after that.
fn report(limit: Limit, key: &str, what: &str) {
    let key: String = key.chars().take(64).collect();
    let why = match limit {
        Limit::Depth => format!("nests deeper than {MAX_VISITOR_DATA_DEPTH} levels"),
        Limit::EntrySize => format!("is over {MAX_VISITOR_VALUE_BYTES} bytes of JSON"),
        Limit::CallSize => {
            format!("would take the call over {MAX_VISITOR_DATA_BYTES} bytes of JSON")
        }
    };
    let first = !WARNED[limit as usize].swap(true, std::sync::atomic::Ordering::Relaxed);
    if first {
        log::warn!(
            "convert: {what} {key:?} {why}; it is dropped and the rest is kept (logged once; further drops at debug level)"
        );
    } else {
        log::debug!("convert: {what} {key:?} {why}; dropped");
    }
}

/// A sink that counts bytes and fails once they pass a limit (so measuring stops early).
struct Counter {
    bytes: usize,
    limit: usize,
}

impl std::io::Write for Counter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.bytes += buf.len();
        if self.bytes > self.limit {
            return Err(std::io::Error::other("over the limit"));
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Bytes of `"key":value` as JSON, or `None` when over `limit`. Call only on values within the
/// depth limit (serializing recurses as deep as the value).
fn json_len(key: &str, value: &Value, limit: usize) -> Option<usize> {
    let mut c = Counter { bytes: 1, limit }; // the colon
    serde_json::to_writer(&mut c, key).ok()?;
    serde_json::to_writer(&mut c, value).ok()?;
    Some(c.bytes)
}

/// Bytes of `s` as a JSON string, at most (every byte escaped as `\u00XX`, plus the quotes).
fn str_bound(s: &str) -> usize {
    s.len().saturating_mul(6).saturating_add(2)
}

/// An upper bound of the length of `v`'s JSON text, or `None` when `v` nests arrays and
/// objects more than `depth` levels deep. Never recurses further than `depth + 1` levels.
fn size_bound(v: &Value, depth: usize) -> Option<usize> {
    match v {
        Value::Null | Value::Bool(_) => Some(5),
        Value::Number(_) => Some(24), // the longest f64, i64 or u64 text
        Value::String(s) => Some(str_bound(s)),
        _ if depth == 0 => None,
        Value::Array(a) => {
            let mut total = 2usize; // brackets
            for x in a {
                total = total
                    .saturating_add(size_bound(x, depth - 1)?)
                    .saturating_add(1);
            }
            Some(total)
        }
        Value::Object(o) => {
            let mut total = 2usize;
            for (k, x) in o {
                total = total
                    .saturating_add(size_bound(x, depth - 1)?)
                    .saturating_add(str_bound(k))
                    .saturating_add(2); // colon and comma
            }
            Some(total)
        }
    }
}

/// Checks entries in order against the limits; `keep[i]` tells whether entry `i` passed.
/// Returns `None` when every entry passed (the common case: nothing to copy).
///
/// Sizes are first bounded from above without serializing; the exact JSON text is only
/// measured for an entry whose bound passes a limit.
fn check_entries<'a>(
    entries: impl Iterator<Item = (&'a str, &'a Value)> + Clone,
    what: &str,
) -> Option<Vec<bool>> {
    // Bytes of the accepted entries: upper bounds until the call limit comes near, exact after.
    let mut total = 0usize;
    let mut exact_total = false;
    let mut keep: Vec<bool> = Vec::new();
    let mut any_dropped = false;
    for (i, (key, value)) in entries.clone().enumerate() {
        let verdict = (|| {
            let bound = size_bound(value, MAX_VISITOR_DATA_DEPTH)
                .ok_or(Limit::Depth)?
                .saturating_add(str_bound(key))
                .saturating_add(1);
            let exact = |limit| json_len(key, value, limit);
            let mut n = bound;
            if n > MAX_VISITOR_VALUE_BYTES || exact_total {
                n = exact(MAX_VISITOR_VALUE_BYTES).ok_or(Limit::EntrySize)?;
            }
            if total.saturating_add(n).saturating_add(1) > MAX_VISITOR_DATA_BYTES {
                if exact_total {
                    return Err(Limit::CallSize);
                }
                // Replace the bounds counted so far by exact sizes (once per call), then
                // count exactly from here on.
                exact_total = true;
                total = entries
                    .clone()
                    .take(i)
                    .enumerate()
                    .filter(|(j, _)| !any_dropped || keep.get(*j) == Some(&true))
                    .map(|(_, (k, v))| json_len(k, v, usize::MAX).unwrap_or(0) + 1)
                    .sum();
                n = exact(MAX_VISITOR_VALUE_BYTES).ok_or(Limit::EntrySize)?;
                if total + n + 1 > MAX_VISITOR_DATA_BYTES {
                    return Err(Limit::CallSize);
                }
            }
            total += n + 1; // and a comma
            Ok(())
        })();
        if let Err(limit) = verdict {
            report(limit, key, what);
            if !any_dropped {
                any_dropped = true;
                keep = vec![true; i];
            }
        }
        if any_dropped {
            keep.push(verdict.is_ok());
        }
    }
    any_dropped.then_some(keep)
}

/// `map` without the entries over the visitor data limits (borrowed when nothing was dropped).
pub(crate) fn checked<'a>(
    map: &'a Map<String, Value>,
    what: &str,
) -> std::borrow::Cow<'a, Map<String, Value>> {
    match check_entries(map.iter().map(|(k, v)| (k.as_str(), v)), what) {
        None => std::borrow::Cow::Borrowed(map),
        Some(keep) => std::borrow::Cow::Owned(
            map.iter()
                .zip(keep)
                .filter(|(_, keep)| *keep)
                .map(|((k, v), _)| (k.clone(), v.clone()))
                .collect(),
        ),
    }
}

/// Drops the entries of `map` over the visitor data limits.
pub(crate) fn retain_checked(map: &mut Map<String, Value>, what: &str) {
    if let Some(keep) = check_entries(map.iter().map(|(k, v)| (k.as_str(), v)), what) {
        let mut keep = keep.into_iter();
        map.retain(|_, _| keep.next().unwrap_or(false));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn nested(levels: usize) -> Value {
        (0..levels).fold(json!(1), |v, _| json!([v]))
    }

    #[test]
    fn depth_counts_containers() {
        assert!(size_bound(&json!("x"), 0).is_some());
        assert!(size_bound(&json!([]), 0).is_none());
        assert!(size_bound(&nested(32), 32).is_some());
        assert!(size_bound(&nested(33), 32).is_none());
        // A value far past serde_json's recursion limit is refused after 33 levels.
        let mut deep = json!(1);
        for _ in 0..1_000 {
            deep = json!([deep]);
        }
        assert!(size_bound(&deep, MAX_VISITOR_DATA_DEPTH).is_none());
    }

    #[test]
    fn a_call_keeps_entries_in_order_until_its_total_is_reached() {
        let big = "y".repeat(15 * 1024);
        let mut map: Map<String, Value> = (0..6).map(|i| (format!("k{i}"), json!(big))).collect();
        map.insert("small".into(), json!(1));
        let checked = checked(&map, "test");
        // Four entries of ~15 KiB fit in 64 KiB, the fifth and sixth do not; the small one does.
        let keys: Vec<&str> = checked.keys().map(String::as_str).collect();
        assert_eq!(keys, ["k0", "k1", "k2", "k3", "small"]);
        // Nothing dropped: nothing copied.
        let fine: Map<String, Value> = [("a".to_string(), json!({"b": [1, 2]}))]
            .into_iter()
            .collect();
        assert!(matches!(
            super::checked(&fine, "test"),
            std::borrow::Cow::Borrowed(_)
        ));
    }

    #[test]
    fn size_bound_is_never_below_the_json_text() {
        let values = [
            json!(null),
            json!(true),
            json!(-1.797_693_134_862_315_7e308),
            json!(u64::MAX),
            json!(i64::MIN),
            json!("plain"),
            json!("\u{1}\u{1f}\"\\ctrl"),
            json!("ünïcödé 🎉"),
            json!({"a": [1, {"b": null}], "ü\n": ["x", 2.5, false]}),
            json!([[], {}, [[]]]),
        ];
        for v in &values {
            let text = serde_json::to_string(v).unwrap_or_default();
            let bound = size_bound(v, MAX_VISITOR_DATA_DEPTH).unwrap_or(0);
            assert!(bound >= text.len(), "{text}: bound {bound}");
        }
    }

    #[test]
    fn the_call_total_counts_exact_json_text() {
        // Strings whose upper bounds (6 bytes a byte) pass the call total long before their
        // text does: entries are accepted exactly while the JSON text fits.
        let map: Map<String, Value> = (0..40)
            .map(|i| (format!("k{i:02}"), json!("z".repeat(2_500))))
            .collect();
        let mut fits = 0;
        let mut total = 0;
        for (k, v) in &map {
            let entry = serde_json::to_string(k).unwrap_or_default().len()
                + 1
                + serde_json::to_string(v).unwrap_or_default().len()
                + 1;
            if total + entry > MAX_VISITOR_DATA_BYTES {
                break;
            }
            total += entry;
            fits += 1;
        }
        assert!(fits > 20 && fits < 40, "{fits}");
        let kept = checked(&map, "test");
        assert_eq!(kept.len(), fits);
        assert!(kept.keys().eq(map.keys().take(fits)));
    }

    #[test]
    fn conversion_data_over_the_limits_is_dropped() {
        let attrs = ConversionAttributes::new()
            .revenue(3.0)
            .data("customDimension1", nested(40))
            .data("customDimension2", "x".repeat(MAX_VISITOR_VALUE_BYTES))
            .data("productsCount", 2);
        assert_eq!(
            attrs.goal_data(),
            Some(json!([{"key": "amount", "value": 3}, {"key": "productsCount", "value": 2}]))
        );
        let none = ConversionAttributes::new().data("customDimension1", nested(40));
        assert_eq!(none.goal_data(), None);
    }
}
