//! The installed `kubectl`, run as a real process against the fake through the kubeconfig
//! the fake writes. Each test prints a note and passes when kubectl is not on PATH.

mod common;

use std::path::PathBuf;
use std::process::Output;

use common::within;
use kube_fake::FakeApiServer;
use serde_json::{Value, json};
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
            // CI must run every tier: there a missing tool fails the test instead of skipping it.
            assert!(
                std::env::var_os("CI").is_none(),
                "kubectl is not on PATH under CI, where this test must run"
            );
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

#[tokio::test]
async fn kubectl_gets_vault_configs_as_json() {
    let fake = FakeApiServer::start().await;
    fake.apply_namespace("team-a", &[]);
    fake.apply_namespace("team-b", &[]);
    fake.apply_vault_config("team-a", "main", json!({ "address": "https://vault:8200" }));
    fake.apply_vault_config_status("team-a", "main", json!({ "ready": true }));
    fake.apply_vault_config("team-b", "other", json!({}));
    let Some(kubectl) = Kubectl::for_fake(&fake).await else {
        return;
    };
    let stdout = kubectl
        .succeed(&["get", "vaultconfigs", "-n", "team-a", "-o", "json"])
        .await;
    let list: Value = serde_json::from_str(&stdout).expect("kubectl prints JSON");
    let items = list["items"].as_array().expect("a list");
    assert_eq!(items.len(), 1);
    assert_eq!(items[0], fake.vault_config("team-a", "main").unwrap());
    assert_eq!(items[0]["status"]["ready"], true);

    let stdout = kubectl
        .succeed(&["get", "vaultconfigs.secrets.iomete.com", "--all-namespaces"])
        .await;
    let rows: Vec<Vec<&str>> = stdout
        .lines()
        .map(|line| line.split_whitespace().take(2).collect())
        .collect();
    assert_eq!(
        rows,
        [
            vec!["NAMESPACE", "NAME"],
            vec!["team-a", "main"],
            vec!["team-b", "other"]
        ],
        "{stdout}"
    );

    let short = kubectl
        .succeed(&["get", "vc", "main", "-n", "team-a", "-o", "name"])
        .await;
    assert_eq!(short.trim(), "vaultconfig.secrets.iomete.com/main");

    let missing = kubectl
        .run(&["get", "vaultconfig", "nope", "-n", "team-a"])
        .await;
    assert_eq!(
        String::from_utf8_lossy(&missing.stderr).trim(),
        "Error from server (NotFound): vaultconfigs.secrets.iomete.com \"nope\" not found"
    );
}

#[tokio::test]
async fn kubectl_applies_a_vault_config_yaml_and_patches_its_status() {
    let fake = FakeApiServer::start().await;
    fake.apply_namespace("team-a", &[]);
    let Some(kubectl) = Kubectl::for_fake(&fake).await else {
        return;
    };
    let manifest = kubectl.directory.path().join("vaultconfig.yaml");
    let write_manifest = |address: &str| {
        let yaml = format!(
            "apiVersion: secrets.iomete.com/v1
kind: VaultConfig
metadata:
  name: prod
  namespace: team-a
  labels:
    tier: prod
spec:
  address: {address}
  auth:
    method: approle
status:
  ready: true
"
        );
        std::fs::write(&manifest, yaml).expect("the manifest is written");
    };
    let manifest_arg = manifest.to_str().expect("a UTF-8 path");

    // kubectl's default --validate=strict: the fake's OpenAPI v3 documents let it rely on
    // server-side field validation instead of wanting a schema.
    write_manifest("https://vault-1:8200");
    let stdout = kubectl.succeed(&["apply", "-f", manifest_arg]).await;
    assert_eq!(stdout.trim(), "vaultconfig.secrets.iomete.com/prod created");
    let created = fake
        .vault_config("team-a", "prod")
        .expect("kubectl created it");
    assert_eq!(created["spec"]["address"], "https://vault-1:8200");
    assert_eq!(created["metadata"]["labels"]["tier"], "prod");
    assert_eq!(created["metadata"]["generation"], 1);
    assert!(
        created.get("status").is_none(),
        "a create cannot set status"
    );

    write_manifest("https://vault-2:8200");
    let stdout = kubectl.succeed(&["apply", "-f", manifest_arg]).await;
    assert_eq!(
        stdout.trim(),
        "vaultconfig.secrets.iomete.com/prod configured"
    );
    let updated = fake.vault_config("team-a", "prod").unwrap();
    assert_eq!(updated["spec"]["address"], "https://vault-2:8200");
    assert_eq!(updated["spec"]["auth"]["method"], "approle");
    assert_eq!(updated["metadata"]["generation"], 2);
    assert!(
        fake.requests().iter().any(|request| request
            .starts_with("PATCH /apis/secrets.iomete.com/v1/namespaces/team-a/vaultconfigs/prod?")),
        "kubectl apply patched the existing object"
    );

    let stdout = kubectl
        .succeed(&[
            "patch",
            "vaultconfig",
            "prod",
            "-n",
            "team-a",
            "--subresource=status",
            "--type=merge",
            "-p",
            r#"{"status":{"ready":true},"spec":{"address":"ignored"}}"#,
        ])
        .await;
    assert_eq!(stdout.trim(), "vaultconfig.secrets.iomete.com/prod patched");
    let patched = fake.vault_config("team-a", "prod").unwrap();
    assert_eq!(patched["status"]["ready"], true);
    assert_eq!(patched["spec"]["address"], "https://vault-2:8200");
    assert_eq!(patched["metadata"]["generation"], 2);

    let stdout = kubectl.succeed(&["delete", "-f", manifest_arg]).await;
    assert_eq!(
        stdout.trim(),
        "vaultconfig.secrets.iomete.com \"prod\" deleted"
    );
    assert!(fake.vault_config("team-a", "prod").is_none());
}
