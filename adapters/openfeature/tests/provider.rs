//! The provider driven through the OpenFeature client API: values, reasons, variants, metadata
//! and every error code, and the tracking a decision produces compared with the tracking of
//! `Context::run_feature` on a second SDK instance for the same visitor.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use convert_openfeature::ConvertProvider;
use convert_sdk::{BucketingAttributes, Core};
use open_feature::{
    Client, EvaluationContext, EvaluationContextFieldValue, EvaluationErrorCode, EvaluationReason,
    FlagMetadataValue, OpenFeature, StructValue, provider::FeatureProvider,
    provider::ProviderStatus,
};
use serde_json::{Map, Value, json};
use std::time::Duration;

/// The one test transport: records the tracking requests an SDK sends.
mod recording {
    use convert_sdk::{HttpRequest, HttpResponse, Transport, TransportError};
    use std::sync::{Arc, Mutex};

    /// Records every request and answers 200, or refuses every request when `failing`.
    #[derive(Clone, Default)]
    pub struct Recorder {
        requests: Arc<Mutex<Vec<HttpRequest>>>,
        pub failing: bool,
    }

    impl Transport for Recorder {
        fn send(&self, request: &HttpRequest) -> Result<HttpResponse, TransportError> {
            self.requests.lock().unwrap().push(request.clone());
            if self.failing {
                return Err(TransportError::Connect("refused by the test".into()));
            }
            Ok(HttpResponse::new(200, Vec::new()))
        }
    }

    impl Recorder {
        /// The JSON bodies of the requests sent so far.
        pub fn bodies(&self) -> Vec<serde_json::Value> {
            self.requests
                .lock()
                .unwrap()
                .iter()
                .filter_map(|r| r.body.as_deref())
                .map(|b| serde_json::from_str(b).unwrap())
                .collect()
        }
    }
}
use recording::Recorder;

/// Feature `banner` (every variable type, one unreadable integer, one unreadable JSON, one
/// variable no variation sets) delivered by experience `exp` to premium visitors on the
/// checkout page; feature `ghost` delivered by no experience; feature `deals` delivered by
/// experience `deals-test` to visitors who spent at least 10 and signed up before 2001-09-09.
fn config() -> Value {
    json!({
        "account_id": "10", "project": {"id": "20"},
        "features": [
            {"id": "1", "key": "banner", "variables": [
                {"key": "on", "type": "boolean"}, {"key": "max", "type": "integer"},
                {"key": "ratio", "type": "float"}, {"key": "label", "type": "string"},
                {"key": "cfg", "type": "json"}, {"key": "broken", "type": "integer"},
                {"key": "blob", "type": "json"}, {"key": "unset", "type": "string"}]},
            {"id": "2", "key": "ghost", "variables": [{"key": "x", "type": "string"}]},
            {"id": "3", "key": "deals", "variables": []}
        ],
        "audiences": [{"id": "300", "key": "premium", "type": "transient", "rules": {"OR": [{"AND": [{"OR_WHEN": [
            {"rule_type": "generic_text_key_value", "key": "plan",
             "matching": {"match_type": "matches", "negated": false}, "value": "premium"}]}]}]}},
            {"id": "301", "key": "early-spenders", "type": "transient", "rules": {"OR": [{"AND": [
                {"OR_WHEN": [{"rule_type": "generic_numeric_key_value", "key": "spent",
                    "matching": {"match_type": "less", "negated": true}, "value": 10}]},
                {"OR_WHEN": [{"rule_type": "generic_numeric_key_value", "key": "signup",
                    "matching": {"match_type": "less", "negated": false}, "value": 1000000000}]}]}]}}],
        "locations": [{"id": "50", "key": "checkout", "rules": {"OR": [{"AND": [{"OR_WHEN": [
            {"rule_type": "url", "key": "url",
             "matching": {"match_type": "contains", "negated": false}, "value": "/checkout"}]}]}]}}],
        "experiences": [{"id": "100", "key": "exp", "audiences": ["300"], "locations": ["50"],
            "settings": {"matching_options": {"audiences": "any", "locations": "any"}},
            "variations": [{"id": "101", "key": "v1", "traffic_allocation": 100, "changes": [
                {"type": "fullStackFeature", "data": {"feature_id": 1, "variables_data": {
                    "on": "true", "max": "7", "ratio": "0.25", "label": 3,
                    "cfg": "{\"depth\":2,\"tags\":[\"a\"]}", "broken": "abc", "blob": "{bad"}}}]}]},
            {"id": "200", "key": "deals-test", "audiences": ["301"],
            "variations": [{"id": "201", "key": "d1", "traffic_allocation": 100, "changes": [
                {"type": "fullStackFeature", "data": {"feature_id": 3}}]}]}]
    })
}

