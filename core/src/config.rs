//! The served project config (SPEC §3), parsed from untrusted JSON into an indexed, immutable
//! snapshot.
//!
//! Parsing accepts what the reference SDK accepts and rejects, with a [`ConfigError`] naming the
//! field, what it cannot make sense of (a list that is not a list, an entity that is not an
//! object, a missing `account_id` or `project.id`). Values inside entities follow the reference's
//! lenient JS semantics: ids are compared as `String(id)`, absent fields are `undefined`.
//!
//! Everything a decision needs is computed once here: lookups by key and id, the resolved
//! audiences, segments and locations of each experience, the compiled rule trees and the bucket
//! layouts. A decision then only reads the snapshot.

use crate::bucketing::{AnchoredLayout, ArmSpec, PackedLayout, is_anchored};
use crate::intern::config_str;
use crate::js;
use crate::keyorder::js_key_order;
use crate::rules::{RegexConcern, RuleSet};
use crate::tree::{self, Items, Members, NodeRef, Tree};
use serde_json::{Map, Value};
use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::sync::OnceLock;

/// A config index (key or id to position). Looked up on every decision, so it uses foldhash
/// (randomly seeded per map) rather than SipHash; its keys come from the served config.
type Index = HashMap<Str, usize, foldhash::fast::RandomState>;

/// Up to this many experiences, [`ProjectConfig::experience_by_key`] scans instead of hashing.
const SCAN_EXPERIENCES: usize = 8;

/// Why a config was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The text is not JSON.
    #[error("config is not valid JSON: {0}")]
    Json(String),
    /// A field has the wrong JSON type.
    #[error("config field `{field}` must be {expected}, found {found}")]
    InvalidType {
        /// Path of the field, e.g. `experiences[2].variations`.
        field: String,
        /// What was expected.
        expected: &'static str,
        /// The JSON type found.
        found: &'static str,
    },
    /// A required field is absent or empty.
    #[error("config field `{0}` is missing or empty")]
    Missing(String),
    /// The server answered with an error object instead of a config.
    #[error("config is an error response: {0}")]
    ErrorResponse(String),
}

/// What kind of JSON value `v` is, for messages: `"null"`, `"a boolean"`, `"an array"`, ...
pub fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// An immutable string that is cheap to clone: ids, keys and names are copied into every
/// decision, so strings up to 23 bytes are stored inline (a clone is a copy, no allocation and no
/// shared reference count touched by every thread). A config's longer strings are interned for
/// the life of the process (see [`crate::intern`]), so they copy the same way.
pub type Str = smol_str::SmolStr;

fn s(v: Option<NodeRef<'_>>) -> Str {
    config_str(&opt_js(v))
}

/// A `regexMatches` pattern worth a warning, from [`ProjectConfig::regex_warnings`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegexWarning {
    /// Where the rule is: `"audience KEY"`, `"segment KEY"`, `"location KEY"`, `"goal KEY"` or
    /// `"experience KEY site_area"`.
    pub place: String,
    /// The pattern as written in the config (`String(rule.value)`).
    pub pattern: String,
    /// Why it deserves a warning; its `Display` is a one-line explanation.
    pub concern: RegexConcern,
}

/// A variation of an experience. Its object as served is [`ProjectConfig::variation_raw`].
#[derive(Debug, Clone)]
pub struct Variation {
    /// `String(id)`.
    pub id: Str,
    /// Whether the config's id is a JSON string (the reference re-reads variations by strict equality
    /// with a string id, so a non-string id can be bucketed but never returned).
    pub id_is_string: bool,
    /// The variation a decision for this one returns: the reference turns the arm its walk
    /// selected back into a variation by looking its id up among the string ids, so this is the
    /// first variation whose id is the same JSON string (itself unless an earlier arm shares
    /// the id), and `None` when no variation has it as a string id.
    pub returned_as: Option<usize>,
    /// The variation key, when it is a string.
    pub key: Option<Str>,
    /// The variation name, when it is a string.
    pub name: Option<Str>,
    /// The fullStackFeature changes it carries, in order.
    pub features: Vec<FeatureChange>,
}

/// A `fullStackFeature` change of a variation.
#[derive(Debug, Clone)]
pub struct FeatureChange {
    /// `String(data.feature_id)`.
    pub feature_id: Str,
    /// `data.variables_data` as served (`None` when absent).
    pub variables: Option<Value>,
}

/// Where an experience runs.
#[derive(Debug, Clone)]
pub enum LocationTarget {
    /// No `locations` and no `site_area`: runs everywhere.
    Unrestricted,
    /// A non-empty `locations` list, resolved to indices into [`ProjectConfig::locations`] (may be
    /// empty when no id resolves: then the experience never matches).
    Locations(Vec<usize>),
    /// A `site_area` rule tree.
    SiteArea(RuleSet),
}

/// An experience, with everything a decision needs precomputed. Its object as served is
/// [`ProjectConfig::experience_raw`].
#[derive(Debug, Clone)]
pub struct Experience {
    /// Position in [`ProjectConfig::experiences`].
    pub index: usize,
    /// `String(id)`.
    pub id: Str,
    /// Whether the config's id is truthy (a falsy id is never decided).
    pub has_id: bool,
    /// `String(key)`.
    pub key: Str,
    /// The name, when it is a string.
    pub name: Option<Str>,
    /// The `environment` member when truthy.
    pub environment: Option<Value>,
    /// Whether the experience id is in `archived_experiences`.
    pub archived: bool,
    /// Whether the anchored layout applies (`Number(version) > 11`).
    pub anchored: bool,
    /// Location targeting.
    pub location: LocationTarget,
    /// Indices of the audiences named in `audiences` (config order).
    pub audiences: Vec<usize>,
    /// Indices of the segments named in `audiences` (config order).
    pub segments: Vec<usize>,
    /// Whether `settings.matching_options.audiences` is `"all"` (missing means `"any"`).
    pub audiences_all: bool,
    /// The variations, in config order.
    pub variations: Vec<Variation>,
    /// Packed walk (used when not anchored).
    pub packed: PackedLayout,
    /// Anchored ranges (used when anchored).
    pub anchored_layout: AnchoredLayout,
    /// Whether any variation carries a feature change.
    pub carries_features: bool,
}

impl Experience {
    /// The first variation whose config id is the string `id`.
    pub fn variation_by_id(&self, id: &str) -> Option<usize> {
        self.variations
            .iter()
            .position(|v| v.id_is_string && &*v.id == id)
    }

    /// Whether the experience runs in `environment`: it names none (no truthy `environment`
    /// member), or names this one, case-sensitively (SPEC §5.2, step 3).
    pub fn runs_in(&self, environment: &str) -> bool {
        self.environment
            .as_ref()
            .is_none_or(|e| e.as_str() == Some(environment))
    }

    /// Whether a variation of this experience carries a change for feature `feature_id`.
    pub fn carries_feature(&self, feature_id: &str) -> bool {
        self.variations
            .iter()
            .any(|v| v.features.iter().any(|f| &*f.feature_id == feature_id))
    }
}

