//! The broker delivery mechanism: no value is written; each target container's entrypoint is
//! wrapped in `iomete-env`, which fetches the values at container start from the broker.
//!
//! Planned here: the wrapped command (the container's own `command`, or its image's entrypoint
//! from the [`EntrypointTable`]), the container's reference list, and the refusals that only
//! this mode has (reserved names already in the pod, env names `iomete-env` never sets).
//! Rendered here: the command, the control env vars and the two mounts per wrapped container,
//! then the pod's two volumes and the init container, inserted first so that it runs before any
//! init container or native sidecar it wraps. Every literal is escaped for the kubelet, which
//! expands `$(VAR)` in env values.

use std::sync::Arc;

use serde_json::json;

use super::model::{ContainerPath, Injected, InjectionError, Plan};
use super::render::{EnvVarOut, PatchWriter};
use crate::decision::delivery::{
    self, BROKER_AUDIENCE, CONTROL_ENV_PREFIX, ENV_BROKER_CA, ENV_BROKER_URL, ENV_CONTAINER,
    ENV_REFERENCES, ENV_TERMINATION_LOG, IMAGE_WRAPPER_PATH, INSTALL_CONTAINER,
    TOKEN_EXPIRATION_SECONDS, TOKEN_VOLUME, WRAPPER_BINARY, WRAPPER_DIR, WRAPPER_VOLUME,
};
use crate::decision::entrypoints::EntrypointTable;
use crate::decision::expansion::escape_for_kubelet;
use crate::decision::pod::{Container, Pod};
use crate::decision::reference::{EnvSecret, SparkConfSecret, write_reference_list};
use crate::decision::spark::PRINT_LAUNCH_COMMAND;

/// What the webhook writes into a broker-mode pod besides the references (all public).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerSettings {
    /// The URL wrapped containers reach the broker at.
    pub url: String,
    /// PEM CA bundle that signed the broker's certificate.
    pub ca_pem: String,
    /// The init container's image (the webhook's own, which carries `iomete-env`).
    pub image: String,
    pub pull_policy: &'static str,
    pub entrypoints: EntrypointTable,
}

/// The broker-mode part of a plan.
#[derive(Debug, Clone)]
pub struct BrokerPlan {
    pub settings: Arc<BrokerSettings>,
    pub wraps: Vec<Wrap>,
    volumes_exist: bool,
    init_containers_exist: bool,
}

/// One wrapped container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wrap {
    pub path: ContainerPath,
    /// The container's new `command`: `iomete-env -- <original entrypoint>`.
    pub command: Vec<String>,
    /// The reference list (`IOMETE_ENV_REFERENCES`): names and sources, never values.
    pub references: String,
    env_exists: bool,
    mounts_exist: bool,
    termination_message_path: Option<String>,
}

pub(super) fn plan(
    plan: &mut Plan,
    pod: &Pod,
    targets: &[(ContainerPath, &Container)],
    env: &[EnvSecret],
    spark_conf: &[SparkConfSecret],
    settings: &Arc<BrokerSettings>,
) -> Result<(), InjectionError> {
    refuse_reserved_names(pod)?;
    if let Some(entry) = env
        .iter()
        .find(|entry| delivery::is_denied_env_name(&entry.env_name))
    {
        return Err(InjectionError::DeniedEnvName(entry.env_name.clone()));
    }
    let references = write_reference_list(env, spark_conf);
    let mut wraps = Vec::with_capacity(targets.len());
    for (path, container) in targets {
        let command = wrapped_command(path, container, &settings.entrypoints)?;
        for entry in env {
            plan.injected.push(Injected {
                target: format!("container {:?} env {:?}", path.name, entry.env_name),
                secret: entry.secret.clone(),
            });
        }
        for entry in spark_conf {
            plan.injected.push(Injected {
                target: format!("container {:?} spark {:?}", path.name, entry.property),
                secret: entry.secret.clone(),
            });
        }
        let prints_command = container.env.iter().flatten().any(|var| {
            var.name == PRINT_LAUNCH_COMMAND && var.value.as_deref().is_some_and(|v| !v.is_empty())
        });
        if prints_command && !spark_conf.is_empty() {
            plan.warnings.push(format!(
                "container {:?}: {PRINT_LAUNCH_COMMAND} is set, so spark-submit prints its command line, with the values of secrets.iomete.com/spark-conf-secrets, to the pod log",
                path.name
            ));
        }
        wraps.push(Wrap {
            path: path.clone(),
            command,
            references: references.clone(),
            env_exists: container.env.is_some(),
            mounts_exist: container.volume_mounts.is_some(),
            termination_message_path: container.termination_message_path.clone(),
        });
    }
    let spec = pod.spec.as_ref();
    plan.broker = Some(BrokerPlan {
        settings: settings.clone(),
        wraps,
        volumes_exist: spec.is_some_and(|spec| spec.volumes.is_some()),
        init_containers_exist: spec.is_some_and(|spec| spec.init_containers.is_some()),
    });
    Ok(())
}

/// `iomete-env -- <what the container would have run>`.
fn wrapped_command(
    path: &ContainerPath,
    container: &Container,
    entrypoints: &EntrypointTable,
) -> Result<Vec<String>, InjectionError> {
    let wrapper = format!("{WRAPPER_DIR}/{WRAPPER_BINARY}");
    let mut command = vec![wrapper, "--".to_owned()];
    match container.command.as_deref() {
        // An empty `command` is no command: the image's entrypoint runs.
        Some(own) if !own.is_empty() => command.extend(own.iter().cloned()),
        _ => {
            let image = container.image.as_deref().unwrap_or_default();
            let entry =
                entrypoints
                    .lookup(image)
                    .ok_or_else(|| InjectionError::UnknownEntrypoint {
                        container: path.name.clone(),
                        image: image.to_owned(),
                    })?;
            command.extend(entry.entrypoint.iter().cloned());
            // Setting `command` drops the image's CMD, which ran only when `args` is unset.
            if container.args.is_none() {
                command.extend(entry.cmd.iter().flatten().cloned());
            }
        }
    }
    Ok(command)
}

