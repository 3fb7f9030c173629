//! The application's environment: the container's own, minus `iomete-env`'s control variables,
//! plus the delivered values. Spark properties reach Spark as env mode delivers them, as `-D`
//! tokens appended to `SPARK_SUBMIT_OPTS`, built by the same functions
//! ([`crate::decision::spark`]). The one difference: env mode escapes the tokens for the
//! kubelet's `$(VAR)` expansion, and nothing expands what `iomete-env` passes to `exec`.

use std::ffi::OsString;
use std::fmt;

use secrecy::{ExposeSecret, SecretString};

use super::answer::Values;
use super::control::is_control_name;
use crate::decision::spark::{self, SPARK_SUBMIT_OPTS, SparkConfError};

/// Linux refuses to `exec` with an environment string longer than `MAX_ARG_STRLEN` (32 pages),
/// counting `NAME=` and the terminating NUL; checked here to name the variable instead of
/// failing the `exec` with "argument list too long".
const MAX_ENV_STRING: usize = 131_072;

/// A value cannot be delivered; the message names the variable or property, never the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvironmentError {
    #[error(
        "the value of env {0:?} contains a NUL character, which no environment variable can hold"
    )]
    Nul(String),
    #[error(
        "the value of env {0:?} is longer than the {MAX_ENV_STRING} bytes Linux allows one environment variable"
    )]
    TooLong(String),
    #[error(
        "the container's own {SPARK_SUBMIT_OPTS} is not valid UTF-8, so Spark properties cannot be appended to it"
    )]
    OptionsNotUnicode,
    #[error("cannot deliver the Spark properties")]
    Spark(#[source] SparkConfError),
}

/// The environment to `exec` with. Its `Debug` names only.
pub struct ChildEnv {
    /// The container's own variables, control variables removed, delivered names removed.
    pub inherited: Vec<(OsString, OsString)>,
    /// The delivered variables, `SPARK_SUBMIT_OPTS` among them when there are Spark properties.
    pub delivered: Vec<(String, SecretString)>,
}

impl fmt::Debug for ChildEnv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inherited: Vec<_> = self.inherited.iter().map(|(name, _)| name).collect();
        let delivered: Vec<_> = self.delivered.iter().map(|(name, _)| name).collect();
        f.debug_struct("ChildEnv")
            .field("inherited", &inherited)
            .field("delivered", &delivered)
            .finish()
    }
}

impl ChildEnv {
    /// Every variable, as `exec` receives it.
    pub fn vars(&self) -> impl Iterator<Item = (&std::ffi::OsStr, &std::ffi::OsStr)> {
        let inherited = self
            .inherited
            .iter()
            .map(|(name, value)| (name.as_os_str(), value.as_os_str()));
        let delivered = self.delivered.iter().map(|(name, value)| {
            (
                std::ffi::OsStr::new(name.as_str()),
                std::ffi::OsStr::new(value.expose_secret()),
            )
        });
        inherited.chain(delivered)
    }
}

/// The application's environment from `current` (the process's) and the accepted `values`.
pub fn child_environment(
    current: Vec<(OsString, OsString)>,
    values: &Values,
) -> Result<ChildEnv, EnvironmentError> {
    let mut delivered: Vec<(String, SecretString)> = Vec::new();
    for (name, value) in &values.env {
        check_env_value(name, value.expose_secret())?;
        delivered.push((name.clone(), value.clone()));
    }
    if !values.spark_conf.is_empty() {
        let existing = current
            .iter()
            .rev()
            .find(|(name, _)| name == SPARK_SUBMIT_OPTS)
            .map(|(_, value)| value.to_str().ok_or(EnvironmentError::OptionsNotUnicode))
            .transpose()?;
        let options = spark_submit_opts(existing, &values.spark_conf)?;
        check_env_value(SPARK_SUBMIT_OPTS, options.expose_secret())?;
        delivered.push((SPARK_SUBMIT_OPTS.to_owned(), options));
    }
    let inherited = current
        .into_iter()
        .filter(|(name, _)| {
            !is_control_name(name)
                && !delivered
                    .iter()
                    .any(|(delivered, _)| name == delivered.as_str())
        })
        .collect();
    Ok(ChildEnv {
        inherited,
        delivered,
    })
}

/// `SPARK_SUBMIT_OPTS` for `properties`: the container's own value (when non-empty), a space,
/// then one `-D` token per property, as env mode's `spark_submit_opts` writes it before the
/// kubelet's escaping.
pub fn spark_submit_opts(
    existing: Option<&str>,
    properties: &[(String, SecretString)],
) -> Result<SecretString, EnvironmentError> {
    let existing = existing.filter(|existing| !existing.is_empty());
    if let Some(existing) = existing {
        // The kubelet has already expanded it: only the launcher's quoting is left to check.
        spark::check_seen_options(existing).map_err(EnvironmentError::Spark)?;
    }
    let tokens = spark::encode_properties(
        properties
            .iter()
            .map(|(property, value)| (property.as_str(), value.expose_secret())),
    )
    .map_err(EnvironmentError::Spark)?;
    let seen_len = existing.map_or(0, |existing| existing.len() + 1) + tokens.len();
    spark::check_options_length(seen_len).map_err(EnvironmentError::Spark)?;
    Ok(SecretString::from(match existing {
        Some(existing) => format!("{existing} {tokens}"),
        None => tokens,
    }))
}

fn check_env_value(name: &str, value: &str) -> Result<(), EnvironmentError> {
    if value.contains('\0') {
        return Err(EnvironmentError::Nul(name.to_owned()));
    }
    if name.len() + "=".len() + value.len() + 1 > MAX_ENV_STRING {
        return Err(EnvironmentError::TooLong(name.to_owned()));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