/// An SDK on the test config whose tracking goes, on `flush`, to a fresh recorder.
fn sdk() -> (Core, Recorder) {
    sdk_on(config())
}

/// An SDK (environment `production`) on `config`, tracking to a fresh recorder on `flush`.
fn sdk_on(config: Value) -> (Core, Recorder) {
    let recorder = Recorder::default();
    let core = Core::builder()
        .config(config)
        .environment("production")
        .transport(recorder.clone())
        .tracking(false)
        .build()
        .unwrap();
    (core, recorder)
}

/// An OpenFeature client bound (under its own name, as tests run in parallel) to `provider`.
async fn client(name: &str, provider: ConvertProvider) -> Client {
    OpenFeature::singleton_mut()
        .await
        .set_named_provider(name, provider)
        .await;
    OpenFeature::singleton().await.create_named_client(name)
}

/// A premium visitor on the checkout page: `exp` delivers `banner` to them.
fn premium_on_checkout(id: &str) -> EvaluationContext {
    let mut loc = Map::new();
    loc.insert("url".into(), json!("https://shop.test/checkout"));
    EvaluationContext::default()
        .with_targeting_key(id)
        .with_custom_field("plan", "premium")
        .with_custom_field(
            "locationProperties",
            EvaluationContextFieldValue::new_struct(Value::Object(loc)),
        )
}

/// What `premium_on_checkout` means for the SDK's own API.
fn premium_props() -> (Map<String, Value>, BucketingAttributes) {
    let mut props = Map::new();
    props.insert("plan".into(), json!("premium"));
    let attrs = BucketingAttributes::new().location_property("url", "https://shop.test/checkout");
    (props, attrs)
}

/// Flushes both SDKs and asserts they sent the same tracking; returns it.
fn same_tracking(of: (&Core, &Recorder), direct: (&Core, &Recorder)) -> Vec<Value> {
    of.0.flush().unwrap();
    direct.0.flush().unwrap();
    let (a, b) = (of.1.bodies(), direct.1.bodies());
    assert_eq!(
        a, b,
        "tracking through OpenFeature differs from run_feature"
    );
    a
}

fn meta_str(v: &open_feature::FlagMetadata, key: &str) -> Option<String> {
    match v.values.get(key) {
        Some(FlagMetadataValue::String(s)) => Some(s.clone()),
        _ => None,
    }
}

