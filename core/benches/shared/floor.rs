//! The floor of a fresh decision: the experience's location and audience rule trees evaluated as
//! a decision evaluates them ("any"), plus the bucket hash of the visitor. Shared by this crate's
//! `workloads` bench (`hash_and_rules`) and convert-sdk's `ratio` bench, which pairs it with a
//! fresh decision through the SDK.

use convert_core::ProjectConfig;
use convert_core::config::{Experience, LocationTarget};
use convert_core::engine::VisitorProps;
use convert_core::hash::bucket_value;
use serde_json::{Map, Value};

/// Whether a location and an audience matched, and the bucket value, for `visitor`.
#[inline(always)]
pub fn hash_and_rules(
    cfg: &ProjectConfig,
    exp: &Experience,
    location: &Map<String, Value>,
    props: &VisitorProps<'_>,
    visitor: &str,
) -> (bool, bool, u32) {
    let location = match &exp.location {
        LocationTarget::Locations(ids) => ids.iter().any(|&i| {
            cfg.locations[i]
                .rules
                .as_ref()
                .is_some_and(|r| r.evaluate(location).is_match())
        }),
        _ => true,
    };
    let audience = exp.audiences.is_empty()
        || exp.audiences.iter().any(|&i| {
            cfg.audiences[i]
                .rules
                .as_ref()
                .is_some_and(|r| r.evaluate(props).is_match())
        });
    (
        location,
        audience,
        bucket_value(&exp.id, visitor, 9999, 10000.0),
    )
}
