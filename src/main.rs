//! Entry point: parse flags, validate them, set up logging and the Kubernetes client, serve.

use anyhow::Context;
use clap::Parser;
use iomete_secrets_webhook::boot::config::{Cli, Command};
use iomete_secrets_webhook::boot::{app, certs};
use iomete_secrets_webhook::edge::{telemetry, tls};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => {
            let _log = telemetry::init(args.log_format);
            let config = args.validate().context("invalid configuration")?;
            let tls = tls::ServerTls::load(
                &config.tls_cert,
                &config.tls_key,
                config.client_ca.as_deref(),
            )
            .context("invalid TLS configuration")?;
            let mut kube_config = kube::Config::infer()
                .await
                .context("cannot configure the Kubernetes client (in-cluster or KUBECONFIG)")?;
            // kube retries 429/503/504 silently for minutes; a watch must fail fast instead, so
            // that its cache is marked stale and rebuilt (see backends::watch).
            kube_config.default_retry = false;
            let client = kube::Client::try_from(kube_config)
                .context("cannot build the Kubernetes client")?;
            app::run(config, tls, client, shutdown_signal())
                .await
                .context("webhook stopped")?;
        }
        Command::Certs(args) => {
            let mut names = certs::service_dns_names(&args.service, &args.namespace);
            names.extend(args.extra_san);
            let bundle = certs::generate(&names).context("cannot generate certificates")?;
            certs::write(&bundle, &args.out).context("cannot write certificates")?;
            println!(
                "wrote ca.crt, tls.crt, tls.key and ca-bundle.b64 to {}",
                args.out.display()
            );
        }
        Command::Crd => {
            use kube::CustomResourceExt;
            let crd = iomete_secrets_webhook::backends::vault::resource::VaultConfig::crd();
            println!(
                "{}",
                serde_json::to_string_pretty(&crd).context("cannot serialize the CRD")?
            );
        }
    }
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = match signal(SignalKind::terminate()) {
        Ok(terminate) => terminate,
        Err(error) => {
            tracing::error!(%error, "cannot listen for SIGTERM; stopping on Ctrl-C only");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = terminate.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
