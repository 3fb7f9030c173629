//! Just enough OpenAPI v3 for kubectl to accept custom resources under its default
//! `--validate=strict`: `/openapi/v3` lists one document per custom resource group-version,
//! and each document describes the PATCH operations of its kinds, carrying the
//! `x-kubernetes-group-version-kind` extension and the `fieldValidation` query parameter.
//!
//! kubectl (`apply -f`, `create -f`) first checks, in these documents, whether the server
//! validates fields itself; if it finds no document it wants the OpenAPI v2 schema to
//! validate on the client, which the fake does not have, and refuses to send anything. With
//! these documents it sends `fieldValidation=Strict` instead, which the fake ignores as a
//! CRD without a schema (`x-kubernetes-preserve-unknown-fields`) effectively does.
//!
//! The PATCH operations list only JSON and merge patches, as for every real custom resource,
//! so `kubectl apply` computes a JSON merge patch. No schemas are served (`kubectl explain`
//! finds nothing), and built-in kinds get no document: kubectl needs `--validate=false` to
//! create or apply them from files.

use serde_json::{Value, json};

use crate::resource::ResourceKind;

/// Part of each document's URL, so kubectl's disk cache can tell versions apart; the
/// documents never change at run time, so a constant does.
const DOCUMENT_HASH: &str = "kube-fake-1";

/// `GET /openapi/v3`: where each group-version's document is.
pub(crate) fn root() -> Value {
    let mut paths = serde_json::Map::new();
    for kind in custom_resource_kinds() {
        let path = group_version_path(kind);
        paths.insert(
            path.clone(),
            json!({ "serverRelativeURL": format!("/openapi/v3/{path}?hash={DOCUMENT_HASH}") }),
        );
    }
    json!({ "paths": paths })
}

/// `GET /openapi/v3/apis/{group}/{version}`: the PATCH operations served there (`None`
/// when no custom resource is served in that group-version).
pub(crate) fn group_version_document(group: &str, version: &str) -> Option<Value> {
    let kinds: Vec<ResourceKind> = custom_resource_kinds()
        .filter(|kind| kind.group() == group && kind.version() == version)
        .collect();
    if kinds.is_empty() {
        return None;
    }
    let mut paths = serde_json::Map::new();
    for kind in kinds {
        let object_path = if kind.is_namespaced() {
            format!(
                "/apis/{}/namespaces/{{namespace}}/{}/{{name}}",
                kind.api_version(),
                kind.plural()
            )
        } else {
            format!("/apis/{}/{}/{{name}}", kind.api_version(), kind.plural())
        };
        let status_path = format!("{object_path}/status");
        paths.insert(object_path, json!({ "patch": patch_operation(kind) }));
        if kind.has_status_subresource() {
            paths.insert(status_path, json!({ "patch": patch_operation(kind) }));
        }
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": { "title": "kube-fake", "version": "v0.1.0" },
        "paths": paths,
    }))
}

fn custom_resource_kinds() -> impl Iterator<Item = ResourceKind> {
    ResourceKind::ALL
        .into_iter()
        .filter(|kind| kind.is_custom_resource())
}

/// `apis/{group}/{version}`, the key of a group-version in the root document.
fn group_version_path(kind: ResourceKind) -> String {
    format!("apis/{}", kind.api_version())
}

fn patch_operation(kind: ResourceKind) -> Value {
    let any_object = json!({ "schema": { "type": "object" } });
    json!({
        "description": format!("partially update the specified {}", kind.kind()),
        "parameters": [{
            "name": "fieldValidation",
            "in": "query",
            "schema": { "type": "string", "uniqueItems": true },
        }],
        "requestBody": {
            "content": {
                "application/json-patch+json": any_object,
                "application/merge-patch+json": any_object,
            },
        },
        "responses": { "200": { "description": "OK" } },
        "x-kubernetes-action": "patch",
        "x-kubernetes-group-version-kind": {
            "group": kind.group(),
            "version": kind.version(),
            "kind": kind.kind(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_root_points_at_the_custom_resource_group_version_only() {
        assert_eq!(
            root(),
            json!({ "paths": { "apis/secrets.iomete.com/v1": {
                "serverRelativeURL": "/openapi/v3/apis/secrets.iomete.com/v1?hash=kube-fake-1"
            } } })
        );
        assert!(group_version_document("", "v1").is_none());
        assert!(group_version_document("secrets.iomete.com", "v2").is_none());
    }

    #[test]
    fn patch_operations_name_their_kind_and_take_field_validation() {
        let document = group_version_document("secrets.iomete.com", "v1").unwrap();
        let paths = document["paths"].as_object().unwrap();
        assert_eq!(
            paths.keys().collect::<Vec<_>>(),
            [
                "/apis/secrets.iomete.com/v1/namespaces/{namespace}/vaultconfigs/{name}",
                "/apis/secrets.iomete.com/v1/namespaces/{namespace}/vaultconfigs/{name}/status",
            ]
        );
        for path in paths.values() {
            let patch = &path["patch"];
            assert_eq!(
                patch["x-kubernetes-group-version-kind"]["kind"],
                "VaultConfig"
            );
            assert_eq!(patch["parameters"][0]["name"], "fieldValidation");
            assert!(
                patch["requestBody"]["content"]
                    .get("application/strategic-merge-patch+json")
                    .is_none()
            );
        }
    }
}
