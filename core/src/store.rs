//! Visitor state (`StoreData`) and the writes the engine asks for (SPEC §5.5, §2.1).
//!
//! One visitor's state is stored under `{accountId}-{projectId}-{visitorId}` as a JSON object
//! `{bucketing?, locations?, segments?, goals?}`, the same shape the reference SDKs use, so a store
//! can be shared with them (the Ruby SDK's Redis keys are `convert:` + that key). Unknown members
//! written by other SDKs are kept untouched.
//!
//! The engine never writes a store itself: it returns [`StoreOp`]s, which the SDK applies to the
//! visitor's record inside the data store's atomic read-modify-write.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// One visitor's stored state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StoreData {
    /// Sticky decisions: experience id → variation id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucketing: Option<Map<String, Value>>,
    /// Active locations (location keys, or ids for decisions made by experience id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locations: Option<Vec<Value>>,
    /// Report segments and, when asked, other visitor properties.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segments: Option<Map<String, Value>>,
    /// Converted goals: goal key → `true`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub goals: Option<Map<String, Value>>,
    /// Members this SDK does not use, kept as they were.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A write the engine asks for. Applying the same op twice is harmless.
#[derive(Debug, Clone, PartialEq)]
pub enum StoreOp {
    /// Record a sticky decision.
    Bucketing {
        /// Experience id.
        experience_id: String,
        /// Variation id.
        variation_id: String,
    },
    /// Deep-merge properties into `segments` (arrays are unioned, new elements first).
    MergeSegments(Map<String, Value>),
    /// Replace the active-location list.
    Locations(Vec<Value>),
    /// Mark a goal as converted.
    Goal(String),
}

impl StoreData {
    /// Whether nothing at all is stored.
    pub fn is_empty(&self) -> bool {
        self.bucketing.is_none()
            && self.locations.is_none()
            && self.segments.is_none()
            && self.goals.is_none()
            && self.extra.is_empty()
    }

    /// Applies one write; returns whether the data changed.
    pub fn apply(&mut self, op: &StoreOp) -> bool {
        match op {
            StoreOp::Bucketing {
                experience_id,
                variation_id,
            } => {
                let map = self.bucketing.get_or_insert_with(Map::new);
                if map.get(experience_id).and_then(Value::as_str) == Some(variation_id.as_str()) {
                    return false;
                }
                map.insert(experience_id.clone(), Value::String(variation_id.clone()));
                true
            }
            StoreOp::MergeSegments(props) => {
                let before = self.segments.clone();
                let seg = self.segments.get_or_insert_with(Map::new);
                merge_into(seg, props);
                before.as_ref() != Some(seg)
            }
            StoreOp::Locations(list) => {
                if self.locations.as_ref() == Some(list) {
                    return false;
                }
                self.locations = Some(list.clone());
                true
            }
            StoreOp::Goal(key) => {
                let goals = self.goals.get_or_insert_with(Map::new);
                if goals.get(key) == Some(&Value::Bool(true)) {
                    return false;
                }
                goals.insert(key.clone(), Value::Bool(true));
                true
            }
        }
    }

    /// Applies several writes; returns whether the data changed.
    pub fn apply_all<'a>(&mut self, ops: impl IntoIterator<Item = &'a StoreOp>) -> bool {
        let mut changed = false;
        for op in ops {
            changed |= self.apply(op);
        }
        changed
    }

    /// The stored variation id for `experience_id`, when it is a non-empty string.
    pub fn bucketed_variation(&self, experience_id: &str) -> Option<&str> {
        self.bucketing
            .as_ref()?
            .get(experience_id)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    }

    /// Whether the visitor has any truthy stored bucketing entry for `experience_id`.
    pub fn has_bucketing(&self, experience_id: &str) -> bool {
        self.bucketing
            .as_ref()
            .and_then(|b| b.get(experience_id))
            .is_some_and(crate::js::truthy)
    }

    /// Whether goal `key` was already converted (JS truthiness of `goals[key]`).
    pub fn goal_triggered(&self, key: &str) -> bool {
        self.goals
            .as_ref()
            .and_then(|g| g.get(key))
            .is_some_and(crate::js::truthy)
    }

    /// Serializes to the shared JSON shape.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| String::from("{}"))
    }

    /// Parses the shared JSON shape.
    pub fn from_json(text: &str) -> Result<StoreData, serde_json::Error> {
        serde_json::from_str(text)
    }
}

/// The seven report-segment keys (the only visitor data sent with tracking events).
pub const REPORT_SEGMENT_KEYS: [&str; 7] = [
    "country",
    "browser",
    "devices",
    "source",
    "campaign",
    "visitorType",
    "customSegments",
];

/// Whether `key` is one of the seven report-segment keys.
pub fn is_report_segment_key(key: &str) -> bool {
    REPORT_SEGMENT_KEYS.contains(&key)
}

