//! The broker phase (`BENCH_PHASES` includes `broker`): what a broker-mode container's
//! start-time fetch costs, beside an admission measured in the same run by the same client.
//!
//! One webhook process runs with the broker flags (its own TLS port, the harness's
//! certificates and CA) and the harness's `system:masters` kubeconfig, which may create
//! TokenReviews and get pods as the shipped ClusterRole allows. Pods are created straight
//! through the API server (no admission: the harness registers no webhook), each with one
//! container whose `IOMETE_ENV_REFERENCES` lists the `driver` case's five references, and a
//! ServiceAccount for them; every request carries a token the TokenRequest API minted for its
//! pod (audience `iomete-secrets-broker`, 600 s). With the stores synced and the Vault value
//! cached, each round sends, with the same callers over one HTTP/2 connection: the `driver`
//! admission once per pod; the broker request once per pod with a fresh token (TokenReview and
//! pod GET); the same again with the same tokens (the TokenReview cached); and a fresh token
//! over a new TLS connection per request, as a starting container connects. Then the burst:
//! as many pods as `BENCH_BROKER_BURST`, their tokens minted first, all asking at once for a
//! Vault secret no one has read (a fresh key behind the delayed proxy), OpenBao's audit log
//! counting the reads. The pods and tokens are `broker_pods.rs`, the Markdown
//! `broker_report.rs`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::bail;
use hyper::body::Bytes;
use iomete_secrets_webhook::decision::delivery::BROKER_PATH;
use serde_json::json;

use crate::broker_pods::{
    create_account, create_pods, driver_reference_list, env_request, mint, warm_broker,
};
use crate::env::{self, Environment, Memory, Server};
use crate::load::{Client, Protocol, STREAMS_PER_CONNECTION, Stats};
use crate::{Config, cases, progress, warm_up};

/// One measured list of requests.
pub struct Measured {
    pub stats: Stats,
    /// Answers other than 200, by HTTP status (0: no answer).
    pub failures: BTreeMap<u16, usize>,
}

impl Measured {
    pub fn mean_ms(&self) -> f64 {
        let latencies = &self.stats.latencies;
        latencies.iter().sum::<u64>() as f64 / latencies.len().max(1) as f64 / 1e6
    }
}

/// What the burst measured.
pub struct BrokerBurst {
    pub size: usize,
    pub measured: Measured,
    pub reads_during: usize,
    pub logins_during: usize,
    /// The webhook's Vault cache lookups during the burst: miss, coalesced, hit.
    pub lookups: [f64; 3],
    /// The webhook's open sockets before and after the burst: its Kubernetes client speaks
    /// HTTP/1.1, one connection per call in flight, and keeps them pooled.
    pub sockets: (usize, usize),
}

/// The four rows measured at one concurrency, each the round with the lower p99 (other work
/// on the machine only adds).
pub struct Level {
    pub concurrency: usize,
    pub admission: Measured,
    pub fresh: Measured,
    pub cached: Measured,
    pub connect_each: Measured,
}

/// Everything the phase measured, for the report.
pub struct BrokerResult {
    pub pods: usize,
    pub rounds: usize,
    pub levels: Vec<Level>,
    pub burst: BrokerBurst,
    pub memory: Memory,
}

/// One request of a list: its body and, for the broker, its token.
#[derive(Clone)]
struct Call {
    body: Bytes,
    token: Option<Arc<str>>,
}

