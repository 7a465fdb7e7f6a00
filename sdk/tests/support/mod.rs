//! Test doubles shared by the SDK's integration tests: each test file that needs them declares
//! `mod support;` (Cargo does not build `tests/support/` as a test crate of its own).
// Every test crate compiles this whole module but uses only part of it.
#![allow(dead_code)]

#[cfg(feature = "redis")]
pub mod faults;

use convert_sdk::stores::MemoryStore;
use convert_sdk::{
    Core, DataStore, HttpRequest, HttpResponse, StoreData, StoreError, Transport, TransportError,
};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// A transport that records every request it is given and answers each with 200 and an empty
/// body. Clones share one record, so a test keeps a clone to read what the SDK it built sent.
#[derive(Clone, Default)]
pub struct Recorder(Arc<Mutex<Vec<HttpRequest>>>);

impl Transport for Recorder {
    fn send(&self, request: &HttpRequest) -> Result<HttpResponse, TransportError> {
        self.0.lock().unwrap().push(request.clone());
        Ok(HttpResponse::new(200, Vec::new()))
    }
}

/// An SDK on `config` whose tracking is delivered only by `flush`, to `recorder`.
pub fn sdk_flushing_to(config: serde_json::Value, recorder: &Recorder) -> Core {
    Core::builder()
        .config(config)
        .transport(recorder.clone())
        .tracking(false)
        .build()
        .unwrap()
}

impl Recorder {
    /// The requests sent so far, oldest first.
    pub fn requests(&self) -> Vec<HttpRequest> {
        self.0.lock().unwrap().clone()
    }

    /// Takes the requests sent so far, leaving the record empty.
    pub fn take(&self) -> Vec<HttpRequest> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

/// A memory store that counts `get` and `update` calls, logs every record it writes, can claim
/// either store mode (`updates_in_place`), and can be switched to failing.
#[derive(Default)]
pub struct InstrumentedStore {
    pub inner: MemoryStore,
    pub in_place: bool,
    pub failing: AtomicBool,
    gets: AtomicUsize,
    updates: AtomicUsize,
    written: Mutex<Vec<StoreData>>,
}

impl InstrumentedStore {
    /// A shared store in the given mode.
    pub fn new(in_place: bool) -> Arc<Self> {
        Arc::new(InstrumentedStore {
            in_place,
            ..InstrumentedStore::default()
        })
    }

    /// `(gets, updates, records written)` since the last call, which resets them.
    pub fn take_counts(&self) -> (usize, usize, usize) {
        (
            self.gets.swap(0, Ordering::SeqCst),
            self.updates.swap(0, Ordering::SeqCst),
            self.take_written().len(),
        )
    }

    /// The records written (by `set` or by an `update` that changed something) since the last
    /// call, oldest first.
    pub fn take_written(&self) -> Vec<StoreData> {
        std::mem::take(&mut *self.written.lock().unwrap())
    }

    fn check(&self) -> Result<(), StoreError> {
        if self.failing.load(Ordering::SeqCst) {
            Err(StoreError::Unavailable("switched off by the test".into()))
        } else {
            Ok(())
        }
    }
}

impl DataStore for InstrumentedStore {
    fn get(&self, key: &str) -> Result<Option<StoreData>, StoreError> {
        self.gets.fetch_add(1, Ordering::SeqCst);
        self.check()?;
        self.inner.get(key)
    }
    fn set(&self, key: &str, value: &StoreData) -> Result<(), StoreError> {
        self.check()?;
        self.written.lock().unwrap().push(value.clone());
        self.inner.set(key, value)
    }
    fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.inner.delete(key)
    }
    fn update(
        &self,
        key: &str,
        f: &mut dyn FnMut(&mut StoreData) -> bool,
    ) -> Result<bool, StoreError> {
        self.updates.fetch_add(1, Ordering::SeqCst);
        self.check()?;
        let mut last = None;
        let wrote = self.inner.update(key, &mut |d| {
            let changed = f(d);
            last = changed.then(|| d.clone());
            changed
        })?;
        if let Some(record) = last.filter(|_| wrote) {
            self.written.lock().unwrap().push(record);
        }
        Ok(wrote)
    }
    fn updates_in_place(&self) -> bool {
        self.in_place
    }
}

/// An SDK on `config` over `store`, whose tracking is delivered only by `flush`, to `recorder`.
pub fn sdk_on_store(config: &str, store: Arc<dyn DataStore>, recorder: &Recorder) -> Core {
    Core::builder()
        .config_json(config)
        .shared_data_store(store)
        .transport(recorder.clone())
        .tracking(false)
        .build()
        .unwrap()
}

/// The events of type `conversion` (conversions and transactions) in the requests recorded.
pub fn conversion_events(recorder: &Recorder) -> usize {
    recorder
        .requests()
        .iter()
        .map(|r| {
            let body: serde_json::Value = serde_json::from_str(r.body.as_deref().unwrap()).unwrap();
            body["visitors"]
                .as_array()
                .unwrap()
                .iter()
                .flat_map(|v| v["events"].as_array().unwrap().clone())
                .filter(|e| e["eventType"] == "conversion")
                .count()
        })
        .sum()
}

/// The repository's demo project config (`examples/data/demo-config.json`).
pub const DEMO_CONFIG: &str = include_str!("../../../examples/data/demo-config.json");

/// An offline SDK on the demo config in the `production` environment (where its experiences
/// run), tracking off.
pub fn demo_core() -> Core {
    Core::builder()
        .config_json(DEMO_CONFIG)
        .environment("production")
        .tracking(false)
        .build()
        .unwrap()
}

/// A current-thread tokio runtime with time and I/O enabled.
pub fn current_thread_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}
