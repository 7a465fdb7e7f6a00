//! `convert validate`: checks a project config against the served schema and lints what the SDK
//! would silently accept or misread. Every problem is collected (not just the first), each with
//! the JSON path of the value at fault, as an error (the SDK misreads or ignores it) or a warning
//! (probably a mistake, e.g. an unknown key).

use convert_core::ProjectConfig;
use convert_core::config::{ConfigError, LocationTarget};
use convert_core::js;
use convert_core::rules::RuleSet;
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;

/// How bad a problem is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// The SDK rejects, misreads or silently ignores the value.
    Error,
    /// Probably a mistake; the SDK works around it.
    Warning,
}

impl Severity {
    fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        }
    }
}

/// One problem of a config.
#[derive(Debug, Clone)]
pub struct Problem {
    /// Error or warning.
    pub severity: Severity,
    /// JSON path of the value at fault, e.g. `experiences[0].variations[1].traffic_allocation`
    /// (`(root)` for the document itself).
    pub path: String,
    /// What is wrong.
    pub message: String,
    /// The likely intended key or value ("did you mean").
    pub suggestion: Option<String>,
    /// Line and column, for JSON syntax errors.
    pub position: Option<(usize, usize)>,
}

/// Everything found in one file.
#[derive(Debug, Clone)]
pub struct Report {
    /// The file name as given.
    pub file: String,
    /// Entity counts when the config could be parsed.
    pub summary: Option<Summary>,
    /// The problems, in document order (schema checks first, then cross-entity lints).
    pub problems: Vec<Problem>,
    /// Where the project config sits in the file (`config.` in a batch request, `data.` in the
    /// CDN's envelope), prepended to every path.
    prefix: String,
}

/// Entity counts of a parsed config.
#[derive(Debug, Clone)]
pub struct Summary {
    account: String,
    project: String,
    counts: [(&'static str, usize); 6],
}

impl Report {
    /// An empty report about `file`.
    fn new(file: &str) -> Report {
        Report {
            file: file.to_string(),
            summary: None,
            problems: Vec::new(),
            prefix: String::new(),
        }
    }

    fn push(&mut self, severity: Severity, path: &str, message: String) -> &mut Problem {
        let path = format!("{}{path}", self.prefix);
        self.problems.push(Problem {
            severity,
            path: if path.is_empty() {
                "(root)".into()
            } else {
                path.trim_end_matches('.').to_string()
            },
            message,
            suggestion: None,
            position: None,
        });
        let last = self.problems.len() - 1;
        &mut self.problems[last]
    }

    fn error(&mut self, path: &str, message: impl Into<String>) -> &mut Problem {
        self.push(Severity::Error, path, message.into())
    }

    fn warning(&mut self, path: &str, message: impl Into<String>) -> &mut Problem {
        self.push(Severity::Warning, path, message.into())
    }

    /// Number of errors.
    pub fn errors(&self) -> usize {
        self.count(Severity::Error)
    }

    /// Number of warnings.
    pub fn warnings(&self) -> usize {
        self.count(Severity::Warning)
    }

    fn count(&self, s: Severity) -> usize {
        self.problems.iter().filter(|p| p.severity == s).count()
    }

    /// Whether validation fails: any error, or any warning when `strict`.
    pub fn failed(&self, strict: bool) -> bool {
        self.errors() > 0 || (strict && self.warnings() > 0)
    }

    /// The human-readable report.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        if let Some(s) = &self.summary {
            let counts: Vec<String> = s.counts.iter().map(|(k, n)| format!("{n} {k}")).collect();
            let _ = writeln!(
                out,
                "{}: account {}, project {}: {}",
                self.file,
                s.account,
                s.project,
                counts.join(", ")
            );
        }
        for p in &self.problems {
            if let Some((line, col)) = p.position {
                let _ = write!(out, "{}:{line}:{col}: ", self.file);
            }
            let _ = write!(out, "{}: {}: {}", p.severity.as_str(), p.path, p.message);
            if let Some(s) = &p.suggestion {
                let _ = write!(out, "; did you mean `{s}`?");
            }
            out.push('\n');
        }
        let (e, w) = (self.errors(), self.warnings());
        let _ = writeln!(
            out,
            "{}",
            match (e, w) {
                (0, 0) => "ok: no problems found".to_string(),
                (0, w) => format!("ok with {}", plural(w, "warning")),
                (e, w) => format!("failed: {}, {}", plural(e, "error"), plural(w, "warning")),
            }
        );
        out
    }

