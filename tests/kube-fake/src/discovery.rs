//! The legacy (unaggregated) discovery documents: `/api`, `/api/v1`, `/apis`, `/version`
//! and `/`. kubectl asks for aggregated discovery first (via its Accept header); answering
//! with these plain `application/json` documents makes it fall back to the legacy flow,
//! which only needs what is here.

use serde_json::{Value, json};

use crate::resource::ResourceKind;

/// The verbs both resources support (no `deletecollection`: not implemented).
const VERBS: &[&str] = &[
    "create", "delete", "get", "list", "patch", "update", "watch",
];

/// What `GET /version` reports: a current Kubernetes, marked as the fake.
pub(crate) fn version() -> Value {
    json!({
        "major": "1",
        "minor": "32",
        "gitVersion": "v1.32.0-kube-fake",
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2025-01-01T00:00:00Z",
        "goVersion": "go1.23.0",
        "compiler": "gc",
        "platform": "linux/amd64",
    })
}

/// `GET /api`: the core group has just `v1`.
pub(crate) fn api_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{ "clientCIDR": "0.0.0.0/0", "serverAddress": server_address }],
    })
}

/// `GET /apis`: no API groups besides the core one.
pub(crate) fn api_group_list() -> Value {
    json!({ "kind": "APIGroupList", "apiVersion": "v1", "groups": [] })
}

/// `GET /api/v1`: the resources served.
pub(crate) fn core_v1_resources() -> Value {
    let resource = |kind: ResourceKind, short_names: &[&str]| {
        let mut entry = json!({
            "name": kind.plural(),
            "singularName": kind.kind().to_lowercase(),
            "namespaced": kind.is_namespaced(),
            "kind": kind.kind(),
            "verbs": VERBS,
        });
        if !short_names.is_empty() {
            entry["shortNames"] = json!(short_names);
        }
        entry
    };
    json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": "v1",
        "resources": [
            resource(ResourceKind::Namespace, &["ns"]),
            resource(ResourceKind::Secret, &[]),
        ],
    })
}

/// `GET /`: the paths served, as the real server lists them.
pub(crate) fn root_paths() -> Value {
    json!({ "paths": ["/api", "/api/v1", "/apis", "/healthz", "/livez", "/readyz", "/version"] })
}
