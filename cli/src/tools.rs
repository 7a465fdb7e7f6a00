//! User commands: `decide`, `validate`, `simulate`, `fetch`.

use crate::args::{DecideArgs, FetchArgs, Format, SimulateArgs, Targeting, ValidateArgs};
use convert_core::config::{Experience, ProjectConfig};
use convert_core::engine::{
    Effects, Engine, EngineSettings, Layout, RunOptions, Step, VisitorProps, VisitorState,
};
use convert_core::rules::RuleOutcome;
use convert_core::{Decision, StoreData};
use convert_sdk::{BucketingAttributes, Core, FeatureStatus};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

/// Reads and parses `--config FILE`: the config text (a batch request's `config` member when the
/// file is a request) and the parsed config.
fn load_config(path: &Path) -> Result<(String, ProjectConfig), String> {
    let shown = path.display();
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {shown}: {e}"))?;
    let text = config_of_request(text);
    let cfg = ProjectConfig::from_json(&text).map_err(|e| format!("{shown}: {e}"))?;
    Ok((text, cfg))
}

/// A batch or bench request file is accepted too: its `config` member is used.
fn config_of_request(text: String) -> String {
    match convert_core::js::json_parse(&text) {
        Ok(Value::Object(m))
            if !m.contains_key("account_id") && m.get("config").is_some_and(Value::is_object) =>
        {
            m.get("config").map_or(text.clone(), Value::to_string)
        }
        _ => text,
    }
}

/// Prints a note of command `cmd` on stderr, unless `quiet` (`-q/--quiet`).
fn note(quiet: bool, cmd: &str, text: &str) {
    if !quiet {
        eprintln!("convert {cmd}: note: {text}");
    }
}

/// A note for stderr when none of `experiences` runs in `env` (each has an `environment` that
/// differs), naming the environments they do run in.
pub fn environment_note<'a>(
    experiences: impl IntoIterator<Item = &'a Experience>,
    env: &str,
) -> Option<String> {
    let mut others: Vec<String> = Vec::new();
    for e in experiences {
        match &e.environment {
            None => return None,
            Some(v) if v.as_str() == Some(env) => return None,
            Some(v) => {
                let name = format!("{:?}", convert_core::js::to_js_string(v));
                if !others.contains(&name) {
                    others.push(name);
                }
            }
        }
    }
    let first = others.first()?.clone();
    Some(format!(
        "no experience runs in environment {env:?}: they run in {} (pass --environment {})",
        others.join(", "),
        first.trim_matches('"')
    ))
}

fn attrs_of(t: &Targeting) -> BucketingAttributes {
    let attrs = t.attrs_map();
    BucketingAttributes {
        visitor_properties: (!attrs.is_empty()).then_some(attrs),
        location_properties: Some(t.location_map()),
        ignore_location_properties: t.ignore_location,
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
                _ => "other",
            },
            variation
                .as_deref()
                .map_or("no variation covers it".to_string(), |v| format!(
                    "variation {v}"
                ))
        ),
        other => format!("{other:?}"),
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
        Decision::NotMatched(reason) => format!("not matched: {reason}"),
        Decision::NotDecided => "qualified, but no variation covers the bucket".into(),
        Decision::RuleError(e) => format!("rule error {}", e.code()),
        other => format!("{other:?}"),
    }
}

