//! Router tests: real API-server AdmissionReview captures and the exact Spark 3.5 pods, sent
//! through the webhook's axum router with Kubernetes store caches fed as a watch would feed them.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use iomete_secrets_webhook::admission::{Admitter, Limits};
use iomete_secrets_webhook::decision::injection::{DRY_RUN_MARKER, Settings};
use iomete_secrets_webhook::edge::metrics::Metrics;
use iomete_secrets_webhook::edge::server::{self, MAX_BODY_BYTES, WebhookState};
use rstest::rstest;
use serde_json::{Value, json};
use tower::ServiceExt;

mod support;
use support::{STORE_NAMESPACE, fixture, namespace, patched_object, review_of, store};

/// A value that must never appear anywhere but in an allowed, non-dry-run patch.
const CANARY: &str = "canary-9f1c$(HOME)'\"$$ \u{e9}";

struct Harness {
    router: axum::Router,
}

impl Harness {
    /// Caches holding the stores and namespaces every test uses, fed as a watch's first listing.
    async fn new(secrets_v2_enabled: bool) -> Self {
        Self::with_sync(secrets_v2_enabled, true).await
    }

    async fn with_sync(secrets_v2_enabled: bool, synced: bool) -> Self {
        Self::build(secrets_v2_enabled, synced, 256).await
    }

    async fn build(secrets_v2_enabled: bool, synced: bool, max_in_flight: usize) -> Self {
        let namespaces = vec![
            namespace("spark-jobs", Some("finance")),
            namespace("colin-coder", Some("finance")),
            namespace("johnsmith-dev", Some("finance")),
            namespace("default", Some("finance")),
            namespace("marketing-jobs", Some("marketing")),
            namespace("sandbox", None),
            namespace(STORE_NAMESPACE, None),
        ];
        let secrets = vec![
            store(
                "iomete-secret-store-finance",
                &[("s3-secret-key", CANARY), ("db_password", "finance-db")],
            ),
            store("iomete-secret-store", &[("smtp_password", "global-smtp")]),
            store("iomete-secret-store-admin", &[("root", "admin-root")]),
        ];
        let stores = support::stores(namespaces, secrets, synced).await;
        let backends = Arc::new(support::backends(
            stores,
            Vec::new(),
            support::vault_settings(),
        ));
        let admitter = Admitter::new(
            backends,
            Settings::env_delivery(secrets_v2_enabled),
            Limits {
                timeout: Duration::from_secs(5),
                max_in_flight,
            },
        );
        let router = server::router(WebhookState {
            admitter: Arc::new(admitter),
            metrics: Arc::new(Metrics::new()),
        });
        Harness { router }
    }

    async fn post(&self, body: impl Into<Body>) -> (StatusCode, String) {
        let request = Request::post("/mutate")
            .header("content-type", "application/json")
            .body(body.into())
            .unwrap();
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8(bytes.to_vec()).unwrap())
    }

    async fn review(&self, review: &Value) -> (StatusCode, Value, String) {
        let (status, text) = self.post(review.to_string()).await;
        let value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
        (status, value, text)
    }
}

fn with_annotation(mut pod: Value, key: &str, value: &str) -> Value {
    if !pod["metadata"]["annotations"].is_object() {
        pod["metadata"]["annotations"] = json!({});
    }
    pod["metadata"]["annotations"][key] = json!(value);
    pod
}

fn env_secrets(entries: &[(&str, &str, &str)]) -> String {
    let list: Vec<Value> = entries
        .iter()
        .map(|(env, key, id)| {
            json!({"key": env, "secretObject": {"key": key, "source": {"type": "KUBERNETES", "id": id}}})
        })
        .collect();
    Value::Array(list).to_string()
}

fn env_of(pod: &Value, container: &str) -> Vec<(String, Option<String>)> {
    let containers = pod["spec"]["containers"].as_array().unwrap().iter();
    let init = pod["spec"]["initContainers"]
        .as_array()
        .into_iter()
        .flatten();
    let found = containers
        .chain(init)
        .find(|c| c["name"] == container)
        .unwrap_or_else(|| panic!("no container {container}"));
    found["env"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|var| {
            (
                var["name"].as_str().unwrap().to_owned(),
                var["value"].as_str().map(str::to_owned),
            )
        })
        .collect()
}

