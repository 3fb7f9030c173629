//! Denials: scope, Secrets V2 off, Vault configurations, unknown containers, malformed input.

use super::*;

#[rstest]
#[case::domain_store_from_another_domain(
    &[(ENV, env_secrets(&[("DB_PASSWORD", "finance", "db_password")]))],
    ns("mkt", Some("marketing"), false),
    "secrets.iomete.com/env-secrets entry \"DB_PASSWORD\" (KUBERNETES/finance/db_password)",
    RequiredScope::Domain("finance".into()),
    "namespace \"mkt\" (domain \"marketing\")"
)]
#[case::domain_store_from_admin(
    &[(ENV, env_secrets(&[("A", "finance", "a")]))],
    ns("ops", None, true),
    "secrets.iomete.com/env-secrets entry \"A\" (KUBERNETES/finance/a)",
    RequiredScope::Domain("finance".into()),
    "namespace \"ops\" (admin)"
)]
#[case::admin_store_from_a_domain(
    &[(ENV, env_secrets(&[("OK", "finance", "a"), ("ROOT", "admin", "root")]))],
    finance(),
    "secrets.iomete.com/env-secrets entry \"ROOT\" (KUBERNETES/admin/root)",
    RequiredScope::Admin,
    "namespace \"finance-jobs\" (domain \"finance\")"
)]
#[case::global_store_from_nowhere(
    &[(ENV, env_secrets(&[("G", "global", "g")]))],
    ns("default", None, false),
    "secrets.iomete.com/env-secrets entry \"G\" (KUBERNETES/global/g)",
    RequiredScope::AnyDomainOrAdmin,
    "namespace \"default\" (no domain label and not an admin namespace)"
)]
#[case::spark_conf_is_authorized_first(
    &[(SPARK_CONF_SECRETS_ANNOTATION, env_secrets(&[("spark.x", "finance", "x")]))],
    ns("mkt", Some("marketing"), false),
    "secrets.iomete.com/spark-conf-secrets entry \"spark.x\" (KUBERNETES/finance/x)",
    RequiredScope::Domain("finance".into()),
    "namespace \"mkt\" (domain \"marketing\")"
)]
fn out_of_scope_references_are_denied(
    #[case] annotations: &[(&str, String)],
    #[case] namespace: NamespaceScope,
    #[case] reference: &str,
    #[case] required: RequiredScope,
    #[case] namespace_described: &str,
) {
    let annotations: Vec<(&str, &str)> = annotations
        .iter()
        .map(|(name, value)| (*name, value.as_str()))
        .collect();
    let original = pod_json(&annotations, json!([{"name": "main"}]), Value::Null);
    let error = denial(&original, &namespace, &V2_ON);
    let InjectionError::OutOfScope(scope_error) = &error else {
        panic!("expected OutOfScope, got {error:?}");
    };
    assert_eq!(scope_error.reference, reference);
    assert_eq!(scope_error.required, required);
    assert_eq!(scope_error.namespace, namespace_described);
    let message = error.to_string();
    for part in [reference, &required.to_string(), namespace_described] {
        assert!(message.contains(part), "{part:?} not in {message}");
    }
}

#[rstest]
#[case::admin_store_from_admin("admin", ns("ops", None, true))]
#[case::global_from_admin("global", ns("ops", None, true))]
#[case::domain_from_admin_of_that_domain("finance", ns("ops", Some("finance"), true))]
#[case::global_from_domain("global", ns("mkt", Some("marketing"), false))]
fn in_scope_references_are_planned(#[case] id: &str, #[case] namespace: NamespaceScope) {
    let annotation = env_secrets(&[("A", id, "a")]);
    let original = pod_json(
        &[(ENV, &annotation)],
        json!([{"name": "main"}]),
        Value::Null,
    );
    let plan = plan(&pod(&original), &namespace, &V2_ON, &vaults()).unwrap();
    assert_eq!(plan.injected.len(), 1);
    assert_eq!(plan.injected[0].secret.source.id(), id);
}

