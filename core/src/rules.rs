//! Rule trees and comparison operators (SPEC §6).
//!
//! A rule tree is `{"OR": [{"AND": [{"OR_WHEN": [rule, ...]}, ...]}, ...]}`: any AND block whose
//! OR_WHEN blocks all have a matching rule. Trees are compiled once when the config is loaded
//! (structure checked, operators resolved, regular expressions built) and evaluated without
//! allocating in the common cases.
//!
//! The reference's semantics are kept exactly, quirks included: a rule without a boolean
//! `negated` never matches; a missing attribute makes a rule false *without* applying negation
//! (only `exists` and `doesNotExist` look at missing keys); `less`/`lessEqual` on operands of
//! different JS types are false even when negated; `isIn` lower-cases only the rule's side; keys
//! are case-sensitive.
//!
//! # Regular expressions
//!
//! `regexMatches` compiles the rule's pattern as the reference does (`new RegExp(pattern, "i")`,
//! tested against the lower-cased value), but on the linear-time `regex` engine with a size limit,
//! so a hostile pattern or input can never stall a decision. ECMAScript syntax is translated where
//! the meaning differs (`\d`, `\w`, `\s`, `\b`, `.`, identity escapes, literal braces). Patterns
//! that need backtracking — backreferences (`\1`, `\k<name>`) and look-around (`(?=`, `(?!`,
//! `(?<=`, `(?<!`) — or that the engine rejects are **not supported: such a rule does not match**.
//! [`RuleSet::unsupported_patterns`] lists them so the SDK can report them.

use crate::js;
use serde_json::{Map, Value};
use std::borrow::Cow;

/// The two rule errors of the reference SDK. With plain key/value data they never occur; they come from
/// custom rule-data providers (the web tracker's data object in JS).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum RuleError {
    /// `"convert.com_no_data_found"`.
    #[serde(rename = "convert.com_no_data_found")]
    NoDataFound,
    /// `"convert.com_need_more_data"`.
    #[serde(rename = "convert.com_need_more_data")]
    NeedMoreData,
}

impl RuleError {
    /// The reference SDK's sentinel string.
    pub fn code(self) -> &'static str {
        match self {
            RuleError::NoDataFound => "convert.com_no_data_found",
            RuleError::NeedMoreData => "convert.com_need_more_data",
        }
    }
}

/// Outcome of evaluating a rule tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleOutcome {
    /// The tree matched.
    Matched,
    /// The tree did not match.
    NotMatched,
    /// A rule needed data it did not have.
    Error(RuleError),
}

impl RuleOutcome {
    /// `true` only for [`RuleOutcome::Matched`].
    pub fn is_match(self) -> bool {
        matches!(self, RuleOutcome::Matched)
    }
}

/// The data a rule tree is evaluated against (visitor properties, location properties, rule data).
pub trait RuleData {
    /// The value stored under exactly `key` (case-sensitive), if present.
    fn lookup(&self, key: &str) -> Option<Cow<'_, Value>>;
    /// Whether the data holds no key at all.
    fn is_empty(&self) -> bool;
}

impl RuleData for Map<String, Value> {
    fn lookup(&self, key: &str) -> Option<Cow<'_, Value>> {
        self.get(key).map(Cow::Borrowed)
    }
    fn is_empty(&self) -> bool {
        Map::is_empty(self)
    }
}

/// The `bucketed_into_experience_key` element of an audience (SPEC §5.7).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExclusionRule {
    /// The target experience key (`String(element.value)`).
    pub target_key: String,
    /// Whether the element is negated (JS truthiness of `matching.negated`).
    pub negated: bool,
}

/// The comparison operators (the reference's `Comparisons` methods).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Equals,
    Less,
    LessEqual,
    Contains,
    IsIn,
    StartsWith,
    EndsWith,
    RegexMatches,
    Exists,
    NotExists,
    NegationCheck,
}

impl Op {
    fn parse(name: &str) -> Option<Op> {
        Some(match name {
            "equals" | "equalsNumber" | "matches" => Op::Equals,
            "less" => Op::Less,
            "lessEqual" => Op::LessEqual,
            "contains" => Op::Contains,
            "isIn" => Op::IsIn,
            "startsWith" => Op::StartsWith,
            "endsWith" => Op::EndsWith,
            "regexMatches" => Op::RegexMatches,
            "exists" => Op::Exists,
            "not_exists" | "doesNotExist" => Op::NotExists,
            "_returnNegationCheck" => Op::NegationCheck,
            _ => return None,
        })
    }
}

