//! The plan's vocabulary, shared by every delivery mechanism: what a plan holds ([`Plan`],
//! [`EnvChange`], [`Injected`]), where a change lands ([`ContainerPath`]) and why a pod is
//! refused ([`InjectionError`]).

use std::collections::BTreeMap;

use super::broker_wrap::BrokerPlan;
use super::{MAX_INJECTIONS_PER_POD, MAX_PATCH_BYTES};
use crate::decision::delivery::{DELIVERY_ANNOTATION, DeliveryError};
use crate::decision::legacy::{PlaceholderError, Template};
use crate::decision::reference::{self, CONTAINERS_ANNOTATION, SecretRef};
use crate::decision::scope::{ScopeError, VaultGrant};
use crate::decision::spark::SparkConfError;

/// `admission`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InjectionError {
    #[error(transparent)]
    Reference(#[from] reference::ReferenceError),
    #[error("container {container:?} env {env:?}: {source}")]
    Placeholder {
        container: String,
        env: String,
        source: PlaceholderError,
    },
    #[error(
        "annotation {CONTAINERS_ANNOTATION} names container {name:?}, which is not in this pod (containers: {available})"
    )]
    UnknownContainer { name: String, available: String },
    #[error(
        "Secrets V2 is disabled on this cluster, so the secrets.iomete.com/ annotations cannot be used; remove them or ask an administrator to enable Secrets V2"
    )]
    SecretsV2Disabled,
    #[error(
        "{reference} names Vault configuration {config:?}, which does not exist (no VaultConfig {config:?} in the store namespace); check the name or ask an administrator to create it"
    )]
    VaultConfigNotFound { reference: String, config: String },
    #[error(
        "{reference} uses a Vault source, but the webhook's copy of the Vault configurations is not current (still loading, or its watch is reconnecting); this is temporary, retry the request"
    )]
    VaultConfigsNotFresh { reference: String },
    #[error("container {container:?}: {source}")]
    SparkConf {
        container: String,
        source: SparkConfError,
    },
    #[error(transparent)]
    OutOfScope(#[from] ScopeError),
    #[error(
        "this pod would receive {count} injected values ({counted}), more than the {MAX_INJECTIONS_PER_POD} allowed per pod; name fewer containers in {CONTAINERS_ANNOTATION} or reference fewer secrets"
    )]
    TooManyInjections { count: usize, counted: String },
    #[error(
        "the patch for this pod would be larger than the {MAX_PATCH_BYTES} bytes allowed (the API server stores no pod over about 1.5 MiB); reference fewer or smaller secrets, or name fewer containers in {CONTAINERS_ANNOTATION}"
    )]
    PatchTooLarge,
    #[error(transparent)]
    Delivery(#[from] DeliveryError),
    #[error(
        "container {container:?} sets no command and its image {image:?} is not in the broker's entrypoint table, so iomete-env cannot wrap its entrypoint; set the container's command (and args) to what the image runs, or ask an administrator to add the image to --broker-entrypoints"
    )]
    UnknownEntrypoint { container: String, image: String },
    #[error(
        "this pod already has {0}, a name broker delivery reserves for itself; rename it, or use {DELIVERY_ANNOTATION}: env"
    )]
    ReservedName(String),
    #[error(
        "env {0:?} cannot be delivered by the broker: iomete-env never sets variables that change how a program or its runtime loads code (LD_*, PATH, JAVA_TOOL_OPTIONS, …) or its own IOMETE_ENV_*; use another name"
    )]
    DeniedEnvName(String),
    #[error(
        "container {container:?} env {env:?} holds a ${{secrets.…}} placeholder, which writes the value into the pod spec, but this pod uses broker delivery; reference the secret in secrets.iomete.com/env-secrets instead"
    )]
    PlaceholderInBrokerMode { container: String, env: String },
    /// A bug in the caller of [`render`], never the user's doing.
    #[error("internal error, please report it: {0}")]
    Internal(#[from] MissingValue),
}

/// `render` was given values that do not cover the plan.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no value was fetched for {0}")]
pub struct MissingValue(pub SecretRef);

/// Which list of the pod spec a container sits in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ContainerList {
    Containers,
    InitContainers,
}

impl ContainerList {
    pub(super) fn field(self) -> &'static str {
        match self {
            ContainerList::Containers => "containers",
            ContainerList::InitContainers => "initContainers",
        }
    }
}

/// A container of the pod, by position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerPath {
    pub list: ContainerList,
    pub index: usize,
    pub name: String,
}

impl ContainerPath {
    /// The JSON pointer of this container's `env`, followed by `tail` (which needs no escaping:
    /// indices, `-` and `value`).
    pub(super) fn env_pointer(&self, tail: &str) -> String {
        format!("/spec/{}/{}/env{tail}", self.list.field(), self.index)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvChange {
    /// The container has no `env`: create it with these variables.
    CreateEnv(Vec<(String, SecretRef)>),
    /// Replace the whole entry at `index` (an existing variable of that name).
    ReplaceVar {
        index: usize,
        name: String,
        secret: SecretRef,
    },
    /// Append a new variable.
    AppendVar { name: String, secret: SecretRef },
    /// Replace the value of the entry at `index` (a legacy placeholder template).
    ReplaceValue { index: usize, template: Template },
    /// Deliver these Spark properties as `-D` tokens in `SPARK_SUBMIT_OPTS`.
    SparkSubmitOpts {
        placement: OptionsPlacement,
        properties: Vec<(String, SecretRef)>,
    },
}

/// Where the `SPARK_SUBMIT_OPTS` tokens go in a container's env.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OptionsPlacement {
    /// The container has no `env` (and no env-secrets create one): create it with this variable.
    CreateEnv,
    /// Append a new `SPARK_SUBMIT_OPTS` variable.
    AppendVar,
    /// Replace the value of the literal `SPARK_SUBMIT_OPTS` at `index` with `literal`, a space
    /// and the tokens.
    ExtendLiteral { index: usize, literal: String },
}

/// Where an injected value came from, for the audit annotation and logs (never the value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Injected {
    pub target: String,
    pub secret: SecretRef,
}

/// Everything decided about a pod before any value is read.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    pub changes: Vec<(ContainerPath, EnvChange)>,
    /// `Some(digest)` when the V2 references are injected by this answer.
    pub mark_injected: Option<String>,
    pub annotations_present: bool,
    pub warnings: Vec<String>,
    pub injected: Vec<Injected>,
    /// Each Vault configuration the references use, as it was when they were authorized.
    pub vault_grants: BTreeMap<String, VaultGrant>,
    /// `Some` when the references are delivered by the broker: then `changes` holds no value.
    pub broker: Option<BrokerPlan>,
}

impl Plan {
    /// Whether the pod needs no patch at all.
    pub fn is_noop(&self) -> bool {
        self.changes.is_empty() && self.mark_injected.is_none()
    }

    /// The distinct secrets the plan needs, in a stable order.
    pub fn needed_secrets(&self) -> Vec<SecretRef> {
        reference::distinct_secrets(self.injected.iter().map(|injected| &injected.secret))
    }
}
