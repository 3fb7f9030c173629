//! The bare baseline: the webhook's own serving stack (its rustls configuration from
//! `tls::ServerTls`, axum-server's rustls acceptor under the webhook's connection cap, an axum
//! router with the same body size limit, a multi-threaded tokio runtime as `#[tokio::main]`
//! builds) answering every AdmissionReview
//! with a fixed, precomputed answer. Whatever the webhook costs beyond this is the webhook's
//! own work; this is the physical limit of the machine for that exchange.
//!
//! It runs as a child process of the harness (the harness binary re-executed with `baseline`),
//! like the webhook, so neither server shares a runtime or a core budget with the load client.
//! The answer for each case is the webhook's real answer to that case, captured beforehand and
//! chosen by the `case` query parameter, so both servers send the same bytes.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum_server::accept::NoDelayAcceptor;
use axum_server::tls_rustls::{RustlsAcceptor, RustlsConfig};
use iomete_secrets_webhook::server::MAX_BODY_BYTES;
use iomete_secrets_webhook::tls::{LimitedAcceptor, ServerTls};

/// The webhook's `--max-connections` default, so that accepting goes through the same cap.
const MAX_CONNECTIONS: usize = 1024;

/// `baseline --listen ADDR --tls-cert PEM --tls-key PEM --answers JSON`, where the JSON file
/// maps each case name to the answer body to send.
pub fn main(args: &[String]) -> anyhow::Result<()> {
    let value = |flag: &str| -> anyhow::Result<&str> {
        let at = args
            .iter()
            .position(|arg| arg == flag)
            .with_context(|| format!("baseline needs {flag}"))?;
        args.get(at + 1)
            .map(String::as_str)
            .with_context(|| format!("{flag} needs a value"))
    };
    let listen: SocketAddr = value("--listen")?.parse()?;
    let (cert, key) = (
        PathBuf::from(value("--tls-cert")?),
        PathBuf::from(value("--tls-key")?),
    );
    let answers: HashMap<String, String> =
        serde_json::from_str(&std::fs::read_to_string(value("--answers")?)?)?;
    let answers: Arc<HashMap<String, Bytes>> = Arc::new(
        answers
            .into_iter()
            .map(|(case, body)| (case, Bytes::from(body)))
            .collect(),
    );
    let tls = ServerTls::load(&cert, &key, None)?;
    // On by default, as in the webhook (which sets TCP_NODELAY on every admission connection);
    // `BENCH_BASELINE_NODELAY=0` measures Nagle's algorithm left on.
    let nodelay = std::env::var("BENCH_BASELINE_NODELAY").map_or(true, |value| value != "0");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = std::net::TcpListener::bind(listen)?;
        listener.set_nonblocking(true)?;
        let router = Router::new()
            .route("/mutate", post(answer))
            .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
            .with_state(answers);
        let acceptor = RustlsAcceptor::new(RustlsConfig::from_config(tls.config));
        let server = axum_server::from_tcp(listener)?;
        if nodelay {
            server
                .acceptor(LimitedAcceptor::new(
                    acceptor.acceptor(NoDelayAcceptor::new()),
                    MAX_CONNECTIONS,
                ))
                .serve(router.into_make_service())
                .await?;
        } else {
            server
                .acceptor(LimitedAcceptor::new(acceptor, MAX_CONNECTIONS))
                .serve(router.into_make_service())
                .await?;
        }
        anyhow::Ok(())
    })
}

/// Takes the whole body, as the webhook does, then sends the case's answer.
async fn answer(
    State(answers): State<Arc<HashMap<String, Bytes>>>,
    uri: Uri,
    body: Bytes,
) -> Response {
    let case = uri
        .query()
        .and_then(|query| query.strip_prefix("case="))
        .unwrap_or_default();
    match answers.get(case) {
        Some(answer) if !body.is_empty() => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            answer.clone(),
        )
            .into_response(),
        _ => (StatusCode::BAD_REQUEST, "unknown case or empty body").into_response(),
    }
}
