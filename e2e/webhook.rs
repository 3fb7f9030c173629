//! [`Webhook`]: the compiled binary as a child process of a test (its certificates, ports,
//! KUBECONFIG and store namespace), the TLS clients that speak to it as the API server does, and
//! its shutdown with everything it printed.

use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use iomete_secrets_webhook::boot::certs;
use serde_json::Value;

use crate::api::Api;
use crate::control_plane;

pub const BINARY: &str = env!("CARGO_BIN_EXE_iomete-secrets-webhook");

pub struct Webhook {
    pub child: Child,
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub admin_port: u16,
    pub client: reqwest::Client,
    pub http1_client: reqwest::Client,
}

/// The ports a webhook started with port 0 bound, read from its JSON "serving" line.
fn bound_ports(child: &mut Child, log: &Path) -> (u16, u16) {
    let port_of = |line: &Value, field: &str| -> Option<u16> {
        let address: std::net::SocketAddr = line[field].as_str()?.parse().ok()?;
        Some(address.port())
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let serving = text
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .find(|line| line["message"] == "serving");
        if let Some(line) = serving
            && let (Some(port), Some(admin_port)) =
                (port_of(&line, "listen"), port_of(&line, "admin_listen"))
        {
            return (port, admin_port);
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the webhook exited ({status}) before serving:\n{text}");
        }
        assert!(
            Instant::now() < deadline,
            "the webhook did not log its serving ports within 60 s:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Webhook {
    /// The binary with a fresh certificate, reaching `api`'s API server directly.
    pub async fn start(api: &Api, extra_args: &[&str]) -> Webhook {
        let dir = tempfile::tempdir().unwrap();
        let bundle = certs::generate(&local_names()).unwrap();
        certs::write(&bundle, dir.path()).unwrap();
        let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
        Webhook::spawn(api, dir, &cert, &key, &bundle.ca_pem, extra_args).await
    }

    pub async fn spawn(
        api: &Api,
        dir: tempfile::TempDir,
        cert: &Path,
        key: &Path,
        ca_pem: &str,
        extra_args: &[&str],
    ) -> Webhook {
        let kubeconfig = api.webhook_kubeconfig(dir.path(), None).await;
        Webhook::spawn_with(api, dir, cert, key, ca_pem, extra_args, &kubeconfig, &[])
    }

    /// The binary with `api`'s store namespace, its Kubernetes client configured by
    /// `kubeconfig`, logging at debug level unless `env` (applied last) says otherwise. It is
    /// started with `PR_SET_PDEATHSIG`, so it dies with the test binary however that ends.
    #[allow(clippy::too_many_arguments)]
    pub fn spawn_with(
        api: &Api,
        dir: tempfile::TempDir,
        cert: &Path,
        key: &Path,
        ca_pem: &str,
        extra_args: &[&str],
        kubeconfig: &Path,
        env: &[(&str, String)],
    ) -> Webhook {
        // reqwest builds on rustls without a default provider; ours is ring, as in the binary.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let stdout = std::fs::File::create(dir.path().join("stdout.log")).unwrap();
        let stderr = std::fs::File::create(dir.path().join("stderr.log")).unwrap();
        let mut command = Command::new(BINARY);
        command
            .arg("serve")
            // Port 0: the binary binds free ports and names them in its "serving" line, so no
            // port is guessed free and then taken by someone else before the binary binds it.
            .args(["--listen", "127.0.0.1:0"])
            .args(["--admin-listen", "127.0.0.1:0"])
            .arg("--tls-cert")
            .arg(cert)
            .arg("--tls-key")
            .arg(key)
            .args(["--log-format", "json"])
            .args(["--store-namespace", api.store()])
            .args(extra_args)
            .env("KUBECONFIG", kubeconfig)
            .env("RUST_LOG", "debug")
            .envs(env.iter().map(|(name, value)| (name, value)))
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr);
        let mut child = control_plane::spawn_guarded(command).unwrap();
        let (port, admin_port) = bound_ports(&mut child, &dir.path().join("stderr.log"));
        Webhook {
            child,
            port,
            admin_port,
            client: tls_client(ca_pem, true),
            http1_client: tls_client(ca_pem, false),
            dir,
        }
    }

    /// Waits for `/readyz`: the caches listed from the API server (generous: the machine is
    /// shared with builds, and the API server may be busy with other tests).
    pub async fn wait_ready(&mut self) {
        self.wait_until("ready", async |webhook| {
            webhook.admin_get("/readyz").await.0 == 200
        })
        .await;
    }

    /// Waits until the webhook's VaultConfig cache is fresh (`cache_fresh{cache="vault_configs"}`
    /// is 1). Readiness does not wait for it, by design (Vault references alone get a retriable
    /// 503 meanwhile), so a test about Vault's own faults waits for it first.
    pub async fn wait_vault_configs_fresh(&mut self) {
        self.wait_until("a fresh VaultConfig cache", async |webhook| {
            let (_, metrics) = webhook.admin_get("/metrics").await;
            metrics.lines().any(|line| {
                line == r#"iomete_secrets_webhook_cache_fresh{cache="vault_configs"} 1"#
            })
        })
        .await;
    }

    /// Polls `condition` for up to 60 s; fails with the webhook's output if it exits or the time
    /// runs out.
    async fn wait_until(&mut self, what: &str, condition: impl AsyncFn(&Webhook) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if condition(self).await {
                return;
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("the webhook exited with {status}: {}", self.output());
            }
            assert!(
                Instant::now() < deadline,
                "not {what} after 60 s: {}",
                self.output()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn admin_get(&self, path: &str) -> (u16, String) {
        let url = format!("http://127.0.0.1:{}{path}", self.admin_port);
        let client = reqwest::Client::builder().no_hickory_dns().build().unwrap();
        match client.get(url).send().await {
            Ok(response) => (
                response.status().as_u16(),
                response.text().await.unwrap_or_default(),
            ),
            Err(_) => (0, String::new()),
        }
    }

    pub async fn admit_with(&self, client: &reqwest::Client, review: &Value) -> (Value, String) {
        let url = format!("https://localhost:{}/mutate", self.port);
        let response = client.post(url).json(review).send().await.unwrap();
        let version = format!("{:?}", response.version());
        let text = response.text().await.unwrap();
        (serde_json::from_str(&text).unwrap(), version)
    }

    pub async fn admit(&self, review: &Value) -> Value {
        let (answer, version) = self.admit_with(&self.client, review).await;
        assert_eq!(version, "HTTP/2.0", "the API server speaks h2 to webhooks");
        answer
    }

    pub fn output(&self) -> String {
        let read = |name: &str| std::fs::read_to_string(self.dir.path().join(name)).unwrap();
        format!("{}{}", read("stdout.log"), read("stderr.log"))
    }

    /// SIGTERM, then the exit status and everything the process printed.
    pub fn stop(mut self) -> (ExitStatus, String) {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let deadline = Instant::now() + Duration::from_secs(15);
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("the webhook did not stop on SIGTERM: {}", self.output());
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let output = self.output();
        (status, output)
    }
}

impl Drop for Webhook {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn local_names() -> Vec<String> {
    vec!["localhost".to_owned(), "127.0.0.1".to_owned()]
}

pub fn tls_client(ca_pem: &str, http2: bool) -> reqwest::Client {
    tls_client_with_identity(ca_pem, http2, None)
}

pub fn tls_client_with_identity(
    ca_pem: &str,
    http2: bool,
    identity: Option<(&str, &str)>,
) -> reqwest::Client {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let mut config = match identity {
        None => config.with_no_client_auth(),
        Some((cert_pem, key_pem)) => {
            use rustls::pki_types::PrivateKeyDer;
            let chain = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .unwrap();
            let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).unwrap();
            config.with_client_auth_cert(chain, key).unwrap()
        }
    };
    config.alpn_protocols = if http2 {
        vec![b"h2".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    };
    let builder = reqwest::Client::builder()
        .no_hickory_dns()
        .tls_backend_preconfigured(config);
    let builder = if http2 { builder } else { builder.http1_only() };
    builder.build().unwrap()
}

/// The CA the webhook's certificate was issued by (written by `Webhook::start`).
pub fn certs_of(webhook: &Webhook) -> String {
    std::fs::read_to_string(webhook.dir.path().join("ca.crt")).unwrap()
}
