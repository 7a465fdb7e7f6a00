//! JavaScript value semantics the reference SDK leaks into decisions and payloads (SPEC §0).
//!
//! Config values are JSON, but the reference SDK evaluates them with JavaScript's coercions. This
//! module reproduces the ones that matter, for [`serde_json::Value`]s (`None` stands for
//! `undefined` wherever an `Option<&Value>` is taken):
//!
//! * `String(x)` — [`to_js_string`], [`js_str`] (no heap allocation for numbers), with ECMAScript
//!   `Number::toString` formatting ([`number_to_string`]);
//! * `Number(x)` — [`to_number`], [`string_to_number`]; the coercing global `isNaN` — [`is_nan`];
//! * truthiness — [`truthy`]; strict equality `===` — [`strict_equals`];
//! * `parseInt(s)` / `parseFloat(s)` — [`parse_int`], [`parse_float`];
//! * `String.prototype.trim` / `toLowerCase` — [`js_trim`], [`js_lowercase`];
//! * `JSON.stringify` with JavaScript's property order and number formatting — [`json_stringify`];
//! * `JSON.parse`'s acceptance of lone surrogate escapes — [`json_parse`].
//!
//! JSON numbers may be held by `serde_json` as `i64`, `u64` or `f64`; JavaScript has only
//! doubles, so every number is first converted to `f64` (rounding to nearest, exactly as a JS
//! engine parsing the same JSON would).

use crate::keyorder::{array_index, js_key_order};
use serde_json::{Number, Value};
use std::borrow::Cow;
use std::fmt;
use std::ops::Deref;

/// ECMAScript `Number::toString` of `n` (`100.0` → `"100"`, `1e21` → `"1e+21"`, NaN → `"NaN"`).
pub fn number_to_string(n: f64) -> String {
    NumberStr::new(n).as_str().to_string()
}

/// Appends the ECMAScript `Number::toString` form of `n` to `out`.
pub fn write_number(out: &mut String, n: f64) {
    out.push_str(NumberStr::new(n).as_str());
}

/// The ECMAScript `Number::toString` form of a double, held inline (no heap allocation).
///
/// The longest form ECMAScript produces is 25 bytes (`"-0.0000012345678901234567"`), so the
/// text always fits the inline buffer.
#[derive(Clone, Copy)]
pub struct NumberStr {
    buf: [u8; 32],
    len: u8,
    fixed: Option<&'static str>,
}

impl NumberStr {
    /// Formats `n` as JavaScript's `String(n)` would.
    pub fn new(n: f64) -> NumberStr {
        let fixed = if n.is_nan() {
            Some("NaN")
        } else if n == f64::INFINITY {
            Some("Infinity")
        } else if n == f64::NEG_INFINITY {
            Some("-Infinity")
        } else if n == 0.0 {
            Some("0") // -0 prints as "0" too
        } else {
            None
        };
        let mut out = NumberStr {
            buf: [0; 32],
            len: 0,
            fixed,
        };
        if fixed.is_none() {
            let mut b = ryu_js::Buffer::new();
            let s = b.format_finite(n).as_bytes();
            let len = s.len().min(out.buf.len());
            out.buf[..len].copy_from_slice(&s[..len]);
            out.len = u8::try_from(len).unwrap_or(0);
        }
        out
    }

    /// The formatted text.
    pub fn as_str(&self) -> &str {
        match self.fixed {
            Some(s) => s,
            None => std::str::from_utf8(&self.buf[..usize::from(self.len)]).unwrap_or("NaN"),
        }
    }
}

impl Deref for NumberStr {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Debug for NumberStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for NumberStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// JS `String(v)` as a string that borrows when it can and never heap-allocates for scalars.
///
/// Dereferences to `&str`. Only arrays (joined with `,`) produce an owned string.
#[derive(Debug, Clone)]
pub enum JsStr<'a> {
    /// Borrowed from the value, or a static string (`"null"`, `"true"`, `"[object Object]"`...).
    Borrowed(&'a str),
    /// A number, formatted inline.
    Number(NumberStr),
    /// A joined array.
    Owned(String),
}

impl Deref for JsStr<'_> {
    type Target = str;
    fn deref(&self) -> &str {
        match self {
            JsStr::Borrowed(s) => s,
            JsStr::Number(n) => n.as_str(),
            JsStr::Owned(s) => s,
        }
    }
}

