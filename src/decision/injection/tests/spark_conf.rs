//! The spark-conf-secrets mechanism: tokens in `SPARK_SUBMIT_OPTS`, executors, and what the
//! launcher cannot carry.

use super::*;

const SPARK: &str = SPARK_CONF_SECRETS_ANNOTATION;
const DRIVER: &str = "spark-kubernetes-driver";
/// How [`spark_values`] are written: one single-quoted token each, `'` as `'\''`, every `$`
/// doubled for the kubelet, joined by single spaces.
const WRITTEN_TOKENS: &str =
    r"'-Dspark.hadoop.fs.s3a.secret.key=it'\''s $$(HOME) \' '-Dspark.iomete.tag=t'";
/// The same tokens as the container (and so Spark's launcher) sees them.
const SEEN_TOKENS: &str =
    r"'-Dspark.hadoop.fs.s3a.secret.key=it'\''s $(HOME) \' '-Dspark.iomete.tag=t'";

fn spark_conf() -> String {
    env_secrets(&[
        ("spark.hadoop.fs.s3a.secret.key", "finance", "s3"),
        ("spark.iomete.tag", "global", "tag"),
    ])
}

fn spark_values() -> [(SecretRef, &'static str); 2] {
    [
        (domain("finance", "s3"), "it's $(HOME) \\"),
        (global("tag"), "t"),
    ]
}

/// A pod labelled with Spark's `role` whose one container has `env` (omitted when `None`).
fn spark_pod(role: &str, annotations: &[(&str, &str)], env: Option<Value>) -> Value {
    let mut container = json!({"name": DRIVER});
    if let Some(env) = env {
        container["env"] = env;
    }
    let mut pod = pod_json(annotations, json!([container]), Value::Null);
    pod["metadata"]["labels"] = json!({"spark-role": role});
    pod
}

fn opts(value: &str) -> Value {
    json!({"name": SPARK_SUBMIT_OPTS, "value": value})
}

fn spark_denial(source: SparkConfError) -> InjectionError {
    InjectionError::SparkConf {
        container: DRIVER.into(),
        source,
    }
}

#[rstest]
#[case::env_absent(None, json!([opts(WRITTEN_TOKENS)]))]
#[case::env_empty(Some(json!([])), json!([opts(WRITTEN_TOKENS)]))]
#[case::appended(
    Some(json!([{"name": "SPARK_USER", "value": "spark"}, {"name": "SPARK_DRIVER_BIND_ADDRESS", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}])),
    json!([{"name": "SPARK_USER", "value": "spark"}, {"name": "SPARK_DRIVER_BIND_ADDRESS", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}, opts(WRITTEN_TOKENS)])
)]
#[case::existing_literal_kept_not_escaped_again(
    Some(json!([{"name": "A", "value": "1"}, opts("-Xss4m -Dprice=$$5 '-Dx=a b'"), {"name": "B", "value": "2"}])),
    json!([{"name": "A", "value": "1"}, opts(&format!("-Xss4m -Dprice=$$5 '-Dx=a b' {WRITTEN_TOKENS}")), {"name": "B", "value": "2"}])
)]
#[case::empty_literal(Some(json!([opts("")])), json!([opts(&format!(" {WRITTEN_TOKENS}"))]))]
#[case::last_of_duplicates_extended(
    Some(json!([opts("-Dfirst=1"), opts("-Dlast=2")])),
    json!([opts("-Dfirst=1"), opts(&format!("-Dlast=2 {WRITTEN_TOKENS}"))])
)]
fn spark_conf_lands_in_spark_submit_opts(
    #[case] existing: Option<Value>,
    #[case] expected_env: Value,
) {
    let annotation = spark_conf();
    let original = spark_pod("driver", &[(SPARK, &annotation)], existing);
    let (plan, rendered, patched) = inject(&original, &finance(), &spark_values());

    let mut expected = original.clone();
    expected["spec"]["containers"][0]["env"] = expected_env;
    expected["metadata"]["annotations"][INJECTED_ANNOTATION] = json!(digest_of(&original));
    assert_eq!(patched, expected);
    let env = patched["spec"]["containers"][0]["env"].as_array().unwrap();
    let written = &env
        .iter()
        .rfind(|var| var["name"] == SPARK_SUBMIT_OPTS)
        .unwrap()["value"];
    let seen = seen_by_container(written);
    assert!(
        seen == SEEN_TOKENS || seen.ends_with(&format!(" {SEEN_TOKENS}")),
        "{seen}"
    );
    assert_eq!(rendered.warnings, Vec::<String>::new());
    assert_eq!(
        plan.injected
            .iter()
            .map(|injected| injected.target.as_str())
            .collect::<Vec<_>>(),
        vec![
            "container \"spark-kubernetes-driver\" spark \"spark.hadoop.fs.s3a.secret.key\"",
            "container \"spark-kubernetes-driver\" spark \"spark.iomete.tag\"",
        ]
    );
    assert_eq!(
        plan.needed_secrets(),
        vec![domain("finance", "s3"), global("tag")]
    );
}

