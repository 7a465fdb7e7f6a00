//! Rule trees and comparison operators (SPEC §6).
//!
//! CONTRACT STUB: owned by the "js + rules" work item; signatures are fixed, bodies are placeholders.

use serde_json::{Map, Value};
use std::borrow::Cow;

/// The two rule errors of the reference SDK. With plain key/value data they never occur; they come from
/// custom rule-data providers (the web tracker's data object in JS).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum RuleError {
    /// `"convert.com_no_data_found"`.
    #[serde(rename = "convert.com_no_data_found")]
    NoDataFound,
    /// `"convert.com_need_more_data"`.
    #[serde(rename = "convert.com_need_more_data")]
    NeedMoreData,
}

impl RuleError {
    /// The reference SDK's sentinel string.
    pub fn code(self) -> &'static str {
        match self {
            RuleError::NoDataFound => "convert.com_no_data_found",
            RuleError::NeedMoreData => "convert.com_need_more_data",
        }
    }
}

/// Outcome of evaluating a rule tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleOutcome {
    /// The tree matched.
    Matched,
    /// The tree did not match.
    NotMatched,
    /// A rule needed data it did not have.
    Error(RuleError),
}

impl RuleOutcome {
    /// `true` only for [`RuleOutcome::Matched`].
    pub fn is_match(self) -> bool {
        matches!(self, RuleOutcome::Matched)
    }
}

/// The data a rule tree is evaluated against (visitor properties, location properties, rule data).
pub trait RuleData {
    /// The value stored under exactly `key` (case-sensitive), if present.
    fn lookup(&self, key: &str) -> Option<Cow<'_, Value>>;
    /// Whether the data holds no key at all.
    fn is_empty(&self) -> bool;
}

impl RuleData for Map<String, Value> {
    fn lookup(&self, key: &str) -> Option<Cow<'_, Value>> {
        self.get(key).map(Cow::Borrowed)
    }
    fn is_empty(&self) -> bool {
        Map::is_empty(self)
    }
}

/// The `bucketed_into_experience_key` element of an audience (SPEC §5.7).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExclusionRule {
    /// The target experience key (`String(element.value)`).
    pub target_key: String,
    /// Whether the element is negated (JS truthiness of `matching.negated`).
    pub negated: bool,
}

/// A compiled rule tree `{"OR": [{"AND": [{"OR_WHEN": [rule, ...]}]}]}`. Compiling never fails: a
/// structurally invalid tree evaluates as the reference does (false).
#[derive(Debug, Clone, Default)]
pub struct RuleSet {
    _private: (),
}

impl RuleSet {
    /// Compiles a raw rule tree (any JSON).
    pub fn compile(raw: &Value) -> RuleSet {
        let _ = raw;
        RuleSet::default()
    }
    /// Evaluates the tree against `data`.
    pub fn evaluate(&self, data: &dyn RuleData) -> RuleOutcome {
        let _ = data;
        RuleOutcome::NotMatched
    }
    /// The first `bucketed_into_experience_key` element, scanning OR → AND → OR_WHEN in order.
    pub fn exclusion_rule(&self) -> Option<&ExclusionRule> {
        None
    }
}

/// Applies comparison operator `method` to the visitor's `value` and the rule's `test` value
/// (`None` = JS undefined). An unknown method gives `false`.
pub fn compare(method: &str, value: Option<&Value>, test: Option<&Value>, negated: bool) -> bool {
    let _ = (method, value, test, negated);
    false
}
