//! Reinvocation for real: a second mutating webhook (a small TLS server in this test) adds a
//! sidecar container after ours; the API server calls ours again (`reinvocationPolicy:
//! IfNeeded`, as shipped). What the README promises for that container: the
//! `secrets.iomete.com/injected` digest matches, so the annotation references are not injected
//! again (the sidecar does not get them), while legacy `${secrets.KEY}` placeholders are
//! resolved in any container, including one added after our first call.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Json;
use axum::extract::State;
use axum::routing::post;
use base64::Engine as _;
use secrecy::ExposeSecret;
use serde_json::{Value, json};

use crate::env::{CANARY_GLOBAL, Cluster, apply};
use crate::{
    apply_pod, assert_success, audit_events_for, container_env, expected_digest, fixture_pod,
    our_mutations, stderr, with_env_secrets,
};

const NAMESPACE: &str = "reinvoke-d1";
const CANARY: &str = "cluster-canary-reinvoke-$(A)$$-d1";

/// Adds the sidecar unless the pod has it; counts its calls.
async fn add_sidecar(
    State(calls): State<Arc<AtomicUsize>>,
    Json(review): Json<Value>,
) -> Json<Value> {
    calls.fetch_add(1, Ordering::SeqCst);
    let request = &review["request"];
    let has_sidecar = request["object"]["spec"]["containers"]
        .as_array()
        .is_some_and(|containers| containers.iter().any(|c| c["name"] == "sidecar"));
    let mut response = json!({"uid": request["uid"], "allowed": true});
    if !has_sidecar {
        let patch = json!([{"op": "add", "path": "/spec/containers/-", "value": {
            "name": "sidecar",
            "image": "busybox",
            "env": [
                {"name": "SIDECAR_SMTP", "value": "smtp://x:${secrets.smtp_password}@mail"},
                {"name": "SIDECAR_PLAIN", "value": "plain"}
            ]
        }}]);
        response["patchType"] = json!("JSONPatch");
        response["patch"] =
            json!(base64::engine::general_purpose::STANDARD.encode(patch.to_string()));
    }
    Json(
        json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response}),
    )
}

/// Serves the sidecar webhook on 127.0.0.1; its port and caBundle.
async fn start_sidecar_webhook(calls: Arc<AtomicUsize>) -> (u16, String) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let bundle = iomete_secrets_webhook::boot::certs::generate(&["127.0.0.1".to_owned()]).unwrap();
    let config = axum_server::tls_rustls::RustlsConfig::from_pem(
        bundle.cert_pem.clone().into_bytes(),
        bundle.key_pem.expose_secret().as_bytes().to_vec(),
    )
    .await
    .unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let app = axum::Router::new()
        .route("/add-sidecar", post(add_sidecar))
        .with_state(calls);
    let server = axum_server::from_tcp_rustls(listener, config).unwrap();
    // Stops with the test's runtime.
    tokio::spawn(async move { server.serve(app.into_make_service()).await });
    (port, bundle.ca_bundle_base64())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_container_added_by_a_later_webhook_gets_what_the_readme_promises() {
    let Some(cluster) = Cluster::shared("a_container_added_by_a_later_webhook") else {
        return;
    };
    let calls = Arc::new(AtomicUsize::new(0));
    let (port, ca_bundle) = start_sidecar_webhook(calls.clone()).await;
    cluster.namespace(NAMESPACE, Some("reinvd1"));
    cluster.store("reinvd1", &[("s3-secret-key", CANARY)]);
    // Named after ours, so the API server calls it second; limited to this test's namespace.
    let sidecar = json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": "zz-test-add-sidecar"},
        "webhooks": [{
            "name": "add-sidecar.test.example.com",
            "admissionReviewVersions": ["v1"],
            "sideEffects": "None",
            "failurePolicy": "Fail",
            "reinvocationPolicy": "Never",
            "timeoutSeconds": 10,
            "clientConfig": {"url": format!("https://127.0.0.1:{port}/add-sidecar"), "caBundle": ca_bundle},
            "rules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["pods"]}],
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": NAMESPACE}},
        }],
    });
    apply(&cluster.plane, &sidecar);

    let pod = with_env_secrets(
        fixture_pod(
            "spark/spark35-driver-pod.json",
            NAMESPACE,
            "driver-with-sidecar",
        ),
        &[("AWS_SECRET_ACCESS_KEY", "s3-secret-key", "reinvd1")],
    );
    let output = {
        let pod = pod.clone();
        tokio::task::spawn_blocking(move || apply_pod(cluster, &pod, &[]))
            .await
            .unwrap()
    };
    assert_success(&output);
    assert!(
        calls.load(Ordering::SeqCst) >= 1,
        "the sidecar webhook was not called"
    );
    // The legacy placeholder in the sidecar was resolved on reinvocation, with its warning.
    assert!(
        stderr(&output).contains("Warning: container \"sidecar\" env \"SIDECAR_SMTP\""),
        "{}",
        stderr(&output)
    );

    let stored = cluster.stored_pod(NAMESPACE, "driver-with-sidecar");
    assert_eq!(
        container_env(&stored, "spark-kubernetes-driver", "AWS_SECRET_ACCESS_KEY").as_deref(),
        Some(CANARY)
    );
    assert_eq!(
        container_env(&stored, "sidecar", "SIDECAR_SMTP").unwrap(),
        format!("smtp://x:{CANARY_GLOBAL}@mail")
    );
    assert_eq!(
        container_env(&stored, "sidecar", "SIDECAR_PLAIN").as_deref(),
        Some("plain")
    );
    assert_eq!(
        container_env(&stored, "sidecar", "AWS_SECRET_ACCESS_KEY"),
        None,
        "annotation references are injected once: the sidecar came after"
    );
    assert_eq!(
        stored["metadata"]["annotations"]["secrets.iomete.com/injected"].as_str(),
        Some(expected_digest(&pod).as_str())
    );

    // The API server's audit log shows our webhook called twice: round 0 and the reinvocation.
    let events = audit_events_for(cluster, NAMESPACE, "driver-with-sidecar");
    assert_eq!(events.len(), 1, "{events:?}");
    let ours = our_mutations(&events[0]);
    assert!(
        ours.iter().any(|(key, _)| key.contains("round_0_"))
            && ours
                .iter()
                .any(|(key, mutated)| key.contains("round_1_") && *mutated),
        "{}",
        events[0]["annotations"]
    );

    cluster.plane.kubectl_ok(
        &[
            "delete",
            "mutatingwebhookconfiguration",
            "zz-test-add-sidecar",
        ],
        None,
    );
}