/// A compiled rule element.
#[derive(Debug, Clone)]
enum Item {
    /// Structurally invalid or with an unknown operator: never matches.
    Never,
    Rule {
        key: Option<String>,
        op: Op,
        /// `exists` / `doesNotExist` by name: the only operators run on a missing key.
        runs_on_missing: bool,
        negated: bool,
        value: Option<Value>,
        regex: Option<Regex>,
    },
}

#[derive(Debug, Clone)]
enum Regex {
    Ok(regex::Regex),
    Unsupported(String),
}

/// An OR_WHEN block: its items, or `None` when structurally invalid.
type OrWhen = Option<Vec<Item>>;
/// An AND block: its OR_WHEN blocks, or `None` when structurally invalid.
type AndBlock = Option<Vec<OrWhen>>;

/// A compiled rule tree. Compiling never fails: a structurally invalid tree evaluates as the
/// reference does (false).
#[derive(Debug, Clone, Default)]
pub struct RuleSet {
    /// `None` when the top level is not a non-empty `OR` list.
    or: Option<Vec<AndBlock>>,
    exclusion: Option<ExclusionRule>,
}

fn non_empty_list<'a>(v: &'a Value, member: &str) -> Option<&'a Vec<Value>> {
    v.as_object()?
        .get(member)?
        .as_array()
        .filter(|a| !a.is_empty())
}

fn compile_item(raw: &Value) -> Item {
    let Some(obj) = raw.as_object() else {
        return Item::Never;
    };
    let Some(matching) = obj.get("matching").and_then(Value::as_object) else {
        return Item::Never;
    };
    let Some(match_type) = matching.get("match_type").and_then(Value::as_str) else {
        return Item::Never;
    };
    let Some(negated) = matching.get("negated").and_then(Value::as_bool) else {
        // The reference only accepts a boolean `negated`.
        return Item::Never;
    };
    let runs_on_missing = matches!(match_type, "exists" | "doesNotExist");
    let value = obj.get("value").cloned();
    if value.is_none() && !runs_on_missing {
        return Item::Never;
    }
    let Some(op) = Op::parse(match_type) else {
        return Item::Never;
    };
    let regex = (op == Op::RegexMatches).then(|| {
        let pattern = js::opt_to_js_string(value.as_ref()).into_owned();
        match compile_js_regex(&pattern) {
            Some(r) => Regex::Ok(r),
            None => Regex::Unsupported(pattern),
        }
    });
    Item::Rule {
        key: obj.get("key").and_then(Value::as_str).map(str::to_string),
        op,
        runs_on_missing,
        negated,
        value,
        regex,
    }
}

impl RuleSet {
    /// Compiles a raw rule tree (any JSON).
    pub fn compile(raw: &Value) -> RuleSet {
        let mut exclusion = None;
        let or = non_empty_list(raw, "OR").map(|ors| {
            ors.iter()
                .map(|and| {
                    non_empty_list(and, "AND").map(|blocks| {
                        blocks
                            .iter()
                            .map(|block| {
                                non_empty_list(block, "OR_WHEN").map(|items| {
                                    for it in items {
                                        if exclusion.is_none()
                                            && it.get("rule_type").and_then(Value::as_str)
                                                == Some("bucketed_into_experience_key")
                                        {
                                            exclusion = Some(ExclusionRule {
                                                target_key: js::opt_to_js_string(it.get("value"))
                                                    .into_owned(),
                                                negated: js::opt_truthy(
                                                    it.get("matching")
                                                        .and_then(|m| m.get("negated")),
                                                ),
                                            });
                                        }
                                    }
                                    items.iter().map(compile_item).collect()
                                })
                            })
                            .collect()
                    })
                })
                .collect()
        });
        RuleSet { or, exclusion }
    }

