//! The opt-in in-cluster auditor (`serve --audit-pods`, off by default): every interval, the
//! `audit` classification of every pod in the cluster, against the webhook's own caches, as
//! gauges per namespace and as Events on the pods concerned.
//!
//! Gauges: `iomete_secrets_webhook_audit_pods_missing_injection{namespace}` and
//! `iomete_secrets_webhook_audit_pods_outdated{namespace}` (pods holding an older version of a
//! secret than the current one; "version unknown" is not counted). Events (type Warning,
//! reason `SecretsNotInjected` or `SecretVersionOutdated`) are rate-limited: at most one per pod
//! and reason every [`EVENT_REPEAT`], at most [`EVENTS_PER_ROUND`] per round. Messages name
//! references and version identifiers, never a value. Needs `list` on pods and `create` on
//! events cluster-wide: `deploy/audit-pods`, only for deployments that turn it on.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference, Pod as KubePod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{ListParams, ObjectMeta, PostParams};
use kube::{Api, Client};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::audit::{self, Current, Finding};
use crate::backends::{KubernetesCaches, VaultBackend};

/// One Event per pod and reason at most this often.
pub const EVENT_REPEAT: Duration = Duration::from_secs(3600);
/// At most this many Events per round, so a cluster-wide bypass cannot flood the API server.
pub const EVENTS_PER_ROUND: usize = 50;
/// The Event reasons.
pub const NOT_INJECTED: &str = "SecretsNotInjected";
pub const OUTDATED: &str = "SecretVersionOutdated";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NamespaceLabels {
    namespace: String,
}

/// The auditor's gauges, in a registry of their own (appended to `/metrics`).
pub struct AuditorMetrics {
    registry: Registry,
    missing: Family<NamespaceLabels, Gauge>,
    outdated: Family<NamespaceLabels, Gauge>,
}

impl Default for AuditorMetrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("iomete_secrets_webhook_audit");
        let missing = Family::<NamespaceLabels, Gauge>::default();
        let outdated = Family::<NamespaceLabels, Gauge>::default();
        registry.register(
            "pods_missing_injection",
            "Pods that reference secrets but were created without them, per namespace",
            missing.clone(),
        );
        registry.register(
            "pods_outdated",
            "Pods holding an older version of a secret than the current one, per namespace",
            outdated.clone(),
        );
        AuditorMetrics {
            registry,
            missing,
            outdated,
        }
    }
}

impl AuditorMetrics {
    /// Inserts these series into an OpenMetrics `text` rendered by the webhook's metrics,
    /// before its `# EOF`.
    pub fn append_to(&self, text: &mut String) {
        let mut own = String::new();
        if prometheus_client::encoding::text::encode_registry(&mut own, &self.registry).is_err() {
            return;
        }
        match text.rfind("# EOF") {
            Some(at) => text.insert_str(at, &own),
            None => text.push_str(&own),
        }
    }

    fn set(&self, counts: &BTreeMap<String, (i64, i64)>) {
        self.missing.clear();
        self.outdated.clear();
        for (namespace, (missing, outdated)) in counts {
            let labels = NamespaceLabels {
                namespace: namespace.clone(),
            };
            self.missing.get_or_create(&labels).set(*missing);
            self.outdated.get_or_create(&labels).set(*outdated);
        }
    }
}

