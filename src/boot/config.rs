//! Command line and environment configuration, validated before anything is bound or started.
//!
//! Every flag can also be set through an `IOMETE_SECRETS_<FLAG>` environment variable.
//! [`ServeArgs::validate`] turns raw flags into a [`ServeConfig`] or a clear error.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

use crate::backends::kubernetes::ScopePolicy;
use crate::backends::vault::VaultSettings;
use crate::backends::vault::client::Timeouts;
use crate::decision::delivery::DeliveryPolicy;
use crate::decision::names::is_dns_label;

pub use super::broker_args::{BrokerArgs, BrokerConfig, BrokerConfigError};

pub use super::tool_args::{AuditArgs, CatalogueArgs, CheckArgs, ToolArgs, VaultCommand};

/// A flag value that cannot work; the message names the flag.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("--store-namespace {0:?} is not a valid namespace name (a DNS label)")]
    StoreNamespace(String),
    #[error("--admin-namespaces entry {0:?} is not a valid namespace name (a DNS label)")]
    AdminNamespace(String),
    #[error(
        "--domain-label {0:?} is not a valid label key (optional DNS-subdomain prefix and '/', then a name of at most 63 characters)"
    )]
    DomainLabel(String),
    #[error("--listen and --admin-listen must differ, both are {0}")]
    SamePort(SocketAddr),
    #[error("--max-in-flight must be at least 1")]
    MaxInFlight,
    #[error("--max-connections must be between 1 and 65536")]
    MaxConnections,
    #[error("--admission-timeout must be between 1s and 30s (the API server's maximum), got {0:?}")]
    AdmissionTimeout(Duration),
    #[error(
        "--vault-timeout must be at least 100ms and at most half of --admission-timeout ({admission:?}: a lookup may log in and then read), got {vault:?}"
    )]
    VaultTimeout {
        vault: Duration,
        admission: Duration,
    },
    #[error("--vault-check-interval must be at least 5s, got {0:?}")]
    VaultCheckInterval(Duration),
    #[error("--audit-interval must be at least 1s, got {0:?}")]
    AuditInterval(Duration),
    #[error(transparent)]
    Broker(#[from] BrokerConfigError),
    #[error("--broker-listen must differ from --listen and --admin-listen, got {0}")]
    BrokerPort(SocketAddr),
}

#[derive(Debug, Parser)]
#[command(name = "iomete-secrets-webhook", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the mutating admission webhook.
    Serve(Box<ServeArgs>),
    /// Write a development CA and serving certificate for the webhook Service.
    Certs(CertsArgs),
    /// Print the VaultConfig CustomResourceDefinition (JSON, which kubectl applies as YAML).
    Crd,
    /// Admin tool: check the secret references of manifests before deploying them.
    Check(Box<CheckArgs>),
    /// Admin tool: what a namespace may reference, by scope and source.
    Catalogue(Box<CatalogueArgs>),
    /// Admin tool: Vault configurations.
    #[command(subcommand)]
    Vault(VaultCommand),
    /// Admin tool: pods that missed injection or hold a secret that has since been rotated.
    Audit(Box<AuditArgs>),
}

