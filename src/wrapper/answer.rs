//! The broker's answer, held to the container's reference list. The list is what the pod's
//! creator wrote and the admission authorized; the answer is what the network says. Only an
//! answer that sets exactly the listed names, each once, and none the runtime would load code
//! from, is delivered: a broker (or anyone who got between) cannot add `LD_PRELOAD` or any name
//! the pod did not ask for.

use std::collections::BTreeSet;
use std::fmt;

use secrecy::SecretString;

use crate::broker::protocol::EnvAnswer;
use crate::decision::delivery::is_denied_env_name;
use crate::decision::reference::References;

/// The answer does not match the reference list; the message names the entry, never a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnswerError {
    #[error("the broker's answer is not the expected JSON: {0}")]
    Malformed(String),
    #[error("the broker's answer sets env {0:?}, which the reference list does not name")]
    EnvNotListed(String),
    #[error(
        "the broker's answer sets Spark property {0:?}, which the reference list does not name"
    )]
    PropertyNotListed(String),
    #[error("the broker's answer sets env {0:?}, a name iomete-env never sets")]
    Denied(String),
    #[error("the broker's answer sets {0:?} twice")]
    Duplicate(String),
    #[error("the broker's answer has no value for env {0:?}")]
    EnvMissing(String),
    #[error("the broker's answer has no value for Spark property {0:?}")]
    PropertyMissing(String),
}

/// The accepted values, in the reference list's order. Its `Debug` names only.
pub struct Values {
    /// `(env name, value)`.
    pub env: Vec<(String, SecretString)>,
    /// `(Spark property, value)`.
    pub spark_conf: Vec<(String, SecretString)>,
}

impl fmt::Debug for Values {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names = |entries: &[(String, SecretString)]| -> Vec<String> {
            entries.iter().map(|(name, _)| name.clone()).collect()
        };
        f.debug_struct("Values")
            .field("env", &names(&self.env))
            .field("spark_conf", &names(&self.spark_conf))
            .finish_non_exhaustive()
    }
}

/// Reads the answer's body (a [`crate::broker::protocol::EnvAnswer`]). serde's message names a
/// position and what was expected, and never quotes a string it read.
pub fn parse(body: &[u8]) -> Result<EnvAnswer, AnswerError> {
    serde_json::from_slice(body).map_err(|error| AnswerError::Malformed(redacted(&error)))
}

/// Accepts `answer` if it answers exactly the entries of `list`.
pub fn accept(list: &References, answer: EnvAnswer) -> Result<Values, AnswerError> {
    let env_names: Vec<&str> = list.env.iter().map(|e| e.env_name.as_str()).collect();
    let properties: Vec<&str> = list
        .spark_conf
        .iter()
        .map(|e| e.property.as_str())
        .collect();
    let mut env = answer
        .env
        .into_iter()
        .map(|entry| (entry.name, entry.value))
        .collect::<Vec<_>>();
    let mut spark_conf = answer
        .spark_conf
        .into_iter()
        .map(|entry| (entry.property, entry.value))
        .collect::<Vec<_>>();
    // Denied first: an answer that tries LD_PRELOAD is reported as that, not as a stray name.
    if let Some((name, _)) = env.iter().find(|(name, _)| is_denied_env_name(name)) {
        return Err(AnswerError::Denied(name.clone()));
    }
    check_exact(
        &env,
        &env_names,
        AnswerError::EnvNotListed,
        AnswerError::EnvMissing,
    )?;
    check_exact(
        &spark_conf,
        &properties,
        AnswerError::PropertyNotListed,
        AnswerError::PropertyMissing,
    )?;
    // The answer matches the list one to one: put it in the list's order, so what the
    // application gets does not depend on the broker's order.
    let in_order = |entries: &mut Vec<(String, SecretString)>, order: &[&str]| {
        entries.sort_by_key(|(name, _)| order.iter().position(|listed| listed == name));
    };
    in_order(&mut env, &env_names);
    in_order(&mut spark_conf, &properties);
    Ok(Values { env, spark_conf })
}

/// Every answered name is listed, none twice, and every listed one answered.
fn check_exact(
    answered: &[(String, SecretString)],
    listed: &[&str],
    not_listed: fn(String) -> AnswerError,
    missing: fn(String) -> AnswerError,
) -> Result<(), AnswerError> {
    let mut seen = BTreeSet::new();
    for (name, _) in answered {
        if !listed.contains(&name.as_str()) {
            return Err(not_listed(name.clone()));
        }
        if !seen.insert(name.as_str()) {
            return Err(AnswerError::Duplicate(name.clone()));
        }
    }
    match listed.iter().find(|name| !seen.contains(**name)) {
        Some(name) => Err(missing((*name).to_owned())),
        None => Ok(()),
    }
}

