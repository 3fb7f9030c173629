//! Flags of the admin tools (`check`, `catalogue`, `vault test`, `audit`), which also answer as
//! the kubectl plugin `kubectl iomete-secrets`.
//!
//! The cluster-reading flags are one struct ([`ToolArgs`]) flattened into every tool, with the
//! same defaults as `serve`, so a tool classifies namespaces exactly as the webhook does. Every
//! flag has an `IOMETE_SECRETS_` environment variable like the others.

use std::path::PathBuf;

use clap::ValueEnum;

use super::config::{ConfigError, ScopeArgs};
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
    #[command(flatten)]
    pub scope: ScopeArgs,
    /// Output: human (default) or json.
    #[arg(short = 'o', long = "output", env = "IOMETE_SECRETS_OUTPUT", value_enum, default_value_t = OutputFormat::Human)]
    pub output: OutputFormat,
}

impl ToolArgs {
    /// The scope policy, validated as `serve` validates it.
    pub fn scope_policy(&self) -> Result<ScopePolicy, ConfigError> {
        self.scope.policy()
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

#[cfg(test)]
mod tests {
    use clap::Parser;
    use rstest::rstest;

    use super::*;
    use crate::boot::config::{Cli, Command};

    fn parse(argv: &[&str]) -> Result<Command, String> {
        let mut all = vec!["iomete-secrets-webhook"];
        all.extend_from_slice(argv);
        Cli::try_parse_from(all)
            .map(|cli| cli.command)
            .map_err(|error| error.to_string())
    }

    #[test]
    fn check_takes_files_namespace_offline_and_output() {
        let Ok(Command::Check(check)) = parse(&[
            "check",
            "-f",
            "a.yaml,dir",
            "-f",
            "-",
            "-n",
            "spark-jobs",
            "--offline",
            "-o",
            "json",
        ]) else {
            panic!("not check");
        };
        assert_eq!(check.files, ["a.yaml", "dir", "-"]);
        assert_eq!(check.namespace.as_deref(), Some("spark-jobs"));
        assert!(check.offline);
        assert_eq!(check.tool.output, OutputFormat::Json);
        assert_eq!(check.tool.scope.store_namespace, "iomete-system");
    }

    #[rstest]
    #[case::check_needs_files(&["check"])]
    #[case::catalogue_needs_a_namespace(&["catalogue"])]
    #[case::vault_test_needs_a_name(&["vault", "test"])]
    #[case::unknown_output(&["audit", "-o", "yaml"])]
    fn incomplete_tool_flags_are_refused(#[case] argv: &[&str]) {
        assert!(parse(argv).is_err(), "{argv:?}");
    }

    #[test]
    fn audit_and_vault_test_parse() {
        let Ok(Command::Audit(audit)) = parse(&["audit", "--secret", "KUBERNETES/finance/k"])
        else {
            panic!("not audit");
        };
        assert_eq!(audit.secret.as_deref(), Some("KUBERNETES/finance/k"));
        assert_eq!(audit.namespace, None);
        let Ok(Command::Vault(VaultCommand::Test(test))) = parse(&["vault", "test", "vault-a"])
        else {
            panic!("not vault test");
        };
        assert_eq!(test.name, "vault-a");
    }

    /// The tools validate the scope flags as `serve` does, naming the flag.
    #[rstest]
    #[case(&["catalogue", "-n", "x", "--store-namespace", "Bad_NS"], "--store-namespace")]
    #[case(&["catalogue", "-n", "x", "--admin-namespaces", "ok,Bad_NS"], "--admin-namespaces")]
    #[case(&["catalogue", "-n", "x", "--domain-label", "a/b/c"], "--domain-label")]
    fn scope_flags_are_validated_as_serve_does(#[case] argv: &[&str], #[case] flag: &str) {
        let Ok(Command::Catalogue(catalogue)) = parse(argv) else {
            panic!("not catalogue");
        };
        let error = catalogue.tool.scope_policy().unwrap_err().to_string();
        assert!(error.contains(flag), "{error}");
    }
}
