//! Table tests of the reference model and the annotation parser.

use std::collections::BTreeMap;

use super::*;
use rstest::rstest;
use serde_json::{Value, json};

const ENV: &str = ENV_SECRETS_ANNOTATION;
const SPARK: &str = SPARK_CONF_SECRETS_ANNOTATION;
const CONTAINERS: &str = CONTAINERS_ANNOTATION;
/// A valid entry; `@` in a table value stands for it.
const VALID: &str =
    r#"{"key":"OK","secretObject":{"key":"ok","source":{"type":"KUBERNETES","id":"finance"}}}"#;

fn annotations(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .collect()
}

fn entry(name: &str, source_type: &str, id: &str, key: &str) -> Value {
    json!({"key": name, "secretObject": {"key": key, "source": {"type": source_type, "id": id}}})
}

/// A reference list of KUBERNETES entries `(name, id, key)`.
fn list(entries: &[(&str, &str, &str)]) -> String {
    let entries = entries
        .iter()
        .map(|(name, id, key)| entry(name, "KUBERNETES", id, key))
        .collect();
    Value::Array(entries).to_string()
}

fn domain(id: &str) -> Source {
    Source::Kubernetes(KubernetesStore::Domain(id.to_owned()))
}
fn global() -> Source {
    Source::Kubernetes(KubernetesStore::Global)
}
fn admin() -> Source {
    Source::Kubernetes(KubernetesStore::Admin)
}
fn vault(id: &str) -> Source {
    Source::Vault(id.to_owned())
}
fn secret(source: Source, key: &str) -> SecretRef {
    SecretRef {
        source,
        key: key.to_owned(),
    }
}
fn env(name: &str, source: Source, key: &str) -> EnvSecret {
    EnvSecret {
        env_name: name.to_owned(),
        secret: secret(source, key),
    }
}
fn spark(property: &str, source: Source, key: &str) -> SparkConfSecret {
    SparkConfSecret {
        property: property.to_owned(),
        secret: secret(source, key),
    }
}
fn refs(env: Vec<EnvSecret>) -> References {
    References {
        env,
        ..References::default()
    }
}

