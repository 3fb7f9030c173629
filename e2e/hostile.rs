//! Hostile inputs over the wire, against the compiled binary over TLS: bodies that are empty,
//! truncated, oversized, deeply nested, sent with the wrong content type, of the wrong kind or
//! version, enormous but legal (10k containers, 10k env entries), with duplicate keys or bytes
//! that are not UTF-8; and clients that trickle a byte a second or open thousands of connections
//! and say nothing. Each must get a fast, clear answer or a closed connection while a bystander
//! pod keeps being admitted, memory stays bounded and the process stays up.
//!
//! This file also owns the wire tools `faults.rs` and the leak audit share: [`post`] and
//! [`Reply`], [`Transcript`] (what a scenario saw that must never hold a value), [`Bystander`],
//! raw TLS connections and the memory probe.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

use super::{
    CANARY_DRIVER, Webhook, assert_no_canary, certs_of, container_env, review_of,
    seeded_api_server, tls_client, with_env_secrets,
};
use crate::support::{fixture, patched_object};

/// The longest a hostile input may wait for its answer. The binary under test is a debug build
/// on a machine shared with other builds, so this is generous; the measured times are in
/// docs/robustness-e2e.md and are printed by each test (`-- --nocapture`).
pub(crate) const ANSWER_BOUND: Duration = Duration::from_secs(5);
/// How long a client that never completes a request may hold a connection. The API server's
/// webhook timeout is 10 s by default (30 s at most), so a request whose head has not arrived
/// within this is not from an API server still waiting for the answer.
pub(crate) const SLOW_CLIENT_BOUND: Duration = Duration::from_secs(15);
/// axum-server's TLS handshake timeout (10 s), plus scheduling slack.
const HANDSHAKE_BOUND: Duration = Duration::from_secs(12);
/// Pieces of request values (not secrets) the webhook must not echo: on reinvocation the pod
/// already carries injected values, so anything quoted from a pod can be a secret.
const ECHO_CANARY: &str = "e2e-canary-echo-4d1c";

/// What the binary answered to one HTTP request.
pub(crate) struct Reply {
    /// 0 when no HTTP answer came (the connection failed or was closed).
    pub(crate) status: u16,
    pub(crate) body: String,
    pub(crate) elapsed: Duration,
}

impl Reply {
    pub(crate) fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|_| {
            panic!(
                "HTTP {} with a body that is not JSON: {}",
                self.status, self.body
            )
        })
    }

    /// `response.status.code` of an AdmissionReview answer.
    pub(crate) fn code(&self) -> Option<u64> {
        self.json()["response"]["status"]["code"].as_u64()
    }

    pub(crate) fn allowed(&self) -> Option<bool> {
        self.json()["response"]["allowed"].as_bool()
    }

    pub(crate) fn message(&self) -> String {
        self.json()["response"]["status"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// One line for the figures table.
    pub(crate) fn summary(&self) -> String {
        if self.status == 0 {
            return format!("no answer ({})", self.body);
        }
        match serde_json::from_str::<Value>(&self.body) {
            Ok(review) if review["response"].is_object() => {
                let response = &review["response"];
                let verdict = match (response["allowed"].as_bool(), response["patch"].is_string()) {
                    (Some(true), true) => "allowed, patched".to_owned(),
                    (Some(true), false) => "allowed, untouched".to_owned(),
                    _ => format!("denied {}", response["status"]["code"]),
                };
                format!("HTTP {}, {verdict}", self.status)
            }
            _ => format!(
                "HTTP {} {:?}",
                self.status,
                self.body.chars().take(60).collect::<String>()
            ),
        }
    }
}

/// POSTs `body` to `path` on the webhook's TLS port.
pub(crate) async fn post(
    client: &reqwest::Client,
    port: u16,
    path: &str,
    body: impl Into<reqwest::Body>,
    content_type: Option<&str>,
) -> Reply {
    let started = Instant::now();
    let mut request = client
        .post(format!("https://localhost:{port}{path}"))
        .body(body);
    if let Some(content_type) = content_type {
        request = request.header("content-type", content_type);
    }
    let outcome = match request.send().await {
        Ok(response) => {
            let status = response.status().as_u16();
            response.text().await.map(|body| (status, body))
        }
        Err(error) => Err(error),
    };
    let (status, body) = outcome.unwrap_or_else(|error| (0, error.to_string()));
    Reply {
        status,
        body,
        elapsed: started.elapsed(),
    }
}

/// Sends `review` to `/mutate` as the API server would.
pub(crate) async fn admit(webhook: &Webhook, client: &reqwest::Client, review: &Value) -> Reply {
    let body = serde_json::to_vec(review).unwrap();
    post(
        client,
        webhook.port,
        "/mutate",
        body,
        Some("application/json"),
    )
    .await
}

/// One row of the figures in docs/robustness-e2e.md.
struct Row {
    input: String,
    outcome: String,
    elapsed: Option<Duration>,
}

/// What a scenario saw: its figures, and every answer that must never hold a value (denials,
/// errors, warnings, audit annotations; a patch legitimately carries values and is left out).
#[derive(Default)]
pub(crate) struct Transcript {
    rows: Vec<Row>,
    seen: String,
}

impl Transcript {
    pub(crate) fn row(
        &mut self,
        input: impl Into<String>,
        outcome: impl Into<String>,
        elapsed: Option<Duration>,
    ) {
        self.rows.push(Row {
            input: input.into(),
            outcome: outcome.into(),
            elapsed,
        });
    }

    /// Records `reply` as seen (without its patch) and as a row of the figures.
    pub(crate) fn reply(&mut self, input: impl Into<String>, reply: &Reply) {
        self.saw_reply(reply);
        self.row(input, reply.summary(), Some(reply.elapsed));
    }

    pub(crate) fn saw_reply(&mut self, reply: &Reply) {
        match serde_json::from_str::<Value>(&reply.body) {
            Ok(mut review) => {
                if let Some(response) = review.get_mut("response").and_then(Value::as_object_mut) {
                    response.remove("patch");
                }
                self.saw(&review.to_string());
            }
            Err(_) => self.saw(&reply.body),
        }
    }

    pub(crate) fn saw(&mut self, text: &str) {
        self.seen.push_str(text);
        self.seen.push('\n');
    }

    pub(crate) fn seen(&self) -> &str {
        &self.seen
    }

    pub(crate) fn observations(&self) -> usize {
        self.rows.len()
    }

    /// Prints the figures (visible with `-- --nocapture`).
    pub(crate) fn print(&self, title: &str) {
        println!("\n{title}\n| input | outcome | time |\n|---|---|---|");
        for row in &self.rows {
            let elapsed = row
                .elapsed
                .map(|elapsed| format!("{:.1} ms", elapsed.as_secs_f64() * 1e3))
                .unwrap_or_default();
            println!("| {} | {} | {elapsed} |", row.input, row.outcome);
        }
    }
}

/// `VmRSS`, `VmHWM` (peak) etc. of a process, in KiB.
pub(crate) fn memory_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|value| value.trim().trim_end_matches(" kB").parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// Whether the process runs (a process that exited stays a zombie until reaped).
pub(crate) fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/status")).is_ok_and(|status| {
        status
            .lines()
            .any(|line| line.starts_with("State:") && !line.contains("zombie"))
    })
}

