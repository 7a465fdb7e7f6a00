//! Tracking events, the visitor-grouped queue and the wire payload (SPEC §10.2–§10.5).
//!
//! The payload is serialized the way the reference's `JSON.stringify` does it: member order
//! `enrichData, accountId, projectId, visitors, source`, id-keyed maps in JS key order, numbers
//! in JS format. Only the seven report-segment keys are ever attached to a visitor.

use crate::config::Str;
use crate::js;
use serde_json::{Map, Value};
use std::collections::{HashMap, VecDeque};

/// What happened, as sent in `events[].data`.
#[derive(Debug, Clone, PartialEq)]
pub enum EventData {
    /// A fresh decision: `{"eventType":"bucketing","data":{"experienceId","variationId"}}`.
    Bucketing {
        /// Experience id.
        experience_id: Str,
        /// Variation id.
        variation_id: Str,
    },
    /// A conversion (`goal_data` absent) or a transaction (`goal_data` present):
    /// `{"eventType":"conversion","data":{"goalId","goalData"?,"bucketingData"?}}`.
    Conversion {
        /// The goal id as served.
        goal_id: Value,
        /// `[{key, value}]` revenue and custom data.
        goal_data: Option<Value>,
        /// The visitor's stored decisions at conversion time (experience id → variation id), in
        /// the order they were stored; written in JS property order.
        bucketing_data: Option<Vec<(String, Value)>>,
    },
}

impl EventData {
    /// The event as the JSON object sent on the wire.
    pub fn to_value(&self) -> Value {
        let mut data = Map::new();
        let kind = match self {
            EventData::Bucketing {
                experience_id,
                variation_id,
            } => {
                data.insert(
                    "experienceId".into(),
                    Value::String(experience_id.to_string()),
                );
                data.insert(
                    "variationId".into(),
                    Value::String(variation_id.to_string()),
                );
                "bucketing"
            }
            EventData::Conversion {
                goal_id,
                goal_data,
                bucketing_data,
            } => {
                data.insert("goalId".into(), goal_id.clone());
                if let Some(gd) = goal_data {
                    data.insert("goalData".into(), gd.clone());
                }
                if let Some(bd) = bucketing_data {
                    data.insert(
                        "bucketingData".into(),
                        Value::Object(bd.iter().cloned().collect()),
                    );
                }
                "conversion"
            }
        };
        let mut ev = Map::new();
        ev.insert("eventType".into(), Value::String(kind.into()));
        ev.insert("data".into(), Value::Object(data));
        Value::Object(ev)
    }
}

/// One event for the tracking queue.
#[derive(Debug, Clone, PartialEq)]
pub struct TrackingEvent {
    /// The visitor it belongs to.
    pub visitor_id: Str,
    /// The event.
    pub data: EventData,
    /// Report segments to attach when the visitor first appears in a batch.
    pub segments: Option<Map<String, Value>>,
}

/// The deepest nesting of user data (segments, goal data) an event may carry: deeper values are
/// refused when the event is queued, so serializing a payload never recurses deeper than this.
pub const MAX_EVENT_DEPTH: usize = 64;

/// The nesting depth of `v` (a scalar is 0, `[]` and `{}` are 1, `[[1]]` is 2), computed without
/// recursion so that any depth is measured safely. Stops counting at `limit + 1`.
pub fn nesting_depth(v: &Value, limit: usize) -> usize {
    let mut deepest = 0;
    let mut stack: Vec<(&Value, usize)> = vec![(v, 0)];
    while let Some((v, d)) = stack.pop() {
        let children: Box<dyn Iterator<Item = &Value>> = match v {
            Value::Array(a) => Box::new(a.iter()),
            Value::Object(m) => Box::new(m.values()),
            _ => continue,
        };
        let d = d + 1;
        deepest = deepest.max(d);
        if deepest > limit {
            return deepest;
        }
        stack.extend(children.map(|c| (c, d)));
    }
    deepest
}

impl TrackingEvent {
    /// Makes the event safe to serialize: a report segment nested deeper than
    /// [`MAX_EVENT_DEPTH`] is removed (`Ok` with the number removed). An event whose goal data is
    /// that deep cannot be sent without it and is refused (`Err`).
    pub fn bound_depth(&mut self) -> Result<usize, DepthError> {
        if let EventData::Conversion {
            goal_data: Some(gd),
            ..
        } = &self.data
        {
            if nesting_depth(gd, MAX_EVENT_DEPTH) > MAX_EVENT_DEPTH {
                return Err(DepthError);
            }
        }
        let Some(segments) = &mut self.segments else {
            return Ok(0);
        };
        let before = segments.len();
        // Segment values sit one level below the segments object.
        segments.retain(|_, v| nesting_depth(v, MAX_EVENT_DEPTH) < MAX_EVENT_DEPTH);
        Ok(before - segments.len())
    }
}