#[rstest]
#[case::no_annotations(annotations(&[]), References::default())]
#[case::outside_the_prefix_is_ignored(
    annotations(&[
        ("iomete.com/env-secrets", "not json"),
        ("secrets.iomete.com.evil/env-secrets", "not json"),
        ("x.secrets.iomete.com/env-secrets", "not json"),
        ("secrets.iomete.com", "not json"),
        ("kubectl.kubernetes.io/default-container", "main"),
    ]),
    References::default()
)]
#[case::domain_store(
    annotations(&[(ENV, r#"[{"key": "DB_PASSWORD", "secretObject": {"key": "db_password", "source": {"type": "KUBERNETES", "id": "finance"}}}]"#)]),
    refs(vec![env("DB_PASSWORD", domain("finance"), "db_password")])
)]
#[case::reserved_ids_and_order_kept(
    annotations(&[(ENV, &list(&[("Z", "global", "z"), ("A", "admin", "a"), ("M", "marketing-2", "m")]))]),
    refs(vec![env("Z", global(), "z"), env("A", admin(), "a"), env("M", domain("marketing-2"), "m")])
)]
#[case::vault_source(
    annotations(&[(ENV, &Value::Array(vec![entry("TOKEN", "VAULT", "vault-1", "token")]).to_string())]),
    refs(vec![env("TOKEN", vault("vault-1"), "token")])
)]
#[case::same_secret_for_two_vars(
    annotations(&[(ENV, &list(&[("A", "finance", "k"), ("B", "finance", "k")]))]),
    refs(vec![env("A", domain("finance"), "k"), env("B", domain("finance"), "k")])
)]
#[case::api_server_env_name_rule(
    annotations(&[(ENV, &list(&[("_a.b-C9", "finance", "k"), ("lower", "finance", "k"), ("x", "finance", "K.e_y-1")]))]),
    refs(vec![env("_a.b-C9", domain("finance"), "k"), env("lower", domain("finance"), "k"), env("x", domain("finance"), "K.e_y-1")])
)]
#[case::longest_names(
    annotations(&[(ENV, &list(&[(&"E".repeat(256), &"d".repeat(63), &"k".repeat(253))]))]),
    refs(vec![env(&"E".repeat(256), domain(&"d".repeat(63)), &"k".repeat(253))])
)]
#[case::whitespace_in_json(
    annotations(&[(ENV, "\n [ {\"secretObject\" : {\"source\": {\"id\": \"finance\", \"type\": \"KUBERNETES\"}, \"key\": \"k\"},\n \"key\": \"A\"} ] \n")]),
    refs(vec![env("A", domain("finance"), "k")])
)]
#[case::empty_list(annotations(&[(ENV, "[]")]), References::default())]
#[case::spark_conf(
    annotations(&[(SPARK, &list(&[("spark.hadoop.fs.s3a.secret-key", "finance", "s3_secret"), ("spark.A_b", "global", "x")]))]),
    References {
        spark_conf: vec![spark("spark.hadoop.fs.s3a.secret-key", domain("finance"), "s3_secret"), spark("spark.A_b", global(), "x")],
        ..References::default()
    }
)]
#[case::spark_and_env_may_share_a_name(
    annotations(&[(ENV, &list(&[("spark.x", "finance", "k")])), (SPARK, &list(&[("spark.x", "finance", "k")]))]),
    References {
        env: vec![env("spark.x", domain("finance"), "k")],
        spark_conf: vec![spark("spark.x", domain("finance"), "k")],
        ..References::default()
    }
)]
#[case::containers_trimmed(
    annotations(&[(CONTAINERS, " main ,sidecar,init-1")]),
    References { containers: Some(vec!["main".into(), "sidecar".into(), "init-1".into()]), ..References::default() }
)]
#[case::injected_digest_read_back(
    annotations(&[(INJECTED_ANNOTATION, "sha256:abc")]),
    References { injected_digest: Some("sha256:abc".into()), ..References::default() }
)]
#[case::all_together(
    annotations(&[
        (ENV, &list(&[("A", "finance", "a")])),
        (CONTAINERS, "main"),
        (INJECTED_ANNOTATION, "sha256:x"),
        ("app.kubernetes.io/name", "spark"),
    ]),
    References {
        env: vec![env("A", domain("finance"), "a")],
        containers: Some(vec!["main".into()]),
        injected_digest: Some("sha256:x".into()),
        ..References::default()
    }
)]
fn accepted(#[case] annotations: BTreeMap<String, String>, #[case] expected: References) {
    assert_eq!(parse_annotations(&annotations), Ok(expected));
}

