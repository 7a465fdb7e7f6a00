//! A backtracking matcher written to ECMAScript's own pattern semantics (ECMA-262 §22.2.2), for
//! the `regexMatches` patterns that the linear-time engine cannot run: look-ahead, look-behind,
//! backreferences, and programs too large for it.
//!
//! Only what `new RegExp(p, "i")` means is implemented: non-Unicode mode (the subject and the
//! pattern are UTF-16 code units), Annex B syntax, the `i` flag, no `m`, `s`, `y` or `g`. The
//! parser follows the grammar of Annex B.1.2 and its early errors; the matcher follows the
//! specification's matchers one for one, compiled to a small program run with an explicit
//! backtracking stack:
//!
//! * a quantified atom resets the captures inside it at each iteration, and an optional
//!   iteration that matches the empty string fails (`RepeatMatcher`);
//! * look-behind bodies are matched backwards, from right to left, backreferences included;
//! * a look-around is atomic: once its body matched, its alternatives are forgotten, and the
//!   captures of a positive one stay set;
//! * a backreference to a group that has not captured matches the empty string;
//! * characters are compared through `Canonicalize` (upper-casing of single code units, never
//!   from non-ASCII to ASCII), character classes by the canonical forms of their members;
//! * `\w`, `\b` are ASCII, `\s` is the JS white space and line terminator set, `.` excludes the
//!   four line terminators.
//!
//! Every instruction run, and every code unit a repetition, a backreference or the scan for a
//! start position reads, counts one step against the caller's budget, and the stacks are bounded
//! too: a search that would go past either stops and reports it, so no pattern or input can run
//! unbounded.

use std::sync::OnceLock;

/// Groups nested deeper than this are not compiled (parsing, compiling and look-around nesting
/// recurse once per level).
pub(crate) const MAX_DEPTH: usize = 200;

/// Entries the backtracking and undo stacks may hold together in one search; past it the search
/// stops as over budget (20 MiB at most: a frame takes 20 bytes, an undo entry 8).
const MAX_STACK: usize = 1 << 20;

/// Why a pattern is not compiled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ParseError {
    /// JavaScript rejects the pattern (`new RegExp` throws a `SyntaxError`).
    Syntax,
    /// Nested deeper than [`MAX_DEPTH`]: accepted by JavaScript, not run here.
    TooDeep,
}

/// The result of a search.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Search {
    /// Whether the pattern matched somewhere.
    Done(bool),
    /// The step budget or the stack bound was reached first.
    OverBudget,
}

// ---- canonical forms ----------------------------------------------------------------------------

/// Per code unit: its `Canonicalize` (non-Unicode, ignore case) and the next unit with the same
/// canonical form (a cycle through the units that match each other; a unit alone points to
/// itself). Built once per process, when the matcher parses its first pattern (256 KiB, about 8.5
/// million instructions).
struct Folding {
    canon: Vec<u16>,
    next: Vec<u16>,
}

fn folding() -> &'static Folding {
    static FOLDING: OnceLock<Folding> = OnceLock::new();
    FOLDING.get_or_init(|| {
        let canon: Vec<u16> = (0..=0xFFFFu32).map(canonicalize).collect();
        let mut next: Vec<u16> = (0..=0xFFFFu16).collect();
        let mut first = vec![u32::MAX; 1 << 16];
        let mut last = vec![u32::MAX; 1 << 16];
        for u in 0..=0xFFFFu16 {
            let c = usize::from(canon[usize::from(u)]);
            if last[c] == u32::MAX {
                first[c] = u32::from(u);
            } else {
                next[last[c] as usize] = u;
            }
            last[c] = u32::from(u);
        }
        for c in 0..1 << 16 {
            if last[c] != u32::MAX {
                next[last[c] as usize] = first[c] as u16;
            }
        }
        Folding { canon, next }
    })
}

/// ECMAScript `Canonicalize(rer, ch)` without the `u` and `v` flags, with ignore case: the code
/// unit upper-cased, unless that gives several characters, or leaves the BMP, or maps a
/// non-ASCII unit to ASCII.
pub(crate) fn canonicalize(u: u32) -> u16 {
    let same = u as u16;
    let Some(c) = char::from_u32(u) else {
        return same; // a surrogate
    };
    let mut up = c.to_uppercase();
    match (up.next(), up.next()) {
        (Some(r), None) => {
            let r = r as u32;
            if r > 0xFFFF || (u >= 128 && r < 128) {
                same
            } else {
                r as u16
            }
        }
        _ => same,
    }
}

fn is_word(u: u16) -> bool {
    matches!(u, 0x30..=0x39 | 0x41..=0x5A | 0x61..=0x7A | 0x5F)
}

fn is_line_terminator(u: u16) -> bool {
    matches!(u, 0x0A | 0x0D | 0x2028 | 0x2029)
}

// ---- character classes --------------------------------------------------------------------------

/// A set of code units as sorted, disjoint, non-adjacent ranges.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Ranges(Vec<(u16, u16)>);

impl Ranges {
    fn of(list: &[(u16, u16)]) -> Ranges {
        let mut r = Ranges::default();
        for &(a, b) in list {
            r.add(a, b);
        }
        r
    }

    fn add(&mut self, a: u16, b: u16) {
        self.0.push((a, b));
    }

    fn extend(&mut self, other: &Ranges) {
        self.0.extend_from_slice(&other.0);
    }

    /// Sorts and merges.
    fn normalize(&mut self) {
        self.0.sort_unstable();
        let mut out: Vec<(u16, u16)> = Vec::with_capacity(self.0.len());
        for &(a, b) in &self.0 {
            match out.last_mut() {
                Some(last) if u32::from(a) <= u32::from(last.1) + 1 => last.1 = last.1.max(b),
                _ => out.push((a, b)),
            }
        }
        self.0 = out;
    }

    fn complement(&self) -> Ranges {
        let mut out = Vec::new();
        let mut from = 0u32;
        for &(a, b) in &self.0 {
            if u32::from(a) > from {
                out.push((from as u16, a - 1));
            }
            from = u32::from(b) + 1;
        }
        if from <= 0xFFFF {
            out.push((from as u16, 0xFFFF));
        }
        Ranges(out)
    }

    fn contains(&self, u: u16) -> bool {
        // Most classes have a few ranges: a scan beats the binary search there.
        if self.0.len() <= 8 {
            return self.0.iter().any(|&(a, b)| a <= u && u <= b);
        }
        let i = self.0.partition_point(|&(_, b)| b < u);
        self.0.get(i).is_some_and(|&(a, _)| a <= u)
    }
}

fn digits() -> Ranges {
    Ranges::of(&[(0x30, 0x39)])
}

fn words() -> Ranges {
    Ranges::of(&[(0x30, 0x39), (0x41, 0x5A), (0x5F, 0x5F), (0x61, 0x7A)])
}

/// `\s`: the units [`crate::js::is_js_whitespace`] accepts (white space and line terminators),
/// read from it once.
fn spaces() -> Ranges {
    static SPACES: OnceLock<Ranges> = OnceLock::new();
    SPACES
        .get_or_init(|| {
            let mut r = Ranges::default();
            for unit in 0..=0xFFFFu16 {
                if char::from_u32(u32::from(unit)).is_some_and(crate::js::is_js_whitespace) {
                    r.add(unit, unit);
                }
            }
            r.normalize();
            r
        })
        .clone()
}

/// A compiled character class: whether a subject unit belongs to it, through canonical forms.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Class {
    ranges: Ranges,
    negated: bool,
}

impl Class {
    /// `CharacterSetMatcher` with ignore case: some member has the unit's canonical form.
    fn matches(&self, u: u16, f: &Folding) -> bool {
        let mut found = self.ranges.contains(u);
        if !found {
            let mut e = f.next[usize::from(u)];
            while e != u {
                if self.ranges.contains(e) {
                    found = true;
                    break;
                }
                e = f.next[usize::from(e)];
            }
        }
        found != self.negated
    }
}

