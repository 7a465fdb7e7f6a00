//! Variation layouts: packed (version ≤ 11) and anchored (version > 11) (SPEC §4.4–§4.6).
//!
//! Both layouts are computed once per experience when the config is loaded; choosing a variation
//! is then a short scan over precomputed bounds.
//!
//! * **Packed**: eligible arms are put in a JS object keyed by variation id and walked in JS
//!   property order (array-index-like ids ascending first, then the others in config order),
//!   accumulating `traffic_allocation × 100`; the visitor gets the first arm whose running total
//!   exceeds the bucket value.
//! * **Anchored**: every arm keeps a fixed anchor `(sum of weights before it) / total × 10000` and
//!   is `allocation × 100` wide when active, so raising allocations only admits new visitors and
//!   stopping an arm never moves the others.

use crate::js;
use crate::keyorder::js_key_order;
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

impl ArmSpec<'_> {
    /// Status absent/falsy or exactly `"running"` (case-sensitive).
    fn running(&self) -> bool {
        match self.status {
            None => true,
            Some(Value::String(s)) => s.is_empty() || s == "running",
            Some(v) => !js::truthy(v),
        }
    }

    /// `traffic_allocation > 0 || isNaN(traffic_allocation)` with JS coercions.
    fn has_traffic(&self) -> bool {
        let n = js::to_number(self.traffic_allocation);
        n > 0.0 || n.is_nan()
    }
}

/// The packed walk, precomputed: arm index (first occurrence of the id) and cumulative upper bound, in walk order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PackedLayout {
    /// `(arm index, cumulative upper bound)` in JS key order.
    pub walk: Vec<(usize, f64)>,
}

/// Walks `(id, width)` entries of a JS object given in insertion order: duplicates keep the first
/// position and the last width; the walk follows JS key order. Returns `(first index, upper bound)`.
fn packed_walk<'a>(entries: impl IntoIterator<Item = (usize, &'a str, f64)>) -> Vec<(usize, f64)> {
    let mut obj: Vec<(usize, &str, f64)> = Vec::new();
    for (i, id, w) in entries {
        match obj.iter_mut().find(|(_, k, _)| *k == id) {
            Some(slot) => slot.2 = w,
            None => obj.push((i, id, w)),
        }
    }
    let keys: Vec<&str> = obj.iter().map(|(_, k, _)| *k).collect();
    let mut prev = 0.0f64;
    js_key_order(&keys)
        .into_iter()
        .map(|p| {
            let (i, _, w) = obj[p];
            prev += w * 100.0;
            (i, prev)
        })
        .collect()
}