    /// Evaluates the tree against `data`.
    pub fn evaluate(&self, data: &dyn RuleData) -> RuleOutcome {
        let Some(ors) = &self.or else {
            return RuleOutcome::NotMatched;
        };
        // A map carrying `name: "RuleData"` is taken by the reference for a custom rule-data
        // object; a plain map has no getters, so nothing matches.
        let custom_marker = data
            .lookup("name")
            .is_some_and(|v| v.as_str() == Some("RuleData"));
        let mut last = RuleOutcome::NotMatched;
        for and in ors {
            let r = eval_and(and.as_deref(), data, custom_marker);
            if r == RuleOutcome::Matched {
                return r;
            }
            last = r;
        }
        match last {
            RuleOutcome::Error(_) => last,
            _ => RuleOutcome::NotMatched,
        }
    }

    /// The first `bucketed_into_experience_key` element, scanning OR → AND → OR_WHEN in order.
    pub fn exclusion_rule(&self) -> Option<&ExclusionRule> {
        self.exclusion.as_ref()
    }

    /// `regexMatches` patterns of this tree that the linear-time engine cannot run (those rules
    /// never match).
    pub fn unsupported_patterns(&self) -> Vec<&str> {
        let mut out = Vec::new();
        for and in self.or.iter().flatten().flatten() {
            for block in and.iter().flatten() {
                for item in block {
                    if let Item::Rule {
                        regex: Some(Regex::Unsupported(p)),
                        ..
                    } = item
                    {
                        out.push(p.as_str());
                    }
                }
            }
        }
        out
    }
}

fn eval_and(
    blocks: Option<&[Option<Vec<Item>>]>,
    data: &dyn RuleData,
    custom: bool,
) -> RuleOutcome {
    let Some(blocks) = blocks else {
        return RuleOutcome::NotMatched;
    };
    for block in blocks {
        let r = eval_or_when(block.as_deref(), data, custom);
        if r != RuleOutcome::Matched {
            return r;
        }
    }
    RuleOutcome::Matched
}

fn eval_or_when(items: Option<&[Item]>, data: &dyn RuleData, custom: bool) -> RuleOutcome {
    let Some(items) = items else {
        return RuleOutcome::NotMatched;
    };
    for item in items {
        if !custom && eval_item(item, data) {
            return RuleOutcome::Matched;
        }
    }
    RuleOutcome::NotMatched
}

fn eval_item(item: &Item, data: &dyn RuleData) -> bool {
    let Item::Rule {
        key,
        op,
        runs_on_missing,
        negated,
        value,
        regex,
    } = item
    else {
        return false;
    };
    let found = if data.is_empty() {
        None
    } else {
        key.as_deref().and_then(|k| data.lookup(k))
    };
    match found {
        Some(v) => apply(*op, Some(&v), value.as_ref(), *negated, regex.as_ref()),
        None if *runs_on_missing => apply(*op, None, value.as_ref(), *negated, regex.as_ref()),
        None => false,
    }
}

/// Applies comparison operator `method` to the visitor's `value` and the rule's `test` value
/// (`None` = JS undefined). An unknown method gives `false`.
pub fn compare(method: &str, value: Option<&Value>, test: Option<&Value>, negated: bool) -> bool {
    let Some(op) = Op::parse(method) else {
        return false;
    };
    let regex = (op == Op::RegexMatches).then(|| {
        let pattern = js::opt_to_js_string(test).into_owned();
        match compile_js_regex(&pattern) {
            Some(r) => Regex::Ok(r),
            None => Regex::Unsupported(pattern),
        }
    });
    apply(op, value, test, negated, regex.as_ref())
}

fn apply(
    op: Op,
    value: Option<&Value>,
    test: Option<&Value>,
    negated: bool,
    regex: Option<&Regex>,
) -> bool {
    let r = match op {
        Op::Equals => equals(value, test),
        Op::Less | Op::LessEqual => {
            // A type mismatch is false before negation (the reference returns early).
            return match less(value, test, op == Op::LessEqual) {
                Some(r) => r != negated,
                None => false,
            };
        }
        Op::Contains => {
            let t = lower(test);
            js::js_trim(&t).is_empty() || lower(value).contains(t.as_ref())
        }
        Op::IsIn => is_in(value, test),
        Op::StartsWith => lower(value).starts_with(lower(test).as_ref()),
        Op::EndsWith => lower(value).ends_with(lower(test).as_ref()),
        Op::RegexMatches => match regex {
            Some(Regex::Ok(re)) => re.is_match(&lower(value)),
            _ => false,
        },
        Op::Exists => exists(value),
        Op::NotExists => !exists(value),
        Op::NegationCheck => {
            let v = js::opt_truthy(value);
            if js::opt_truthy(test) { !v } else { v }
        }
    };
    r != negated
}