impl<'a> JsStr<'a> {
    /// Converts into a `Cow` (a number becomes an owned string).
    pub fn into_cow(self) -> Cow<'a, str> {
        match self {
            JsStr::Borrowed(s) => Cow::Borrowed(s),
            JsStr::Number(n) => Cow::Owned(n.as_str().to_string()),
            JsStr::Owned(s) => Cow::Owned(s),
        }
    }
}

/// The JS double held by a JSON number (`i64`/`u64` rounded to the nearest double, as JS would).
pub fn number_f64(n: &Number) -> f64 {
    n.as_f64().unwrap_or(f64::NAN)
}

/// JS `String(v)` of a JSON value without heap allocation for scalars (see [`JsStr`]).
pub fn js_str(v: &Value) -> JsStr<'_> {
    match v {
        Value::String(s) => JsStr::Borrowed(s),
        Value::Null => JsStr::Borrowed("null"),
        Value::Bool(true) => JsStr::Borrowed("true"),
        Value::Bool(false) => JsStr::Borrowed("false"),
        Value::Number(n) => JsStr::Number(NumberStr::new(number_f64(n))),
        Value::Object(_) => JsStr::Borrowed("[object Object]"),
        Value::Array(items) => match items.as_slice() {
            [] => JsStr::Borrowed(""),
            [Value::Null] => JsStr::Borrowed(""),
            [Value::String(s)] => JsStr::Borrowed(s),
            _ => {
                let mut s = String::new();
                write_js_string(&mut s, v);
                JsStr::Owned(s)
            }
        },
    }
}

/// JS `String(v)` where `None` is `undefined` (see [`js_str`]).
pub fn opt_js_str(v: Option<&Value>) -> JsStr<'_> {
    v.map_or(JsStr::Borrowed("undefined"), js_str)
}

/// JS `String(v)` of a JSON value.
///
/// `null` → `"null"`, booleans → `"true"`/`"false"`, numbers in ECMAScript format, objects →
/// `"[object Object]"`, arrays → elements joined with `,` (a `null` element becomes `""`, nested
/// arrays are joined recursively).
pub fn to_js_string(v: &Value) -> Cow<'_, str> {
    js_str(v).into_cow()
}

/// Appends JS `String(v)` to `out`.
pub fn write_js_string(out: &mut String, v: &Value) {
    match v {
        Value::Array(items) => {
            // Array.prototype.join(","): null (and undefined) elements become "".
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                if !item.is_null() {
                    write_js_string(out, item);
                }
            }
        }
        other => out.push_str(&js_str(other)),
    }
}

/// JS `String(v)` where `None` is `undefined` (→ `"undefined"`).
pub fn opt_to_js_string(v: Option<&Value>) -> Cow<'_, str> {
    opt_js_str(v).into_cow()
}

/// JS truthiness of a JSON value: `null`, `false`, `0`, `-0`, NaN and `""` are falsy; every
/// object and array (even empty) is truthy.
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

/// JS strict equality `a === b` of two JSON values: numbers compare as doubles (whatever their
/// JSON representation), strings and booleans by value, `null === null`; arrays and objects are
/// never equal (distinct JS objects compare by identity), nor are values of different types.
pub fn strict_equals(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => number_f64(x) == number_f64(y),
        (Value::String(x), Value::String(y)) => x == y,
        (Value::Bool(x), Value::Bool(y)) => x == y,
        (Value::Null, Value::Null) => true,
        _ => false,
    }
}

/// Whether `c` is JS whitespace or a line terminator (what `String.prototype.trim` and the `\s`
/// regex class match): TAB, VT, FF, SP, NBSP, ZWNBSP (U+FEFF), the Unicode `Zs` category, LF, CR,
/// LS (U+2028) and PS (U+2029).
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

/// JS `s.toLowerCase()` (Unicode default lower-casing via Rust's `str::to_lowercase`), borrowing
/// when the string is already lower-case.
pub fn js_lowercase(s: &str) -> Cow<'_, str> {
    if is_ascii_lower(s) {
        Cow::Borrowed(s)
    } else if s.is_ascii() {
        // ASCII but not lower-case: an upper-case letter is there.
        Cow::Owned(s.to_ascii_lowercase())
    } else if s.chars().all(|c| {
        // Unchanged when every character maps to itself (the final-sigma rule only rewrites
        // capital sigma, which does not map to itself).
        let mut l = c.to_lowercase();
        l.next() == Some(c) && l.next().is_none()
    }) {
        Cow::Borrowed(s)
    } else {
        Cow::Owned(s.to_lowercase())
    }
}

