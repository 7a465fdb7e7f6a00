//! Feature resolution through experiences and variable casting (SPEC §7).
//!
//! Two deliberate fixes of the reference: only experiences that carry a requested feature are
//! decided (the reference decides, stores and tracks every experience), and variables are cast on
//! a copy (the reference writes the cast values back into the shared config).

use crate::config::Str;
use crate::engine::{Decision, Effects, Engine, RunOptions, VisitorProps, VisitorState};
use crate::js;
use crate::rules::RuleError;
use serde_json::{Map, Value};

/// Whether a feature is on for the visitor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FeatureStatus {
    /// The visitor is in a variation that carries the feature.
    Enabled,
    /// The feature is declared but not delivered to this visitor (or not declared at all).
    Disabled,
}

/// A feature as resolved for a visitor (the reference's `BucketedFeature`).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct BucketedFeature {
    /// `String(feature id)`; `None` for an undeclared key.
    pub feature_id: Option<Str>,
    /// Feature key (`None` when the enabling change names an undeclared feature id).
    pub feature_key: Option<Str>,
    /// Feature name.
    pub feature_name: Option<Str>,
    /// Enabled or disabled.
    pub status: FeatureStatus,
    /// The experience that delivers it (enabled only).
    pub experience_id: Option<Str>,
    /// The experience key (enabled only).
    pub experience_key: Option<Str>,
    /// The experience name (enabled only).
    pub experience_name: Option<Str>,
    /// The variation that delivers it (enabled only).
    pub variation_id: Option<Str>,
    /// The variation key (enabled only).
    pub variation_key: Option<Str>,
    /// Variable values, cast to their declared types when casting is on (enabled only; `None`
    /// when the change carries no `variables_data`).
    pub variables: Option<Value>,
}

/// Borrowing accessors (the fields are [`Str`]).
impl BucketedFeature {
    /// Whether this entry turns the feature on.
    pub fn is_enabled(&self) -> bool {
        self.status == FeatureStatus::Enabled
    }

    /// The variables of an enabled entry as a map (`None` when disabled or when the change
    /// carries no `variables_data`). Read a typed value with `serde_json::from_value`.
    pub fn variables(&self) -> Option<&Map<String, Value>> {
        if !self.is_enabled() {
            return None;
        }
        self.variables.as_ref().and_then(Value::as_object)
    }

    /// Feature id (`None` for an undeclared key).
    pub fn feature_id(&self) -> Option<&str> {
        self.feature_id.as_deref()
    }

    /// Feature key.
    pub fn feature_key(&self) -> Option<&str> {
        self.feature_key.as_deref()
    }

    /// Feature name.
    pub fn feature_name(&self) -> Option<&str> {
        self.feature_name.as_deref()
    }

    /// The experience that delivers it (enabled only).
    pub fn experience_id(&self) -> Option<&str> {
        self.experience_id.as_deref()
    }

    /// The experience key (enabled only).
    pub fn experience_key(&self) -> Option<&str> {
        self.experience_key.as_deref()
    }

    /// The experience name (enabled only).
    pub fn experience_name(&self) -> Option<&str> {
        self.experience_name.as_deref()
    }

    /// The variation that delivers it (enabled only).
    pub fn variation_id(&self) -> Option<&str> {
        self.variation_id.as_deref()
    }

    /// The variation key (enabled only).
    pub fn variation_key(&self) -> Option<&str> {
        self.variation_key.as_deref()
    }
}

/// Which features and experiences to consider.
#[derive(Debug, Clone, Copy, Default)]
pub struct FeatureFilter<'a> {
    /// Feature keys; `None` means all (and adds the disabled roster).
    pub features: Option<&'a [&'a str]>,
    /// Experience keys; `None` or empty means all.
    pub experiences: Option<&'a [&'a str]>,
}

/// Casts a raw variable value to a declared type exactly as the reference's `castType` does.
pub fn cast_variable(value: &Value, ty: &str) -> Value {
    match ty {
        "boolean" => match value {
            Value::String(s) if s == "true" => Value::Bool(true),
            Value::String(s) if s == "false" => Value::Bool(false),
            other => Value::Bool(js::truthy(other)),
        },
        "integer" => match value {
            Value::Bool(b) => Value::from(u8::from(*b)),
            other => js::number_value(js::parse_int(&js::to_js_string(other))),
        },
        "float" => match value {
            Value::Bool(b) => Value::from(u8::from(*b)),
            other => js::number_value(js::parse_float(&js::to_js_string(other))),
        },
        "json" => match value {
            Value::Object(_) | Value::Array(_) | Value::Null => value.clone(),
            other => {
                let text = js::to_js_string(other);
                serde_json::from_str::<Value>(&text)
                    .unwrap_or_else(|_| Value::String(text.into_owned()))
            }
        },
        "string" => Value::String(js::to_js_string(value).into_owned()),
        _ => value.clone(),
    }
}