    /// The machine-readable report (`--format json`).
    pub fn to_json(&self) -> Value {
        let problems: Vec<Value> = self
            .problems
            .iter()
            .map(|p| {
                let mut o = Map::new();
                o.insert("severity".into(), p.severity.as_str().into());
                o.insert("path".into(), p.path.clone().into());
                o.insert("message".into(), p.message.clone().into());
                if let Some(s) = &p.suggestion {
                    o.insert("suggestion".into(), s.clone().into());
                }
                if let Some((line, column)) = p.position {
                    o.insert("line".into(), line.into());
                    o.insert("column".into(), column.into());
                }
                Value::Object(o)
            })
            .collect();
        json!({
            "file": self.file,
            "errors": self.errors(),
            "warnings": self.warnings(),
            "summary": self.summary.as_ref().map(|s| {
                let mut o = Map::new();
                o.insert("account_id".into(), s.account.clone().into());
                o.insert("project_id".into(), s.project.clone().into());
                for (k, n) in s.counts {
                    o.insert(k.into(), n.into());
                }
                Value::Object(o)
            }),
            "problems": problems,
        })
    }
}

fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}

// ---- the served schema (SPEC §3) ------------------------------------------------------------

const TOP: &[&str] = &[
    "account_id",
    "project",
    "experiences",
    "archived_experiences",
    "audiences",
    "segments",
    "locations",
    "goals",
    "features",
    "is_debug",
    "error",
    "_s_t",
];
const PROJECT: &[&str] = &[
    "id",
    "name",
    "type",
    "utc_offset",
    "domains",
    "custom_domain",
    "global_javascript",
    "environments",
    "settings",
];
const EXPERIENCE: &[&str] = &[
    "id",
    "key",
    "name",
    "type",
    "status",
    "version",
    "environment",
    "environments",
    "locations",
    "site_area",
    "audiences",
    "goals",
    "settings",
    "variations",
    "integrations",
    "global_js",
    "global_css",
    "multipage_pages",
    "url",
];
const EXPERIENCE_SETTINGS: &[&str] = &[
    "matching_options",
    "min_order_value",
    "max_order_value",
    "outliers",
    "placeholders",
    "split_url_settings",
];
const MATCHING_OPTIONS: &[&str] = &["audiences", "locations"];
const VARIATION: &[&str] = &[
    "id",
    "key",
    "name",
    "traffic_allocation",
    "status",
    "is_baseline",
    "changes",
];
const CHANGE: &[&str] = &["id", "type", "data"];
const FEATURE_CHANGE_DATA: &[&str] = &["feature_id", "variables_data"];
const AUDIENCE: &[&str] = &["id", "key", "name", "type", "rules", "status", "preset"];
const SEGMENT: &[&str] = &["id", "key", "name", "rules", "status", "preset"];
const LOCATION: &[&str] = &["id", "key", "name", "rules", "trigger"];
const GOAL: &[&str] = &[
    "id",
    "key",
    "name",
    "type",
    "rules",
    "settings",
    "status",
    "is_system",
    "selected_default",
];
const FEATURE: &[&str] = &["id", "key", "name", "variables"];
const VARIABLE: &[&str] = &["key", "type"];
const VARIABLE_TYPES: &[&str] = &["boolean", "float", "json", "integer", "string"];
const RULE_ELEMENT: &[&str] = &["rule_type", "key", "value", "matching"];
const MATCHING: &[&str] = &["match_type", "negated"];
const MATCH_TYPES: &[&str] = &[
    "equals",
    "equalsNumber",
    "matches",
    "less",
    "lessEqual",
    "contains",
    "isIn",
    "startsWith",
    "endsWith",
    "regexMatches",
    "exists",
    "not_exists",
    "doesNotExist",
];

/// The closest of `candidates` to `word`, when close enough to be a likely typo.
pub fn did_you_mean<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (strsim::jaro_winkler(word, c), *c))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

fn at(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn describe(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("the boolean {b}"),
        Value::Number(n) => format!("the number {n}"),
        Value::String(s) => format!("the string {s:?}"),
        Value::Array(_) => "an array".into(),
        Value::Object(_) => "an object".into(),
    }
}

