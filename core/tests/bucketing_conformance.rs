//! Variation layouts: the cross-SDK bucketing vectors (JS and Python copies), the SPEC §15.3 and
//! §4.8 parity cases, and property tests of the packed and anchored layouts.
//!
//! Every conformance runner asserts how many vectors it ran, so an empty or truncated file fails.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use convert_core::bucketing::{AnchoredLayout, ArmSpec, PackedLayout, is_anchored};
use convert_core::hash::bucket_value;
use proptest::prelude::*;
use serde_json::{Value, json};
use std::collections::BTreeMap;

fn arr(v: &Value) -> &Vec<Value> {
    v.as_array().expect("array")
}

/// The variation chosen for `visitor` in experience `experience` with `version` and
/// `variations` (config JSON), through the crate: bucket value, layout gate, layout.
fn decide<'a>(
    experience: &str,
    visitor: &str,
    version: Option<&Value>,
    variations: &'a [Value],
) -> Option<&'a str> {
    let arms: Vec<ArmSpec<'_>> = variations
        .iter()
        .map(|x| ArmSpec {
            id: x
                .get("id")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty()),
            traffic_allocation: x.get("traffic_allocation"),
            status: x.get("status"),
        })
        .collect();
    let value = f64::from(bucket_value(experience, visitor, 9999, 10000.0));
    let chosen = if is_anchored(version) {
        AnchoredLayout::build(&arms).select(value)
    } else {
        PackedLayout::build(&arms).select(value)
    };
    chosen.map(|i| variations[i]["id"].as_str().unwrap())
}

fn run_layout_vectors(rel: &str) {
    let Some(dir) = common::conformance_dir() else {
        return;
    };
    let file = common::load(&dir, rel);
    let quoted = regex::Regex::new(r"value (\d+) \(visitor ([^)]+)\)").unwrap();
    let (mut packed, mut anchored, mut undecided, mut quotes) = (0, 0, 0, 0);
    let mut descriptions = String::new();
    for v in arr(&file) {
        let desc = v["description"].as_str().unwrap();
        descriptions.push_str(desc);
        let experience = v["experienceId"].as_str().unwrap();
        let visitor = v["visitorId"].as_str().unwrap();
        // Descriptions quoting "value N (visitor X)" pin the bucket value too.
        if let Some(c) = quoted.captures(desc) {
            assert_eq!(&c[2], visitor, "{rel}: {desc}");
            let want: u32 = c[1].parse().unwrap();
            assert_eq!(
                bucket_value(experience, visitor, 9999, 10000.0),
                want,
                "{rel}: {desc}"
            );
            quotes += 1;
        }
        let got = decide(experience, visitor, v.get("version"), arr(&v["variations"]));
        assert_eq!(got, v["expected"].as_str(), "{rel}: {desc}");
        if is_anchored(v.get("version")) {
            anchored += 1;
        } else {
            packed += 1;
        }
        if v["expected"].is_null() {
            undecided += 1;
        }
    }
    assert_eq!((packed, anchored, undecided), (19, 40, 16), "{rel}");
    assert_eq!(quotes, 32, "{rel}: quoted bucket values");
    for tag in common::REQUIRED_TAGS {
        assert!(
            descriptions.contains(&format!("[{tag}]")),
            "{rel}: tag {tag} missing"
        );
    }
    println!(
        "{rel}: {}/59 passed ({packed} packed, {anchored} anchored, {undecided} not decided; {quotes} quoted values; {} tags present)",
        packed + anchored,
        common::REQUIRED_TAGS.len()
    );
}

#[test]
fn javascript_cross_sdk_bucketing_vectors() {
    run_layout_vectors("javascript-sdk/cross-sdk-bucketing-vectors.json");
}

#[test]
fn python_anchored_bucketing_vectors() {
    run_layout_vectors("python-sdk/anchored_bucketing_vectors.json");
}

fn variations(list: &[(&str, Value)]) -> Vec<Value> {
    list.iter()
        .map(|(id, ta)| json!({"id": id, "traffic_allocation": ta, "status": "running"}))
        .collect()
}

/// SPEC §15.3: numeric ids out of order walk ascending in the packed layout.
#[test]
fn spec_15_3_numeric_id_order() {
    let e = "900000001";
    let visitor = "anchor-gate-visitor-106"; // bucket value 102
    assert_eq!(bucket_value(e, visitor, 9999, 10000.0), 102);
    let numeric = variations(&[("300", json!(10)), ("200", json!(80)), ("100", json!(10))]);
    assert_eq!(decide(e, visitor, Some(&json!(11)), &numeric), Some("100"));
    assert_eq!(decide(e, visitor, Some(&json!(12)), &numeric), Some("300"));
    let named = variations(&[("C", json!(10)), ("B", json!(80)), ("A", json!(10))]);
    assert_eq!(decide(e, visitor, Some(&json!(11)), &named), Some("C"));
    assert_eq!(decide(e, visitor, Some(&json!(12)), &named), Some("C"));
}

