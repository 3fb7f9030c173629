//! Faults of the real control plane while one webhook process keeps running (it is never
//! restarted here): kube-apiserver restarted over the same etcd; a partition between the
//! webhook and the API server while a namespace is relabelled and a store rotated; etcd
//! compacted behind the API server, so that resumed watches get 410 Gone. Throughout: no pod is
//! ever admitted on a stale scope decision, the webhook answers a retriable 503 while it cannot
//! know, and it recovers by itself.

use std::process::Output;
use std::time::{Duration, Instant};

use crate::control_plane::ControlPlane;
use crate::env::{Cluster, DedicatedSlot, Plane};
use crate::proxy::Proxy;
use crate::{container_env, fixture_pod, is_retriable, kubectl_apply, stderr, with_env_secrets};

const DRIVER: &str = "spark-kubernetes-driver";
const ENV: &str = "AWS_SECRET_ACCESS_KEY";
const NAMESPACE: &str = "faults-f1";

#[derive(Debug, PartialEq)]
enum Outcome {
    Admitted(Option<String>),
    /// The webhook's retriable 503.
    Retry,
    Forbidden,
    Other(String),
}

/// One attempt (no retry) to create a driver referencing `id`'s store.
fn attempt(cluster: &Cluster, name: &str, id: &str) -> Outcome {
    let pod = with_env_secrets(
        fixture_pod("spark/spark35-driver-pod.json", NAMESPACE, name),
        &[(ENV, "s3-secret-key", id)],
    );
    let output: Output = kubectl_apply(cluster, &pod, &[]);
    let message = stderr(&output);
    if output.status.success() {
        Outcome::Admitted(container_env(
            &cluster.stored_pod(NAMESPACE, name),
            DRIVER,
            ENV,
        ))
    } else if is_retriable(&message) {
        Outcome::Retry
    } else if message.contains("(Forbidden)") {
        Outcome::Forbidden
    } else {
        Outcome::Other(message)
    }
}

/// Attempts until `done`; every outcome before must be `allowed`. Returns the outcomes seen.
fn until(
    cluster: &Cluster,
    phase: &str,
    id: &str,
    allowed: &[Outcome],
    done: &Outcome,
) -> Vec<Outcome> {
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut seen = Vec::new();
    for n in 0.. {
        let outcome = attempt(cluster, &format!("{phase}-{n}"), id);
        if outcome == *done {
            seen.push(outcome);
            return seen;
        }
        assert!(
            allowed.contains(&outcome),
            "{phase}: {outcome:?} after {seen:?}"
        );
        seen.push(outcome);
        assert!(
            Instant::now() < deadline,
            "{phase}: no {done:?} in {seen:?}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    unreachable!()
}

fn admitted(value: &str) -> Outcome {
    Outcome::Admitted(Some(value.to_owned()))
}

fn relabel(cluster: &Cluster, domain: &str) {
    let label = format!("iomete.com/domain={domain}");
    cluster.plane.kubectl_ok(
        &["label", "namespace", NAMESPACE, &label, "--overwrite"],
        None,
    );
}

#[test]
fn api_server_restart_partition_and_compaction_without_a_webhook_restart() {
    let _one_at_a_time = DedicatedSlot::take();
    let Some(plane) = ControlPlane::start("api_server_restart_partition_and_compaction") else {
        return;
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let proxy = runtime.block_on(Proxy::start(plane.api_port()));
    let cluster = Cluster::on(Plane::Owned(plane), Some(proxy.url()));
    cluster.namespace(NAMESPACE, Some("finf1"));
    cluster.store("finf1", &[("s3-secret-key", "f1-finance-1")]);
    cluster.store("mktf1", &[("s3-secret-key", "f1-marketing-1")]);
    until(
        &cluster,
        "start",
        "finf1",
        &[Outcome::Retry],
        &admitted("f1-finance-1"),
    );
    let webhook = cluster.webhook_pid();

    // 1. kube-apiserver restarted over the same etcd; then a rotation made with kubectl.
    cluster.plane.restart_apiserver();
    cluster.store("finf1", &[("s3-secret-key", "f1-finance-2")]);
    until(
        &cluster,
        "restarted",
        "finf1",
        &[Outcome::Retry, admitted("f1-finance-1")],
        &admitted("f1-finance-2"),
    );

    // 2. Partition: the webhook loses the API server; once it answers 503 (it knows its
    // caches are stale), the namespace moves to marketing and the marketing store rotates.
    proxy.cut();
    until(
        &cluster,
        "cut",
        "finf1",
        &[admitted("f1-finance-2")],
        &Outcome::Retry,
    );
    relabel(&cluster, "mktf1");
    cluster.store("mktf1", &[("s3-secret-key", "f1-marketing-2")]);
    for n in 0..3 {
        // Never the finance value: the webhook cannot know the namespace moved.
        assert_eq!(
            attempt(&cluster, &format!("blind-{n}"), "finf1"),
            Outcome::Retry
        );
    }
    proxy.restore();
    until(
        &cluster,
        "restored",
        "finf1",
        &[Outcome::Retry],
        &Outcome::Forbidden,
    );
    assert_eq!(
        attempt(&cluster, "restored-mkt", "mktf1"),
        admitted("f1-marketing-2")
    );

    // 3. etcd compacted behind the API server; then the namespace moves back.
    let log_before = cluster.webhook_log().len();
    cluster.plane.compact_etcd_behind_the_api_server();
    relabel_when_possible(&cluster, "finf1");
    until(
        &cluster,
        "compacted",
        "finf1",
        &[Outcome::Retry, Outcome::Forbidden],
        &admitted("f1-finance-2"),
    );
    // The API server re-lists each resource on its own, so the Secrets watch may fail a moment
    // after the namespaces watch recovered: retriable 503s meanwhile, never an allow.
    until(
        &cluster,
        "compacted-mkt",
        "mktf1",
        &[Outcome::Retry],
        &Outcome::Forbidden,
    );
    // The webhook's watches failed after the compaction and were rebuilt from a fresh listing.
    // How they fail depends on timing: resumed from their last resourceVersion they get 410 Gone
    // ("too old resource version", the compacted history) once the API server's watch cache has
    // re-listed, 429 ("storage is (re)initializing") while it re-lists; or, resumed while etcd
    // was still away, a 5xx or a closed connection. Each is a failed watch, a stale cache and a
    // fresh LIST, which is what the decisions above show; a watch that silently resumed on
    // compacted history would log nothing here.
    assert_eq!(
        cluster.webhook_pid(),
        webhook,
        "the webhook process is the one started first"
    );
    let after = cluster.webhook_log()[log_before..].to_owned();
    let failures: Vec<&str> = after
        .lines()
        .filter(|line| line.contains("watch failed"))
        .collect();
    for line in &failures {
        eprintln!("after the compaction: {line}");
    }
    assert!(
        !failures.is_empty(),
        "the webhook's watches did not fail after the compaction:\n{after}"
    );
}

/// Relabels once the API server can write again (it may be re-listing from etcd).
fn relabel_when_possible(cluster: &Cluster, domain: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let label = format!("iomete.com/domain={domain}");
    loop {
        let output = cluster
            .plane
            .kubectl_output(
                &["label", "namespace", NAMESPACE, &label, "--overwrite"],
                None,
            )
            .unwrap();
        if output.status.success() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "relabel failed: {}",
            stderr(&output)
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}
