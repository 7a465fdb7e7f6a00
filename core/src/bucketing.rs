//! Variation layouts: packed (version ≤ 11) and anchored (version > 11) (SPEC §4.4–§4.6).
//!
//! Both layouts are computed once per experience when the config is loaded; choosing a variation
//! is then a short scan over precomputed bounds, with no allocation.
//!
//! * **Packed**: eligible arms are put in a JS object keyed by variation id and walked in JS
//!   property order (array-index-like ids ascending first, then the others in config order),
//!   accumulating `traffic_allocation × 100`; the visitor gets the first arm whose running total
//!   exceeds the bucket value.
//! * **Anchored**: every arm keeps a fixed anchor `(sum of weights before it) / total × 10000` and
//!   is `allocation × 100` wide when active, so raising allocations only admits new visitors and
//!   stopping an arm never moves the others.
//!
//! Both layouts report the chosen arm as an index into the arms they were built from: the index
//! of the **first** arm carrying the chosen id, which is the variation the reference re-reads
//! from the config by id once it has picked one.
//!
//! All arithmetic is IEEE double precision in the reference's order of operations, so float
//! artefacts (a NaN width poisoning the rest of a packed walk, a band overshooting the next anchor
//! by one ulp) are reproduced rather than corrected.

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
    /// The status test: `!status || status === "running"` (absent, `null`, `""`, `false`, `0` and
    /// `NaN` pass; `"Running"`, `"stopped"`, `true` and objects do not).
    pub fn is_running(&self) -> bool {
        match self.status {
            None => true,
            Some(Value::String(s)) => s.is_empty() || s == "running",
            Some(v) => !js::truthy(v),
        }
    }

    /// The allocation test: `traffic_allocation > 0 || isNaN(traffic_allocation)` with JS
    /// coercions (`"50"` and `true` count as numbers; absent and `"abc"` are NaN; `null` is 0).
    pub fn has_traffic(&self) -> bool {
        js::to_number(self.traffic_allocation) > 0.0 || js::is_nan(self.traffic_allocation)
    }

    /// Whether the arm can receive visitors: [`is_running`](Self::is_running) and
    /// [`has_traffic`](Self::has_traffic).
    pub fn is_active(&self) -> bool {
        self.is_running() && self.has_traffic()
    }
}

/// Ids repeat rarely and experiences have few arms: up to this many keys, [`FirstSeen`] finds
/// a key by a scan; beyond it, through an index, so that a hostile config with thousands of
/// arms still loads in linear time.
const SCAN_KEYS: usize = 16;

/// Where each key was first seen, among the keys inserted so far (variation ids, JS object
/// keys): scanned while there are few, hashed once there are more than [`SCAN_KEYS`].
#[derive(Debug, Default)]
pub(crate) struct FirstSeen<'a> {
    keys: Vec<(&'a str, usize)>,
    index: Option<std::collections::HashMap<&'a str, usize>>,
}

impl<'a> FirstSeen<'a> {
    /// Where `key` was first seen.
    pub(crate) fn get(&self, key: &str) -> Option<usize> {
        match &self.index {
            Some(index) => index.get(key).copied(),
            None => self.keys.iter().find(|(k, _)| *k == key).map(|&(_, at)| at),
        }
    }

    /// Records `key` as seen at `at` unless it was seen before; returns where it was first
    /// seen (`None`: it is new, and now recorded at `at`).
    pub(crate) fn insert(&mut self, key: &'a str, at: usize) -> Option<usize> {
        if let Some(first) = self.get(key) {
            return Some(first);
        }
        self.keys.push((key, at));
        match &mut self.index {
            Some(index) => {
                index.insert(key, at);
            }
            None if self.keys.len() > SCAN_KEYS => {
                self.index = Some(self.keys.iter().copied().collect());
            }
            None => {}
        }
        None
    }
}

/// The index of the first arm whose id is `id` (the variation the reference re-reads by id).
struct FirstArm<'a>(FirstSeen<'a>);

