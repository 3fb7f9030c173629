//! The fixed cluster the admission-decision target answers for, and the scope model its
//! invariants are checked against.
//!
//! The namespaces cover every way a namespace can relate to a store: each domain, admin with and
//! without a domain, no label, a label under the wrong key, invalid label values (uppercase,
//! empty) and the reserved ids used as label values. Every store value is unique and starts with
//! [`MARKER`] followed by its store and key, so a value (even a partial one) can be traced back to
//! where it came from wherever it turns up in an answer or a log line.

use serde_json::Value;

use crate::names::is_dns_label;

/// The namespace that holds the stores, and the default admin namespace.
pub const STORE_NAMESPACE: &str = "iomete-system";
/// The label whose value is a namespace's domain (the webhook's `--domain-label`).
pub const DOMAIN_LABEL: &str = "iomete.com/domain";
/// The webhook's `--admin-namespaces`.
pub const ADMIN_NAMESPACES: &[&str] = &[STORE_NAMESPACE, "platform-admin"];

/// Every namespace the webhook's cache holds, with its labels. A request in any other namespace
/// must be answered 503 (not yet known).
pub const NAMESPACES: &[(&str, &[(&str, &str)])] = &[
    ("finance-jobs", &[(DOMAIN_LABEL, "finance")]),
    ("colin-coder", &[(DOMAIN_LABEL, "finance")]),
    ("marketing-jobs", &[(DOMAIN_LABEL, "marketing")]),
    ("johnsmith-dev", &[(DOMAIN_LABEL, "marketing")]),
    (STORE_NAMESPACE, &[]),
    ("platform-admin", &[(DOMAIN_LABEL, "finance")]),
    ("default", &[]),
    ("sandbox", &[("team", "finance")]),
    (
        "wrong-key",
        &[("iomete.com/Domain", "finance"), ("domain", "finance")],
    ),
    ("uppercase-label", &[(DOMAIN_LABEL, "Finance")]),
    ("empty-label", &[(DOMAIN_LABEL, "")]),
    ("admin-label", &[(DOMAIN_LABEL, "admin")]),
    ("global-label", &[(DOMAIN_LABEL, "global")]),
];

/// Every store (by the id a reference uses) and its keys.
pub const STORES: &[(&str, &[&str])] = &[
    ("finance", &["db_password", "s3-secret-key", "k"]),
    ("marketing", &["db_password", "k"]),
    ("global", &["smtp_password", "db_password", "k"]),
    ("admin", &["root", "k"]),
];

/// Starts every store value; nothing else the webhook could print contains it.
pub const MARKER: &str = "\u{27e6}v:";

/// The Secret that backs the store with this id (README, "Stores").
pub fn secret_name(id: &str) -> String {
    match id {
        "global" => "iomete-secret-store".to_owned(),
        other => format!("iomete-secret-store-{other}"),
    }
}

/// The value of `key` in store `id`: traceable by its prefix, and full of what the kubelet, a
/// JSON encoder or a quoting layer could mangle (`$(...)`, `$$`, `"`, `\`, a space, non-ASCII),
/// but nothing Spark's launcher cannot carry, so it can also travel as a Spark property.
pub fn value(id: &str, key: &str) -> String {
    format!("{MARKER}{id}:{key}:$(HOME)$$ \"q\" \\b \u{fc}\u{27e7}")
}

/// The domain of a namespace: the value of [`DOMAIN_LABEL`] when it is a valid DNS label.
pub fn domain_of(namespace: &str) -> Option<&'static str> {
    let (_, labels) = NAMESPACES.iter().find(|(name, _)| *name == namespace)?;
    labels
        .iter()
        .find(|(key, _)| *key == DOMAIN_LABEL)
        .map(|(_, value)| *value)
        .filter(|value| is_dns_label(value))
}

pub fn is_known(namespace: &str) -> bool {
    NAMESPACES.iter().any(|(name, _)| *name == namespace)
}

pub fn is_admin(namespace: &str) -> bool {
    ADMIN_NAMESPACES.contains(&namespace)
}

/// The scope rule (README, "Stores" and "Scope rules"): a domain store from that domain's
/// namespaces, `global` from any domain or admin namespace, `admin` from admin namespaces only.
///
/// A label value equal to a reserved id (`global`, `admin`) counts as a domain, as the webhook
/// treats it today: such a namespace reads the global store and never the admin store.
pub fn may_read(namespace: &str, store_id: &str) -> bool {
    if !is_known(namespace) {
        return false;
    }
    let domain = domain_of(namespace);
    match store_id {
        "global" => domain.is_some() || is_admin(namespace),
        "admin" => is_admin(namespace),
        other => domain == Some(other),
    }
}

/// The `(store id, key)` of every store value whose marker occurs in `text`.
pub fn markers_in(text: &str) -> Vec<(String, String)> {
    text.match_indices(MARKER)
        .map(|(start, _)| {
            let mut fields = text[start + MARKER.len()..].splitn(3, ':');
            let id = fields.next().unwrap_or_default().to_owned();
            let key = fields.next().unwrap_or_default().to_owned();
            (id, key)
        })
        .collect()
}

/// Whether the reviewed pod asks for `key` of store `id`, read loosely from the raw JSON (any
/// KUBERNETES entry of either reference annotation, or a legacy `${secrets.KEY}` anywhere in an
/// env value for the global store). Deliberately more permissive than the webhook's parser: it
/// only has to contain everything the webhook may legitimately read.
pub fn requested(pod: &Value, id: &str, key: &str) -> bool {
    let annotations = &pod["metadata"]["annotations"];
    let by_annotation = [
        "secrets.iomete.com/env-secrets",
        "secrets.iomete.com/spark-conf-secrets",
    ]
    .iter()
    .filter_map(|name| annotations[name].as_str())
    .filter_map(|text| serde_json::from_str::<Value>(text).ok())
    .filter_map(|list| list.as_array().cloned())
    .flatten()
    .any(|entry| {
        let object = &entry["secretObject"];
        object["key"] == key
            && object["source"]["id"] == id
            && object["source"]["type"] == "KUBERNETES"
    });
    let placeholder = format!("${{secrets.{key}}}");
    let by_placeholder = id == "global"
        && ["containers", "initContainers"]
            .iter()
            .filter_map(|list| pod["spec"][list].as_array())
            .flatten()
            .filter_map(|container| container["env"].as_array())
            .flatten()
            .filter_map(|var| var["value"].as_str())
            .any(|value| value.contains(&placeholder));
    by_annotation || by_placeholder
}