/// Each value is parsed as the only annotation `annotation`; the error must name that
/// annotation and contain every fragment. `@` stands for a valid entry.
#[rstest]
// not a JSON array
#[case::not_json(ENV, "DB_PASSWORD", &["expected value"])]
#[case::empty_value(ENV, "", &["EOF"])]
#[case::object(ENV, r#"{"key": "A"}"#, &["expected a sequence"])]
#[case::string(ENV, r#""[]""#, &["expected a sequence"])]
#[case::null(ENV, "null", &["expected a sequence"])]
#[case::unterminated(ENV, "[@", &["EOF"])]
#[case::trailing_data(ENV, "[@] []", &["trailing characters"])]
// wrong JSON types
#[case::entry_is_a_string(ENV, r#"[@, "A"]"#, &["entry 1", "invalid type: string"])]
#[case::env_name_is_a_number(ENV, r#"[{"key": 1, "secretObject": {"key": "k", "source": {"type": "KUBERNETES", "id": "finance"}}}]"#, &["entry 0", "invalid type: integer"])]
#[case::secret_key_is_null(ENV, r#"[{"key": "A", "secretObject": {"key": null, "source": {"type": "KUBERNETES", "id": "finance"}}}]"#, &["entry 0", "invalid type: null"])]
#[case::id_is_a_list(ENV, r#"[@, @, {"key": "A", "secretObject": {"key": "k", "source": {"type": "KUBERNETES", "id": ["finance"]}}}]"#, &["entry 2", "invalid type: sequence"])]
#[case::secret_object_is_a_string(ENV, r#"[{"key": "A", "secretObject": "finance/k"}]"#, &["entry 0", "invalid type: string"])]
#[case::unknown_source_type(ENV, r#"[{"key": "A", "secretObject": {"key": "k", "source": {"type": "AWS", "id": "finance"}}}]"#, &["entry 0", "unknown variant `AWS`"])]
#[case::entry_as_a_list(ENV, r#"[["A", ["k", ["KUBERNETES", "finance"]]]]"#, &["entry 0", "invalid type: sequence, expected a JSON object"])]
#[case::secret_object_as_a_list(ENV, r#"[{"key": "A", "secretObject": ["k", {"type": "KUBERNETES", "id": "finance"}]}]"#, &["entry 0", "invalid type: sequence"])]
#[case::source_as_a_list(ENV, r#"[{"key": "A", "secretObject": {"key": "k", "source": ["KUBERNETES", "finance"]}}]"#, &["entry 0", "invalid type: sequence"])]
#[case::type_as_a_map(ENV, r#"[{"key": "A", "secretObject": {"key": "k", "source": {"type": {"KUBERNETES": null}, "id": "finance"}}}]"#, &["entry 0", "invalid type: map"])]
#[case::source_type_is_case_sensitive(ENV, r#"[{"key": "A", "secretObject": {"key": "k", "source": {"type": "kubernetes", "id": "finance"}}}]"#, &["entry 0", "unknown variant `kubernetes`"])]
// missing and unknown fields, at every level
#[case::missing_secret_object(ENV, r#"[{"key": "A"}]"#, &["entry 0", "missing field `secretObject`"])]
#[case::missing_source(ENV, r#"[{"key": "A", "secretObject": {"key": "k"}}]"#, &["entry 0", "missing field `source`"])]
#[case::missing_id(ENV, r#"[{"key": "A", "secretObject": {"key": "k", "source": {"type": "KUBERNETES"}}}]"#, &["entry 0", "missing field `id`"])]
#[case::unknown_entry_field(ENV, r#"[@, {"key": "A", "value": "x", "secretObject": {"key": "k", "source": {"type": "KUBERNETES", "id": "finance"}}}]"#, &["entry 1", "unknown field `value`"])]
#[case::unknown_secret_object_field(ENV, r#"[{"key": "A", "secretObject": {"key": "k", "namespace": "kube-system", "source": {"type": "KUBERNETES", "id": "finance"}}}]"#, &["entry 0", "unknown field `namespace`"])]
#[case::unknown_source_field(ENV, r#"[{"key": "A", "secretObject": {"key": "k", "source": {"type": "VAULT", "id": "v", "address": "http://evil"}}}]"#, &["entry 0", "unknown field `address`"])]
#[case::camel_case_is_exact(ENV, r#"[{"key": "A", "secret_object": {"key": "k", "source": {"type": "KUBERNETES", "id": "finance"}}}]"#, &["entry 0", "unknown field `secret_object`"])]
// duplicate JSON keys, at every level
#[case::duplicate_entry_key(ENV, r#"[{"key": "A", "key": "B", "secretObject": {"key": "k", "source": {"type": "KUBERNETES", "id": "finance"}}}]"#, &["entry 0", "duplicate field `key`"])]
#[case::duplicate_secret_key(ENV, r#"[{"key": "A", "secretObject": {"key": "k", "key": "other", "source": {"type": "KUBERNETES", "id": "finance"}}}]"#, &["entry 0", "duplicate field `key`"])]
#[case::duplicate_id(ENV, r#"[{"key": "A", "secretObject": {"key": "k", "source": {"type": "KUBERNETES", "id": "finance", "id": "admin"}}}]"#, &["entry 0", "duplicate field `id`"])]
// env var names (the API server's rule)
#[case::env_name_empty(ENV, &list(&[("", "finance", "k")]), &["entry 0 (\"\")", "1 to 256 characters"])]
#[case::env_name_starts_with_digit(ENV, &list(&[("OK", "finance", "k"), ("1PASSWORD", "finance", "k")]), &["entry 1 (\"1PASSWORD\")", "not a valid env var name"])]
#[case::env_name_with_space(ENV, &list(&[("DB PASSWORD", "finance", "k")]), &["entry 0 (\"DB PASSWORD\")", "not a valid env var name"])]
#[case::env_name_with_equals(ENV, &list(&[("A=B", "finance", "k")]), &["entry 0 (\"A=B\")", "not a valid env var name"])]
#[case::env_name_with_dollar(ENV, &list(&[("$(HOME)", "finance", "k")]), &["entry 0 (\"$(HOME)\")", "not a valid env var name"])]
#[case::env_name_not_ascii(ENV, &list(&[("PÄSSWORD", "finance", "k")]), &["entry 0 (\"PÄSSWORD\")", "not a valid env var name"])]
#[case::env_name_too_long(ENV, &list(&[(&"E".repeat(257), "finance", "k")]), &["entry 0", "1 to 256 characters"])]
// store and config ids (DNS labels)
#[case::id_uppercase(ENV, &list(&[("A", "Finance", "k")]), &["entry 0 (\"A\")", "secretObject.source.id \"Finance\" is not a DNS label"])]
#[case::id_empty(ENV, &list(&[("A", "", "k")]), &["entry 0 (\"A\")", "secretObject.source.id \"\" is not a DNS label"])]
#[case::id_leading_dash(ENV, &list(&[("A", "-finance", "k")]), &["entry 0 (\"A\")", "is not a DNS label"])]
#[case::id_trailing_dash(ENV, &list(&[("A", "finance-", "k")]), &["entry 0 (\"A\")", "is not a DNS label"])]
#[case::id_underscore(ENV, &list(&[("A", "fin_ance", "k")]), &["entry 0 (\"A\")", "is not a DNS label"])]
#[case::id_dotted(ENV, &list(&[("A", "kube-system.svc", "k")]), &["entry 0 (\"A\")", "is not a DNS label"])]
#[case::id_path(ENV, &list(&[("A", "../admin", "k")]), &["entry 0 (\"A\")", "is not a DNS label"])]
#[case::id_too_long(ENV, &list(&[("A", &"d".repeat(64), "k")]), &["entry 0 (\"A\")", "is not a DNS label"])]
#[case::vault_id_too(ENV, &Value::Array(vec![entry("A", "VAULT", "https://vault", "k")]).to_string(), &["entry 0 (\"A\")", "is not a DNS label"])]
// Secret keys (the API server's rule for Secret data keys)
#[case::secret_key_empty(ENV, &list(&[("A", "finance", "")]), &["entry 0 (\"A\")", "secretObject.key", "1 to 253 characters"])]
#[case::secret_key_slash(ENV, &list(&[("A", "finance", "a/b")]), &["entry 0 (\"A\")", "secretObject.key", "characters a Secret key cannot have"])]
#[case::secret_key_space(ENV, &list(&[("A", "finance", "a b")]), &["entry 0 (\"A\")", "characters a Secret key cannot have"])]
#[case::secret_key_dot(ENV, &list(&[("A", "finance", ".")]), &["entry 0 (\"A\")", "not a valid Secret key"])]
#[case::secret_key_dot_dot(ENV, &list(&[("A", "finance", "..")]), &["entry 0 (\"A\")", "not a valid Secret key"])]
#[case::secret_key_dot_dot_prefix(ENV, &list(&[("A", "finance", "..data")]), &["entry 0 (\"A\")", "not a valid Secret key"])]
#[case::secret_key_too_long(ENV, &list(&[("A", "finance", &"k".repeat(254))]), &["entry 0 (\"A\")", "1 to 253 characters"])]
// duplicates
#[case::duplicate_env_name(ENV, &list(&[("A", "finance", "a"), ("B", "finance", "b"), ("A", "global", "c")]), &["entry 2: \"A\" is already set by entry 0"])]
#[case::duplicate_spark_property(SPARK, &list(&[("spark.a", "finance", "a"), ("spark.a", "finance", "a")]), &["entry 1: \"spark.a\" is already set by entry 0"])]
// Spark property names
#[case::spark_prefix_only(SPARK, &list(&[("spark.", "finance", "k")]), &["entry 0 (\"spark.\")", "^spark\\.[A-Za-z0-9._-]+$"])]
#[case::spark_no_dot(SPARK, &list(&[("spark", "finance", "k")]), &["entry 0 (\"spark\")", "not a Spark property name"])]
#[case::spark_other_prefix(SPARK, &list(&[("spark.a", "finance", "k"), ("hadoop.x", "finance", "k")]), &["entry 1 (\"hadoop.x\")", "not a Spark property name"])]
#[case::spark_uppercase_prefix(SPARK, &list(&[("SPARK.x", "finance", "k")]), &["entry 0 (\"SPARK.x\")", "not a Spark property name"])]
#[case::spark_space(SPARK, &list(&[("spark.a b", "finance", "k")]), &["entry 0 (\"spark.a b\")", "not a Spark property name"])]
#[case::spark_too_long(SPARK, &list(&[(&format!("spark.{}", "a".repeat(251)), "finance", "k")]), &["entry 0", "at most 256 characters"])]
#[case::spark_bad_id(SPARK, &list(&[("spark.a", "Finance", "k")]), &["entry 0 (\"spark.a\")", "is not a DNS label"])]
#[case::spark_unknown_field(SPARK, r#"[{"key": "spark.a", "secretObject": {"key": "k", "source": {"type": "KUBERNETES", "id": "finance"}}, "x": 1}]"#, &["entry 0", "unknown field `x`"])]
// the containers annotation
#[case::containers_empty(CONTAINERS, "", &["\"\" is not a container name"])]
#[case::containers_empty_item(CONTAINERS, "main,,sidecar", &["\"\" is not a container name"])]
#[case::containers_trailing_comma(CONTAINERS, "main,", &["\"\" is not a container name"])]
#[case::containers_uppercase(CONTAINERS, "Main", &["\"Main\" is not a container name"])]
#[case::containers_json(CONTAINERS, r#"["main"]"#, &["is not a container name"])]
#[case::containers_twice(CONTAINERS, "main, sidecar, main", &["container \"main\" is listed twice"])]
fn rejected(#[case] annotation: &str, #[case] value: &str, #[case] fragments: &[&str]) {
    let value = value.replace('@', VALID);
    let error = parse_annotations(&annotations(&[(annotation, &value)])).unwrap_err();
    let message = error.to_string();
    assert!(
        message.contains(&format!("annotation {annotation}")),
        "{message}"
    );
    for fragment in fragments {
        assert!(message.contains(fragment), "{fragment:?} not in {message}");
    }
}

