//! The broker phase's part of the report (`broker.rs` measures): its rows against the targets
//! (start-time fetch p99 no more than twice an admission's, one Vault read per burst) and its
//! own section, the latency table and the burst.

use crate::broker::{BrokerResult, Level, Measured};
use crate::push;

/// The broker's p99 (fresh token: TokenReview and pod GET) over that of the admission beside it.
const P99_TARGET: f64 = 2.0;

impl Level {
    fn p99_ratio(&self) -> f64 {
        self.fresh.stats.quantile_ms(0.99) / self.admission.stats.quantile_ms(0.99)
    }

    fn rows(&self) -> [(&'static str, &Measured); 4] {
        [
            (
                "admission of the `driver` pod (env delivery, 5 references)",
                &self.admission,
            ),
            (
                "broker, fresh token each (TokenReview + pod GET + values)",
                &self.fresh,
            ),
            (
                "broker, the same tokens again (TokenReview cached; pod GET + values)",
                &self.cached,
            ),
            (
                "broker, fresh token and a new TLS connection each (HTTP/1.1, as a starting container connects)",
                &self.connect_each,
            ),
        ]
    }
}

impl BrokerResult {
    /// The phase's rows of "Against the targets".
    pub fn target_rows(&self, out: &mut String) {
        for level in &self.levels {
            let ratio = level.p99_ratio();
            let served = level.rows().iter().all(|(_, run)| run.failures.is_empty());
            push(
                out,
                format_args!(
                    "| broker, warm caches, {} caller(s): start-time fetch p99 (fresh token: TokenReview + pod GET) ≤ {P99_TARGET} × the `driver` admission's p99, same client | {ratio:.2} ({:.2} / {:.2} ms){} | {} |\n",
                    level.concurrency,
                    level.fresh.stats.quantile_ms(0.99),
                    level.admission.stats.quantile_ms(0.99),
                    if served { "" } else { "; some requests failed" },
                    yes(ratio <= P99_TARGET && served)
                ),
            );
        }
        let burst = &self.burst;
        push(
            out,
            format_args!(
                "| broker burst: {} pods at once on one uncached Vault secret → exactly 1 Vault read, every request 200 | {} read(s); {} × 200, other answers: {} | {} |\n",
                burst.size,
                burst.reads_during,
                burst.measured.stats.latencies.len(),
                failures(&burst.measured),
                yes(burst.reads_during == 1 && burst.measured.failures.is_empty())
            ),
        );
    }

    pub fn markdown(&self, out: &mut String) {
        push(
            out,
            format_args!(
                "### Broker mode: start-time fetch beside admission (warm caches)\n\nOne webhook process in broker mode (`--broker-listen`, the same certificate, `--vault-cache-ttl=10m`). {} pods created through the API server, each with one container whose `IOMETE_ENV_REFERENCES` lists the `driver` case's five references (four store keys, one Vault field), and one pod-bound token per pod and use (TokenRequest API, audience `iomete-secrets-broker`, 600 s). Stores synced, the Vault value cached and the webhook's API server connections opened by warm-up requests. Each row sends one request per pod from the same client, N callers each sending its next as soon as its answer is in, over one HTTP/2 connection opened beforehand (except the last row of each N); {} round(s), each row keeping its round with the lower p99.\n\n| callers | request | requests | p50 ms | p99 ms | mean ms | max ms | failures |\n|---:|---|---:|---:|---:|---:|---:|---|\n",
                self.pods, self.rounds
            ),
        );
        for level in &self.levels {
            for (label, measured) in level.rows() {
                let stats = &measured.stats;
                push(
                    out,
                    format_args!(
                        "| {} | {label} | {} | {:.2} | {:.2} | {:.2} | {:.2} | {} |\n",
                        level.concurrency,
                        stats.latencies.len() + stats.errors,
                        stats.quantile_ms(0.5),
                        stats.quantile_ms(0.99),
                        measured.mean_ms(),
                        stats.max_ms(),
                        failures(measured)
                    ),
                );
            }
        }
        out.push('\n');
        for level in &self.levels {
            let saved = level.fresh.stats.quantile_ms(0.5) - level.cached.stats.quantile_ms(0.5);
            push(
                out,
                format_args!(
                    "- {} caller(s): broker p99 / admission p99 **{:.2}** (target ≤ {P99_TARGET}); the cached TokenReview saves {saved:.2} ms at p50 when the same token asks again (a container restarted within the cached minute).\n",
                    level.concurrency,
                    level.p99_ratio()
                ),
            );
        }
        push(
            out,
            format_args!(
                "- Webhook memory after the phase: {:.1} MiB resident, {:.1} MiB peak.\n\n",
                self.memory.rss_kib as f64 / 1024.0,
                self.memory.peak_kib as f64 / 1024.0
            ),
        );
        let burst = &self.burst;
        push(
            out,
            format_args!(
                "**Burst.** {} pods whose lists reference one Vault secret no request had read (a fresh key, through the VaultConfig behind the {} ms proxy), one fresh token each, minted first; all requests sent at once over HTTP/2 (100 streams per connection). Reads and logins from OpenBao's audit log, lookups from the webhook's metric, sockets from `/proc`.\n\n| pods at once | wall time ms | p50 ms | p99 ms | served (200) | other answers | Vault reads of the secret | logins | cache lookups: miss / coalesced / hit | webhook's open sockets before / after |\n|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|\n| {} | {:.1} | {:.2} | {:.2} | {} | {} | {} | {} | {:.0} / {:.0} / {:.0} | {} / {} |\n\n",
                burst.size,
                crate::env::vault_delay().as_millis(),
                burst.size,
                burst.measured.stats.window.as_secs_f64() * 1e3,
                burst.measured.stats.quantile_ms(0.5),
                burst.measured.stats.quantile_ms(0.99),
                burst.measured.stats.latencies.len(),
                failures(&burst.measured),
                burst.reads_during,
                burst.logins_during,
                burst.lookups[0],
                burst.lookups[1],
                burst.lookups[2],
                burst.sockets.0,
                burst.sockets.1
            ),
        );
    }
}

/// The answers other than 200 as `N × status, …` (status 0: no answer); `none` without any.
fn failures(measured: &Measured) -> String {
    let listed: Vec<String> = measured
        .failures
        .iter()
        .map(|(status, count)| format!("{count} × {status}"))
        .collect();
    if listed.is_empty() {
        "none".to_owned()
    } else {
        listed.join(", ")
    }
}

fn yes(met: bool) -> &'static str {
    if met { "yes" } else { "**no**" }
}
