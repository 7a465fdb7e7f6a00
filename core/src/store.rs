//! Visitor state (`StoreData`) and the writes the engine asks for (SPEC §5.5, §2.1).
//!
//! One visitor's state is stored under `{accountId}-{projectId}-{visitorId}` as a JSON object
//! `{bucketing?, locations?, segments?, goals?}`, the same shape the reference SDKs use, so a store
//! can be shared with them (the Ruby SDK's Redis keys are `convert:` + that key). Unknown members
//! written by other SDKs are kept untouched.
//!
//! The engine never writes a store itself: it returns [`StoreOp`]s, which the SDK applies to the
//! visitor's record inside the data store's atomic read-modify-write.

use crate::config::Str;
use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};
use std::fmt;

/// A JSON value as kept in a visitor record. Strings and booleans, which is what the SDKs write,
/// are stored inline (no allocation for short ids and keys); anything else is kept as JSON.
#[derive(Debug, Clone, PartialEq)]
pub enum StoredValue {
    /// A JSON string.
    Str(Str),
    /// A JSON boolean.
    Bool(bool),
    /// Any other JSON value (never a string or a boolean).
    Json(Box<Value>),
}

impl StoredValue {
    /// The string, when this is a JSON string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            StoredValue::Str(s) => Some(s),
            _ => None,
        }
    }

    /// JS truthiness.
    pub fn truthy(&self) -> bool {
        match self {
            StoredValue::Str(s) => !s.is_empty(),
            StoredValue::Bool(b) => *b,
            StoredValue::Json(v) => crate::js::truthy(v),
        }
    }

    /// The value as JSON.
    pub fn to_value(&self) -> Value {
        match self {
            StoredValue::Str(s) => Value::String(s.to_string()),
            StoredValue::Bool(b) => Value::Bool(*b),
            StoredValue::Json(v) => (**v).clone(),
        }
    }
}

impl From<Value> for StoredValue {
    fn from(v: Value) -> Self {
        match v {
            Value::String(s) => StoredValue::Str(Str::from(s)),
            Value::Bool(b) => StoredValue::Bool(b),
            other => StoredValue::Json(Box::new(other)),
        }
    }
}

impl From<&str> for StoredValue {
    fn from(s: &str) -> Self {
        StoredValue::Str(Str::from(s))
    }
}

impl Serialize for StoredValue {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            StoredValue::Str(v) => s.serialize_str(v),
            StoredValue::Bool(b) => s.serialize_bool(*b),
            StoredValue::Json(v) => v.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for StoredValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Value::deserialize(d).map(StoredValue::from)
    }
}

/// A list that holds one element inline and more on the heap. Most visitors have one sticky
/// decision and one active location, so a typical record needs no allocation for them (and
/// evicting it frees nothing but its key).
#[derive(Debug, Clone)]
enum Small<T> {
    One(T),
    Many(Vec<T>),
}

impl<T> Default for Small<T> {
    fn default() -> Self {
        Small::Many(Vec::new())
    }
}

impl<T> Small<T> {
    fn as_slice(&self) -> &[T] {
        match self {
            Small::One(t) => std::slice::from_ref(t),
            Small::Many(v) => v,
        }
    }

    fn as_mut_slice(&mut self) -> &mut [T] {
        match self {
            Small::One(t) => std::slice::from_mut(t),
            Small::Many(v) => v,
        }
    }

    fn push(&mut self, item: T) {
        match self {
            Small::Many(v) if !v.is_empty() => v.push(item),
            Small::Many(_) => *self = Small::One(item),
            Small::One(_) => {
                if let Small::One(first) = std::mem::take(self) {
                    *self = Small::Many(vec![first, item]);
                }
            }
        }
    }
}

impl<T: Clone> Small<T> {
    fn from_slice(items: &[T]) -> Self {
        match items {
            [only] => Small::One(only.clone()),
            _ => Small::Many(items.to_vec()),
        }
    }

    /// `items` followed by `item`, built at once.
    #[inline]
    fn with_pushed(items: &[T], item: T) -> Self {
        if items.is_empty() {
            return Small::One(item);
        }
        let mut v = Vec::with_capacity(items.len() + 1);
        v.extend_from_slice(items);
        v.push(item);
        Small::Many(v)
    }
}

impl<T> Small<T> {
    fn remove(&mut self, index: usize) -> Option<T> {
        match self {
            Small::One(_) if index == 0 => match std::mem::take(self) {
                Small::One(t) => Some(t),
                Small::Many(_) => None,
            },
            Small::One(_) => None,
            Small::Many(v) => (index < v.len()).then(|| v.remove(index)),
        }
    }
}

/// A list of stored values that keeps a lone element inline, without allocating: a visitor's
/// active locations (most visitors have one).
#[derive(Debug, Clone, Default)]
pub struct ValueList(Small<StoredValue>);

impl ValueList {
    /// An empty list.
    pub fn new() -> Self {
        ValueList::default()
    }

    /// The elements, in order.
    pub fn as_slice(&self) -> &[StoredValue] {
        self.0.as_slice()
    }

    /// Appends an element.
    pub fn push(&mut self, value: StoredValue) {
        self.0.push(value);
    }

    /// Removes and returns the element at `index` (`None` when out of range).
    pub fn remove(&mut self, index: usize) -> Option<StoredValue> {
        self.0.remove(index)
    }

    /// A copy of `items` with `value` appended (a visitor's first location is the common case:
    /// it is then the inline element, with nothing copied or dropped on the way).
    #[inline]
    pub fn with_pushed(items: &[StoredValue], value: StoredValue) -> Self {
        ValueList(Small::with_pushed(items, value))
    }
}