/// What the bystander saw: an ordinary pod admitted again and again while a scenario runs.
pub(crate) struct BystanderReport {
    pub(crate) answered: usize,
    pub(crate) failures: Vec<String>,
    pub(crate) slowest: Duration,
}

impl BystanderReport {
    pub(crate) fn assert_served(&self, during: &str) {
        assert!(
            self.answered > 0,
            "the bystander was never answered during {during}"
        );
        assert!(
            self.failures.is_empty(),
            "the bystander was not served during {during}: {:?}",
            self.failures
        );
        assert!(
            self.slowest < ANSWER_BOUND,
            "the bystander waited {:?} during {during}",
            self.slowest
        );
    }
}

/// Admits one pod every 50 ms over its own HTTP/2 connection (as a second API server would)
/// and checks each answer, until [`Bystander::finish`].
pub(crate) struct Bystander {
    stop: Arc<AtomicBool>,
    task: JoinHandle<BystanderReport>,
}

type Check = fn(&Value, &Value) -> Result<(), String>;

impl Bystander {
    /// A Spark driver of the finance domain, which must get the finance store's value.
    pub(crate) fn secret_pod(webhook: &Webhook) -> Self {
        let review = review_of(
            fixture("spark/spark35-driver-pod.json"),
            "spark-jobs",
            "bystander",
        );
        Self::start(webhook, review, |review, answer| {
            if answer["response"]["allowed"] != true {
                return Err(answer["response"]["status"].to_string());
            }
            let pod = patched_object(review, answer);
            match container_env(&pod, 0, "AWS_SECRET_ACCESS_KEY") {
                Some(value) if value == CANARY_DRIVER => Ok(()),
                _ => Err("the patch does not carry the store's value".into()),
            }
        })
    }

    /// A pod that mentions no secret, which must be admitted untouched whatever the caches do.
    pub(crate) fn plain_pod(webhook: &Webhook) -> Self {
        let mut pod = fixture("spark/spark35-driver-pod.json");
        pod["metadata"]["annotations"] = json!({});
        let review = review_of(pod, "spark-jobs", "bystander-plain");
        Self::start(webhook, review, |_, answer| {
            let response = &answer["response"];
            if response["allowed"] == true && response["patch"].is_null() {
                Ok(())
            } else {
                Err(response.to_string())
            }
        })
    }

    /// Admits `review` again and again, judging each answer with `check`.
    pub(crate) fn start(webhook: &Webhook, review: Value, check: Check) -> Self {
        let client = tls_client(&certs_of(webhook), true);
        let url = format!("https://localhost:{}/mutate", webhook.port);
        let stop = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn({
            let stop = stop.clone();
            async move {
                let mut report = BystanderReport {
                    answered: 0,
                    failures: Vec::new(),
                    slowest: Duration::ZERO,
                };
                while !stop.load(Ordering::Relaxed) {
                    let started = Instant::now();
                    let answer = match client.post(&url).json(&review).send().await {
                        Ok(response) => response.json::<Value>().await.map_err(|e| e.to_string()),
                        Err(error) => Err(error.to_string()),
                    };
                    report.slowest = report.slowest.max(started.elapsed());
                    match answer.and_then(|answer| check(&review, &answer)) {
                        Ok(()) => report.answered += 1,
                        Err(failure) => report.failures.push(failure),
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                report
            }
        });
        Bystander { stop, task }
    }

    pub(crate) async fn finish(self) -> BystanderReport {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap()
    }
}

/// A TLS connection to the webhook offering only `alpn`, trusting its CA.
pub(crate) async fn tls_connect(
    port: u16,
    ca_pem: &str,
    alpn: &[u8],
) -> io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName};
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(("127.0.0.1", port)).await?;
    connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
}

/// How a slow or idle connection ended within the observation window.
#[derive(Debug, Clone)]
pub(crate) struct Fate {
    /// When the webhook closed it, `None` if still open at the end.
    pub(crate) closed_after: Option<Duration>,
    /// The first line of what the webhook sent before closing, if anything readable.
    pub(crate) said: Option<String>,
}

impl Fate {
    fn describe(&self) -> String {
        match (&self.closed_after, &self.said) {
            (Some(after), Some(said)) => format!("answered {said:?}, closed after {after:.1?}"),
            (Some(after), None) => format!("closed after {after:.1?}"),
            (None, _) => "still open".to_owned(),
        }
    }
}

/// Writes `head` at once, then one byte of `tail` a second (cycling), reading whatever the
/// webhook sends, until it closes the connection or `observe` has passed.
async fn trickle<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    head: &[u8],
    tail: &[u8],
    observe: Duration,
) -> Fate {
    let started = Instant::now();
    let closed = |said: &Vec<u8>| Fate {
        closed_after: Some(started.elapsed()),
        said: first_line(said),
    };
    let mut said = Vec::new();
    if stream.write_all(head).await.is_err() || stream.flush().await.is_err() {
        return closed(&said);
    }
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    let mut next = tail.iter().cycle();
    let mut buffer = [0u8; 4096];
    loop {
        tokio::select! {
            _ = ticker.tick() => {
                if started.elapsed() >= observe {
                    return Fate { closed_after: None, said: first_line(&said) };
                }
                let byte = [*next.next().unwrap()];
                if stream.write_all(&byte).await.is_err() || stream.flush().await.is_err() {
                    return closed(&said);
                }
            }
            read = stream.read(&mut buffer) => match read {
                Ok(0) | Err(_) => return closed(&said),
                Ok(n) => said.extend_from_slice(&buffer[..n]),
            },
        }
    }
}

