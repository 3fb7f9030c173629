//! The application's environment, and parity with env mode: for the same values, the
//! `SPARK_SUBMIT_OPTS` `iomete-env` builds is what env mode's rendered value becomes once the
//! kubelet has expanded it.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;

use rstest::rstest;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};

use super::*;
use crate::decision::expansion::kubelet_expand;
use crate::decision::injection::{self, Settings, ValueMode};
use crate::decision::pod::Pod;
use crate::decision::reference::{KubernetesStore, SecretRef, Source};
use crate::decision::scope::NamespaceScope;

// `hostile_values()`, shared with the Spark and spark-submit tests.
#[allow(unreachable_pub, dead_code)]
mod hostile {
    include!("../../../tests/support/hostile_values.rs");
}
use hostile::hostile_values;

const CANARY: &str = "canary-value-7f3a";

fn os(pairs: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
    pairs
        .iter()
        .map(|(name, value)| (OsString::from(name), OsString::from(value)))
        .collect()
}

fn secrets(pairs: &[(&str, &str)]) -> Vec<(String, SecretString)> {
    pairs
        .iter()
        .map(|(name, value)| (name.to_string(), SecretString::from(*value)))
        .collect()
}

fn values(env: &[(&str, &str)], spark: &[(&str, &str)]) -> Values {
    Values {
        env: secrets(env),
        spark_conf: secrets(spark),
    }
}

fn as_map(child: &ChildEnv) -> BTreeMap<String, String> {
    child
        .vars()
        .map(|(name, value)| {
            (
                name.to_string_lossy().into_owned(),
                value.to_string_lossy().into_owned(),
            )
        })
        .collect()
}

#[test]
fn control_variables_leave_and_values_arrive() {
    let current = os(&[
        ("PATH", "/usr/bin:/bin"),
        ("IOMETE_ENV_BROKER_URL", "https://broker:8444"),
        ("IOMETE_ENV_REFERENCES", "{}"),
        ("IOMETE_ENV_ANYTHING_ELSE", "x"),
        ("DB_PASSWORD", "set by the pod spec"),
        ("KEEP", "kept"),
    ]);
    let child = child_environment(current, &values(&[("DB_PASSWORD", CANARY)], &[])).unwrap();
    assert_eq!(
        as_map(&child),
        BTreeMap::from([
            ("PATH".to_owned(), "/usr/bin:/bin".to_owned()),
            ("KEEP".to_owned(), "kept".to_owned()),
            ("DB_PASSWORD".to_owned(), CANARY.to_owned()),
        ])
    );
    let debug = format!("{child:?}");
    assert!(
        debug.contains("DB_PASSWORD") && !debug.contains(CANARY),
        "{debug}"
    );
}

#[rstest]
#[case::absent(None, "'-Dspark.a=it'\\''s' '-Dspark.b=$(HOME)'")]
#[case::empty(Some(""), "'-Dspark.a=it'\\''s' '-Dspark.b=$(HOME)'")]
#[case::appended(
    Some("-Xss4m '-Dx=a b'"),
    "-Xss4m '-Dx=a b' '-Dspark.a=it'\\''s' '-Dspark.b=$(HOME)'"
)]
fn spark_properties_are_appended_to_spark_submit_opts(
    #[case] existing: Option<&str>,
    #[case] expected: &str,
) {
    let mut current = os(&[("PATH", "/bin")]);
    if let Some(existing) = existing {
        current.push(("SPARK_SUBMIT_OPTS".into(), existing.into()));
    }
    let spark = [("spark.a", "it's"), ("spark.b", "$(HOME)")];
    let child = child_environment(current, &values(&[], &spark)).unwrap();
    let env = as_map(&child);
    assert_eq!(env["SPARK_SUBMIT_OPTS"], expected);
    assert_eq!(env.len(), 2, "{env:?}");
}

/// A value of `len` bytes that lives as long as the test cases need it to.
fn long(len: usize) -> &'static str {
    Box::leak("x".repeat(len).into_boxed_str())
}