#[derive(Debug, Clone, clap::Args)]
pub struct CertsArgs {
    /// Name of the webhook's Service.
    #[arg(
        long,
        env = "IOMETE_SECRETS_SERVICE",
        default_value = "iomete-secrets-webhook"
    )]
    pub service: String,
    /// Namespace of the webhook's Service.
    #[arg(
        long,
        env = "IOMETE_SECRETS_NAMESPACE",
        default_value = "iomete-system"
    )]
    pub namespace: String,
    /// Extra subject alternative names (DNS names or IP addresses), comma-separated.
    #[arg(long, env = "IOMETE_SECRETS_EXTRA_SANS", value_delimiter = ',')]
    pub extra_san: Vec<String>,
    /// Directory to write ca.crt, tls.crt, tls.key and ca-bundle.b64 into.
    #[arg(long, env = "IOMETE_SECRETS_CERTS_OUT")]
    pub out: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// Address of the TLS admission endpoint (POST /mutate).
    #[arg(long, env = "IOMETE_SECRETS_LISTEN", default_value = "0.0.0.0:8443")]
    pub listen: SocketAddr,
    /// PEM certificate chain served on --listen.
    #[arg(long, env = "IOMETE_SECRETS_TLS_CERT")]
    pub tls_cert: PathBuf,
    /// PEM private key for --tls-cert.
    #[arg(long, env = "IOMETE_SECRETS_TLS_KEY")]
    pub tls_key: PathBuf,
    /// PEM CA bundle: when set, callers (the API server) must present a client certificate it
    /// signed.
    #[arg(long, env = "IOMETE_SECRETS_CLIENT_CA")]
    pub client_ca: Option<PathBuf>,
    /// Address of the plain-HTTP admin endpoint (/livez, /readyz, /metrics).
    #[arg(
        long,
        env = "IOMETE_SECRETS_ADMIN_LISTEN",
        default_value = "0.0.0.0:8080"
    )]
    pub admin_listen: SocketAddr,
    #[command(flatten)]
    pub scope: ScopeArgs,
    #[command(flatten)]
    pub broker: BrokerArgs,
    /// Whether the secrets.iomete.com/ (V2) annotations are honoured.
    #[arg(
        long,
        env = "IOMETE_SECRETS_SECRETS_V2_ENABLED",
        default_value_t = true,
        action = clap::ArgAction::Set,
        value_parser = clap::builder::BoolishValueParser::new(),
    )]
    pub secrets_v2_enabled: bool,
    /// Longest time one admission may take before it is denied as retriable.
    #[arg(long, env = "IOMETE_SECRETS_ADMISSION_TIMEOUT", default_value = "8s", value_parser = humantime::parse_duration)]
    pub admission_timeout: Duration,
    /// Admissions answered at once; more are denied at once as retriable.
    #[arg(long, env = "IOMETE_SECRETS_MAX_IN_FLIGHT", default_value_t = 1024)]
    pub max_in_flight: usize,
    /// Connections to the admission endpoint open at once; more are closed at accept.
    #[arg(long, env = "IOMETE_SECRETS_MAX_CONNECTIONS", default_value_t = 1024)]
    pub max_connections: usize,
    /// How long a value read from Vault is reused (a rotated Vault value reaches new pods after
    /// at most this long); 0s disables the cache.
    #[arg(long, env = "IOMETE_SECRETS_VAULT_CACHE_TTL", default_value = "30s", value_parser = humantime::parse_duration)]
    pub vault_cache_ttl: Duration,
    /// When set (e.g. 10m), a Vault value read less than this long ago is served, with an
    /// admission warning, when Vault cannot answer. Off by default.
    #[arg(long, env = "IOMETE_SECRETS_VAULT_STALE_IF_ERROR", value_parser = humantime::parse_duration)]
    pub vault_stale_if_error: Option<Duration>,
    /// Timeout of each request to Vault (connect and answer).
    #[arg(long, env = "IOMETE_SECRETS_VAULT_TIMEOUT", default_value = "3s", value_parser = humantime::parse_duration)]
    pub vault_timeout: Duration,
    /// How often each VaultConfig is tested and its Ready condition refreshed (changes are
    /// tested at once).
    #[arg(long, env = "IOMETE_SECRETS_VAULT_CHECK_INTERVAL", default_value = "60s", value_parser = humantime::parse_duration)]
    pub vault_check_interval: Duration,
    /// Log line format.
    #[arg(long, env = "IOMETE_SECRETS_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Audit every pod of the cluster (missed injection, outdated secrets): gauges and Events.
    /// Off by default; needs the extra RBAC of deploy/audit-pods.
    #[arg(long, env = "IOMETE_SECRETS_AUDIT_PODS")]
    pub audit_pods: bool,
    /// How often `--audit-pods` lists the pods.
    #[arg(long, env = "IOMETE_SECRETS_AUDIT_INTERVAL", default_value = "5m", value_parser = humantime::parse_duration)]
    pub audit_interval: Duration,
}

/// Validated configuration for `serve`.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub listen: SocketAddr,
    pub tls_cert: PathBuf,
    pub tls_key: PathBuf,
    pub client_ca: Option<PathBuf>,
    pub admin_listen: SocketAddr,
    pub stores: ScopePolicy,
    pub secrets_v2_enabled: bool,
    pub admission_timeout: Duration,
    pub max_in_flight: usize,
    pub max_connections: usize,
    pub vault: VaultSettings,
    /// `Some(interval)`: audit the cluster's pods this often (`--audit-pods`).
    pub audit_pods: Option<Duration>,
    /// How pods' values are delivered (`--delivery-default`, `--delivery-required`).
    pub delivery: DeliveryPolicy,
    /// `Some`: broker mode is on (`--broker-listen`).
    pub broker: Option<BrokerConfig>,
}

