//! Router tests for the second hardening round: what one tenant's pod can cost the webhook
//! (bounded work and answer, a deadline that holds for CPU-bound steps), a reinvocation digest
//! that cannot skip authorization, and log lines a pod's names cannot forge.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::Request;
use http_body_util::BodyExt;
use iomete_secrets_webhook::admission::{AdmissionError, Admitter, Limits};
use iomete_secrets_webhook::backends::vault::resource::{VaultConfig, VaultConfigSpec};
use iomete_secrets_webhook::backends::{BackendError, VaultFetchError};
use iomete_secrets_webhook::decision::injection::{MAX_INJECTIONS_PER_POD, Settings};
use iomete_secrets_webhook::decision::reference::{SecretRef, Source};
use iomete_secrets_webhook::decision::scope::VaultGrant;
use iomete_secrets_webhook::edge::metrics::Metrics;
use iomete_secrets_webhook::edge::server::{self, WebhookState};
use rstest::rstest;
use serde_json::{Value, json};
use tower::ServiceExt;

mod support;
use support::log_capture::CapturedLog;
use support::{STORE_NAMESPACE, fixture, namespace, review_of, store};

/// A webhook router over in-memory caches: finance and marketing domains, the three stores.
async fn router(timeout: Duration) -> axum::Router {
    let namespaces = vec![
        namespace("spark-jobs", Some("finance")),
        namespace("marketing-jobs", Some("marketing")),
        namespace("sandbox", None),
        namespace(STORE_NAMESPACE, None),
    ];
    let big = "v".repeat(64 << 10);
    let secrets = vec![
        store(
            "iomete-secret-store-finance",
            &[
                ("k", "finance-value"),
                ("s3-secret-key", "driver-value"),
                ("big", &big),
            ],
        ),
        store("iomete-secret-store", &[("g", "global-value")]),
        store("iomete-secret-store-admin", &[("root", "admin-value")]),
    ];
    let stores = support::stores(namespaces, secrets, true).await;
    let backends = support::backends(stores, Vec::new(), support::vault_settings());
    let admitter = Admitter::new(
        Arc::new(backends),
        Settings::env_delivery(true),
        Limits {
            timeout,
            max_in_flight: 16,
        },
    );
    server::router(WebhookState {
        admitter: Arc::new(admitter),
        metrics: Arc::new(Metrics::new()),
    })
}

async fn review(router: &axum::Router, review: &Value) -> Value {
    let request = Request::post("/mutate")
        .header("content-type", "application/json")
        .body(Body::from(review.to_string()))
        .unwrap();
    let response = router.clone().oneshot(request).await.unwrap();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&bytes).unwrap()
}

/// A pod of `containers` containers whose env-secrets annotation names `references` variables,
/// all from the finance store's key `k`.
fn wide_pod(containers: usize, references: usize) -> Value {
    let entries: Vec<Value> = (0..references)
        .map(|i| json!({"key": format!("V{i}"), "secretObject": {"key": "k", "source": {"type": "KUBERNETES", "id": "finance"}}}))
        .collect();
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "wide",
            "annotations": {"secrets.iomete.com/env-secrets": Value::Array(entries).to_string()},
        },
        "spec": {
            "containers": (0..containers).map(|i| json!({"name": format!("c{i}"), "image": "busybox"})).collect::<Vec<_>>(),
        },
    })
}

