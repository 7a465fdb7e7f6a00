//! `convert batch`: the batch evaluation protocol (shared/BATCH-PROTOCOL.md).

use crate::request::{
    self, BatchRequest, Case, DataStore, RequestError, SdkOptions, State, unexpected,
};
use convert_core::bucketing::select_bucket;
use convert_core::hash::{bucket_value, murmur3_32};
use convert_core::js;
use convert_core::rules::{RuleOutcome, RuleSet, compare};
use convert_core::{Decision, ProjectConfig};
use convert_sdk::{
    BucketedFeature, BucketedVariation, BucketingAttributes, Context, ConversionAttributes, Core,
    EntityType, FeatureStatus, HttpRequest, HttpResponse, StoreData, Transport, TransportError,
};
use serde::de::Error as _;
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

/// A transport that records every request and answers 200: nothing leaves the process.
#[derive(Debug, Default, Clone)]
pub struct Recorder {
    requests: Arc<Mutex<Vec<HttpRequest>>>,
}

impl Recorder {
    fn drain(&self) -> Vec<HttpRequest> {
        std::mem::take(&mut *self.requests.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

impl Transport for Recorder {
    fn send(&self, request: &HttpRequest) -> Result<HttpResponse, TransportError> {
        self.requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(request.clone());
        Ok(HttpResponse::new(200, Vec::new()))
    }
}

/// One SDK instance of a batch run with its contexts.
pub struct Instance {
    /// The SDK.
    pub core: Core,
    recorder: Recorder,
    contexts: HashMap<String, Context>,
}

/// Builds an SDK instance for a config and the protocol's `sdk` options.
pub fn build_instance(config: &Value, sdk: &SdkOptions) -> Result<Instance, String> {
    build_instance_with(config, sdk, None)
}

/// [`build_instance`] delivering tracking to `transport` instead of the recording transport.
pub fn build_instance_with(
    config: &Value,
    sdk: &SdkOptions,
    transport: Option<Arc<dyn Transport>>,
) -> Result<Instance, String> {
    let recorder = Recorder::default();
    let parsed = ProjectConfig::from_value(config.clone()).map_err(|e| e.to_string())?;
    let mut b = Core::builder().project_config(parsed).tracking(true);
    b = match transport {
        Some(t) => b.shared_transport(t),
        None => b.transport(recorder.clone()),
    };
    if let Some(Some(env)) = &sdk.environment {
        b = b.environment(env.as_str());
    }
    if let Some(Some(bk)) = &sdk.bucketing {
        // The reference's `||` defaults: 0 means the default.
        if let Some(seed) = bk.hash_seed.flatten().filter(|s| *s != 0.0) {
            b = b.hash_seed(js_to_uint32(seed));
        }
        if let Some(max) = bk.max_traffic.flatten() {
            b = b.max_traffic(u32::try_from(max).unwrap_or(10_000));
        }
        if let Some(x) = bk.exclude_experience_id_hash.flatten() {
            b = b.exclude_experience_id_hash(x);
        }
    }
    let batch = sdk
        .events
        .as_ref()
        .and_then(Option::as_ref)
        .and_then(|e| e.batch_size.flatten())
        .filter(|n| *n > 0)
        .unwrap_or(10);
    b = b.events(
        usize::try_from(batch).unwrap_or(10),
        std::time::Duration::from_secs(1),
        10_000,
    );
    match sdk.data_store() {
        DataStore::Memory => {}
        DataStore::Redis(url) => {
            let store = convert_sdk::stores::RedisStore::open(url).map_err(|e| e.to_string())?;
            b = b.data_store(store);
        }
        DataStore::Sqlite(path) => {
            if path.is_empty() {
                return Err(
                    "sdk.dataStore: sqlite:// needs a file path (sqlite:///path/to/file.db)".into(),
                );
            }
            let store = convert_sdk::stores::SqliteStore::open(path).map_err(|e| e.to_string())?;
            b = b.data_store(store);
        }
        DataStore::Unsupported(other) => {
            return Err(format!(
                "sdk.dataStore must be \"memory\", a redis:// or redis+cluster:// URL or a sqlite:// path, not {other:?}"
            ));
        }
    }
    let core = b.build().map_err(|e| e.to_string())?;
    Ok(Instance {
        core,
        recorder,
        contexts: HashMap::new(),
    })
}

/// ECMAScript ToUint32.
fn js_to_uint32(x: f64) -> u32 {
    if !x.is_finite() {
        return 0;
    }
    let t = x.trunc().rem_euclid(4_294_967_296.0);
    // t is in [0, 2^32): the cast is exact.
    t as u32
}

/// The operations that run on a visitor's context (the others are engine operations).
const VISITOR_OPS: &[&str] = &[
    "runExperience",
    "runExperiences",
    "runFeature",
    "runFeatures",
    "trackConversion",
    "runCustomSegments",
    "setDefaultSegments",
    "updateVisitorProperties",
    "getVisitorData",
    "getConfigEntity",
    "getConfigEntityById",
    "seedBucketing",
];

/// A visitor operation's `visitorId` is a string or a number; absent or `null`, the case's record
/// says it is missing (a case that cannot run), any other value is a request error.
fn check_visitor_ids(req: &BatchRequest) -> Result<(), RequestError> {
    for (i, c) in req.cases.iter().enumerate() {
        let visitor_op =
            c.op.as_ref()
                .and_then(Value::as_str)
                .is_some_and(|op| VISITOR_OPS.contains(&op));
        if let (true, Some(v)) = (visitor_op, &c.visitor_id) {
            if !matches!(v, Value::Null | Value::String(_) | Value::Number(_)) {
                let e = serde_json::Error::invalid_type(unexpected(v), &"a string or a number");
                return Err(RequestError(format!("cases[{i}].visitorId: {e}")));
            }
        }
    }
    Ok(())
}

/// Runs a whole batch request; returns the response array.
///
/// The whole request is read and checked before the first case runs: a request error leaves no
/// trace in a persistent store.
pub fn run(request: &Value) -> Result<Value, RequestError> {
    let req: BatchRequest = request::parse(request)?;
    check_visitor_ids(&req)?;
    let shared = req.state == Some(State::Shared);
    let base_sdk = req.sdk.as_deref().cloned().unwrap_or_default();
    let mut instances: HashMap<String, Result<Instance, String>> = HashMap::new();
    let mut out = Vec::with_capacity(req.cases.len());
    for (i, c) in req.cases.iter().enumerate() {
        let op = c.op.as_ref().and_then(Value::as_str).unwrap_or("");
        let mut record = Map::new();
        record.insert("i".into(), json!(i));
        record.insert("id".into(), c.id.clone().unwrap_or(Value::Null));
        record.insert("op".into(), c.op.clone().unwrap_or(Value::Null));
        record.insert(
            "visitorId".into(),
            c.visitor_id.clone().unwrap_or(Value::Null),
        );
        record.insert("key".into(), c.key.clone().unwrap_or(Value::Null));

        let (result, error, tracking) = if let Some(r) = engine_op(op, c) {
            (r, Value::Null, Vec::new())
        } else {
            let inst_key = match &c.session {
                Some(s) => format!("session:{s}"),
                None if shared => "shared".to_string(),
                None => format!("case:{i}"),
            };
            let inst = instances.entry(inst_key).or_insert_with(|| {
                let sdk = match c.sdk.as_deref() {
                    Some(over) => base_sdk.merged_with(over),
                    None => base_sdk.clone(),
                };
                match c.config.as_ref().or(req.config.as_ref()) {
                    Some(cfg) => build_instance(cfg, &sdk),
                    None => Err("no config given".into()),
                }
            });
            match inst {
                Ok(inst) => {
                    let (result, error) = visitor_op(inst, op, c);
                    let tracking = if req.capture_tracking {
                        if let Err(e) = inst.core.flush() {
                            log::warn!("flush failed: {e}");
                        }
                        inst.recorder.drain().iter().map(request_json).collect()
                    } else {
                        Vec::new()
                    };
                    (result, error, tracking)
                }
                Err(msg) => (
                    json!({"type": "error", "message": msg.clone()}),
                    Value::String(msg.clone()),
                    Vec::new(),
                ),
            }
        };
        if !shared && c.session.is_none() {
            instances.remove(&format!("case:{i}"));
        }
        record.insert("result".into(), result);
        record.insert("error".into(), error);
        record.insert("tracking".into(), Value::Array(tracking));
        out.push(Value::Object(record));
    }
    Ok(Value::Array(out))
}

fn request_json(r: &HttpRequest) -> Value {
    let headers: Map<String, Value> = r
        .headers
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    let body = r
        .body
        .as_deref()
        .map(|b| serde_json::from_str(b).unwrap_or_else(|_| Value::String(b.to_string())))
        .unwrap_or(Value::Null);
    json!({"url": r.url, "method": r.method.as_str(), "headers": headers, "body": body})
}

fn error_result(msg: &str) -> (Value, Value) {
    (
        json!({"type": "error", "message": msg}),
        Value::String(msg.to_string()),
    )
}

/// The op as JavaScript's `String(value)` names it in the reference's message (`undefined`
/// when absent).
fn op_name(c: &Case) -> std::borrow::Cow<'_, str> {
    match &c.op {
        None => "undefined".into(),
        Some(v) => js::to_js_string(v),
    }
}

fn engine_op(op: &str, c: &Case) -> Option<Value> {
    let a = &c.engine;
    let seed = || {
        a.seed
            .as_ref()
            .map_or(9999, |s| js_to_uint32(js::to_number(Some(s))))
    };
    Some(match op {
        "hash" => {
            let input = js::opt_to_js_string(a.input.as_ref());
            json!({"type": "hash", "value": murmur3_32(input.as_bytes(), seed())})
        }
        "bucketValue" => {
            let v = js::opt_to_js_string(c.visitor_id.as_ref());
            let e = a
                .experience_id
                .as_ref()
                .map(|e| js::to_js_string(e).into_owned())
                .unwrap_or_default();
            let max = a.max_traffic.as_f64().unwrap_or(10000.0);
            json!({"type": "bucketValue", "value": bucket_value(&e, &v, seed(), max)})
        }
        "selectBucket" => {
            let buckets: Vec<(String, Value)> = a
                .buckets
                .as_object()
                .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                .unwrap_or_default();
            let value = a.value.as_ref().and_then(Value::as_f64).unwrap_or(f64::NAN);
            json!({"type": "selectBucket", "value": select_bucket(&buckets, value)})
        }
        "ruleMatch" => {
            let rules = RuleSet::compile(&a.rule_set);
            let data = a.data.as_object().cloned().unwrap_or_default();
            let value = match rules.evaluate(&data) {
                RuleOutcome::Matched => json!(true),
                RuleOutcome::NotMatched => json!(false),
                RuleOutcome::Error(e) => json!(e.code()),
            };
            json!({"type": "ruleMatch", "value": value})
        }
        "compare" => {
            let method = a.method.as_str().unwrap_or("");
            json!({"type": "compare", "value": compare(method, a.value.as_ref(), a.test_against.as_ref(), a.negation)})
        }
        _ => return None,
    })
}

fn bucketing_attrs(c: &Case) -> BucketingAttributes {
    BucketingAttributes {
        visitor_properties: c.attributes.clone(),
        location_properties: c.location_properties.clone(),
        ignore_location_properties: c.ignore_location_properties == Value::Bool(true),
        environment: c.environment.clone().filter(|e| !e.is_empty()),
        force_variation_id: Some(&c.force_variation_id)
            .filter(|v| js::truthy(v))
            .map(|v| js::to_js_string(v).into_owned()),
        enable_tracking: c.enable_tracking,
        update_visitor_properties: c.update_visitor_properties,
        type_casting: c.type_casting,
        experience_keys: c
            .experience_keys
            .as_ref()
            .map(|a| a.iter().map(|k| js::to_js_string(k).into_owned()).collect()),
    }
}

/// The protocol's `variation` record. Its members are read from the reference's merged object
/// ([`BucketedVariation::to_js_value`]): ids and keys as served (a JSON number stays a number) and
/// a variation member of the same name winning over the experience's, as the reference prints them.
pub fn variation_json(cfg: &ProjectConfig, v: &BucketedVariation) -> Value {
    let js = v.to_js_value(cfg);
    let member = |k: &str| js.get(k).cloned().unwrap_or(Value::Null);
    json!({
        "type": "variation",
        "decision": member("id"),
        "experienceId": member("experienceId"),
        "experienceKey": member("experienceKey"),
        "variationId": member("id"),
        "variationKey": member("key"),
        "bucketingAllocation": member("bucketingAllocation"),
    })
}

/// The protocol's record for a decision.
pub fn decision_json(cfg: &ProjectConfig, d: &Decision) -> Value {
    match d {
        Decision::Variation(v) => variation_json(cfg, v),
        Decision::NotMatched(_) => json!({"type": "none", "decision": null}),
        Decision::NotDecided => json!({
            "type": "bucketing_error",
            "code": convert_core::engine::VARIATION_NOT_DECIDED,
            "decision": null
        }),
        Decision::RuleError(e) => json!({"type": "rule_error", "code": e.code()}),
        // A decision kind newer than the protocol: no variation.
        _ => json!({"type": "none", "decision": null}),
    }
}

/// The protocol's `feature` record. The experience's id and key come from the delivering
/// variation's merged object, as in [`variation_json`].
pub fn feature_json(cfg: &ProjectConfig, f: &BucketedFeature) -> Value {
    let delivering = cfg
        .experiences
        .iter()
        .find(|e| {
            Some(&*e.key) == f.experience_key.as_deref()
                && Some(&*e.id) == f.experience_id.as_deref()
        })
        .and_then(|e| {
            let vi = e
                .variations
                .iter()
                .position(|v| Some(&*v.id) == f.variation_id.as_deref())?;
            Some(BucketedVariation::of(e, vi, None).to_js_value(cfg))
        });
    let experience = |k: &str, typed: Option<&str>| {
        delivering
            .as_ref()
            .and_then(|js| js.get(k).cloned())
            .unwrap_or_else(|| typed.map_or(Value::Null, Value::from))
    };
    json!({
        "type": "feature",
        "featureKey": f.feature_key.as_deref(),
        "featureId": f.feature_id.as_deref(),
        "status": match f.status { FeatureStatus::Enabled => "enabled", FeatureStatus::Disabled => "disabled" },
        "experienceKey": experience("experienceKey", f.experience_key.as_deref()),
        "experienceId": experience("experienceId", f.experience_id.as_deref()),
        "variables": f.variables.clone(),
    })
}

fn context<'a>(inst: &'a mut Instance, c: &Case) -> Result<&'a Context, String> {
    let vid = match &c.visitor_id {
        Some(Value::String(s)) => s.clone(),
        // JavaScript's `String(value)`: `100.0` is "100", `1e21` is "1e+21".
        Some(n @ Value::Number(_)) => js::to_js_string(n).into_owned(),
        _ => return Err("missing field `visitorId`".into()),
    };
    let core = inst.core.clone();
    Ok(inst
        .contexts
        .entry(vid.clone())
        .or_insert_with(|| core.create_context(vid, c.visitor_attributes.clone())))
}