impl std::ops::Deref for ValueList {
    type Target = [StoredValue];
    fn deref(&self) -> &[StoredValue] {
        self.as_slice()
    }
}

impl PartialEq for ValueList {
    fn eq(&self, other: &Self) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl From<Vec<StoredValue>> for ValueList {
    fn from(v: Vec<StoredValue>) -> Self {
        ValueList(Small::from(v))
    }
}

impl From<&[StoredValue]> for ValueList {
    fn from(items: &[StoredValue]) -> Self {
        ValueList(Small::from_slice(items))
    }
}

impl FromIterator<StoredValue> for ValueList {
    fn from_iter<I: IntoIterator<Item = StoredValue>>(iter: I) -> Self {
        let mut list = ValueList::new();
        for v in iter {
            list.push(v);
        }
        list
    }
}

impl<T> From<Vec<T>> for Small<T> {
    fn from(mut v: Vec<T>) -> Self {
        match v.pop() {
            Some(only) if v.is_empty() => Small::One(only),
            Some(last) => {
                v.push(last);
                Small::Many(v)
            }
            None => Small::Many(v),
        }
    }
}

#[cfg(test)]
thread_local! {
    /// Key comparisons made by [`Entries`] lookups on this thread (a test hook).
    static KEY_COMPARISONS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Whether a stored key is `key`; counted in tests.
#[inline]
fn key_eq(stored: &str, key: &str) -> bool {
    #[cfg(test)]
    KEY_COMPARISONS.with(|c| c.set(c.get() + 1));
    stored == key
}

/// Above this many entries a map is indexed by a hash table (a list is faster below it).
const HASHED_ABOVE: usize = 8;

/// An insertion-ordered map (experience id → variation id, goal key → `true`). Visitor records
/// hold a handful of entries, kept in a list (one inline): faster and smaller than a hash map.
/// A record with many entries (a visitor in thousands of experiences) gets an index, so that
/// every lookup and insert stays O(1) and a decision over n experiences O(n).
#[derive(Debug, Clone)]
enum Entries {
    /// Up to [`HASHED_ABOVE`] entries (more only transiently), searched in order.
    List(Small<(Str, StoredValue)>),
    /// More entries, in order, with a hash index into them.
    Hashed(Box<Hashed>),
}

/// The entries of a large map, in insertion order, and an index of their positions by key hash.
/// Entries are never removed, so positions never move.
#[derive(Debug, Clone)]
struct Hashed {
    items: Vec<(Str, StoredValue)>,
    index: hashbrown::HashTable<u32>,
    state: foldhash::fast::RandomState,
}

impl Hashed {
    fn new(items: Vec<(Str, StoredValue)>) -> Self {
        let mut h = Hashed {
            index: hashbrown::HashTable::with_capacity(items.len() * 2),
            items: Vec::with_capacity(items.len() * 2),
            state: foldhash::fast::RandomState::default(),
        };
        for (k, v) in items {
            h.push(k, v);
        }
        h
    }

    fn hash(&self, key: &str) -> u64 {
        std::hash::BuildHasher::hash_one(&self.state, key)
    }

    fn position(&self, key: &str) -> Option<usize> {
        let items = &self.items;
        self.index
            .find(self.hash(key), |&i| {
                items.get(i as usize).is_some_and(|(k, _)| key_eq(k, key))
            })
            .map(|&i| i as usize)
    }

    /// Appends an entry whose key is not in the map.
    fn push(&mut self, key: Str, value: StoredValue) {
        let Ok(i) = u32::try_from(self.items.len()) else {
            return; // Over 4 billion entries in one record: nothing more is kept.
        };
        let hash = self.hash(&key);
        self.items.push((key, value));
        let (items, state) = (&self.items, &self.state);
        self.index.insert_unique(hash, i, |&j| {
            items.get(j as usize).map_or(0, |(k, _)| {
                std::hash::BuildHasher::hash_one(state, k.as_str())
            })
        });
    }
}

impl Default for Entries {
    fn default() -> Self {
        Entries::List(Small::default())
    }
}

impl Entries {
    fn as_slice(&self) -> &[(Str, StoredValue)] {
        match self {
            Entries::List(l) => l.as_slice(),
            Entries::Hashed(h) => &h.items,
        }
    }

    fn as_mut_slice(&mut self) -> &mut [(Str, StoredValue)] {
        match self {
            Entries::List(l) => l.as_mut_slice(),
            Entries::Hashed(h) => &mut h.items,
        }
    }

    fn position(&self, key: &str) -> Option<usize> {
        match self {
            Entries::List(l) => l.as_slice().iter().position(|(k, _)| key_eq(k, key)),
            Entries::Hashed(h) => h.position(key),
        }
    }

    fn get(&self, key: &str) -> Option<&StoredValue> {
        let i = self.position(key)?;
        self.as_slice().get(i).map(|(_, v)| v)
    }

    /// Inserts or replaces (a replaced entry keeps its position); returns whether the map
    /// changed.
    fn insert(&mut self, key: Str, value: StoredValue) -> bool {
        if let Some(i) = self.position(&key) {
            return match self.as_mut_slice().get_mut(i) {
                Some((_, slot)) if *slot != value => {
                    *slot = value;
                    true
                }
                _ => false,
            };
        }
        match self {
            Entries::List(l) if l.as_slice().len() >= HASHED_ABOVE => {
                let mut items = match std::mem::take(l) {
                    Small::One(only) => vec![only],
                    Small::Many(v) => v,
                };
                items.push((key, value));
                *self = Entries::Hashed(Box::new(Hashed::new(items)));
            }
            Entries::List(l) => l.push((key, value)),
            Entries::Hashed(h) => h.push(key, value),
        }
        true
    }

    fn iter(&self) -> impl Iterator<Item = (&str, &StoredValue)> {
        self.as_slice().iter().map(|(k, v)| (k.as_str(), v))
    }

    fn len(&self) -> usize {
        self.as_slice().len()
    }

    fn to_map(&self) -> Map<String, Value> {
        self.iter()
            .map(|(k, v)| (k.to_string(), v.to_value()))
            .collect()
    }
}

/// Equal when both hold the same keys with the same values, in any order (as JSON objects).
impl PartialEq for Entries {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().all(|(k, v)| other.get(k) == Some(v))
    }
}

impl Serialize for Entries {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.len()))?;
        for (k, v) in self.iter() {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

impl<'de> Deserialize<'de> for Entries {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct EntriesVisitor;
        impl<'de> Visitor<'de> for EntriesVisitor {
            type Value = Entries;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Entries, A::Error> {
                let mut out = Entries::default();
                while let Some(key) = access.next_key::<std::borrow::Cow<'de, str>>()? {
                    let value: StoredValue = access.next_value()?;
                    // A repeated key keeps its first position and its last value, as JSON.parse.
                    out.insert(Str::from(key.as_ref()), value);
                }
                Ok(out)
            }
        }
        d.deserialize_map(EntriesVisitor)
    }
}

