//! JavaScript property-order rules (SPEC §0).
//!
//! A plain JS object lists *array-index* keys first, in ascending numeric order, then every other key
//! in insertion order. The reference SDK keys several objects by id (packed bucket map, feature roster,
//! `bucketingData`), so iteration order there follows this rule rather than config order.

/// Whether `key` is a canonical array index: the decimal form of an integer in `0 ..= 4294967294`,
/// with no sign, no leading zero (except `"0"` itself) and no fraction.
pub fn is_array_index(key: &str) -> bool {
    array_index(key).is_some()
}

/// The numeric value of `key` when it is a canonical array index (see [`is_array_index`]).
pub fn array_index(key: &str) -> Option<u32> {
    let bytes = key.as_bytes();
    if bytes.is_empty() || bytes.len() > 10 {
        return None;
    }
    if bytes.len() > 1 && bytes[0] == b'0' {
        return None;
    }
    let mut n: u64 = 0;
    for &b in bytes {
        if !b.is_ascii_digit() {
            return None;
        }
        n = n * 10 + u64::from(b - b'0');
    }
    if n <= 4_294_967_294 {
        u32::try_from(n).ok()
    } else {
        None
    }
}

/// Returns the positions of `keys` in JS property order: array-index keys ascending first, then the
/// others in their given (insertion) order. Duplicate keys are the caller's business: they are kept.
pub fn js_key_order<S: AsRef<str>>(keys: &[S]) -> Vec<usize> {
    let mut numeric: Vec<(u32, usize)> = Vec::new();
    let mut other: Vec<usize> = Vec::new();
    for (i, k) in keys.iter().enumerate() {
        match array_index(k.as_ref()) {
            Some(n) => numeric.push((n, i)),
            None => other.push(i),
        }
    }
    numeric.sort_by_key(|&(n, i)| (n, i));
    numeric.into_iter().map(|(_, i)| i).chain(other).collect()
}

/// Builds a JS-object-like list from `(key, value)` pairs in insertion order: a repeated key keeps
/// the position of its first occurrence and the value of its last, then the list is put in JS
/// property order.
pub fn js_object_from_pairs<V>(pairs: impl IntoIterator<Item = (String, V)>) -> Vec<(String, V)> {
    let mut out: Vec<(String, V)> = Vec::new();
    for (k, v) in pairs {
        if let Some(slot) = out.iter_mut().find(|(ek, _)| *ek == k) {
            slot.1 = v;
        } else {
            out.push((k, v));
        }
    }
    let order = js_key_order(&out.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>());
    let mut slots: Vec<Option<(String, V)>> = out.into_iter().map(Some).collect();
    order.into_iter().filter_map(|i| slots[i].take()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn array_index_boundaries() {
        assert!(is_array_index("0"));
        assert!(is_array_index("4294967294"));
        assert!(!is_array_index("4294967295"));
        assert!(!is_array_index("01"));
        assert!(!is_array_index("-1"));
        assert!(!is_array_index("1.5"));
        assert!(!is_array_index(""));
        assert!(!is_array_index("99999999999"));
        assert!(!is_array_index("+1"));
    }

    #[test]
    fn numeric_keys_first_then_insertion_order() {
        let keys = ["300", "b", "20", "abc", "5", "01", "4294967295"];
        let order: Vec<&str> = js_key_order(&keys).into_iter().map(|i| keys[i]).collect();
        assert_eq!(order, ["5", "20", "300", "b", "abc", "01", "4294967295"]);
    }

    #[test]
    fn duplicates_keep_first_position_last_value() {
        let obj = js_object_from_pairs(vec![
            ("C".to_string(), 1),
            ("200".to_string(), 2),
            ("C".to_string(), 3),
            ("100".to_string(), 4),
        ]);
        assert_eq!(
            obj,
            vec![
                ("100".to_string(), 4),
                ("200".to_string(), 2),
                ("C".to_string(), 3)
            ]
        );
    }
}
