//! The resource types the fake serves, `v1 Namespace`, `v1 Secret` and the custom resource
//! `secrets.iomete.com/v1 VaultConfig`, and what the real API server does to each on write:
//! name validation, defaulting (a secret's `type`, a namespace's `kubernetes.io/metadata.name`
//! label, finalizer and phase, a custom resource's `metadata.generation`), the conversion of a
//! secret's write-only `stringData` into base64 `data`, and the `/status` subresource rule that
//! a write to the main resource never changes `.status`.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Map, Value, json};

use crate::status::ApiError;

/// The label the real server puts on every namespace, so selectors can match by name.
const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";
/// The finalizer the real server adds to every namespace's `spec.finalizers`.
const NAMESPACE_FINALIZER: &str = "kubernetes";

/// The API group of the webhook's custom resources.
pub(crate) const IOMETE_SECRETS_GROUP: &str = "secrets.iomete.com";

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum ResourceKind {
    Namespace,
    Secret,
    /// `secrets.iomete.com/v1 VaultConfig`, served as the real server serves its CRD
    /// (`subresources: {status: {}}`), minus the schema: whatever `spec` holds is kept.
    VaultConfig,
}

/// Which part of an object a write addresses. Only kinds with
/// [`ResourceKind::has_status_subresource`] have a `/status`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Subresource {
    /// `.../{name}/status`: the write changes `.status` and nothing else.
    Status,
}

impl ResourceKind {
    /// Every kind served, in discovery order.
    pub(crate) const ALL: [Self; 3] = [Self::Namespace, Self::Secret, Self::VaultConfig];

    /// The kind served at `/api/v1/...` (`group` empty) or `/apis/{group}/{version}/...`
    /// under the resource name `plural`.
    pub(crate) fn find(group: &str, version: &str, plural: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| {
            kind.group() == group && kind.version() == version && kind.plural() == plural
        })
    }

    pub(crate) fn kind(self) -> &'static str {
        match self {
            Self::Namespace => "Namespace",
            Self::Secret => "Secret",
            Self::VaultConfig => "VaultConfig",
        }
    }

    pub(crate) fn list_kind(self) -> &'static str {
        match self {
            Self::Namespace => "NamespaceList",
            Self::Secret => "SecretList",
            Self::VaultConfig => "VaultConfigList",
        }
    }

    /// The resource name used in URLs, error messages and discovery.
    pub(crate) fn plural(self) -> &'static str {
        match self {
            Self::Namespace => "namespaces",
            Self::Secret => "secrets",
            Self::VaultConfig => "vaultconfigs",
        }
    }

    /// The API group; empty for the core group.
    pub(crate) fn group(self) -> &'static str {
        match self {
            Self::Namespace | Self::Secret => "",
            Self::VaultConfig => IOMETE_SECRETS_GROUP,
        }
    }

    pub(crate) fn version(self) -> &'static str {
        "v1"
    }

    /// The `apiVersion` objects of this kind carry: `v1` or `group/version`.
    pub(crate) fn api_version(self) -> &'static str {
        match self {
            Self::Namespace | Self::Secret => "v1",
            Self::VaultConfig => "secrets.iomete.com/v1",
        }
    }

    /// The resource as the real server names it in messages: `secrets`,
    /// `vaultconfigs.secrets.iomete.com`.
    pub(crate) fn qualified_resource(self) -> String {
        match self.group() {
            "" => self.plural().to_owned(),
            group => format!("{}.{group}", self.plural()),
        }
    }

    /// The kind as the real server names it in validation messages: `Secret`,
    /// `VaultConfig.secrets.iomete.com`.
    pub(crate) fn qualified_kind(self) -> String {
        match self.group() {
            "" => self.kind().to_owned(),
            group => format!("{}.{group}", self.kind()),
        }
    }

    pub(crate) fn is_namespaced(self) -> bool {
        match self {
            Self::Namespace => false,
            Self::Secret | Self::VaultConfig => true,
        }
    }

    /// Custom resources are served by the apiextensions server, which differs from the
    /// built-in types: no protobuf, no strategic merge patch, `kind` required in bodies.
    pub(crate) fn is_custom_resource(self) -> bool {
        !self.group().is_empty()
    }

    /// Whether `.../{name}/status` is served (the fake serves no status for built-in kinds).
    pub(crate) fn has_status_subresource(self) -> bool {
        self == Self::VaultConfig
    }

    /// The value of a field selector's field for `object`; `None` when the real server does
    /// not support selecting this resource by that field.
    pub(crate) fn selectable_field<'a>(self, object: &'a Value, field: &str) -> Option<&'a str> {
        let text = |value: Option<&'a Value>| value.and_then(Value::as_str).unwrap_or_default();
        match (self, field) {
            (_, "metadata.name") => Some(crate::object::name(object)),
            (_, "metadata.namespace") => Some(crate::object::namespace(object)),
            (Self::Secret, "type") => Some(text(object.get("type"))),
            (Self::Namespace, "status.phase") => {
                Some(text(object.get("status").and_then(|s| s.get("phase"))))
            }
            _ => None,
        }
    }

    /// Namespaces must be RFC 1123 labels, secrets and custom resources RFC 1123 subdomains
    /// (422 otherwise).
    pub(crate) fn validate_name(self, name: &str) -> Result<(), ApiError> {
        let problem = match self {
            Self::Namespace => rfc1123_label_problem(name),
            Self::Secret | Self::VaultConfig => rfc1123_subdomain_problem(name),
        };
        match problem {
            None => Ok(()),
            Some(problem) => Err(ApiError::invalid(
                self,
                name,
                "metadata.name",
                &format!("Invalid value: \"{name}\": {problem}"),
            )),
        }
    }

    /// Applies the kind-specific defaulting of a create to `object` (metadata already set).
    pub(crate) fn prepare_for_create(
        self,
        object: &mut Map<String, Value>,
    ) -> Result<(), ApiError> {
        match self {
            Self::Namespace => {
                label_namespace_with_its_name(object);
                let mut finalizers = object
                    .get("spec")
                    .and_then(|spec| spec.get("finalizers"))
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                if !finalizers.iter().any(|f| f == NAMESPACE_FINALIZER) {
                    finalizers.push(json!(NAMESPACE_FINALIZER));
                }
                object.insert("spec".into(), json!({ "finalizers": finalizers }));
                // A namespace's status is owned by the server, whatever the client sent.
                object.insert("status".into(), json!({ "phase": "Active" }));
                Ok(())
            }
            Self::Secret => normalize_secret(object),
            Self::VaultConfig => {
                // With a status subresource, only /status writes status; a create cannot.
                object.remove("status");
                set_generation(object, 1);
                Ok(())
            }
        }
    }

    /// Applies the kind-specific rules of an update of `existing` to `object`.
    pub(crate) fn prepare_for_update(
        self,
        object: &mut Map<String, Value>,
        existing: &Value,
    ) -> Result<(), ApiError> {
        match self {
            Self::Namespace => {
                label_namespace_with_its_name(object);
                // spec.finalizers changes only through /finalize and status only through
                // /status on the real server, so a plain update keeps both as they were.
                for field in ["spec", "status"] {
                    keep_existing_field(object, existing, field);
                }
                Ok(())
            }
            Self::Secret => {
                normalize_secret(object)?;
                check_secret_immutability(object, existing)
            }
            Self::VaultConfig => {
                keep_existing_field(object, existing, "status");
                // The apiextensions server bumps the generation when anything outside
                // metadata changes; status is already reset, so in practice that is spec.
                let generation = existing["metadata"]
                    .get("generation")
                    .and_then(Value::as_i64)
                    .unwrap_or(1);
                let changed = existing
                    .as_object()
                    .is_some_and(|existing| !same_outside_metadata(object, existing));
                set_generation(object, if changed { generation + 1 } else { generation });
                Ok(())
            }
        }
    }
}