/// An audience, segment or location: a named rule tree. Its object as served is
/// [`ProjectConfig::audience_raw`], [`ProjectConfig::segment_raw`] or
/// [`ProjectConfig::location_raw`].
#[derive(Debug, Clone)]
pub struct RuledEntity {
    /// `String(id)`.
    pub id: Str,
    /// `String(key)`.
    pub key: Str,
    /// The name, when it is a string.
    pub name: Option<Str>,
    /// Whether the audience is `permanent` (audiences only).
    pub permanent: bool,
    /// The compiled rules; `None` when the config has none (falsy).
    pub rules: Option<RuleSet>,
}

/// A goal.
#[derive(Debug, Clone)]
pub struct Goal {
    /// The id as served (sent verbatim as `goalId`).
    pub id: Value,
    /// `String(key)`.
    pub key: Str,
    /// The compiled rules; `None` when the config has none.
    pub rules: Option<RuleSet>,
}

/// A declared feature.
#[derive(Debug, Clone)]
pub struct Feature {
    /// `String(id)`.
    pub id: Str,
    /// The key, when present.
    pub key: Option<Str>,
    /// The name, when it is a string.
    pub name: Option<Str>,
    /// Declared variables `(key, type)`.
    pub variables: Vec<(String, String)>,
}

/// An indexed, immutable project config snapshot.
#[derive(Debug, Clone)]
pub struct ProjectConfig {
    /// `account_id` as a string.
    pub account_id: Str,
    /// `project.id` as a string.
    pub project_id: Str,
    /// Experiences in config order.
    pub experiences: Vec<Experience>,
    /// Audiences in config order.
    pub audiences: Vec<RuledEntity>,
    /// Segments in config order.
    pub segments: Vec<RuledEntity>,
    /// Locations in config order.
    pub locations: Vec<RuledEntity>,
    /// Goals in config order.
    pub goals: Vec<Goal>,
    /// Declared features in config order.
    pub features: Vec<Feature>,
    /// Features keyed by id as a JS object: indices in JS key order (last duplicate wins).
    pub feature_roster: Vec<usize>,
    /// The environment named by an `{environment, data}` envelope, if any.
    pub envelope_environment: Option<String>,
    exp_by_key: Index,
    exp_by_id: Index,
    feature_by_id: Index,
    /// Each segment's `id` as served (a decision compares it with `===` to the visitor's
    /// `customSegments`), so that a decision does not look the segment up in [`Self::raw`].
    pub(crate) segment_id_values: Vec<Option<Value>>,
    served: Served,
}

/// The served config (the `data` object) as a compact tree, and its `serde_json::Value` forms,
/// made on first demand: the whole object ([`ProjectConfig::raw`]) and each entity of the
/// top-level lists (the `*_raw` accessors), so that loading a config builds no `Value` tree.
#[derive(Debug, Clone)]
struct Served {
    data: Tree,
    full: OnceLock<Value>,
    /// One slot per item of `experiences`, `audiences`, `segments`, `locations`, `goals` and
    /// `features` (in [`SERVED_LISTS`] order).
    entities: [Vec<OnceLock<Value>>; SERVED_LISTS.len()],
}

/// The top-level lists whose items [`Served`] converts one by one.
const SERVED_LISTS: [&str; 6] = [
    "experiences",
    "audiences",
    "segments",
    "locations",
    "goals",
    "features",
];

impl Served {
    /// `data` (an object node).
    fn new(data: Tree) -> Served {
        let entities = SERVED_LISTS.map(|field| {
            let n = data
                .root()
                .get(field)
                .and_then(NodeRef::as_array)
                .map_or(0, Items::len);
            std::iter::repeat_with(OnceLock::new).take(n).collect()
        });
        Served {
            data,
            full: OnceLock::new(),
            entities,
        }
    }

    /// The served list `field` (empty when absent or not a list).
    fn list(&self, field: &str) -> Option<Items<'_>> {
        self.data.root().get(field)?.as_array()
    }

    /// Item `i` of the top-level list `SERVED_LISTS[list]` as a `Value`, converted on first use
    /// (read from the whole `Value` instead when that has been built).
    fn entity(&self, list: usize, i: usize) -> Option<&Value> {
        if let Some(full) = self.full.get() {
            return full.get(SERVED_LISTS[list])?.get(i);
        }
        let node = self.list(SERVED_LISTS[list])?.get(i)?;
        Some(self.entities[list].get(i)?.get_or_init(|| node.to_value()))
    }
}

/// The members of a JSON object of the served config.
type Obj<'a> = Members<'a>;

/// JS `String(v)` where `None` is `undefined`.
fn opt_js(v: Option<NodeRef<'_>>) -> std::borrow::Cow<'_, str> {
    match v {
        Some(v) => v.js_string(),
        None => js::opt_to_js_string(None),
    }
}

/// A served list: its items, or none.
#[derive(Clone, Copy)]
struct List<'a>(Option<Items<'a>>);

impl<'a> List<'a> {
    fn len(self) -> usize {
        self.0.map_or(0, Items::len)
    }

    fn iter(self) -> impl Iterator<Item = NodeRef<'a>> {
        self.0.into_iter().flat_map(Items::iter)
    }
}

fn list<'a>(obj: Obj<'a>, field: &str) -> Result<List<'a>, ConfigError> {
    as_list(obj.get(field), field)
}

/// `v` as a list: absent and `null` are empty, anything else but an array is an error.
fn as_list<'a>(v: Option<NodeRef<'a>>, field: &str) -> Result<List<'a>, ConfigError> {
    match v {
        None => Ok(List(None)),
        Some(v) if v.is_null() => Ok(List(None)),
        Some(v) => v
            .as_array()
            .map(|a| List(Some(a)))
            .ok_or_else(|| ConfigError::InvalidType {
                field: field.to_string(),
                expected: "an array",
                found: v.type_name(),
            }),
    }
}

/// `v` (item `i` of list `field`) as an object. `field` is only formatted on error.
fn entity<'a>(
    v: NodeRef<'a>,
    field: impl std::fmt::Display,
    i: usize,
) -> Result<Obj<'a>, ConfigError> {
    v.as_object().ok_or_else(|| ConfigError::InvalidType {
        field: format!("{field}[{i}]"),
        expected: "an object",
        found: v.type_name(),
    })
}

/// The members `names` of `obj`, read in one pass over its entries: config objects have few
/// members, so comparing names is cheaper than hashing each one for a lookup.
fn members<'a, const N: usize>(obj: Obj<'a>, names: [&str; N]) -> [Option<NodeRef<'a>>; N] {
    let mut out = [None; N];
    for (k, v) in obj.iter() {
        if let Some(slot) = names.iter().position(|n| *n == k) {
            out[slot] = Some(v);
        }
    }
    out
}

fn opt_str(v: Option<NodeRef<'_>>) -> Option<Str> {
    v.and_then(NodeRef::as_str).map(config_str)
}

fn rules_of(obj: Obj<'_>) -> Option<RuleSet> {
    compile_rules(obj.get("rules"))
}

fn compile_rules(rules: Option<NodeRef<'_>>) -> Option<RuleSet> {
    rules.filter(|r| r.truthy()).map(RuleSet::compile_json)
}