/// The members of a record that decisions rarely touch (converted goals, segments, unknown
/// members), kept out of line so a record stays small.
#[derive(Debug, Clone, Default)]
struct Rest {
    goals: Option<Entries>,
    segments: Option<Map<String, Value>>,
    extra: Map<String, Value>,
}

/// One visitor's stored state: `{bucketing?, locations?, segments?, goals?}` plus any members
/// other SDKs wrote, which are kept untouched.
///
/// The layout is compact (a fresh decision's record holds its decision and location inline, with
/// inline strings, and allocates nothing);
/// it serializes to and from the shared JSON shape with [`serde`], [`StoreData::to_json`] and
/// [`StoreData::from_json`]. Two records are equal when their JSON objects are equal.
#[derive(Debug, Clone, Default)]
pub struct StoreData {
    bucketing: Option<Entries>,
    locations: Option<ValueList>,
    rest: Option<Box<Rest>>,
}

/// A write the engine asks for. Applying the same op twice is harmless.
#[derive(Debug, Clone, PartialEq)]
pub enum StoreOp {
    /// Record a sticky decision.
    Bucketing {
        /// Experience id.
        experience_id: Str,
        /// Variation id.
        variation_id: Str,
    },
    /// Deep-merge properties into `segments` (arrays are unioned, new elements first).
    MergeSegments(Map<String, Value>),
    /// Replace the active-location list.
    Locations(ValueList),
    /// Mark a goal as converted.
    Goal(Str),
}

const MEMBERS: [&str; 4] = ["bucketing", "locations", "segments", "goals"];

impl StoreData {
    /// Whether nothing at all is stored.
    pub fn is_empty(&self) -> bool {
        self.bucketing.is_none()
            && self.locations.is_none()
            && self.goals_entries().is_none()
            && self.segments().is_none()
            && self.extra().is_none()
    }

    /// Drops this record. A record that owns no memory (a typical decision's: one decision and
    /// one location, their strings inline, nothing else) is forgotten instead, which frees
    /// nothing that dropping it would, and its drop code is skipped.
    #[inline]
    pub fn discard(self) {
        if self.owns_no_memory() {
            std::mem::forget(self);
        }
    }

    /// Whether dropping this record would free nothing: every string inline or static, no
    /// allocated list, no JSON value, none of the rarely used members.
    #[inline]
    fn owns_no_memory(&self) -> bool {
        fn free(v: &StoredValue) -> bool {
            match v {
                StoredValue::Str(s) => !s.is_heap_allocated(),
                StoredValue::Bool(_) => true,
                StoredValue::Json(_) => false,
            }
        }
        // Destructured so that a new member cannot be forgotten here.
        let StoreData {
            bucketing,
            locations,
            rest,
        } = self;
        let bucketing = match bucketing {
            None => true,
            Some(Entries::List(Small::One((k, v)))) => !k.is_heap_allocated() && free(v),
            Some(Entries::List(Small::Many(v))) => v.capacity() == 0,
            Some(Entries::Hashed(_)) => false,
        };
        let locations = match locations {
            None => true,
            Some(ValueList(Small::One(v))) => free(v),
            Some(ValueList(Small::Many(v))) => v.capacity() == 0,
        };
        bucketing && locations && rest.is_none()
    }

    /// Applies one write; returns whether the data changed.
    pub fn apply(&mut self, op: &StoreOp) -> bool {
        match op {
            StoreOp::Bucketing {
                experience_id,
                variation_id,
            } => self.set_bucketing(experience_id.clone(), variation_id.clone()),
            StoreOp::MergeSegments(props) => {
                let existed = self.segments().is_some();
                let seg = self.segments_mut();
                if !existed {
                    // A first write, even of `{}`, creates the member (as the reference does).
                    merge_into(seg, props);
                    return true;
                }
                let before = seg.clone();
                merge_into(seg, props);
                before != *seg
            }
            StoreOp::Locations(list) => self.set_locations(list.clone()),
            StoreOp::Goal(key) => self.mark_goal(key.clone()),
        }
    }

    /// Applies one write, consuming it (no copy of its strings or lists); returns whether the data
    /// changed.
    pub fn apply_owned(&mut self, op: StoreOp) -> bool {
        match op {
            StoreOp::Bucketing {
                experience_id,
                variation_id,
            } => self.set_bucketing(experience_id, variation_id),
            StoreOp::Locations(list) => self.set_locations(list),
            StoreOp::Goal(key) => self.mark_goal(key),
            op @ StoreOp::MergeSegments(_) => self.apply(&op),
        }
    }