fn lower(v: Option<&Value>) -> Cow<'_, str> {
    let s = js::opt_to_js_string(v);
    if s.chars().any(|c| c.is_uppercase()) {
        Cow::Owned(s.to_lowercase())
    } else {
        s
    }
}

fn exists(v: Option<&Value>) -> bool {
    !matches!(v, None | Some(Value::Null)) && v != Some(&Value::String(String::new()))
}

fn equals(value: Option<&Value>, test: Option<&Value>) -> bool {
    match value {
        Some(Value::Array(items)) => {
            test.is_some_and(|t| items.iter().any(|i| crate::store::strict_eq(i, t)))
        }
        Some(Value::Object(m)) if !m.is_empty() => {
            m.contains_key(js::opt_to_js_string(test).as_ref())
        }
        _ => {
            let a = js::opt_to_js_string(value);
            let b = js::opt_to_js_string(test);
            if a.is_ascii() && b.is_ascii() {
                a.eq_ignore_ascii_case(&b)
            } else {
                a.to_lowercase() == b.to_lowercase()
            }
        }
    }
}

fn is_in(value: Option<&Value>, test: Option<&Value>) -> bool {
    let data = js::opt_to_js_string(value);
    let rule: Vec<String> = match test {
        Some(Value::String(s)) => s.split('|').map(str::to_lowercase).collect(),
        Some(Value::Array(a)) => a
            .iter()
            .map(|i| js::to_js_string(i).to_lowercase())
            .collect(),
        _ => Vec::new(),
    };
    data.split('|').any(|part| rule.iter().any(|r| r == part))
}

/// A JS value as the relational operators see it after `isNumeric`/`toNumber`.
#[derive(Debug, Clone, PartialEq)]
enum Rel<'a> {
    Undefined,
    Number(f64),
    Str(Cow<'a, str>),
    Bool(bool),
    /// `typeof` "object": null, arrays, objects.
    Object(&'a Value),
}

fn is_numeric_str(s: &str) -> bool {
    // ^-?(?:(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+)$
    let b = s.strip_prefix('-').unwrap_or(s).as_bytes();
    let digits =
        |b: &[u8], from: usize| b[from..].iter().take_while(|c| c.is_ascii_digit()).count();
    if b.first() == Some(&b'.') {
        let n = digits(b, 1);
        return n > 0 && 1 + n == b.len();
    }
    let lead = digits(b, 0);
    if lead == 0 {
        return false;
    }
    let mut i = lead;
    if i < b.len() && b[i] == b',' {
        if lead > 3 {
            return false;
        }
        while i < b.len() && b[i] == b',' {
            if digits(b, i + 1) < 3 || (i + 4 < b.len() && b[i + 4].is_ascii_digit()) {
                return false;
            }
            i += 4;
        }
    }
    if i < b.len() && b[i] == b'.' {
        let n = digits(b, i + 1);
        if n == 0 {
            return false;
        }
        i += 1 + n;
    }
    i == b.len()
}

fn comma_number(s: &str) -> f64 {
    let first = s.split(',').next().unwrap_or("");
    let normalized = if first == "0" {
        s.replace(',', ".")
    } else {
        s.replace(',', "")
    };
    js::parse_float(&normalized)
}

fn rel(v: Option<&Value>) -> Rel<'_> {
    match v {
        None => Rel::Undefined,
        Some(Value::Number(n)) => Rel::Number(n.as_f64().unwrap_or(f64::NAN)),
        Some(Value::String(s)) => {
            if is_numeric_str(s) && js::parse_float(&s.replace(',', "")).is_finite() {
                Rel::Number(comma_number(s))
            } else {
                Rel::Str(Cow::Borrowed(s))
            }
        }
        Some(Value::Bool(b)) => Rel::Bool(*b),
        Some(o) => Rel::Object(o),
    }
}