fn ruled(obj: Obj<'_>) -> RuledEntity {
    let [id, key, name, kind, rules] = members(obj, ["id", "key", "name", "type", "rules"]);
    RuledEntity {
        id: s(id),
        key: s(key),
        name: opt_str(name),
        permanent: kind.and_then(NodeRef::as_str) == Some("permanent"),
        rules: compile_rules(rules),
    }
}

/// An id as JavaScript's `===` sees it (numbers by value, `-0` equal to `0`).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum IdKey<'a> {
    Str(&'a str),
    Num(u64),
    Bool(bool),
    Null,
}

impl<'a> IdKey<'a> {
    fn of(v: NodeRef<'a>) -> Option<IdKey<'a>> {
        Some(if let Some(s) = v.as_str() {
            IdKey::Str(s)
        } else if let Some(n) = v.as_number() {
            let x = n.as_f64()?;
            IdKey::Num(if x == 0.0 { 0 } else { x.to_bits() })
        } else if let Some(b) = v.as_bool() {
            IdKey::Bool(b)
        } else if v.is_null() {
            IdKey::Null
        } else {
            return None;
        })
    }
}

/// The positions of a list's items by id, built once per list so that resolving an experience's
/// audience, segment and location ids costs its own ids, not the size of the lists. Ids are
/// usually unique: the first position of each is kept on its own, the others (if any) apart.
struct IdIndex<'a> {
    first: HashMap<IdKey<'a>, usize, foldhash::fast::RandomState>,
    more: HashMap<IdKey<'a>, Vec<usize>, foldhash::fast::RandomState>,
}

impl<'a> IdIndex<'a> {
    fn new(items: List<'a>) -> IdIndex<'a> {
        let mut first: HashMap<IdKey<'a>, usize, foldhash::fast::RandomState> =
            HashMap::with_capacity_and_hasher(items.len(), Default::default());
        let mut more: HashMap<IdKey<'a>, Vec<usize>, foldhash::fast::RandomState> =
            HashMap::default();
        for (i, item) in items.iter().enumerate() {
            if let Some(key) = item.get("id").and_then(IdKey::of) {
                match first.entry(key) {
                    Entry::Vacant(slot) => {
                        slot.insert(i);
                    }
                    Entry::Occupied(_) => more.entry(key).or_default().push(i),
                }
            }
        }
        IdIndex { first, more }
    }

    /// Positions (config order) of the items whose id is strictly equal to one of `wanted`.
    fn resolve(&self, wanted: Items<'a>) -> Vec<usize> {
        let mut out = Vec::with_capacity(wanted.len());
        for key in wanted.iter().filter_map(IdKey::of) {
            if let Some(&p) = self.first.get(&key) {
                out.push(p);
                if let Some(others) = self.more.get(&key) {
                    out.extend_from_slice(others);
                }
            }
        }
        out.sort_unstable();
        out.dedup();
        out
    }
}

impl ProjectConfig {
    /// Parses a config from JSON text: either the project config itself or the envelope
    /// `{"environment": ..., "data": {...}}`. The text is read as `JSON.parse` reads it: a lone
    /// surrogate escape (`"\ud800"`) is accepted and becomes U+FFFD ([`js::json_parse`]).
    pub fn from_json(text: &str) -> Result<ProjectConfig, ConfigError> {
        match Tree::parse(text) {
            Some(root) => Self::from_tree(root),
            // Text the compact reader does not take (invalid JSON, mostly): `js::json_parse`
            // reads it, with its own error message.
            None => {
                let v: Value =
                    js::json_parse(text).map_err(|e| ConfigError::Json(e.to_string()))?;
                ProjectConfig::from_value(v)
            }
        }
    }

    /// Builds a config from a parsed JSON value (project config or envelope).
    /// The value itself is not kept: the config holds its compact tree ([`Self::raw`] builds the
    /// same value back when asked).
    pub fn from_value(v: Value) -> Result<ProjectConfig, ConfigError> {
        // The tree is built recursively: a value nested as deep as JSON text may not be (which
        // only code can build) is refused as that text is, rather than overflowing the stack.
        if crate::tree::nested_too_deep(&v) {
            return Err(ConfigError::Json(format!(
                "the config nests arrays and objects more than {} levels deep",
                crate::tree::MAX_DEPTH
            )));
        }
        Self::from_tree(Tree::from_value(&v))
    }

    /// Builds a config from the tree of the served JSON.
    fn from_tree(root: Tree) -> Result<ProjectConfig, ConfigError> {
        let Some(top) = root.root().as_object() else {
            return Err(ConfigError::InvalidType {
                field: "(root)".into(),
                expected: "an object",
                found: root.root().type_name(),
            });
        };
        // The envelope form wraps the config under `data`.
        let is_envelope = top.get("account_id").is_none()
            && top.get("data").is_some_and(|d| d.as_object().is_some());
        if !is_envelope {
            return Self::from_data(root, None);
        }
        let env = top
            .get("environment")
            .and_then(NodeRef::as_str)
            .map(str::to_string);
        let data = root.into_member("data").unwrap_or_else(Tree::empty_object);
        Self::from_data(data, env)
    }

    fn from_data(
        root: Tree,
        envelope_environment: Option<String>,
    ) -> Result<ProjectConfig, ConfigError> {
        let built = Self::build(root.root(), envelope_environment)?;
        Ok(ProjectConfig {
            served: Served::new(root),
            ..built
        })
    }

