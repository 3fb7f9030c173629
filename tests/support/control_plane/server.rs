//! [`ControlPlane`]: one etcd and one kube-apiserver, their files and their lifecycle.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

mod access;

use super::{
    DIR_PREFIX, PORT_ATTEMPTS, Pki, STARTUP_TIMEOUT, binaries_or_skip, free_port, http, kubeconfig,
    spawn_guarded, stop_at_process_exit, sweep_stale_directories, tail, write_file,
};

/// Level Metadata for everything (who did what, the admission webhooks' annotations, including
/// ours; never a request or response body, since an admitted pod carries injected values),
/// except pods in [`AUDITED_NAMESPACE`], logged at RequestResponse: the broker-mode tests prove
/// no value reaches an audit log that records whole pods, beside an env-mode pod whose values
/// it does record.
const AUDIT_POLICY: &str = "apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  - level: RequestResponse
    resources: [{group: \"\", resources: [pods]}]
    namespaces: [broker-audit]
  - level: Metadata
";

/// The namespace whose pods the audit log records whole (request and response bodies).
pub const AUDITED_NAMESPACE: &str = "broker-audit";

/// A running etcd and kube-apiserver. Dropping an owned one stops both and removes its
/// directory; the [`ControlPlane::shared`] one is stopped by the exit hook.
pub struct ControlPlane {
    bin: PathBuf,
    dir: PathBuf,
    shared: bool,
    etcd_port: AtomicU16,
    etcd_peer_port: AtomicU16,
    api_port: u16,
    ca_pem: String,
    etcd: Mutex<Option<Child>>,
    apiserver: Mutex<Option<Child>>,
}

impl ControlPlane {
    /// The control plane shared by every test of this test binary (started by the first
    /// caller), or `None` when the binaries are missing and this is not CI (a message says so).
    /// Tests that stop or restart a server must use their own [`ControlPlane::start`].
    pub fn shared(test: &str) -> Option<&'static ControlPlane> {
        static SHARED: OnceLock<ControlPlane> = OnceLock::new();
        let bin = binaries_or_skip(test)?;
        Some(SHARED.get_or_init(|| ControlPlane::launch(bin, true)))
    }

    /// A control plane of the caller's own, or `None` (skip) as for [`ControlPlane::shared`].
    pub fn start(test: &str) -> Option<ControlPlane> {
        Some(ControlPlane::launch(binaries_or_skip(test)?, false))
    }

    fn launch(bin: PathBuf, shared: bool) -> ControlPlane {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        sweep_stale_directories();
        let dir = std::env::temp_dir().join(format!(
            "{DIR_PREFIX}{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(dir.join("pki")).unwrap();
        if shared {
            stop_at_process_exit(None, Some(dir.clone()));
        }
        let ca = Pki::new("iomete test control plane CA");
        let (serving_cert, serving_key) =
            ca.leaf("kube-apiserver", None, &["127.0.0.1", "localhost"], true);
        let (admin_cert, admin_key) = ca.leaf("admin", Some("system:masters"), &[], false);
        let sa_key = rcgen::KeyPair::generate().unwrap();
        let pki = dir.join("pki");
        write_file(&pki.join("ca.crt"), &ca.ca_pem);
        write_file(&pki.join("apiserver.crt"), &serving_cert);
        write_file(&pki.join("apiserver.key"), &serving_key);
        write_file(&pki.join("admin.crt"), &admin_cert);
        write_file(&pki.join("admin.key"), &admin_key);
        write_file(&pki.join("service-account.key"), &sa_key.serialize_pem());
        write_file(&pki.join("service-account.pub"), &sa_key.public_key_pem());
        write_file(&dir.join("audit-policy.yaml"), AUDIT_POLICY);
        let mut plane = ControlPlane {
            bin,
            dir,
            shared,
            etcd_port: AtomicU16::new(0),
            etcd_peer_port: AtomicU16::new(0),
            api_port: 0,
            ca_pem: ca.ca_pem.clone(),
            etcd: Mutex::new(None),
            apiserver: Mutex::new(None),
        };
        plane.launch_etcd();
        for attempt in 1..=PORT_ATTEMPTS {
            plane.api_port = free_port();
            let user = json!({
                "client-certificate-data": b64(&admin_cert),
                "client-key-data": b64(&admin_key),
            });
            write_file(
                &plane.admin_kubeconfig(),
                &kubeconfig(&plane.server_url(), &plane.ca_pem, &user),
            );
            match plane.start_apiserver_once() {
                Ok(()) => return plane,
                Err(log) if attempt < PORT_ATTEMPTS && log.contains("address already in use") => {}
                Err(log) => panic!("kube-apiserver did not become ready:\n{log}"),
            }
        }
        unreachable!()
    }

    fn launch_etcd(&self) {
        for attempt in 1..=PORT_ATTEMPTS {
            let (client, peer) = (free_port(), free_port());
            match self.start_etcd_on(client, peer) {
                Ok(()) => return,
                Err(log) if attempt < PORT_ATTEMPTS && log.contains("address already in use") => {
                    let _ = std::fs::remove_dir_all(self.dir.join("etcd"));
                }
                Err(log) => panic!("etcd did not start:\n{log}"),
            }
        }
    }

    /// Starts etcd (its data directory is kept across starts) serving clients on `client`;
    /// `Err` is its log.
    fn start_etcd_on(&self, client: u16, peer: u16) -> Result<(), String> {
        let log = self.dir.join("etcd.log");
        let mut command = Command::new(self.bin.join("etcd"));
        command
            .arg("--name=test")
            .arg(format!("--data-dir={}", self.dir.join("etcd").display()))
            .arg(format!("--listen-client-urls=http://127.0.0.1:{client}"))
            .arg(format!("--advertise-client-urls=http://127.0.0.1:{client}"))
            .arg(format!("--listen-peer-urls=http://127.0.0.1:{peer}"))
            .arg(format!(
                "--initial-advertise-peer-urls=http://127.0.0.1:{peer}"
            ))
            .arg(format!("--initial-cluster=test=http://127.0.0.1:{peer}"))
            .arg("--unsafe-no-fsync=true")
            .arg("--log-level=warn");
        let mut child = self.spawn(command, &log);
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            if http(client, "GET", "/health", None).is_some_and(|body| body.contains("true")) {
                self.etcd_port.store(client, Ordering::SeqCst);
                self.etcd_peer_port.store(peer, Ordering::SeqCst);
                *self.etcd.lock().unwrap() = Some(child);
                return Ok(());
            }
            if child.try_wait().unwrap().is_some() || Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(tail(&log, 30));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Compacts etcd's history while kube-apiserver cannot reach it, the way a long etcd
    /// outage with compaction does: etcd stops, runs on another port (unreachable for the API
    /// server) while its revision moves on and is compacted, and comes back on its port. Every
    /// watch kube-apiserver resumes from before is then compacted (410 Gone inside the API
    /// server), so its watch cache re-lists and ends its clients' watches, whose resumption
    /// from their last resourceVersion is too old: 410 Gone for the clients too (or 429
    /// "storage is (re)initializing" when they come back before the re-list is done).
    pub fn compact_etcd_behind_the_api_server(&self) -> i64 {
        self.write_and_compact_behind_the_api_server(&[])
    }

    /// As [`ControlPlane::compact_etcd_behind_the_api_server`], with `writes` (etcd key, the
    /// object as JSON) stored while etcd is away: changes the API server never sees as events,
    /// as when another API server of an HA control plane took them. The API server learns
    /// them only from its re-list; its clients only from theirs. The API server reads JSON
    /// objects from etcd whatever its storage media type (it recognizes every encoding).
    pub fn write_and_compact_behind_the_api_server(&self, writes: &[(String, Value)]) -> i64 {
        assert!(
            !self.shared,
            "the shared control plane is never restarted by a test"
        );
        let (client, peer) = (self.etcd_port(), self.etcd_peer_port.load(Ordering::SeqCst));
        let stop = |plane: &ControlPlane| {
            if let Some(child) = plane.etcd.lock().unwrap().take() {
                terminate(child, Duration::from_secs(10));
            }
        };
        stop(self);
        self.start_etcd_on(free_port(), peer)
            .unwrap_or_else(|log| panic!("etcd did not start on a side port:\n{log}"));
        for (key, object) in writes {
            let put = json!({"key": b64(key), "value": b64(&object.to_string())}).to_string();
            http(self.etcd_port(), "POST", "/v3/kv/put", Some(&put)).expect("etcd takes a put");
        }
        for value in ["1", "2", "3"] {
            let put = json!({"key": b64("/iomete-test/revision"), "value": b64(value)}).to_string();
            http(self.etcd_port(), "POST", "/v3/kv/put", Some(&put)).expect("etcd takes a put");
        }
        let revision = self.compact_etcd();
        stop(self);
        self.start_etcd_on(client, peer)
            .unwrap_or_else(|log| panic!("etcd did not come back:\n{log}"));
        revision
    }

    fn spawn(&self, mut command: Command, log: &Path) -> Child {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        command
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out);
        let child = spawn_guarded(command).unwrap_or_else(|e| panic!("cannot start {log:?}: {e}"));
        if self.shared {
            stop_at_process_exit(Some(child.id()), None);
        }
        child
    }

    /// Starts kube-apiserver on `self.api_port` and waits for `/readyz`; `Err` is its log.
    fn start_apiserver_once(&self) -> Result<(), String> {
        let pki = self.dir.join("pki");
        let file = |name: &str| pki.join(name).display().to_string();
        let log = self.dir.join("kube-apiserver.log");
        let mut command = Command::new(self.bin.join("kube-apiserver"));
        command
            .arg(format!(
                "--etcd-servers=http://127.0.0.1:{}",
                self.etcd_port()
            ))
            .arg("--bind-address=127.0.0.1")
            .arg("--advertise-address=127.0.0.1")
            .arg(format!("--secure-port={}", self.api_port))
            .arg(format!(
                "--cert-dir={}",
                self.dir.join("apiserver-certs").display()
            ))
            .arg(format!("--tls-cert-file={}", file("apiserver.crt")))
            .arg(format!("--tls-private-key-file={}", file("apiserver.key")))
            .arg(format!("--client-ca-file={}", file("ca.crt")))
            .arg("--authorization-mode=RBAC")
            .arg(format!("--service-account-issuer={}", self.server_url()))
            .arg(format!(
                "--service-account-key-file={}",
                file("service-account.pub")
            ))
            .arg(format!(
                "--service-account-signing-key-file={}",
                file("service-account.key")
            ))
            .arg("--service-cluster-ip-range=10.0.0.0/24")
            .arg("--allow-privileged=true")
            // No controllers run, so no namespace gets a `default` ServiceAccount.
            .arg("--disable-admission-plugins=ServiceAccount")
            .arg(format!(
                "--audit-policy-file={}",
                self.dir.join("audit-policy.yaml").display()
            ))
            .arg(format!(
                "--audit-log-path={}",
                self.audit_log_path().display()
            ))
            .arg("--audit-log-mode=blocking")
            .arg("--profiling=false");
        let mut child = self.spawn(command, &log);
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            let ready = self
                .kubectl_output(&["get", "--raw", "/readyz"], None)
                .is_ok_and(|output| output.status.success());
            if ready {
                *self.apiserver.lock().unwrap() = Some(child);
                return Ok(());
            }
            if child.try_wait().unwrap().is_some() || Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(tail(&log, 40));
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    /// Stops kube-apiserver (SIGTERM, then SIGKILL after 10 s); etcd keeps running.
    pub fn stop_apiserver(&self) {
        assert!(
            !self.shared,
            "the shared control plane is never stopped by a test"
        );
        if let Some(child) = self.apiserver.lock().unwrap().take() {
            terminate(child, Duration::from_secs(10));
        }
    }

    /// Starts kube-apiserver again on the same port over the same etcd, and waits until ready.
    pub fn start_apiserver(&self) {
        assert!(
            !self.shared,
            "the shared control plane is never restarted by a test"
        );
        if let Err(log) = self.start_apiserver_once() {
            panic!("kube-apiserver did not come back:\n{log}");
        }
    }

    pub fn restart_apiserver(&self) {
        self.stop_apiserver();
        self.start_apiserver();
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        if let Some(child) = self
            .apiserver
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            terminate(child, Duration::from_secs(10));
        }
        if let Some(child) = self
            .etcd
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            terminate(child, Duration::from_secs(5));
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// SIGTERM, then SIGKILL after `grace`; reaps the child.
pub fn terminate(mut child: Child, grace: Duration) {
    // SAFETY: a plain signal to our own child, which has not been reaped yet.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if child.try_wait().ok().flatten().is_some() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

fn b64(text: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(text)
}
