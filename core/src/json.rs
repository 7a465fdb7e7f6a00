//! JSON text read as JavaScript's `JSON.parse` reads it, whatever `serde_json` features the
//! program enables.
//!
//! convert-core does not enable `serde_json`'s `float_roundtrip` feature (features unify into the
//! integrator's program and change its own JSON handling). Without it, `serde_json` may round a
//! decimal with 16–17 significant digits, or a large decimal exponent, to a double one ULP away
//! from the correctly rounded one (`2.729254981960025e-119` is read as
//! `2.7292549819600254e-119`), while `JSON.parse` always rounds correctly. A config number that
//! lands on the wrong double can change a rule comparison (`less`, `equals`) or a payload's bytes.
//!
//! [`parse_value`] therefore lets `serde_json` check the syntax and build the tree, and reads every
//! number it reports as a double again from its own text with [`str::parse`], which is correctly
//! rounded. Integers that fit `u64`/`i64` are exact either way and stay integers. Member order of
//! objects is whatever `serde_json::Map` keeps in the program (sorted, or insertion order when the
//! program enables `preserve_order`); the engine never depends on it (see `docs/architecture.md`).

use serde::de::{self, DeserializeOwned, DeserializeSeed, Deserializer, MapAccess, SeqAccess};
use serde_json::{Map, Number, Value};
use std::cell::Cell;
use std::fmt;

/// The number tokens of a JSON text, in text order, and a cursor: `serde_json` reports exactly
/// one number per token, in the same order, so the n-th number reported is the n-th token.
struct Tokens<'t> {
    list: Vec<&'t str>,
    next: Cell<usize>,
}

impl<'t> Tokens<'t> {
    fn take(&self) -> Option<&'t str> {
        let i = self.next.get();
        self.next.set(i + 1);
        self.list.get(i).copied()
    }
}

/// The number tokens of `text` (outside strings), in order. For valid JSON this is exactly the
/// list of its numbers: the literals `true`, `false`, `null` hold no digit and no `-`.
fn number_tokens(text: &str) -> NumberTokens<'_> {
    NumberTokens { text, at: 0 }
}

/// Iterator of [`number_tokens`]: one scan of the bytes, no allocation.
struct NumberTokens<'t> {
    text: &'t str,
    at: usize,
}

impl<'t> Iterator for NumberTokens<'t> {
    type Item = &'t str;

    fn next(&mut self) -> Option<&'t str> {
        let b = self.text.as_bytes();
        let mut i = self.at;
        while i < b.len() {
            match b[i] {
                b'"' => {
                    i += 1;
                    // Strings are most of a config's bytes: jump to the next quote or backslash.
                    loop {
                        match b
                            .get(i..)
                            .and_then(|rest| memchr::memchr2(b'"', b'\\', rest))
                        {
                            Some(p) if b[i + p] == b'"' => {
                                i += p + 1;
                                break;
                            }
                            Some(p) => i += p + 2,
                            None => {
                                i = b.len();
                                break;
                            }
                        }
                    }
                }
                b'-' | b'0'..=b'9' => {
                    let start = i;
                    while i < b.len()
                        && matches!(b[i], b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E')
                    {
                        i += 1;
                    }
                    self.at = i;
                    // Both ends sit on ASCII bytes (or the end), so they are char boundaries.
                    return self.text.get(start..i);
                }
                _ => i += 1,
            }
        }
        self.at = b.len();
        None
    }
}

