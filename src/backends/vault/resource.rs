//! The `VaultConfig` custom resource and what its spec means, as plain data.
//!
//! The Rust type is the source of the CRD shipped in `deploy/` (a test keeps the two equal).
//! The API server enforces the schema's shape (required fields, enum values); [`VaultTarget`]
//! adds the checks a schema cannot express (a parseable https URL, a KV v2 API path, a PEM
//! bundle) and [`VaultTarget::locate`] turns a reference's key into the KV v2 secret path and
//! field to read. Nothing here does I/O.

use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A named connection to a customer's Vault, usable by one domain's pods.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "secrets.iomete.com",
    version = "v1",
    kind = "VaultConfig",
    namespaced,
    status = "VaultConfigStatus",
    doc = "A named connection to a customer's HashiCorp Vault (KV v2, read-only), usable by the pods of one domain. Credentials live in the Secret iomete-vault-credentials-{domain} of the same namespace.",
    printcolumn = r#"{"name":"Domain","type":"string","jsonPath":".spec.domain"}"#,
    printcolumn = r#"{"name":"Host","type":"string","jsonPath":".spec.host"}"#,
    printcolumn = r#"{"name":"Auth","type":"string","jsonPath":".spec.auth.method"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    printcolumn = r#"{"name":"Message","type":"string","priority":1,"jsonPath":".status.conditions[?(@.type==\"Ready\")].message"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct VaultConfigSpec {
    /// The only domain whose pods may use this configuration.
    #[schemars(regex(pattern = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"))]
    pub domain: String,
    /// The Vault address, e.g. `https://vault.example.com:8200`.
    #[schemars(regex(pattern = r"^https?://[^/?#@\s]+/?$"))]
    pub host: String,
    /// The KV v2 API path: the mount before `/data/`, the secret prefix after it, e.g.
    /// `/v1/secret/data/production`.
    #[schemars(regex(
        pattern = r"^/v1/[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*/data(/[A-Za-z0-9_.-]+)*/?$"
    ))]
    pub path: String,
    /// The Vault Enterprise (or OpenBao) namespace, sent as `X-Vault-Namespace`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vault_namespace: Option<String>,
    /// How a reference's key maps to KV v2 secrets.
    #[serde(default)]
    pub layout: Layout,
    pub auth: VaultAuth,
    /// PEM certificates to trust for this host, in addition to the system roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_bundle: Option<String>,
}

/// How a key names a value.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum Layout {
    /// Key `K` is the secret `{prefix}/K`, value its field `value`; `K#F` selects field `F`.
    #[default]
    SecretPerKey,
    /// Key `K` is the field `K` of the one secret at `{prefix}`.
    FieldPerKey,
}

/// How the webhook logs in; the credentials themselves live in the Secret
/// `iomete-vault-credentials-{domain}`.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VaultAuth {
    /// Token: key {config}.token of the credentials Secret, used as given. AppRole: keys
    /// {config}.roleId and {config}.secretId; the webhook logs in and renews the token.
    pub method: AuthMethod,
    /// The AppRole auth mount path (default `approle`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mount: Option<String>,
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum AuthMethod {
    /// Key `{config}.token` of the credentials Secret, used as given.
    Token,
    /// Keys `{config}.roleId` and `{config}.secretId`; the webhook logs in and renews.
    AppRole,
}

/// What the webhook last found when it tested the configuration.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct VaultConfigStatus {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// The name of the Secret holding a domain's Vault credentials.
pub fn credentials_secret_name(domain: &str) -> String {
    format!("{CREDENTIALS_SECRET_PREFIX}{domain}")
}

pub const CREDENTIALS_SECRET_PREFIX: &str = "iomete-vault-credentials-";

const DEFAULT_APPROLE_MOUNT: &str = "approle";

/// A spec the webhook cannot use; the message tells the administrator what to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    #[error("spec.host {0:?} is not an http(s) URL with a host and nothing after the port")]
    Host(String),
    #[error(
        "spec.path {0:?} is not a KV v2 API path like /v1/<mount>/data/<prefix> (segments of letters, digits, '-', '_', '.')"
    )]
    Path(String),
    #[error("spec.vaultNamespace {0:?} must be path segments of letters, digits, '-', '_', '.'")]
    VaultNamespace(String),
    #[error("spec.auth.mount {0:?} must be path segments of letters, digits, '-', '_', '.'")]
    AuthMount(String),
    #[error("spec.caBundle holds no PEM certificate that can be read")]
    CaBundle,
    #[error("spec.domain {0:?} is not a domain name (a DNS label)")]
    Domain(String),
}