// ---- syntax tree --------------------------------------------------------------------------------

#[derive(Debug)]
enum Node {
    Empty,
    /// A code unit, as its canonical form.
    Unit(u16),
    Any,
    Class(usize),
    Start,
    End,
    /// `\b` (false) or `\B` (true).
    WordBoundary(bool),
    Seq(Vec<Node>),
    Alt(Vec<Node>),
    /// A capturing group (its number) or a non-capturing one.
    Group(Option<usize>, Box<Node>),
    Look {
        ahead: bool,
        negate: bool,
        body: Box<Node>,
    },
    Repeat {
        body: Box<Node>,
        min: u32,
        /// `None`: no upper bound.
        max: Option<u32>,
        greedy: bool,
        /// The first capturing group inside `body` and how many there are.
        groups: (usize, usize),
    },
    BackRef(usize),
}

// ---- parser -------------------------------------------------------------------------------------

const fn u(c: char) -> u16 {
    c as u16
}

struct Parser<'p> {
    s: &'p [u16],
    i: usize,
    /// Capturing groups in the whole pattern (for `\N` and Annex B octal escapes).
    total_groups: usize,
    /// Named groups of the whole pattern.
    names: Names,
    /// Groups opened so far.
    opened: usize,
    classes: Vec<Class>,
}

type Parsed<T> = Result<T, ParseError>;

/// Group names (decoded) with their group numbers.
pub(crate) type Names = Vec<(String, usize)>;

fn is_hex(c: u16) -> bool {
    matches!(c, 0x30..=0x39 | 0x41..=0x46 | 0x61..=0x66)
}

fn hex(c: u16) -> u32 {
    match c {
        0x30..=0x39 => u32::from(c - 0x30),
        0x41..=0x46 => u32::from(c - 0x41 + 10),
        _ => u32::from(c - 0x61 + 10),
    }
}

fn is_digit(c: u16) -> bool {
    (0x30..=0x39).contains(&c)
}

fn is_ascii_letter(c: u16) -> bool {
    matches!(c, 0x41..=0x5A | 0x61..=0x7A)
}

/// A group name, read after the `<` of `(?<` or `\k<` from code units, as both engines read
/// it: the name decoded (`\uXXXX` and `\u{…}` escapes, surrogate pairs joined) and the number of
/// units read, the closing `>` included. `None` when JavaScript rejects it: an empty name, a bad
/// escape, a lone surrogate, or a character that cannot start or continue an identifier
/// (alphabetic, `$` or `_` first; then alphanumeric, `$`, `_`, U+200C or U+200D).
pub(crate) fn group_name(units: impl IntoIterator<Item = u32>) -> Option<(String, usize)> {
    let mut it = units.into_iter();
    let mut read = 0;
    let mut next = || {
        read += 1;
        it.next()
    };
    let hex = |c: u32| char::from_u32(c).and_then(|c| c.to_digit(16));
    let mut points: Vec<u32> = Vec::new();
    loop {
        let c = next()?;
        if c == u32::from(b'>') {
            break;
        }
        if c != u32::from(b'\\') {
            points.push(c);
            continue;
        }
        if next()? != u32::from(b'u') {
            return None;
        }
        let first = next()?;
        let value = if first == u32::from(b'{') {
            let mut v: u32 = 0;
            let mut digits = 0;
            loop {
                let d = next()?;
                if d == u32::from(b'}') && digits > 0 {
                    break v;
                }
                v = v.checked_mul(16)?.checked_add(hex(d)?)?;
                digits += 1;
                if v > 0x10FFFF {
                    return None;
                }
            }
        } else {
            let mut v = hex(first)?;
            for _ in 0..3 {
                v = v * 16 + hex(next()?)?;
            }
            v
        };
        points.push(value);
    }
    let mut name = String::new();
    let mut i = 0;
    while i < points.len() {
        let p = points[i];
        let joined = match points.get(i + 1) {
            Some(&t) if (0xD800..0xDC00).contains(&p) && (0xDC00..0xE000).contains(&t) => {
                i += 1;
                0x10000 + ((p - 0xD800) << 10) + (t - 0xDC00)
            }
            _ => p,
        };
        name.push(char::from_u32(joined)?);
        i += 1;
    }
    let mut chars = name.chars();
    let valid = chars
        .next()
        .is_some_and(|c| c.is_alphabetic() || c == '$' || c == '_')
        && chars.all(|c| c.is_alphanumeric() || matches!(c, '$' | '_' | '\u{200C}' | '\u{200D}'));
    valid.then_some((name, read))
}

/// The Annex B legacy octal escape at the start of `s` (its first digit, 0 to 7; `s` holds code
/// units, or the translator's characters): up to three digits, at most 0o377. Its value and the
/// number of digits read.
pub(crate) fn legacy_octal<T: Copy + Into<u32>>(s: &[T]) -> (u16, usize) {
    let digit = |k: usize| {
        s.get(k)
            .map(|&c| c.into())
            .filter(|d| (0x30..=0x37).contains(d))
            .map(|d| d - 0x30)
    };
    let first = digit(0).unwrap_or(0);
    let most = if first <= 3 { 3 } else { 2 };
    let mut value = first;
    let mut len = 1;
    while len < most {
        match digit(len) {
            Some(d) => value = value * 8 + d,
            None => break,
        }
        len += 1;
    }
    (value as u16, len)
}

/// The largest repetition count: V8 reads any larger count as this (2³¹ − 1) before it checks
/// that a quantifier's minimum is not above its maximum, so `{99999999999,4294967296}` is
/// accepted there and `{2147483647,2147483646}` is not.
const MAX_COUNT: u32 = i32::MAX as u32;

/// A counted quantifier (`{n}`, `{n,}`, `{n,m}`), as both engines read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Braced {
    /// The minimum count, at most [`MAX_COUNT`].
    pub(crate) min: u32,
    /// The maximum count (at most [`MAX_COUNT`]); `None` for `{n,}`.
    pub(crate) max: Option<u32>,
    /// Length of the quantifier, braces included.
    pub(crate) len: usize,
}

impl Braced {
    /// `{n,m}` with `n > m`: a SyntaxError.
    pub(crate) fn out_of_order(&self) -> bool {
        self.max.is_some_and(|m| m < self.min)
    }
}

/// The counted quantifier at the start of `s` (its `{`), if one is there; `s` holds code units,
/// or the translator's characters.
pub(crate) fn braced<T: Copy + Into<u32>>(s: &[T]) -> Option<Braced> {
    let at = |j: usize| s.get(j).map(|&c| c.into());
    if at(0) != Some(u32::from(u('{'))) {
        return None;
    }
    let number = |j: &mut usize| -> Option<u32> {
        let start = *j;
        let mut n: u32 = 0;
        while let Some(d) = at(*j).filter(|d| (0x30..=0x39).contains(d)) {
            n = n.saturating_mul(10).saturating_add(d - 0x30);
            *j += 1;
        }
        (*j > start).then_some(n.min(MAX_COUNT))
    };
    let mut j = 1;
    let min = number(&mut j)?;
    let max = if at(j) == Some(u32::from(u(','))) {
        j += 1;
        if at(j) == Some(u32::from(u('}'))) {
            None
        } else {
            Some(number(&mut j)?)
        }
    } else {
        Some(min)
    };
    (at(j) == Some(u32::from(u('}')))).then_some(Braced {
        min,
        max,
        len: j + 1,
    })
}

/// One piece of a class: a code unit or a set (a class escape).
enum ClassAtom {
    Unit(u16),
    Set(Ranges),
}

impl<'p> Parser<'p> {
    fn peek(&self) -> Option<u16> {
        self.s.get(self.i).copied()
    }

    fn peek_at(&self, k: usize) -> Option<u16> {
        self.s.get(self.i + k).copied()
    }

