#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

pub mod event;
pub mod store;
pub mod transport;

pub use event::{EventBus, SdkEvent};
pub use store::{DataStore, StoreData, StoreError};
pub use transport::{HttpRequest, HttpResponse, Method, Transport, TransportError};
