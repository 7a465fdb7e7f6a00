//! User commands: `decide`, `validate`, `simulate`.

use convert_core::config::{LocationTarget, ProjectConfig};
use convert_core::engine::{
    Effects, Engine, EngineSettings, Layout, RunOptions, Step, VisitorProps, VisitorState,
};
use convert_core::rules::RuleOutcome;
use convert_core::{Decision, StoreData};
use convert_sdk::{BucketingAttributes, Core, FeatureStatus};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Parsed command-line options of the user commands.
#[derive(Debug, Default)]
pub struct Opts {
    config: Option<String>,
    visitor: Option<String>,
    experience: Option<String>,
    environment: Option<String>,
    visitors: Option<usize>,
    attrs: Map<String, Value>,
    location: Map<String, Value>,
    explain: bool,
    ignore_location: bool,
    sdk_key: Option<String>,
    secret: Option<String>,
    endpoint: Option<String>,
    output: Option<String>,
}

fn kv(arg: &str) -> Result<(String, Value), String> {
    let (k, v) = arg
        .split_once('=')
        .ok_or_else(|| format!("expected KEY=VALUE, got `{arg}`"))?;
    // Numbers, booleans and JSON literals keep their type; anything else is a string.
    let value = serde_json::from_str::<Value>(v).unwrap_or_else(|_| Value::String(v.to_string()));
    Ok((k.to_string(), value))
}

/// Parses `--flag value` options.
pub fn parse(args: &[String]) -> Result<Opts, String> {
    let mut o = Opts::default();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = |name: &str| -> Result<String, String> {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match a.as_str() {
            "--config" | "-c" => o.config = Some(val(a)?),
            "--visitor" | "-v" => o.visitor = Some(val(a)?),
            "--experience" | "-e" => o.experience = Some(val(a)?),
            "--environment" => o.environment = Some(val(a)?),
            "--visitors" | "-n" => {
                let v = val(a)?;
                o.visitors = Some(
                    v.parse()
                        .map_err(|_| format!("--visitors: `{v}` is not a number"))?,
                );
            }
            "--attr" | "-a" => {
                let (k, v) = kv(&val(a)?)?;
                o.attrs.insert(k, v);
            }
            "--location" | "-l" => {
                let (k, v) = kv(&val(a)?)?;
                o.location.insert(k, v);
            }
            "--sdk-key" => o.sdk_key = Some(val(a)?),
            "--secret" => o.secret = Some(val(a)?),
            "--endpoint" => o.endpoint = Some(val(a)?),
            "--output" | "-o" => o.output = Some(val(a)?),
            "--explain" => o.explain = true,
            "--ignore-location" => o.ignore_location = true,
            other => return Err(format!("unexpected argument `{other}`")),
        }
    }
    Ok(o)
}

fn load_config(o: &Opts) -> Result<(String, ProjectConfig), String> {
    let path = o.config.as_deref().ok_or("--config FILE is required")?;
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    let text = config_of_request(text);
    let cfg = ProjectConfig::from_json(&text).map_err(|e| format!("{path}: {e}"))?;
    Ok((text, cfg))
}

/// A batch or bench request file is accepted too: its `config` member is used.
fn config_of_request(text: String) -> String {
    match serde_json::from_str::<Value>(&text) {
        Ok(Value::Object(m))
            if !m.contains_key("account_id") && m.get("config").is_some_and(Value::is_object) =>
        {
            m.get("config").map_or(text.clone(), Value::to_string)
        }
        _ => text,
    }
}

fn attrs_of(o: &Opts) -> BucketingAttributes {
    BucketingAttributes {
        visitor_properties: (!o.attrs.is_empty()).then(|| o.attrs.clone()),
        location_properties: Some(o.location.clone()),
        ignore_location_properties: o.ignore_location,
        ..Default::default()
    }
}

fn outcome(o: RuleOutcome) -> String {
    match o {
        RuleOutcome::Matched => "matched".into(),
        RuleOutcome::NotMatched => "not matched".into(),
        RuleOutcome::Error(e) => format!("rule error {}", e.code()),
    }
}

