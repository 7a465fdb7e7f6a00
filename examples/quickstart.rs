//! Quickstart: evaluate the bundled demo config offline and show what the SDK decides and what it
//! would send to Convert.
//!
//! Run it with `cargo run --example quickstart`.

use convert_examples::DEMO_CONFIG;
use convert_sdk::{BucketingAttributes, ConversionAttributes, Core, Decision, FeatureStatus};
use serde_json::{Map, Value, json};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // One SDK per process: a static config, the production environment, the default in-memory
    // visitor store. Tracking delivery is switched off, so nothing is sent: events stay queued and
    // we print the request that would carry them.
    let sdk = Core::builder()
        .config_json(DEMO_CONFIG)
        .environment("production")
        .tracking(false) // offline: keep events queued instead of sending them
        .build()?;
    let cfg = sdk.config();
    println!(
        "convert-rs quickstart: project {} (account {}), environment {}\n",
        cfg.project_id,
        cfg.account_id,
        sdk.environment()
    );

    // One context per visitor. Report segments (country, browser, ...) given here are stored and
    // sent with tracking; other properties feed audience rules only.
    let mut attrs = Map::new();
    attrs.insert("country".into(), json!("DE"));
    attrs.insert("plan".into(), json!("premium"));
    let visitor = sdk.create_context("visitor-1234", Some(attrs));

    let on_checkout = BucketingAttributes::new()
        .location_property("url", "https://shop.example/checkout")
        .visitor_property("cart_items", 3);

    println!("Experiences");
    match visitor.run_experience("checkout-button", &on_checkout) {
        Decision::Variation(v) => println!(
            "  checkout-button  -> {} ({}), bucket value {}",
            v.variation_key().unwrap_or("?"),
            v.variation_id,
            v.bucketing_allocation
                .map_or("stored".to_string(), |b| b.to_string())
        ),
        other => println!("  checkout-button  -> {other:?}"),
    }
    // The same call again is sticky: same variation, read from the store, nothing re-tracked.
    if let Decision::Variation(v) = visitor.run_experience("checkout-button", &on_checkout) {
        println!(
            "  (again)          -> {} (bucket value {})",
            v.variation_id,
            v.bucketing_allocation
                .map_or("none: stored decision".to_string(), |b| b.to_string())
        );
    }
    let elsewhere = BucketingAttributes::new().location_property("url", "https://shop.example/");
    println!(
        "  on the home page -> {:?}",
        visitor.run_experience("checkout-button", &elsewhere)
    );

    println!("\nFeatures");
    for f in visitor.run_features(&on_checkout).unwrap_or_default() {
        let status = match f.status {
            FeatureStatus::Enabled => "enabled ",
            FeatureStatus::Disabled => "disabled",
        };
        println!(
            "  {:<12} {status} {}",
            f.feature_key().unwrap_or("?"),
            f.variables
                .as_ref()
                .map(Value::to_string)
                .unwrap_or_default()
        );
    }
    let search = visitor.run_feature("search-v2", &BucketingAttributes::new());
    if search.is_enabled() {
        let max: i64 = search.variable("max_results")?;
        let ranking: Value = search.variable("ranking")?;
        println!("  search-v2 typed: max_results = {max}, ranking = {ranking}");
    }

    println!("\nConversions");
    let purchase = ConversionAttributes::new()
        .revenue(59.90)
        .data("productsCount", 2);
    println!(
        "  purchase        -> {:?}",
        visitor.track_conversion("purchase", &purchase)?
    );
    println!(
        "  purchase again  -> {:?} (deduplicated)",
        visitor.track_conversion("purchase", &purchase)?
    );

    println!("\nTracking payload that would be sent:");
    for req in sdk.pending_requests() {
        println!("  {} {}", req.method.as_str(), req.url);
        for (k, v) in &req.headers {
            println!("  {k}: {v}");
        }
        println!("  {}", req.body.as_deref().unwrap_or(""));
    }
    println!(
        "\nStored visitor data: {}",
        visitor.get_visitor_data().to_json()
    );
    Ok(())
}