/// Names broker mode adds must not already be in the pod (our own reinvocation never gets
/// here: its references are already marked injected).
fn refuse_reserved_names(pod: &Pod) -> Result<(), InjectionError> {
    let reserved = |what: String| Err(InjectionError::ReservedName(what));
    let Some(spec) = &pod.spec else {
        return Ok(());
    };
    for volume in spec.volumes.iter().flatten() {
        if volume.name == WRAPPER_VOLUME || volume.name == TOKEN_VOLUME {
            return reserved(format!("volume {:?}", volume.name));
        }
    }
    let init = spec.init_containers.iter().flatten();
    for container in spec.containers.iter().chain(init) {
        if container.name == INSTALL_CONTAINER {
            return reserved(format!("container {:?}", container.name));
        }
        if let Some(var) = container
            .env
            .iter()
            .flatten()
            .find(|var| var.name.starts_with(CONTROL_ENV_PREFIX))
        {
            return reserved(format!("container {:?} env {:?}", container.name, var.name));
        }
        if let Some(mount) = container.volume_mounts.iter().flatten().find(|mount| {
            let path = mount.mount_path.trim_end_matches('/');
            path == WRAPPER_DIR || path == delivery::TOKEN_DIR
        }) {
            return reserved(format!(
                "container {:?} mount path {:?}",
                container.name, mount.mount_path
            ));
        }
    }
    Ok(())
}

/// Writes the broker-mode changes. Per-container operations first, while the containers are at
/// their planned indices; the init container is inserted last, at index 0.
pub(super) fn render(patch: &mut PatchWriter, broker: &BrokerPlan) -> Result<(), InjectionError> {
    let settings = &broker.settings;
    for wrap in &broker.wraps {
        let container = format!("/spec/{}/{}", wrap.path.list.field(), wrap.path.index);
        patch.add(&format!("{container}/command"), &wrap.command)?;
        let mut control = vec![
            (ENV_BROKER_URL, settings.url.as_str()),
            (ENV_BROKER_CA, settings.ca_pem.as_str()),
            (ENV_CONTAINER, wrap.path.name.as_str()),
            (ENV_REFERENCES, wrap.references.as_str()),
        ];
        if let Some(path) = &wrap.termination_message_path {
            control.push((ENV_TERMINATION_LOG, path));
        }
        let escaped: Vec<(&str, String)> = control
            .into_iter()
            .map(|(name, value)| (name, escape_for_kubelet(value).into_owned()))
            .collect();
        let vars: Vec<EnvVarOut<'_>> = escaped
            .iter()
            .map(|(name, value)| EnvVarOut { name, value })
            .collect();
        add_all(patch, &format!("{container}/env"), wrap.env_exists, &vars)?;
        let mounts = [
            json!({"name": WRAPPER_VOLUME, "mountPath": WRAPPER_DIR, "readOnly": true}),
            json!({"name": TOKEN_VOLUME, "mountPath": delivery::TOKEN_DIR, "readOnly": true}),
        ];
        add_all(
            patch,
            &format!("{container}/volumeMounts"),
            wrap.mounts_exist,
            &mounts,
        )?;
    }
    let volumes = [
        json!({"name": WRAPPER_VOLUME, "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}}),
        json!({"name": TOKEN_VOLUME, "projected": {"sources": [{"serviceAccountToken": {
            "audience": BROKER_AUDIENCE,
            "expirationSeconds": TOKEN_EXPIRATION_SECONDS,
            "path": delivery::TOKEN_FILE,
        }}]}}),
    ];
    add_all(patch, "/spec/volumes", broker.volumes_exist, &volumes)?;
    let install = install_container(settings);
    if broker.init_containers_exist {
        patch.add("/spec/initContainers/0", &install)
    } else {
        patch.add("/spec/initContainers", &[install])
    }
}

/// Appends each item to the list at `pointer`, or creates the list with them.
fn add_all<T: serde::Serialize>(
    patch: &mut PatchWriter,
    pointer: &str,
    exists: bool,
    items: &[T],
) -> Result<(), InjectionError> {
    if !exists {
        return patch.add(pointer, items);
    }
    let append = format!("{pointer}/-");
    items.iter().try_for_each(|item| patch.add(&append, item))
}

/// Copies `iomete-env` from the webhook's image into the shared memory volume. It passes the
/// Pod Security "restricted" profile, so it never blocks a pod that does.
fn install_container(settings: &BrokerSettings) -> serde_json::Value {
    json!({
        "name": INSTALL_CONTAINER,
        "image": settings.image,
        "imagePullPolicy": settings.pull_policy,
        "command": [IMAGE_WRAPPER_PATH, "install", format!("{WRAPPER_DIR}/{WRAPPER_BINARY}")],
        "volumeMounts": [{"name": WRAPPER_VOLUME, "mountPath": WRAPPER_DIR}],
        "resources": {
            "requests": {"cpu": "10m", "memory": "16Mi"},
            "limits": {"cpu": "100m", "memory": "32Mi"},
        },
        "securityContext": {
            "runAsNonRoot": true,
            "runAsUser": 65532,
            "runAsGroup": 65532,
            "allowPrivilegeEscalation": false,
            "readOnlyRootFilesystem": true,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
    })
}
