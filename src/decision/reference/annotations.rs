//! The strict parser for the reference annotations. Annotations are attacker-controlled input,
//! so it accepts only the documented shape: known annotation keys, known JSON fields, valid
//! names, bounded sizes, no duplicates.

use std::collections::{BTreeMap, HashSet};
use std::fmt;

use serde::Deserialize;

use super::{
    ANNOTATION_PREFIX, CONTAINERS_ANNOTATION, ENV_SECRETS_ANNOTATION, EnvSecret, KubernetesStore,
    MAX_ANNOTATION_BYTES, MAX_ENTRIES, References, SPARK_CONF_SECRETS_ANNOTATION, SecretRef,
    Source, SourceType, SparkConfSecret,
};
use crate::decision::names::{
    MAX_DNS_LABEL_LEN, is_dns_label, validate_env_name, validate_secret_key,
    validate_spark_property, validate_vault_key,
};

/// A reference annotation could not be accepted; the message names the annotation and entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    #[error(
        "unknown annotation {0:?}: the {ANNOTATION_PREFIX} prefix only allows env-secrets, spark-conf-secrets, containers, delivery, injected and versions"
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
            // Written by the webhook beside `injected` (version identifiers, read only by the
            // admin tools' audit): never an input to the decision.
            "versions" => {}
            // Read by `delivery::choose`, which names a bad value precisely.
            "delivery" => {}
            _ => return Err(ReferenceError::UnknownAnnotation(name.clone())),
        }
    }
    Ok(references)
}

/// Parses a container's reference list (the broker mode's `IOMETE_ENV_REFERENCES`, written by
/// [`super::write_reference_list`]): `{"env-secrets": [...], "spark-conf-secrets": [...]}`, each
/// list in its annotation's format and held to the same rules. The broker reads it from the pod
/// spec, where anyone who can create the pod could have written it, so it is parsed as strictly.
pub fn parse_reference_list(value: &str) -> Result<References, ReferenceError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct RawList<'a> {
        #[serde(default, borrow, rename = "env-secrets")]
        env_secrets: Option<&'a serde_json::value::RawValue>,
        #[serde(default, borrow, rename = "spark-conf-secrets")]
        spark_conf_secrets: Option<&'a serde_json::value::RawValue>,
    }
    let malformed = |reason: String| ReferenceError::Malformed {
        annotation: super::REFERENCE_LIST,
        reason,
    };
    if value.len() > 2 * MAX_ANNOTATION_BYTES {
        return Err(ReferenceError::TooLarge {
            annotation: super::REFERENCE_LIST,
            size: value.len(),
        });
    }
    let ObjectOnly(raw) = serde_json::from_str::<ObjectOnly<RawList<'_>>>(value)
        .map_err(|error| malformed(error.to_string()))?;
    let mut references = References::default();
    if let Some(list) = raw.env_secrets {
        references.env = parse_entries(ENV_SECRETS_ANNOTATION, list.get(), validate_env_name)?
            .into_iter()
            .map(|(env_name, secret)| EnvSecret { env_name, secret })
            .collect();
    }
    if let Some(list) = raw.spark_conf_secrets {
        references.spark_conf = parse_entries(
            SPARK_CONF_SECRETS_ANNOTATION,
            list.get(),
            validate_spark_property,
        )?
        .into_iter()
        .map(|(property, secret)| SparkConfSecret { property, secret })
        .collect();
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