#[test]
fn legacy_placeholder_from_a_namespace_without_scope_is_denied() {
    let original = pod_json(
        &[],
        json!([{"name": "main", "env": [{"name": "URL", "value": "x${secrets.pw}"}]}]),
        Value::Null,
    );
    let error = denial(&original, &ns("default", None, false), &V2_ON);
    assert_eq!(
        error.to_string(),
        "legacy placeholder ${secrets.pw} in container \"main\" env \"URL\" is readable only from \
         a domain namespace or an admin namespace, and this pod is in namespace \"default\" \
         (no domain label and not an admin namespace)"
    );
    assert!(matches!(error, InjectionError::OutOfScope(_)));
    // ... but an admin namespace may use it
    assert!(plan(&pod(&original), &ns("ops", None, true), &V2_ON, &vaults()).is_ok());
}

#[rstest]
#[case::env_secrets(ENV, env_secrets(&[("A", "finance", "a")]))]
#[case::spark_conf(SPARK_CONF_SECRETS_ANNOTATION, env_secrets(&[("spark.a", "finance", "a")]))]
#[case::containers_only(CONTAINERS_ANNOTATION, "main".to_owned())]
fn v2_annotations_are_denied_when_v2_is_disabled(#[case] annotation: &str, #[case] value: String) {
    let original = pod_json(
        &[(annotation, &value)],
        json!([{"name": "main", "env": [{"name": "L", "value": "${secrets.l}"}]}]),
        Value::Null,
    );
    assert_eq!(
        denial(&original, &finance(), &V2_OFF),
        InjectionError::SecretsV2Disabled
    );
}

#[test]
fn legacy_still_works_when_v2_is_disabled() {
    let original = pod_json(
        &[("other.io/x", "y"), (INJECTED_ANNOTATION, "sha256:old")],
        json!([{"name": "main", "env": [{"name": "L", "value": "${secrets.l}"}]}]),
        Value::Null,
    );
    let plan = plan(&pod(&original), &finance(), &V2_OFF, &vaults()).unwrap();
    assert_eq!(plan.mark_injected, None);
    let rendered = render_with(&plan, &values(&[(global("l"), "vl")]), ValueMode::Live).unwrap();
    let patched = apply(&original, &rendered.patch);
    assert_eq!(
        patched["spec"]["containers"][0]["env"],
        json!([{"name": "L", "value": "vl"}])
    );
    assert_eq!(patched["metadata"], original["metadata"]);
}

/// A Vault reference is authorized against its configuration's domain, like a domain store;
/// an unknown configuration, or configurations not loaded yet, deny without a fetch.
#[rstest]
#[case::own_domain("vault-finance", Some("finance"), None)]
#[case::other_domain(
    "vault-finance",
    Some("marketing"),
    Some("is readable only from a namespace of domain \"finance\"")
)]
#[case::admin_namespace_is_not_the_domain(
    "vault-finance",
    None,
    Some("is readable only from a namespace of domain \"finance\"")
)]
#[case::unknown_config(
    "vault-ghost",
    Some("finance"),
    Some("names Vault configuration \"vault-ghost\", which does not exist")
)]
fn vault_sources_are_scoped_by_their_configuration_domain(
    #[case] config: &str,
    #[case] domain: Option<&str>,
    #[case] denied_with: Option<&str>,
) {
    let annotation = json!([
        {"key": "TOKEN", "secretObject": {"key": "team/db#token", "source": {"type": "VAULT", "id": config}}},
    ])
    .to_string();
    let original = pod_json(
        &[(ENV, &annotation)],
        json!([{"name": "main"}]),
        Value::Null,
    );
    let namespace = ns("ns", domain, domain.is_none());
    match (
        plan(&pod(&original), &namespace, &V2_ON, &vaults()),
        denied_with,
    ) {
        (Ok(plan), None) => assert_eq!(
            plan.needed_secrets(),
            vec![SecretRef {
                source: Source::Vault(config.into()),
                key: "team/db#token".into()
            }]
        ),
        (Err(error), Some(fragment)) => {
            assert!(error.to_string().contains(fragment), "{error}")
        }
        (outcome, expected) => panic!("{outcome:?}, expected denial {expected:?}"),
    }
}