/// `convert decide`: one visitor's decisions, optionally explained. A note goes to stderr when
/// no experience runs in the chosen environment.
pub fn decide(a: &DecideArgs, quiet: bool) -> Result<String, String> {
    let (text, _) = load_config(&a.config.config)?;
    let visitor = &a.visitor;
    let mut b = Core::builder().config_json(text).tracking(false);
    if let Some(env) = &a.targeting.environment {
        b = b.environment(env);
    }
    let core = b.build().map_err(|e| e.to_string())?;
    let ctx = core.create_context(visitor, None);
    let attrs = attrs_of(&a.targeting);
    let cfg = core.config();
    let keys: Vec<String> = match &a.experience {
        Some(k) => vec![k.clone()],
        None => cfg.experiences.iter().map(|e| e.key.to_string()).collect(),
    };
    let considered = keys.iter().filter_map(|k| cfg.experience_by_key(k));
    if let Some(text) = environment_note(considered, core.environment()) {
        note(quiet, "decide", &text);
    }
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
        if a.explain {
            for s in &steps {
                let _ = writeln!(out, "  - {}", describe(s));
            }
        }
    }
    if a.experience.is_none() {
        let _ = writeln!(out, "\nfeatures (dry run: nothing stored or tracked):");
        // Features are resolved on a throw-away SDK so the visitor's store is not touched.
        let dry = Core::builder()
            .project_config((*cfg).clone())
            .environment(core.environment())
            .tracking(false)
            .build()
            .map_err(|e| e.to_string())?;
        match dry.create_context(visitor, None).run_features(&attrs) {
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

/// `convert validate`: the report (text or JSON) and whether validation failed.
pub fn validate(a: &ValidateArgs) -> Result<(String, bool), String> {
    let path = &a.config.config;
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let report = match String::from_utf8(bytes) {
        Ok(text) => crate::validate::validate(&path.display().to_string(), &text),
        // Read, but not JSON text: a validation failure (exit 1), like any other non-JSON file.
        Err(e) => crate::validate::not_utf8(&path.display().to_string(), e.utf8_error()),
    };
    let out = match a.format {
        Format::Text => report.to_text(),
        Format::Json => format!(
            "{}\n",
            serde_json::to_string_pretty(&report.to_json()).map_err(|e| e.to_string())?
        ),
    };
    Ok((out, report.failed(a.strict)))
}

/// Why a visitor did not get a variation, from the last step of the explained decision (the
/// engine stops at the first check that fails).
fn not_matched_reason(steps: &[Step]) -> String {
    match steps.last() {
        Some(Step::Environment {
            experience, wanted, ..
        }) => format!("environment: runs in {experience:?}, not {wanted:?}"),
        Some(Step::Location { .. } | Step::SiteArea(_)) => {
            "location: the location rules did not match".into()
        }
        Some(Step::Audience { .. } | Step::Audiences { .. }) => {
            "audience: the audience rules did not match".into()
        }
        Some(Step::Segments { .. }) => "segments: the visitor is in none".into(),
        Some(Step::Archived) => "archived".into(),
        Some(Step::NoVariations) => "no variations".into(),
        // Bucketed, then not returned: one reason per variation, not one per bucket value.
        Some(Step::Bucket { variation, .. }) => format!(
            "invalid config: the bucket chose variation {}, whose id is not a string, and the reference returns none (see `convert validate`)",
            variation.as_deref().unwrap_or("?")
        ),
        Some(other) => describe(other),
        None => "unknown".into(),
    }
}

/// A variation's configured share: `Ok(percent)` (0 when stopped), or `Err` with what is wrong.
fn configured_share(v: Option<&Map<String, Value>>) -> Result<f64, String> {
    let Some(v) = v else {
        return Err("the variation is not in the served config".into());
    };
    let running = v
        .get("status")
        .is_none_or(|s| s.as_str().is_none_or(|s| s.is_empty() || s == "running"));
    let Some(t) = v.get("traffic_allocation") else {
        return Ok(if running { 100.0 } else { 0.0 });
    };
    let n = convert_core::js::to_number(Some(t));
    if !n.is_finite() || !(0.0..=100.0).contains(&n) {
        return Err(format!(
            "traffic_allocation {t} is not a percentage from 0 to 100 (see `convert validate`)"
        ));
    }
    Ok(if running { n } else { 0.0 })
}

/// `convert simulate`: N synthetic visitors through one experience; observed vs configured split,
/// and why the others got no variation. A note goes to stderr when the experience does not run
/// in the chosen environment.
pub fn simulate(a: &SimulateArgs, quiet: bool) -> Result<String, String> {
    let (_, cfg) = load_config(&a.config.config)?;
    let key = &a.experience;
    let exp = cfg
        .experience_by_key(key)
        .ok_or_else(|| format!("no experience with key {key:?}"))?;
    let n = a.visitors;
    let mut settings = EngineSettings::default();
    if let Some(env) = a
        .targeting
        .environment
        .clone()
        .or_else(|| cfg.envelope_environment.clone())
    {
        settings.environment = env;
    }
    if let Some(text) = environment_note([exp], &settings.environment) {
        note(quiet, "simulate", &text);
    }
    let engine = Engine::new(&cfg, &settings);
    let location = a.targeting.location_map();
    let attrs = a.targeting.attrs_map();
    let opts = RunOptions {
        location_properties: Some(&location),
        ignore_location_properties: a.targeting.ignore_location,
        enable_tracking: false,
        ..RunOptions::default()
    };
    let props = VisitorProps::new(Some(&attrs), None, None);
    let mut counts = vec![0usize; exp.variations.len()];
    let (mut none, mut undecided) = (0usize, 0usize);
    let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
    let mut fx = Effects {
        trace: Some(Vec::new()),
        ..Effects::default()
    };
    for i in 0..n {
        let mut data = StoreData::default();
        let id = format!("sim-visitor-{i}");
        let mut vs = VisitorState::new(&id, &mut data);
        fx.clear();
        match engine.run_experience(&mut vs, key, &props, &opts, &mut fx) {
            Decision::Variation(v) => counts[v.variation_index] += 1,
            Decision::NotDecided => undecided += 1,
            Decision::NotMatched(_) => {
                none += 1;
                let steps = fx.trace.as_deref().unwrap_or_default();
                *reasons.entry(not_matched_reason(steps)).or_default() += 1;
            }
            Decision::RuleError(e) => {
                none += 1;
                *reasons
                    .entry(format!("rule error {} (an attribute is missing)", e.code()))
                    .or_default() += 1;
            }
            _ => none += 1,
        }
    }
    let mut out = format!(
        "experience {key:?} ({} layout), environment {:?}, {n} visitors\n\n{:<24} {:>12} {:>10} {:>10} {:>8}\n",
        if exp.anchored { "anchored" } else { "packed" },
        settings.environment,
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
    let mut notes = Vec::new();
    for (i, v) in exp.variations.iter().enumerate() {
        let label = format!("{} ({})", v.key.as_deref().unwrap_or("?"), v.id);
        match configured_share(cfg.variation_raw(exp.index, i)) {
            Ok(configured) => {
                let _ = writeln!(
                    out,
                    "{label:<24} {configured:>12.2} {:>10} {:>10.2} {:>+8.2}",
                    counts[i],
                    pct(counts[i]),
                    pct(counts[i]) - configured
                );
            }
            Err(why) => {
                let _ = writeln!(
                    out,
                    "{label:<24} {:>12} {:>10} {:>10.2} {:>8}",
                    "invalid",
                    counts[i],
                    pct(counts[i]),
                    "-"
                );
                notes.push(format!("variation {label}: {why}"));
            }
        }
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
    if undecided > 0 || !reasons.is_empty() {
        let _ = writeln!(out, "\nwhy no variation:");
    }
    if undecided > 0 {
        let _ = writeln!(
            out,
            "  no variation, traffic: the bucket value is outside every running variation's allocation: {undecided} ({:.2} %)",
            pct(undecided)
        );
    }
    for (reason, count) in &reasons {
        let _ = writeln!(
            out,
            "  not matched, {reason}: {count} ({:.2} %)",
            pct(*count)
        );
    }
    for note in notes {
        let _ = writeln!(out, "\nnote: {note}");
    }
    Ok(out)
}

/// `url` as it may be shown: the query's secrets (`redact_url`) and any password redacted.
fn shown_url(url: &str) -> String {
    let url = convert_ports::transport::redact_url(url);
    let Some((scheme, rest)) = url.split_once("://") else {
        return url;
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
            format!(
                "{scheme}://{user}:<redacted>@{host}{}",
                &rest[authority_end..]
            )
        }
        None => url,
    }
}

/// `convert fetch`: downloads a project config by SDK key, checks it, and writes it out. Every
/// error names the URL (secrets redacted).
pub fn fetch(a: &FetchArgs) -> Result<String, String> {
    use convert_ports::{HttpRequest, Method, Transport};
    let endpoint = a
        .endpoint
        .clone()
        .unwrap_or_else(|| convert_core::tracking::DEFAULT_CONFIG_ENDPOINT.to_string());
    let mut headers = vec![(
        "User-Agent".to_string(),
        convert_sdk::USER_AGENT.to_string(),
    )];
    if let Some(s) = &a.secret {
        headers.push(("Authorization".into(), format!("Bearer {s}")));
    }
    let url = convert_core::tracking::config_url(
        &endpoint,
        &a.sdk_key,
        Some(&a.environment),
        false,
        None,
    );
    let shown = shown_url(&url);
    let request = HttpRequest {
        method: Method::Get,
        url,
        headers,
        body: None,
    };
    let response = convert_transport_ureq::UreqTransport::new()
        .send(&request)
        .map_err(|e| format!("cannot fetch {shown}: {e}"))?;
    if response.class() != convert_sdk::StatusClass::Success {
        return Err(format!("{shown} answered HTTP {}", response.status));
    }
    let text = String::from_utf8(response.body)
        .map_err(|_| format!("the config from {shown} is not UTF-8"))?;
    let cfg = ProjectConfig::from_json(&text)
        .map_err(|e| format!("the config from {shown} is invalid: {e}"))?;
    let summary = format!(
        "account {}, project {}: {} experiences, {} features, {} goals",
        cfg.account_id,
        cfg.project_id,
        cfg.experiences.len(),
        cfg.features.len(),
        cfg.goals.len()
    );
    match &a.output {
        Some(path) => {
            let path = path.display();
            std::fs::write(path.to_string(), &text)
                .map_err(|e| format!("cannot write {path}: {e}"))?;
            Ok(format!("wrote {path}: {summary}\n"))
        }
        None => Ok(text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shown_urls_hide_passwords() {
        assert_eq!(
            shown_url("http://u:pw@h:1/p?environment=x"),
            "http://u:<redacted>@h:1/p?environment=x"
        );
        assert_eq!(shown_url("https://h/p/a@b"), "https://h/p/a@b");
    }
}
