//! How a pod's values reach its containers, and the names the broker mode reserves.
//!
//! In `env` delivery (the default) the webhook writes the values into the pod spec. In `broker`
//! delivery it writes none: it wraps each targeted container's entrypoint in `iomete-env`, which
//! fetches the values at container start from the webhook's broker, authorized by a token the
//! kubelet mints for that pod. This module chooses the mode for a pod ([`choose`]) and holds what
//! the admission, the broker and `iomete-env` must agree on: the reserved names and paths, the
//! token's audience and the env names `iomete-env` refuses to set ([`is_denied_env_name`]).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

/// Chooses the delivery mode of a pod: `env` or `broker`.
pub const DELIVERY_ANNOTATION: &str = "secrets.iomete.com/delivery";

/// The audience of the pod-bound token the broker accepts, and of no other token.
pub const BROKER_AUDIENCE: &str = "iomete-secrets-broker";
/// Life of the projected token: the kubelet refreshes it at 80 %, the broker needs it only at
/// container start.
pub const TOKEN_EXPIRATION_SECONDS: i64 = 600;
/// The projected token volume, mounted read-only into the wrapped containers only.
pub const TOKEN_VOLUME: &str = "iomete-broker-token";
/// Where the token volume is mounted.
pub const TOKEN_DIR: &str = "/var/run/secrets/iomete.com/broker";
/// The token's file in [`TOKEN_DIR`].
pub const TOKEN_FILE: &str = "token";

/// The memory `emptyDir` that carries `iomete-env` from the init container to the wrapped ones.
pub const WRAPPER_VOLUME: &str = "iomete-env";
/// Where [`WRAPPER_VOLUME`] is mounted, read-only in the wrapped containers.
pub const WRAPPER_DIR: &str = "/var/run/iomete-env";
/// The binary's name in [`WRAPPER_DIR`] and in the webhook's image.
pub const WRAPPER_BINARY: &str = "iomete-env";
/// Where the webhook's image carries `iomete-env`, which the init container runs as
/// `iomete-env install <WRAPPER_DIR>/iomete-env`.
pub const IMAGE_WRAPPER_PATH: &str = "/usr/local/bin/iomete-env";
/// The init container that copies `iomete-env` into [`WRAPPER_VOLUME`].
pub const INSTALL_CONTAINER: &str = "iomete-env-install";

/// Every control variable of `iomete-env` starts with this prefix; `iomete-env` removes them
/// all before it starts the application, and a pod may not set any of them itself.
pub const CONTROL_ENV_PREFIX: &str = "IOMETE_ENV_";
/// The broker's URL (`https://…`), for `iomete-env`.
pub const ENV_BROKER_URL: &str = "IOMETE_ENV_BROKER_URL";
/// The PEM CA bundle (public) that signed the broker's certificate.
pub const ENV_BROKER_CA: &str = "IOMETE_ENV_BROKER_CA";
/// The name of the container `iomete-env` runs in, which it sends to the broker.
pub const ENV_CONTAINER: &str = "IOMETE_ENV_CONTAINER";
/// The container's reference list (names, keys and sources; never values), in the format of
/// [`crate::decision::reference::write_reference_list`]. The broker reads it from the pod spec,
/// never from the request.
pub const ENV_REFERENCES: &str = "IOMETE_ENV_REFERENCES";
/// Overrides the token file (`TOKEN_DIR/TOKEN_FILE`); for running `iomete-env` by hand.
pub const ENV_TOKEN_FILE: &str = "IOMETE_ENV_TOKEN_FILE";
/// Where `iomete-env` writes its one-line failure reason (the container's
/// `terminationMessagePath`, `/dev/termination-log` by default).
pub const ENV_TERMINATION_LOG: &str = "IOMETE_ENV_TERMINATION_LOG";

/// How long, in whole seconds, `iomete-env` keeps trying a broker that is unreachable or asks
/// to retry (default 120); for running `iomete-env` by hand and for tests.
pub const ENV_DEADLINE: &str = "IOMETE_ENV_DEADLINE";

/// The broker's one endpoint: `POST` a [`crate::broker::protocol::EnvRequest`] with the token as
/// bearer, answered by a [`crate::broker::protocol::EnvAnswer`].
pub const BROKER_PATH: &str = "/v1/env";

/// How a pod's values reach its containers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Delivery {
    /// Values written into the pod spec's env at admission.
    Env,
    /// Values fetched by `iomete-env` from the broker at container start.
    Broker,
}

impl Delivery {
    pub fn as_str(self) -> &'static str {
        match self {
            Delivery::Env => "env",
            Delivery::Broker => "broker",
        }
    }
}