impl<'a> FirstArm<'a> {
    fn new(arms: &[ArmSpec<'a>]) -> Self {
        let mut seen = FirstSeen::default();
        for (i, a) in arms.iter().enumerate() {
            if let Some(id) = a.id {
                seen.insert(id, i);
            }
        }
        FirstArm(seen)
    }

    fn of(&self, id: &str, fallback: usize) -> usize {
        self.0.get(id).unwrap_or(fallback)
    }
}

/// A JS object `{id: width}` built by assignments in insertion order, then walked in JS key order
/// accumulating `width × 100`. Yields `(position of the key's first assignment, upper bound)`.
fn packed_walk<'a>(
    assignments: impl IntoIterator<Item = (usize, &'a str, f64)>,
) -> Vec<(usize, f64)> {
    // `obj[id] = width`: a repeated key keeps its first position and takes the last value.
    let mut obj: Vec<(usize, &str, f64)> = Vec::new();
    let mut seen = FirstSeen::default();
    for (pos, id, width) in assignments {
        match seen.insert(id, obj.len()).and_then(|j| obj.get_mut(j)) {
            Some(slot) => slot.2 = width,
            None => obj.push((pos, id, width)),
        }
    }
    let keys: Vec<&str> = obj.iter().map(|(_, k, _)| *k).collect();
    let mut prev = 0.0f64;
    js_key_order(&keys)
        .into_iter()
        .filter_map(|p| obj.get(p))
        .map(|&(pos, _, width)| {
            // `prev += buckets[id] * 100 + redistribute` with redistribute = 0.
            prev += width * 100.0;
            (pos, prev)
        })
        .collect()
}

/// The packed walk, precomputed: arm index and cumulative upper bound, in walk order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PackedLayout {
    /// `(arm index, cumulative upper bound)` in JS key order. The arm index is that of the first
    /// arm carrying the entry's id; an entry is chosen for bucket value `v` when it is the first
    /// with `v < upper bound`.
    pub walk: Vec<(usize, f64)>,
}

impl PackedLayout {
    /// Builds the packed walk from the arms in config order (SPEC §4.4): arms that are active
    /// ([`ArmSpec::is_active`]) and have an id become `bucket[id] = traffic_allocation || 100`.
    pub fn build(arms: &[ArmSpec<'_>]) -> Self {
        let first = FirstArm::new(arms);
        let assignments = arms.iter().enumerate().filter_map(|(i, a)| {
            let id = a.id?;
            if !a.is_active() {
                return None;
            }
            // `traffic_allocation || 100`, later multiplied (so coerced with Number()).
            let width = match a.traffic_allocation {
                Some(v) if js::truthy(v) => js::to_number(Some(v)),
                _ => 100.0,
            };
            Some((first.of(id, i), id, width))
        });
        PackedLayout {
            walk: packed_walk(assignments),
        }
    }

    /// The arm index chosen for bucket `value`, if any: the first entry whose cumulative bound
    /// exceeds `value` (a NaN bound never does).
    #[inline]
    pub fn select(&self, value: f64) -> Option<usize> {
        self.walk
            .iter()
            .find(|&&(_, upper)| value < upper)
            .map(|&(i, _)| i)
    }
}

/// The anchored layout, precomputed: `(arm index, anchor, width)` in config order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AnchoredLayout {
    /// `(arm index, anchor, width)` in config order, one per arm with an id; empty when the total
    /// weight is not positive. The arm index is that of the first arm carrying the same id.
    pub ranges: Vec<(usize, f64, f64)>,
}