/// An event's goal data is nested deeper than [`MAX_EVENT_DEPTH`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DepthError;

impl std::fmt::Display for DepthError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "goal data nested deeper than {MAX_EVENT_DEPTH} levels cannot be sent"
        )
    }
}

impl std::error::Error for DepthError {}

/// The tracking queue: a ring buffer of events in arrival order. Enqueueing and dropping the
/// oldest event take constant time; events are grouped by visitor only when a batch is written.
#[derive(Debug, Clone, Default)]
pub struct TrackingQueue {
    events: VecDeque<TrackingEvent>,
}

impl TrackingQueue {
    /// An empty queue.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of queued events.
    pub fn len(&self) -> usize {
        self.events.len()
    }

    /// Whether no event is queued.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// Appends an event (amortised constant time).
    pub fn push(&mut self, event: TrackingEvent) {
        self.events.push_back(event);
    }

    /// Drops the `n` oldest events; returns how many were dropped. Constant time per event.
    pub fn drop_oldest(&mut self, n: usize) -> usize {
        let n = n.min(self.events.len());
        self.events.drain(..n);
        n
    }

    /// Removes and returns the `n` oldest events, oldest first (a batch).
    pub fn take_front(&mut self, n: usize) -> Vec<TrackingEvent> {
        let n = n.min(self.events.len());
        self.events.drain(..n).collect()
    }

    /// Puts events taken by [`TrackingQueue::take_front`] back at the front, in their order, ahead
    /// of anything queued since (a failed batch keeps its place).
    pub fn restore_front(&mut self, batch: Vec<TrackingEvent>) {
        for e in batch.into_iter().rev() {
            self.events.push_front(e);
        }
    }

    /// Removes every queued event, oldest first.
    pub fn take_all(&mut self) -> Vec<TrackingEvent> {
        self.events.drain(..).collect()
    }

    /// The queued events, oldest first.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &TrackingEvent> {
        self.events.iter()
    }
}

/// Envelope fields of a tracking payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayloadMeta<'a> {
    /// `true` when no persistent store is configured.
    pub enrich_data: bool,
    /// Account id.
    pub account_id: &'a str,
    /// Project id.
    pub project_id: &'a str,
    /// `source`, `"rust-sdk"` for this SDK.
    pub source: &'a str,
}

/// The source name this SDK puts in payloads.
pub const SOURCE: &str = "rust-sdk";

/// One visitor of a batch: its events in order and the segments of its first event.
struct VisitorGroup<'a> {
    visitor_id: &'a str,
    events: Vec<&'a EventData>,
    segments: Option<&'a Map<String, Value>>,
}

fn group_by_visitor<'a>(
    events: impl IntoIterator<Item = &'a TrackingEvent>,
) -> Vec<VisitorGroup<'a>> {
    let events = events.into_iter();
    let hint = events.size_hint().0;
    let mut groups: Vec<VisitorGroup<'a>> = Vec::with_capacity(hint);
    let mut index: HashMap<&'a str, usize, foldhash::fast::RandomState> =
        HashMap::with_capacity_and_hasher(hint, foldhash::fast::RandomState::default());
    for e in events {
        match index.get(e.visitor_id.as_str()) {
            Some(&i) => groups[i].events.push(&e.data),
            None => {
                index.insert(&e.visitor_id, groups.len());
                groups.push(VisitorGroup {
                    visitor_id: &e.visitor_id,
                    events: vec![&e.data],
                    segments: e.segments.as_ref().filter(|s| !s.is_empty()),
                });
            }
        }
    }
    groups
}

/// Appends a JSON object's members the way `JSON.stringify` lists them (see [`js::write_json`]).
fn write_object(out: &mut String, m: &Map<String, Value>) {
    js::write_json_object(out, m.iter().map(|(k, v)| (k.as_str(), v)));
}

