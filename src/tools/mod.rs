//! The admin tools: subcommands of the binary that cluster admins and data teams run with their
//! own kubeconfig, also installed as the kubectl plugin `kubectl iomete-secrets`.
//!
//! - [`check`]: the webhook's own decision run on manifests before they are deployed;
//! - [`catalogue`]: what a namespace may reference, by scope and source;
//! - [`vault_test`]: a VaultConfig's connection test, the check behind its `Ready` condition;
//! - [`audit`]: pods that missed injection, and pods holding a secret rotated since;
//! - [`auditor`]: the same classification in the webhook (`serve --audit-pods`, opt-in), as
//!   gauges and Events.
//!
//! Pure pieces ([`manifest`], the verdicts, the audit classification) are plain functions; the
//! one read of the cluster is [`cluster`]. The tools read and never write, never print a value,
//! and report through [`Report`]: one document printed once at the end, human or JSON, and a
//! count of problems that becomes the exit status (0 none, 1 problems found, 2 the tool could
//! not run: see [`ToolError`]).

pub mod audit;
pub mod auditor;
pub mod catalogue;
pub mod check;
pub mod cluster;
pub mod manifest;
pub mod vault_test;

use serde::Serialize;

use crate::admission::AdmissionError;
use crate::boot::config::ConfigError;
use crate::boot::tool_args::OutputFormat;

/// Why a tool could not do its work (exit status 2). Never carries a value.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    #[error("invalid flags")]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Manifest(#[from] manifest::ManifestError),
    #[error("cannot configure the Kubernetes client from the kubeconfig")]
    Kubeconfig(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("cannot build the Kubernetes client")]
    Client(#[source] Box<kube::Error>),
    #[error(
        "permission missing: the caller may not {verb} {resource} {scope} (the API server answered 403); see the RBAC table in docs/admin-tools.md"
    )]
    Forbidden {
        verb: &'static str,
        resource: String,
        scope: String,
    },
    #[error("cannot {verb} {resource} {scope}")]
    Api {
        verb: &'static str,
        resource: String,
        scope: String,
        #[source]
        source: Box<kube::Error>,
    },
    #[error("{what} {name:?} does not exist {scope}")]
    NotFound {
        what: &'static str,
        name: String,
        scope: String,
    },
    #[error(
        "--secret {0:?} is not a reference: write TYPE/id/key, e.g. KUBERNETES/finance/db_password"
    )]
    SecretFilter(String),
}

/// What a tool found: printed once, and how many problems it counts (the exit status).
pub struct Report {
    pub human: String,
    pub json: serde_json::Value,
    pub problems: usize,
}

impl Report {
    /// The report in the format asked for.
    pub fn render(&self, format: OutputFormat) -> String {
        match format {
            OutputFormat::Human => self.human.clone(),
            OutputFormat::Json => {
                let mut text = serde_json::to_string_pretty(&self.json).unwrap_or_default();
                text.push('\n');
                text
            }
        }
    }

    /// The exit status: 0 nothing found, 1 problems found.
    pub fn exit_status(&self) -> u8 {
        u8::from(self.problems > 0)
    }
}

/// The webhook's verdict on something: allowed, or the code, reason and message its answer
/// would carry (the one mapping in `admission::denial`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "verdict", rename_all = "lowercase")]
pub enum Verdict {
    Ok,
    Denied {
        code: u16,
        reason: &'static str,
        message: String,
    },
}

impl Verdict {
    pub fn denied(error: &AdmissionError) -> Self {
        let kind = error.kind();
        Verdict::Denied {
            code: kind.code,
            reason: kind.reason,
            message: error.message(),
        }
    }

    pub fn is_ok(&self) -> bool {
        matches!(self, Verdict::Ok)
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Verdict::Ok => f.write_str("ok"),
            Verdict::Denied { code, message, .. } => write!(f, "denied {code}: {message}"),
        }
    }
}