/// Whether `s` is all ASCII without an upper-case letter (`A`–`Z`): then it is its own
/// [`js_lowercase`] and its own UTF-16 unit form. One pass, eight bytes at a time.
pub(crate) fn is_ascii_lower(s: &str) -> bool {
    const HIGH: u64 = 0x8080_8080_8080_8080;
    /// Per byte: the high bit is set when the byte is non-ASCII or an upper-case ASCII letter.
    /// (Within a word of ASCII bytes the additions carry into no other byte; a word with a
    /// non-ASCII byte is flagged by `w` itself, whatever the carries did.)
    fn flagged(w: u64) -> u64 {
        let ge_a = w.wrapping_add(0x3F3F_3F3F_3F3F_3F3F); // byte ≥ b'A' (0x41)
        let gt_z = w.wrapping_add(0x2525_2525_2525_2525); // byte > b'Z' (0x5A)
        (w | (ge_a & !gt_z)) & HIGH
    }
    let word = |chunk: &[u8]| {
        let mut word = [0u8; 8];
        word[..chunk.len()].copy_from_slice(chunk);
        u64::from_le_bytes(word)
    };
    let bytes = s.as_bytes();
    let Some(last) = bytes.len().checked_sub(8) else {
        // Shorter than a word: padded with zero bytes (neither non-ASCII nor upper-case).
        return flagged(word(bytes)) == 0;
    };
    let mut chunks = bytes.chunks_exact(8);
    // The tail is covered by the last eight bytes, read as one (overlapping) word.
    chunks.all(|chunk| flagged(word(chunk)) == 0)
        && bytes.get(last..).is_some_and(|end| flagged(word(end)) == 0)
}

/// ECMAScript `StringToNumber` (what `Number(s)` does with a string): the trimmed string must be
/// entirely a numeric literal — `""` → 0, decimal literals (`"12"`, `".5"`, `"5."`, `"1e3"`, with
/// an optional sign), `"Infinity"` (optionally signed), or an unsigned `0x`/`0o`/`0b` literal —
/// anything else is NaN.
pub fn string_to_number(s: &str) -> f64 {
    let t = js_trim(s);
    if t.is_empty() {
        return 0.0;
    }
    let b = t.as_bytes();
    if b.len() >= 2 && b[0] == b'0' {
        let radix = match b[1] {
            b'x' | b'X' => 16,
            b'o' | b'O' => 8,
            b'b' | b'B' => 2,
            _ => 0,
        };
        if radix != 0 {
            let digits = &t[2..];
            return if !digits.is_empty() && digits.chars().all(|c| c.is_digit(radix)) {
                radix_to_f64(digits, radix)
            } else {
                f64::NAN
            };
        }
    }
    let (sign, body) = split_sign(t);
    if body == "Infinity" {
        return sign * f64::INFINITY;
    }
    match decimal_prefix_len(body) {
        Some(len) if len == body.len() => sign * parse_decimal(body),
        _ => f64::NAN,
    }
}

fn split_sign(t: &str) -> (f64, &str) {
    if let Some(rest) = t.strip_prefix('+') {
        (1.0, rest)
    } else if let Some(rest) = t.strip_prefix('-') {
        (-1.0, rest)
    } else {
        (1.0, t)
    }
}

/// Parses a string already known to be a decimal literal (as accepted by [`decimal_prefix_len`]).
fn parse_decimal(s: &str) -> f64 {
    s.parse::<f64>().unwrap_or(f64::NAN)
}

/// The correctly rounded value of a run of digits in a power-of-two radix (2, 8 or 16), as JS
/// computes it. `digits` must consist of valid digits only.
fn radix_to_f64(digits: &str, radix: u32) -> f64 {
    let bits_per_digit = radix.trailing_zeros();
    // Accumulate the leading 64 significant bits exactly; remember whether any 1 bit follows.
    let mut mantissa: u64 = 0;
    let mut used_bits: u32 = 0; // significant bits held in `mantissa`
    let mut extra_bits: u64 = 0; // bits shifted out below `mantissa`
    let mut sticky = false;
    for c in digits.chars() {
        let d = u64::from(c.to_digit(radix).unwrap_or(0));
        if used_bits == 0 && d == 0 {
            continue; // leading zero
        }
        let d_bits = 64 - d.leading_zeros();
        let add = if used_bits == 0 {
            d_bits
        } else {
            bits_per_digit
        };
        if used_bits + add <= 64 {
            mantissa = (mantissa << add) | d;
            used_bits += add;
        } else {
            // Keep the top bits of `d` that still fit, fold the rest into the sticky bit.
            let fit = 64 - used_bits;
            let drop = add - fit;
            if fit > 0 {
                mantissa = (mantissa << fit) | (d >> drop);
                used_bits = 64;
            }
            sticky |= d & ((1u64 << drop) - 1) != 0;
            extra_bits += u64::from(drop);
        }
    }
    if used_bits == 0 {
        return 0.0;
    }
    // 64 bits hold more than the 53-bit significand plus guard bits, so folding the sticky bit
    // into the lowest bit keeps round-to-nearest-even correct.
    let m = mantissa | u64::from(sticky);
    let v = m as f64;
    if extra_bits == 0 {
        v
    } else {
        let e = i32::try_from(extra_bits).unwrap_or(i32::MAX);
        v * 2f64.powi(e)
    }
}

