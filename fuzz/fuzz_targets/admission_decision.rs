//! Fuzz target: the whole admission decision, request body → answer, as the API server would
//! send it to `POST /mutate`.
//!
//! Input: the raw body. The webhook's [`Admitter`] answers it with its store caches fed, as its
//! watches would feed them, with the fixed cluster of [`cluster`] (namespaces with and without
//! domains, admin namespaces, four stores whose every value is traceable), and a Vault backend
//! with no configuration (VAULT references are denied before any network is involved).
//!
//! Invariants, checked on every answer:
//! - it is an AdmissionReview; HTTP 400 only for an unreadable body, itself a denial;
//! - every denial carries a message, a reason and a code in {400, 403, 404, 503}: never 500,
//!   which would mean the decision reached a state it considers impossible;
//! - no store value appears anywhere in the answer but in the patch, nor in the log line;
//! - a store value appears in the patch only when the request is not a dry run, the pod asked
//!   for it, and the namespace's scope owns its store (the model in [`cluster::may_read`]);
//! - the patch writes only container env lists and the pod's annotations;
//! - an allowed pod create has every one of its KUBERNETES references in the namespace's scope,
//!   whatever `secrets.iomete.com/injected` digest it carries (a reinvocation digest never skips
//!   authorization);
//! - the answer and the log line are bounded by the caps plus a function of the input's size,
//!   however many containers × references the pod multiplies.
//!
//! Values the input itself contains are exempt from the leak checks: echoing the request back is
//! not a leak.
#![no_main]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use iomete_secrets_webhook::admission::review;
use iomete_secrets_webhook::admission::{Admitter, Answer, Limits};
use iomete_secrets_webhook::backends::Backends;
use iomete_secrets_webhook::backends::kubernetes::{KubernetesCaches, ScopePolicy};
use iomete_secrets_webhook::backends::vault::client::Timeouts;
use iomete_secrets_webhook::backends::vault::metrics::VaultMetrics;
use iomete_secrets_webhook::backends::vault::{VaultBackend, VaultSettings};
use iomete_secrets_webhook::backends::watch::feed_listing;
use iomete_secrets_webhook::decision::injection::{MAX_PATCH_BYTES, Settings};
use iomete_secrets_webhook::decision::pod::{Container, Pod};
use iomete_secrets_webhook::decision::reference::{Source, parse_annotations};
use iomete_secrets_webhook_fuzz::cluster::{self, DOMAIN_LABEL, STORE_NAMESPACE};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};

struct Harness {
    runtime: tokio::runtime::Runtime,
    admitter: Admitter,
}

static HARNESS: OnceLock<Harness> = OnceLock::new();

/// The log lines written so far; the admission's line is the fields of its span, so the
/// invariant on what is logged reads what the subscriber wrote.
static LOGGED: Mutex<Vec<u8>> = Mutex::new(Vec::new());

struct LogWriter;

impl std::io::Write for LogWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        LOGGED.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fuzz_target!(|body: &[u8]| {
    let harness = HARNESS.get_or_init(Harness::new);
    let answer = harness.runtime.block_on(harness.admitter.review(body));
    answer.log(std::time::Duration::ZERO);
    let logged = String::from_utf8(std::mem::take(&mut *LOGGED.lock().unwrap()))
        .expect("log lines are UTF-8");
    check(body, &answer, logged);
});

impl Harness {
    fn new() -> Self {
        tracing_subscriber::fmt()
            .with_writer(|| LogWriter)
            .with_ansi(false)
            .init();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("a runtime");
        let backends = runtime.block_on(async { backends(fed_stores().await).await });
        Harness {
            admitter: admitter(backends),
            runtime,
        }
    }
}

/// The one place this target touches how an `Admitter` is put together.
fn admitter(backends: Backends) -> Admitter {
    Admitter::new(
        Arc::new(backends),
        Settings::env_delivery(true),
        Limits {
            timeout: Duration::from_secs(8),
            max_in_flight: 16,
        },
    )
}

