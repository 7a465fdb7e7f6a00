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
