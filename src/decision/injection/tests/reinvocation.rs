//! Reinvocation: a patched pod comes back unchanged, a changed one is injected again; the
//! `injected` annotation.

use super::*;

fn reinvocation_pods() -> Vec<(&'static str, Value)> {
    let a = env_secrets(&[("A", "finance", "a")]);
    vec![
        (
            "env created",
            pod_json(&[(ENV, &a)], json!([{"name": "main"}]), Value::Null),
        ),
        (
            "var replaced",
            pod_json(
                &[(ENV, &a)],
                json!([{"name": "main", "env": [{"name": "A", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]}]),
                Value::Null,
            ),
        ),
        (
            "named init container",
            pod_json(
                &[(ENV, &a), (CONTAINERS_ANNOTATION, "prepare")],
                json!([{"name": "main"}]),
                json!([{"name": "prepare", "env": [{"name": "X", "value": "x"}]}]),
            ),
        ),
        (
            "legacy only",
            pod_json(
                &[],
                json!([{"name": "main", "env": [{"name": "L", "value": "<${secrets.l}>"}]}]),
                json!([{"name": "prepare", "env": [{"name": "L", "value": "${secrets.l}"}]}]),
            ),
        ),
        (
            "legacy and env-secrets",
            pod_json(
                &[(ENV, &a), ("other.io/x", "y")],
                json!([{"name": "main", "env": [{"name": "A", "value": "${secrets.l}"}, {"name": "L", "value": "${secrets.l}"}]}]),
                Value::Null,
            ),
        ),
    ]
}

#[test]
fn reinvocation_with_the_patched_pod_is_a_noop() {
    let pairs = [(domain("finance", "a"), TRICKY), (global("l"), TRICKY)];
    for (case, original) in reinvocation_pods() {
        let (first, _, patched) = inject(&original, &finance(), &pairs);
        assert!(!first.is_noop(), "{case}");
        let again = plan(&pod(&patched), &finance(), &V2_ON, &vaults()).expect(case);
        assert!(again.is_noop(), "{case}: {:?}", again.changes);
        assert!(again.changes.is_empty(), "{case}");
        assert_eq!(again.mark_injected, None, "{case}");
        let rendered = render_with(&again, &values(&pairs), ValueMode::Live).unwrap();
        assert_eq!(rendered.patch, b"[]", "{case}");
    }
}

/// An injected value that contains `${secrets.x}` text is written `$${secrets.x}`, which the
/// legacy parser must read as the kubelet's escape, not as a placeholder, when the pod comes
/// back: otherwise another secret is spliced into the value (or the pod is denied with an
/// error that quotes the value).
#[rstest]
#[case::legacy_value(pod_json(&[], json!([{"name": "main", "env": [{"name": "L", "value": "${secrets.l}"}]}]), Value::Null))]
#[case::env_secret_value(pod_json(&[(ENV, &env_secrets(&[("L", "global", "l")]))], json!([{"name": "main"}]), Value::Null))]
fn reinvocation_is_a_noop_even_when_a_value_looks_like_a_placeholder(#[case] original: Value) {
    for value in ["a${secrets.other}b", "${secrets.not a key"] {
        let (_, _, patched) = inject(&original, &finance(), &[(global("l"), value)]);
        let written = &patched["spec"]["containers"][0]["env"][0]["value"];
        assert_eq!(seen_by_container(written), value);
        let again = plan(&pod(&patched), &finance(), &V2_ON, &vaults());
        assert!(
            again.as_ref().is_ok_and(Plan::is_noop),
            "{value:?}: {again:?}"
        );
    }
}

#[test]
fn reinvocation_with_changed_references_injects_again() {
    let original = pod_json(
        &[(ENV, &env_secrets(&[("A", "finance", "a")]))],
        json!([{"name": "main"}]),
        Value::Null,
    );
    let pairs = [
        (domain("finance", "a"), "va"),
        (domain("finance", "b"), "vb"),
    ];
    let (_, _, mut patched) = inject(&original, &finance(), &pairs);
    let old_digest = patched["metadata"]["annotations"][INJECTED_ANNOTATION].clone();
    patched["metadata"]["annotations"][ENV] =
        json!(env_secrets(&[("A", "finance", "b"), ("B", "finance", "b")]));

    let (again, rendered, repatched) = inject(&patched, &finance(), &pairs);
    assert!(!again.is_noop());
    assert_eq!(
        repatched["spec"]["containers"][0]["env"],
        json!([{"name": "A", "value": "vb"}, {"name": "B", "value": "vb"}])
    );
    let new_digest = &repatched["metadata"]["annotations"][INJECTED_ANNOTATION];
    assert_eq!(new_digest, &json!(digest_of(&patched)));
    assert_ne!(new_digest, &old_digest);
    assert_eq!(rendered.warnings, vec![replaced_warning("main", "A")]);
}

#[test]
fn a_forged_injected_digest_only_skips_injection() {
    let annotation = env_secrets(&[("A", "global", "a")]);
    let mut original = pod_json(
        &[(ENV, &annotation)],
        json!([{"name": "main"}]),
        Value::Null,
    );
    let digest = digest_of(&original);
    original["metadata"]["annotations"][INJECTED_ANNOTATION] = json!(digest);
    let plan = plan(&pod(&original), &finance(), &V2_ON, &vaults()).unwrap();
    assert!(plan.is_noop());
    assert!(plan.needed_secrets().is_empty());
}

#[test]
fn injected_annotation_is_added_with_an_escaped_pointer() {
    let annotation = env_secrets(&[("A", "finance", "a")]);
    let original = pod_json(
        &[(ENV, &annotation)],
        json!([{"name": "main"}]),
        Value::Null,
    );
    let (_, rendered, patched) = inject(&original, &finance(), &[(domain("finance", "a"), "va")]);
    let operations = serde_json::from_slice::<Value>(&rendered.patch).unwrap();
    assert_eq!(
        operations.as_array().unwrap().last().unwrap(),
        &json!({
            "op": "add",
            "path": "/metadata/annotations/secrets.iomete.com~1injected",
            "value": digest_of(&original),
        })
    );
    assert_eq!(
        patched["metadata"]["annotations"],
        json!({ENV: annotation, INJECTED_ANNOTATION: digest_of(&original)})
    );
}

#[test]
fn injected_annotation_creates_the_annotations_when_absent() {
    let plan = Plan {
        mark_injected: Some("sha256:abc".into()),
        annotations_present: false,
        ..Plan::default()
    };
    let rendered = render_with(&plan, &HashMap::new(), ValueMode::Live).unwrap();
    assert_eq!(
        serde_json::from_slice::<Value>(&rendered.patch).unwrap(),
        json!([{"op": "add", "path": "/metadata/annotations", "value": {"secrets.iomete.com/injected": "sha256:abc"}}])
    );
    let original = pod_json(&[], json!([{"name": "main"}]), Value::Null);
    let patched = apply(&original, &rendered.patch);
    assert_eq!(
        patched["metadata"],
        json!({"name": "job-1", "labels": {"app": "job"}, "annotations": {"secrets.iomete.com/injected": "sha256:abc"}})
    );
}

#[test]
fn a_stale_injected_annotation_is_overwritten() {
    let annotation = env_secrets(&[("A", "finance", "a")]);
    let original = pod_json(
        &[(ENV, &annotation), (INJECTED_ANNOTATION, "sha256:stale")],
        json!([{"name": "main"}]),
        Value::Null,
    );
    let (_, _, patched) = inject(&original, &finance(), &[(domain("finance", "a"), "va")]);
    assert_eq!(
        patched["metadata"]["annotations"][INJECTED_ANNOTATION],
        json!(digest_of(&original))
    );
}
