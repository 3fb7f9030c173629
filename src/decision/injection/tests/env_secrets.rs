//! The env-secrets mechanism: where each reference lands and how its value is written.

use super::*;

#[rstest]
#[case::env_absent(None, json!([{"name": "DB_PASSWORD", "value": "s3cret"}]), false)]
#[case::env_null(Some(Value::Null), json!([{"name": "DB_PASSWORD", "value": "s3cret"}]), false)]
#[case::env_empty(Some(json!([])), json!([{"name": "DB_PASSWORD", "value": "s3cret"}]), false)]
#[case::env_present_appended(
    Some(json!([{"name": "A", "value": "1"}, {"name": "B", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}])),
    json!([{"name": "A", "value": "1"}, {"name": "B", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}, {"name": "DB_PASSWORD", "value": "s3cret"}]),
    false
)]
#[case::plain_var_replaced(
    Some(json!([{"name": "A", "value": "1"}, {"name": "DB_PASSWORD", "value": "from-the-spec"}, {"name": "C", "value": "3"}])),
    json!([{"name": "A", "value": "1"}, {"name": "DB_PASSWORD", "value": "s3cret"}, {"name": "C", "value": "3"}]),
    true
)]
#[case::value_from_var_replaced(
    Some(json!([{"name": "DB_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "mine", "key": "pw"}}}, {"name": "A", "value": "1"}])),
    json!([{"name": "DB_PASSWORD", "value": "s3cret"}, {"name": "A", "value": "1"}]),
    true
)]
#[case::every_duplicate_replaced(
    Some(json!([{"name": "DB_PASSWORD", "value": "one"}, {"name": "DB_PASSWORD", "value": "two"}])),
    json!([{"name": "DB_PASSWORD", "value": "s3cret"}, {"name": "DB_PASSWORD", "value": "s3cret"}]),
    true
)]
fn env_secret_lands_in_the_container(
    #[case] existing: Option<Value>,
    #[case] expected_env: Value,
    #[case] warned: bool,
) {
    let mut container = json!({"name": "main", "image": "spark:3.5"});
    if let Some(env) = existing {
        container["env"] = env;
    }
    let annotation = env_secrets(&[("DB_PASSWORD", "finance", "db_password")]);
    let original = pod_json(
        &[(ENV, &annotation), ("app.io/owner", "team")],
        json!([container]),
        Value::Null,
    );
    let (plan, rendered, patched) = inject(
        &original,
        &finance(),
        &[(domain("finance", "db_password"), "s3cret")],
    );

    let mut expected = original.clone();
    expected["spec"]["containers"][0]["env"] = expected_env;
    expected["metadata"]["annotations"][INJECTED_ANNOTATION] = json!(digest_of(&original));
    assert_eq!(patched, expected);
    let warnings = if warned {
        vec![replaced_warning("main", "DB_PASSWORD")]
    } else {
        vec![]
    };
    assert_eq!(rendered.warnings, warnings);
    assert_eq!(
        plan.needed_secrets(),
        vec![domain("finance", "db_password")]
    );
}

#[test]
fn every_container_but_no_init_container_by_default() {
    let annotation = env_secrets(&[("A", "finance", "a"), ("B", "global", "b")]);
    let original = pod_json(
        &[(ENV, &annotation)],
        json!([
            {"name": "main"},
            {"name": "sidecar", "env": [{"name": "B", "value": "old"}, {"name": "X", "value": "x"}]},
        ]),
        json!([{"name": "prepare", "env": [{"name": "X", "value": "x"}]}]),
    );
    let (plan, rendered, patched) = inject(
        &original,
        &finance(),
        &[(domain("finance", "a"), "va"), (global("b"), "vb")],
    );
    assert_eq!(
        patched["spec"]["containers"],
        json!([
            {"name": "main", "env": [{"name": "A", "value": "va"}, {"name": "B", "value": "vb"}]},
            {"name": "sidecar", "env": [{"name": "B", "value": "vb"}, {"name": "X", "value": "x"}, {"name": "A", "value": "va"}]},
        ])
    );
    assert_eq!(
        patched["spec"]["initContainers"],
        original["spec"]["initContainers"]
    );
    assert_eq!(rendered.warnings, vec![replaced_warning("sidecar", "B")]);
    assert_eq!(
        plan.needed_secrets(),
        vec![domain("finance", "a"), global("b")]
    );
}

#[test]
fn containers_annotation_picks_only_the_named_ones_including_init_containers() {
    let annotation = env_secrets(&[("A", "finance", "a")]);
    let original = pod_json(
        &[
            (ENV, &annotation),
            (CONTAINERS_ANNOTATION, "prepare, sidecar"),
        ],
        json!([{"name": "main"}, {"name": "sidecar"}]),
        json!([{"name": "prepare"}, {"name": "other-init"}]),
    );
    let (_, _, patched) = inject(&original, &finance(), &[(domain("finance", "a"), "va")]);
    let with_a = json!([{"name": "A", "value": "va"}]);
    assert_eq!(patched["spec"]["containers"][0], json!({"name": "main"}));
    assert_eq!(patched["spec"]["containers"][1]["env"], with_a);
    assert_eq!(patched["spec"]["initContainers"][0]["env"], with_a);
    assert_eq!(
        patched["spec"]["initContainers"][1],
        json!({"name": "other-init"})
    );
}

#[test]
fn values_are_escaped_so_the_container_sees_the_exact_bytes() {
    let annotation = env_secrets(&[("DB_PASSWORD", "finance", "db_password")]);
    let original = pod_json(
        &[(ENV, &annotation)],
        json!([{"name": "main", "env": [{"name": "DB_PASSWORD", "value": "x"}]}]),
        Value::Null,
    );
    let (_, _, patched) = inject(
        &original,
        &finance(),
        &[(domain("finance", "db_password"), TRICKY)],
    );
    let written = &patched["spec"]["containers"][0]["env"][0]["value"];
    assert_eq!(written, &json!(TRICKY.replace('$', "$$")));
    assert_eq!(seen_by_container(written), TRICKY);
    assert_eq!(kubelet_expand(written.as_str().unwrap(), |_| None), TRICKY);
}