    /// The model of the `data` object `root` (its `served` member left empty).
    fn build(
        root: NodeRef<'_>,
        envelope_environment: Option<String>,
    ) -> Result<ProjectConfig, ConfigError> {
        let Some(data) = root.as_object() else {
            return Err(ConfigError::Missing("account_id".into()));
        };
        if let Some(err) = data.get("error").filter(|e| e.truthy()) {
            return Err(ConfigError::ErrorResponse(match err.as_str() {
                Some(s) => s.to_string(),
                None => err.to_value().to_string(),
            }));
        }
        let account_id = data
            .get("account_id")
            .filter(|v| v.truthy())
            .ok_or_else(|| ConfigError::Missing("account_id".into()))?;
        if account_id.as_str().is_none() && account_id.as_number().is_none() {
            return Err(ConfigError::InvalidType {
                field: "account_id".into(),
                expected: "a string or number",
                found: account_id.type_name(),
            });
        }
        let project = match data.get("project") {
            None => return Err(ConfigError::Missing("project.id".into())),
            Some(p) if p.is_null() => return Err(ConfigError::Missing("project.id".into())),
            Some(p) => p.as_object().ok_or_else(|| ConfigError::InvalidType {
                field: "project".into(),
                expected: "an object",
                found: p.type_name(),
            })?,
        };
        let project_id = project
            .get("id")
            .filter(|v| v.truthy())
            .ok_or_else(|| ConfigError::Missing("project.id".into()))?;
        if project_id.as_str().is_none() && project_id.as_number().is_none() {
            return Err(ConfigError::InvalidType {
                field: "project.id".into(),
                expected: "a string or number",
                found: project_id.type_name(),
            });
        }

        let raw_audiences = list(data, "audiences")?;
        let raw_segments = list(data, "segments")?;
        let raw_locations = list(data, "locations")?;
        let archived_ids: HashSet<String> = list(data, "archived_experiences")?
            .iter()
            .map(|v| v.js_string().into_owned())
            .collect();

        let mut audiences = Vec::with_capacity(raw_audiences.len());
        for (i, a) in raw_audiences.iter().enumerate() {
            audiences.push(ruled(entity(a, "audiences", i)?));
        }
        let mut segments = Vec::with_capacity(raw_segments.len());
        for (i, a) in raw_segments.iter().enumerate() {
            segments.push(ruled(entity(a, "segments", i)?));
        }
        let segment_id_values = raw_segments
            .iter()
            .map(|s| s.get("id").map(NodeRef::to_value))
            .collect();
        let mut locations = Vec::with_capacity(raw_locations.len());
        for (i, a) in raw_locations.iter().enumerate() {
            locations.push(ruled(entity(a, "locations", i)?));
        }

        let indexes = [
            IdIndex::new(raw_audiences),
            IdIndex::new(raw_segments),
            IdIndex::new(raw_locations),
        ];
        let raw_experiences = list(data, "experiences")?;
        let mut experiences = Vec::with_capacity(raw_experiences.len());
        for (i, e) in raw_experiences.iter().enumerate() {
            let obj = entity(e, "experiences", i)?;
            experiences.push(Self::experience(obj, i, &archived_ids, &indexes)?);
        }

        let mut goals = Vec::new();
        for (i, g) in list(data, "goals")?.iter().enumerate() {
            let obj = entity(g, "goals", i)?;
            goals.push(Goal {
                id: obj.get("id").map_or(Value::Null, NodeRef::to_value),
                key: s(obj.get("key")),
                rules: rules_of(obj),
            });
        }

        let mut features = Vec::new();
        for (i, f) in list(data, "features")?.iter().enumerate() {
            let obj = entity(f, "features", i)?;
            let field = format!("features[{i}]");
            let mut variables = Vec::new();
            for (j, var) in list(obj, "variables")
                .map_err(|e| prefix_err(e, &field))?
                .iter()
                .enumerate()
            {
                let vo = entity(var, format_args!("{field}.variables"), j)?;
                variables.push((
                    opt_js(vo.get("key")).into_owned(),
                    opt_js(vo.get("type")).into_owned(),
                ));
            }
            features.push(Feature {
                id: s(obj.get("id")),
                key: obj.get("key").map(|k| config_str(&k.js_string())),
                name: opt_str(obj.get("name")),
                variables,
            });
        }

        // Features keyed by id as a JS object: a later duplicate overwrites the earlier one in place.
        let mut feature_by_id = Index::default();
        let mut first_pos: Vec<Str> = Vec::new();
        for (i, f) in features.iter().enumerate() {
            if feature_by_id.insert(f.id.clone(), i).is_none() {
                first_pos.push(f.id.clone());
            }
        }
        let feature_roster = js_key_order(&first_pos)
            .into_iter()
            .filter_map(|p| feature_by_id.get(&first_pos[p]).copied())
            .collect();

        let mut exp_by_key = Index::default();
        let mut exp_by_id = Index::default();
        for (i, e) in experiences.iter().enumerate() {
            exp_by_key.entry(e.key.clone()).or_insert(i);
            exp_by_id.entry(e.id.clone()).or_insert(i);
        }

        let account_id = config_str(&account_id.js_string());
        let project_id = config_str(&project_id.js_string());
        Ok(ProjectConfig {
            account_id,
            project_id,
            experiences,
            audiences,
            segments,
            locations,
            goals,
            features,
            feature_roster,
            envelope_environment,
            exp_by_key,
            exp_by_id,
            feature_by_id,
            segment_id_values,
            served: Served::new(Tree::empty_object()),
        })
    }