fn kubelet_view(value: &str) -> String {
    iomete_secrets_webhook::decision::expansion::kubelet_expand(value, |_| None)
}

fn assert_allowed_untouched(answer: &Value, uid: &str) {
    assert_eq!(answer["response"]["uid"], uid);
    assert_eq!(answer["response"]["allowed"], true);
    assert!(answer["response"].get("patch").is_none(), "{answer}");
}

#[rstest]
#[case(
    "real/admissionreview-pod-create-kube-rs-gke.json",
    "admission.k8s.io/v1"
)]
#[case(
    "real/admissionreview-pod-create-kubewarden-policy-server-privileged-multicontainer.json",
    "admission.k8s.io/v1"
)]
#[case(
    "real/admissionreview-pod-create-openshift-codeready-toolchain.json",
    "admission.k8s.io/v1"
)]
#[case(
    "real/admissionreview-v1beta1-pod-create-replicaset-gke-trow.json",
    "admission.k8s.io/v1beta1"
)]
#[tokio::test]
async fn real_captures_without_references_are_allowed_untouched_in_their_version(
    #[case] path: &str,
    #[case] version: &str,
) {
    let harness = Harness::new(true).await;
    let review = fixture(path);
    let (status, answer, _) = harness.review(&review).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer["apiVersion"], version);
    assert_eq!(answer["kind"], "AdmissionReview");
    assert_allowed_untouched(&answer, review["request"]["uid"].as_str().unwrap());
}

#[rstest]
#[case("real/admissionreview-pod-create-kube-rs-gke.json")]
#[case("real/admissionreview-pod-create-kubewarden-policy-server-privileged-multicontainer.json")]
#[case("real/admissionreview-pod-create-openshift-codeready-toolchain.json")]
#[case("real/admissionreview-v1beta1-pod-create-replicaset-gke-trow.json")]
#[tokio::test]
async fn real_captures_with_references_get_every_container_patched(#[case] path: &str) {
    let harness = Harness::new(true).await;
    let mut review = fixture(path);
    let annotation = env_secrets(&[
        ("DB_PASSWORD", "db_password", "finance"),
        ("SMTP_PASSWORD", "smtp_password", "global"),
    ]);
    review["request"]["object"] = with_annotation(
        review["request"]["object"].clone(),
        "secrets.iomete.com/env-secrets",
        &annotation,
    );
    let (status, answer, _) = harness.review(&review).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer["apiVersion"], review["apiVersion"]);
    assert_eq!(answer["response"]["uid"], review["request"]["uid"]);
    assert_eq!(answer["response"]["allowed"], true, "{answer}");
    assert_eq!(answer["response"]["patchType"], "JSONPatch");
    let pod = patched_object(&review, &answer);
    for container in pod["spec"]["containers"].as_array().unwrap() {
        let env = env_of(&pod, container["name"].as_str().unwrap());
        assert!(env.contains(&("DB_PASSWORD".into(), Some("finance-db".into()))));
        assert!(env.contains(&("SMTP_PASSWORD".into(), Some("global-smtp".into()))));
    }
    let injected = &pod["metadata"]["annotations"]["secrets.iomete.com/injected"];
    assert!(injected.as_str().unwrap().starts_with("sha256:"));
    let audit = answer["response"]["auditAnnotations"]["injected-references"]
        .as_str()
        .unwrap();
    assert!(audit.contains("db_password") && !audit.contains("finance-db"));
}

