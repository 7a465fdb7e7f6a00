//! Thread-safe in-memory DataStore for convert-rs.
#![doc = include_str!("../README.md")]
