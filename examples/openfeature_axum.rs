//! Convert features read through OpenFeature in an axum handler.
//!
//! The Convert SDK is registered once as the OpenFeature provider
//! (`convert_openfeature::ConvertProvider`); handlers only use the vendor-neutral OpenFeature
//! client. The targeting key is the visitor id, other context fields are visitor properties, and
//! `locationProperties` carries the page URL for location rules. With the default in-memory store
//! a decision does no I/O, so it runs directly on the async worker.
//!
//! Run it with `cargo run --example openfeature_axum` and open
//! `http://127.0.0.1:3001/checkout?visitor=alice&cart_items=2`. With `--self-test` it binds a free
//! port, requests a few visitors from itself, checks every OpenFeature answer against
//! `Context::run_feature` for the same visitor, prints one line per visitor and exits (that is what
//! `cargo xtask test` runs).

use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Json, Router};
use convert_examples::DEMO_CONFIG;
use convert_openfeature::ConvertProvider;
use convert_sdk::{BucketingAttributes, Core, FeatureStatus};
use open_feature::{Client, EvaluationContext, EvaluationContextFieldValue, OpenFeature};
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::sync::Arc;

#[path = "support/http.rs"]
mod http;
use http::get_body;

/// The page every request of this example is on.
const CHECKOUT_URL: &str = "https://shop.example/checkout";

/// The routes: `/checkout?visitor=ID[&cart_items=N]` answers whether the checkout call to action
/// is on for the visitor, with its label and size, and the search rollout's result count.
fn app(client: Arc<Client>) -> Router {
    Router::new()
        .route("/checkout", get(checkout))
        .with_state(client)
}

/// The OpenFeature evaluation context of one request.
fn evaluation_context(visitor: &str, cart_items: i64) -> EvaluationContext {
    let mut location = Map::new();
    location.insert("url".into(), json!(CHECKOUT_URL));
    EvaluationContext::default()
        .with_targeting_key(visitor)
        .with_custom_field("cart_items", cart_items)
        .with_custom_field(
            "locationProperties",
            EvaluationContextFieldValue::new_struct(Value::Object(location)),
        )
}

async fn checkout(
    State(client): State<Arc<Client>>,
    Query(q): Query<HashMap<String, String>>,
) -> Json<Value> {
    let (visitor, cart_items) = convert_examples::checkout_query(&q);
    let ctx = evaluation_context(&visitor, cart_items);
    // An evaluation without a value (feature off, unknown flag, ...) is an error in the Rust
    // OpenFeature API: the handler's own defaults apply.
    let cta = client
        .get_bool_details("checkout-cta", Some(&ctx), None)
        .await;
    let (cta_on, reason, variant) = match &cta {
        Ok(d) => (
            d.value,
            d.reason.as_ref().map(ToString::to_string),
            d.variant.clone(),
        ),
        Err(e) => (false, Some(format!("ERROR {}", e.code)), None),
    };
    let label = client
        .get_string_value("checkout-cta.label", Some(&ctx), None)
        .await
        .unwrap_or_else(|_| "Checkout".into());
    let size = client
        .get_int_value("checkout-cta.size", Some(&ctx), None)
        .await
        .unwrap_or(14);
    let max_results = client
        .get_int_value("search-v2.max_results", Some(&ctx), None)
        .await
        .unwrap_or(10);
    Json(json!({
        "visitor": visitor,
        "cta": {"on": cta_on, "reason": reason, "variant": variant, "label": label, "size": size},
        "search_max_results": max_results,
    }))
}

fn sdk() -> Result<Core, convert_sdk::Error> {
    // No transport is configured in this offline example, so events stay queued in memory; a real
    // service adds the ureq transport (the default cargo feature) or an SDK key.
    Core::builder()
        .config_json(DEMO_CONFIG)
        .environment("production")
        .tracking(false)
        .build()
}

/// Checks one answer of the service against the SDK's own API for the same visitor (the decision
/// is stored, so this repeats it rather than making a new one).
fn check(sdk: &Core, visitor: &str, answer: &Value) -> Result<(), String> {
    let mut props = Map::new();
    props.insert("cart_items".into(), json!(2));
    let attrs = BucketingAttributes::new().location_property("url", CHECKOUT_URL);
    let ctx = sdk.create_context(visitor, Some(props));
    let cta = ctx.run_feature("checkout-cta", &attrs);
    let search = ctx.run_feature("search-v2", &attrs);
    let cta_answer = &answer["cta"];
    let expected_label = cta
        .variable::<String>("label")
        .unwrap_or_else(|_| "Checkout".into());
    let expected_size = cta.variable::<i64>("size").unwrap_or(14);
    let expected_variant = cta
        .entries
        .iter()
        .find(|e| e.status == FeatureStatus::Enabled)
        .and_then(|e| e.variation_key());
    let expected_reason = if cta.is_enabled() {
        "TARGETING_MATCH"
    } else {
        "DISABLED"
    };
    let ok = answer["visitor"] == visitor
        && cta_answer["on"] == cta.is_enabled()
        && cta_answer["reason"] == expected_reason
        && cta_answer["variant"].as_str() == expected_variant
        && cta_answer["label"] == expected_label.as_str()
        && cta_answer["size"] == expected_size
        && answer["search_max_results"] == search.variable::<i64>("max_results").unwrap_or(10);
    if ok {
        Ok(())
    } else {
        Err(format!(
            "answer for {visitor} differs from run_feature: {answer} vs {cta:?}"
        ))
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let self_test = std::env::args().any(|a| a == "--self-test");
    let sdk = sdk()?;
    OpenFeature::singleton_mut()
        .await
        .set_provider(ConvertProvider::new(sdk.clone()))
        .await;
    let client = Arc::new(OpenFeature::singleton().await.create_client());

    let addr = if self_test {
        "127.0.0.1:0"
    } else {
        "127.0.0.1:3001"
    };
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let server = tokio::spawn(axum::serve(listener, app(client)).into_future());
    if !self_test {
        println!("listening on http://{local}/checkout?visitor=alice&cart_items=2");
        server.await??;
        return Ok(());
    }
    let mut on = 0;
    let visitors = ["alice", "bob", "carol", "dave", "erin", "frank"];
    for visitor in visitors {
        let body = get_body(local, &format!("/checkout?visitor={visitor}&cart_items=2")).await?;
        let answer: Value = serde_json::from_str(&body)?;
        println!("{visitor}: {answer}");
        check(&sdk, visitor, &answer)?;
        on += usize::from(answer["cta"]["on"] == true);
    }
    // Two thirds of the traffic get a variation that carries the feature (the control third
    // does not): among six visitors at least one has it on.
    if on == 0 {
        return Err("checkout-cta was off for every visitor".into());
    }
    println!(
        "openfeature_axum self-test: {} visitors, checkout-cta on for {on}, every answer equal to run_feature",
        visitors.len()
    );
    server.abort();
    Ok(())
}