    fn experience(
        obj: Obj<'_>,
        i: usize,
        archived_ids: &HashSet<String>,
        [audience_ids, segment_ids, location_ids]: &[IdIndex<'_>; 3],
    ) -> Result<Experience, ConfigError> {
        let [
            id_v,
            key,
            name,
            environment,
            version,
            locations,
            site_area,
            audience_ids_v,
            settings,
            raw_variations,
        ] = members(
            obj,
            [
                "id",
                "key",
                "name",
                "environment",
                "version",
                "locations",
                "site_area",
                "audiences",
                "settings",
                "variations",
            ],
        );
        let id = s(id_v);
        let raw_variations = as_list(raw_variations, "variations")
            .map_err(|e| prefix_err(e, &format!("experiences[{i}]")))?;
        let mut variations = Vec::with_capacity(raw_variations.len());
        let mut arms = Vec::with_capacity(raw_variations.len());
        for (j, v) in raw_variations.iter().enumerate() {
            let vo = entity(v, format_args!("experiences[{i}].variations"), j)?;
            let [vid, vkey, vname, changes, traffic_allocation, status] = members(
                vo,
                [
                    "id",
                    "key",
                    "name",
                    "changes",
                    "traffic_allocation",
                    "status",
                ],
            );
            let mut feats = Vec::new();
            if let Some(changes) = changes.and_then(NodeRef::as_array) {
                for ch in changes.iter() {
                    if ch.get("type").and_then(NodeRef::as_str) != Some("fullStackFeature") {
                        continue;
                    }
                    let Some(data) = ch.get("data") else { continue };
                    let Some(fid) = data.get("feature_id").filter(|f| f.truthy()) else {
                        continue;
                    };
                    feats.push(FeatureChange {
                        feature_id: config_str(&fid.js_string()),
                        variables: data.get("variables_data").map(NodeRef::to_value),
                    });
                }
            }
            variations.push(Variation {
                id: s(vid),
                id_is_string: vid.is_some_and(|v| v.as_str().is_some()),
                returned_as: None, // set below, once every variation is known
                key: opt_str(vkey),
                name: opt_str(vname),
                features: feats,
            });
            arms.push((
                vid.is_some_and(NodeRef::truthy),
                traffic_allocation.map(NodeRef::to_value),
                status.map(NodeRef::to_value),
            ));
        }
        // The first string-id arm of each id.
        let mut first_string = crate::bucketing::FirstSeen::default();
        for (i, v) in variations.iter().enumerate() {
            if v.id_is_string {
                first_string.insert(&v.id, i);
            }
        }
        let returned: Vec<Option<usize>> =
            variations.iter().map(|v| first_string.get(&v.id)).collect();
        for (v, r) in variations.iter_mut().zip(returned) {
            v.returned_as = r;
        }
        let arms: Vec<ArmSpec<'_>> = arms
            .iter()
            .zip(&variations)
            .map(|((has_id, traffic_allocation, status), v)| ArmSpec {
                id: has_id.then_some(&*v.id),
                traffic_allocation: traffic_allocation.as_ref(),
                status: status.as_ref(),
            })
            .collect();
        let anchored = is_anchored(version.map(NodeRef::to_value).as_ref());
        let (packed, anchored_layout) = if anchored {
            (PackedLayout::default(), AnchoredLayout::build(&arms))
        } else {
            (PackedLayout::build(&arms), AnchoredLayout::default())
        };

        let location = match locations.and_then(NodeRef::as_array) {
            Some(ids) if !ids.is_empty() => LocationTarget::Locations(location_ids.resolve(ids)),
            _ => match site_area.filter(|v| v.truthy()) {
                Some(rules) => LocationTarget::SiteArea(RuleSet::compile_json(rules)),
                None => LocationTarget::Unrestricted,
            },
        };
        let (audiences, segments) = match audience_ids_v.and_then(NodeRef::as_array) {
            Some(ids) if !ids.is_empty() => (audience_ids.resolve(ids), segment_ids.resolve(ids)),
            _ => (Vec::new(), Vec::new()),
        };
        let audiences_all = settings
            .and_then(|s| s.get("matching_options"))
            .and_then(|m| m.get("audiences"))
            .and_then(NodeRef::as_str)
            == Some("all");
        let carries_features = variations.iter().any(|v| !v.features.is_empty());
        Ok(Experience {
            index: i,
            archived: archived_ids.contains(&*id),
            has_id: id_v.is_some_and(NodeRef::truthy),
            id,
            key: s(key),
            name: opt_str(name),
            environment: environment.filter(|v| v.truthy()).map(NodeRef::to_value),
            anchored,
            location,
            audiences,
            segments,
            audiences_all,
            variations,
            packed,
            anchored_layout,
            carries_features,
        })
    }

    /// A config with no entities (account and project `"0"`), used before a real one is installed.
    pub fn empty() -> ProjectConfig {
        ProjectConfig {
            account_id: Str::new_static("0"),
            project_id: Str::new_static("0"),
            experiences: Vec::new(),
            audiences: Vec::new(),
            segments: Vec::new(),
            locations: Vec::new(),
            goals: Vec::new(),
            features: Vec::new(),
            feature_roster: Vec::new(),
            envelope_environment: None,
            exp_by_key: Index::default(),
            exp_by_id: Index::default(),
            feature_by_id: Index::default(),
            segment_id_values: Vec::new(),
            served: Served::new(Tree::empty_object()),
        }
    }

    /// Every rule tree of the config with the place it is at (`"audience KEY"`, `"experience KEY
    /// site_area"`, …).
    fn rule_trees(&self) -> Vec<(String, &RuleSet)> {
        let mut out = Vec::new();
        for e in &self.experiences {
            if let LocationTarget::SiteArea(r) = &e.location {
                out.push((format!("experience {} site_area", e.key), r));
            }
        }
        for (kind, list) in [
            ("audience", &self.audiences),
            ("segment", &self.segments),
            ("location", &self.locations),
        ] {
            for ent in list {
                if let Some(r) = &ent.rules {
                    out.push((format!("{kind} {}", ent.key), r));
                }
            }
        }
        for g in &self.goals {
            if let Some(r) = &g.rules {
                out.push((format!("goal {}", g.key), r));
            }
        }
        out
    }

    /// `regexMatches` patterns anywhere in the config that never run (JavaScript rejects them, or
    /// they are beyond the engines' limits; those rules never match): `(where, pattern)`.
    pub fn unsupported_regex_patterns(&self) -> Vec<(String, String)> {
        self.rule_trees()
            .into_iter()
            .flat_map(|(place, rules)| {
                rules
                    .unsupported_patterns()
                    .into_iter()
                    .map(move |p| (place.clone(), p.to_string()))
            })
            .collect()
    }

    /// Every `regexMatches` pattern of the config worth a warning (`convert validate`), with its
    /// place and the reason: it never runs, or some values exceed the per-evaluation work budget
    /// (see [`crate::rules`] and [`RegexConcern`]).
    pub fn regex_warnings(&self) -> Vec<RegexWarning> {
        self.rule_trees()
            .into_iter()
            .flat_map(|(place, rules)| {
                rules
                    .regex_concerns()
                    .into_iter()
                    .map(move |(pattern, concern)| RegexWarning {
                        place: place.clone(),
                        pattern: pattern.to_string(),
                        concern,
                    })
            })
            .collect()
    }

    /// `regexMatches` patterns whose evaluations went over the work budget since this config was
    /// loaded, with their place and how many times.
    pub fn regex_over_budget(&self) -> Vec<(String, String, u64)> {
        self.rule_trees()
            .into_iter()
            .flat_map(|(place, rules)| {
                rules
                    .regex_over_budget()
                    .into_iter()
                    .map(move |(p, n)| (place.clone(), p.to_string(), n))
            })
            .collect()
    }

    /// The experience with `String(key) == key` (first in config order).
    #[inline]
    pub fn experience_by_key(&self, key: &str) -> Option<&Experience> {
        // With a few experiences, comparing keys is cheaper than hashing the one asked for
        // (the first match is the one the index holds).
        if self.experiences.len() <= SCAN_EXPERIENCES {
            return self.experiences.iter().find(|e| &*e.key == key);
        }
        self.exp_by_key.get(key).map(|&i| &self.experiences[i])
    }

    /// The experience with `String(id) == id` (first in config order).
    pub fn experience_by_id(&self, id: &str) -> Option<&Experience> {
        self.exp_by_id.get(id).map(|&i| &self.experiences[i])
    }

    /// The goal with `String(key) == key` (first in config order).
    pub fn goal_by_key(&self, key: &str) -> Option<&Goal> {
        self.goals.iter().find(|g| &*g.key == key)
    }

    /// The declared feature with `String(key) == key`.
    pub fn feature_by_key(&self, key: &str) -> Option<&Feature> {
        self.features.iter().find(|f| f.key.as_deref() == Some(key))
    }

    /// The declared feature for `id` (the last declaration with that id, as a JS object keyed by id).
    pub fn feature_by_id(&self, id: &str) -> Option<&Feature> {
        self.feature_by_id.get(id).map(|&i| &self.features[i])
    }

    /// The project config as served (the `data` object).
    ///
    /// Loading a config builds no `serde_json::Value`: this one is made from the served text's
    /// tree on the first call (or is the value given to [`from_value`](Self::from_value)), then
    /// kept. To read one entity, prefer [`experience_raw`](Self::experience_raw),
    /// [`variation_raw`](Self::variation_raw), [`audience_raw`](Self::audience_raw),
    /// [`segment_raw`](Self::segment_raw) and [`location_raw`](Self::location_raw), which convert
    /// only that entity (once); to tell whether two configs were served the same, use
    /// [`same_served`](Self::same_served).
    pub fn raw(&self) -> &Value {
        self.served
            .full
            .get_or_init(|| self.served.data.root().to_value())
    }

    /// Whether both configs were served the same JSON (the `data` object): `self.raw() ==
    /// other.raw()`, without building either value.
    pub fn same_served(&self, other: &ProjectConfig) -> bool {
        tree::same(self.served.data.root(), other.served.data.root())
    }

    /// Experience `exp` as served: `experiences[exp]` of [`raw`](Self::raw), where `exp` is the
    /// experience's position in [`experiences`](Self::experiences) (its [`Experience::index`]).
    /// `None` when there is no such experience. Made on the first call for `exp`, then kept.
    ///
    /// ```
    /// # use convert_core::ProjectConfig;
    /// let cfg = ProjectConfig::from_json(
    ///     r#"{"account_id": "1", "project": {"id": "2"},
    ///         "experiences": [{"id": "7", "key": "e", "type": "a/b", "variations": [{"id": "8"}]}]}"#,
    /// )?;
    /// let exp = cfg.experience_by_key("e").map(|e| e.index);
    /// let raw = exp.and_then(|i| cfg.experience_raw(i));
    /// assert_eq!(raw.and_then(|o| o.get("type")), Some(&"a/b".into()));
    /// assert_eq!(exp.and_then(|i| cfg.variation_raw(i, 0)).and_then(|v| v.get("id")), Some(&"8".into()));
    /// # Ok::<(), convert_core::config::ConfigError>(())
    /// ```
    pub fn experience_raw(&self, exp: usize) -> Option<&Map<String, Value>> {
        self.served.entity(0, exp)?.as_object()
    }

    /// Variation `variation` of experience `exp` as served (positions in
    /// [`experiences`](Self::experiences) and in its [`Experience::variations`]); `None` when
    /// there is no such variation.
    pub fn variation_raw(&self, exp: usize, variation: usize) -> Option<&Map<String, Value>> {
        self.experience_raw(exp)?
            .get("variations")?
            .as_array()?
            .get(variation)?
            .as_object()
    }

    /// Audience `i` (position in [`audiences`](Self::audiences)) as served.
    pub fn audience_raw(&self, i: usize) -> Option<&Map<String, Value>> {
        self.served.entity(1, i)?.as_object()
    }

    /// Segment `i` (position in [`segments`](Self::segments)) as served.
    pub fn segment_raw(&self, i: usize) -> Option<&Map<String, Value>> {
        self.served.entity(2, i)?.as_object()
    }

    /// Location `i` (position in [`locations`](Self::locations)) as served.
    pub fn location_raw(&self, i: usize) -> Option<&Map<String, Value>> {
        self.served.entity(3, i)?.as_object()
    }

    /// Looks up a config entity by key (SPEC §3.3, §1.5 `getConfigEntity`): `entity_type` is one of
    /// `audience, location, segment, feature, goal, experience, variation`. Returns the entity as served.
    pub fn entity_by_key(&self, key: &str, entity_type: &str) -> Option<&Value> {
        self.entity_by_field("key", key, entity_type)
    }

    /// Looks up a config entity by id (`getConfigEntityById`).
    pub fn entity_by_id(&self, id: &str, entity_type: &str) -> Option<&Value> {
        self.entity_by_field("id", id, entity_type)
    }

    fn entity_by_field(&self, field: &str, wanted: &str, entity_type: &str) -> Option<&Value> {
        if entity_type == "variation" {
            // Variations are matched strictly against the string given.
            let (exp, var) = self
                .served
                .list("experiences")?
                .iter()
                .enumerate()
                .filter_map(|(i, e)| Some((i, e.get("variations")?.as_array()?)))
                .find_map(|(i, vars)| {
                    vars.iter()
                        .position(|v| v.get(field).and_then(NodeRef::as_str) == Some(wanted))
                        .map(|j| (i, j))
                })?;
            return self
                .served
                .entity(0, exp)?
                .get("variations")?
                .as_array()?
                .get(var);
        }
        let plural = match entity_type {
            "goal" => "goals",
            "audience" => "audiences",
            "location" => "locations",
            "segment" => "segments",
            "experience" => "experiences",
            "feature" => "features",
            _ => return None,
        };
        let list = SERVED_LISTS.iter().position(|l| *l == plural)?;
        let i = self
            .served
            .list(plural)?
            .iter()
            .position(|e| opt_js(e.get(field)) == wanted)?;
        self.served.entity(list, i)
    }
}

fn prefix_err(e: ConfigError, prefix: &str) -> ConfigError {
    match e {
        ConfigError::InvalidType {
            field,
            expected,
            found,
        } => ConfigError::InvalidType {
            field: format!("{prefix}.{field}"),
            expected,
            found,
        },
        ConfigError::Missing(f) => ConfigError::Missing(format!("{prefix}.{f}")),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// `returned_as` is the first arm whose id is the same JSON string, for a few arms (scanned)
    /// and for many (indexed): ids repeat, and some are numbers, with or without a string twin.
    #[test]
    fn returned_as_is_the_first_string_arm_with_the_same_id() {
        for n in [5usize, 40] {
            let mut arms: Vec<Value> = (0..n)
                .map(|i| {
                    // Repeats once i reaches 23: 40 arms carry more distinct string ids than
                    // the lookup scans (16), so they go through its index.
                    let id = (i * 7) % 23;
                    if i % 4 == 1 {
                        json!({"id": id})
                    } else {
                        json!({"id": id.to_string()})
                    }
                })
                .collect();
            arms.push(json!({"id": 999})); // a number without a string twin
            let mut cfg = base();
            cfg["experiences"] = json!([{"id": "1", "key": "e", "variations": arms.clone()}]);
            let loaded = ProjectConfig::from_value(cfg);
            assert!(loaded.is_ok(), "{:?}", loaded.err());
            let Ok(loaded) = loaded else { return };
            let exp = &loaded.experiences[0];
            for (i, v) in exp.variations.iter().enumerate() {
                let expected = arms.iter().position(|a| {
                    a["id"].as_str() == Some(&*crate::js::to_js_string(&arms[i]["id"]))
                });
                assert_eq!(v.returned_as, expected, "{n} arms, arm {i}");
            }
            assert_eq!(exp.variations.last().map(|v| v.returned_as), Some(None));
            if n == 40 {
                assert!(
                    exp.variations
                        .iter()
                        .enumerate()
                        .any(|(i, v)| v.returned_as.is_some_and(|r| r != i))
                );
            }
        }
    }

    fn base() -> Value {
        json!({"account_id": "1", "project": {"id": "2"}})
    }

    #[test]
    fn ids_resolve_by_strict_equality_in_config_order() {
        let mut cfg = base();
        cfg["audiences"] = json!([{"id": "5"}, {"id": 5}, {"id": 7.0}, {"id": "5"}, {"id": -0.0}, {"key": "no-id"}]);
        cfg["experiences"] = json!([
            {"id": "1", "key": "a", "audiences": [7, "5"], "variations": []},
            {"id": "2", "key": "b", "audiences": [5.0, 0, "x"], "variations": []},
            {"id": "3", "key": "c", "audiences": [null, true], "variations": []}
        ]);
        let c = ProjectConfig::from_value(cfg).ok();
        let auds = |k: &str| {
            c.as_ref()
                .and_then(|c| c.experience_by_key(k))
                .map(|e| e.audiences.clone())
        };
        assert_eq!(auds("a"), Some(vec![0, 2, 3]));
        assert_eq!(auds("b"), Some(vec![1, 4]));
        assert_eq!(auds("c"), Some(vec![]));
    }

    /// Small configs are scanned, larger ones hashed: both give the first experience with the
    /// key (`String(key)`, so a numeric key is found by its decimal text), and no other.
    #[test]
    fn experience_by_key_finds_the_first_match_whether_scanned_or_hashed() {
        for n in [
            3,
            SCAN_EXPERIENCES,
            SCAN_EXPERIENCES + 1,
            3 * SCAN_EXPERIENCES,
        ] {
            let mut cfg = base();
            let mut list: Vec<Value> = (0..n)
                .map(|i| json!({"id": format!("id-{i}"), "key": format!("k{i}"), "variations": []}))
                .collect();
            // A duplicate key at the end, and a numeric key.
            list[n - 1] = json!({"id": "dup", "key": "k0", "variations": []});
            list[n - 2] = json!({"id": "num", "key": 7, "variations": []});
            cfg["experiences"] = Value::Array(list);
            let c = ProjectConfig::from_value(cfg).ok();
            let id = |k: &str| {
                c.as_ref()
                    .and_then(|c| c.experience_by_key(k))
                    .map(|e| e.id.to_string())
            };
            assert_eq!(id("k0").as_deref(), Some("id-0"), "{n} experiences");
            assert_eq!(id("7").as_deref(), Some("num"), "{n} experiences");
            assert_eq!(id("k1").is_some(), n > 3, "{n} experiences");
            assert_eq!(id("missing"), None, "{n} experiences");
        }
    }

    /// A config value built in code is held to the nesting limit JSON text is read with (the
    /// tree is built recursively: a deep enough value overflowed the stack and aborted).
    #[test]
    fn values_nested_past_the_text_limit_are_refused_like_text() {
        fn nested(levels: usize) -> (Value, String) {
            let mut v = json!([]);
            for _ in 1..levels {
                v = Value::Array(vec![v]);
            }
            let text = format!("{}{}", "[".repeat(levels), "]".repeat(levels));
            let cfg = json!({"account_id": "1", "project": {"id": "2"}, "extra": v});
            let text =
                format!(r#"{{"account_id": "1", "project": {{"id": "2"}}, "extra": {text}}}"#);
            (cfg, text)
        }
        // The root object is level 1, so `extra` starts at level 2.
        for (levels, ok) in [
            (crate::tree::MAX_DEPTH - 2, true),
            (crate::tree::MAX_DEPTH - 1, false),
        ] {
            let (value, text) = nested(levels);
            assert_eq!(
                ProjectConfig::from_json(&text).is_ok(),
                ok,
                "text, {levels}"
            );
            assert_eq!(
                ProjectConfig::from_value(value).is_ok(),
                ok,
                "value, {levels}"
            );
        }
        // Far deeper: refused without recursing (run with room for building and dropping it).
        let deep = std::thread::Builder::new()
            .stack_size(256 << 20)
            .spawn(|| ProjectConfig::from_value(nested(50_000).0).err())
            .and_then(|h| h.join().map_err(|_| std::io::Error::other("panicked")));
        assert!(
            matches!(&deep, Ok(Some(ConfigError::Json(m))) if m.contains("levels deep")),
            "{deep:?}"
        );
    }

    #[test]
    fn lone_surrogate_escapes_load_as_json_parse_reads_them() {
        let text = r#"{"account_id": "1", "project": {"id": "2", "name": "a\ud800b"},
            "experiences": [{"id": "7", "key": "k\uDC00", "variations": []}]}"#;
        let c = ProjectConfig::from_json(text);
        assert!(c.is_ok(), "{:?}", c.err());
        let c = c.ok();
        assert!(c.is_some_and(|c| c.experience_by_key("k\u{fffd}").is_some()));
    }

    #[test]
    fn raw_accessors_read_each_entity_at_its_position() {
        let mut cfg = base();
        cfg["audiences"] = json!([{"id": "a1", "x": 1}, {"id": "a2", "x": 2}]);
        cfg["segments"] = json!([{"id": 9, "x": 3}]);
        cfg["locations"] = json!([{"id": "l1", "x": 4}, {"id": "l1", "x": 5}]);
        cfg["experiences"] = json!([
            {"id": "e1", "key": "k", "variations": [{"id": "v1", "x": 6}, {"id": "v2", "x": 7}]},
            {"id": "e2", "key": "k", "variations": null},
            {"id": "e3", "key": "m", "variations": [{"id": "v3", "x": 8}]}
        ]);
        let c = ProjectConfig::from_value(cfg);
        assert!(c.is_ok(), "{:?}", c.err());
        let Ok(c) = c else { return };
        let x = |m: Option<&Map<String, Value>>| m.and_then(|m| m.get("x")).cloned();
        assert_eq!(x(c.audience_raw(1)), Some(json!(2)));
        assert_eq!(x(c.segment_raw(0)), Some(json!(3)));
        assert_eq!(x(c.location_raw(1)), Some(json!(5)));
        assert_eq!(x(c.variation_raw(0, 1)), Some(json!(7)));
        assert_eq!(x(c.variation_raw(2, 0)), Some(json!(8)));
        for (i, e) in c.experiences.iter().enumerate() {
            assert_eq!(e.index, i);
            let raw_id = c.experience_raw(e.index).and_then(|o| o.get("id"));
            assert_eq!(
                raw_id.map(|v| js::to_js_string(v).into_owned()),
                Some(e.id.to_string())
            );
            for (j, v) in e.variations.iter().enumerate() {
                let raw_id = c.variation_raw(i, j).and_then(|o| o.get("id"));
                assert_eq!(raw_id.and_then(Value::as_str), Some(&*v.id));
            }
        }
        assert_eq!(c.segment_id_values, [Some(json!(9))]);
        assert!(c.experience_raw(3).is_none());
        assert!(c.variation_raw(1, 0).is_none());
        assert!(c.variation_raw(0, 2).is_none());
        assert!(c.audience_raw(2).is_none());
        assert!(c.segment_raw(1).is_none());
        assert!(c.location_raw(2).is_none());
        assert!(ProjectConfig::empty().experience_raw(0).is_none());
    }

    /// The model and the served JSON of a config, for comparing two loads.
    fn snapshot(c: &ProjectConfig) -> String {
        format!(
            "{:?}",
            (
                (&c.account_id, &c.project_id, &c.envelope_environment),
                (&c.experiences, &c.audiences, &c.segments, &c.locations),
                (
                    &c.goals,
                    &c.features,
                    &c.feature_roster,
                    &c.segment_id_values
                ),
                c.raw(),
            )
        )
    }

    /// Loading text through the compact tree gives the model, the served JSON and the raw
    /// entities that loading `js::json_parse`'s value gives.
    fn assert_text_load_is_value_load(name: &str, text: &str) {
        let ours = ProjectConfig::from_json(text);
        let theirs = js::json_parse(text)
            .map_err(|e| ConfigError::Json(e.to_string()))
            .and_then(ProjectConfig::from_value);
        let (ours, theirs) = match (ours, theirs) {
            (Ok(a), Ok(b)) => (a, b),
            (a, b) => {
                assert_eq!(a.err(), b.err(), "{name}");
                return;
            }
        };
        // Entities first (converted one by one), then the whole object.
        let lists = [
            ("experiences", ours.experiences.len()),
            ("audiences", ours.audiences.len()),
            ("segments", ours.segments.len()),
            ("locations", ours.locations.len()),
        ];
        for (field, n) in lists {
            for i in 0..=n {
                let got = match field {
                    "experiences" => ours.experience_raw(i),
                    "audiences" => ours.audience_raw(i),
                    "segments" => ours.segment_raw(i),
                    _ => ours.location_raw(i),
                };
                let want = theirs.raw()[field].get(i).and_then(Value::as_object);
                assert_eq!(got, want, "{name} {field}[{i}]");
            }
        }
        for (i, e) in ours.experiences.iter().enumerate() {
            for j in 0..=e.variations.len() {
                assert_eq!(
                    ours.variation_raw(i, j),
                    theirs.variation_raw(i, j),
                    "{name} {i}/{j}"
                );
            }
        }
        assert_eq!(snapshot(&ours), snapshot(&theirs), "{name}");
        assert!(ours.same_served(&theirs), "{name}");
        for (ty, field) in [("experience", "key"), ("audience", "id"), ("goal", "key")] {
            for wanted in ["1", "k", "undefined"] {
                assert_eq!(
                    ours.entity_by_field(field, wanted, ty),
                    theirs.entity_by_field(field, wanted, ty),
                    "{name} {ty} {field}={wanted}"
                );
            }
        }
    }

    #[test]
    fn text_loads_as_its_parsed_value_loads() {
        let edge = r#"{"environment": "staging", "data": {"account_id": 1e2, "project": {"id": "2"},
            "audiences": [{"id": 5, "key": "k", "rules": {"OR": [{"AND": [{"OR_WHEN": [
                {"rule_type": "custom_key", "key": "a\ud800", "matching": {"match_type": "less",
                 "negated": false}, "value": 2.729254981960025e-119}]}]}]}, "id": "6"},
                {"id": -0, "key": 1, "type": "permanent", "type": "transient"}],
            "segments": [{"id": 18446744073709551616, "key": "s"}],
            "locations": [{"id": "l", "key": "l", "rules": null}],
            "goals": [{"id": 9007199254740993, "key": "k", "rules": {"OR": []}}],
            "features": [{"id": "f", "key": "fk", "variables": [{"key": "v", "type": "json"}]},
                         {"id": "f", "key": "fk2"}],
            "archived_experiences": [100],
            "experiences": [{"id": 100, "key": "k", "version": "12", "audiences": [5, "6"],
                "locations": ["l"], "environment": "staging",
                "settings": {"matching_options": {"audiences": "all"}},
                "variations": [{"id": "v1", "traffic_allocation": 5e1, "status": "running",
                    "changes": [{"type": "fullStackFeature", "data": {"feature_id": "f",
                        "variables_data": {"v": {"x": [1, "\u00e9"]}}}}]},
                    {"id": 7, "key": "v2", "traffic_allocation": "50"}]},
                {"id": "e2", "key": "k2", "site_area": {"OR": []}, "variations": null}]}}"#;
        let loaded = ProjectConfig::from_json(edge);
        assert!(loaded.is_ok(), "{:?}", loaded.err());
        assert_text_load_is_value_load("edge", edge);
        for bad in [
            "[]",
            "{}",
            r#"{"data": {"error": 5}}"#,
            "{\"a\":1e999}",
            "{",
        ] {
            assert_text_load_is_value_load(bad, bad);
        }
        let data = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/data");
        let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(&data)
            .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        let in_repo = files.len();
        if let Some(dir) = std::env::var_os("CONVERT_CONFORMANCE_DIR") {
            let dir = std::path::PathBuf::from(dir);
            for rel in [
                "javascript-sdk/test-config.json",
                "javascript-sdk/static-config.json",
                "javascript-sdk/test-config.no-matching-options.json",
                "derived/realistic-config.json",
            ] {
                files.push(dir.join(rel));
            }
        }
        let mut loaded = 0;
        for path in files
            .iter()
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
        {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            let name = path.display().to_string();
            assert_text_load_is_value_load(&name, &text);
            loaded += usize::from(ProjectConfig::from_json(&text).is_ok());
        }
        // The in-repo demo config, and the four conformance configs when they are given.
        let want = 1 + (files.len() - in_repo);
        assert!(loaded >= want, "{loaded} configs loaded from {files:?}");
    }

