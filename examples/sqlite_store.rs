//! Visitor state in SQLite: sticky decisions and conversion dedup survive an application restart.
//!
//! Run it with `cargo run --example sqlite_store --features convert-sdk/sqlite`.

use convert_examples::DEMO_CONFIG;
use convert_sdk::stores::SqliteStore;
use convert_sdk::{BucketingAttributes, ConversionAttributes, Core, Decision};

fn app(db: &std::path::Path) -> Result<Core, Box<dyn std::error::Error>> {
    Ok(Core::builder()
        .config_json(DEMO_CONFIG)
        .environment("production")
        .data_store(SqliteStore::open(db)?)
        .tracking(false)
        .build()?)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::temp_dir().join(format!("convert-sqlite-example-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let db = dir.join("visitors.db");
    let attrs = BucketingAttributes::new()
        .location_property("url", "https://shop.example/checkout")
        .visitor_property("cart_items", 3);

    let first = {
        let sdk = app(&db)?;
        let ctx = sdk.create_context("dana", None);
        let d = ctx.run_experience("checkout-button", &attrs);
        let c = ctx.track_conversion("purchase", &ConversionAttributes::new().revenue(42.0))?;
        println!("first run:  {d:?}\n            conversion: {c:?}");
        d
    }; // the SDK is dropped: the "application" stops

    let sdk = app(&db)?;
    let ctx = sdk.create_context("dana", None);
    let again = ctx.run_experience("checkout-button", &attrs);
    let c = ctx.track_conversion("purchase", &ConversionAttributes::new().revenue(42.0))?;
    println!("after restart: {again:?}\n               conversion: {c:?}");
    println!("stored: {}", ctx.get_visitor_data().to_json());
    let _ = std::fs::remove_dir_all(&dir);

    match (first, again) {
        (Decision::Variation(a), Decision::Variation(b))
            if a.variation_id == b.variation_id
                && b.bucketing_allocation.is_none()
                && !c.fired() =>
        {
            println!("same variation from the stored decision, and no second conversion");
            Ok(())
        }
        other => Err(format!("unexpected: {other:?}").into()),
    }
}