#[tokio::test]
async fn on_through_a_variation_resolves_every_type_and_tracks_like_run_feature() {
    let (core, rec) = sdk();
    let client = client("on", ConvertProvider::new(core.clone())).await;
    let ctx = premium_on_checkout("alice");

    let on = client
        .get_bool_details("banner", Some(&ctx), None)
        .await
        .unwrap();
    assert!(on.value);
    assert_eq!(on.reason, Some(EvaluationReason::TargetingMatch));
    assert_eq!(on.variant.as_deref(), Some("v1"));
    let m = &on.flag_metadata;
    assert_eq!(meta_str(m, "experienceId").as_deref(), Some("100"));
    assert_eq!(meta_str(m, "experienceKey").as_deref(), Some("exp"));
    assert_eq!(meta_str(m, "variationId").as_deref(), Some("101"));
    assert_eq!(meta_str(m, "variationKey").as_deref(), Some("v1"));
    assert_eq!(meta_str(m, "featureId").as_deref(), Some("1"));
    assert_eq!(meta_str(m, "featureKey").as_deref(), Some("banner"));

    let max = client
        .get_int_details("banner.max", Some(&ctx), None)
        .await
        .unwrap();
    assert_eq!(max.value, 7);
    assert_eq!(max.reason, Some(EvaluationReason::TargetingMatch));
    assert_eq!(max.variant.as_deref(), Some("v1"));
    assert_eq!(
        meta_str(&max.flag_metadata, "variationId").as_deref(),
        Some("101")
    );
    assert_eq!(
        client
            .get_float_value("banner.ratio", Some(&ctx), None)
            .await,
        Ok(0.25)
    );
    assert_eq!(
        client
            .get_string_value("banner.label", Some(&ctx), None)
            .await,
        Ok("3".to_string())
    );
    assert_eq!(
        client.get_bool_value("banner.on", Some(&ctx), None).await,
        Ok(true)
    );
    let cfg = client
        .get_struct_details::<StructValue>("banner.cfg", Some(&ctx), None)
        .await
        .unwrap();
    assert_eq!(
        cfg.value,
        StructValue::default()
            .with_field("depth", 2)
            .with_field("tags", vec!["a"])
    );
    assert_eq!(cfg.reason, Some(EvaluationReason::TargetingMatch));

    // The same six decisions through the SDK's own API, on a second instance.
    let (direct, direct_rec) = sdk();
    let (props, attrs) = premium_props();
    for _ in 0..6 {
        let d = direct
            .create_context("alice", Some(props.clone()))
            .run_feature("banner", &attrs);
        assert!(d.is_enabled());
    }
    let sent = same_tracking((&core, &rec), (&direct, &direct_rec));
    let text = serde_json::to_string(&sent).unwrap();
    assert!(
        text.contains("\"101\"") && text.contains("alice"),
        "a bucketing event for alice into variation 101 is tracked: {text}"
    );
    assert_eq!(
        core.create_context("alice", None).get_visitor_data(),
        direct.create_context("alice", None).get_visitor_data(),
        "the same visitor record is stored"
    );
}

#[tokio::test]
async fn off_for_the_visitor_is_disabled_and_variables_have_no_value() {
    let (core, rec) = sdk();
    let client = client("off", ConvertProvider::new(core.clone())).await;
    // Premium, but on another page: the location rule keeps `exp` away.
    let mut loc = Map::new();
    loc.insert("url".into(), json!("https://shop.test/home"));
    let elsewhere = EvaluationContext::default()
        .with_targeting_key("bob")
        .with_custom_field("plan", "premium")
        .with_custom_field(
            "locationProperties",
            EvaluationContextFieldValue::new_struct(loc),
        );
    // On the checkout page, but not premium: the audience keeps `exp` away.
    let mut basic = premium_on_checkout("carol");
    basic.add_custom_field("plan", "basic");

    for ctx in [&elsewhere, &basic] {
        let d = client
            .get_bool_details("banner", Some(ctx), None)
            .await
            .unwrap();
        assert!(!d.value);
        assert_eq!(d.reason, Some(EvaluationReason::Disabled));
        assert_eq!(d.variant, None);
        assert_eq!(
            meta_str(&d.flag_metadata, "featureId").as_deref(),
            Some("1")
        );
        assert_eq!(meta_str(&d.flag_metadata, "experienceId"), None);
        let e = client
            .get_int_value("banner.max", Some(ctx), None)
            .await
            .unwrap_err();
        assert_eq!(e.code, EvaluationErrorCode::General("DISABLED".into()));
        assert_eq!(e.code.to_string(), "DISABLED");
    }
    // Both visitors are premium on the checkout page for the other SDK: the fields and the
    // location properties were what kept them out.
    let (probe, _) = sdk();
    let (props, attrs) = premium_props();
    assert!(
        probe
            .create_context("x", Some(props.clone()))
            .run_feature("banner", &attrs)
            .is_enabled()
    );
    let mut basic_props = props.clone();
    basic_props.insert("plan".into(), json!("basic"));
    let home = BucketingAttributes::new().location_property("url", "https://shop.test/home");
    let (direct, direct_rec) = sdk();
    for _ in 0..2 {
        assert!(
            !direct
                .create_context("bob", Some(props.clone()))
                .run_feature("banner", &home)
                .is_enabled()
        );
        assert!(
            !direct
                .create_context("carol", Some(basic_props.clone()))
                .run_feature("banner", &attrs)
                .is_enabled()
        );
    }
    same_tracking((&core, &rec), (&direct, &direct_rec));
}

