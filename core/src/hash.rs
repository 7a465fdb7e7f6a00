//! MurmurHash3 x86 32-bit and the visitor bucket value (SPEC §4.1–§4.3).
//!
//! The reference hashes the UTF-8 bytes of `experienceId + visitorId` with seed 9999 and scales the
//! unsigned result to `[0, 10000)`. Here the two strings are hashed as one stream, block by block
//! across their boundary ([`Murmur3Hasher`]), so no concatenated string is ever allocated.
//!
//! Everything in this module is allocation-free.

const C1: u32 = 0xcc9e_2d51;
const C2: u32 = 0x1b87_3593;

/// `2^32`: the hash is divided by this to land in `[0, 1)`.
const TWO_POW_32: f64 = 4_294_967_296.0;

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
fn fmix(mut h: u32, len: u64) -> u32 {
    // The length is mixed in modulo 2^32, as the reference's 32-bit bit operations do.
    h ^= len as u32;
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^ (h >> 16)
}

/// Mixes every whole little-endian 4-byte block of `bytes` into `h`; returns the new state and
/// the 0–3 bytes left over.
#[inline(always)]
fn blocks(mut h: u32, bytes: &[u8]) -> (u32, &[u8]) {
    let mut chunks = bytes.chunks_exact(4);
    for c in &mut chunks {
        h = mix_h(h, u32::from_le_bytes([c[0], c[1], c[2], c[3]]));
    }
    (h, chunks.remainder())
}

/// Packs up to 3 trailing bytes little-endian.
#[inline(always)]
fn pack_tail(rest: &[u8]) -> u32 {
    match *rest {
        [a] => u32::from(a),
        [a, b] => u32::from(a) | u32::from(b) << 8,
        [a, b, c, ..] => u32::from(a) | u32::from(b) << 8 | u32::from(c) << 16,
        [] => 0,
    }
}

/// MurmurHash3 x86 32-bit of `bytes` with `seed` (the reference hashes UTF-8 bytes of a string).
#[inline]
pub fn murmur3_32(bytes: &[u8], seed: u32) -> u32 {
    let (mut h, rest) = blocks(seed, bytes);
    if !rest.is_empty() {
        h ^= mix_k(pack_tail(rest));
    }
    fmix(h, bytes.len() as u64)
}

/// Streaming MurmurHash3 x86 32-bit: feed the input in pieces with [`write`](Self::write), read the
/// hash of their concatenation with [`finish`](Self::finish).
///
/// The state is a few words on the stack; a block that straddles two pieces is assembled in a
/// `u32`, so hashing `a ‖ b` never builds the joined string.
///
/// ```
/// use convert_core::hash::{Murmur3Hasher, murmur3_32};
/// let mut h = Murmur3Hasher::new(9999);
/// h.write(b"100218245");
/// h.write("visitor-1".as_bytes());
/// assert_eq!(h.finish(), murmur3_32(b"100218245visitor-1", 9999));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Murmur3Hasher {
    /// Running state after every whole block seen so far.
    h: u32,
    /// The pending bytes of an incomplete block, little-endian.
    pending: u32,
    /// How many bytes `pending` holds (0–3).
    pending_len: u32,
    /// Total bytes written.
    len: u64,
}

impl Murmur3Hasher {
    /// A hasher with nothing written yet.
    #[inline]
    pub const fn new(seed: u32) -> Self {
        Murmur3Hasher {
            h: seed,
            pending: 0,
            pending_len: 0,
            len: 0,
        }
    }

    /// Appends `bytes` to the hashed stream.
    #[inline]
    pub fn write(&mut self, bytes: &[u8]) {
        self.len += bytes.len() as u64;
        let mut bytes = bytes;
        if self.pending_len > 0 {
            // Complete the block that straddles the previous piece and this one.
            let shift = 8 * self.pending_len;
            let need = (4 - self.pending_len) as usize;
            if bytes.len() < need {
                self.pending |= pack_tail(bytes) << shift;
                self.pending_len += bytes.len() as u32;
                return;
            }
            let (head, rest) = bytes.split_at(need);
            self.h = mix_h(self.h, self.pending | pack_tail(head) << shift);
            bytes = rest;
        }
        let (h, rest) = blocks(self.h, bytes);
        self.h = h;
        self.pending = pack_tail(rest);
        // `rest` holds at most 3 bytes.
        self.pending_len = rest.len() as u32;
    }

    /// The hash of everything written so far (the hasher itself is left unchanged).
    #[inline]
    pub fn finish(&self) -> u32 {
        let h = if self.pending_len > 0 {
            self.h ^ mix_k(self.pending)
        } else {
            self.h
        };
        fmix(h, self.len)
    }
}