/// Where and how to read: the checked form of a spec.
#[derive(Clone, PartialEq, Eq)]
pub struct VaultTarget {
    pub host: String,
    pub mount: String,
    /// The secret prefix below the mount, without slashes at either end; may be empty.
    pub prefix: String,
    pub vault_namespace: Option<String>,
    pub layout: Layout,
    pub auth_method: AuthMethod,
    pub auth_mount: String,
    /// DER certificates from `caBundle`.
    pub ca_certificates: Vec<Vec<u8>>,
}

impl fmt::Debug for VaultTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VaultTarget")
            .field("host", &self.host)
            .field("mount", &self.mount)
            .field("prefix", &self.prefix)
            .field("vault_namespace", &self.vault_namespace)
            .field("layout", &self.layout)
            .field("auth_method", &self.auth_method)
            .field("auth_mount", &self.auth_mount)
            .field("ca_certificates", &self.ca_certificates.len())
            .finish()
    }
}

/// The KV v2 secret and field a key resolves to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Location {
    /// The secret path below the mount (what follows `/data/` in the API path).
    pub path: String,
    pub field: String,
}

/// A key that the configuration's layout cannot resolve.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "key {key:?} cannot be used with layout FieldPerKey, which reads fields of the one secret at the configuration's path: use a plain field name (no '/' or '#')"
)]
pub struct LayoutError {
    pub key: String,
}

impl VaultTarget {
    pub fn from_spec(spec: &VaultConfigSpec) -> Result<Self, SpecError> {
        if !crate::decision::names::is_dns_label(&spec.domain) {
            return Err(SpecError::Domain(spec.domain.clone()));
        }
        let host = parse_host(&spec.host).ok_or_else(|| SpecError::Host(spec.host.clone()))?;
        let (mount, prefix) =
            parse_kv2_path(&spec.path).ok_or_else(|| SpecError::Path(spec.path.clone()))?;
        let vault_namespace = match spec
            .vault_namespace
            .as_deref()
            .map(|ns| ns.trim_matches('/'))
        {
            None | Some("") => None,
            Some(namespace) if is_path(namespace) => Some(namespace.to_owned()),
            Some(_) => {
                return Err(SpecError::VaultNamespace(
                    spec.vault_namespace.clone().unwrap_or_default(),
                ));
            }
        };
        let auth_mount = match spec.auth.mount.as_deref().map(|m| m.trim_matches('/')) {
            None | Some("") => DEFAULT_APPROLE_MOUNT.to_owned(),
            Some(mount) if is_path(mount) => mount.to_owned(),
            Some(_) => {
                return Err(SpecError::AuthMount(
                    spec.auth.mount.clone().unwrap_or_default(),
                ));
            }
        };
        let ca_certificates = match &spec.ca_bundle {
            None => Vec::new(),
            Some(pem) => parse_pem_certificates(pem).ok_or(SpecError::CaBundle)?,
        };
        Ok(VaultTarget {
            host,
            mount,
            prefix,
            vault_namespace,
            layout: spec.layout,
            auth_method: spec.auth.method,
            auth_mount,
            ca_certificates,
        })
    }

    /// The secret and field `key` names under this configuration's layout. The key has passed
    /// [`crate::decision::names::validate_vault_key`].
    pub fn locate(&self, key: &str) -> Result<Location, LayoutError> {
        let join = |rest: &str| {
            if self.prefix.is_empty() {
                rest.to_owned()
            } else if rest.is_empty() {
                self.prefix.clone()
            } else {
                format!("{}/{rest}", self.prefix)
            }
        };
        match self.layout {
            Layout::SecretPerKey => {
                let (secret, field) = key.split_once('#').unwrap_or((key, "value"));
                Ok(Location {
                    path: join(secret),
                    field: field.to_owned(),
                })
            }
            Layout::FieldPerKey if key.contains(['/', '#']) || self.prefix.is_empty() => {
                Err(LayoutError {
                    key: key.to_owned(),
                })
            }
            Layout::FieldPerKey => Ok(Location {
                path: self.prefix.clone(),
                field: key.to_owned(),
            }),
        }
    }

