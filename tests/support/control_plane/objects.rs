//! The objects the webhook follows (namespaces, Secrets, VaultConfigs), written and read on a
//! [`ControlPlane`] the way an administrator would: [`Admin`] uses kube's client with
//! server-side apply, so a write replaces exactly the fields it names (a Secret's `data`
//! whole, a namespace's labels) and writes nothing when nothing changes. VaultConfigs go through
//! the shipped CRD (`deploy/base/vaultconfig-crd.yaml`), whose schema validates and defaults
//! them as in a cluster.
//!
//! Also the identities webhook processes run as ([`Admin::webhook_kubeconfig`]): a
//! ServiceAccount of their own with the verbs the README's RBAC table lists, so that the API
//! server's audit log tells each webhook's requests apart from everyone else's.

#![allow(dead_code)] // each test target uses its own subset

use std::collections::HashSet;
use std::fmt::Debug;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Namespace, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use kube::api::{ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::{Api, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::ControlPlane;

/// The field manager of every test write.
const MANAGER: &str = "iomete-tests";
/// The shipped CRD, applied as it is.
const CRD: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/deploy/base/vaultconfig-crd.yaml"
);
/// The ClusterRole every test webhook is bound to: the namespace rule of the shipped RBAC.
const NAMESPACE_READER: &str = "iomete-tests-namespace-reader";

impl ControlPlane {
    /// Installs the shipped VaultConfig CRD (once per control plane) and waits until it serves.
    pub fn install_vaultconfig_crd(&self) {
        static INSTALLED: Mutex<Option<HashSet<PathBuf>>> = Mutex::new(None);
        let mut installed = INSTALLED.lock().unwrap_or_else(|p| p.into_inner());
        if !installed
            .get_or_insert_with(HashSet::new)
            .insert(self.dir().to_owned())
        {
            return;
        }
        self.kubectl_ok(&["apply", "-f", CRD], None);
        self.kubectl_ok(
            &[
                "wait",
                "--for=condition=Established",
                "--timeout=120s",
                "crd/vaultconfigs.secrets.iomete.com",
            ],
            None,
        );
    }

    /// An administrator on this control plane (a kube client of the caller's runtime).
    pub async fn admin(&self) -> Admin {
        Admin {
            client: self.client().await,
            server: self.server_url(),
            ca_pem: self.ca_pem().to_owned(),
        }
    }
}

/// The kube client of the `system:masters` admin, with the writes tests make.
#[derive(Clone)]
pub struct Admin {
    pub client: kube::Client,
    server: String,
    ca_pem: String,
}

/// A VaultConfig as kube's dynamic API sees it.
fn vault_config_resource() -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk(
        "secrets.iomete.com",
        "v1",
        "VaultConfig",
    ))
}

impl Admin {
    fn api<K>(&self, namespace: &str) -> Api<K>
    where
        K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>,
    {
        Api::namespaced(self.client.clone(), namespace)
    }

    fn vault_configs(&self, namespace: &str) -> Api<DynamicObject> {
        Api::namespaced_with(self.client.clone(), namespace, &vault_config_resource())
    }

    /// Server-side apply of `object` (its name taken from its metadata) through `api`.
    async fn apply_with<K>(&self, api: &Api<K>, object: &Value) -> Result<K, kube::Error>
    where
        K: Clone + DeserializeOwned + Debug + Serialize,
    {
        let name = object["metadata"]["name"].as_str().expect("a name");
        api.patch(
            name,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(object),
        )
        .await
    }

