//! A compact JSON tree for the served config, read straight from the text.
//!
//! `serde_json::Value` allocates once per key, per string, per array and per object (a B-tree
//! node, or an index map). Loading the 1.7 MB benchmark config that way spent a third of its
//! instructions in `malloc`/`free`. A [`Tree`] keeps every array item in one `Vec` and every
//! object member in another (a container names a range of them), and keeps keys and strings up
//! to 23 bytes inline ([`Str`]): reading a config allocates a few growing
//! vectors and the long strings, and dropping it frees as much. The config model is built from
//! it through [`NodeRef`], and the served JSON is turned into `serde_json::Value` only for what
//! asks for it (rule values, feature variables, the `*_raw` accessors).
//!
//! [`Tree::parse`] reads text exactly as [`crate::js::json_parse`] does (`JSON.parse` semantics:
//! lone surrogate escapes become U+FFFD, numbers are correctly rounded doubles, integers that fit
//! 64 bits stay integers, a repeated key keeps its first position and its last value). It answers
//! `None` for anything it does not read exactly as that function does (any syntax error, a number
//! out of the double range, nesting deeper than `serde_json`'s limit): the caller then falls back
//! to [`crate::js::json_parse`], which gives the same result or the same error as before.

use crate::config::Str;
use crate::js;
use serde_json::{Map, Number, Value};
use std::borrow::Cow;

/// A value of a [`Tree`]. Arrays and objects name a range of the tree's items or members; object
/// members are in text order, without duplicates.
#[derive(Debug, Clone, PartialEq)]
enum Slot {
    Null,
    Bool(bool),
    Number(Number),
    String(Str),
    Array { start: u32, len: u32 },
    Object { start: u32, len: u32 },
}

/// A JSON value and everything under it.
#[derive(Debug, Clone)]
pub(crate) struct Tree {
    root: Slot,
    items: Vec<Slot>,
    members: Vec<(Str, Slot)>,
}

/// A value inside a [`Tree`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct NodeRef<'t> {
    tree: &'t Tree,
    slot: &'t Slot,
}

/// The items of an array of a [`Tree`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Items<'t> {
    tree: &'t Tree,
    slots: &'t [Slot],
}

/// The members of an object of a [`Tree`], in text order.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Members<'t> {
    tree: &'t Tree,
    slots: &'t [(Str, Slot)],
}

/// Iterator over [`Items`].
#[derive(Debug, Clone)]
pub(crate) struct ItemIter<'t> {
    tree: &'t Tree,
    slots: std::slice::Iter<'t, Slot>,
}

/// Nesting at which `serde_json` stops with "recursion limit exceeded" (128 arrays or objects).
pub(crate) const MAX_DEPTH: usize = 128;

/// Whether `v` nests arrays and objects as deep as the JSON text reader refuses (a container
/// at level [`MAX_DEPTH`], the root being level 1). Measured without recursion
/// ([`nesting_depth`](crate::tracking::nesting_depth)), so any depth is checked safely.
pub(crate) fn nested_too_deep(v: &Value) -> bool {
    crate::tracking::nesting_depth(v, MAX_DEPTH - 1) >= MAX_DEPTH
}

/// Objects with more members than this are checked for repeated keys with a hash set.
const SCAN_MEMBERS: usize = 16;

impl Tree {
    /// Parses JSON text as [`js::json_parse`] does, or `None` (see the module documentation).
    pub(crate) fn parse(text: &str) -> Option<Tree> {
        let mut p = Parser {
            text,
            b: text.as_bytes(),
            at: 0,
            item_pool: std::iter::repeat_with(Vec::new).take(MAX_DEPTH).collect(),
            member_pool: std::iter::repeat_with(Vec::new).take(MAX_DEPTH).collect(),
            fingerprints: Vec::new(),
            // Room for the members and items of a typical config (about one member per 30
            // bytes, one array item per 100), so that the vectors seldom grow and copy.
            items: Vec::with_capacity(text.len() / 100),
            members: Vec::with_capacity(text.len() / 30),
            scratch: String::new(),
            recent: Recent::new(),
        };
        let root = p.value(0)?;
        p.skip_ws();
        if p.at != p.b.len() {
            return None;
        }
        p.items.shrink_to_fit();
        p.members.shrink_to_fit();
        Some(Tree {
            root,
            items: p.items,
            members: p.members,
        })
    }

