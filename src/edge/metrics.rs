//! The webhook's Prometheus metrics: admissions by outcome and denial kind, their latency, the
//! broker's requests by outcome and their latency, the cache sizes, the serving certificate's expiry and, through [`VaultMetrics`], the Vault
//! backend's series.
//!
//! Every label is bounded (outcomes, denial kinds, configuration names; never namespaces, pods
//! or keys). Cache sizes are read at scrape time, so they cannot drift.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::admission::Outcome;
use crate::backends::kubernetes::StoreSizes;
use crate::backends::vault::metrics::VaultMetrics;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CacheLabels {
    cache: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DenialLabels {
    reason: &'static str,
    code: u16,
}

/// The webhook's metrics.
pub struct Metrics {
    registry: Registry,
    requests: Family<OutcomeLabels, Counter>,
    denials: Family<DenialLabels, Counter>,
    latency: Histogram,
    broker_requests: Family<OutcomeLabels, Counter>,
    broker_latency: Histogram,
    stores: Gauge,
    store_keys: Gauge,
    namespaces: Gauge,
    cache_fresh: Family<CacheLabels, Gauge>,
    vault: VaultMetrics,
}

/// What is read from the caches at scrape time.
#[derive(Debug, Clone, Copy, Default)]
pub struct CacheState {
    pub sizes: StoreSizes,
    /// Whether the store and namespace caches are fresh (listed, watches not failed since).
    pub kubernetes_fresh: bool,
    /// Whether the VaultConfig cache is fresh.
    pub vault_configs_fresh: bool,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("iomete_secrets_webhook");
        let requests = Family::<OutcomeLabels, Counter>::default();
        let denials = Family::<DenialLabels, Counter>::default();
        // 50 µs to ~6.5 s: sub-millisecond answers are the norm, seconds mean trouble.
        let latency = Histogram::new(exponential_buckets(0.000_05, 2.0, 18));
        let broker_requests = Family::<OutcomeLabels, Counter>::default();
        let broker_latency = Histogram::new(exponential_buckets(0.000_05, 2.0, 18));
        let stores = Gauge::default();
        let store_keys = Gauge::default();
        let namespaces = Gauge::default();
        registry.register(
            "admission_requests",
            "Admission requests answered, by outcome",
            requests.clone(),
        );
        registry.register(
            "admission_denials",
            "Admission requests denied, by reason",
            denials.clone(),
        );
        registry.register(
            "admission_duration_seconds",
            "Time to answer an admission request",
            latency.clone(),
        );
        registry.register(
            "broker_requests",
            "Broker requests (iomete-env at container start) answered, by outcome: served or the refusal's kind",
            broker_requests.clone(),
        );
        registry.register(
            "broker_duration_seconds",
            "Time to answer a broker request",
            broker_latency.clone(),
        );
        registry.register(
            "secret_stores",
            "Kubernetes secret stores in the cache",
            stores.clone(),
        );
        registry.register(
            "secret_store_keys",
            "Keys across all cached Kubernetes secret stores",
            store_keys.clone(),
        );
        registry.register(
            "namespaces",
            "Namespaces in the scope cache",
            namespaces.clone(),
        );
        let cache_fresh = Family::<CacheLabels, Gauge>::default();
        registry.register(
            "cache_fresh",
            "1 while a cache holds a complete listing and its watch has not failed since, by cache (kubernetes: stores and namespaces; vault_configs)",
            cache_fresh.clone(),
        );
        let vault = VaultMetrics::default();
        vault.register(&mut registry);
        Metrics {
            vault,
            registry,
            requests,
            denials,
            latency,
            broker_requests,
            broker_latency,
            stores,
            store_keys,
            namespaces,
            cache_fresh,
        }
    }

    /// Records one answered admission.
    pub fn observe(&self, outcome: &Outcome, elapsed: Duration) {
        self.requests
            .get_or_create(&OutcomeLabels {
                outcome: outcome.label(),
            })
            .inc();
        if let Outcome::Denied(kind) = outcome {
            self.denials
                .get_or_create(&DenialLabels {
                    reason: kind.label,
                    code: kind.code,
                })
                .inc();
        }
        self.latency.observe(elapsed.as_secs_f64());
    }

    /// Records one answered broker request; `outcome` is `served` or a refusal's label (a
    /// bounded set, see `broker::refusal`).
    pub fn observe_broker(&self, outcome: &'static str, elapsed: Duration) {
        self.broker_requests
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
        self.broker_latency.observe(elapsed.as_secs_f64());
    }

    /// Exports `expiry`, the serving certificate's `notAfter` in Unix seconds, which the TLS
    /// reloader keeps current (`serving_certificate_expiry_timestamp_seconds`).
    pub fn register_serving_certificate_expiry(&mut self, expiry: Gauge) {
        self.registry.register(
            "serving_certificate_expiry_timestamp_seconds",
            "When the serving certificate in use expires, in Unix seconds (0: unreadable)",
            expiry,
        );
    }

    /// Handles the Vault backend records into (clones share the series).
    pub fn vault(&self) -> VaultMetrics {
        self.vault.clone()
    }

    /// Renders the Prometheus text exposition with the caches as they are now.
    pub fn render(&self, caches: CacheState) -> String {
        let sizes = caches.sizes;
        for (cache, fresh) in [
            ("kubernetes", caches.kubernetes_fresh),
            ("vault_configs", caches.vault_configs_fresh),
        ] {
            self.cache_fresh
                .get_or_create(&CacheLabels { cache })
                .set(i64::from(fresh));
        }
        self.stores.set(sizes.stores as i64);
        self.store_keys.set(sizes.keys as i64);
        self.namespaces.set(sizes.namespaces as i64);
        let mut text = String::new();
        if let Err(error) = prometheus_client::encoding::text::encode(&mut text, &self.registry) {
            tracing::error!(%error, "cannot encode metrics");
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_serving_certificate_expiry_is_exported() {
        let mut metrics = Metrics::new();
        let expiry = Gauge::default();
        metrics.register_serving_certificate_expiry(expiry.clone());
        expiry.set(1_936_742_400);
        let text = metrics.render(CacheState::default());
        assert!(
            text.contains(
                "\n# TYPE iomete_secrets_webhook_serving_certificate_expiry_timestamp_seconds gauge\n"
            ) && text
                .contains("\niomete_secrets_webhook_serving_certificate_expiry_timestamp_seconds 1936742400\n"),
            "{text}"
        );
    }

    #[test]
    fn broker_requests_are_counted_by_outcome() {
        let metrics = Metrics::new();
        metrics.observe_broker("served", Duration::from_millis(3));
        metrics.observe_broker("rate_limited", Duration::from_millis(1));
        let text = metrics.render(CacheState::default());
        assert!(
            text.contains("\niomete_secrets_webhook_broker_requests_total{outcome=\"served\"} 1\n")
                && text.contains(
                    "\niomete_secrets_webhook_broker_requests_total{outcome=\"rate_limited\"} 1\n"
                )
                && text.contains("\niomete_secrets_webhook_broker_duration_seconds_count 2\n"),
            "{text}"
        );
    }

    #[test]
    fn cache_freshness_is_exported_per_cache() {
        let metrics = Metrics::new();
        let text = metrics.render(CacheState {
            kubernetes_fresh: true,
            ..CacheState::default()
        });
        assert!(
            text.contains("\niomete_secrets_webhook_cache_fresh{cache=\"kubernetes\"} 1\n")
                && text
                    .contains("\niomete_secrets_webhook_cache_fresh{cache=\"vault_configs\"} 0\n"),
            "{text}"
        );
    }

    #[test]
    fn vault_config_readiness_is_exported_and_forgotten_with_the_configuration() {
        let metrics = Metrics::new();
        metrics.vault().ready("vault-prod", false);
        let text = metrics.render(CacheState::default());
        assert!(
            text.contains("\niomete_secrets_webhook_vault_config_ready{config=\"vault-prod\"} 0\n"),
            "{text}"
        );
        metrics.vault().forget("vault-prod");
        let text = metrics.render(CacheState::default());
        assert!(!text.contains("vault-prod"), "{text}");
    }
}
