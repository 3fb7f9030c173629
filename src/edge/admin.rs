//! The plain-HTTP admin endpoint: liveness, readiness and Prometheus metrics, read from a state
//! it is given (start-up wiring lives in `app`).

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use crate::boot::app::Readiness;

/// What the admin endpoint reads: readiness, and the metrics exposition rendered at scrape time.
#[derive(Clone)]
pub struct AdminState {
    pub ready: Readiness,
    pub metrics: Arc<dyn Fn() -> String + Send + Sync>,
}

/// Routes of the admin endpoint.
pub fn router(state: AdminState) -> Router {
    Router::new()
        .route("/livez", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

async fn readyz(State(state): State<AdminState>) -> impl IntoResponse {
    if state.ready.is_ready() {
        (StatusCode::OK, "ready")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: secret store and namespace caches are still syncing",
        )
    }
}

async fn metrics(State(state): State<AdminState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        (state.metrics)(),
    )
}