#[test]
fn existing_literal_is_seen_as_the_user_wrote_it_followed_by_the_tokens() {
    let annotation = spark_conf();
    let literal = "-Dprice=$$5 -Dhome=$(HOME)";
    let original = spark_pod(
        "driver",
        &[(SPARK, &annotation)],
        Some(json!([opts(literal)])),
    );
    let (_, _, patched) = inject(&original, &finance(), &spark_values());
    assert_eq!(
        seen_by_container(&patched["spec"]["containers"][0]["env"][0]["value"]),
        format!("-Dprice=$5 -Dhome=/home/spark {SEEN_TOKENS}")
    );
}

#[test]
fn env_secrets_and_spark_conf_share_a_created_env() {
    let spark = spark_conf();
    let env = env_secrets(&[("DB_PASSWORD", "finance", "db_password")]);
    let original = spark_pod("driver", &[(ENV, &env), (SPARK, &spark)], None);
    let mut pairs = spark_values().to_vec();
    pairs.push((domain("finance", "db_password"), "pw"));
    let (plan, _, patched) = inject(&original, &finance(), &pairs);
    assert_eq!(
        patched["spec"]["containers"][0]["env"],
        json!([{"name": "DB_PASSWORD", "value": "pw"}, opts(WRITTEN_TOKENS)])
    );
    assert_eq!(plan.injected.len(), 3);
}

#[test]
fn spark_conf_follows_the_containers_annotation() {
    let spark = spark_conf();
    let original = pod_json(
        &[(SPARK, &spark), (CONTAINERS_ANNOTATION, "prepare,main")],
        json!([{"name": "main", "env": [{"name": "A", "value": "1"}]}, {"name": "sidecar"}]),
        json!([{"name": "prepare"}]),
    );
    let (_, _, patched) = inject(&original, &finance(), &spark_values());
    assert_eq!(
        patched["spec"]["containers"][0]["env"],
        json!([{"name": "A", "value": "1"}, opts(WRITTEN_TOKENS)])
    );
    assert_eq!(patched["spec"]["containers"][1], json!({"name": "sidecar"}));
    assert_eq!(
        patched["spec"]["initContainers"][0]["env"],
        json!([opts(WRITTEN_TOKENS)])
    );
}

