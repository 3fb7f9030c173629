//! `--profile`: where the webhook's time goes. For each case, `perf record` samples the
//! release webhook process while the load client holds an HTTP/2 closed loop (64 callers, as
//! in the throughput runs), then `perf report` lists the hottest shared objects and symbols.
//! The release build has symbols but no debug info, so the profile is flat (self time per
//! function, no call graph), which is enough to tell TLS, HTTP/2, JSON, allocation, logging
//! and the decision apart. Reports go to `target/bench/profile-CASE.txt`;
//! `BENCH_PROFILE_SECS` sets the sampling time (default 8 s).

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};

use crate::env::Environment;
use crate::load::{self, Client, Protocol};
use crate::{Config, cases, warm_up};

pub async fn run(config: &Config) -> anyhow::Result<()> {
    let seconds: f64 = std::env::var("BENCH_PROFILE_SECS")
        .ok()
        .map(|value| value.parse())
        .transpose()
        .context("BENCH_PROFILE_SECS")?
        .unwrap_or(8.0);
    let out = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench");
    std::fs::create_dir_all(&out)?;
    let environment = Environment::start().await?;
    let mut webhook = environment.spawn_webhook(&[])?;
    webhook.wait_ready().await?;
    let client = Client::new(webhook.port, &environment.ca_pem)?;
    let cases = cases();
    warm_up(&client, &cases).await?;
    for case in &cases {
        let data = out.join(format!("perf-{}.data", case.name));
        let mut perf = Command::new("perf")
            .args([
                "record",
                "-F",
                "1999",
                "-p",
                &webhook.pid().to_string(),
                "-o",
            ])
            .arg(&data)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("running perf (Debian: apt-get install linux-perf)")?;
        // perf needs a moment to attach before the load starts.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let stats = load::closed_loop(
            &client,
            Protocol::H2,
            64,
            &case.path(),
            case.body.clone(),
            config.warmup,
            Duration::from_secs_f64(seconds),
        )
        .await?;
        webhook.truncate_log();
        Command::new("kill")
            .args(["-INT", &perf.id().to_string()])
            .status()?;
        // perf exits 130 after SIGINT; whether it recorded shows in the data file.
        perf.wait()?;
        if std::fs::metadata(&data).map_or(0, |meta| meta.len()) == 0 {
            bail!("perf record wrote nothing (kernel.perf_event_paranoid too strict?)");
        }
        let mut text = format!(
            "# {} ({}): HTTP/2 closed loop, 64 callers, {:.0} req/s\n\n",
            case.name,
            case.label,
            stats.throughput()
        );
        let every_symbol = Command::new("perf")
            .args([
                "report",
                "--stdio",
                "--no-children",
                "--sort",
                "dso,sym",
                "-i",
            ])
            .arg(&data)
            .output()?;
        text.push_str(&buckets(&String::from_utf8_lossy(&every_symbol.stdout)));
        let hottest = Command::new("perf")
            .args([
                "report",
                "--stdio",
                "--no-children",
                "--percent-limit",
                "0.5",
            ])
            .args(["--sort", "dso,sym", "-i"])
            .arg(&data)
            .output()?;
        text.push_str(&String::from_utf8_lossy(&hottest.stdout));
        let path = out.join(format!("profile-{}.txt", case.name));
        std::fs::write(&path, &text)?;
        println!("{text}");
        eprintln!("profile written to {}", path.display());
    }
    webhook.stop();
    Ok(())
}

/// Where a symbol's time belongs; the first bucket whose test matches wins.
const BUCKETS: &[(&str, &[&str])] = &[
    (
        "allocator (glibc malloc/free)",
        &[
            "malloc",
            "free",
            "_int_",
            "unlink_chunk",
            "consolidate",
            "realloc",
            "tcache",
        ],
    ),
    (
        "memcpy/memcmp (libc)",
        &["memmove", "memcpy", "memcmp", "memset", "strlen"],
    ),
    (
        "kernel (syscalls, TCP, scheduling)",
        &["[kernel.kallsyms]", "[k] "],
    ),
    (
        "TLS (rustls, ring)",
        &[
            "rustls",
            "ring_core",
            "ring::",
            "aes_",
            "gcm",
            "sha",
            "chacha",
        ],
    ),
    (
        "HTTP (hyper, h2, axum, tower)",
        &["hyper", "h2::", "axum", "tower", "http::", "httparse"],
    ),
    ("JSON (serde, serde_json)", &["serde"]),
    (
        "drop, collections, strings",
        &[
            "drop_in_place",
            "btree",
            "hashbrown",
            "alloc::",
            "core::str",
        ],
    ),
    (
        "formatting and logging (fmt, tracing)",
        &["fmt", "tracing", "format"],
    ),
    ("tokio runtime", &["tokio"]),
    (
        "the decision (iomete_secrets_webhook, kube, k8s_openapi)",
        &["iomete_secrets_webhook", "kube", "k8s_openapi"],
    ),
];

/// Self time summed per [`BUCKETS`] entry, from `perf report --sort dso,sym` lines.
fn buckets(report: &str) -> String {
    let mut totals = vec![0.0f64; BUCKETS.len() + 1];
    for line in report.lines() {
        let Some((percent, symbol)) = line.trim_start().split_once('%') else {
            continue;
        };
        let Ok(percent) = percent.parse::<f64>() else {
            continue;
        };
        let bucket = BUCKETS
            .iter()
            .position(|(_, needles)| needles.iter().any(|needle| symbol.contains(needle)))
            .unwrap_or(BUCKETS.len());
        totals[bucket] += percent;
    }
    let mut text = String::from("| where the webhook's CPU time goes | share |\n|---|---:|\n");
    for (index, total) in totals.iter().enumerate() {
        let name = BUCKETS.get(index).map_or("other", |(name, _)| name);
        text.push_str(&format!("| {name} | {total:.1}% |\n"));
    }
    text.push('\n');
    text
}
