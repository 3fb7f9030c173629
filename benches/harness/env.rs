//! What the harness runs the servers against and how it runs them: a real kube-apiserver and
//! etcd (the tests' control plane harness, `tests/support/control_plane/`, with the binaries
//! `scripts/ensure-control-plane.sh` builds) seeded with namespaces, stores and VaultConfigs; a
//! real OpenBao (dev mode, file audit device) holding the Vault secrets and an AppRole; the
//! serving certificates; and the server processes (the release webhook binary and the two
//! baselines), with their memory read from `/proc`.

use std::fs::File;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use iomete_secrets_webhook::boot::certs;
use serde_json::{Value, json};

use crate::common::{
    FINANCE_NAMESPACE, FINANCE_STORE, GLOBAL_STORE, MARKETING_NAMESPACE, STORE_NAMESPACE,
    VAULT_CONFIG, VAULT_DB_SECRET,
};
use crate::control_plane::{self, Admin, ControlPlane};
use crate::support::openbao::OpenBao;

const WEBHOOK_BINARY: &str = env!("CARGO_BIN_EXE_iomete-secrets-webhook");
/// The KV v2 mount and prefix the VaultConfig reads under.
pub const VAULT_MOUNT: &str = "secret";
pub const VAULT_PREFIX: &str = "bench";
/// The VaultConfig whose Vault is reached through [`delayed_proxy`].
pub const REMOTE_VAULT_CONFIG: &str = "vault-finance-remote";
/// The AppRole mount the remote VaultConfig logs in at.
const REMOTE_APPROLE_MOUNT: &str = "approle-remote";
/// How long a server may take to come up (the machine is shared with builds).
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// The API server, OpenBao and the certificates, seeded for the benchmark.
pub struct Environment {
    /// Held for its lifetime: dropping it stops kube-apiserver and etcd (they also die with the
    /// process, however it ends).
    _plane: ControlPlane,
    admin: Admin,
    pub bao: OpenBao,
    pub dir: tempfile::TempDir,
    pub ca_pem: String,
    kubeconfig: PathBuf,
}