#[tokio::test]
async fn bare_request_capture_with_init_container_named_in_containers_annotation() {
    let harness = Harness::new(true).await;
    let request =
        fixture("real/admissionrequest-pod-create-initcontainer-sidecar-kubewarden-psp.json");
    let mut review =
        json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request});
    let pod = with_annotation(
        review["request"]["object"].clone(),
        "secrets.iomete.com/env-secrets",
        &env_secrets(&[("DB_PASSWORD", "db_password", "finance")]),
    );
    review["request"]["object"] = with_annotation(
        pod,
        "secrets.iomete.com/containers",
        "init-myservice, sidecar",
    );
    let (_, answer, _) = harness.review(&review).await;
    let pod = patched_object(&review, &answer);
    let wanted = ("DB_PASSWORD".to_owned(), Some("finance-db".to_owned()));
    assert!(env_of(&pod, "init-myservice").contains(&wanted));
    assert!(env_of(&pod, "sidecar").contains(&wanted));
    assert!(!env_of(&pod, "nginx").contains(&wanted));
}

#[tokio::test]
async fn spark_driver_pod_is_patched_byte_exact() {
    let harness = Harness::new(true).await;
    let review = review_of(fixture("spark/spark35-driver-pod.json"), "spark-jobs");
    let (status, answer, _) = harness.review(&review).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer["response"]["allowed"], true, "{answer}");
    let pod = patched_object(&review, &answer);
    let env = env_of(&pod, "spark-kubernetes-driver");
    let (_, written) = env
        .iter()
        .find(|(name, _)| name == "AWS_SECRET_ACCESS_KEY")
        .expect("injected");
    assert_eq!(kubelet_view(written.as_deref().unwrap()), CANARY);
    // Spark's own env is kept, in order, ahead of the injected variable.
    assert_eq!(env[0].0, "SPARK_USER");
    assert_eq!(env.last().unwrap().0, "AWS_SECRET_ACCESS_KEY");
}

#[tokio::test]
async fn spark_executor_pod_is_patched() {
    let harness = Harness::new(true).await;
    let review = review_of(fixture("spark/spark35-executor-pod.json"), "spark-jobs");
    let (_, answer, _) = harness.review(&review).await;
    let pod = patched_object(&review, &answer);
    let env = env_of(&pod, "spark-kubernetes-executor");
    let written = env
        .iter()
        .find(|(n, _)| n == "AWS_SECRET_ACCESS_KEY")
        .unwrap();
    assert_eq!(kubelet_view(written.1.as_deref().unwrap()), CANARY);
}

#[tokio::test]
async fn reinvocation_with_the_patched_pod_is_a_noop() {
    let harness = Harness::new(true).await;
    let review = review_of(fixture("spark/spark35-driver-pod.json"), "spark-jobs");
    let (_, answer, _) = harness.review(&review).await;
    let again = review_of(patched_object(&review, &answer), "spark-jobs");
    let (_, answer, _) = harness.review(&again).await;
    assert_allowed_untouched(&answer, again["request"]["uid"].as_str().unwrap());
}

#[tokio::test]
async fn spark_driver_from_another_domain_is_denied_403_without_values() {
    let harness = Harness::new(true).await;
    let review = review_of(fixture("spark/spark35-driver-pod.json"), "marketing-jobs");
    let (status, answer, text) = harness.review(&review).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer["response"]["allowed"], false);
    assert_eq!(answer["response"]["status"]["code"], 403);
    let message = answer["response"]["status"]["message"].as_str().unwrap();
    assert!(message.contains("AWS_SECRET_ACCESS_KEY"), "{message}");
    assert!(message.contains("domain \"finance\""), "{message}");
    assert!(message.contains("marketing-jobs"), "{message}");
    assert!(!text.contains("canary"), "{text}");
}