/// Length of the longest prefix of `s` that is a `StrUnsignedDecimalLiteral` without "Infinity":
/// digits, optional fraction, optional exponent (`"5."` and `".5"` count; `"."` does not).
fn decimal_prefix_len(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() && b[i].is_ascii_digit() {
        i += 1;
    }
    let int_digits = i;
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

/// JS `Number(v)` where `None` is `undefined` (→ NaN): `null` → 0, booleans → 0/1, strings via
/// [`string_to_number`], arrays via `Number(String(array))`, objects → NaN.
pub fn to_number(v: Option<&Value>) -> f64 {
    match v {
        None => f64::NAN,
        Some(Value::Null) => 0.0,
        Some(Value::Bool(b)) => f64::from(u8::from(*b)),
        Some(Value::Number(n)) => number_f64(n),
        Some(Value::String(s)) => string_to_number(s),
        Some(a @ Value::Array(_)) => string_to_number(&js_str(a)),
        Some(Value::Object(_)) => f64::NAN,
    }
}

/// JS global `isNaN(v)` (coercing) where `None` is `undefined`: `isNaN(undefined)` and
/// `isNaN("abc")` are true, `isNaN(null)` and `isNaN("50")` false.
pub fn is_nan(v: Option<&Value>) -> bool {
    to_number(v).is_nan()
}

/// JS `parseInt(s)` without a radix: skips leading JS whitespace, takes an optional sign, a
/// `0x`/`0X` prefix selects hexadecimal, then the longest run of digits; NaN when there is none.
/// Long digit runs give the nearest double (`"1e3"` → 1, `"42.9"` → 42, `"0x1F"` → 31).
pub fn parse_int(s: &str) -> f64 {
    let t = s.trim_start_matches(is_js_whitespace);
    let (sign, body) = split_sign(t);
    let (digits, radix) = match body.as_bytes() {
        [b'0', b'x' | b'X', ..] => (&body[2..], 16),
        _ => (body, 10),
    };
    let end = digits
        .bytes()
        .position(|c| !char::from(c).is_digit(radix))
        .unwrap_or(digits.len());
    if end == 0 {
        return f64::NAN;
    }
    let digits = &digits[..end];
    let v = if radix == 10 {
        parse_decimal(digits)
    } else {
        radix_to_f64(digits, radix)
    };
    sign * v
}

/// JS `parseFloat(s)`: skips leading JS whitespace, then the longest prefix that is a decimal
/// literal (optional sign, digits, fraction, exponent) or `Infinity`; NaN when there is none
/// (`"3.9abc"` → 3.9, `".5"` → 0.5, `"1e"` → 1, `"0x10"` → 0).
pub fn parse_float(s: &str) -> f64 {
    let t = s.trim_start_matches(is_js_whitespace);
    let (sign, body) = split_sign(t);
    if body.starts_with("Infinity") {
        return sign * f64::INFINITY;
    }
    match decimal_prefix_len(body) {
        Some(len) => sign * parse_decimal(&body[..len]),
        None => f64::NAN,
    }
}

/// `JSON.stringify(v)` with JS key order and JS number formatting (see [`write_json`]).
pub fn json_stringify(v: &Value) -> String {
    let mut s = String::new();
    write_json(&mut s, v);
    s
}

fn hex_digit(n: u32) -> char {
    char::from_digit(n & 0xF, 16).unwrap_or('0')
}

/// Appends `s` as a JSON string literal, escaped as `JSON.stringify` does.
pub fn write_json_string(out: &mut String, s: &str) {
    out.push('"');
    let mut start = 0;
    for (i, b) in s.bytes().enumerate() {
        let short = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0C => "\\f",
            0x00..=0x1F => "",
            _ => continue,
        };
        out.push_str(&s[start..i]);
        if short.is_empty() {
            out.push_str("\\u00");
            out.push(hex_digit(u32::from(b) >> 4));
            out.push(hex_digit(u32::from(b)));
        } else {
            out.push_str(short);
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

/// Appends `JSON.stringify(v)` to `out`.
///
/// Object members are listed in JS property order (array-index keys ascending, then insertion
/// order — see [`crate::keyorder`]); numbers use ECMAScript formatting (`1.0` → `1`,
/// `12345678901234567890` → `12345678901234567000`, `1e21` → `1e+21`; non-finite → `null`);
/// strings are escaped like `JSON.stringify` (short escapes, `\u00XX` for other control
/// characters, everything else verbatim).
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
        Value::Object(m) => write_json_object(out, m.iter().map(|(k, v)| (k.as_str(), v))),
    }
}

/// Appends a JSON object with `members` (given in insertion order) the way `JSON.stringify`
/// lists them: array-index keys ascending first, then the others in the given order (see
/// [`crate::keyorder`]). For a [`serde_json::Map`], "insertion order" is the map's own iteration
/// order: sorted by key unless the program enables `serde_json`'s `preserve_order` feature.
pub fn write_json_object<'a>(
    out: &mut String,
    members: impl Iterator<Item = (&'a str, &'a Value)> + Clone,
) {
    let member = |out: &mut String, n: usize, k: &str, val: &Value| {
        if n > 0 {
            out.push(',');
        }
        write_json_string(out, k);
        out.push(':');
        write_json(out, val);
    };
    out.push('{');
    if members.clone().any(|(k, _)| array_index(k).is_some()) {
        let entries: Vec<(&str, &Value)> = members.collect();
        let keys: Vec<&str> = entries.iter().map(|(k, _)| *k).collect();
        for (n, i) in js_key_order(&keys).into_iter().enumerate() {
            let (k, val) = entries[i];
            member(out, n, k, val);
        }
    } else {
        for (n, (k, val)) in members.enumerate() {
            member(out, n, k, val);
        }
    }
    out.push('}');
}

