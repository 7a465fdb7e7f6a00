//! A compact JSON tree for the served config, read straight from the text.
//!
//! `serde_json::Value` allocates once per key, per string, per array and per object (a B-tree
//! node, or an index map). Loading the 1.7 MB benchmark config that way spent a third of its
//! instructions in `malloc`/`free`. A [`Node`] allocates once per array and object (its items or
//! members in one exact-size `Vec`) and keeps keys and strings up to 23 bytes inline
//! ([`Str`](crate::config::Str)), so the config model is built from it with far fewer
//! allocations, and the served JSON is turned into `serde_json::Value` only for what asks for it
//! (rule trees, feature variables, the `*_raw` accessors).
//!
//! [`parse`] reads text exactly as [`crate::js::json_parse`] does (`JSON.parse` semantics: lone
//! surrogate escapes become U+FFFD, numbers are correctly rounded doubles, integers that fit 64
//! bits stay integers, a repeated key keeps its first position and its last value). It answers
//! `None` for anything it does not read exactly as that function does (any syntax error, a number
//! out of the double range, nesting deeper than `serde_json`'s limit): the caller then falls back
//! to [`crate::js::json_parse`], which gives the same result or the same error as before.

use crate::config::Str;
use crate::js;
use serde_json::{Map, Number, Value};
use std::borrow::Cow;

/// A JSON value. Objects keep their members in text order, without duplicates. (`==` counts
/// member order; [`same`] does not.)
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Node {
    Null,
    Bool(bool),
    Number(Number),
    String(Str),
    Array(Vec<Node>),
    Object(Vec<(Str, Node)>),
}

/// Nesting at which `serde_json` stops with "recursion limit exceeded" (128 arrays or objects).
const MAX_DEPTH: usize = 128;

/// Objects with more members than this are checked for repeated keys with a hash set.
const SCAN_MEMBERS: usize = 16;

impl Node {
    /// Member `key` of an object (`None` for other values).
    pub(crate) fn get(&self, key: &str) -> Option<&Node> {
        match self {
            Node::Object(m) => m.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    pub(crate) fn as_str(&self) -> Option<&str> {
        match self {
            Node::String(s) => Some(s),
            _ => None,
        }
    }

    pub(crate) fn as_array(&self) -> Option<&[Node]> {
        match self {
            Node::Array(a) => Some(a),
            _ => None,
        }
    }

    pub(crate) fn as_object(&self) -> Option<&[(Str, Node)]> {
        match self {
            Node::Object(m) => Some(m),
            _ => None,
        }
    }

    /// JS truthiness, as [`js::truthy`].
    pub(crate) fn truthy(&self) -> bool {
        match self {
            Node::Null => false,
            Node::Bool(b) => *b,
            Node::Number(n) => {
                let f = js::number_f64(n);
                f != 0.0 && !f.is_nan()
            }
            Node::String(s) => !s.is_empty(),
            Node::Array(_) | Node::Object(_) => true,
        }
    }

    /// JS `String(v)`, as [`js::to_js_string`].
    pub(crate) fn js_string(&self) -> Cow<'_, str> {
        match self {
            Node::String(s) => Cow::Borrowed(s),
            Node::Number(n) => Cow::Owned(js::NumberStr::new(js::number_f64(n)).as_str().into()),
            Node::Null => Cow::Borrowed("null"),
            Node::Bool(true) => Cow::Borrowed("true"),
            Node::Bool(false) => Cow::Borrowed("false"),
            Node::Object(_) => Cow::Borrowed("[object Object]"),
            Node::Array(_) => Cow::Owned(js::to_js_string(&self.to_value()).into_owned()),
        }
    }

    /// The same value as a `serde_json::Value` (what [`js::json_parse`] gives for its text).
    pub(crate) fn to_value(&self) -> Value {
        match self {
            Node::Null => Value::Null,
            Node::Bool(b) => Value::Bool(*b),
            Node::Number(n) => Value::Number(n.clone()),
            Node::String(s) => Value::String(s.as_str().to_owned()),
            Node::Array(a) => Value::Array(a.iter().map(Node::to_value).collect()),
            Node::Object(m) => Value::Object(object_to_map(m)),
        }
    }

    /// The node of a `serde_json::Value` (for configs handed over already parsed).
    pub(crate) fn from_value(v: &Value) -> Node {
        match v {
            Value::Null => Node::Null,
            Value::Bool(b) => Node::Bool(*b),
            Value::Number(n) => Node::Number(n.clone()),
            Value::String(s) => Node::String(Str::new(s)),
            Value::Array(a) => Node::Array(a.iter().map(Node::from_value).collect()),
            Value::Object(m) => Node::Object(
                m.iter()
                    .map(|(k, v)| (Str::new(k), Node::from_value(v)))
                    .collect(),
            ),
        }
    }
}

impl crate::rules::RuleJson for Node {
    fn member(&self, key: &str) -> Option<&Node> {
        self.get(key)
    }
    fn items(&self) -> Option<&[Node]> {
        self.as_array()
    }
    fn is_object(&self) -> bool {
        matches!(self, Node::Object(_))
    }
    fn text(&self) -> Option<&str> {
        self.as_str()
    }
    fn boolean(&self) -> Option<bool> {
        match self {
            Node::Bool(b) => Some(*b),
            _ => None,
        }
    }
    fn value(&self) -> Cow<'_, Value> {
        Cow::Owned(self.to_value())
    }
}

