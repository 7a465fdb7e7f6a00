//! JavaScript value semantics the reference SDK leaks into decisions and payloads (SPEC §0).
//!
//! CONTRACT STUB: owned by the "js + rules" work item; signatures are fixed, bodies are placeholders.

use serde_json::Value;
use std::borrow::Cow;

/// ECMAScript `Number::toString` of `n` (`100.0` → `"100"`, `1e21` → `"1e+21"`, NaN → `"NaN"`).
pub fn number_to_string(n: f64) -> String {
    n.to_string()
}

/// Appends the ECMAScript `Number::toString` form of `n` to `out`.
pub fn write_number(out: &mut String, n: f64) {
    out.push_str(&number_to_string(n));
}

/// JS `String(v)` of a JSON value.
pub fn to_js_string(v: &Value) -> Cow<'_, str> {
    match v {
        Value::String(s) => Cow::Borrowed(s),
        other => Cow::Owned(other.to_string()),
    }
}

/// JS `String(v)` where `None` is `undefined`.
pub fn opt_to_js_string(v: Option<&Value>) -> Cow<'_, str> {
    v.map_or(Cow::Borrowed("undefined"), to_js_string)
}

/// JS truthiness of a JSON value.
pub fn truthy(v: &Value) -> bool {
    !matches!(v, Value::Null | Value::Bool(false))
}

/// JS truthiness where `None` is `undefined` (falsy).
pub fn opt_truthy(v: Option<&Value>) -> bool {
    v.is_some_and(truthy)
}

/// JS `Number(v)` where `None` is `undefined` (→ NaN).
pub fn to_number(v: Option<&Value>) -> f64 {
    v.and_then(Value::as_f64).unwrap_or(f64::NAN)
}

/// JS global `isNaN(v)` (coercing) where `None` is `undefined`.
pub fn is_nan(v: Option<&Value>) -> bool {
    to_number(v).is_nan()
}

/// JS `parseInt(s)` without a radix: NaN when no digits.
pub fn parse_int(s: &str) -> f64 {
    s.trim().parse::<f64>().unwrap_or(f64::NAN)
}

/// JS `parseFloat(s)`: NaN when no number prefix.
pub fn parse_float(s: &str) -> f64 {
    s.trim().parse::<f64>().unwrap_or(f64::NAN)
}

/// `JSON.stringify(v)` with JS key order and JS number formatting.
pub fn json_stringify(v: &Value) -> String {
    let mut s = String::new();
    write_json(&mut s, v);
    s
}

/// Appends `JSON.stringify(v)` to `out`.
pub fn write_json(out: &mut String, v: &Value) {
    out.push_str(&v.to_string());
}

/// A JSON number for a JS double: integral values become integers, NaN and infinities become `null`.
pub fn number_value(n: f64) -> Value {
    serde_json::Number::from_f64(n).map_or(Value::Null, Value::Number)
}