/// Warns about members of `obj` outside `known`, with the closest known key.
fn check_keys(r: &mut Report, path: &str, obj: &Map<String, Value>, known: &[&str]) {
    for k in obj.keys() {
        if !known.contains(&k.as_str()) {
            let p = r.warning(&at(path, k), "unknown key, ignored by the SDK");
            p.suggestion = did_you_mean(k, known).map(str::to_string);
        }
    }
}

/// The array at `obj[key]` (absent and null are empty); an error for anything else.
fn list<'a>(r: &mut Report, path: &str, obj: &'a Map<String, Value>, key: &str) -> &'a [Value] {
    match obj.get(key) {
        None | Some(Value::Null) => &[],
        Some(Value::Array(a)) => a,
        Some(other) => {
            r.error(
                &at(path, key),
                format!("must be an array, found {}", describe(other)),
            );
            &[]
        }
    }
}

/// Calls `f` for each object of the array `obj[key]`, reporting members that are not objects.
fn each_object<'a>(
    r: &mut Report,
    path: &str,
    obj: &'a Map<String, Value>,
    key: &str,
    known: &[&str],
    mut f: impl FnMut(&mut Report, &str, usize, &'a Map<String, Value>),
) {
    for (i, v) in list(r, path, obj, key).iter().enumerate() {
        let p = format!("{}[{i}]", at(path, key));
        match v {
            Value::Object(o) => {
                check_keys(r, &p, o, known);
                f(r, &p, i, o);
            }
            other => {
                r.error(&p, format!("must be an object, found {}", describe(other)));
            }
        }
    }
}

/// Warns when `v` is not one of `allowed`; `fallback` says what the SDK does instead.
fn check_choice(r: &mut Report, path: &str, v: &Value, allowed: &[&str], fallback: &str) {
    if v.as_str().is_some_and(|s| allowed.contains(&s)) {
        return;
    }
    let choices: Vec<String> = allowed.iter().map(|a| format!("{a:?}")).collect();
    let p = r.warning(
        path,
        format!(
            "must be {}, found {}: {fallback}",
            choices.join(" or "),
            describe(v)
        ),
    );
    p.suggestion = v
        .as_str()
        .and_then(|s| did_you_mean(s, allowed))
        .map(str::to_string);
}

/// A required id (`id` truthy, a string or number).
fn check_id(r: &mut Report, path: &str, obj: &Map<String, Value>, what: &str) {
    match obj.get("id") {
        Some(Value::String(s)) if !s.is_empty() => {}
        Some(Value::Number(_)) => {}
        None | Some(Value::Null) => {
            r.warning(&at(path, "id"), format!("missing: {what}"));
        }
        Some(other) => {
            r.error(
                &at(path, "id"),
                format!("must be a string, found {}", describe(other)),
            );
        }
    }
}

/// An array of entity ids (strings or numbers).
fn check_ids(r: &mut Report, path: &str, obj: &Map<String, Value>, key: &str) {
    for (i, v) in list(r, path, obj, key).iter().enumerate() {
        if !matches!(v, Value::String(_) | Value::Number(_)) {
            r.error(
                &format!("{}[{i}]", at(path, key)),
                format!("must be an id (a string), found {}", describe(v)),
            );
        }
    }
}

fn non_empty_array<'a>(
    r: &mut Report,
    path: &str,
    obj: &'a Map<String, Value>,
    key: &str,
) -> Option<&'a [Value]> {
    match obj.get(key) {
        Some(Value::Array(a)) if !a.is_empty() => Some(a),
        Some(other) => {
            r.error(
                &at(path, key),
                format!(
                    "must be a non-empty array, found {}: the rule never matches",
                    describe(other)
                ),
            );
            None
        }
        None => {
            r.error(
                &at(path, key),
                "missing: a rule level needs a non-empty array here, or it never matches",
            );
            None
        }
    }
}

