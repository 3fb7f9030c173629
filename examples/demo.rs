//! A self-contained local demo: no cluster needed.
//!
//! Starts a local kube-apiserver and etcd on 127.0.0.1 (the tests' control plane harness,
//! `tests/support/control_plane/`, with the binaries `scripts/ensure-control-plane.sh` builds;
//! the demo says how to build them when they are missing) with sample namespaces and secret
//! stores, starts the real webhook in this process over TLS beside it (certificates generated
//! on the spot), then sends it, over HTTP/2 as the kube-apiserver would, a Spark 3.5 driver pod
//! in its own domain (admitted and patched), the same pod from another domain (denied) and a
//! notebook pod with a legacy placeholder (patched, with a warning). Everything stops when the
//! demo ends, however it ends. Run with `cargo run --example demo`.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use iomete_secrets_webhook::boot::config::{Cli, Command, LogFormat};
use iomete_secrets_webhook::boot::{app, certs};
use iomete_secrets_webhook::edge::server::Listeners;
use iomete_secrets_webhook::edge::{telemetry, tls};
use serde_json::{Value, json};

#[path = "../tests/support/control_plane/mod.rs"]
mod control_plane;

const DRIVER_POD: &str = include_str!("../tests/fixtures/spark/spark35-driver-pod.json");
const NOTEBOOK_POD: &str = include_str!(
    "../tests/fixtures/real/notebook-pod-kubespawner-make_pod-with-env-secretkeyref.json"
);
const REVIEW: &str =
    include_str!("../tests/fixtures/real/admissionreview-pod-create-kube-rs-gke.json");

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _log = telemetry::init(LogFormat::Text);
    let _ = rustls::crypto::ring::default_provider().install_default();

    step("starting kube-apiserver and etcd with sample namespaces and stores");
    if let Err(why) = control_plane::binaries() {
        step(&format!(
            "{why}\n   building them now with scripts/ensure-control-plane.sh (once; about 10 minutes on 2 cores)"
        ));
        build_control_plane()?;
    }
    let plane = tokio::task::block_in_place(|| {
        let plane = control_plane::ControlPlane::start("the demo")?;
        plane.install_vaultconfig_crd();
        Some(plane)
    })
    .ok_or_else(|| anyhow::anyhow!("the control plane did not start"))?;
    let api = plane.admin().await;
    api.apply_namespace("iomete-system", &[]).await;
    api.apply_namespace("spark-jobs", &[("iomete.com/domain", "finance")])
        .await;
    api.apply_namespace("marketing-jobs", &[("iomete.com/domain", "marketing")])
        .await;
    api.apply_secret(
        "iomete-system",
        "iomete-secret-store-finance",
        &[("s3-secret-key", b"demo-finance-s3-key")],
    )
    .await;
    api.apply_secret(
        "iomete-system",
        "iomete-secret-store",
        &[("smtp_password", b"demo-global-smtp")],
    )
    .await;

    step("starting the webhook over TLS");
    let dir = tempfile::tempdir()?;
    let bundle = certs::generate(&["localhost".to_owned(), "127.0.0.1".to_owned()])?;
    certs::write(&bundle, dir.path())?;
    let cli = <Cli as clap::Parser>::try_parse_from([
        "iomete-secrets-webhook",
        "serve",
        // Port 0: free ports, read back from the bound listeners below.
        "--listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
        "--tls-cert",
        &dir.path().join("tls.crt").display().to_string(),
        "--tls-key",
        &dir.path().join("tls.key").display().to_string(),
    ])?;
    let Command::Serve(args) = cli.command else {
        unreachable!("parsed as serve");
    };
    let config = args.validate()?;
    let server_tls = tls::ServerTls::load(&config.tls_cert, &config.tls_key, None)?;
    let listeners = Listeners::bind(config.listen, config.admin_listen, None)?;
    let (webhook_address, admin_address) = listeners.addresses();
    let (port, admin_port) = (webhook_address.port(), admin_address.port());
    let kubeconfig = kube::config::Kubeconfig::read_from(plane.admin_kubeconfig())?;
    let client_config =
        kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await?;
    let client = kube::Client::try_from(client_config)?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let webhook = tokio::spawn(app::run(config, server_tls, listeners, client, async {
        let _ = stopped.await;
    }));
    wait_ready(admin_port).await?;

    let https = https_client(&bundle.ca_pem)?;
    let url = format!("https://localhost:{port}/mutate");

    step("1. a Spark 3.5 driver pod in namespace spark-jobs (domain finance)");
    let driver: Value = serde_json::from_str(DRIVER_POD)?;
    show(&https, &url, review(driver.clone(), "spark-jobs")).await?;

    step("2. the same pod in namespace marketing-jobs (domain marketing)");
    show(&https, &url, review(driver, "marketing-jobs")).await?;

    step("3. a Jupyter notebook pod with a legacy ${secrets.smtp_password} placeholder");
    let mut notebook: Value = serde_json::from_str(NOTEBOOK_POD)?;
    notebook["spec"]["containers"][0]["env"] =
        json!([{"name": "SMTP_URL", "value": "smtp://mailer:${secrets.smtp_password}@mail:25"}]);
    show(&https, &url, review(notebook, "spark-jobs")).await?;

    step("stopping");
    let _ = stop.send(());
    webhook.await??;
    // Dropping the control plane stops kube-apiserver and etcd and removes their directory.
    drop(plane);
    Ok(())
}