/// Sends nothing; waits for the webhook to close the connection or `observe` to pass.
async fn idle<S: AsyncRead + Unpin>(mut stream: S, observe: Duration) -> Fate {
    let started = Instant::now();
    let mut said = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        let remaining = observe.saturating_sub(started.elapsed());
        match tokio::time::timeout(remaining, stream.read(&mut buffer)).await {
            Err(_) => {
                return Fate {
                    closed_after: None,
                    said: first_line(&said),
                };
            }
            Ok(Ok(0) | Err(_)) => {
                return Fate {
                    closed_after: Some(started.elapsed()),
                    said: first_line(&said),
                };
            }
            Ok(Ok(n)) => said.extend_from_slice(&buffer[..n]),
        }
    }
}

/// The first line of an HTTP/1.1 answer; HTTP/2 frames and TLS alerts are not text.
fn first_line(bytes: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(bytes).ok()?;
    text.starts_with("HTTP/")
        .then(|| text.lines().next().unwrap_or_default().to_owned())
}

/// What happened to each kind of slow or idle client, and what it cost.
pub(crate) struct SlowReport {
    pub(crate) handshake_trickle: Fate,
    pub(crate) header_trickle_h1: Fate,
    pub(crate) preface_trickle_h2: Fate,
    pub(crate) body_trickle_h1: Fate,
    pub(crate) body_trickle_h2: Fate,
    pub(crate) tcp_idle: Vec<Fate>,
    pub(crate) tls_idle: Vec<Fate>,
    pub(crate) bystander: BystanderReport,
    /// RSS growth while the TCP and then the TLS connections were open, KiB.
    pub(crate) rss_for_tcp_kib: i64,
    pub(crate) rss_for_tls_kib: i64,
    pub(crate) alive: bool,
}

impl SlowReport {
    pub(crate) fn record(&self, transcript: &mut Transcript) {
        let rows = [
            ("TLS ClientHello trickled 1 byte/s", &self.handshake_trickle),
            (
                "HTTP/1.1 request head trickled 1 byte/s (after TLS)",
                &self.header_trickle_h1,
            ),
            (
                "HTTP/2 connection preface trickled 1 byte/s (after TLS)",
                &self.preface_trickle_h2,
            ),
            (
                "HTTP/1.1 body trickled 1 byte/s (head complete)",
                &self.body_trickle_h1,
            ),
            (
                "HTTP/2 body trickled 1 byte/s (headers complete)",
                &self.body_trickle_h2,
            ),
        ];
        for (input, fate) in rows {
            transcript.row(input, fate.describe(), None);
        }
        for (input, fates, rss) in [
            (
                "idle TCP connections (no TLS)",
                &self.tcp_idle,
                self.rss_for_tcp_kib,
            ),
            (
                "idle TLS connections (handshake done, no request)",
                &self.tls_idle,
                self.rss_for_tls_kib,
            ),
        ] {
            let closed: Vec<Duration> = fates.iter().filter_map(|fate| fate.closed_after).collect();
            let closed = match closed.iter().max() {
                Some(last) => format!("{} closed (the last after {last:.1?})", closed.len()),
                None => "none closed".to_owned(),
            };
            let open = fates
                .iter()
                .filter(|fate| fate.closed_after.is_none())
                .count();
            transcript.row(
                format!("{} x {input}", fates.len()),
                format!(
                    "{closed}, {open} still open; RSS +{} KiB ({} B each)",
                    rss,
                    rss * 1024 / fates.len().max(1) as i64
                ),
                None,
            );
        }
        transcript.row(
            "bystander pod every 50 ms meanwhile",
            format!(
                "{} admitted, {} failed, slowest {:.1?}",
                self.bystander.answered,
                self.bystander.failures.len(),
                self.bystander.slowest
            ),
            None,
        );
    }
}

