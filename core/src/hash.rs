//! MurmurHash3 x86 32-bit and the visitor bucket value (SPEC §4.1–§4.3).
//!
//! CONTRACT STUB: owned by the "hash + bucketing" work item.

/// MurmurHash3 x86 32-bit of `bytes` with `seed`.
pub fn murmur3_32(bytes: &[u8], seed: u32) -> u32 {
    let _ = (bytes, seed);
    0
}

/// The bucket value of a visitor in an experience: `trunc(murmur3(experienceId + visitorId, seed) / 2^32 * max_traffic)`
/// (with the reference's `parseInt(String(x))` artefact for tiny values). `experience_id` is `""` when the experience id
/// is excluded from the hash. Builds the hash input without heap allocation for ordinary ids.
pub fn bucket_value(experience_id: &str, visitor_id: &str, seed: u32, max_traffic: f64) -> u32 {
    let _ = (experience_id, visitor_id, seed, max_traffic);
    0
}