#[rstest]
#[case("sandbox", "admin", 403)]
#[case("spark-jobs", "admin", 403)]
#[case("iomete-system", "admin", 200)]
#[case("iomete-system", "global", 200)]
#[case("sandbox", "global", 403)]
#[case("iomete-system", "finance", 403)]
#[tokio::test]
async fn admin_and_global_reach(#[case] ns: &str, #[case] store_id: &str, #[case] code: u16) {
    let harness = Harness::new(true).await;
    let key = match store_id {
        "admin" => "root",
        "global" => "smtp_password",
        _ => "db_password",
    };
    let pod = fixture("real/notebook-pod-kubespawner-make_pod-with-extra-containers.json");
    let pod = with_annotation(
        pod,
        "secrets.iomete.com/env-secrets",
        &env_secrets(&[("X", key, store_id)]),
    );
    let (_, answer, _) = harness.review(&review_of(pod, ns)).await;
    let allowed = answer["response"]["allowed"].as_bool().unwrap();
    assert_eq!(allowed, code == 200, "{answer}");
    if !allowed {
        assert_eq!(answer["response"]["status"]["code"], code);
    }
}

#[tokio::test]
async fn legacy_placeholders_in_a_notebook_pod_resolve_with_a_warning() {
    let harness = Harness::new(false).await;
    let mut pod = fixture("real/notebook-pod-kubespawner-make_pod-with-init-containers.json");
    pod["spec"]["containers"][0]["env"] =
        json!([{"name": "SMTP_URL", "value": "smtp://u:${secrets.smtp_password}@mail:25"}]);
    let review = review_of(pod, "colin-coder");
    let (_, answer, _) = harness.review(&review).await;
    assert_eq!(answer["response"]["allowed"], true, "{answer}");
    let pod = patched_object(&review, &answer);
    assert_eq!(
        env_of(&pod, "notebook"),
        vec![(
            "SMTP_URL".to_owned(),
            Some("smtp://u:global-smtp@mail:25".to_owned())
        )]
    );
    let warnings = answer["response"]["warnings"].as_array().unwrap();
    assert!(
        warnings[0]
            .as_str()
            .unwrap()
            .contains("secrets.iomete.com/env-secrets")
    );
}

/// Denials reach the user with their code and a message that names what to fix.
#[rstest]
#[case::secrets_v2_disabled(false, "spark-jobs", None, 400, &["Secrets V2 is disabled"])]
#[case::missing_key(
    true,
    "spark-jobs",
    Some(env_secrets(&[("DB_PASSWORD", "nope", "finance")])),
    404,
    &["\"iomete-secret-store-finance\" has no key \"nope\""]
)]
#[case::missing_domain_store(
    true,
    "marketing-jobs",
    Some(env_secrets(&[("K", "k", "marketing")])),
    404,
    &["iomete-secret-store-marketing", "ask an administrator to create it"]
)]
#[case::malformed_reference_names_the_entry(
    true,
    "spark-jobs",
    Some(r#"[{"key": "OK", "secretObject": {"key": "k", "source": {"type": "KUBERNETES", "id": "finance"}}},
             {"key": "BAD", "secretObject": {"key": "k", "source": {"type": "KUBERNETES", "id": "finance", "namespace": "kube-system"}}}]"#.to_owned()),
    400,
    &["secrets.iomete.com/env-secrets", "namespace"]
)]
#[case::unknown_vault_configuration(
    true,
    "spark-jobs",
    Some(r#"[{"key": "V", "secretObject": {"key": "k", "source": {"type": "VAULT", "id": "vault-prod"}}}]"#.to_owned()),
    404,
    &["names Vault configuration \"vault-prod\", which does not exist"]
)]
#[tokio::test]
async fn denials_name_what_to_fix(
    #[case] secrets_v2: bool,
    #[case] namespace: &str,
    #[case] env_secrets_annotation: Option<String>,
    #[case] code: u16,
    #[case] says: &[&str],
) {
    let harness = Harness::new(secrets_v2).await;
    let mut pod = fixture("spark/spark35-driver-pod.json");
    if let Some(annotation) = &env_secrets_annotation {
        pod = with_annotation(pod, "secrets.iomete.com/env-secrets", annotation);
    }
    let (_, answer, _) = harness.review(&review_of(pod, namespace)).await;
    assert_eq!(answer["response"]["allowed"], false, "{answer}");
    assert_eq!(answer["response"]["status"]["code"], code, "{answer}");
    let message = answer["response"]["status"]["message"].as_str().unwrap();
    for said in says {
        assert!(message.contains(said), "{said:?} not in {message}");
    }
}