#[rstest]
#[case("secrets.iomete.com/env-secret")]
#[case("secrets.iomete.com/envSecrets")]
#[case("secrets.iomete.com/Env-Secrets")]
#[case("secrets.iomete.com/")]
#[case("secrets.iomete.com/env-secrets/x")]
#[case("secrets.iomete.com/inject")]
fn unknown_annotations_under_the_prefix_are_rejected(#[case] name: &str) {
    let error = parse_annotations(&annotations(&[(name, "[]"), (ENV, "[]")])).unwrap_err();
    assert_eq!(error, ReferenceError::UnknownAnnotation(name.to_owned()));
    assert!(error.to_string().contains(&format!("{name:?}")), "{error}");
}

#[test]
fn an_invalid_annotation_fails_the_whole_set() {
    let error = parse_annotations(&annotations(&[
        (ENV, &list(&[("A", "finance", "a")])),
        (CONTAINERS, "main,Main"),
    ]))
    .unwrap_err();
    assert!(
        matches!(error, ReferenceError::InvalidContainers(_)),
        "{error}"
    );
}

/// A reference list padded with whitespace to exactly `size` bytes.
fn padded(size: usize) -> String {
    format!("[{}]", " ".repeat(size - 2))
}

#[rstest]
#[case(ENV)]
#[case(SPARK)]
fn values_up_to_64_kib_are_read_and_larger_ones_rejected(#[case] annotation: &str) {
    assert_eq!(
        parse_annotations(&annotations(&[(annotation, &padded(MAX_ANNOTATION_BYTES))])),
        Ok(References::default())
    );
    let error = parse_annotations(&annotations(&[(
        annotation,
        &padded(MAX_ANNOTATION_BYTES + 1),
    )]))
    .unwrap_err();
    assert_eq!(
        error,
        ReferenceError::TooLarge {
            annotation: if annotation == ENV { ENV } else { SPARK },
            size: 65537,
        }
    );
    assert_eq!(
        error.to_string(),
        format!("annotation {annotation} is 65537 bytes, more than the 65536 allowed")
    );
}