impl fmt::Display for Delivery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Delivery {
    type Err = DeliveryError;
    fn from_str(text: &str) -> Result<Self, DeliveryError> {
        match text {
            "env" => Ok(Delivery::Env),
            "broker" => Ok(Delivery::Broker),
            other => Err(DeliveryError::Unknown(other.to_owned())),
        }
    }
}

/// The operator's rules for choosing a mode: cluster-wide, and per domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryPolicy {
    /// The mode of a pod without the annotation.
    pub default: Delivery,
    /// When set, every pod with references must use this mode.
    pub required: Option<Delivery>,
    /// Whether this webhook serves the broker (`--broker-listen` and its settings are set).
    pub broker_enabled: bool,
    /// Domains whose pods get broker delivery when they do not choose.
    pub broker_default_domains: BTreeSet<String>,
    /// Domains whose pods must use broker delivery.
    pub broker_required_domains: BTreeSet<String>,
}

impl DeliveryPolicy {
    /// Env delivery by default, nothing required, the broker off.
    pub const fn env_only() -> Self {
        DeliveryPolicy {
            default: Delivery::Env,
            required: None,
            broker_enabled: false,
            broker_default_domains: BTreeSet::new(),
            broker_required_domains: BTreeSet::new(),
        }
    }

    /// The default and the requirement for a pod of `domain` (`None`: an admin namespace or
    /// one without a domain, which only the cluster-wide rules reach).
    fn for_domain(&self, domain: Option<&str>) -> (Delivery, Option<Delivery>) {
        let listed = |domains: &BTreeSet<String>| domain.is_some_and(|d| domains.contains(d));
        if listed(&self.broker_required_domains) {
            return (Delivery::Broker, Some(Delivery::Broker));
        }
        if listed(&self.broker_default_domains) {
            return (Delivery::Broker, self.required);
        }
        (self.default, self.required)
    }
}

impl Default for DeliveryPolicy {
    fn default() -> Self {
        DeliveryPolicy::env_only()
    }
}

/// A pod's choice of mode cannot be honoured.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeliveryError {
    #[error("annotation {DELIVERY_ANNOTATION} is {0:?}; it must be \"env\" or \"broker\"")]
    Unknown(String),
    #[error(
        "this cluster requires {required} delivery for this namespace (annotation {DELIVERY_ANNOTATION}), so secret values are never written into the pod spec; set {DELIVERY_ANNOTATION}: {required} or remove the annotation"
    )]
    Required { required: Delivery },
    #[error(
        "annotation {DELIVERY_ANNOTATION} asks for broker delivery, which this webhook does not serve (no --broker-listen); remove the annotation or ask an administrator to enable broker mode"
    )]
    BrokerDisabled,
}

/// The delivery mode of a pod with these annotations, in a namespace of `domain`.
pub fn choose(
    annotations: Option<&BTreeMap<String, String>>,
    policy: &DeliveryPolicy,
    domain: Option<&str>,
) -> Result<Delivery, DeliveryError> {
    let asked = annotations
        .and_then(|annotations| annotations.get(DELIVERY_ANNOTATION))
        .map(|value| value.parse::<Delivery>())
        .transpose()?;
    let (default, required) = policy.for_domain(domain);
    let chosen = asked.or(required).unwrap_or(default);
    if let Some(required) = required
        && chosen != required
    {
        return Err(DeliveryError::Required { required });
    }
    if chosen == Delivery::Broker && !policy.broker_enabled {
        return Err(DeliveryError::BrokerDisabled);
    }
    Ok(chosen)
}

/// Whether `url` is a broker URL: `https://` and a host (and port), no path, query, fragment
/// or user info, at most a trailing `/`; the webhook's `--broker-url` and `iomete-env` hold it
/// to the same shape, and [`BROKER_PATH`] is appended to it.
pub fn is_broker_url(url: &str) -> bool {
    let Some(rest) = url.strip_prefix("https://") else {
        return false;
    };
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    !authority.is_empty()
        && !authority.contains(['/', '?', '#', '@'])
        && !authority
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
}

