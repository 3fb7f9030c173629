//! The benchmark harness (`cargo bench --bench harness`, or `scripts/bench.sh`): the release
//! webhook binary over TLS against a real kube-apiserver (with etcd) and a real OpenBao, beside two bare
//! baselines on the same serving stack (one answers fixed bytes, one parses the request into
//! `serde_json::Value` and reads its uid first: `baseline.rs`), measured by one load client;
//! then cold Vault bursts, broker mode's start-time fetch beside an admission (`broker.rs`),
//! memory with large stores and start-to-ready time. Prints a Markdown report and writes it
//! to `target/bench/report.md` (`BENCH_REPORT`). Method and latest results:
//! `docs/benchmarks.md`.
//!
//! Flags: `--quick` (a smoke run of under a minute once built); `--profile` (instead of the
//! benchmark, `perf` profiles of the webhook under load, per case: `profile.rs`). Environment,
//! each optional:
//! `BENCH_WARMUP_SECS`, `BENCH_MEASURE_SECS` (per closed-loop run), `BENCH_OPEN_SECS` (per
//! open-loop run), `BENCH_ROUNDS` (closed-loop runs per
//! server and setting, alternating, best kept), `BENCH_CONCURRENCY` (closed-loop
//! callers, comma-separated), `BENCH_RATES` (open-loop rates as percentages of the webhook's
//! best closed-loop throughput), `BENCH_BURSTS` (burst sizes), `BENCH_DOMAINS`, `BENCH_KEYS`,
//! `BENCH_VAULT_VALUES` (the memory scenario), `BENCH_BROKER_PODS` (pods of the broker's
//! latency rows, one request each per row), `BENCH_BROKER_CONCURRENCY` (its callers,
//! comma-separated), `BENCH_BROKER_BURST` (pods in its burst), `BENCH_REPORT` (where the
//! report goes; default `target/bench/report.md`, `report-quick.md` for `--quick`),
//! `BENCH_PHASES` (the phases to run, comma-separated, default all: `load` (the webhook
//! against the baselines), `burst` (cold admission bursts), `broker` (broker mode, with its
//! own admission rows to compare), `memory` (large stores); e.g. `BENCH_PHASES=broker`).
//! Experiments, off by default: `BENCH_BASELINE_NODELAY=0` (Nagle's algorithm left on in the
//! baselines; the default is TCP_NODELAY on, as in the webhook),
//! `BENCH_WEBHOOK_PRELOAD=/path/to/malloc.so` (another allocator under the webhook binary).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use hyper::body::Bytes;
use serde_json::Value;

#[path = "../../tests/support/mod.rs"]
mod support;

#[path = "../../tests/support/control_plane/mod.rs"]
mod control_plane;

#[path = "../common/mod.rs"]
mod common;

mod baseline;
mod broker;
mod broker_pods;
mod broker_report;
mod env;
mod load;
mod profile;
mod report;

use env::{Environment, Memory, decision};
use load::{Client, Protocol, Stats};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("baseline") {
        return baseline::main(&args[2..]);
    }
    let config = Config::from(&args)?;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    if args.iter().any(|arg| arg == "--profile") {
        return runtime.block_on(profile::run(&config));
    }
    let report = runtime.block_on(run(&config))?;
    let text = report.markdown();
    println!("\n{text}");
    if let Some(parent) = config.report.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(&config.report, &text)?;
    eprintln!("report written to {}", config.report.display());
    Ok(())
}

/// How long and how much; `--quick` shrinks everything for a smoke run.
#[derive(Debug, Clone)]
pub struct Config {
    pub quick: bool,
    pub warmup: Duration,
    pub measure: Duration,
    /// How long each open-loop run is measured.
    pub open_measure: Duration,
    /// Closed-loop rounds per server and setting; the best is kept.
    pub rounds: usize,
    pub concurrencies: Vec<usize>,
    pub rate_percents: Vec<u32>,
    pub bursts: Vec<usize>,
    pub domains: usize,
    pub keys: usize,
    pub vault_values: usize,
    /// The broker phase: pods (one request each per row), callers, pods in the burst.
    pub broker_pods: usize,
    pub broker_concurrency: Vec<usize>,
    pub broker_burst: usize,
    /// The phases to run (`BENCH_PHASES`): `load`, `burst`, `broker`, `memory`.
    pub phases: Vec<String>,
    pub report: PathBuf,
}

