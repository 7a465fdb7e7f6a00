//! MurmurHash3 and bucket values: the SPEC §4.3 reference values, property tests against the
//! `murmur3` crate, and the cross-SDK hash vectors (Ruby, Python, Android).
//!
//! Every conformance runner asserts how many vectors it ran, so an empty or truncated file fails.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use convert_core::bucketing::select_bucket;
use convert_core::hash::{
    Murmur3Hasher, bucket_value, murmur3_32, murmur3_32_concat, value_from_hash,
};
use proptest::prelude::*;
use serde_json::Value;

/// The `murmur3` crate, as an independent implementation.
fn reference_murmur(bytes: &[u8], seed: u32) -> u32 {
    murmur3::murmur3_32(&mut std::io::Cursor::new(bytes), seed).unwrap()
}

/// `trunc(hash / 2^32 * 10000)`, written out independently of the crate.
fn value_at_10000(hash: u32) -> u32 {
    ((f64::from(hash) / 4_294_967_296.0) * 10000.0).trunc() as u32
}

fn arr(v: &Value) -> &Vec<Value> {
    v.as_array().expect("array")
}

fn u32_field(v: &Value, key: &str) -> u32 {
    u32::try_from(v[key].as_u64().unwrap_or_else(|| panic!("{key} in {v}"))).unwrap()
}

#[test]
fn public_murmur3_reference_values() {
    assert_eq!(murmur3_32(b"", 9999), 3_523_940_263);
    assert_eq!(murmur3_32(b"a", 0), 1_009_084_850);
    assert_eq!(murmur3_32(b"abc", 0), 3_017_643_002);
    assert_eq!(murmur3_32(b"hello", 0), 613_153_351);
    assert_eq!(
        murmur3_32(b"The quick brown fox jumps over the lazy dog", 0x9747_b28c),
        799_549_133
    );
    assert_eq!(murmur3_32(b"testString", 9999), 2_241_850_228);
    assert_eq!(murmur3_32("é".as_bytes(), 9999), 3_298_638_250);
    assert_eq!(murmur3_32("😀".as_bytes(), 9999), 689_720_682);
    assert_eq!(murmur3_32(&[0xEF, 0xBF, 0xBD], 9999), 4_211_015_195);
}

/// SPEC §4.3 table: (experienceId, visitorId) → murmur3 → bucket value at seed 9999.
#[test]
fn spec_bucket_value_table() {
    let table = [
        ("", "visitor-1", 1_989_218_644u32, 4631u32),
        ("100218245", "visitor-1", 2_798_063_563, 6514),
        ("100218245", "XXX", 86_723_030, 201),
        ("900000001", "thirds-core-O-1", 125_967_228, 293),
        ("900000001", "thirds-flip-V1-to-O-66", 258_163_584, 601),
        ("900000001", "anchor-gate-visitor-106", 44_036_095, 102),
        ("900000001", "anchor-gate-visitor-17", 2_129_288_766, 4957),
        ("900000001", "boundary-1000-1145", 429_792_952, 1000),
        ("900000001", "boundary-9999-5699", 4_294_809_888, 9999),
        ("100218245", "Ünïcødé-😀", 1_880_752_625, 4378),
        ("", "01ABCD", 2_347_149_437, 5464),
        ("exp-anchored-1", "01ABCD", 2_951_059_126, 6870),
    ];
    for (e, v, hash, value) in table {
        let joined = format!("{e}{v}");
        assert_eq!(
            reference_murmur(joined.as_bytes(), 9999),
            hash,
            "murmur3 crate, {e}+{v}"
        );
        assert_eq!(murmur3_32(joined.as_bytes(), 9999), hash, "{e}+{v}");
        assert_eq!(
            murmur3_32_concat(e.as_bytes(), v.as_bytes(), 9999),
            hash,
            "{e}+{v}"
        );
        assert_eq!(bucket_value(e, v, 9999, 10000.0), value, "{e}+{v}");
    }
}

#[test]
fn seed_zero_is_a_real_seed() {
    assert_ne!(
        murmur3_32(b"testString", 0),
        murmur3_32(b"testString", 9999)
    );
    assert_eq!(murmur3_32(b"a", 0), 1_009_084_850);
}