/// Env names `iomete-env` never sets from a broker answer, and a broker-mode pod may not
/// reference: they change how the process or its runtime loads code (the dynamic loader, the
/// JVM, interpreters, the shell), or are `iomete-env`'s own. `SPARK_SUBMIT_OPTS` is built by
/// `iomete-env` from the Spark properties, never set directly.
pub fn is_denied_env_name(name: &str) -> bool {
    const EXACT: &[&str] = &[
        "PATH",
        "HOME",
        "SHELL",
        "IFS",
        "ENV",
        "BASH_ENV",
        "CDPATH",
        "JAVA_TOOL_OPTIONS",
        "_JAVA_OPTIONS",
        "JDK_JAVA_OPTIONS",
        "JAVA_HOME",
        "CLASSPATH",
        "PYTHONPATH",
        "PYTHONHOME",
        "PYTHONSTARTUP",
        "PYTHONINSPECT",
        "PERL5LIB",
        "PERL5OPT",
        "RUBYLIB",
        "RUBYOPT",
        "NODE_OPTIONS",
        "NODE_PATH",
        "GCONV_PATH",
        "HOSTALIASES",
        "LOCALDOMAIN",
        "RES_OPTIONS",
        "TMPDIR",
        crate::decision::spark::SPARK_SUBMIT_OPTS,
    ];
    const PREFIXES: &[&str] = &["LD_", "DYLD_", "MALLOC_", "GLIBC_", CONTROL_ENV_PREFIX];
    EXACT.contains(&name) || PREFIXES.iter().any(|prefix| name.starts_with(prefix))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    fn annotated(value: &str) -> BTreeMap<String, String> {
        BTreeMap::from([(DELIVERY_ANNOTATION.to_owned(), value.to_owned())])
    }

    const OPEN: DeliveryPolicy = DeliveryPolicy {
        default: Delivery::Env,
        required: None,
        broker_enabled: true,
        broker_default_domains: BTreeSet::new(),
        broker_required_domains: BTreeSet::new(),
    };

    #[rstest]
    #[case::default_env(None, OPEN, Ok(Delivery::Env))]
    #[case::asks_broker(Some("broker"), OPEN, Ok(Delivery::Broker))]
    #[case::asks_env(Some("env"), DeliveryPolicy { default: Delivery::Broker, ..OPEN }, Ok(Delivery::Env))]
    #[case::default_broker(None, DeliveryPolicy { default: Delivery::Broker, ..OPEN }, Ok(Delivery::Broker))]
    #[case::required_unannotated(None, DeliveryPolicy { required: Some(Delivery::Broker), ..OPEN }, Ok(Delivery::Broker))]
    #[case::required_refuses_env(Some("env"), DeliveryPolicy { required: Some(Delivery::Broker), ..OPEN }, Err(DeliveryError::Required { required: Delivery::Broker }))]
    #[case::unknown(Some("Broker"), OPEN, Err(DeliveryError::Unknown("Broker".into())))]
    #[case::disabled(Some("broker"), DeliveryPolicy { broker_enabled: false, ..OPEN }, Err(DeliveryError::BrokerDisabled))]
    fn chooses(
        #[case] asked: Option<&str>,
        #[case] policy: DeliveryPolicy,
        #[case] expected: Result<Delivery, DeliveryError>,
    ) {
        let annotations = asked.map(annotated);
        assert_eq!(
            choose(annotations.as_ref(), &policy, Some("finance")),
            expected
        );
    }

    #[rstest]
    #[case::default_domain(None, Some("finance"), Ok(Delivery::Broker))]
    #[case::default_domain_may_ask_env(Some("env"), Some("finance"), Ok(Delivery::Env))]
    #[case::required_domain(None, Some("hr"), Ok(Delivery::Broker))]
    #[case::required_domain_refuses_env(Some("env"), Some("hr"), Err(DeliveryError::Required { required: Delivery::Broker }))]
    #[case::other_domain(None, Some("marketing"), Ok(Delivery::Env))]
    #[case::admin_namespace(None, None, Ok(Delivery::Env))]
    fn domains_have_their_own_rules(
        #[case] asked: Option<&str>,
        #[case] domain: Option<&str>,
        #[case] expected: Result<Delivery, DeliveryError>,
    ) {
        let policy = DeliveryPolicy {
            broker_default_domains: BTreeSet::from(["finance".to_owned()]),
            broker_required_domains: BTreeSet::from(["hr".to_owned()]),
            ..OPEN
        };
        let annotations = asked.map(annotated);
        assert_eq!(choose(annotations.as_ref(), &policy, domain), expected);
    }

    #[rstest]
    #[case("LD_PRELOAD", true)]
    #[case("JAVA_TOOL_OPTIONS", true)]
    #[case("PATH", true)]
    #[case("IOMETE_ENV_BROKER_URL", true)]
    #[case("SPARK_SUBMIT_OPTS", true)]
    #[case("DB_PASSWORD", false)]
    #[case("PATHS", false)]
    fn denies_loader_and_runtime_names(#[case] name: &str, #[case] denied: bool) {
        assert_eq!(is_denied_env_name(name), denied, "{name}");
    }
}