/// A JSON number for a JS double: integral values within ±2^53 become integers, NaN and
/// infinities become `null` (as `JSON.stringify` would write them), other values stay doubles.
pub fn number_value(n: f64) -> Value {
    if n.is_finite() && n.fract() == 0.0 && n.abs() <= 9_007_199_254_740_992.0 {
        // Exact: |n| ≤ 2^53 and integral.
        return Value::Number(Number::from(n as i64));
    }
    Number::from_f64(n).map_or(Value::Null, Value::Number)
}

/// Parses JSON text as `JSON.parse` accepts it: like [`serde_json::from_str`], except that a
/// lone UTF-16 surrogate escape (`"\ud800"`, a `\uDC00` without a high surrogate before it) is
/// accepted, and that numbers are always correctly rounded (see [`crate::json::parse_value`]:
/// `serde_json` without its `float_roundtrip` feature may be one ULP off). JavaScript keeps a lone
/// surrogate's code unit; a Rust string cannot hold one, so it becomes U+FFFD (see
/// [`replace_lone_surrogate_escapes`] for where that can change an outcome).
pub fn json_parse(text: &str) -> Result<Value, serde_json::Error> {
    crate::json::parse_value(&replace_lone_surrogate_escapes(text))
}

/// The position of the first backslash at or after byte `from` of `text`. The search starts at
/// the first char boundary from `from` on (the bytes skipped are UTF-8 continuation bytes, never a
/// backslash) so that it runs as `str::find`, a word-at-a-time search.
fn next_backslash(text: &str, from: usize) -> Option<usize> {
    let start = (from..=text.len()).find(|&p| text.is_char_boundary(p))?;
    text.get(start..)?.find('\\').map(|p| start + p)
}

