//! Secret references: the strict parser for the `secrets.iomete.com/` pod annotations.
//!
//! Annotations are attacker-controlled input, so this module accepts only the documented shape:
//! known annotation keys, known JSON fields, valid names, bounded sizes, no duplicates. A parsed
//! reference names *what* to fetch (a source kind, a store or config id, a key) and never *where*
//! from: nothing in it can choose an address, a namespace or a path outside its store.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::Deserialize;

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

/// Largest annotation value accepted, in bytes.
pub const MAX_ANNOTATION_BYTES: usize = 64 * 1024;
/// Largest number of entries in one reference annotation.
pub const MAX_ENTRIES: usize = 256;
const MAX_ENV_NAME_LEN: usize = 256;
const MAX_SECRET_KEY_LEN: usize = 253;
const MAX_SPARK_PROPERTY_LEN: usize = 256;
const MAX_DNS_LABEL_LEN: usize = 63;

/// The store id that names the global store.
pub const GLOBAL_STORE_ID: &str = "global";
/// The store id that names the admin store.
pub const ADMIN_STORE_ID: &str = "admin";

/// A reference annotation could not be accepted; the message names the annotation and entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    #[error(
        "unknown annotation {0:?}: the {ANNOTATION_PREFIX} prefix only allows env-secrets, spark-conf-secrets, containers and injected"
    )]
    UnknownAnnotation(String),
    #[error(
        "annotation {annotation} is {size} bytes, more than the {MAX_ANNOTATION_BYTES} allowed"
    )]
    TooLarge {
        annotation: &'static str,
        size: usize,
    },
    #[error("annotation {annotation} is not a valid reference list: {reason}")]
    Malformed {
        annotation: &'static str,
        reason: String,
    },
    #[error("annotation {annotation} has {count} entries, more than the {MAX_ENTRIES} allowed")]
    TooManyEntries {
        annotation: &'static str,
        count: usize,
    },
    #[error("annotation {annotation} entry {index} ({name:?}): {problem}")]
    InvalidEntry {
        annotation: &'static str,
        index: usize,
        name: String,
        problem: String,
    },
    #[error("annotation {annotation} entry {index}: {name:?} is already set by entry {first}")]
    Duplicate {
        annotation: &'static str,
        index: usize,
        first: usize,
        name: String,
    },
    #[error("annotation {CONTAINERS_ANNOTATION}: {0}")]
    InvalidContainers(String),
}

