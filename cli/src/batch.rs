//! `convert batch`: the batch evaluation protocol (shared/BATCH-PROTOCOL.md).

use convert_core::bucketing::select_bucket;
use convert_core::hash::{bucket_value, murmur3_32};
use convert_core::rules::{RuleOutcome, RuleSet, compare};
use convert_core::{Decision, ProjectConfig};
use convert_sdk::{
    BucketedFeature, BucketedVariation, BucketingAttributes, Context, ConversionAttributes, Core,
    EntityType, FeatureStatus, HttpRequest, HttpResponse, StoreData, Transport, TransportError,
};
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

/// A request that is not of the protocol's shape (exit status 2).
#[derive(Debug)]
pub struct RequestError(pub String);

impl std::fmt::Display for RequestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

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

fn obj(v: Option<&Value>) -> Option<Map<String, Value>> {
    v.and_then(Value::as_object).cloned()
}

fn merge_sdk(base: Option<&Value>, over: Option<&Value>) -> Map<String, Value> {
    let mut m = obj(base).unwrap_or_default();
    if let Some(o) = over.and_then(Value::as_object) {
        convert_core::store::merge_into(&mut m, o);
    }
    m
}

/// Builds an SDK instance for a config and the protocol's `sdk` options.
pub fn build_instance(config: &Value, sdk: &Map<String, Value>) -> Result<Instance, String> {
    build_instance_with(config, sdk, None)
}

