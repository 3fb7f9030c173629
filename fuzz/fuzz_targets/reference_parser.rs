//! Fuzz target: the strict reference parser, pod annotations → references.
//!
//! Input: segments separated by the byte 0xFF (never part of UTF-8 text); the first byte of each
//! segment picks the annotation name from [`NAMES`], the rest is its value (lossily decoded).
//! That keeps the reference JSON itself raw, so libFuzzer's mutations work on the text the
//! attacker writes.
//!
//! Invariants, beyond "no panic": the parse is deterministic; everything accepted obeys the
//! documented syntax (README, "Strict parsing") and says exactly what a plain JSON reading of the
//! annotation says, with each KUBERNETES id mapped to the one store the README's table gives it;
//! every rejection names its annotation and is justified by the input.
#![no_main]

use std::collections::{BTreeMap, HashSet};
use std::fmt;

use iomete_secrets_webhook::backends::kubernetes::{is_store_secret_name, store_secret_name};
use iomete_secrets_webhook::decision::reference::{
    self, KubernetesStore, ReferenceError, References, SecretRef, Source,
};
use iomete_secrets_webhook_fuzz::names::{
    is_dns_label, is_env_name, is_secret_key, is_spark_property,
};
use libfuzzer_sys::fuzz_target;
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Value, json};

const ENV: &str = "secrets.iomete.com/env-secrets";
const SPARK: &str = "secrets.iomete.com/spark-conf-secrets";
const CONTAINERS: &str = "secrets.iomete.com/containers";
const INJECTED: &str = "secrets.iomete.com/injected";
/// Written by the webhook beside `injected` (version identifiers); accepted and ignored.
const VERSIONS: &str = "secrets.iomete.com/versions";
const MAX_VALUE_BYTES: usize = 64 * 1024;
const MAX_ENTRIES: usize = 256;

/// Annotation names a segment can pick: the five known ones, near misses under the prefix (which
/// must be rejected) and names outside it (which must be ignored).
const NAMES: &[&str] = &[
    ENV,
    SPARK,
    CONTAINERS,
    INJECTED,
    VERSIONS,
    "secrets.iomete.com/env-secret",
    "secrets.iomete.com/Env-Secrets",
    "secrets.iomete.com/",
    "secrets.iomete.com/env-secrets/x",
    "secret.iomete.com/env-secrets",
    "kubectl.kubernetes.io/last-applied-configuration",
];

fuzz_target!(|data: &[u8]| {
    let annotations = annotations(data);
    let parsed = reference::parse_annotations(&annotations);
    assert_eq!(
        parsed,
        reference::parse_annotations(&annotations),
        "the parse is not deterministic"
    );
    match parsed {
        Ok(references) => check_accepted(&annotations, &references),
        Err(error) => check_rejected(&annotations, &error),
    }
});

fn annotations(data: &[u8]) -> BTreeMap<String, String> {
    data.split(|&b| b == 0xFF)
        .filter_map(|segment| {
            let (&selector, value) = segment.split_first()?;
            let name = NAMES[usize::from(selector) % NAMES.len()];
            Some((name.to_owned(), String::from_utf8_lossy(value).into_owned()))
        })
        .collect()
}

/// The annotation's value read as plain JSON, the way a person reads the README.
fn loose_entries(annotations: &BTreeMap<String, String>, name: &str) -> Option<Vec<Value>> {
    let text = annotations.get(name)?;
    let value: Value = serde_json::from_str(text).ok()?;
    value.as_array().cloned()
}

