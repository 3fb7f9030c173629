//! Store updates during a burst: many admissions reading one store while it is rewritten, and
//! what versions of it their answers carry.

use super::*;

/// Keys of the burst store; each version of the store holds one value per key.
pub(super) const BURST_KEYS: [&str; 4] = ["k0", "k1", "k2", "k3"];

pub(super) fn burst_value(version: usize, key: &str) -> String {
    format!("e2e-canary-burst-v{version}-{key}")
}

pub(super) async fn apply_burst_version(api: &Api, version: usize) {
    let values: Vec<String> = BURST_KEYS
        .iter()
        .map(|key| burst_value(version, key))
        .collect();
    let data: Vec<(&str, &[u8])> = BURST_KEYS
        .iter()
        .zip(&values)
        .map(|(key, value)| (*key, value.as_bytes()))
        .collect();
    api.admin
        .apply_secret(api.store(), "iomete-secret-store-burst", &data)
        .await;
}

/// What a burst during store updates saw.
pub(super) struct BurstReport {
    pub(super) answers: usize,
    versions_written: usize,
    pub(super) versions_seen: usize,
    /// Answers whose values came from more than one version of the store.
    pub(super) mixed: Vec<Vec<String>>,
}

/// `admissions` pods, 32 at a time over four HTTP/2 connections, each taking all four keys of
/// one store, while the store is rewritten as fast as the API server takes it (one write at a
/// time, 1 ms apart) with a new version of every key.
/// Every answer must carry values that were stored; the report says how many mixed versions.
pub(super) async fn store_burst_scenario(
    harness: &Harness,
    admissions: usize,
    transcript: &mut Transcript,
) -> BurstReport {
    let entries: Vec<(&str, &str, &str)> =
        BURST_KEYS.iter().map(|key| (*key, *key, "burst")).collect();
    let pod = with_env_secrets(fixture("spark/spark35-driver-pod.json"), &entries);
    let review = review_of(pod, &harness.ns("burst-jobs"), "burst");
    let body = serde_json::to_vec(&review).unwrap();
    let clients: Vec<reqwest::Client> = (0..4)
        .map(|_| tls_client(&certs_of(&harness.webhook), true))
        .collect();
    let done = std::sync::atomic::AtomicBool::new(false);
    let written = AtomicUsize::new(0);
    let writer = async {
        let mut version = 0;
        while !done.load(Ordering::Relaxed) {
            version += 1;
            apply_burst_version(&harness.apiserver, version).await;
            written.store(version, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    };
    let started = Instant::now();
    let burst = async {
        let replies: Vec<Reply> = futures::stream::iter(0..admissions)
            .map(|i| {
                post(
                    &clients[i % 4],
                    harness.webhook.port,
                    "/mutate",
                    body.clone(),
                    Some("application/json"),
                )
            })
            .buffer_unordered(32)
            .collect()
            .await;
        done.store(true, Ordering::Relaxed);
        replies
    };
    let (replies, ()) = tokio::join!(burst, writer);
    let elapsed = started.elapsed();
    let versions_written = written.load(Ordering::Relaxed);
    let mut versions_seen = std::collections::BTreeSet::new();
    let mut mixed = Vec::new();
    for reply in &replies {
        transcript.saw_reply(reply);
        let answer = reply.json();
        assert_eq!(answer["response"]["allowed"], true, "{}", reply.body);
        let pod = crate::support::patched_object(&review, &answer);
        let mut versions = std::collections::BTreeSet::new();
        for key in BURST_KEYS {
            let value = container_env(&pod, 0, key).unwrap();
            let version: usize = value
                .strip_prefix("e2e-canary-burst-v")
                .and_then(|rest| rest.strip_suffix(&format!("-{key}")))
                .and_then(|version| version.parse().ok())
                .unwrap_or_else(|| panic!("{key} got a value never stored"));
            assert!(
                version <= versions_written,
                "{key} got a value never stored"
            );
            versions.insert(version);
        }
        versions_seen.extend(versions.iter().copied());
        if versions.len() > 1 {
            mixed.push(versions.iter().map(|v| format!("v{v}")).collect());
        }
    }
    let report = BurstReport {
        answers: replies.len(),
        versions_written,
        versions_seen: versions_seen.len(),
        mixed,
    };
    transcript.row(
        format!("{admissions} pods taking 4 keys of one store, 32 at a time, store rewritten back to back"),
        format!(
            "all allowed with stored values; {} versions written, {} seen; {} answers mixed two versions",
            report.versions_written,
            report.versions_seen,
            report.mixed.len()
        ),
        Some(elapsed),
    );
    report
}