#[tokio::test]
async fn unknown_namespace_is_a_retriable_503_never_a_guess() {
    let harness = Harness::new(true).await;
    let review = review_of(fixture("spark/spark35-driver-pod.json"), "not-yet-seen");
    let (_, answer, _) = harness.review(&review).await;
    assert_eq!(answer["response"]["status"]["code"], 503, "{answer}");
}

#[tokio::test]
async fn dry_run_checks_everything_but_carries_no_value() {
    let harness = Harness::new(true).await;
    let mut review = review_of(fixture("spark/spark35-driver-pod.json"), "spark-jobs");
    review["request"]["dryRun"] = json!(true);
    let (_, answer, text) = harness.review(&review).await;
    assert_eq!(answer["response"]["allowed"], true);
    let pod = patched_object(&review, &answer);
    let env = env_of(&pod, "spark-kubernetes-driver");
    assert!(env.contains(&("AWS_SECRET_ACCESS_KEY".into(), Some(DRY_RUN_MARKER.into()))));
    assert!(!text.contains("canary"));
    assert!(!serde_json::to_string(&pod).unwrap().contains("canary"));
}

#[tokio::test]
async fn non_pod_requests_are_allowed_untouched() {
    let harness = Harness::new(true).await;
    let request = fixture("real/admissionrequest-secret-create-kyverno.json");
    let review =
        json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request});
    let (_, answer, _) = harness.review(&review).await;
    assert_allowed_untouched(&answer, request["uid"].as_str().unwrap());
}

#[tokio::test]
async fn pods_reaching_an_unsynced_webhook_get_a_retriable_503() {
    let harness = Harness::with_sync(true, false).await;
    let review = review_of(fixture("spark/spark35-driver-pod.json"), "spark-jobs");
    let (_, answer, _) = harness.review(&review).await;
    assert_eq!(answer["response"]["status"]["code"], 503);
    let message = answer["response"]["status"]["message"].as_str().unwrap();
    assert!(message.contains("retry"), "{message}");
    // A pod without references is not held up by the caches.
    let plain = fixture("real/admissionreview-pod-create-kube-rs-gke.json");
    let (_, answer, _) = harness.review(&plain).await;
    assert_eq!(answer["response"]["allowed"], true);
}

#[rstest]
#[case(b"".to_vec(), "")]
#[case(b"{not json".to_vec(), "")]
#[case(br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u-1"}}"#.to_vec(), "u-1")]
#[case(br#"{"apiVersion":"v1","kind":"Pod"}"#.to_vec(), "")]
#[case(vec![0xff, 0xfe, 0x00], "")]
#[tokio::test]
async fn unreadable_bodies_get_http_400_with_an_invalid_response(
    #[case] body: Vec<u8>,
    #[case] uid: &str,
) {
    let harness = Harness::new(true).await;
    let (status, text) = harness.post(body).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let answer: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(answer["kind"], "AdmissionReview");
    assert_eq!(answer["response"]["allowed"], false);
    assert_eq!(answer["response"]["uid"], uid);
    assert_eq!(answer["response"]["status"]["code"], 400);
}

#[tokio::test]
async fn oversize_bodies_are_refused() {
    let harness = Harness::new(true).await;
    let (status, _) = harness.post(vec![b' '; MAX_BODY_BYTES + 1]).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
}

// ---- Spark config secrets: SPARK_SUBMIT_OPTS on drivers and notebooks, never on executors ----

const SPARK_CONF: &str = "secrets.iomete.com/spark-conf-secrets";

fn spark_conf_s3() -> String {
    env_secrets(&[("spark.hadoop.fs.s3a.secret.key", "s3-secret-key", "finance")])
}

/// The token the launcher must read back as `-Dspark.hadoop.fs.s3a.secret.key=<CANARY>`.
fn s3_token() -> String {
    format!(
        "'-Dspark.hadoop.fs.s3a.secret.key={}'",
        CANARY.replace('\'', r"'\''")
    )
}