fn check_accepted(annotations: &BTreeMap<String, String>, references: &References) {
    for name in annotations.keys() {
        assert!(
            !name.starts_with("secrets.iomete.com/")
                || [ENV, SPARK, CONTAINERS, INJECTED, VERSIONS].contains(&name.as_str()),
            "unknown annotation {name:?} was accepted"
        );
    }
    for name in [ENV, SPARK, CONTAINERS] {
        if let Some(value) = annotations.get(name) {
            assert!(
                value.len() <= MAX_VALUE_BYTES,
                "{name}: {} bytes accepted",
                value.len()
            );
        }
    }

    let env: Vec<(&str, &SecretRef)> = references
        .env
        .iter()
        .map(|entry| (entry.env_name.as_str(), &entry.secret))
        .collect();
    let spark: Vec<(&str, &SecretRef)> = references
        .spark_conf
        .iter()
        .map(|entry| (entry.property.as_str(), &entry.secret))
        .collect();
    check_entries(annotations, ENV, &env, is_env_name);
    check_entries(annotations, SPARK, &spark, is_spark_property);

    match (annotations.get(CONTAINERS), &references.containers) {
        (None, None) => {}
        (Some(value), Some(names)) => {
            assert!(names.len() <= MAX_ENTRIES);
            let listed: Vec<&str> = value.split(',').map(str::trim).collect();
            assert_eq!(
                listed, *names,
                "containers differ from the annotation's list"
            );
            for (index, name) in names.iter().enumerate() {
                assert!(is_dns_label(name), "container {name:?} accepted");
                assert!(!names[..index].contains(name), "container {name:?} twice");
            }
        }
        (annotation, parsed) => panic!("containers annotation {annotation:?} parsed as {parsed:?}"),
    }
    assert_eq!(
        references.injected_digest.as_ref(),
        annotations.get(INJECTED)
    );
    assert_eq!(
        references.has_v2(),
        !references.env.is_empty()
            || !references.spark_conf.is_empty()
            || references.containers.is_some()
    );

    let digest = references.digest();
    let hex = digest.strip_prefix("sha256:").expect("a sha256: digest");
    assert!(
        hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    );
}

/// One reference annotation: every accepted entry is valid and is exactly the plain JSON entry at
/// the same position, and no target is set twice.
fn check_entries(
    annotations: &BTreeMap<String, String>,
    annotation: &str,
    parsed: &[(&str, &SecretRef)],
    valid_target: fn(&str) -> bool,
) {
    let Some(loose) = loose_entries(annotations, annotation) else {
        assert!(
            parsed.is_empty() && !annotations.contains_key(annotation),
            "{annotation}: accepted entries from a value that is not a JSON list"
        );
        return;
    };
    assert!(
        loose.len() <= MAX_ENTRIES,
        "{annotation}: {} entries accepted",
        loose.len()
    );
    assert_eq!(
        loose.len(),
        parsed.len(),
        "{annotation}: entry count differs from the JSON"
    );
    for (index, ((target, secret), entry)) in parsed.iter().zip(&loose).enumerate() {
        assert!(
            valid_target(target),
            "{annotation} entry {index}: target {target:?} accepted"
        );
        assert!(
            !parsed[..index].iter().any(|(other, _)| other == target),
            "{annotation}: {target:?} accepted twice"
        );
        let read = read_entry(entry)
            .unwrap_or_else(|| panic!("{annotation} entry {index} accepted: {entry}"));
        assert!(
            read.documented || SERDE_SHAPES_ACCEPTED,
            "{annotation} entry {index} accepted in an undocumented shape: {entry}"
        );
        assert_eq!(read.target, *target);
        assert_eq!(read.key, secret.key);
        let id = read.id.as_str().expect("a string id");
        assert!(
            is_dns_label(id),
            "{annotation} entry {index}: id {id:?} accepted"
        );
        assert_eq!(secret.source.id(), id);
        match &secret.source {
            Source::Kubernetes(store) => {
                assert_eq!(read.source_type, "KUBERNETES");
                assert!(
                    is_secret_key(&secret.key),
                    "Secret key {:?} accepted",
                    secret.key
                );
                check_store(id, store);
            }
            // Vault keys and configurations are being defined by the Vault backend's work; only
            // the source type is checked here.
            Source::Vault(_) => assert_eq!(read.source_type, "VAULT"),
        }
    }
}

