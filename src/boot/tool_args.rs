//! Flags of the admin tools (`check`, `catalogue`, `vault test`, `audit`), which also answer as
//! the kubectl plugin `kubectl iomete-secrets`.
//!
//! The cluster-reading flags are one struct ([`ToolArgs`]) flattened into every tool, with the
//! same defaults as `serve`, so a tool classifies namespaces exactly as the webhook does. Every
//! flag has an `IOMETE_SECRETS_` environment variable like the others.

use std::path::PathBuf;

use clap::ValueEnum;

use super::config::{ConfigError, scope_policy};
use crate::backends::kubernetes::ScopePolicy;

/// How a tool prints what it found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// Lines for people.
    Human,
    /// One JSON document for machines.
    Json,
}

/// How the tools reach and read the cluster.
#[derive(Debug, Clone, clap::Args)]
pub struct ToolArgs {
    /// Kubeconfig file (default: KUBECONFIG, then ~/.kube/config, then in-cluster).
    #[arg(long, env = "IOMETE_SECRETS_KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// Kubeconfig context (default: the current context).
    #[arg(long, env = "IOMETE_SECRETS_CONTEXT")]
    pub context: Option<String>,
    /// Namespace that holds the secret stores and VaultConfigs (as the webhook's flag).
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
    /// Output: human (default) or json.
    #[arg(short = 'o', long = "output", env = "IOMETE_SECRETS_OUTPUT", value_enum, default_value_t = OutputFormat::Human)]
    pub output: OutputFormat,
}

impl ToolArgs {
    /// The scope policy, validated as `serve` validates it.
    pub fn scope_policy(&self) -> Result<ScopePolicy, ConfigError> {
        scope_policy(
            &self.store_namespace,
            &self.admin_namespaces,
            &self.domain_label,
        )
    }
}

#[derive(Debug, Clone, clap::Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub tool: ToolArgs,
    /// Manifest file, directory (its .yaml, .yml and .json files) or - for standard input;
    /// repeatable.
    #[arg(
        short = 'f',
        long = "filename",
        env = "IOMETE_SECRETS_CHECK_FILES",
        value_delimiter = ',',
        required = true
    )]
    pub files: Vec<String>,
    /// Namespace for manifests that name none (default: the kubeconfig context's namespace).
    #[arg(short = 'n', long, env = "IOMETE_SECRETS_CHECK_NAMESPACE")]
    pub namespace: Option<String>,
    /// Check the grammar only, without reading the cluster.
    #[arg(long, env = "IOMETE_SECRETS_CHECK_OFFLINE")]
    pub offline: bool,
}

#[derive(Debug, Clone, clap::Args)]
pub struct CatalogueArgs {
    #[command(flatten)]
    pub tool: ToolArgs,
    /// The namespace whose catalogue to show.
    #[arg(short = 'n', long, env = "IOMETE_SECRETS_CATALOGUE_NAMESPACE")]
    pub namespace: String,
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum VaultCommand {
    /// Test a VaultConfig's connection now (login, then a read permission probe on its
    /// prefix), the check behind its Ready condition.
    Test(Box<VaultTestArgs>),
}

#[derive(Debug, Clone, clap::Args)]
pub struct VaultTestArgs {
    #[command(flatten)]
    pub tool: ToolArgs,
    /// The VaultConfig's name (in the store namespace).
    #[arg(env = "IOMETE_SECRETS_VAULT_CONFIG")]
    pub name: String,
    /// Timeout of each request to Vault.
    #[arg(long, env = "IOMETE_SECRETS_VAULT_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    pub vault_timeout: std::time::Duration,
}

#[derive(Debug, Clone, clap::Args)]
pub struct AuditArgs {
    #[command(flatten)]
    pub tool: ToolArgs,
    /// Only this namespace (default: every namespace).
    #[arg(short = 'n', long, env = "IOMETE_SECRETS_AUDIT_NAMESPACE")]
    pub namespace: Option<String>,
    /// Only pods that hold an outdated version of this reference, `TYPE/id/key` (e.g.
    /// KUBERNETES/finance/db_password): the pods to redeploy after rotating it.
    #[arg(long, env = "IOMETE_SECRETS_AUDIT_SECRET")]
    pub secret: Option<String>,
    /// Timeout of each request to Vault.
    #[arg(long, env = "IOMETE_SECRETS_VAULT_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    pub vault_timeout: std::time::Duration,
}
