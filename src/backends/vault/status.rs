//! "Test connection": each configuration is checked (login or token lookup, then a read-permission
//! probe of its path) at start, when it or its credentials change, and every check interval, and
//! the result is written to its `Ready` condition so `kubectl get vaultconfigs` shows which work.
//!
//! Every replica checks, and writes only when the condition it computed differs from the stored
//! one (status, reason, message, observed generation), keeping `lastTransitionTime` when the status
//! is unchanged. Replicas that agree therefore write nothing new; the write is a merge patch of the
//! status subresource, idempotent by construction. Replicas that disagree (one reaches Vault, one
//! does not) take turns, which is itself worth seeing.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::json;

use super::client::VaultError;
use super::resource::{AuthMethod, Layout, VaultConfig, VaultTarget};
use super::{Identity, VaultBackend};

/// How often the checker looks for changed configurations between full checks.
const CHANGE_POLL: Duration = Duration::from_secs(5);

/// The condition a check produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadyCondition {
    pub ready: bool,
    pub reason: &'static str,
    pub message: String,
}

/// Runs the checks until the process stops.
pub async fn run_checks(backend: VaultBackend, api: Api<VaultConfig>) {
    let mut checked: HashMap<String, (Identity, Instant)> = HashMap::new();
    loop {
        tokio::select! {
            _ = backend.inner.changed.notified() => {}
            _ = tokio::time::sleep(CHANGE_POLL) => {}
        }
        if !backend.is_fresh() {
            continue;
        }
        let interval = backend.inner.settings.check_interval;
        let configs = backend.inner.configs.state();
        let names: HashSet<String> = configs
            .iter()
            .filter_map(|config| config.metadata.name.clone())
            .collect();
        checked.retain(|name, _| {
            let exists = names.contains(name);
            if !exists {
                backend.inner.metrics.forget(name);
            }
            exists
        });
        backend.forget_connections_except(&names);
        for config in configs {
            let Some(name) = config.metadata.name.clone() else {
                continue;
            };
            let identity = backend.identity(&name, &config);
            let due = checked
                .get(&name)
                .is_none_or(|(seen, at)| *seen != identity || at.elapsed() >= interval);
            if !due {
                continue;
            }
            let condition = check(&backend, &config).await;
            backend.inner.metrics.ready(&name, condition.ready);
            if let Err(error) = write_condition(&api, &config, &condition).await {
                tracing::warn!(config = %name, %error, "cannot write VaultConfig status");
            }
            if !condition.ready {
                tracing::warn!(config = %name, reason = condition.reason, message = %condition.message, "Vault configuration not ready");
            }
            checked.insert(name, (identity, Instant::now()));
        }
    }
}

/// Tests one configuration.
pub async fn check(backend: &VaultBackend, config: &VaultConfig) -> ReadyCondition {
    let not_ready = |reason, message: String| ReadyCondition {
        ready: false,
        reason,
        message,
    };
    let target = match VaultTarget::from_spec(&config.spec) {
        Ok(target) => target,
        Err(error) => return not_ready("InvalidSpec", error.to_string()),
    };
    let connection = match backend.connection(config) {
        Ok((connection, _)) => connection,
        Err(error) => return not_ready("CredentialsInvalid", error.to_string()),
    };
    let login = match config.spec.auth.method {
        AuthMethod::AppRole => "AppRole login works".to_owned(),
        AuthMethod::Token => "the token is valid".to_owned(),
    };
    let token = match connection.check_token().await {
        Ok(token) => token,
        Err(error) => return failed(error, "token lookup"),
    };
    let lifetime = match (config.spec.auth.method, token.expire_time) {
        (AuthMethod::AppRole, _) => "; the token is renewed automatically".to_owned(),
        (AuthMethod::Token, Some(expires)) => {
            format!("; it expires at {expires} and must be replaced before then")
        }
        (AuthMethod::Token, None) => "; it does not expire".to_owned(),
    };
    let probe = target.probe_path();
    let probed = connection.read(&probe).await;
    let scope = match target.layout {
        Layout::SecretPerKey => format!("{}/*", target.api_path(&target.prefix)),
        Layout::FieldPerKey => target.api_path(&target.prefix),
    };
    match probed {
        // FieldPerKey reads the one secret at the prefix, so it must exist; the SecretPerKey
        // probe names a secret nobody has, and 404 means the read itself was permitted.
        Err(VaultError::NotFound(path)) if target.layout == Layout::FieldPerKey => not_ready(
            "SecretNotFound",
            format!("{login}, but there is no secret at {path} to read fields from"),
        ),
        Ok(_) | Err(VaultError::NotFound(_)) => ReadyCondition {
            ready: true,
            reason: "Connected",
            message: format!("{login}{lifetime}; reading {scope} is permitted"),
        },
        Err(VaultError::PermissionDenied { .. }) => not_ready(
            "ReadDenied",
            format!(
                "{login}, but the policy does not allow reading {scope} (403); grant the read capability on it"
            ),
        ),
        Err(error) => failed(error, "read probe"),
    }
}

fn failed(error: VaultError, step: &str) -> ReadyCondition {
    let reason = match &error {
        VaultError::LoginRefused(_) => "LoginFailed",
        VaultError::PermissionDenied { .. } => "TokenInvalid",
        VaultError::Unavailable(_) => "Unreachable",
        VaultError::Misconfigured(_) => "InvalidSpec",
        VaultError::NotFound(_) => "NotFound",
    };
    ReadyCondition {
        ready: false,
        reason,
        message: format!("{step} failed: {error}"),
    }
}

/// Writes `condition` unless the stored one already says the same.
async fn write_condition(
    api: &Api<VaultConfig>,
    config: &VaultConfig,
    condition: &ReadyCondition,
) -> Result<(), kube::Error> {
    let status = if condition.ready { "True" } else { "False" };
    let generation = config.metadata.generation;
    let stored: Option<&Condition> = config
        .status
        .as_ref()
        .and_then(|status| status.conditions.iter().find(|c| c.type_ == "Ready"));
    if let Some(stored) = stored
        && stored.status == status
        && stored.reason == condition.reason
        && stored.message == condition.message
        && stored.observed_generation == generation
    {
        return Ok(());
    }
    let transition = match stored {
        Some(stored) if stored.status == status => stored.last_transition_time.clone(),
        _ => {
            k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::now())
        }
    };
    let name = config.metadata.name.as_deref().unwrap_or_default();
    let patch = json!({
        "status": {
            "conditions": [{
                "type": "Ready",
                "status": status,
                "reason": condition.reason,
                "message": condition.message,
                "observedGeneration": generation,
                "lastTransitionTime": transition,
            }]
        }
    });
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map(|_| ())
}