/// Whether the webhook's parser may take, besides the documented shape, the shapes serde's derived
/// readers also take (an object as the JSON array of its fields in order, `"type"` as
/// `{"KUBERNETES": null}`). Found by this target and fixed: the parser refuses them, and the
/// seeds `array-form` and `type-as-map` check it.
const SERDE_SHAPES_ACCEPTED: bool = false;

/// One entry as a reader of the JSON sees it, and whether it had the documented shape.
struct Entry {
    target: Value,
    key: Value,
    source_type: Value,
    id: Value,
    documented: bool,
}

/// Reads an entry in the documented shape or in serde's alternative shapes; `None` when it is
/// neither.
fn read_entry(entry: &Value) -> Option<Entry> {
    let (target, object, outer) = fields(entry, ["key", "secretObject"])?;
    let (key, source, middle) = fields(object, ["key", "source"])?;
    let (source_type, id, inner) = fields(source, ["type", "id"])?;
    let (source_type, plain_type) = match source_type {
        Value::Object(variant) if variant.len() == 1 && variant.values().all(Value::is_null) => {
            (Value::String(variant.keys().next()?.clone()), false)
        }
        other => (other.clone(), true),
    };
    Some(Entry {
        target: target.clone(),
        key: key.clone(),
        source_type,
        id: id.clone(),
        documented: outer && middle && inner && plain_type,
    })
}

/// The two fields of a two-field object: by name, or (serde's array form) by position.
fn fields<'v>(value: &'v Value, names: [&str; 2]) -> Option<(&'v Value, &'v Value, bool)> {
    match value {
        Value::Object(object) if object.len() == 2 => {
            Some((object.get(names[0])?, object.get(names[1])?, true))
        }
        Value::Array(items) if items.len() == 2 => Some((&items[0], &items[1], false)),
        _ => None,
    }
}

/// The id picks one of the fixed stores, exactly as the README's table says, and nothing else.
fn check_store(id: &str, store: &KubernetesStore) {
    let (expected, secret) = match id {
        "global" => (KubernetesStore::Global, "iomete-secret-store".to_owned()),
        "admin" => (
            KubernetesStore::Admin,
            "iomete-secret-store-admin".to_owned(),
        ),
        domain => (
            KubernetesStore::Domain(domain.to_owned()),
            format!("iomete-secret-store-{domain}"),
        ),
    };
    assert_eq!(*store, expected, "id {id:?}");
    assert_eq!(store_secret_name(store), secret);
    assert!(is_store_secret_name(&secret));
}

/// Whether the parser should take the entry: an accepted shape with strings where strings go
/// and a known source type.
fn well_formed(entry: &Value) -> bool {
    read_entry(entry).is_some_and(|read| {
        (read.documented || SERDE_SHAPES_ACCEPTED)
            && read.target.is_string()
            && read.key.is_string()
            && read.id.is_string()
            && (read.source_type == "KUBERNETES" || read.source_type == "VAULT")
    })
}

/// Whether some JSON object in `text` repeats a key (which a plain `Value` silently collapses).
fn has_duplicate_keys(text: &str) -> bool {
    serde_json::from_str::<Value>(text).is_ok()
        && serde_json::from_str::<NoDuplicateKeys>(text).is_err()
}

/// Deserializes any JSON, failing on the first object that repeats a key.
struct NoDuplicateKeys;

impl<'de> Deserialize<'de> for NoDuplicateKeys {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(NoDuplicateKeys)
    }
}

