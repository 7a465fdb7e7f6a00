//! Test doubles shared by the SDK's integration tests: each test file that needs them declares
//! `mod support;` (Cargo does not build `tests/support/` as a test crate of its own).
// Every test crate compiles this whole module but uses only part of it.
#![allow(dead_code)]

use convert_sdk::{HttpRequest, HttpResponse, Transport, TransportError};
use std::sync::{Arc, Mutex};

/// A transport that records every request it is given and answers each with 200 and an empty
/// body. Clones share one record, so a test keeps a clone to read what the SDK it built sent.
#[derive(Clone, Default)]
pub struct Recorder(Arc<Mutex<Vec<HttpRequest>>>);

impl Transport for Recorder {
    fn send(&self, request: &HttpRequest) -> Result<HttpResponse, TransportError> {
        self.0.lock().unwrap().push(request.clone());
        Ok(HttpResponse {
            status: 200,
            body: Vec::new(),
        })
    }
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
