//! Secret references: what a pod's `secrets.iomete.com/` annotations ask for, once parsed.
//!
//! A reference names *what* to fetch (a source kind, a store or configuration id, a key) and
//! never *where* from: nothing in it can choose an address, a namespace or a path outside its
//! store. [`annotations`] is the strict parser that builds these from attacker-controlled
//! annotation text; the name rules it applies live in [`crate::decision::names`].

use std::collections::BTreeSet;
use std::fmt;

use serde::Deserialize;

mod annotations;
pub use annotations::{ReferenceError, parse_annotations, parse_reference_list};

/// Every annotation this product reads or writes starts with this prefix.
pub const ANNOTATION_PREFIX: &str = "secrets.iomete.com/";
/// JSON array of env-var references (`envSecrets` in the platform API).
pub const ENV_SECRETS_ANNOTATION: &str = "secrets.iomete.com/env-secrets";
/// JSON array of Spark property references (`sparkConfSecrets` in the platform API).
pub const SPARK_CONF_SECRETS_ANNOTATION: &str = "secrets.iomete.com/spark-conf-secrets";
/// Comma-separated container names to inject into.
pub const CONTAINERS_ANNOTATION: &str = "secrets.iomete.com/containers";
/// Written by the webhook: digest of the references it injected, so re-invocation is a no-op.
pub const INJECTED_ANNOTATION: &str = "secrets.iomete.com/injected";
/// Written by the webhook: a JSON object, reference (`TYPE/id/key`) → version identifier of the
/// value injected (a store Secret's uid/resourceVersion, a Vault KV v2 version; never derived
/// from a value), read by `audit` to find pods holding a rotated secret.
pub const VERSIONS_ANNOTATION: &str = "secrets.iomete.com/versions";

/// What a broker-mode container's reference list is called in errors (it is the env var
/// `IOMETE_ENV_REFERENCES`, see [`crate::decision::delivery`]).
pub const REFERENCE_LIST: &str = "IOMETE_ENV_REFERENCES";

/// Largest annotation value accepted, in bytes.
pub const MAX_ANNOTATION_BYTES: usize = 64 * 1024;
/// Largest number of entries in one reference annotation.
pub const MAX_ENTRIES: usize = 256;

/// The store id that names the global store.
pub const GLOBAL_STORE_ID: &str = "global";
/// The store id that names the admin store.
pub const ADMIN_STORE_ID: &str = "admin";

/// Which kind of backend holds a secret. Read from a JSON string only (serde's derived reader
/// would also take `{"KUBERNETES": null}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(try_from = "String")]
pub enum SourceType {
    Kubernetes,
    Vault,
}

impl TryFrom<String> for SourceType {
    type Error = String;
    fn try_from(name: String) -> Result<Self, String> {
        match name.as_str() {
            "KUBERNETES" => Ok(SourceType::Kubernetes),
            "VAULT" => Ok(SourceType::Vault),
            other => Err(format!(
                "unknown variant `{other}`, expected `KUBERNETES` or `VAULT`"
            )),
        }
    }
}

impl fmt::Display for SourceType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SourceType::Kubernetes => "KUBERNETES",
            SourceType::Vault => "VAULT",
        })
    }
}

/// One of the Kubernetes secret stores, all kept in the store namespace.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KubernetesStore {
    /// `iomete-secret-store-{domain}`: readable only from that domain's namespaces.
    Domain(String),
    /// `iomete-secret-store`: readable from any domain or admin namespace.
    Global,
    /// `iomete-secret-store-admin`: readable only from admin namespaces.
    Admin,
}

impl KubernetesStore {
    pub(crate) fn from_id(id: &str) -> Self {
        match id {
            GLOBAL_STORE_ID => KubernetesStore::Global,
            ADMIN_STORE_ID => KubernetesStore::Admin,
            domain => KubernetesStore::Domain(domain.to_owned()),
        }
    }

    /// The id a reference uses for this store.
    pub fn id(&self) -> &str {
        match self {
            KubernetesStore::Domain(domain) => domain,
            KubernetesStore::Global => GLOBAL_STORE_ID,
            KubernetesStore::Admin => ADMIN_STORE_ID,
        }
    }
}