    fn eat(&mut self, c: char) -> bool {
        if self.peek() == Some(u(c)) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn disjunction(&mut self, depth: usize) -> Parsed<Node> {
        if depth > MAX_DEPTH {
            return Err(ParseError::TooDeep);
        }
        let mut alts = vec![self.alternative(depth)?];
        while self.eat('|') {
            alts.push(self.alternative(depth)?);
        }
        Ok(if alts.len() == 1 {
            alts.pop().unwrap_or(Node::Empty)
        } else {
            Node::Alt(alts)
        })
    }

    fn alternative(&mut self, depth: usize) -> Parsed<Node> {
        let mut terms = Vec::new();
        while let Some(c) = self.peek() {
            if c == u('|') || c == u(')') {
                break;
            }
            self.term(depth, &mut terms)?;
        }
        Ok(match terms.len() {
            0 => Node::Empty,
            1 => terms.pop().unwrap_or(Node::Empty),
            _ => Node::Seq(terms),
        })
    }

    /// One term, pushed onto `terms` (an astral literal is two units: only the second is
    /// quantified).
    fn term(&mut self, depth: usize, terms: &mut Vec<Node>) -> Parsed<()> {
        let c = self.peek().ok_or(ParseError::Syntax)?;
        // Assertions that take no quantifier.
        if c == u('^') {
            self.i += 1;
            terms.push(Node::Start);
            return Ok(());
        }
        if c == u('$') {
            self.i += 1;
            terms.push(Node::End);
            return Ok(());
        }
        if c == u('\\') && matches!(self.peek_at(1), Some(b) if b == u('b') || b == u('B')) {
            let negated = self.peek_at(1) == Some(u('B'));
            self.i += 2;
            terms.push(Node::WordBoundary(negated));
            return Ok(());
        }
        if c == u('(') && self.peek_at(1) == Some(u('?')) && self.peek_at(2) == Some(u('<')) {
            if let Some(k) = self.peek_at(3).filter(|&k| k == u('=') || k == u('!')) {
                // Look-behind: never quantified.
                self.i += 4;
                let body = self.disjunction(depth + 1)?;
                if !self.eat(')') {
                    return Err(ParseError::Syntax);
                }
                terms.push(Node::Look {
                    ahead: false,
                    negate: k == u('!'),
                    body: Box::new(body),
                });
                return Ok(());
            }
        }
        let groups_before = self.opened;
        let atom = self.atom(depth, terms)?;
        let atom = self.quantified(atom, groups_before)?;
        terms.push(atom);
        Ok(())
    }

    /// The quantifier after `atom`, if any.
    fn quantified(&mut self, atom: Node, groups_before: usize) -> Parsed<Node> {
        let (min, max, len) = match self.peek() {
            Some(c) if c == u('*') => (0, None, 1),
            Some(c) if c == u('+') => (1, None, 1),
            Some(c) if c == u('?') => (0, Some(1), 1),
            Some(c) if c == u('{') => match braced(&self.s[self.i..]) {
                Some(q) if q.out_of_order() => return Err(ParseError::Syntax),
                Some(q) => (q.min, q.max, q.len),
                None => return Ok(atom), // Annex B: a literal `{` follows
            },
            _ => return Ok(atom),
        };
        self.i += len;
        let greedy = !self.eat('?');
        Ok(Node::Repeat {
            body: Box::new(atom),
            min,
            max,
            greedy,
            groups: (groups_before + 1, self.opened - groups_before),
        })
    }

    /// An atom (or a look-ahead, which Annex B lets a quantifier follow).
    fn atom(&mut self, depth: usize, terms: &mut Vec<Node>) -> Parsed<Node> {
        let c = self.peek().ok_or(ParseError::Syntax)?;
        self.i += 1;
        match c {
            0x2E => Ok(Node::Any), // .
            0x28 => self.group(depth),
            0x5B => self.class(),
            0x2A | 0x2B | 0x3F => Err(ParseError::Syntax), // * + ?: nothing to repeat
            0x7B if braced(&self.s[self.i - 1..]).is_some() => Err(ParseError::Syntax),
            0x5C => self.atom_escape(),
            0xD800..=0xDBFF if self.peek().is_some_and(|l| (0xDC00..=0xDFFF).contains(&l)) => {
                // An astral character: two units; a quantifier takes the second only.
                terms.push(Node::Unit(folding().canon[usize::from(c)]));
                let low = self.peek().unwrap_or(0);
                self.i += 1;
                Ok(Node::Unit(folding().canon[usize::from(low)]))
            }
            _ => Ok(Node::Unit(folding().canon[usize::from(c)])),
        }
    }

    fn group(&mut self, depth: usize) -> Parsed<Node> {
        let mut number = None;
        if self.eat('?') {
            match self.peek() {
                Some(k) if k == u(':') => self.i += 1,
                Some(k) if k == u('=') || k == u('!') => {
                    self.i += 1;
                    let body = self.disjunction(depth + 1)?;
                    if !self.eat(')') {
                        return Err(ParseError::Syntax);
                    }
                    return Ok(Node::Look {
                        ahead: true,
                        negate: k == u('!'),
                        body: Box::new(body),
                    });
                }
                Some(k) if k == u('<') => {
                    self.i += 1;
                    let (_, len) = group_name(self.s[self.i..].iter().map(|&c| u32::from(c)))
                        .ok_or(ParseError::Syntax)?;
                    self.i += len;
                    self.opened += 1;
                    number = Some(self.opened);
                }
                _ => return Err(ParseError::Syntax),
            }
        } else {
            self.opened += 1;
            number = Some(self.opened);
        }
        let body = self.disjunction(depth + 1)?;
        if !self.eat(')') {
            return Err(ParseError::Syntax);
        }
        Ok(Node::Group(number, Box::new(body)))
    }

    /// After a `\` outside a class.
    fn atom_escape(&mut self) -> Parsed<Node> {
        let c = self.peek().ok_or(ParseError::Syntax)?;
        if (u('1')..=u('9')).contains(&c) {
            // A backreference when the whole number names a group; else Annex B.
            let start = self.i;
            let mut n: usize = 0;
            while let Some(d) = self.peek().filter(|&d| is_digit(d)) {
                n = n.saturating_mul(10).saturating_add(usize::from(d - 0x30));
                self.i += 1;
            }
            if n <= self.total_groups {
                return Ok(Node::BackRef(n));
            }
            self.i = start;
        }
        if c == u('k') && !self.names.is_empty() {
            self.i += 1;
            if !self.eat('<') {
                return Err(ParseError::Syntax);
            }
            let (name, len) = group_name(self.s[self.i..].iter().map(|&c| u32::from(c)))
                .ok_or(ParseError::Syntax)?;
            self.i += len;
            let n = self
                .names
                .iter()
                .find(|(nm, _)| *nm == name)
                .map(|(_, n)| *n)
                .ok_or(ParseError::Syntax)?;
            return Ok(Node::BackRef(n));
        }
        match self.class_escape_set(c) {
            Some(set) => {
                self.i += 1;
                Ok(self.set_node(set, false))
            }
            None => {
                let unit = self.character_escape(false)?;
                Ok(Node::Unit(folding().canon[usize::from(unit)]))
            }
        }
    }

    fn set_node(&mut self, ranges: Ranges, negated: bool) -> Node {
        self.classes.push(Class { ranges, negated });
        Node::Class(self.classes.len() - 1)
    }

    /// `\d \D \s \S \w \W`: the set (the escape letter not consumed).
    fn class_escape_set(&self, c: u16) -> Option<Ranges> {
        Some(match c {
            0x64 => digits(),
            0x44 => digits().complement(),
            0x73 => spaces(),
            0x53 => spaces().complement(),
            0x77 => words(),
            0x57 => words().complement(),
            _ => return None,
        })
    }

    /// A character escape after `\` (at the letter): the code unit it stands for. Inside a class
    /// (`in_class`), `\b` is a backspace and `\c` also takes a digit or `_`. When `\c` has no
    /// control letter, the backslash itself is the unit and `c` is read next.
    fn character_escape(&mut self, in_class: bool) -> Parsed<u16> {
        let c = self.peek().ok_or(ParseError::Syntax)?;
        self.i += 1;
        let unit = match c {
            0x66 => 0x0C, // \f
            0x6E => 0x0A, // \n
            0x72 => 0x0D, // \r
            0x74 => 0x09, // \t
            0x76 => 0x0B, // \v
            0x62 if in_class => 0x08,
            0x63 => match self.peek() {
                Some(l) if is_ascii_letter(l) => {
                    self.i += 1;
                    l % 32
                }
                Some(l) if in_class && (is_digit(l) || l == u('_')) => {
                    self.i += 1;
                    l % 32
                }
                _ => {
                    self.i -= 1; // `c` is read again, as itself
                    u('\\')
                }
            },
            0x30..=0x37 => {
                // `\0` alone is NUL; Annex B legacy octal escapes otherwise.
                let (value, len) = legacy_octal(&self.s[self.i - 1..]);
                self.i += len - 1;
                value
            }
            0x78 => match (self.peek(), self.peek_at(1)) {
                (Some(a), Some(b)) if is_hex(a) && is_hex(b) => {
                    self.i += 2;
                    (hex(a) * 16 + hex(b)) as u16
                }
                _ => c,
            },
            0x75 => {
                let four: Option<u32> = (0..4)
                    .map(|k| self.peek_at(k).filter(|&h| is_hex(h)).map(hex))
                    .try_fold(0, |acc, h| h.map(|h| acc * 16 + h));
                match four {
                    Some(v) => {
                        self.i += 4;
                        v as u16
                    }
                    None => c,
                }
            }
            0x6B if in_class && !self.names.is_empty() => return Err(ParseError::Syntax),
            _ => c, // identity escape (Annex B: any character but `c`)
        };
        Ok(unit)
    }

    /// After `[`.
    fn class(&mut self) -> Parsed<Node> {
        let negated = self.eat('^');
        let mut ranges = Ranges::default();
        loop {
            let c = self.peek().ok_or(ParseError::Syntax)?;
            if c == u(']') {
                self.i += 1;
                break;
            }
            let first = self.class_atom()?;
            if self.peek() == Some(u('-')) && self.peek_at(1).is_some_and(|n| n != u(']')) {
                self.i += 1;
                let second = self.class_atom()?;
                match (first, second) {
                    (ClassAtom::Unit(a), ClassAtom::Unit(b)) => {
                        if a > b {
                            return Err(ParseError::Syntax);
                        }
                        ranges.add(a, b);
                    }
                    // Annex B: a class escape at either end makes the dash literal.
                    (a, b) => {
                        for atom in [a, b] {
                            match atom {
                                ClassAtom::Unit(x) => ranges.add(x, x),
                                ClassAtom::Set(s) => ranges.extend(&s),
                            }
                        }
                        ranges.add(u('-'), u('-'));
                    }
                }
            } else {
                match first {
                    ClassAtom::Unit(x) => ranges.add(x, x),
                    ClassAtom::Set(s) => ranges.extend(&s),
                }
            }
        }
        ranges.normalize();
        Ok(self.set_node(ranges, negated))
    }

    fn class_atom(&mut self) -> Parsed<ClassAtom> {
        let c = self.peek().ok_or(ParseError::Syntax)?;
        self.i += 1;
        if c != u('\\') {
            return Ok(ClassAtom::Unit(c));
        }
        let e = self.peek().ok_or(ParseError::Syntax)?;
        if let Some(set) = self.class_escape_set(e) {
            self.i += 1;
            return Ok(ClassAtom::Set(set));
        }
        if e == u('8') || e == u('9') {
            self.i += 1;
            return Ok(ClassAtom::Unit(e));
        }
        Ok(ClassAtom::Unit(self.character_escape(true)?))
    }
}

/// Counts the capturing groups of `s` and lists the named ones (the pre-scan the parser needs
/// for `\N` and `\k<name>`). `Err` when a group name is invalid or used twice.
pub(crate) fn scan(s: &[u16]) -> Parsed<(usize, Names)> {
    let mut groups = 0;
    let mut names: Names = Vec::new();
    let mut in_class = false;
    let mut i = 0;
    while i < s.len() {
        let c = s[i];
        if c == u('\\') {
            i += 2;
            continue;
        }
        if in_class {
            if c == u(']') {
                in_class = false;
            }
        } else if c == u('[') {
            in_class = true;
        } else if c == u('(') {
            if s.get(i + 1) != Some(&u('?')) {
                groups += 1;
            } else if s.get(i + 2) == Some(&u('<'))
                && !matches!(s.get(i + 3), Some(&k) if k == u('=') || k == u('!'))
            {
                groups += 1;
                let (name, _) = group_name(s[i + 3..].iter().map(|&c| u32::from(c)))
                    .ok_or(ParseError::Syntax)?;
                if names.iter().any(|(n, _)| *n == name) {
                    return Err(ParseError::Syntax);
                }
                names.push((name, groups));
            }
        }
        i += 1;
    }
    Ok((groups, names))
}

// ---- program ------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy)]
enum Inst {
    /// A unit whose canonical form is this; `back`: read before the position and step back.
    Unit {
        canon: u16,
        back: bool,
    },
    Any {
        back: bool,
    },
    Class {
        index: u32,
        back: bool,
    },
    Start,
    End,
    WordBoundary {
        negated: bool,
    },
    /// Try `first`; on failure, `second`.
    Split {
        first: u32,
        second: u32,
    },
    Jump(u32),
    /// Capture slot (`2g` start, `2g + 1` end of group `g`) set to the position.
    Save(u32),
    /// Capture slots `from..to` cleared.
    Reset {
        from: u32,
        to: u32,
    },
    BackRef {
        group: u32,
        back: bool,
    },
    /// A look-around whose body starts at the next instruction and ends with `Succeed`;
    /// matching goes on at `next`.
    Look {
        negate: bool,
        next: u32,
    },
    /// The end of a look-around body, or of the pattern.
    Succeed,
    /// Loop counter `reg` set to 0.
    LoopInit {
        reg: u32,
    },
    /// The loop's choice between another iteration (the next instruction) and `exit`.
    LoopHead {
        reg: u32,
        min: u32,
        max: u32,
        greedy: bool,
        exit: u32,
    },
    /// Register `reg` set to the position (where an iteration starts).
    Mark {
        reg: u32,
    },
    /// End of an iteration: an optional one that matched nothing fails; else the counter goes
    /// up and the loop goes on at `head`.
    LoopEnd {
        reg: u32,
        mark: u32,
        min: u32,
        head: u32,
        /// The body only ever matches the empty string (`(){99}`, `(?:\b){9}`): every required
        /// iteration after one is the same, so the count goes straight to `min`.
        zero_width: bool,
    },
    /// Fails unless the subject holds a unit whose canonical form is `required[index]`: a
    /// sequence that must read that unit cannot match without it (checked once per search).
    Require(u32),
    /// A quantified single unit (`.*`, `a+?`, `[^/]{2,}`): no captures, never an empty
    /// iteration, so the general loop reduces to a count of units, given back one at a time on
    /// backtracking (greedy) or taken one more at a time (lazy), with one frame in all.
    Repeat {
        what: Single,
        back: bool,
        min: u32,
        max: u32,
        greedy: bool,
    },
}

/// What a single-unit repetition ([`Inst::Repeat`]) matches at each step.
#[derive(Debug, Clone, Copy)]
enum Single {
    Unit(u16),
    Any,
    Class(u32),
}

/// A compiled pattern.
#[derive(Debug)]
pub(crate) struct Program {
    code: Vec<Inst>,
    classes: Vec<Class>,
    /// Capture slots (two per group, group 0 unused) and loop registers.
    slots: usize,
    /// Whether every match starts at the beginning of the subject.
    anchored: bool,
    /// The canonical form of the unit every match starts with, when there is one: other start
    /// positions are skipped without running the program.
    first: Option<u16>,
    /// Canonical units some sequences cannot match without ([`Inst::Require`]).
    required: Vec<u16>,
}

const UNSET: u32 = u32::MAX;

struct Compiler {
    code: Vec<Inst>,
    /// The units [`Inst::Require`] checks for.
    required: Vec<u16>,
    /// Next free register (after the capture slots).
    next_reg: u32,
}

impl Compiler {
    fn pc(&self) -> u32 {
        self.code.len() as u32
    }

