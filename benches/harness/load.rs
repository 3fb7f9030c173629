//! The harness's own load client: HTTP/2 and HTTP/1.1 over TLS with hyper's connection-level
//! client, so every server is measured by exactly the same code.
//!
//! Why not h2load or wrk alone: neither in Debian can hold a fixed *request* rate (h2load's
//! `--rate` paces connections, wrk has none), and an open loop is what shows latency at a given
//! load without coordinated omission. Connections follow the callers being modelled: over
//! HTTP/2 one connection per 100 concurrent requests (the kube-apiserver's Go client keeps one
//! connection per webhook until the server's stream limit is reached), over HTTP/1.1 one per
//! concurrent request.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::{http1, http2};
use hyper::{Request, header};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::ServerName;
use rustls::pki_types::pem::PemObject;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// How many concurrent requests share one HTTP/2 connection.
pub const STREAMS_PER_CONNECTION: usize = 100;
/// The longest one request may take before the run counts it as failed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    H2,
    H1,
}

impl Protocol {
    pub fn label(self) -> &'static str {
        match self {
            Protocol::H2 => "h2",
            Protocol::H1 => "http/1.1",
        }
    }

    fn alpn(self) -> &'static [u8] {
        match self {
            Protocol::H2 => b"h2",
            Protocol::H1 => b"http/1.1",
        }
    }
}

/// What one run measured.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    /// Latencies of the successful requests in the measured window, sorted, in nanoseconds.
    pub latencies: Vec<u64>,
    /// Requests in the window that failed (transport error, timeout, HTTP status not 200).
    pub errors: usize,
    /// The measured window.
    pub window: Duration,
    /// Open loop only: how late the client sent requests against the schedule (p99), which
    /// says whether the client itself kept up.
    pub dispatch_lag_p99: Option<Duration>,
}

impl Stats {
    pub fn throughput(&self) -> f64 {
        self.latencies.len() as f64 / self.window.as_secs_f64()
    }

    /// The `q` quantile (0..=1) by nearest rank, in milliseconds.
    pub fn quantile_ms(&self, q: f64) -> f64 {
        quantile(&self.latencies, q) as f64 / 1e6
    }

    pub fn max_ms(&self) -> f64 {
        self.latencies.last().copied().unwrap_or(0) as f64 / 1e6
    }
}

fn quantile(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Connects to one server on 127.0.0.1, trusting only the benchmark's CA.
#[derive(Clone)]
pub struct Client {
    port: u16,
    h2: TlsConnector,
    h1: TlsConnector,
}

impl Client {
    pub fn new(port: u16, ca_pem: &str) -> anyhow::Result<Client> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls::pki_types::CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
            roots.add(cert?)?;
        }
        let connector = |protocol: Protocol| -> anyhow::Result<TlsConnector> {
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let mut config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()?
                .with_root_certificates(roots.clone())
                .with_no_client_auth();
            config.alpn_protocols = vec![protocol.alpn().to_vec()];
            Ok(TlsConnector::from(Arc::new(config)))
        };
        Ok(Client {
            port,
            h2: connector(Protocol::H2)?,
            h1: connector(Protocol::H1)?,
        })
    }

    pub async fn connect(&self, protocol: Protocol) -> anyhow::Result<Connection> {
        let tcp = TcpStream::connect(("127.0.0.1", self.port))
            .await
            .with_context(|| format!("connecting to 127.0.0.1:{}", self.port))?;
        // Requests are small and latency is the point: no Nagle delay on either side's writes.
        tcp.set_nodelay(true)?;
        let connector = match protocol {
            Protocol::H2 => &self.h2,
            Protocol::H1 => &self.h1,
        };
        let tls = connector
            .connect(ServerName::try_from("localhost")?.to_owned(), tcp)
            .await
            .context("TLS handshake")?;
        let negotiated = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
        if negotiated.as_deref() != Some(protocol.alpn()) {
            bail!("the server did not agree to {}", protocol.label());
        }
        let io = TokioIo::new(tls);
        let authority = format!("localhost:{}", self.port);
        match protocol {
            Protocol::H2 => {
                let (sender, connection) = http2::Builder::new(TokioExecutor::new())
                    .handshake(io)
                    .await?;
                tokio::spawn(connection);
                Ok(Connection {
                    sender: Sender::H2(sender),
                    authority,
                })
            }
            Protocol::H1 => {
                let (sender, connection) = http1::handshake(io).await?;
                tokio::spawn(connection);
                Ok(Connection {
                    sender: Sender::H1(sender),
                    authority,
                })
            }
        }
    }

    /// Connections for `concurrency` requests at once.
    pub async fn connect_for(
        &self,
        protocol: Protocol,
        concurrency: usize,
    ) -> anyhow::Result<Vec<Connection>> {
        let count = match protocol {
            Protocol::H2 => concurrency.div_ceil(STREAMS_PER_CONNECTION),
            Protocol::H1 => concurrency,
        };
        let mut connections = Vec::with_capacity(count);
        for _ in 0..count.max(1) {
            connections.push(self.connect(protocol).await?);
        }
        Ok(connections)
    }
}

