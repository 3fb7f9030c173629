//! Helpers shared by the integration tests: a kube client for a fake, raw HTTP requests,
//! and bounded waiting (every wait fails the test after a deadline instead of hanging).

#![allow(dead_code)] // Each test binary uses its own subset.

use std::future::Future;
use std::time::Duration;

use http_body_util::BodyExt as _;
use kube::client::Body;
use kube_fake::FakeApiServer;
use serde_json::Value;

/// Long enough for a loaded 2-core CI machine, short enough to fail fast.
pub const DEADLINE: Duration = Duration::from_secs(15);

/// A kube client as an application builds one (with kube's default retry of 429/503/504).
pub fn client(fake: &FakeApiServer) -> kube::Client {
    let config = kube::Config::new(fake.url().parse().expect("the fake's URL parses"));
    kube::Client::try_from(config).expect("a client for an http:// URL builds")
}

/// A kube client that returns every response as it comes, 503s included.
pub fn client_without_retries(fake: &FakeApiServer) -> kube::Client {
    let mut config = kube::Config::new(fake.url().parse().expect("the fake's URL parses"));
    config.default_retry = false;
    kube::Client::try_from(config).expect("a client for an http:// URL builds")
}

/// Polls `condition` until it holds, panicking with `what` after [`DEADLINE`].
pub async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !condition() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Awaits `future`, panicking with `what` after [`DEADLINE`].
pub async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(DEADLINE, future)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// A raw response: status, content type and the body parsed as JSON (`Value::Null` if
/// it is not JSON).
pub struct RawResponse {
    pub status: u16,
    pub content_type: String,
    pub body: Value,
}

/// Sends one request with the given content type and body, and reads the whole answer.
pub async fn send(
    fake: &FakeApiServer,
    method: &str,
    path: &str,
    content_type: &str,
    body: &[u8],
) -> RawResponse {
    let request = http::Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", content_type)
        .body(Body::from(body.to_vec()))
        .expect("a valid request");
    let response = within(path, client_without_retries(fake).send(request))
        .await
        .expect("the fake answers");
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let bytes = within(path, response.into_body().collect_bytes())
        .await
        .expect("the body is read");
    RawResponse {
        status,
        content_type,
        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    }
}

pub async fn get(fake: &FakeApiServer, path: &str) -> RawResponse {
    send(fake, "GET", path, "application/json", b"").await
}

/// A watch response being read line by line.
pub struct RawWatch {
    body: Body,
    buffered: Vec<u8>,
}

impl RawWatch {
    pub async fn open(fake: &FakeApiServer, path: &str) -> Self {
        let request = http::Request::get(path)
            .body(Body::from(Vec::new()))
            .expect("a valid request");
        let response = within(path, client_without_retries(fake).send(request))
            .await
            .expect("the fake answers");
        assert_eq!(response.status(), 200, "watch {path}");
        Self {
            body: response.into_body(),
            buffered: Vec::new(),
        }
    }

    /// The next event as JSON, or `None` when the server ended the response.
    pub async fn next_event(&mut self) -> Option<Value> {
        loop {
            if let Some(end) = self.buffered.iter().position(|&byte| byte == b'\n') {
                let line: Vec<u8> = self.buffered.drain(..=end).collect();
                return Some(serde_json::from_slice(&line).expect("each line is one JSON event"));
            }
            let frame = within("the next watch frame", self.body.frame()).await?;
            let data = frame
                .expect("the watch body reads")
                .into_data()
                .unwrap_or_default();
            self.buffered.extend_from_slice(&data);
        }
    }

    /// The type and object name of the next event, e.g. `("ADDED", "db")`.
    pub async fn next_type_and_name(&mut self) -> (String, String) {
        let event = self.next_event().await.expect("another event");
        (
            event["type"].as_str().unwrap_or_default().to_owned(),
            event["object"]["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        )
    }
}
