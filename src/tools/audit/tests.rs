use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use rstest::rstest;
use serde_json::{Value, json};

use super::*;
use crate::decision::reference::parse_annotations;

const DB: &str = "KUBERNETES/finance/db_password";
const VAULT: &str = "VAULT/vault-finance/app/db";

fn entries() -> String {
    json!([
        {"key": "DB", "secretObject": {"key": "db_password", "source": {"type": "KUBERNETES", "id": "finance"}}},
        {"key": "V", "secretObject": {"key": "app/db", "source": {"type": "VAULT", "id": "vault-finance"}}},
    ])
    .to_string()
}

fn digest_of(annotations: &Value) -> String {
    let annotations: BTreeMap<String, String> =
        serde_json::from_value(annotations.clone()).unwrap();
    parse_annotations(&annotations).unwrap().digest()
}

/// A pod as the webhook leaves it: references, the matching digest, the versions it read.
fn injected(versions: Option<Value>) -> Value {
    let mut annotations = json!({"secrets.iomete.com/env-secrets": entries()});
    annotations["secrets.iomete.com/injected"] = json!(digest_of(&annotations));
    if let Some(versions) = versions {
        annotations["secrets.iomete.com/versions"] = json!(versions.to_string());
    }
    json!({"metadata": {"name": "p", "annotations": annotations},
           "spec": {"containers": [{"name": "main", "env": [{"name": "DB", "value": "x"}]}]}})
}

fn current(reference: &str) -> Current {
    match reference {
        DB => Current::Version("uid-1/200".into()),
        VAULT => Current::Version("v3".into()),
        _ => Current::Gone("gone".into()),
    }
}

fn findings(pod: Value) -> Vec<String> {
    let pod: Pod = serde_json::from_value(pod).unwrap();
    classify(&pod, &current)
        .into_iter()
        .map(|finding| match finding {
            Finding::MissedInjection { .. } => "missed".to_owned(),
            Finding::Outdated { reference, .. } => format!("outdated {reference}"),
            Finding::VersionUnknown { reference, .. } => format!("unknown {reference}"),
        })
        .collect()
}

#[rstest]
#[case::current(injected(Some(json!({DB: "uid-1/200", VAULT: "v3"}))), &[])]
#[case::store_rotated(injected(Some(json!({DB: "uid-1/150", VAULT: "v3"}))), &["outdated KUBERNETES/finance/db_password"])]
#[case::vault_rotated(injected(Some(json!({DB: "uid-1/200", VAULT: "v2"}))), &["outdated VAULT/vault-finance/app/db"])]
#[case::store_recreated(injected(Some(json!({DB: "uid-0/200", VAULT: "v3"}))), &["outdated KUBERNETES/finance/db_password"])]
#[case::no_versions_recorded(injected(None), &["unknown KUBERNETES/finance/db_password", "unknown VAULT/vault-finance/app/db"])]
#[case::one_version_missing(injected(Some(json!({VAULT: "v3"}))), &["unknown KUBERNETES/finance/db_password"])]
fn rotation_is_told_from_recorded_versions(#[case] pod: Value, #[case] expected: &[&str]) {
    assert_eq!(findings(pod), expected);
}

#[rstest]
#[case::no_digest(json!({"secrets.iomete.com/env-secrets": entries()}))]
#[case::wrong_digest(json!({"secrets.iomete.com/env-secrets": entries(), "secrets.iomete.com/injected": "sha256:0"}))]
#[case::invalid_references(json!({"secrets.iomete.com/env-secrets": "[{"}))]
fn missed_injection_is_found(#[case] annotations: Value) {
    let pod = json!({"metadata": {"name": "p", "annotations": annotations},
                     "spec": {"containers": [{"name": "main"}]}});
    assert_eq!(findings(pod), ["missed"]);
}

#[rstest]
#[case::unfilled_placeholder("${secrets.smtp_password}", &["missed"])]
#[case::escaped_placeholder("$${secrets.smtp_password}", &[])]
#[case::plain("plain", &[])]
fn legacy_placeholders_left_in_env_are_missed_injection(
    #[case] value: &str,
    #[case] expected: &[&str],
) {
    let pod = json!({"metadata": {"name": "p"},
                     "spec": {"containers": [{"name": "main", "env": [{"name": "S", "value": value}]}]}});
    assert_eq!(findings(pod), expected);
}

#[test]
fn executors_are_not_expected_to_hold_spark_conf_versions() {
    let spark = json!([{"key": "spark.db.password", "secretObject": {"key": "db_password", "source": {"type": "KUBERNETES", "id": "finance"}}}]);
    let mut annotations = json!({"secrets.iomete.com/spark-conf-secrets": spark.to_string()});
    annotations["secrets.iomete.com/injected"] = json!(digest_of(&annotations));
    let pod = |role: &str| {
        json!({"metadata": {"name": "p", "labels": {"spark-role": role}, "annotations": annotations},
                                  "spec": {"containers": [{"name": "main"}]}})
    };
    assert_eq!(findings(pod("executor")), Vec::<String>::new());
    assert_eq!(
        findings(pod("driver")),
        ["unknown KUBERNETES/finance/db_password"]
    );
}

#[rstest]
#[case::reference("KUBERNETES/finance/db_password", Some(("KUBERNETES", "finance", "db_password")))]
#[case::vault_path("VAULT/v/a/b#f", Some(("VAULT", "v", "a/b#f")))]
#[case::bad_type("OTHER/a/b", None)]
#[case::no_key("KUBERNETES/finance", None)]
fn secret_filters_are_references(#[case] text: &str, #[case] parsed: Option<(&str, &str, &str)>) {
    assert_eq!(parse_reference(text), parsed);
}

fn kube_pod(labels: Value, owner: Option<(&str, &str)>) -> KubePod {
    let owners: Vec<OwnerReference> = owner
        .map(|(kind, name)| OwnerReference {
            kind: kind.into(),
            name: name.into(),
            controller: Some(true),
            api_version: "apps/v1".into(),
            uid: "u".into(),
            ..OwnerReference::default()
        })
        .into_iter()
        .collect();
    let mut pod: KubePod =
        serde_json::from_value(json!({"metadata": {"name": "p", "labels": labels}})).unwrap();
    pod.metadata.owner_references = Some(owners);
    pod
}

#[rstest]
#[case::deployment(json!({"pod-template-hash": "5d8f"}), Some(("ReplicaSet", "etl-5d8f")), "Deployment/etl")]
#[case::job(json!({}), Some(("Job", "nightly")), "Job/nightly")]
#[case::spark(json!({"sparkoperator.k8s.io/app-name": "etl", "spark-role": "driver"}), None, "SparkApplication/etl")]
#[case::notebook(json!({"component": "singleuser-server", "hub.jupyter.org/username": "ana"}), None, "notebook (JupyterHub user \"ana\")")]
#[case::bare(json!({}), None, "none (a bare pod)")]
fn owners_are_named_as_people_know_them(
    #[case] labels: Value,
    #[case] owner_ref: Option<(&str, &str)>,
    #[case] expected: &str,
) {
    assert_eq!(owner(&kube_pod(labels, owner_ref)), expected);
}

#[test]
fn broker_mode_pods_have_no_version_to_be_outdated_but_can_miss_injection() {
    let mut delivered = injected(None);
    delivered["spec"]["initContainers"] = json!([{"name": "iomete-env-install"}]);
    assert_eq!(findings(delivered.clone()), Vec::<String>::new());
    delivered["metadata"]["annotations"]["secrets.iomete.com/injected"] = json!("sha256:0");
    assert_eq!(findings(delivered), ["missed"]);
}