/// Whether `a` and `b` are the same JSON value, as `serde_json::Value`'s `==` says: member order
/// does not count, numbers compare by kind and value.
pub(crate) fn same(a: &Node, b: &Node) -> bool {
    match (a, b) {
        (Node::Array(x), Node::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| same(p, q))
        }
        (Node::Object(x), Node::Object(y)) => {
            if x.len() != y.len() {
                return false;
            }
            // Same order (the usual case: the same text served twice) costs one pass.
            if x.iter().zip(y).all(|((k, _), (l, _))| k == l) {
                return x.iter().zip(y).all(|((_, p), (_, q))| same(p, q));
            }
            let by_key: std::collections::HashMap<&str, &Node> =
                y.iter().map(|(k, v)| (k.as_str(), v)).collect();
            x.iter()
                .all(|(k, p)| by_key.get(k.as_str()).is_some_and(|q| same(p, q)))
        }
        _ => a == b,
    }
}

/// The members of an object node as a `serde_json::Map`.
pub(crate) fn object_to_map(members: &[(Str, Node)]) -> Map<String, Value> {
    let mut map = Map::new();
    for (k, v) in members {
        map.insert(k.as_str().to_owned(), v.to_value());
    }
    map
}

/// Parses JSON text as [`js::json_parse`] does, or `None` (see the module documentation).
pub(crate) fn parse(text: &str) -> Option<Node> {
    let mut p = Parser {
        text,
        b: text.as_bytes(),
        at: 0,
        items: Vec::new(),
        members: Vec::new(),
        fingerprints: Vec::new(),
        scratch: String::new(),
        recent: Recent::new(),
    };
    let v = p.value(0)?;
    p.skip_ws();
    (p.at == p.b.len()).then_some(v)
}

struct Parser<'t> {
    text: &'t str,
    b: &'t [u8],
    at: usize,
    /// Items of the arrays being read, innermost last: each array takes its own off the end.
    items: Vec<Node>,
    /// Members of the objects being read, innermost last.
    members: Vec<(Str, Node)>,
    /// The [`fingerprint`] of each key of `members`.
    fingerprints: Vec<u64>,
    /// Decoded text of a string with escapes.
    scratch: String,
    /// Strings read lately.
    recent: Recent,
}

/// Short strings read lately, by a hash of their bytes. Keys and many values repeat throughout a
/// config (`"id"`, `"rules"`, `"equals"`): a repeat is a copy of the stored [`Str`] instead of a
/// new one.
struct Recent(Vec<Str>);

impl Recent {
    const SLOTS: usize = 512;

    fn new() -> Recent {
        Recent(vec![Str::default(); Self::SLOTS])
    }

    fn str(&mut self, text: &str) -> Str {
        let b = text.as_bytes();
        let (Some(&first), Some(&last)) = (b.first(), b.last()) else {
            return Str::default();
        };
        if b.len() > 23 {
            return Str::new(text);
        }
        let mid = b[b.len() / 2];
        let h =
            (b.len() * 31 + usize::from(first) * 7 + usize::from(mid) * 131 + usize::from(last))
                % Self::SLOTS;
        let Some(slot) = self.0.get_mut(h) else {
            return Str::new(text);
        };
        if slot.as_bytes() == b {
            return slot.clone();
        }
        let s = Str::new(text);
        *slot = s.clone();
        s
    }
}