fn write_event(out: &mut String, e: &EventData) {
    match e {
        EventData::Bucketing {
            experience_id,
            variation_id,
        } => {
            out.push_str(r#"{"eventType":"bucketing","data":{"experienceId":"#);
            js::write_json_string(out, experience_id);
            out.push_str(r#","variationId":"#);
            js::write_json_string(out, variation_id);
            out.push_str("}}");
        }
        EventData::Conversion {
            goal_id,
            goal_data,
            bucketing_data,
        } => {
            out.push_str(r#"{"eventType":"conversion","data":{"goalId":"#);
            js::write_json(out, goal_id);
            if let Some(gd) = goal_data {
                out.push_str(r#","goalData":"#);
                js::write_json(out, gd);
            }
            if let Some(bd) = bucketing_data {
                out.push_str(r#","bucketingData":"#);
                js::write_json_object(out, bd.iter().map(|(k, v)| (k.as_str(), v)));
            }
            out.push_str("}}");
        }
    }
}

/// Appends the payload for `events` (grouped by visitor in order of first appearance) to `out`,
/// byte for byte what the reference's `JSON.stringify` produces: member order
/// `enrichData, accountId, projectId, visitors, source`. No intermediate JSON tree is built;
/// nesting of user data is bounded by [`MAX_EVENT_DEPTH`] when events are queued.
pub fn write_payload<'a>(
    out: &mut String,
    meta: &PayloadMeta<'_>,
    events: impl IntoIterator<Item = &'a TrackingEvent>,
) {
    out.push_str(r#"{"enrichData":"#);
    out.push_str(if meta.enrich_data { "true" } else { "false" });
    out.push_str(r#","accountId":"#);
    js::write_json_string(out, meta.account_id);
    out.push_str(r#","projectId":"#);
    js::write_json_string(out, meta.project_id);
    out.push_str(r#","visitors":["#);
    for (n, v) in group_by_visitor(events).into_iter().enumerate() {
        if n > 0 {
            out.push(',');
        }
        out.push_str(r#"{"visitorId":"#);
        js::write_json_string(out, v.visitor_id);
        out.push_str(r#","events":["#);
        for (i, e) in v.events.into_iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            write_event(out, e);
        }
        out.push(']');
        if let Some(s) = v.segments {
            out.push_str(r#","segments":"#);
            write_object(out, s);
        }
        out.push('}');
    }
    out.push_str(r#"],"source":"#);
    js::write_json_string(out, meta.source);
    out.push('}');
}

/// The payload for `events` as a string (see [`write_payload`]).
pub fn payload_json<'a>(
    meta: &PayloadMeta<'_>,
    events: impl IntoIterator<Item = &'a TrackingEvent>,
) -> String {
    let events = events.into_iter();
    // About 130 bytes per event in a typical payload: one allocation for most batches.
    let mut out = String::with_capacity(128 + 160 * events.size_hint().0);
    write_payload(&mut out, meta, events);
    out
}

/// Default config endpoint.
pub const DEFAULT_CONFIG_ENDPOINT: &str = "https://cdn-4.convertexperiments.com/api/v1/";
/// Default tracking endpoint (`[project_id]` is replaced by the project id).
pub const DEFAULT_TRACK_ENDPOINT: &str = "https://[project_id].metrics.convertexperiments.com/v1/";

/// `POST` URL for a batch: `{endpoint with [project_id] replaced, no trailing /}/track/{sdk_key}`.
pub fn track_url(endpoint: &str, project_id: &str, sdk_key: &str) -> String {
    let base = endpoint.replace("[project_id]", project_id);
    format!("{}/track/{sdk_key}", base.trim_end_matches('/'))
}

/// Config `GET` URL: `{endpoint}/config/{sdk_key}` with `environment`, `_conv_low_cache` and
/// `debug_token` query parameters in that order, percent-encoded like `encodeURIComponent`.
pub fn config_url(
    endpoint: &str,
    sdk_key: &str,
    environment: Option<&str>,
    low_cache: bool,
    debug_token: Option<&str>,
) -> String {
    let mut url = format!("{}/config/{sdk_key}", endpoint.trim_end_matches('/'));
    let mut params: Vec<String> = Vec::new();
    if let Some(env) = environment.filter(|e| !e.is_empty()) {
        params.push(format!("environment={}", encode_uri_component(env)));
    }
    let token = debug_token.filter(|t| !t.is_empty());
    if low_cache || token.is_some() {
        params.push("_conv_low_cache=1".into());
    }
    if let Some(t) = token {
        params.push(format!("debug_token={}", encode_uri_component(t)));
    }
    if !params.is_empty() {
        url.push('?');
        url.push_str(&params.join("&"));
    }
    url
}

/// JS `encodeURIComponent`: keeps `A–Z a–z 0–9 - _ . ! ~ * ' ( )`, percent-encodes the UTF-8
/// bytes of everything else with upper-case hex.
pub fn encode_uri_component(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.!~*'()".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn bucketing(v: &str, e: &str, var: &str) -> TrackingEvent {
        TrackingEvent {
            visitor_id: v.into(),
            data: EventData::Bucketing {
                experience_id: e.into(),
                variation_id: var.into(),
            },
            segments: None,
        }
    }

    fn seg(v: Value) -> Option<Map<String, Value>> {
        v.as_object().cloned()
    }

    fn meta() -> PayloadMeta<'static> {
        PayloadMeta {
            enrich_data: true,
            account_id: "10",
            project_id: "20",
            source: SOURCE,
        }
    }

    /// `JSON.stringify` of an object literal whose (non-array-index) members are listed in the
    /// given order, values already serialized.
    fn literal(members: &[(&str, String)]) -> String {
        let body: Vec<String> = members
            .iter()
            .map(|(k, v)| format!("{}:{v}", js::json_stringify(&json!(k))))
            .collect();
        format!("{{{}}}", body.join(","))
    }

    /// The payload as the previous implementation built it: a tree of JS objects written by
    /// `js::json_stringify`, with the literal member order of the reference's object literals
    /// and `bucketingData` ordered by `keyorder::js_object_from_pairs`. The direct writer must
    /// produce the same bytes, whatever map type `serde_json` uses.
    fn via_value_tree(meta: &PayloadMeta<'_>, events: &[TrackingEvent]) -> String {
        let event = |e: &EventData| -> String {
            let (kind, data) = match e {
                EventData::Bucketing {
                    experience_id,
                    variation_id,
                } => (
                    "bucketing",
                    literal(&[
                        (
                            "experienceId",
                            js::json_stringify(&json!(experience_id.as_str())),
                        ),
                        (
                            "variationId",
                            js::json_stringify(&json!(variation_id.as_str())),
                        ),
                    ]),
                ),
                EventData::Conversion {
                    goal_id,
                    goal_data,
                    bucketing_data,
                } => {
                    let mut m = vec![("goalId", js::json_stringify(goal_id))];
                    if let Some(gd) = goal_data {
                        m.push(("goalData", js::json_stringify(gd)));
                    }
                    if let Some(bd) = bucketing_data {
                        let ordered = crate::keyorder::js_object_from_pairs(bd.iter().cloned());
                        let body: Vec<String> = ordered
                            .iter()
                            .map(|(k, v)| {
                                format!(
                                    "{}:{}",
                                    js::json_stringify(&json!(k)),
                                    js::json_stringify(v)
                                )
                            })
                            .collect();
                        m.push(("bucketingData", format!("{{{}}}", body.join(","))));
                    }
                    ("conversion", literal(&m))
                }
            };
            literal(&[
                ("eventType", js::json_stringify(&json!(kind))),
                ("data", data),
            ])
        };
        type Visitor = (String, Vec<String>, Option<Map<String, Value>>);
        let mut visitors: Vec<Visitor> = Vec::new();
        for e in events {
            let ev = event(&e.data);
            match visitors.iter_mut().find(|v| v.0 == e.visitor_id) {
                Some(v) => v.1.push(ev),
                None => visitors.push((
                    e.visitor_id.to_string(),
                    vec![ev],
                    e.segments.clone().filter(|s| !s.is_empty()),
                )),
            }
        }
        let list: Vec<String> = visitors
            .into_iter()
            .map(|(id, evs, segs)| {
                let mut m = vec![
                    ("visitorId", js::json_stringify(&json!(id))),
                    ("events", format!("[{}]", evs.join(","))),
                ];
                if let Some(s) = segs {
                    m.push(("segments", js::json_stringify(&Value::Object(s))));
                }
                literal(&m)
            })
            .collect();
        literal(&[
            ("enrichData", js::json_stringify(&json!(meta.enrich_data))),
            ("accountId", js::json_stringify(&json!(meta.account_id))),
            ("projectId", js::json_stringify(&json!(meta.project_id))),
            ("visitors", format!("[{}]", list.join(","))),
            ("source", js::json_stringify(&json!(meta.source))),
        ])
    }

    #[test]
    fn direct_writer_matches_the_value_tree_byte_for_byte() {
        let mut first = bucketing("a\"\u{1}ü", "1", "2");
        first.segments = seg(json!({"country": "US", "customSegments": ["7", "3"]}));
        let mut again = bucketing("a\"\u{1}ü", "4", "5");
        again.segments = seg(json!({"country": "GB"}));
        let conv = TrackingEvent {
            visitor_id: "b".into(),
            data: EventData::Conversion {
                goal_id: json!("100215960"),
                goal_data: Some(
                    json!([{"key": "amount", "value": 10.50}, {"key": "n", "value": 1e21}]),
                ),
                bucketing_data: Some(
                    [
                        ("zz", "1"),
                        ("100218245", "100299457"),
                        ("7", "9"),
                        ("ab", "2"),
                    ]
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), json!(v)))
                    .collect(),
                ),
            },
            segments: seg(json!({})),
        };
        let numeric_goal = TrackingEvent {
            visitor_id: "c".into(),
            data: EventData::Conversion {
                goal_id: json!(42),
                goal_data: None,
                bucketing_data: None,
            },
            segments: seg(json!({"10": 1, "browser": "CH", "2": [null, true]})),
        };
        let events = vec![first, conv, again, numeric_goal];
        for m in [
            meta(),
            PayloadMeta {
                enrich_data: false,
                ..meta()
            },
        ] {
            assert_eq!(payload_json(&m, &events), via_value_tree(&m, &events));
        }
        assert_eq!(payload_json(&meta(), &[]), via_value_tree(&meta(), &[]));
        // The stored decisions keep their stored order (JS property order), whatever map type
        // serde_json uses in this build.
        assert!(
            payload_json(&meta(), &events)
                .contains(r#""bucketingData":{"7":"9","100218245":"100299457","zz":"1","ab":"2"}"#)
        );
        let doc: Value = serde_json::from_str(&payload_json(&meta(), &events)).unwrap_or_default();
        assert_eq!(
            doc["visitors"][0]["events"].as_array().map(Vec::len),
            Some(2)
        );
        assert_eq!(
            doc["visitors"][0]["segments"],
            json!({"country": "US", "customSegments": ["7", "3"]})
        );
    }

    #[test]
    fn ring_buffer_drops_the_oldest_and_restores_in_order() {
        let mut q = TrackingQueue::new();
        for i in 0..5 {
            q.push(bucketing(&format!("v{i}"), "1", "2"));
        }
        assert_eq!(q.drop_oldest(2), 2);
        assert_eq!(q.len(), 3);
        let batch = q.take_front(2);
        assert_eq!(batch[0].visitor_id, "v2");
        q.push(bucketing("v5", "1", "2"));
        q.restore_front(batch);
        let ids: Vec<&str> = q.iter().map(|e| e.visitor_id.as_str()).collect();
        assert_eq!(ids, ["v2", "v3", "v4", "v5"]);
        assert_eq!(q.drop_oldest(10), 4);
        assert!(q.is_empty());
    }

    #[test]
    fn depth_is_measured_without_recursion_and_bounded() {
        let mut deep = json!(1);
        for _ in 0..300 {
            deep = Value::Array(vec![deep]);
        }
        assert_eq!(nesting_depth(&deep, MAX_EVENT_DEPTH), MAX_EVENT_DEPTH + 1);
        assert_eq!(nesting_depth(&json!({"a": [1, {"b": []}]}), 10), 4);
        assert_eq!(nesting_depth(&json!("x"), 10), 0);
        let mut e = bucketing("v", "1", "2");
        e.segments = seg(json!({"country": "US"}));
        if let Some(s) = e.segments.as_mut() {
            s.insert("customSegments".into(), deep.clone());
        }
        assert_eq!(e.bound_depth(), Ok(1));
        assert_eq!(e.segments, seg(json!({"country": "US"})));
        let mut c = TrackingEvent {
            visitor_id: "v".into(),
            data: EventData::Conversion {
                goal_id: json!("1"),
                goal_data: Some(deep),
                bucketing_data: None,
            },
            segments: None,
        };
        assert_eq!(c.bound_depth(), Err(DepthError));
    }

    #[test]
    fn urls() {
        assert_eq!(
            track_url(DEFAULT_TRACK_ENDPOINT, "10025986", "10022898/10025986"),
            "https://10025986.metrics.convertexperiments.com/v1/track/10022898/10025986"
        );
        assert_eq!(
            config_url(DEFAULT_CONFIG_ENDPOINT, "k", Some("staging"), false, None),
            "https://cdn-4.convertexperiments.com/api/v1/config/k?environment=staging"
        );
        assert_eq!(
            config_url("http://x/", "k", None, false, Some("tok+en/val=x&z")),
            "http://x/config/k?_conv_low_cache=1&debug_token=tok%2Ben%2Fval%3Dx%26z"
        );
        assert_eq!(
            config_url("http://x", "k", None, true, None),
            "http://x/config/k?_conv_low_cache=1"
        );
        assert_eq!(
            config_url("http://x", "k", None, false, None),
            "http://x/config/k"
        );
    }
}