impl Config {
    fn from(args: &[String]) -> anyhow::Result<Config> {
        let quick = args.iter().any(|arg| arg == "--quick");
        let seconds = |name: &str, default: f64| -> anyhow::Result<Duration> {
            Ok(Duration::from_secs_f64(match std::env::var(name) {
                Ok(value) => value.parse().with_context(|| format!("{name}={value}"))?,
                Err(_) => default,
            }))
        };
        let list = |name: &str, default: &str| -> anyhow::Result<Vec<usize>> {
            let value = std::env::var(name).unwrap_or_else(|_| default.to_owned());
            value
                .split(',')
                .map(|item| {
                    item.trim()
                        .parse()
                        .with_context(|| format!("{name}={value}"))
                })
                .collect()
        };
        let number = |name: &str, default: usize| -> anyhow::Result<usize> {
            Ok(list(name, &default.to_string())?[0])
        };
        // A smoke run does not overwrite the last full report.
        let default_report = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(if quick {
            "target/bench/report-quick.md"
        } else {
            "target/bench/report.md"
        });
        let config = if quick {
            Config {
                quick,
                warmup: seconds("BENCH_WARMUP_SECS", 0.2)?,
                measure: seconds("BENCH_MEASURE_SECS", 0.5)?,
                open_measure: seconds("BENCH_OPEN_SECS", 0.5)?,
                rounds: number("BENCH_ROUNDS", 1)?,
                concurrencies: list("BENCH_CONCURRENCY", "16")?,
                rate_percents: list("BENCH_RATES", "50")?
                    .into_iter()
                    .map(|p| p as u32)
                    .collect(),
                bursts: list("BENCH_BURSTS", "100")?,
                domains: number("BENCH_DOMAINS", 10)?,
                keys: number("BENCH_KEYS", 10)?,
                vault_values: number("BENCH_VAULT_VALUES", 100)?,
                broker_pods: number("BENCH_BROKER_PODS", 20)?,
                broker_concurrency: list("BENCH_BROKER_CONCURRENCY", "16")?,
                broker_burst: number("BENCH_BROKER_BURST", 100)?,
                phases: phases()?,
                report: std::env::var_os("BENCH_REPORT").map_or(default_report, PathBuf::from),
            }
        } else {
            Config {
                quick,
                warmup: seconds("BENCH_WARMUP_SECS", 0.5)?,
                // 1.0 s and 2.5 s (1.5 s and 3.0 s before the parse baseline made three
                // servers) keep the full run near its earlier length.
                measure: seconds("BENCH_MEASURE_SECS", 1.0)?,
                open_measure: seconds("BENCH_OPEN_SECS", 2.5)?,
                rounds: number("BENCH_ROUNDS", 3)?,
                concurrencies: list("BENCH_CONCURRENCY", "1,16,64")?,
                rate_percents: list("BENCH_RATES", "25,50,75")?
                    .into_iter()
                    .map(|p| p as u32)
                    .collect(),
                bursts: list("BENCH_BURSTS", "100,500,1000")?,
                domains: number("BENCH_DOMAINS", 100)?,
                keys: number("BENCH_KEYS", 100)?,
                vault_values: number("BENCH_VAULT_VALUES", 1000)?,
                broker_pods: number("BENCH_BROKER_PODS", 200)?,
                broker_concurrency: list("BENCH_BROKER_CONCURRENCY", "1,16")?,
                broker_burst: number("BENCH_BROKER_BURST", 1000)?,
                phases: phases()?,
                report: std::env::var_os("BENCH_REPORT").map_or(default_report, PathBuf::from),
            }
        };
        if config.concurrencies.contains(&0) || config.bursts.contains(&0) || config.rounds == 0 {
            bail!("concurrencies, burst sizes and rounds must be at least 1");
        }
        if config.broker_pods == 0
            || config.broker_concurrency.contains(&0)
            || config.broker_burst == 0
        {
            bail!(
                "BENCH_BROKER_PODS, BENCH_BROKER_CONCURRENCY and BENCH_BROKER_BURST must be at least 1"
            );
        }
        Ok(config)
    }

