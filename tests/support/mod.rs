//! Helpers shared by the router, Spark and e2e tests: fixtures, AdmissionReviews built on a real
//! API-server capture, applying an answer's patch as the API server does, and store caches fed
//! as the webhook's watches feed them.

#![allow(dead_code)] // each test target uses its own subset

use base64::Engine as _;
use std::collections::BTreeSet;

use iomete_secrets_webhook::backends::kubernetes::{KubernetesCaches, ScopePolicy};
use iomete_secrets_webhook::backends::watch::feed_listing;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::{Value, json};

include!("hostile_values.rs");
pub mod log_capture;
pub mod openbao;

/// An HTTP/1 request as a test server reads it: the head as text, the body consumed.
pub struct RequestHead {
    text: String,
}

impl RequestHead {
    /// The head as received: request line and headers.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The request target, e.g. `/v1/secret/data/x`.
    pub fn path(&self) -> &str {
        self.text.split_whitespace().nth(1).unwrap_or_default()
    }

    /// The first header called `name` (any case), trimmed.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.text.lines().skip(1).find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.eq_ignore_ascii_case(name).then(|| value.trim())
        })
    }
}

/// Reads one HTTP/1 request from `stream`: its head (at most 64 KiB), then as many body bytes as
/// its Content-Length says, so that closing after the answer is a clean close. `None` when the
/// peer closes or errs first, or sends a longer head.
pub async fn read_request(stream: &mut tokio::net::TcpStream) -> Option<RequestHead> {
    use tokio::io::AsyncReadExt as _;
    let mut head = Vec::new();
    let mut buffer = [0u8; 4096];
    let end = loop {
        match stream.read(&mut buffer).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => head.extend_from_slice(&buffer[..n]),
        }
        if let Some(end) = head.windows(4).position(|window| window == b"\r\n\r\n") {
            break end + 4;
        }
        if head.len() > 64 << 10 {
            return None;
        }
    };
    let request = RequestHead {
        text: String::from_utf8_lossy(&head[..end]).into_owned(),
    };
    let length: usize = request
        .header("content-length")
        .map_or(0, |value| value.parse().unwrap_or(0));
    let mut body = head.len() - end;
    while body < length {
        match stream.read(&mut buffer).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => body += n,
        }
    }
    Some(request)
}

/// A JSON fixture from `tests/fixtures/`.
pub fn fixture(path: &str) -> Value {
    let full = format!("{}/tests/fixtures/{path}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{full}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{full}: {e}"))
}

/// `pod` with `secrets.iomete.com/env-secrets` set to `entries` (env name, store key, store id
/// of a KUBERNETES source), replacing the pod's own annotations.
pub fn with_env_secrets(mut pod: Value, entries: &[(&str, &str, &str)]) -> Value {
    let list: Vec<Value> = entries
        .iter()
        .map(|(env, key, id)| {
            json!({"key": env, "secretObject": {"key": key, "source": {"type": "KUBERNETES", "id": id}}})
        })
        .collect();
    pod["metadata"]["annotations"] = json!({
        "secrets.iomete.com/env-secrets": Value::Array(list).to_string()
    });
    pod
}

/// A v1 AdmissionReview built on the real GKE capture, carrying `pod` in `namespace`.
pub fn review_of(pod: Value, namespace: &str) -> Value {
    let mut review = fixture("real/admissionreview-pod-create-kube-rs-gke.json");
    review["request"]["namespace"] = json!(namespace);
    review["request"]["name"] = pod["metadata"]["name"].clone();
    review["request"]["object"] = pod;
    review
}

/// The reviewed object with the answer's (base64) JSON patch applied, as the API server does.
pub fn patched_object(review: &Value, answer: &Value) -> Value {
    let patch = answer["response"]["patch"].as_str().expect("a patch");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(patch)
        .unwrap();
    let patch: json_patch::Patch = serde_json::from_slice(&bytes).unwrap();
    let mut object = review["request"]["object"].clone();
    json_patch::patch(&mut object, &patch).unwrap();
    object
}