#[tokio::test]
async fn a_feature_no_experience_delivers_is_default() {
    let (core, _rec) = sdk();
    let client = client("default", ConvertProvider::new(core)).await;
    let ctx = premium_on_checkout("dave");
    let d = client
        .get_bool_details("ghost", Some(&ctx), None)
        .await
        .unwrap();
    assert!(!d.value);
    assert_eq!(d.reason, Some(EvaluationReason::Default));
    let e = client
        .get_string_value("ghost.x", Some(&ctx), None)
        .await
        .unwrap_err();
    assert_eq!(e.code, EvaluationErrorCode::General("DEFAULT".into()));
}

/// Before: only the first dot whose prefix was a feature was tried, so `a.b.c` looked for a
/// variable `b.c` of `a` and was not found, although feature `a.b` declares `c`.
#[tokio::test]
async fn dotted_feature_keys_resolve_their_variables_whatever_prefix_is_a_feature() {
    let feature = |id: &str, key: &str, var: &str| json!({"id": id, "key": key, "variables": [{"key": var, "type": "string"}]});
    let change = |id: u64, var: &str, value: &str| json!({"type": "fullStackFeature", "data": {"feature_id": id, "variables_data": {var: value}}});
    let (core, _rec) = sdk_on(json!({
        "account_id": "10", "project": {"id": "20"},
        "features": [feature("1", "a", "x"), feature("2", "a.b", "c"), feature("3", "p", "q.r")],
        "experiences": [{"id": "100", "key": "e", "variations": [{"id": "101", "key": "v",
            "traffic_allocation": 100,
            "changes": [change(1, "x", "ax"), change(2, "c", "abc"), change(3, "q.r", "pqr")]}]}]
    }));
    let client = client("dotted", ConvertProvider::new(core.clone())).await;
    let ctx = EvaluationContext::default().with_targeting_key("zoe");
    let string = |flag: &'static str| {
        let client = &client;
        let ctx = &ctx;
        async move { client.get_string_value(flag, Some(ctx), None).await }
    };
    assert_eq!(string("a.b.c").await, Ok("abc".to_string()));
    assert_eq!(string("a.x").await, Ok("ax".to_string()));
    assert_eq!(string("p.q.r").await, Ok("pqr".to_string()));
    assert_eq!(
        client.get_bool_value("a.b", Some(&ctx), None).await,
        Ok(true)
    );
    // The SDK's own API gives the same value.
    let direct = core
        .create_context("zoe", None)
        .run_feature("a.b", &BucketingAttributes::default());
    assert_eq!(direct.variable::<String>("c").unwrap(), "abc");
    let e = string("a.b.nope").await.unwrap_err();
    assert_eq!(e.code, EvaluationErrorCode::FlagNotFound);
    assert!(
        e.message
            .unwrap()
            .contains("feature `a.b` declares no variable `nope`"),
        "the error names the longest feature key"
    );
}