    /// The KV v2 API path of a secret, for messages: `/v1/{mount}/data/{path}`.
    pub fn api_path(&self, path: &str) -> String {
        format!("/v1/{}/data/{path}", self.mount)
    }

    /// A path whose read tells whether the credentials may read this configuration's secrets
    /// (see the status checks): the prefix itself for FieldPerKey, a name below it otherwise.
    pub fn probe_path(&self) -> String {
        match self.layout {
            Layout::FieldPerKey => self.prefix.clone(),
            Layout::SecretPerKey if self.prefix.is_empty() => PROBE_SECRET.to_owned(),
            Layout::SecretPerKey => format!("{}/{PROBE_SECRET}", self.prefix),
        }
    }
}

/// A secret name nobody uses: reading it answers 404 when reads are allowed, 403 when not.
const PROBE_SECRET: &str = "iomete-webhook-permission-probe";

fn is_path(value: &str) -> bool {
    let valid_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.');
    !value.is_empty()
        && value
            .split('/')
            .all(|s| !s.is_empty() && s != "." && s != ".." && s.chars().all(valid_char))
}

/// `https://host[:port]` (or http), normalized without a trailing slash.
fn parse_host(host: &str) -> Option<String> {
    let trimmed = host.trim().trim_end_matches('/');
    let url = reqwest::Url::parse(trimmed).ok()?;
    let usable = matches!(url.scheme(), "https" | "http")
        && url.host_str().is_some_and(|host| !host.is_empty())
        && url.username().is_empty()
        && url.password().is_none()
        && url.path() == "/"
        && url.query().is_none()
        && url.fragment().is_none();
    usable.then(|| trimmed.to_owned())
}

/// `/v1/{mount}/data[/{prefix}]` → (mount, prefix).
fn parse_kv2_path(path: &str) -> Option<(String, String)> {
    let rest = path.trim().trim_end_matches('/').strip_prefix("/v1/")?;
    let (mount, prefix) = match rest.split_once("/data/") {
        Some((mount, prefix)) => (mount, prefix),
        None => (rest.strip_suffix("/data")?, ""),
    };
    (is_path(mount) && (prefix.is_empty() || is_path(prefix)))
        .then(|| (mount.to_owned(), prefix.to_owned()))
}

