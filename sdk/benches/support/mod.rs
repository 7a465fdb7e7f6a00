//! The SDK setup shared by the facade benches (`decisions`, `workloads`): a [`Core`] built from
//! one of the bench requests in `examples/data/`, as `convert bench` builds it: the request's
//! config, the default memory store (10,000 visitors, so fresh decisions run in the steady
//! state where each new visitor evicts the least recently used one of its set), tracking off.

// Each bench uses part of this module.
#![allow(dead_code, clippy::panic, clippy::unwrap_used)]

use convert_sdk::{BucketingAttributes, Context, Core};
use serde_json::Value;
use std::sync::atomic::{AtomicU64, Ordering};

/// The decision workloads of `docs/performance.md` ("Engine").
pub const WORKLOADS: [&str; 2] = ["bench-3arm", "bench-targeted"];

/// An SDK instance with the experience key and call attributes of a bench request.
pub struct Workload {
    pub core: Core,
    pub attrs: BucketingAttributes,
    pub key: String,
}

/// The bench request `examples/data/{name}.json` (`bench-3arm` or `bench-targeted`).
pub fn workload(name: &str) -> Workload {
    workload_with_store(name, convert_sdk::stores::MemoryStore::new())
}

/// The bench request `examples/data/{name}.json`.
pub fn request(name: &str) -> Value {
    let text = match name {
        "bench-3arm" => include_str!("../../../examples/data/bench-3arm.json"),
        "bench-targeted" => include_str!("../../../examples/data/bench-targeted.json"),
        _ => panic!("unknown workload {name}"),
    };
    serde_json::from_str(text).unwrap()
}

/// [`workload`] with another store.
pub fn workload_with_store(name: &str, store: impl convert_sdk::DataStore) -> Workload {
    let req = request(name);
    let bench = &req["bench"];
    let core = Core::builder()
        .config(req["config"].clone())
        .events(1_000_000, std::time::Duration::from_secs(3600), 1_000_000)
        .data_store(store)
        .build()
        .unwrap();
    let attrs = BucketingAttributes {
        visitor_properties: bench["attributes"].as_object().cloned(),
        location_properties: bench["locationProperties"].as_object().cloned(),
        enable_tracking: Some(false),
        ..Default::default()
    };
    let key = bench["key"].as_str().unwrap().to_string();
    Workload { core, attrs, key }
}

static NEXT: AtomicU64 = AtomicU64::new(0);

/// A store that keeps nothing: every `update` runs on a new, empty record in place (as the
/// memory store runs a new visitor's), then discards it. A fresh decision through it is the
/// SDK and the engine without the store's own work (key hash, set lookup, lock, insert and
/// eviction, and the cache misses of a 10,000-visitor table): the layer between
/// `engine_decision` (convert-core) and `fresh_decision`.
#[derive(Debug, Default)]
pub struct KeepNothing;

impl convert_sdk::DataStore for KeepNothing {
    fn get(&self, _: &str) -> Result<Option<convert_sdk::StoreData>, convert_sdk::StoreError> {
        Ok(None)
    }

    fn set(&self, _: &str, _: &convert_sdk::StoreData) -> Result<(), convert_sdk::StoreError> {
        Ok(())
    }

    fn delete(&self, _: &str) -> Result<(), convert_sdk::StoreError> {
        Ok(())
    }

    fn update(
        &self,
        _: &str,
        f: &mut dyn FnMut(&mut convert_sdk::StoreData) -> bool,
    ) -> Result<bool, convert_sdk::StoreError> {
        let mut record = convert_sdk::StoreData::default();
        let changed = f(&mut record);
        std::hint::black_box(&record);
        record.discard();
        Ok(changed)
    }

    fn updates_in_place(&self) -> bool {
        true
    }
}

/// A visitor id never used before in this process.
pub fn fresh_visitor_id() -> String {
    format!("bench-visitor-{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// The context of a visitor never seen before.
pub fn fresh_context(core: &Core) -> Context {
    core.create_context(fresh_visitor_id(), None)
}