/// Before: a feature only an experience of another environment delivers was `DISABLED`, as if
/// targeting had run; no experience can deliver it here, which the table calls `DEFAULT`.
#[tokio::test]
async fn a_feature_only_another_environment_or_an_archived_experience_delivers_is_default() {
    let mut cfg = config();
    cfg["features"]
        .as_array_mut()
        .unwrap()
        .push(json!({"id": "4", "key": "staged", "variables": []}));
    let delivers = |id: &str, key: &str| {
        json!({"id": id, "key": key, "variations": [{"id": format!("{id}1"), "key": "s1",
            "traffic_allocation": 100,
            "changes": [{"type": "fullStackFeature", "data": {"feature_id": 4}}]}]})
    };
    let mut staging = delivers("400", "staging-only");
    staging["environment"] = json!("staging");
    let exps = cfg["experiences"].as_array_mut().unwrap();
    exps.push(staging);
    exps.push(delivers("410", "gone"));
    cfg["archived_experiences"] = json!(["410"]);
    let (core, _rec) = sdk_on(cfg);
    let client = client("environment", ConvertProvider::new(core)).await;
    let d = client
        .get_bool_details("staged", Some(&premium_on_checkout("yan")), None)
        .await
        .unwrap();
    assert!(!d.value);
    assert_eq!(d.reason, Some(EvaluationReason::Default));
}

#[tokio::test]
async fn unknown_features_and_variables_are_not_found() {
    let (core, rec) = sdk();
    let client = client("not-found", ConvertProvider::new(core.clone())).await;
    let ctx = premium_on_checkout("erin");
    for flag in ["nope", "nope.max", "banner.nope", "banner.max.more", ""] {
        let e = client
            .get_int_details(flag, Some(&ctx), None)
            .await
            .unwrap_err();
        assert_eq!(e.code, EvaluationErrorCode::FlagNotFound, "{flag}");
    }
    let e = client
        .get_bool_value("nope", Some(&ctx), None)
        .await
        .unwrap_err();
    assert_eq!(e.code, EvaluationErrorCode::FlagNotFound);
    core.flush().unwrap();
    assert!(rec.bodies().is_empty(), "an unknown flag decides nothing");

    // Declared, but the delivering variation sets no value: found only after the decision,
    // which tracks as run_feature does.
    let e = client
        .get_string_value("banner.unset", Some(&ctx), None)
        .await
        .unwrap_err();
    assert_eq!(e.code, EvaluationErrorCode::FlagNotFound);
    let (direct, direct_rec) = sdk();
    let (props, attrs) = premium_props();
    direct
        .create_context("erin", Some(props))
        .run_feature("banner", &attrs);
    assert!(!same_tracking((&core, &rec), (&direct, &direct_rec)).is_empty());
}

#[tokio::test]
async fn a_wrong_type_is_a_type_mismatch_and_decides_nothing() {
    let (core, rec) = sdk();
    let client = client("mismatch", ConvertProvider::new(core.clone())).await;
    let ctx = premium_on_checkout("frank");
    let codes = [
        client
            .get_int_value("banner.label", Some(&ctx), None)
            .await
            .unwrap_err()
            .code,
        client
            .get_string_value("banner.max", Some(&ctx), None)
            .await
            .unwrap_err()
            .code,
        client
            .get_float_value("banner.max", Some(&ctx), None)
            .await
            .unwrap_err()
            .code,
        client
            .get_bool_value("banner.cfg", Some(&ctx), None)
            .await
            .unwrap_err()
            .code,
        client
            .get_struct_value::<StructValue>("banner.on", Some(&ctx), None)
            .await
            .unwrap_err()
            .code,
        client
            .get_string_value("banner", Some(&ctx), None)
            .await
            .unwrap_err()
            .code,
        client
            .get_struct_value::<StructValue>("banner", Some(&ctx), None)
            .await
            .unwrap_err()
            .code,
    ];
    assert!(
        codes
            .iter()
            .all(|c| *c == EvaluationErrorCode::TypeMismatch),
        "{codes:?}"
    );
    core.flush().unwrap();
    assert!(rec.bodies().is_empty(), "a wrong type decides nothing");
}