impl Parser<'_> {
    fn skip_ws(&mut self) {
        // Compact JSON has none: one comparison (every whitespace byte is at most b' ').
        if self.b.get(self.at).is_some_and(|&c| c <= b' ') {
            while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.b.get(self.at) {
                self.at += 1;
            }
        }
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.at).copied()
    }

    fn literal(&mut self, word: &[u8], node: Node) -> Option<Node> {
        if self.b.get(self.at..self.at + word.len())? == word {
            self.at += word.len();
            Some(node)
        } else {
            None
        }
    }

    fn value(&mut self, depth: usize) -> Option<Node> {
        self.skip_ws();
        match self.peek()? {
            b'{' => self.object(depth + 1),
            b'[' => self.array(depth + 1),
            b'"' => self.string().map(Node::String),
            b't' => self.literal(b"true", Node::Bool(true)),
            b'f' => self.literal(b"false", Node::Bool(false)),
            b'n' => self.literal(b"null", Node::Null),
            b'-' | b'0'..=b'9' => self.number().map(Node::Number),
            _ => None,
        }
    }

    /// Enters an array or object (the cursor on its opening bracket) at nesting `depth`:
    /// whether it is empty (then the cursor is past `close`).
    fn open(&mut self, depth: usize, close: u8) -> Option<bool> {
        if depth >= MAX_DEPTH {
            return None;
        }
        self.at += 1;
        self.skip_ws();
        let empty = self.peek()? == close;
        if empty {
            self.at += 1;
        }
        Some(empty)
    }

    fn array(&mut self, depth: usize) -> Option<Node> {
        if self.open(depth, b']')? {
            return Some(Node::Array(Vec::new()));
        }
        let start = self.items.len();
        loop {
            let v = self.value(depth)?;
            self.items.push(v);
            self.skip_ws();
            match self.peek()? {
                b',' => self.at += 1,
                b']' => {
                    self.at += 1;
                    return Some(Node::Array(take_from(&mut self.items, start)));
                }
                _ => return None,
            }
        }
    }

    fn object(&mut self, depth: usize) -> Option<Node> {
        if self.open(depth, b'}')? {
            return Some(Node::Object(Vec::new()));
        }
        let start = self.members.len();
        loop {
            self.skip_ws();
            if self.peek()? != b'"' {
                return None;
            }
            let key = self.string()?;
            self.fingerprints.push(fingerprint(&key));
            self.skip_ws();
            if self.peek()? != b':' {
                return None;
            }
            self.at += 1;
            let v = self.value(depth)?;
            self.members.push((key, v));
            self.skip_ws();
            match self.peek()? {
                b',' => self.at += 1,
                b'}' => {
                    self.at += 1;
                    let members = dedup(
                        take_from(&mut self.members, start),
                        &self.fingerprints[start..],
                    );
                    self.fingerprints.truncate(start);
                    return Some(Node::Object(members));
                }
                _ => return None,
            }
        }
    }

    /// A string token (the cursor on its opening quote), decoded.
    fn string(&mut self) -> Option<Str> {
        let start = self.at + 1;
        let end = special_at(self.b, start)?;
        if self.b[end] == b'"' {
            self.at = end + 1;
            // Both ends are ASCII quotes, so they are char boundaries.
            let text = self.text.get(start..end)?;
            return Some(self.recent.str(text));
        }
        self.scratch.clear();
        let mut from = start;
        let mut stop = end;
        loop {
            self.scratch.push_str(self.text.get(from..stop)?);
            if self.b[stop] != b'\\' {
                // The closing quote, or a control character (not allowed in a string).
                if self.b[stop] != b'"' {
                    return None;
                }
                self.at = stop + 1;
                return Some(self.recent.str(&self.scratch));
            }
            from = stop + 2;
            let c = match *self.b.get(stop + 1)? {
                b'"' => '"',
                b'\\' => '\\',
                b'/' => '/',
                b'b' => '\u{8}',
                b'f' => '\u{c}',
                b'n' => '\n',
                b'r' => '\r',
                b't' => '\t',
                b'u' => {
                    let unit = self.hex4(stop + 2)?;
                    from = stop + 6;
                    match unit {
                        0xD800..=0xDBFF => {
                            // A high surrogate pairs with a low surrogate escape right after it;
                            // otherwise it is lone, and becomes U+FFFD (`js::json_parse`).
                            let low = (self.b.get(from..from + 2) == Some(b"\\u"))
                                .then(|| self.hex4(from + 2))
                                .flatten()
                                .filter(|l| (0xDC00..=0xDFFF).contains(l));
                            match low {
                                Some(low) => {
                                    from += 6;
                                    let cp = 0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00);
                                    char::from_u32(cp)?
                                }
                                None => '\u{fffd}',
                            }
                        }
                        0xDC00..=0xDFFF => '\u{fffd}',
                        _ => char::from_u32(unit)?,
                    }
                }
                _ => return None,
            };
            self.scratch.push(c);
            stop = special_at(self.b, from)?;
        }
    }

    /// The four hex digits at byte `at`.
    fn hex4(&self, at: usize) -> Option<u32> {
        let digits = self.b.get(at..at + 4)?;
        let mut n = 0;
        for &d in digits {
            n = n * 16 + char::from(d).to_digit(16)?;
        }
        Some(n)
    }

    /// A number token, as `serde_json` reports it and [`crate::json::parse_value`] keeps it:
    /// integers that fit `u64` (or `i64` when negative, except `-0`) stay integers, everything else
    /// is the correctly rounded double of its text.
    fn number(&mut self) -> Option<Number> {
        let start = self.at;
        let b = self.b;
        let mut i = start;
        let negative = b[i] == b'-';
        if negative {
            i += 1;
        }
        let digits = |mut i: usize| {
            while b.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
            i
        };
        match b.get(i)? {
            b'0' => i += 1,
            b'1'..=b'9' => i = digits(i + 1),
            _ => return None,
        }
        let int_end = i;
        if b.get(i) == Some(&b'.') {
            let end = digits(i + 1);
            if end == i + 1 {
                return None;
            }
            i = end;
        }
        if let Some(b'e' | b'E') = b.get(i) {
            i += 1;
            if let Some(b'+' | b'-') = b.get(i) {
                i += 1;
            }
            let end = digits(i);
            if end == i {
                return None;
            }
            i = end;
        }
        self.at = i;
        let token = self.text.get(start..i)?;
        if i == int_end {
            let magnitude = self.text.get(start + usize::from(negative)..i)?;
            if let Ok(m) = magnitude.parse::<u64>() {
                if !negative {
                    return Some(Number::from(m));
                }
                if m != 0 && m <= 1 << 63 {
                    return Some(Number::from(0i64.wrapping_sub_unsigned(m)));
                }
            }
        }
        let x: f64 = token.parse().ok()?;
        if x.is_finite() {
            Number::from_f64(x)
        } else {
            None
        }
    }
}