/// Opens `tcp_idle` plain TCP connections and `tls_idle` TLS connections that say nothing, and
/// one client of each trickling kind, keeps them for `observe`, and reports how each ended while
/// a bystander pod was admitted throughout.
pub(crate) async fn slow_and_idle_clients(
    webhook: &Webhook,
    tcp_idle: usize,
    tls_idle: usize,
    observe: Duration,
) -> SlowReport {
    let pid = webhook.child.id();
    let port = webhook.port;
    let ca = certs_of(webhook);
    let bystander = Bystander::secret_pod(webhook);
    let baseline = memory_kib(pid, "VmRSS") as i64;

    // A TLS record header announcing a 16 KiB handshake message, whose body then trickles: the
    // handshake cannot complete, which only the handshake timeout can end.
    let handshake = tokio::spawn({
        async move {
            let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
            trickle(tcp, &[0x16, 0x03, 0x01, 0x40, 0x00, 0x01], b"\x00", observe).await
        }
    });
    let trickled_head =
        b"POST /mutate HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\nx-slow: "
            .to_vec();
    let header_h1 = tokio::spawn({
        let ca = ca.clone();
        async move {
            let tls = tls_connect(port, &ca, b"http/1.1").await.unwrap();
            trickle(tls, b"", &trickled_head, observe).await
        }
    });
    let preface_h2 = tokio::spawn({
        let ca = ca.clone();
        async move {
            let tls = tls_connect(port, &ca, b"h2").await.unwrap();
            trickle(tls, b"", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", observe).await
        }
    });
    let body_h1 = tokio::spawn({
        let ca = ca.clone();
        async move {
            let tls = tls_connect(port, &ca, b"http/1.1").await.unwrap();
            let head = b"POST /mutate HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: 100000\r\n\r\n{";
            trickle(tls, head, b" ", observe).await
        }
    });
    // HTTP/2 as the API server speaks it; the stream's body never ends.
    let body_h2 = tokio::spawn({
        let client = tls_client(&ca, true);
        async move {
            let started = Instant::now();
            let body = futures::stream::once(async { Ok::<_, io::Error>(b"{".to_vec()) }).chain(
                futures::stream::unfold((), |()| async {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    Some((Ok::<_, io::Error>(b" ".to_vec()), ()))
                }),
            );
            let request = client
                .post(format!("https://localhost:{port}/mutate"))
                .header("content-type", "application/json")
                .body(reqwest::Body::wrap_stream(body))
                .send();
            match tokio::time::timeout(observe, request).await {
                Err(_) => Fate {
                    closed_after: None,
                    said: None,
                },
                Ok(outcome) => Fate {
                    closed_after: Some(started.elapsed()),
                    said: Some(match outcome {
                        Ok(response) => format!("HTTP {}", response.status().as_u16()),
                        Err(error) => error.to_string(),
                    }),
                },
            }
        }
    });

    let mut tcp = Vec::with_capacity(tcp_idle);
    for _ in 0..tcp_idle.div_ceil(100) {
        let batch =
            (0..100.min(tcp_idle - tcp.len())).map(|_| TcpStream::connect(("127.0.0.1", port)));
        for stream in futures::future::join_all(batch).await {
            tcp.push(stream.expect("the webhook accepts TCP connections"));
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let with_tcp = memory_kib(pid, "VmRSS") as i64;
    let tcp_idle: Vec<JoinHandle<Fate>> = tcp
        .into_iter()
        .map(|stream| tokio::spawn(idle(stream, observe)))
        .collect();

    let mut tls = Vec::with_capacity(tls_idle);
    let alpns: [&[u8]; 2] = [b"h2", b"http/1.1"];
    for batch in 0..tls_idle.div_ceil(50) {
        let connects = (0..50.min(tls_idle - tls.len()))
            .map(|i| tls_connect(port, &ca, alpns[(batch + i) % 2]));
        for stream in futures::future::join_all(connects).await {
            tls.push(stream.expect("the webhook completes TLS handshakes"));
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let with_tls = memory_kib(pid, "VmRSS") as i64;
    let tls_idle: Vec<JoinHandle<Fate>> = tls
        .into_iter()
        .map(|stream| tokio::spawn(idle(stream, observe)))
        .collect();

    let join = |handles: Vec<JoinHandle<Fate>>| async {
        futures::future::join_all(handles)
            .await
            .into_iter()
            .map(Result::unwrap)
            .collect::<Vec<_>>()
    };
    let tcp_idle = join(tcp_idle).await;
    let tls_idle = join(tls_idle).await;
    SlowReport {
        handshake_trickle: handshake.await.unwrap(),
        header_trickle_h1: header_h1.await.unwrap(),
        preface_trickle_h2: preface_h2.await.unwrap(),
        body_trickle_h1: body_h1.await.unwrap(),
        body_trickle_h2: body_h2.await.unwrap(),
        tcp_idle,
        tls_idle,
        bystander: bystander.finish().await,
        rss_for_tcp_kib: with_tcp - baseline,
        rss_for_tls_kib: with_tls - with_tcp,
        alive: running(pid),
    }
}

/// `tcp` and `tls` idle connections, or fewer when the open-file limit (shared by this process
/// and the binary, which inherits it) would not hold them next to the other tests.
fn idle_connections(tcp: usize, tls: usize) -> (usize, usize) {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    let soft: usize = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))
        .and_then(|line| line.split_whitespace().nth(3))
        .and_then(|soft| soft.parse().ok())
        .unwrap_or(1024);
    let budget = soft.saturating_sub(1024);
    if budget >= tcp + tls {
        return (tcp, tls);
    }
    println!(
        "open-file limit {soft}: {budget} idle connections instead of {}",
        tcp + tls
    );
    (budget * tcp / (tcp + tls), budget * tls / (tcp + tls))
}

/// A review of `pod` in spark-jobs with `uid`, as JSON bytes.
fn body_of(pod: Value, uid: &str) -> Vec<u8> {
    serde_json::to_vec(&review_of(pod, "spark-jobs", uid)).unwrap()
}

fn driver_review() -> Value {
    review_of(
        fixture("spark/spark35-driver-pod.json"),
        "spark-jobs",
        "hostile",
    )
}

/// Asserts the HTTP 400 with an invalid AdmissionResponse that an unreadable body gets.
#[track_caller]
fn assert_invalid(input: &str, reply: &Reply) {
    assert_eq!(reply.status, 400, "{input}: {}", reply.body);
    assert_eq!(reply.allowed(), Some(false), "{input}: {}", reply.body);
    assert_eq!(reply.code(), Some(400), "{input}: {}", reply.body);
}

/// Asserts an AdmissionReview answer (HTTP 200) denying with `code`.
#[track_caller]
fn assert_denied(input: &str, reply: &Reply, code: u64) {
    assert_eq!(reply.status, 200, "{input}: {}", reply.body);
    assert_eq!(reply.allowed(), Some(false), "{input}: {}", reply.body);
    assert_eq!(reply.code(), Some(code), "{input}: {}", reply.body);
}

#[track_caller]
fn assert_untouched(input: &str, reply: &Reply) {
    assert_eq!(reply.status, 200, "{input}: {}", reply.body);
    let response = &reply.json()["response"];
    assert_eq!(response["allowed"], true, "{input}: {}", reply.body);
    assert!(
        response["patch"].is_null(),
        "{input}: patched: {}",
        reply.body
    );
}

/// A pod whose driver gets the finance value, as the checks below expect of a good answer.
#[track_caller]
fn assert_driver_patched(input: &str, review: &Value, reply: &Reply) {
    assert_eq!(reply.status, 200, "{input}: {}", reply.body);
    let answer = reply.json();
    assert_eq!(
        answer["response"]["allowed"], true,
        "{input}: {}",
        reply.body
    );
    let pod = patched_object(review, &answer);
    assert_eq!(
        container_env(&pod, 0, "AWS_SECRET_ACCESS_KEY").as_deref(),
        Some(CANARY_DRIVER),
        "{input}"
    );
}

/// The driver pod without annotations, its container's env `count` entries `V{i}` each holding
/// a legacy placeholder of the global store.
fn legacy_env_pod(count: usize) -> Value {
    let mut pod = fixture("spark/spark35-driver-pod.json");
    pod["metadata"]["annotations"] = json!({});
    pod["spec"]["containers"][0]["env"] = Value::Array(
        (0..count)
            .map(|i| json!({"name": format!("V{i}"), "value": "x${secrets.smtp_password}"}))
            .collect(),
    );
    pod
}

/// A change that turns the driver's review into a hostile one.
type Edit = fn(&mut Value);

/// Every malformed, oversized or surprising body the issue lists, each asserted to get its
/// clear answer within [`ANSWER_BOUND`], with the process's memory measured around the lot.
pub(crate) async fn hostile_bodies(webhook: &Webhook, transcript: &mut Transcript) {
    let port = webhook.port;
    let ca = certs_of(webhook);
    let h2 = tls_client(&ca, true);
    let h1 = tls_client(&ca, false);
    let json = Some("application/json");
    let driver = driver_review();
    let driver_bytes = serde_json::to_vec(&driver).unwrap();

    macro_rules! send {
        ($input:expr, $client:expr, $path:expr, $body:expr, $content_type:expr) => {{
            let reply = post($client, port, $path, $body, $content_type).await;
            assert!(
                reply.elapsed < ANSWER_BOUND,
                "{}: answered after {:?}",
                $input,
                reply.elapsed
            );
            transcript.reply($input, &reply);
            reply
        }};
    }

    // Empty, truncated and oversized bodies.
    let input = "0-byte body";
    assert_invalid(input, &send!(input, &h2, "/mutate", Vec::new(), json));
    let input = "AdmissionReview truncated at half";
    let half = driver_bytes[..driver_bytes.len() / 2].to_vec();
    assert_invalid(input, &send!(input, &h2, "/mutate", half, json));
    let input = "AdmissionReview truncated by one byte";
    let short = driver_bytes[..driver_bytes.len() - 1].to_vec();
    assert_invalid(input, &send!(input, &h1, "/mutate", short, json));
    let mut huge = driver.clone();
    huge["request"]["object"]["metadata"]["annotations"]["filler"] = json!("x".repeat(10 << 20));
    let huge = serde_json::to_vec(&huge).unwrap();
    let input = "10 MiB AdmissionReview (Content-Length, HTTP/2)";
    assert_eq!(
        send!(input, &h2, "/mutate", huge.clone(), json).status,
        413,
        "{input}"
    );
    // Over HTTP/1.1 the 413 goes out while the client is still sending, and the connection is
    // closed behind it: a busy client can see the reset before it reads the answer.
    let input = "10 MiB AdmissionReview (Content-Length, HTTP/1.1)";
    let reply = send!(input, &h1, "/mutate", huge.clone(), json);
    assert!(
        reply.status == 413 || reply.status == 0,
        "{input}: {}",
        reply.body
    );
    let input = "10 MiB AdmissionReview streamed without a length (HTTP/2)";
    let chunks: Vec<Result<Vec<u8>, io::Error>> = huge
        .chunks(1 << 20)
        .map(|chunk| Ok(chunk.to_vec()))
        .collect();
    let streamed = reqwest::Body::wrap_stream(futures::stream::iter(chunks));
    let reply = send!(input, &h2, "/mutate", streamed, json);
    assert!(
        reply.status == 413 || reply.status == 0,
        "{input}: {}",
        reply.body
    );
    let mut under = driver.clone();
    under["request"]["object"]["metadata"]["annotations"]["filler"] = json!("x".repeat(7 << 20));
    let input = "7 MiB AdmissionReview (under the 8 MiB limit)";
    let under_bytes = serde_json::to_vec(&under).unwrap();
    assert_driver_patched(
        input,
        &under,
        &send!(input, &h2, "/mutate", under_bytes, json),
    );

    // Deep nesting: serde_json's recursion limit (128) must stop each before the stack does.
    let input = "1,000,000 nested JSON arrays as the body";
    let nested = "[".repeat(1_000_000).into_bytes();
    assert_invalid(input, &send!(input, &h2, "/mutate", nested, json));
    // In a field the decision does not read, the nesting is skipped without recursion (the API
    // server would have dropped the unknown field anyway): answered as the driver is.
    let input = "100,000 nested arrays inside the pod spec, in a field the webhook does not read";
    let text = String::from_utf8(driver_bytes.clone()).unwrap();
    let deep = text.replacen(
        "\"spec\":{",
        &format!(
            "\"spec\":{{\"deep\":{}{},",
            "[".repeat(100_000),
            "]".repeat(100_000)
        ),
        1,
    );
    assert_ne!(deep, text);
    let deep_review: Value = serde_json::from_str(&text).unwrap();
    assert_driver_patched(
        input,
        &deep_review,
        &send!(input, &h2, "/mutate", deep.into_bytes(), json),
    );
    let input = "100,000 nested arrays as a container's env";
    let deep = text.replacen(
        "\"env\":[",
        &format!("\"env\":[{}{},", "[".repeat(100_000), "]".repeat(100_000)),
        1,
    );
    assert_ne!(deep, text);
    assert_denied(
        input,
        &send!(input, &h2, "/mutate", deep.into_bytes(), json),
        400,
    );
    let input = "60,000 nested arrays in the env-secrets annotation";
    let mut pod = fixture("spark/spark35-driver-pod.json");
    pod["metadata"]["annotations"]["secrets.iomete.com/env-secrets"] =
        json!(format!("{}{}", "[".repeat(30_000), "]".repeat(30_000)));
    assert_denied(
        input,
        &send!(input, &h2, "/mutate", body_of(pod, "deep"), json),
        400,
    );

    // Content types: the body decides, as for the API server, which always sends JSON.
    for content_type in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("application/json; charset=utf-16"),
        None,
    ] {
        let input = format!(
            "valid AdmissionReview sent as {}",
            content_type.unwrap_or("no content type")
        );
        let reply = send!(
            input.as_str(),
            &h2,
            "/mutate",
            driver_bytes.clone(),
            content_type
        );
        assert_driver_patched(&input, &driver, &reply);
    }
    let input = "GET /mutate";
    let started = Instant::now();
    let reply = h2
        .get(format!("https://localhost:{port}/mutate"))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status().as_u16(), 405, "{input}");
    transcript.row(input, "HTTP 405", Some(started.elapsed()));
    let input = "POST /admin (unknown path)";
    assert_eq!(
        send!(input, &h2, "/admin", driver_bytes.clone(), json).status,
        404,
        "{input}"
    );

    // Wrong kind, version or operation.
    let variants: [(&str, Edit); 8] = [
        ("AdmissionReview of admission.k8s.io/v2", |r| {
            r["apiVersion"] = json!("admission.k8s.io/v2")
        }),
        ("kind Pod instead of AdmissionReview", |r| {
            r["kind"] = json!("Pod")
        }),
        ("no kind and no apiVersion", |r| {
            r.as_object_mut().unwrap().remove("kind");
            r.as_object_mut().unwrap().remove("apiVersion");
        }),
        ("no request", |r| {
            r.as_object_mut().unwrap().remove("request");
        }),
        ("request: null", |r| r["request"] = Value::Null),
        ("request.uid of the wrong type", |r| {
            r["request"]["uid"] = json!(42)
        }),
        ("request.dryRun holding a pod value", |r| {
            r["request"]["dryRun"] = json!(ECHO_CANARY)
        }),
        ("request.operation unknown", |r| {
            r["request"]["operation"] = json!("EXPLODE")
        }),
    ];
    for (input, mutate) in variants {
        let mut review = driver.clone();
        mutate(&mut review);
        let reply = send!(
            input,
            &h2,
            "/mutate",
            serde_json::to_vec(&review).unwrap(),
            json
        );
        assert_invalid(input, &reply);
    }
    let untouched: [(&str, Edit); 5] = [
        ("request.kind Pod in version v2", |r| {
            r["request"]["kind"]["version"] = json!("v2")
        }),
        (
            "request.kind apps/v1 Deployment carrying the annotations",
            |r| {
                r["request"]["kind"] =
                    json!({"group": "apps", "version": "v1", "kind": "Deployment"})
            },
        ),
        ("operation UPDATE", |r| {
            r["request"]["operation"] = json!("UPDATE")
        }),
        ("operation DELETE", |r| {
            r["request"]["operation"] = json!("DELETE")
        }),
        ("subResource ephemeralcontainers", |r| {
            r["request"]["subResource"] = json!("ephemeralcontainers")
        }),
    ];
    for (input, mutate) in untouched {
        let mut review = driver.clone();
        mutate(&mut review);
        assert_untouched(
            input,
            &send!(
                input,
                &h2,
                "/mutate",
                serde_json::to_vec(&review).unwrap(),
                json
            ),
        );
    }
    let input = "request.object: null";
    let mut review = driver.clone();
    review["request"]["object"] = Value::Null;
    assert_denied(
        input,
        &send!(
            input,
            &h2,
            "/mutate",
            serde_json::to_vec(&review).unwrap(),
            json
        ),
        400,
    );
    // A field the decision reads (fields it does not read are skipped unread: the API server
    // has validated them before any webhook is called).
    let input = "pod field of the wrong type holding a pod value";
    let mut review = driver.clone();
    review["request"]["object"]["spec"]["containers"][0]["env"] = json!(ECHO_CANARY);
    assert_denied(
        input,
        &send!(
            input,
            &h2,
            "/mutate",
            serde_json::to_vec(&review).unwrap(),
            json
        ),
        400,
    );

    // Enormous but legal pods: refused at the injections cap, before any work per container.
    let input = "10,000 containers, env-secrets into every one";
    let mut pod = fixture("spark/spark35-driver-pod.json");
    // Minimal containers: the fixture's own (~900 bytes each) would pass the body limit.
    pod["spec"]["containers"] = Value::Array(
        (0..10_000)
            .map(|i| json!({"name": format!("c{i}"), "image": "busybox"}))
            .collect(),
    );
    let review = review_of(pod, "spark-jobs", "wide");
    let reply = send!(
        input,
        &h2,
        "/mutate",
        serde_json::to_vec(&review).unwrap(),
        json
    );
    assert_denied(input, &reply, 400);
    assert!(
        reply.message().contains("more than the 1024 allowed"),
        "{input}: {}",
        reply.summary()
    );
    let input = "10,000 env entries, each a legacy ${secrets.smtp_password}";
    let review = review_of(legacy_env_pod(10_000), "spark-jobs", "long");
    let reply = send!(
        input,
        &h2,
        "/mutate",
        serde_json::to_vec(&review).unwrap(),
        json
    );
    assert_denied(input, &reply, 400);
    assert!(
        reply.message().contains("legacy placeholders"),
        "{input}: {}",
        reply.summary()
    );
    let input = "1,000 env entries, each a legacy ${secrets.smtp_password}";
    let review = review_of(legacy_env_pod(1_000), "spark-jobs", "long");
    let reply = send!(
        input,
        &h2,
        "/mutate",
        serde_json::to_vec(&review).unwrap(),
        json
    );
    let answer = reply.json();
    assert_eq!(
        answer["response"]["allowed"],
        true,
        "{input}: {}",
        reply.summary()
    );
    let warnings = answer["response"]["warnings"]
        .as_array()
        .map_or(0, Vec::len);
    assert!((1..=25).contains(&warnings), "{input}: {warnings} warnings");
    let patched = patched_object(&review, &answer);
    assert_eq!(
        container_env(&patched, 0, "V999"),
        Some(format!("x{}", super::CANARY_GLOBAL)),
        "{input}"
    );
    let input = "10,000 entries in the env-secrets annotation";
    let entries: Vec<(String, String, String)> = (0..10_000)
        .map(|i| {
            (
                format!("E{i}"),
                "s3-secret-key".to_owned(),
                "finance".to_owned(),
            )
        })
        .collect();
    let entries: Vec<(&str, &str, &str)> = entries
        .iter()
        .map(|(a, b, c)| (a.as_str(), b.as_str(), c.as_str()))
        .collect();
    let pod = with_env_secrets(fixture("spark/spark35-driver-pod.json"), &entries);
    let reply = send!(input, &h2, "/mutate", body_of(pod, "many"), json);
    assert_denied(input, &reply, 400);
    assert!(
        reply.message().contains("allowed"),
        "{input}: {}",
        reply.message()
    );

    // Duplicate keys: the answer must never rest on one of two conflicting values.
    let text = String::from_utf8(driver_bytes.clone()).unwrap();
    let duplicated = [
        (
            "duplicate \"request\" key",
            text.replacen("\"request\":{", "\"request\":{},\"request\":{", 1),
        ),
        (
            "duplicate request.namespace (own, then another domain's)",
            text.replacen(
                "\"namespace\":\"spark-jobs\"",
                "\"namespace\":\"spark-jobs\",\"namespace\":\"marketing-jobs\"",
                1,
            ),
        ),
        (
            "duplicate request.uid",
            text.replacen(
                "\"uid\":\"hostile\"",
                "\"uid\":\"hostile\",\"uid\":\"other\"",
                1,
            ),
        ),
        (
            "duplicate request.operation (CREATE, then UPDATE)",
            text.replacen(
                "\"operation\":\"CREATE\"",
                "\"operation\":\"CREATE\",\"operation\":\"UPDATE\"",
                1,
            ),
        ),
    ];
    for (input, body) in duplicated {
        assert_ne!(body, text, "{input}: the fixture changed shape");
        assert_invalid(
            input,
            &send!(input, &h2, "/mutate", body.into_bytes(), json),
        );
    }
    let input = "duplicate key inside a reference";
    let mut pod = fixture("spark/spark35-driver-pod.json");
    pod["metadata"]["annotations"]["secrets.iomete.com/env-secrets"] = json!(
        r#"[{"key": "A", "key": "B", "secretObject": {"key": "s3-secret-key", "source": {"type": "KUBERNETES", "id": "finance"}}}]"#
    );
    assert_denied(
        input,
        &send!(input, &h2, "/mutate", body_of(pod, "dup-ref"), json),
        400,
    );
    // Annotations are a map: like Go's encoding/json, the last value of a key wins. A real API
    // server re-encodes the pod it stored, so it never sends two; what matters is that the
    // scope check runs on the value that is injected.
    let input = "duplicate env-secrets annotation (in-scope, then the admin store)";
    let mut pod = fixture("spark/spark35-driver-pod.json");
    pod["metadata"]["annotations"]["zz-marker"] = json!("");
    let admin_ref = json!([{"key": "ROOT", "secretObject": {"key": "root", "source": {"type": "KUBERNETES", "id": "admin"}}}]).to_string();
    let text = String::from_utf8(body_of(pod, "dup-annotation")).unwrap();
    let body = text.replacen(
        "\"zz-marker\":\"\"",
        &format!(
            "\"zz-marker\":\"\",\"secrets.iomete.com/env-secrets\":{}",
            json!(admin_ref)
        ),
        1,
    );
    assert_ne!(body, text);
    assert_denied(
        input,
        &send!(input, &h2, "/mutate", body.into_bytes(), json),
        403,
    );

    // Scope escapes: nothing in a reference can name another Secret, namespace or path.
    let escapes: [(&str, Value, u64); 4] = [
        (
            "reference to the Vault credentials Secret by store id",
            json!({"key": "slow.token", "secretObject": {"key": "slow.token", "source": {"type": "KUBERNETES", "id": "vault-credentials-finance"}}}),
            403,
        ),
        (
            "store id with a path (finance/../admin)",
            json!({"key": "ROOT", "secretObject": {"key": "root", "source": {"type": "KUBERNETES", "id": "finance/../admin"}}}),
            400,
        ),
        (
            "reference naming a namespace (unknown field)",
            json!({"key": "ROOT", "secretObject": {"key": "root", "source": {"type": "KUBERNETES", "id": "admin", "namespace": "iomete-system"}}}),
            400,
        ),
        (
            "Vault key climbing out of its prefix (../../sys)",
            json!({"key": "V", "secretObject": {"key": "../../sys/raw", "source": {"type": "VAULT", "id": "slow"}}}),
            400,
        ),
    ];
    for (input, entry, code) in escapes {
        let mut pod = fixture("spark/spark35-driver-pod.json");
        pod["metadata"]["annotations"]["secrets.iomete.com/env-secrets"] =
            json!(json!([entry]).to_string());
        assert_denied(
            input,
            &send!(input, &h2, "/mutate", body_of(pod, "escape"), json),
            code,
        );
    }

    // Bytes that are not UTF-8, and Unicode the JSON grammar allows but Rust strings do not.
    let text = String::from_utf8(driver_bytes.clone()).unwrap();
    let mut bad_utf8 = text.replacen("spark-pi", "spark-pi\u{1}", 1).into_bytes();
    let at = bad_utf8.iter().position(|&b| b == 1).unwrap();
    bad_utf8[at] = 0xff;
    let input = "0xFF byte inside the pod name";
    assert_invalid(input, &send!(input, &h2, "/mutate", bad_utf8, json));
    let input = "64 KiB of random bytes";
    let random: Vec<u8> = (0..65_536u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    assert_invalid(input, &send!(input, &h2, "/mutate", random, json));
    let input = "the AdmissionReview encoded as UTF-16LE with a BOM";
    let utf16: Vec<u8> = [0xff, 0xfe]
        .into_iter()
        .chain(text.encode_utf16().flat_map(u16::to_le_bytes))
        .collect();
    assert_invalid(input, &send!(input, &h2, "/mutate", utf16, json));
    let input = "UTF-8 BOM before the AdmissionReview";
    let bom: Vec<u8> = [0xef, 0xbb, 0xbf]
        .into_iter()
        .chain(driver_bytes.iter().copied())
        .collect();
    assert_invalid(input, &send!(input, &h2, "/mutate", bom, json));
    // The review is readable; the pod inside it is not: denied, naming the problem.
    let input = "lone surrogate \\ud800 escaped in a pod label";
    let body = text.replacen(
        "\"spark-role\":\"driver\"",
        "\"spark-role\":\"driver\\ud800\"",
        1,
    );
    assert_ne!(body, text);
    let reply = send!(input, &h2, "/mutate", body.into_bytes(), json);
    assert_denied(input, &reply, 400);
    assert!(
        reply.message().contains("cannot be read"),
        "{input}: {}",
        reply.summary()
    );
    let input = "NUL escaped in an env-secrets target name";
    let mut pod = fixture("spark/spark35-driver-pod.json");
    pod["metadata"]["annotations"]["secrets.iomete.com/env-secrets"] = json!(
        r#"[{"key": "A\u0000B", "secretObject": {"key": "s3-secret-key", "source": {"type": "KUBERNETES", "id": "finance"}}}]"#
    );
    assert_denied(
        input,
        &send!(input, &h2, "/mutate", body_of(pod, "nul"), json),
        400,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_bodies_get_fast_clear_answers_and_cost_bounded_memory() {
    let Some(api) =
        seeded_api_server("hostile_bodies_get_fast_clear_answers_and_cost_bounded_memory").await
    else {
        return;
    };
    let mut webhook = Webhook::start(&api, &[]).await;
    webhook.wait_ready().await;
    let pid = webhook.child.id();
    let bystander = Bystander::secret_pod(&webhook);
    let rss_before = memory_kib(pid, "VmRSS");
    let mut transcript = Transcript::default();
    hostile_bodies(&webhook, &mut transcript).await;
    let rss_after = memory_kib(pid, "VmRSS");
    let peak = memory_kib(pid, "VmHWM");
    let bystander = bystander.finish().await;
    transcript.row(
        "all of the above, one after another",
        format!(
            "RSS {} MiB before, {} MiB after, peak {} MiB",
            rss_before >> 10,
            rss_after >> 10,
            peak >> 10
        ),
        None,
    );
    transcript.print("Hostile bodies");
    bystander.assert_served("the hostile bodies");
    // Inputs up to 10 MiB, one at a time: the peak is a few copies of the largest one accepted
    // (7 MiB), not a function of how many inputs came before.
    assert!(peak < 256 << 10, "peak RSS {peak} KiB");
    let (_, metrics) = webhook.admin_get("/metrics").await;
    let (status, output) = webhook.stop();
    assert!(status.success(), "exit {status}: {output}");
    assert!(!output.contains("panicked"), "{output}");
    assert_no_canary("the process output", &output);
    assert_no_canary("the metrics", &metrics);
    assert_no_canary("the answers", transcript.seen());
    assert!(!output.contains(ECHO_CANARY) && !transcript.seen().contains(ECHO_CANARY));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_idle_clients_cost_nobody_else_service() {
    let Some(api) = seeded_api_server("slow_and_idle_clients_cost_nobody_else_service").await
    else {
        return;
    };
    // Above the 2,500 connections held here: this measures what idle connections cost; the cap
    // itself (closing connections at accept) is what bounds that cost in production.
    let mut webhook = Webhook::start(&api, &["--max-connections", "4096"]).await;
    webhook.wait_ready().await;
    let (tcp, tls) = idle_connections(2_000, 500);
    let report =
        slow_and_idle_clients(&webhook, tcp, tls, HANDSHAKE_BOUND + Duration::from_secs(1)).await;
    let mut transcript = Transcript::default();
    report.record(&mut transcript);
    transcript.print("Slow and idle clients (observed for 13 s)");
    assert!(report.alive, "the webhook died");
    report
        .bystander
        .assert_served("thousands of idle connections and five trickling clients");
    // Before TLS the handshake timeout cuts every slow or silent client.
    let handshake = report
        .handshake_trickle
        .closed_after
        .expect("the trickled handshake was never cut off");
    assert!(handshake <= HANDSHAKE_BOUND, "{handshake:?}");
    let open = report
        .tcp_idle
        .iter()
        .filter(|fate| fate.closed_after.is_none())
        .count();
    assert_eq!(
        open, 0,
        "idle TCP connections outlived the handshake timeout"
    );
    // What each idle connection costs, the figure that turns "no limit on idle connections"
    // (the ignored test below) into a memory bound: tens of KiB, not MiB.
    let per_tcp = report.rss_for_tcp_kib / tcp.max(1) as i64;
    let per_tls = report.rss_for_tls_kib / tls.max(1) as i64;
    assert!(per_tcp < 32, "{per_tcp} KiB per idle TCP connection");
    assert!(per_tls < 64, "{per_tls} KiB per idle TLS connection");
    let (status, output) = webhook.stop();
    assert!(status.success(), "exit {status}: {output}");
    assert!(!output.contains("panicked"), "{output}");
    assert_no_canary("the process output", &output);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_never_finish_a_request_are_cut_off() {
    let Some(api) = seeded_api_server("clients_that_never_finish_a_request_are_cut_off").await
    else {
        return;
    };
    let mut webhook = Webhook::start(&api, &[]).await;
    webhook.wait_ready().await;
    let report = slow_and_idle_clients(&webhook, 10, 50, SLOW_CLIENT_BOUND).await;
    let mut transcript = Transcript::default();
    report.record(&mut transcript);
    transcript.print("Slow and idle clients (observed for 15 s)");
    let fates = [
        (
            "an HTTP/1.1 head trickled a byte a second",
            &report.header_trickle_h1,
        ),
        (
            "an HTTP/2 preface trickled a byte a second",
            &report.preface_trickle_h2,
        ),
        (
            "an HTTP/1.1 body trickled a byte a second",
            &report.body_trickle_h1,
        ),
        (
            "an HTTP/2 body trickled a byte a second",
            &report.body_trickle_h2,
        ),
    ];
    let still_open: Vec<&str> = fates
        .iter()
        .filter(|(_, fate)| fate.closed_after.is_none())
        .map(|(what, _)| *what)
        .collect();
    let idle_tls = report
        .tls_idle
        .iter()
        .filter(|fate| fate.closed_after.is_none())
        .count();
    let (status, output) = webhook.stop();
    assert!(status.success(), "exit {status}: {output}");
    assert!(
        still_open.is_empty() && idle_tls == 0,
        "after {SLOW_CLIENT_BOUND:?} these still held a connection: {still_open:?}, and {idle_tls} of 50 idle TLS connections"
    );
}

/// The deployment's memory limit (deploy/base/deployment.yaml): above it the pod is OOM-killed.
const DEPLOYED_MEMORY_LIMIT_KIB: u64 = 128 << 10;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_large_bodies_stay_within_the_deployed_memory_limit() {
    let Some(api) =
        seeded_api_server("concurrent_large_bodies_stay_within_the_deployed_memory_limit").await
    else {
        return;
    };
    let mut webhook = Webhook::start(&api, &[]).await;
    webhook.wait_ready().await;
    let pid = webhook.child.id();
    let ca = certs_of(&webhook);
    // The largest review the webhook accepts, on a pod that takes a secret, as 32 callers at
    // once (32 API server connections, or one connection's HTTP/2 streams).
    let mut review = driver_review();
    let filler = iomete_secrets_webhook::edge::server::MAX_BODY_BYTES - (1 << 20);
    review["request"]["object"]["spec"]["containers"][0]["args"] = json!(["x".repeat(filler)]);
    let body = serde_json::to_vec(&review).unwrap();
    let clients: Vec<reqwest::Client> = (0..32).map(|_| tls_client(&ca, true)).collect();
    let replies = futures::future::join_all(clients.iter().map(|client| {
        post(
            client,
            webhook.port,
            "/mutate",
            body.clone(),
            Some("application/json"),
        )
    }))
    .await;
    let peak = memory_kib(pid, "VmHWM");
    let (status, output) = webhook.stop();
    assert!(status.success(), "exit {status}: {output}");
    for reply in &replies {
        assert!(reply.status != 0, "{}", reply.body);
    }
    assert!(
        peak < DEPLOYED_MEMORY_LIMIT_KIB,
        "32 concurrent {} MiB admissions peaked at {} MiB",
        body.len() >> 20,
        peak >> 10
    );
}

/// The webhook cannot tell the API server from any other caller unless it asks for a client
/// certificate: without `--client-ca`, whoever reaches its port can claim any namespace and is
/// answered with that namespace's values. This pins the exposure SECURITY.md tells operators to
/// close (`--client-ca`, or a NetworkPolicy admitting only the API server); with `--client-ca`
/// such a caller is refused (`with_a_client_ca_only_callers_with_its_certificates_are_served`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_client_ca_any_caller_that_reaches_the_port_is_answered() {
    let Some(api) =
        seeded_api_server("without_a_client_ca_any_caller_that_reaches_the_port_is_answered").await
    else {
        return;
    };
    let mut webhook = Webhook::start(&api, &[]).await;
    webhook.wait_ready().await;
    // A tenant's pod, not the API server, claiming the admin namespace for a pod that asks for
    // the admin store.
    let pod = with_env_secrets(
        fixture("spark/spark35-driver-pod.json"),
        &[("ROOT", "root", "admin")],
    );
    let mut forged = review_of(pod, api.store(), "forged");
    forged["request"]["userInfo"] =
        json!({"username": "system:serviceaccount:marketing-jobs:default"});
    let client = tls_client(&certs_of(&webhook), true);
    let reply = admit(&webhook, &client, &forged).await;
    let (status, output) = webhook.stop();
    assert!(status.success(), "exit {status}: {output}");
    let pod = patched_object(&forged, &reply.json());
    assert_eq!(
        container_env(&pod, 0, "ROOT").as_deref(),
        Some(super::CANARY_ADMIN)
    );
}