/// One human-readable line per decision step.
pub fn describe(step: &Step) -> String {
    match step {
        Step::UnknownExperience(k) => format!("no experience with key {k:?} in the config"),
        Step::Archived => "the experience is archived".into(),
        Step::Environment {
            experience,
            wanted,
            matched,
        } => format!(
            "environment: experience runs in {experience:?}, asked for {wanted:?}: {}",
            if *matched { "ok" } else { "mismatch" }
        ),
        Step::LocationIgnored => "location: ignored (--ignore-location)".into(),
        Step::LocationUnrestricted => "location: unrestricted (no locations, no site area)".into(),
        Step::Location { key, outcome: o } => format!("location {key:?}: {}", outcome(*o)),
        Step::SiteArea(o) => format!("site area rules: {}", outcome(*o)),
        Step::Audience {
            key,
            outcome: o,
            exclusion_target,
        } => match (o, exclusion_target) {
            (None, _) => {
                format!("audience {key:?}: skipped (permanent and already bucketed, or no rules)")
            }
            (Some(o), Some(t)) => {
                format!(
                    "audience {key:?} (mutual exclusion with {t:?}): {}",
                    outcome(*o)
                )
            }
            (Some(o), None) => format!("audience {key:?}: {}", outcome(*o)),
        },
        Step::Audiences {
            all,
            matched,
            checked,
        } => format!(
            "audiences ({}): {matched} of {checked} matched",
            if *all {
                "all must match"
            } else {
                "any may match"
            }
        ),
        Step::Segments { matched } => format!(
            "custom segments: {}",
            if *matched {
                "visitor is a member"
            } else {
                "visitor is in none"
            }
        ),
        Step::NoVariations => "the experience has no variations".into(),
        Step::Sticky(v) => format!("stored decision reused: variation {v}"),
        Step::Forced(v) => format!("forced variation {v}"),
        Step::Bucket {
            value,
            layout,
            variation,
        } => format!(
            "bucket value {value} ({} layout) -> {}",
            match layout {
                Layout::Packed => "packed",
                Layout::Anchored => "anchored",
            },
            variation
                .as_deref()
                .map_or("no variation covers it".to_string(), |v| format!(
                    "variation {v}"
                ))
        ),
    }
}

fn decision_line(d: &Decision) -> String {
    match d {
        Decision::Variation(v) => format!(
            "variation {} ({}){}",
            v.variation_key.as_deref().unwrap_or("?"),
            v.variation_id,
            v.bucketing_allocation
                .map_or(", stored".to_string(), |b| format!(", bucket value {b}"))
        ),
        Decision::NotMatched => "not matched".into(),
        Decision::NotDecided => "qualified, but no variation covers the bucket".into(),
        Decision::RuleError(e) => format!("rule error {}", e.code()),
    }
}

/// `convert decide`: one visitor's decisions, optionally explained.
pub fn decide(args: &[String]) -> Result<String, String> {
    let o = parse(args)?;
    let (text, _) = load_config(&o)?;
    let visitor = o.visitor.clone().ok_or("--visitor ID is required")?;
    let mut b = Core::builder().config_json(text).tracking(false);
    if let Some(env) = &o.environment {
        b = b.environment(env);
    }
    let core = b.build().map_err(|e| e.to_string())?;
    let ctx = core.create_context(&visitor, None);
    let attrs = attrs_of(&o);
    let cfg = core.config();
    let keys: Vec<String> = match &o.experience {
        Some(k) => vec![k.clone()],
        None => cfg.experiences.iter().map(|e| e.key.to_string()).collect(),
    };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "visitor {visitor:?}, environment {:?}, project {}",
        core.environment(),
        cfg.project_id
    );
    for key in &keys {
        let (d, steps) = ctx.explain_experience(key, &attrs);
        let _ = writeln!(out, "\nexperience {key:?}: {}", decision_line(&d));
        if o.explain {
            for s in &steps {
                let _ = writeln!(out, "  - {}", describe(s));
            }
        }
    }
    if o.experience.is_none() {
        let _ = writeln!(out, "\nfeatures (dry run: nothing stored or tracked):");
        // Features are resolved on a throw-away SDK so the visitor's store is not touched.
        let dry = Core::builder()
            .project_config((*cfg).clone())
            .environment(core.environment())
            .tracking(false)
            .build()
            .map_err(|e| e.to_string())?;
        match dry.create_context(&visitor, None).run_features(&attrs) {
            Ok(list) => {
                for f in list {
                    let _ = writeln!(
                        out,
                        "  {:<20} {:<8} {}",
                        f.feature_key.as_deref().unwrap_or("?"),
                        match f.status {
                            FeatureStatus::Enabled => "enabled",
                            FeatureStatus::Disabled => "disabled",
                        },
                        f.variables
                            .as_ref()
                            .map(Value::to_string)
                            .unwrap_or_default()
                    );
                }
            }
            Err(errs) => {
                let _ = writeln!(out, "  rule errors: {errs:?}");
            }
        }
    }
    Ok(out)
}