#[tokio::test]
async fn an_unreadable_value_is_a_parse_error_after_a_tracked_decision() {
    let (core, rec) = sdk();
    let client = client("parse", ConvertProvider::new(core.clone())).await;
    let ctx = premium_on_checkout("gina");
    let e = client
        .get_int_details("banner.broken", Some(&ctx), None)
        .await
        .unwrap_err();
    assert_eq!(e.code, EvaluationErrorCode::ParseError);
    let e = client
        .get_struct_details::<StructValue>("banner.blob", Some(&ctx), None)
        .await
        .unwrap_err();
    assert_eq!(e.code, EvaluationErrorCode::ParseError);

    let (direct, direct_rec) = sdk();
    let (props, attrs) = premium_props();
    for _ in 0..2 {
        direct
            .create_context("gina", Some(props.clone()))
            .run_feature("banner", &attrs);
    }
    assert!(!same_tracking((&core, &rec), (&direct, &direct_rec)).is_empty());
}

/// An SDK in SDK-key mode whose config fetches all fail (no config until the test sets one).
fn unreachable_cdn() -> Core {
    let mut transport = Recorder::default();
    transport.failing = true;
    Core::builder()
        .sdk_key("10/20")
        .transport(transport)
        .tracking(false)
        .build()
        .unwrap()
}

/// Before: `status()` stayed `NotReady` after the first fetch failed, and the error did not say
/// why.
#[tokio::test]
async fn without_a_config_the_provider_is_in_error_and_says_why() {
    let core = unreachable_cdn();
    let provider = ConvertProvider::new(core.clone()).with_init_timeout(Duration::from_millis(50));
    assert_eq!(provider.status(), ProviderStatus::Error);
    let client = client("not-ready", provider).await;
    let ctx = premium_on_checkout("hank");
    let e = client
        .get_bool_value("banner", Some(&ctx), None)
        .await
        .unwrap_err();
    assert_eq!(e.code, EvaluationErrorCode::ProviderNotReady);
    let message = e.message.unwrap();
    assert!(message.contains("refused by the test"), "{message}");
    let e = client
        .get_int_value("banner.max", Some(&ctx), None)
        .await
        .unwrap_err();
    assert_eq!(e.code, EvaluationErrorCode::ProviderNotReady);

    // Once a config is installed the same provider answers.
    let cfg = convert_sdk::ProjectConfig::from_value(config()).unwrap();
    core.set_config(cfg);
    let provider = ConvertProvider::new(core.clone());
    assert_eq!(provider.status(), ProviderStatus::Ready);
    assert_eq!(
        client.get_int_value("banner.max", Some(&ctx), None).await,
        Ok(7)
    );
    core.close(Duration::from_millis(100));
}

/// `set_provider` awaits `initialize`, which waits for the SDK's first config: the first
/// evaluation after it has a value. Before: it answered `PROVIDER_NOT_READY`.
#[tokio::test]
async fn set_provider_waits_for_the_first_config() {
    let core = unreachable_cdn();
    let later = core.clone();
    let installed = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(30)).await;
        later.set_config(convert_sdk::ProjectConfig::from_value(config()).unwrap());
    });
    let provider = ConvertProvider::new(core.clone()).with_init_timeout(Duration::from_secs(20));
    let client = client("init-wait", provider).await;
    assert_eq!(
        client
            .get_int_value("banner.max", Some(&premium_on_checkout("ivy")), None)
            .await,
        Ok(7)
    );
    installed.await.unwrap();
    core.close(Duration::from_millis(100));
}

#[tokio::test]
async fn the_targeting_key_is_required_and_the_context_must_be_readable() {
    let (core, _rec) = sdk();
    let client = client("context", ConvertProvider::new(core)).await;
    let no_key = EvaluationContext::default().with_custom_field("plan", "premium");
    let empty_key = no_key.clone().with_targeting_key("");
    for ctx in [&no_key, &empty_key] {
        let e = client
            .get_bool_value("banner", Some(ctx), None)
            .await
            .unwrap_err();
        assert_eq!(e.code, EvaluationErrorCode::TargetingKeyMissing);
    }
    let e = client
        .get_bool_value("banner", None, None)
        .await
        .unwrap_err();
    assert_eq!(e.code, EvaluationErrorCode::TargetingKeyMissing);

    let bad_location = EvaluationContext::default()
        .with_targeting_key("ivy")
        .with_custom_field("locationProperties", "https://shop.test/checkout");
    let e = client
        .get_bool_value("banner", Some(&bad_location), None)
        .await
        .unwrap_err();
    assert_eq!(e.code, EvaluationErrorCode::InvalidContext);
    let opaque = EvaluationContext::default()
        .with_targeting_key("ivy")
        .with_custom_field("cart", EvaluationContextFieldValue::new_struct(42_u8));
    let e = client
        .get_bool_value("banner", Some(&opaque), None)
        .await
        .unwrap_err();
    assert_eq!(e.code, EvaluationErrorCode::InvalidContext);
}

