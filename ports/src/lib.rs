#![doc = include_str!("../README.md")]

pub mod event;
pub mod store;
pub mod transport;

pub use event::{EventBus, SdkEvent};
pub use store::{DataStore, StoreData, StoreError};
pub use transport::{HttpRequest, HttpResponse, Method, Transport, TransportError};