#[test]
fn vault_references_wait_for_the_configurations_to_load() {
    struct NotLoaded;
    impl VaultOwners for NotLoaded {
        fn owner(&self, _: &str) -> VaultOwner {
            VaultOwner::NotFresh
        }
    }
    let annotation = json!([
        {"key": "TOKEN", "secretObject": {"key": "token", "source": {"type": "VAULT", "id": "vault-finance"}}},
    ])
    .to_string();
    let original = pod_json(
        &[(ENV, &annotation)],
        json!([{"name": "main"}]),
        Value::Null,
    );
    assert_eq!(
        plan(&pod(&original), &finance(), &V2_ON, &NotLoaded).unwrap_err(),
        InjectionError::VaultConfigsNotFresh {
            reference: "secrets.iomete.com/env-secrets entry \"TOKEN\" (VAULT/vault-finance/token)"
                .into()
        }
    );
}

#[test]
fn invalid_spark_properties_are_reference_errors() {
    let env_names = env_secrets(&[("A", "finance", "a")]);
    let invalid = pod_json(
        &[(SPARK_CONF_SECRETS_ANNOTATION, &env_names)],
        json!([{"name": "main"}]),
        Value::Null,
    );
    assert!(matches!(
        denial(&invalid, &finance(), &V2_ON),
        InjectionError::Reference(ReferenceError::InvalidEntry { .. })
    ));
}

#[test]
fn unknown_container_lists_the_available_ones() {
    let annotation = env_secrets(&[("A", "finance", "a")]);
    let original = pod_json(
        &[(ENV, &annotation), (CONTAINERS_ANNOTATION, "main,worker")],
        json!([{"name": "main"}, {"name": "sidecar"}]),
        json!([{"name": "prepare"}]),
    );
    let error = denial(&original, &finance(), &V2_ON);
    assert_eq!(
        error,
        InjectionError::UnknownContainer {
            name: "worker".into(),
            available: "main, sidecar, prepare".into()
        }
    );
    assert!(error.to_string().contains(CONTAINERS_ANNOTATION), "{error}");
}

#[rstest]
#[case::invalid_key("${secrets.a b}", PlaceholderError::InvalidKey { offset: 0, problem: String::new() })]
#[case::unclosed("ok ${secrets.a", PlaceholderError::Unclosed { offset: 3 })]
fn malformed_placeholders_name_container_and_env(
    #[case] value: &str,
    #[case] expected: PlaceholderError,
) {
    let original = pod_json(
        &[],
        json!([{"name": "main", "env": [{"name": "FINE", "value": "${secrets.fine}"}]}]),
        json!([{"name": "prepare", "env": [{"name": "X", "value": value}]}]),
    );
    let error = denial(&original, &finance(), &V2_ON);
    let InjectionError::Placeholder {
        container,
        env,
        source,
    } = &error
    else {
        panic!("expected Placeholder, got {error:?}");
    };
    assert_eq!((container.as_str(), env.as_str()), ("prepare", "X"));
    match (source, &expected) {
        (
            PlaceholderError::InvalidKey { offset, .. },
            PlaceholderError::InvalidKey { offset: want, .. },
        ) => assert_eq!(offset, want),
        _ => assert_eq!(source, &expected),
    }
    assert!(
        error
            .to_string()
            .starts_with("container \"prepare\" env \"X\": placeholder at byte"),
        "{error}"
    );
}

#[test]
fn invalid_annotations_are_reference_errors() {
    let original = pod_json(
        &[("secrets.iomete.com/env-secret", "[]")],
        json!([{"name": "main"}]),
        Value::Null,
    );
    assert_eq!(
        denial(&original, &finance(), &V2_OFF),
        InjectionError::Reference(ReferenceError::UnknownAnnotation(
            "secrets.iomete.com/env-secret".into()
        ))
    );
}