    fn emit(&mut self, i: Inst) -> usize {
        self.code.push(i);
        self.code.len() - 1
    }

    fn node(&mut self, n: &Node, back: bool) {
        match n {
            Node::Empty => {}
            Node::Unit(c) => {
                self.emit(Inst::Unit { canon: *c, back });
            }
            Node::Any => {
                self.emit(Inst::Any { back });
            }
            Node::Class(i) => {
                self.emit(Inst::Class {
                    index: *i as u32,
                    back,
                });
            }
            Node::Start => {
                self.emit(Inst::Start);
            }
            Node::End => {
                self.emit(Inst::End);
            }
            Node::WordBoundary(negated) => {
                self.emit(Inst::WordBoundary { negated: *negated });
            }
            Node::Seq(items) => {
                // A sequence with work to do before or after a unit it must read checks first
                // that the subject holds that unit at all.
                let costly = items.iter().any(|i| {
                    matches!(
                        i,
                        Node::Repeat { .. } | Node::Group(..) | Node::Alt(_) | Node::BackRef(_)
                    )
                });
                if let Some(c) = mandatory_unit(n).filter(|_| costly) {
                    let index = match self.required.iter().position(|&r| r == c) {
                        Some(i) => i,
                        None => {
                            self.required.push(c);
                            self.required.len() - 1
                        }
                    };
                    self.emit(Inst::Require(index as u32));
                }
                if back {
                    for item in items.iter().rev() {
                        self.node(item, back);
                    }
                } else {
                    for item in items {
                        self.node(item, back);
                    }
                }
            }
            Node::Alt(alts) => {
                let mut jumps = Vec::new();
                for (k, alt) in alts.iter().enumerate() {
                    if k + 1 < alts.len() {
                        let split = self.emit(Inst::Split {
                            first: 0,
                            second: 0,
                        });
                        let first = self.pc();
                        self.node(alt, back);
                        jumps.push(self.emit(Inst::Jump(0)));
                        let second = self.pc();
                        self.code[split] = Inst::Split { first, second };
                    } else {
                        self.node(alt, back);
                    }
                }
                let end = self.pc();
                for j in jumps {
                    self.code[j] = Inst::Jump(end);
                }
            }
            Node::Group(number, body) => match number {
                Some(g) => {
                    let (open, close) = (2 * *g as u32, 2 * *g as u32 + 1);
                    // Backwards, the end is found first; the captured range is the same.
                    let (first, last) = if back { (close, open) } else { (open, close) };
                    self.emit(Inst::Save(first));
                    self.node(body, back);
                    self.emit(Inst::Save(last));
                }
                None => self.node(body, back),
            },
            Node::Look {
                ahead,
                negate,
                body,
            } => {
                let look = self.emit(Inst::Look {
                    negate: *negate,
                    next: 0,
                });
                self.node(body, !*ahead);
                self.emit(Inst::Succeed);
                let next = self.pc();
                self.code[look] = Inst::Look {
                    negate: *negate,
                    next,
                };
            }
            Node::Repeat {
                body,
                min,
                max,
                greedy,
                groups,
            } => {
                if *max == Some(0) {
                    return;
                }
                let single = match **body {
                    Node::Unit(c) => Some(Single::Unit(c)),
                    Node::Any => Some(Single::Any),
                    Node::Class(i) => Some(Single::Class(i as u32)),
                    _ => None,
                };
                if let Some(what) = single {
                    self.emit(Inst::Repeat {
                        what,
                        back,
                        min: *min,
                        max: max.unwrap_or(u32::MAX),
                        greedy: *greedy,
                    });
                    return;
                }
                let reg = self.next_reg;
                let mark = self.next_reg + 1;
                self.next_reg += 2;
                self.emit(Inst::LoopInit { reg });
                let head = self.emit(Inst::LoopHead {
                    reg,
                    min: *min,
                    max: 0,
                    greedy: *greedy,
                    exit: 0,
                });
                self.emit(Inst::Mark { reg: mark });
                if groups.1 > 0 {
                    self.emit(Inst::Reset {
                        from: 2 * groups.0 as u32,
                        to: 2 * (groups.0 + groups.1) as u32,
                    });
                }
                self.node(body, back);
                self.emit(Inst::LoopEnd {
                    reg,
                    mark,
                    min: *min,
                    head: head as u32,
                    zero_width: zero_width(body),
                });
                let exit = self.pc();
                self.code[head] = Inst::LoopHead {
                    reg,
                    min: *min,
                    max: max.unwrap_or(u32::MAX),
                    greedy: *greedy,
                    exit,
                };
            }
            Node::BackRef(g) => {
                self.emit(Inst::BackRef {
                    group: *g as u32,
                    back,
                });
            }
        }
    }
}

/// Whether `n` can only ever match the empty string.
fn zero_width(n: &Node) -> bool {
    match n {
        Node::Empty | Node::Start | Node::End | Node::WordBoundary(_) | Node::Look { .. } => true,
        Node::Group(_, body) | Node::Repeat { body, .. } => zero_width(body),
        Node::Seq(items) | Node::Alt(items) => items.iter().all(zero_width),
        Node::Unit(_) | Node::Any | Node::Class(_) | Node::BackRef(_) => false,
    }
}

/// A canonical unit that every match of `n` reads (outside look-arounds), if there is one.
fn mandatory_unit(n: &Node) -> Option<u16> {
    match n {
        Node::Unit(c) => Some(*c),
        Node::Group(_, body) => mandatory_unit(body),
        Node::Repeat { body, min, .. } if *min > 0 => mandatory_unit(body),
        Node::Seq(items) => items.iter().find_map(mandatory_unit),
        _ => None,
    }
}

/// The canonical unit that every match of `n` (run forward) consumes first, if there is one.
fn first_unit(n: &Node) -> Option<u16> {
    match n {
        Node::Unit(c) => Some(*c),
        // Zero-width assertions only add conditions: the first unit read is still the next one.
        Node::Seq(items) => items
            .iter()
            .find(|i| !matches!(i, Node::Look { .. } | Node::WordBoundary(_)))
            .and_then(first_unit),
        Node::Group(_, body) => first_unit(body),
        Node::Repeat { body, min, .. } if *min > 0 => first_unit(body),
        Node::Alt(alts) => {
            let first = first_unit(alts.first()?)?;
            alts.iter()
                .all(|a| first_unit(a) == Some(first))
                .then_some(first)
        }
        _ => None,
    }
}

fn starts_anchored(n: &Node) -> bool {
    match n {
        Node::Start => true,
        Node::Seq(items) => items.first().is_some_and(starts_anchored),
        Node::Alt(alts) => alts.iter().all(starts_anchored),
        Node::Group(_, body) => starts_anchored(body),
        _ => false,
    }
}

impl Program {
    /// Compiles JS pattern `source` (flag `i`).
    pub(crate) fn compile(source: &str) -> Result<Program, ParseError> {
        let units: Vec<u16> = source.encode_utf16().collect();
        let (total_groups, names) = scan(&units)?;
        let mut p = Parser {
            s: &units,
            i: 0,
            total_groups,
            names,
            opened: 0,
            classes: Vec::new(),
        };
        let tree = p.disjunction(0)?;
        if p.i < units.len() {
            return Err(ParseError::Syntax); // an unmatched `)`
        }
        let slots = 2 * (total_groups + 1);
        let mut c = Compiler {
            code: Vec::new(),
            required: Vec::new(),
            next_reg: slots as u32,
        };
        c.node(&tree, false);
        c.emit(Inst::Succeed);
        Ok(Program {
            anchored: starts_anchored(&tree),
            first: first_unit(&tree),
            required: c.required,
            slots: c.next_reg as usize,
            code: c.code,
            classes: p.classes,
        })
    }

