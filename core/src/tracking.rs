//! Tracking events, the visitor-grouped queue and the wire payload (SPEC §10.2–§10.5).
//!
//! The payload is serialized the way the reference's `JSON.stringify` does it: member order
//! `enrichData, accountId, projectId, visitors, source`, id-keyed maps in JS key order, numbers
//! in JS format. Only the seven report-segment keys are ever attached to a visitor.

use crate::config::Str;
use crate::js;
use serde_json::{Map, Value};
use std::collections::HashMap;

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
        /// The visitor's stored decisions at conversion time.
        bucketing_data: Option<Map<String, Value>>,
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
                    data.insert("bucketingData".into(), Value::Object(bd.clone()));
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
    pub visitor_id: String,
    /// The event.
    pub data: EventData,
    /// Report segments to attach when the visitor first enters the queue.
    pub segments: Option<Map<String, Value>>,
}

/// A visitor's entry in the queue.
#[derive(Debug, Clone, PartialEq)]
pub struct QueuedVisitor {
    /// The visitor id.
    pub visitor_id: String,
    /// Events in order.
    pub events: Vec<EventData>,
    /// Report segments (set when the visitor entered the queue).
    pub segments: Option<Map<String, Value>>,
    /// Arrival sequence number of each event (parallel to `events`).
    seqs: Vec<u64>,
}

/// The tracking queue: events grouped by visitor in arrival order (`VisitorsQueue`).
#[derive(Debug, Clone, Default)]
pub struct TrackingQueue {
    visitors: Vec<QueuedVisitor>,
    index: HashMap<String, usize>,
    events: usize,
    next_seq: u64,
}

impl TrackingQueue {
    /// An empty queue.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of queued events (not visitors).
    pub fn len(&self) -> usize {
        self.events
    }

    /// Whether no event is queued.
    pub fn is_empty(&self) -> bool {
        self.events == 0
    }

    /// Appends an event to its visitor's entry, creating the entry (with its segments) if needed.
    pub fn push(&mut self, event: TrackingEvent) {
        self.events += 1;
        let seq = self.next_seq;
        self.next_seq += 1;
        if let Some(&i) = self.index.get(&event.visitor_id) {
            self.visitors[i].events.push(event.data);
            self.visitors[i].seqs.push(seq);
            return;
        }
        self.index
            .insert(event.visitor_id.clone(), self.visitors.len());
        self.visitors.push(QueuedVisitor {
            visitor_id: event.visitor_id,
            events: vec![event.data],
            segments: event.segments.filter(|s| !s.is_empty()),
            seqs: vec![seq],
        });
    }

    /// Takes every queued visitor, leaving the queue empty.
    pub fn take(&mut self) -> Vec<QueuedVisitor> {
        self.index.clear();
        self.events = 0;
        std::mem::take(&mut self.visitors)
    }

    /// Puts back visitors taken by [`TrackingQueue::take`] whose delivery failed, ahead of anything
    /// queued since, so no event is lost and order is kept.
    pub fn restore(&mut self, batch: Vec<QueuedVisitor>) {
        let newer = self.take();
        for v in batch.into_iter().chain(newer) {
            for (n, data) in v.events.into_iter().enumerate() {
                self.push(TrackingEvent {
                    visitor_id: v.visitor_id.clone(),
                    data,
                    segments: if n == 0 { v.segments.clone() } else { None },
                });
            }
        }
    }

