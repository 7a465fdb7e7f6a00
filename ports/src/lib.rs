#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

#[cfg(feature = "async")]
#[cfg_attr(docsrs, doc(cfg(feature = "async")))]
pub mod async_store;
pub mod backoff;
pub mod event;
pub mod store;
pub mod transport;

#[cfg(feature = "async")]
pub use async_store::{AsyncDataStore, StoreFuture};
pub use backoff::{Backoff, LONGEST_WAIT, instant_after};
pub use event::{EventBus, SdkEvent};
pub use store::{
    Applied, DataStore, StoreData, StoreError, StoreOp, apply_ops, apply_with_update,
    create_with_update, store_time_left, store_wait_limit, with_store_deadline,
};
pub use transport::{
    HttpRequest, HttpResponse, Method, StatusClass, Transport, TransportError, parse_retry_after,
};