    /// Applies several writes; returns whether the data changed.
    pub fn apply_all<'a>(&mut self, ops: impl IntoIterator<Item = &'a StoreOp>) -> bool {
        let mut changed = false;
        for op in ops {
            changed |= self.apply(op);
        }
        changed
    }

    /// The stored variation id for `experience_id`, when it is a non-empty string.
    pub fn bucketed_variation(&self, experience_id: &str) -> Option<&str> {
        self.bucketing
            .as_ref()?
            .get(experience_id)
            .and_then(StoredValue::as_str)
            .filter(|s| !s.is_empty())
    }

    /// Whether the visitor has any truthy stored bucketing entry for `experience_id`.
    pub fn has_bucketing(&self, experience_id: &str) -> bool {
        self.bucketing
            .as_ref()
            .and_then(|b| b.get(experience_id))
            .is_some_and(StoredValue::truthy)
    }

    /// Records a sticky decision; returns whether the data changed.
    #[inline]
    pub fn set_bucketing(
        &mut self,
        experience_id: impl Into<Str>,
        variation_id: impl Into<Str>,
    ) -> bool {
        let value = StoredValue::Str(variation_id.into());
        match &mut self.bucketing {
            Some(entries) => entries.insert(experience_id.into(), value),
            // A visitor's first decision: the entry is the list's inline element.
            None => {
                self.bucketing = Some(Entries::List(Small::One((experience_id.into(), value))));
                true
            }
        }
    }

    /// Every stored bucketing entry (experience id, value), in stored order.
    pub fn bucketing(&self) -> impl Iterator<Item = (&str, &StoredValue)> {
        self.bucketing.iter().flat_map(Entries::iter)
    }

    /// The `bucketing` member as a JSON object (`None` when absent).
    pub fn bucketing_map(&self) -> Option<Map<String, Value>> {
        self.bucketing.as_ref().map(Entries::to_map)
    }

    /// The `bucketing` member as `(experience id, value)` pairs in stored order (`None` when
    /// absent): the order JavaScript would list the stored object's own keys in, before its
    /// array-index rule, whatever map type `serde_json` uses in the program.
    pub fn bucketing_members(&self) -> Option<Vec<(String, Value)>> {
        self.bucketing.as_ref().map(|b| {
            b.iter()
                .map(|(k, v)| (k.to_string(), v.to_value()))
                .collect()
        })
    }

    /// The active-location list (`None` when never written).
    pub fn locations(&self) -> Option<&[StoredValue]> {
        self.locations.as_ref().map(ValueList::as_slice)
    }

    /// Replaces the active-location list; returns whether the data changed.
    #[inline]
    pub fn set_locations(&mut self, list: impl Into<ValueList>) -> bool {
        let list = list.into();
        if self.locations() == Some(list.as_slice()) {
            return false;
        }
        self.locations = Some(list);
        true
    }

    /// Whether goal `key` was already converted (JS truthiness of `goals[key]`).
    pub fn goal_triggered(&self, key: &str) -> bool {
        self.goals_entries()
            .and_then(|g| g.get(key))
            .is_some_and(StoredValue::truthy)
    }

    /// Marks goal `key` as converted (`goals[key] = true`); returns whether the data changed.
    pub fn mark_goal(&mut self, key: impl Into<Str>) -> bool {
        self.rest
            .get_or_insert_with(Box::default)
            .goals
            .get_or_insert_with(Entries::default)
            .insert(key.into(), StoredValue::Bool(true))
    }

    /// Every stored goal entry (goal key, value), in stored order.
    pub fn goals(&self) -> impl Iterator<Item = (&str, &StoredValue)> {
        self.goals_entries().into_iter().flat_map(Entries::iter)
    }

    fn goals_entries(&self) -> Option<&Entries> {
        self.rest.as_ref()?.goals.as_ref()
    }

    /// The stored segments and visitor properties (`None` when never written).
    pub fn segments(&self) -> Option<&Map<String, Value>> {
        self.rest.as_ref()?.segments.as_ref()
    }

    /// The stored segments, created empty when absent.
    pub fn segments_mut(&mut self) -> &mut Map<String, Value> {
        self.rest
            .get_or_insert_with(Box::default)
            .segments
            .get_or_insert_with(Map::new)
    }

    /// Members this SDK does not use (written by other SDKs or by the integrator); `None` when
    /// there are none.
    pub fn extra(&self) -> Option<&Map<String, Value>> {
        self.rest
            .as_ref()
            .map(|r| &r.extra)
            .filter(|e| !e.is_empty())
    }

    /// The members this SDK does not use, for editing. Names of the known members (`bucketing`,
    /// `locations`, `segments`, `goals`) placed here are ignored when the record is serialized.
    pub fn extra_mut(&mut self) -> &mut Map<String, Value> {
        &mut self.rest.get_or_insert_with(Box::default).extra
    }

    /// The record as the shared JSON object.
    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or_else(|_| Value::Object(Map::new()))
    }

    /// Reads a record from the shared JSON object. A value nested 128 levels deep or more is an
    /// error, as it is for [`StoreData::from_json`] (serde_json's limit; reading it would recurse
    /// that deep, and overflow the thread's stack long before a `Value` built in memory runs out
    /// of room).
    pub fn from_value(value: Value) -> Result<StoreData, serde_json::Error> {
        const LIMIT: usize = 128;
        if crate::tracking::nesting_depth(&value, LIMIT) >= LIMIT {
            dismantle(value);
            return Err(serde::de::Error::custom("recursion limit exceeded"));
        }
        serde_json::from_value(value)
    }

    /// Serializes to the shared JSON shape.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| String::from("{}"))
    }

    /// Parses the shared JSON shape. Numbers are read correctly rounded, as `JSON.parse` reads
    /// them (see [`crate::json::from_str`]), so a stored visitor property survives a round trip
    /// through the store bit for bit.
    pub fn from_json(text: &str) -> Result<StoreData, serde_json::Error> {
        crate::json::from_str(text)
    }
}