/// A rule tree `{OR: [{AND: [{OR_WHEN: [element, ...]}]}]}` (SPEC §6.1); structural mistakes make
/// the rule never match, so they are errors.
fn check_rules(r: &mut Report, path: &str, rules: &Value) {
    let Value::Object(top) = rules else {
        r.error(
            path,
            format!(
                "must be a rule object {{\"OR\": [{{\"AND\": [{{\"OR_WHEN\": [...]}}]}}]}} or null, found {}",
                describe(rules)
            ),
        );
        return;
    };
    check_keys(r, path, top, &["OR"]);
    let levels = ["OR", "AND", "OR_WHEN"];
    let mut frontier: Vec<(String, &Map<String, Value>)> = vec![(path.to_string(), top)];
    for (depth, level) in levels.iter().enumerate() {
        let mut next = Vec::new();
        for (p, obj) in frontier {
            let Some(items) = non_empty_array(r, &p, obj, level) else {
                continue;
            };
            for (i, item) in items.iter().enumerate() {
                let ip = format!("{}[{i}]", at(&p, level));
                let Value::Object(o) = item else {
                    r.error(&ip, format!("must be an object, found {}", describe(item)));
                    continue;
                };
                match levels.get(depth + 1) {
                    Some(inner) => {
                        check_keys(r, &ip, o, &[inner]);
                        next.push((ip, o));
                    }
                    None => check_rule_element(r, &ip, o),
                }
            }
        }
        frontier = next;
    }
}

fn check_rule_element(r: &mut Report, path: &str, el: &Map<String, Value>) {
    check_keys(r, path, el, RULE_ELEMENT);
    if let Some(t) = el.get("rule_type").filter(|t| !t.is_string()) {
        r.warning(
            &at(path, "rule_type"),
            format!("must be a string, found {}", describe(t)),
        );
    }
    let matching_path = at(path, "matching");
    let Some(Value::Object(m)) = el.get("matching") else {
        r.error(
            &matching_path,
            "missing or not an object: the rule never matches",
        );
        return;
    };
    check_keys(r, &matching_path, m, MATCHING);
    let mut runs_on_missing = false;
    match m.get("match_type") {
        Some(Value::String(t)) if MATCH_TYPES.contains(&t.as_str()) => {
            runs_on_missing = matches!(t.as_str(), "exists" | "doesNotExist");
        }
        other => {
            let found = other.map_or("nothing".to_string(), describe);
            let p = r.error(
                &at(&matching_path, "match_type"),
                format!("must be a comparison operator, found {found}: the rule never matches"),
            );
            p.suggestion = other
                .and_then(Value::as_str)
                .and_then(|t| did_you_mean(t, MATCH_TYPES))
                .map(str::to_string);
        }
    }
    if !matches!(m.get("negated"), Some(Value::Bool(_))) {
        let found = m.get("negated").map_or("nothing".to_string(), describe);
        r.error(
            &at(&matching_path, "negated"),
            format!("must be true or false, found {found}: the rule never matches"),
        );
    }
    if !el.contains_key("value") && !runs_on_missing {
        r.error(
            &at(path, "value"),
            "missing: the rule never matches (only `exists` and `doesNotExist` need no value)",
        );
    }
}

/// `rules` of an audience, segment, location or goal: null or a rule tree.
fn check_rules_member(r: &mut Report, path: &str, obj: &Map<String, Value>, key: &str) {
    match obj.get(key) {
        None | Some(Value::Null) => {}
        Some(v) => check_rules(r, &at(path, key), v),
    }
}

fn check_ruled(r: &mut Report, path: &str, obj: &Map<String, Value>, what: &str) {
    check_id(
        r,
        path,
        obj,
        &format!("experiences cannot reference this {what}"),
    );
    check_rules_member(r, path, obj, "rules");
}

/// The numeric value of a `traffic_allocation` or `None` when it is not a number (a numeric
/// string is accepted with a warning, as the SDK converts it).
fn allocation(r: &mut Report, path: &str, v: &Value) -> Option<f64> {
    let n = match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) if convert_core::rules::is_numeric_str(s) => {
            let n = js::to_number(Some(v));
            r.warning(path, format!("is a string; the SDK reads it as {n}"));
            Some(n)
        }
        _ => None,
    };
    match n {
        Some(n) if n.is_finite() && (0.0..=100.0).contains(&n) => Some(n),
        Some(n) => {
            r.error(
                path,
                format!("must be a percentage from 0 to 100, found {n}"),
            );
            None
        }
        None => {
            r.error(
                path,
                format!(
                    "must be a number (a percentage from 0 to 100), found {}",
                    describe(v)
                ),
            );
            None
        }
    }
}

