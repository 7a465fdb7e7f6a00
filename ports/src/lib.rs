//! Ports (traits) of convert-rs: Transport, DataStore and EventBus.
#![doc = include_str!("../README.md")]