fn spark_submit_opts(pod: &Value, container: &str) -> Option<String> {
    let env = env_of(pod, container);
    let mut found = env.iter().filter(|(name, _)| name == "SPARK_SUBMIT_OPTS");
    let value = found
        .next()
        .map(|(_, value)| value.clone().expect("a literal value"));
    assert!(found.next().is_none(), "SPARK_SUBMIT_OPTS twice in {env:?}");
    value
}

#[tokio::test]
async fn spark_driver_gets_spark_conf_in_spark_submit_opts() {
    let harness = Harness::new(true).await;
    let pod = with_annotation(
        fixture("spark/spark35-driver-pod.json"),
        SPARK_CONF,
        &spark_conf_s3(),
    );
    let review = review_of(pod, "spark-jobs");
    let (_, answer, _) = harness.review(&review).await;
    assert_eq!(answer["response"]["allowed"], true, "{answer}");
    let pod = patched_object(&review, &answer);
    let written = spark_submit_opts(&pod, "spark-kubernetes-driver").expect("injected");
    assert_eq!(kubelet_view(&written), s3_token());
    // The env-secret of the fixture is delivered too, and Spark's own env keeps its order.
    let env = env_of(&pod, "spark-kubernetes-driver");
    let names: Vec<&str> = env.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(
        names,
        [
            "SPARK_USER",
            "SPARK_APPLICATION_ID",
            "SPARK_DRIVER_BIND_ADDRESS",
            "SPARK_LOCAL_DIRS",
            "SPARK_CONF_DIR",
            "AWS_SECRET_ACCESS_KEY",
            "SPARK_SUBMIT_OPTS"
        ]
    );
    let audit = answer["response"]["auditAnnotations"]["injected-references"]
        .as_str()
        .unwrap();
    assert!(
        audit.contains(
            r#"container \"spark-kubernetes-driver\" spark \"spark.hadoop.fs.s3a.secret.key\""#
        ),
        "{audit}"
    );
    assert!(!audit.contains("canary"), "{audit}");
}

#[tokio::test]
async fn spark_executor_gets_env_secrets_but_no_spark_submit_opts() {
    let harness = Harness::new(true).await;
    let pod = with_annotation(
        fixture("spark/spark35-executor-pod.json"),
        SPARK_CONF,
        &spark_conf_s3(),
    );
    let review = review_of(pod, "spark-jobs");
    let (_, answer, text) = harness.review(&review).await;
    assert_eq!(answer["response"]["allowed"], true, "{answer}");
    let pod = patched_object(&review, &answer);
    assert_eq!(spark_submit_opts(&pod, "spark-kubernetes-executor"), None);
    let env = env_of(&pod, "spark-kubernetes-executor");
    let (_, written) = env
        .iter()
        .find(|(name, _)| name == "AWS_SECRET_ACCESS_KEY")
        .expect("the env-secret is injected");
    assert_eq!(kubelet_view(written.as_deref().unwrap()), CANARY);
    let audit = answer["response"]["auditAnnotations"]["injected-references"]
        .as_str()
        .unwrap();
    assert!(!audit.contains("spark.hadoop"), "{audit}");
    assert!(!text.contains("'-Dspark"), "{text}");
}

#[tokio::test]
async fn spark_executor_spark_conf_out_of_scope_is_still_denied_403() {
    let harness = Harness::new(true).await;
    let mut pod = fixture("spark/spark35-executor-pod.json");
    // Only the spark-conf reference, so the denial can only come from it.
    pod["metadata"]["annotations"] = json!({SPARK_CONF: spark_conf_s3()});
    let (_, answer, _) = harness.review(&review_of(pod, "marketing-jobs")).await;
    assert_eq!(answer["response"]["allowed"], false);
    assert_eq!(answer["response"]["status"]["code"], 403);
    let message = answer["response"]["status"]["message"].as_str().unwrap();
    assert!(message.contains("spark-conf-secrets"), "{message}");
}