impl PartialEq for StoreData {
    fn eq(&self, other: &Self) -> bool {
        self.bucketing == other.bucketing
            && self.locations() == other.locations()
            && self.goals_entries() == other.goals_entries()
            && self.segments() == other.segments()
            && self.extra() == other.extra()
    }
}

impl Serialize for StoreData {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        if let Some(b) = &self.bucketing {
            m.serialize_entry("bucketing", b)?;
        }
        if let Some(l) = self.locations() {
            m.serialize_entry("locations", l)?;
        }
        if let Some(seg) = self.segments() {
            m.serialize_entry("segments", seg)?;
        }
        if let Some(g) = self.goals_entries() {
            m.serialize_entry("goals", g)?;
        }
        for (k, v) in self.extra().into_iter().flatten() {
            if !MEMBERS.contains(&k.as_str()) {
                m.serialize_entry(k, v)?;
            }
        }
        m.end()
    }
}

impl<'de> Deserialize<'de> for StoreData {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct DataVisitor;
        impl<'de> Visitor<'de> for DataVisitor {
            type Value = StoreData;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a visitor record (a JSON object)")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<StoreData, A::Error> {
                let mut d = StoreData::default();
                while let Some(key) = access.next_key::<String>()? {
                    match key.as_str() {
                        "bucketing" => d.bucketing = access.next_value()?,
                        "locations" => {
                            let list: Option<Vec<StoredValue>> = access.next_value()?;
                            d.locations = list.map(ValueList::from);
                        }
                        "goals" => {
                            let goals: Option<Entries> = access.next_value()?;
                            if goals.is_some() || d.rest.is_some() {
                                d.rest.get_or_insert_with(Box::default).goals = goals;
                            }
                        }
                        "segments" => {
                            let seg: Option<Map<String, Value>> = access.next_value()?;
                            match seg {
                                Some(seg) => *d.segments_mut() = seg,
                                None => {
                                    if let Some(r) = d.rest.as_mut() {
                                        r.segments = None;
                                    }
                                }
                            }
                        }
                        _ => {
                            let v: Value = access.next_value()?;
                            d.extra_mut().insert(key, v);
                        }
                    }
                }
                Ok(d)
            }
        }
        d.deserialize_map(DataVisitor)
    }
}

/// The seven report-segment keys (the only visitor data sent with tracking events).
pub const REPORT_SEGMENT_KEYS: [&str; 7] = [
    "country",
    "browser",
    "devices",
    "source",
    "campaign",
    "visitorType",
    "customSegments",
];

/// Whether `key` is one of the seven report-segment keys.
pub fn is_report_segment_key(key: &str) -> bool {
    REPORT_SEGMENT_KEYS.contains(&key)
}

/// The report-segment members of `props`, in their order; `None` when there are none.
pub fn report_segments(props: &Map<String, Value>) -> Option<Map<String, Value>> {
    let out: Map<String, Value> = props
        .iter()
        .filter(|(k, _)| is_report_segment_key(k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    (!out.is_empty()).then_some(out)
}

/// The reference deep merge (`objectDeepMerge`) of `new` into `target`: arrays on both sides become
/// the union with new elements first, truthy objects on both sides merge recursively, anything else
/// is replaced.
pub fn merge_into(target: &mut Map<String, Value>, new: &Map<String, Value>) {
    for (k, nv) in new {
        match target.get_mut(k) {
            Some(old) => merge_value(old, nv),
            None => {
                target.insert(k.clone(), nv.clone());
            }
        }
    }
}

/// The members of `segments` that `held` lacks (all of them when there is no `held`): what
/// merging `segments` adds without changing a member `held` has.
pub fn absent_segments(
    held: Option<&Map<String, Value>>,
    segments: &Map<String, Value>,
) -> Map<String, Value> {
    segments
        .iter()
        .filter(|(k, _)| !held.is_some_and(|h| h.contains_key(k.as_str())))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Merges `new` into `old` in place with the rules of [`merge_into`].
pub fn merge_value(old: &mut Value, new: &Value) {
    match (&mut *old, new) {
        (Value::Array(o), Value::Array(n)) => {
            *o = array_union(n, o);
        }
        (Value::Object(o), Value::Object(n)) => merge_into(o, n),
        (slot, n) => *slot = n.clone(),
    }
}

/// `[...new Set([...new, ...old])]` with SameValueZero equality (objects and arrays are never equal
/// to each other, as they compare by identity in JS).
pub fn array_union(new: &[Value], old: &[Value]) -> Vec<Value> {
    let mut out: Vec<Value> = Vec::with_capacity(new.len() + old.len());
    for v in new.iter().chain(old) {
        let dup = !matches!(v, Value::Object(_) | Value::Array(_))
            && out.iter().any(|e| same_value_zero(e, v));
        if !dup {
            out.push(v.clone());
        }
    }
    out
}

fn same_value_zero(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_f64(), y.as_f64()) {
            (Some(x), Some(y)) => x == y || (x.is_nan() && y.is_nan()),
            _ => false,
        },
        (Value::String(x), Value::String(y)) => x == y,
        (Value::Bool(x), Value::Bool(y)) => x == y,
        (Value::Null, Value::Null) => true,
        _ => false,
    }
}

/// JS strict equality (`===`) between two JSON values; objects and arrays are never equal.
pub fn strict_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_f64(), y.as_f64()) {
            (Some(x), Some(y)) => x == y,
            _ => false,
        },
        (Value::String(x), Value::String(y)) => x == y,
        (Value::Bool(x), Value::Bool(y)) => x == y,
        (Value::Null, Value::Null) => true,
        _ => false,
    }
}

