//! The bounds on one admission's work and answer (`MAX_INJECTIONS_PER_POD`, `MAX_PATCH_BYTES`,
//! `MAX_LISTED_REFERENCES`), the scope check a reinvocation digest cannot skip, the Vault grants
//! a plan carries to the fetch, and placeholders the kubelet could not deliver intact.

use super::*;

/// `count` containers named `c0`, `c1`, … with no env.
fn containers(count: usize) -> Value {
    Value::Array(
        (0..count)
            .map(|i| json!({"name": format!("c{i}")}))
            .collect(),
    )
}

/// An env-secrets annotation of `count` references `V0`, `V1`, … to the finance store's key `k`.
fn references(count: usize) -> String {
    let names: Vec<String> = (0..count).map(|i| format!("V{i}")).collect();
    let entries: Vec<(&str, &str, &str)> = names
        .iter()
        .map(|name| (name.as_str(), "finance", "k"))
        .collect();
    env_secrets(&entries)
}

#[rstest]
#[case::admin_store_from_a_domain("admin", finance())]
#[case::another_domain("marketing", finance())]
#[case::global_from_no_domain("global", ns("default", None, false))]
#[case::domain_from_no_domain("finance", ns("default", None, false))]
fn a_forged_injected_digest_does_not_skip_authorization(
    #[case] id: &str,
    #[case] namespace: NamespaceScope,
) {
    let annotation = env_secrets(&[("A", id, "a")]);
    let mut original = pod_json(&[(ENV, &annotation)], containers(1), Value::Null);
    original["metadata"]["annotations"][INJECTED_ANNOTATION] = json!(digest_of(&original));
    let error = plan(&pod(&original), &namespace, &V2_ON, &vaults()).unwrap_err();
    assert!(
        matches!(error, InjectionError::OutOfScope(_)),
        "expected OutOfScope, got {error:?}"
    );
}

#[test]
fn references_times_containers_are_capped_before_planning() {
    // 256 containers × 4 references = 1024: exactly the cap, planned.
    let at_cap = pod_json(&[(ENV, &references(4))], containers(256), Value::Null);
    let planned = plan(&pod(&at_cap), &finance(), &V2_ON, &vaults()).unwrap();
    assert_eq!(planned.injected.len(), MAX_INJECTIONS_PER_POD);

    // 200 containers × 256 references (the red team's pod): refused, naming the cap.
    let hostile = pod_json(&[(ENV, &references(256))], containers(200), Value::Null);
    let error = plan(&pod(&hostile), &finance(), &V2_ON, &vaults()).unwrap_err();
    assert_eq!(
        error,
        InjectionError::TooManyInjections {
            count: 51_200,
            counted: "256 references × 200 containers".into(),
        }
    );
    let message = error.to_string();
    assert!(
        message.contains("more than the 1024 allowed per pod"),
        "{message}"
    );
    assert!(message.contains(CONTAINERS_ANNOTATION), "{message}");
}

#[test]
fn legacy_placeholders_count_against_the_same_cap() {
    let many = "${secrets.k}".repeat(MAX_INJECTIONS_PER_POD + 1);
    let original = pod_json(
        &[],
        json!([{"name": "main", "env": [{"name": "URL", "value": many}]}]),
        Value::Null,
    );
    let error = plan(&pod(&original), &finance(), &V2_ON, &vaults()).unwrap_err();
    let InjectionError::TooManyInjections { count, counted } = &error else {
        panic!("expected TooManyInjections, got {error:?}");
    };
    assert_eq!(*count, MAX_INJECTIONS_PER_POD + 1);
    assert!(counted.contains("\"URL\""), "{counted}");

    // References and placeholders add up.
    let few = "${secrets.k}".repeat(5);
    let mixed = pod_json(
        &[(ENV, &references(4))],
        json!([{"name": "main", "env": [{"name": "URL", "value": few}]}]),
        Value::Null,
    );
    let planned = plan(&pod(&mixed), &finance(), &V2_ON, &vaults()).unwrap();
    assert_eq!(planned.injected.len(), 9);
}