fn utf16_lt(a: &str, b: &str, or_equal: bool) -> bool {
    match a.encode_utf16().cmp(b.encode_utf16()) {
        std::cmp::Ordering::Less => true,
        std::cmp::Ordering::Equal => or_equal,
        std::cmp::Ordering::Greater => false,
    }
}

fn num_lt(a: f64, b: f64, or_equal: bool) -> bool {
    if or_equal { a <= b } else { a < b }
}

/// `value < test` (or `<=`) with the reference's coercions; `None` on a `typeof` mismatch.
fn less(value: Option<&Value>, test: Option<&Value>, or_equal: bool) -> Option<bool> {
    Some(match (rel(value), rel(test)) {
        (Rel::Number(a), Rel::Number(b)) => num_lt(a, b, or_equal),
        (Rel::Str(a), Rel::Str(b)) => utf16_lt(&a, &b, or_equal),
        (Rel::Bool(a), Rel::Bool(b)) => {
            num_lt(f64::from(u8::from(a)), f64::from(u8::from(b)), or_equal)
        }
        (Rel::Undefined, Rel::Undefined) => false,
        (Rel::Object(a), Rel::Object(b)) => {
            // ToPrimitive: null stays null, arrays join, objects give "[object Object]".
            let prim = |v: &Value| -> Option<String> {
                match v {
                    Value::Null => None,
                    other => Some(js::to_js_string(other).into_owned()),
                }
            };
            match (prim(a), prim(b)) {
                (Some(x), Some(y)) => utf16_lt(&x, &y, or_equal),
                (x, y) => {
                    let n = |p: Option<String>| p.map_or(0.0, |s| js::string_to_number(&s));
                    num_lt(n(x), n(y), or_equal)
                }
            }
        }
        _ => return None,
    })
}

