//! The cluster every test runs against: a real control plane, `deploy/base` applied with the
//! real kubectl, and the webhook binary registered through the shipped
//! MutatingWebhookConfiguration (only `clientConfig` changed) and running as the shipped
//! ServiceAccount.

use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::control_plane::{self, ControlPlane, free_port, spawn_guarded, stop_at_process_exit};

/// The webhook binary: cargo's, in a test; `IOMETE_WEBHOOK_BINARY` for the playground example.
pub fn binary() -> PathBuf {
    match option_env!("CARGO_BIN_EXE_iomete-secrets-webhook") {
        Some(path) => PathBuf::from(path),
        None => PathBuf::from(
            std::env::var_os("IOMETE_WEBHOOK_BINARY")
                .expect("IOMETE_WEBHOOK_BINARY names the webhook binary"),
        ),
    }
}
pub const STORE_NAMESPACE: &str = "iomete-system";
pub const SERVICE_ACCOUNT: &str = "iomete-secrets-webhook";
pub const DOMAIN_LABEL: &str = "iomete.com/domain";
/// The global store's value, seeded once per cluster (tests never change it).
pub const CANARY_GLOBAL: &str = "cluster-canary-global-5d1c";

pub enum Plane {
    Shared(&'static ControlPlane),
    Owned(ControlPlane),
}

impl Deref for Plane {
    type Target = ControlPlane;
    fn deref(&self) -> &ControlPlane {
        match self {
            Plane::Shared(plane) => plane,
            Plane::Owned(plane) => plane,
        }
    }
}

/// A control plane with the shipped objects applied and the webhook registered.
pub struct Cluster {
    pub plane: Plane,
    /// deploy/base rendered by `kubectl kustomize`, as JSON objects.
    pub rendered: Vec<Value>,
    certs: PathBuf,
    kubeconfig: PathBuf,
    pub port: u16,
    pub admin_port: u16,
    /// The broker's port: broker mode is on (pods choose it; env stays the default).
    pub broker_port: u16,
    webhook: Mutex<Option<Child>>,
    log: PathBuf,
}

/// At most one test of this binary runs a control plane of its own at a time: several starting
/// and restarting etcd and kube-apiserver at once, beside the shared one, overloaded a 2-core
/// machine until API servers timed out. Held for the whole test.
pub struct DedicatedSlot(());

static DEDICATED: (Mutex<bool>, Condvar) = (Mutex::new(false), Condvar::new());

impl DedicatedSlot {
    /// Waits until no other test holds a dedicated control plane.
    pub fn take() -> DedicatedSlot {
        let (taken, freed) = &DEDICATED;
        let mut taken = taken.lock().unwrap_or_else(|p| p.into_inner());
        while *taken {
            taken = freed.wait(taken).unwrap_or_else(|p| p.into_inner());
        }
        *taken = true;
        DedicatedSlot(())
    }
}

impl Drop for DedicatedSlot {
    fn drop(&mut self) {
        let (taken, freed) = &DEDICATED;
        *taken.lock().unwrap_or_else(|p| p.into_inner()) = false;
        freed.notify_one();
    }
}

impl Cluster {
    /// The cluster shared by the tests of this binary, or `None` (skip, outside CI).
    pub fn shared(test: &str) -> Option<&'static Cluster> {
        static SHARED: OnceLock<Cluster> = OnceLock::new();
        let plane = ControlPlane::shared(test)?;
        Some(SHARED.get_or_init(|| Cluster::on(Plane::Shared(plane), None)))
    }

    /// A cluster of the caller's own, for tests that stop or restart servers.
    pub fn dedicated(test: &str) -> Option<Cluster> {
        Some(Cluster::on(Plane::Owned(ControlPlane::start(test)?), None))
    }