#[rstest]
#[case::nul_env(&[("DB_PASSWORD", "a\0canary-value-7f3a")], &[], None, EnvironmentError::Nul("DB_PASSWORD".into()))]
#[case::too_long_env(&[("BIG", long(MAX_ENV_STRING))], &[], None, EnvironmentError::TooLong("BIG".into()))]
#[case::nul_property(&[], &[("spark.a", "canary-value-7f3a\0")], None, EnvironmentError::Spark(SparkConfError::Uncarriable { property: "spark.a".into(), found: spark::Uncarriable::Nul }))]
#[case::carriage_return(&[], &[("spark.a", "canary-value-7f3a\r")], None, EnvironmentError::Spark(SparkConfError::Uncarriable { property: "spark.a".into(), found: spark::Uncarriable::CarriageReturn }))]
#[case::above_bmp(&[], &[("spark.a", "canary-value-7f3a 🔑")], None, EnvironmentError::Spark(SparkConfError::Uncarriable { property: "spark.a".into(), found: spark::Uncarriable::AboveBmp }))]
#[case::options_too_long(&[], &[("spark.a", long(spark::MAX_OPTIONS_BYTES))], None, EnvironmentError::Spark(SparkConfError::OptionsTooLong))]
#[case::existing_mid_quote(&[], &[("spark.a", CANARY)], Some("-Dx='open"), EnvironmentError::Spark(SparkConfError::OptionsEndMidToken))]
fn values_that_cannot_be_delivered_are_named_not_shown(
    #[case] env: &[(&str, &str)],
    #[case] spark: &[(&str, &str)],
    #[case] existing: Option<&str>,
    #[case] expected: EnvironmentError,
) {
    let mut current = os(&[("PATH", "/bin")]);
    if let Some(existing) = existing {
        current.push(("SPARK_SUBMIT_OPTS".into(), existing.into()));
    }
    let error = child_environment(current, &values(env, spark)).unwrap_err();
    assert_eq!(error, expected);
    let message = crate::edge::telemetry::error_chain(&error);
    assert!(!message.contains(CANARY), "{message}");
}

/// Env mode end to end for one driver container: plan, render with `values`, apply the patch,
/// and return `SPARK_SUBMIT_OPTS` as the container sees it after the kubelet's expansion.
fn env_mode_seen(existing: Option<&str>, properties: &[(String, &str)]) -> String {
    let list: Vec<Value> = properties
        .iter()
        .enumerate()
        .map(|(index, (property, _))| {
            json!({"key": property, "secretObject": {"key": format!("k{index}"), "source": {"type": "KUBERNETES", "id": "finance"}}})
        })
        .collect();
    let mut container = json!({"name": "spark-kubernetes-driver"});
    if let Some(existing) = existing {
        container["env"] = json!([{"name": "SPARK_SUBMIT_OPTS", "value": existing}]);
    }
    let pod_json = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "driver",
            "labels": {"spark-role": "driver"},
            "annotations": {"secrets.iomete.com/spark-conf-secrets": Value::Array(list).to_string()},
        },
        "spec": {"containers": [container]},
    });
    let pod: Pod = serde_json::from_value(pod_json.clone()).unwrap();
    let namespace = NamespaceScope {
        name: "finance-jobs".into(),
        domain: Some("finance".into()),
        admin: false,
    };
    let settings = Settings::env_delivery(true);
    let plan = injection::plan(&pod, &namespace, &settings, &BTreeMap::new()).unwrap();
    let by_ref: HashMap<SecretRef, &str> = properties
        .iter()
        .enumerate()
        .map(|(index, (_, value))| {
            let secret = SecretRef {
                source: Source::Kubernetes(KubernetesStore::Domain("finance".into())),
                key: format!("k{index}"),
            };
            (secret, *value)
        })
        .collect();
    let lookup = |secret: &SecretRef| by_ref.get(secret).map(|v| SecretString::from(*v));
    let rendered = injection::render(&plan, &lookup, ValueMode::Live).unwrap();
    let patch: json_patch::Patch = serde_json::from_slice(&rendered.patch).unwrap();
    let mut patched = pod_json;
    json_patch::patch(&mut patched, &patch).unwrap();
    let written = patched["spec"]["containers"][0]["env"]
        .as_array()
        .unwrap()
        .iter()
        .rfind(|var| var["name"] == "SPARK_SUBMIT_OPTS")
        .unwrap()["value"]
        .as_str()
        .unwrap()
        .to_owned();
    kubelet_expand(&written, |_| None)
}

#[rstest]
#[case::no_existing_value(None)]
#[case::existing_options(Some("-Xss4m '-Dspark.app.tag=a b'"))]
#[case::existing_with_kubelet_escapes(Some("-Dprice=$$5 -Dhome=$(HOME) \"-Dq=x y\""))]
fn spark_submit_opts_matches_env_mode_after_the_kubelet(#[case] existing: Option<&str>) {
    let corpus = hostile_values();
    let properties: Vec<(String, &str)> = corpus
        .iter()
        .enumerate()
        .map(|(index, value)| (format!("spark.iomete.test.v{index}"), value.as_str()))
        .collect();
    // One property at a time and all at once: each value alone, and their joining.
    let mut cases: Vec<Vec<(String, &str)>> =
        properties.iter().map(|entry| vec![entry.clone()]).collect();
    cases.push(properties.clone());
    for case in cases {
        let env_mode = env_mode_seen(existing, &case);
        // iomete-env finds the existing value as the kubelet left it.
        let seen_existing = existing.map(|existing| kubelet_expand(existing, |_| None));
        let ours = spark_submit_opts(
            seen_existing.as_deref(),
            &case
                .iter()
                .map(|(property, value)| (property.clone(), SecretString::from(*value)))
                .collect::<Vec<_>>(),
        )
        .unwrap();
        assert_eq!(ours.expose_secret(), env_mode, "{:?}", case[0].0);
    }
}
