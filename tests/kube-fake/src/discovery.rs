//! The legacy (unaggregated) discovery documents: `/api`, `/api/v1`, `/apis`,
//! `/apis/{group}`, `/apis/{group}/{version}`, `/version` and `/`, all derived from
//! [`ResourceKind::ALL`] so a new kind is discoverable without touching this module.
//! kubectl asks for aggregated discovery first (via its Accept header); answering with these
//! plain `application/json` documents makes it fall back to the legacy flow, which only
//! needs what is here.

use serde_json::{Value, json};

use crate::resource::ResourceKind;

/// The verbs every resource supports (no `deletecollection`: not implemented).
const VERBS: &[&str] = &[
    "create", "delete", "get", "list", "patch", "update", "watch",
];
/// The verbs of a `/status` subresource.
const STATUS_VERBS: &[&str] = &["get", "patch", "update"];

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

/// `GET /apis`: the groups besides the core one (the custom resources' group).
pub(crate) fn api_group_list() -> Value {
    let mut groups: Vec<&'static str> = ResourceKind::ALL
        .into_iter()
        .filter(|kind| kind.is_custom_resource())
        .map(ResourceKind::group)
        .collect();
    groups.dedup();
    json!({
        "kind": "APIGroupList",
        "apiVersion": "v1",
        "groups": groups.into_iter().map(group_entry).collect::<Vec<_>>(),
    })
}

/// `GET /apis/{group}`: one group and its versions.
pub(crate) fn api_group(group: &str) -> Value {
    let mut document = group_entry(group);
    document["kind"] = json!("APIGroup");
    document["apiVersion"] = json!("v1");
    document
}

/// A group as `/apis` and `/apis/{group}` describe it. Every kind the fake serves in a
/// group has the same single version, which is therefore the preferred one.
fn group_entry(group: &str) -> Value {
    let versions: Vec<Value> = ResourceKind::ALL
        .into_iter()
        .filter(|kind| kind.group() == group)
        .map(|kind| json!({ "groupVersion": kind.api_version(), "version": kind.version() }))
        .take(1)
        .collect();
    json!({
        "name": group,
        "versions": versions,
        "preferredVersion": versions.first(),
    })
}

/// `GET /api/v1` (`group` empty) or `GET /apis/{group}/{version}`: the resources served
/// there, with their subresources as separate entries (`vaultconfigs/status`), as the real
/// server lists them.
pub(crate) fn api_resource_list(group: &str, version: &str) -> Value {
    let mut resources = Vec::new();
    let mut group_version = "v1";
    for kind in ResourceKind::ALL {
        if kind.group() != group || kind.version() != version {
            continue;
        }
        group_version = kind.api_version();
        let mut entry = json!({
            "name": kind.plural(),
            "singularName": kind.kind().to_lowercase(),
            "namespaced": kind.is_namespaced(),
            "kind": kind.kind(),
            "verbs": VERBS,
        });
        if let Some(short_names) = short_names(kind) {
            entry["shortNames"] = json!(short_names);
        }
        resources.push(entry);
        if kind.has_status_subresource() {
            resources.push(json!({
                "name": format!("{}/status", kind.plural()),
                "singularName": "",
                "namespaced": kind.is_namespaced(),
                "kind": kind.kind(),
                "verbs": STATUS_VERBS,
            }));
        }
    }
    json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": resources,
    })
}

/// The abbreviations kubectl accepts (`kubectl get ns`, `kubectl get vc`), as the real
/// server and the VaultConfig CRD (deploy/base/vaultconfig-crd.yaml) declare them.
fn short_names(kind: ResourceKind) -> Option<&'static [&'static str]> {
    match kind {
        ResourceKind::Namespace => Some(&["ns"]),
        ResourceKind::VaultConfig => Some(&["vc"]),
        ResourceKind::Secret => None,
    }
}

/// `GET /`: the paths served, as the real server lists them.
pub(crate) fn root_paths() -> Value {
    let mut paths = vec!["/api".to_owned(), "/api/v1".to_owned(), "/apis".to_owned()];
    for kind in ResourceKind::ALL
        .into_iter()
        .filter(|kind| kind.is_custom_resource())
    {
        for path in [
            format!("/apis/{}", kind.group()),
            format!("/apis/{}", kind.api_version()),
        ] {
            if !paths.contains(&path) {
                paths.push(path);
            }
        }
    }
    paths.extend(["/healthz", "/livez", "/readyz", "/version"].map(String::from));
    json!({ "paths": paths })
}
