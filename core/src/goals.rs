//! Conversions (SPEC §9), report segments and custom segments (SPEC §8).

use crate::engine::{Effects, Engine, VisitorState};
use crate::rules::{RuleData, RuleError, RuleOutcome};
use crate::store::{StoreOp, report_segments};
use crate::tracking::{EventData, TrackingEvent};
use serde_json::{Map, Value};

/// What a conversion call did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "type", rename_all = "camelCase")]
#[non_exhaustive]
pub enum ConversionOutcome {
    /// No goal with that key (or it has no id).
    GoalNotFound,
    /// Rule data was given and the goal's rules did not match it (or the goal has no rules).
    RulesNotMatched,
    /// The goal was already converted for this visitor and repeats were not forced.
    AlreadyConverted,
    /// Nothing was tracked or stored: the context is in preview (QA) mode.
    Preview,
    /// Nothing was tracked or stored: the context has an empty visitor id (the reference
    /// returns without tracking too).
    NoVisitorId,
    /// Nothing was tracked or stored: the SDK has no config yet.
    NotReady,
    /// The data store could not be reached: the conversion is held in this process and sent once
    /// the store confirms this visitor had not converted the goal yet (see the SDK's
    /// `docs/stores.md`). Held conversions that can never be confirmed are counted in metrics.
    Deferred,
    /// The data store could not be reached and the SDK already holds its limit of unconfirmed
    /// conversions (`StoreOptions::max_held_conversions`): this conversion was dropped, not
    /// sent, and counted in metrics (`held_conversions_overflow`).
    Dropped,
    /// The goal is (now) marked converted; `events` tracking events were queued (0 for a forced
    /// repeat without goal data).
    Converted {
        /// Number of events queued.
        events: usize,
    },
}

impl ConversionOutcome {
    /// Whether at least one event was queued.
    pub fn fired(&self) -> bool {
        matches!(self, ConversionOutcome::Converted { events } if *events > 0)
    }
}

impl Engine<'_> {
    /// Tracks a conversion of goal `goal_key` (`DataManager.convert`). `goal_data` is the
    /// `[{key, value}]` list; `force` repeats the transaction for an already converted goal.
    pub fn convert(
        &self,
        visitor: &mut VisitorState<'_>,
        goal_key: &str,
        rule_data: Option<&dyn RuleData>,
        goal_data: Option<&Value>,
        force: bool,
        fx: &mut Effects,
    ) -> Result<ConversionOutcome, RuleError> {
        let Some(goal) = self
            .config
            .goal_by_key(goal_key)
            .filter(|g| crate::js::truthy(&g.id))
        else {
            return Ok(ConversionOutcome::GoalNotFound);
        };
        if let Some(data) = rule_data {
            let Some(rules) = &goal.rules else {
                return Ok(ConversionOutcome::RulesNotMatched);
            };
            match rules.evaluate(data) {
                RuleOutcome::Matched => {}
                RuleOutcome::NotMatched => return Ok(ConversionOutcome::RulesNotMatched),
                RuleOutcome::Error(e) => return Err(e),
            }
        }
        let triggered = visitor.data.goal_triggered(goal_key);
        if triggered && !force {
            return Ok(ConversionOutcome::AlreadyConverted);
        }
        let bucketing_data = visitor.data.bucketing_members();
        let segments = visitor.data.segments().and_then(report_segments);
        visitor.write(StoreOp::Goal(goal.key.clone()), fx, true);
        let mut events = 0;
        if !triggered {
            fx.tracking.push(TrackingEvent {
                visitor_id: crate::config::Str::from(visitor.id),
                data: EventData::Conversion {
                    goal_id: goal.id.clone(),
                    goal_data: None,
                    bucketing_data: bucketing_data.clone(),
                },
                segments: segments.clone(),
            });
            events += 1;
        }
        if let Some(gd) = goal_data.filter(|g| crate::js::truthy(g)) {
            fx.tracking.push(TrackingEvent {
                visitor_id: crate::config::Str::from(visitor.id),
                data: EventData::Conversion {
                    goal_id: goal.id.clone(),
                    goal_data: Some(gd.clone()),
                    bucketing_data,
                },
                segments,
            });
            events += 1;
        }
        Ok(ConversionOutcome::Converted { events })
    }

    /// Stores the report-segment members of `segments` (`putSegments`); other keys are ignored.
    pub fn put_segments(
        &self,
        visitor: &mut VisitorState<'_>,
        segments: &Map<String, Value>,
        enable_storage: bool,
        fx: &mut Effects,
    ) {
        if !enable_storage {
            return;
        }
        if let Some(report) = report_segments(segments) {
            visitor.write(StoreOp::MergeSegments(report), fx, true);
        }
    }

    /// Custom segments (`selectCustomSegments`, SPEC §8.3): evaluates the listed segments in config
    /// order up to the first match (later ones are added unevaluated, as in the reference) and adds
    /// the new ids to `customSegments`. Returns the updated segments, or `None` when nothing was
    /// added. `rule_data: None` takes every listed segment without evaluation. A segment without
    /// rules matches (the reference throws there).
    pub fn run_custom_segments(
        &self,
        visitor: &mut VisitorState<'_>,
        segment_keys: &[&str],
        rule_data: Option<&dyn RuleData>,
        enable_storage: bool,
        fx: &mut Effects,
    ) -> Result<Option<Map<String, Value>>, RuleError> {
        let existing: Vec<Value> = visitor
            .data
            .segments()
            .and_then(|s| s.get("customSegments"))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let mut new_ids: Vec<Value> = Vec::new();
        let mut matched = false;
        for seg in self
            .config
            .segments
            .iter()
            .filter(|s| segment_keys.contains(&&*s.key))
        {
            if let Some(data) = rule_data {
                if !matched {
                    matched = match &seg.rules {
                        None => true,
                        Some(rules) => match rules.evaluate(data) {
                            RuleOutcome::Matched => true,
                            RuleOutcome::NotMatched => false,
                            RuleOutcome::Error(e) => return Err(e),
                        },
                    };
                }
            }
            if rule_data.is_none() || matched {
                let id = Value::String(seg.id.to_string());
                if !existing.contains(&id) && !new_ids.contains(&id) {
                    new_ids.push(id);
                }
            }
        }
        if new_ids.is_empty() {
            return Ok(None);
        }
        let mut data = visitor.data.segments().cloned().unwrap_or_default();
        let mut all = existing;
        all.extend(new_ids);
        data.insert("customSegments".into(), Value::Array(all));
        self.put_segments(visitor, &data, enable_storage, fx);
        Ok(Some(data))
    }
}