#[rstest]
#[case::value_from(
    json!([{"name": "SPARK_SUBMIT_OPTS", "valueFrom": {"configMapKeyRef": {"name": "opts", "key": "opts"}}}]),
    SparkConfError::OptionsFromValueFrom
)]
#[case::last_duplicate_is_value_from(
    json!([opts("-Dx=1"), {"name": "SPARK_SUBMIT_OPTS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]),
    SparkConfError::OptionsFromValueFrom
)]
#[case::legacy_placeholder(json!([opts("-Dpw=${secrets.pw}")]), SparkConfError::OptionsHoldAPlaceholder)]
#[case::unclosed_quote(json!([opts("-Dx='a b")]), SparkConfError::OptionsEndMidToken)]
#[case::trailing_backslash(json!([opts("-Dx=a\\")]), SparkConfError::OptionsEndMidToken)]
#[case::open_reference(json!([opts("-Dx=$(HOME")]), SparkConfError::OptionsEndInReference)]
fn unusable_existing_spark_submit_opts_are_denied_before_any_fetch(
    #[case] env: Value,
    #[case] expected: SparkConfError,
) {
    let annotation = spark_conf();
    let original = spark_pod("driver", &[(SPARK, &annotation)], Some(env));
    let error = denial(&original, &finance(), &V2_ON);
    assert_eq!(error, spark_denial(expected));
    let message = error.to_string();
    assert!(
        message.starts_with("container \"spark-kubernetes-driver\": "),
        "{message}"
    );
    assert!(message.contains("SPARK_SUBMIT_OPTS"), "{message}");
}

#[test]
fn value_from_denial_says_what_to_do() {
    let annotation = spark_conf();
    let env = json!([{"name": "SPARK_SUBMIT_OPTS", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}]);
    let original = spark_pod("driver", &[(SPARK, &annotation)], Some(env));
    assert_eq!(
        denial(&original, &finance(), &V2_ON).to_string(),
        "container \"spark-kubernetes-driver\": SPARK_SUBMIT_OPTS is set with valueFrom, which \
         the webhook cannot read or extend; set it as a literal value, or remove it, to use \
         secrets.iomete.com/spark-conf-secrets"
    );
}

#[test]
fn spark_submit_opts_cannot_also_be_an_env_secret() {
    let spark = spark_conf();
    let env = env_secrets(&[("SPARK_SUBMIT_OPTS", "finance", "opts")]);
    let original = spark_pod("driver", &[(ENV, &env), (SPARK, &spark)], None);
    assert_eq!(
        denial(&original, &finance(), &V2_ON),
        spark_denial(SparkConfError::OptionsAreAnEnvSecret)
    );
}

#[rstest]
#[case::carriage_return("line\r\n", Uncarriable::CarriageReturn, ValueMode::Live)]
#[case::nul("a\0b", Uncarriable::Nul, ValueMode::Live)]
#[case::above_u_ffff("key 🔑", Uncarriable::AboveBmp, ValueMode::Live)]
#[case::dry_run_refuses_what_a_real_request_would(
    "secret\r",
    Uncarriable::CarriageReturn,
    ValueMode::DryRun
)]
fn values_the_launcher_cannot_carry_are_refused_naming_the_property(
    #[case] value: &str,
    #[case] found: Uncarriable,
    #[case] mode: ValueMode,
) {
    let annotation = spark_conf();
    let original = spark_pod("driver", &[(SPARK, &annotation)], None);
    let plan = plan(&pod(&original), &finance(), &V2_ON, &vaults()).unwrap();
    let pairs = [(domain("finance", "s3"), value), (global("tag"), "t")];
    let error = render_with(&plan, &values(&pairs), mode).unwrap_err();
    assert_eq!(
        error,
        spark_denial(SparkConfError::Uncarriable {
            property: "spark.hadoop.fs.s3a.secret.key".into(),
            found
        })
    );
    let message = error.to_string();
    assert!(
        message.contains("\"spark.hadoop.fs.s3a.secret.key\""),
        "{message}"
    );
    assert!(!message.contains(value), "{message}");
}