pub async fn run(
    environment: &Environment,
    config: &Config,
    started: Instant,
) -> anyhow::Result<BrokerResult> {
    let kube = environment.admin_client();
    let accounts = create_account(&kube).await?;
    let levels = &config.broker_concurrency;
    let warm_count = levels.iter().copied().max().unwrap_or(1);
    progress(
        started,
        &format!(
            "broker: creating {} + {warm_count} + {} pods and their tokens",
            config.broker_pods, config.broker_burst
        ),
    );
    let list = driver_reference_list();
    let all = create_pods(&kube, "broker-lat", config.broker_pods + warm_count, &list).await?;
    let (warm, pods) = all.split_at(warm_count);
    let burst_key = format!("broker-burst-{}", std::process::id());
    environment
        .bao
        .admin()
        .kv_put(
            env::VAULT_MOUNT,
            &format!("{}/{burst_key}", env::VAULT_PREFIX),
            json!({"password": "broker-burst-value"}),
        )
        .await;
    let burst_list = json!({"env-secrets": [{"key": "DB_PASSWORD", "secretObject":
        {"key": format!("{burst_key}#password"),
         "source": {"type": "VAULT", "id": env::REMOTE_VAULT_CONFIG}}}]})
    .to_string();
    let burst_pods = create_pods(&kube, "broker-burst", config.broker_burst, &burst_list).await?;
    // Every token is minted before anything is measured: one per pod and use, per round and
    // concurrency a set for the fresh-token row and one for the new-connection row.
    let rounds = config.rounds.min(2);
    let mut tokens = Vec::new();
    for _ in 0..rounds * levels.len() {
        tokens.push([mint(&accounts, pods).await?, mint(&accounts, pods).await?]);
    }
    let burst_tokens = mint(&accounts, &burst_pods).await?;
    let warm_tokens = mint(&accounts, warm).await?;

    let broker_port = env::free_port()?;
    let broker_arg = format!("--broker-listen=127.0.0.1:{broker_port}");
    let url_arg = format!("--broker-url=https://localhost:{broker_port}");
    let ca_arg = format!("--broker-ca={}", environment.path("ca.crt").display());
    // A long Vault TTL keeps the latency rounds warm however long the machine makes them.
    let mut webhook = environment.spawn_webhook(&[
        &broker_arg,
        &url_arg,
        &ca_arg,
        "--broker-image=iomete/iomete-secrets-webhook:bench",
        "--vault-cache-ttl=10m",
    ])?;
    webhook.wait_ready().await?;
    let admission = Client::new(webhook.port, &environment.ca_pem)?;
    let broker = Client::new(broker_port, &environment.ca_pem)?;
    let case = &cases()[0];
    warm_up(&admission, std::slice::from_ref(case)).await?;
    warm_broker(&broker, &warm_tokens[0]).await?;
    let body = env_request();
    let with = |tokens: &[Arc<str>]| -> Vec<Call> {
        let calls = tokens.iter().map(|token| Call {
            body: body.clone(),
            token: Some(token.clone()),
        });
        calls.collect()
    };
    // Then as many at once as the most callers: the webhook's pool of API server connections
    // is then as warm as its value caches.
    let warmed = send(
        &broker,
        BROKER_PATH,
        with(&warm_tokens[1..]),
        warm_count,
        false,
    )
    .await?;
    if !warmed.failures.is_empty() {
        bail!("warming the broker: {:?}", warmed.failures);
    }
    webhook.truncate_log();

    let admissions: Vec<Call> = (0..pods.len())
        .map(|_| Call {
            body: case.body.clone(),
            token: None,
        })
        .collect();
    let path = case.path();
    let mut kept: Vec<[Option<Measured>; 4]> = levels.iter().map(|_| Default::default()).collect();
    for round in 0..rounds {
        for (slot, &c) in levels.iter().enumerate() {
            let [fresh, connect] = &tokens[round * levels.len() + slot];
            let runs = [
                send(&admission, &path, admissions.clone(), c, false).await?,
                send(&broker, BROKER_PATH, with(fresh), c, false).await?,
                send(&broker, BROKER_PATH, with(fresh), c, false).await?,
                send(&broker, BROKER_PATH, with(connect), c, true).await?,
            ];
            webhook.truncate_log();
            let labels = ["admission", "fresh token", "same token", "new connection"];
            let mut line = format!("broker round {} c={c}", round + 1);
            for (label, run) in labels.iter().zip(&runs) {
                line.push_str(&format!(
                    "; {label} p50 {:.2} p99 {:.2} ms ({} failed)",
                    run.stats.quantile_ms(0.5),
                    run.stats.quantile_ms(0.99),
                    run.stats.errors
                ));
            }
            progress(started, &line);
            for (kept, run) in kept[slot].iter_mut().zip(runs) {
                keep_lower_p99(kept, run);
            }
        }
    }

    let burst = burst(environment, &webhook, &broker, &burst_key, &burst_tokens).await?;
    progress(
        started,
        &format!(
            "broker burst N={}: {:.1} ms, {} served, Vault reads {}, failures {:?}",
            burst.size,
            burst.measured.stats.window.as_secs_f64() * 1e3,
            burst.measured.stats.latencies.len(),
            burst.reads_during,
            burst.measured.failures
        ),
    );
    let memory = webhook.memory();
    webhook.stop();
    let levels = levels
        .iter()
        .zip(kept)
        .map(|(&concurrency, kept)| {
            let [admission, fresh, cached, connect_each] =
                kept.map(|run| run.expect("at least one round"));
            Level {
                concurrency,
                admission,
                fresh,
                cached,
                connect_each,
            }
        })
        .collect();
    Ok(BrokerResult {
        pods: pods.len(),
        rounds,
        levels,
        burst,
        memory,
    })
}