/// The report-segment members of `props`, in their order; `None` when there are none.
pub fn report_segments(props: &Map<String, Value>) -> Option<Map<String, Value>> {
    let out: Map<String, Value> = props
        .iter()
        .filter(|(k, _)| is_report_segment_key(k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    (!out.is_empty()).then_some(out)
}

/// The reference deep merge (`objectDeepMerge`) of `new` into `target`: arrays on both sides become
/// the union with new elements first, truthy objects on both sides merge recursively, anything else
/// is replaced.
pub fn merge_into(target: &mut Map<String, Value>, new: &Map<String, Value>) {
    for (k, nv) in new {
        match target.get_mut(k) {
            Some(old) => merge_value(old, nv),
            None => {
                target.insert(k.clone(), nv.clone());
            }
        }
    }
}

/// Merges `new` into `old` in place with the rules of [`merge_into`].
pub fn merge_value(old: &mut Value, new: &Value) {
    match (&mut *old, new) {
        (Value::Array(o), Value::Array(n)) => {
            *o = array_union(n, o);
        }
        (Value::Object(o), Value::Object(n)) => merge_into(o, n),
        (slot, n) => *slot = n.clone(),
    }
}

/// `[...new Set([...new, ...old])]` with SameValueZero equality (objects and arrays are never equal
/// to each other, as they compare by identity in JS).
pub fn array_union(new: &[Value], old: &[Value]) -> Vec<Value> {
    let mut out: Vec<Value> = Vec::with_capacity(new.len() + old.len());
    for v in new.iter().chain(old) {
        let dup = !matches!(v, Value::Object(_) | Value::Array(_))
            && out.iter().any(|e| same_value_zero(e, v));
        if !dup {
            out.push(v.clone());
        }
    }
    out
}

fn same_value_zero(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_f64(), y.as_f64()) {
            (Some(x), Some(y)) => x == y || (x.is_nan() && y.is_nan()),
            _ => false,
        },
        (Value::String(x), Value::String(y)) => x == y,
        (Value::Bool(x), Value::Bool(y)) => x == y,
        (Value::Null, Value::Null) => true,
        _ => false,
    }
}

/// JS strict equality (`===`) between two JSON values; objects and arrays are never equal.
pub fn strict_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_f64(), y.as_f64()) {
            (Some(x), Some(y)) => x == y,
            _ => false,
        },
        (Value::String(x), Value::String(y)) => x == y,
        (Value::Bool(x), Value::Bool(y)) => x == y,
        (Value::Null, Value::Null) => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    #[test]
    fn merge_unions_arrays_new_first() {
        let mut t = obj(json!({"customSegments": ["a", "b"], "country": "US"}));
        merge_into(
            &mut t,
            &obj(json!({"customSegments": ["c", "a"], "country": "GB"})),
        );
        assert_eq!(
            Value::Object(t),
            json!({"customSegments": ["c", "a", "b"], "country": "GB"})
        );
    }

    #[test]
    fn merge_recurses_into_objects_and_replaces_scalars() {
        let mut t = obj(json!({"a": {"x": 1, "y": [1]}, "b": [1], "c": {"k": 1}}));
        merge_into(
            &mut t,
            &obj(json!({"a": {"y": [2], "z": null}, "b": {"o": 1}, "c": 5})),
        );
        assert_eq!(
            Value::Object(t),
            json!({"a": {"x": 1, "y": [2, 1], "z": null}, "b": {"o": 1}, "c": 5})
        );
    }

    #[test]
    fn union_keeps_objects_by_identity() {
        let u = array_union(&[json!({"a": 1}), json!(1)], &[json!({"a": 1}), json!(1.0)]);
        assert_eq!(u, vec![json!({"a": 1}), json!(1), json!({"a": 1})]);
    }

    #[test]
    fn ops_apply_and_report_change() {
        let mut d = StoreData::default();
        let op = StoreOp::Bucketing {
            experience_id: "1".into(),
            variation_id: "2".into(),
        };
        assert!(d.apply(&op));
        assert!(!d.apply(&op));
        assert!(d.apply(&StoreOp::Goal("g".into())));
        assert!(!d.apply(&StoreOp::Goal("g".into())));
        assert!(d.goal_triggered("g"));
        assert_eq!(d.bucketed_variation("1"), Some("2"));
        assert!(d.apply(&StoreOp::Locations(vec![json!("home")])));
        assert!(d.apply(&StoreOp::Locations(vec![])));
        assert_eq!(d.locations, Some(vec![]));
    }

    #[test]
    fn json_round_trip_keeps_unknown_members() {
        let text = r#"{"segments":{"browser":"CH","country":"US","customSegments":["x"]},"bucketing":{"100218245":"100299457"},"goals":{"increase-engagement":true},"other":{"k":1}}"#;
        let d = StoreData::from_json(text).unwrap_or_default();
        assert_eq!(d.bucketed_variation("100218245"), Some("100299457"));
        assert!(d.goal_triggered("increase-engagement"));
        assert_eq!(d.extra.get("other"), Some(&json!({"k": 1})));
        let back: Value = serde_json::from_str(&d.to_json()).unwrap_or(Value::Null);
        let orig: Value = serde_json::from_str(text).unwrap_or(Value::Null);
        assert_eq!(back, orig);
    }

    #[test]
    fn report_segment_filter() {
        let props = obj(json!({"country": "US", "plan": "pro", "customSegments": ["1"]}));
        assert_eq!(
            report_segments(&props).map(Value::Object),
            Some(json!({"country": "US", "customSegments": ["1"]}))
        );
        assert_eq!(report_segments(&obj(json!({"plan": "pro"}))), None);
    }
}
