//! The `secrets.iomete.com/env-secrets` mechanism: each reference becomes an env var of every
//! target container, created, appended, or replacing a variable of the same name (with a
//! warning). Planned here, and rendered here from the fetched values.

use std::collections::HashSet;

use secrecy::ExposeSecret;

use super::model::{
    ContainerList, ContainerPath, EnvChange, Injected, InjectionError, MissingValue, Plan,
};
use super::render::{EnvVarOut, PatchWriter, WrittenValues};
use crate::decision::pod::Container;
use crate::decision::reference::References;

pub(super) fn plan(
    plan: &mut Plan,
    replaced: &mut HashSet<(ContainerList, usize, usize)>,
    path: &ContainerPath,
    container: &Container,
    references: &References,
) {
    if references.env.is_empty() {
        return;
    }
    for entry in &references.env {
        plan.injected.push(Injected {
            target: format!("container {:?} env {:?}", path.name, entry.env_name),
            secret: entry.secret.clone(),
        });
    }
    let Some(env) = &container.env else {
        let vars = references
            .env
            .iter()
            .map(|entry| (entry.env_name.clone(), entry.secret.clone()))
            .collect();
        plan.changes
            .push((path.clone(), EnvChange::CreateEnv(vars)));
        return;
    };
    for entry in &references.env {
        let existing: Vec<usize> = env
            .iter()
            .enumerate()
            .filter(|(_, var)| var.name == entry.env_name)
            .map(|(index, _)| index)
            .collect();
        if existing.is_empty() {
            let change = EnvChange::AppendVar {
                name: entry.env_name.clone(),
                secret: entry.secret.clone(),
            };
            plan.changes.push((path.clone(), change));
            continue;
        }
        plan.warnings.push(format!(
            "container {:?}: env {:?} was already set and is replaced by secrets.iomete.com/env-secrets",
            path.name, entry.env_name
        ));
        for index in existing {
            replaced.insert((path.list, path.index, index));
            let change = EnvChange::ReplaceVar {
                index,
                name: entry.env_name.clone(),
                secret: entry.secret.clone(),
            };
            plan.changes.push((path.clone(), change));
        }
    }
}

/// Writes one env-secrets change.
pub(super) fn render(
    patch: &mut PatchWriter,
    written: &mut WrittenValues<'_>,
    path: &ContainerPath,
    change: &EnvChange,
) -> Result<(), InjectionError> {
    match change {
        EnvChange::CreateEnv(vars) => {
            let vars = vars
                .iter()
                .map(|(name, secret)| Ok((name.as_str(), written.value(secret)?)))
                .collect::<Result<Vec<_>, MissingValue>>()?;
            let vars: Vec<EnvVarOut<'_>> = vars
                .iter()
                .map(|(name, value)| EnvVarOut {
                    name,
                    value: value.expose_secret(),
                })
                .collect();
            patch.add(&path.env_pointer(""), &vars)
        }
        EnvChange::ReplaceVar {
            index,
            name,
            secret,
        } => {
            let value = written.value(secret)?;
            let var = EnvVarOut {
                name,
                value: value.expose_secret(),
            };
            patch.replace(&path.env_pointer(&format!("/{index}")), &var)
        }
        EnvChange::AppendVar { name, secret } => {
            let value = written.value(secret)?;
            let var = EnvVarOut {
                name,
                value: value.expose_secret(),
            };
            patch.add(&path.env_pointer("/-"), &var)
        }
        EnvChange::ReplaceValue { .. } | EnvChange::SparkSubmitOpts { .. } => Ok(()),
    }
}