/// What a write to `/status` stores: the existing object with only `.status` taken from
/// `object` (removed when `object` has none), as the real server's status strategy does.
/// Metadata and spec changes in the body are dropped without an error.
pub(crate) fn apply_status_write(object: &Map<String, Value>, existing: &Value) -> Value {
    let mut updated = existing.clone();
    if let Value::Object(updated_map) = &mut updated {
        match object.get("status") {
            Some(status) => updated_map.insert("status".into(), status.clone()),
            None => updated_map.remove("status"),
        };
    }
    updated
}

/// Sets `object.field` to what `existing` holds there (absent when `existing` has none).
fn keep_existing_field(object: &mut Map<String, Value>, existing: &Value, field: &str) {
    match existing.get(field) {
        Some(value) => object.insert(field.into(), value.clone()),
        None => object.remove(field),
    };
}

fn same_outside_metadata(left: &Map<String, Value>, right: &Map<String, Value>) -> bool {
    let outside_metadata = |map: &Map<String, Value>| {
        let mut copy = map.clone();
        copy.remove("metadata");
        copy
    };
    outside_metadata(left) == outside_metadata(right)
}

fn set_generation(object: &mut Map<String, Value>, generation: i64) {
    if let Some(Value::Object(metadata)) = object.get_mut("metadata") {
        metadata.insert("generation".into(), json!(generation));
    }
}

fn label_namespace_with_its_name(object: &mut Map<String, Value>) {
    let Some(Value::Object(metadata)) = object.get_mut("metadata") else {
        return;
    };
    let name = metadata.get("name").cloned().unwrap_or_default();
    let labels = metadata
        .entry("labels")
        .or_insert_with(|| Value::Object(Map::new()));
    if let Value::Object(labels) = labels {
        labels.insert(NAMESPACE_NAME_LABEL.into(), name);
    }
}