/// SPEC §4.8 gate tests: O=2, V1=47, V2=1, visitor value 4957.
#[test]
fn spec_4_8_layout_gate() {
    let e = "900000001";
    let visitor = "anchor-gate-visitor-17";
    assert_eq!(bucket_value(e, visitor, 9999, 10000.0), 4957);
    let arms = variations(&[("O", json!(2)), ("V1", json!(47)), ("V2", json!(1))]);
    for version in [json!(12), json!(42), json!("12")] {
        assert_eq!(
            decide(e, visitor, Some(&version), &arms),
            Some("V1"),
            "{version}"
        );
    }
    for version in [
        Some(json!(11)),
        None,
        Some(json!(null)),
        Some(json!("not-a-number")),
    ] {
        assert_eq!(
            decide(e, visitor, version.as_ref(), &arms),
            Some("V2"),
            "{version:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Property tests.

/// Anchored arms from integer weights and running flags, ids "arm0", "arm1", ...
struct Anchored {
    ids: Vec<String>,
    tas: Vec<Value>,
    statuses: Vec<Value>,
}

impl Anchored {
    fn new(weights: &[u32], running: &[bool]) -> Anchored {
        Anchored {
            ids: (0..weights.len()).map(|i| format!("arm{i}")).collect(),
            tas: weights.iter().map(|w| json!(w)).collect(),
            statuses: (0..weights.len())
                .map(|i| {
                    json!(if running.get(i).copied().unwrap_or(true) {
                        "running"
                    } else {
                        "stopped"
                    })
                })
                .collect(),
        }
    }
    fn layout(&self) -> AnchoredLayout {
        let arms: Vec<ArmSpec<'_>> = (0..self.ids.len())
            .map(|i| ArmSpec {
                id: Some(&self.ids[i]),
                traffic_allocation: Some(&self.tas[i]),
                status: Some(&self.statuses[i]),
            })
            .collect();
        AnchoredLayout::build(&arms)
    }
}

/// One allocation as a packed arm may carry it, with its JS meaning spelled out for the model.
#[derive(Debug, Clone)]
enum Alloc {
    Num(u32),
    NumStr(u32),
    NonNumeric,
    Null,
    Absent,
    True,
}

impl Alloc {
    fn json(&self) -> Option<Value> {
        match self {
            Alloc::Num(n) => Some(json!(n)),
            Alloc::NumStr(n) => Some(json!(n.to_string())),
            Alloc::NonNumeric => Some(json!("abc")),
            Alloc::Null => Some(Value::Null),
            Alloc::Absent => None,
            Alloc::True => Some(json!(true)),
        }
    }
    /// `ta > 0 || isNaN(ta)` and, when kept, the width `Number(ta || 100)`.
    fn model(&self) -> Option<f64> {
        match *self {
            Alloc::Num(0) | Alloc::NumStr(0) | Alloc::Null => None,
            Alloc::Num(n) | Alloc::NumStr(n) => Some(f64::from(n)),
            Alloc::NonNumeric => Some(f64::NAN),
            Alloc::Absent => Some(100.0),
            Alloc::True => Some(1.0),
        }
    }
}

fn alloc() -> impl Strategy<Value = Alloc> {
    prop_oneof![
        6 => (0u32..=60).prop_map(Alloc::Num),
        2 => (0u32..=60).prop_map(Alloc::NumStr),
        1 => Just(Alloc::NonNumeric),
        1 => Just(Alloc::Null),
        1 => Just(Alloc::Absent),
        1 => Just(Alloc::True),
    ]
}

const ID_POOL: [&str; 10] = [
    "300",
    "20",
    "5",
    "0",
    "007",
    "4294967295",
    "4294967294",
    "B",
    "A",
    "V1",
];

/// An independent model of the reference: build `{id: width}` by assignment, walk it in JS key
/// order, return the chosen id.
fn model_packed(arms: &[(&str, Alloc, bool)], value: f64) -> Option<String> {
    let index_key = |k: &str| -> Option<u64> {
        let n: u64 = k.parse().ok()?;
        (n.to_string() == k && n < 4_294_967_295).then_some(n)
    };
    let mut indices: BTreeMap<u64, (String, f64)> = BTreeMap::new();
    let mut others: Vec<(String, f64)> = Vec::new();
    for (id, a, running) in arms {
        let Some(width) = a.model() else { continue };
        if !running {
            continue;
        }
        match index_key(id) {
            Some(n) => {
                indices.insert(n, ((*id).to_string(), width));
            }
            None => match others.iter_mut().find(|(k, _)| k == id) {
                Some(slot) => slot.1 = width,
                None => others.push(((*id).to_string(), width)),
            },
        }
    }
    let mut prev = 0.0;
    for (id, width) in indices.into_values().chain(others) {
        prev += width * 100.0;
        if value < prev {
            return Some(id);
        }
    }
    None
}

/// The integer bucket values worth probing for a layout: `extra` plus every integer next to an
/// anchor or a band end (where float rounding could matter).
fn probes(layouts: &[&AnchoredLayout], extra: u32) -> Vec<f64> {
    let mut out = vec![f64::from(extra)];
    for l in layouts {
        for &(_, anchor, width) in &l.ranges {
            for edge in [anchor, anchor + width] {
                let base = edge.floor();
                out.extend(
                    [base - 1.0, base, base + 1.0]
                        .into_iter()
                        .filter(|v| (0.0..10000.0).contains(v)),
                );
            }
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    /// The anchored choice lies in its own half-open range, is active, and no earlier range
    /// contains the value; when nothing is chosen no range contains it.
    #[test]
    fn anchored_choice_is_the_first_range_containing_the_value(
        weights in proptest::collection::vec(0u32..=100, 1..7),
        running in proptest::collection::vec(any::<bool>(), 7),
        value in 0u32..10000,
    ) {
        let arms = Anchored::new(&weights, &running);
        let layout = arms.layout();
        let v = f64::from(value);
        let contains = |&(_, a, w): &(usize, f64, f64)| a <= v && v < a + w;
        match layout.select(v) {
            Some(i) => {
                let pos = layout.ranges.iter().position(|r| r.0 == i).unwrap();
                prop_assert!(contains(&layout.ranges[pos]));
                prop_assert!(!layout.ranges[..pos].iter().any(contains));
                prop_assert!(running[i] && weights[i] > 0);
            }
            None => prop_assert!(!layout.ranges.iter().any(contains)),
        }
    }

    /// SPEC §4.5, "raising allocations only adds visitors": scaling every weight by the same
    /// factor keeps the anchors (same rational shares, so bit-identical doubles) and only widens
    /// the active bands, so a bucketed visitor keeps its arm. The bands stay inside their slots
    /// only while the total allocation is below 100 %: at exactly 100 % a band can overshoot
    /// the next anchor by one ulp (see the unit test `anchored_band_can_overshoot_the_next_anchor_by_an_ulp`).
    #[test]
    fn anchored_raising_allocations_only_adds_visitors(
        (units, low, high) in proptest::collection::vec(0u32..=20, 1..6)
            .prop_filter("some weight", |u| u.iter().sum::<u32>() > 0)
            .prop_flat_map(|u| {
                // The largest factor that keeps the total below 100 %.
                let max = 99 / u.iter().sum::<u32>();
                (Just(u), 1..=max.max(1), 1..=max.max(1))
            })
            .prop_map(|(u, a, b)| (u, a.min(b), a.max(b))),
        running in proptest::collection::vec(any::<bool>(), 6),
        value in 0u32..10000,
    ) {
        let sum: u32 = units.iter().sum();
        prop_assume!(sum * high < 100);
        let scaled = |k: u32| units.iter().map(|u| u * k).collect::<Vec<_>>();
        let before = Anchored::new(&scaled(low), &running).layout();
        let after = Anchored::new(&scaled(high), &running).layout();
        let anchors = |l: &AnchoredLayout| l.ranges.iter().map(|r| r.1.to_bits()).collect::<Vec<_>>();
        prop_assert_eq!(anchors(&before), anchors(&after));
        for v in probes(&[&before, &after], value) {
            if let Some(arm) = before.select(v) {
                prop_assert_eq!(after.select(v), Some(arm), "value {}", v);
            }
        }
    }

    /// Same weights, more arms running (stopped arms resumed): anchors do not move, widths only
    /// grow, so a bucketed visitor keeps its arm (total below 100 %, as above).
    #[test]
    fn anchored_resuming_arms_only_adds_visitors(
        weights in proptest::collection::vec(0u32..=30, 1..6),
        before_running in proptest::collection::vec(any::<bool>(), 6),
        resumed in proptest::collection::vec(any::<bool>(), 6),
        value in 0u32..10000,
    ) {
        let sum: u32 = weights.iter().sum();
        prop_assume!(sum > 0 && sum < 100);
        let after_running: Vec<bool> = before_running.iter().zip(&resumed).map(|(b, r)| *b || *r).collect();
        let before = Anchored::new(&weights, &before_running).layout();
        let after = Anchored::new(&weights, &after_running).layout();
        for (b, a) in before.ranges.iter().zip(&after.ranges) {
            prop_assert_eq!(b.1.to_bits(), a.1.to_bits());
            prop_assert!(a.2 >= b.2);
        }
        for v in probes(&[&before, &after], value) {
            if let Some(arm) = before.select(v) {
                prop_assert_eq!(after.select(v), Some(arm), "value {}", v);
            }
        }
    }

    /// The same agreement with the model for experiences with many arms (more than the 16 the
    /// layout builder scans for repeated ids before it indexes them), ids repeating.
    #[test]
    fn packed_choice_matches_the_model_with_many_arms(
        spec in proptest::collection::vec((0usize..40, alloc(), prop::bool::weighted(0.85)), 17..60),
        value in 0u32..12000,
    ) {
        let pool: Vec<String> = (0..40)
            .map(|i| if i % 3 == 0 { format!("{}", 1000 - i) } else { format!("v{i}") })
            .collect();
        let arms: Vec<(&str, Alloc, bool)> = spec.iter().map(|(i, a, r)| (pool[*i].as_str(), a.clone(), *r)).collect();
        let tas: Vec<Option<Value>> = arms.iter().map(|(_, a, _)| a.json()).collect();
        let statuses: Vec<Value> = arms.iter().map(|(_, _, r)| json!(if *r { "running" } else { "stopped" })).collect();
        let specs: Vec<ArmSpec<'_>> = (0..arms.len())
            .map(|i| ArmSpec { id: Some(arms[i].0), traffic_allocation: tas[i].as_ref(), status: Some(&statuses[i]) })
            .collect();
        let chosen = PackedLayout::build(&specs).select(f64::from(value));
        prop_assert_eq!(chosen.map(|i| arms[i].0.to_string()), model_packed(&arms, f64::from(value)));
    }

    /// The packed choice is the first walk entry whose band `[previous bound, bound)` contains
    /// the value, and it agrees with an independent model of the reference's JS object walk
    /// (numeric-key order, duplicate ids, string/NaN/null/absent/true allocations, stopped arms).
    #[test]
    fn packed_choice_matches_its_band_and_the_model(
        spec in proptest::collection::vec((0usize..ID_POOL.len(), alloc(), prop::bool::weighted(0.85)), 1..7),
        value in 0u32..12000,
    ) {
        let arms: Vec<(&str, Alloc, bool)> = spec.iter().map(|(i, a, r)| (ID_POOL[*i], a.clone(), *r)).collect();
        let tas: Vec<Option<Value>> = arms.iter().map(|(_, a, _)| a.json()).collect();
        let statuses: Vec<Value> = arms.iter().map(|(_, _, r)| json!(if *r { "running" } else { "stopped" })).collect();
        let specs: Vec<ArmSpec<'_>> = (0..arms.len())
            .map(|i| ArmSpec { id: Some(arms[i].0), traffic_allocation: tas[i].as_ref(), status: Some(&statuses[i]) })
            .collect();
        let layout = PackedLayout::build(&specs);
        let v = f64::from(value);
        let chosen = layout.select(v);
        if let Some(i) = chosen {
            let pos = layout.walk.iter().position(|w| w.0 == i).unwrap();
            let lower = if pos == 0 { 0.0 } else { layout.walk[pos - 1].1 };
            prop_assert!(lower <= v && v < layout.walk[pos].1);
            // The reported arm is the first one carrying the chosen id.
            prop_assert_eq!(arms.iter().position(|a| a.0 == arms[i].0), Some(i));
        }
        prop_assert_eq!(chosen.map(|i| arms[i].0.to_string()), model_packed(&arms, v));
    }
}

/// With many arms (more than the builders scan for repeated ids before they index them), every
/// anchored range and packed walk entry names the first arm carrying its id.
#[test]
fn many_arms_report_the_first_arm_with_their_id() {
    let ids: Vec<String> = (0..50)
        .map(|k| match (k * 7) % 20 {
            n if n % 3 == 0 => format!("{}", 500 + n),
            n => format!("v{n}"),
        })
        .collect();
    let ta = json!(2);
    let running = json!("running");
    let arms: Vec<ArmSpec<'_>> = ids
        .iter()
        .map(|id| ArmSpec {
            id: Some(id.as_str()),
            traffic_allocation: Some(&ta),
            status: Some(&running),
        })
        .collect();
    let first = |id: &str| ids.iter().position(|i| i == id);
    let anchored = AnchoredLayout::build(&arms);
    assert_eq!(anchored.ranges.len(), arms.len());
    for (k, &(arm, _, _)) in anchored.ranges.iter().enumerate() {
        assert_eq!(Some(arm), first(&ids[k]), "anchored range {k}");
    }
    let packed = PackedLayout::build(&arms);
    // One walk entry per distinct id, each on the first arm that carries it.
    let mut distinct = ids.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(packed.walk.len(), distinct.len());
    for &(arm, _) in &packed.walk {
        assert_eq!(Some(arm), first(&ids[arm]));
    }
}