enum Sender {
    H2(http2::SendRequest<Full<Bytes>>),
    H1(http1::SendRequest<Full<Bytes>>),
}

/// One connection; HTTP/2 connections are cloned to carry concurrent streams.
pub struct Connection {
    sender: Sender,
    authority: String,
}

impl Connection {
    /// Another handle on the same HTTP/2 connection; `None` for HTTP/1.1.
    pub fn stream(&self) -> Option<Connection> {
        match &self.sender {
            Sender::H2(sender) => Some(Connection {
                sender: Sender::H2(sender.clone()),
                authority: self.authority.clone(),
            }),
            Sender::H1(_) => None,
        }
    }

    /// POSTs `body` to `path` and reads the whole answer: (HTTP status, body).
    pub async fn post(&mut self, path: &str, body: Bytes) -> anyhow::Result<(u16, Bytes)> {
        self.post_as(path, body, None).await
    }

    /// [`Connection::post`] with `Authorization: Bearer <token>` when `token` is set (the
    /// broker's callers).
    pub async fn post_as(
        &mut self,
        path: &str,
        body: Bytes,
        token: Option<&str>,
    ) -> anyhow::Result<(u16, Bytes)> {
        let mut request = Request::post(match self.sender {
            // HTTP/2 carries scheme and authority as pseudo-headers, taken from the URI.
            Sender::H2(_) => format!("https://{}{path}", self.authority),
            Sender::H1(_) => path.to_owned(),
        })
        .header(header::HOST, &self.authority)
        .header(header::CONTENT_TYPE, "application/json");
        if let Some(token) = token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let request = request.body(Full::new(body))?;
        let exchange = async {
            let response = match &mut self.sender {
                Sender::H2(sender) => {
                    sender.ready().await?;
                    sender.send_request(request).await?
                }
                Sender::H1(sender) => {
                    sender.ready().await?;
                    sender.send_request(request).await?
                }
            };
            let status = response.status().as_u16();
            let body = response.into_body().collect().await?.to_bytes();
            anyhow::Ok((status, body))
        };
        tokio::time::timeout(REQUEST_TIMEOUT, exchange)
            .await
            .context("no answer in time")?
    }
}

/// A closed loop: `concurrency` callers each send the next request as soon as the previous
/// answer is in, for `warmup` (not recorded) then `measure`.
pub async fn closed_loop(
    client: &Client,
    protocol: Protocol,
    concurrency: usize,
    path: &str,
    body: Bytes,
    warmup: Duration,
    measure: Duration,
) -> anyhow::Result<Stats> {
    let connections = client.connect_for(protocol, concurrency).await?;
    let callers: Vec<Connection> = match protocol {
        Protocol::H1 => connections,
        Protocol::H2 => (0..concurrency)
            .map(|index| connections[index / STREAMS_PER_CONNECTION].stream())
            .collect::<Option<_>>()
            .expect("HTTP/2 connections"),
    };
    let start = Instant::now() + Duration::from_millis(20);
    let (recording, end) = (start + warmup, start + warmup + measure);
    let tasks: Vec<_> = callers
        .into_iter()
        .map(|mut connection| {
            let (path, body) = (path.to_owned(), body.clone());
            tokio::spawn(async move {
                tokio::time::sleep_until(start.into()).await;
                let (mut latencies, mut errors) = (Vec::new(), 0usize);
                loop {
                    let sent = Instant::now();
                    if sent >= end {
                        break;
                    }
                    let result = connection.post(&path, body.clone()).await;
                    let done = Instant::now();
                    if sent < recording || done > end {
                        continue;
                    }
                    match result {
                        Ok((200, _)) => latencies.push((done - sent).as_nanos() as u64),
                        _ => errors += 1,
                    }
                }
                (latencies, errors)
            })
        })
        .collect();
    let mut stats = Stats {
        window: measure,
        ..Stats::default()
    };
    for task in tasks {
        let (latencies, errors) = task.await?;
        stats.latencies.extend(latencies);
        stats.errors += errors;
    }
    stats.latencies.sort_unstable();
    Ok(stats)
}