/// Validates base64 `data`, folds `stringData` into it (stringData wins on equal keys, as
/// on the real server) and defaults `type` to `Opaque`.
fn normalize_secret(object: &mut Map<String, Value>) -> Result<(), ApiError> {
    let undecodable = |why: String| {
        ApiError::bad_request(format!(
            "Secret in version \"v1\" cannot be handled as a Secret: {why}"
        ))
    };
    let mut data = match object.remove("data") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(data)) => data,
        Some(_) => return Err(undecodable("data must be a map of strings".into())),
    };
    for (key, value) in &data {
        let Value::String(encoded) = value else {
            return Err(undecodable(format!("data[{key}] must be a base64 string")));
        };
        BASE64
            .decode(encoded)
            .map_err(|error| undecodable(format!("illegal base64 data in data[{key}]: {error}")))?;
    }
    match object.remove("stringData") {
        None | Some(Value::Null) => {}
        Some(Value::Object(string_data)) => {
            for (key, value) in string_data {
                let Value::String(plain) = value else {
                    return Err(undecodable(format!("stringData[{key}] must be a string")));
                };
                data.insert(key, Value::String(BASE64.encode(plain)));
            }
        }
        Some(_) => return Err(undecodable("stringData must be a map of strings".into())),
    }
    let name = object
        .get("metadata")
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    for key in data.keys() {
        if key.is_empty()
            || key.len() > 253
            || !key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(ApiError::invalid(
                ResourceKind::Secret,
                &name,
                &format!("data[{key}]"),
                &format!(
                    "Invalid value: \"{key}\": a valid config key must consist of alphanumeric characters, '-', '_' or '.'"
                ),
            ));
        }
    }
    // Go's `omitempty`: an empty map is not stored, so it is not returned either.
    if !data.is_empty() {
        object.insert("data".into(), Value::Object(data));
    }
    match object.get("type") {
        None | Some(Value::Null) => {
            object.insert("type".into(), json!("Opaque"));
        }
        Some(Value::String(kind)) if kind.is_empty() => {
            object.insert("type".into(), json!("Opaque"));
        }
        Some(Value::String(_)) => {}
        Some(_) => return Err(undecodable("type must be a string".into())),
    }
    match object.get("immutable") {
        None | Some(Value::Bool(_)) => {}
        Some(Value::Null) => {
            object.remove("immutable");
        }
        Some(_) => return Err(undecodable("immutable must be a boolean".into())),
    }
    Ok(())
}

/// A secret's `type` never changes; an `immutable: true` secret's data never changes.
fn check_secret_immutability(
    object: &Map<String, Value>,
    existing: &Value,
) -> Result<(), ApiError> {
    let name = crate::object::name(existing);
    if object.get("type") != existing.get("type") {
        let new_type = object
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or_default();
        return Err(ApiError::invalid(
            ResourceKind::Secret,
            name,
            "type",
            &format!("Invalid value: \"{new_type}\": field is immutable"),
        ));
    }
    let was_immutable = existing.get("immutable") == Some(&Value::Bool(true));
    if was_immutable
        && (object.get("data") != existing.get("data")
            || object.get("immutable") != existing.get("immutable"))
    {
        return Err(ApiError::invalid(
            ResourceKind::Secret,
            name,
            "data",
            "Forbidden: field is immutable when `immutable` is set",
        ));
    }
    Ok(())
}

const RFC1123_LABEL_RULE: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', \
     and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', \
     regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";

const RFC1123_SUBDOMAIN_RULE: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', \
     and must start and end with an alphanumeric character (e.g. 'example.com', \
     regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";

fn is_rfc1123_label(text: &str) -> bool {
    let alphanumeric = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    !text.is_empty()
        && text.chars().all(|c| alphanumeric(c) || c == '-')
        && text.starts_with(alphanumeric)
        && text.ends_with(alphanumeric)
}

fn rfc1123_label_problem(name: &str) -> Option<String> {
    if name.len() > 63 {
        Some("must be no more than 63 characters".into())
    } else if !is_rfc1123_label(name) {
        Some(RFC1123_LABEL_RULE.into())
    } else {
        None
    }
}

