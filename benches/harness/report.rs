//! The harness's report: the machine it ran on, the headline ratios against both baselines
//! (fixed bytes, parse and answer), the targets from the benchmark issues (reported, never
//! asserted), then every run, the bursts and the memory figures, as Markdown that
//! `docs/benchmarks.md` can carry as it is.

use std::process::Command;

use crate::load::Protocol;
use crate::{Mode, Report, Target, push};

/// The figures that identify this machine.
pub fn machine() -> Vec<(String, String)> {
    let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
    let cpuinfo = read("/proc/cpuinfo");
    let model = cpuinfo
        .lines()
        .find_map(|line| line.strip_prefix("model name"))
        .and_then(|rest| rest.split_once(':'))
        .map_or("unknown".into(), |(_, model)| model.trim().to_owned());
    let memory = read("/proc/meminfo")
        .lines()
        .find_map(|line| line.strip_prefix("MemTotal:"))
        .and_then(|rest| rest.split_whitespace().next()?.parse::<u64>().ok())
        .map_or("unknown".into(), |kib| {
            format!("{:.1} GiB", kib as f64 / 1048576.0)
        });
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    vec![
        (
            "date (UTC)".into(),
            command_output("date", &["-u", "+%Y-%m-%d %H:%M"]),
        ),
        (
            "CPUs (nproc)".into(),
            std::thread::available_parallelism().map_or("unknown".into(), |n| n.to_string()),
        ),
        ("CPU model".into(), model),
        ("memory".into(), memory),
        (
            "kernel".into(),
            read("/proc/sys/kernel/osrelease").trim().to_owned(),
        ),
        ("rustc".into(), command_output(&rustc, &["--version"])),
    ]
}

/// `/proc/loadavg`'s 1, 5 and 15 minute averages: other work on a shared machine shows here.
pub fn load_average() -> String {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    text.split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn command_output(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .ok()
        .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_owned())
        .unwrap_or_else(|| "unknown".into())
}

fn mib(kib: u64) -> String {
    format!("{:.1}", kib as f64 / 1024.0)
}

/// The open-loop percentage the headline uses: 50 when it was run, else the nearest.
fn half_load(report: &Report) -> Option<u32> {
    report
        .config
        .rate_percents
        .iter()
        .copied()
        .min_by_key(|percent| percent.abs_diff(50))
}

