//! The installed `kubectl`, run as a real process against the fake through the kubeconfig
//! the fake writes. Each test prints a note and passes when kubectl is not on PATH.

mod common;

use std::path::PathBuf;
use std::process::Output;

use common::within;
use kube_fake::FakeApiServer;
use serde_json::Value;
use tempfile::TempDir;

/// kubectl pointed at one fake, with its discovery cache in a temporary directory.
struct Kubectl {
    kubeconfig: PathBuf,
    directory: TempDir,
}

impl Kubectl {
    /// `None` (after printing why) when kubectl is not installed.
    async fn for_fake(fake: &FakeApiServer) -> Option<Self> {
        let probe = tokio::process::Command::new("kubectl")
            .args(["version", "--client"])
            .output()
            .await;
        if probe.is_err() {
            eprintln!("note: kubectl is not on PATH; skipping this kubectl test");
            return None;
        }
        let directory = tempfile::tempdir().expect("a temporary directory");
        let kubeconfig = fake.write_kubeconfig(directory.path());
        Some(Self {
            kubeconfig,
            directory,
        })
    }

    async fn run(&self, args: &[&str]) -> Output {
        // tokio's Command: the fake is served by this same runtime, so the test must not
        // block a thread while kubectl talks to it.
        let command = tokio::process::Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--cache-dir")
            .arg(self.directory.path().join("cache"))
            .args(args)
            .env("HOME", self.directory.path())
            .kill_on_drop(true)
            .output();
        within(&format!("kubectl {args:?}"), command)
            .await
            .expect("kubectl runs")
    }

    /// Runs kubectl, requires success and returns its standard output.
    async fn succeed(&self, args: &[&str]) -> String {
        let output = self.run(args).await;
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "kubectl {args:?} failed: {stderr}");
        String::from_utf8(output.stdout).expect("kubectl prints UTF-8")
    }
}

#[tokio::test]
async fn kubectl_get_namespaces_lists_them() {
    let fake = FakeApiServer::start().await;
    fake.apply_namespace("team-a", &[]);
    fake.apply_namespace("team-b", &[]);
    let Some(kubectl) = Kubectl::for_fake(&fake).await else {
        return;
    };
    let stdout = kubectl.succeed(&["get", "namespaces"]).await;
    let names: Vec<&str> = stdout
        .lines()
        .skip(1)
        .filter_map(|line| line.split_whitespace().next())
        .collect();
    assert_eq!(names, ["team-a", "team-b"], "{stdout}");
    assert!(stdout.starts_with("NAME"), "{stdout}");
}

#[tokio::test]
async fn kubectl_get_secrets_as_json_returns_the_stored_objects() {
    let fake = FakeApiServer::start().await;
    fake.apply_namespace("team-a", &[]);
    fake.apply_secret("team-a", "db", &[("password", b"hunter2")]);
    let Some(kubectl) = Kubectl::for_fake(&fake).await else {
        return;
    };
    let stdout = kubectl
        .succeed(&["get", "secrets", "-n", "team-a", "-o", "json"])
        .await;
    let list: Value = serde_json::from_str(&stdout).expect("kubectl prints JSON");
    let items = list["items"].as_array().expect("a list");
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["metadata"]["name"], "db");
    assert_eq!(items[0]["data"]["password"], "aHVudGVyMg==");
    assert_eq!(items[0], fake.secret("team-a", "db").unwrap());
}

#[tokio::test]
async fn kubectl_creates_and_labels_a_namespace() {
    let fake = FakeApiServer::start().await;
    let Some(kubectl) = Kubectl::for_fake(&fake).await else {
        return;
    };
    let stdout = kubectl.succeed(&["create", "namespace", "team-a"]).await;
    assert_eq!(stdout.trim(), "namespace/team-a created");
    let stdout = kubectl
        .succeed(&[
            "label",
            "namespace",
            "team-a",
            "iomete.com/managed=true",
            "--overwrite",
        ])
        .await;
    assert_eq!(stdout.trim(), "namespace/team-a labeled");
    kubectl
        .succeed(&[
            "label",
            "namespace",
            "team-a",
            "iomete.com/managed=false",
            "--overwrite",
        ])
        .await;
    let namespace = fake.namespace("team-a").expect("kubectl created it");
    assert_eq!(
        namespace["metadata"]["labels"]["iomete.com/managed"],
        "false"
    );
    assert_eq!(
        namespace["metadata"]["labels"]["kubernetes.io/metadata.name"],
        "team-a"
    );

    let again = kubectl.run(&["create", "namespace", "team-a"]).await;
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("AlreadyExists"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
}

#[tokio::test]
async fn kubectl_creates_and_deletes_a_secret() {
    let fake = FakeApiServer::start().await;
    fake.apply_namespace("team-a", &[]);
    let Some(kubectl) = Kubectl::for_fake(&fake).await else {
        return;
    };
    let stdout = kubectl
        .succeed(&[
            "create",
            "secret",
            "generic",
            "db",
            "-n",
            "team-a",
            "--from-literal=user=admin",
        ])
        .await;
    assert_eq!(stdout.trim(), "secret/db created");
    let secret = fake.secret("team-a", "db").expect("kubectl created it");
    assert_eq!(secret["data"]["user"], "YWRtaW4=");
    assert_eq!(secret["type"], "Opaque");
    assert!(secret["metadata"].get("generateName").is_none());

    let stdout = kubectl
        .succeed(&["delete", "secret", "db", "-n", "team-a"])
        .await;
    assert_eq!(stdout.trim(), "secret \"db\" deleted");
    assert!(fake.secret("team-a", "db").is_none());

    let missing = kubectl.run(&["get", "secret", "db", "-n", "team-a"]).await;
    assert!(!missing.status.success());
    assert_eq!(
        String::from_utf8_lossy(&missing.stderr).trim(),
        "Error from server (NotFound): secrets \"db\" not found"
    );
}