    /// Whether `phase` is to run.
    pub fn runs(&self, phase: &str) -> bool {
        self.phases.iter().any(|p| p == phase)
    }
}

/// Every phase, in the order they run.
const PHASES: [&str; 4] = ["load", "burst", "broker", "memory"];

/// `BENCH_PHASES`, comma-separated; every phase without it.
fn phases() -> anyhow::Result<Vec<String>> {
    let Ok(value) = std::env::var("BENCH_PHASES") else {
        return Ok(PHASES.map(str::to_owned).to_vec());
    };
    let phases: Vec<String> = value.split(',').map(|p| p.trim().to_owned()).collect();
    if let Some(unknown) = phases.iter().find(|p| !PHASES.contains(&p.as_str())) {
        bail!("BENCH_PHASES: unknown phase {unknown:?}, expected some of {PHASES:?}");
    }
    Ok(phases)
}

/// One request body the load sends, and what the webhook must answer to it.
pub struct Case {
    pub name: &'static str,
    pub label: &'static str,
    pub body: Bytes,
    /// `Ok(())`: patched; `Err(code)`: denied with `code`.
    pub expect: Result<(), u64>,
}

impl Case {
    pub fn path(&self) -> String {
        format!("/mutate?case={}", self.name)
    }
}

pub fn cases() -> Vec<Case> {
    let body = |pod: Value, namespace: &str| {
        let review = common::review(pod, namespace, "8d2c5f0e-3b7a-4c59-9a1e-6f4b2d7c0e91");
        Bytes::from(serde_json::to_vec(&review).expect("a review serializes"))
    };
    vec![
        Case {
            name: "driver",
            label: "Spark driver, 5 refs",
            body: body(common::driver_pod(), common::FINANCE_NAMESPACE),
            expect: Ok(()),
        },
        Case {
            name: "pod64",
            label: "64 containers × 5 refs",
            body: body(common::pod64(), common::FINANCE_NAMESPACE),
            expect: Ok(()),
        },
        Case {
            name: "denied",
            label: "Spark driver, out of scope (403)",
            body: body(common::driver_pod(), common::MARKETING_NAMESPACE),
            expect: Err(403),
        },
    ]
}

/// Which server a run measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Target {
    Webhook,
    /// The baseline that answers fixed bytes without reading the request.
    FixedBaseline,
    /// The baseline that parses the request into `serde_json::Value` and reads its uid, then
    /// answers the same fixed bytes.
    ParseBaseline,
}