    /// Instructions in the program.
    pub(crate) fn len(&self) -> usize {
        self.code.len()
    }

    /// [`Program::test_str`] on code units, with buffers of its own (for tests).
    #[cfg(test)]
    pub(crate) fn test(&self, subject: &[u16], budget: u64) -> (Search, u64) {
        self.test_with(subject, budget, &mut Scratch::default())
    }

    /// `RegExp.prototype.test` on `subject` taken as UTF-16 code units (already lower-cased by
    /// the caller, as the reference does), within `budget` steps: the outcome and the steps
    /// taken. The buffers of the search are kept per thread for the next one.
    pub(crate) fn test_str(&self, subject: &str, budget: u64) -> (Search, u64) {
        thread_local! {
            /// The buffers of the last search on this thread, kept for the next one.
            static SCRATCH: std::cell::RefCell<(Vec<u16>, Scratch)> = std::cell::RefCell::default();
        }
        let run = |units: &mut Vec<u16>, scratch: &mut Scratch| {
            units.clear();
            units.extend(subject.encode_utf16());
            let out = self.test_with(units, budget, scratch);
            if units.capacity() > SCRATCH_KEPT {
                *units = Vec::new();
            }
            out
        };
        SCRATCH.with(|cell| match cell.try_borrow_mut() {
            Ok(mut buffers) => {
                let (units, scratch) = &mut *buffers;
                run(units, scratch)
            }
            Err(_) => run(&mut Vec::new(), &mut Scratch::default()),
        })
    }