    /// Creates or relabels namespace `name`; its labels become exactly `labels`.
    pub async fn apply_namespace(&self, name: &str, labels: &[(&str, &str)]) {
        let labels: serde_json::Map<String, Value> = labels
            .iter()
            .map(|(key, value)| (key.to_string(), json!(value)))
            .collect();
        let object = json!({"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": name, "labels": labels}});
        let api: Api<Namespace> = Api::all(self.client.clone());
        self.apply_with(&api, &object)
            .await
            .unwrap_or_else(|e| panic!("namespace {name}: {e}"));
    }

    /// Creates or replaces Secret `namespace/name`; its data becomes exactly `data`.
    pub async fn apply_secret(&self, namespace: &str, name: &str, data: &[(&str, &[u8])]) {
        use base64::Engine as _;
        let data: serde_json::Map<String, Value> = data
            .iter()
            .map(|(key, value)| {
                let encoded = base64::engine::general_purpose::STANDARD.encode(value);
                (key.to_string(), json!(encoded))
            })
            .collect();
        let object = json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": name, "namespace": namespace}, "type": "Opaque", "data": data});
        self.apply_with(&self.api::<Secret>(namespace), &object)
            .await
            .unwrap_or_else(|e| panic!("secret {namespace}/{name}: {e}"));
    }

    /// Secret `namespace/name` as JSON (`data` in base64), if it exists.
    pub async fn secret(&self, namespace: &str, name: &str) -> Option<Value> {
        let secret = self
            .api::<Secret>(namespace)
            .get_opt(name)
            .await
            .unwrap_or_else(|e| panic!("secret {namespace}/{name}: {e}"))?;
        Some(serde_json::to_value(secret).unwrap())
    }

    pub async fn delete_secret(&self, namespace: &str, name: &str) {
        delete(&self.api::<Secret>(namespace), name).await;
    }

    /// Creates or replaces VaultConfig `namespace/name` with `spec`; the API server's answer
    /// when its schema refuses it.
    pub async fn try_apply_vault_config(
        &self,
        namespace: &str,
        name: &str,
        spec: Value,
    ) -> Result<(), kube::Error> {
        let object = json!({"apiVersion": "secrets.iomete.com/v1", "kind": "VaultConfig",
            "metadata": {"name": name, "namespace": namespace}, "spec": spec});
        self.apply_with(&self.vault_configs(namespace), &object)
            .await
            .map(drop)
    }

    pub async fn apply_vault_config(&self, namespace: &str, name: &str, spec: Value) {
        self.try_apply_vault_config(namespace, name, spec)
            .await
            .unwrap_or_else(|e| panic!("VaultConfig {namespace}/{name}: {e}"));
    }

    /// VaultConfig `namespace/name` as stored (metadata, spec, status), if it exists.
    pub async fn vault_config(&self, namespace: &str, name: &str) -> Option<Value> {
        let object = self
            .vault_configs(namespace)
            .get_opt(name)
            .await
            .unwrap_or_else(|e| panic!("VaultConfig {namespace}/{name}: {e}"))?;
        Some(serde_json::to_value(object).unwrap())
    }

    pub async fn delete_vault_config(&self, namespace: &str, name: &str) {
        delete(&self.vault_configs(namespace), name).await;
    }

    /// A kubeconfig at `path` for a webhook process reaching the API server at `server` (the
    /// API server itself, or a proxy in front of it) as ServiceAccount `namespace/name`,
    /// created here with the README's verbs: Secrets and VaultConfigs of `namespace` (the
    /// store namespace), the status of its VaultConfigs, and every namespace. Its requests
    /// show in the audit log as user [`service_account_user`].
    pub async fn webhook_kubeconfig(
        &self,
        namespace: &str,
        name: &str,
        server: &str,
        path: &Path,
    ) -> PathBuf {
        let binding = format!("{namespace}-{name}");
        self.apply_with(
            &self.api::<ServiceAccount>(namespace),
            &json!({"apiVersion": "v1", "kind": "ServiceAccount",
                "metadata": {"name": name, "namespace": namespace}}),
        )
        .await
        .unwrap_or_else(|e| panic!("ServiceAccount {namespace}/{name}: {e}"));
        self.apply_with(
            &self.api::<Role>(namespace),
            &json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
                "metadata": {"name": name, "namespace": namespace},
                "rules": [
                    {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list", "watch"]},
                    {"apiGroups": ["secrets.iomete.com"], "resources": ["vaultconfigs"], "verbs": ["get", "list", "watch"]},
                    {"apiGroups": ["secrets.iomete.com"], "resources": ["vaultconfigs/status"], "verbs": ["patch"]},
                ]}),
        )
        .await
        .unwrap_or_else(|e| panic!("Role {namespace}/{name}: {e}"));
        let subject = json!([{"kind": "ServiceAccount", "name": name, "namespace": namespace}]);
        self.apply_with(
            &self.api::<RoleBinding>(namespace),
            &json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                "metadata": {"name": name, "namespace": namespace},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
                "subjects": subject}),
        )
        .await
        .unwrap_or_else(|e| panic!("RoleBinding {namespace}/{name}: {e}"));
        self.apply_with(
            &Api::<ClusterRole>::all(self.client.clone()),
            &json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                "metadata": {"name": NAMESPACE_READER},
                "rules": [{"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get", "list", "watch"]}]}),
        )
        .await
        .unwrap_or_else(|e| panic!("ClusterRole {NAMESPACE_READER}: {e}"));
        self.apply_with(
            &Api::<ClusterRoleBinding>::all(self.client.clone()),
            &json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
                "metadata": {"name": binding},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": NAMESPACE_READER},
                "subjects": subject}),
        )
        .await
        .unwrap_or_else(|e| panic!("ClusterRoleBinding {binding}: {e}"));
        let request = TokenRequest {
            spec: Some(TokenRequestSpec {
                expiration_seconds: Some(6 * 3600),
                ..TokenRequestSpec::default()
            }),
            ..TokenRequest::default()
        };
        let token = self
            .api::<ServiceAccount>(namespace)
            .create_token_request(name, &Default::default(), &request)
            .await
            .unwrap_or_else(|e| panic!("a token for {namespace}/{name}: {e}"))
            .status
            .expect("a token")
            .token;
        let text = super::kubeconfig(server, &self.ca_pem, &json!({ "token": token }));
        std::fs::write(path, text).unwrap();
        path.to_owned()
    }

    /// The API server's own address.
    pub fn server_url(&self) -> &str {
        &self.server
    }
}

/// How the audit log names ServiceAccount `namespace/name`.
pub fn service_account_user(namespace: &str, name: &str) -> String {
    format!("system:serviceaccount:{namespace}:{name}")
}

/// Deletes `name` through `api`; already gone is fine.
async fn delete<K>(api: &Api<K>, name: &str)
where
    K: Clone + DeserializeOwned + Debug,
{
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => {}
        Err(kube::Error::Api(status)) if status.code == 404 => {}
        Err(e) => panic!("deleting {name}: {e}"),
    }
}