/// Translates an ECMAScript pattern (no `u` flag) to the `regex` crate's syntax and compiles it
/// case-insensitively with bounded size. `None` when it cannot be run there.
fn compile_js_regex(pattern: &str) -> Option<regex::Regex> {
    const WS: &str = r"\t\n\x0B\x0C\r \x{A0}\x{1680}\x{2000}-\x{200A}\x{2028}\x{2029}\x{202F}\x{205F}\x{3000}\x{FEFF}";
    let chars: Vec<char> = pattern.chars().collect();
    let mut out = String::with_capacity(pattern.len() + 16);
    let mut i = 0;
    let mut in_class = false;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '\\' => {
                let next = *chars.get(i + 1)?;
                i += 2;
                match next {
                    'd' => out.push_str(if in_class { "0-9" } else { "[0-9]" }),
                    'w' => out.push_str(if in_class {
                        "A-Za-z0-9_"
                    } else {
                        "[A-Za-z0-9_]"
                    }),
                    's' => {
                        if in_class {
                            out.push_str(WS);
                        } else {
                            out.push('[');
                            out.push_str(WS);
                            out.push(']');
                        }
                    }
                    'D' | 'W' | 'S' if in_class => return None,
                    'D' => out.push_str("[^0-9]"),
                    'W' => out.push_str("[^A-Za-z0-9_]"),
                    'S' => {
                        out.push_str("[^");
                        out.push_str(WS);
                        out.push(']');
                    }
                    'b' if in_class => out.push_str(r"\x08"),
                    'b' => out.push_str(r"(?-u:\b)"),
                    'B' => out.push_str(r"(?-u:\B)"),
                    'v' => out.push_str(r"\x0B"),
                    'f' | 'n' | 'r' | 't' => {
                        out.push('\\');
                        out.push(next);
                    }
                    '0' => out.push_str(r"\x00"),
                    '1'..='9' | 'k' => return None, // backreferences need backtracking
                    'c' => {
                        let ctl = chars.get(i).filter(|c| c.is_ascii_alphabetic())?;
                        out.push_str(&format!(r"\x{:02X}", (*ctl as u32) % 32));
                        i += 1;
                    }
                    'x' => {
                        let h: String = chars.get(i..i + 2)?.iter().collect();
                        u8::from_str_radix(&h, 16).ok()?;
                        out.push_str(r"\x");
                        out.push_str(&h);
                        i += 2;
                    }
                    'u' => {
                        let h: String = chars.get(i..i + 4)?.iter().collect();
                        u16::from_str_radix(&h, 16).ok()?;
                        out.push_str(r"\x{");
                        out.push_str(&h);
                        out.push('}');
                        i += 4;
                    }
                    c if c.is_ascii_alphanumeric() => out.push(c), // identity escape
                    c => {
                        // Escaped punctuation stays escaped (or literal when the engine has no escape).
                        if regex_syntax_meta(c) {
                            out.push('\\');
                        }
                        out.push(c);
                    }
                }
                continue;
            }
            '[' if !in_class => {
                in_class = true;
                out.push('[');
                if chars.get(i + 1) == Some(&'^') {
                    out.push('^');
                    i += 1;
                }
                if chars.get(i + 1) == Some(&']') {
                    // `[]` matches nothing, `[^]` anything, in JS.
                    let negated = out.ends_with('^');
                    out.truncate(out.len() - if negated { 2 } else { 1 });
                    out.push_str(if negated { r"[\s\S]" } else { r"[^\s\S]" });
                    in_class = false;
                    i += 2;
                    continue;
                }
            }
            '[' => out.push_str(r"\["),
            ']' if in_class => {
                in_class = false;
                out.push(']');
            }
            '.' if !in_class => out.push_str(r"[^\n\r\x{2028}\x{2029}]"),
            '(' if !in_class && chars.get(i + 1) == Some(&'?') => {
                let rest: String = chars[i + 2..chars.len().min(i + 4)].iter().collect();
                if rest.starts_with('=')
                    || rest.starts_with('!')
                    || rest.starts_with("<=")
                    || rest.starts_with("<!")
                {
                    return None; // look-around
                }
                out.push('(');
            }
            '{' if !in_class => {
                // A literal brace unless it starts a valid quantifier `{n}`, `{n,}`, `{n,m}`.
                let rest: String = chars[i..].iter().collect();
                let is_quant = rest
                    .find('}')
                    .map(|end| &rest[1..end])
                    .is_some_and(|inner| {
                        let mut parts = inner.splitn(2, ',');
                        let a = parts.next().unwrap_or("");
                        let b = parts.next();
                        !a.is_empty()
                            && a.bytes().all(|c| c.is_ascii_digit())
                            && b.is_none_or(|b| b.bytes().all(|c| c.is_ascii_digit()))
                    });
                out.push_str(if is_quant { "{" } else { r"\{" });
            }
            '}' if !in_class => {
                // Closing brace of a quantifier we emitted, or a literal one.
                let opened = out
                    .rfind('{')
                    .filter(|&p| p == 0 || !out[..p].ends_with('\\'));
                let closes_quant = opened.is_some_and(|p| !out[p..].contains('}'));
                out.push_str(if closes_quant { "}" } else { r"\}" });
            }
            c => {
                if in_class && (c == '&' || c == '~' || c == '-' && chars.get(i + 1) == Some(&'-'))
                {
                    out.push('\\'); // set operators of the regex crate are literals in JS classes
                }
                out.push(c);
            }
        }
        i += 1;
    }
    if in_class {
        return None;
    }
    regex::RegexBuilder::new(&out)
        .case_insensitive(true)
        .size_limit(1 << 20)
        .dfa_size_limit(1 << 20)
        .nest_limit(64)
        .build()
        .ok()
}

