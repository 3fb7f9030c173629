//! Secret references: the strict parser for the `secrets.iomete.com/` pod annotations.
//!
//! Annotations are attacker-controlled input, so this module accepts only the documented shape:
//! known annotation keys, known JSON fields, valid names, bounded sizes, no duplicates. A parsed
//! reference names *what* to fetch (a source kind, a store or config id, a key) and never *where*
//! from: nothing in it can choose an address, a namespace or a path outside its store.

use std::collections::{BTreeMap, BTreeSet, HashSet};
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
const MAX_VAULT_KEY_LEN: usize = 512;
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

/// A value read only from a JSON object. serde's derived readers also accept a struct written as
/// a list of its fields in order, a shape the annotation format does not allow.
struct ObjectOnly<T>(T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for ObjectOnly<T> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjectVisitor<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for ObjectVisitor<T> {
            type Value = T;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(serde::de::value::MapAccessDeserializer::new(map))
            }
        }
        deserializer
            .deserialize_map(ObjectVisitor(std::marker::PhantomData))
            .map(ObjectOnly)
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

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "an object {\"key\": ..., \"secretObject\": {...}}"
)]
struct RawEntry {
    key: String,
    #[serde(rename = "secretObject")]
    secret_object: ObjectOnly<RawSecretObject>,
}

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "an object {\"key\": ..., \"source\": {...}}"
)]
struct RawSecretObject {
    key: String,
    source: ObjectOnly<RawSource>,
}

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "an object {\"type\": \"KUBERNETES\" or \"VAULT\", \"id\": ...}"
)]
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
    let raw = parse_raw_entries(value)
        .map_err(|reason| ReferenceError::Malformed { annotation, reason })?;
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
        let ObjectOnly(RawSecretObject {
            key,
            source: ObjectOnly(source),
        }) = &entry.secret_object;
        let key_check = match source.source_type {
            SourceType::Kubernetes => validate_secret_key(key),
            SourceType::Vault => validate_vault_key(key),
        };
        key_check.map_err(|problem| invalid(format!("secretObject.key: {problem}")))?;
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

/// Parses the JSON list; a structural error inside an entry (unknown or duplicate field, wrong
/// type) is reported with that entry's index.
fn parse_raw_entries(value: &str) -> Result<Vec<RawEntry>, String> {
    use serde::de::{DeserializeSeed, Deserializer, SeqAccess, Visitor};
    use std::cell::Cell;

    /// Holds the index of the entry being read while inside the list.
    struct Entries<'a>(&'a Cell<Option<usize>>);

    impl<'de> DeserializeSeed<'de> for Entries<'_> {
        type Value = Vec<RawEntry>;
        fn deserialize<D: Deserializer<'de>>(
            self,
            deserializer: D,
        ) -> Result<Self::Value, D::Error> {
            deserializer.deserialize_seq(self)
        }
    }

    impl<'de> Visitor<'de> for Entries<'_> {
        type Value = Vec<RawEntry>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a sequence of references")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut entries = Vec::new();
            self.0.set(Some(0));
            while let Some(ObjectOnly(entry)) = seq.next_element()? {
                entries.push(entry);
                self.0.set(Some(entries.len()));
            }
            self.0.set(None);
            Ok(entries)
        }
    }

    let current = Cell::new(None);
    let mut deserializer = serde_json::Deserializer::from_str(value);
    Entries(&current)
        .deserialize(&mut deserializer)
        .and_then(|entries| deserializer.end().map(|()| entries))
        .map_err(|error| match current.get() {
            Some(index) => format!("entry {index}: {error}"),
            None => error.to_string(),
        })
}

