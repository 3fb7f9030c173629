//! End to end: the compiled `iomete-secrets-webhook` binary as a process, over real TLS with
//! generated certificates, spoken to over HTTP/2 (as the kube-apiserver does) and HTTP/1.1,
//! with its Kubernetes client pointed at a real kube-apiserver (with etcd) through a KUBECONFIG:
//! see `api.rs` for how tests share it, and `proxy.rs` for the proxy that partitions them.
//!
//! When the control plane's binaries are missing, each test says how to build them and skips,
//! except with `CI=true`, where it fails.
//!
//! Every test that starts the binary runs it at debug log level with canary secret values and,
//! after stopping it with SIGTERM, greps everything it printed (and its metrics) for them.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use secrecy::ExposeSecret;

use iomete_secrets_webhook::boot::certs;
use iomete_secrets_webhook::decision::expansion::kubelet_expand;
use serde_json::{Value, json};

mod amplification;
mod api;
#[path = "../tests/support/control_plane/mod.rs"]
mod control_plane;
mod faults;
mod hostile;
mod proxy;
#[path = "../tests/support/mod.rs"]
mod support;
mod webhook;
use api::{Api, CANARY_ADMIN, CANARY_DRIVER, CANARY_GLOBAL};
use proxy::{Link, TcpProxy};
use support::{fixture, patched_object, with_env_secrets};
use webhook::{BINARY, Webhook, certs_of, local_names, tls_client, tls_client_with_identity};

/// The shared API server with the namespaces and stores every test starts from, or `None`
/// (skip) when its binaries are missing outside CI.
async fn seeded_api_server(test: &str) -> Option<Api> {
    let api = Api::shared(test).await?;
    api.seed().await;
    Some(api)
}

fn review_of(pod: Value, namespace: &str, uid: &str) -> Value {
    let mut review = support::review_of(pod, namespace);
    review["request"]["uid"] = json!(uid);
    review
}

/// The value the container would see for `name`, after the kubelet's expansion.
fn container_env(pod: &Value, container: usize, name: &str) -> Option<String> {
    pod["spec"]["containers"][container]["env"]
        .as_array()?
        .iter()
        .find(|var| var["name"] == name)
        .and_then(|var| var["value"].as_str())
        .map(|value| kubelet_expand(value, |_| None))
}

