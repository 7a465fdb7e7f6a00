//! JavaScript value semantics the reference SDK leaks into decisions and payloads (SPEC §0).
//!
//! Config values are JSON; the reference evaluates them with JavaScript's coercions. This module
//! reproduces the ones that matter: `String(x)` (with ECMAScript number formatting), `Number(x)`,
//! `isNaN`, truthiness, `parseInt`/`parseFloat`, and `JSON.stringify` with JavaScript's property
//! order and number formatting.

use crate::keyorder::js_key_order;
use serde_json::{Number, Value};
use std::borrow::Cow;

/// ECMAScript `Number::toString` of `n` (`100.0` → `"100"`, `1e21` → `"1e+21"`, NaN → `"NaN"`).
pub fn number_to_string(n: f64) -> String {
    let mut s = String::new();
    write_number(&mut s, n);
    s
}

/// Appends the ECMAScript `Number::toString` form of `n` to `out`.
pub fn write_number(out: &mut String, n: f64) {
    if n.is_nan() {
        out.push_str("NaN");
    } else if n.is_infinite() {
        out.push_str(if n > 0.0 { "Infinity" } else { "-Infinity" });
    } else if n == 0.0 {
        out.push('0'); // -0 prints as "0"
    } else {
        let mut buf = ryu_js::Buffer::new();
        out.push_str(buf.format_finite(n));
    }
}

fn number_f64(n: &Number) -> f64 {
    // JS holds every number as a double; large integers lose precision exactly as they would there.
    n.as_f64().unwrap_or(f64::NAN)
}

/// JS `String(v)` of a JSON value.
pub fn to_js_string(v: &Value) -> Cow<'_, str> {
    match v {
        Value::String(s) => Cow::Borrowed(s),
        Value::Null => Cow::Borrowed("null"),
        Value::Bool(true) => Cow::Borrowed("true"),
        Value::Bool(false) => Cow::Borrowed("false"),
        Value::Number(n) => Cow::Owned(number_to_string(number_f64(n))),
        Value::Object(_) => Cow::Borrowed("[object Object]"),
        Value::Array(items) => {
            // Array.prototype.join(","): null and undefined elements become "".
            let mut s = String::new();
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    s.push(',');
                }
                if !item.is_null() {
                    s.push_str(&to_js_string(item));
                }
            }
            Cow::Owned(s)
        }
    }
}

/// JS `String(v)` where `None` is `undefined`.
pub fn opt_to_js_string(v: Option<&Value>) -> Cow<'_, str> {
    v.map_or(Cow::Borrowed("undefined"), to_js_string)
}

/// JS truthiness of a JSON value.
pub fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => {
            let f = number_f64(n);
            f != 0.0 && !f.is_nan()
        }
        Value::String(s) => !s.is_empty(),
        Value::Array(_) | Value::Object(_) => true,
    }
}

/// JS truthiness where `None` is `undefined` (falsy).
pub fn opt_truthy(v: Option<&Value>) -> bool {
    v.is_some_and(truthy)
}

/// Whether `c` is JS whitespace or a line terminator (what `String.prototype.trim` removes).
pub fn is_js_whitespace(c: char) -> bool {
    matches!(
        c,
        '\u{0009}'
            | '\u{000A}'
            | '\u{000B}'
            | '\u{000C}'
            | '\u{000D}'
            | '\u{0020}'
            | '\u{00A0}'
            | '\u{1680}'
            | '\u{2000}'
            ..='\u{200A}'
                | '\u{2028}'
                | '\u{2029}'
                | '\u{202F}'
                | '\u{205F}'
                | '\u{3000}'
                | '\u{FEFF}'
    )
}

/// JS `s.trim()`.
pub fn js_trim(s: &str) -> &str {
    s.trim_matches(is_js_whitespace)
}

/// ECMAScript `StringToNumber`: the whole (trimmed) string must be a numeric literal.
pub fn string_to_number(s: &str) -> f64 {
    let t = js_trim(s);
    if t.is_empty() {
        return 0.0;
    }
    for (prefix, radix) in [
        ("0x", 16),
        ("0X", 16),
        ("0o", 8),
        ("0O", 8),
        ("0b", 2),
        ("0B", 2),
    ] {
        if let Some(digits) = t.strip_prefix(prefix) {
            return radix_digits(digits, radix).unwrap_or(f64::NAN);
        }
    }
    let (sign, body) = match t.as_bytes()[0] {
        b'+' => (1.0, &t[1..]),
        b'-' => (-1.0, &t[1..]),
        _ => (1.0, t),
    };
    if body == "Infinity" {
        return sign * f64::INFINITY;
    }
    match decimal_prefix_len(body) {
        Some(len) if len == body.len() => sign * body.parse::<f64>().unwrap_or(f64::NAN),
        _ => f64::NAN,
    }
}