fn visitor_op(inst: &mut Instance, op: &str, c: &Case) -> (Value, Value) {
    let key = c.key.as_ref().map(|k| js::to_js_string(k).into_owned());
    let needs_key = matches!(
        op,
        "runExperience" | "runFeature" | "trackConversion" | "getConfigEntity"
    );
    if needs_key && key.is_none() {
        return error_result("missing field `key`");
    }
    let key = key.unwrap_or_default();
    if !VISITOR_OPS.contains(&op) {
        return error_result(&format!("unknown op `{}`", op_name(c)));
    }
    let ctx = match context(inst, c) {
        Ok(ctx) => ctx.clone(),
        Err(e) => return error_result(&e),
    };
    let attrs = bucketing_attrs(c);
    let result = match op {
        "runExperience" => decision_json(&ctx.core().config(), &ctx.run_experience(&key, &attrs)),
        "runExperiences" => {
            let decided = ctx.run_experiences(&attrs);
            let cfg = ctx.core().config();
            let items: Vec<Value> = decided.iter().map(|v| variation_json(&cfg, v)).collect();
            json!({"type": "variations", "items": items})
        }
        "runFeature" => {
            let d = ctx.run_feature(&key, &attrs);
            let cfg = ctx.core().config();
            if let Some(e) = d.rule_errors.first() {
                json!({"type": "rule_error", "code": e.code()})
            } else if d.entries.len() == 1 {
                feature_json(&cfg, &d.entries[0])
            } else {
                json!({"type": "features", "items": d.entries.iter().map(|f| feature_json(&cfg, f)).collect::<Vec<_>>()})
            }
        }
        "runFeatures" => match ctx.run_features(&attrs) {
            Ok(list) => {
                let cfg = ctx.core().config();
                json!({"type": "features", "items": list.iter().map(|f| feature_json(&cfg, f)).collect::<Vec<_>>()})
            }
            Err(errs) => json!({"type": "rule_error", "code": errs.first().map(|e| e.code())}),
        },
        "trackConversion" => {
            let mut ca = ConversionAttributes {
                rule_data: c.rule_data.clone(),
                ..Default::default()
            };
            for item in c.conversion_data.iter().flatten() {
                ca.conversion_data.push((
                    js::opt_to_js_string(item.key.as_ref()).into_owned(),
                    item.value.clone(),
                ));
            }
            if let Some(rev) = &c.revenue {
                ca.conversion_data.insert(0, ("amount".into(), rev.clone()));
            }
            ca.force_multiple_transactions = c
                .conversion_setting
                .as_ref()
                .is_some_and(|s| s.force_multiple_transactions);
            match ctx.track_conversion(&key, &ca) {
                Ok(o) => json!({"type": "conversion", "returned": null, "fired": o.fired()}),
                Err(e) => json!({"type": "conversion", "returned": e.code(), "fired": false}),
            }
        }
        "runCustomSegments" => {
            let keys: Vec<&str> = c.segment_keys.iter().map(String::as_str).collect();
            let rule_data = c.rule_data.clone().or_else(|| c.attributes.clone());
            let returned = match ctx.run_custom_segments(&keys, rule_data) {
                Ok(Some(m)) => Value::Object(m),
                Ok(None) => Value::Null,
                Err(e) => json!(e.code()),
            };
            json!({"type": "customSegments", "returned": returned, "visitorData": store_json(&ctx.get_visitor_data())})
        }
        "setDefaultSegments" => {
            ctx.set_default_segments(c.segments.clone().unwrap_or_default());
            json!({"type": "ok"})
        }
        "updateVisitorProperties" => {
            let props = c
                .properties
                .clone()
                .or_else(|| c.visitor_properties.clone())
                .or_else(|| c.attributes.clone())
                .unwrap_or_default();
            ctx.update_visitor_properties(&props);
            json!({"type": "ok"})
        }
        "getVisitorData" => {
            json!({"type": "visitorData", "value": store_json(&ctx.get_visitor_data())})
        }
        "getConfigEntity" | "getConfigEntityById" => {
            let ty = c.entity_type.as_deref().and_then(EntityType::parse);
            let Some(ty) = ty else {
                return error_result("missing or unknown field `entityType`");
            };
            let value = if op == "getConfigEntity" {
                ctx.get_config_entity(&key, ty)
            } else {
                let id = js::opt_to_js_string(c.id.as_ref());
                ctx.get_config_entity_by_id(&id, ty)
            };
            let id = value
                .as_ref()
                .and_then(|v| v.get("id"))
                .cloned()
                .unwrap_or(Value::Null);
            json!({"type": "entity", "id": id, "value": value})
        }
        "seedBucketing" => {
            let ops: Vec<convert_core::StoreOp> = c
                .bucketing
                .as_ref()
                .map(|m| {
                    m.iter()
                        .map(|(e, v)| convert_core::StoreOp::Bucketing {
                            experience_id: e.as_str().into(),
                            variation_id: js::to_js_string(v).as_ref().into(),
                        })
                        .collect()
                })
                .unwrap_or_default();
            let store = inst.core.data_store();
            let Some(key) = ctx.store_key() else {
                return error_result("the SDK has no config");
            };
            if let Err(e) = store.update(key, &mut |d| d.apply_all(&ops)) {
                return error_result(&e.to_string());
            }
            json!({"type": "ok"})
        }
        _ => return error_result(&format!("unknown op `{}`", op_name(c))),
    };
    (result, Value::Null)
}

fn store_json(d: &StoreData) -> Value {
    serde_json::to_value(d).unwrap_or(Value::Null)
}