/// The limit is on what the container sees: `$` written `$$` counts once.
#[rstest]
#[case::fits_exactly(None, spark::MAX_OPTIONS_BYTES - "'-Dspark.a='".len(), true)]
#[case::one_over(None, spark::MAX_OPTIONS_BYTES - "'-Dspark.a='".len() + 1, false)]
#[case::literal_counts(Some("-Xss4m"), spark::MAX_OPTIONS_BYTES - "-Xss4m '-Dspark.a='".len(), true)]
#[case::literal_one_over(Some("-Xss4m"), spark::MAX_OPTIONS_BYTES - "-Xss4m '-Dspark.a='".len() + 1, false)]
fn spark_submit_opts_longer_than_linux_allows_are_refused(
    #[case] literal: Option<&str>,
    #[case] dollars: usize,
    #[case] fits: bool,
) {
    let annotation = env_secrets(&[("spark.a", "finance", "a")]);
    let env = literal.map(|literal| json!([opts(literal)]));
    let original = spark_pod("driver", &[(SPARK, &annotation)], env);
    let plan = plan(&pod(&original), &finance(), &V2_ON, &vaults()).unwrap();
    let value = "$".repeat(dollars);
    let rendered = render_with(
        &plan,
        &values(&[(domain("finance", "a"), &value)]),
        ValueMode::Live,
    );
    match rendered {
        Ok(rendered) => {
            assert!(fits);
            let patched = apply(&original, &rendered.patch);
            let env = &patched["spec"]["containers"][0]["env"];
            let written = env[env.as_array().unwrap().len() - 1]["value"].clone();
            assert_eq!(seen_by_container(&written).len(), spark::MAX_OPTIONS_BYTES);
        }
        Err(error) => {
            assert!(!fits, "{error}");
            assert_eq!(error, spark_denial(SparkConfError::OptionsTooLong));
        }
    }
}

#[test]
fn executors_get_env_secrets_but_spark_conf_is_neither_fetched_nor_injected() {
    let spark = spark_conf();
    let env = env_secrets(&[("A", "finance", "a")]);
    let original = spark_pod(
        "executor",
        &[(ENV, &env), (SPARK, &spark)],
        Some(json!([{"name": "SPARK_USER", "value": "spark"}])),
    );
    let plan = plan(&pod(&original), &finance(), &V2_ON, &vaults()).unwrap();
    assert_eq!(plan.needed_secrets(), vec![domain("finance", "a")]);
    assert!(plan.injected.iter().all(|i| !i.target.contains(" spark ")));
    // Only the env-secret's value is given: fetching a Spark one would fail to render.
    let rendered = render_with(
        &plan,
        &values(&[(domain("finance", "a"), "va")]),
        ValueMode::Live,
    )
    .unwrap();
    let patched = apply(&original, &rendered.patch);
    assert_eq!(
        patched["spec"]["containers"][0]["env"],
        json!([{"name": "SPARK_USER", "value": "spark"}, {"name": "A", "value": "va"}])
    );
    assert_eq!(
        patched["metadata"]["annotations"][INJECTED_ANNOTATION],
        json!(digest_of(&original))
    );
}

#[test]
fn executors_with_only_spark_conf_are_just_marked_injected() {
    let spark = spark_conf();
    let original = spark_pod("executor", &[(SPARK, &spark)], None);
    let plan = plan(&pod(&original), &finance(), &V2_ON, &vaults()).unwrap();
    assert!(plan.changes.is_empty(), "{:?}", plan.changes);
    assert!(plan.needed_secrets().is_empty());
    let rendered = render_with(&plan, &HashMap::new(), ValueMode::Live).unwrap();
    let patched = apply(&original, &rendered.patch);
    assert_eq!(patched["spec"], original["spec"]);
    assert!(rendered.audit_annotations.is_empty());
}

#[test]
fn executor_spark_conf_is_still_authorized() {
    let spark = env_secrets(&[("spark.a", "finance", "a")]);
    let original = spark_pod("executor", &[(SPARK, &spark)], None);
    let error = denial(&original, &ns("mkt", Some("marketing"), false), &V2_ON);
    let InjectionError::OutOfScope(scope_error) = &error else {
        panic!("expected OutOfScope, got {error:?}");
    };
    assert_eq!(
        scope_error.reference,
        "secrets.iomete.com/spark-conf-secrets entry \"spark.a\" (KUBERNETES/finance/a)"
    );
}