fn radix_digits(digits: &str, radix: u32) -> Option<f64> {
    if digits.is_empty() {
        return None;
    }
    let mut v = 0.0f64;
    for c in digits.chars() {
        v = v * f64::from(radix) + f64::from(c.to_digit(radix)?);
    }
    Some(v)
}

/// Length of the longest prefix of `s` that is a `StrUnsignedDecimalLiteral` without "Infinity":
/// digits, optional fraction, optional exponent (`"5."` and `".5"` count; `"."` does not).
fn decimal_prefix_len(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    let mut i = 0;
    let int_start = i;
    while i < b.len() && b[i].is_ascii_digit() {
        i += 1;
    }
    let int_digits = i - int_start;
    let mut frac_digits = 0;
    if i < b.len() && b[i] == b'.' {
        let mut j = i + 1;
        while j < b.len() && b[j].is_ascii_digit() {
            j += 1;
        }
        frac_digits = j - i - 1;
        if int_digits > 0 || frac_digits > 0 {
            i = j;
        }
    }
    if int_digits == 0 && frac_digits == 0 {
        return None;
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        let mut j = i + 1;
        if j < b.len() && (b[j] == b'+' || b[j] == b'-') {
            j += 1;
        }
        let exp_start = j;
        while j < b.len() && b[j].is_ascii_digit() {
            j += 1;
        }
        if j > exp_start {
            i = j;
        }
    }
    Some(i)
}

/// JS `Number(v)` where `None` is `undefined` (→ NaN).
pub fn to_number(v: Option<&Value>) -> f64 {
    match v {
        None => f64::NAN,
        Some(Value::Null) => 0.0,
        Some(Value::Bool(b)) => f64::from(u8::from(*b)),
        Some(Value::Number(n)) => number_f64(n),
        Some(Value::String(s)) => string_to_number(s),
        Some(a @ Value::Array(_)) => string_to_number(&to_js_string(a)),
        Some(Value::Object(_)) => f64::NAN,
    }
}

/// JS global `isNaN(v)` (coercing) where `None` is `undefined`.
pub fn is_nan(v: Option<&Value>) -> bool {
    to_number(v).is_nan()
}

/// JS `parseInt(s)` without a radix: leading whitespace, optional sign, `0x` for hex, the longest
/// run of digits; NaN when there is none.
pub fn parse_int(s: &str) -> f64 {
    let t = s.trim_start_matches(is_js_whitespace);
    let (sign, body) = match t.as_bytes().first() {
        Some(b'+') => (1.0, &t[1..]),
        Some(b'-') => (-1.0, &t[1..]),
        _ => (1.0, t),
    };
    let (digits, radix) = match body.get(..2) {
        Some("0x" | "0X") => (&body[2..], 16),
        _ => (body, 10),
    };
    let end = digits
        .char_indices()
        .find(|(_, c)| !c.is_digit(radix))
        .map_or(digits.len(), |(i, _)| i);
    if end == 0 {
        return f64::NAN;
    }
    let digits = &digits[..end];
    let v = if radix == 10 {
        digits.parse::<f64>().unwrap_or(f64::NAN)
    } else {
        radix_digits(digits, radix).unwrap_or(f64::NAN)
    };
    sign * v
}

/// JS `parseFloat(s)`: leading whitespace, then the longest decimal-literal prefix (or
/// `Infinity`); NaN when there is none.
pub fn parse_float(s: &str) -> f64 {
    let t = s.trim_start_matches(is_js_whitespace);
    let (sign, body) = match t.as_bytes().first() {
        Some(b'+') => (1.0, &t[1..]),
        Some(b'-') => (-1.0, &t[1..]),
        _ => (1.0, t),
    };
    if body.starts_with("Infinity") {
        return sign * f64::INFINITY;
    }
    match decimal_prefix_len(body) {
        Some(len) => sign * body[..len].parse::<f64>().unwrap_or(f64::NAN),
        None => f64::NAN,
    }
}

/// `JSON.stringify(v)` with JS key order and JS number formatting.
pub fn json_stringify(v: &Value) -> String {
    let mut s = String::new();
    write_json(&mut s, v);
    s
}

fn write_json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0C}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Appends `JSON.stringify(v)` to `out`.
pub fn write_json(out: &mut String, v: &Value) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => {
            let f = number_f64(n);
            if f.is_finite() {
                write_number(out, f);
            } else {
                out.push_str("null");
            }
        }
        Value::String(s) => write_json_string(out, s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json(out, item);
            }
            out.push(']');
        }
        Value::Object(m) => {
            out.push('{');
            let keys: Vec<&str> = m.keys().map(String::as_str).collect();
            for (n, i) in js_key_order(&keys).into_iter().enumerate() {
                if n > 0 {
                    out.push(',');
                }
                write_json_string(out, keys[i]);
                out.push(':');
                if let Some(val) = m.get(keys[i]) {
                    write_json(out, val);
                }
            }
            out.push('}');
        }
    }
}