impl AnchoredLayout {
    /// Builds the anchored ranges from the arms in config order (SPEC §4.5): every arm with an id
    /// weighs `isNaN(ta) ? 100 : Number(ta)`, is anchored at `(weights before it / total) × 10000`
    /// and is `weight × 100` wide when active ([`ArmSpec::is_active`]), 0 wide otherwise.
    pub fn build(arms: &[ArmSpec<'_>]) -> Self {
        let first = FirstArm::new(arms);
        let weighted: Vec<(usize, f64, bool)> = arms
            .iter()
            .enumerate()
            .filter_map(|(i, a)| {
                let id = a.id?;
                let weight = if js::is_nan(a.traffic_allocation) {
                    100.0
                } else {
                    js::to_number(a.traffic_allocation)
                };
                Some((first.of(id, i), weight, a.is_active()))
            })
            .collect();
        let total = weighted.iter().fold(0.0f64, |sum, &(_, w, _)| sum + w);
        // `if (total <= 0) return []`. A NaN total (an infinite weight next to its negative)
        // passes that test in JS but makes every anchor NaN, so nothing can be chosen either.
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

    /// The arm index chosen for bucket `value`, if any: the first range (config order) with
    /// `anchor <= value < anchor + width`.
    #[inline]
    pub fn select(&self, value: f64) -> Option<usize> {
        self.ranges
            .iter()
            .find(|&&(_, anchor, width)| anchor <= value && value < anchor + width)
            .map(|&(i, _, _)| i)
    }
}

/// The layout gate: `Number(version) > 11` (missing, `null`, `11`, `"abc"` → packed; `12`, `"12"`
/// → anchored).
pub fn is_anchored(version: Option<&Value>) -> bool {
    js::to_number(version) > 11.0
}

/// The reference `selectBucket(buckets, value)` over a JS object `{id: percent}` given as pairs in
/// insertion order (a repeated id keeps its first position and last percent; the walk follows JS
/// key order). Each entry is `Number(percent) × 100` wide. Returns the chosen id.
pub fn select_bucket(buckets: &[(String, Value)], value: f64) -> Option<&str> {
    let walk = packed_walk(
        buckets
            .iter()
            .enumerate()
            .map(|(i, (id, w))| (i, id.as_str(), js::to_number(Some(w)))),
    );
    walk.iter()
        .find(|&&(_, upper)| value < upper)
        .and_then(|&(i, _)| buckets.get(i))
        .map(|(id, _)| id.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Owned arm definitions, borrowed as `ArmSpec`s.
    struct Arms(Vec<(Option<String>, Option<Value>, Option<Value>)>);

    impl Arms {
        /// Arms with an id and an allocation, no status.
        fn new(list: &[(&str, Value)]) -> Arms {
            Arms(
                list.iter()
                    .map(|(id, ta)| (Some((*id).to_string()), Some(ta.clone()), None))
                    .collect(),
            )
        }
        fn push(&mut self, id: Option<&str>, ta: Option<Value>, status: Option<Value>) {
            self.0.push((id.map(str::to_string), ta, status));
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
        fn packed(&self, value: f64) -> Option<&str> {
            self.id_at(PackedLayout::build(&self.specs()).select(value))
        }
        fn anchored(&self, value: f64) -> Option<&str> {
            self.id_at(AnchoredLayout::build(&self.specs()).select(value))
        }
        fn walk_ids(&self) -> Vec<&str> {
            PackedLayout::build(&self.specs())
                .walk
                .iter()
                .map(|(i, _)| self.0[*i].0.as_deref().unwrap_or("?"))
                .collect()
        }
        fn bounds(&self) -> Vec<f64> {
            let p = PackedLayout::build(&self.specs());
            p.walk.iter().map(|(_, u)| *u).collect()
        }
    }

    fn spec<'a>(ta: Option<&'a Value>, status: Option<&'a Value>) -> ArmSpec<'a> {
        ArmSpec {
            id: Some("x"),
            traffic_allocation: ta,
            status,
        }
    }

    #[test]
    fn numeric_ids_walk_ascending_in_packed_and_config_order_in_anchored() {
        // SPEC §4.4 / §15.3: value 102 with 300/200/100 at 10/80/10.
        let arms = Arms::new(&[("300", json!(10)), ("200", json!(80)), ("100", json!(10))]);
        assert_eq!(arms.walk_ids(), ["100", "200", "300"]);
        assert_eq!(arms.bounds(), [1000.0, 9000.0, 10000.0]);
        assert_eq!(arms.packed(102.0), Some("100"));
        assert_eq!(arms.anchored(102.0), Some("300"));
        // Non-numeric ids keep config order.
        let named = Arms::new(&[("C", json!(10)), ("B", json!(80)), ("A", json!(10))]);
        assert_eq!(named.packed(102.0), Some("C"));
        // Not array indices: leading zero and 2^32 - 1 come after the numeric ones, in config order.
        let mixed = Arms::new(&[
            ("4294967295", json!(10)),
            ("007", json!(10)),
            ("4294967294", json!(10)),
            ("9", json!(10)),
        ]);
        assert_eq!(mixed.walk_ids(), ["9", "4294967294", "4294967295", "007"]);
    }

    #[test]
    fn status_test() {
        let cases = [
            (None, true),
            (Some(json!(null)), true),
            (Some(json!("")), true),
            (Some(json!(false)), true),
            (Some(json!(0)), true),
            (Some(json!("running")), true),
            (Some(json!("Running")), false),
            (Some(json!("stopped")), false),
            (Some(json!("paused")), false),
            (Some(json!(true)), false),
            (Some(json!(1)), false),
            (Some(json!({})), false),
        ];
        for (status, want) in cases {
            assert_eq!(spec(None, status.as_ref()).is_running(), want, "{status:?}");
        }
    }

    #[test]
    fn allocation_test() {
        let cases = [
            (None, true),               // isNaN(undefined)
            (Some(json!(null)), false), // null > 0 false, isNaN(null) false
            (Some(json!(0)), false),
            (Some(json!(-5)), false),
            (Some(json!(0.01)), true),
            (Some(json!("50")), true), // "50" > 0
            (Some(json!(" 30 ")), true),
            (Some(json!("0")), false),
            (Some(json!("")), false),   // Number("") = 0
            (Some(json!("abc")), true), // isNaN("abc")
            (Some(json!(true)), true),  // true > 0
            (Some(json!(false)), false),
            (Some(json!({})), true), // isNaN({})
        ];
        for (ta, want) in cases {
            assert_eq!(spec(ta.as_ref(), None).has_traffic(), want, "{ta:?}");
        }
    }

    #[test]
    fn packed_eligibility_and_widths() {
        let mut arms = Arms::new(&[("1", json!(null)), ("2", json!("30")), ("3", json!(20))]);
        arms.push(Some("4"), None, None); // absent allocation counts as 100
        arms.push(Some("5"), Some(json!(50)), Some(json!("stopped")));
        arms.push(Some("6"), Some(json!(50)), Some(json!("Running")));
        arms.push(None, Some(json!(50)), None); // no id
        arms.push(Some("7"), Some(json!(true)), Some(json!("running"))); // true → 1
        arms.push(Some("8"), Some(json!(0)), None);
        assert_eq!(arms.walk_ids(), ["2", "3", "4", "7"]);
        assert_eq!(arms.bounds(), [3000.0, 5000.0, 15000.0, 15100.0]);
        assert_eq!(arms.packed(4999.0), Some("3"));
        assert_eq!(arms.packed(15099.0), Some("7"));
        assert_eq!(arms.packed(15100.0), None);
    }

    #[test]
    fn null_allocation_is_out_of_packed_and_weighs_zero_in_anchored() {
        let arms = Arms::new(&[("A", json!(null)), ("B", json!(50))]);
        assert_eq!(arms.walk_ids(), ["B"]);
        assert_eq!(arms.packed(0.0), Some("B"));
        let a = AnchoredLayout::build(&arms.specs());
        assert_eq!(a.ranges, vec![(0, 0.0, 0.0), (1, 0.0, 5000.0)]);
        assert_eq!(arms.anchored(0.0), Some("B"));
    }

    #[test]
    fn non_numeric_allocation_poisons_the_rest_of_the_walk() {
        let arms = Arms::new(&[("1", json!(10)), ("2", json!("abc")), ("3", json!(90))]);
        let bounds = arms.bounds();
        assert_eq!(bounds[0], 1000.0);
        assert!(bounds[1].is_nan() && bounds[2].is_nan());
        assert_eq!(arms.packed(500.0), Some("1"));
        assert_eq!(arms.packed(1000.0), None);
        assert_eq!(arms.packed(5000.0), None);
        // In the anchored layout the same arm is active with the default weight 100.
        let a = AnchoredLayout::build(&arms.specs());
        assert_eq!(a.ranges[1], (1, 500.0, 10000.0));
        assert_eq!(arms.anchored(1000.0), Some("2"));
    }

    #[test]
    fn duplicate_ids_keep_first_position_last_width() {
        let arms = Arms::new(&[("B", json!(10)), ("A", json!(10)), ("B", json!(50))]);
        assert_eq!(
            PackedLayout::build(&arms.specs()).walk,
            vec![(0, 5000.0), (1, 6000.0)]
        );
        let numeric = Arms::new(&[("200", json!(10)), ("100", json!(20)), ("200", json!(30))]);
        assert_eq!(
            PackedLayout::build(&numeric.specs()).walk,
            vec![(1, 2000.0), (0, 5000.0)]
        );
    }

    #[test]
    fn chosen_index_is_the_first_arm_with_the_chosen_id() {
        // The reference returns an id and re-reads the first variation with that id.
        let mut arms = Arms(Vec::new());
        arms.push(Some("A"), Some(json!(50)), Some(json!("stopped")));
        arms.push(Some("A"), Some(json!(20)), None);
        assert_eq!(PackedLayout::build(&arms.specs()).walk, vec![(0, 2000.0)]);
        let a = AnchoredLayout::build(&arms.specs());
        // Second arm: anchor 50/70 of 10000, 2000 wide; reported as arm 0.
        assert_eq!(a.select(7142.857142857143), Some(0));
        assert_eq!(a.select(7142.0), None);
    }

    #[test]
    fn anchored_thirds() {
        let arms = Arms::new(&[("O", json!(5)), ("V1", json!(5)), ("V2", json!(5))]);
        let a = AnchoredLayout::build(&arms.specs());
        assert_eq!(
            a.ranges,
            vec![
                (0, 0.0, 500.0),
                (1, 3333.333333333333, 500.0),
                (2, 6666.666666666666, 500.0)
            ]
        );
        let wide = Arms::new(&[
            ("O", json!(8.333333333333334)),
            ("V1", json!(8.333333333333334)),
            ("V2", json!(8.333333333333334)),
        ]);
        let w = AnchoredLayout::build(&wide.specs());
        assert_eq!(
            w.ranges,
            vec![
                (0, 0.0, 833.3333333333334),
                (1, 3333.3333333333335, 833.3333333333334),
                (2, 6666.666666666667, 833.3333333333334)
            ]
        );
        // SPEC §4.8 superset cases: 15 % → 25 %.
        for (value, before, after) in [
            (100.0, Some("O"), Some("O")),
            (600.0, None, Some("O")),
            (4000.0, None, Some("V1")),
            (7300.0, None, Some("V2")),
        ] {
            assert_eq!(arms.anchored(value), before, "{value} at 15%");
            assert_eq!(wide.anchored(value), after, "{value} at 25%");
        }
    }

    #[test]
    fn anchored_half_open_boundaries() {
        let b = AnchoredLayout {
            ranges: vec![(0, 1000.0, 500.0)],
        };
        assert_eq!(b.select(999.0), None);
        assert_eq!(b.select(1000.0), Some(0));
        assert_eq!(b.select(1499.0), Some(0));
        assert_eq!(b.select(1500.0), None);
        // The same range built from arms: 10 % idle before, 5 % active, 85 % idle after.
        let mut arms = Arms(Vec::new());
        arms.push(Some("X"), Some(json!(10)), Some(json!("stopped")));
        arms.push(Some("A"), Some(json!(5)), None);
        arms.push(Some("Y"), Some(json!(85)), Some(json!("stopped")));
        assert_eq!(
            AnchoredLayout::build(&arms.specs()).ranges[1],
            (1, 1000.0, 500.0)
        );
        for (value, want) in [
            (999.0, None),
            (1000.0, Some("A")),
            (1499.0, Some("A")),
            (1500.0, None),
        ] {
            assert_eq!(arms.anchored(value), want, "{value}");
        }
        assert_eq!(AnchoredLayout::default().select(0.0), None);
    }

    #[test]
    fn anchored_non_positive_totals_decide_nothing() {
        for list in [
            vec![("A", json!(0)), ("B", json!(null))],
            vec![("A", json!(-5)), ("B", json!(3))],
            vec![("A", json!("0")), ("B", json!(false))],
            vec![("A", json!("Infinity")), ("B", json!("-Infinity"))],
        ] {
            let arms = Arms::new(&list);
            assert!(
                AnchoredLayout::build(&arms.specs()).ranges.is_empty(),
                "{list:?}"
            );
            assert_eq!(arms.anchored(0.0), None);
        }
        assert!(AnchoredLayout::build(&[]).ranges.is_empty());
    }

    #[test]
    fn anchored_stopped_arm_keeps_the_others_in_place() {
        let running = Arms::new(&[("A", json!(30)), ("B", json!(30)), ("C", json!(0))]);
        let mut stopped = Arms::new(&[("A", json!(30)), ("B", json!(30)), ("C", json!(0))]);
        stopped.0[0].2 = Some(json!("stopped"));
        let r = AnchoredLayout::build(&running.specs());
        let s = AnchoredLayout::build(&stopped.specs());
        assert_eq!(r.ranges[0], (0, 0.0, 3000.0));
        assert_eq!(s.ranges[0], (0, 0.0, 0.0));
        assert_eq!(r.ranges[1], (1, 5000.0, 3000.0));
        assert_eq!(s.ranges[1], r.ranges[1]);
        assert_eq!(running.anchored(100.0), Some("A"));
        assert_eq!(stopped.anchored(100.0), None);
        for value in [5000.0, 6000.0, 7999.0] {
            assert_eq!(stopped.anchored(value), Some("B"));
            assert_eq!(running.anchored(value), Some("B"));
        }
    }

    #[test]
    fn anchored_zero_arm_shares_the_next_anchor_and_is_never_chosen() {
        let arms = Arms::new(&[("A", json!(0)), ("B", json!(50)), ("C", json!(50))]);
        let a = AnchoredLayout::build(&arms.specs());
        assert_eq!(a.ranges[0], (0, 0.0, 0.0));
        assert_eq!(a.ranges[1], (1, 0.0, 5000.0));
        for value in 0..10000 {
            assert_ne!(a.select(f64::from(value)), Some(0));
        }
        assert_eq!(arms.anchored(0.0), Some("B"));
        assert_eq!(arms.anchored(5000.0), Some("C"));
    }

    #[test]
    fn anchored_band_can_overshoot_the_next_anchor_by_an_ulp() {
        // Reproduced JS float artefact: at a 100 % total, (14/100)*10000 rounds up to
        // 1400.0000000000002, so arm 1's band [1400.0000000000002, 1600.0000000000002) contains
        // 1600 while arm 2's anchor (16/100)*10000 is exactly 1600: value 1600 goes to arm 1.
        let full = Arms::new(&[("a", json!(14)), ("b", json!(2)), ("c", json!(84))]);
        let r = AnchoredLayout::build(&full.specs());
        assert_eq!(r.ranges[1], (1, 1400.0000000000002, 200.0));
        assert_eq!(r.ranges[2], (2, 1600.0, 8400.0));
        assert_eq!(full.anchored(1600.0), Some("b"));
        // At half the allocations the anchors are the same shares, and 1600 is in arm c.
        let half = Arms::new(&[("a", json!(7)), ("b", json!(1)), ("c", json!(42))]);
        assert_eq!(half.anchored(1600.0), Some("c"));
    }

    #[test]
    fn gate() {
        for (v, want) in [
            (Some(json!(12)), true),
            (Some(json!(42)), true),
            (Some(json!("12")), true),
            (Some(json!(11.5)), true),
            (Some(json!(11)), false),
            (Some(json!("11")), false),
            (None, false),
            (Some(json!(null)), false),
            (Some(json!("not-a-number")), false),
            (Some(json!("abc")), false),
            (Some(json!(true)), false),
        ] {
            assert_eq!(is_anchored(v.as_ref()), want, "{v:?}");
        }
    }

    fn pairs(list: &[(&str, Value)]) -> Vec<(String, Value)> {
        list.iter()
            .map(|(k, v)| ((*k).to_string(), v.clone()))
            .collect()
    }

    #[test]
    fn select_bucket_object_semantics() {
        // SPEC §4.8 (bucketing-manager tests), inserted out of numeric order.
        let b = pairs(&[
            ("100234570", json!(10)),
            ("100234567", json!(30)),
            ("100234568", json!(30)),
            ("100234569", json!(30)),
        ]);
        assert_eq!(select_bucket(&b, 100.0), Some("100234567"));
        assert_eq!(select_bucket(&b, 200.0), Some("100234567"));
        assert_eq!(select_bucket(&b, 6000.0), Some("100234569"));
        assert_eq!(select_bucket(&b, 6500.0), Some("100234569"));
        assert_eq!(select_bucket(&b, 9500.0), Some("100234570"));
        assert_eq!(select_bucket(&b, 10000.0), None);
        assert_eq!(select_bucket(&b, 10001.0), None);
        let zero = pairs(&[("a", json!(0)), ("b", json!(0))]);
        assert_eq!(select_bucket(&zero, 0.0), None);
        assert_eq!(select_bucket(&[], 0.0), None);
        // Duplicates: first position, last percent; string percents are coerced.
        let dup = pairs(&[("x", json!(10)), ("y", json!("20")), ("x", json!(50))]);
        assert_eq!(select_bucket(&dup, 4999.0), Some("x"));
        assert_eq!(select_bucket(&dup, 6999.0), Some("y"));
        assert_eq!(select_bucket(&dup, 7000.0), None);
    }
}