/// MurmurHash3 x86 32-bit of the concatenation `a ‖ b`, without building it.
#[inline]
pub fn murmur3_32_concat(a: &[u8], b: &[u8], seed: u32) -> u32 {
    let mut hasher = Murmur3Hasher::new(seed);
    hasher.write(a);
    hasher.write(b);
    hasher.finish()
}

/// The bucket value for a hash: JS `parseInt(String((hash / 2^32) * max_traffic))`, computed in
/// double precision in that order (divide first, then multiply).
///
/// For `1e-6 <= val < 1e21` (every non-zero hash when `max_traffic` is 10000) this is
/// `trunc(val)`. Outside that range `String(val)` is in exponent form (`"2.3283064365386963e-8"`)
/// and `parseInt` stops at the `.` or `e`, so the result is the leading significant digit — a
/// reference artefact reachable only with a tiny (or huge) custom `max_traffic`.
///
/// Results JS would give that a `u32` cannot hold are mapped as follows: `NaN` (a NaN or infinite
/// `max_traffic`) and negative values (a negative `max_traffic`) give 0; values of `2^32` or more
/// saturate to `u32::MAX`.
#[inline]
pub fn value_from_hash(hash: u32, max_traffic: f64) -> u32 {
    let val = (f64::from(hash) / TWO_POW_32) * max_traffic;
    if (1e-6..1e21).contains(&val) {
        // Plain decimal notation: parseInt truncates (saturating above u32::MAX).
        val as u32
    } else {
        exponent_form_value(val)
    }
}

/// `parseInt(String(val))` for the values [`value_from_hash`] does not truncate directly.
#[cold]
#[inline(never)]
fn exponent_form_value(val: f64) -> u32 {
    // 0 prints as "0"; NaN, ±Infinity and negative numbers are not representable (see the caller's
    // documentation) and give 0. What is left prints as "d[.ddd]e±x": the answer is `d`.
    if !(val.is_finite() && val > 0.0) {
        return 0;
    }
    let mut buf = ryu_js::Buffer::new();
    match buf.format_finite(val).as_bytes().first() {
        Some(d @ b'1'..=b'9') => u32::from(d - b'0'),
        _ => 0,
    }
}

/// The bucket value of a visitor in an experience:
/// `parseInt(String((murmur3(utf8(experienceId + visitorId), seed) / 2^32) * max_traffic))`
/// (see [`value_from_hash`]). `experience_id` is `""` when the experience id is excluded from the
/// hash. The two strings are hashed as one stream; nothing is allocated.
#[inline]
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
    fn streaming_in_many_small_pieces() {
        let s = b"The quick brown fox jumps over the lazy dog";
        for piece in 1..=7 {
            let mut h = Murmur3Hasher::new(0x9747_b28c);
            for chunk in s.chunks(piece) {
                h.write(chunk);
                h.write(b"");
            }
            assert_eq!(h.finish(), 799_549_133, "pieces of {piece}");
        }
        assert_eq!(Murmur3Hasher::new(9999).finish(), 3_523_940_263);
    }

    #[test]
    fn tiny_max_traffic_artefact() {
        // val = 100 / 2^32 * 1 = 2.3283064365386963e-8; String() is exponential, parseInt → 2.
        assert_eq!(value_from_hash(100, 1.0), 2);
        // val = 2^31 / 2^32 * 1e-6 = 5e-7 → "5e-7" → 5.
        assert_eq!(value_from_hash(1 << 31, 1e-6), 5);
        // val = 0.5 * 2e-6 = 1e-6 is printed "0.000001": plain decimal, parseInt → 0.
        assert_eq!(value_from_hash(1 << 31, 2e-6), 0);
        // val = 1e-7 exactly ("1e-7") → 1, even though log10 rounding could suggest otherwise.
        assert_eq!(value_from_hash(1 << 31, 2e-7), 1);
        assert_eq!(value_from_hash(0, 1.0), 0);
        assert_eq!(value_from_hash(u32::MAX, 10000.0), 9999);
        // val = 0.5 * 4e21 = 2e21 → "2e+21" → 2; 0.5 * 1.9e21 = 9.5e20 is plain decimal (saturates).
        assert_eq!(value_from_hash(1 << 31, 4e21), 2);
        assert_eq!(value_from_hash(1 << 31, 1.9e21), u32::MAX);
        // Not representable in u32: NaN, negative, infinite.
        assert_eq!(value_from_hash(1 << 31, f64::NAN), 0);
        assert_eq!(value_from_hash(1 << 31, -10000.0), 0);
        assert_eq!(value_from_hash(1 << 31, f64::INFINITY), 0);
    }

    #[test]
    fn the_smallest_nonzero_hash_is_still_plain_decimal_at_10000() {
        // 1 / 2^32 * 10000 ≈ 2.33e-6 ≥ 1e-6, so it truncates to 0 rather than the digit 2.
        assert_eq!(value_from_hash(1, 10000.0), 0);
    }
}
