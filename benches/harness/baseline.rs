//! The bare baselines: the webhook's own serving stack (its rustls configuration from
//! `tls::ServerTls`, axum-server's rustls acceptor under the webhook's connection cap, an axum
//! router with the same body size limit, a multi-threaded tokio runtime as `#[tokio::main]`
//! builds) answering every AdmissionReview with a fixed, precomputed answer. Two modes:
//!
//! - fixed bytes (the default): the handler takes the whole body and sends the answer without
//!   looking at the request. Whatever the webhook costs beyond this is the webhook's own work;
//!   this is the physical limit of the machine for that exchange.
//! - parse and answer (`--parse`): the handler also parses the body into
//!   `serde_json::Value` and reads `request.uid` (400 when the body is not JSON or has no
//!   uid), then sends the same answer: the least any webhook does with a request.
//!
//! Each runs as a child process of the harness (the harness binary re-executed with
//! `baseline`), like the webhook, so no server shares a runtime or a core budget with the load
//! client. The answer for each case is the webhook's real answer to that case, captured
//! beforehand and chosen by the `case` query parameter, so every server sends the same bytes.

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
use iomete_secrets_webhook::edge::server::LimitedAcceptor;
use iomete_secrets_webhook::edge::server::MAX_BODY_BYTES;
use iomete_secrets_webhook::edge::tls::ServerTls;

/// The webhook's `--max-connections` default, so that accepting goes through the same cap.
const MAX_CONNECTIONS: usize = 1024;

/// `baseline [--parse] --listen ADDR --tls-cert PEM --tls-key PEM --answers JSON`, where the
/// JSON file maps each case name to the answer body to send.
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
    let parse = args.iter().any(|arg| arg == "--parse");
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
        let handler = if parse {
            post(parse_and_answer)
        } else {
            post(answer)
        };
        let router = Router::new()
            .route("/mutate", handler)
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

type Answers = Arc<HashMap<String, Bytes>>;

/// The fixed-bytes baseline: takes the whole body, as the webhook does, then sends the case's
/// answer.
async fn answer(State(answers): State<Answers>, uri: Uri, body: Bytes) -> Response {
    if body.is_empty() {
        return (StatusCode::BAD_REQUEST, "empty body").into_response();
    }
    fixed_answer(&answers, &uri)
}

/// The parse-and-answer baseline: takes the whole body, parses it into `serde_json::Value` and
/// reads the request's uid, then sends the case's answer.
async fn parse_and_answer(State(answers): State<Answers>, uri: Uri, body: Bytes) -> Response {
    let review: serde_json::Value = match serde_json::from_slice(&body) {
        Ok(review) => review,
        Err(error) => return (StatusCode::BAD_REQUEST, error.to_string()).into_response(),
    };
    if !review["request"]["uid"].is_string() {
        return (StatusCode::BAD_REQUEST, "no request.uid").into_response();
    }
    fixed_answer(&answers, &uri)
}

/// The captured answer of the case the `case` query parameter names.
fn fixed_answer(answers: &Answers, uri: &Uri) -> Response {
    let case = uri
        .query()
        .and_then(|query| query.strip_prefix("case="))
        .unwrap_or_default();
    match answers.get(case) {
        Some(answer) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            answer.clone(),
        )
            .into_response(),
        None => (StatusCode::BAD_REQUEST, "unknown case").into_response(),
    }
}
