//! The broker mode's flags (issue "secrets that never touch etcd"), flattened into `serve`.
//!
//! `--broker-listen` turns the broker on; it then needs the URL pods reach it at, the CA that
//! signed its certificate (public, put into each wrapped container) and the image that carries
//! `iomete-env` (the webhook's own). `--delivery-default` and `--delivery-required` choose the
//! mode of pods that do not choose, and forbid the other one.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::ValueEnum;

use crate::broker::protocol::broker_trust_anchors;
use crate::decision::delivery::{Delivery, DeliveryPolicy, is_broker_url};
use crate::decision::entrypoints::{EntrypointError, EntrypointTable};
use crate::decision::injection::BrokerSettings;
use crate::decision::names::is_dns_label;

/// A broker flag value that cannot work; the message names the flag.
#[derive(Debug, thiserror::Error)]
pub enum BrokerConfigError {
    #[error("--{0} is required with --broker-listen")]
    Missing(&'static str),
    #[error(
        "--delivery-default, --delivery-required or a --broker-*-domains flag asks for broker delivery, but the broker is off; set --broker-listen (and --broker-url, --broker-ca, --broker-image)"
    )]
    BrokerOff,
    #[error("--delivery-default is {default} but --delivery-required is {required}")]
    Contradiction {
        default: Delivery,
        required: Delivery,
    },
    #[error(
        "--broker-url {0:?} must be an https:// URL with a host and no path, query or fragment"
    )]
    Url(String),
    #[error("--broker-image must be a container image reference, got {0:?}")]
    Image(String),
    #[error("--{flag} entry {domain:?} is not a domain (a DNS label)")]
    Domain { flag: &'static str, domain: String },
    #[error("cannot read --{flag} {path}: {source}")]
    Read {
        flag: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "--broker-ca {0} holds no PEM certificate, or one that cannot be a trust anchor (iomete-env would refuse it)"
    )]
    CaNotPem(PathBuf),
    #[error("--broker-entrypoints {path}: {source}")]
    Entrypoints {
        path: PathBuf,
        #[source]
        source: EntrypointError,
    },
}

/// How the kubelet pulls the init container's image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PullPolicy {
    #[value(name = "IfNotPresent")]
    IfNotPresent,
    #[value(name = "Always")]
    Always,
    #[value(name = "Never")]
    Never,
}

impl PullPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            PullPolicy::IfNotPresent => "IfNotPresent",
            PullPolicy::Always => "Always",
            PullPolicy::Never => "Never",
        }
    }
}

/// A delivery mode as a flag value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DeliveryFlag {
    Env,
    Broker,
}

impl From<DeliveryFlag> for Delivery {
    fn from(flag: DeliveryFlag) -> Delivery {
        match flag {
            DeliveryFlag::Env => Delivery::Env,
            DeliveryFlag::Broker => Delivery::Broker,
        }
    }
}

#[derive(Debug, Clone, clap::Args)]
pub struct BrokerArgs {
    /// Delivery mode of a pod without the secrets.iomete.com/delivery annotation.
    #[arg(long, env = "IOMETE_SECRETS_DELIVERY_DEFAULT", value_enum, default_value_t = DeliveryFlag::Env)]
    pub delivery_default: DeliveryFlag,
    /// When set, pods asking for the other delivery mode are denied.
    #[arg(long, env = "IOMETE_SECRETS_DELIVERY_REQUIRED", value_enum)]
    pub delivery_required: Option<DeliveryFlag>,
    /// Comma-separated domains whose pods get broker delivery when they do not choose.
    #[arg(
        long,
        env = "IOMETE_SECRETS_BROKER_DEFAULT_DOMAINS",
        value_delimiter = ','
    )]
    pub broker_default_domains: Vec<String>,
    /// Comma-separated domains whose pods must use broker delivery.
    #[arg(
        long,
        env = "IOMETE_SECRETS_BROKER_REQUIRED_DOMAINS",
        value_delimiter = ','
    )]
    pub broker_required_domains: Vec<String>,
    /// Address of the broker's TLS endpoint (POST /v1/env), which turns broker mode on. It
    /// serves the certificate of --tls-cert and never asks for a client certificate.
    #[arg(long, env = "IOMETE_SECRETS_BROKER_LISTEN")]
    pub broker_listen: Option<SocketAddr>,
    /// The URL pods reach the broker at, e.g. https://iomete-secrets-webhook.iomete-system.svc:8444.
    #[arg(long, env = "IOMETE_SECRETS_BROKER_URL")]
    pub broker_url: Option<String>,
    /// PEM CA bundle that signed --tls-cert, given to wrapped containers to verify the broker.
    #[arg(long, env = "IOMETE_SECRETS_BROKER_CA")]
    pub broker_ca: Option<PathBuf>,
    /// Image of the init container that installs iomete-env: the webhook's own image.
    #[arg(long, env = "IOMETE_SECRETS_BROKER_IMAGE")]
    pub broker_image: Option<String>,
    /// Pull policy of that init container.
    #[arg(long, env = "IOMETE_SECRETS_BROKER_IMAGE_PULL_POLICY", value_enum, default_value_t = PullPolicy::IfNotPresent)]
    pub broker_image_pull_policy: PullPolicy,
    /// JSON file of image entrypoints, for containers without `command`: {"repository": {"entrypoint":
    /// [...], "cmd": [...]}}, a repository ending in "/*" matching every image under it. Added to
    /// (and overriding) the shipped entries for the Spark and Jupyter docker-stacks images.
    #[arg(long, env = "IOMETE_SECRETS_BROKER_ENTRYPOINTS")]
    pub broker_entrypoints: Option<PathBuf>,
}