/// Which pods were told what, and when.
#[derive(Default)]
pub struct EventLimiter {
    told: Mutex<HashMap<(String, &'static str), Instant>>,
}

impl EventLimiter {
    /// Whether an Event with `reason` may be sent for pod `uid` now (and records it).
    pub fn allow(&self, uid: &str, reason: &'static str, now: Instant) -> bool {
        let mut told = self.told.lock().unwrap_or_else(|p| p.into_inner());
        told.retain(|_, at| now.duration_since(*at) < EVENT_REPEAT);
        if told.contains_key(&(uid.to_owned(), reason)) {
            return false;
        }
        told.insert((uid.to_owned(), reason), now);
        true
    }
}

/// Audits every `interval` until the process stops.
pub async fn run(
    client: Client,
    caches: KubernetesCaches,
    vault: VaultBackend,
    metrics: std::sync::Arc<AuditorMetrics>,
    interval: Duration,
) {
    let limiter = EventLimiter::default();
    loop {
        caches.until_fresh().await;
        if let Err(error) = round(&client, &caches, &vault, &metrics, &limiter).await {
            tracing::warn!(%error, "pod audit failed; retrying next interval");
        }
        tokio::time::sleep(interval).await;
    }
}

async fn round(
    client: &Client,
    caches: &KubernetesCaches,
    vault: &VaultBackend,
    metrics: &AuditorMetrics,
    limiter: &EventLimiter,
) -> Result<(), kube::Error> {
    let pods = Api::<KubePod>::all(client.clone())
        .list(&ListParams::default())
        .await?
        .items;
    let read: Vec<(&KubePod, crate::decision::pod::Pod)> = pods
        .iter()
        .filter_map(|pod| Some((pod, audit::decision_pod(pod)?)))
        .collect();
    let decisions: Vec<_> = read.iter().map(|(_, decision)| decision).collect();
    let current = audit::current_versions(caches, vault, &decisions).await;
    let lookup = |reference: &str| {
        current
            .get(reference)
            .cloned()
            .unwrap_or(Current::Unknown("not read".into()))
    };
    let mut counts: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    let mut sent = 0;
    for (pod, decision) in &read {
        let findings = audit::classify(decision, &lookup);
        let namespace = pod.metadata.namespace.clone().unwrap_or_default();
        let entry = counts.entry(namespace).or_default();
        let missed: Vec<&Finding> = findings
            .iter()
            .filter(|f| matches!(f, Finding::MissedInjection { .. }))
            .collect();
        let outdated: Vec<&Finding> = findings
            .iter()
            .filter(|f| matches!(f, Finding::Outdated { .. }))
            .collect();
        entry.0 += i64::from(!missed.is_empty());
        entry.1 += i64::from(!outdated.is_empty());
        for (reason, told) in [(NOT_INJECTED, &missed), (OUTDATED, &outdated)] {
            let uid = pod.metadata.uid.as_deref().unwrap_or_default();
            if told.is_empty()
                || sent >= EVENTS_PER_ROUND
                || !limiter.allow(uid, reason, Instant::now())
            {
                continue;
            }
            sent += 1;
            if let Err(error) = send_event(client, pod, reason, &message(told)).await {
                tracing::warn!(%error, reason, "cannot create the audit Event");
            }
        }
    }
    metrics.set(&counts);
    Ok(())
}

/// What an Event says: the findings, never a value.
pub fn message(findings: &[&Finding]) -> String {
    findings
        .iter()
        .map(|finding| match finding {
            Finding::MissedInjection { reason } => {
                format!(
                    "created without its secrets (the webhook was bypassed): {reason}; recreate it"
                )
            }
            Finding::Outdated {
                reference,
                recorded,
                current,
            } => format!("holds {reference} version {recorded}, current {current}; redeploy it"),
            Finding::VersionUnknown { reference, why } => format!("{reference}: {why}"),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

async fn send_event(
    client: &Client,
    pod: &KubePod,
    reason: &'static str,
    message: &str,
) -> Result<(), kube::Error> {
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let name = pod.metadata.name.clone().unwrap_or_default();
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let event = Event {
        metadata: ObjectMeta {
            generate_name: Some(format!("{name}.")),
            namespace: Some(namespace.clone()),
            ..ObjectMeta::default()
        },
        involved_object: ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Pod".into()),
            name: Some(name),
            namespace: Some(namespace.clone()),
            uid: pod.metadata.uid.clone(),
            ..ObjectReference::default()
        },
        reason: Some(reason.into()),
        message: Some(message.chars().take(1024).collect()),
        type_: Some("Warning".into()),
        count: Some(1),
        first_timestamp: Some(now.clone()),
        last_timestamp: Some(now),
        source: Some(EventSource {
            component: Some("iomete-secrets-webhook".into()),
            ..EventSource::default()
        }),
        reporting_component: Some("iomete-secrets-webhook".into()),
        ..Event::default()
    };
    Api::<Event>::namespaced(client.clone(), &namespace)
        .create(&PostParams::default(), &event)
        .await
        .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_limited_per_pod_and_reason() {
        let limiter = EventLimiter::default();
        let start = Instant::now();
        assert!(limiter.allow("u1", NOT_INJECTED, start));
        assert!(!limiter.allow("u1", NOT_INJECTED, start + Duration::from_secs(60)));
        assert!(limiter.allow("u1", OUTDATED, start));
        assert!(limiter.allow("u2", NOT_INJECTED, start));
        assert!(limiter.allow("u1", NOT_INJECTED, start + EVENT_REPEAT));
    }

    #[test]
    fn gauges_are_inserted_before_the_end_marker() {
        let metrics = AuditorMetrics::default();
        metrics.set(&BTreeMap::from([("ns-a".to_owned(), (2, 1))]));
        let mut text = "# HELP x y\nx 1\n# EOF\n".to_owned();
        metrics.append_to(&mut text);
        assert!(text.ends_with("# EOF\n"), "{text}");
        assert_eq!(text.matches("# EOF").count(), 1, "{text}");
        assert!(
            text.contains(
                "iomete_secrets_webhook_audit_pods_missing_injection{namespace=\"ns-a\"} 2"
            ),
            "{text}"
        );
        assert!(
            text.contains("iomete_secrets_webhook_audit_pods_outdated{namespace=\"ns-a\"} 1"),
            "{text}"
        );
    }
}