fn parse_pem_certificates(pem: &str) -> Option<Vec<Vec<u8>>> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let certificates: Vec<Vec<u8>> = CertificateDer::pem_slice_iter(pem.as_bytes())
        .map(|certificate| certificate.map(|der| der.to_vec()))
        .collect::<Result<_, _>>()
        .ok()?;
    (!certificates.is_empty()).then_some(certificates)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    fn spec(path: &str, layout: Layout) -> VaultConfigSpec {
        VaultConfigSpec {
            domain: "finance".into(),
            host: "https://vault.example.com:8200".into(),
            path: path.into(),
            vault_namespace: None,
            layout,
            auth: VaultAuth {
                method: AuthMethod::AppRole,
                mount: None,
            },
            ca_bundle: None,
        }
    }

    #[rstest]
    #[case("/v1/secret/data/production", "secret", "production")]
    #[case("/v1/secret/data/production/", "secret", "production")]
    #[case("/v1/kv/team-a/data/apps/spark", "kv/team-a", "apps/spark")]
    #[case("/v1/secret/data", "secret", "")]
    #[case("/v1/secret/data/", "secret", "")]
    fn kv2_paths(#[case] path: &str, #[case] mount: &str, #[case] prefix: &str) {
        let target = VaultTarget::from_spec(&spec(path, Layout::SecretPerKey)).unwrap();
        assert_eq!(
            (target.mount.as_str(), target.prefix.as_str()),
            (mount, prefix)
        );
    }

    #[rstest]
    #[case::no_version("/secret/data/production")]
    #[case::kv1("/v1/secret/production")]
    #[case::metadata("/v1/secret/metadata/production")]
    #[case::traversal("/v1/secret/data/../../sys")]
    #[case::empty_mount("/v1//data/x")]
    #[case::query("/v1/secret/data/x?list=true")]
    #[case::empty("")]
    fn bad_kv2_paths(#[case] path: &str) {
        assert_eq!(
            VaultTarget::from_spec(&spec(path, Layout::SecretPerKey)),
            Err(SpecError::Path(path.into()))
        );
    }

    #[rstest]
    #[case("https://vault.example.com:8200", true)]
    #[case("https://vault.example.com:8200/", true)]
    #[case("http://127.0.0.1:8200", true)]
    #[case("vault.example.com:8200", false)]
    #[case("ftp://vault.example.com", false)]
    #[case("https://vault.example.com/v1", false)]
    #[case("https://user:pass@vault.example.com", false)]
    #[case("https://", false)]
    fn hosts(#[case] host: &str, #[case] valid: bool) {
        let mut spec = spec("/v1/secret/data/p", Layout::SecretPerKey);
        spec.host = host.into();
        assert_eq!(VaultTarget::from_spec(&spec).is_ok(), valid, "{host}");
    }

    #[rstest]
    #[case(
        Layout::SecretPerKey,
        "/v1/secret/data/production",
        "db",
        "production/db",
        "value"
    )]
    #[case(
        Layout::SecretPerKey,
        "/v1/secret/data/production",
        "db#user",
        "production/db",
        "user"
    )]
    #[case(
        Layout::SecretPerKey,
        "/v1/secret/data/production",
        "team/db#pw",
        "production/team/db",
        "pw"
    )]
    #[case(Layout::SecretPerKey, "/v1/secret/data", "db", "db", "value")]
    #[case(
        Layout::FieldPerKey,
        "/v1/secret/data/production/spark",
        "password",
        "production/spark",
        "password"
    )]
    fn keys_resolve_by_layout(
        #[case] layout: Layout,
        #[case] path: &str,
        #[case] key: &str,
        #[case] secret: &str,
        #[case] field: &str,
    ) {
        let target = VaultTarget::from_spec(&spec(path, layout)).unwrap();
        assert_eq!(
            target.locate(key),
            Ok(Location {
                path: secret.into(),
                field: field.into()
            })
        );
    }

    #[rstest]
    #[case("team/password")]
    #[case("db#password")]
    fn field_per_key_takes_plain_fields(#[case] key: &str) {
        let target =
            VaultTarget::from_spec(&spec("/v1/secret/data/production", Layout::FieldPerKey))
                .unwrap();
        assert!(target.locate(key).is_err());
    }

    #[test]
    fn probe_paths_sit_under_the_prefix() {
        let per_key =
            VaultTarget::from_spec(&spec("/v1/secret/data/production", Layout::SecretPerKey))
                .unwrap();
        assert_eq!(
            per_key.probe_path(),
            "production/iomete-webhook-permission-probe"
        );
        let per_field =
            VaultTarget::from_spec(&spec("/v1/secret/data/production", Layout::FieldPerKey))
                .unwrap();
        assert_eq!(per_field.probe_path(), "production");
    }

    #[test]
    fn auth_mount_and_namespace_are_checked() {
        let mut bad = spec("/v1/secret/data/p", Layout::SecretPerKey);
        bad.vault_namespace = Some("team/../root".into());
        assert!(matches!(
            VaultTarget::from_spec(&bad),
            Err(SpecError::VaultNamespace(_))
        ));
        let mut good = spec("/v1/secret/data/p", Layout::SecretPerKey);
        good.vault_namespace = Some("/team-a/".into());
        good.auth.mount = Some("approle-spark".into());
        let target = VaultTarget::from_spec(&good).unwrap();
        assert_eq!(target.vault_namespace.as_deref(), Some("team-a"));
        assert_eq!(target.auth_mount, "approle-spark");
    }

    #[test]
    fn ca_bundle_must_hold_a_certificate() {
        let mut with_garbage = spec("/v1/secret/data/p", Layout::SecretPerKey);
        with_garbage.ca_bundle = Some("not a certificate".into());
        assert_eq!(
            VaultTarget::from_spec(&with_garbage),
            Err(SpecError::CaBundle)
        );
        let generated = crate::boot::certs::generate(&["vault.local".to_owned()]).unwrap();
        let mut with_ca = spec("/v1/secret/data/p", Layout::SecretPerKey);
        with_ca.ca_bundle = Some(generated.ca_pem.clone());
        assert_eq!(
            VaultTarget::from_spec(&with_ca)
                .unwrap()
                .ca_certificates
                .len(),
            1
        );
    }
}
