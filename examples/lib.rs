//! Runnable examples for convert-rs (see the `[[example]]` targets), and the demo project config
//! they share.
#![deny(missing_docs)]

/// A demo project config (an online shop with a checkout experiment, a search rollout, three
/// features and two goals), embedded so the examples run offline.
pub const DEMO_CONFIG: &str = include_str!("data/demo-config.json");

/// The `visitor` and `cart_items` query parameters of the axum examples' `/checkout` route:
/// `"anonymous"` and `1` when absent or unreadable.
pub fn checkout_query(q: &std::collections::HashMap<String, String>) -> (String, i64) {
    let visitor = q
        .get("visitor")
        .cloned()
        .unwrap_or_else(|| "anonymous".into());
    let cart_items = q
        .get("cart_items")
        .and_then(|c| c.parse().ok())
        .unwrap_or(1);
    (visitor, cart_items)
}

/// The bucketing attributes of the axum examples' `/checkout` route for a cart of `cart_items`.
pub fn checkout_attributes(cart_items: i64) -> convert_sdk::BucketingAttributes {
    convert_sdk::BucketingAttributes::new()
        .location_property("url", "https://shop.example/checkout")
        .visitor_property("cart_items", cart_items)
}

/// The JSON answer of the axum example's `/checkout` route: the visitor, the `checkout-button`
/// variation (`null` when the visitor is not bucketed) and the `checkout-cta` variables.
pub fn checkout_answer(
    visitor: &str,
    variation: &convert_sdk::Decision,
    cta: &convert_sdk::FeatureDecision,
) -> serde_json::Value {
    let variation = match variation {
        convert_sdk::Decision::Variation(v) => {
            serde_json::json!({"id": v.variation_id(), "key": v.variation_key()})
        }
        _ => serde_json::Value::Null,
    };
    serde_json::json!({"visitor": visitor, "variation": variation, "cta": cta.variables()})
}

/// The `purchase` conversion of the axum example's `/purchase` route (revenue 20).
pub fn purchase_attributes() -> convert_sdk::ConversionAttributes {
    convert_sdk::ConversionAttributes::new().revenue(20.0)
}

/// The JSON answer of the axum example's `/purchase` route: whether this call tracked the
/// visitor's conversion (`false` for every repeat: conversions are exactly-once per visitor).
pub fn purchase_answer(
    visitor: &str,
    outcome: &Result<convert_sdk::ConversionOutcome, convert_sdk::RuleError>,
) -> serde_json::Value {
    match outcome {
        Ok(o) => serde_json::json!({"visitor": visitor, "fired": o.fired()}),
        Err(e) => serde_json::json!({"visitor": visitor, "error": e.to_string()}),
    }
}