#[test]
fn containers_over_64_kib_are_rejected() {
    let value = format!("main,{}", " ".repeat(MAX_ANNOTATION_BYTES));
    let error = parse_annotations(&annotations(&[(CONTAINERS, &value)])).unwrap_err();
    let message = error.to_string();
    assert!(message.contains(CONTAINERS), "{message}");
    assert!(message.contains("65541 bytes"), "{message}");
}

fn numbered(count: usize) -> String {
    let names: Vec<String> = (0..count).map(|i| format!("VAR_{i}")).collect();
    let entries: Vec<(&str, &str, &str)> = names
        .iter()
        .map(|name| (name.as_str(), "finance", "k"))
        .collect();
    list(&entries)
}

#[test]
fn up_to_256_entries_are_read_and_257_rejected() {
    let parsed = parse_annotations(&annotations(&[(ENV, &numbered(256))])).unwrap();
    assert_eq!(parsed.env.len(), 256);
    assert_eq!(parsed.env[255].env_name, "VAR_255");
    let error = parse_annotations(&annotations(&[(ENV, &numbered(257))])).unwrap_err();
    assert_eq!(
        error,
        ReferenceError::TooManyEntries {
            annotation: ENV,
            count: 257
        }
    );
    assert!(error.to_string().contains(ENV), "{error}");
}

