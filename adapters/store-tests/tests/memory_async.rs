//! The async contract against the memory store, seen through the [`Inline`] adapter.
#![cfg(feature = "async")]

use convert_store_tests::asynchronous::{Inline, Shared};
use std::sync::Arc;

convert_store_tests::async_contract_tests!(|| async {
    Some(Arc::new(Inline(convert_store_memory::MemoryStore::new())) as Shared)
});
