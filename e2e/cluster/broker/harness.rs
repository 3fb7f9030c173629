//! The broker test's harness: the webhook binary in broker mode as a child process (ports read
//! from its "serving" line, stopped when dropped or at exit), a TLS client playing `iomete-env`,
//! and the namespaces, pods and pod-bound tokens the tests need.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use iomete_secrets_webhook::decision::delivery::{BROKER_PATH, ENV_REFERENCES};
use iomete_secrets_webhook::decision::reference::{KubernetesStore, SecretRef, Source};
use serde_json::{Value, json};

use crate::control_plane::{self, spawn_guarded};
use crate::env::{Cluster, apply};

pub const ACCOUNT: &str = "runner";
/// The label the shipped registration's objectSelector excludes: admission never sees these.
const UNWATCHED: (&str, &str) = ("app.kubernetes.io/name", "iomete-secrets-webhook");

/// The webhook binary in broker mode, on ports it chose, stopped when dropped.
pub struct Broker {
    child: Option<Child>,
    port: u16,
    pub admin_port: u16,
    log: PathBuf,
    client: reqwest::Client,
}

impl Broker {
    pub fn start(cluster: &Cluster, name: &str) -> Broker {
        let certs = cluster.certs_dir();
        let log = cluster.plane.dir().join(format!("{name}.log"));
        let out = std::fs::File::create(&log).unwrap();
        let mut command = Command::new(crate::env::binary());
        command
            .args([
                "serve",
                "--listen=127.0.0.1:0",
                "--admin-listen=127.0.0.1:0",
            ])
            .args([
                "--broker-listen=127.0.0.1:0",
                "--broker-url=https://127.0.0.1:8444",
            ])
            .arg(format!("--broker-ca={}", certs.join("ca.crt").display()))
            .arg("--broker-image=iomete/iomete-secrets-webhook:0.1.0")
            .arg(format!("--tls-cert={}", certs.join("tls.crt").display()))
            .arg(format!("--tls-key={}", certs.join("tls.key").display()))
            // Callers of the admission endpoint need a client certificate; of the broker, never.
            .arg(format!("--client-ca={}", certs.join("ca.crt").display()))
            .args(["--log-format", "json"])
            .env("KUBECONFIG", cluster.webhook_kubeconfig())
            .env("RUST_LOG", "debug")
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out);
        let child = spawn_guarded(command).unwrap();
        control_plane::stop_at_process_exit(Some(child.id()), None);
        let ca = std::fs::read_to_string(certs.join("ca.crt")).unwrap();
        let mut broker = Broker {
            child: Some(child),
            port: 0,
            admin_port: 0,
            log,
            client: tls_client(&ca),
        };
        (broker.port, broker.admin_port) = broker.serving_ports();
        let deadline = Instant::now() + Duration::from_secs(60);
        while control_plane::http_get(broker.admin_port, "/readyz").is_none() {
            assert!(Instant::now() < deadline, "not ready:\n{}", broker.log());
            std::thread::sleep(Duration::from_millis(100));
        }
        broker
    }

    /// The broker's and the admin endpoint's ports, from the JSON "serving" line.
    fn serving_ports(&mut self) -> (u16, u16) {
        let port_of = |line: &Value, field: &str| -> Option<u16> {
            Some(
                line[field]
                    .as_str()?
                    .parse::<std::net::SocketAddr>()
                    .ok()?
                    .port(),
            )
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let log = self.log();
            let serving = log
                .lines()
                .filter_map(|line| serde_json::from_str::<Value>(line).ok())
                .find(|line| line["message"] == "serving");
            if let Some(line) = serving {
                return (
                    port_of(&line, "broker_listen").expect("the serving line names the broker"),
                    port_of(&line, "admin_listen").unwrap(),
                );
            }
            let exited = self.child.as_mut().unwrap().try_wait().unwrap();
            assert!(
                exited.is_none() && Instant::now() < deadline,
                "not serving ({exited:?}):\n{log}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `iomete-env`'s request for `container`: the status and the JSON answer.
    pub async fn env(&self, token: Option<&str>, container: &str) -> (u16, Value) {
        self.post(token, json!({ "container": container }).to_string())
            .await
    }

    pub async fn post(&self, token: Option<&str>, body: String) -> (u16, Value) {
        let url = format!("https://127.0.0.1:{}{BROKER_PATH}", self.port);
        let mut request = self.client.post(url).body(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        let answer = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"));
        (status, answer)
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(child) = self.child.take() {
            control_plane::terminate(child, Duration::from_secs(10));
        }
    }
}

pub fn tls_client(ca_pem: &str) -> reqwest::Client {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    reqwest::Client::builder()
        .tls_backend_preconfigured(config)
        .build()
        .unwrap()
}

/// A namespace of `domain` with the service account the test pods run as.
pub fn namespace(cluster: &Cluster, name: &str, domain: &str) {
    cluster.namespace(name, Some(domain));
    let account = json!({"apiVersion": "v1", "kind": "ServiceAccount",
        "metadata": {"name": ACCOUNT, "namespace": name}});
    apply(&cluster.plane, &account);
}

/// A pod admission leaves alone, whose containers carry `env` (name → env entries); its uid.
pub fn pod(cluster: &Cluster, namespace: &str, name: &str, containers: &[(&str, Value)]) -> String {
    pod_with(cluster, namespace, name, containers, json!({}))
}

pub fn pod_with(
    cluster: &Cluster,
    namespace: &str,
    name: &str,
    containers: &[(&str, Value)],
    metadata: Value,
) -> String {
    let containers: Vec<Value> = containers
        .iter()
        .map(|(name, env)| json!({"name": name, "image": "busybox", "env": env}))
        .collect();
    let mut pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": {UNWATCHED.0: UNWATCHED.1}},
        "spec": {"serviceAccountName": ACCOUNT, "containers": containers},
    });
    json_merge(&mut pod["metadata"], metadata);
    apply(&cluster.plane, &pod);
    let stored = cluster.stored_pod(namespace, name);
    stored["metadata"]["uid"].as_str().unwrap().to_owned()
}

fn json_merge(into: &mut Value, from: Value) {
    if let (Some(into), Value::Object(from)) = (into.as_object_mut(), from) {
        into.extend(from);
    }
}

/// The env of a broker-mode container: its reference list as a literal value.
pub fn listed(list: &str) -> Value {
    json!([{"name": ENV_REFERENCES, "value": list}, {"name": "PLAIN", "value": "x"}])
}

/// A token the API server mints for `pod`, for `audience` (the API server's own when `None`).
pub fn token(
    cluster: &Cluster,
    namespace: &str,
    pod: &str,
    uid: &str,
    audience: Option<&str>,
) -> String {
    let mut args = vec![
        "create",
        "token",
        ACCOUNT,
        "-n",
        namespace,
        "--duration=10m",
        "--bound-object-kind=Pod",
    ];
    let (name, uid) = (
        format!("--bound-object-name={pod}"),
        format!("--bound-object-uid={uid}"),
    );
    args.extend([name.as_str(), uid.as_str()]);
    let audience = audience.map(|audience| format!("--audience={audience}"));
    args.extend(audience.as_deref());
    cluster.plane.kubectl_ok(&args, None).trim().to_owned()
}

pub fn kubernetes(store: KubernetesStore, key: &str) -> SecretRef {
    SecretRef {
        source: Source::Kubernetes(store),
        key: key.to_owned(),
    }
}

/// A hand-written reference list of one env entry.
pub fn one_entry(env: &str, id: &str, key: &str) -> String {
    json!({"env-secrets": [{"key": env, "secretObject":
        {"key": key, "source": {"type": "KUBERNETES", "id": id}}}]})
    .to_string()
}