#[test]
fn up_to_256_containers_are_read_and_257_rejected() {
    let names = |count: usize| {
        (0..count)
            .map(|i| format!("c{i}"))
            .collect::<Vec<_>>()
            .join(",")
    };
    let parsed = parse_annotations(&annotations(&[(CONTAINERS, &names(256))])).unwrap();
    assert_eq!(parsed.containers.map(|c| c.len()), Some(256));
    let error = parse_annotations(&annotations(&[(CONTAINERS, &names(257))])).unwrap_err();
    assert!(error.to_string().contains("257 containers"), "{error}");
}

/// Reading stops at the first name past the cap: what follows it (here nearly 10,000 more names
/// and an invalid one at the very end) is never looked at, so a 64 KiB list costs no more
/// than 257 names.
#[test]
fn container_names_past_the_cap_are_not_read() {
    let mut value = (0..10_000)
        .map(|i| format!("c{i}"))
        .collect::<Vec<_>>()
        .join(",");
    value.push_str(",Not_A_Name");
    let error = parse_annotations(&annotations(&[(CONTAINERS, &value)])).unwrap_err();
    let message = error.to_string();
    assert!(message.contains("257 containers"), "{message}");
    assert!(!message.contains("Not_A_Name"), "{message}");
}

#[rstest]
#[case(KubernetesStore::Global, "global")]
#[case(KubernetesStore::Admin, "admin")]
#[case(KubernetesStore::Domain("finance".into()), "finance")]
fn store_ids_round_trip(#[case] store: KubernetesStore, #[case] id: &str) {
    assert_eq!(KubernetesStore::from_id(id), store);
    assert_eq!(store.id(), id);
}

