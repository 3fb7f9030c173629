//! The `secrets.iomete.com/spark-conf-secrets` mechanism: Spark properties delivered as `-D`
//! tokens in `SPARK_SUBMIT_OPTS`, which spark-submit reads before the JVM starts. Planning
//! decides where the tokens go and refuses an existing variable that cannot carry them;
//! rendering encodes the values (see [`crate::decision::spark`]) and checks what the launcher
//! can carry on the real values.

use secrecy::{ExposeSecret, SecretString};

use super::model::{
    ContainerPath, EnvChange, Injected, InjectionError, MissingValue, OptionsPlacement, Plan,
};
use super::render::{EnvVarOut, PatchWriter};
use super::{DRY_RUN_MARKER, ValueMode};
use crate::decision::expansion::{escape_for_kubelet, kubelet_expand};
use crate::decision::legacy::parse_template;
use crate::decision::pod::Container;
use crate::decision::reference::{EnvSecret, SecretRef, SparkConfSecret};
use crate::decision::spark::{self, PRINT_LAUNCH_COMMAND, SPARK_SUBMIT_OPTS, SparkConfError};

pub(super) fn plan(
    plan: &mut Plan,
    path: &ContainerPath,
    container: &Container,
    env_secrets: &[EnvSecret],
    spark_conf: &[SparkConfSecret],
) -> Result<(), InjectionError> {
    if spark_conf.is_empty() {
        return Ok(());
    }
    let refuse = |source| InjectionError::SparkConf {
        container: path.name.clone(),
        source,
    };
    if env_secrets
        .iter()
        .any(|entry| entry.env_name == SPARK_SUBMIT_OPTS)
    {
        return Err(refuse(SparkConfError::OptionsAreAnEnvSecret));
    }
    let env = container.env.as_deref().unwrap_or_default();
    // Of several entries with one name Kubernetes keeps the last, so that is the one to extend
    // (adding another would silently drop it).
    let existing = env
        .iter()
        .enumerate()
        .rev()
        .find(|(_, var)| var.name == SPARK_SUBMIT_OPTS);
    let placement = match existing {
        Some((_, var)) if var.value_from.is_some() => {
            return Err(refuse(SparkConfError::OptionsFromValueFrom));
        }
        Some((index, var)) => {
            let literal = var.value.clone().unwrap_or_default();
            // A malformed placeholder is left for the placeholder mechanism, which names it precisely.
            if matches!(parse_template(&literal), Ok(Some(_))) {
                return Err(refuse(SparkConfError::OptionsHoldAPlaceholder));
            }
            spark::check_existing_options(&literal).map_err(refuse)?;
            OptionsPlacement::ExtendLiteral { index, literal }
        }
        // the env-secrets mechanism has already created `env` when there are env-secrets.
        None if container.env.is_none() && env_secrets.is_empty() => OptionsPlacement::CreateEnv,
        None => OptionsPlacement::AppendVar,
    };
    let prints_command = env.iter().any(|var| {
        var.name == PRINT_LAUNCH_COMMAND
            && (var.value_from.is_some() || var.value.as_deref().is_some_and(|v| !v.is_empty()))
    });
    if prints_command {
        plan.warnings.push(format!(
            "container {:?}: {PRINT_LAUNCH_COMMAND} is set, so spark-submit prints its command line, with the values of secrets.iomete.com/spark-conf-secrets, to the pod log",
            path.name
        ));
    }
    for entry in spark_conf {
        plan.injected.push(Injected {
            target: format!("container {:?} spark {:?}", path.name, entry.property),
            secret: entry.secret.clone(),
        });
    }
    let properties = spark_conf
        .iter()
        .map(|entry| (entry.property.clone(), entry.secret.clone()))
        .collect();
    plan.changes.push((
        path.clone(),
        EnvChange::SparkSubmitOpts {
            placement,
            properties,
        },
    ));
    Ok(())
}

/// Writes the `SPARK_SUBMIT_OPTS` change for one container.
pub(super) fn render(
    patch: &mut PatchWriter,
    path: &ContainerPath,
    placement: &OptionsPlacement,
    properties: &[(String, SecretRef)],
    values: &dyn Fn(&SecretRef) -> Option<SecretString>,
    mode: ValueMode,
) -> Result<(), InjectionError> {
    let value = spark_submit_opts(path, placement, properties, values, mode)?;
    let var = EnvVarOut {
        name: SPARK_SUBMIT_OPTS,
        value: value.expose_secret(),
    };
    match placement {
        OptionsPlacement::CreateEnv => patch.add(&path.env_pointer(""), &[var]),
        OptionsPlacement::AppendVar => patch.add(&path.env_pointer("/-"), &var),
        OptionsPlacement::ExtendLiteral { index, .. } => {
            let pointer = path.env_pointer(&format!("/{index}/value"));
            patch.replace(&pointer, var.value)
        }
    }
}

/// The `SPARK_SUBMIT_OPTS` value to write: the `-D` tokens escaped for the kubelet like every
/// value we write, after the user's literal when there is one. That literal was written for the
/// kubelet already, so it is kept as is, not escaped again.
fn spark_submit_opts(
    path: &ContainerPath,
    placement: &OptionsPlacement,
    properties: &[(String, SecretRef)],
    values: &dyn Fn(&SecretRef) -> Option<SecretString>,
    mode: ValueMode,
) -> Result<SecretString, InjectionError> {
    let refuse = |source| InjectionError::SparkConf {
        container: path.name.clone(),
        source,
    };
    let fetched = properties
        .iter()
        .map(|(property, secret)| {
            let value = values(secret).ok_or_else(|| MissingValue(secret.clone()))?;
            Ok((property.as_str(), value))
        })
        .collect::<Result<Vec<_>, MissingValue>>()?;
    let live = spark::encode_properties(
        fetched
            .iter()
            .map(|(property, value)| (*property, value.expose_secret())),
    )
    .map_err(refuse)?;
    let literal = match placement {
        OptionsPlacement::ExtendLiteral { literal, .. } => Some(literal),
        OptionsPlacement::CreateEnv | OptionsPlacement::AppendVar => None,
    };
    let seen_len = literal.map_or(0, |literal| kubelet_expand(literal, |_| None).len() + 1);
    spark::check_options_length(seen_len + live.len()).map_err(refuse)?;
    let tokens = match mode {
        ValueMode::Live => live,
        ValueMode::DryRun => spark::encode_properties(
            properties
                .iter()
                .map(|(property, _)| (property.as_str(), DRY_RUN_MARKER)),
        )
        .map_err(refuse)?,
    };
    let tokens = escape_for_kubelet(&tokens);
    Ok(SecretString::from(match literal {
        Some(literal) => format!("{literal} {tokens}"),
        None => tokens.into_owned(),
    }))
}