/// `parseInt(String(val))` for `val` in exponent form, modelled with Rust's `{:e}` formatting
/// (shortest round-trip digits, like ECMAScript): the leading digit.
fn parse_int_of_string_model(val: f64) -> u32 {
    if val == 0.0 {
        0
    } else if (1e-6..1e21).contains(&val) {
        val.trunc() as u32
    } else {
        let s = format!("{val:e}");
        u32::from(s.as_bytes()[0] - b'0')
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    #[test]
    fn murmur3_matches_the_murmur3_crate(bytes in proptest::collection::vec(any::<u8>(), 0..200), seed in any::<u32>()) {
        prop_assert_eq!(murmur3_32(&bytes, seed), reference_murmur(&bytes, seed));
    }

    /// Streaming in arbitrary pieces equals hashing the whole input.
    #[test]
    fn streaming_hasher_matches_the_murmur3_crate(
        bytes in proptest::collection::vec(any::<u8>(), 0..120),
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..6),
        seed in any::<u32>(),
    ) {
        let mut points: Vec<usize> = cuts.iter().map(|c| c.index(bytes.len() + 1)).collect();
        points.sort_unstable();
        let mut h = Murmur3Hasher::new(seed);
        let mut start = 0;
        for p in points.into_iter().chain([bytes.len()]) {
            h.write(&bytes[start..p]);
            start = p;
        }
        prop_assert_eq!(h.finish(), reference_murmur(&bytes, seed));
    }

    /// `bucket_value(e, v)` hashes the concatenation `e + v` (checked against the joined string
    /// hashed by the `murmur3` crate) and stays in `[0, 10000)`.
    #[test]
    fn bucket_value_hashes_the_concatenation(e in "\\PC{0,24}", v in "\\PC{0,40}", seed in any::<u32>()) {
        let joined = format!("{e}{v}");
        let hash = reference_murmur(joined.as_bytes(), seed);
        prop_assert_eq!(murmur3_32_concat(e.as_bytes(), v.as_bytes(), seed), hash);
        let value = bucket_value(&e, &v, seed, 10000.0);
        prop_assert_eq!(value, value_from_hash(murmur3_32(joined.as_bytes(), seed), 10000.0));
        prop_assert_eq!(value, value_at_10000(hash));
        prop_assert!(value < 10000);
    }

    /// At the default 10000 the value is a plain truncation for every hash.
    #[test]
    fn value_at_default_traffic_truncates(hash in any::<u32>()) {
        prop_assert_eq!(value_from_hash(hash, 10000.0), value_at_10000(hash));
    }

    /// With tiny custom `max_traffic` values the exponent-form artefact applies.
    #[test]
    fn value_with_tiny_traffic_follows_parse_int(hash in any::<u32>(), exp in -12i32..=0, mant in 1.0f64..10.0) {
        let max = mant * 10f64.powi(exp);
        let val = (f64::from(hash) / 4_294_967_296.0) * max;
        prop_assert_eq!(value_from_hash(hash, max), parse_int_of_string_model(val));
    }
}

#[test]
fn ruby_hash_vectors() {
    let Some(dir) = common::conformance_dir() else {
        return;
    };
    let rel = "ruby-sdk/test-vectors.json";
    let file = common::load(&dir, rel);
    let (mut n, mut values) = (0, 0);
    for v in arr(&file) {
        let input = v["input"].as_str().unwrap();
        let seed = u32_field(v, "seed");
        let expected = u32_field(v, "expected");
        assert_eq!(murmur3_32(input.as_bytes(), seed), expected, "{rel}: {v}");
        assert_eq!(
            murmur3_32_concat(b"", input.as_bytes(), seed),
            expected,
            "{rel}: {v}"
        );
        if seed == 9999 {
            // README §6: for seed 9999 the bucket value of visitor `input` with no experience id.
            assert_eq!(
                bucket_value("", input, 9999, 10000.0),
                value_at_10000(expected),
                "{rel}: {v}"
            );
            values += 1;
        }
        n += 1;
    }
    assert_eq!((n, values), (75, 15), "{rel}");
    println!("{rel}: {n}/75 hashes passed (+{values} bucket values)");
}

#[test]
fn python_hash_vectors() {
    let Some(dir) = common::conformance_dir() else {
        return;
    };
    let rel = "python-sdk/bucketing_vectors.json";
    let file = common::load(&dir, rel);
    let mut n = 0;
    for v in arr(&file["vectors"]) {
        let input = v["value"].as_str().unwrap();
        let seed = u32_field(v, "seed");
        assert_eq!(
            murmur3_32(input.as_bytes(), seed),
            u32_field(v, "expected"),
            "{rel}: {v}"
        );
        n += 1;
    }
    assert_eq!(n, 80, "{rel}");
    println!("{rel}: {n}/80 hashes passed");
}

#[test]
fn android_hash_parity_vectors() {
    let Some(dir) = common::conformance_dir() else {
        return;
    };
    let rel = "android-sdk/hash-parity-vectors.json";
    let file = common::load(&dir, rel);
    let (mut values, mut walks) = (0, 0);
    for v in arr(&file) {
        let desc = v["description"].as_str().unwrap();
        let value = bucket_value(
            v["experienceId"].as_str().unwrap(),
            v["visitorId"].as_str().unwrap(),
            u32_field(v, "seed"),
            10000.0,
        );
        assert_eq!(value, u32_field(v, "expectedValue"), "{rel}: {desc}");
        values += 1;
        let buckets: Vec<(String, Value)> = v["buckets"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, w)| (k.clone(), w.clone()))
            .collect();
        assert_eq!(
            select_bucket(&buckets, f64::from(value)),
            Some(v["expectedVariationId"].as_str().unwrap()),
            "{rel}: {desc} (value {value})"
        );
        walks += 1;
    }
    assert_eq!((values, walks), (69, 69), "{rel}");
    println!("{rel}: {values}/69 bucket values and {walks}/69 packed walks passed");
}
