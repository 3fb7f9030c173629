//! `vault test NAME`: a VaultConfig's connection test, now: the same check as its `Ready`
//! condition ([`status::check`]: login or token lookup, then a read permission probe on its
//! prefix), with what each failure means and what to do about it.

use std::fmt::Write as _;

use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use serde_json::json;

use super::cluster::{self, ClusterView};
use super::{Report, ToolError};
use crate::backends::vault::resource::{VaultConfig, credentials_secret_name};
use crate::backends::vault::status::{self, ReadyCondition};
use crate::boot::tool_args::VaultTestArgs;

pub async fn run(args: &VaultTestArgs) -> Result<Report, ToolError> {
    let policy = args.tool.scope_policy()?;
    let (client, _) = cluster::client(&args.tool).await?;
    let namespace = policy.store_namespace.clone();
    let scope = format!("in namespace {namespace:?}");
    let configs: Api<VaultConfig> = Api::namespaced(client.clone(), &namespace);
    let config = cluster::get(
        &configs,
        &args.name,
        "vaultconfigs.secrets.iomete.com",
        &scope,
    )
    .await?
    .ok_or_else(|| ToolError::NotFound {
        what: "VaultConfig",
        name: args.name.clone(),
        scope: scope.clone(),
    })?;
    let secrets: Api<Secret> = Api::namespaced(client, &namespace);
    let credentials_name = credentials_secret_name(&config.spec.domain);
    let credentials = cluster::get(&secrets, &credentials_name, "secrets", &scope).await?;
    let view = ClusterView::from_objects(
        policy,
        Vec::new(),
        credentials.into_iter().collect(),
        vec![config.clone()],
        args.vault_timeout,
    )
    .await;
    let condition = status::check(&view.vault, &config).await;
    Ok(report(&args.name, &condition))
}

/// What a failed check's reason means, and what to do.
pub fn explain(reason: &str) -> &'static str {
    match reason {
        "Connected" => "the webhook can log in and read under the prefix",
        "InvalidSpec" => {
            "the VaultConfig's spec cannot be used (host, path or namespace); fix the resource"
        }
        "CredentialsInvalid" => {
            "the credentials Secret or one of its keys is missing or empty; create it as docs/vault.md says"
        }
        "LoginFailed" => {
            "Vault refused the login: check the AppRole role ID and secret ID, and the auth mount"
        }
        "TokenInvalid" => {
            "Vault refused the token (expired, revoked or without a lookup-self policy); issue a new one"
        }
        "ReadDenied" => {
            "logged in, but the policy does not allow reading under the prefix; grant read on it"
        }
        "SecretNotFound" => {
            "field-per-key layout: the one secret at the prefix does not exist; create it"
        }
        "Unreachable" => {
            "Vault did not answer (address, network policy, TLS trust, sealed or standby)"
        }
        _ => "see docs/vault.md",
    }
}

pub fn report(name: &str, condition: &ReadyCondition) -> Report {
    let mut human = String::new();
    let state = if condition.ready {
        "Ready"
    } else {
        "NOT READY"
    };
    let _ = writeln!(
        human,
        "VaultConfig {name:?}: {state} ({})",
        condition.reason
    );
    let _ = writeln!(human, "  {}", condition.message);
    let _ = writeln!(human, "  meaning: {}", explain(condition.reason));
    Report {
        human,
        json: json!({
            "name": name,
            "ready": condition.ready,
            "reason": condition.reason,
            "message": condition.message,
            "explanation": explain(condition.reason),
        }),
        problems: usize::from(!condition.ready),
    }
}