    fn test_with(&self, subject: &[u16], budget: u64, scratch: &mut Scratch) -> (Search, u64) {
        let Scratch { slots, stack, undo } = scratch;
        slots.clear();
        slots.resize(self.slots, UNSET);
        stack.clear();
        let mut m = Machine {
            p: self,
            s: subject,
            f: folding(),
            slots,
            stack,
            undo,
            looking: 0,
            present: vec![0; self.required.len()],
            steps: 0,
            budget,
        };
        let last = if self.anchored { 0 } else { subject.len() };
        let mut outcome = Search::Done(false);
        for start in 0..=last {
            if let Some(first) = self.first {
                let at = subject.get(start).map(|&x| m.f.canon[usize::from(x)]);
                if at != Some(first) {
                    m.steps += 1;
                    continue;
                }
            }
            m.slots.fill(UNSET);
            m.undo.clear();
            match m.run(0, start as u32) {
                Ok(true) => {
                    outcome = Search::Done(true);
                    break;
                }
                Ok(false) => {}
                Err(Over) => {
                    outcome = Search::OverBudget;
                    break;
                }
            }
        }
        let steps = m.steps;
        // A search that grew its stacks large does not keep them.
        if stack.capacity() > SCRATCH_KEPT || undo.capacity() > SCRATCH_KEPT {
            *scratch = Scratch::default();
        }
        (outcome, steps)
    }
}

/// Stack entries a thread keeps between searches (larger stacks are freed after their search).
const SCRATCH_KEPT: usize = 4096;

/// The buffers of a search.
#[derive(Default)]
struct Scratch {
    slots: Vec<u32>,
    stack: Vec<Frame>,
    undo: Vec<(u32, u32)>,
}

// ---- matching -----------------------------------------------------------------------------------

struct Over;

struct Frame {
    pc: u32,
    pos: u32,
    undo: u32,
    kind: FrameKind,
}

#[derive(Clone, Copy)]
enum FrameKind {
    /// Resume at `pc`, `pos`.
    Plain,
    /// A greedy [`Inst::Repeat`] whose last try ended at `pos`: give back one unit (unless that
    /// passes `limit`, where its minimum ended) and resume at `pc`.
    Greedy { limit: u32, back: bool },
    /// A lazy [`Inst::Repeat`] (at `pc - 1`) that took `count` units, ending at `pos`: take one
    /// more and resume at `pc`.
    Lazy { count: u32 },
}

struct Machine<'a> {
    p: &'a Program,
    s: &'a [u16],
    f: &'static Folding,
    slots: &'a mut Vec<u32>,
    stack: &'a mut Vec<Frame>,
    /// Slot writes that a backtrack may have to undo: (slot, previous value).
    undo: &'a mut Vec<(u32, u32)>,
    /// Look-around bodies being matched.
    looking: u32,
    /// Per [`Program::required`] unit: 0 not looked for yet, 1 in the subject, 2 not.
    present: Vec<u8>,
    steps: u64,
    budget: u64,
}