fn rfc1123_subdomain_problem(name: &str) -> Option<String> {
    if name.len() > 253 {
        Some("must be no more than 253 characters".into())
    } else if !name.split('.').all(is_rfc1123_label) {
        Some(RFC1123_SUBDOMAIN_RULE.into())
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_validated_like_the_real_server() {
        assert!(ResourceKind::Namespace.validate_name("team-a").is_ok());
        assert!(ResourceKind::Namespace.validate_name("a.b").is_err());
        assert!(ResourceKind::Namespace.validate_name("-a").is_err());
        assert!(
            ResourceKind::Namespace
                .validate_name(&"a".repeat(64))
                .is_err()
        );
        assert!(
            ResourceKind::Secret
                .validate_name("tls.example.com")
                .is_ok()
        );
        assert!(ResourceKind::Secret.validate_name("Upper").is_err());
        assert!(ResourceKind::Secret.validate_name("a..b").is_err());
        assert_eq!(
            ResourceKind::Secret.validate_name("").unwrap_err().code,
            422
        );
    }

    #[test]
    fn string_data_is_folded_into_base64_data_and_type_defaults_to_opaque() {
        let mut secret = json!({
            "metadata": { "name": "s" },
            "data": { "a": "b2xk", "b": "Yg==" },
            "stringData": { "a": "new", "c": "sea" },
        });
        ResourceKind::Secret
            .prepare_for_create(secret.as_object_mut().unwrap())
            .unwrap();
        assert_eq!(
            secret,
            json!({
                "metadata": { "name": "s" },
                "data": { "a": "bmV3", "b": "Yg==", "c": "c2Vh" },
                "type": "Opaque",
            })
        );
    }

    #[test]
    fn undecodable_secret_data_is_a_bad_request() {
        let mut secret = json!({ "metadata": { "name": "s" }, "data": { "a": "%%%" } });
        let error = ResourceKind::Secret
            .prepare_for_create(secret.as_object_mut().unwrap())
            .unwrap_err();
        assert_eq!((error.code, error.reason), (400, "BadRequest"));
    }

    #[test]
    fn namespaces_get_their_name_label_finalizer_and_phase() {
        let mut namespace = json!({ "metadata": { "name": "team-a", "labels": { "x": "y" } } });
        ResourceKind::Namespace
            .prepare_for_create(namespace.as_object_mut().unwrap())
            .unwrap();
        assert_eq!(
            namespace,
            json!({
                "metadata": { "name": "team-a", "labels": { "x": "y", "kubernetes.io/metadata.name": "team-a" } },
                "spec": { "finalizers": ["kubernetes"] },
                "status": { "phase": "Active" },
            })
        );
    }

    #[test]
    fn a_vault_config_create_drops_the_status_and_starts_at_generation_one() {
        let mut config = json!({
            "metadata": { "name": "main" },
            "spec": { "address": "https://vault" },
            "status": { "ready": true },
        });
        ResourceKind::VaultConfig
            .prepare_for_create(config.as_object_mut().unwrap())
            .unwrap();
        assert_eq!(
            config,
            json!({
                "metadata": { "name": "main", "generation": 1 },
                "spec": { "address": "https://vault" },
            })
        );
    }

    #[test]
    fn a_vault_config_update_keeps_the_status_and_counts_spec_changes() {
        let existing = json!({
            "metadata": { "name": "main", "generation": 4 },
            "spec": { "address": "https://a" },
            "status": { "ready": true },
        });
        let update = |body: Value| {
            let mut body = body;
            ResourceKind::VaultConfig
                .prepare_for_update(body.as_object_mut().unwrap(), &existing)
                .unwrap();
            body
        };
        let status_only = update(json!({
            "metadata": { "name": "main" },
            "spec": { "address": "https://a" },
            "status": { "ready": false },
        }));
        assert_eq!(
            status_only, existing,
            "status is not written, generation stays"
        );
        let labelled = update(json!({
            "metadata": { "name": "main", "labels": { "a": "b" } },
            "spec": { "address": "https://a" },
        }));
        assert_eq!(labelled["metadata"]["generation"], 4);
        assert_eq!(labelled["status"], json!({ "ready": true }));
        let respecced = update(json!({
            "metadata": { "name": "main" },
            "spec": { "address": "https://b" },
        }));
        assert_eq!(respecced["metadata"]["generation"], 5);
    }

    #[test]
    fn a_status_write_takes_only_the_status() {
        let existing = json!({
            "metadata": { "name": "main", "generation": 2 },
            "spec": { "address": "https://a" },
            "status": { "ready": true },
        });
        let body = json!({
            "metadata": { "name": "main", "labels": { "a": "b" } },
            "spec": { "address": "https://b" },
            "status": { "ready": false },
        });
        let written = apply_status_write(body.as_object().unwrap(), &existing);
        let mut expected = existing.clone();
        expected["status"] = json!({ "ready": false });
        assert_eq!(written, expected);
        let without_status = json!({ "metadata": { "name": "main" } });
        let cleared = apply_status_write(without_status.as_object().unwrap(), &existing);
        assert!(cleared.get("status").is_none());
        assert_eq!(cleared["spec"], existing["spec"]);
    }
}
