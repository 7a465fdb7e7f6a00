//! Variation layouts: packed (version ≤ 11) and anchored (version > 11) (SPEC §4.4–§4.6).
//!
//! CONTRACT STUB: owned by the "hash + bucketing" work item.

use serde_json::Value;

/// One variation as the layouts see it.
#[derive(Debug, Clone, Copy)]
pub struct ArmSpec<'a> {
    /// The variation id as a JS string, `None` when the config's id is falsy or absent.
    pub id: Option<&'a str>,
    /// `traffic_allocation` as in the config; `None` when absent.
    pub traffic_allocation: Option<&'a Value>,
    /// `status` as in the config; `None` when absent.
    pub status: Option<&'a Value>,
}

/// The packed walk, precomputed: arm index (first occurrence of the id) and cumulative upper bound, in walk order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PackedLayout {
    /// `(arm index, cumulative upper bound)` in JS key order.
    pub walk: Vec<(usize, f64)>,
}

impl PackedLayout {
    /// Builds the packed walk from the arms in config order.
    pub fn build(arms: &[ArmSpec<'_>]) -> Self {
        let _ = arms;
        Self::default()
    }
    /// The arm index chosen for bucket `value`, if any.
    pub fn select(&self, value: f64) -> Option<usize> {
        self.walk.iter().find(|(_, upper)| value < *upper).map(|(i, _)| *i)
    }
}

/// The anchored layout, precomputed: `(arm index, anchor, width)` in config order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AnchoredLayout {
    /// `(arm index, anchor, width)` in config order.
    pub ranges: Vec<(usize, f64, f64)>,
}

impl AnchoredLayout {
    /// Builds the anchored ranges from the arms in config order.
    pub fn build(arms: &[ArmSpec<'_>]) -> Self {
        let _ = arms;
        Self::default()
    }
    /// The arm index chosen for bucket `value`, if any.
    pub fn select(&self, value: f64) -> Option<usize> {
        self.ranges
            .iter()
            .find(|(_, a, w)| *a <= value && value < a + w)
            .map(|(i, _, _)| *i)
    }
}

/// The layout gate: `Number(version) > 11`.
pub fn is_anchored(version: Option<&Value>) -> bool {
    version.and_then(Value::as_f64).is_some_and(|v| v > 11.0)
}

/// The reference `selectBucket(buckets, value)` over a JS object `{id: percent}` given as pairs in
/// insertion order (JS key order is applied inside). Returns the chosen id.
pub fn select_bucket<'a>(buckets: &'a [(String, Value)], value: f64) -> Option<&'a str> {
    let _ = (buckets, value);
    None
}