/// A Namespace as the watch delivers it, with the domain label when given.
pub fn namespace(name: &str, domain: Option<&str>) -> Namespace {
    let labels = domain.map(|d| [("iomete.com/domain".to_owned(), d.to_owned())].into());
    Namespace {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels,
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    }
}

/// The namespace every test keeps its stores in (also the only admin namespace).
pub const STORE_NAMESPACE: &str = "iomete-system";

/// A store Secret in the store namespace.
pub fn store(name: &str, data: &[(&str, &str)]) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(STORE_NAMESPACE.into()),
            ..ObjectMeta::default()
        },
        data: Some(
            data.iter()
                .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
                .collect(),
        ),
        ..Secret::default()
    }
}

/// Store caches holding `namespaces` and `secrets`, fed as a watch's first listing and marked
/// ready when `synced`; otherwise left as a webhook that has not synced yet.
pub async fn stores(
    namespaces: Vec<Namespace>,
    secrets: Vec<Secret>,
    synced: bool,
) -> KubernetesCaches {
    let settings = ScopePolicy {
        store_namespace: STORE_NAMESPACE.into(),
        admin_namespaces: BTreeSet::from([STORE_NAMESPACE.to_owned()]),
        domain_label: "iomete.com/domain".into(),
    };
    let (stores, mut writers) = KubernetesCaches::new(settings);
    if synced {
        writers.feed_listing(namespaces, secrets);
        stores.mark_fresh_once_listed().await;
    }
    // The writers must outlive the test, as the watch task keeps them in production.
    std::mem::forget(writers);
    stores
}

/// Settings of the Vault backend in tests: the default cache, short timeouts.
pub fn vault_settings() -> iomete_secrets_webhook::backends::vault::VaultSettings {
    use iomete_secrets_webhook::backends::vault::client::Timeouts;
    use std::time::Duration;
    iomete_secrets_webhook::backends::vault::VaultSettings {
        store_namespace: STORE_NAMESPACE.into(),
        cache_ttl: Duration::from_secs(30),
        stale_if_error: None,
        timeouts: Timeouts {
            connect: Duration::from_secs(1),
            request: Duration::from_secs(2),
        },
        check_interval: Duration::from_secs(60),
    }
}

/// Backends over `stores` and a loaded Vault configuration cache holding `vault_configs`
/// (credentials come from `stores`).
pub fn backends(
    stores: KubernetesCaches,
    vault_configs: Vec<iomete_secrets_webhook::backends::vault::resource::VaultConfig>,
    vault_settings: iomete_secrets_webhook::backends::vault::VaultSettings,
) -> iomete_secrets_webhook::backends::Backends {
    use iomete_secrets_webhook::backends::vault::VaultBackend;
    use iomete_secrets_webhook::backends::vault::metrics::VaultMetrics;
    let (vault, mut writer) =
        VaultBackend::new(vault_settings, stores.clone(), VaultMetrics::default());
    feed_listing(&mut writer, vault_configs);
    // The store is complete, so this resolves at once; blocking keeps the helper usable from
    // synchronous setup code.
    futures::executor::block_on(vault.mark_fresh_once_listed());
    std::mem::forget(writer);
    iomete_secrets_webhook::backends::Backends {
        kubernetes: stores,
        vault,
    }
}

/// The container's environment as the kubelet builds it: in order, each value expanded with the
/// variables defined before it; the one `valueFrom` of the fixture (the pod IP) resolved.
pub fn kubelet_env(container: &Value) -> Vec<(String, String)> {
    let mut defined: std::collections::HashMap<String, String> = std::collections::HashMap::new();
    let mut env = Vec::new();
    for var in container["env"].as_array().unwrap() {
        let name = var["name"].as_str().unwrap().to_owned();
        let value = match (&var["value"], &var["valueFrom"]) {
            (Value::String(value), _) => {
                iomete_secrets_webhook::decision::expansion::kubelet_expand(value, |name| {
                    defined.get(name).cloned()
                })
            }
            (_, from) if from["fieldRef"]["fieldPath"] == "status.podIP" => "127.0.0.1".to_owned(),
            (_, from) => panic!("env {name}: no stand-in for {from}"),
        };
        defined.insert(name.clone(), value.clone());
        env.push((name, value));
    }
    env
}