impl Target {
    pub fn label(self) -> &'static str {
        match self {
            Target::Webhook => "webhook",
            Target::FixedBaseline => "fixed-baseline",
            Target::ParseBaseline => "parse-baseline",
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub enum Mode {
    Closed { concurrency: usize },
    Open { percent: u32, rate: f64 },
}

pub struct Run {
    pub target: Target,
    pub case: &'static str,
    pub protocol: Protocol,
    pub mode: Mode,
    pub stats: Stats,
}

pub struct BurstResult {
    pub size: usize,
    pub wall: Duration,
    pub patched: usize,
    /// Denials and failures by answer code (0: no answer).
    pub other: HashMap<u64, usize>,
    pub reads_during: usize,
    pub logins_during: usize,
    pub logins_since_start: usize,
    /// The webhook's Vault cache lookups in the burst: miss (read Vault), coalesced (waited
    /// for that read), hit (came after it).
    pub lookups: [f64; 3],
}

pub struct MemoryRow {
    pub scenario: String,
    pub memory: Memory,
    pub start_to_ready: Option<Duration>,
}

/// Everything measured, for [`report`].
pub struct Report {
    pub config: Config,
    pub machine: Vec<(String, String)>,
    pub cases: Vec<(&'static str, &'static str)>,
    /// Per case: request and answer body sizes in bytes.
    pub sizes: HashMap<&'static str, (usize, usize)>,
    pub runs: Vec<Run>,
    pub bursts: Vec<BurstResult>,
    pub memory: Vec<MemoryRow>,
    pub broker: Option<broker::BrokerResult>,
    pub started: Instant,
    pub load_before: String,
    pub load_after: String,
}

async fn run(config: &Config) -> anyhow::Result<Report> {
    let started = Instant::now();
    let mut report = Report {
        config: config.clone(),
        machine: report::machine(),
        cases: Vec::new(),
        sizes: HashMap::new(),
        runs: Vec::new(),
        bursts: Vec::new(),
        memory: Vec::new(),
        broker: None,
        started,
        load_before: report::load_average(),
        load_after: String::new(),
    };
    progress(
        started,
        "starting OpenBao and the Kubernetes API server (kube-apiserver and etcd)",
    );
    let environment = Environment::start().await?;
    let cases = cases();
    report.cases = cases.iter().map(|case| (case.name, case.label)).collect();

    if config.runs("load") {
        load_phase(&environment, config, &cases, &mut report).await?;
    }
    if config.runs("burst") {
        for &size in &config.bursts {
            let result = burst(&environment, size).await?;
            progress(
                started,
                &format!(
                    "burst  N={size:<5} {:>7.1} ms, {} patched, Vault reads {} logins {}",
                    result.wall.as_secs_f64() * 1e3,
                    result.patched,
                    result.reads_during,
                    result.logins_during
                ),
            );
            report.bursts.push(result);
        }
    }
    if config.runs("broker") {
        report.broker = Some(broker::run(&environment, config, started).await?);
    }
    if config.runs("memory") {
        progress(started, "memory: large stores and Vault values");
        report
            .memory
            .extend(large_stores(&environment, config).await?);
    }
    report.load_after = report::load_average();
    progress(started, "done");
    Ok(report)
}

/// The webhook and both baselines under the closed and open loops, with their memory.
async fn load_phase(
    environment: &Environment,
    config: &Config,
    cases: &[Case],
    report: &mut Report,
) -> anyhow::Result<()> {
    let started = report.started;
    progress(started, "starting the webhook");
    let mut webhook = environment.spawn_webhook(&[])?;
    let ready = webhook.wait_ready().await?;
    let client = Client::new(webhook.port, &environment.ca_pem)?;
    report.memory.push(MemoryRow {
        scenario: "webhook idle: ready, small stores, no admission yet".into(),
        memory: webhook.memory(),
        start_to_ready: Some(ready),
    });
    let answers = warm_up(&client, cases).await?;
    for case in cases {
        report
            .sizes
            .insert(case.name, (case.body.len(), answers[case.name].len()));
    }
    report.memory.push(MemoryRow {
        scenario: "webhook idle: caches warm (one admission per case)".into(),
        memory: webhook.memory(),
        start_to_ready: None,
    });
    let answers_file = environment.dir.path().join("answers.json");
    std::fs::write(&answers_file, serde_json::to_vec(&answers)?)?;
    let mut fixed = environment.spawn_baseline(&answers_file, false)?;
    let mut parse = environment.spawn_baseline(&answers_file, true)?;
    fixed.wait_ready().await?;
    parse.wait_ready().await?;
    let fixed_client = Client::new(fixed.port, &environment.ca_pem)?;
    let parse_client = Client::new(parse.port, &environment.ca_pem)?;
    for (target, client) in [
        (Target::FixedBaseline, &fixed_client),
        (Target::ParseBaseline, &parse_client),
    ] {
        let mut connection = client.connect(Protocol::H2).await?;
        for case in cases {
            let (status, body) = connection.post(&case.path(), case.body.clone()).await?;
            if status != 200 || body != answers[case.name].as_bytes() {
                bail!(
                    "the {} does not answer case {} as captured",
                    target.label(),
                    case.name
                );
            }
        }
        // Only the parse baseline reads the request: a review without a uid is refused.
        let (status, _) = connection
            .post(&cases[0].path(), Bytes::from_static(b"{\"request\":{}}"))
            .await?;
        let expected = match target {
            Target::ParseBaseline => 400,
            _ => 200,
        };
        if status != expected {
            bail!(
                "the {} answers {status} to a review without a uid",
                target.label()
            );
        }
    }
    report.memory.push(MemoryRow {
        scenario: "fixed-bytes baseline idle".into(),
        memory: fixed.memory(),
        start_to_ready: None,
    });
    report.memory.push(MemoryRow {
        scenario: "parse-and-answer baseline idle".into(),
        memory: parse.memory(),
        start_to_ready: None,
    });

    let servers = [
        (Target::FixedBaseline, &fixed_client, &fixed),
        (Target::ParseBaseline, &parse_client, &parse),
        (Target::Webhook, &client, &webhook),
    ];
    for case in cases {
        for protocol in [Protocol::H2, Protocol::H1] {
            for &concurrency in &config.concurrencies {
                // Rounds alternate the servers, so all see the same background load on this
                // shared machine; each keeps its best round, since other work on the machine
                // can only slow a run down.
                let mut best: Vec<Option<Stats>> = vec![None; servers.len()];
                for _ in 0..config.rounds {
                    for (slot, (target, client, server)) in servers.iter().enumerate() {
                        let stats = load::closed_loop(
                            client,
                            protocol,
                            concurrency,
                            &case.path(),
                            case.body.clone(),
                            config.warmup,
                            config.measure,
                        )
                        .await?;
                        server.truncate_log();
                        progress(
                            started,
                            &format!(
                                "closed {:>14} {:>6} {:<9} c={concurrency:<3} {:>8.0} req/s p99 {:.2} ms errors {}",
                                target.label(),
                                case.name,
                                protocol.label(),
                                stats.throughput(),
                                stats.quantile_ms(0.99),
                                stats.errors
                            ),
                        );
                        if best[slot]
                            .as_ref()
                            .is_none_or(|kept| stats.throughput() > kept.throughput())
                        {
                            best[slot] = Some(stats);
                        }
                    }
                }
                for ((target, _, _), stats) in servers.iter().zip(best) {
                    report.runs.push(Run {
                        target: *target,
                        case: case.name,
                        protocol,
                        mode: Mode::Closed { concurrency },
                        stats: stats.expect("at least one round"),
                    });
                }
            }
        }
        let best = report.best_throughput(Target::Webhook, case.name, Protocol::H2);
        for &percent in &config.rate_percents {
            let rate = best * f64::from(percent) / 100.0;
            for (target, client, server) in servers {
                let stats = load::open_loop(
                    client,
                    rate,
                    &case.path(),
                    case.body.clone(),
                    config.warmup,
                    config.open_measure,
                )
                .await?;
                server.truncate_log();
                progress(
                    started,
                    &format!(
                        "open   {:>14} {:>6} {percent:>3}% = {rate:>6.0}/s p50 {:.2} ms p99 {:.2} ms errors {}",
                        target.label(),
                        case.name,
                        stats.quantile_ms(0.5),
                        stats.quantile_ms(0.99),
                        stats.errors
                    ),
                );
                report.runs.push(Run {
                    target,
                    case: case.name,
                    protocol: Protocol::H2,
                    mode: Mode::Open { percent, rate },
                    stats,
                });
            }
        }
    }
    report.memory.push(MemoryRow {
        scenario: "webhook after the load runs".into(),
        memory: webhook.memory(),
        start_to_ready: None,
    });
    report.memory.push(MemoryRow {
        scenario: "fixed-bytes baseline after the load runs".into(),
        memory: fixed.memory(),
        start_to_ready: None,
    });
    report.memory.push(MemoryRow {
        scenario: "parse-and-answer baseline after the load runs".into(),
        memory: parse.memory(),
        start_to_ready: None,
    });
    fixed.stop();
    parse.stop();
    webhook.stop();
    Ok(())
}

fn progress(started: Instant, text: &str) {
    eprintln!("[{:>6.1}s] {text}", started.elapsed().as_secs_f64());
}

/// Sends each case once, retrying while the Vault configurations load (503), checks each
/// answer and returns them by case name (the baselines send these).
pub async fn warm_up(client: &Client, cases: &[Case]) -> anyhow::Result<HashMap<String, String>> {
    let mut connection = client.connect(Protocol::H2).await?;
    let mut answers = HashMap::new();
    for case in cases {
        let deadline = Instant::now() + Duration::from_secs(30);
        let answer = loop {
            let (status, body) = connection.post(&case.path(), case.body.clone()).await?;
            let answer: Value = serde_json::from_slice(&body)?;
            let outcome = decision(&answer);
            let expected = match case.expect {
                Ok(()) => outcome == Ok(true),
                Err(code) => outcome == Err(code),
            };
            if status == 200 && expected {
                break body;
            }
            if Instant::now() > deadline {
                bail!("case {}: unexpected answer {answer}", case.name);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        answers.insert(case.name.to_owned(), String::from_utf8(answer.to_vec())?);
    }
    Ok(answers)
}

/// A fresh webhook (cold cache, no Vault token), its start-up Vault check finished, then
/// `size` executor pods referencing the same Vault secret at once.
async fn burst(environment: &Environment, size: usize) -> anyhow::Result<BurstResult> {
    let logins_before_start = environment.remote_vault_logins();
    let probe = "iomete-webhook-permission-probe";
    let probes_before = environment.vault_reads(probe);
    // Both VaultConfigs are checked at start, the remote one a round trip later.
    let probes_expected = probes_before + 2;
    let mut webhook = environment.spawn_webhook(&[])?;
    webhook.wait_ready().await?;
    // The status check logs in and probes at start; let it finish so the burst is measured
    // alone (its login is reported separately).
    let deadline = Instant::now() + Duration::from_secs(30);
    while environment.vault_reads(probe) < probes_expected {
        if Instant::now() > deadline {
            bail!("the webhook's start-up Vault check did not happen");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let client = Client::new(webhook.port, &environment.ca_pem)?;
    let bodies: Vec<Bytes> = (0..size)
        .map(|index| {
            let pod =
                common::executor_pod(index + 1, env::REMOTE_VAULT_CONFIG, common::VAULT_DB_SECRET);
            let review = common::review(
                pod,
                common::FINANCE_NAMESPACE,
                &format!("burst-{size}-{index}"),
            );
            Bytes::from(serde_json::to_vec(&review).expect("a review serializes"))
        })
        .collect();
    let (reads_before, logins_before) = (
        environment.vault_reads(common::VAULT_DB_SECRET),
        environment.remote_vault_logins(),
    );
    let burst = load::burst(&client, "/mutate", bodies).await?;
    let reads_during = environment.vault_reads(common::VAULT_DB_SECRET) - reads_before;
    let logins_after = environment.remote_vault_logins();
    let mut result = BurstResult {
        size,
        wall: burst.wall,
        patched: 0,
        other: HashMap::new(),
        reads_during,
        logins_during: logins_after - logins_before,
        logins_since_start: logins_after - logins_before_start,
        lookups: {
            let mut lookups = [0.0; 3];
            for (slot, result) in ["=\"miss\"", "=\"coalesced\"", "=\"hit\""]
                .iter()
                .enumerate()
            {
                lookups[slot] = webhook
                    .metric(
                        "iomete_secrets_webhook_vault_cache_lookups_total",
                        &[result],
                    )
                    .await;
            }
            lookups
        },
    };
    for (status, body) in &burst.answers {
        let outcome = serde_json::from_slice::<Value>(body)
            .ok()
            .filter(|_| *status == 200)
            .map(|answer| decision(&answer));
        match outcome {
            Some(Ok(true)) => result.patched += 1,
            Some(Err(code)) => *result.other.entry(code).or_default() += 1,
            _ => *result.other.entry(0).or_default() += 1,
        }
    }
    webhook.stop();
    Ok(result)
}

/// Start-to-ready and memory with `domains × keys` store entries, then with `vault_values`
/// Vault values cached.
async fn large_stores(
    environment: &Environment,
    config: &Config,
) -> anyhow::Result<Vec<MemoryRow>> {
    environment
        .add_domain_stores(config.domains, config.keys)
        .await;
    let names = environment.put_vault_secrets(config.vault_values).await;
    let mut webhook = environment.spawn_webhook(&["--vault-cache-ttl", "30m"])?;
    let ready = webhook.wait_ready().await?;
    let mut rows = vec![MemoryRow {
        scenario: format!(
            "webhook ready with {} domains × {} keys in the stores",
            config.domains, config.keys
        ),
        memory: webhook.memory(),
        start_to_ready: Some(ready),
    }];
    let keys = webhook
        .metric("iomete_secrets_webhook_secret_store_keys", &[])
        .await;
    let expected_keys = (config.domains * config.keys) as f64;
    if keys < expected_keys {
        bail!("the webhook holds {keys} store keys, expected at least {expected_keys}");
    }
    let client = Client::new(webhook.port, &environment.ca_pem)?;
    let mut connection = client.connect(Protocol::H2).await?;
    for (index, chunk) in names.chunks(100).enumerate() {
        let pod = common::vault_fill_pod(common::VAULT_CONFIG, chunk);
        let review = common::review(pod, common::FINANCE_NAMESPACE, &format!("fill-{index}"));
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (_, body) = connection
                .post("/mutate", Bytes::from(serde_json::to_vec(&review)?))
                .await?;
            let answer: Value = serde_json::from_slice(&body)?;
            if decision(&answer) == Ok(true) {
                break;
            }
            if Instant::now() > deadline {
                bail!("filling the Vault cache: {answer}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let reads = webhook
        .metric("iomete_secrets_webhook_vault_reads_total", &[])
        .await;
    rows.push(MemoryRow {
        scenario: format!(
            "… and {} Vault values cached ({reads} Vault reads)",
            config.vault_values
        ),
        memory: webhook.memory(),
        start_to_ready: None,
    });
    // The same large-store process under load, for the limit a Deployment needs.
    let case = &cases()[0];
    let stats = load::closed_loop(
        &client,
        Protocol::H2,
        64,
        "/mutate",
        case.body.clone(),
        config.warmup,
        config.measure,
    )
    .await?;
    webhook.truncate_log();
    rows.push(MemoryRow {
        scenario: format!(
            "… then driver admissions, h2 c=64 ({:.0} req/s)",
            stats.throughput()
        ),
        memory: webhook.memory(),
        start_to_ready: None,
    });
    webhook.stop();
    Ok(rows)
}

impl Report {
    pub fn best_throughput(&self, target: Target, case: &str, protocol: Protocol) -> f64 {
        self.closed_runs(target, case, protocol)
            .map(|run| run.stats.throughput())
            .fold(0.0, f64::max)
    }

    pub fn closed_runs<'a>(
        &'a self,
        target: Target,
        case: &'a str,
        protocol: Protocol,
    ) -> impl Iterator<Item = &'a Run> + 'a {
        self.runs.iter().filter(move |run| {
            run.target == target
                && run.case == case
                && run.protocol == protocol
                && matches!(run.mode, Mode::Closed { .. })
        })
    }

    pub fn open_run(&self, target: Target, case: &str, percent: u32) -> Option<&Run> {
        self.runs.iter().find(|run| {
            run.target == target
                && run.case == case
                && matches!(run.mode, Mode::Open { percent: p, .. } if p == percent)
        })
    }
}

/// Keeps `write!` to a String from needing error handling everywhere.
pub fn push(out: &mut String, text: std::fmt::Arguments<'_>) {
    let _ = out.write_fmt(text);
}