impl Engine<'_> {
    /// Resolves features for the visitor (`runFeatures` with an optional filter). Returns the rule
    /// errors alone when any decision produced one.
    pub fn run_features(
        &self,
        visitor: &mut VisitorState<'_>,
        props: &VisitorProps<'_>,
        opts: &RunOptions<'_>,
        filter: &FeatureFilter<'_>,
        fx: &mut Effects,
    ) -> Result<Vec<BucketedFeature>, Vec<RuleError>> {
        let config = self.config;
        let wanted_ids: Option<Vec<&str>> = filter.features.map(|keys| {
            config
                .features
                .iter()
                .filter(|f| f.key.as_deref().is_some_and(|k| keys.contains(&k)))
                .map(|f| &*f.id)
                .collect()
        });
        let mut decided = Vec::new();
        let mut errors = Vec::new();
        for exp in &config.experiences {
            if let Some(keys) = filter.experiences.filter(|k| !k.is_empty()) {
                if !keys.contains(&&*exp.key) {
                    continue;
                }
            }
            let carries = match &wanted_ids {
                Some(ids) => ids.iter().any(|id| exp.carries_feature(id)),
                None => exp.carries_features,
            };
            if !carries {
                continue;
            }
            match self.decide(visitor, exp, props, opts, fx) {
                Decision::Variation(v) => decided.push(v),
                Decision::RuleError(e) => errors.push(e),
                Decision::NotMatched(_) | Decision::NotDecided | Decision::NotReady => {}
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let mut out = Vec::new();
        for bv in &decided {
            let exp = &config.experiences[bv.experience_index];
            let variation = &exp.variations[bv.variation_index];
            for change in &variation.features {
                let declared = config.feature_by_id(&change.feature_id);
                if let Some(keys) = filter.features {
                    let key = declared.and_then(|f| f.key.as_deref());
                    if !key.is_some_and(|k| keys.contains(&k)) {
                        continue;
                    }
                }
                let variables = change.variables.as_ref().map(|vars| match vars {
                    Value::Object(m) if opts.type_casting && !m.is_empty() => {
                        let mut cast = Map::new();
                        for (name, raw) in m {
                            let ty = declared.and_then(|f| {
                                f.variables.iter().find(|(k, _)| k == name).map(|(_, t)| t)
                            });
                            let v = match ty {
                                Some(t) => cast_variable(raw, t),
                                None => raw.clone(),
                            };
                            cast.insert(name.clone(), v);
                        }
                        Value::Object(cast)
                    }
                    other => other.clone(),
                });
                out.push(BucketedFeature {
                    feature_id: Some(change.feature_id.clone()),
                    feature_key: declared.and_then(|f| f.key.clone()),
                    feature_name: declared.and_then(|f| f.name.clone()),
                    status: FeatureStatus::Enabled,
                    experience_id: Some(bv.experience_id.clone()),
                    experience_key: Some(bv.experience_key.clone()),
                    experience_name: bv.experience_name.clone(),
                    variation_id: Some(bv.variation_id.clone()),
                    variation_key: bv.variation_key.clone(),
                    variables,
                });
            }
        }
        if filter.features.is_none() {
            for &fi in &config.feature_roster {
                let f = &config.features[fi];
                if out.iter().any(|e| e.feature_id.as_deref() == Some(&*f.id)) {
                    continue;
                }
                out.push(disabled(f));
            }
        }
        Ok(out)
    }

    /// Resolves one feature by key (`runFeature`): the enabled entries (one per delivering
    /// experience), or a single disabled entry.
    pub fn run_feature(
        &self,
        visitor: &mut VisitorState<'_>,
        key: &str,
        props: &VisitorProps<'_>,
        opts: &RunOptions<'_>,
        experiences: Option<&[&str]>,
        fx: &mut Effects,
    ) -> Result<Vec<BucketedFeature>, Vec<RuleError>> {
        let Some(feature) = self.config.feature_by_key(key) else {
            return Ok(vec![BucketedFeature {
                feature_key: Some(key.into()),
                ..disabled_blank()
            }]);
        };
        let keys = [key];
        let filter = FeatureFilter {
            features: Some(&keys),
            experiences,
        };
        let list = self.run_features(visitor, props, opts, &filter, fx)?;
        if list.is_empty() {
            Ok(vec![disabled(feature)])
        } else {
            Ok(list)
        }
    }
}

fn disabled_blank() -> BucketedFeature {
    BucketedFeature {
        feature_id: None,
        feature_key: None,
        feature_name: None,
        status: FeatureStatus::Disabled,
        experience_id: None,
        experience_key: None,
        experience_name: None,
        variation_id: None,
        variation_key: None,
        variables: None,
    }
}

fn disabled(f: &crate::config::Feature) -> BucketedFeature {
    BucketedFeature {
        feature_id: Some(f.id.clone()),
        feature_key: f.key.clone(),
        feature_name: f.name.clone(),
        ..disabled_blank()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn casting_table() {
        let cases = [
            (json!("true"), "boolean", json!(true)),
            (json!("false"), "boolean", json!(false)),
            (json!("False"), "boolean", json!(true)),
            (json!("0"), "boolean", json!(true)),
            (json!(""), "boolean", json!(false)),
            (json!(0), "boolean", json!(false)),
            (json!(null), "boolean", json!(false)),
            (json!(true), "integer", json!(1)),
            (json!("42.9"), "integer", json!(42)),
            (json!("0x10"), "integer", json!(16)),
            (json!("1e3"), "integer", json!(1)),
            (json!(" 12 "), "integer", json!(12)),
            (json!("abc"), "integer", json!(null)),
            (json!(false), "float", json!(0)),
            (json!("3.9abc"), "float", json!(3.9)),
            (json!("abc"), "float", json!(null)),
            (json!({"a": 1}), "json", json!({"a": 1})),
            (json!("{\"a\":1}"), "json", json!({"a": 1})),
            (json!("{bad"), "json", json!("{bad")),
            (json!(12), "json", json!(12)),
            (json!(null), "json", json!(null)),
            (json!({"a": 1}), "string", json!("[object Object]")),
            (json!(5), "string", json!("5")),
            (json!("x"), "unknown", json!("x")),
        ];
        for (input, ty, want) in cases {
            let got = cast_variable(&input, ty);
            let same = match (got.as_f64(), want.as_f64()) {
                (Some(a), Some(b)) => a == b,
                _ => got == want,
            };
            assert!(same, "cast({input}, {ty}) = {got}, want {want}");
        }
    }
}