impl Environment {
    pub async fn start() -> anyhow::Result<Environment> {
        let dir = tempfile::tempdir()?;
        let bundle = certs::generate(&["localhost".to_owned(), "127.0.0.1".to_owned()])?;
        certs::write(&bundle, dir.path())?;
        let bao = OpenBao::start().await;
        let admin = bao.admin();
        admin
            .kv_put(
                VAULT_MOUNT,
                &format!("{VAULT_PREFIX}/{VAULT_DB_SECRET}"),
                json!({"password": "vault-db-password", "username": "spark"}),
            )
            .await;
        admin
            .write_policy(
                "bench-read",
                &format!(
                    r#"path "{VAULT_MOUNT}/data/{VAULT_PREFIX}/*" {{ capabilities = ["read"] }}"#
                ),
            )
            .await;
        admin.enable_approle("approle").await;
        let (role_id, secret_id) = admin
            .approle_role("approle", "webhook", &["bench-read"], "1h", "4h")
            .await;
        // The remote configuration logs in at a mount of its own, so that the audit log tells
        // its logins apart.
        admin.enable_approle(REMOTE_APPROLE_MOUNT).await;
        let (remote_role_id, remote_secret_id) = admin
            .approle_role(REMOTE_APPROLE_MOUNT, "webhook", &["bench-read"], "1h", "4h")
            .await;

        control_plane::binaries().map_err(anyhow::Error::msg)?;
        let plane = tokio::task::block_in_place(|| {
            let plane = ControlPlane::start("the benchmark harness")?;
            plane.install_vaultconfig_crd();
            Some(plane)
        })
        .context("the control plane")?;
        let admin = plane.admin().await;
        admin.apply_namespace(STORE_NAMESPACE, &[]).await;
        admin
            .apply_namespace(FINANCE_NAMESPACE, &[("iomete.com/domain", "finance")])
            .await;
        admin
            .apply_namespace(MARKETING_NAMESPACE, &[("iomete.com/domain", "marketing")])
            .await;
        let bytes = |pairs: &[(&'static str, &'static str)]| -> Vec<(&'static str, &'static [u8])> {
            pairs.iter().map(|(k, v)| (*k, v.as_bytes())).collect()
        };
        admin
            .apply_secret(
                STORE_NAMESPACE,
                "iomete-secret-store-finance",
                &bytes(FINANCE_STORE),
            )
            .await;
        admin
            .apply_secret(STORE_NAMESPACE, "iomete-secret-store", &bytes(GLOBAL_STORE))
            .await;
        // Two configurations of the same Vault: one direct, one through a proxy that puts it
        // a WAN round trip away, as a customer's Vault usually is.
        let remote = delayed_proxy(bao.port(), vault_delay()).await?;
        let remote_host = format!("http://127.0.0.1:{}", remote.port());
        admin
            .apply_secret(
                STORE_NAMESPACE,
                "iomete-vault-credentials-finance",
                &[
                    (&format!("{VAULT_CONFIG}.roleId"), role_id.as_bytes()),
                    (&format!("{VAULT_CONFIG}.secretId"), secret_id.as_bytes()),
                    (
                        &format!("{REMOTE_VAULT_CONFIG}.roleId"),
                        remote_role_id.as_bytes(),
                    ),
                    (
                        &format!("{REMOTE_VAULT_CONFIG}.secretId"),
                        remote_secret_id.as_bytes(),
                    ),
                ],
            )
            .await;
        for (name, host, mount) in [
            (VAULT_CONFIG, bao.address(), "approle"),
            (REMOTE_VAULT_CONFIG, remote_host, REMOTE_APPROLE_MOUNT),
        ] {
            admin
                .apply_vault_config(
                    STORE_NAMESPACE,
                    name,
                    json!({
                        "domain": "finance",
                        "host": host,
                        "path": format!("/v1/{VAULT_MOUNT}/data/{VAULT_PREFIX}"),
                        "layout": "SecretPerKey",
                        "auth": {"method": "AppRole", "mount": mount},
                    }),
                )
                .await;
        }
        let kubeconfig = plane.admin_kubeconfig();
        Ok(Environment {
            _plane: plane,
            admin,
            bao,
            ca_pem: bundle.ca_pem,
            kubeconfig,
            dir,
        })
    }

    /// Adds `domains` domains, each with a namespace and a store of `keys` keys of 64 bytes.
    pub async fn add_domain_stores(&self, domains: usize, keys: usize) {
        for domain in 0..domains {
            let name = format!("bench-domain-{domain:03}");
            self.admin
                .apply_namespace(&format!("{name}-jobs"), &[("iomete.com/domain", &name)])
                .await;
            let values: Vec<(String, Vec<u8>)> = (0..keys)
                .map(|key| (format!("key-{key:03}"), value_bytes(domain * keys + key)))
                .collect();
            let data: Vec<(&str, &[u8])> = values
                .iter()
                .map(|(key, value)| (key.as_str(), value.as_slice()))
                .collect();
            self.admin
                .apply_secret(
                    STORE_NAMESPACE,
                    &format!("iomete-secret-store-{name}"),
                    &data,
                )
                .await;
        }
    }

    /// Writes `count` Vault secrets (field `password`, 64 bytes) under the prefix; returns
    /// their keys as references name them.
    pub async fn put_vault_secrets(&self, count: usize) -> Vec<String> {
        let names: Vec<String> = (0..count).map(|index| format!("mem/s{index:04}")).collect();
        let admin = self.bao.admin();
        let numbered: Vec<(usize, &String)> = names.iter().enumerate().collect();
        for chunk in numbered.chunks(16) {
            futures::future::join_all(chunk.iter().map(|(index, name)| async move {
                let value = String::from_utf8(value_bytes(*index)).expect("ASCII");
                let path = format!("{VAULT_PREFIX}/{name}");
                admin
                    .kv_put(VAULT_MOUNT, &path, json!({ "password": value }))
                    .await
            }))
            .await;
        }
        names
    }

