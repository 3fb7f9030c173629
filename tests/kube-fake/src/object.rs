//! Small accessors for API objects held as plain JSON.
//!
//! The fake stores objects as `serde_json::Value` rather than typed structs: merge patches
//! apply to JSON anyway, unknown fields survive round trips, and what clients receive is
//! exactly what was stored. These helpers keep the `metadata.*` digging in one place.

use serde_json::{Map, Value};

/// `metadata.<field>` as a string, when present and a string.
pub(crate) fn metadata_str<'a>(object: &'a Value, field: &str) -> Option<&'a str> {
    object.get("metadata")?.get(field)?.as_str()
}

pub(crate) fn name(object: &Value) -> &str {
    metadata_str(object, "name").unwrap_or_default()
}

pub(crate) fn namespace(object: &Value) -> &str {
    metadata_str(object, "namespace").unwrap_or_default()
}

pub(crate) fn resource_version(object: &Value) -> &str {
    metadata_str(object, "resourceVersion").unwrap_or_default()
}

pub(crate) fn uid(object: &Value) -> &str {
    metadata_str(object, "uid").unwrap_or_default()
}

/// The value of one label, `None` when the object does not carry it.
pub(crate) fn label<'a>(object: &'a Value, key: &str) -> Option<&'a str> {
    object.get("metadata")?.get("labels")?.get(key)?.as_str()
}

/// The mutable `metadata` map; stored objects always have one.
pub(crate) fn metadata_mut(object: &mut Value) -> Option<&mut Map<String, Value>> {
    object.get_mut("metadata")?.as_object_mut()
}

pub(crate) fn set_resource_version(object: &mut Value, resource_version: u64) {
    if let Some(metadata) = metadata_mut(object) {
        metadata.insert(
            "resourceVersion".into(),
            Value::String(resource_version.to_string()),
        );
    }
}

/// The current time in the form Kubernetes uses for `metav1.Time` (RFC 3339, seconds).
pub(crate) fn now_timestamp() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}