    /// The tree of a `serde_json::Value` (for configs handed over already parsed).
    pub(crate) fn from_value(v: &Value) -> Tree {
        let mut tree = Tree {
            root: Slot::Null,
            items: Vec::new(),
            members: Vec::new(),
        };
        tree.root = tree.slot_of(v);
        tree
    }

    /// An empty object.
    pub(crate) fn empty_object() -> Tree {
        Tree {
            root: Slot::Object { start: 0, len: 0 },
            items: Vec::new(),
            members: Vec::new(),
        }
    }

    fn slot_of(&mut self, v: &Value) -> Slot {
        match v {
            Value::Null => Slot::Null,
            Value::Bool(b) => Slot::Bool(*b),
            Value::Number(n) => Slot::Number(n.clone()),
            Value::String(s) => Slot::String(Str::new(s)),
            Value::Array(a) => {
                let slots: Vec<Slot> = a.iter().map(|v| self.slot_of(v)).collect();
                let (start, len) = (self.items.len(), slots.len());
                self.items.extend(slots);
                Slot::Array {
                    start: u32::try_from(start).unwrap_or(u32::MAX),
                    len: u32::try_from(len).unwrap_or(0),
                }
            }
            Value::Object(m) => {
                let slots: Vec<(Str, Slot)> = m
                    .iter()
                    .map(|(k, v)| (Str::new(k), self.slot_of(v)))
                    .collect();
                let (start, len) = (self.members.len(), slots.len());
                self.members.extend(slots);
                Slot::Object {
                    start: u32::try_from(start).unwrap_or(u32::MAX),
                    len: u32::try_from(len).unwrap_or(0),
                }
            }
        }
    }

    /// The root value.
    pub(crate) fn root(&self) -> NodeRef<'_> {
        NodeRef {
            tree: self,
            slot: &self.root,
        }
    }

    /// The tree of the root's member `key` (its arrays and objects stay where they are).
    pub(crate) fn into_member(self, key: &str) -> Option<Tree> {
        let slot = self.root().get(key)?.slot.clone();
        Some(Tree { root: slot, ..self })
    }

    fn items_of(&self, start: u32, len: u32) -> &[Slot] {
        let start = start as usize;
        self.items.get(start..start + len as usize).unwrap_or(&[])
    }

    fn members_of(&self, start: u32, len: u32) -> &[(Str, Slot)] {
        let start = start as usize;
        self.members.get(start..start + len as usize).unwrap_or(&[])
    }
}

impl<'t> NodeRef<'t> {
    /// Member `key` of an object (`None` for other values).
    pub(crate) fn get(self, key: &str) -> Option<NodeRef<'t>> {
        self.as_object()?.get(key)
    }

    pub(crate) fn as_str(self) -> Option<&'t str> {
        match self.slot {
            Slot::String(s) => Some(s),
            _ => None,
        }
    }

    pub(crate) fn as_bool(self) -> Option<bool> {
        match self.slot {
            Slot::Bool(b) => Some(*b),
            _ => None,
        }
    }

    pub(crate) fn as_number(self) -> Option<&'t Number> {
        match self.slot {
            Slot::Number(n) => Some(n),
            _ => None,
        }
    }

    pub(crate) fn is_null(self) -> bool {
        matches!(self.slot, Slot::Null)
    }

    pub(crate) fn as_array(self) -> Option<Items<'t>> {
        match self.slot {
            Slot::Array { start, len } => Some(Items {
                tree: self.tree,
                slots: self.tree.items_of(*start, *len),
            }),
            _ => None,
        }
    }

    pub(crate) fn as_object(self) -> Option<Members<'t>> {
        match self.slot {
            Slot::Object { start, len } => Some(Members {
                tree: self.tree,
                slots: self.tree.members_of(*start, *len),
            }),
            _ => None,
        }
    }

    /// What kind of JSON value this is, for messages (as [`crate::config::type_name`]).
    pub(crate) fn type_name(self) -> &'static str {
        match self.slot {
            Slot::Null => "null",
            Slot::Bool(_) => "a boolean",
            Slot::Number(_) => "a number",
            Slot::String(_) => "a string",
            Slot::Array { .. } => "an array",
            Slot::Object { .. } => "an object",
        }
    }

    /// JS truthiness, as [`js::truthy`].
    pub(crate) fn truthy(self) -> bool {
        match self.slot {
            Slot::Null => false,
            Slot::Bool(b) => *b,
            Slot::Number(n) => {
                let f = js::number_f64(n);
                f != 0.0 && !f.is_nan()
            }
            Slot::String(s) => !s.is_empty(),
            Slot::Array { .. } | Slot::Object { .. } => true,
        }
    }

    /// JS `String(v)`, as [`js::to_js_string`].
    pub(crate) fn js_string(self) -> Cow<'t, str> {
        match self.slot {
            Slot::String(s) => Cow::Borrowed(s),
            Slot::Number(n) => Cow::Owned(js::NumberStr::new(js::number_f64(n)).as_str().into()),
            Slot::Null => Cow::Borrowed("null"),
            Slot::Bool(true) => Cow::Borrowed("true"),
            Slot::Bool(false) => Cow::Borrowed("false"),
            Slot::Object { .. } => Cow::Borrowed("[object Object]"),
            Slot::Array { .. } => Cow::Owned(js::to_js_string(&self.to_value()).into_owned()),
        }
    }

    /// The same value as a `serde_json::Value` (what [`js::json_parse`] gives for its text).
    pub(crate) fn to_value(self) -> Value {
        match self.slot {
            Slot::Null => Value::Null,
            Slot::Bool(b) => Value::Bool(*b),
            Slot::Number(n) => Value::Number(n.clone()),
            Slot::String(s) => Value::String(s.as_str().to_owned()),
            Slot::Array { .. } => Value::Array(
                self.as_array()
                    .map(|a| a.iter().map(NodeRef::to_value).collect())
                    .unwrap_or_default(),
            ),
            Slot::Object { .. } => {
                let mut map = Map::new();
                for (k, v) in self.as_object().into_iter().flat_map(Members::iter) {
                    map.insert(k.to_owned(), v.to_value());
                }
                Value::Object(map)
            }
        }
    }
}