/// Which kind of backend holds a secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
pub enum SourceType {
    #[serde(rename = "KUBERNETES")]
    Kubernetes,
    #[serde(rename = "VAULT")]
    Vault,
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
    fn from_id(id: &str) -> Self {
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

    /// The name of the Secret that backs this store.
    pub fn secret_name(&self) -> String {
        match self {
            KubernetesStore::Domain(domain) => format!("iomete-secret-store-{domain}"),
            KubernetesStore::Global => "iomete-secret-store".to_owned(),
            KubernetesStore::Admin => "iomete-secret-store-admin".to_owned(),
        }
    }

    /// Whether `name` is the name of some store Secret (so a watcher can drop every other Secret).
    pub fn is_store_secret_name(name: &str) -> bool {
        match name.strip_prefix("iomete-secret-store") {
            Some("") => true,
            Some(rest) => rest
                .strip_prefix('-')
                .is_some_and(|id| is_dns_label(id) && id != GLOBAL_STORE_ID),
            None => false,
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
        use sha2::{Digest, Sha256};
        let mut hasher = Sha256::new();
        for entry in &self.env {
            hasher.update(format!("env\0{}\0{}\0", entry.env_name, entry.secret));
        }
        for entry in &self.spark_conf {
            hasher.update(format!("spark\0{}\0{}\0", entry.property, entry.secret));
        }
        if let Some(containers) = &self.containers {
            hasher.update(format!("containers\0{}\0", containers.join(",")));
        }
        let digest = hasher.finalize();
        let hex: String = digest.iter().map(|byte| format!("{byte:02x}")).collect();
        format!("sha256:{hex}")
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntry {
    key: String,
    #[serde(rename = "secretObject")]
    secret_object: RawSecretObject,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSecretObject {
    key: String,
    source: RawSource,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSource {
    #[serde(rename = "type")]
    source_type: SourceType,
    id: String,
}

/// Parses the pod's annotations. Annotations outside the prefix are ignored.
pub fn parse_annotations(
    annotations: &BTreeMap<String, String>,
) -> Result<References, ReferenceError> {
    let mut references = References::default();
    for (name, value) in annotations {
        let Some(suffix) = name.strip_prefix(ANNOTATION_PREFIX) else {
            continue;
        };
        match suffix {
            "env-secrets" => {
                references.env = parse_entries(ENV_SECRETS_ANNOTATION, value, validate_env_name)?
                    .into_iter()
                    .map(|(env_name, secret)| EnvSecret { env_name, secret })
                    .collect();
            }
            "spark-conf-secrets" => {
                references.spark_conf = parse_entries(
                    SPARK_CONF_SECRETS_ANNOTATION,
                    value,
                    validate_spark_property,
                )?
                .into_iter()
                .map(|(property, secret)| SparkConfSecret { property, secret })
                .collect();
            }
            "containers" => references.containers = Some(parse_containers(value)?),
            "injected" => references.injected_digest = Some(value.clone()),
            _ => return Err(ReferenceError::UnknownAnnotation(name.clone())),
        }
    }
    Ok(references)
}

fn parse_entries(
    annotation: &'static str,
    value: &str,
    validate_target: fn(&str) -> Result<(), String>,
) -> Result<Vec<(String, SecretRef)>, ReferenceError> {
    if value.len() > MAX_ANNOTATION_BYTES {
        return Err(ReferenceError::TooLarge {
            annotation,
            size: value.len(),
        });
    }
    let raw: Vec<RawEntry> =
        serde_json::from_str(value).map_err(|error| ReferenceError::Malformed {
            annotation,
            reason: error.to_string(),
        })?;
    if raw.len() > MAX_ENTRIES {
        return Err(ReferenceError::TooManyEntries {
            annotation,
            count: raw.len(),
        });
    }
    let mut first_index_of: BTreeMap<String, usize> = BTreeMap::new();
    let mut parsed = Vec::with_capacity(raw.len());
    for (index, entry) in raw.into_iter().enumerate() {
        let invalid = |problem: String| ReferenceError::InvalidEntry {
            annotation,
            index,
            name: entry.key.clone(),
            problem,
        };
        validate_target(&entry.key).map_err(invalid)?;
        let RawSecretObject { key, source } = &entry.secret_object;
        validate_secret_key(key)
            .map_err(|problem| invalid(format!("secretObject.key: {problem}")))?;
        if !is_dns_label(&source.id) {
            return Err(invalid(format!(
                "secretObject.source.id {:?} is not a DNS label (lowercase letters, digits and '-', at most {MAX_DNS_LABEL_LEN} characters)",
                source.id
            )));
        }
        if let Some(&first) = first_index_of.get(&entry.key) {
            return Err(ReferenceError::Duplicate {
                annotation,
                index,
                first,
                name: entry.key,
            });
        }
        first_index_of.insert(entry.key.clone(), index);
        let source = match source.source_type {
            SourceType::Kubernetes => Source::Kubernetes(KubernetesStore::from_id(&source.id)),
            SourceType::Vault => Source::Vault(source.id.clone()),
        };
        let secret = SecretRef {
            source,
            key: key.clone(),
        };
        parsed.push((entry.key, secret));
    }
    Ok(parsed)
}

fn parse_containers(value: &str) -> Result<Vec<String>, ReferenceError> {
    if value.len() > MAX_ANNOTATION_BYTES {
        return Err(ReferenceError::InvalidContainers(format!(
            "{} bytes, more than the {MAX_ANNOTATION_BYTES} allowed",
            value.len()
        )));
    }
    let mut names: Vec<String> = Vec::new();
    for name in value.split(',').map(str::trim) {
        if !is_dns_label(name) {
            return Err(ReferenceError::InvalidContainers(format!(
                "{name:?} is not a container name (a DNS label); expected comma-separated names"
            )));
        }
        if names.iter().any(|seen| seen == name) {
            return Err(ReferenceError::InvalidContainers(format!(
                "container {name:?} is listed twice"
            )));
        }
        names.push(name.to_owned());
    }
    if names.len() > MAX_ENTRIES {
        return Err(ReferenceError::InvalidContainers(format!(
            "{} containers listed, more than the {MAX_ENTRIES} allowed",
            names.len()
        )));
    }
    Ok(names)
}

/// RFC 1123 label: what Kubernetes requires of namespace, container and (our) store ids.
pub fn is_dns_label(value: &str) -> bool {
    let bytes = value.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= MAX_DNS_LABEL_LEN
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes[0] != b'-'
        && bytes[bytes.len() - 1] != b'-'
}

/// The API server's rule for env var names (`IsEnvVarName`).
pub fn validate_env_name(name: &str) -> Result<(), String> {
    let valid_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.');
    let starts_with_digit = name.starts_with(|c: char| c.is_ascii_digit());
    if name.is_empty() || name.len() > MAX_ENV_NAME_LEN {
        return Err(format!(
            "env var name must be 1 to {MAX_ENV_NAME_LEN} characters"
        ));
    }
    if !name.chars().all(valid_char) || starts_with_digit {
        return Err(
            "not a valid env var name (letters, digits, '_', '-', '.'; not starting with a digit)"
                .to_owned(),
        );
    }
    Ok(())
}

/// The API server's rule for Secret keys (`IsConfigMapKey`).
pub fn validate_secret_key(key: &str) -> Result<(), String> {
    let valid_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.');
    if key.is_empty() || key.len() > MAX_SECRET_KEY_LEN {
        return Err(format!(
            "a Secret key must be 1 to {MAX_SECRET_KEY_LEN} characters"
        ));
    }
    if !key.chars().all(valid_char) {
        return Err(format!(
            "{key:?} has characters a Secret key cannot have (allowed: letters, digits, '-', '_', '.')"
        ));
    }
    if key == "." || key == ".." || key.starts_with("..") {
        return Err(format!("{key:?} is not a valid Secret key"));
    }
    Ok(())
}

/// Spark property names we accept: `spark.` followed by a conservative character set.
pub fn validate_spark_property(property: &str) -> Result<(), String> {
    let valid_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.');
    let rest = property.strip_prefix("spark.").unwrap_or("");
    if property.len() > MAX_SPARK_PROPERTY_LEN || rest.is_empty() || !rest.chars().all(valid_char) {
        return Err(format!(
            "not a Spark property name: must match ^spark\\.[A-Za-z0-9._-]+$ and be at most {MAX_SPARK_PROPERTY_LEN} characters"
        ));
    }
    Ok(())
}

/// The distinct secrets a set of references needs, in a stable order.
pub fn distinct_secrets<'a>(refs: impl IntoIterator<Item = &'a SecretRef>) -> Vec<SecretRef> {
    refs.into_iter()
        .cloned()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}
