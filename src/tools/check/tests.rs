use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::ObjectMeta;
use rstest::rstest;
use serde_json::json;

use super::*;
use crate::backends::kubernetes::ScopePolicy;
use crate::backends::vault::resource::VaultConfig;

fn namespace(name: &str, domain: Option<&str>) -> Namespace {
    Namespace {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: domain
                .map(|d| BTreeMap::from([("iomete.com/domain".to_owned(), d.to_owned())])),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    }
}

fn store(name: &str, keys: &[&str]) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("iomete-system".into()),
            uid: Some(format!("uid-{name}")),
            resource_version: Some("7".into()),
            ..ObjectMeta::default()
        },
        data: Some(
            keys.iter()
                .map(|key| ((*key).to_owned(), ByteString(b"canary-value".to_vec())))
                .collect(),
        ),
        ..Secret::default()
    }
}

pub(crate) async fn view() -> ClusterView {
    let policy = ScopePolicy {
        store_namespace: "iomete-system".into(),
        admin_namespaces: ["iomete-system".to_owned()].into(),
        domain_label: "iomete.com/domain".into(),
    };
    let config: VaultConfig = serde_json::from_value(json!({
        "apiVersion": "secrets.iomete.com/v1", "kind": "VaultConfig",
        "metadata": {"name": "vault-finance", "namespace": "iomete-system", "uid": "u1"},
        "spec": {"domain": "finance", "host": "http://127.0.0.1:1", "path": "/v1/secret/data/app",
                 "auth": {"method": "Token"}, "layout": "SecretPerKey"},
    }))
    .unwrap();
    ClusterView::from_objects(
        policy,
        vec![
            namespace("spark-jobs", Some("finance")),
            namespace("marketing-jobs", Some("marketing")),
            namespace("hr-jobs", Some("hr")),
            namespace("iomete-system", None),
        ],
        vec![
            store("iomete-secret-store-finance", &["db_password"]),
            store("iomete-secret-store", &["smtp_password"]),
            store("unrelated", &["x"]),
        ],
        vec![config],
        Duration::from_secs(1),
    )
    .await
}

fn template(annotations: &[(&str, String)], env: serde_json::Value) -> Template {
    let annotations: BTreeMap<String, String> = annotations
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect();
    let text = json!({"kind": "Pod", "metadata": {"name": "p", "annotations": annotations},
                      "spec": {"containers": [{"name": "main", "env": env}]}})
    .to_string();
    manifest::templates("m.json", &text).unwrap().remove(0)
}

fn env_ref(source_type: &str, id: &str, key: &str) -> (&'static str, String) {
    let entry = json!([{"key": "SECRET", "secretObject": {"key": key, "source": {"type": source_type, "id": id}}}]);
    ("secrets.iomete.com/env-secrets", entry.to_string())
}

/// Each reason the webhook denies for, with the code it answers; and the references that pass.
#[rstest]
#[case::domain_key("spark-jobs", env_ref("KUBERNETES", "finance", "db_password"), None)]
#[case::global_key(
    "marketing-jobs",
    env_ref("KUBERNETES", "global", "smtp_password"),
    None
)]
#[case::missing_key("spark-jobs", env_ref("KUBERNETES", "finance", "nope"), Some((404, "has no key \"nope\"")))]
#[case::missing_store("hr-jobs", env_ref("KUBERNETES", "hr", "k"), Some((404, "does not exist in namespace")))]
#[case::out_of_scope("marketing-jobs", env_ref("KUBERNETES", "finance", "db_password"), Some((403, "readable only from a namespace of domain \"finance\"")))]
#[case::admin_store_from_domain("spark-jobs", env_ref("KUBERNETES", "admin", "k"), Some((403, "readable only from an admin namespace")))]
#[case::unknown_vault_config("spark-jobs", env_ref("VAULT", "vault-nope", "db"), Some((404, "vault-nope")))]
#[case::vault_out_of_scope("marketing-jobs", env_ref("VAULT", "vault-finance", "db"), Some((403, "domain \"finance\"")))]
#[tokio::test]
async fn references_get_the_webhooks_verdict(
    #[case] namespace: &str,
    #[case] annotation: (&'static str, String),
    #[case] denied: Option<(u16, &str)>,
) {
    let view = view().await;
    let checked = check(&view, &template(&[annotation], json!([])), namespace).await;
    assert_eq!(checked.references.len(), 1, "{checked:?}");
    match (denied, &checked.references[0].verdict) {
        (None, Verdict::Ok) => assert_eq!(checked.problems(), 0),
        (
            Some((code, text)),
            Verdict::Denied {
                code: got, message, ..
            },
        ) => {
            assert_eq!(*got, code, "{message}");
            assert!(message.contains(text), "{message}");
            assert_eq!(checked.problems(), 1);
        }
        (expected, got) => panic!("expected {expected:?}, got {got:?}"),
    }
    let rendered = report(vec![checked], false).render(crate::boot::tool_args::OutputFormat::Human);
    assert!(!rendered.contains("canary-value"), "{rendered}");
}