/// [`build_instance`] delivering tracking to `transport` instead of the recording transport.
pub fn build_instance_with(
    config: &Value,
    sdk: &Map<String, Value>,
    transport: Option<Arc<dyn Transport>>,
) -> Result<Instance, String> {
    let recorder = Recorder::default();
    let parsed = ProjectConfig::from_value(config.clone()).map_err(|e| e.to_string())?;
    let mut b = Core::builder().project_config(parsed).tracking(true);
    b = match transport {
        Some(t) => b.shared_transport(t),
        None => b.transport(recorder.clone()),
    };
    if let Some(env) = sdk.get("environment").and_then(Value::as_str) {
        b = b.environment(env);
    }
    if let Some(bk) = sdk.get("bucketing") {
        // The reference's `||` defaults: 0 means the default.
        if let Some(seed) = bk
            .get("hash_seed")
            .and_then(Value::as_f64)
            .filter(|s| *s != 0.0)
        {
            b = b.hash_seed(js_to_uint32(seed));
        }
        if let Some(max) = bk.get("max_traffic").and_then(Value::as_u64) {
            b = b.max_traffic(u32::try_from(max).unwrap_or(10_000));
        }
        if let Some(x) = bk.get("excludeExperienceIdHash") {
            b = b.exclude_experience_id_hash(convert_core::js::truthy(x));
        }
    }
    let batch = sdk
        .get("events")
        .and_then(|e| e.get("batch_size"))
        .and_then(Value::as_u64)
        .filter(|n| *n > 0)
        .unwrap_or(10);
    b = b.events(
        usize::try_from(batch).unwrap_or(10),
        std::time::Duration::from_secs(1),
        10_000,
    );
    match sdk.get("dataStore").and_then(Value::as_str) {
        None | Some("memory") => {}
        Some(url)
            if url.starts_with("redis://")
                || url.starts_with("rediss://")
                || url.starts_with("redis+cluster://")
                || url.starts_with("rediss+cluster://") =>
        {
            let store = convert_sdk::stores::RedisStore::open(url).map_err(|e| e.to_string())?;
            b = b.data_store(store);
        }
        Some(url) if url.starts_with("sqlite://") => {
            let path = &url["sqlite://".len()..];
            if path.is_empty() {
                return Err(
                    "sdk.dataStore: sqlite:// needs a file path (sqlite:///path/to/file.db)".into(),
                );
            }
            let store = convert_sdk::stores::SqliteStore::open(path).map_err(|e| e.to_string())?;
            b = b.data_store(store);
        }
        Some(other) => {
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

/// Runs a whole batch request; returns the response array.
pub fn run(request: &Value) -> Result<Value, RequestError> {
    let req = request
        .as_object()
        .ok_or_else(|| RequestError("the request must be a JSON object".into()))?;
    let cases = req
        .get("cases")
        .and_then(Value::as_array)
        .ok_or_else(|| RequestError("the request must have a `cases` array".into()))?;
    let shared = match req.get("state").and_then(Value::as_str) {
        None | Some("isolated") => false,
        Some("shared") => true,
        Some(other) => {
            return Err(RequestError(format!(
                "`state` must be \"isolated\" or \"shared\", not {other:?}"
            )));
        }
    };
    let capture = req
        .get("captureTracking")
        .map(convert_core::js::truthy)
        .unwrap_or(true);
    let mut instances: HashMap<String, Result<Instance, String>> = HashMap::new();
    let mut out = Vec::with_capacity(cases.len());
    for (i, case) in cases.iter().enumerate() {
        let Some(c) = case.as_object() else {
            return Err(RequestError(format!("cases[{i}] must be an object")));
        };
        let op = c.get("op").and_then(Value::as_str).unwrap_or("");
        let mut record = Map::new();
        record.insert("i".into(), json!(i));
        record.insert("id".into(), c.get("id").cloned().unwrap_or(Value::Null));
        record.insert("op".into(), c.get("op").cloned().unwrap_or(Value::Null));
        record.insert(
            "visitorId".into(),
            c.get("visitorId").cloned().unwrap_or(Value::Null),
        );
        record.insert("key".into(), c.get("key").cloned().unwrap_or(Value::Null));

        let (result, error, tracking) = if let Some(r) = engine_op(op, c) {
            (r, Value::Null, Vec::new())
        } else {
            let inst_key = match c.get("session").and_then(Value::as_str) {
                Some(s) => format!("session:{s}"),
                None if shared => "shared".to_string(),
                None => format!("case:{i}"),
            };
            let inst = instances.entry(inst_key.clone()).or_insert_with(|| {
                let config = c.get("config").or_else(|| req.get("config"));
                match config {
                    Some(cfg) => build_instance(cfg, &merge_sdk(req.get("sdk"), c.get("sdk"))),
                    None => Err("no config given".into()),
                }
            });
            match inst {
                Ok(inst) => {
                    let (result, error) = visitor_op(inst, op, c);
                    let tracking = if capture {
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
        if !shared && c.get("session").is_none() {
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

fn engine_op(op: &str, c: &Map<String, Value>) -> Option<Value> {
    let seed = || {
        c.get("seed")
            .and_then(Value::as_f64)
            .map_or(9999, js_to_uint32)
    };
    Some(match op {
        "hash" => {
            let input = convert_core::js::opt_to_js_string(c.get("input"));
            json!({"type": "hash", "value": murmur3_32(input.as_bytes(), seed())})
        }
        "bucketValue" => {
            let v = convert_core::js::opt_to_js_string(c.get("visitorId"));
            let e = c
                .get("experienceId")
                .map(|e| convert_core::js::to_js_string(e).into_owned())
                .unwrap_or_default();
            let max = c
                .get("maxTraffic")
                .and_then(Value::as_f64)
                .unwrap_or(10000.0);
            json!({"type": "bucketValue", "value": bucket_value(&e, &v, seed(), max)})
        }
        "selectBucket" => {
            let buckets: Vec<(String, Value)> = c
                .get("buckets")
                .and_then(Value::as_object)
                .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                .unwrap_or_default();
            let value = c.get("value").and_then(Value::as_f64).unwrap_or(f64::NAN);
            json!({"type": "selectBucket", "value": select_bucket(&buckets, value)})
        }
        "ruleMatch" => {
            let rules = RuleSet::compile(c.get("ruleSet").unwrap_or(&Value::Null));
            let data = obj(c.get("data")).unwrap_or_default();
            let value = match rules.evaluate(&data) {
                RuleOutcome::Matched => json!(true),
                RuleOutcome::NotMatched => json!(false),
                RuleOutcome::Error(e) => json!(e.code()),
            };
            json!({"type": "ruleMatch", "value": value})
        }
        "compare" => {
            let method = c.get("method").and_then(Value::as_str).unwrap_or("");
            let negation = c.get("negation").is_some_and(convert_core::js::truthy);
            json!({"type": "compare", "value": compare(method, c.get("value"), c.get("testAgainst"), negation)})
        }
        _ => return None,
    })
}

fn bucketing_attrs(c: &Map<String, Value>) -> BucketingAttributes {
    BucketingAttributes {
        visitor_properties: obj(c.get("attributes")),
        location_properties: obj(c.get("locationProperties")),
        ignore_location_properties: c.get("ignoreLocationProperties") == Some(&Value::Bool(true)),
        environment: c
            .get("environment")
            .and_then(Value::as_str)
            .filter(|e| !e.is_empty())
            .map(str::to_string),
        force_variation_id: c
            .get("forceVariationId")
            .filter(|v| convert_core::js::truthy(v))
            .map(|v| convert_core::js::to_js_string(v).into_owned()),
        enable_tracking: c.get("enableTracking").map(convert_core::js::truthy),
        update_visitor_properties: c
            .get("updateVisitorProperties")
            .is_some_and(convert_core::js::truthy),
        type_casting: c.get("typeCasting").map(convert_core::js::truthy),
        experience_keys: c.get("experienceKeys").and_then(Value::as_array).map(|a| {
            a.iter()
                .map(|k| convert_core::js::to_js_string(k).into_owned())
                .collect()
        }),
    }
}

/// The protocol's `variation` record.
pub fn variation_json(v: &BucketedVariation) -> Value {
    json!({
        "type": "variation",
        "decision": &*v.variation_id,
        "experienceId": &*v.experience_id,
        "experienceKey": &*v.experience_key,
        "variationId": &*v.variation_id,
        "variationKey": v.variation_key.as_deref(),
        "bucketingAllocation": v.bucketing_allocation,
    })
}

/// The protocol's record for a decision.
pub fn decision_json(d: &Decision) -> Value {
    match d {
        Decision::Variation(v) => variation_json(v),
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

/// The protocol's `feature` record.
pub fn feature_json(f: &BucketedFeature) -> Value {
    json!({
        "type": "feature",
        "featureKey": f.feature_key.as_deref(),
        "featureId": f.feature_id.as_deref(),
        "status": match f.status { FeatureStatus::Enabled => "enabled", FeatureStatus::Disabled => "disabled" },
        "experienceKey": f.experience_key.as_deref(),
        "experienceId": f.experience_id.as_deref(),
        "variables": f.variables.clone(),
    })
}

fn context<'a>(inst: &'a mut Instance, c: &Map<String, Value>) -> Result<&'a Context, String> {
    let vid = match c.get("visitorId") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => return Err("missing field `visitorId`".into()),
    };
    let core = inst.core.clone();
    Ok(inst
        .contexts
        .entry(vid.clone())
        .or_insert_with(|| core.create_context(vid, obj(c.get("visitorAttributes")))))
}

fn str_list(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::Array(a)) => a
            .iter()
            .map(|x| convert_core::js::to_js_string(x).into_owned())
            .collect(),
        Some(Value::String(s)) => vec![s.clone()],
        _ => Vec::new(),
    }
}

fn visitor_op(inst: &mut Instance, op: &str, c: &Map<String, Value>) -> (Value, Value) {
    let key = c
        .get("key")
        .map(|k| convert_core::js::to_js_string(k).into_owned());
    let needs_key = matches!(
        op,
        "runExperience" | "runFeature" | "trackConversion" | "getConfigEntity"
    );
    if needs_key && key.is_none() {
        return error_result("missing field `key`");
    }
    let key = key.unwrap_or_default();
    let known = matches!(
        op,
        "runExperience"
            | "runExperiences"
            | "runFeature"
            | "runFeatures"
            | "trackConversion"
            | "runCustomSegments"
            | "setDefaultSegments"
            | "updateVisitorProperties"
            | "getVisitorData"
            | "getConfigEntity"
            | "getConfigEntityById"
            | "seedBucketing"
    );
    if !known {
        return error_result(&format!("unknown op `{op}`"));
    }
    let ctx = match context(inst, c) {
        Ok(ctx) => ctx.clone(),
        Err(e) => return error_result(&e),
    };
    let attrs = bucketing_attrs(c);
    let result = match op {
        "runExperience" => decision_json(&ctx.run_experience(&key, &attrs)),
        "runExperiences" => {
            let items: Vec<Value> = ctx
                .run_experiences(&attrs)
                .iter()
                .map(variation_json)
                .collect();
            json!({"type": "variations", "items": items})
        }
        "runFeature" => {
            let d = ctx.run_feature(&key, &attrs);
            if let Some(e) = d.rule_errors.first() {
                json!({"type": "rule_error", "code": e.code()})
            } else if d.entries.len() == 1 {
                feature_json(&d.entries[0])
            } else {
                json!({"type": "features", "items": d.entries.iter().map(feature_json).collect::<Vec<_>>()})
            }
        }
        "runFeatures" => match ctx.run_features(&attrs) {
            Ok(list) => {
                json!({"type": "features", "items": list.iter().map(feature_json).collect::<Vec<_>>()})
            }
            Err(errs) => json!({"type": "rule_error", "code": errs.first().map(|e| e.code())}),
        },
        "trackConversion" => {
            let mut ca = ConversionAttributes {
                rule_data: obj(c.get("ruleData")),
                ..Default::default()
            };
            if let Some(list) = c.get("conversionData").and_then(Value::as_array) {
                for item in list {
                    ca.conversion_data.push((
                        convert_core::js::opt_to_js_string(item.get("key")).into_owned(),
                        item.get("value").cloned().unwrap_or(Value::Null),
                    ));
                }
            }
            if let Some(rev) = c.get("revenue") {
                ca.conversion_data.insert(0, ("amount".into(), rev.clone()));
            }
            ca.force_multiple_transactions = c
                .get("conversionSetting")
                .and_then(|s| s.get("forceMultipleTransactions"))
                .is_some_and(convert_core::js::truthy);
            match ctx.track_conversion(&key, &ca) {
                Ok(o) => json!({"type": "conversion", "returned": null, "fired": o.fired()}),
                Err(e) => json!({"type": "conversion", "returned": e.code(), "fired": false}),
            }
        }
        "runCustomSegments" => {
            let keys = str_list(c.get("segmentKeys"));
            let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
            let rule_data = obj(c.get("ruleData")).or_else(|| obj(c.get("attributes")));
            let returned = match ctx.run_custom_segments(&keys, rule_data) {
                Ok(Some(m)) => Value::Object(m),
                Ok(None) => Value::Null,
                Err(e) => json!(e.code()),
            };
            json!({"type": "customSegments", "returned": returned, "visitorData": store_json(&ctx.get_visitor_data())})
        }
        "setDefaultSegments" => {
            ctx.set_default_segments(obj(c.get("segments")).unwrap_or_default());
            json!({"type": "ok"})
        }
        "updateVisitorProperties" => {
            let props = obj(c.get("properties"))
                .or_else(|| obj(c.get("visitorProperties")))
                .or_else(|| obj(c.get("attributes")))
                .unwrap_or_default();
            ctx.update_visitor_properties(&props);
            json!({"type": "ok"})
        }
        "getVisitorData" => {
            json!({"type": "visitorData", "value": store_json(&ctx.get_visitor_data())})
        }
        "getConfigEntity" | "getConfigEntityById" => {
            let ty = c
                .get("entityType")
                .and_then(Value::as_str)
                .and_then(EntityType::parse);
            let Some(ty) = ty else {
                return error_result("missing or unknown field `entityType`");
            };
            let value = if op == "getConfigEntity" {
                ctx.get_config_entity(&key, ty)
            } else {
                let id = convert_core::js::opt_to_js_string(c.get("id"));
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
                .get("bucketing")
                .and_then(Value::as_object)
                .map(|m| {
                    m.iter()
                        .map(|(e, v)| convert_core::StoreOp::Bucketing {
                            experience_id: e.as_str().into(),
                            variation_id: convert_core::js::to_js_string(v).as_ref().into(),
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
        _ => return error_result(&format!("unknown op `{op}`")),
    };
    (result, Value::Null)
}

fn store_json(d: &StoreData) -> Value {
    serde_json::to_value(d).unwrap_or(Value::Null)
}