fn assert_no_canary(what: &str, text: &str) {
    for canary in [CANARY_DRIVER, CANARY_GLOBAL, CANARY_ADMIN, "e2e-canary"] {
        assert!(
            !text.contains(canary),
            "{what} leaks a secret value:\n{text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_admits_patches_and_denies_over_tls() {
    let Some(api) = seeded_api_server("webhook_admits_patches_and_denies_over_tls").await else {
        return;
    };
    let mut webhook = Webhook::start(&api, &[]).await;
    webhook.wait_ready().await;
    let mark = api.audit_mark();
    let mut answers = String::new();

    // A Spark 3.5 driver in its domain gets the value, byte for byte after the kubelet.
    let driver = review_of(
        fixture("spark/spark35-driver-pod.json"),
        "spark-jobs",
        "u-1",
    );
    let answer = webhook.admit(&driver).await;
    assert_eq!(answer["response"]["uid"], "u-1");
    assert_eq!(answer["response"]["allowed"], true, "{answer}");
    let pod = patched_object(&driver, &answer);
    assert_eq!(
        container_env(&pod, 0, "AWS_SECRET_ACCESS_KEY").as_deref(),
        Some(CANARY_DRIVER)
    );

    // The same pod from another domain is denied, saying what to fix.
    let foreign = review_of(
        fixture("spark/spark35-driver-pod.json"),
        "marketing-jobs",
        "u-2",
    );
    let answer = webhook.admit(&foreign).await;
    answers.push_str(&answer.to_string());
    assert_eq!(answer["response"]["allowed"], false);
    assert_eq!(answer["response"]["status"]["code"], 403);
    let message = answer["response"]["status"]["message"].as_str().unwrap();
    assert!(message.contains("marketing-jobs") && message.contains("finance"));

    // The admin store is out of reach of a domain namespace.
    let pod = with_env_secrets(
        fixture("spark/spark35-executor-pod.json"),
        &[("ROOT", "root", "admin")],
    );
    let answer = webhook.admit(&review_of(pod, "spark-jobs", "u-3")).await;
    answers.push_str(&answer.to_string());
    assert_eq!(answer["response"]["status"]["code"], 403, "{answer}");

    // ...and within reach of an admin namespace.
    let pod = with_env_secrets(
        fixture("real/notebook-pod-kubespawner-make_pod-with-extra-containers.json"),
        &[("ROOT", "root", "admin")],
    );
    let admin_review = review_of(pod, api.store(), "u-4");
    let answer = webhook.admit(&admin_review).await;
    let pod = patched_object(&admin_review, &answer);
    assert_eq!(
        container_env(&pod, 1, "ROOT").as_deref(),
        Some(CANARY_ADMIN)
    );

    // Legacy placeholders keep working, with a warning.
    let mut notebook = fixture("real/notebook-pod-kubespawner-make_pod-with-env-secretkeyref.json");
    notebook["spec"]["containers"][0]["env"] = json!([
        {"name": "SMTP", "value": "smtp://mailer:${secrets.smtp_password}@mail:25"}
    ]);
    let legacy = review_of(notebook, "spark-jobs", "u-5");
    let answer = webhook.admit(&legacy).await;
    let pod = patched_object(&legacy, &answer);
    assert_eq!(
        container_env(&pod, 0, "SMTP").unwrap(),
        format!("smtp://mailer:{CANARY_GLOBAL}@mail:25")
    );
    let warnings = answer["response"]["warnings"].to_string();
    assert!(warnings.contains("deprecated"), "{warnings}");
    assert_no_canary("a warning", &warnings);

    // Dry run: every check, no value.
    let mut dry = review_of(
        fixture("spark/spark35-driver-pod.json"),
        "spark-jobs",
        "u-6",
    );
    dry["request"]["dryRun"] = json!(true);
    let answer = webhook.admit(&dry).await;
    assert_eq!(answer["response"]["allowed"], true);
    let pod = patched_object(&dry, &answer);
    answers.push_str(&answer.to_string());
    answers.push_str(&pod.to_string());

    // HTTP/1.1 is served too.
    let (answer, version) = webhook.admit_with(&webhook.http1_client, &driver).await;
    assert_eq!(version, "HTTP/1.1");
    assert_eq!(answer["response"]["allowed"], true);

    // Admissions never called the API server: everything came from the watch caches (the API
    // server's audit log holds every request of the webhook's identity).
    let calls: Vec<String> = api
        .requests_since(&mark)
        .into_iter()
        .filter(|request| !request.starts_with("watch "))
        .collect();
    assert!(
        calls.is_empty(),
        "admission path called the API server: {calls:?}"
    );

    let (_, metrics) = webhook.admin_get("/metrics").await;
    assert!(
        metrics.contains("iomete_secrets_webhook_admission_requests_total{outcome=\"patched\"} 5"),
        "{metrics}"
    );
    assert!(
        metrics.contains("reason=\"out_of_scope\",code=\"403\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("iomete_secrets_webhook_secret_stores 3"),
        "{metrics}"
    );

    let (status, output) = webhook.stop();
    assert!(status.success(), "exit {status}: {output}");
    assert!(
        output.contains("\"decision\":\"denied\""),
        "one line per admission: {output}"
    );
    assert!(
        output.contains("AWS_SECRET_ACCESS_KEY"),
        "references are logged: {output}"
    );
    assert_no_canary("the process output", &output);
    assert_no_canary("the metrics", &metrics);
    assert_no_canary("denials and dry-run answers", &answers);
    assert!(!output.contains("unrelated-value"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_updated_mid_run_reaches_the_next_pod() {
    let Some(api) = seeded_api_server("a_store_updated_mid_run_reaches_the_next_pod").await else {
        return;
    };
    let mut webhook = Webhook::start(&api, &[]).await;
    webhook.wait_ready().await;
    let driver = review_of(
        fixture("spark/spark35-driver-pod.json"),
        "spark-jobs",
        "u-1",
    );
    let before = patched_object(&driver, &webhook.admit(&driver).await);
    assert_eq!(
        container_env(&before, 0, "AWS_SECRET_ACCESS_KEY").as_deref(),
        Some(CANARY_DRIVER)
    );

    let rotated = "e2e-canary-rotated-42";
    api.admin
        .apply_secret(
            api.store(),
            "iomete-secret-store-finance",
            &[("s3-secret-key", rotated.as_bytes())],
        )
        .await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let after = patched_object(&driver, &webhook.admit(&driver).await);
        if container_env(&after, 0, "AWS_SECRET_ACCESS_KEY").as_deref() == Some(rotated) {
            break;
        }
        assert!(Instant::now() < deadline, "the rotated value never arrived");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // A deleted store denies with 404 once the deletion has arrived.
    api.admin
        .delete_secret(api.store(), "iomete-secret-store-finance")
        .await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let answer = webhook.admit(&driver).await;
        if answer["response"]["status"]["code"] == 404 {
            break;
        }
        assert!(Instant::now() < deadline, "the deletion never arrived");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (status, output) = webhook.stop();
    assert!(status.success(), "{output}");
    assert_no_canary("the process output", &output);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_ready_until_the_api_server_answers() {
    let Some(api) = seeded_api_server("not_ready_until_the_api_server_answers").await else {
        return;
    };
    // The API server's address closes every connection (no healthy backend behind it).
    let proxy = TcpProxy::start(api.plane().api_address(), Link::Refuse).await;
    let dir = tempfile::tempdir().unwrap();
    let bundle = certs::generate(&local_names()).unwrap();
    certs::write(&bundle, dir.path()).unwrap();
    let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    let kubeconfig = api
        .webhook_kubeconfig(dir.path(), Some(&proxy.https_url()))
        .await;
    let mut webhook = Webhook::spawn_with(
        &api,
        dir,
        &cert,
        &key,
        &bundle.ca_pem,
        &[],
        &kubeconfig,
        &[],
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while webhook.admin_get("/livez").await.0 != 200 {
        assert!(Instant::now() < deadline, "{}", webhook.output());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(webhook.admin_get("/readyz").await.0, 503);
    let driver = review_of(
        fixture("spark/spark35-driver-pod.json"),
        "spark-jobs",
        "u-1",
    );
    let answer = webhook.admit(&driver).await;
    assert_eq!(answer["response"]["status"]["code"], 503, "{answer}");

    proxy.set(Link::Forward);
    webhook.wait_ready().await;
    let answer = webhook.admit(&driver).await;
    assert_eq!(answer["response"]["allowed"], true, "{answer}");
    let (status, output) = webhook.stop();
    assert!(status.success(), "{output}");
}

#[test]
fn bad_configuration_fails_at_start_naming_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let output = Command::new(BINARY)
            .arg("serve")
            .args(args)
            .env("KUBECONFIG", dir.path().join("none"))
            .output()
            .unwrap();
        assert!(!output.status.success());
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    let missing: PathBuf = dir.path().join("missing.pem");
    let missing = missing.to_str().unwrap();
    let stderr = run(&[
        "--tls-cert",
        missing,
        "--tls-key",
        missing,
        "--store-namespace",
        "Bad_NS",
    ]);
    assert!(stderr.contains("--store-namespace"), "{stderr}");
    let stderr = run(&["--tls-cert", missing, "--tls-key", missing]);
    assert!(stderr.contains("missing.pem"), "{stderr}");
    let stderr = run(&[
        "--tls-cert",
        missing,
        "--tls-key",
        missing,
        "--admission-timeout",
        "2m",
    ]);
    assert!(stderr.contains("--admission-timeout"), "{stderr}");
}

/// Mounts a certificate pair the way the kubelet updates a Secret volume: the files are links
/// through `..data`, a symlink to a timestamped directory, swapped atomically by a rename.
fn kubelet_mount(volume: &Path, generation: u32, cert_pem: &str, key_pem: &str) {
    let versioned = format!("..2026_11_23_{generation:04}");
    std::fs::create_dir(volume.join(&versioned)).unwrap();
    std::fs::write(volume.join(&versioned).join("tls.crt"), cert_pem).unwrap();
    std::fs::write(volume.join(&versioned).join("tls.key"), key_pem).unwrap();
    let staged = volume.join("..data_tmp");
    std::os::unix::fs::symlink(&versioned, &staged).unwrap();
    std::fs::rename(&staged, volume.join("..data")).unwrap();
    for file in ["tls.crt", "tls.key"] {
        let link = volume.join(file);
        if std::fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink(format!("..data/{file}"), &link).unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_rotated_the_kubelet_way_are_served_without_a_restart() {
    let Some(api) =
        seeded_api_server("certificates_rotated_the_kubelet_way_are_served_without_a_restart")
            .await
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let volume = dir.path().join("tls");
    std::fs::create_dir(&volume).unwrap();
    let first = certs::generate(&local_names()).unwrap();
    kubelet_mount(&volume, 1, &first.cert_pem, first.key_pem.expose_secret());
    let (cert, key) = (volume.join("tls.crt"), volume.join("tls.key"));
    let mut webhook = Webhook::spawn(&api, dir, &cert, &key, &first.ca_pem, &[]).await;
    webhook.wait_ready().await;
    let driver = review_of(
        fixture("spark/spark35-driver-pod.json"),
        "spark-jobs",
        "u-1",
    );
    assert_eq!(webhook.admit(&driver).await["response"]["allowed"], true);

    // A new pair from another CA: new connections must present it, with no restart.
    let second = certs::generate(&local_names()).unwrap();
    kubelet_mount(&volume, 2, &second.cert_pem, second.key_pem.expose_secret());
    let url = format!("https://localhost:{}/mutate", webhook.port);
    let trusts_second = tls_client(&second.ca_pem, true);
    let deadline = Instant::now() + Duration::from_secs(15);
    while trusts_second.post(&url).json(&driver).send().await.is_err() {
        assert!(
            Instant::now() < deadline,
            "the rotated certificate was never served"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A broken pair (key of another certificate) is rejected; the second pair stays in service.
    let third = certs::generate(&local_names()).unwrap();
    kubelet_mount(&volume, 3, &second.cert_pem, third.key_pem.expose_secret());
    let deadline = Instant::now() + Duration::from_secs(15);
    while !webhook.output().contains("new TLS certificate rejected") {
        assert!(Instant::now() < deadline, "the broken pair was not noticed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A fresh client, so the check is a new handshake rather than a pooled connection.
    let answer: Value = tls_client(&second.ca_pem, true)
        .post(&url)
        .json(&driver)
        .send()
        .await
        .expect("the previous certificate is still served")
        .json()
        .await
        .unwrap();
    assert_eq!(answer["response"]["allowed"], true);
    let (status, output) = webhook.stop();
    assert!(status.success(), "{output}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_client_ca_only_callers_with_its_certificates_are_served() {
    let Some(api) =
        seeded_api_server("with_a_client_ca_only_callers_with_its_certificates_are_served").await
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let bundle = certs::generate(&local_names()).unwrap();
    certs::write(&bundle, dir.path()).unwrap();
    let (cert, key, ca) = (
        dir.path().join("tls.crt"),
        dir.path().join("tls.key"),
        dir.path().join("ca.crt"),
    );
    let ca_arg = ca.to_str().unwrap().to_owned();
    let mut webhook = Webhook::spawn(
        &api,
        dir,
        &cert,
        &key,
        &bundle.ca_pem,
        &["--client-ca", &ca_arg],
    )
    .await;
    webhook.wait_ready().await;
    let url = format!("https://localhost:{}/mutate", webhook.port);
    let driver = review_of(
        fixture("spark/spark35-driver-pod.json"),
        "spark-jobs",
        "u-1",
    );

    let anonymous = webhook.client.post(&url).json(&driver).send().await;
    assert!(
        anonymous.is_err(),
        "a caller without a certificate was served"
    );

    let (client_cert, client_key) = certs::client_certificate(&bundle, "kube-apiserver").unwrap();
    let apiserver = tls_client_with_identity(
        &bundle.ca_pem,
        true,
        Some((&client_cert, client_key.expose_secret())),
    );
    let answer: Value = apiserver
        .post(&url)
        .json(&driver)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["response"]["allowed"], true, "{answer}");
    let (status, output) = webhook.stop();
    assert!(status.success(), "{output}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_admissions_refuses_new_ones_and_exits_zero() {
    let Some(api) =
        seeded_api_server("sigterm_drains_in_flight_admissions_refuses_new_ones_and_exits_zero")
            .await
    else {
        return;
    };
    let mut webhook = Webhook::start(&api, &[]).await;
    webhook.wait_ready().await;
    let driver = review_of(
        fixture("spark/spark35-driver-pod.json"),
        "spark-jobs",
        "u-9",
    );
    let body = serde_json::to_vec(&driver).unwrap();

    // An admission in flight: its body arrives in two parts, with SIGTERM in between.
    let (parts, receiver) = futures::channel::mpsc::unbounded::<Result<Vec<u8>, std::io::Error>>();
    let (head, tail) = body.split_at(body.len() / 2);
    parts.unbounded_send(Ok(head.to_vec())).unwrap();
    let url = format!("https://localhost:{}/mutate", webhook.port);
    let in_flight = tokio::spawn(
        webhook
            .client
            .post(&url)
            .header("content-type", "application/json")
            .body(reqwest::Body::wrap_stream(receiver))
            .send(),
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    Command::new("kill")
        .args(["-TERM", &webhook.child.id().to_string()])
        .status()
        .unwrap();

    // Readiness goes false, and new connections are not served.
    let deadline = Instant::now() + Duration::from_secs(5);
    while webhook.admin_get("/readyz").await.0 != 503 {
        assert!(Instant::now() < deadline, "readiness never went false");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let fresh = tls_client(&certs_of(&webhook), true);
    assert!(
        fresh.post(&url).json(&driver).send().await.is_err(),
        "a new connection was served during shutdown"
    );

    // The in-flight admission completes with a real answer, then the process exits 0.
    parts.unbounded_send(Ok(tail.to_vec())).unwrap();
    drop(parts);
    let response = in_flight
        .await
        .unwrap()
        .expect("the in-flight admission was answered");
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["response"]["uid"], "u-9");
    assert_eq!(answer["response"]["allowed"], true, "{answer}");
    let (status, output) = webhook.stop();
    assert!(status.success(), "{output}");
}

/// The binary with a real OpenBao behind VaultConfigs: values and credentials reach only the
/// patch, never the logs (at debug level), the metrics, denials, warnings or statuses, and a
/// Vault outage costs only the Vault pods.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vault_values_and_credentials_stay_out_of_every_output() {
    use support::openbao::OpenBao;
    const VAULT_CANARY: &str = "e2e-canary-vault-$(HOME)-9c4d";
    let mut bao = OpenBao::start().await;
    let admin = bao.admin();
    admin
        .kv_put("secret", "production/db", json!({"value": VAULT_CANARY}))
        .await;
    admin
        .kv_put("secret", "restricted/root", json!({"value": VAULT_CANARY}))
        .await;
    admin
        .write_policy(
            "webhook-read",
            r#"path "secret/data/*" { capabilities = ["read"] }
path "secret/data/restricted/*" { capabilities = ["deny"] }"#,
        )
        .await;
    admin.enable_approle("approle").await;
    let (role_id, secret_id) = admin
        .approle_role("approle", "webhook", &["webhook-read"], "1h", "4h")
        .await;
    let token = admin.create_token(&["webhook-read"], "1h").await;

    let Some(api) =
        seeded_api_server("vault_values_and_credentials_stay_out_of_every_output").await
    else {
        return;
    };
    api.admin
        .apply_secret(
            api.store(),
            "iomete-vault-credentials-finance",
            &[
                ("prod.roleId", role_id.as_bytes()),
                ("prod.secretId", secret_id.as_bytes()),
                ("by-token.token", token.as_bytes()),
                ("broken.roleId", role_id.as_bytes()),
                ("broken.secretId", b"e2e-canary-wrong-secret-id"),
            ],
        )
        .await;
    for (name, method) in [
        ("prod", "AppRole"),
        ("by-token", "Token"),
        ("broken", "AppRole"),
    ] {
        api.admin
            .apply_vault_config(
                api.store(),
                name,
                json!({"domain": "finance", "host": bao.address(),
                       "path": "/v1/secret/data", "auth": {"method": method}}),
            )
            .await;
    }
    let mut webhook = Webhook::start(&api, &["--vault-cache-ttl", "0s"]).await;
    webhook.wait_ready().await;

    let vault_pod = |key: &str, config: &str| {
        let mut pod = fixture("spark/spark35-driver-pod.json");
        pod["metadata"]["annotations"] = json!({
            "secrets.iomete.com/env-secrets": json!([
                {"key": "DB_PASSWORD", "secretObject": {"key": key, "source": {"type": "VAULT", "id": config}}}
            ]).to_string()
        });
        pod
    };
    let mut answers = String::new();
    for config in ["prod", "by-token"] {
        let review = review_of(vault_pod("production/db", config), "spark-jobs", config);
        let answer = webhook.admit(&review).await;
        let pod = patched_object(&review, &answer);
        assert_eq!(
            container_env(&pod, 0, "DB_PASSWORD").as_deref(),
            Some(VAULT_CANARY),
            "{answer}"
        );
    }
    let denials = [
        (vault_pod("restricted/root", "prod"), "spark-jobs", 403),
        (vault_pod("production/db#nope", "prod"), "spark-jobs", 404),
        (vault_pod("production/db", "prod"), "marketing-jobs", 403),
        (vault_pod("production/db", "broken"), "spark-jobs", 403),
    ];
    for (pod, namespace, code) in denials {
        let answer = webhook.admit(&review_of(pod, namespace, "denied")).await;
        assert_eq!(answer["response"]["status"]["code"], code, "{answer}");
        answers.push_str(&answer.to_string());
    }
    let mut dry_run = review_of(vault_pod("production/db", "prod"), "spark-jobs", "dry");
    dry_run["request"]["dryRun"] = json!(true);
    answers.push_str(&webhook.admit(&dry_run).await.to_string());

    // Statuses are written by the binary: the broken one says why, with no credential in it.
    let deadline = Instant::now() + Duration::from_secs(60);
    let reason = async |name: &str| {
        api.admin
            .vault_config(api.store(), name)
            .await
            .map(|config| config["status"]["conditions"][0]["reason"].clone())
    };
    loop {
        let (prod, broken) = (reason("prod").await, reason("broken").await);
        if prod == Some(json!("Connected")) && broken == Some(json!("LoginFailed")) {
            break;
        }
        assert!(Instant::now() < deadline, "statuses: {prod:?} {broken:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut statuses = String::new();
    for name in ["prod", "by-token", "broken"] {
        let config = api.admin.vault_config(api.store(), name).await.unwrap();
        statuses.push_str(&config.to_string());
    }

    // Vault down: Vault pods 503 at once, Kubernetes-only pods unaffected.
    bao.stop();
    let answer = webhook
        .admit(&review_of(
            vault_pod("production/db", "prod"),
            "spark-jobs",
            "down",
        ))
        .await;
    assert_eq!(answer["response"]["status"]["code"], 503, "{answer}");
    answers.push_str(&answer.to_string());
    let k8s_only = with_env_secrets(
        fixture("spark/spark35-driver-pod.json"),
        &[("S3", "s3-secret-key", "finance")],
    );
    let answer = webhook
        .admit(&review_of(k8s_only, "spark-jobs", "k8s"))
        .await;
    assert_eq!(answer["response"]["allowed"], true, "{answer}");

    let (_, metrics) = webhook.admin_get("/metrics").await;
    assert!(
        metrics.contains("vault_reads_total{config=\"prod\"}"),
        "{metrics}"
    );
    let (status, output) = webhook.stop();
    assert!(status.success(), "{output}");
    for (what, text) in [
        ("the log", &output),
        ("the metrics", &metrics),
        ("a denial or dry-run answer", &answers),
        ("a VaultConfig status", &statuses),
    ] {
        assert_no_canary(what, text);
        for credential in [&secret_id, &token, &role_id] {
            assert!(
                !text.contains(credential.as_str()),
                "{what} leaks a Vault credential"
            );
        }
    }
}