/// Where a secret lives: a store or a named configuration, never an address.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Source {
    Kubernetes(KubernetesStore),
    /// A named Vault configuration (resolved by the Vault backend, not by the reference).
    Vault(String),
}

impl Source {
    pub fn source_type(&self) -> SourceType {
        match self {
            Source::Kubernetes(_) => SourceType::Kubernetes,
            Source::Vault(_) => SourceType::Vault,
        }
    }

    /// The id as written in the reference.
    pub fn id(&self) -> &str {
        match self {
            Source::Kubernetes(store) => store.id(),
            Source::Vault(config) => config,
        }
    }
}

/// A secret to fetch: a key within a source.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SecretRef {
    pub source: Source,
    pub key: String,
}

impl fmt::Display for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}/{}",
            self.source.source_type(),
            self.source.id(),
            self.key
        )
    }
}

/// An env var to set from a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvSecret {
    pub env_name: String,
    pub secret: SecretRef,
}

/// A Spark property to set from a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SparkConfSecret {
    pub property: String,
    pub secret: SecretRef,
}

/// Everything the V2 annotations of one pod ask for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct References {
    pub env: Vec<EnvSecret>,
    pub spark_conf: Vec<SparkConfSecret>,
    /// `None`: every (non-init) container.
    pub containers: Option<Vec<String>>,
    /// The digest a previous invocation wrote, if any.
    pub injected_digest: Option<String>,
}

impl References {
    /// Whether any V2 reference annotation is present.
    pub fn has_v2(&self) -> bool {
        !self.env.is_empty() || !self.spark_conf.is_empty() || self.containers.is_some()
    }

    /// A stable digest of the references (never of values), written to the pod once injected.
    pub fn digest(&self) -> String {
        use fmt::Write as _;
        use sha2::{Digest, Sha256};
        let mut hasher = Sha256::new();
        // One buffer for every entry: this runs on every admission that carries references.
        let mut entry_text = String::new();
        let mut hash = |args: fmt::Arguments<'_>| {
            entry_text.clear();
            let _ = entry_text.write_fmt(args);
            hasher.update(entry_text.as_bytes());
        };
        for entry in &self.env {
            hash(format_args!("env\0{}\0{}\0", entry.env_name, entry.secret));
        }
        for entry in &self.spark_conf {
            hash(format_args!(
                "spark\0{}\0{}\0",
                entry.property, entry.secret
            ));
        }
        if let Some(containers) = &self.containers {
            hash(format_args!("containers\0{}\0", containers.join(",")));
        }
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut digest = String::with_capacity("sha256:".len() + 64);
        digest.push_str("sha256:");
        for byte in hasher.finalize() {
            digest.push(char::from(HEX[usize::from(byte >> 4)]));
            digest.push(char::from(HEX[usize::from(byte & 0x0f)]));
        }
        digest
    }
}

/// A container's reference list for broker mode, in the format [`parse_reference_list`] reads:
/// the same entries as the annotations, names and sources only, never a value.
pub fn write_reference_list(env: &[EnvSecret], spark_conf: &[SparkConfSecret]) -> String {
    fn entry(target: &str, secret: &SecretRef) -> serde_json::Value {
        serde_json::json!({
            "key": target,
            "secretObject": {
                "key": secret.key,
                "source": {"type": secret.source.source_type().to_string(), "id": secret.source.id()},
            },
        })
    }
    let mut list = serde_json::Map::new();
    if !env.is_empty() {
        let entries = env.iter().map(|e| entry(&e.env_name, &e.secret)).collect();
        list.insert("env-secrets".into(), serde_json::Value::Array(entries));
    }
    if !spark_conf.is_empty() {
        let entries = spark_conf
            .iter()
            .map(|e| entry(&e.property, &e.secret))
            .collect();
        list.insert(
            "spark-conf-secrets".into(),
            serde_json::Value::Array(entries),
        );
    }
    serde_json::Value::Object(list).to_string()
}

/// The distinct secrets a set of references needs, in a stable order.
pub fn distinct_secrets<'a>(refs: impl IntoIterator<Item = &'a SecretRef>) -> Vec<SecretRef> {
    refs.into_iter()
        .cloned()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

#[cfg(test)]
mod tests;