/// Whether `serde_json` without `float_roundtrip` reads `token` exactly as `JSON.parse` does:
/// an integer that fits 64 bits, or a decimal whose digits fit 15 places (so the significand is
/// below 2^53) scaled by at most 10^22 (one correctly rounded multiplication or division).
fn read_exactly_by_serde(token: &str) -> bool {
    let t = token.strip_prefix('-').unwrap_or(token);
    let (mantissa, exp) = match t.find(['e', 'E']) {
        Some(p) => (&t[..p], Some(&t[p + 1..])),
        None => (t, None),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if exp.is_none() && frac.is_empty() {
        // serde_json keeps integers up to u64::MAX (i64::MIN when negative) exact.
        return int.len() <= 18;
    }
    if int.len() + frac.len() > 15 {
        return false;
    }
    let exp: i64 = match exp.map(|e| e.strip_prefix('+').unwrap_or(e).parse::<i64>()) {
        None => 0,
        Some(Ok(e)) if e.abs() < 1000 => e,
        Some(_) => return false,
    };
    let frac_len = i64::try_from(frac.len()).unwrap_or(i64::MAX);
    (exp - frac_len).abs() <= 22
}

/// Builds a [`Value`] from `serde_json`'s events, reading doubles again from their text.
#[derive(Clone, Copy)]
struct ValueSeed<'a, 't>(&'a Tokens<'t>);

/// The key `serde_json`'s `arbitrary_precision` feature uses to hand a number over as a map.
const ARBITRARY_PRECISION_KEY: &str = "$serde_json::private::Number";

impl<'de> DeserializeSeed<'de> for ValueSeed<'_, '_> {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> de::Visitor<'de> for ValueSeed<'_, '_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        self.0.take();
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        self.0.take();
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        let exact = self
            .0
            .take()
            .and_then(|t| t.parse::<f64>().ok())
            .filter(|f| f.is_finite());
        Ok(Number::from_f64(exact.unwrap_or(v)).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        self.deserialize(d)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(v) = seq.next_element_seed(self)? {
            items.push(v);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.is_empty() && key == ARBITRARY_PRECISION_KEY {
                // Only with `arbitrary_precision` (enabled by someone else): the number arrives as
                // its exact text, which `Number` keeps and converts correctly rounded.
                let text: String = map.next_value()?;
                self.0.take();
                return serde_json::from_str::<Number>(&text)
                    .map(Value::Number)
                    .map_err(de::Error::custom);
            }
            // A repeated key keeps its last value, as with `serde_json::Value`.
            let v = map.next_value_seed(self)?;
            out.insert(key, v);
        }
        Ok(Value::Object(out))
    }
}

/// Parses JSON text into a [`Value`] whose numbers are the doubles `JSON.parse` yields (correctly
/// rounded), with or without `serde_json`'s `float_roundtrip` feature. Syntax errors are
/// `serde_json`'s own.
pub fn parse_value(text: &str) -> Result<Value, serde_json::Error> {
    let tokens = Tokens {
        list: number_tokens(text).collect(),
        next: Cell::new(0),
    };
    let mut de = serde_json::Deserializer::from_str(text);
    let v = ValueSeed(&tokens).deserialize(&mut de)?;
    de.end()?;
    Ok(v)
}

/// Deserializes `T` from JSON text with numbers read as [`parse_value`] reads them. Text whose
/// numbers `serde_json` reads exactly anyway (the usual case: no long decimals) is deserialized
/// directly, without an intermediate tree.
pub fn from_str<T: DeserializeOwned>(text: &str) -> Result<T, serde_json::Error> {
    if number_tokens(text).all(read_exactly_by_serde) {
        serde_json::from_str(text)
    } else {
        serde_json::from_value(parse_value(text)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decimals that `serde_json` 1.0.154 without `float_roundtrip` reads as a neighbouring
    /// double (found by experiment; it yields `…568`, `…253e-119`, `…631e-10`, `…157e308`).
    /// `JSON.parse` and Rust's `str::parse` are correctly rounded and agree.
    const MISROUNDED: [&str; 4] = [
        "123.45678901234567",
        "2.729254981960025e-119",
        "1.1203778759533633e-10",
        "1.7976931348623155e308",
    ];

    #[test]
    fn numbers_are_correctly_rounded() {
        for text in MISROUNDED {
            assert!(!read_exactly_by_serde(text), "{text}");
            let want: f64 = text.parse().unwrap_or(f64::NAN);
            let doc = format!(r#"{{"a":[{text}],"b":{{"c":-{text}}}}}"#);
            let v = parse_value(&doc).unwrap_or_default();
            assert_eq!(
                v["a"][0].as_f64().map(f64::to_bits),
                Some(want.to_bits()),
                "{text}"
            );
            assert_eq!(
                v["b"]["c"].as_f64().map(f64::to_bits),
                Some((-want).to_bits()),
                "-{text}"
            );
            let direct: Value = from_str(&doc).unwrap_or_default();
            assert_eq!(direct, v);
        }
    }

    #[test]
    fn integers_strings_and_structure_are_serde_jsons() {
        let doc = r#"{"s":"-1.5e3 \" 7","i":-9223372036854775808,"u":18446744073709551615,
            "big":123456789012345678901234,"z":-0,"e":1E+2,"n":null,"t":[true,false,{}]}"#;
        let mut ours = parse_value(doc).unwrap_or_default();
        let mut theirs: Value = serde_json::from_str(doc).unwrap_or_default();
        // An integer beyond 64 bits is a double: correctly rounded here (serde_json without
        // `float_roundtrip` is one ULP off for this one).
        let big = "123456789012345678901234".parse::<f64>().ok();
        assert_eq!(ours["big"].as_f64(), big);
        for v in [&mut ours, &mut theirs] {
            v["big"] = Value::Null;
        }
        assert_eq!(ours, theirs);
        assert_eq!(ours["s"], "-1.5e3 \" 7");
        assert_eq!(ours["i"].as_i64(), Some(i64::MIN));
        assert_eq!(ours["u"].as_u64(), Some(u64::MAX));
        assert_eq!(ours["e"].as_f64(), Some(100.0));
    }

    #[test]
    fn errors_are_serde_jsons() {
        for bad in ["", "{", "[1,]", "1 2", "\"\\ud800\"", "{\"a\":1e999}"] {
            let ours = parse_value(bad).err().map(|e| e.to_string());
            let theirs = serde_json::from_str::<Value>(bad)
                .err()
                .map(|e| e.to_string());
            assert!(ours.is_some(), "{bad}");
            assert_eq!(ours, theirs, "{bad}");
        }
    }

    #[test]
    fn number_tokens_skip_strings_and_literals() {
        let doc = r#"{"a-1":[-1.5e+3,true,"x\"9\\",0],"7":null,"k":"\u0031"} 12"#;
        let tokens: Vec<&str> = number_tokens(doc).collect();
        assert_eq!(tokens, ["-1.5e+3", "0", "12"]);
    }

    #[test]
    fn which_tokens_serde_reads_exactly() {
        for t in [
            "0",
            "-12",
            "123456789012345678",
            "1.5",
            "0.1",
            "1e22",
            "123456789012345e-7",
        ] {
            assert!(read_exactly_by_serde(t), "{t}");
        }
        for t in [
            "1234567890123456789",
            "0.30000000000000004",
            "1e23",
            "1.5e-30",
            "1e99999999999999999999",
        ] {
            assert!(!read_exactly_by_serde(t), "{t}");
        }
    }
}