/// `convert validate`: parse and lint a config. Returns the report and whether it has errors.
pub fn validate(args: &[String]) -> Result<(String, bool), String> {
    let o = parse(args)?;
    let path = o.config.as_deref().ok_or("--config FILE is required")?;
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    let text = config_of_request(text);
    let cfg = match ProjectConfig::from_json(&text) {
        Ok(c) => c,
        Err(e) => return Ok((format!("error: {e}\n"), true)),
    };
    let mut warnings: Vec<String> = Vec::new();
    let mut seen_keys = BTreeMap::new();
    for e in &cfg.experiences {
        if let Some(prev) = seen_keys.insert(e.key.to_string(), e.id.to_string()) {
            warnings.push(format!(
                "experience key {:?} is used by {prev} and {}: lookups by key find the first",
                e.key, e.id
            ));
        }
        if !e.has_id {
            warnings.push(format!(
                "experience {:?} has no id: it can never be decided",
                e.key
            ));
        }
        if e.variations.is_empty() {
            warnings.push(format!("experience {:?} has no variations", e.key));
        }
        let raw_audiences = e
            .raw
            .get("audiences")
            .and_then(Value::as_array)
            .map_or(0, Vec::len);
        if raw_audiences > e.audiences.len() + e.segments.len() {
            warnings.push(format!(
                "experience {:?} lists {raw_audiences} audiences/segments but only {} resolve",
                e.key,
                e.audiences.len() + e.segments.len()
            ));
        }
        if !e.audiences.is_empty()
            && e.raw
                .get("settings")
                .and_then(|s| s.get("matching_options"))
                .is_none()
        {
            warnings.push(format!(
                "experience {:?} has audiences but no settings.matching_options: treated as \"any\" (the JavaScript SDK throws here)",
                e.key
            ));
        }
        if let LocationTarget::Locations(idx) = &e.location {
            if idx.is_empty() {
                warnings.push(format!(
                    "experience {:?}: none of its locations is in the config, so it never matches",
                    e.key
                ));
            }
        }
        for v in &e.variations {
            if !v.id_is_string {
                warnings.push(format!(
                    "experience {:?} variation {}: the id is not a string, so it can be bucketed but never returned (as in the reference SDK)",
                    e.key, v.id
                ));
            }
            for f in &v.features {
                if cfg.feature_by_id(&f.feature_id).is_none() {
                    warnings.push(format!(
                        "experience {:?} variation {} changes undeclared feature {}",
                        e.key, v.id, f.feature_id
                    ));
                }
            }
        }
        let total: f64 = e
            .raw
            .get("variations")
            .and_then(Value::as_array)
            .map(|vs| {
                vs.iter()
                    .map(|v| {
                        v.get("traffic_allocation")
                            .and_then(Value::as_f64)
                            .unwrap_or(100.0)
                    })
                    .sum()
            })
            .unwrap_or(0.0);
        if !e.anchored && (total - 100.0).abs() > 1e-9 && !e.variations.is_empty() {
            warnings.push(format!(
                "experience {:?}: traffic allocations add up to {total}%, not 100%",
                e.key
            ));
        }
    }
    for (place, pattern) in cfg.unsupported_regex_patterns() {
        warnings.push(format!(
            "{place}: regexMatches pattern {pattern:?} needs backtracking (backreferences or look-around), so this rule never matches"
        ));
    }
    for g in &cfg.goals {
        if !convert_core::js::truthy(&g.id) {
            warnings.push(format!("goal {:?} has no id: it can never convert", g.key));
        }
    }
    let mut out = format!(
        "{path}: account {}, project {}: {} experiences, {} features, {} goals, {} audiences, {} segments, {} locations\n",
        cfg.account_id,
        cfg.project_id,
        cfg.experiences.len(),
        cfg.features.len(),
        cfg.goals.len(),
        cfg.audiences.len(),
        cfg.segments.len(),
        cfg.locations.len()
    );
    for w in &warnings {
        let _ = writeln!(out, "warning: {w}");
    }
    let _ = writeln!(
        out,
        "{}",
        if warnings.is_empty() {
            "ok: no problems found".to_string()
        } else {
            format!("ok with {} warning(s)", warnings.len())
        }
    );
    Ok((out, false))
}