    /// Drops the `n` oldest events by arrival (for a bounded queue); returns how many were dropped.
    pub fn drop_oldest(&mut self, n: usize) -> usize {
        if n == 0 || self.events == 0 {
            return 0;
        }
        let mut seqs: Vec<u64> = self
            .visitors
            .iter()
            .flat_map(|v| v.seqs.iter().copied())
            .collect();
        seqs.sort_unstable();
        let n = n.min(seqs.len());
        let cutoff = seqs[n - 1]; // sequence numbers are unique
        let all = self.take();
        let mut dropped = 0;
        for mut v in all {
            let mut kept = QueuedVisitor {
                visitor_id: std::mem::take(&mut v.visitor_id),
                events: Vec::new(),
                segments: v.segments.take(),
                seqs: Vec::new(),
            };
            for (data, seq) in v.events.into_iter().zip(v.seqs) {
                if seq <= cutoff {
                    dropped += 1;
                } else {
                    kept.events.push(data);
                    kept.seqs.push(seq);
                }
            }
            if !kept.events.is_empty() {
                self.events += kept.events.len();
                self.index
                    .insert(kept.visitor_id.clone(), self.visitors.len());
                self.visitors.push(kept);
            }
        }
        dropped
    }

    /// The queued visitors.
    pub fn visitors(&self) -> &[QueuedVisitor] {
        &self.visitors
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

/// Builds the payload object for `visitors`.
pub fn payload_value(meta: &PayloadMeta<'_>, visitors: &[QueuedVisitor]) -> Value {
    let list: Vec<Value> = visitors
        .iter()
        .map(|v| {
            let mut m = Map::new();
            m.insert("visitorId".into(), Value::String(v.visitor_id.clone()));
            m.insert(
                "events".into(),
                Value::Array(v.events.iter().map(EventData::to_value).collect()),
            );
            if let Some(s) = &v.segments {
                m.insert("segments".into(), Value::Object(s.clone()));
            }
            Value::Object(m)
        })
        .collect();
    let mut p = Map::new();
    p.insert("enrichData".into(), Value::Bool(meta.enrich_data));
    p.insert("accountId".into(), Value::String(meta.account_id.into()));
    p.insert("projectId".into(), Value::String(meta.project_id.into()));
    p.insert("visitors".into(), Value::Array(list));
    p.insert("source".into(), Value::String(meta.source.into()));
    Value::Object(p)
}

/// Serializes the payload exactly as the reference's `JSON.stringify` would.
pub fn payload_json(meta: &PayloadMeta<'_>, visitors: &[QueuedVisitor]) -> String {
    js::json_stringify(&payload_value(meta, visitors))
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

    #[test]
    fn queue_groups_by_visitor_and_counts_events() {
        let mut q = TrackingQueue::new();
        let mut first = bucketing("a", "1", "2");
        first.segments = Some(
            json!({"country": "US"})
                .as_object()
                .cloned()
                .unwrap_or_default(),
        );
        q.push(first);
        q.push(bucketing("b", "1", "3"));
        let mut again = bucketing("a", "4", "5");
        again.segments = Some(
            json!({"country": "GB"})
                .as_object()
                .cloned()
                .unwrap_or_default(),
        );
        q.push(again);
        assert_eq!(q.len(), 3);
        let v = q.visitors();
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].events.len(), 2);
        assert_eq!(
            v[0].segments.as_ref().and_then(|s| s.get("country")),
            Some(&json!("US"))
        );
    }

    #[test]
    fn restore_keeps_failed_batch_first() {
        let mut q = TrackingQueue::new();
        q.push(bucketing("a", "1", "2"));
        let batch = q.take();
        q.push(bucketing("b", "1", "3"));
        q.push(bucketing("a", "9", "9"));
        q.restore(batch);
        assert_eq!(q.len(), 3);
        let ids: Vec<&str> = q.visitors().iter().map(|v| v.visitor_id.as_str()).collect();
        assert_eq!(ids, ["a", "b"]);
        assert_eq!(q.visitors()[0].events.len(), 2);
    }

    #[test]
    fn drop_oldest_removes_from_the_front() {
        let mut q = TrackingQueue::new();
        q.push(bucketing("a", "1", "2"));
        q.push(bucketing("b", "1", "3"));
        q.push(bucketing("a", "4", "5"));
        assert_eq!(q.drop_oldest(2), 2);
        assert_eq!(q.len(), 1);
        assert_eq!(q.visitors()[0].visitor_id, "a");
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