#[test]
fn dry_run_puts_the_marker_in_place_of_each_value_inside_the_tokens() {
    let annotation = spark_conf();
    let original = spark_pod(
        "driver",
        &[(SPARK, &annotation)],
        Some(json!([opts("-Xss4m")])),
    );
    let plan = plan(&pod(&original), &finance(), &V2_ON, &vaults()).unwrap();
    let rendered = render_with(&plan, &values(&spark_values()), ValueMode::DryRun).unwrap();
    let patched = apply(&original, &rendered.patch);
    assert_eq!(
        patched["spec"]["containers"][0]["env"],
        json!([opts(&format!(
            "-Xss4m '-Dspark.hadoop.fs.s3a.secret.key={DRY_RUN_MARKER}' '-Dspark.iomete.tag={DRY_RUN_MARKER}'"
        ))])
    );
    let everything = format!("{patched} {:?}", rendered.audit_annotations);
    assert!(!everything.contains("it's"), "{everything}");
}

#[test]
fn audit_annotations_list_spark_properties_and_never_values() {
    let annotation = spark_conf();
    let original = spark_pod("driver", &[(SPARK, &annotation)], None);
    let (_, rendered, _) = inject(&original, &finance(), &spark_values());
    let listed: Value =
        serde_json::from_str(&rendered.audit_annotations[AUDIT_ANNOTATION_KEY]).unwrap();
    assert_eq!(
        listed,
        json!([
            {"target": "container \"spark-kubernetes-driver\" spark \"spark.hadoop.fs.s3a.secret.key\"", "source": "KUBERNETES", "id": "finance", "key": "s3"},
            {"target": "container \"spark-kubernetes-driver\" spark \"spark.iomete.tag\"", "source": "KUBERNETES", "id": "global", "key": "tag"},
        ])
    );
    assert!(!rendered.audit_annotations[AUDIT_ANNOTATION_KEY].contains("it's"));
}

#[rstest]
#[case::set(json!({"name": "SPARK_PRINT_LAUNCH_COMMAND", "value": "1"}), true)]
#[case::from_elsewhere(json!({"name": "SPARK_PRINT_LAUNCH_COMMAND", "valueFrom": {"configMapKeyRef": {"name": "c", "key": "k"}}}), true)]
#[case::empty_is_off(json!({"name": "SPARK_PRINT_LAUNCH_COMMAND", "value": ""}), false)]
fn printing_the_launch_command_is_warned_about(#[case] var: Value, #[case] warned: bool) {
    let annotation = spark_conf();
    let original = spark_pod("driver", &[(SPARK, &annotation)], Some(json!([var])));
    let (_, rendered, _) = inject(&original, &finance(), &spark_values());
    let expected = warned.then(|| {
        "container \"spark-kubernetes-driver\": SPARK_PRINT_LAUNCH_COMMAND is set, so \
         spark-submit prints its command line, with the values of \
         secrets.iomete.com/spark-conf-secrets, to the pod log"
            .to_owned()
    });
    assert_eq!(rendered.warnings, expected.into_iter().collect::<Vec<_>>());
}

#[test]
fn reinvocation_after_spark_conf_delivery_is_a_noop() {
    let annotation = spark_conf();
    for env in [None, Some(json!([opts("-Xss4m")]))] {
        let original = spark_pod("driver", &[(SPARK, &annotation)], env);
        let (_, _, patched) = inject(&original, &finance(), &spark_values());
        let again = plan(&pod(&patched), &finance(), &V2_ON, &vaults()).unwrap();
        assert!(again.is_noop(), "{:?}", again.changes);
    }
}