    /// Reads of the Vault secret `key` (under the prefix) that OpenBao's audit log holds.
    pub fn vault_reads(&self, key: &str) -> usize {
        self.bao
            .admin()
            .audit_reads(&format!("{VAULT_MOUNT}/data/{VAULT_PREFIX}/{key}"))
    }

    /// Logins of the remote VaultConfig that OpenBao's audit log holds.
    pub fn remote_vault_logins(&self) -> usize {
        let path = format!("auth/{REMOTE_APPROLE_MOUNT}/login");
        self.bao
            .admin()
            .audit_requests(|entry| entry["request"]["path"] == path.as_str())
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The `system:masters` client the harness writes objects with (the broker phase's pods
    /// and tokens).
    pub fn admin_client(&self) -> kube::Client {
        self.admin.client.clone()
    }

    /// Starts the release webhook binary with the benchmark's TLS pair and KUBECONFIG.
    pub fn spawn_webhook(&self, extra_args: &[&str]) -> anyhow::Result<Server> {
        let (port, admin_port) = (free_port()?, free_port()?);
        let log = self.path(&format!("webhook-{port}.log"));
        let mut command = Command::new(WEBHOOK_BINARY);
        command
            .arg("serve")
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--admin-listen", &format!("127.0.0.1:{admin_port}")])
            .arg("--tls-cert")
            .arg(self.path("tls.crt"))
            .arg("--tls-key")
            .arg(self.path("tls.key"))
            .args(extra_args)
            .env("KUBECONFIG", &self.kubeconfig)
            // The production default: one info line per admission, written as it would be to
            // the container's stdout.
            .env("RUST_LOG", "info");
        // An experiment knob, off by default: another malloc (e.g. Debian's libjemalloc2 or
        // libmimalloc2.0) under the unchanged binary, to measure what switching would give.
        if let Some(library) = std::env::var_os("BENCH_WEBHOOK_PRELOAD") {
            command.env("LD_PRELOAD", library);
        }
        Server::spawn(command, port, Some(admin_port), log)
    }

    /// Starts a baseline (this harness binary re-executed) with the same TLS pair: the
    /// fixed-bytes one, or with `parse` the parse-and-answer one (see baseline.rs).
    pub fn spawn_baseline(&self, answers: &Path, parse: bool) -> anyhow::Result<Server> {
        let port = free_port()?;
        // Inherited by the child: BENCH_BASELINE_NODELAY=0 leaves Nagle's algorithm on for its
        // sockets (see baseline.rs).
        let log = self.path(&format!("baseline-{port}.log"));
        let mut command = Command::new(std::env::current_exe()?);
        command
            .arg("baseline")
            .args(parse.then_some("--parse"))
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .arg("--tls-cert")
            .arg(self.path("tls.crt"))
            .arg("--tls-key")
            .arg(self.path("tls.key"))
            .arg("--answers")
            .arg(answers);
        Server::spawn(command, port, None, log)
    }
}

/// The one-way delay of the proxy in front of the remote Vault: `BENCH_VAULT_DELAY_MS`,
/// default 10 ms (a 20 ms round trip).
pub fn vault_delay() -> Duration {
    let millis = std::env::var("BENCH_VAULT_DELAY_MS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(10);
    Duration::from_millis(millis)
}

/// A TCP proxy on 127.0.0.1 to `port` that holds every chunk for `delay` in each direction.
async fn delayed_proxy(port: u16, delay: Duration) -> anyhow::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((inbound, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(outbound) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
                    return;
                };
                let (from_client, to_client) = inbound.into_split();
                let (from_vault, to_vault) = outbound.into_split();
                tokio::join!(
                    relay(from_client, to_vault, delay),
                    relay(from_vault, to_client, delay)
                );
            });
        }
    });
    Ok(address)
}

async fn relay(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    delay: Duration,
) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut buffer = vec![0; 64 * 1024];
    while let Ok(read @ 1..) = from.read(&mut buffer).await {
        tokio::time::sleep(delay).await;
        if to.write_all(&buffer[..read]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

/// 64 printable bytes, different for each `seed`: a password-sized value.
fn value_bytes(seed: usize) -> Vec<u8> {
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut state = (seed as u64)
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..64)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            alphabet[(state >> 58) as usize]
        })
        .collect()
}

