//! A real Kubernetes control plane for tests: etcd and kube-apiserver (built from their Go
//! modules by `scripts/ensure-control-plane.sh`) on free ports of 127.0.0.1, in a temporary
//! directory, configured the way controller-runtime's envtest configures them: serving
//! certificates, a service-account issuer and signing key (so `kubectl create token` works),
//! `--authorization-mode=RBAC`, an admin client certificate in `system:masters`, the
//! `ServiceAccount` admission plugin off (no controllers run, so no `default` ServiceAccount
//! appears in a namespace), plus an audit policy (Metadata level: never request bodies, which
//! would carry injected values) and `--audit-log-path`, so tests can read what the API server
//! recorded.
//!
//! No controller-manager, scheduler or kubelet runs: created pods stay `Pending` forever, and
//! deleted namespaces never finish terminating. Tests therefore give each case fresh names.
//!
//! Every process is started by one long-lived thread with `PR_SET_PDEATHSIG` (the signal fires
//! when the *thread* that forked the child exits, so short-lived test threads must not spawn
//! them), so an aborted or killed test binary takes its servers with it. A normal exit, even
//! after failed tests, also runs an `atexit` hook that stops them gracefully and removes their
//! directories; directories left by killed runs are swept at the next start.
//!
//! Binaries: `IOMETE_CONTROL_PLANE_BIN`, else the cache directory the script fills. When they
//! are missing a test skips with a message saying how to build them, unless `CI` is set (to
//! anything but empty, `false` or `0`) or `IOMETE_CONTROL_PLANE_BIN` names a directory: then it
//! fails.
//!
//! Why not the `envtest` crate (kube-rs's wrapper of controller-runtime's envtest): see the
//! README's "Cluster tests" section.

#![allow(dead_code)]
// each includer (tests, the benchmark harness, the demo) uses its own subset
// The one place the package uses unsafe code: fork/exec hooks and signals to our own children,
// each block with its SAFETY argument.
#![allow(unsafe_code)]

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use base64::Engine as _;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

/// How long etcd plus kube-apiserver may take to answer `/readyz` (usually 5 to 15 s; this
/// machine is shared by parallel builds and tests).
const STARTUP_TIMEOUT: Duration = Duration::from_secs(120);
/// How many fresh ports a start tries when another process takes a chosen one first.
const PORT_ATTEMPTS: usize = 3;
/// Prefix of the temporary directories (followed by the owner's pid), for the sweep.
const DIR_PREFIX: &str = "iomete-control-plane-";

/// The directory holding `etcd`, `kube-apiserver` and `kubectl`, or why it cannot be used.
pub fn binaries() -> Result<PathBuf, String> {
    let explicit = std::env::var_os("IOMETE_CONTROL_PLANE_BIN").map(PathBuf::from);
    let dir = explicit.clone().unwrap_or_else(default_bin_dir);
    let missing: Vec<&str> = ["etcd", "kube-apiserver", "kubectl"]
        .into_iter()
        .filter(|tool| !dir.join(tool).is_file())
        .collect();
    if missing.is_empty() {
        return Ok(dir);
    }
    Err(format!(
        "{} missing in {}{}; build them once with `bash scripts/ensure-control-plane.sh` \
         (many minutes the first time, seconds afterwards)",
        missing.join(", "),
        dir.display(),
        if explicit.is_some() {
            " (IOMETE_CONTROL_PLANE_BIN)"
        } else {
            ""
        },
    ))
}

/// The bin directory `scripts/ensure-control-plane.sh` fills, for the pinned version.
fn default_bin_dir() -> PathBuf {
    let go_mod = concat!(env!("CARGO_MANIFEST_DIR"), "/tools/control-plane/go.mod");
    let text = std::fs::read_to_string(go_mod).unwrap_or_else(|e| panic!("{go_mod}: {e}"));
    let version = text
        .lines()
        .find_map(|line| line.trim().strip_prefix("require k8s.io/kubernetes "))
        .unwrap_or_else(|| panic!("{go_mod} has no `require k8s.io/kubernetes` line"))
        .trim()
        .to_owned();
    let cache = std::env::var_os("IOMETE_CONTROL_PLANE_CACHE")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("XDG_CACHE_HOME")
                .map(|xdg| PathBuf::from(xdg).join("iomete-secrets-webhook/control-plane"))
        })
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
                .join(".cache/iomete-secrets-webhook/control-plane")
        });
    cache.join(version).join("bin")
}

/// `Some(bin dir)`, or `None` after printing why the test skips; panics instead in CI.
pub fn binaries_or_skip(test: &str) -> Option<PathBuf> {
    match binaries() {
        Ok(dir) => Some(dir),
        Err(why) if in_ci() || std::env::var_os("IOMETE_CONTROL_PLANE_BIN").is_some() => {
            panic!(
                "{test}: the control plane is required here (CI or IOMETE_CONTROL_PLANE_BIN set) and not available: {why}"
            )
        }
        Err(why) => {
            // Straight to the process's stderr: the test harness would capture eprintln!.
            let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {why}");
            None
        }
    }
}

/// True under CI (`CI` set to anything but empty, `false` or `0`): missing tools fail tests.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|ci| !matches!(ci.as_str(), "" | "false" | "0"))
}

// ---- processes: spawned by one long-lived thread, stopped at exit ----

