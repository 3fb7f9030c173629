//! Rendering: the dry-run marker, the audit annotation, `mentions_secrets` and a missing value.

use super::*;

fn mixed_pod() -> Value {
    pod_json(
        &[(
            ENV,
            &env_secrets(&[("DB_PASSWORD", "finance", "db_password")]),
        )],
        json!([
            {"name": "main", "env": [{"name": "URL", "value": "u=${secrets.db_user};p=$(HOME)"}]},
            {"name": "sidecar"},
        ]),
        Value::Null,
    )
}
const V2_VALUE: &str = "hunter2-from-finance";
const LEGACY_VALUE: &str = "legacy-user-from-global";

fn mixed_values() -> HashMap<SecretRef, String> {
    values(&[
        (domain("finance", "db_password"), V2_VALUE),
        (global("db_user"), LEGACY_VALUE),
    ])
}

#[test]
fn dry_run_writes_the_marker_and_no_value() {
    let original = mixed_pod();
    let plan = plan(&pod(&original), &finance(), &V2_ON, &vaults()).unwrap();
    let rendered = render_with(&plan, &mixed_values(), ValueMode::DryRun).unwrap();
    let serialized = format!(
        "{} {:?} {:?}",
        String::from_utf8(rendered.patch.clone()).unwrap(),
        rendered.warnings,
        rendered.audit_annotations
    );
    assert!(serialized.contains(DRY_RUN_MARKER), "{serialized}");
    assert!(!serialized.contains(V2_VALUE), "{serialized}");
    assert!(!serialized.contains(LEGACY_VALUE), "{serialized}");

    let patched = apply(&original, &rendered.patch);
    assert_eq!(
        patched["spec"]["containers"],
        json!([
            {"name": "main", "env": [
                {"name": "URL", "value": format!("u={DRY_RUN_MARKER};p=$(HOME)")},
                {"name": "DB_PASSWORD", "value": DRY_RUN_MARKER},
            ]},
            {"name": "sidecar", "env": [{"name": "DB_PASSWORD", "value": DRY_RUN_MARKER}]},
        ])
    );
    assert_eq!(
        patched["metadata"]["annotations"][INJECTED_ANNOTATION],
        json!(digest_of(&original))
    );
}

#[test]
fn audit_annotations_list_references_and_never_values() {
    let original = mixed_pod();
    let plan = plan(&pod(&original), &finance(), &V2_ON, &vaults()).unwrap();
    let rendered = render_with(&plan, &mixed_values(), ValueMode::Live).unwrap();
    assert_eq!(
        rendered.audit_annotations.keys().collect::<Vec<_>>(),
        vec![AUDIT_ANNOTATION_KEY]
    );
    let listed: Value =
        serde_json::from_str(&rendered.audit_annotations[AUDIT_ANNOTATION_KEY]).unwrap();
    assert_eq!(
        listed,
        json!([
            {"target": "container \"main\" env \"DB_PASSWORD\"", "source": "KUBERNETES", "id": "finance", "key": "db_password"},
            {"target": "container \"sidecar\" env \"DB_PASSWORD\"", "source": "KUBERNETES", "id": "finance", "key": "db_password"},
            {"target": "container \"main\" env \"URL\" (legacy)", "source": "KUBERNETES", "id": "global", "key": "db_user"},
        ])
    );
    let everything = format!("{:?} {:?}", rendered.audit_annotations, rendered.warnings);
    assert!(!everything.contains(V2_VALUE), "{everything}");
    assert!(!everything.contains(LEGACY_VALUE), "{everything}");
}

#[test]
fn nothing_injected_means_no_audit_annotation() {
    let original = pod_json(&[], json!([{"name": "main"}]), Value::Null);
    let plan = plan(&pod(&original), &finance(), &V2_ON, &vaults()).unwrap();
    assert!(plan.is_noop());
    let rendered = render_with(&plan, &HashMap::new(), ValueMode::Live).unwrap();
    assert!(rendered.audit_annotations.is_empty());
    assert_eq!(rendered.patch, b"[]");
}

#[rstest]
#[case::nothing(pod_json(&[], json!([{"name": "main"}]), Value::Null), false)]
#[case::unrelated(
    pod_json(
        &[("app.io/x", "${secrets.a}"), ("secrets.iomete.com.evil/env-secrets", "[]")],
        json!([{"name": "main", "env": [{"name": "A", "value": "$(HOME) ${HOME} $(secrets.a) {secrets.a}"}, {"name": "B"}]}]),
        json!([{"name": "prepare", "env": [{"name": "A", "value": "secrets.a"}]}]),
    ),
    false
)]
#[case::env_secrets(pod_json(&[(ENV, "[]")], json!([{"name": "main"}]), Value::Null), true)]
#[case::any_key_under_the_prefix(pod_json(&[("secrets.iomete.com/typo", "x")], json!([{"name": "main"}]), Value::Null), true)]
#[case::injected_only(pod_json(&[(INJECTED_ANNOTATION, "sha256:x")], json!([{"name": "main"}]), Value::Null), true)]
#[case::placeholder_in_container(
    pod_json(&[], json!([{"name": "a"}, {"name": "main", "env": [{"name": "A", "value": "x${secrets.k}"}]}]), Value::Null),
    true
)]
#[case::placeholder_in_init_container(
    pod_json(&[], json!([{"name": "main"}]), json!([{"name": "prepare", "env": [{"name": "A", "value": "${secrets.k}"}]}])),
    true
)]
#[case::malformed_placeholder(
    pod_json(&[], json!([{"name": "main", "env": [{"name": "A", "value": "${secrets."}]}]), Value::Null),
    true
)]
fn mentions_secrets_cases(#[case] original: Value, #[case] expected: bool) {
    assert_eq!(mentions_secrets(&pod(&original)), expected);
}

#[test]
fn render_without_a_needed_value_is_a_missing_value() {
    let original = mixed_pod();
    let plan = plan(&pod(&original), &finance(), &V2_ON, &vaults()).unwrap();
    let only_legacy = values(&[(global("db_user"), "u")]);
    let error = render_with(&plan, &only_legacy, ValueMode::Live).unwrap_err();
    assert_eq!(
        error,
        InjectionError::Internal(MissingValue(domain("finance", "db_password")))
    );
    assert_eq!(
        error.to_string(),
        "internal error, please report it: no value was fetched for KUBERNETES/finance/db_password"
    );
    let only_v2 = values(&[(domain("finance", "db_password"), "p")]);
    let error = render_with(&plan, &only_v2, ValueMode::DryRun).unwrap_err();
    assert_eq!(
        error,
        InjectionError::Internal(MissingValue(global("db_user")))
    );
}
