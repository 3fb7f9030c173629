//! [`ControlPlane`]'s accessors: addresses, kubeconfigs, kubectl, the audit log, etcd.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::Ordering;

use serde_json::{Value, json};

use super::super::{http, kubeconfig, write_file};
use super::ControlPlane;

impl ControlPlane {
    /// etcd's current revision (through its JSON gateway).
    pub fn etcd_revision(&self) -> i64 {
        let body = http(
            self.etcd_port(),
            "POST",
            "/v3/kv/range",
            Some(r#"{"key":"AA=="}"#),
        )
        .expect("etcd answers");
        let answer: Value = serde_json::from_str(&body).unwrap();
        answer["header"]["revision"]
            .as_str()
            .and_then(|revision| revision.parse().ok())
            .unwrap_or_else(|| panic!("no revision in {body}"))
    }

    /// Compacts etcd's history up to its current revision, as `etcdctl compact` does: a watch
    /// from an older resourceVersion then gets 410 Gone. Returns the revision.
    pub fn compact_etcd(&self) -> i64 {
        let revision = self.etcd_revision();
        let request = json!({"revision": revision.to_string(), "physical": true}).to_string();
        let body = http(
            self.etcd_port(),
            "POST",
            "/v3/kv/compaction",
            Some(&request),
        )
        .expect("etcd answers");
        assert!(body.contains("header"), "compaction failed: {body}");
        revision
    }

    pub fn etcd_port(&self) -> u16 {
        self.etcd_port.load(Ordering::SeqCst)
    }

    pub fn server_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.api_port)
    }

    pub fn api_port(&self) -> u16 {
        self.api_port
    }

    /// kube-apiserver's address, for a proxy in front of it.
    pub fn api_address(&self) -> std::net::SocketAddr {
        std::net::SocketAddr::from(([127, 0, 0, 1], self.api_port))
    }

    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    pub fn bin_dir(&self) -> &Path {
        &self.bin
    }

    /// The kubeconfig of the `system:masters` admin.
    pub fn admin_kubeconfig(&self) -> PathBuf {
        self.dir.join("admin.kubeconfig")
    }

    /// A kubeconfig file (in the control plane's directory) authenticating with `token`.
    pub fn token_kubeconfig(&self, name: &str, token: &str) -> PathBuf {
        self.token_kubeconfig_at(name, token, &self.server_url())
    }

    /// As [`ControlPlane::token_kubeconfig`], for the API server reached at `server` (a proxy).
    pub fn token_kubeconfig_at(&self, name: &str, token: &str, server: &str) -> PathBuf {
        let path = self.dir.join(format!("{name}.kubeconfig"));
        let text = kubeconfig(server, &self.ca_pem, &json!({ "token": token }));
        write_file(&path, &text);
        path
    }

    pub fn audit_log_path(&self) -> PathBuf {
        self.dir.join("audit.log")
    }

    /// Every audit event the API server has written so far.
    pub fn audit_events(&self) -> Vec<Value> {
        std::fs::read_to_string(self.audit_log_path())
            .unwrap_or_default()
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    }

    /// `kubectl` as the admin, with its discovery cache inside the control plane's directory.
    pub fn kubectl(&self) -> Command {
        let mut command = Command::new(self.bin.join("kubectl"));
        command
            .arg(format!(
                "--kubeconfig={}",
                self.admin_kubeconfig().display()
            ))
            .env("KUBECACHEDIR", self.dir.join("kubectl-cache"))
            .env_remove("KUBECONFIG");
        command
    }

    /// Runs kubectl with `args` (and `stdin`), returning its output whatever its status.
    pub fn kubectl_output(&self, args: &[&str], stdin: Option<&str>) -> std::io::Result<Output> {
        let mut command = self.kubectl();
        command
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        command.stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
        let mut child = command.spawn()?;
        if let Some(input) = stdin {
            child.stdin.take().unwrap().write_all(input.as_bytes())?;
        }
        child.wait_with_output()
    }

    /// Runs kubectl and returns its stdout; panics with its stderr when it fails.
    pub fn kubectl_ok(&self, args: &[&str], stdin: Option<&str>) -> String {
        let output = self.kubectl_output(args, stdin).expect("kubectl runs");
        assert!(
            output.status.success(),
            "kubectl {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    }

    /// A kube client as the admin.
    pub async fn client(&self) -> kube::Client {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let kubeconfig = kube::config::Kubeconfig::read_from(self.admin_kubeconfig()).unwrap();
        let options = kube::config::KubeConfigOptions::default();
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &options)
            .await
            .unwrap();
        kube::Client::try_from(config).unwrap()
    }

    /// The directory holding the control plane's files (logs, certificates, kubeconfigs).
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}
