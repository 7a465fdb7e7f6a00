#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

pub mod backoff;
pub mod event;
pub mod store;
pub mod transport;

pub use backoff::Backoff;
pub use event::{EventBus, SdkEvent};
pub use store::{DataStore, StoreData, StoreError};
pub use transport::{
    HttpRequest, HttpResponse, Method, StatusClass, Transport, TransportError, parse_retry_after,
};