impl Report {
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        let config = &self.config;
        push(
            &mut out,
            format_args!(
                "## Results ({} run, {:.0} s)\n\n",
                if config.quick { "quick" } else { "full" },
                self.started.elapsed().as_secs_f64()
            ),
        );
        out.push_str("| machine | |\n|---|---|\n");
        for (name, value) in &self.machine {
            push(&mut out, format_args!("| {name} | {value} |\n"));
        }
        push(
            &mut out,
            format_args!(
                "| load average before / after (1, 5, 15 min) | {} / {} |\n\n",
                self.load_before, self.load_after
            ),
        );
        if !self.runs.is_empty() {
            self.load_method(&mut out);
            self.headline(&mut out);
        }
        self.targets(&mut out);
        if !self.runs.is_empty() {
            self.all_runs(&mut out);
        }
        self.bursts(&mut out);
        if let Some(broker) = &self.broker {
            broker.markdown(&mut out);
        }
        self.memory(&mut out);
        out
    }

    /// How the load runs were made, and the cases' body sizes.
    fn load_method(&self, out: &mut String) {
        let config = &self.config;
        push(
            out,
            format_args!(
                "Closed loop: {} round(s) per server and setting, alternating between the servers, the best kept; each {:.1} s warm-up then {:.1} s measured; concurrency {:?}. Open loop (HTTP/2): {:.1} s warm-up then {:.1} s measured at {:?} % of the webhook's best closed-loop HTTP/2 throughput.\n\n",
                config.rounds,
                config.warmup.as_secs_f64(),
                config.measure.as_secs_f64(),
                config.concurrencies,
                config.warmup.as_secs_f64(),
                config.open_measure.as_secs_f64(),
                config.rate_percents
            ),
        );
        out.push_str("| case | request body | answer body |\n|---|---:|---:|\n");
        for (case, label) in &self.cases {
            let (request, answer) = self.sizes.get(case).copied().unwrap_or_default();
            push(
                out,
                format_args!("| {label} (`{case}`) | {request} B | {answer} B |\n"),
            );
        }
        out.push('\n');
    }

    fn headline(&self, out: &mut String) {
        let half = half_load(self);
        out.push_str("### Webhook against the two baselines (warm caches)\n\n");
        push(
            out,
            format_args!(
                "Two baselines on the webhook's serving stack send the webhook's captured answer: the fixed-bytes one without reading the request, the parse-and-answer one after parsing the request into `serde_json::Value` and reading its uid (the least any webhook does). Throughput: the best closed-loop run of each server; the ratios are the webhook's over each baseline's. One at a time: the closed loop with one caller (when run). Latency under load: the open loop (HTTP/2) at {}% of the webhook's best, all three servers at that same rate.\n\n",
                half.map_or("-".into(), |p| p.to_string())
            ),
        );
        out.push_str(
            "| case | protocol | webhook max req/s | fixed-bytes max req/s | parse max req/s | **webhook / fixed-bytes** | **webhook / parse** | p50 ms one at a time, webhook / fixed-bytes / parse | open-loop rate/s | webhook p50 / p99 ms | fixed-bytes p50 / p99 ms | parse p50 / p99 ms | p99 webhook / parse |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
        );
        for (case, label) in &self.cases {
            for protocol in [Protocol::H2, Protocol::H1] {
                let [webhook, fixed, parse] =
                    TARGETS.map(|target| self.best_throughput(target, case, protocol));
                let open = |target| match (protocol, half) {
                    (Protocol::H2, Some(percent)) => self.open_run(target, case, percent),
                    _ => None,
                };
                let latency = |run: Option<&crate::Run>| {
                    run.map_or("-".into(), |run| {
                        format!(
                            "{:.2} / {:.2}{}",
                            run.stats.quantile_ms(0.5),
                            run.stats.quantile_ms(0.99),
                            if client_lagged(run) { " †" } else { "" }
                        )
                    })
                };
                let [webhook_open, fixed_open, parse_open] = TARGETS.map(open);
                let serial = |target| {
                    self.closed_runs(target, case, protocol)
                        .find(|run| matches!(run.mode, Mode::Closed { concurrency: 1 }))
                        .map(|run| run.stats.quantile_ms(0.5))
                };
                let unloaded = match TARGETS.map(serial) {
                    [Some(webhook), Some(fixed), Some(parse)] => {
                        format!("{webhook:.2} / {fixed:.2} / {parse:.2}")
                    }
                    _ => "-".into(),
                };
                let rate = webhook_open.map_or("-".into(), |run| match run.mode {
                    Mode::Open { rate, .. } => format!("{rate:.0}"),
                    Mode::Closed { .. } => "-".into(),
                });
                let p99_vs_parse = match (webhook_open, parse_open) {
                    (Some(webhook), Some(parse)) => format!(
                        "{:.2}{}",
                        p99_ratio(webhook, parse),
                        if client_lagged(webhook) || client_lagged(parse) {
                            " †"
                        } else {
                            ""
                        }
                    ),
                    _ => "-".into(),
                };
                push(
                    out,
                    format_args!(
                        "| {label} | {} | {webhook:.0} | {fixed:.0} | {parse:.0} | **{:.2}** | **{:.2}** | {unloaded} | {rate} | {} | {} | {} | {p99_vs_parse} |\n",
                        protocol.label(),
                        webhook / fixed,
                        webhook / parse,
                        latency(webhook_open),
                        latency(fixed_open),
                        latency(parse_open),
                    ),
                );
            }
        }
        push(
            out,
            format_args!(
                "\n† the load client fell more than {} ms behind its schedule (p99) in that run: the machine was busy with other work and the figure overstates latency.\n",
                LAGGED.as_millis()
            ),
        );
        out.push('\n');
    }

    /// The webhook's best closed-loop throughput over `baseline`'s, for one case and protocol.
    fn ratio(&self, case: &str, protocol: Protocol, baseline: Target) -> f64 {
        self.best_throughput(Target::Webhook, case, protocol)
            / self.best_throughput(baseline, case, protocol)
    }

    /// A throughput target row: the webhook at least `minimum` times the parse-and-answer
    /// baseline on `case` over both protocols (the fixed-bytes ratio beside it).
    fn throughput_target(&self, out: &mut String, case: &str, minimum: f64) {
        let Some((_, label)) = self.cases.iter().find(|(name, _)| *name == case) else {
            return;
        };
        let mut met = true;
        let mut measured = Vec::new();
        for protocol in [Protocol::H2, Protocol::H1] {
            let parse = self.ratio(case, protocol, Target::ParseBaseline);
            let fixed = self.ratio(case, protocol, Target::FixedBaseline);
            met &= parse >= minimum;
            measured.push(format!(
                "{} {parse:.2} × parse ({fixed:.2} × fixed bytes)",
                protocol.label()
            ));
        }
        push(
            out,
            format_args!(
                "| {label} (`{case}`), warm caches: throughput ≥ {minimum} × the parse-and-answer baseline, HTTP/2 and HTTP/1.1 | {} | {} |\n",
                measured.join("; "),
                yes(met)
            ),
        );
    }

    fn targets(&self, out: &mut String) {
        out.push_str("### Against the targets\n\n| target | measured | met |\n|---|---|---|\n");
        if !self.runs.is_empty() {
            self.throughput_target(out, "driver", 0.8);
            self.throughput_target(out, "pod64", 0.5);
        }
        if let Some(percent) = half_load(self).filter(|_| !self.runs.is_empty()) {
            let mut met = true;
            let mut measured = Vec::new();
            for (case, _) in &self.cases {
                let [webhook, fixed, parse] =
                    TARGETS.map(|target| self.open_run(target, case, percent));
                let (Some(webhook), Some(fixed), Some(parse)) = (webhook, fixed, parse) else {
                    continue;
                };
                let ratio = p99_ratio(webhook, parse);
                met &= ratio <= 1.2;
                measured.push(format!(
                    "{case} {ratio:.2} ({:.2} / {:.2} ms; {:.2} × fixed bytes){}",
                    webhook.stats.quantile_ms(0.99),
                    parse.stats.quantile_ms(0.99),
                    p99_ratio(webhook, fixed),
                    if [webhook, fixed, parse].into_iter().any(client_lagged) {
                        " †"
                    } else {
                        ""
                    }
                ));
            }
            if !measured.is_empty() {
                push(
                    out,
                    format_args!(
                        "| p99 at {percent} % of the webhook's max rate (HTTP/2 open loop) ≤ 1.2 × the parse-and-answer baseline's p99 at that rate | {} | {} |\n",
                        measured.join("; "),
                        yes(met)
                    ),
                );
            }
        }
        if !self.bursts.is_empty() {
            let reads_ok = self.bursts.iter().all(|burst| burst.reads_during == 1);
            let logins_ok = self
                .bursts
                .iter()
                .all(|burst| burst.logins_since_start <= 1);
            let reads: Vec<String> = self
                .bursts
                .iter()
                .map(|b| b.reads_during.to_string())
                .collect();
            let logins: Vec<String> = self
                .bursts
                .iter()
                .map(|b| b.logins_since_start.to_string())
                .collect();
            push(
                out,
                format_args!(
                    "| cold burst: exactly 1 read per distinct secret, ≤ 1 login per VaultConfig | reads {} / logins {} for N = {:?} | {} |\n",
                    reads.join(", "),
                    logins.join(", "),
                    self.bursts.iter().map(|b| b.size).collect::<Vec<_>>(),
                    yes(reads_ok && logins_ok)
                ),
            );
        }
        if let Some(broker) = &self.broker {
            broker.target_rows(out);
        }
        if let Some(row) = self
            .memory
            .iter()
            .rfind(|row| row.scenario.contains("Vault values cached"))
        {
            push(
                out,
                format_args!(
                    "| RSS ≤ 40 MiB with {} domains × {} keys and {} Vault values | {} MiB | {} |\n",
                    self.config.domains,
                    self.config.keys,
                    self.config.vault_values,
                    mib(row.memory.rss_kib),
                    yes(row.memory.rss_kib <= 40 * 1024)
                ),
            );
        }
        out.push('\n');
    }

    fn all_runs(&self, out: &mut String) {
        out.push_str(
            "### Every load run\n\n| server | case | protocol | load | req/s | p50 ms | p90 ms | p99 ms | max ms | errors |\n|---|---|---|---|---:|---:|---:|---:|---:|---:|\n",
        );
        for run in &self.runs {
            let load = match run.mode {
                Mode::Closed { concurrency } => format!("closed, c={concurrency}"),
                Mode::Open { percent, rate } => format!(
                    "open, {percent}% = {rate:.0}/s (client lag p99 {:.2} ms)",
                    run.stats
                        .dispatch_lag_p99
                        .map_or(0.0, |lag| lag.as_secs_f64() * 1e3)
                ),
            };
            let stats = &run.stats;
            push(
                out,
                format_args!(
                    "| {} | {} | {} | {load} | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} | {} |\n",
                    run.target.label(),
                    run.case,
                    run.protocol.label(),
                    stats.throughput(),
                    stats.quantile_ms(0.5),
                    stats.quantile_ms(0.9),
                    stats.quantile_ms(0.99),
                    stats.max_ms(),
                    stats.errors
                ),
            );
        }
        out.push('\n');
    }

    fn bursts(&self, out: &mut String) {
        if self.bursts.is_empty() {
            return;
        }
        push(
            out,
            format_args!(
                "### Cold burst: N executor pods at once, one Vault secret\n\nThe executors' VaultConfig reaches OpenBao through a proxy that delays each direction by {} ms (a Vault a WAN round trip away). A fresh webhook process per N (empty value cache). Its start-up status check of the VaultConfig (a login and a probe read) finishes first; the burst's read uses that token. Reads and logins are counted by OpenBao's audit log; the lookups are the webhook's own metric.\n\n| N | wall time ms | patched | other answers | Vault reads of the secret during the burst | logins during the burst | logins since the process started | cache lookups: miss / coalesced / hit |\n|---:|---:|---:|---|---:|---:|---:|---:|\n",
                crate::env::vault_delay().as_millis()
            ),
        );
        for burst in &self.bursts {
            let mut other: Vec<String> = burst
                .other
                .iter()
                .map(|(code, count)| format!("{count} × {code}"))
                .collect();
            other.sort();
            push(
                out,
                format_args!(
                    "| {} | {:.1} | {} | {} | {} | {} | {} | {:.0} / {:.0} / {:.0} |\n",
                    burst.size,
                    burst.wall.as_secs_f64() * 1e3,
                    burst.patched,
                    if other.is_empty() {
                        "none".into()
                    } else {
                        other.join(", ")
                    },
                    burst.reads_during,
                    burst.logins_during,
                    burst.logins_since_start,
                    burst.lookups[0],
                    burst.lookups[1],
                    burst.lookups[2]
                ),
            );
        }
        out.push('\n');
    }

    fn memory(&self, out: &mut String) {
        if self.memory.is_empty() {
            return;
        }
        out.push_str(
            "### Memory and start-up\n\n| process and state | VmRSS MiB | VmHWM (peak) MiB | start to ready |\n|---|---:|---:|---:|\n",
        );
        for row in &self.memory {
            push(
                out,
                format_args!(
                    "| {} | {} | {} | {} |\n",
                    row.scenario,
                    mib(row.memory.rss_kib),
                    mib(row.memory.peak_kib),
                    row.start_to_ready.map_or("-".into(), |ready| format!(
                        "{:.0} ms",
                        ready.as_secs_f64() * 1e3
                    ))
                ),
            );
        }
        out.push('\n');
    }
}

/// A client lag behind the open-loop schedule beyond which a run's latency says more about
/// the machine than about the server.
const LAGGED: std::time::Duration = std::time::Duration::from_millis(2);

fn client_lagged(run: &crate::Run) -> bool {
    run.stats.dispatch_lag_p99.is_some_and(|lag| lag > LAGGED)
}

/// The servers in the order the headline reads them: the webhook, then the fixed-bytes and
/// the parse-and-answer baselines.
const TARGETS: [Target; 3] = [
    Target::Webhook,
    Target::FixedBaseline,
    Target::ParseBaseline,
];

/// One open-loop run's p99 over another's.
fn p99_ratio(run: &crate::Run, against: &crate::Run) -> f64 {
    run.stats.quantile_ms(0.99) / against.stats.quantile_ms(0.99)
}

fn yes(met: bool) -> &'static str {
    if met { "yes" } else { "**no**" }
}