impl ServeArgs {
    pub fn validate(&self) -> Result<ServeConfig, ConfigError> {
        let stores = self.scope.policy()?;
        if self.max_in_flight == 0 {
            return Err(ConfigError::MaxInFlight);
        }
        if !(1..=65536).contains(&self.max_connections) {
            return Err(ConfigError::MaxConnections);
        }
        // Port 0 on both is fine: each gets a free port of its own.
        if self.listen == self.admin_listen && self.listen.port() != 0 {
            return Err(ConfigError::SamePort(self.listen));
        }
        let timeout = self.admission_timeout;
        if timeout < Duration::from_secs(1) || timeout > Duration::from_secs(30) {
            return Err(ConfigError::AdmissionTimeout(timeout));
        }
        let vault_timeout = self.vault_timeout;
        if vault_timeout < Duration::from_millis(100) || vault_timeout * 2 > timeout {
            return Err(ConfigError::VaultTimeout {
                vault: vault_timeout,
                admission: timeout,
            });
        }
        if self.vault_check_interval < Duration::from_secs(5) {
            return Err(ConfigError::VaultCheckInterval(self.vault_check_interval));
        }
        if self.audit_interval < Duration::from_secs(1) {
            return Err(ConfigError::AuditInterval(self.audit_interval));
        }
        let (delivery, broker) = self.broker.validate()?;
        if let Some(broker) = &broker
            && broker.listen.port() != 0
            && [self.listen, self.admin_listen].contains(&broker.listen)
        {
            return Err(ConfigError::BrokerPort(broker.listen));
        }
        Ok(ServeConfig {
            listen: self.listen,
            tls_cert: self.tls_cert.clone(),
            tls_key: self.tls_key.clone(),
            client_ca: self.client_ca.clone(),
            admin_listen: self.admin_listen,
            stores,
            secrets_v2_enabled: self.secrets_v2_enabled,
            admission_timeout: timeout,
            max_in_flight: self.max_in_flight,
            max_connections: self.max_connections,
            vault: VaultSettings {
                store_namespace: self.scope.store_namespace.clone(),
                cache_ttl: self.vault_cache_ttl,
                stale_if_error: self.vault_stale_if_error.filter(|window| !window.is_zero()),
                timeouts: Timeouts {
                    connect: vault_timeout.min(Duration::from_secs(2)),
                    request: vault_timeout,
                },
                check_interval: self.vault_check_interval,
            },
            audit_pods: self.audit_pods.then_some(self.audit_interval),
            delivery,
            broker,
        })
    }
}

/// The scope policy from its three flags, shared by `serve` and the admin tools so both
/// classify namespaces alike.
/// Where the stores live and how namespaces are classified: `serve` and the admin tools share
/// these flags, so a tool classifies namespaces exactly as the webhook does.
#[derive(Debug, Clone, clap::Args)]
pub struct ScopeArgs {
    /// Namespace that holds the secret stores (and the VaultConfigs).
    #[arg(
        long,
        env = "IOMETE_SECRETS_STORE_NAMESPACE",
        default_value = "iomete-system"
    )]
    pub store_namespace: String,
    /// Comma-separated control-plane namespaces (default: the store namespace).
    #[arg(long, env = "IOMETE_SECRETS_ADMIN_NAMESPACES", value_delimiter = ',')]
    pub admin_namespaces: Vec<String>,
    /// Namespace label whose value names the namespace's domain.
    #[arg(
        long,
        env = "IOMETE_SECRETS_DOMAIN_LABEL",
        default_value = "iomete.com/domain"
    )]
    pub domain_label: String,
}

impl ScopeArgs {
    /// The scope policy these flags describe, validated.
    pub fn policy(&self) -> Result<ScopePolicy, ConfigError> {
        scope_policy(
            &self.store_namespace,
            &self.admin_namespaces,
            &self.domain_label,
        )
    }
}

fn scope_policy(
    store_namespace: &str,
    admin_namespaces: &[String],
    domain_label: &str,
) -> Result<ScopePolicy, ConfigError> {
    if !is_dns_label(store_namespace) {
        return Err(ConfigError::StoreNamespace(store_namespace.to_owned()));
    }
    let mut admins: BTreeSet<String> = BTreeSet::new();
    for namespace in admin_namespaces.iter().map(|ns| ns.trim()) {
        if !is_dns_label(namespace) {
            return Err(ConfigError::AdminNamespace(namespace.to_owned()));
        }
        admins.insert(namespace.to_owned());
    }
    if admins.is_empty() {
        admins.insert(store_namespace.to_owned());
    }
    if !is_label_key(domain_label) {
        return Err(ConfigError::DomainLabel(domain_label.to_owned()));
    }
    Ok(ScopePolicy {
        store_namespace: store_namespace.to_owned(),
        admin_namespaces: admins,
        domain_label: domain_label.to_owned(),
    })
}