fn step(text: &str) {
    println!("\n=== {text}");
}

fn review(pod: Value, namespace: &str) -> Value {
    let mut review: Value = serde_json::from_str(REVIEW).expect("fixture is JSON");
    review["request"]["namespace"] = json!(namespace);
    review["request"]["name"] = pod["metadata"]["name"].clone();
    review["request"]["object"] = pod;
    review
}

async fn wait_ready(admin_port: u16) -> anyhow::Result<()> {
    let url = format!("http://127.0.0.1:{admin_port}/readyz");
    let client = reqwest::Client::builder().no_hickory_dns().build()?;
    for _ in 0..200 {
        if let Ok(response) = client.get(&url).send().await
            && response.status().is_success()
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    anyhow::bail!("the webhook did not become ready")
}

fn https_client(ca_pem: &str) -> anyhow::Result<reqwest::Client> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert?)?;
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(reqwest::Client::builder()
        .no_hickory_dns()
        .tls_backend_preconfigured(config)
        .build()?)
}

async fn show(client: &reqwest::Client, url: &str, review: Value) -> anyhow::Result<()> {
    let response = client.post(url).json(&review).send().await?;
    println!("answered over {:?}", response.version());
    let answer: Value = response.json().await?;
    let response = &answer["response"];
    if response["allowed"] == true {
        println!("ALLOWED");
    } else {
        println!(
            "DENIED ({}): {}",
            response["status"]["code"], response["status"]["message"]
        );
    }
    if let Some(patch) = response["patch"].as_str() {
        let bytes = base64::engine::general_purpose::STANDARD.decode(patch)?;
        let patch: Value = serde_json::from_slice(&bytes)?;
        println!("patch:\n{}", serde_json::to_string_pretty(&patch)?);
    }
    for warning in response["warnings"].as_array().into_iter().flatten() {
        println!("warning: {warning}");
    }
    Ok(())
}

/// Runs `scripts/ensure-control-plane.sh` (its progress on the terminal), which fills the cache
/// directory the harness reads.
fn build_control_plane() -> anyhow::Result<()> {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/scripts/ensure-control-plane.sh"
    );
    let status = std::process::Command::new("bash")
        .arg(script)
        .status()
        .map_err(|error| anyhow::anyhow!("cannot run {script}: {error}"))?;
    if !status.success() {
        anyhow::bail!("{script} failed ({status}); see its output above");
    }
    control_plane::binaries()
        .map(|_| ())
        .map_err(|why| anyhow::anyhow!("the control plane is still missing: {why}"))
}