/// `convert simulate`: N synthetic visitors through one experience; observed vs configured split.
pub fn simulate(args: &[String]) -> Result<String, String> {
    let o = parse(args)?;
    let (_, cfg) = load_config(&o)?;
    let key = o.experience.clone().ok_or("--experience KEY is required")?;
    let exp = cfg
        .experience_by_key(&key)
        .ok_or_else(|| format!("no experience with key {key:?}"))?;
    let n = o.visitors.unwrap_or(10_000);
    let mut settings = EngineSettings::default();
    if let Some(env) = &o.environment {
        settings.environment = env.clone();
    }
    let engine = Engine::new(&cfg, &settings);
    let opts = RunOptions {
        location_properties: Some(&o.location),
        ignore_location_properties: o.ignore_location,
        enable_tracking: false,
        ..RunOptions::default()
    };
    let props = VisitorProps::new(Some(&o.attrs), None, None);
    let mut counts = vec![0usize; exp.variations.len()];
    let (mut none, mut undecided) = (0usize, 0usize);
    let mut fx = Effects::default();
    for i in 0..n {
        let mut data = StoreData::default();
        let id = format!("sim-visitor-{i}");
        let mut vs = VisitorState::new(&id, &mut data);
        fx.clear();
        match engine.run_experience(&mut vs, &key, &props, &opts, &mut fx) {
            Decision::Variation(v) => counts[v.variation_index] += 1,
            Decision::NotDecided => undecided += 1,
            Decision::NotMatched | Decision::RuleError(_) => none += 1,
        }
    }
    let mut out = format!(
        "experience {key:?} ({} layout), {n} visitors\n\n{:<24} {:>12} {:>10} {:>10} {:>8}\n",
        if exp.anchored { "anchored" } else { "packed" },
        "variation",
        "configured %",
        "visitors",
        "observed %",
        "diff"
    );
    let pct = |c: usize| {
        if n == 0 {
            0.0
        } else {
            c as f64 * 100.0 / n as f64
        }
    };
    for (i, v) in exp.variations.iter().enumerate() {
        let configured = v
            .raw
            .get("traffic_allocation")
            .map_or(100.0, |t| convert_core::js::to_number(Some(t)));
        let running = v
            .raw
            .get("status")
            .is_none_or(|s| s.as_str().is_none_or(|s| s.is_empty() || s == "running"));
        let configured = if running { configured } else { 0.0 };
        let label = format!("{} ({})", v.key.as_deref().unwrap_or("?"), v.id);
        let _ = writeln!(
            out,
            "{label:<24} {configured:>12.2} {:>10} {:>10.2} {:>+8.2}",
            counts[i],
            pct(counts[i]),
            pct(counts[i]) - configured
        );
    }
    let _ = writeln!(
        out,
        "{:<24} {:>12} {:>10} {:>10.2}",
        "(no variation)",
        "",
        undecided,
        pct(undecided)
    );
    let _ = writeln!(
        out,
        "{:<24} {:>12} {:>10} {:>10.2}",
        "(not matched)",
        "",
        none,
        pct(none)
    );
    Ok(out)
}

/// `convert fetch`: downloads a project config by SDK key, checks it, and writes it out.
pub fn fetch(args: &[String]) -> Result<String, String> {
    use convert_ports::{HttpRequest, Method, Transport};
    let o = parse(args)?;
    let key = o.sdk_key.clone().ok_or("--sdk-key KEY is required")?;
    let endpoint = o
        .endpoint
        .clone()
        .unwrap_or_else(|| convert_core::tracking::DEFAULT_CONFIG_ENDPOINT.to_string());
    let env = o.environment.clone().unwrap_or_else(|| "staging".into());
    let mut headers = vec![(
        "User-Agent".to_string(),
        convert_sdk::USER_AGENT.to_string(),
    )];
    if let Some(s) = &o.secret {
        headers.push(("Authorization".into(), format!("Bearer {s}")));
    }
    let request = HttpRequest {
        method: Method::Get,
        url: convert_core::tracking::config_url(&endpoint, &key, Some(&env), false, None),
        headers,
        body: None,
    };
    let response = convert_transport_ureq::UreqTransport::new()
        .send(&request)
        .map_err(|e| format!("fetching the config failed: {e}"))?;
    if response.class() != convert_sdk::StatusClass::Success {
        return Err(format!(
            "the config endpoint answered HTTP {}",
            response.status
        ));
    }
    let text = String::from_utf8(response.body).map_err(|_| "the config is not UTF-8")?;
    let cfg = ProjectConfig::from_json(&text)
        .map_err(|e| format!("the fetched config is invalid: {e}"))?;
    let summary = format!(
        "account {}, project {}: {} experiences, {} features, {} goals",
        cfg.account_id,
        cfg.project_id,
        cfg.experiences.len(),
        cfg.features.len(),
        cfg.goals.len()
    );
    match &o.output {
        Some(path) => {
            std::fs::write(path, &text).map_err(|e| format!("cannot write {path}: {e}"))?;
            Ok(format!("wrote {path}: {summary}\n"))
        }
        None => Ok(text),
    }
}