fn regex_syntax_meta(c: char) -> bool {
    regex::escape(&c.to_string()).len() > c.len_utf8()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn c(method: &str, value: Value, test: Value, neg: bool) -> bool {
        compare(method, Some(&value), Some(&test), neg)
    }

    #[test]
    fn equals_family() {
        assert!(!c("equals", json!(["a", "B"]), json!("b"), false));
        assert!(!c("equals", json!(["1", 2]), json!("2"), false));
        assert!(c("equals", json!([1, 2]), json!(2), false));
        assert!(c("equals", json!({"x": 1}), json!("x"), false));
        assert!(c("equals", json!(true), json!("TRUE"), false));
        assert!(c("equals", json!(123), json!("123"), false));
        assert!(c("equals", json!(null), json!("null"), false));
        assert!(c("equals", json!({}), json!("[object Object]"), false));
        assert!(!c("equalsNumber", json!(10), json!("10.0"), false));
        assert!(c("equalsNumber", json!(10.0), json!("10"), false));
        assert!(c("matches", json!("ÄB"), json!("äb"), false));
        assert!(!c("matches", json!("x"), json!("x"), true));
    }

    #[test]
    fn less_family() {
        assert!(c("less", json!("122.5"), json!(123), false));
        assert!(c("less", json!("1,123.5"), json!(123), true));
        assert!(c("less", json!(123), json!(123), true));
        assert!(c("lessEqual", json!("1,124,000.5"), json!(1123.5), true));
        assert!(!c("less", json!("10"), json!("9"), false));
        assert!(!c("less", json!(" 5"), json!(10), false));
        assert!(!c("less", json!("orange"), json!(4), true));
        assert!(c("less", json!("abcde"), json!("axyz"), false));
        assert!(c("less", json!("0,500"), json!(1), false));
        assert!(c("lessEqual", json!(true), json!(true), false));
        assert!(!c("less", json!("1e3"), json!(2000), false));
        assert!(c("lessEqual", json!(null), json!(null), false));
        assert!(c("less", json!([1]), json!([2]), false));
        // UTF-16 order: U+FF5E sorts before U+1F600 (a surrogate pair starting 0xD83D)? No: 0xD83D < 0xFF5E.
        assert!(c("less", json!("😀"), json!("～"), false));
    }

    #[test]
    fn numeric_strings() {
        for s in [
            "1",
            "-1",
            "1.5",
            ".5",
            "-.5",
            "1,234",
            "1,234,567.89",
            "0,500",
            "12345",
        ] {
            assert!(is_numeric_str(s), "{s}");
        }
        for s in [
            "", "-", "1.", "1e3", " 1", "1 ", "+1", "1,23", "1234,567", "1,2345", ".", "1..2", "a",
        ] {
            assert!(!is_numeric_str(s), "{s}");
        }
    }

    #[test]
    fn string_family() {
        assert!(c("contains", json!(12345), json!(23), false));
        assert!(c("contains", json!("abc"), json!(""), false));
        assert!(c("contains", json!("abc"), json!(" \u{a0}"), false));
        assert!(c("contains", json!("ABC"), json!("b"), false));
        assert!(c("isIn", json!("a|c"), json!("a|b|c|d|e"), false));
        assert!(!c("isIn", json!("AB"), json!("ab|cd"), false));
        assert!(c("isIn", json!("ab"), json!("AB|CD"), false));
        assert!(c("isIn", json!(456), json!([123, 456, 789]), false));
        assert!(!c("isIn", json!(["ab", "cd"]), json!("ab"), false));
        assert!(!c("isIn", json!(456), json!({"foo": "bar"}), false));
        assert!(c("startsWith", json!("Hello"), json!("he"), false));
        assert!(c("startsWith", json!("Hello"), json!(""), false));
        assert!(c("endsWith", json!("Hello"), json!("LO"), false));
        assert!(!c("endsWith", json!("lo"), json!("hello"), false));
    }

    #[test]
    fn existence() {
        assert!(compare("exists", Some(&json!(0)), None, false));
        assert!(compare("exists", Some(&json!(false)), None, false));
        assert!(!compare("exists", Some(&json!("")), None, false));
        assert!(!compare("exists", Some(&json!(null)), None, false));
        assert!(!compare("exists", None, None, false));
        assert!(compare("doesNotExist", None, None, false));
        assert!(compare("not_exists", Some(&json!(null)), None, false));
        assert!(!compare("nope", Some(&json!(1)), Some(&json!(1)), false));
    }

    #[test]
    fn regexes() {
        assert!(c(
            "regexMatches",
            json!("Hello World"),
            json!("^hello\\s+w"),
            false
        ));
        assert!(c("regexMatches", json!("ab12"), json!("\\d{2}$"), false));
        assert!(c("regexMatches", json!("a{b"), json!("a{b"), false));
        assert!(c("regexMatches", json!("x"), json!("[]|x"), false));
        assert!(!c("regexMatches", json!("aa"), json!("(a)\\1"), false)); // backreference: unsupported
        assert!(!c("regexMatches", json!("ab"), json!("a(?=b)"), false)); // look-ahead: unsupported
        assert!(!c("regexMatches", json!("x"), json!("("), false)); // invalid
        assert!(c(
            "regexMatches",
            json!("line\nbreak"),
            json!("line.break"),
            true
        ));
        assert!(c("regexMatches", json!("A/B"), json!("a\\/b"), false));
        let rs = RuleSet::compile(&json!({"OR": [{"AND": [{"OR_WHEN": [
            {"key": "k", "matching": {"match_type": "regexMatches", "negated": false}, "value": "(x)\\1"}
        ]}]}]}));
        assert_eq!(rs.unsupported_patterns(), vec!["(x)\\1"]);
    }

    fn tree(items: Value) -> RuleSet {
        RuleSet::compile(&json!({"OR": [{"AND": [{"OR_WHEN": items}]}]}))
    }

    fn data(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn tree_structure_and_quirks() {
        let rule = |neg: Value| {
            tree(json!([{"rule_type": "generic_text_key_value", "key": "a",
                         "matching": {"match_type": "equals", "negated": neg}, "value": "x"}]))
        };
        assert!(
            rule(json!(false))
                .evaluate(&data(json!({"a": "X"})))
                .is_match()
        );
        // A negated rule on a missing key is false, not true.
        assert!(
            !rule(json!(true))
                .evaluate(&data(json!({"b": "y"})))
                .is_match()
        );
        // A non-boolean `negated` never matches.
        assert!(
            !rule(json!("false"))
                .evaluate(&data(json!({"a": "x"})))
                .is_match()
        );
        // Keys are case-sensitive.
        assert!(
            !rule(json!(false))
                .evaluate(&data(json!({"A": "x"})))
                .is_match()
        );
        // The RuleData marker.
        assert!(
            !rule(json!(false))
                .evaluate(&data(json!({"a": "x", "name": "RuleData"})))
                .is_match()
        );
        for bad in [
            json!(null),
            json!({}),
            json!({"OR": []}),
            json!({"OR": [{"AND": []}]}),
            json!({"OR": [{}]}),
        ] {
            assert!(
                !RuleSet::compile(&bad)
                    .evaluate(&data(json!({"a": "x"})))
                    .is_match(),
                "{bad}"
            );
        }
        let exists_missing = tree(
            json!([{"key": "z", "matching": {"match_type": "doesNotExist", "negated": false}}]),
        );
        assert!(exists_missing.evaluate(&data(json!({}))).is_match());
        let not_exists_missing =
            tree(json!([{"key": "z", "matching": {"match_type": "not_exists", "negated": false}}]));
        assert!(
            !not_exists_missing
                .evaluate(&data(json!({"a": 1})))
                .is_match()
        );
        let no_value =
            tree(json!([{"key": "a", "matching": {"match_type": "equals", "negated": false}}]));
        assert!(
            !no_value
                .evaluate(&data(json!({"a": "undefined"})))
                .is_match()
        );
    }

    #[test]
    fn and_or_combinations() {
        let r = |k: &str, v: &str| json!({"key": k, "matching": {"match_type": "equals", "negated": false}, "value": v});
        let t = RuleSet::compile(&json!({"OR": [
            {"AND": [{"OR_WHEN": [r("a", "1"), r("b", "2")]}, {"OR_WHEN": [r("c", "3")]}]},
            {"AND": [{"OR_WHEN": [r("d", "4")]}]}
        ]}));
        assert!(t.evaluate(&data(json!({"b": "2", "c": "3"}))).is_match());
        assert!(!t.evaluate(&data(json!({"b": "2"}))).is_match());
        assert!(t.evaluate(&data(json!({"d": 4}))).is_match());
    }

    #[test]
    fn exclusion_rule_is_found() {
        let t = RuleSet::compile(&json!({"OR": [{"AND": [{"OR_WHEN": [
            {"rule_type": "generic_text_key_value", "key": "x", "matching": {"match_type": "equals", "negated": false}, "value": "1"},
            {"rule_type": "bucketed_into_experience_key", "matching": {"match_type": "equals", "negated": true}, "value": "exp-a"}
        ]}]}]}));
        assert_eq!(
            t.exclusion_rule(),
            Some(&ExclusionRule {
                target_key: "exp-a".into(),
                negated: true
            })
        );
    }
}