    /// Sets up `plane`; the webhook reaches the API server at `webhook_api` (a proxy) when
    /// given, directly otherwise.
    pub fn on(plane: Plane, webhook_api: Option<String>) -> Cluster {
        let rendered = render_deploy_base(&plane);
        plane.kubectl_ok(&["create", "namespace", STORE_NAMESPACE], None);
        // The shipped objects the webhook's identity and the VaultConfig API need (no
        // Deployment, Service or PDB: nothing here runs pods).
        let wanted = [
            "CustomResourceDefinition",
            "ServiceAccount",
            "Role",
            "RoleBinding",
            "ClusterRole",
            "ClusterRoleBinding",
            "ConfigMap",
        ];
        let objects: Vec<Value> = rendered
            .iter()
            .filter(|object| wanted.contains(&object["kind"].as_str().unwrap_or("")))
            .cloned()
            .collect();
        assert_eq!(
            objects.len(),
            wanted.len(),
            "deploy/base changed: {objects:?}"
        );
        apply(
            &plane,
            &json!({"apiVersion": "v1", "kind": "List", "items": objects}),
        );
        plane.kubectl_ok(
            &[
                "wait",
                "--for=condition=Established",
                "--timeout=60s",
                "crd/vaultconfigs.secrets.iomete.com",
            ],
            None,
        );
        plane.kubectl_ok(
            &[
                "create",
                "secret",
                "generic",
                "iomete-secret-store",
                "-n",
                STORE_NAMESPACE,
                &format!("--from-literal=smtp_password={CANARY_GLOBAL}"),
            ],
            None,
        );

        // The serving certificate from the binary's own `certs` subcommand.
        let certs = plane.dir().join("webhook-tls");
        let status = Command::new(binary())
            .args(["certs", "--extra-san", "127.0.0.1,localhost", "--out"])
            .arg(&certs)
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "`certs` failed");

        // The webhook's identity: the shipped ServiceAccount, through the TokenRequest API.
        let token = plane.kubectl_ok(
            &[
                "create",
                "token",
                SERVICE_ACCOUNT,
                "-n",
                STORE_NAMESPACE,
                "--duration=6h",
            ],
            None,
        );
        let api = webhook_api.unwrap_or_else(|| plane.server_url());
        let kubeconfig = plane.token_kubeconfig_at("webhook", token.trim(), &api);