impl<'t> Items<'t> {
    pub(crate) fn len(self) -> usize {
        self.slots.len()
    }

    pub(crate) fn is_empty(self) -> bool {
        self.slots.is_empty()
    }

    pub(crate) fn get(self, i: usize) -> Option<NodeRef<'t>> {
        self.slots.get(i).map(|slot| NodeRef {
            tree: self.tree,
            slot,
        })
    }

    pub(crate) fn iter(self) -> ItemIter<'t> {
        ItemIter {
            tree: self.tree,
            slots: self.slots.iter(),
        }
    }
}

impl<'t> Iterator for ItemIter<'t> {
    type Item = NodeRef<'t>;

    fn next(&mut self) -> Option<NodeRef<'t>> {
        let slot = self.slots.next()?;
        Some(NodeRef {
            tree: self.tree,
            slot,
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.slots.size_hint()
    }
}

impl ExactSizeIterator for ItemIter<'_> {}

impl<'t> Members<'t> {
    pub(crate) fn len(self) -> usize {
        self.slots.len()
    }

    /// Member `key` (the first with that name).
    pub(crate) fn get(self, key: &str) -> Option<NodeRef<'t>> {
        self.slots
            .iter()
            .find(|(k, _)| k.as_str() == key)
            .map(|(_, slot)| NodeRef {
                tree: self.tree,
                slot,
            })
    }

    /// `(key, value)` in text order.
    pub(crate) fn iter(self) -> impl Iterator<Item = (&'t str, NodeRef<'t>)> {
        self.slots.iter().map(move |(k, slot)| {
            (
                k.as_str(),
                NodeRef {
                    tree: self.tree,
                    slot,
                },
            )
        })
    }
}

impl<'t> crate::rules::RuleJson<'t> for NodeRef<'t> {
    type Items = ItemIter<'t>;

    fn member(self, key: &str) -> Option<NodeRef<'t>> {
        self.get(key)
    }
    fn items(self) -> Option<ItemIter<'t>> {
        self.as_array().map(Items::iter)
    }
    fn is_object(self) -> bool {
        matches!(self.slot, Slot::Object { .. })
    }
    fn text(self) -> Option<&'t str> {
        self.as_str()
    }
    fn boolean(self) -> Option<bool> {
        self.as_bool()
    }
    fn value(self) -> Cow<'t, Value> {
        Cow::Owned(self.to_value())
    }
}