type SpawnRequest = (Command, mpsc::Sender<std::io::Result<Child>>);

/// Spawns `command` from the harness's long-lived thread, with `PR_SET_PDEATHSIG` = SIGKILL, so
/// the child dies with the test process however it ends.
pub fn spawn_guarded(command: Command) -> std::io::Result<Child> {
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<SpawnRequest>>> = OnceLock::new();
    let sender = SPAWNER.get_or_init(|| {
        let (sender, requests) = mpsc::channel::<SpawnRequest>();
        std::thread::Builder::new()
            .name("control-plane-spawner".into())
            .spawn(move || {
                // Lives as long as the process: the sender is in a static, never dropped.
                for (mut command, reply) in requests {
                    let _ = reply.send(command.spawn());
                }
            })
            .expect("the spawner thread starts");
        Mutex::new(sender)
    });
    let (reply, answer) = mpsc::channel();
    let mut command = command;
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: only async-signal-safe calls (prctl, getppid) between fork and exec.
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The parent may have died before prctl took effect.
            if libc::getppid() != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
    sender
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .send((command, reply))
        .expect("the spawner thread runs");
    answer.recv().expect("the spawner thread answers")
}

/// What the `atexit` hook stops and removes: process ids and directories of shared fixtures.
static AT_EXIT: Mutex<(Vec<u32>, Vec<PathBuf>)> = Mutex::new((Vec::new(), Vec::new()));

extern "C" fn stop_at_exit() {
    let (pids, dirs) = std::mem::take(&mut *AT_EXIT.lock().unwrap_or_else(|p| p.into_inner()));
    for pid in &pids {
        // SAFETY: plain signal to a child we started.
        unsafe { libc::kill(*pid as libc::pid_t, libc::SIGTERM) };
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    for pid in &pids {
        while alive(*pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        // SAFETY: as above.
        unsafe { libc::kill(*pid as libc::pid_t, libc::SIGKILL) };
    }
    for dir in dirs {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// True while `pid` runs (a zombie counts as gone; reaping it is the owner's business).
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// Registers a shared fixture's process and directory with the `atexit` hook.
pub fn stop_at_process_exit(pid: Option<u32>, dir: Option<PathBuf>) {
    static HOOK: OnceLock<()> = OnceLock::new();
    HOOK.get_or_init(|| {
        // SAFETY: registering a plain extern "C" function.
        unsafe { libc::atexit(stop_at_exit) };
    });
    let mut guard = AT_EXIT.lock().unwrap_or_else(|p| p.into_inner());
    guard.0.extend(pid);
    guard.1.extend(dir);
}

/// Removes directories of earlier runs whose process is gone (killed before its exit hook).
fn sweep_stale_directories() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(owner) = name
            .strip_prefix(DIR_PREFIX)
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if owner != std::process::id() && !alive(owner) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port on 127.0.0.1")
        .port()
}

/// The last `lines` lines of a log file, for failure messages.
pub fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

// ---- certificates ----

/// A CA of the control plane and the files made from it.
struct Pki {
    ca_pem: String,
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Pki {
    fn new(name: &str) -> Pki {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        Pki {
            ca_pem: issuer.pem(),
            issuer,
        }
    }

    /// `(certificate, key)` PEM for a server (`names` may be IP addresses) or a client.
    fn leaf(
        &self,
        common_name: &str,
        organization: Option<&str>,
        names: &[&str],
        server: bool,
    ) -> (String, String) {
        let names: Vec<String> = names.iter().map(|name| name.to_string()).collect();
        let mut params = CertificateParams::new(names).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        if let Some(organization) = organization {
            params
                .distinguished_name
                .push(DnType::OrganizationName, organization);
        }
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![if server {
            ExtendedKeyUsagePurpose::ServerAuth
        } else {
            ExtendedKeyUsagePurpose::ClientAuth
        }];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

fn write_file(path: &Path, contents: &str) {
    let mut file =
        std::fs::File::create(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    file.write_all(contents.as_bytes()).unwrap();
}

/// A kubeconfig for `server` trusting `ca_pem`, authenticating with `user` (`client-certificate-data`
/// and `client-key-data`, or `token`).
pub fn kubeconfig(server: &str, ca_pem: &str, user: &serde_json::Value) -> String {
    let b64 = |text: &str| base64::engine::general_purpose::STANDARD.encode(text);
    serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "test", "cluster": {
            "server": server,
            "certificate-authority-data": b64(ca_pem),
        }}],
        "users": [{"name": "test", "user": user}],
        "contexts": [{"name": "test", "context": {"cluster": "test", "user": "test"}}],
        "current-context": "test",
    })
    .to_string()
}

/// A plain HTTP/1.0 request to 127.0.0.1:`port`; the body of a 200 answer.
pub fn http(port: u16, method: &str, path: &str, body: Option<&str>) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    let body = body.unwrap_or("");
    let request = format!(
        "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    let (head, body) = answer.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?;
    (status == "200").then(|| body.to_owned())
}

/// `GET http://127.0.0.1:PORT/PATH`: the body when the answer is 200.
pub fn http_get(port: u16, path: &str) -> Option<String> {
    http(port, "GET", path, None)
}

mod objects;
mod server;
#[allow(unused_imports)]
pub use objects::{Admin, service_account_user};
#[allow(unused_imports)]
pub use server::{AUDITED_NAMESPACE, ControlPlane, terminate};
