//! MurmurHash3 x86 32-bit and the visitor bucket value (SPEC §4.1–§4.3).
//!
//! The reference hashes the UTF-8 bytes of `experienceId + visitorId` with seed 9999 and scales the
//! unsigned result to `[0, 10000)`. Here the two strings are hashed as one stream, block by block
//! across their boundary, so no concatenated string is ever allocated.

const C1: u32 = 0xcc9e_2d51;
const C2: u32 = 0x1b87_3593;

#[inline(always)]
fn mix_k(k: u32) -> u32 {
    k.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2)
}

#[inline(always)]
fn mix_h(h: u32, k: u32) -> u32 {
    (h ^ mix_k(k))
        .rotate_left(13)
        .wrapping_mul(5)
        .wrapping_add(0xe654_6b64)
}

#[inline(always)]
fn fmix(mut h: u32, len: usize) -> u32 {
    // The length is mixed in modulo 2^32, as the reference does.
    h ^= len as u32;
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^ (h >> 16)
}

#[inline(always)]
fn tail(h: u32, rest: &[u8]) -> u32 {
    let mut k: u32 = 0;
    for (i, &b) in rest.iter().enumerate() {
        k |= u32::from(b) << (8 * i);
    }
    if rest.is_empty() { h } else { h ^ mix_k(k) }
}

/// MurmurHash3 x86 32-bit of `bytes` with `seed`.
pub fn murmur3_32(bytes: &[u8], seed: u32) -> u32 {
    let mut h = seed;
    let mut chunks = bytes.chunks_exact(4);
    for c in &mut chunks {
        h = mix_h(h, u32::from_le_bytes([c[0], c[1], c[2], c[3]]));
    }
    h = tail(h, chunks.remainder());
    fmix(h, bytes.len())
}

/// MurmurHash3 x86 32-bit of the concatenation `a ‖ b`, without building it.
pub fn murmur3_32_concat(a: &[u8], b: &[u8], seed: u32) -> u32 {
    let total = a.len() + b.len();
    let mut h = seed;
    let mut chunks = a.chunks_exact(4);
    for c in &mut chunks {
        h = mix_h(h, u32::from_le_bytes([c[0], c[1], c[2], c[3]]));
    }
    let carry = chunks.remainder();
    let mut rest = b;
    if !carry.is_empty() {
        // The block straddling the boundary: the last bytes of `a`, then the first of `b`.
        let mut block = [0u8; 4];
        block[..carry.len()].copy_from_slice(carry);
        let take = (4 - carry.len()).min(rest.len());
        block[carry.len()..carry.len() + take].copy_from_slice(&rest[..take]);
        rest = &rest[take..];
        let filled = carry.len() + take;
        if filled < 4 {
            // `b` ended inside this block: it is the final partial block.
            return fmix(tail(h, &block[..filled]), total);
        }
        h = mix_h(h, u32::from_le_bytes(block));
    }
    let mut chunks = rest.chunks_exact(4);
    for c in &mut chunks {
        h = mix_h(h, u32::from_le_bytes([c[0], c[1], c[2], c[3]]));
    }
    fmix(tail(h, chunks.remainder()), total)
}

/// The bucket value for a hash: `trunc(hash / 2^32 × max_traffic)` in double precision, with the
/// reference's `parseInt(String(x))` artefact for values printed in exponent form (only reachable
/// with a tiny custom `max_traffic`): the leading digit is returned there.
pub fn value_from_hash(hash: u32, max_traffic: f64) -> u32 {
    let val = (f64::from(hash) / 4_294_967_296.0) * max_traffic;
    if !val.is_finite() || val <= 0.0 {
        return 0;
    }
    if !(1e-6..1e21).contains(&val) {
        // String(val) is "d.ddde±x" here and parseInt stops at the '.', leaving the leading digit.
        let exp = val.log10().floor();
        let lead = (val / 10f64.powf(exp)).trunc();
        return lead.clamp(1.0, 9.0) as u32;
    }
    val.trunc().min(f64::from(u32::MAX)) as u32
}

/// The bucket value of a visitor in an experience: `trunc(murmur3(experienceId + visitorId, seed)
/// / 2^32 × max_traffic)`. `experience_id` is `""` when the experience id is excluded from the hash.
pub fn bucket_value(experience_id: &str, visitor_id: &str, seed: u32, max_traffic: f64) -> u32 {
    value_from_hash(
        murmur3_32_concat(experience_id.as_bytes(), visitor_id.as_bytes(), seed),
        max_traffic,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_values() {
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

    #[test]
    fn bucket_values_of_the_spec_table() {
        let cases = [
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
        for (e, v, hash, value) in cases {
            let joined = format!("{e}{v}");
            assert_eq!(murmur3_32(joined.as_bytes(), 9999), hash, "{e}+{v}");
            assert_eq!(
                murmur3_32_concat(e.as_bytes(), v.as_bytes(), 9999),
                hash,
                "concat {e}+{v}"
            );
            assert_eq!(bucket_value(e, v, 9999, 10000.0), value, "{e}+{v}");
        }
    }

    #[test]
    fn concat_matches_joined_for_every_split() {
        let s = "abcdefghij-ÅΩ😀-0123456789";
        for i in 0..=s.len() {
            if !s.is_char_boundary(i) {
                continue;
            }
            let (a, b) = s.split_at(i);
            for seed in [0, 1, 9999, u32::MAX] {
                assert_eq!(
                    murmur3_32_concat(a.as_bytes(), b.as_bytes(), seed),
                    murmur3_32(s.as_bytes(), seed),
                    "split at {i}"
                );
            }
        }
    }

    #[test]
    fn tiny_max_traffic_artefact() {
        // val = hash / 2^32 * max; with max = 1 and hash = 100, val ≈ 2.3e-8 → "2.3283064365386963e-8" → 2.
        assert_eq!(value_from_hash(100, 1.0), 2);
        assert_eq!(value_from_hash(0, 1.0), 0);
        assert_eq!(value_from_hash(u32::MAX, 10000.0), 9999);
    }
}