/// A Kubernetes label key: `[prefix/]name`, prefix a DNS subdomain, name a qualified name.
pub fn is_label_key(key: &str) -> bool {
    let (prefix, name) = match key.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    let prefix_ok =
        prefix.is_none_or(|prefix| prefix.len() <= 253 && prefix.split('.').all(is_dns_label));
    let name_ok = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    prefix_ok && name_ok
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    fn args(extra: &[&str]) -> Result<ServeConfig, String> {
        let mut argv = vec![
            "iomete-secrets-webhook",
            "serve",
            "--tls-cert",
            "c.pem",
            "--tls-key",
            "k.pem",
        ];
        argv.extend_from_slice(extra);
        let cli = Cli::try_parse_from(argv).map_err(|error| error.to_string())?;
        let Command::Serve(serve) = cli.command else {
            return Err("not serve".into());
        };
        serve.validate().map_err(|error| error.to_string())
    }

    #[test]
    fn defaults_follow_the_contract() {
        let config = args(&[]).unwrap();
        assert_eq!(config.listen.to_string(), "0.0.0.0:8443");
        assert_eq!(config.admin_listen.to_string(), "0.0.0.0:8080");
        assert_eq!(config.stores.store_namespace, "iomete-system");
        assert_eq!(
            config.stores.admin_namespaces,
            BTreeSet::from(["iomete-system".to_owned()])
        );
        assert_eq!(config.stores.domain_label, "iomete.com/domain");
        assert!(config.secrets_v2_enabled);
        assert_eq!(config.vault.cache_ttl, Duration::from_secs(30));
        assert_eq!(config.vault.stale_if_error, None);
        assert_eq!(config.vault.timeouts.request, Duration::from_secs(3));
        assert_eq!(config.audit_pods, None, "the pod auditor is opt-in");
    }

    #[test]
    fn the_pod_auditor_is_turned_on_with_its_interval() {
        let config = args(&["--audit-pods", "--audit-interval", "30s"]).unwrap();
        assert_eq!(config.audit_pods, Some(Duration::from_secs(30)));
        let error = args(&["--audit-pods", "--audit-interval", "0s"]).unwrap_err();
        assert!(error.contains("--audit-interval"), "{error}");
    }

    #[test]
    fn vault_cache_can_be_disabled_and_stale_serving_enabled() {
        let config = args(&["--vault-cache-ttl", "0s", "--vault-stale-if-error", "10m"]).unwrap();
        assert_eq!(config.vault.cache_ttl, Duration::ZERO);
        assert_eq!(config.vault.stale_if_error, Some(Duration::from_secs(600)));
    }

    #[rstest]
    #[case(&["--secrets-v2-enabled", "false"], false)]
    #[case(&["--secrets-v2-enabled=true"], true)]
    #[case(&["--secrets-v2-enabled", "no"], false)]
    fn secrets_v2_flag_takes_a_value(#[case] extra: &[&str], #[case] expected: bool) {
        assert_eq!(args(extra).unwrap().secrets_v2_enabled, expected);
    }

    #[test]
    fn port_zero_on_both_listeners_is_accepted() {
        let config = args(&["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"]).unwrap();
        assert_eq!(config.listen.port(), 0);
    }

    #[test]
    fn admin_namespaces_are_comma_separated() {
        let config = args(&["--admin-namespaces", "iomete-system, ops"]).unwrap();
        assert_eq!(
            config.stores.admin_namespaces,
            BTreeSet::from(["iomete-system".to_owned(), "ops".to_owned()])
        );
    }

    #[rstest]
    #[case(&["--store-namespace", "Bad_NS"], "--store-namespace")]
    #[case(&["--admin-namespaces", "ok,-bad"], "--admin-namespaces")]
    #[case(&["--domain-label", "a/b/c"], "--domain-label")]
    #[case(&["--domain-label", "iomete.com/"], "--domain-label")]
    #[case(&["--listen", "0.0.0.0:9000", "--admin-listen", "0.0.0.0:9000"], "must differ")]
    #[case(&["--admission-timeout", "45s"], "--admission-timeout")]
    #[case(&["--listen", "not-an-address"], "--listen")]
    #[case(&["--admission-timeout", "soon"], "--admission-timeout")]
    #[case(&["--max-in-flight", "0"], "--max-in-flight")]
    #[case(&["--max-connections", "0"], "--max-connections")]
    #[case(&["--vault-timeout", "5s"], "--vault-timeout")]
    #[case(&["--vault-timeout", "10ms"], "--vault-timeout")]
    #[case(&["--vault-cache-ttl", "forever"], "--vault-cache-ttl")]
    #[case(&["--vault-check-interval", "1s"], "--vault-check-interval")]
    fn bad_flags_are_named(#[case] extra: &[&str], #[case] expected: &str) {
        let error = args(extra).unwrap_err();
        assert!(error.contains(expected), "{error}");
    }

    #[rstest]
    #[case("iomete.com/domain", true)]
    #[case("domain", true)]
    #[case("a.b-c.io/x_y.z", true)]
    #[case("", false)]
    #[case("/domain", false)]
    #[case("UPPER.com/x", false)]
    #[case("x/-bad", false)]
    fn label_keys(#[case] key: &str, #[case] valid: bool) {
        assert_eq!(is_label_key(key), valid);
    }
}
