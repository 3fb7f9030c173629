//! The HTTP edge of the broker: `POST /v1/env` on its own TLS listener.
//!
//! The handler takes the bearer token from the `Authorization` header, reads a small body
//! (at most [`MAX_BROKER_BODY_BYTES`], within the broker's timeout), hands both to the
//! [`Broker`], counts and logs the answer once and writes its JSON. It decides nothing.

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;

use crate::backends::identity::BearerToken;
use crate::broker::{Broker, BrokerAnswer, BrokerError};
use crate::decision::delivery::BROKER_PATH;
use crate::edge::metrics::Metrics;

/// Largest request body read: an env request is one container name.
pub const MAX_BROKER_BODY_BYTES: usize = 16 * 1024;

/// What the broker's handler needs.
#[derive(Clone)]
pub struct BrokerState {
    pub broker: Arc<Broker>,
    pub metrics: Arc<Metrics>,
}

/// Routes of the broker's TLS endpoint.
pub fn router(state: BrokerState) -> Router {
    Router::new()
        .route(BROKER_PATH, post(env))
        .with_state(state)
}

async fn env(State(state): State<BrokerState>, request: Request) -> Response {
    let started = Instant::now();
    let token = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(BearerToken::from_authorization);
    let limits = state.broker.limits();
    let read = tokio::time::timeout(
        limits.timeout,
        axum::body::to_bytes(request.into_body(), MAX_BROKER_BODY_BYTES),
    )
    .await;
    let answer = match read {
        Ok(Ok(body)) => state.broker.answer(token, &body).await,
        Ok(Err(_)) => state.broker.refuse(&BrokerError::Malformed(format!(
            "the body could not be read or is larger than {MAX_BROKER_BODY_BYTES} bytes"
        ))),
        Err(_) => state.broker.refuse(&BrokerError::Malformed(
            "the body did not arrive within the broker's timeout".into(),
        )),
    };
    respond(&state, answer, started)
}

fn respond(state: &BrokerState, answer: BrokerAnswer, started: Instant) -> Response {
    let elapsed = started.elapsed();
    state.metrics.observe_broker(answer.outcome, elapsed);
    answer.log(elapsed);
    let status = StatusCode::from_u16(answer.http_status).unwrap_or(StatusCode::OK);
    (
        status,
        [
            (header::CONTENT_TYPE, "application/json"),
            // Values must not be kept by anything between the broker and iomete-env.
            (header::CACHE_CONTROL, "no-store"),
        ],
        answer.body,
    )
        .into_response()
}