/// serde_json's messages quote an unknown field's name or an unexpected string (`invalid type:
/// string "…"`), which could be a value; only the category and position are kept.
fn redacted(error: &serde_json::Error) -> String {
    use serde_json::error::Category;
    let what = match error.classify() {
        Category::Io => "cannot read it",
        Category::Syntax => "not JSON",
        Category::Data => "JSON of the wrong shape",
        Category::Eof => "ends early",
    };
    format!("{what} at line {} column {}", error.line(), error.column())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decision::reference::parse_reference_list;
    use rstest::rstest;
    use secrecy::ExposeSecret;

    const CANARY: &str = "canary-value-7f3a";

    fn list() -> References {
        let entry = |key: &str| {
            format!(
                r#"{{"key":"{key}","secretObject":{{"key":"k","source":{{"type":"KUBERNETES","id":"finance"}}}}}}"#
            )
        };
        parse_reference_list(&format!(
            r#"{{"env-secrets":[{},{}],"spark-conf-secrets":[{}]}}"#,
            entry("DB_PASSWORD"),
            entry("API_TOKEN"),
            entry("spark.hadoop.fs.s3a.secret.key")
        ))
        .unwrap()
    }

    fn answer(env: &[&str], spark: &[&str]) -> EnvAnswer {
        let body = serde_json::json!({
            "env": env.iter().map(|name| serde_json::json!({"name": name, "value": CANARY})).collect::<Vec<_>>(),
            "sparkConf": spark.iter().map(|p| serde_json::json!({"property": p, "value": CANARY})).collect::<Vec<_>>(),
        });
        parse(body.to_string().as_bytes()).unwrap()
    }

    const S3: &str = "spark.hadoop.fs.s3a.secret.key";

    #[test]
    fn an_exact_answer_is_accepted_in_the_lists_order() {
        let values = accept(&list(), answer(&["API_TOKEN", "DB_PASSWORD"], &[S3])).unwrap();
        let names: Vec<&str> = values.env.iter().map(|(name, _)| name.as_str()).collect();
        assert_eq!(names, ["DB_PASSWORD", "API_TOKEN"]);
        assert_eq!(values.env[0].1.expose_secret(), CANARY);
        assert_eq!(values.spark_conf[0].0, S3);
        let debug = format!("{values:?}");
        assert!(
            debug.contains("DB_PASSWORD") && !debug.contains(CANARY),
            "{debug}"
        );
    }

    #[rstest]
    #[case::stray_env(&["DB_PASSWORD", "API_TOKEN", "EXTRA"], &[S3], AnswerError::EnvNotListed("EXTRA".into()))]
    #[case::stray_property(&["DB_PASSWORD", "API_TOKEN"], &[S3, "spark.evil"], AnswerError::PropertyNotListed("spark.evil".into()))]
    #[case::property_as_env(&["DB_PASSWORD", "API_TOKEN", S3], &[S3], AnswerError::EnvNotListed(S3.into()))]
    #[case::denied_loader(&["DB_PASSWORD", "API_TOKEN", "LD_PRELOAD"], &[S3], AnswerError::Denied("LD_PRELOAD".into()))]
    #[case::denied_control(&["IOMETE_ENV_BROKER_URL"], &[], AnswerError::Denied("IOMETE_ENV_BROKER_URL".into()))]
    #[case::denied_options(&["SPARK_SUBMIT_OPTS"], &[], AnswerError::Denied("SPARK_SUBMIT_OPTS".into()))]
    #[case::duplicate_env(&["DB_PASSWORD", "API_TOKEN", "DB_PASSWORD"], &[S3], AnswerError::Duplicate("DB_PASSWORD".into()))]
    #[case::duplicate_property(&["DB_PASSWORD", "API_TOKEN"], &[S3, S3], AnswerError::Duplicate(S3.into()))]
    #[case::missing_env(&["DB_PASSWORD"], &[S3], AnswerError::EnvMissing("API_TOKEN".into()))]
    #[case::missing_property(&["DB_PASSWORD", "API_TOKEN"], &[], AnswerError::PropertyMissing(S3.into()))]
    #[case::empty(&[], &[], AnswerError::EnvMissing("DB_PASSWORD".into()))]
    fn answers_that_do_not_match_the_list_are_refused(
        #[case] env: &[&str],
        #[case] spark: &[&str],
        #[case] expected: AnswerError,
    ) {
        let error = accept(&list(), answer(env, spark)).unwrap_err();
        assert_eq!(error, expected);
        assert!(!error.to_string().contains(CANARY), "{error}");
    }

    #[rstest]
    #[case::not_json(r#"{"env": [{"name": "A", "value": "canary-value-7f3a"#)]
    #[case::unknown_field(r#"{"env": [], "canary-value-7f3a": 1}"#)]
    #[case::value_not_a_string(r#"{"env": [{"name": "A", "value": ["canary-value-7f3a"]}]}"#)]
    #[case::wrong_type(r#"{"env": "canary-value-7f3a"}"#)]
    #[case::not_an_object(r#""canary-value-7f3a""#)]
    fn malformed_answers_are_refused_without_quoting_them(#[case] body: &str) {
        let error = parse(body.as_bytes()).unwrap_err();
        assert!(matches!(error, AnswerError::Malformed(_)), "{error:?}");
        assert!(!error.to_string().contains(CANARY), "{error}");
    }
}