/// A JSON number for a JS double: integral values within ±2^53 become integers, NaN and
/// infinities become `null`.
pub fn number_value(n: f64) -> Value {
    if n.is_finite() && n.fract() == 0.0 && n.abs() <= 9_007_199_254_740_992.0 {
        // Exact: |n| ≤ 2^53 and integral.
        return Value::Number(Number::from(n as i64));
    }
    Number::from_f64(n).map_or(Value::Null, Value::Number)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn number_formatting() {
        for (n, s) in [
            (100.0, "100"),
            (-0.0, "0"),
            (0.1 + 0.2, "0.30000000000000004"),
            (1e21, "1e+21"),
            (1e-7, "1e-7"),
            (123456789.0, "123456789"),
            (2.5, "2.5"),
            (f64::NAN, "NaN"),
            (f64::NEG_INFINITY, "-Infinity"),
        ] {
            assert_eq!(number_to_string(n), s, "{n}");
        }
    }

    #[test]
    fn string_of_values() {
        assert_eq!(to_js_string(&json!(null)), "null");
        assert_eq!(to_js_string(&json!(30.0)), "30");
        assert_eq!(to_js_string(&json!([1, null, "a", [2, 3]])), "1,,a,2,3");
        assert_eq!(to_js_string(&json!({"a": 1})), "[object Object]");
        assert_eq!(opt_to_js_string(None), "undefined");
    }

    #[test]
    fn numbers_of_values() {
        assert_eq!(to_number(Some(&json!("12"))), 12.0);
        assert_eq!(to_number(Some(&json!(""))), 0.0);
        assert_eq!(to_number(Some(&json!(" 12 "))), 12.0);
        assert_eq!(to_number(Some(&json!(null))), 0.0);
        assert!(to_number(None).is_nan());
        assert_eq!(to_number(Some(&json!("0x10"))), 16.0);
        assert!(to_number(Some(&json!("-0x10"))).is_nan());
        assert_eq!(to_number(Some(&json!("5."))), 5.0);
        assert_eq!(to_number(Some(&json!(".5"))), 0.5);
        assert!(to_number(Some(&json!("."))).is_nan());
        assert!(to_number(Some(&json!("abc"))).is_nan());
        assert_eq!(to_number(Some(&json!("-Infinity"))), f64::NEG_INFINITY);
        assert_eq!(to_number(Some(&json!("1e3"))), 1000.0);
        assert_eq!(to_number(Some(&json!([5]))), 5.0);
        assert_eq!(to_number(Some(&json!([]))), 0.0);
        assert!(to_number(Some(&json!({}))).is_nan());
        assert_eq!(to_number(Some(&json!(true))), 1.0);
        assert!(is_nan(None));
        assert!(!is_nan(Some(&json!(null))));
        assert!(!is_nan(Some(&json!("50"))));
        assert!(is_nan(Some(&json!("abc"))));
    }

    #[test]
    fn parse_int_and_float() {
        assert_eq!(parse_int("42.9"), 42.0);
        assert_eq!(parse_int("0x10"), 16.0);
        assert_eq!(parse_int("1e3"), 1.0);
        assert_eq!(parse_int(" 12 "), 12.0);
        assert_eq!(parse_int("-7px"), -7.0);
        assert!(parse_int("abc").is_nan());
        assert!(parse_int("").is_nan());
        assert_eq!(parse_int("1e+21"), 1.0);
        assert_eq!(parse_float("3.9abc"), 3.9);
        assert_eq!(parse_float("  -.5e1x"), -5.0);
        assert_eq!(parse_float("Infinity"), f64::INFINITY);
        assert!(parse_float("abc").is_nan());
        assert_eq!(parse_float("5e"), 5.0);
    }

    #[test]
    fn truthiness() {
        for v in [json!(0), json!(-0.0), json!(""), json!(null), json!(false)] {
            assert!(!truthy(&v), "{v}");
        }
        for v in [json!({}), json!([]), json!("0"), json!(1), json!("false")] {
            assert!(truthy(&v), "{v}");
        }
    }

    #[test]
    fn stringify_uses_js_key_order_and_numbers() {
        let v: Value = serde_json::from_str(
            r#"{"b":1.0,"300":"x","20":[1.5,2.0,1e21],"a":{"2":true,"1":null},"s":"q\"\n\u0001é"}"#,
        )
        .unwrap_or(Value::Null);
        assert_eq!(
            json_stringify(&v),
            r#"{"20":[1.5,2,1e+21],"300":"x","b":1,"a":{"1":null,"2":true},"s":"q\"\n\u0001é"}"#
        );
    }

    #[test]
    fn number_values() {
        assert_eq!(number_value(40.0), json!(40));
        assert_eq!(number_value(f64::NAN), json!(null));
        assert_eq!(number_value(3.9), json!(3.9));
    }
}
