//! Convert Experiences Full Stack SDK for Rust: A/B testing, feature flags and conversion tracking.
#![doc = include_str!("../README.md")]