#[rstest]
#[case::malformed_json(("secrets.iomete.com/env-secrets", "[{".to_owned()), 400)]
#[case::unknown_annotation(("secrets.iomete.com/typo", "x".to_owned()), 400)]
#[tokio::test]
async fn malformed_annotations_deny_the_pod(
    #[case] annotation: (&'static str, String),
    #[case] code: u16,
) {
    let view = view().await;
    let checked = check(
        &view,
        &template(std::slice::from_ref(&annotation), json!([])),
        "spark-jobs",
    )
    .await;
    assert!(
        matches!(checked.pod, Verdict::Denied { code: got, .. } if got == code),
        "{checked:?}"
    );
    assert_eq!(checked.problems(), 1);
    let offline = offline(&template(&[annotation], json!([])), "-");
    assert_eq!(
        offline.pod, checked.pod,
        "offline and online agree on grammar"
    );
}

#[tokio::test]
async fn every_bad_reference_is_named_not_only_the_first() {
    let entries = json!([
        {"key": "A", "secretObject": {"key": "nope", "source": {"type": "KUBERNETES", "id": "finance"}}},
        {"key": "B", "secretObject": {"key": "db_password", "source": {"type": "KUBERNETES", "id": "finance"}}},
        {"key": "C", "secretObject": {"key": "k", "source": {"type": "KUBERNETES", "id": "admin"}}},
    ]);
    let view = view().await;
    let annotation = ("secrets.iomete.com/env-secrets", entries.to_string());
    let checked = check(&view, &template(&[annotation], json!([])), "spark-jobs").await;
    let verdicts: Vec<_> = checked
        .references
        .iter()
        .map(|r| r.verdict.is_ok())
        .collect();
    assert_eq!(verdicts, [false, true, false]);
    assert_eq!(checked.problems(), 2);
    // The pod-level verdict is the webhook's answer: its first problem (scope before existence).
    assert!(
        matches!(checked.pod, Verdict::Denied { code: 403, .. }),
        "{:?}",
        checked.pod
    );
}

#[rstest]
#[case::present("smtp_password", true)]
#[case::missing("nope", false)]
#[tokio::test]
async fn legacy_placeholders_are_checked(#[case] key: &str, #[case] ok: bool) {
    let view = view().await;
    let env = json!([{"name": "SMTP", "value": format!("${{secrets.{key}}}")}]);
    let checked = check(&view, &template(&[], env), "spark-jobs").await;
    assert_eq!(checked.references.len(), 1, "{checked:?}");
    assert_eq!(checked.references[0].verdict.is_ok(), ok, "{checked:?}");
}

#[tokio::test]
async fn an_unknown_namespace_is_named() {
    let view = view().await;
    let annotation = env_ref("KUBERNETES", "finance", "db_password");
    let checked = check(&view, &template(&[annotation], json!([])), "nowhere").await;
    assert!(
        matches!(&checked.pod, Verdict::Denied { message, .. } if message.contains("\"nowhere\" does not exist"))
    );
}

#[tokio::test]
async fn injected_pods_from_kubectl_get_are_checked_as_new() {
    let view = view().await;
    let annotation = env_ref("KUBERNETES", "finance", "nope");
    let injected = ("secrets.iomete.com/injected", "sha256:whatever".to_owned());
    let checked = check(
        &view,
        &template(&[annotation, injected], json!([])),
        "spark-jobs",
    )
    .await;
    assert_eq!(checked.problems(), 1, "{checked:?}");
}