impl<'de> Visitor<'de> for NoDuplicateKeys {
    type Value = NoDuplicateKeys;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self, E> {
        Ok(self)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self, E> {
        Ok(self)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self, E> {
        Ok(self)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self, E> {
        Ok(self)
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self, E> {
        Ok(self)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self, E> {
        Ok(self)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self, A::Error> {
        while seq.next_element::<NoDuplicateKeys>()?.is_some() {}
        Ok(self)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self, A::Error> {
        let mut seen = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if !seen.insert(key) {
                return Err(de::Error::custom("duplicate key"));
            }
            map.next_value::<NoDuplicateKeys>()?;
        }
        Ok(self)
    }
}

/// Every rejection names its annotation, and the input really has the problem it names.
fn check_rejected(annotations: &BTreeMap<String, String>, error: &ReferenceError) {
    let message = error.to_string();
    assert!(!message.is_empty());
    match error {
        ReferenceError::UnknownAnnotation(name) => {
            assert!(annotations.contains_key(name), "{message}");
            assert!(name.starts_with("secrets.iomete.com/"), "{message}");
            assert!(
                ![ENV, SPARK, CONTAINERS, INJECTED, VERSIONS].contains(&name.as_str()),
                "{message}"
            );
            assert!(message.contains(&format!("{name:?}")), "{message}");
        }
        ReferenceError::TooLarge { annotation, size } => {
            assert!(
                message.contains(&format!("annotation {annotation}")),
                "{message}"
            );
            assert_eq!(annotations.get(*annotation).map(String::len), Some(*size));
            assert!(*size > MAX_VALUE_BYTES, "{message}");
        }
        ReferenceError::Malformed { annotation, .. } => {
            assert!(
                message.contains(&format!("annotation {annotation}")),
                "{message}"
            );
            let text = annotations
                .get(*annotation)
                .expect("the annotation it names");
            let justified = match loose_entries(annotations, annotation) {
                None => true,
                Some(entries) => !entries.iter().all(well_formed) || has_duplicate_keys(text),
            };
            assert!(justified, "{message}: but the list is well formed");
        }
        ReferenceError::TooManyEntries { annotation, count } => {
            assert!(
                message.contains(&format!("annotation {annotation}")),
                "{message}"
            );
            let loose = loose_entries(annotations, annotation).expect("a JSON list");
            assert_eq!(loose.len(), *count);
            assert!(*count > MAX_ENTRIES, "{message}");
        }
        ReferenceError::InvalidEntry {
            annotation,
            index,
            name,
            ..
        } => {
            assert!(
                message.contains(&format!("annotation {annotation} entry {index}")),
                "{message}"
            );
            let loose = loose_entries(annotations, annotation).expect("a JSON list");
            let entry = read_entry(&loose[*index]).expect("an entry the parser could read");
            assert_eq!(entry.target, **name, "{message}");
            let valid_target = if *annotation == ENV {
                is_env_name
            } else {
                is_spark_property
            };
            let id_ok = entry.id.as_str().is_some_and(is_dns_label);
            let key_ok = entry.key.as_str().is_some_and(is_secret_key);
            // Vault keys follow the Vault backend's own syntax, not checked here.
            let is_vault = entry.source_type == "VAULT";
            assert!(
                !valid_target(name) || !id_ok || !key_ok || is_vault,
                "{message}: but entry {index} is valid"
            );
        }
        ReferenceError::Duplicate {
            annotation,
            index,
            first,
            name,
        } => {
            assert!(
                message.contains(&format!("annotation {annotation} entry {index}")),
                "{message}"
            );
            let loose = loose_entries(annotations, annotation).expect("a JSON list");
            assert!(first < index, "{message}");
            let target = |at: usize| read_entry(&loose[at]).map(|entry| entry.target);
            assert_eq!(target(*first), Some(json!(name)), "{message}");
            assert_eq!(target(*index), Some(json!(name)), "{message}");
        }
        ReferenceError::InvalidContainers(_) => {
            assert!(message.contains(CONTAINERS), "{message}");
            let value = annotations
                .get(CONTAINERS)
                .expect("a containers annotation");
            let listed: Vec<&str> = value.split(',').map(str::trim).collect();
            let justified = value.len() > MAX_VALUE_BYTES
                || listed.len() > MAX_ENTRIES
                || listed.iter().any(|name| !is_dns_label(name))
                || listed
                    .iter()
                    .enumerate()
                    .any(|(i, name)| listed[..i].contains(name));
            assert!(justified, "{message}: but {value:?} is a valid list");
        }
        // A new variant is a new way to reject: it must at least name its annotation.
        #[allow(unreachable_patterns)]
        _ => assert!(message.contains("annotation "), "{message}"),
    }
}