/// Declared features: id → variable names.
fn declared_features(data: &Map<String, Value>) -> BTreeMap<String, Vec<String>> {
    let mut out = BTreeMap::new();
    if let Some(Value::Array(fs)) = data.get("features") {
        for f in fs {
            let Some(id) = f.get("id") else { continue };
            let vars = f
                .get("variables")
                .and_then(Value::as_array)
                .map(|vs| {
                    vs.iter()
                        .filter_map(|v| v.get("key").and_then(Value::as_str))
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default();
            out.insert(js::to_js_string(id).into_owned(), vars);
        }
    }
    out
}

fn check_variation(
    r: &mut Report,
    path: &str,
    v: &Map<String, Value>,
    features: &BTreeMap<String, Vec<String>>,
) -> Option<f64> {
    match v.get("id") {
        Some(Value::String(s)) if !s.is_empty() => {}
        Some(Value::Number(_)) => {
            r.warning(
                &at(path, "id"),
                "is not a string, so the variation can be bucketed but never returned (as in the reference SDK)",
            );
        }
        None | Some(Value::Null) => {
            r.warning(&at(path, "id"), "missing: the variation is never chosen");
        }
        Some(other) => {
            r.error(
                &at(path, "id"),
                format!("must be a string, found {}", describe(other)),
            );
        }
    }
    if let Some(s) = v.get("status") {
        check_choice(
            r,
            &at(path, "status"),
            s,
            &["running", "stopped"],
            "treated as stopped",
        );
    }
    each_object(r, path, v, "changes", CHANGE, |r, cp, _, ch| {
        if ch.get("type").and_then(Value::as_str) != Some("fullStackFeature") {
            return;
        }
        let dp = at(cp, "data");
        let Some(Value::Object(data)) = ch.get("data") else {
            r.error(&dp, "a fullStackFeature change needs a data object");
            return;
        };
        check_keys(r, &dp, data, FEATURE_CHANGE_DATA);
        let Some(fid) = data.get("feature_id").filter(|f| js::truthy(f)) else {
            r.error(
                &at(&dp, "feature_id"),
                "missing: the change is ignored by the SDK",
            );
            return;
        };
        let fid = js::to_js_string(fid).into_owned();
        let Some(declared) = features.get(&fid) else {
            r.warning(
                &at(&dp, "feature_id"),
                format!("feature {fid} is not declared in `features`"),
            );
            return;
        };
        match data.get("variables_data") {
            None | Some(Value::Null) => {}
            Some(Value::Object(vars)) => {
                let names: Vec<&str> = declared.iter().map(String::as_str).collect();
                for k in vars.keys() {
                    if !names.contains(&k.as_str()) {
                        let p = r.warning(
                            &at(&at(&dp, "variables_data"), k),
                            format!("variable not declared by feature {fid}"),
                        );
                        p.suggestion = did_you_mean(k, &names).map(str::to_string);
                    }
                }
            }
            Some(other) => {
                r.error(
                    &at(&dp, "variables_data"),
                    format!("must be an object, found {}", describe(other)),
                );
            }
        }
    });
    match v.get("traffic_allocation") {
        // Absent: the packed layout reads it as 100 (SPEC §4.4).
        None => Some(100.0),
        Some(t) => allocation(r, &at(path, "traffic_allocation"), t),
    }
}

fn check_experience(
    r: &mut Report,
    path: &str,
    e: &Map<String, Value>,
    features: &BTreeMap<String, Vec<String>>,
    environments: Option<&[&str]>,
) {
    check_id(r, path, e, "the experience can never be decided");
    match e.get("key") {
        Some(Value::String(s)) if !s.is_empty() => {}
        other => {
            r.warning(
                &at(path, "key"),
                format!(
                    "must be a non-empty string, found {}: the experience cannot be run by key",
                    other.map_or("nothing".to_string(), describe)
                ),
            );
        }
    }
    if let Some(env) = e.get("environment").filter(|v| js::truthy(v)) {
        if let (Some(name), Some(known)) = (env.as_str(), environments) {
            if !known.contains(&name) {
                let p = r.warning(
                    &at(path, "environment"),
                    format!(
                        "{name:?} is not one of the project's environments ({}): the experience runs only when the SDK is set to it",
                        known.join(", ")
                    ),
                );
                p.suggestion = did_you_mean(name, known).map(str::to_string);
            }
        }
        if !env.is_string() {
            r.error(
                &at(path, "environment"),
                format!(
                    "must be a string, found {}: the experience never matches",
                    describe(env)
                ),
            );
        }
    }
    if let Some(v) = e.get("version").filter(|v| !v.is_null()) {
        let numeric = v.is_number() || v.as_str().is_some_and(convert_core::rules::is_numeric_str);
        if !numeric {
            r.warning(
                &at(path, "version"),
                format!(
                    "must be a number, found {}: the packed (legacy) layout is used",
                    describe(v)
                ),
            );
        }
    }
    check_ids(r, path, e, "locations");
    check_ids(r, path, e, "audiences");
    if let Some(sa) = e.get("site_area").filter(|v| js::truthy(v)) {
        check_rules(r, &at(path, "site_area"), sa);
    }
    match e.get("settings") {
        None | Some(Value::Null) => {}
        Some(Value::Object(s)) => {
            let sp = at(path, "settings");
            check_keys(r, &sp, s, EXPERIENCE_SETTINGS);
            match s.get("matching_options") {
                None | Some(Value::Null) => {}
                Some(Value::Object(m)) => {
                    let mp = at(&sp, "matching_options");
                    check_keys(r, &mp, m, MATCHING_OPTIONS);
                    if let Some(a) = m.get("audiences") {
                        let p = at(&mp, "audiences");
                        check_choice(r, &p, a, &["any", "all"], "treated as \"any\"");
                    }
                }
                Some(other) => {
                    r.error(
                        &at(&sp, "matching_options"),
                        format!("must be an object, found {}", describe(other)),
                    );
                }
            }
        }
        Some(other) => {
            r.error(
                &at(path, "settings"),
                format!("must be an object, found {}", describe(other)),
            );
        }
    }
    let mut total = Some(0.0);
    let mut any = false;
    each_object(r, path, e, "variations", VARIATION, |r, vp, _, v| {
        any = true;
        let a = check_variation(r, vp, v, features);
        total = total.zip(a).map(|(t, a)| t + a);
    });
    // The packed layout walks the allocations in order; they should cover 100 %. Skipped when an
    // allocation is already reported as unreadable.
    let anchored = convert_core::bucketing::is_anchored(e.get("version"));
    if let Some(total) = total.filter(|t| any && !anchored && (t - 100.0).abs() > 1e-9) {
        r.warning(
            &at(path, "variations"),
            format!("traffic allocations add up to {total}%, not 100%"),
        );
    }
}

/// The schema walk over the raw JSON: types, unknown keys, rule trees, allocations.
fn check_schema(r: &mut Report, data: &Map<String, Value>) {
    check_keys(r, "", data, TOP);
    if !data.get("account_id").is_some_and(js::truthy) {
        r.error("account_id", "missing or empty");
    }
    match data.get("project") {
        Some(Value::Object(p)) => {
            check_keys(r, "project", p, PROJECT);
            if !p.get("id").is_some_and(js::truthy) {
                r.error("project.id", "missing or empty");
            }
        }
        None | Some(Value::Null) => {
            r.error("project.id", "missing or empty");
        }
        Some(other) => {
            r.error(
                "project",
                format!("must be an object, found {}", describe(other)),
            );
        }
    }
    let features = declared_features(data);
    // `project.environments` (name → label), when the config lists them.
    let environments: Option<Vec<&str>> = data
        .get("project")
        .and_then(|p| p.get("environments"))
        .and_then(Value::as_object)
        .filter(|m| !m.is_empty())
        .map(|m| m.keys().map(String::as_str).collect());
    each_object(r, "", data, "experiences", EXPERIENCE, |r, p, _, e| {
        check_experience(r, p, e, &features, environments.as_deref());
    });
    check_ids(r, "", data, "archived_experiences");
    each_object(r, "", data, "audiences", AUDIENCE, |r, p, _, a| {
        check_ruled(r, p, a, "audience");
        if let Some(t) = a.get("type").filter(|t| !t.is_null()) {
            let choices = ["permanent", "transient"];
            check_choice(r, &at(p, "type"), t, &choices, "treated as transient");
        }
    });
    each_object(r, "", data, "segments", SEGMENT, |r, p, _, s| {
        check_ruled(r, p, s, "segment");
    });
    each_object(r, "", data, "locations", LOCATION, |r, p, _, l| {
        check_ruled(r, p, l, "location");
    });
    each_object(r, "", data, "goals", GOAL, |r, p, _, g| {
        check_id(r, p, g, "the goal can never convert");
        check_rules_member(r, p, g, "rules");
    });
    each_object(r, "", data, "features", FEATURE, |r, p, _, f| {
        check_id(r, p, f, "variations cannot change this feature");
        each_object(r, p, f, "variables", VARIABLE, |r, vp, _, var| {
            if !var.get("key").is_some_and(Value::is_string) {
                r.error(&at(vp, "key"), "missing: the variable cannot be read");
            }
            match var.get("type") {
                Some(Value::String(t)) if VARIABLE_TYPES.contains(&t.as_str()) => {}
                other => {
                    let found = other.map_or("nothing".to_string(), describe);
                    let p = r.error(
                        &at(vp, "type"),
                        format!(
                            "must be one of {}, found {found}: the value is returned uncast",
                            VARIABLE_TYPES.join(", ")
                        ),
                    );
                    p.suggestion = other
                        .and_then(Value::as_str)
                        .and_then(|t| did_you_mean(t, VARIABLE_TYPES))
                        .map(str::to_string);
                }
            }
        });
    });
}

/// Cross-entity lints on the parsed config: what resolves to what.
fn check_references(r: &mut Report, cfg: &ProjectConfig) {
    let mut seen_keys: BTreeMap<&str, usize> = BTreeMap::new();
    let mut seen_ids: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, e) in cfg.experiences.iter().enumerate() {
        let path = format!("experiences[{i}]");
        if let Some(prev) = seen_keys.insert(&e.key, i) {
            r.warning(
                &at(&path, "key"),
                format!(
                    "experience key {:?} is also used by experiences[{prev}]: lookups by key find the first",
                    e.key
                ),
            );
        }
        if let Some(prev) = seen_ids.insert(&e.id, i).filter(|_| !e.id.is_empty()) {
            r.warning(
                &at(&path, "id"),
                format!(
                    "experience id {:?} is also used by experiences[{prev}]: lookups by id find the first, and both share a visitor's stored decision",
                    e.id
                ),
            );
        }
        if e.variations.is_empty() {
            r.warning(&at(&path, "variations"), "the experience has no variations");
        }
        let mut variation_ids: BTreeMap<&str, usize> = BTreeMap::new();
        for (j, v) in e.variations.iter().enumerate() {
            if let Some(prev) = variation_ids.insert(&v.id, j).filter(|_| !v.id.is_empty()) {
                r.warning(
                    &format!("{path}.variations[{j}].id"),
                    format!(
                        "variation id {:?} is also used by variations[{prev}]: the two arms share one bucket, so visitors are not split as the allocations say (see `convert simulate`)",
                        v.id
                    ),
                );
            }
        }
        let raw = cfg.experience_raw(e.index);
        let raw_audiences = raw
            .and_then(|o| o.get("audiences"))
            .and_then(Value::as_array)
            .map_or(0, Vec::len);
        let resolved = e.audiences.len() + e.segments.len();
        if raw_audiences > resolved {
            r.warning(
                &at(&path, "audiences"),
                format!("lists {raw_audiences} audiences/segments but only {resolved} resolve"),
            );
        }
        if !e.audiences.is_empty()
            && raw
                .and_then(|o| o.get("settings"))
                .and_then(|s| s.get("matching_options"))
                .is_none()
        {
            r.warning(
                &at(&path, "settings"),
                "the experience has audiences but no settings.matching_options: treated as \"any\" (the JavaScript SDK throws here)",
            );
        }
        if let LocationTarget::Locations(idx) = &e.location {
            if idx.is_empty() {
                r.warning(
                    &at(&path, "locations"),
                    "none of these locations is in the config, so the experience never matches",
                );
            }
        }
    }
    regex_warnings(r, cfg);
}

/// Every compiled rule tree of the config with the JSON path of its raw form.
fn rule_trees(cfg: &ProjectConfig) -> Vec<(String, &RuleSet)> {
    let mut out = Vec::new();
    for (i, e) in cfg.experiences.iter().enumerate() {
        if let LocationTarget::SiteArea(rules) = &e.location {
            out.push((format!("experiences[{i}].site_area"), rules));
        }
    }
    for (kind, list) in [
        ("audiences", &cfg.audiences),
        ("segments", &cfg.segments),
        ("locations", &cfg.locations),
    ] {
        for (i, ent) in list.iter().enumerate() {
            if let Some(rules) = &ent.rules {
                out.push((format!("{kind}[{i}].rules"), rules));
            }
        }
    }
    for (i, g) in cfg.goals.iter().enumerate() {
        if let Some(rules) = &g.rules {
            out.push((format!("goals[{i}].rules"), rules));
        }
    }
    out
}

/// Rule patterns the engine cannot run as written, per rule tree.
///
/// HOOK for regex-budget warnings: when the core reports patterns that exceed its regex budget
/// (size or compile cost), add one warning per pattern here, in the same form (the tree's JSON
/// path, the pattern, and what the engine does with it).
fn regex_warnings(r: &mut Report, cfg: &ProjectConfig) {
    for (path, rules) in rule_trees(cfg) {
        for (pattern, concern) in rules.regex_concerns() {
            r.warning(
                &path,
                format!("regexMatches pattern {pattern:?}: {concern}"),
            );
        }
    }
}

/// The path of a core parse error, as reported by [`ConfigError`].
fn core_error_path(e: &ConfigError) -> Option<&str> {
    match e {
        ConfigError::InvalidType { field, .. } | ConfigError::Missing(field) => Some(field),
        _ => None,
    }
}

/// The report of a file that is not UTF-8 text (JSON must be): one error, at the first byte
/// that is not.
pub fn not_utf8(file: &str, e: std::str::Utf8Error) -> Report {
    let mut r = Report::new(file);
    r.error(
        "",
        format!(
            "not valid JSON: the file is not UTF-8 text (invalid byte at offset {})",
            e.valid_up_to()
        ),
    );
    r
}

/// Validates the text of `file` (a project config, an envelope `{"data": {...}}`, or a batch
/// request whose `config` member is used).
pub fn validate(file: &str, text: &str) -> Report {
    let mut r = Report::new(file);
    let doc: Value = match convert_core::js::json_parse(text) {
        Ok(v) => v,
        Err(e) => {
            let p = r.error("", format!("not valid JSON: {e}"));
            p.position = Some((e.line(), e.column()));
            return r;
        }
    };
    let doc = match doc {
        Value::Object(mut m)
            if !m.contains_key("account_id") && m.get("config").is_some_and(Value::is_object) =>
        {
            r.prefix.push_str("config.");
            m.remove("config").unwrap_or_default()
        }
        other => other,
    };
    let data = match &doc {
        Value::Object(m)
            if !m.contains_key("account_id") && m.get("data").is_some_and(Value::is_object) =>
        {
            r.prefix.push_str("data.");
            m.get("data").and_then(Value::as_object)
        }
        Value::Object(m) => Some(m),
        other => {
            r.error(
                "",
                format!(
                    "a project config must be a JSON object, found {}",
                    describe(other)
                ),
            );
            None
        }
    };
    let Some(data) = data else { return r };
    if let Some(err) = data.get("error").filter(|e| js::truthy(e)) {
        r.error(
            "error",
            format!(
                "the file is an error response, not a config: {}",
                describe(err)
            ),
        );
        return r;
    }
    check_schema(&mut r, data);
    match ProjectConfig::from_value(doc) {
        Ok(cfg) => {
            check_references(&mut r, &cfg);
            r.summary = Some(Summary {
                account: cfg.account_id.to_string(),
                project: cfg.project_id.to_string(),
                counts: [
                    ("experiences", cfg.experiences.len()),
                    ("features", cfg.features.len()),
                    ("goals", cfg.goals.len()),
                    ("audiences", cfg.audiences.len()),
                    ("segments", cfg.segments.len()),
                    ("locations", cfg.locations.len()),
                ],
            });
        }
        Err(e) => {
            // The schema walk reports what the core rejects; keep the core's word when it found
            // something the walk did not.
            let known: HashSet<&str> = r
                .problems
                .iter()
                .filter(|p| p.severity == Severity::Error)
                .map(|p| p.path.as_str())
                .collect();
            let prefixed = core_error_path(&e).map(|p| format!("{}{p}", r.prefix));
            if !prefixed.is_some_and(|p| known.contains(p.as_str())) {
                let path = core_error_path(&e).unwrap_or("").to_string();
                r.error(&path, e.to_string());
            }
        }
    }
    r
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn suggestions_pick_the_closest_key() {
        assert_eq!(did_you_mean("experinces", TOP), Some("experiences"));
        assert_eq!(did_you_mean("stauts", VARIATION), Some("status"));
        assert_eq!(did_you_mean("zzz", TOP), None);
    }

    #[test]
    fn paths_join_with_dots() {
        assert_eq!(at("", "a"), "a");
        assert_eq!(at("a[0]", "b"), "a[0].b");
    }
}