/// The position of the first byte at or after `from` that ends a run of plain string bytes: a
/// quote, a backslash or a control character (below U+0020).
///
/// Keys and most values are short: the first 16 bytes are checked eight at a time in plain
/// registers. Past them, `memchr2` finds the next quote or backslash (many bytes per step) and
/// the bytes before it are checked for control characters with a minimum, which the compiler
/// vectorizes.
fn special_at(b: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    for _ in 0..2 {
        let Some(chunk) = b.get(i..i + 8) else {
            return short_special_at(b, i);
        };
        let flags = special_flags(chunk);
        if flags != 0 {
            return Some(i + (flags.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    let rest = b.get(i..)?;
    let stop = memchr::memchr2(b'"', b'\\', rest)?;
    if rest[..stop].iter().copied().min().is_some_and(|c| c < 0x20) {
        return short_special_at(b, i);
    }
    Some(i + stop)
}

/// The bytes of an 8-byte chunk that are a quote, a backslash or below 0x20, as the high bit of
/// each byte. Only the lowest flag is exact (a borrow carries into higher bytes), which is the
/// one used.
fn special_flags(chunk: &[u8]) -> u64 {
    const ONES: u64 = u64::from_le_bytes([1; 8]);
    const HIGH: u64 = ONES << 7;
    let Ok(bytes) = <[u8; 8]>::try_from(chunk) else {
        return 0;
    };
    let w = u64::from_le_bytes(bytes);
    let quote = w ^ (ONES * u64::from(b'"'));
    let backslash = w ^ (ONES * u64::from(b'\\'));
    ((quote.wrapping_sub(ONES) & !quote)
        | (backslash.wrapping_sub(ONES) & !backslash)
        | (w.wrapping_sub(ONES * 0x20) & !w))
        & HIGH
}

/// [`special_at`] one byte at a time.
fn short_special_at(b: &[u8], from: usize) -> Option<usize> {
    b.get(from..)?
        .iter()
        .position(|&c| c == b'"' || c == b'\\' || c < 0x20)
        .map(|p| from + p)
}

/// The items of `stack` from `start` on, moved into an exact-size `Vec` (one allocation).
fn take_from<T>(stack: &mut Vec<T>, start: usize) -> Vec<T> {
    if start == 0 {
        // `split_off(0)` would hand over the stack's whole buffer.
        let mut out = Vec::with_capacity(stack.len());
        out.append(stack);
        out
    } else {
        stack.split_off(start)
    }
}

/// A key's length and first seven bytes: equal keys have equal fingerprints, and the keys of one
/// object seldom share one, so looking for repeated keys compares these first.
fn fingerprint(key: &str) -> u64 {
    let b = key.as_bytes();
    let mut head = [0u8; 8];
    let n = b.len().min(7);
    head[..n].copy_from_slice(&b[..n]);
    head[7] = u8::try_from(b.len() % 256).unwrap_or(0);
    u64::from_le_bytes(head)
}

/// Members with repeated keys merged as `JSON.parse` does: first position, last value.
/// `fingerprints` are the keys' [`fingerprint`]s.
fn dedup(members: Vec<(Str, Node)>, fingerprints: &[u64]) -> Vec<(Str, Node)> {
    let maybe_repeated = if fingerprints.len() <= SCAN_MEMBERS {
        fingerprints
            .iter()
            .enumerate()
            .any(|(i, f)| fingerprints[..i].contains(f))
    } else {
        let mut seen = std::collections::HashSet::with_capacity(fingerprints.len());
        !fingerprints.iter().all(|f| seen.insert(*f))
    };
    if !maybe_repeated {
        return members;
    }
    let mut first: std::collections::HashMap<Str, usize> = std::collections::HashMap::new();
    let mut out: Vec<(Str, Node)> = Vec::with_capacity(members.len());
    for (k, v) in members {
        match first.get(&k) {
            Some(&p) => out[p].1 = v,
            None => {
                first.insert(k.clone(), out.len());
                out.push((k, v));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every case is read exactly as `js::json_parse` reads it: same value, or both refuse.
    #[test]
    fn reads_what_json_parse_reads() {
        let cases = [
            r#"{"a":1,"b":[true,false,null],"c":{"d":"e"}}"#,
            r#" [ 0 , -0 , 1.5 , -1.5e3 , 1E+2 , 1e-400 , 123456789012345678901234 ] "#,
            "[18446744073709551615, 18446744073709551616, -9223372036854775808, -9223372036854775809]",
            "[123.45678901234567, 2.729254981960025e-119, 1.7976931348623155e308, 0.1]",
            r#"["\ud800", "\uD83D\uDE00", "\udc00\ud800x", "\ud800\ud800\udc00", "\\ud800"]"#,
            r#"["\"\\\/\b\f\n\r\t\u00e9\u0000", "é😀", "a\u20ACb"]"#,
            r#"["0123456789abcdef\n0123456789abcdef\u00e90123456789", "01234567\"", "a\\"]"#,
            "[\"0123456789\u{7f}\u{80}\u{ff}\u{1f}\"]",
            "[\"01234567\u{1f}89\"]",
            "[\"0123456789\u{7f}\u{80}\u{ff}\u{10ffff}\u{20}\u{21}\"]",
            "[\"0123456789abcdef\u{19}\"]",
            "[\"0123456789abcdefghijklmnop\u{0}qrstuvwxyz\\\"\"]",
            "[\"0123456789abcdefghijklmnop",
            r#"{"k":1,"k":2,"j":3,"k":4}"#,
            r#"{"abcdefgX":1,"abcdefgY":2,"abcdefgX":3}"#,
            r#"{"":0,"a b":{"":[]}}"#,
            "\"x\"",
            "17",
            "",
            "{",
            "[1,]",
            "{\"a\":1,}",
            "01",
            "1.",
            ".5",
            "-",
            "1e",
            "+1",
            "[1 2]",
            "{\"a\" 1}",
            "{1:2}",
            "nul",
            "truex",
            "\"\\x\"",
            "\"\\u12G4\"",
            "\"a\u{1}b\"",
            "\"abc",
            "1e999",
            "-1e999",
            "[1] x",
            "\u{feff}{}",
        ];
        for text in cases {
            let ours = parse(text).map(|n| n.to_value());
            let theirs = js::json_parse(text).ok();
            assert_eq!(ours, theirs, "{text:?}");
        }
    }

    #[test]
    fn numbers_keep_serde_jsons_kind() {
        for text in ["-0", "0", "7", "-7", "1e2", "-9223372036854775808"] {
            let ours = parse(text).map(|n| n.to_value());
            let theirs = js::json_parse(text).ok();
            assert_eq!(ours, theirs, "{text}");
            // Equal values of different kinds (integer 0 and float -0.0) compare unequal.
            let kind = |v: &Option<Value>| {
                v.as_ref()
                    .and_then(Value::as_number)
                    .map(|n| (n.is_u64(), n.is_i64(), n.is_f64()))
            };
            assert_eq!(kind(&ours), kind(&theirs), "{text}");
        }
    }

    #[test]
    fn repeated_keys_keep_first_position_and_last_value() {
        let keys: Vec<String> = (0..40).map(|i| format!("\"k{}\":{i}", i % 20)).collect();
        for n in [5, 40] {
            let text = format!("{{{}}}", keys[..n].join(","));
            let node = parse(&text);
            let members = node.as_ref().and_then(Node::as_object).unwrap_or(&[]);
            let want: Vec<(String, i64)> = (0..n.min(20))
                .map(|i| {
                    let last = if n > 20 { i + 20 } else { i };
                    (format!("k{i}"), i64::try_from(last).unwrap_or(0))
                })
                .collect();
            let got: Vec<(String, i64)> = members
                .iter()
                .map(|(k, v)| {
                    let n = match v {
                        Node::Number(n) => n.as_i64().unwrap_or(-1),
                        _ => -1,
                    };
                    (k.to_string(), n)
                })
                .collect();
            assert_eq!(got, want, "{n} members");
            assert_eq!(node.map(|n| n.to_value()), js::json_parse(&text).ok());
        }
    }

    #[test]
    fn keys_sharing_a_fingerprint_stay_apart() {
        for n in [3, 40] {
            let members: Vec<String> = (0..n)
                .map(|i| format!("\"prefix_{i:02}\":{i}"))
                .chain(["\"prefix_01\":\"last\"".to_string()])
                .collect();
            let text = format!("{{{}}}", members.join(","));
            let node = parse(&text);
            assert_eq!(
                node.as_ref().and_then(Node::as_object).map(<[_]>::len),
                Some(n)
            );
            assert_eq!(
                node.map(|n| n.to_value()),
                js::json_parse(&text).ok(),
                "{n}"
            );
        }
    }

    #[test]
    fn nesting_stops_where_serde_json_stops() {
        for depth in [1, 127, 128, 129, 300] {
            let text = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
            let ours = parse(&text).map(|n| n.to_value());
            if ours.is_some() {
                assert_eq!(ours, js::json_parse(&text).ok(), "{depth}");
            }
            assert_eq!(ours.is_some(), depth < 128, "{depth}");
        }
    }

    #[test]
    fn same_ignores_member_order_only() {
        let node = |t: &str| parse(t).unwrap_or(Node::Null);
        let a = node(r#"{"a":1,"b":[{"c":2,"d":3}]}"#);
        assert!(same(&a, &node(r#"{"b":[{"d":3,"c":2}],"a":1}"#)));
        assert!(!same(&a, &node(r#"{"a":1,"b":[{"c":2,"d":4}]}"#)));
        assert!(!same(&a, &node(r#"{"a":1.0,"b":[{"c":2,"d":3}]}"#)));
        assert!(!same(&a, &node(r#"{"a":1,"e":[{"c":2,"d":3}]}"#)));
        assert!(!same(&a, &node(r#"{"a":1}"#)));
    }

    #[test]
    fn values_round_trip() {
        let text = r#"{"a":[1,-2,3.5,"x",null,true,{"b":{}}],"long":"a string longer than twenty-three bytes"}"#;
        let v = js::json_parse(text).unwrap_or_default();
        assert_eq!(Node::from_value(&v).to_value(), v);
        assert_eq!(parse(text), Some(Node::from_value(&v)));
    }
}