/// Drops `value` level by level: dropping a deeply nested `Value` the usual way recurses once
/// per level.
fn dismantle(value: Value) {
    let mut stack = vec![value];
    while let Some(v) = stack.pop() {
        match v {
            Value::Array(items) => stack.extend(items),
            Value::Object(members) => stack.extend(members.into_iter().map(|(_, v)| v)),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A record built in memory as a `Value` nested 5,000 levels deep is refused, on a 2 MiB
    /// thread stack (reading it recursed once per level and overflowed that stack: an abort, not
    /// an error); the depths `from_json` reads are read by `from_value` too.
    #[test]
    fn from_value_refuses_what_from_json_refuses() {
        // Built level by level: `json!` would copy the nested value recursively.
        let nested = |depth: usize| {
            let mut v = json!("x");
            for _ in 0..depth {
                v = Value::Array(vec![v]);
            }
            let segments = Map::from_iter([("deep".to_string(), v)]);
            Value::Object(Map::from_iter([(
                "segments".to_string(),
                Value::Object(segments),
            )]))
        };
        for depth in [100, 124, 125, 126, 127, 128] {
            let v = nested(depth);
            assert_eq!(
                StoreData::from_value(v.clone()).is_ok(),
                StoreData::from_json(&v.to_string()).is_ok(),
                "{depth}"
            );
        }
        assert!(StoreData::from_value(nested(100)).is_ok());
        let worker = std::thread::Builder::new().stack_size(2 << 20);
        let refused = worker
            .spawn(move || StoreData::from_value(nested(5_000)).is_err())
            .map(|t| t.join());
        assert!(matches!(refused, Ok(Ok(true))));
    }

    /// Only a record whose drop frees nothing may be forgotten: every string inline, no
    /// allocated list, no JSON value, no goals, segments or other members.
    #[test]
    fn only_records_owning_no_memory_are_forgotten() {
        let long = "a string too long to be held inline in a Str";
        let record = |text: &str| StoreData::from_json(text).unwrap_or_default();
        let free = [
            "{}".to_string(),
            r#"{"bucketing": {"100": "101"}}"#.to_string(),
            r#"{"bucketing": {"100": "101"}, "locations": ["home"]}"#.to_string(),
            r#"{"bucketing": {"100": true}, "locations": []}"#.to_string(),
        ];
        for text in &free {
            assert!(record(text).owns_no_memory(), "{text}");
        }
        let owning = [
            format!(r#"{{"bucketing": {{"{long}": "101"}}}}"#),
            format!(r#"{{"bucketing": {{"100": "{long}"}}}}"#),
            format!(r#"{{"locations": ["{long}"]}}"#),
            r#"{"bucketing": {"100": "101", "200": "201"}}"#.to_string(),
            r#"{"bucketing": {"100": {"x": 1}}}"#.to_string(),
            r#"{"locations": ["home", "shop"]}"#.to_string(),
            r#"{"locations": [1]}"#.to_string(),
            r#"{"goals": {"g": true}}"#.to_string(),
            r#"{"segments": {}}"#.to_string(),
            r#"{"other": 1}"#.to_string(),
        ];
        for text in &owning {
            let data = record(text);
            assert!(!data.is_empty(), "{text} parses");
            assert!(!data.owns_no_memory(), "{text}");
            data.discard();
        }
        let mut built = StoreData::default();
        built.set_bucketing("100", "101");
        built.set_locations(vec![StoredValue::Str("home".into())]);
        assert!(built.owns_no_memory());
        built.set_bucketing(long, "101");
        assert!(!built.owns_no_memory());
    }

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    /// Key comparisons made to insert `n` bucketing entries and then look each one up.
    fn comparisons_for(n: usize) -> u64 {
        KEY_COMPARISONS.with(|c| c.set(0));
        let mut d = StoreData::default();
        for i in 0..n {
            d.set_bucketing(format!("{}", 100_000 + i).as_str(), "v");
        }
        for i in 0..n {
            assert_eq!(d.bucketed_variation(&format!("{}", 100_000 + i)), Some("v"));
        }
        KEY_COMPARISONS.with(std::cell::Cell::get)
    }

    #[test]
    fn a_list_with_a_value_pushed_is_the_list_then_the_value() {
        let items: Vec<StoredValue> = ["a", "b", "c"].into_iter().map(StoredValue::from).collect();
        for n in 0..=items.len() {
            let list = ValueList::with_pushed(&items[..n], StoredValue::from("new"));
            let mut expected: Vec<&str> =
                items[..n].iter().filter_map(StoredValue::as_str).collect();
            expected.push("new");
            let got: Vec<&str> = list.iter().filter_map(StoredValue::as_str).collect();
            assert_eq!(got, expected, "{n} items before");
            let mut d = StoreData::default();
            d.set_locations(list);
            let stored: Value = serde_json::from_str(&d.to_json()).unwrap_or_default();
            assert_eq!(stored.get("locations"), Some(&json!(expected)));
        }
    }

    #[test]
    fn stored_bucketing_lookups_are_constant_per_entry() {
        // 2n inserts and lookups: linear total work, a bounded number of comparisons each.
        let (n, two_n) = (comparisons_for(2_000), comparisons_for(4_000));
        assert!(
            two_n <= 2 * n + n / 4,
            "{n} comparisons at 2,000 entries, {two_n} at 4,000: not linear"
        );
        assert!(n <= 4 * 2 * 2_000, "{n} comparisons for 4,000 operations");
        // The common case stays a short list.
        assert!(comparisons_for(1) <= 2);
    }

    #[test]
    fn large_maps_keep_json_order_and_bytes() {
        // 40 entries (past the hashed threshold), the 3rd one repeated with a new value at the
        // end, as another SDK could write it: first position, last value, as JSON.parse.
        let entries: Vec<String> = (0..40)
            .map(|i| format!("\"{}\":\"v{i}\"", 500 - i))
            .collect();
        let input = format!(
            r#"{{"bucketing":{{{},"498":"late"}},"goals":{{{}}}}}"#,
            entries.join(","),
            (0..20)
                .map(|i| format!("\"g{i}\":true"))
                .collect::<Vec<_>>()
                .join(",")
        );
        let expected = input
            .replace(r#""498":"v2""#, r#""498":"late""#)
            .replace(r#","498":"late"}"#, "}");
        let d = StoreData::from_json(&input).unwrap_or_default();
        assert_eq!(d.to_json(), expected);
        assert_eq!(d.bucketed_variation("498"), Some("late"));
        assert_eq!(d.bucketed_variation("461"), Some("v39"));
        assert!(d.goal_triggered("g19") && !d.goal_triggered("g20"));
        // Writes append in order; rewriting an entry keeps its place; equal records compare
        // equal whatever their order or representation.
        let mut built = StoreData::default();
        for i in (0..40).rev() {
            built.set_bucketing(format!("{}", 500 - i).as_str(), format!("v{i}").as_str());
        }
        assert!(built.set_bucketing("498", "late"));
        assert!(!built.set_bucketing("498", "late"));
        for i in 0..20 {
            built.mark_goal(format!("g{i}").as_str());
        }
        assert_eq!(built, d);
        assert_ne!(built.to_json(), d.to_json(), "same members, other order");
        let mut other = d.clone();
        assert!(other.set_bucketing("461", "changed"));
        assert_ne!(other, d);
    }

    #[test]
    fn value_list_push_and_remove_keep_order_across_inline_and_heap() {
        let v = |s: &str| StoredValue::Str(s.into());
        let mut list = ValueList::new();
        assert!(list.is_empty());
        list.push(v("a"));
        assert_eq!(list.as_slice(), &[v("a")]);
        list.push(v("b"));
        list.push(v("c"));
        assert_eq!(list.remove(1), Some(v("b")));
        assert_eq!(list.as_slice(), &[v("a"), v("c")]);
        assert_eq!(list.remove(5), None);
        assert_eq!(ValueList::from(vec![v("a"), v("c")]), list);
        assert_eq!(list.iter().cloned().collect::<ValueList>(), list);

        let mut one = ValueList::from(&[v("x")][..]);
        assert_eq!(one.remove(1), None);
        assert_eq!(one.remove(0), Some(v("x")));
        assert!(one.is_empty());
        one.push(v("y"));
        assert_eq!(&*one, &[v("y")]);
        assert_ne!(one, ValueList::new());
    }

    #[test]
    fn merge_unions_arrays_new_first() {
        let mut t = obj(json!({"customSegments": ["a", "b"], "country": "US"}));
        merge_into(
            &mut t,
            &obj(json!({"customSegments": ["c", "a"], "country": "GB"})),
        );
        assert_eq!(
            Value::Object(t),
            json!({"customSegments": ["c", "a", "b"], "country": "GB"})
        );
    }

    #[test]
    fn merge_recurses_into_objects_and_replaces_scalars() {
        let mut t = obj(json!({"a": {"x": 1, "y": [1]}, "b": [1], "c": {"k": 1}}));
        merge_into(
            &mut t,
            &obj(json!({"a": {"y": [2], "z": null}, "b": {"o": 1}, "c": 5})),
        );
        assert_eq!(
            Value::Object(t),
            json!({"a": {"x": 1, "y": [2, 1], "z": null}, "b": {"o": 1}, "c": 5})
        );
    }

    #[test]
    fn union_keeps_objects_by_identity() {
        let u = array_union(&[json!({"a": 1}), json!(1)], &[json!({"a": 1}), json!(1.0)]);
        assert_eq!(u, vec![json!({"a": 1}), json!(1), json!({"a": 1})]);
    }

    #[test]
    fn ops_apply_and_report_change() {
        let mut d = StoreData::default();
        let op = StoreOp::Bucketing {
            experience_id: "1".into(),
            variation_id: "2".into(),
        };
        assert!(d.apply(&op));
        assert!(!d.apply(&op));
        assert!(d.apply(&StoreOp::Goal("g".into())));
        assert!(!d.apply(&StoreOp::Goal("g".into())));
        assert!(d.goal_triggered("g"));
        assert_eq!(d.bucketed_variation("1"), Some("2"));
        assert!(d.apply(&StoreOp::Locations(vec!["home".into()].into())));
        assert!(d.apply(&StoreOp::Locations(ValueList::new())));
        assert_eq!(d.locations(), Some(&[][..]));
        // Segments: the first write creates the member even when empty; a repeat is no change.
        assert!(d.apply(&StoreOp::MergeSegments(Map::new())));
        assert!(!d.apply(&StoreOp::MergeSegments(Map::new())));
        assert!(d.apply(&StoreOp::MergeSegments(obj(json!({"country": "US"})))));
        assert!(!d.apply(&StoreOp::MergeSegments(obj(json!({"country": "US"})))));
        assert_eq!(
            d.to_value(),
            json!({"bucketing": {"1": "2"}, "locations": [], "segments": {"country": "US"}, "goals": {"g": true}})
        );
    }

    #[test]
    fn json_round_trip_keeps_unknown_members() {
        let text = r#"{"segments":{"browser":"CH","country":"US","customSegments":["x"]},"bucketing":{"100218245":"100299457"},"goals":{"increase-engagement":true},"other":{"k":1}}"#;
        let d = StoreData::from_json(text).unwrap_or_default();
        assert_eq!(d.bucketed_variation("100218245"), Some("100299457"));
        assert!(d.goal_triggered("increase-engagement"));
        assert_eq!(
            d.extra().and_then(|e| e.get("other")),
            Some(&json!({"k": 1}))
        );
        let back: Value = serde_json::from_str(&d.to_json()).unwrap_or(Value::Null);
        let orig: Value = serde_json::from_str(text).unwrap_or(Value::Null);
        assert_eq!(back, orig);
    }

    #[test]
    fn json_shape_is_kept_for_any_member_value() {
        // Values other SDKs may have written: numbers, nulls, nested JSON, empty strings.
        let orig = json!({
            "bucketing": {"1": 5, "2": "", "3": null, "4": {"v": [1]}, "5": false},
            "locations": ["a", 7, null, {"k": 1}],
            "goals": {"g1": 1, "g2": "yes", "g3": 0},
            "segments": {},
            "zzz": [1, 2],
        });
        let d = StoreData::from_value(orig.clone()).unwrap_or_default();
        assert_eq!(d.to_value(), orig);
        assert_eq!(d.bucketed_variation("1"), None);
        assert_eq!(d.bucketed_variation("2"), None);
        assert!(d.has_bucketing("1"));
        assert!(!d.has_bucketing("2") && !d.has_bucketing("3") && !d.has_bucketing("5"));
        assert!(d.has_bucketing("4"));
        assert!(d.goal_triggered("g1") && d.goal_triggered("g2") && !d.goal_triggered("g3"));
        assert_eq!(d.segments(), Some(&Map::new()));
        // Members that are present but `null` are read as absent and not written back.
        let d = StoreData::from_json(r#"{"bucketing":null,"segments":null}"#).unwrap_or_default();
        assert!(d.is_empty());
        assert_eq!(d.to_json(), "{}");
        // Members of the wrong type are an error, not a silent loss.
        assert!(StoreData::from_json(r#"{"bucketing":[1]}"#).is_err());
        assert!(StoreData::from_json(r#"{"segments":"x"}"#).is_err());
        assert!(StoreData::from_json("[]").is_err());
    }

    #[test]
    fn equality_is_json_object_equality() {
        let a = StoreData::from_json(r#"{"bucketing":{"1":"a","2":"b"}}"#).unwrap_or_default();
        let b = StoreData::from_json(r#"{"bucketing":{"2":"b","1":"a"}}"#).unwrap_or_default();
        let c = StoreData::from_json(r#"{"bucketing":{"2":"b","1":"c"}}"#).unwrap_or_default();
        assert_eq!(a, b);
        assert_ne!(a, c);
        // An untouched `extra_mut` does not make a record different from an empty one.
        let mut e = StoreData::default();
        e.extra_mut();
        assert_eq!(e, StoreData::default());
        assert!(e.is_empty());
    }

    #[test]
    fn one_inline_element_grows_into_a_list_in_order() {
        let mut d = StoreData::default();
        for (i, e) in ["10", "20", "30"].iter().enumerate() {
            assert!(d.set_bucketing(*e, format!("v{i}").as_str()));
            assert_eq!(d.bucketing().count(), i + 1);
        }
        assert!(!d.set_bucketing("20", "v1"));
        assert!(d.set_bucketing("20", "changed"));
        for n in 0..4 {
            let list: Vec<StoredValue> = (0..n).map(|i| StoredValue::from(json!(i))).collect();
            assert!(d.set_locations(list.clone()), "{n} elements: a change");
            assert!(
                !d.set_locations(list.clone()),
                "{n} elements again: no change"
            );
            assert_eq!(d.locations(), Some(&list[..]));
        }
        assert_eq!(
            d.to_value(),
            json!({"bucketing": {"10": "v0", "20": "changed", "30": "v2"}, "locations": [0, 1, 2]})
        );
        let back = StoreData::from_json(&d.to_json()).unwrap_or_default();
        assert_eq!(back, d);
    }

    #[test]
    fn repeated_keys_keep_first_position_and_last_value() {
        let d =
            StoreData::from_json(r#"{"bucketing":{"1":"a","2":"b","1":"c"}}"#).unwrap_or_default();
        assert_eq!(d.to_json(), r#"{"bucketing":{"1":"c","2":"b"}}"#);
    }

    #[test]
    fn known_member_names_in_extra_are_not_serialized_twice() {
        let mut d = StoreData::default();
        d.set_bucketing("1", "2");
        d.extra_mut().insert("bucketing".into(), json!("shadow"));
        d.extra_mut().insert("mine".into(), json!(1));
        assert_eq!(d.to_json(), r#"{"bucketing":{"1":"2"},"mine":1}"#);
    }

    #[test]
    fn report_segment_filter() {
        let props = obj(json!({"country": "US", "plan": "pro", "customSegments": ["1"]}));
        assert_eq!(
            report_segments(&props).map(Value::Object),
            Some(json!({"country": "US", "customSegments": ["1"]}))
        );
        assert_eq!(report_segments(&obj(json!({"plan": "pro"}))), None);
    }
}