impl Machine<'_> {
    fn set(&mut self, slot: u32, value: u32) {
        let old = self.slots[slot as usize];
        if old != value {
            // With no alternative left to return to (and outside a look-around, which may have
            // to undo its captures), nothing can ask for the old value again.
            if !self.stack.is_empty() || self.looking > 0 {
                self.undo.push((slot, old));
            }
            self.slots[slot as usize] = value;
        }
    }

    fn rollback(&mut self, to: usize) {
        while self.undo.len() > to {
            if let Some((slot, old)) = self.undo.pop() {
                self.slots[slot as usize] = old;
            }
        }
    }

    fn push(&mut self, pc: u32, pos: u32) {
        self.push_kind(pc, pos, FrameKind::Plain);
    }

    fn push_kind(&mut self, pc: u32, pos: u32, kind: FrameKind) {
        self.stack.push(Frame {
            pc,
            pos,
            undo: self.undo.len() as u32,
            kind,
        });
    }

    /// Whether the subject holds required unit `index` (looked for once per search).
    fn present(&mut self, index: u32) -> bool {
        let i = index as usize;
        if self.present[i] == 0 {
            let c = self.p.required[i];
            let found = self.s.iter().any(|&x| self.f.canon[usize::from(x)] == c);
            self.steps += self.s.len() as u64;
            self.present[i] = if found { 1 } else { 2 };
        }
        self.present[i] == 1
    }

    /// How many units in a row from `pos` (forward, or backward with `back`) `what` matches, up
    /// to `most`.
    fn span(&self, what: Single, pos: u32, back: bool, most: u32) -> u32 {
        fn count(s: &[u16], back: bool, most: usize, ok: impl Fn(u16) -> bool) -> u32 {
            let n = if back {
                s.iter().rev().take(most).take_while(|&&x| ok(x)).count()
            } else {
                s.iter().take(most).take_while(|&&x| ok(x)).count()
            };
            n as u32
        }
        let s = if back {
            &self.s[..pos as usize]
        } else {
            &self.s[pos as usize..]
        };
        let most = most as usize;
        match what {
            Single::Unit(canon) => count(s, back, most, |x| self.f.canon[usize::from(x)] == canon),
            Single::Any => count(s, back, most, |x| !is_line_terminator(x)),
            Single::Class(index) => {
                let class = &self.p.classes[index as usize];
                count(s, back, most, |x| class.matches(x, self.f))
            }
        }
    }

    /// Whether `what` matches the unit read from `pos` (forward, or backward with `back`); the
    /// position after it.
    fn single(&self, what: Single, pos: u32, back: bool) -> Option<u32> {
        let (x, next) = self.read(pos, back)?;
        let ok = match what {
            Single::Unit(canon) => self.f.canon[usize::from(x)] == canon,
            Single::Any => !is_line_terminator(x),
            Single::Class(index) => self.p.classes[index as usize].matches(x, self.f),
        };
        ok.then_some(next)
    }

    /// The unit read by a forward (`back` false) or backward step from `pos`, and the position
    /// after it.
    fn read(&self, pos: u32, back: bool) -> Option<(u16, u32)> {
        if back {
            let p = pos.checked_sub(1)?;
            Some((self.s[p as usize], p))
        } else {
            let unit = *self.s.get(pos as usize)?;
            Some((unit, pos + 1))
        }
    }

    /// Runs from `pc` at `pos` until a `Succeed` (true) or until every alternative failed
    /// (false, with the captures as they were).
    fn run(&mut self, mut pc: u32, mut pos: u32) -> Result<bool, Over> {
        let base = self.stack.len();
        let undo_base = self.undo.len();
        loop {
            self.steps += 1;
            if self.steps > self.budget || self.stack.len() + self.undo.len() > MAX_STACK {
                return Err(Over);
            }
            let ok = match self.p.code[pc as usize] {
                Inst::Unit { canon, back } => match self.read(pos, back) {
                    Some((x, next)) if self.f.canon[usize::from(x)] == canon => {
                        pos = next;
                        true
                    }
                    _ => false,
                },
                Inst::Any { back } => match self.read(pos, back) {
                    Some((x, next)) if !is_line_terminator(x) => {
                        pos = next;
                        true
                    }
                    _ => false,
                },
                Inst::Class { index, back } => match self.read(pos, back) {
                    Some((x, next)) if self.p.classes[index as usize].matches(x, self.f) => {
                        pos = next;
                        true
                    }
                    _ => false,
                },
                Inst::Start => pos == 0,
                Inst::End => pos as usize == self.s.len(),
                Inst::WordBoundary { negated } => {
                    let before = pos > 0 && is_word(self.s[pos as usize - 1]);
                    let after = self.s.get(pos as usize).is_some_and(|&x| is_word(x));
                    (before != after) != negated
                }
                Inst::Split { first, second } => {
                    self.push(second, pos);
                    pc = first;
                    continue;
                }
                Inst::Jump(to) => {
                    pc = to;
                    continue;
                }
                Inst::Save(slot) => {
                    self.set(slot, pos);
                    true
                }
                Inst::Reset { from, to } => {
                    for slot in from..to {
                        self.set(slot, UNSET);
                    }
                    true
                }
                Inst::BackRef { group, back } => self.backref(group, back, &mut pos),
                Inst::Look { negate, next } => {
                    let stack = self.stack.len();
                    let undo = self.undo.len();
                    self.looking += 1;
                    let matched = self.run(pc + 1, pos);
                    self.looking -= 1;
                    let matched = matched?;
                    // Atomic: the body's alternatives are forgotten.
                    self.stack.truncate(stack);
                    if negate {
                        self.rollback(undo);
                    }
                    if matched != negate {
                        pc = next;
                        continue;
                    }
                    false
                }
                Inst::Succeed => return Ok(true),
                Inst::LoopInit { reg } => {
                    self.set(reg, 0);
                    true
                }
                Inst::LoopHead {
                    reg,
                    min,
                    max,
                    greedy,
                    exit,
                } => {
                    let count = self.slots[reg as usize];
                    if count >= max {
                        pc = exit;
                        continue;
                    }
                    if count >= min {
                        if greedy {
                            self.push(exit, pos);
                        } else {
                            self.push(pc + 1, pos);
                            pc = exit;
                            continue;
                        }
                    }
                    true
                }
                Inst::Repeat {
                    what,
                    back,
                    min,
                    max,
                    greedy,
                } => {
                    let taken = self.span(what, pos, back, min);
                    self.steps += u64::from(taken);
                    let ok = taken == min;
                    if ok {
                        pos = if back { pos - taken } else { pos + taken };
                        if min < max {
                            if greedy {
                                let limit = pos;
                                let more = self.span(what, pos, back, max - min);
                                self.steps += u64::from(more);
                                pos = if back { pos - more } else { pos + more };
                                if pos != limit {
                                    self.push_kind(pc + 1, pos, FrameKind::Greedy { limit, back });
                                }
                            } else {
                                self.push_kind(pc + 1, pos, FrameKind::Lazy { count: min });
                            }
                        }
                    }
                    ok
                }
                Inst::Mark { reg } => {
                    self.set(reg, pos);
                    true
                }
                Inst::LoopEnd {
                    reg,
                    mark,
                    min,
                    head,
                    zero_width,
                } => {
                    let count = self.slots[reg as usize];
                    if count >= min && self.slots[mark as usize] == pos {
                        false
                    } else {
                        let next = if zero_width && count < min {
                            min
                        } else {
                            count.saturating_add(1)
                        };
                        self.set(reg, next);
                        pc = head;
                        continue;
                    }
                }
                Inst::Require(index) => self.present(index),
            };
            if ok {
                pc += 1;
                continue;
            }
            // Backtrack to the latest alternative left.
            loop {
                if self.stack.len() <= base {
                    self.rollback(undo_base);
                    return Ok(false);
                }
                let Some(frame) = self.stack.pop() else {
                    self.rollback(undo_base);
                    return Ok(false);
                };
                self.rollback(frame.undo as usize);
                pc = frame.pc;
                pos = frame.pos;
                match frame.kind {
                    FrameKind::Plain => break,
                    FrameKind::Greedy { limit, back } => {
                        // One unit given back; the frame stays while more can be. When a
                        // literal unit follows, positions where it cannot match are skipped.
                        pos = if back { pos + 1 } else { pos - 1 };
                        if let Inst::Unit {
                            canon,
                            back: next_back,
                        } = self.p.code[pc as usize]
                        {
                            while pos != limit
                                && next_back == back
                                && self
                                    .read(pos, back)
                                    .is_none_or(|(x, _)| self.f.canon[usize::from(x)] != canon)
                            {
                                pos = if back { pos + 1 } else { pos - 1 };
                                self.steps += 1;
                            }
                        }
                        if pos != limit {
                            self.push_kind(pc, pos, frame.kind);
                        }
                        break;
                    }
                    FrameKind::Lazy { count } => {
                        let Inst::Repeat {
                            what, back, max, ..
                        } = self.p.code[pc as usize - 1]
                        else {
                            continue; // not reached: lazy frames come from `Repeat`
                        };
                        self.steps += 1;
                        if let Some(next) = self.single(what, pos, back) {
                            pos = next;
                            if count + 1 < max {
                                self.push_kind(pc, pos, FrameKind::Lazy { count: count + 1 });
                            }
                            break;
                        }
                        // No more units to take: this alternative is spent too.
                    }
                }
            }
        }
    }

    /// `BackreferenceMatcher`: the group's text again (canonical forms compared), read in the
    /// matcher's direction; the empty string when the group has not captured.
    fn backref(&mut self, group: u32, back: bool, pos: &mut u32) -> bool {
        let (a, b) = (
            self.slots[2 * group as usize],
            self.slots[2 * group as usize + 1],
        );
        if a == UNSET || b == UNSET {
            return true;
        }
        // Both ends of a capture are set together, the start never after the end.
        let Some(len) = b.checked_sub(a) else {
            return true;
        };
        let from = if back {
            match pos.checked_sub(len) {
                Some(f) => f,
                None => return false,
            }
        } else {
            if *pos as usize + len as usize > self.s.len() {
                return false;
            }
            *pos
        };
        // One step per unit compared, so that long captures are paid for.
        self.steps += u64::from(len);
        let canon = &self.f.canon;
        let same = (0..len as usize).all(|k| {
            canon[usize::from(self.s[a as usize + k])]
                == canon[usize::from(self.s[from as usize + k])]
        });
        if same {
            *pos = if back { from } else { from + len };
        }
        same
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn test(p: &str, s: &str) -> bool {
        let prog = Program::compile(p);
        assert!(prog.is_ok(), "{p}: {prog:?}");
        let units: Vec<u16> = s.encode_utf16().collect();
        let search = prog.map(|prog| prog.test(&units, 1 << 24).0);
        assert_ne!(search, Ok(Search::OverBudget), "{p}");
        search == Ok(Search::Done(true))
    }

    #[test]
    fn basics() {
        assert!(test("abc", "xabcx") && !test("abd", "xabcx"));
        assert!(test("^a.c$", "abc") && !test("^a.c$", "a\nc"));
        assert!(test("a|b", "b") && test("(?:a|b)c", "bc"));
        assert!(test("^a*$", "aaaa") && test("^a+?b", "aab"));
        assert!(test("^a{2,3}$", "aaa") && !test("^a{2,3}$", "aaaa"));
        assert!(test("[a-c]x", "bx") && !test("[^a-c]x", "bx"));
        assert!(test("\\d\\w\\s", "1a "));
        assert!(test("\\bfoo\\b", "a foo") && !test("\\bfoo\\b", "afoo"));
    }

    #[test]
    fn captures_reset_at_each_iteration() {
        // ECMAScript: `(a)` does not keep its capture from an earlier iteration (answers from
        // Node.js: true, false).
        assert!(test("^(?:(a)|b)+\\1$", "abab") && !test("^(?:(a)|b)+\\1$", "aba"));
        assert!(!test("^(?:(a)|b){2}\\1c$", "abac"));
        assert!(test("^(?:(a)|b){2}\\1c$", "abc"));
    }

    #[test]
    fn empty_optional_iterations_fail() {
        assert!(test("^(?:a?)*$", "aa"));
        assert!(test("^(a*)*b", "b"));
        assert!(test("^(?=a)*b", "b") && !test("^(?=a)+b", "b"));
        // The capture of an empty optional iteration is undone with it (JS: false, true, true).
        assert!(!test("^(?:(?=(a)))*\\1b", "ab") && test("^(?:(?=(a)))*\\1b", "b"));
        assert!(test("^(?:(?=(a))){1}\\1b", "ab"));
    }

    #[test]
    fn look_behind_reads_backwards() {
        assert!(test("(?<=\\$)\\d+", "$12") && !test("(?<=\\$)\\d+", "12"));
        assert!(test("(?<=(\\d+)(\\d+))$", "1053"));
        // Backwards, the greedy group to the left takes what is left.
        assert!(test("(?<=\\1(a))b", "aab") && !test("(?<=\\1(a))b", "cab"));
    }

    /// Repeated single units (one instruction, one frame) and the first-unit scan, against
    /// answers from Node.js.
    #[test]
    fn single_unit_repetitions_and_the_start_scan() {
        assert!(test("^a+?b", "aab") && test("a{2,3}?c", "aaac") && !test("^.{2,3}?$", "aaaa"));
        assert!(test("(?<=^a{2,})b", "aab") && !test("(?<=^a{2,})b", "ab"));
        assert!(!test("x.*y", "x\ny") && test("x[^\\n]*?y", "xaay"));
        assert!(test("(?<=a)bc|(?<=x)bd", "xbd") && test("(?:ab|ac)", "zac"));
        let prog = Program::compile("(?<=x)bd");
        assert_eq!(
            prog.as_ref().ok().and_then(|p| p.first),
            Some(u16::from(b'B'))
        );
    }

    /// Nesting up to the limit compiles and runs, with look-arounds nested as deep, on a thread
    /// with half the 2 MiB stack a spawned thread gets by default, in an unoptimized build (an
    /// optimized one needs less than 256 KiB); one level more is refused.
    #[test]
    fn deep_nesting() {
        let run = || {
            let deep = |open: &str| format!("{}a{}", open.repeat(MAX_DEPTH), ")".repeat(MAX_DEPTH));
            for open in ["(", "(?:", "(?=", "(?<=", "(?:a|"] {
                let p = deep(open);
                let prog = Program::compile(&p);
                let units: Vec<u16> = "a".encode_utf16().collect();
                let found = prog.as_ref().map(|p| p.test(&units, 1 << 24).0);
                assert_eq!(found, Ok(Search::Done(true)), "{open}");
                let deeper = format!("({p})");
                assert_eq!(Program::compile(&deeper).err(), Some(ParseError::TooDeep));
            }
        };
        let joined = std::thread::Builder::new()
            .stack_size(1024 * 1024)
            .spawn(run)
            .map(|t| t.join().is_ok());
        assert_eq!(joined.ok(), Some(true));
    }

    /// The backtracking state has a bound: a million optional iterations, each leaving a frame,
    /// stop the search as over budget well within the step budget (Node.js answers true).
    #[test]
    fn backtracking_state_is_bounded() {
        assert_eq!(std::mem::size_of::<Frame>(), 20);
        let prog = Program::compile("^(?:ab)*$");
        let units: Vec<u16> = "ab".repeat(1 << 20).encode_utf16().collect();
        let (found, steps) = prog
            .map(|p| p.test(&units, 1 << 24))
            .unwrap_or((Search::Done(false), 0));
        assert_eq!(found, Search::OverBudget);
        assert!(steps < 1 << 24, "{steps}");
        let short: Vec<u16> = "ab".repeat(1000).encode_utf16().collect();
        let prog = Program::compile("^(?:ab)*$");
        assert_eq!(
            prog.map(|p| p.test(&short, 1 << 24).0),
            Ok(Search::Done(true))
        );
    }

    /// Two shortcuts that keep answers JavaScript gives at once within the budget (answers from
    /// Node.js, which took under 0.2 ms on each): a zero-width body repeated billions of times,
    /// and a sequence that needs a unit the subject does not hold, after exponential work.
    #[test]
    fn zero_width_repetitions_and_required_units() {
        let steps = |p: &str, s: &str| {
            let units: Vec<u16> = s.encode_utf16().collect();
            Program::compile(p).map(|prog| prog.test(&units, 1 << 24))
        };
        let (found, n) = steps("(){99999999999}", "9 99 9").unwrap_or((Search::OverBudget, 0));
        assert_eq!(found, Search::Done(true));
        assert!(n < 100, "{n}");
        assert!(test("(?:\\b){4294967296}", "x") && !test("(?:\\b){4294967296}", ""));
        let (found, n) =
            steps("(k*(?:\\1|)+)+\u{130}", "kkkkkkkkkkkk").unwrap_or((Search::OverBudget, 0));
        assert_eq!(found, Search::Done(false));
        assert!(n < 1000, "{n}");
        let p = "([K]*(?:(?!b\\2\\1)\\1|){1,}\\B){3,}?\u{130}|\\W.{0}k{3,}";
        assert!(!test(p, "kkkkkkkkkkkk"));
    }

    /// The matcher alone: the subject is not lower-cased first here, as `regexMatches` does.
    #[test]
    fn case_folding() {
        assert!(test("ß", "ß") && !test("ss", "ß"));
        assert!(!test("s", "\u{17F}") && !test("k", "\u{212A}"));
        assert!(test("[a-z]", "Q") && test("Ω", "ω"));
    }

    #[test]
    fn syntax() {
        for bad in [
            "a**",
            "(",
            ")",
            "[",
            "[z-a]",
            "x{2}{3}",
            "(?<=a)*",
            "(?<n>a)(?<n>b)",
            "\\",
        ] {
            assert_eq!(
                Program::compile(bad).err(),
                Some(ParseError::Syntax),
                "{bad}"
            );
        }
        for ok in ["]", "}", "a{,2}", "\\c", "[\\d-z]", "(?=a)*", "\\8", "\\k"] {
            assert!(Program::compile(ok).is_ok(), "{ok}");
        }
    }
}