pub fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Resident memory of a process, from `/proc/PID/status`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Memory {
    /// `VmRSS`: resident now.
    pub rss_kib: u64,
    /// `VmHWM`: the most it has been resident.
    pub peak_kib: u64,
}

/// A server child process: the webhook or a baseline. Killed when dropped.
pub struct Server {
    child: Child,
    pub port: u16,
    admin_port: Option<u16>,
    log: PathBuf,
    spawned: Instant,
}

impl Server {
    fn spawn(
        mut command: Command,
        port: u16,
        admin_port: Option<u16>,
        log: PathBuf,
    ) -> anyhow::Result<Server> {
        // Appending, so that truncating the file between runs keeps later writes at its start.
        let output = File::options().create(true).append(true).open(&log)?;
        let child = command
            .stdin(Stdio::null())
            .stdout(output.try_clone()?)
            .stderr(output)
            .spawn()
            .with_context(|| format!("starting {command:?}"))?;
        Ok(Server {
            child,
            port,
            admin_port,
            log,
            spawned: Instant::now(),
        })
    }

    /// Waits until the server is ready (the webhook's `/readyz` answers 200, a baseline
    /// accepts connections); returns the time from spawn to ready.
    pub async fn wait_ready(&mut self) -> anyhow::Result<Duration> {
        let deadline = self.spawned + START_TIMEOUT;
        loop {
            let ready = match self.admin_port {
                Some(_) => self
                    .admin_get("/readyz")
                    .await
                    .is_some_and(|(status, _)| status == 200),
                None => tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                    .await
                    .is_ok(),
            };
            if ready {
                return Ok(self.spawned.elapsed());
            }
            if let Some(status) = self.child.try_wait()? {
                bail!("the server exited with {status}: {}", self.log_tail());
            }
            if Instant::now() > deadline {
                bail!(
                    "the server was not ready in {START_TIMEOUT:?}: {}",
                    self.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// A plain-HTTP GET on the webhook's admin port: (status, body).
    pub async fn admin_get(&self, path: &str) -> Option<(u16, String)> {
        let url = format!("http://127.0.0.1:{}{path}", self.admin_port?);
        let response = admin_client().get(url).send().await.ok()?;
        let status = response.status().as_u16();
        Some((status, response.text().await.ok()?))
    }

    /// The webhook's metric `name` from `/metrics`, summed over the label sets that contain
    /// every one of `labels` (e.g. `result="coalesced"`).
    pub async fn metric(&self, name: &str, labels: &[&str]) -> f64 {
        let Some((200, text)) = self.admin_get("/metrics").await else {
            return f64::NAN;
        };
        text.lines()
            .filter(|line| {
                line.strip_prefix(name)
                    .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
                    && labels.iter().all(|label| line.contains(label))
            })
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .fold(0.0, |sum, value| sum + value)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn memory(&self) -> Memory {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|line| line.strip_prefix(name))
                .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
                .unwrap_or(0)
        };
        Memory {
            rss_kib: field("VmRSS:"),
            peak_kib: field("VmHWM:"),
        }
    }

    /// Empties the server's log (one line per admission adds up over a run).
    pub fn truncate_log(&self) {
        if let Ok(file) = File::options().write(true).open(&self.log) {
            let _ = file.set_len(0);
        }
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// SIGTERM (the webhook drains and exits), then waits; SIGKILL after 15 s.
    pub fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn admin_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_hickory_dns()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("a plain HTTP client")
}

/// The answer's decision: `Ok(true)` allowed with a patch, `Ok(false)` allowed untouched,
/// `Err(code)` denied with that code.
pub fn decision(answer: &Value) -> Result<bool, u64> {
    let response = &answer["response"];
    if response["allowed"] == json!(true) {
        Ok(response["patch"].is_string())
    } else {
        Err(response["status"]["code"].as_u64().unwrap_or(0))
    }
}
