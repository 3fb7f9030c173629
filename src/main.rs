//! Entry point: parse flags, validate them, set up logging and the Kubernetes client, serve; or
//! run an admin tool. Installed as `kubectl-iomete_secrets`, the binary is the kubectl plugin
//! `kubectl iomete-secrets` with the same subcommands.

use std::io::Write as _;
use std::process::ExitCode;

use anyhow::Context;
use clap::{CommandFactory, FromArgMatches, Parser};
use iomete_secrets_webhook::boot::config::{Cli, Command, VaultCommand};
use iomete_secrets_webhook::boot::tool_args::{OutputFormat, ToolArgs};
use iomete_secrets_webhook::boot::{app, certs};
use iomete_secrets_webhook::edge::server::Listeners;
use iomete_secrets_webhook::edge::{telemetry, tls};
use iomete_secrets_webhook::tools::{self, Report, ToolError};

/// The file name kubectl looks for to run `kubectl iomete-secrets`.
const PLUGIN_NAME: &str = "kubectl-iomete_secrets";

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    let as_plugin = std::env::args_os()
        .next()
        .and_then(|argv0| {
            std::path::Path::new(&argv0)
                .file_name()
                .map(|name| name.to_string_lossy().starts_with(PLUGIN_NAME))
        })
        .unwrap_or(false);
    let cli = if as_plugin {
        let matches = Cli::command()
            .name("kubectl iomete-secrets")
            .bin_name("kubectl iomete-secrets")
            .get_matches();
        Cli::from_arg_matches(&matches).unwrap_or_else(|error| error.exit())
    } else {
        Cli::parse()
    };
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
            let broker_listen = config.broker.as_ref().map(|broker| broker.listen);
            let listeners = Listeners::bind(config.listen, config.admin_listen, broker_listen)
                .context("cannot listen")?;
            let mut kube_config = kube::Config::infer()
                .await
                .context("cannot configure the Kubernetes client (in-cluster or KUBECONFIG)")?;
            // kube retries 429/503/504 silently for minutes; a watch must fail fast instead, so
            // that its cache is marked stale and rebuilt (see backends::watch).
            kube_config.default_retry = false;
            let client = kube::Client::try_from(kube_config)
                .context("cannot build the Kubernetes client")?;
            app::run(config, tls, listeners, client, shutdown_signal())
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
        Command::Check(args) => return Ok(tool(&args.tool, tools::check::run(&args).await)),
        Command::Catalogue(args) => {
            return Ok(tool(&args.tool, tools::catalogue::run(&args).await));
        }
        Command::Vault(VaultCommand::Test(args)) => {
            return Ok(tool(&args.tool, tools::vault_test::run(&args).await));
        }
        Command::Audit(args) => return Ok(tool(&args.tool, tools::audit::run(&args).await)),
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints a tool's report once, to standard output, or its error with every cause to standard
/// error; the exit status is 0 (nothing found), 1 (problems found) or 2 (could not run).
fn tool(args: &ToolArgs, outcome: Result<Report, ToolError>) -> ExitCode {
    match outcome {
        Ok(report) => {
            let mut out = std::io::stdout().lock();
            // A closed pipe (`| head`) is not an error of the tool.
            let _ = out
                .write_all(report.render(args.output).as_bytes())
                .and_then(|()| out.flush());
            ExitCode::from(report.exit_status())
        }
        Err(error) => {
            let mut message = format!("error: {error}");
            let mut source = std::error::Error::source(&error);
            while let Some(cause) = source {
                message.push_str(&format!(": {cause}"));
                source = cause.source();
            }
            // Once: JSON on standard output for machines, or the line on standard error.
            if args.output == OutputFormat::Json {
                println!("{}", serde_json::json!({"error": message}));
            } else {
                eprintln!("{message}");
            }
            ExitCode::from(2)
        }
    }
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
