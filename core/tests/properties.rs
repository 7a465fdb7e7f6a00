//! Property tests: the hand-written MurmurHash3 against the `murmur3` crate, and layout invariants.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use convert_core::bucketing::{AnchoredLayout, ArmSpec, PackedLayout};
use convert_core::hash::{bucket_value, murmur3_32, murmur3_32_concat, value_from_hash};
use convert_core::rules::compare;
use proptest::prelude::*;
use serde_json::{Value, json};

fn reference_murmur(bytes: &[u8], seed: u32) -> u32 {
    murmur3::murmur3_32(&mut std::io::Cursor::new(bytes), seed).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn murmur3_matches_the_murmur3_crate(bytes in proptest::collection::vec(any::<u8>(), 0..300), seed in any::<u32>()) {
        prop_assert_eq!(murmur3_32(&bytes, seed), reference_murmur(&bytes, seed));
    }

    #[test]
    fn streaming_concat_equals_hashing_the_joined_string(a in "\\PC{0,40}", b in "\\PC{0,40}", seed in any::<u32>()) {
        let joined = format!("{a}{b}");
        prop_assert_eq!(murmur3_32_concat(a.as_bytes(), b.as_bytes(), seed), reference_murmur(joined.as_bytes(), seed));
        let v = bucket_value(&a, &b, seed, 10000.0);
        prop_assert!(v < 10000);
        prop_assert_eq!(v, value_from_hash(reference_murmur(joined.as_bytes(), seed), 10000.0));
    }

    /// Whatever arm the anchored layout picks, the value lies in that arm's half-open range.
    #[test]
    fn anchored_choice_is_inside_its_range(allocs in proptest::collection::vec(0u32..=100, 1..6), stopped in proptest::collection::vec(any::<bool>(), 6), value in 0u32..10000) {
        let ids: Vec<String> = (0..allocs.len()).map(|i| format!("v{i}")).collect();
        let tas: Vec<Value> = allocs.iter().map(|a| json!(a)).collect();
        let sts: Vec<Value> = stopped.iter().map(|s| json!(if *s { "stopped" } else { "running" })).collect();
        let arms: Vec<ArmSpec<'_>> = (0..allocs.len()).map(|i| ArmSpec { id: Some(&ids[i]), traffic_allocation: Some(&tas[i]), status: Some(&sts[i]) }).collect();
        let layout = AnchoredLayout::build(&arms);
        if let Some(i) = layout.select(f64::from(value)) {
            let (_, anchor, width) = layout.ranges.iter().find(|r| r.0 == i).copied().unwrap();
            prop_assert!(anchor <= f64::from(value) && f64::from(value) < anchor + width);
            prop_assert!(!stopped[i] && allocs[i] > 0);
        }
    }

    /// The anchored superset property (SPEC 4.5): raising every allocation proportionally (below a
    /// 100 % total) keeps the anchors and only widens the bands, so a bucketed visitor never
    /// changes arm.
    #[test]
    fn anchored_raising_allocations_only_adds_visitors(
        base in proptest::collection::vec(1u32..=20, 1..5),
        k in 1u32..=5,
        value in 0u32..10000,
    ) {
        // Bands are `allocation x 100` wide while anchors are shares of 10000, so they only tile
        // without overlap below a 100 % total; at exactly 100 % a one-ulp rounding of an anchor
        // can hand a boundary value to the previous arm (7/1/17 scaled by 4 at value 3200).
        prop_assume!(base.iter().sum::<u32>() * k < 100);
        let ids: Vec<String> = (0..base.len()).map(|i| format!("arm{i}")).collect();
        let layout = |scale: u32| {
            let tas: Vec<Value> = base.iter().map(|a| json!(a * scale)).collect();
            let arms: Vec<ArmSpec<'_>> = (0..base.len())
                .map(|i| ArmSpec { id: Some(&ids[i]), traffic_allocation: Some(&tas[i]), status: None })
                .collect();
            AnchoredLayout::build(&arms)
        };
        let before = layout(1).select(f64::from(value));
        let after = layout(k).select(f64::from(value));
        if let Some(b) = before {
            prop_assert_eq!(after, Some(b));
        }
    }

    /// The packed walk returns an arm whose band contains the value, and covers exactly the sum.
    #[test]
    fn packed_choice_matches_its_band(allocs in proptest::collection::vec(0u32..=60, 1..6), value in 0u32..10000) {
        let ids: Vec<String> = (0..allocs.len()).map(|i| format!("{}", 900 - i)).collect();
        let tas: Vec<Value> = allocs.iter().map(|a| json!(a)).collect();
        let arms: Vec<ArmSpec<'_>> = (0..allocs.len()).map(|i| ArmSpec { id: Some(&ids[i]), traffic_allocation: Some(&tas[i]), status: None }).collect();
        let layout = PackedLayout::build(&arms);
        let total: u32 = allocs.iter().sum::<u32>() * 100;
        match layout.select(f64::from(value)) {
            Some(i) => {
                prop_assert!(value < total);
                let pos = layout.walk.iter().position(|w| w.0 == i).unwrap();
                let lower = if pos == 0 { 0.0 } else { layout.walk[pos - 1].1 };
                prop_assert!(lower <= f64::from(value) && f64::from(value) < layout.walk[pos].1);
            }
            None => prop_assert!(value >= total),
        }
    }

    /// regexMatches terminates and never panics, whatever the pattern and input.
    #[test]
    fn regex_is_total(pattern in "\\PC{0,30}", input in "\\PC{0,200}") {
        let _ = compare("regexMatches", Some(&json!(input)), Some(&json!(pattern)), false);
    }

    /// The same with patterns made of regex syntax (look-around, backreferences, named groups,
    /// Annex B quantifiers and classes), so both engines and the translator's corners are hit;
    /// whatever the outcome, the work charged stays within the budgets.
    #[test]
    fn regex_syntax_soup_is_total_and_bounded(
        pattern in "([ab.^$|*+?]|\\(\\?[=!:]|\\(\\?<[=!n]>?|\\(|\\)|\\\\[1-3bBwdk]|\\[\\^?|\\]|\\{[0-9,]{0,3}\\}?|<n>){0,20}",
        input in "[abn \u{17F}\u{1F600}]{0,64}",
    ) {
        use convert_core::rules::{regex_test, RegexOutcome, REGEX_BACKTRACK_BUDGET};
        let run = regex_test(&pattern, &input);
        prop_assert!(run.work <= REGEX_BACKTRACK_BUDGET);
        if run.outcome == RegexOutcome::NotRun {
            prop_assert_eq!(run.work, 0);
        }
        let _ = compare("regexMatches", Some(&json!(input)), Some(&json!(pattern)), true);
    }
}

#[test]
fn catastrophic_pattern_is_fast_enough_to_finish() {
    // (a+)+$ against a long non-matching input: exponential in a backtracking engine.
    let input = format!("{}!", "a".repeat(50_000));
    assert!(!compare(
        "regexMatches",
        Some(&json!(input)),
        Some(&json!("(a+)+$")),
        false
    ));
}