/// Whether `a` and `b` are the same JSON value, as `serde_json::Value`'s `==` says: member order
/// does not count, numbers compare by kind and value.
pub(crate) fn same(a: NodeRef<'_>, b: NodeRef<'_>) -> bool {
    match (a.slot, b.slot) {
        (Slot::Array { .. }, Slot::Array { .. }) => {
            let (Some(x), Some(y)) = (a.as_array(), b.as_array()) else {
                return false;
            };
            x.len() == y.len() && x.iter().zip(y.iter()).all(|(p, q)| same(p, q))
        }
        (Slot::Object { .. }, Slot::Object { .. }) => {
            let (Some(x), Some(y)) = (a.as_object(), b.as_object()) else {
                return false;
            };
            if x.len() != y.len() {
                return false;
            }
            // Same order (the usual case: the same text served twice) costs one pass.
            if x.iter().zip(y.iter()).all(|((k, _), (l, _))| k == l) {
                return x.iter().zip(y.iter()).all(|((_, p), (_, q))| same(p, q));
            }
            let by_key: std::collections::HashMap<&str, NodeRef<'_>> = y.iter().collect();
            x.iter()
                .all(|(k, p)| by_key.get(k).is_some_and(|q| same(p, *q)))
        }
        (Slot::Array { .. } | Slot::Object { .. }, _)
        | (_, Slot::Array { .. } | Slot::Object { .. }) => false,
        (x, y) => x == y,
    }
}

struct Parser<'t> {
    text: &'t str,
    b: &'t [u8],
    at: usize,
    /// The items of the array being read at each depth, moved to `items` in one copy when it
    /// closes (the vectors keep their room for the next array at that depth).
    item_pool: Vec<Vec<Slot>>,
    /// The members of the object being read at each depth, likewise.
    member_pool: Vec<Vec<(Str, Slot)>>,
    /// The [`fingerprint`] of each key of the objects being read.
    fingerprints: Vec<u64>,
    /// Items of the arrays read so far.
    items: Vec<Slot>,
    /// Members of the objects read so far.
    members: Vec<(Str, Slot)>,
    /// Decoded text of a string with escapes.
    scratch: String,
    /// Strings read lately.
    recent: Recent,
}

