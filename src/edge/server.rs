//! The HTTP edge: the TLS admission endpoint (`POST /mutate`) and serving every endpoint
//! (admission, admin and, in broker mode, the broker) until shutdown.
//!
//! The handler reads each body against the shared byte budget, hands it to the [`Admitter`],
//! logs one line and counts it, and sends the answer's bytes (held against the same budget).
//! [`serve`] binds nothing and builds nothing: `app` wires what it serves.

use std::future::Future;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum_server::tls_rustls::{RustlsAcceptor, RustlsConfig};
use http_body_util::BodyExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::admission::{Admitter, Answer, Outcome};
use crate::boot::app::Readiness;
use crate::edge::metrics::Metrics;
mod connections;
mod listeners;
pub use connections::{Counted, LimitedAcceptor};
pub use listeners::Listeners;

/// Largest request body accepted: an UPDATE review carries two objects of up to ~3 MiB each.
pub const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;
/// Request bytes held at once across all admissions; past it a request is refused (503) at
/// once. A review's parsed forms cost about three times its size, so this bounds the memory
/// requests can take near 100 MiB, whatever the concurrency.
const MAX_BODY_BYTES_IN_FLIGHT: usize = 24 * 1024 * 1024;
/// How long a connection may take from its TLS handshake to its first request, and any later
/// request to send its headers: slow or silent clients are cut off.
const REQUEST_HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// How long in-flight admissions may take to finish after shutdown begins.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// The webhook cannot start or stopped abnormally.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("the {endpoint} endpoint failed: {source}")]
    Serve {
        endpoint: &'static str,
        source: std::io::Error,
    },
}

/// What the admission handler needs.
#[derive(Clone)]
pub struct WebhookState {
    pub admitter: Arc<Admitter>,
    pub metrics: Arc<Metrics>,
}

/// The handler's state: what it was given, and the budget of request bytes held at once.
#[derive(Clone)]
struct Handler {
    state: WebhookState,
    body_budget: Arc<Semaphore>,
}

/// Routes of the TLS admission endpoint.
pub fn router(state: WebhookState) -> Router {
    let handler = Handler {
        state,
        body_budget: Arc::new(Semaphore::new(MAX_BODY_BYTES_IN_FLIGHT)),
    };
    Router::new()
        .route("/mutate", post(mutate))
        .with_state(handler)
}

/// Why a request body was not read; answered with a bare HTTP status, since without a body
/// there is no AdmissionReview (and no uid) to answer with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
enum BodyError {
    #[error("the request body is larger than {MAX_BODY_BYTES} bytes")]
    TooLarge,
    #[error(
        "the webhook holds {MAX_BODY_BYTES_IN_FLIGHT} bytes of request bodies already; retry the request"
    )]
    Overloaded,
    #[error("the request body did not arrive within the admission timeout")]
    Slow,
    #[error("the request body could not be read")]
    Broken,
}

impl BodyError {
    fn status(self) -> StatusCode {
        match self {
            BodyError::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            BodyError::Overloaded => StatusCode::SERVICE_UNAVAILABLE,
            BodyError::Slow => StatusCode::REQUEST_TIMEOUT,
            BodyError::Broken => StatusCode::BAD_REQUEST,
        }
    }
}