        let cluster = Cluster {
            log: plane.dir().join("webhook.log"),
            plane,
            rendered,
            certs,
            kubeconfig,
            port: free_port(),
            admin_port: free_port(),
            broker_port: free_port(),
            webhook: Mutex::new(None),
        };
        cluster.start_webhook();
        cluster.register_webhook();
        cluster
    }

    /// The shipped MutatingWebhookConfiguration with only its clientConfig changed.
    pub fn shipped_webhook_configuration(&self) -> Value {
        let mut configuration = self
            .rendered
            .iter()
            .find(|object| object["kind"] == "MutatingWebhookConfiguration")
            .expect("deploy/base ships a MutatingWebhookConfiguration")
            .clone();
        let ca_bundle = std::fs::read_to_string(self.certs.join("ca-bundle.b64")).unwrap();
        let webhooks = configuration["webhooks"].as_array_mut().unwrap();
        assert_eq!(webhooks.len(), 1);
        webhooks[0]["clientConfig"] = json!({
            "url": format!("https://127.0.0.1:{}/mutate", self.port),
            "caBundle": ca_bundle.trim(),
        });
        configuration
    }

    fn register_webhook(&self) {
        apply(&self.plane, &self.shipped_webhook_configuration());
    }

    /// Starts the webhook binary (same ports as before) and waits for its `/readyz`.
    pub fn start_webhook(&self) {
        let mut slot = self.webhook.lock().unwrap();
        assert!(slot.is_none(), "the webhook already runs");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let mut command = Command::new(binary());
        command
            .arg("serve")
            .arg(format!("--listen=127.0.0.1:{}", self.port))
            .arg(format!("--admin-listen=127.0.0.1:{}", self.admin_port))
            .arg("--tls-cert")
            .arg(self.certs.join("tls.crt"))
            .arg("--tls-key")
            .arg(self.certs.join("tls.key"))
            .args(["--log-format", "json"])
            // The shortest check interval, so the VaultConfig tests see conditions quickly.
            .args(["--vault-check-interval", "5s"])
            // Broker mode on, as an operator turns it on; env delivery stays the default.
            .arg(format!("--broker-listen=127.0.0.1:{}", self.broker_port))
            .arg(format!(
                "--broker-url=https://127.0.0.1:{}",
                self.broker_port
            ))
            .arg("--broker-ca")
            .arg(self.certs.join("ca.crt"))
            .arg("--broker-image=iomete/iomete-secrets-webhook:0.1.0")
            .env("KUBECONFIG", &self.kubeconfig)
            .env("RUST_LOG", "debug")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        let mut child = spawn_guarded(command).unwrap();
        if matches!(self.plane, Plane::Shared(_)) {
            stop_at_process_exit(Some(child.id()), None);
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        while !self.webhook_ready() {
            if let Some(status) = child.try_wait().unwrap() {
                panic!("the webhook exited with {status}:\n{}", self.webhook_log());
            }
            assert!(
                Instant::now() < deadline,
                "webhook not ready:\n{}",
                self.webhook_log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        *slot = Some(child);
    }

    /// The running webhook process's id.
    pub fn webhook_pid(&self) -> Option<u32> {
        self.webhook.lock().unwrap().as_ref().map(Child::id)
    }

    pub fn webhook_ready(&self) -> bool {
        control_plane::http_get(self.admin_port, "/readyz").is_some()
    }

    /// Stops the webhook (SIGTERM); the registration stays.
    pub fn stop_webhook(&self) {
        assert!(
            matches!(self.plane, Plane::Owned(_)),
            "the shared webhook keeps running"
        );
        if let Some(child) = self.webhook.lock().unwrap().take() {
            control_plane::terminate(child, Duration::from_secs(20));
        }
    }

    /// Everything the webhook printed so far (all its runs).
    pub fn webhook_log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn metrics(&self) -> String {
        control_plane::http_get(self.admin_port, "/metrics").unwrap_or_default()
    }

    /// A namespace, labelled with `domain` when given, applied with kubectl.
    pub fn namespace(&self, name: &str, domain: Option<&str>) {
        let mut namespace =
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
        if let Some(domain) = domain {
            namespace["metadata"]["labels"] = json!({ DOMAIN_LABEL: domain });
        }
        apply(&self.plane, &namespace);
    }

    /// The store Secret of `domain` (`iomete-secret-store-DOMAIN`), created or replaced with
    /// `kubectl create secret generic` (piped through `apply`, so it also updates).
    pub fn store(&self, domain: &str, data: &[(&str, &str)]) {
        let name = format!("iomete-secret-store-{domain}");
        let mut args = vec![
            "create".to_owned(),
            "secret".to_owned(),
            "generic".to_owned(),
            name,
            format!("--namespace={STORE_NAMESPACE}"),
            "--dry-run=client".to_owned(),
            "--output=json".to_owned(),
        ];
        args.extend(
            data.iter()
                .map(|(key, value)| format!("--from-literal={key}={value}")),
        );
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let secret = self.plane.kubectl_ok(&args, None);
        self.plane.kubectl_ok(&["apply", "-f", "-"], Some(&secret));
    }

    /// `kubectl get pod -o json`: the pod as stored.
    pub fn stored_pod(&self, namespace: &str, name: &str) -> Value {
        let text = self
            .plane
            .kubectl_ok(&["get", "pod", name, "-n", namespace, "-o", "json"], None);
        serde_json::from_str(&text).unwrap()
    }

    pub fn certs_dir(&self) -> &Path {
        &self.certs
    }

    /// The kubeconfig of the webhook's identity (the shipped ServiceAccount).
    pub fn webhook_kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Some(child) = self
            .webhook
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            control_plane::terminate(child, Duration::from_secs(10));
        }
    }
}

/// `kubectl apply -f -` of one object (or a List).
pub fn apply(plane: &ControlPlane, object: &Value) -> String {
    plane.kubectl_ok(&["apply", "-f", "-"], Some(&object.to_string()))
}

/// `kubectl kustomize deploy/base`, converted to JSON objects by `kubectl create --dry-run`.
fn render_deploy_base(plane: &ControlPlane) -> Vec<Value> {
    render_kustomization(plane, concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/base"))
}

/// `kubectl kustomize DIR`, converted to JSON objects by `kubectl create --dry-run`.
pub fn render_kustomization(plane: &ControlPlane, dir: &str) -> Vec<Value> {
    let yaml = plane.kubectl_ok(&["kustomize", dir], None);
    let json = plane.kubectl_ok(
        &["create", "--dry-run=client", "-o", "json", "-f", "-"],
        Some(&yaml),
    );
    // One JSON document per object.
    serde_json::Deserializer::from_str(&json)
        .into_iter::<Value>()
        .map(Result::unwrap)
        .collect()
}