    #[test]
    fn same_served_compares_the_served_json() {
        let a = ProjectConfig::from_json(r#"{"account_id": "1", "project": {"id": "2"}}"#);
        let b = ProjectConfig::from_value(base());
        let c = ProjectConfig::from_json(r#"{"account_id": "1", "project": {"id": "3"}}"#);
        assert!(a.is_ok() && b.is_ok() && c.is_ok());
        let (Ok(a), Ok(b), Ok(c)) = (a, b, c) else {
            return;
        };
        assert!(a.same_served(&b));
        assert!(!a.same_served(&c));
        assert_eq!(a.raw(), b.raw());
        assert_ne!(a.raw(), c.raw());
    }

    #[test]
    fn minimal_config_parses() {
        let c = ProjectConfig::from_value(base());
        assert!(c.is_ok());
    }

    #[test]
    fn envelope_is_unwrapped() {
        let c = ProjectConfig::from_value(json!({"environment": "live", "data": base()}));
        let c = c.ok();
        assert_eq!(c.as_ref().map(|c| &*c.account_id), Some("1"));
        assert_eq!(
            c.and_then(|c| c.envelope_environment),
            Some("live".to_string())
        );
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            (json!([]), "(root)"),
            (json!({"project": {"id": "2"}}), "account_id"),
            (json!({"account_id": "1"}), "project.id"),
            (
                json!({"account_id": "1", "project": {"id": ""}}),
                "project.id",
            ),
            (json!({"account_id": "1", "project": 5}), "project"),
            (
                json!({"account_id": "1", "project": {"id": "2"}, "experiences": {}}),
                "experiences",
            ),
            (
                json!({"account_id": "1", "project": {"id": "2"}, "experiences": [1]}),
                "experiences[0]",
            ),
            (
                json!({"account_id": "1", "project": {"id": "2"}, "experiences": [{"variations": "x"}]}),
                "experiences[0].variations",
            ),
            (
                json!({"account_id": "1", "project": {"id": "2"}, "features": [{"variables": [3]}]}),
                "features[0].variables[0]",
            ),
        ];
        for (v, field) in cases {
            let err = ProjectConfig::from_value(v.clone()).err();
            let msg = err.map(|e| e.to_string()).unwrap_or_default();
            assert!(msg.contains(&format!("`{field}`")), "{v}: {msg}");
        }
    }

    #[test]
    fn error_response_is_rejected() {
        let err = ProjectConfig::from_value(json!({"error": "bad key"})).err();
        assert_eq!(err, Some(ConfigError::ErrorResponse("bad key".into())));
    }

    #[test]
    fn garbage_never_panics() {
        for text in [
            "",
            "nul",
            "{",
            "[1,2",
            "\"x\"",
            "1e999999",
            "{\"account_id\":{}}",
        ] {
            assert!(ProjectConfig::from_json(text).is_err(), "{text}");
        }
    }

    #[test]
    fn roster_follows_js_key_order() {
        let mut v = base();
        v["features"] = json!([{"id": "300"}, {"id": "20"}, {"id": "abc"}, {"id": "5"}]);
        let c = ProjectConfig::from_value(v).ok();
        let ids: Vec<String> = c
            .map(|c| {
                c.feature_roster
                    .iter()
                    .map(|&i| c.features[i].id.to_string())
                    .collect()
            })
            .unwrap_or_default();
        assert_eq!(ids, ["5", "20", "300", "abc"]);
    }
}