/// Reads the body frame by frame, holding a permit of the shared byte budget for every byte
/// (released when the answer is sent): memory is bounded by the budget, not by how many
/// clients send large bodies at once, and a trickled body is cut at the admission timeout.
async fn read_body(
    body: Body,
    budget: &Arc<Semaphore>,
    deadline: Duration,
) -> Result<(Bytes, Option<OwnedSemaphorePermit>), BodyError> {
    let read = async {
        let mut body = std::pin::pin!(body);
        // Most reviews arrive in one frame: it is kept as it came, and only a second frame
        // makes the frames be copied together.
        let mut first: Option<Bytes> = None;
        let mut bytes = Vec::new();
        let mut received = 0;
        let mut held: Option<OwnedSemaphorePermit> = None;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|_| BodyError::Broken)?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            received += data.len();
            if received > MAX_BODY_BYTES {
                return Err(BodyError::TooLarge);
            }
            let count = u32::try_from(data.len()).map_err(|_| BodyError::TooLarge)?;
            if count > 0 {
                let permit = budget
                    .clone()
                    .try_acquire_many_owned(count)
                    .map_err(|_| BodyError::Overloaded)?;
                match held.as_mut() {
                    Some(held) => held.merge(permit),
                    None => held = Some(permit),
                }
            }
            match first.take() {
                None if bytes.is_empty() => first = Some(data),
                earlier => {
                    if let Some(earlier) = earlier {
                        bytes.extend_from_slice(&earlier);
                    }
                    bytes.extend_from_slice(&data);
                }
            }
        }
        let body = first.unwrap_or_else(|| Bytes::from(bytes));
        Ok((body, held))
    };
    tokio::time::timeout(deadline, read)
        .await
        .unwrap_or(Err(BodyError::Slow))
}

async fn mutate(State(handler): State<Handler>, request: Request) -> Response {
    let started = Instant::now();
    let state = &handler.state;
    let deadline = state.admitter.limits().timeout;
    let (body, held) = match read_body(request.into_body(), &handler.body_budget, deadline).await {
        Ok(read) => read,
        Err(error) => {
            state.metrics.observe(&Outcome::Invalid, started.elapsed());
            tracing::warn!(%error, "admission request refused before its body was read");
            return (error.status(), error.to_string()).into_response();
        }
    };
    let mut answer = state.admitter.review(&body).await;
    drop((body, held));
    // The answer's bytes count against the same budget as request bodies until they are sent:
    // a patched answer can be larger than the request it answers.
    let reserve = |answer: &Answer| {
        let bytes = u32::try_from(answer.body.len()).unwrap_or(u32::MAX);
        handler
            .body_budget
            .clone()
            .try_acquire_many_owned(bytes)
            .ok()
    };
    let mut permit = reserve(&answer);
    if permit.is_none() {
        answer = answer.too_large_to_hold();
        // A denial is a few hundred bytes; if even that cannot be budgeted, it goes out anyway.
        permit = reserve(&answer);
    }
    let elapsed = started.elapsed();
    state.metrics.observe(&answer.outcome, elapsed);
    answer.log(elapsed);
    let status = StatusCode::from_u16(answer.http_status).unwrap_or(StatusCode::OK);
    let body = BudgetedBody {
        bytes: Some(Bytes::from(answer.body)),
        _permit: permit,
    };
    (
        status,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        Body::new(body),
    )
        .into_response()
}

/// An answer body that holds its share of the byte budget until it has been handed on.
struct BudgetedBody {
    bytes: Option<Bytes>,
    _permit: Option<OwnedSemaphorePermit>,
}

impl http_body::Body for BudgetedBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        std::task::Poll::Ready(
            self.bytes
                .take()
                .map(|bytes| Ok(http_body::Frame::data(bytes))),
        )
    }

    fn is_end_stream(&self) -> bool {
        self.bytes.is_none()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        let length = self.bytes.as_ref().map_or(0, |bytes| bytes.len() as u64);
        http_body::SizeHint::with_exact(length)
    }
}

/// What the endpoints serve: the admission router over TLS, the admin router over plain HTTP
/// and, in broker mode, the broker's router over TLS with its own configuration.
pub struct Routers {
    pub webhook: Router,
    pub admin: Router,
    pub broker: Option<(Router, Arc<rustls::ServerConfig>)>,
}

/// A TLS endpoint: at most `max_connections` at once (closed at accept past it), slow clients
/// cut off, shut down gracefully through `handle`.
fn tls_endpoint(
    (address, listener): (SocketAddr, TcpListener),
    tls: Arc<rustls::ServerConfig>,
    max_connections: usize,
    router: Router,
    handle: &axum_server::Handle<SocketAddr>,
) -> Result<impl Future<Output = std::io::Result<()>> + use<>, ServerError> {
    let mut server = axum_server::from_tcp(listener)
        .map_err(|source| ServerError::Bind {
            addr: address,
            source,
        })?
        .acceptor(LimitedAcceptor::new(
            // TCP_NODELAY: answers are small and latency-bound; with Nagle on, an HTTP/2 answer
            // waited ~40 ms for the API server's delayed ACK (docs/benchmarks.md).
            RustlsAcceptor::new(RustlsConfig::from_config(tls))
                .acceptor(axum_server::accept::NoDelayAcceptor::new()),
            max_connections,
        ))
        .first_request_timeout(REQUEST_HEAD_TIMEOUT)
        .handle(handle.clone());
    server
        .http_builder()
        .http1()
        .header_read_timeout(REQUEST_HEAD_TIMEOUT);
    Ok(server.serve(router.into_make_service()))
}

