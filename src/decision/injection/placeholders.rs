//! Legacy `${secrets.key}` placeholders: each one in an env value is filled in place from the
//! global store, with a deprecation warning. Variables replaced by an env-secret are skipped.

use std::collections::HashSet;

use secrecy::{ExposeSecret, SecretString};

use super::model::{ContainerList, ContainerPath, EnvChange, Injected, InjectionError, Plan};
use super::render::{PatchWriter, WrittenValues};
use super::{MAX_PATCH_BYTES, reserve_injections};
use crate::decision::legacy::{Segment, Template, parse_template};
use crate::decision::pod::{Container, EnvVar};
use crate::decision::reference::{KubernetesStore, SecretRef, Source};
use crate::decision::scope::{self, NamespaceScope};

pub(super) fn plan(
    plan: &mut Plan,
    replaced: &HashSet<(ContainerList, usize, usize)>,
    path: &ContainerPath,
    container: &Container,
    namespace: &NamespaceScope,
) -> Result<(), InjectionError> {
    let Some(env) = &container.env else {
        return Ok(());
    };
    for (index, var) in env.iter().enumerate() {
        if replaced.contains(&(path.list, path.index, index)) {
            continue;
        }
        let Some(template) = legacy_template(path, var)? else {
            continue;
        };
        reserve_injections(plan, template.keys().count(), || {
            format!(
                "counting the legacy placeholders, up to container {:?} env {:?}",
                path.name, var.name
            )
        })?;
        for key in template.keys() {
            let secret = SecretRef {
                source: Source::Kubernetes(KubernetesStore::Global),
                key: key.to_owned(),
            };
            let describe = || {
                format!(
                    "legacy placeholder ${{secrets.{key}}} in container {:?} env {:?}",
                    path.name, var.name
                )
            };
            scope::authorize(
                namespace,
                scope::required_scope(&KubernetesStore::Global),
                describe,
            )?;
            plan.warnings.push(format!(
                "container {:?} env {:?}: ${{secrets.{key}}} is deprecated; use the secrets.iomete.com/env-secrets annotation",
                path.name, var.name
            ));
            plan.injected.push(Injected {
                target: format!("container {:?} env {:?} (legacy)", path.name, var.name),
                secret,
            });
        }
        let change = EnvChange::ReplaceValue { index, template };
        plan.changes.push((path.clone(), change));
    }
    Ok(())
}

fn legacy_template(path: &ContainerPath, var: &EnvVar) -> Result<Option<Template>, InjectionError> {
    let Some(value) = &var.value else {
        return Ok(None);
    };
    parse_template(value).map_err(|source| InjectionError::Placeholder {
        container: path.name.clone(),
        env: var.name.clone(),
        source,
    })
}

/// Writes one variable's value with its placeholders filled from the global store.
pub(super) fn render(
    patch: &mut PatchWriter,
    written: &mut WrittenValues<'_>,
    path: &ContainerPath,
    index: usize,
    template: &Template,
) -> Result<(), InjectionError> {
    let mut value = String::new();
    for segment in &template.segments {
        match segment {
            Segment::Literal(text) => value.push_str(text),
            Segment::Secret(key) => {
                let secret = SecretRef {
                    source: Source::Kubernetes(KubernetesStore::Global),
                    key: key.clone(),
                };
                value.push_str(written.value(&secret)?.expose_secret());
            }
        }
        if value.len() > MAX_PATCH_BYTES {
            return Err(InjectionError::PatchTooLarge);
        }
    }
    let value = SecretString::from(value);
    let pointer = path.env_pointer(&format!("/{index}/value"));
    patch.replace(&pointer, value.expose_secret())
}
