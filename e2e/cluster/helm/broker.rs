//! Broker mode as the chart configures it (`broker.enabled`): a Spark driver annotated for broker
//! delivery is stored wrapped and without its value, and the broker answers a token the API
//! server bound to that pod with the store's value. The broker runs with the chart's flags, as
//! the chart's ServiceAccount and with the chart's RBAC (TokenReview `create`, pod `get`).

use std::path::Path;

use iomete_secrets_webhook::decision::delivery::{
    BROKER_AUDIENCE, BROKER_PATH, DELIVERY_ANNOTATION,
};
use serde_json::{Value, json};

use super::release::{NAMESPACE, RELEASE, get};
use super::webhook::{create, driver, injected};
use super::{STORE, STORE_VALUE};
use crate::control_plane::ControlPlane;

pub async fn serve_a_broker_pod(plane: &ControlPlane, certs: &Path, broker_port: u16) {
    let (namespace, name) = ("helm-finance", "broker-driver");
    let account = json!({"apiVersion": "v1", "kind": "ServiceAccount",
        "metadata": {"name": "spark", "namespace": namespace}});
    plane.kubectl_ok(&["apply", "-f", "-"], Some(&account.to_string()));
    let mut pod = driver(namespace, name, "db_password", STORE);
    pod["metadata"]["annotations"][DELIVERY_ANNOTATION] = json!("broker");
    let stored = create(plane, &pod).expect("the broker-mode driver is admitted");
    assert!(injected(&stored).is_none(), "no value is written");
    assert!(
        !stored.to_string().contains(STORE_VALUE),
        "no value is stored"
    );
    let deployment = get(plane, &["deployment", RELEASE, "-n", NAMESPACE]).unwrap();
    assert_eq!(
        stored["spec"]["initContainers"][0]["image"],
        deployment["spec"]["template"]["spec"]["containers"][0]["image"],
        "the install container runs the webhook's own image"
    );

    let uid = stored["metadata"]["uid"].as_str().unwrap();
    let token = plane.kubectl_ok(
        &[
            "create",
            "token",
            "spark",
            "-n",
            namespace,
            &format!("--audience={BROKER_AUDIENCE}"),
            "--bound-object-kind=Pod",
            &format!("--bound-object-name={name}"),
            &format!("--bound-object-uid={uid}"),
        ],
        None,
    );
    let ca = std::fs::read_to_string(certs.join("ca.crt")).unwrap();
    let client = crate::broker::harness::tls_client(&ca);
    let response = client
        .post(format!("https://127.0.0.1:{broker_port}{BROKER_PATH}"))
        .bearer_auth(token.trim())
        .body(json!({"container": "spark-kubernetes-driver"}).to_string())
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let answer: Value = response.json().await.unwrap();
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer["env"],
        json!([{"name": "SECRET", "value": STORE_VALUE}])
    );
}