/// The broker's validated settings, its files read.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    pub listen: SocketAddr,
    /// What admission writes into a broker-mode pod.
    pub settings: Arc<BrokerSettings>,
}

impl BrokerArgs {
    /// The delivery policy and, when broker mode is on, its settings.
    pub fn validate(&self) -> Result<(DeliveryPolicy, Option<BrokerConfig>), BrokerConfigError> {
        let default = Delivery::from(self.delivery_default);
        let required = self.delivery_required.map(Delivery::from);
        if let Some(required) = required
            && required != default
            && self.delivery_default != DeliveryFlag::Env
        {
            return Err(BrokerConfigError::Contradiction { default, required });
        }
        let default_domains = domains("broker-default-domains", &self.broker_default_domains)?;
        let required_domains = domains("broker-required-domains", &self.broker_required_domains)?;
        let wants_broker = default == Delivery::Broker
            || required == Some(Delivery::Broker)
            || !default_domains.is_empty()
            || !required_domains.is_empty();
        let broker = match self.broker_listen {
            None if wants_broker => {
                return Err(BrokerConfigError::BrokerOff);
            }
            None => None,
            Some(listen) => {
                let url = self
                    .broker_url
                    .clone()
                    .ok_or(BrokerConfigError::Missing("broker-url"))?;
                if !is_broker_url(&url) {
                    return Err(BrokerConfigError::Url(url));
                }
                let image = self
                    .broker_image
                    .clone()
                    .ok_or(BrokerConfigError::Missing("broker-image"))?;
                if image.is_empty() || image.chars().any(char::is_whitespace) {
                    return Err(BrokerConfigError::Image(image));
                }
                let ca = self
                    .broker_ca
                    .as_deref()
                    .ok_or(BrokerConfigError::Missing("broker-ca"))?;
                let ca_pem = read("broker-ca", ca)?;
                if broker_trust_anchors(&ca_pem).is_none() {
                    return Err(BrokerConfigError::CaNotPem(ca.to_owned()));
                }
                let mut entrypoints = EntrypointTable::shipped();
                if let Some(path) = &self.broker_entrypoints {
                    entrypoints = entrypoints
                        .with_file(&read("broker-entrypoints", path)?)
                        .map_err(|source| BrokerConfigError::Entrypoints {
                            path: path.clone(),
                            source,
                        })?;
                }
                let settings = BrokerSettings {
                    url: url.trim_end_matches('/').to_owned(),
                    ca_pem,
                    image,
                    pull_policy: self.broker_image_pull_policy.as_str(),
                    entrypoints,
                };
                Some(BrokerConfig {
                    listen,
                    settings: Arc::new(settings),
                })
            }
        };
        let policy = DeliveryPolicy {
            default,
            required,
            broker_enabled: broker.is_some(),
            broker_default_domains: default_domains,
            broker_required_domains: required_domains,
        };
        Ok((policy, broker))
    }
}

fn domains(flag: &'static str, listed: &[String]) -> Result<BTreeSet<String>, BrokerConfigError> {
    listed
        .iter()
        .map(|domain| domain.trim())
        .map(|domain| match is_dns_label(domain) {
            true => Ok(domain.to_owned()),
            false => Err(BrokerConfigError::Domain {
                flag,
                domain: domain.to_owned(),
            }),
        })
        .collect()
}