fn status(answer: &Value) -> (bool, u64, String) {
    let response = &answer["response"];
    (
        response["allowed"].as_bool().unwrap(),
        response["status"]["code"].as_u64().unwrap_or(200),
        response["status"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    )
}

/// The red team's pod: about 34 KB, 200 containers × 256 references. It produced a 10.5 MB
/// answer; it is now refused before any of that work, with a 400 naming the cap.
#[tokio::test]
async fn a_pod_of_many_containers_times_references_is_refused_naming_the_cap() {
    let router = router(Duration::from_secs(5)).await;
    let pod = wide_pod(200, 256);
    let answer = review(&router, &review_of(pod, "spark-jobs")).await;
    let (allowed, code, message) = status(&answer);
    assert!(!allowed);
    assert_eq!(code, 400);
    assert!(
        message.contains(&format!("more than the {MAX_INJECTIONS_PER_POD} allowed")),
        "{message}"
    );
    assert!(answer.to_string().len() < 4096, "{answer}");
}

/// The deadline holds for the whole admission: with no time at all, no pod that needs work is
/// answered as allowed, even one whose every step is CPU-bound (in-memory stores, no I/O to
/// time out). Before, a CPU-bound admission was answered whatever it took.
#[tokio::test]
async fn no_answer_is_allowed_past_the_admission_deadline() {
    let no_time = router(Duration::ZERO).await;
    let driver = review_of(fixture("spark/spark35-driver-pod.json"), "spark-jobs");
    let answer = review(&no_time, &driver).await;
    let (allowed, code, message) = status(&answer);
    assert!(!allowed, "{answer}");
    assert_eq!(code, 503);
    assert!(message.contains("did not finish within"), "{message}");

    let enough_time = router(Duration::from_secs(5)).await;
    let answer = review(&enough_time, &driver).await;
    assert!(status(&answer).0, "{answer}");
}

#[rstest]
#[case::admin_from_a_domain("spark-jobs", "admin", "root")]
#[case::another_domain("marketing-jobs", "finance", "k")]
#[case::global_from_no_domain("sandbox", "global", "g")]
#[tokio::test]
async fn a_forged_injected_digest_is_still_authorized(
    #[case] namespace: &str,
    #[case] store: &str,
    #[case] key: &str,
) {
    let router = router(Duration::from_secs(5)).await;
    let annotation = json!([{"key": "X", "secretObject": {"key": key, "source": {"type": "KUBERNETES", "id": store}}}]).to_string();
    let mut pod = fixture("spark/spark35-driver-pod.json");
    pod["metadata"]["annotations"] = json!({"secrets.iomete.com/env-secrets": annotation});
    // The digest an injection of these references writes, as a reinvocation would carry it.
    let references = iomete_secrets_webhook::decision::reference::parse_annotations(
        &serde_json::from_value(pod["metadata"]["annotations"].clone()).unwrap(),
    )
    .unwrap();
    pod["metadata"]["annotations"]["secrets.iomete.com/injected"] = json!(references.digest());
    let answer = review(&router, &review_of(pod, namespace)).await;
    let (allowed, code, _) = status(&answer);
    assert!(!allowed, "{answer}");
    assert_eq!(code, 403);
}

/// A writer the test reads back: the text log as an operator's terminal would get it.
/// Names are not validated yet when mutating admission runs: a newline in one used to start a
/// forged `admission … decision="patched"` line, and ANSI escapes reached the terminal.
#[rstest]
#[case::pod_name(
    "metadata",
    "x\n2026-12-06T00:00:00Z  INFO admission decision=\"patched\""
)]
#[case::container_name("container", "c\n INFO admission decision=\"patched\" \u{1b}[2J")]
#[tokio::test]
async fn request_names_cannot_forge_text_log_lines(#[case] field: &str, #[case] name: &str) {
    let (captured, _capturing) = CapturedLog::install();

    let router = router(Duration::from_secs(5)).await;
    let mut pod = wide_pod(1, 1);
    match field {
        "metadata" => pod["metadata"]["name"] = json!(name),
        _ => pod["spec"]["containers"][0]["name"] = json!(name),
    }
    // Denied (marketing cannot read finance), so the message quotes the reference too.
    let answer = review(&router, &review_of(pod.clone(), "marketing-jobs")).await;
    assert_eq!(status(&answer).1, 403);
    let _ = review(&router, &review_of(pod, "spark-jobs")).await;

    let log = captured.take();
    let lines: Vec<&str> = log.lines().filter(|line| !line.is_empty()).collect();
    assert_eq!(lines.len(), 2, "one line per admission:\n{log}");
    assert!(
        lines.iter().all(|line| line.contains(" admission ")),
        "{log}"
    );
    assert!(!log.contains('\u{1b}'), "{log:?}");
}

/// A VaultConfig `vault-1` of `domain` with `uid`, as the watch delivers it.
fn vault_config(domain: &str, uid: &str) -> VaultConfig {
    let spec: VaultConfigSpec = serde_json::from_value(json!({
        "domain": domain,
        "host": "https://127.0.0.1:1",
        "path": "/v1/secret/data/prefix",
        "auth": {"method": "Token"},
    }))
    .unwrap();
    let mut config = VaultConfig::new("vault-1", spec);
    config.metadata.namespace = Some(STORE_NAMESPACE.into());
    config.metadata.uid = Some(uid.into());
    config
}

