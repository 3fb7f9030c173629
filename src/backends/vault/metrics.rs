//! Vault metrics, labelled by configuration name (a set cluster administrators control) and by
//! bounded classes; never by path, key or namespace.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ConfigLabels {
    config: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClassLabels {
    config: String,
    class: &'static str,
}

fn new_histogram() -> Histogram {
    // 1 ms to ~16 s: a Vault read crosses the network.
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

/// Shared handles (clones update the same series).
#[derive(Clone)]
pub struct VaultMetrics {
    reads: Family<ConfigLabels, Counter>,
    lookups: Family<ClassLabels, Counter>,
    logins: Family<ConfigLabels, Counter>,
    errors: Family<ClassLabels, Counter>,
    latency: Family<ConfigLabels, Histogram, fn() -> Histogram>,
    ready: Family<ConfigLabels, Gauge>,
}

impl Default for VaultMetrics {
    fn default() -> Self {
        VaultMetrics {
            reads: Family::default(),
            lookups: Family::default(),
            logins: Family::default(),
            errors: Family::default(),
            latency: Family::new_with_constructor(new_histogram),
            ready: Family::default(),
        }
    }
}

impl VaultMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "vault_config_ready",
            "1 when the configuration's last connection check passed (its Ready condition), 0 when it failed; by configuration",
            self.ready.clone(),
        );
        registry.register(
            "vault_reads",
            "KV v2 reads sent to Vault, by configuration",
            self.reads.clone(),
        );
        registry.register(
            "vault_cache_lookups",
            "Vault value lookups by configuration and result (hit, miss, coalesced, stale, uncached)",
            self.lookups.clone(),
        );
        registry.register(
            "vault_logins",
            "Logins to Vault, by configuration",
            self.logins.clone(),
        );
        registry.register(
            "vault_errors",
            "Failed Vault lookups by configuration and class",
            self.errors.clone(),
        );
        registry.register(
            "vault_read_duration_seconds",
            "Time of KV v2 reads sent to Vault, by configuration",
            self.latency.clone(),
        );
    }

    pub fn read(&self, config: &str, elapsed: Duration) {
        let labels = ConfigLabels {
            config: config.to_owned(),
        };
        self.reads.get_or_create(&labels).inc();
        self.latency
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
    }

    pub fn lookup(&self, config: &str, result: &'static str) {
        self.lookups
            .get_or_create(&ClassLabels {
                config: config.to_owned(),
                class: result,
            })
            .inc();
    }

    pub fn logins(&self, config: &str, count: u64) {
        if count > 0 {
            self.logins
                .get_or_create(&ConfigLabels {
                    config: config.to_owned(),
                })
                .inc_by(count);
        }
    }

    pub fn error(&self, config: &str, class: &'static str) {
        self.errors
            .get_or_create(&ClassLabels {
                config: config.to_owned(),
                class,
            })
            .inc();
    }

    /// Records the outcome of a configuration's connection check (its Ready condition).
    pub fn ready(&self, config: &str, ready: bool) {
        self.ready
            .get_or_create(&ConfigLabels {
                config: config.to_owned(),
            })
            .set(i64::from(ready));
    }

    /// Drops the Ready series of a configuration that no longer exists.
    pub fn forget(&self, config: &str) {
        self.ready.remove(&ConfigLabels {
            config: config.to_owned(),
        });
    }
}