fn read(flag: &'static str, path: &Path) -> Result<String, BrokerConfigError> {
    std::fs::read_to_string(path).map_err(|source| BrokerConfigError::Read {
        flag,
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use rstest::rstest;

    #[derive(Parser)]
    struct Flags {
        #[command(flatten)]
        broker: BrokerArgs,
    }

    fn validate(argv: &[&str]) -> Result<(DeliveryPolicy, Option<BrokerConfig>), String> {
        let mut full = vec!["test"];
        full.extend_from_slice(argv);
        let flags = Flags::try_parse_from(full).map_err(|error| error.to_string())?;
        flags.broker.validate().map_err(|error| error.to_string())
    }

    /// Broker flags with a real CA file; the directory lives as long as the flags.
    struct On {
        _dir: tempfile::TempDir,
        argv: Vec<String>,
    }

    impl On {
        fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            let ca = dir.path().join("ca.crt");
            let bundle = crate::boot::certs::generate(&["webhook".to_owned()]).unwrap();
            std::fs::write(&ca, bundle.ca_pem).unwrap();
            let argv = [
                "--broker-listen",
                "0.0.0.0:8444",
                "--broker-url",
                "https://webhook.iomete-system.svc:8444",
                "--broker-ca",
                ca.to_str().unwrap(),
                "--broker-image",
                "iomete/iomete-secrets-webhook:0.1.0",
            ]
            .map(String::from)
            .to_vec();
            On { _dir: dir, argv }
        }

        fn with(&self, extra: &[&str]) -> Vec<String> {
            let mut argv = self.argv.clone();
            argv.extend(extra.iter().map(|arg| arg.to_string()));
            argv
        }
    }

    fn validate_owned(argv: &[String]) -> Result<(DeliveryPolicy, Option<BrokerConfig>), String> {
        validate(&argv.iter().map(String::as_str).collect::<Vec<_>>())
    }

    #[test]
    fn off_by_default_and_env_delivery() {
        let (policy, broker) = validate(&[]).unwrap();
        assert_eq!(policy, DeliveryPolicy::default());
        assert!(broker.is_none());
    }

    #[test]
    fn on_with_its_settings() {
        let on = On::new();
        let (policy, broker) =
            validate_owned(&on.with(&["--delivery-required", "broker"])).unwrap();
        assert_eq!(policy.required, Some(Delivery::Broker));
        assert!(policy.broker_enabled);
        let settings = &broker.unwrap().settings;
        assert!(policy.broker_required_domains.is_empty());
        assert_eq!(settings.pull_policy, "IfNotPresent");
        assert_eq!(settings.url, "https://webhook.iomete-system.svc:8444");
        assert!(settings.ca_pem.contains("BEGIN CERTIFICATE"));
    }

    #[test]
    fn domains_are_comma_separated() {
        let on = On::new();
        let argv = on.with(&[
            "--broker-default-domains",
            "finance, hr",
            "--broker-required-domains",
            "legal",
        ]);
        let (policy, _) = validate_owned(&argv).unwrap();
        assert_eq!(
            policy.broker_default_domains,
            BTreeSet::from(["finance".to_owned(), "hr".to_owned()])
        );
        assert_eq!(
            policy.broker_required_domains,
            BTreeSet::from(["legal".to_owned()])
        );
    }

    #[test]
    fn files_that_cannot_be_used_are_named() {
        let on = On::new();
        let error =
            validate_owned(&on.with(&["--broker-entrypoints", "/nonexistent.json"])).unwrap_err();
        assert!(error.contains("--broker-entrypoints"), "{error}");
        let bad = on._dir.path().join("entrypoints.json");
        std::fs::write(&bad, "[]").unwrap();
        let error =
            validate_owned(&on.with(&["--broker-entrypoints", bad.to_str().unwrap()])).unwrap_err();
        assert!(error.contains("--broker-entrypoints"), "{error}");
        let mut no_pem = on.argv.clone();
        no_pem[5] = bad.to_str().unwrap().to_owned();
        let error = validate_owned(&no_pem).unwrap_err();
        assert!(error.contains("--broker-ca"), "{error}");
        // The markers alone are not a certificate iomete-env could trust.
        let markers = on._dir.path().join("markers.crt");
        std::fs::write(
            &markers,
            "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let mut fake = on.argv.clone();
        fake[5] = markers.to_str().unwrap().to_owned();
        let error = validate_owned(&fake).unwrap_err();
        assert!(error.contains("--broker-ca"), "{error}");
    }

    #[rstest]
    #[case(&["--delivery-default", "broker"], "--broker-listen")]
    #[case(&["--delivery-required", "broker"], "--broker-listen")]
    #[case(&["--broker-listen", "0.0.0.0:8444"], "--broker-url")]
    #[case(&["--delivery-default", "broker", "--delivery-required", "env"], "--delivery-required")]
    #[case(&["--broker-required-domains", "finance"], "--broker-listen")]
    #[case(&["--broker-default-domains", "finance,Bad_Domain"], "--broker-default-domains entry \"Bad_Domain\"")]
    fn bad_combinations_are_named(#[case] argv: &[&str], #[case] expected: &str) {
        let error = validate(argv).unwrap_err();
        assert!(error.contains(expected), "{error}");
    }

    #[rstest]
    #[case("http://webhook:8444")]
    #[case("https://")]
    #[case("https://webhook:8444/v1/env")]
    #[case("https://user@webhook")]
    fn bad_urls_are_refused(#[case] url: &str) {
        let on = On::new();
        let mut argv = on.argv.clone();
        argv[3] = url.to_owned();
        let error = validate_owned(&argv).unwrap_err();
        assert!(error.contains("--broker-url"), "{error}");
    }
}