/// The ownership a pod was authorized against is checked again where the credentials are
/// chosen: a VaultConfig whose owner changed, or that was deleted and recreated under the same
/// name, between the two reads serves nothing to that pod (retriable, so the next try is
/// authorized against the new owner). Before, the fetch took whatever the name held then.
#[rstest]
#[case::owner_changed(VaultGrant { domain: "marketing".into(), uid: "uid-1".into() })]
#[case::replaced(VaultGrant { domain: "finance".into(), uid: "uid-0".into() })]
#[tokio::test]
async fn a_vault_configuration_changed_since_authorization_serves_nothing(
    #[case] authorized: VaultGrant,
) {
    let stores = support::stores(vec![namespace(STORE_NAMESPACE, None)], Vec::new(), true).await;
    let backends = support::backends(
        stores,
        vec![vault_config("finance", "uid-1")],
        support::vault_settings(),
    );
    let secret = SecretRef {
        source: Source::Vault("vault-1".into()),
        key: "db".into(),
    };
    let grants = BTreeMap::from([("vault-1".to_owned(), authorized)]);
    let error = match backends
        .fetch_all(std::slice::from_ref(&secret), &grants)
        .await
    {
        Ok(_) => panic!("served through a configuration the pod was not authorized against"),
        Err(error) => error,
    };
    assert_eq!(
        error,
        BackendError::Vault {
            config: "vault-1".into(),
            source: VaultFetchError::ConfigChanged,
        }
    );
    let answered = AdmissionError::from(error).message();
    assert!(answered.contains("retry"), "{answered}");

    // The grant that matches goes on to the connection (here: no credentials Secret).
    let current = VaultGrant {
        domain: "finance".into(),
        uid: "uid-1".into(),
    };
    let grants = BTreeMap::from([("vault-1".to_owned(), current)]);
    let error = match backends.fetch_all(&[secret], &grants).await {
        Ok(_) => panic!("no credentials exist"),
        Err(error) => error,
    };
    assert!(
        matches!(
            error,
            BackendError::Vault {
                source: VaultFetchError::Misconfigured(_),
                ..
            }
        ),
        "{error}"
    );
}

/// A request whose body arrives as `bytes` bytes and then stalls, holding that much of the
/// shared byte budget until the returned sender is dropped.
fn stalled_request(
    router: &axum::Router,
    bytes: usize,
) -> futures::channel::mpsc::UnboundedSender<Result<Vec<u8>, std::io::Error>> {
    let (sender, receiver) = futures::channel::mpsc::unbounded();
    sender.unbounded_send(Ok(vec![b' '; bytes])).unwrap();
    let request = Request::post("/mutate")
        .header("content-type", "application/json")
        .body(Body::from_stream(receiver))
        .unwrap();
    tokio::spawn(router.clone().oneshot(request));
    sender
}

/// An answer is held against the same byte budget as request bodies until it is sent: with
/// the budget nearly spent by stalled uploads, a pod whose patch would not fit in what is left
/// is denied as retriable, instead of the webhook holding its answer over the budget. Before,
/// answers were not counted at all.
#[tokio::test]
async fn answers_count_against_the_request_byte_budget() {
    let router = router(Duration::from_secs(5)).await;
    let almost_eight_mib = (8 << 20) - 1;
    // 24 MiB less 64 KiB, held by three uploads that never finish.
    let stalled = [
        stalled_request(&router, almost_eight_mib),
        stalled_request(&router, almost_eight_mib),
        stalled_request(&router, almost_eight_mib - (64 << 10)),
    ];
    tokio::time::sleep(Duration::from_millis(200)).await;

    // Four containers × a 64 KiB value: an answer of about 350 KB, which does not fit.
    let annotation = json!([{"key": "BIG", "secretObject": {"key": "big", "source": {"type": "KUBERNETES", "id": "finance"}}}]).to_string();
    let mut pod = wide_pod(4, 0);
    pod["metadata"]["annotations"] = json!({"secrets.iomete.com/env-secrets": annotation});
    let answer = review(&router, &review_of(pod.clone(), "spark-jobs")).await;
    let (allowed, code, message) = status(&answer);
    assert!(!allowed, "{answer:.300}");
    assert_eq!(code, 503);
    assert!(message.contains("request and answer bytes"), "{message}");

    // Once the uploads end, the same pod is answered.
    drop(stalled);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let answer = review(&router, &review_of(pod, "spark-jobs")).await;
    assert!(status(&answer).0, "{:.300}", answer.to_string());
}