/// `text` with every lone surrogate escape (`\uD800`–`\uDFFF` not part of a high + low pair)
/// replaced by `\uFFFD`; borrowed, after one scan, when there is none (the common case).
///
/// Where U+FFFD can differ from the lone code unit JavaScript keeps: `equals`/`contains`/
/// `startsWith`/`endsWith`/`isIn` against a value holding U+FFFD (true here, false in JS) or
/// against half of an astral character (JS can match it, the replacement cannot); `less` /
/// `lessEqual` against characters from U+E000 to U+FFFC (the lone unit sorts below them, U+FFFD
/// above); a `regexMatches` pattern holding the raw unit (not the `\\uD800` regex escape, which
/// is unaffected); and an id or key hashed for bucketing or sent in a payload.
pub fn replace_lone_surrogate_escapes(text: &str) -> Cow<'_, str> {
    let bytes = text.as_bytes();
    // `\uD` then 8-F: a surrogate escape (JSON allows either case for the hex digits).
    let surrogate_at = |i: usize| -> Option<bool> {
        let b = bytes.get(i..i + 6)?;
        if b[0] != b'\\' || b[1] != b'u' || !matches!(b[2], b'd' | b'D') {
            return None;
        }
        let third = b[3].to_ascii_lowercase();
        if !(b[4].is_ascii_hexdigit() && b[5].is_ascii_hexdigit()) {
            return None;
        }
        match third {
            b'8' | b'9' | b'a' | b'b' => Some(true),  // high
            b'c' | b'd' | b'e' | b'f' => Some(false), // low
            _ => None,
        }
    };
    let mut out: Option<String> = None;
    let mut copied = 0;
    let mut from = 0;
    // Scan bytes: after a backslash the escaped character may be multi-byte (invalid JSON, which
    // serde_json then rejects), so `from` need not be a char boundary.
    while let Some(i) = next_backslash(text, from) {
        let next = match surrogate_at(i) {
            // A pair: both escapes stay.
            Some(true) if surrogate_at(i + 6) == Some(false) => i + 12,
            Some(_) => {
                let o = out.get_or_insert_with(|| String::with_capacity(text.len()));
                o.push_str(&text[copied..i]);
                o.push_str("\\uFFFD");
                copied = i + 6;
                i + 6
            }
            // Any other escape: skip the backslash and the escaped character.
            None => i + 2,
        };
        from = next.min(text.len());
    }
    match out {
        None => Cow::Borrowed(text),
        Some(mut o) => {
            o.push_str(&text[copied..]);
            Cow::Owned(o)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Map, json};

    #[test]
    fn number_formatting() {
        for (n, s) in [
            (100.0, "100"),
            (-0.0, "0"),
            (0.1 + 0.2, "0.30000000000000004"),
            (1e21, "1e+21"),
            (1e20, "100000000000000000000"),
            (1e-7, "1e-7"),
            (1e-6, "0.000001"),
            (-1.5e-7, "-1.5e-7"),
            (123456789.0, "123456789"),
            (2.5, "2.5"),
            (f64::NAN, "NaN"),
            (f64::INFINITY, "Infinity"),
            (f64::NEG_INFINITY, "-Infinity"),
            (f64::MAX, "1.7976931348623157e+308"),
            (5e-324, "5e-324"),
            (-1.2345678901234567e-6, "-0.0000012345678901234567"),
        ] {
            assert_eq!(number_to_string(n), s, "{n}");
            let mut out = String::from(">");
            write_number(&mut out, n);
            assert_eq!(out, format!(">{s}"));
        }
    }

    #[test]
    fn string_of_values() {
        assert_eq!(to_js_string(&json!(null)), "null");
        assert_eq!(to_js_string(&json!(true)), "true");
        assert_eq!(to_js_string(&json!(30.0)), "30");
        assert_eq!(
            to_js_string(&json!(12345678901234567890u64)),
            "12345678901234567000"
        );
        assert_eq!(
            to_js_string(&json!(-9007199254740993i64)),
            "-9007199254740992"
        );
        assert_eq!(to_js_string(&json!([1, null, "a", [2, 3]])), "1,,a,2,3");
        assert_eq!(to_js_string(&json!([[null], [], {}])), ",,[object Object]"); // [[null],[],{}]
        assert_eq!(to_js_string(&json!(["x"])), "x");
        assert_eq!(to_js_string(&json!({"a": 1})), "[object Object]");
        assert_eq!(opt_to_js_string(None), "undefined");
        assert!(matches!(js_str(&json!(1.5)), JsStr::Number(_)));
        assert_eq!(&*js_str(&json!(1.5)), "1.5");
    }

    #[test]
    fn lowercase_borrows_when_unchanged() {
        assert!(matches!(js_lowercase("abc"), Cow::Borrowed(_)));
        assert!(matches!(js_lowercase("straße σ"), Cow::Borrowed(_)));
        assert_eq!(js_lowercase("ABC"), "abc");
        assert_eq!(js_lowercase("ǅ"), "ǆ"); // titlecase letter
        assert_eq!(js_lowercase("ΟΔΟΣ"), "οδος");
        assert_eq!(js_lowercase("İ"), "i\u{307}");
    }

    #[test]
    fn ascii_lower_fast_path_agrees_with_to_lowercase() {
        let mut checked = 0;
        for len in 0..=40usize {
            let base: String = (0..len)
                .map(|i| char::from(b"az09-_./?=&%~ "[i % 14]))
                .collect();
            assert!(is_ascii_lower(&base), "{base:?}");
            assert!(matches!(js_lowercase(&base), Cow::Borrowed(_)));
            for pos in 0..len {
                for odd in [
                    "A",
                    "Z",
                    "M",
                    "\u{e9}",
                    "\u{c9}",
                    "\u{1f600}",
                    "\u{212a}",
                    "\u{7f}",
                    "@",
                    "[",
                    "`",
                    "{",
                ] {
                    let mut s = base.clone();
                    s.replace_range(pos..=pos, odd);
                    let expected = s.to_lowercase();
                    assert_eq!(js_lowercase(&s), expected, "{s:?}");
                    assert_eq!(is_ascii_lower(&s), s == expected && s.is_ascii(), "{s:?}");
                    checked += 1;
                }
            }
        }
        assert!(checked > 9000);
    }

    #[test]
    fn radix_rounding() {
        // 2^53 + 1 rounds to even (2^53), 2^53 + 3 rounds up to 2^53 + 4.
        assert_eq!(string_to_number("0x20000000000001"), 9007199254740992.0);
        assert_eq!(string_to_number("0x20000000000003"), 9007199254740996.0);
        // Exactly halfway above 2^64 with a sticky bit far below: rounds up.
        assert_eq!(
            string_to_number("0x1000000000000080000000000000001"),
            2f64.powi(120) + 2f64.powi(68)
        );
        assert_eq!(string_to_number("0b101"), 5.0);
        assert_eq!(string_to_number("0o777"), 511.0);
        assert_eq!(string_to_number("0x0000000000000000000000000000001"), 1.0);
        assert_eq!(
            string_to_number(&format!("0x1{}", "0".repeat(300))),
            f64::INFINITY
        );
    }

    #[test]
    fn numbers_of_values() {
        assert_eq!(to_number(Some(&json!("12"))), 12.0);
        assert_eq!(to_number(Some(&json!(""))), 0.0);
        assert_eq!(to_number(Some(&json!(" \n\u{feff}"))), 0.0);
        assert_eq!(to_number(Some(&json!(" 12 "))), 12.0);
        assert_eq!(to_number(Some(&json!(null))), 0.0);
        assert!(to_number(None).is_nan());
        assert_eq!(to_number(Some(&json!("0x10"))), 16.0);
        assert!(to_number(Some(&json!("-0x10"))).is_nan());
        assert!(to_number(Some(&json!("0x"))).is_nan());
        assert_eq!(to_number(Some(&json!("5."))), 5.0);
        assert_eq!(to_number(Some(&json!(".5"))), 0.5);
        assert!(to_number(Some(&json!("."))).is_nan());
        assert!(to_number(Some(&json!("1e"))).is_nan());
        assert!(to_number(Some(&json!("abc"))).is_nan());
        assert!(to_number(Some(&json!("infinity"))).is_nan());
        assert_eq!(to_number(Some(&json!("-Infinity"))), f64::NEG_INFINITY);
        assert_eq!(to_number(Some(&json!("+Infinity"))), f64::INFINITY);
        assert_eq!(to_number(Some(&json!("1e3"))), 1000.0);
        assert_eq!(to_number(Some(&json!([5]))), 5.0);
        assert_eq!(to_number(Some(&json!([]))), 0.0);
        assert!(to_number(Some(&json!([1, 2]))).is_nan());
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
        assert_eq!(parse_int("-0X1f"), -31.0);
        assert!(parse_int("0x").is_nan());
        assert_eq!(parse_int("1e3"), 1.0);
        assert_eq!(parse_int(" 12 "), 12.0);
        assert_eq!(parse_int("-7px"), -7.0);
        assert!(parse_int("abc").is_nan());
        assert!(parse_int("").is_nan());
        assert!(parse_int("-").is_nan());
        assert_eq!(parse_int("1e+21"), 1.0);
        assert_eq!(
            parse_int("123456789012345678901234567890"),
            1.2345678901234568e29
        );
        assert_eq!(parse_float("3.9abc"), 3.9);
        assert_eq!(parse_float("  -.5e1x"), -5.0);
        assert_eq!(parse_float("Infinity"), f64::INFINITY);
        assert_eq!(parse_float("-Infinityx"), f64::NEG_INFINITY);
        assert!(parse_float("abc").is_nan());
        assert!(parse_float("+-1").is_nan());
        assert_eq!(parse_float("5e"), 5.0);
        assert_eq!(parse_float("0x10"), 0.0);
    }

    #[test]
    fn truthiness() {
        for v in [json!(0), json!(-0.0), json!(""), json!(null), json!(false)] {
            assert!(!truthy(&v), "{v}");
        }
        for v in [json!({}), json!([]), json!("0"), json!(1), json!("false")] {
            assert!(truthy(&v), "{v}");
        }
        assert!(!opt_truthy(None));
    }

    #[test]
    fn strict_equality() {
        assert!(strict_equals(&json!(2), &json!(2.0)));
        assert!(!strict_equals(&json!(2), &json!("2")));
        assert!(!strict_equals(&json!([]), &json!([])));
        assert!(strict_equals(&json!(null), &json!(null)));
    }

    #[test]
    fn stringify_uses_js_key_order_and_numbers() {
        let v: Value = serde_json::from_str(
            r#"{"b":1.0,"300":"x","20":[1.5,2.0,1e21],"a":{"2":true,"1":null},"s":"q\"\n\u0001\u007fé"}"#,
        )
        .unwrap_or(Value::Null);
        // After the array-index keys, members follow the map's own order: insertion order with
        // serde_json's `preserve_order` (enabled by some crate of the build), sorted without.
        let probe: Map<String, Value> = [("b".to_string(), Value::Null), ("a".into(), Value::Null)]
            .into_iter()
            .collect();
        let insertion_order = probe.keys().next().map(String::as_str) == Some("b");
        let (first, second) = if insertion_order {
            ("\"b\":1", "\"a\":{\"1\":null,\"2\":true}")
        } else {
            ("\"a\":{\"1\":null,\"2\":true}", "\"b\":1")
        };
        assert_eq!(
            json_stringify(&v),
            format!(
                "{{\"20\":[1.5,2,1e+21],\"300\":\"x\",{first},{second},\"s\":\"q\\\"\\n\\u0001\u{7f}é\"}}"
            )
        );
        assert_eq!(
            json_stringify(&json!(12345678901234567890u64)),
            "12345678901234567000"
        );
        assert_eq!(
            json_stringify(&json!("\u{1f}\u{8}\u{c}\\")),
            r#""\u001f\b\f\\""#
        );
    }

    #[test]
    fn number_values() {
        assert_eq!(number_value(40.0), json!(40));
        assert_eq!(number_value(-0.0), json!(0));
        assert_eq!(number_value(f64::NAN), json!(null));
        assert_eq!(number_value(f64::INFINITY), json!(null));
        assert_eq!(number_value(3.9), json!(3.9));
        assert_eq!(number_value(1e300), json!(1e300));
    }

    #[test]
    fn a_backslash_before_a_multibyte_character_is_an_error_not_a_panic() {
        for text in ["\"a\\\u{e9}b\"", "\"\\\u{1f600}\"", "\"\\\u{e9}", "\"\\"] {
            assert!(json_parse(text).is_err(), "{text}");
        }
        assert_eq!(json_parse("\"\\\\\u{e9}\"").ok(), Some(json!("\\\u{e9}")));
    }

    #[test]
    fn lone_surrogate_escapes_parse_like_json_parse() {
        let v = json_parse(
            r#"{"a":"x\ud800y","b":"\uDC00","c":"\ud83d\ude00","d":"\\ud800","e":"\ud83d"}"#,
        )
        .unwrap_or(Value::Null);
        assert_eq!(v["a"], "x\u{fffd}y");
        assert_eq!(v["b"], "\u{fffd}");
        assert_eq!(v["c"], "😀");
        assert_eq!(v["d"], "\\ud800"); // an escaped backslash, not an escape
        assert_eq!(v["e"], "\u{fffd}");
        assert!(serde_json::from_str::<Value>(r#""\ud800""#).is_err());
        assert!(matches!(
            replace_lone_surrogate_escapes(r#"{"a":"\n\u00e9"}"#),
            Cow::Borrowed(_)
        ));
        assert_eq!(
            json_parse(r#"["\udc00\ud800\udc00\ud800"]"#).unwrap_or(Value::Null),
            serde_json::json!(["\u{fffd}𐀀\u{fffd}"])
        );
        assert!(json_parse("{").is_err());
    }
}