fn parse_containers(value: &str) -> Result<Vec<String>, ReferenceError> {
    if value.len() > MAX_ANNOTATION_BYTES {
        return Err(ReferenceError::InvalidContainers(format!(
            "{} bytes, more than the {MAX_ANNOTATION_BYTES} allowed",
            value.len()
        )));
    }
    // Linear in the annotation's size: duplicates are found through a set, and reading stops
    // at the first name past the cap instead of splitting the whole value first.
    let mut names: Vec<String> = Vec::new();
    let mut seen: HashSet<&str> = HashSet::new();
    for name in value.split(',').map(str::trim) {
        if names.len() == MAX_ENTRIES {
            return Err(ReferenceError::InvalidContainers(format!(
                "at least {} containers listed, more than the {MAX_ENTRIES} allowed",
                MAX_ENTRIES + 1
            )));
        }
        if !is_dns_label(name) {
            return Err(ReferenceError::InvalidContainers(format!(
                "{name:?} is not a container name (a DNS label); expected comma-separated names"
            )));
        }
        if !seen.insert(name) {
            return Err(ReferenceError::InvalidContainers(format!(
                "container {name:?} is listed twice"
            )));
        }
        names.push(name.to_owned());
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

/// A Vault key: a secret path below the configuration's prefix (segments of letters, digits,
/// `-`, `_` and `.`, joined by `/`), optionally followed by `#field`. The charset keeps a key from
/// leaving the prefix (`..`), adding a query or fragment, or needing URL escaping.
pub fn validate_vault_key(key: &str) -> Result<(), String> {
    let valid_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.');
    if key.is_empty() || key.len() > MAX_VAULT_KEY_LEN {
        return Err(format!(
            "a Vault key must be 1 to {MAX_VAULT_KEY_LEN} characters"
        ));
    }
    let (path, field) = match key.split_once('#') {
        Some((path, field)) => (path, Some(field)),
        None => (key, None),
    };
    let segment_ok = |segment: &str| {
        !segment.is_empty() && segment != "." && segment != ".." && segment.chars().all(valid_char)
    };
    if !path.split('/').all(segment_ok) {
        return Err(format!(
            "{key:?} is not a Vault key: expected path segments of letters, digits, '-', '_' and '.' \
             joined by '/' (no empty, '.' or '..' segment), optionally followed by '#field'"
        ));
    }
    if let Some(field) = field
        && (field.is_empty() || !field.chars().all(valid_char))
    {
        return Err(format!(
            "{key:?} is not a Vault key: the field after '#' must be letters, digits, '-', '_' and '.'"
        ));
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

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;
    use serde_json::{Value, json};

    const ENV: &str = ENV_SECRETS_ANNOTATION;
    const SPARK: &str = SPARK_CONF_SECRETS_ANNOTATION;
    const CONTAINERS: &str = CONTAINERS_ANNOTATION;
    /// A valid entry; `@` in a table value stands for it.
    const VALID: &str =
        r#"{"key":"OK","secretObject":{"key":"ok","source":{"type":"KUBERNETES","id":"finance"}}}"#;

    fn annotations(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect()
    }

    fn entry(name: &str, source_type: &str, id: &str, key: &str) -> Value {
        json!({"key": name, "secretObject": {"key": key, "source": {"type": source_type, "id": id}}})
    }

    /// A reference list of KUBERNETES entries `(name, id, key)`.
    fn list(entries: &[(&str, &str, &str)]) -> String {
        let entries = entries
            .iter()
            .map(|(name, id, key)| entry(name, "KUBERNETES", id, key))
            .collect();
        Value::Array(entries).to_string()
    }

    fn domain(id: &str) -> Source {
        Source::Kubernetes(KubernetesStore::Domain(id.to_owned()))
    }
    fn global() -> Source {
        Source::Kubernetes(KubernetesStore::Global)
    }
    fn admin() -> Source {
        Source::Kubernetes(KubernetesStore::Admin)
    }
    fn vault(id: &str) -> Source {
        Source::Vault(id.to_owned())
    }
    fn secret(source: Source, key: &str) -> SecretRef {
        SecretRef {
            source,
            key: key.to_owned(),
        }
    }
    fn env(name: &str, source: Source, key: &str) -> EnvSecret {
        EnvSecret {
            env_name: name.to_owned(),
            secret: secret(source, key),
        }
    }
    fn spark(property: &str, source: Source, key: &str) -> SparkConfSecret {
        SparkConfSecret {
            property: property.to_owned(),
            secret: secret(source, key),
        }
    }
    fn refs(env: Vec<EnvSecret>) -> References {
        References {
            env,
            ..References::default()
        }
    }

    #[rstest]
    #[case::no_annotations(annotations(&[]), References::default())]
    #[case::outside_the_prefix_is_ignored(
        annotations(&[
            ("iomete.com/env-secrets", "not json"),
            ("secrets.iomete.com.evil/env-secrets", "not json"),
            ("x.secrets.iomete.com/env-secrets", "not json"),
            ("secrets.iomete.com", "not json"),
            ("kubectl.kubernetes.io/default-container", "main"),
        ]),
        References::default()
    )]
    #[case::domain_store(
        annotations(&[(ENV, r#"[{"key": "DB_PASSWORD", "secretObject": {"key": "db_password", "source": {"type": "KUBERNETES", "id": "finance"}}}]"#)]),
        refs(vec![env("DB_PASSWORD", domain("finance"), "db_password")])
    )]
    #[case::reserved_ids_and_order_kept(
        annotations(&[(ENV, &list(&[("Z", "global", "z"), ("A", "admin", "a"), ("M", "marketing-2", "m")]))]),
        refs(vec![env("Z", global(), "z"), env("A", admin(), "a"), env("M", domain("marketing-2"), "m")])
    )]
    #[case::vault_source(
        annotations(&[(ENV, &Value::Array(vec![entry("TOKEN", "VAULT", "vault-1", "token")]).to_string())]),
        refs(vec![env("TOKEN", vault("vault-1"), "token")])
    )]
    #[case::same_secret_for_two_vars(
        annotations(&[(ENV, &list(&[("A", "finance", "k"), ("B", "finance", "k")]))]),
        refs(vec![env("A", domain("finance"), "k"), env("B", domain("finance"), "k")])
    )]
    #[case::api_server_env_name_rule(
        annotations(&[(ENV, &list(&[("_a.b-C9", "finance", "k"), ("lower", "finance", "k"), ("x", "finance", "K.e_y-1")]))]),
        refs(vec![env("_a.b-C9", domain("finance"), "k"), env("lower", domain("finance"), "k"), env("x", domain("finance"), "K.e_y-1")])
    )]
    #[case::longest_names(
        annotations(&[(ENV, &list(&[(&"E".repeat(256), &"d".repeat(63), &"k".repeat(253))]))]),
        refs(vec![env(&"E".repeat(256), domain(&"d".repeat(63)), &"k".repeat(253))])
    )]
    #[case::whitespace_in_json(
        annotations(&[(ENV, "\n [ {\"secretObject\" : {\"source\": {\"id\": \"finance\", \"type\": \"KUBERNETES\"}, \"key\": \"k\"},\n \"key\": \"A\"} ] \n")]),
        refs(vec![env("A", domain("finance"), "k")])
    )]
    #[case::empty_list(annotations(&[(ENV, "[]")]), References::default())]
    #[case::spark_conf(
        annotations(&[(SPARK, &list(&[("spark.hadoop.fs.s3a.secret-key", "finance", "s3_secret"), ("spark.A_b", "global", "x")]))]),
        References {
            spark_conf: vec![spark("spark.hadoop.fs.s3a.secret-key", domain("finance"), "s3_secret"), spark("spark.A_b", global(), "x")],
            ..References::default()
        }
    )]
    #[case::spark_and_env_may_share_a_name(
        annotations(&[(ENV, &list(&[("spark.x", "finance", "k")])), (SPARK, &list(&[("spark.x", "finance", "k")]))]),
        References {
            env: vec![env("spark.x", domain("finance"), "k")],
            spark_conf: vec![spark("spark.x", domain("finance"), "k")],
            ..References::default()
        }
    )]
    #[case::containers_trimmed(
        annotations(&[(CONTAINERS, " main ,sidecar,init-1")]),
        References { containers: Some(vec!["main".into(), "sidecar".into(), "init-1".into()]), ..References::default() }
    )]
    #[case::injected_digest_read_back(
        annotations(&[(INJECTED_ANNOTATION, "sha256:abc")]),
        References { injected_digest: Some("sha256:abc".into()), ..References::default() }
    )]
    #[case::all_together(
        annotations(&[
            (ENV, &list(&[("A", "finance", "a")])),
            (CONTAINERS, "main"),
            (INJECTED_ANNOTATION, "sha256:x"),
            ("app.kubernetes.io/name", "spark"),
        ]),
        References {
            env: vec![env("A", domain("finance"), "a")],
            containers: Some(vec!["main".into()]),
            injected_digest: Some("sha256:x".into()),
            ..References::default()
        }
    )]
    fn accepted(#[case] annotations: BTreeMap<String, String>, #[case] expected: References) {
        assert_eq!(parse_annotations(&annotations), Ok(expected));
    }

    /// Each value is parsed as the only annotation `annotation`; the error must name that
    /// annotation and contain every fragment. `@` stands for a valid entry.
    #[rstest]
    // not a JSON array
    #[case::not_json(ENV, "DB_PASSWORD", &["expected value"])]
    #[case::empty_value(ENV, "", &["EOF"])]
    #[case::object(ENV, r#"{"key": "A"}"#, &["expected a sequence"])]
    #[case::string(ENV, r#""[]""#, &["expected a sequence"])]
    #[case::null(ENV, "null", &["expected a sequence"])]
    #[case::unterminated(ENV, "[@", &["EOF"])]
    #[case::trailing_data(ENV, "[@] []", &["trailing characters"])]
    // wrong JSON types
    #[case::entry_is_a_string(ENV, r#"[@, "A"]"#, &["entry 1", "invalid type: string"])]
    #[case::env_name_is_a_number(ENV, r#"[{"key": 1, "secretObject": {"key": "k", "source": {"type": "KUBERNETES", "id": "finance"}}}]"#, &["entry 0", "invalid type: integer"])]
    #[case::secret_key_is_null(ENV, r#"[{"key": "A", "secretObject": {"key": null, "source": {"type": "KUBERNETES", "id": "finance"}}}]"#, &["entry 0", "invalid type: null"])]
    #[case::id_is_a_list(ENV, r#"[@, @, {"key": "A", "secretObject": {"key": "k", "source": {"type": "KUBERNETES", "id": ["finance"]}}}]"#, &["entry 2", "invalid type: sequence"])]
    #[case::secret_object_is_a_string(ENV, r#"[{"key": "A", "secretObject": "finance/k"}]"#, &["entry 0", "invalid type: string"])]
    #[case::unknown_source_type(ENV, r#"[{"key": "A", "secretObject": {"key": "k", "source": {"type": "AWS", "id": "finance"}}}]"#, &["entry 0", "unknown variant `AWS`"])]
    #[case::entry_as_a_list(ENV, r#"[["A", ["k", ["KUBERNETES", "finance"]]]]"#, &["entry 0", "invalid type: sequence, expected a JSON object"])]
    #[case::secret_object_as_a_list(ENV, r#"[{"key": "A", "secretObject": ["k", {"type": "KUBERNETES", "id": "finance"}]}]"#, &["entry 0", "invalid type: sequence"])]
    #[case::source_as_a_list(ENV, r#"[{"key": "A", "secretObject": {"key": "k", "source": ["KUBERNETES", "finance"]}}]"#, &["entry 0", "invalid type: sequence"])]
    #[case::type_as_a_map(ENV, r#"[{"key": "A", "secretObject": {"key": "k", "source": {"type": {"KUBERNETES": null}, "id": "finance"}}}]"#, &["entry 0", "invalid type: map"])]
    #[case::source_type_is_case_sensitive(ENV, r#"[{"key": "A", "secretObject": {"key": "k", "source": {"type": "kubernetes", "id": "finance"}}}]"#, &["entry 0", "unknown variant `kubernetes`"])]
    // missing and unknown fields, at every level
    #[case::missing_secret_object(ENV, r#"[{"key": "A"}]"#, &["entry 0", "missing field `secretObject`"])]
    #[case::missing_source(ENV, r#"[{"key": "A", "secretObject": {"key": "k"}}]"#, &["entry 0", "missing field `source`"])]
    #[case::missing_id(ENV, r#"[{"key": "A", "secretObject": {"key": "k", "source": {"type": "KUBERNETES"}}}]"#, &["entry 0", "missing field `id`"])]
    #[case::unknown_entry_field(ENV, r#"[@, {"key": "A", "value": "x", "secretObject": {"key": "k", "source": {"type": "KUBERNETES", "id": "finance"}}}]"#, &["entry 1", "unknown field `value`"])]
    #[case::unknown_secret_object_field(ENV, r#"[{"key": "A", "secretObject": {"key": "k", "namespace": "kube-system", "source": {"type": "KUBERNETES", "id": "finance"}}}]"#, &["entry 0", "unknown field `namespace`"])]
    #[case::unknown_source_field(ENV, r#"[{"key": "A", "secretObject": {"key": "k", "source": {"type": "VAULT", "id": "v", "address": "http://evil"}}}]"#, &["entry 0", "unknown field `address`"])]
    #[case::camel_case_is_exact(ENV, r#"[{"key": "A", "secret_object": {"key": "k", "source": {"type": "KUBERNETES", "id": "finance"}}}]"#, &["entry 0", "unknown field `secret_object`"])]
    // duplicate JSON keys, at every level
    #[case::duplicate_entry_key(ENV, r#"[{"key": "A", "key": "B", "secretObject": {"key": "k", "source": {"type": "KUBERNETES", "id": "finance"}}}]"#, &["entry 0", "duplicate field `key`"])]
    #[case::duplicate_secret_key(ENV, r#"[{"key": "A", "secretObject": {"key": "k", "key": "other", "source": {"type": "KUBERNETES", "id": "finance"}}}]"#, &["entry 0", "duplicate field `key`"])]
    #[case::duplicate_id(ENV, r#"[{"key": "A", "secretObject": {"key": "k", "source": {"type": "KUBERNETES", "id": "finance", "id": "admin"}}}]"#, &["entry 0", "duplicate field `id`"])]
    // env var names (the API server's rule)
    #[case::env_name_empty(ENV, &list(&[("", "finance", "k")]), &["entry 0 (\"\")", "1 to 256 characters"])]
    #[case::env_name_starts_with_digit(ENV, &list(&[("OK", "finance", "k"), ("1PASSWORD", "finance", "k")]), &["entry 1 (\"1PASSWORD\")", "not a valid env var name"])]
    #[case::env_name_with_space(ENV, &list(&[("DB PASSWORD", "finance", "k")]), &["entry 0 (\"DB PASSWORD\")", "not a valid env var name"])]
    #[case::env_name_with_equals(ENV, &list(&[("A=B", "finance", "k")]), &["entry 0 (\"A=B\")", "not a valid env var name"])]
    #[case::env_name_with_dollar(ENV, &list(&[("$(HOME)", "finance", "k")]), &["entry 0 (\"$(HOME)\")", "not a valid env var name"])]
    #[case::env_name_not_ascii(ENV, &list(&[("PÄSSWORD", "finance", "k")]), &["entry 0 (\"PÄSSWORD\")", "not a valid env var name"])]
    #[case::env_name_too_long(ENV, &list(&[(&"E".repeat(257), "finance", "k")]), &["entry 0", "1 to 256 characters"])]
    // store and config ids (DNS labels)
    #[case::id_uppercase(ENV, &list(&[("A", "Finance", "k")]), &["entry 0 (\"A\")", "secretObject.source.id \"Finance\" is not a DNS label"])]
    #[case::id_empty(ENV, &list(&[("A", "", "k")]), &["entry 0 (\"A\")", "secretObject.source.id \"\" is not a DNS label"])]
    #[case::id_leading_dash(ENV, &list(&[("A", "-finance", "k")]), &["entry 0 (\"A\")", "is not a DNS label"])]
    #[case::id_trailing_dash(ENV, &list(&[("A", "finance-", "k")]), &["entry 0 (\"A\")", "is not a DNS label"])]
    #[case::id_underscore(ENV, &list(&[("A", "fin_ance", "k")]), &["entry 0 (\"A\")", "is not a DNS label"])]
    #[case::id_dotted(ENV, &list(&[("A", "kube-system.svc", "k")]), &["entry 0 (\"A\")", "is not a DNS label"])]
    #[case::id_path(ENV, &list(&[("A", "../admin", "k")]), &["entry 0 (\"A\")", "is not a DNS label"])]
    #[case::id_too_long(ENV, &list(&[("A", &"d".repeat(64), "k")]), &["entry 0 (\"A\")", "is not a DNS label"])]
    #[case::vault_id_too(ENV, &Value::Array(vec![entry("A", "VAULT", "https://vault", "k")]).to_string(), &["entry 0 (\"A\")", "is not a DNS label"])]
    // Secret keys (the API server's rule for Secret data keys)
    #[case::secret_key_empty(ENV, &list(&[("A", "finance", "")]), &["entry 0 (\"A\")", "secretObject.key", "1 to 253 characters"])]
    #[case::secret_key_slash(ENV, &list(&[("A", "finance", "a/b")]), &["entry 0 (\"A\")", "secretObject.key", "characters a Secret key cannot have"])]
    #[case::secret_key_space(ENV, &list(&[("A", "finance", "a b")]), &["entry 0 (\"A\")", "characters a Secret key cannot have"])]
    #[case::secret_key_dot(ENV, &list(&[("A", "finance", ".")]), &["entry 0 (\"A\")", "not a valid Secret key"])]
    #[case::secret_key_dot_dot(ENV, &list(&[("A", "finance", "..")]), &["entry 0 (\"A\")", "not a valid Secret key"])]
    #[case::secret_key_dot_dot_prefix(ENV, &list(&[("A", "finance", "..data")]), &["entry 0 (\"A\")", "not a valid Secret key"])]
    #[case::secret_key_too_long(ENV, &list(&[("A", "finance", &"k".repeat(254))]), &["entry 0 (\"A\")", "1 to 253 characters"])]
    // duplicates
    #[case::duplicate_env_name(ENV, &list(&[("A", "finance", "a"), ("B", "finance", "b"), ("A", "global", "c")]), &["entry 2: \"A\" is already set by entry 0"])]
    #[case::duplicate_spark_property(SPARK, &list(&[("spark.a", "finance", "a"), ("spark.a", "finance", "a")]), &["entry 1: \"spark.a\" is already set by entry 0"])]
    // Spark property names
    #[case::spark_prefix_only(SPARK, &list(&[("spark.", "finance", "k")]), &["entry 0 (\"spark.\")", "^spark\\.[A-Za-z0-9._-]+$"])]
    #[case::spark_no_dot(SPARK, &list(&[("spark", "finance", "k")]), &["entry 0 (\"spark\")", "not a Spark property name"])]
    #[case::spark_other_prefix(SPARK, &list(&[("spark.a", "finance", "k"), ("hadoop.x", "finance", "k")]), &["entry 1 (\"hadoop.x\")", "not a Spark property name"])]
    #[case::spark_uppercase_prefix(SPARK, &list(&[("SPARK.x", "finance", "k")]), &["entry 0 (\"SPARK.x\")", "not a Spark property name"])]
    #[case::spark_space(SPARK, &list(&[("spark.a b", "finance", "k")]), &["entry 0 (\"spark.a b\")", "not a Spark property name"])]
    #[case::spark_too_long(SPARK, &list(&[(&format!("spark.{}", "a".repeat(251)), "finance", "k")]), &["entry 0", "at most 256 characters"])]
    #[case::spark_bad_id(SPARK, &list(&[("spark.a", "Finance", "k")]), &["entry 0 (\"spark.a\")", "is not a DNS label"])]
    #[case::spark_unknown_field(SPARK, r#"[{"key": "spark.a", "secretObject": {"key": "k", "source": {"type": "KUBERNETES", "id": "finance"}}, "x": 1}]"#, &["entry 0", "unknown field `x`"])]
    // the containers annotation
    #[case::containers_empty(CONTAINERS, "", &["\"\" is not a container name"])]
    #[case::containers_empty_item(CONTAINERS, "main,,sidecar", &["\"\" is not a container name"])]
    #[case::containers_trailing_comma(CONTAINERS, "main,", &["\"\" is not a container name"])]
    #[case::containers_uppercase(CONTAINERS, "Main", &["\"Main\" is not a container name"])]
    #[case::containers_json(CONTAINERS, r#"["main"]"#, &["is not a container name"])]
    #[case::containers_twice(CONTAINERS, "main, sidecar, main", &["container \"main\" is listed twice"])]
    fn rejected(#[case] annotation: &str, #[case] value: &str, #[case] fragments: &[&str]) {
        let value = value.replace('@', VALID);
        let error = parse_annotations(&annotations(&[(annotation, &value)])).unwrap_err();
        let message = error.to_string();
        assert!(
            message.contains(&format!("annotation {annotation}")),
            "{message}"
        );
        for fragment in fragments {
            assert!(message.contains(fragment), "{fragment:?} not in {message}");
        }
    }

    #[rstest]
    #[case("secrets.iomete.com/env-secret")]
    #[case("secrets.iomete.com/envSecrets")]
    #[case("secrets.iomete.com/Env-Secrets")]
    #[case("secrets.iomete.com/")]
    #[case("secrets.iomete.com/env-secrets/x")]
    #[case("secrets.iomete.com/inject")]
    fn unknown_annotations_under_the_prefix_are_rejected(#[case] name: &str) {
        let error = parse_annotations(&annotations(&[(name, "[]"), (ENV, "[]")])).unwrap_err();
        assert_eq!(error, ReferenceError::UnknownAnnotation(name.to_owned()));
        assert!(error.to_string().contains(&format!("{name:?}")), "{error}");
    }

    #[test]
    fn an_invalid_annotation_fails_the_whole_set() {
        let error = parse_annotations(&annotations(&[
            (ENV, &list(&[("A", "finance", "a")])),
            (CONTAINERS, "main,Main"),
        ]))
        .unwrap_err();
        assert!(
            matches!(error, ReferenceError::InvalidContainers(_)),
            "{error}"
        );
    }

    /// A reference list padded with whitespace to exactly `size` bytes.
    fn padded(size: usize) -> String {
        format!("[{}]", " ".repeat(size - 2))
    }

    #[rstest]
    #[case(ENV)]
    #[case(SPARK)]
    fn values_up_to_64_kib_are_read_and_larger_ones_rejected(#[case] annotation: &str) {
        assert_eq!(
            parse_annotations(&annotations(&[(annotation, &padded(MAX_ANNOTATION_BYTES))])),
            Ok(References::default())
        );
        let error = parse_annotations(&annotations(&[(
            annotation,
            &padded(MAX_ANNOTATION_BYTES + 1),
        )]))
        .unwrap_err();
        assert_eq!(
            error,
            ReferenceError::TooLarge {
                annotation: if annotation == ENV { ENV } else { SPARK },
                size: 65537,
            }
        );
        assert_eq!(
            error.to_string(),
            format!("annotation {annotation} is 65537 bytes, more than the 65536 allowed")
        );
    }

    #[test]
    fn containers_over_64_kib_are_rejected() {
        let value = format!("main,{}", " ".repeat(MAX_ANNOTATION_BYTES));
        let error = parse_annotations(&annotations(&[(CONTAINERS, &value)])).unwrap_err();
        let message = error.to_string();
        assert!(message.contains(CONTAINERS), "{message}");
        assert!(message.contains("65541 bytes"), "{message}");
    }

    fn numbered(count: usize) -> String {
        let names: Vec<String> = (0..count).map(|i| format!("VAR_{i}")).collect();
        let entries: Vec<(&str, &str, &str)> = names
            .iter()
            .map(|name| (name.as_str(), "finance", "k"))
            .collect();
        list(&entries)
    }

    #[test]
    fn up_to_256_entries_are_read_and_257_rejected() {
        let parsed = parse_annotations(&annotations(&[(ENV, &numbered(256))])).unwrap();
        assert_eq!(parsed.env.len(), 256);
        assert_eq!(parsed.env[255].env_name, "VAR_255");
        let error = parse_annotations(&annotations(&[(ENV, &numbered(257))])).unwrap_err();
        assert_eq!(
            error,
            ReferenceError::TooManyEntries {
                annotation: ENV,
                count: 257
            }
        );
        assert!(error.to_string().contains(ENV), "{error}");
    }

    #[test]
    fn up_to_256_containers_are_read_and_257_rejected() {
        let names = |count: usize| {
            (0..count)
                .map(|i| format!("c{i}"))
                .collect::<Vec<_>>()
                .join(",")
        };
        let parsed = parse_annotations(&annotations(&[(CONTAINERS, &names(256))])).unwrap();
        assert_eq!(parsed.containers.map(|c| c.len()), Some(256));
        let error = parse_annotations(&annotations(&[(CONTAINERS, &names(257))])).unwrap_err();
        assert!(error.to_string().contains("257 containers"), "{error}");
    }

    /// Reading stops at the first name past the cap: what follows it (here nearly 10,000 more names
    /// and an invalid one at the very end) is never looked at, so a 64 KiB list costs no more
    /// than 257 names.
    #[test]
    fn container_names_past_the_cap_are_not_read() {
        let mut value = (0..10_000)
            .map(|i| format!("c{i}"))
            .collect::<Vec<_>>()
            .join(",");
        value.push_str(",Not_A_Name");
        let error = parse_annotations(&annotations(&[(CONTAINERS, &value)])).unwrap_err();
        let message = error.to_string();
        assert!(message.contains("257 containers"), "{message}");
        assert!(!message.contains("Not_A_Name"), "{message}");
    }

    #[rstest]
    #[case("iomete-secret-store", true)]
    #[case("iomete-secret-store-admin", true)]
    #[case("iomete-secret-store-finance", true)]
    #[case("iomete-secret-store-marketing-2", true)]
    #[case("iomete-secret-store-global", false)]
    #[case("iomete-secret-store-", false)]
    #[case("iomete-secret-store-Bad", false)]
    #[case("iomete-secret-store--x", false)]
    #[case("iomete-secret-store-a.b", false)]
    #[case("iomete-secret-storefinance", false)]
    #[case("iomete-secret-stor", false)]
    #[case("x-iomete-secret-store", false)]
    #[case("other", false)]
    #[case("", false)]
    fn store_secret_names(#[case] name: &str, #[case] expected: bool) {
        assert_eq!(KubernetesStore::is_store_secret_name(name), expected);
    }

    #[rstest]
    #[case(KubernetesStore::Global, "global", "iomete-secret-store")]
    #[case(KubernetesStore::Admin, "admin", "iomete-secret-store-admin")]
    #[case(KubernetesStore::Domain("finance".into()), "finance", "iomete-secret-store-finance")]
    fn stores_name_their_secret(
        #[case] store: KubernetesStore,
        #[case] id: &str,
        #[case] secret_name: &str,
    ) {
        assert_eq!(KubernetesStore::from_id(id), store);
        assert_eq!(store.id(), id);
        assert_eq!(store.secret_name(), secret_name);
        assert!(KubernetesStore::is_store_secret_name(&store.secret_name()));
    }

    #[test]
    fn secret_refs_display_type_id_and_key() {
        assert_eq!(
            secret(domain("finance"), "db").to_string(),
            "KUBERNETES/finance/db"
        );
        assert_eq!(secret(vault("v1"), "db").to_string(), "VAULT/v1/db");
        assert_eq!(secret(global(), "db").to_string(), "KUBERNETES/global/db");
    }

    fn base() -> References {
        References {
            env: vec![env("A", domain("finance"), "a"), env("B", global(), "b")],
            spark_conf: vec![spark("spark.x", domain("finance"), "x")],
            containers: Some(vec!["main".into(), "init".into()]),
            injected_digest: None,
        }
    }

    #[test]
    fn digest_is_stable_and_ignores_the_previous_digest() {
        let digest = base().digest();
        assert_eq!(base().digest(), digest);
        let hex = digest.strip_prefix("sha256:").unwrap();
        assert_eq!(hex.len(), 64);
        assert!(
            hex.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
        let reinvoked = References {
            injected_digest: Some(digest.clone()),
            ..base()
        };
        assert_eq!(reinvoked.digest(), digest);
    }

    #[test]
    fn digest_does_not_depend_on_json_formatting_or_other_annotations() {
        let compact = annotations(&[(ENV, &list(&[("A", "finance", "a")]))]);
        let spaced = annotations(&[
            (
                ENV,
                r#" [ { "secretObject": { "source": { "id": "finance", "type": "KUBERNETES" }, "key": "a" }, "key": "A" } ] "#,
            ),
            ("app", "x"),
            (INJECTED_ANNOTATION, "sha256:old"),
        ]);
        assert_eq!(
            parse_annotations(&compact).unwrap().digest(),
            parse_annotations(&spaced).unwrap().digest()
        );
    }

    #[rstest]
    #[case::env_name(|r: &mut References| r.env[0].env_name = "A2".into())]
    #[case::secret_key(|r: &mut References| r.env[0].secret.key = "a2".into())]
    #[case::store_id(|r: &mut References| r.env[0].secret.source = domain("marketing"))]
    #[case::global_vs_admin(|r: &mut References| r.env[1].secret.source = admin())]
    #[case::source_type(|r: &mut References| r.env[0].secret.source = vault("finance"))]
    #[case::entry_removed(|r: &mut References| { r.env.pop(); })]
    #[case::entry_added(|r: &mut References| r.env.push(env("C", global(), "c")))]
    #[case::spark_property(|r: &mut References| r.spark_conf[0].property = "spark.y".into())]
    #[case::spark_removed(|r: &mut References| r.spark_conf.clear())]
    #[case::env_moved_to_spark(|r: &mut References| {
        let moved = r.env.remove(0);
        r.spark_conf.push(spark(&moved.env_name, moved.secret.source, &moved.secret.key));
    })]
    #[case::containers_none(|r: &mut References| r.containers = None)]
    #[case::containers_fewer(|r: &mut References| r.containers = Some(vec!["main".into()]))]
    #[case::containers_other(|r: &mut References| r.containers = Some(vec!["main".into(), "side".into()]))]
    fn digest_changes_with_every_reference_field(#[case] change: fn(&mut References)) {
        let mut changed = base();
        change(&mut changed);
        assert_ne!(changed, base());
        assert_ne!(changed.digest(), base().digest());
    }

    #[test]
    fn has_v2_is_any_reference_annotation() {
        assert!(!References::default().has_v2());
        assert!(
            !References {
                injected_digest: Some("sha256:x".into()),
                ..References::default()
            }
            .has_v2()
        );
        assert!(refs(vec![env("A", global(), "a")]).has_v2());
        assert!(
            References {
                containers: Some(vec!["main".into()]),
                ..References::default()
            }
            .has_v2()
        );
        assert!(
            References {
                spark_conf: vec![spark("spark.a", global(), "a")],
                ..References::default()
            }
            .has_v2()
        );
    }

    #[test]
    fn distinct_secrets_are_deduplicated_and_sorted() {
        let b = secret(domain("finance"), "b");
        let a = secret(domain("finance"), "a");
        let g = secret(global(), "a");
        assert_eq!(
            distinct_secrets([&b, &a, &b, &g, &a]),
            vec![a.clone(), b.clone(), g.clone()]
        );
    }
}

#[cfg(test)]
mod vault_key_tests {
    use super::validate_vault_key;
    use rstest::rstest;

    #[rstest]
    #[case::plain("db-password", true)]
    #[case::nested("team/db/password", true)]
    #[case::field("db#username", true)]
    #[case::nested_field("team/db#user.name", true)]
    #[case::dots_inside("a..b/c.d", true)]
    #[case::empty("", false)]
    #[case::parent_segment("../admin/token", false)]
    #[case::parent_in_middle("team/../admin", false)]
    #[case::dot_segment("./db", false)]
    #[case::leading_slash("/db", false)]
    #[case::trailing_slash("db/", false)]
    #[case::double_slash("a//b", false)]
    #[case::empty_field("db#", false)]
    #[case::two_fields("db#a#b", false)]
    #[case::query("db?version=1", false)]
    #[case::percent("db%2F..", false)]
    #[case::space("db password", false)]
    #[case::backslash("a\\b", false)]
    #[case::unicode("pässword", false)]
    #[case::too_long(&"a".repeat(513), false)]
    fn vault_keys(#[case] key: &str, #[case] valid: bool) {
        assert_eq!(validate_vault_key(key).is_ok(), valid, "{key:?}");
    }
}