fn keep_lower_p99(kept: &mut Option<Measured>, run: Measured) {
    let better = kept.as_ref().is_none_or(|kept| {
        (run.stats.errors, run.stats.quantile_ms(0.99))
            < (kept.stats.errors, kept.stats.quantile_ms(0.99))
    });
    if better {
        *kept = Some(run);
    }
}

/// Sends `calls` to `path`, `concurrency` at a time, each caller sending its next request as
/// soon as its previous answer is in; all of them at once when `concurrency` is their number.
/// Over HTTP/2 connections opened beforehand (100 streams each), or with `connect_each` over a
/// new HTTP/1.1 TLS connection per request, its handshake inside the measured latency.
async fn send(
    client: &Client,
    path: &str,
    calls: Vec<Call>,
    concurrency: usize,
    connect_each: bool,
) -> anyhow::Result<Measured> {
    let concurrency = concurrency.clamp(1, calls.len().max(1));
    let connections = if connect_each {
        Vec::new()
    } else {
        client.connect_for(Protocol::H2, concurrency).await?
    };
    let (calls, next) = (Arc::new(calls), Arc::new(AtomicUsize::new(0)));
    let start = Instant::now() + Duration::from_millis(20);
    let tasks: Vec<_> = (0..concurrency)
        .map(|index| {
            let mut stream = connections
                .get(index / STREAMS_PER_CONNECTION)
                .and_then(|connection| connection.stream());
            let (client, path) = (client.clone(), path.to_owned());
            let (calls, next) = (calls.clone(), next.clone());
            tokio::spawn(async move {
                tokio::time::sleep_until(start.into()).await;
                let mut answers = Vec::new();
                while let Some(call) = calls.get(next.fetch_add(1, Ordering::Relaxed)) {
                    let sent = Instant::now();
                    let token = call.token.as_deref();
                    let result = match stream.as_mut() {
                        Some(stream) => stream.post_as(&path, call.body.clone(), token).await,
                        None => match client.connect(Protocol::H1).await {
                            Ok(mut fresh) => fresh.post_as(&path, call.body.clone(), token).await,
                            Err(error) => Err(error),
                        },
                    };
                    let done = Instant::now();
                    let status = result.map_or(0, |(status, _)| status);
                    answers.push((status, (done - sent).as_nanos() as u64, done));
                }
                answers
            })
        })
        .collect();
    let mut measured = Measured {
        stats: Stats::default(),
        failures: BTreeMap::new(),
    };
    let mut last = start;
    for task in tasks {
        for (status, latency, done) in task.await? {
            last = last.max(done);
            if status == 200 {
                measured.stats.latencies.push(latency);
            } else {
                measured.stats.errors += 1;
                *measured.failures.entry(status).or_default() += 1;
            }
        }
    }
    measured.stats.latencies.sort_unstable();
    measured.stats.window = last.saturating_duration_since(start);
    Ok(measured)
}

/// Every burst pod's request at once, each with its own fresh token, all for one Vault secret
/// not yet read; OpenBao's audit log counts the reads, the webhook's metric the lookups.
async fn burst(
    environment: &Environment,
    webhook: &Server,
    broker: &Client,
    key: &str,
    tokens: &[Arc<str>],
) -> anyhow::Result<BrokerBurst> {
    let lookups = || async {
        let mut counts = [0.0; 3];
        for (slot, result) in ["=\"miss\"", "=\"coalesced\"", "=\"hit\""]
            .iter()
            .enumerate()
        {
            counts[slot] = webhook
                .metric(
                    "iomete_secrets_webhook_vault_cache_lookups_total",
                    &[result],
                )
                .await;
        }
        counts
    };
    let before = lookups().await;
    let sockets_before = sockets(webhook.pid());
    let (reads_before, logins_before) = (
        environment.vault_reads(key),
        environment.remote_vault_logins(),
    );
    let calls: Vec<Call> = tokens
        .iter()
        .map(|token| Call {
            body: env_request(),
            token: Some(token.clone()),
        })
        .collect();
    let measured = send(broker, BROKER_PATH, calls, tokens.len(), false).await?;
    let after = lookups().await;
    Ok(BrokerBurst {
        size: tokens.len(),
        measured,
        reads_during: environment.vault_reads(key) - reads_before,
        logins_during: environment.remote_vault_logins() - logins_before,
        lookups: [0, 1, 2].map(|slot| after[slot] - before[slot]),
        sockets: (sockets_before, sockets(webhook.pid())),
    })
}

/// How many sockets process `pid` holds open, from `/proc/PID/fd`.
fn sockets(pid: u32) -> usize {
    let Ok(entries) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return 0;
    };
    entries
        .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
        .filter(|target| target.to_string_lossy().starts_with("socket:"))
        .count()
}
