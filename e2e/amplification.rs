//! Small pods that used to cost the webhook large answers, memory and log lines (the second
//! red-team round): the compiled binary, its peak RSS and everything it printed, measured.

use serde_json::{Value, json};

use super::hostile::{admit, memory_kib};
use super::{Webhook, certs_of, review_of, seeded_api_server, tls_client};

/// The deployment's memory limit (deploy/base/deployment.yaml).
const DEPLOYED_MEMORY_LIMIT_KIB: u64 = 128 << 10;
/// The longest log line one admission may write, however many references its pod has.
const LOG_LINE_BOUND: usize = 8 << 10;

/// A pod of `containers` containers, each reference `V{i}` asking for `key` of the finance store.
fn wide_pod(name: &str, containers: usize, references: usize, key: &str) -> Value {
    let entries: Vec<Value> = (0..references)
        .map(|i| json!({"key": format!("V{i}"), "secretObject": {"key": key, "source": {"type": "KUBERNETES", "id": "finance"}}}))
        .collect();
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "annotations": {"secrets.iomete.com/env-secrets": Value::Array(entries).to_string()},
        },
        "spec": {
            "containers": (0..containers).map(|i| json!({"name": format!("c{i}"), "image": "busybox"})).collect::<Vec<_>>(),
        },
    })
}

/// Three of the red team's 34 KB pods at once (200 containers × 256 references: 10.5 MB answers
/// and about 550 MB of RSS before), a pod at the cap whose key is missing (a 17 MB log line
/// before), and one env value with 5,000 legacy placeholders: each refused with a clear answer,
/// the process well under its memory limit, every log line short.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_pods_cannot_buy_large_answers_memory_or_log_lines() {
    let Some(api) =
        seeded_api_server("small_pods_cannot_buy_large_answers_memory_or_log_lines").await
    else {
        return;
    };
    let mut webhook = Webhook::start(&api, &[]).await;
    webhook.wait_ready().await;
    let pid = webhook.child.id();
    let ca = certs_of(&webhook);
    let clients: Vec<reqwest::Client> = (0..5).map(|_| tls_client(&ca, true)).collect();

    let red_team = wide_pod("red-team", 200, 256, "s3-secret-key");
    assert!(red_team.to_string().len() < 40_000);
    let missing_key = wide_pod("missing-key", 128, 8, "no-such-key");
    let mut placeholders = wide_pod("placeholders", 1, 0, "s3-secret-key");
    placeholders["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("annotations");
    placeholders["spec"]["containers"][0]["env"] =
        json!([{"name": "URL", "value": "${secrets.smtp_password}".repeat(5_000)}]);
    let reviews = [
        review_of(red_team.clone(), "spark-jobs", "red-1"),
        review_of(red_team.clone(), "spark-jobs", "red-2"),
        review_of(red_team, "spark-jobs", "red-3"),
        review_of(missing_key, "spark-jobs", "missing"),
        review_of(placeholders, "spark-jobs", "placeholders"),
    ];
    let replies = futures::future::join_all(
        clients
            .iter()
            .zip(&reviews)
            .map(|(client, review)| admit(&webhook, client, review)),
    )
    .await;
    let peak = memory_kib(pid, "VmHWM");
    let (status, output) = webhook.stop();
    assert!(status.success(), "exit {status}: {output}");

    for (reply, want) in replies.iter().zip([400, 400, 400, 404, 400]) {
        assert_eq!(reply.allowed(), Some(false), "{}", reply.summary());
        assert_eq!(reply.code(), Some(want), "{}", reply.summary());
        assert!(reply.body.len() < 4096, "{}", reply.summary());
    }
    assert!(replies[0].message().contains("more than the 1024 allowed"));
    assert!(
        peak < DEPLOYED_MEMORY_LIMIT_KIB / 2,
        "peak RSS {} MiB",
        peak >> 10
    );
    let admissions: Vec<&str> = output
        .lines()
        .filter(|line| line.contains("\"message\":\"admission\""))
        .collect();
    assert_eq!(admissions.len(), reviews.len(), "{output}");
    for line in admissions {
        assert!(
            line.len() < LOG_LINE_BOUND,
            "{} bytes: {line:.300}",
            line.len()
        );
    }
}