#[rstest]
#[case(
    "real/notebook-pod-kubespawner-make_pod-with-env-secretkeyref.json",
    &["notebook"]
)]
#[case(
    "real/notebook-pod-kubespawner-make_pod-with-extra-containers.json",
    &["notebook", "crontab"]
)]
#[case(
    "real/notebook-pod-kubespawner-make_pod-with-init-containers.json",
    &["notebook"]
)]
#[tokio::test]
async fn notebook_pods_get_spark_submit_opts_in_every_container(
    #[case] path: &str,
    #[case] containers: &[&str],
) {
    let harness = Harness::new(true).await;
    let original = fixture(path);
    let pod = with_annotation(original.clone(), SPARK_CONF, &spark_conf_s3());
    let review = review_of(pod, "colin-coder");
    let (_, answer, _) = harness.review(&review).await;
    assert_eq!(answer["response"]["allowed"], true, "{answer}");
    let pod = patched_object(&review, &answer);
    for container in containers {
        let written = spark_submit_opts(&pod, container).expect("injected");
        assert_eq!(kubelet_view(&written), s3_token(), "{container}");
        // What was there stays, in order, ahead of it.
        let before = env_of(&original, container);
        let after = env_of(&pod, container);
        assert_eq!(after[..after.len() - 1], before[..], "{container}");
    }
    assert_eq!(
        pod["spec"]["initContainers"],
        original["spec"]["initContainers"]
    );
}

#[tokio::test]
async fn spark_submit_opts_from_value_from_is_denied_400() {
    let harness = Harness::new(true).await;
    let mut pod = with_annotation(
        fixture("spark/spark35-driver-pod.json"),
        SPARK_CONF,
        &spark_conf_s3(),
    );
    pod["spec"]["containers"][0]["env"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "SPARK_SUBMIT_OPTS", "valueFrom": {"configMapKeyRef": {"name": "opts", "key": "opts"}}}));
    let (_, answer, text) = harness.review(&review_of(pod, "spark-jobs")).await;
    assert_eq!(answer["response"]["allowed"], false);
    assert_eq!(answer["response"]["status"]["code"], 400);
    let message = answer["response"]["status"]["message"].as_str().unwrap();
    assert!(
        message.starts_with(
            "container \"spark-kubernetes-driver\": SPARK_SUBMIT_OPTS is set with valueFrom"
        ),
        "{message}"
    );
    assert!(!text.contains("canary"), "{text}");
}

#[tokio::test]
async fn spark_conf_dry_run_puts_the_marker_inside_the_token() {
    let harness = Harness::new(true).await;
    let pod = with_annotation(
        fixture("spark/spark35-driver-pod.json"),
        SPARK_CONF,
        &spark_conf_s3(),
    );
    let mut review = review_of(pod, "spark-jobs");
    review["request"]["dryRun"] = json!(true);
    let (_, answer, text) = harness.review(&review).await;
    assert_eq!(answer["response"]["allowed"], true, "{answer}");
    let pod = patched_object(&review, &answer);
    assert_eq!(
        spark_submit_opts(&pod, "spark-kubernetes-driver").as_deref(),
        Some(format!("'-Dspark.hadoop.fs.s3a.secret.key={DRY_RUN_MARKER}'").as_str())
    );
    assert!(!text.contains("canary"), "{text}");
    assert!(!serde_json::to_string(&pod).unwrap().contains("canary"));
}

#[tokio::test]
async fn admissions_beyond_the_concurrency_bound_are_denied_at_once_as_retriable() {
    // No admission slot at all: every request is over the bound.
    let harness = Harness::build(true, true, 0).await;
    let review = review_of(fixture("spark/spark35-driver-pod.json"), "spark-jobs");
    let (status, answer, text) = harness.review(&review).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer["response"]["uid"], review["request"]["uid"]);
    assert_eq!(answer["response"]["allowed"], false);
    assert_eq!(answer["response"]["status"]["code"], 503);
    assert!(text.contains("retry"), "{text}");
}
