//! The broker phase's cluster objects: the ServiceAccount, pods created straight through the
//! API server whose one container carries a literal `IOMETE_ENV_REFERENCES` (as broker-mode
//! admission writes it), tokens bound to each pod from the TokenRequest API (as the kubelet
//! projects them), and the first request that checks the broker serves such a pod.

use std::sync::Arc;

use anyhow::{Context, bail};
use futures::{StreamExt as _, TryStreamExt as _};
use hyper::body::Bytes;
use iomete_secrets_webhook::decision::delivery::{BROKER_AUDIENCE, BROKER_PATH, ENV_REFERENCES};
use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
use kube::Api;
use kube::api::PostParams;
use serde_json::{Value, json};

use crate::common::{self, FINANCE_NAMESPACE, VAULT_CONFIG};
use crate::load::{Client, Protocol};

/// The ServiceAccount the phase's pods run as, and whose tokens they carry.
const ACCOUNT: &str = "bench-broker";
/// How many API calls the setup makes at once (pods, tokens).
const SETUP_CONCURRENCY: usize = 16;
/// The container name every pod has and every request asks for (the driver's).
const CONTAINER: &str = "spark-kubernetes-driver";

/// The phase's ServiceAccount in the `finance` namespace; its API for token requests.
pub async fn create_account(kube: &kube::Client) -> anyhow::Result<Api<ServiceAccount>> {
    let accounts = Api::<ServiceAccount>::namespaced(kube.clone(), FINANCE_NAMESPACE);
    let account: ServiceAccount =
        serde_json::from_value(json!({"metadata": {"name": ACCOUNT}})).expect("an account");
    accounts
        .create(&PostParams::default(), &account)
        .await
        .context("the broker phase's ServiceAccount")?;
    Ok(accounts)
}

/// The `driver` case's five references as a broker-mode container's list: the same entries
/// as its annotations (`benches/common`), so both requests resolve exactly the same values.
pub fn driver_reference_list() -> String {
    let annotations = common::driver_annotations(VAULT_CONFIG);
    let entries = |name: &str| -> Value {
        serde_json::from_str(annotations[name].as_str().expect("an annotation")).expect("JSON")
    };
    json!({
        "env-secrets": entries("secrets.iomete.com/env-secrets"),
        "spark-conf-secrets": entries("secrets.iomete.com/spark-conf-secrets"),
    })
    .to_string()
}

pub fn env_request() -> Bytes {
    Bytes::from(json!({ "container": CONTAINER }).to_string())
}

/// Creates `count` pods `prefix-N` whose one container carries `list`; their names and uids.
pub async fn create_pods(
    kube: &kube::Client,
    prefix: &str,
    count: usize,
    list: &str,
) -> anyhow::Result<Vec<(String, String)>> {
    let api = Api::<Pod>::namespaced(kube.clone(), FINANCE_NAMESPACE);
    futures::stream::iter(0..count)
        .map(|index| {
            let api = api.clone();
            let name = format!("{prefix}-{index}");
            let pod = json!({
                "metadata": {"name": name},
                "spec": {"serviceAccountName": ACCOUNT, "containers": [{
                    "name": CONTAINER, "image": "apache/spark:3.5.8",
                    "command": ["/opt/entrypoint.sh"],
                    "env": [{"name": ENV_REFERENCES, "value": list}],
                }]},
            });
            async move {
                let pod: Pod = serde_json::from_value(pod)?;
                let created = api.create(&PostParams::default(), &pod).await?;
                let uid = created.metadata.uid.context("a created pod has a uid")?;
                anyhow::Ok((name, uid))
            }
        })
        .buffered(SETUP_CONCURRENCY)
        .try_collect()
        .await
}

/// A token bound to each pod, for the broker's audience, as the kubelet would project it.
pub async fn mint(
    accounts: &Api<ServiceAccount>,
    pods: &[(String, String)],
) -> anyhow::Result<Vec<Arc<str>>> {
    futures::stream::iter(pods)
        .map(|(name, uid)| async move {
            let request = TokenRequest {
                spec: Some(TokenRequestSpec {
                    audiences: Some(vec![BROKER_AUDIENCE.to_owned()]),
                    bound_object_ref: Some(BoundObjectReference {
                        api_version: Some("v1".into()),
                        kind: Some("Pod".into()),
                        name: Some(name.clone()),
                        uid: Some(uid.clone()),
                    }),
                    expiration_seconds: Some(600),
                    ..TokenRequestSpec::default()
                }),
                ..TokenRequest::default()
            };
            let answer = accounts
                .create_token_request(ACCOUNT, &PostParams::default(), &request)
                .await?;
            let token = answer.status.and_then(|status| status.token);
            anyhow::Ok(Arc::<str>::from(token.context("a token request's token")?))
        })
        .buffered(SETUP_CONCURRENCY)
        .try_collect()
        .await
}

/// Asks the broker for the warm-up pod's values until it serves them (it must at once: the
/// webhook is ready only with its stores synced), which caches the driver's Vault value.
pub async fn warm_broker(broker: &Client, token: &str) -> anyhow::Result<()> {
    let mut connection = broker.connect(Protocol::H2).await?;
    let (status, body) = connection
        .post_as(BROKER_PATH, env_request(), Some(token))
        .await?;
    let answer: Value = serde_json::from_slice(&body).unwrap_or_default();
    let names: Vec<&str> = answer["env"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|entry| entry["name"].as_str())
        .collect();
    // Names only: the answer holds the values.
    if status != 200 || names.len() != 4 || answer["sparkConf"].as_array().map(Vec::len) != Some(1)
    {
        bail!(
            "the broker's first answer: {status}, env {names:?}, error {}",
            answer["error"]
        );
    }
    Ok(())
}