#[tokio::test]
async fn struct_fields_of_every_supported_form_are_read() {
    let (core, _rec) = sdk();
    let client = client("forms", ConvertProvider::new(core)).await;
    let loc = StructValue::default().with_field("url", "https://shop.test/checkout");
    let ctx = EvaluationContext::default()
        .with_targeting_key("jack")
        .with_custom_field("plan", "premium")
        .with_custom_field(
            "locationProperties",
            EvaluationContextFieldValue::new_struct(loc),
        );
    assert_eq!(
        client.get_bool_value("banner", Some(&ctx), None).await,
        Ok(true)
    );
}

#[tokio::test]
async fn float_and_date_time_fields_are_numeric_visitor_properties() {
    let (core, _rec) = sdk();
    let client = client("numeric", ConvertProvider::new(core)).await;
    let y2000 = time::OffsetDateTime::from_unix_timestamp(946_684_800).unwrap();
    let y2020 = time::OffsetDateTime::from_unix_timestamp(1_577_836_800).unwrap();
    let visitor = |id: &str, spent: f64, signup: time::OffsetDateTime| {
        EvaluationContext::default()
            .with_targeting_key(id)
            .with_custom_field("spent", spent)
            .with_custom_field("signup", signup)
    };
    let on = |ctx: EvaluationContext| {
        let client = &client;
        async move { client.get_bool_value("deals", Some(&ctx), None).await }
    };
    assert_eq!(on(visitor("kim", 12.5, y2000)).await, Ok(true));
    assert_eq!(on(visitor("lee", 12.5, y2020)).await, Ok(false));
    assert_eq!(on(visitor("max", 9.5, y2000)).await, Ok(false));
    let e = on(visitor("ned", f64::NAN, y2000)).await.unwrap_err();
    assert_eq!(e.code, EvaluationErrorCode::InvalidContext);
}

/// With an async data store, an evaluation reads and writes the visitor's record through it
/// (`run_feature_async`), not through the sync store: report segments in the evaluation
/// context included (they were written to the sync store, blocking the task, and never reached
/// the async one).
#[tokio::test]
async fn evaluations_use_the_sdks_async_store() {
    use convert_sdk::DataStore;
    use convert_sdk::stores::{BlockingPool, MemoryStore};
    use std::sync::Arc;
    let sync_store = Arc::new(MemoryStore::new());
    let async_store = Arc::new(MemoryStore::new());
    let core = Core::builder()
        .config(config())
        .environment("production")
        .tracking(false)
        .shared_data_store(sync_store.clone())
        .async_data_store(BlockingPool::new(async_store.clone()))
        .build()
        .unwrap();
    let client = client("async-store", ConvertProvider::new(core.clone())).await;
    let context = premium_on_checkout("carol").with_custom_field("country", "US");
    let on = client
        .get_bool_value("banner", Some(&context), None)
        .await
        .unwrap();
    assert!(on);
    let key = core
        .create_context("carol", None)
        .store_key()
        .unwrap()
        .to_string();
    let stored = async_store.get(&key).unwrap();
    assert_eq!(
        stored.as_ref().and_then(|r| r.bucketed_variation("100")),
        Some("101"),
        "{stored:?}"
    );
    assert_eq!(
        stored.as_ref().and_then(|r| r.segments()?.get("country")),
        Some(&json!("US")),
        "{stored:?}"
    );
    assert_eq!(sync_store.get(&key).unwrap(), None);
}