#[test]
fn a_patch_past_the_byte_cap_is_refused_while_rendering() {
    let value = "v".repeat(64 * 1024);
    let stores = values(&[(domain("finance", "k"), &value), (global("k"), &value)]);
    // 2 references × 4 containers × 64 KiB = 512 KiB: rendered.
    let small = pod_json(&[(ENV, &references(2))], containers(4), Value::Null);
    let planned = plan(&pod(&small), &finance(), &V2_ON, &vaults()).unwrap();
    let rendered = render_with(&planned, &stores, ValueMode::Live).unwrap();
    let size = rendered.patch.len();
    assert!(size > 512 * 1024 && size <= MAX_PATCH_BYTES, "{size}");

    // 2 references × 10 containers × 64 KiB = 1.25 MiB: refused, in a dry run too.
    let large = pod_json(&[(ENV, &references(2))], containers(10), Value::Null);
    let planned = plan(&pod(&large), &finance(), &V2_ON, &vaults()).unwrap();
    let error = render_with(&planned, &stores, ValueMode::Live).unwrap_err();
    assert_eq!(error, InjectionError::PatchTooLarge);
    assert!(error.to_string().contains("1048576 bytes"), "{error}");

    // One env value with many placeholders is measured as one operation.
    let many = "${secrets.k}".repeat(20);
    let legacy = pod_json(
        &[],
        json!([{"name": "main", "env": [{"name": "URL", "value": many}]}]),
        Value::Null,
    );
    let planned = plan(&pod(&legacy), &finance(), &V2_ON, &vaults()).unwrap();
    let error = render_with(&planned, &stores, ValueMode::Live).unwrap_err();
    assert_eq!(error, InjectionError::PatchTooLarge);
}

#[test]
fn a_value_is_escaped_once_however_many_containers_get_it() {
    let asked = std::cell::Cell::new(0);
    let original = pod_json(&[(ENV, &references(1))], containers(50), Value::Null);
    let planned = plan(&pod(&original), &finance(), &V2_ON, &vaults()).unwrap();
    let rendered = render(
        &planned,
        &|_| {
            asked.set(asked.get() + 1);
            Some(SecretString::from("p$w"))
        },
        ValueMode::Live,
    )
    .unwrap();
    assert_eq!(asked.get(), 1);
    let patched = apply(&original, &rendered.patch);
    for container in patched["spec"]["containers"].as_array().unwrap() {
        assert_eq!(container["env"][0]["value"], "p$$w");
    }
}

#[test]
fn long_reference_lists_are_summarized_in_the_audit_annotation() {
    let original = pod_json(&[(ENV, &references(1))], containers(100), Value::Null);
    let stores = values(&[(domain("finance", "k"), "v")]);
    let planned = plan(&pod(&original), &finance(), &V2_ON, &vaults()).unwrap();
    let rendered = render_with(&planned, &stores, ValueMode::Live).unwrap();
    let listed: Vec<Value> =
        serde_json::from_str(&rendered.audit_annotations[AUDIT_ANNOTATION_KEY]).unwrap();
    assert_eq!(listed.len(), MAX_LISTED_REFERENCES + 1);
    assert_eq!(listed[0]["target"], "container \"c0\" env \"V0\"");
    assert_eq!(listed[MAX_LISTED_REFERENCES], json!({"omitted": 100 - 32}));
}

#[test]
fn vault_configurations_are_granted_as_authorized() {
    let annotation = json!([{"key": "A", "secretObject": {"key": "db/pw", "source": {"type": "VAULT", "id": "vault-finance"}}}]).to_string();
    let original = pod_json(&[(ENV, &annotation)], containers(1), Value::Null);
    let planned = plan(&pod(&original), &finance(), &V2_ON, &vaults()).unwrap();
    assert_eq!(
        planned.vault_grants,
        BTreeMap::from([(
            "vault-finance".to_owned(),
            VaultGrant {
                domain: "finance".into(),
                uid: "vault-finance".into(),
            }
        )])
    );
}

#[rstest]
#[case::whole_reference("$(${secrets.k})")]
#[case::unclosed_reference("x $(${secrets.k}")]
fn a_placeholder_inside_a_kubelet_reference_is_refused_naming_the_variable(#[case] value: &str) {
    let original = pod_json(
        &[],
        json!([{"name": "main", "env": [{"name": "JDBC_URL", "value": value}]}]),
        Value::Null,
    );
    let error = plan(&pod(&original), &finance(), &V2_ON, &vaults()).unwrap_err();
    assert!(
        matches!(
            error,
            InjectionError::Placeholder {
                source: PlaceholderError::InsideReference { .. },
                ..
            }
        ),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(message.contains("\"JDBC_URL\""), "{message}");
    assert!(message.contains("\"main\""), "{message}");
}