/// An open loop over HTTP/2: requests leave on a fixed schedule of `rate` per second whether
/// or not earlier ones were answered, for `warmup` (not recorded) then `measure`.
///
/// Latency runs from the moment the client sends. The timer wakes at most once per
/// millisecond, so at high rates requests leave in small bunches; the dispatch lag (send time
/// against schedule) is reported so that a client that fell behind is visible.
pub async fn open_loop(
    client: &Client,
    rate: f64,
    path: &str,
    body: Bytes,
    warmup: Duration,
    measure: Duration,
) -> anyhow::Result<Stats> {
    let connections = client.connect_for(Protocol::H2, 1).await?;
    let connection = &connections[0];
    let period = Duration::from_secs_f64(1.0 / rate);
    let start = Instant::now() + Duration::from_millis(20);
    let (recording, end) = (start + warmup, start + warmup + measure);
    let (results, mut received) = tokio::sync::mpsc::unbounded_channel();
    let mut lags = Vec::new();
    let mut sent_count = 0u64;
    loop {
        let scheduled = start + period.mul_f64(sent_count as f64);
        if scheduled >= end {
            break;
        }
        let now = Instant::now();
        if scheduled > now {
            tokio::time::sleep_until(scheduled.into()).await;
            continue;
        }
        sent_count += 1;
        let record = scheduled >= recording;
        if record {
            lags.push((now - scheduled).as_nanos() as u64);
        }
        let mut stream = connection.stream().expect("an h2 connection");
        let (path, body, results) = (path.to_owned(), body.clone(), results.clone());
        tokio::spawn(async move {
            let outcome = stream.post(&path, body).await;
            let latency = now.elapsed().as_nanos() as u64;
            if record {
                let _ = results.send(matches!(outcome, Ok((200, _))).then_some(latency));
            }
        });
    }
    drop(results);
    let mut stats = Stats {
        window: measure,
        ..Stats::default()
    };
    while let Some(outcome) = received.recv().await {
        match outcome {
            Some(latency) => stats.latencies.push(latency),
            None => stats.errors += 1,
        }
    }
    stats.latencies.sort_unstable();
    lags.sort_unstable();
    stats.dispatch_lag_p99 = Some(Duration::from_nanos(quantile(&lags, 0.99)));
    Ok(stats)
}

/// What a burst returned.
pub struct Burst {
    /// From the first request sent to the last answer received.
    pub wall: Duration,
    /// Each request's HTTP status and answer body (transport failures as status 0).
    pub answers: Vec<(u16, Bytes)>,
}

/// Sends every body at the same moment over HTTP/2 (connections opened beforehand, 100
/// streams each) and waits for all the answers.
pub async fn burst(client: &Client, path: &str, bodies: Vec<Bytes>) -> anyhow::Result<Burst> {
    let connections = client.connect_for(Protocol::H2, bodies.len()).await?;
    let start = Instant::now();
    let tasks: Vec<_> = bodies
        .into_iter()
        .enumerate()
        .map(|(index, body)| {
            let mut stream = connections[index / STREAMS_PER_CONNECTION]
                .stream()
                .expect("an h2 connection");
            let path = path.to_owned();
            tokio::spawn(async move {
                let answer = stream
                    .post(&path, body)
                    .await
                    .unwrap_or_else(|error| (0, Bytes::from(error.to_string())));
                (answer, Instant::now())
            })
        })
        .collect();
    let mut answers = Vec::with_capacity(tasks.len());
    let mut last = start;
    for task in tasks {
        let (answer, done) = task.await?;
        last = last.max(done);
        answers.push(answer);
    }
    Ok(Burst {
        wall: last - start,
        answers,
    })
}