/// Serves the admission router over TLS (at most `max_connections` at once), the admin router
/// over plain HTTP and the broker's router, when there is one, over TLS (its own cap of
/// `max_connections`) until `shutdown` resolves; then readiness goes false and in-flight
/// admissions and broker requests get [`SHUTDOWN_GRACE`] to finish.
pub async fn serve(
    listeners: Listeners,
    tls: Arc<rustls::ServerConfig>,
    max_connections: usize,
    routers: Routers,
    ready: Readiness,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServerError> {
    let listen = listeners.webhook.0;
    let admin_listen = listeners.admin.0;
    let broker_listen = listeners.broker_address();
    let handle = axum_server::Handle::new();
    let webhook = tls_endpoint(
        listeners.webhook,
        tls,
        max_connections,
        routers.webhook,
        &handle,
    )?;
    let broker_handle = axum_server::Handle::new();
    let broker = match (listeners.broker, routers.broker) {
        (Some(listener), Some((router, broker_tls))) => Some(tls_endpoint(
            listener,
            broker_tls,
            max_connections,
            router,
            &broker_handle,
        )?),
        _ => None,
    };
    let admin_listener =
        tokio::net::TcpListener::from_std(listeners.admin.1).map_err(|source| {
            ServerError::Bind {
                addr: admin_listen,
                source,
            }
        })?;
    let admin = axum::serve(admin_listener, routers.admin);
    tracing::info!(
        %listen,
        %admin_listen,
        broker_listen = broker_listen.map(tracing::field::display),
        "serving"
    );

    let mut webhook = tokio::spawn(webhook);
    let mut admin = tokio::spawn(admin.into_future());
    // Without a broker, a task that never ends stands in for it.
    let mut broker = tokio::spawn(async move {
        match broker {
            Some(broker) => broker.await,
            None => std::future::pending().await,
        }
    });
    let failed = tokio::select! {
        result = &mut webhook => Some(("admission", result)),
        result = &mut admin => Some(("admin", result)),
        result = &mut broker => Some(("broker", result)),
        () = shutdown => None,
    };
    if let Some((endpoint, result)) = failed {
        return Err(ServerError::Serve {
            endpoint,
            source: task_error(result),
        });
    }
    tracing::info!("shutting down: not ready, finishing in-flight admissions");
    ready.set(false);
    handle.graceful_shutdown(Some(SHUTDOWN_GRACE));
    broker_handle.graceful_shutdown(Some(SHUTDOWN_GRACE));
    let webhook_drained = drained("admission", webhook.await);
    let broker_drained = if broker_listen.is_some() {
        drained("broker", broker.await)
    } else {
        broker.abort();
        Ok(())
    };
    admin.abort();
    webhook_drained.and(broker_drained)
}

/// How an endpoint ended after a graceful shutdown: cleanly, or why not.
fn drained(
    endpoint: &'static str,
    result: Result<std::io::Result<()>, tokio::task::JoinError>,
) -> Result<(), ServerError> {
    match result {
        Ok(Ok(())) => Ok(()),
        other => Err(ServerError::Serve {
            endpoint,
            source: task_error(other),
        }),
    }
}

fn task_error(result: Result<std::io::Result<()>, tokio::task::JoinError>) -> std::io::Error {
    match result {
        Ok(Ok(())) => std::io::Error::other("stopped unexpectedly"),
        Ok(Err(error)) => error,
        Err(join) => std::io::Error::other(join.to_string()),
    }
}