/// Short strings read lately, by a hash of their bytes. Keys and many values repeat throughout a
/// config (`"id"`, `"rules"`, `"equals"`): a repeat is a copy of the stored [`Str`] instead of a
/// new one. Both are inline (no allocation), but copying a built `SmolStr` is cheaper than
/// `SmolStr::new` building one: its construction was 17 % of the load's time in a profile.
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

    fn literal(&mut self, word: &[u8], slot: Slot) -> Option<Slot> {
        if self.b.get(self.at..self.at + word.len())? == word {
            self.at += word.len();
            Some(slot)
        } else {
            None
        }
    }

    /// Reads a value.
    fn value(&mut self, depth: usize) -> Option<Slot> {
        self.skip_ws();
        Some(match self.peek()? {
            b'{' => self.object(depth + 1)?,
            b'[' => self.array(depth + 1)?,
            b'"' => Slot::String(self.string()?),
            b't' => self.literal(b"true", Slot::Bool(true))?,
            b'f' => self.literal(b"false", Slot::Bool(false))?,
            b'n' => self.literal(b"null", Slot::Null)?,
            b'-' | b'0'..=b'9' => Slot::Number(self.number()?),
            _ => return None,
        })
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

    /// After an item or member: past a comma (`false`) or past `close` (`true`).
    fn closes(&mut self, close: u8) -> Option<bool> {
        self.skip_ws();
        let c = self.peek()?;
        if c != b',' && c != close {
            return None;
        }
        self.at += 1;
        Some(c == close)
    }

    fn array(&mut self, depth: usize) -> Option<Slot> {
        if self.open(depth, b']')? {
            return Some(Slot::Array { start: 0, len: 0 });
        }
        let mut mine = std::mem::take(self.item_pool.get_mut(depth)?);
        loop {
            let v = self.value(depth)?;
            mine.push(v);
            if self.closes(b']')? {
                break;
            }
        }
        let first = u32::try_from(self.items.len()).ok()?;
        let len = u32::try_from(mine.len()).ok()?;
        self.items.append(&mut mine);
        *self.item_pool.get_mut(depth)? = mine;
        Some(Slot::Array { start: first, len })
    }

    fn object(&mut self, depth: usize) -> Option<Slot> {
        if self.open(depth, b'}')? {
            return Some(Slot::Object { start: 0, len: 0 });
        }
        let mut mine = std::mem::take(self.member_pool.get_mut(depth)?);
        let fingerprints = self.fingerprints.len();
        loop {
            self.skip_ws();
            if self.peek()? != b'"' {
                return None;
            }
            let key = self.string()?;
            self.fingerprints.push(fingerprint(key.as_bytes()));
            self.skip_ws();
            if self.peek()? != b':' {
                return None;
            }
            self.at += 1;
            let v = self.value(depth)?;
            mine.push((key, v));
            if self.closes(b'}')? {
                break;
            }
        }
        let first = self.members.len();
        let repeated = maybe_repeated(&self.fingerprints[fingerprints..]);
        self.fingerprints.truncate(fingerprints);
        self.members.append(&mut mine);
        *self.member_pool.get_mut(depth)? = mine;
        if repeated {
            dedup(&mut self.members, first);
        }
        let len = u32::try_from(self.members.len() - first).ok()?;
        let first = u32::try_from(first).ok()?;
        Some(Slot::Object { start: first, len })
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
        if arbitrary_precision() {
            // `js::json_parse` keeps each number's text then (see `json::parse_value`).
            return serde_json::from_str(token).ok();
        }
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

/// A key's length and its first, middle and last bytes: equal keys have equal fingerprints, and
/// the keys of one object seldom share one, so looking for repeated keys compares these first.
fn fingerprint(key: &[u8]) -> u64 {
    let byte = |i: usize| u64::from(key.get(i).copied().unwrap_or(0));
    let n = key.len();
    ((n as u64) << 24) | (byte(0) << 16) | (byte(n / 2) << 8) | byte(n.wrapping_sub(1))
}

/// Whether the program enables `serde_json`'s `arbitrary_precision` feature (someone else's
/// choice: features unify), under which a `Number` keeps its text.
fn arbitrary_precision() -> bool {
    static KEEPS_TEXT: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    // Only a number kept as text can be out of the double range.
    *KEEPS_TEXT.get_or_init(|| serde_json::from_str::<Number>("1e400").is_ok())
}

/// Whether keys with these [`fingerprint`]s may repeat.
fn maybe_repeated(fingerprints: &[u64]) -> bool {
    if fingerprints.len() <= SCAN_MEMBERS {
        fingerprints
            .iter()
            .enumerate()
            .any(|(i, f)| fingerprints[..i].contains(f))
    } else {
        let mut seen = std::collections::HashSet::with_capacity(fingerprints.len());
        !fingerprints.iter().all(|f| seen.insert(*f))
    }
}

/// Merges the repeated keys of `members[start..]` as `JSON.parse` does: first position, last
/// value.
fn dedup(members: &mut Vec<(Str, Slot)>, start: usize) {
    let mut first: std::collections::HashMap<Str, usize> = std::collections::HashMap::new();
    let mut out: Vec<(Str, Slot)> = Vec::with_capacity(members.len() - start);
    for (k, v) in members.drain(start..) {
        match first.get(&k) {
            Some(&p) => out[p].1 = v,
            None => {
                first.insert(k.clone(), out.len());
                out.push((k, v));
            }
        }
    }
    members.extend(out);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_value(text: &str) -> Option<Value> {
        Tree::parse(text).map(|t| t.root().to_value())
    }

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
            let ours = parse_value(text);
            let theirs = js::json_parse(text).ok();
            assert_eq!(ours, theirs, "{text:?}");
        }
    }

    #[test]
    fn numbers_keep_serde_jsons_kind() {
        for text in ["-0", "0", "7", "-7", "1e2", "-9223372036854775808"] {
            let ours = parse_value(text);
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
            let tree = Tree::parse(&text);
            let members: Vec<(&str, NodeRef<'_>)> = tree
                .as_ref()
                .and_then(|t| t.root().as_object())
                .map(|m| m.iter().collect())
                .unwrap_or_default();
            let want: Vec<(String, i64)> = (0..n.min(20))
                .map(|i| {
                    let last = if n > 20 { i + 20 } else { i };
                    (format!("k{i}"), i64::try_from(last).unwrap_or(0))
                })
                .collect();
            let got: Vec<(String, i64)> = members
                .iter()
                .map(|(k, v)| {
                    let n = v.as_number().and_then(Number::as_i64).unwrap_or(-1);
                    (k.to_string(), n)
                })
                .collect();
            assert_eq!(got, want, "{n} members");
            assert_eq!(parse_value(&text), js::json_parse(&text).ok());
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
            let tree = Tree::parse(&text);
            assert_eq!(
                tree.as_ref()
                    .and_then(|t| t.root().as_object())
                    .map(Members::len),
                Some(n)
            );
            assert_eq!(parse_value(&text), js::json_parse(&text).ok(), "{n}");
        }
    }

    #[test]
    fn nesting_stops_where_serde_json_stops() {
        for depth in [1, 127, 128, 129, 300] {
            let text = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
            let ours = parse_value(&text);
            if ours.is_some() {
                assert_eq!(ours, js::json_parse(&text).ok(), "{depth}");
            }
            assert_eq!(ours.is_some(), depth < 128, "{depth}");
        }
    }

    #[test]
    fn same_ignores_member_order_only() {
        let node = |t: &str| Tree::parse(t).unwrap_or_else(Tree::empty_object);
        let a = node(r#"{"a":1,"b":[{"c":2,"d":3}]}"#);
        assert!(same(
            a.root(),
            node(r#"{"b":[{"d":3,"c":2}],"a":1}"#).root()
        ));
        assert!(!same(
            a.root(),
            node(r#"{"a":1,"b":[{"c":2,"d":4}]}"#).root()
        ));
        assert!(!same(
            a.root(),
            node(r#"{"a":1.0,"b":[{"c":2,"d":3}]}"#).root()
        ));
        assert!(!same(
            a.root(),
            node(r#"{"a":1,"e":[{"c":2,"d":3}]}"#).root()
        ));
        assert!(!same(a.root(), node(r#"{"a":1}"#).root()));
    }

    #[test]
    fn values_round_trip() {
        let text = r#"{"a":[1,-2,3.5,"x",null,true,{"b":{}}],"long":"a string longer than twenty-three bytes"}"#;
        let v = js::json_parse(text).unwrap_or_default();
        assert_eq!(Tree::from_value(&v).root().to_value(), v);
        assert_eq!(parse_value(text), Some(v));
    }
    /// Arbitrary JSON text: a serialized random value (compact or pretty), then zero to two
    /// random edits with bytes that matter to a JSON reader (quotes, escapes, surrogate escapes,
    /// brackets, digits, exponents, control characters).
    fn json_text() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(|f| Number::from_f64(f).map_or(Value::Null, Value::Number)),
            "\\PC{0,30}".prop_map(Value::String),
            "[\\x00-\\x1f\"\\\\a\u{e9}]{0,6}".prop_map(Value::String),
        ];
        let key = prop_oneof!["[a-z]{1,3}", "\\PC{0,9}"];
        let value = leaf.prop_recursive(4, 48, 6, move |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::vec((key.clone(), inner), 0..6)
                    .prop_map(|pairs| Value::Object(pairs.into_iter().collect::<Map<_, _>>())),
            ]
        });
        let piece = prop_oneof![
            Just("\\"),
            Just("\""),
            Just("\\ud800"),
            Just("\\uDC00"),
            Just("\\u00"),
            Just("e"),
            Just("-"),
            Just("0"),
            Just("."),
            Just(","),
            Just(":"),
            Just("["),
            Just("]"),
            Just("{"),
            Just("}"),
            Just(" "),
            Just("\u{1}"),
            Just("e400"),
            Just("null"),
        ];
        let edit = (any::<prop::sample::Index>(), any::<bool>(), piece);
        (value, any::<bool>(), prop::collection::vec(edit, 0..3)).prop_map(|(v, pretty, edits)| {
            let mut text = if pretty {
                serde_json::to_string_pretty(&v)
            } else {
                serde_json::to_string(&v)
            }
            .unwrap_or_default();
            for (at, replace, piece) in edits {
                let bounds: Vec<usize> = (0..=text.len())
                    .filter(|&i| text.is_char_boundary(i))
                    .collect();
                let start = bounds[at.index(bounds.len())];
                let end = if replace {
                    bounds.iter().copied().find(|&e| e > start).unwrap_or(start)
                } else {
                    start
                };
                text.replace_range(start..end, piece);
            }
            text
        })
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]

        /// Whatever the tree reads, `js::json_parse` reads the same; text the tree refuses is
        /// left to `js::json_parse` (the caller falls back to it), but valid JSON from serde_json
        /// is always read.
        #[test]
        fn random_text_reads_as_json_parse_reads_it(text in json_text()) {
            let ours = parse_value(&text);
            let theirs = js::json_parse(&text).ok();
            if ours.is_some() {
                proptest::prop_assert_eq!(ours, theirs, "{:?}", text);
            } else {
                proptest::prop_assert!(
                    theirs.is_none() || text.contains("e400"),
                    "refused {:?}",
                    text
                );
            }
        }
    }
}