impl PackedLayout {
    /// Builds the packed walk from the arms in config order.
    pub fn build(arms: &[ArmSpec<'_>]) -> Self {
        let entries = arms.iter().enumerate().filter_map(|(i, a)| {
            if !a.running() || !a.has_traffic() {
                return None;
            }
            let id = a.id?;
            // `traffic_allocation || 100`, then used as a number.
            let width = match a.traffic_allocation {
                Some(v) if js::truthy(v) => js::to_number(Some(v)),
                _ => 100.0,
            };
            Some((i, id, width))
        });
        PackedLayout {
            walk: packed_walk(entries),
        }
    }

    /// The arm index chosen for bucket `value`, if any.
    pub fn select(&self, value: f64) -> Option<usize> {
        self.walk
            .iter()
            .find(|(_, upper)| value < *upper)
            .map(|(i, _)| *i)
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
        let weighted: Vec<(usize, f64, bool)> = arms
            .iter()
            .enumerate()
            .filter(|(_, a)| a.id.is_some())
            .map(|(i, a)| {
                let n = js::to_number(a.traffic_allocation);
                let weight = if n.is_nan() { 100.0 } else { n };
                (i, weight, a.running() && a.has_traffic())
            })
            .collect();
        let total: f64 = weighted.iter().map(|(_, w, _)| w).sum();
        // `total <= 0` (and a NaN total) leaves nothing to bucket into.
        if total.is_nan() || total <= 0.0 {
            return AnchoredLayout::default();
        }
        let mut cum = 0.0f64;
        let ranges = weighted
            .into_iter()
            .map(|(i, weight, active)| {
                let anchor = (cum / total) * 10000.0;
                let width = if active { weight * 100.0 } else { 0.0 };
                cum += weight;
                (i, anchor, width)
            })
            .collect();
        AnchoredLayout { ranges }
    }

    /// The arm index chosen for bucket `value`, if any (half-open `[anchor, anchor + width)`).
    pub fn select(&self, value: f64) -> Option<usize> {
        self.ranges
            .iter()
            .find(|(_, a, w)| *a <= value && value < a + w)
            .map(|(i, _, _)| *i)
    }
}

/// The layout gate: `Number(version) > 11`.
pub fn is_anchored(version: Option<&Value>) -> bool {
    js::to_number(version) > 11.0
}

/// The reference `selectBucket(buckets, value)` over a JS object `{id: percent}` given as pairs in
/// insertion order (JS key order is applied inside). Returns the chosen id.
pub fn select_bucket(buckets: &[(String, Value)], value: f64) -> Option<&str> {
    let walk = packed_walk(
        buckets
            .iter()
            .enumerate()
            .map(|(i, (id, w))| (i, id.as_str(), js::to_number(Some(w)))),
    );
    walk.iter()
        .find(|(_, upper)| value < *upper)
        .map(|(i, _)| buckets[*i].0.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    struct Arms(Vec<(Option<String>, Option<Value>, Option<Value>)>);

    impl Arms {
        fn new(list: &[(&str, Value)]) -> Arms {
            Arms(
                list.iter()
                    .map(|(id, ta)| (Some((*id).to_string()), Some(ta.clone()), None))
                    .collect(),
            )
        }
        fn specs(&self) -> Vec<ArmSpec<'_>> {
            self.0
                .iter()
                .map(|(id, ta, st)| ArmSpec {
                    id: id.as_deref(),
                    traffic_allocation: ta.as_ref(),
                    status: st.as_ref(),
                })
                .collect()
        }
        fn id_at(&self, i: Option<usize>) -> Option<&str> {
            i.and_then(|i| self.0[i].0.as_deref())
        }
    }

    #[test]
    fn packed_walks_numeric_ids_ascending() {
        let arms = Arms::new(&[("300", json!(10)), ("200", json!(80)), ("100", json!(10))]);
        let packed = PackedLayout::build(&arms.specs());
        let anchored = AnchoredLayout::build(&arms.specs());
        assert_eq!(arms.id_at(packed.select(102.0)), Some("100"));
        assert_eq!(arms.id_at(anchored.select(102.0)), Some("300"));
        let named = Arms::new(&[("C", json!(10)), ("B", json!(80)), ("A", json!(10))]);
        assert_eq!(
            named.id_at(PackedLayout::build(&named.specs()).select(102.0)),
            Some("C")
        );
    }

    #[test]
    fn packed_eligibility_and_widths() {
        let mut arms = Arms::new(&[("1", json!(null)), ("2", json!("30")), ("3", json!(20))]);
        arms.0.push((Some("4".into()), None, None)); // absent allocation counts as 100
        arms.0
            .push((Some("5".into()), Some(json!(50)), Some(json!("stopped"))));
        arms.0.push((None, Some(json!(50)), None));
        let p = PackedLayout::build(&arms.specs());
        let ids: Vec<&str> = p
            .walk
            .iter()
            .map(|(i, _)| arms.0[*i].0.as_deref().unwrap_or(""))
            .collect();
        assert_eq!(ids, ["2", "3", "4"]);
        assert_eq!(
            p.walk.iter().map(|(_, u)| *u).collect::<Vec<_>>(),
            [3000.0, 5000.0, 15000.0]
        );
    }

    #[test]
    fn non_numeric_allocation_poisons_the_rest_of_the_walk() {
        let arms = Arms::new(&[("1", json!(10)), ("2", json!("abc")), ("3", json!(90))]);
        let p = PackedLayout::build(&arms.specs());
        assert_eq!(arms.id_at(p.select(500.0)), Some("1"));
        assert_eq!(p.select(5000.0), None);
    }

    #[test]
    fn duplicate_ids_keep_first_position_last_width() {
        let arms = Arms::new(&[("B", json!(10)), ("A", json!(10)), ("B", json!(50))]);
        let p = PackedLayout::build(&arms.specs());
        assert_eq!(p.walk, vec![(0, 5000.0), (1, 6000.0)]);
    }

    #[test]
    fn anchored_thirds_and_boundaries() {
        let arms = Arms::new(&[("O", json!(5)), ("V1", json!(5)), ("V2", json!(5))]);
        let a = AnchoredLayout::build(&arms.specs());
        let anchors: Vec<f64> = a.ranges.iter().map(|r| r.1).collect();
        assert_eq!(anchors[0], 0.0);
        assert!((anchors[1] - 10000.0 / 3.0).abs() < 1e-9);
        assert!((anchors[2] - 20000.0 / 3.0).abs() < 1e-9);
        assert!(a.ranges.iter().all(|r| r.2 == 500.0));
        let b = AnchoredLayout {
            ranges: vec![(0, 1000.0, 500.0)],
        };
        assert_eq!(b.select(999.0), None);
        assert_eq!(b.select(1000.0), Some(0));
        assert_eq!(b.select(1499.0), Some(0));
        assert_eq!(b.select(1500.0), None);
    }

    #[test]
    fn anchored_stopped_and_zero_arms_keep_anchors() {
        let mut arms = Arms::new(&[("A", json!(30)), ("B", json!(30)), ("C", json!(0))]);
        arms.0[0].2 = Some(json!("stopped"));
        let a = AnchoredLayout::build(&arms.specs());
        assert_eq!(a.ranges[0], (0, 0.0, 0.0));
        assert_eq!(a.ranges[1], (1, 5000.0, 3000.0));
        assert_eq!(a.ranges[2].2, 0.0);
        assert_eq!(a.select(100.0), None);
        assert_eq!(a.select(5100.0), Some(1));
        let zero = Arms::new(&[("A", json!(0)), ("B", json!(null))]);
        assert!(AnchoredLayout::build(&zero.specs()).ranges.is_empty());
    }

    #[test]
    fn gate() {
        for (v, want) in [
            (Some(json!(12)), true),
            (Some(json!(42)), true),
            (Some(json!("12")), true),
            (Some(json!(11)), false),
            (None, false),
            (Some(json!(null)), false),
            (Some(json!("not-a-number")), false),
        ] {
            assert_eq!(is_anchored(v.as_ref()), want, "{v:?}");
        }
    }

    #[test]
    fn select_bucket_object_semantics() {
        let b = vec![
            ("100234570".to_string(), json!(10)),
            ("100234567".to_string(), json!(30)),
            ("100234568".to_string(), json!(30)),
            ("100234569".to_string(), json!(30)),
        ];
        assert_eq!(select_bucket(&b, 100.0), Some("100234567"));
        assert_eq!(select_bucket(&b, 9500.0), Some("100234570"));
        assert_eq!(select_bucket(&b, 10001.0), None);
        let zero = vec![("a".to_string(), json!(0)), ("b".to_string(), json!(0))];
        assert_eq!(select_bucket(&zero, 0.0), None);
    }
}