#[test]
fn secret_refs_display_type_id_and_key() {
    assert_eq!(
        secret(domain("finance"), "db").to_string(),
        "KUBERNETES/finance/db"
    );
    assert_eq!(secret(vault("v1"), "db").to_string(), "VAULT/v1/db");
    assert_eq!(secret(global(), "db").to_string(), "KUBERNETES/global/db");
}

fn base() -> References {
    References {
        env: vec![env("A", domain("finance"), "a"), env("B", global(), "b")],
        spark_conf: vec![spark("spark.x", domain("finance"), "x")],
        containers: Some(vec!["main".into(), "init".into()]),
        injected_digest: None,
    }
}

#[test]
fn digest_is_stable_and_ignores_the_previous_digest() {
    let digest = base().digest();
    assert_eq!(base().digest(), digest);
    let hex = digest.strip_prefix("sha256:").unwrap();
    assert_eq!(hex.len(), 64);
    assert!(
        hex.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    );
    let reinvoked = References {
        injected_digest: Some(digest.clone()),
        ..base()
    };
    assert_eq!(reinvoked.digest(), digest);
}

#[test]
fn digest_does_not_depend_on_json_formatting_or_other_annotations() {
    let compact = annotations(&[(ENV, &list(&[("A", "finance", "a")]))]);
    let spaced = annotations(&[
        (
            ENV,
            r#" [ { "secretObject": { "source": { "id": "finance", "type": "KUBERNETES" }, "key": "a" }, "key": "A" } ] "#,
        ),
        ("app", "x"),
        (INJECTED_ANNOTATION, "sha256:old"),
    ]);
    assert_eq!(
        parse_annotations(&compact).unwrap().digest(),
        parse_annotations(&spaced).unwrap().digest()
    );
}

#[rstest]
#[case::env_name(|r: &mut References| r.env[0].env_name = "A2".into())]
#[case::secret_key(|r: &mut References| r.env[0].secret.key = "a2".into())]
#[case::store_id(|r: &mut References| r.env[0].secret.source = domain("marketing"))]
#[case::global_vs_admin(|r: &mut References| r.env[1].secret.source = admin())]
#[case::source_type(|r: &mut References| r.env[0].secret.source = vault("finance"))]
#[case::entry_removed(|r: &mut References| { r.env.pop(); })]
#[case::entry_added(|r: &mut References| r.env.push(env("C", global(), "c")))]
#[case::spark_property(|r: &mut References| r.spark_conf[0].property = "spark.y".into())]
#[case::spark_removed(|r: &mut References| r.spark_conf.clear())]
#[case::env_moved_to_spark(|r: &mut References| {
    let moved = r.env.remove(0);
    r.spark_conf.push(spark(&moved.env_name, moved.secret.source, &moved.secret.key));
})]
#[case::containers_none(|r: &mut References| r.containers = None)]
#[case::containers_fewer(|r: &mut References| r.containers = Some(vec!["main".into()]))]
#[case::containers_other(|r: &mut References| r.containers = Some(vec!["main".into(), "side".into()]))]
fn digest_changes_with_every_reference_field(#[case] change: fn(&mut References)) {
    let mut changed = base();
    change(&mut changed);
    assert_ne!(changed, base());
    assert_ne!(changed.digest(), base().digest());
}

#[test]
fn has_v2_is_any_reference_annotation() {
    assert!(!References::default().has_v2());
    assert!(
        !References {
            injected_digest: Some("sha256:x".into()),
            ..References::default()
        }
        .has_v2()
    );
    assert!(refs(vec![env("A", global(), "a")]).has_v2());
    assert!(
        References {
            containers: Some(vec!["main".into()]),
            ..References::default()
        }
        .has_v2()
    );
    assert!(
        References {
            spark_conf: vec![spark("spark.a", global(), "a")],
            ..References::default()
        }
        .has_v2()
    );
}

#[test]
fn distinct_secrets_are_deduplicated_and_sorted() {
    let b = secret(domain("finance"), "b");
    let a = secret(domain("finance"), "a");
    let g = secret(global(), "a");
    assert_eq!(
        distinct_secrets([&b, &a, &b, &g, &a]),
        vec![a.clone(), b.clone(), g.clone()]
    );
}