/// The Kubernetes stores, and a Vault backend whose configuration cache has loaded and holds no
/// configuration: every VAULT reference is answered "no such configuration" without any network.
async fn backends(stores: KubernetesCaches) -> Backends {
    let settings = VaultSettings {
        store_namespace: STORE_NAMESPACE.to_owned(),
        cache_ttl: Duration::from_secs(30),
        stale_if_error: None,
        timeouts: Timeouts {
            connect: Duration::from_secs(1),
            request: Duration::from_secs(1),
        },
        check_interval: Duration::from_secs(3600),
    };
    let (vault, mut writer) = VaultBackend::new(settings, stores.clone(), VaultMetrics::default());
    feed_listing(&mut writer, []);
    vault.mark_fresh_once_listed().await;
    // Kept for the life of the process, as the watch task keeps it.
    std::mem::forget(writer);
    Backends {
        kubernetes: stores,
        vault,
    }
}

/// The caches after a watch's first listing of [`cluster`]'s namespaces and stores.
async fn fed_stores() -> KubernetesCaches {
    let settings = ScopePolicy {
        store_namespace: STORE_NAMESPACE.to_owned(),
        admin_namespaces: cluster::ADMIN_NAMESPACES
            .iter()
            .map(|name| name.to_string())
            .collect(),
        domain_label: DOMAIN_LABEL.to_owned(),
    };
    let namespaces = cluster::NAMESPACES.iter().map(|(name, labels)| Namespace {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            labels: Some(
                labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    });
    let secrets = cluster::STORES.iter().map(|(id, keys)| Secret {
        metadata: ObjectMeta {
            name: Some(cluster::secret_name(id)),
            namespace: Some(STORE_NAMESPACE.to_owned()),
            ..ObjectMeta::default()
        },
        data: Some(
            keys.iter()
                .map(|key| {
                    let value = cluster::value(id, key).into_bytes();
                    (key.to_string(), ByteString(value))
                })
                .collect(),
        ),
        ..Secret::default()
    });
    let (stores, mut writers) = KubernetesCaches::new(settings);
    writers.feed_listing(namespaces, secrets);
    stores.mark_fresh_once_listed().await;
    assert!(stores.is_fresh(), "the fed caches are ready");
    // The watch task keeps the writers for the life of the process; so does the harness.
    std::mem::forget(writers);
    stores
}

fn check(body: &[u8], answer: &Answer, logged: String) {
    // The request as the webhook reads it (its own envelope reader, which skips fields it does
    // not read without validating them, so a body a plain JSON reader refuses can still be read),
    // and the pod as its decision sees it.
    let received = review::read(body).ok();
    let request = received.as_ref().map(|received| &received.request);
    let pod = request.map_or(Value::Null, pod_as_read);
    // The request as text, raw and as read (a \u escape in the body is a character once read).
    let input = format!("{}\n{pod}", String::from_utf8_lossy(body));
    // A base64 patch at the cap, plus a denial or warnings that may quote the input.
    let answer_bound = MAX_PATCH_BYTES * 4 / 3 + 2 * body.len() + (64 << 10);
    assert!(
        answer.body.len() <= answer_bound,
        "a {}-byte answer to a {}-byte request",
        answer.body.len(),
        body.len()
    );
    let log_bound = 2 * body.len() + (64 << 10);
    assert!(
        logged.len() <= log_bound,
        "a {}-byte log line for a {}-byte request",
        logged.len(),
        body.len()
    );
    let review: Value = serde_json::from_slice(&answer.body).expect("the answer is JSON");
    let review = &review;
    assert_eq!(review["kind"], "AdmissionReview", "{review}");
    assert!(
        matches!(
            review["apiVersion"].as_str(),
            Some("admission.k8s.io/v1" | "admission.k8s.io/v1beta1")
        ),
        "{review}"
    );
    let response = &review["response"];
    let allowed = response["allowed"].as_bool().expect("allowed is a boolean");
    match answer.http_status {
        200 => {}
        400 => assert!(!allowed, "an unreadable body was allowed: {review}"),
        other => panic!("HTTP {other}: {review}"),
    }
    if !allowed {
        let status = &response["status"];
        let message = status["message"].as_str().unwrap_or_default();
        assert!(
            !message.trim().is_empty(),
            "a denial without a message: {review}"
        );
        let code = status["code"].as_u64().unwrap_or_default();
        assert!(
            matches!(code, 400 | 403 | 404 | 503),
            "a denial with code {code}: {message}"
        );
        assert!(
            response.get("patch").is_none(),
            "a denial with a patch: {review}"
        );
    }

    if answer.http_status == 200
        && let Some(request) = request
    {
        assert_eq!(
            response["uid"], request.uid,
            "the answer's uid is not the request's"
        );
    }

    // Nothing outside the patch may carry a value: not the status, warnings, audit annotations,
    // nor the log line.
    let mut outside = review.clone();
    if let Some(response) = outside.get_mut("response").and_then(Value::as_object_mut) {
        response.remove("patch");
    }
    for text in [outside.to_string(), logged] {
        for (id, key) in cluster::markers_in(&text) {
            assert!(
                echoed(&input, &id, &key),
                "the value of {id}/{key} appears outside the patch: {text}"
            );
        }
    }

    if allowed && let Some(request) = request {
        check_every_reference_is_in_scope(request, &pod);
    }

    let Some(patch) = response["patch"].as_str() else {
        return;
    };
    let patch = BASE64.decode(patch).expect("the patch is base64");
    let patch: Value = serde_json::from_slice(&patch).expect("the patch is JSON");
    for operation in patch.as_array().expect("a JSON patch is a list") {
        let path = operation["path"].as_str().unwrap_or_default();
        assert!(writes_env_or_annotations(path), "the patch writes {path}");
    }
    let request = request.expect("a patched request is readable");
    // The namespace the decision is taken for: the request's only (the pod's own claim never
    // counts, and a request without one is denied), so a patch implies one.
    let namespace = request
        .namespace
        .as_deref()
        .expect("a patched request names its namespace");
    let dry_run = request.dry_run;
    for (id, key) in cluster::markers_in(&patch.to_string()) {
        if echoed(&input, &id, &key) {
            continue;
        }
        assert!(!dry_run, "a dry run carries the value of {id}/{key}");
        assert!(
            cluster::may_read(namespace, &id),
            "namespace {namespace:?} was given the value of {id}/{key}, which its scope does not own"
        );
        assert!(
            cluster::requested(&pod, &id, &key),
            "the pod was given the value of {id}/{key}, which it did not ask for"
        );
    }
}

/// The pod as the webhook's decision reads it (its annotations, and each container's env
/// names and values), as JSON for the model; `Null` when the webhook could not read it either.
fn pod_as_read(request: &review::Request<'_>) -> Value {
    let Some(pod) = request
        .object
        .and_then(|raw| serde_json::from_str::<Pod>(raw.get()).ok())
    else {
        return Value::Null;
    };
    let containers = |list: &[Container]| -> Vec<Value> {
        list.iter()
            .map(|container| {
                let env: Vec<Value> = container
                    .env
                    .iter()
                    .flatten()
                    .map(|var| json!({"name": var.name, "value": var.value}))
                    .collect();
                json!({"name": container.name, "env": env})
            })
            .collect()
    };
    let spec = pod.spec.unwrap_or_default();
    json!({
        "metadata": {"annotations": pod.metadata.annotations},
        "spec": {
            "containers": containers(&spec.containers),
            "initContainers": containers(spec.init_containers.as_deref().unwrap_or_default()),
        },
    })
}

/// An allowed pod create: every KUBERNETES reference it makes is readable from its namespace.
fn check_every_reference_is_in_scope(request: &review::Request<'_>, pod: &Value) {
    let Ok(annotations) =
        serde_json::from_value::<BTreeMap<String, String>>(pod["metadata"]["annotations"].clone())
    else {
        return;
    };
    if !request.is_pod_create() {
        return;
    }
    let Ok(references) = parse_annotations(&annotations) else {
        return;
    };
    let secrets = references
        .env
        .iter()
        .map(|entry| &entry.secret)
        .chain(references.spark_conf.iter().map(|entry| &entry.secret));
    for secret in secrets {
        if let Source::Kubernetes(_) = &secret.source {
            let namespace = request
                .namespace
                .as_deref()
                .expect("an allowed pod with references names its namespace");
            let id = secret.source.id();
            assert!(
                cluster::may_read(namespace, id),
                "namespace {namespace:?} was allowed a reference to store {id:?}"
            );
        }
    }
}

/// Whether the request itself already holds that store value's marker.
fn echoed(input: &str, id: &str, key: &str) -> bool {
    input.contains(&format!("{}{id}:{key}:", cluster::MARKER))
}

fn writes_env_or_annotations(path: &str) -> bool {
    let mut tokens = path.split('/').skip(1);
    match (tokens.next(), tokens.next()) {
        (Some("metadata"), Some("annotations")) => true,
        (Some("spec"), Some("containers" | "initContainers")) => {
            tokens
                .next()
                .is_some_and(|index| index.parse::<usize>().is_ok())
                && tokens.next() == Some("env")
        }
        _ => false,
    }
}
