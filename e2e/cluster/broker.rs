//! The broker on the real API server: the webhook binary serving `POST /v1/env` on its own
//! TLS listener (with `--client-ca` set, which the broker must ignore), answering pods with
//! tokens the API server minted for them (`kubectl create token --bound-object-kind Pod`),
//! reviewing them with the shipped RBAC and reading the pods it serves.
//!
//! The pods are written by hand, as broker-mode admission would write them (the reference list
//! in `IOMETE_ENV_REFERENCES`), and carry the label the webhook's registration excludes, so
//! admission leaves them alone. Nothing runs them: the test plays `iomete-env`.

pub mod harness;

use iomete_secrets_webhook::decision::delivery::{BROKER_AUDIENCE, ENV_REFERENCES};
use iomete_secrets_webhook::decision::reference::{
    EnvSecret, KubernetesStore, SparkConfSecret, write_reference_list,
};
use serde_json::{Value, json};

use crate::control_plane;
use crate::env::{CANARY_GLOBAL, Cluster};
use harness::{Broker, kubernetes, listed, namespace, one_entry, pod, pod_with, token};

#[track_caller]
fn assert_refused(answer: &(u16, Value), status: u16, mentions: &str) {
    let (got, body) = answer;
    assert_eq!(*got, status, "{body}");
    let error = body["error"].as_str().unwrap_or_default();
    assert!(error.contains(mentions), "{error}");
    assert_eq!(
        body["retriable"],
        json!(matches!(status, 429 | 503)),
        "{body}"
    );
}

const CANARY_A: &str = "broker-canary-a-71f3";
const CANARY_B: &str = "broker-canary-b-0c2e";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_serves_a_pods_own_container_and_refuses_everyone_else() {
    let Some(cluster) = Cluster::shared("broker_serves_a_pods_own_container") else {
        return;
    };
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (ns_a, ns_b) = ("broker-a", "broker-b");
    namespace(cluster, ns_a, "bra");
    namespace(cluster, ns_b, "brb");
    cluster.store("bra", &[("db-password", CANARY_A)]);
    cluster.store("brb", &[("db-password", CANARY_B)]);

    // The pod broker-mode admission would have written: its list from the library's writer.
    let list = write_reference_list(
        &[
            EnvSecret {
                env_name: "DB_PASSWORD".into(),
                secret: kubernetes(KubernetesStore::Domain("bra".into()), "db-password"),
            },
            EnvSecret {
                env_name: "SMTP_PASSWORD".into(),
                secret: kubernetes(KubernetesStore::Global, "smtp_password"),
            },
        ],
        &[SparkConfSecret {
            property: "spark.db.password".into(),
            secret: kubernetes(KubernetesStore::Domain("bra".into()), "db-password"),
        }],
    );
    let app_uid = pod(
        cluster,
        ns_a,
        "app",
        &[("main", listed(&list)), ("sidecar", json!([]))],
    );
    let plain_uid = pod(cluster, ns_a, "plain", &[("main", json!([]))]);
    let from_uid = pod(
        cluster,
        ns_a,
        "from",
        &[(
            "main",
            json!([{"name": ENV_REFERENCES,
        "valueFrom": {"fieldRef": {"fieldPath": "metadata.annotations['list']"}}}]),
        )],
    );
    let admin_uid = pod(
        cluster,
        ns_a,
        "wants-admin",
        &[("main", listed(&one_entry("X", "admin", "x")))],
    );
    let loader_uid = pod(
        cluster,
        ns_a,
        "loader",
        &[(
            "main",
            listed(&one_entry("LD_PRELOAD", "bra", "db-password")),
        )],
    );
    let other_uid = pod(
        cluster,
        ns_b,
        "other-domain",
        &[("main", listed(&one_entry("DB", "bra", "db-password")))],
    );
    let broker = Broker::start(cluster, "broker-serves");

    // The right pod's container gets exactly the store's values.
    let app = token(cluster, ns_a, "app", &app_uid, Some(BROKER_AUDIENCE));
    let (status, answer) = broker.env(Some(&app), "main").await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer,
        json!({
            "env": [{"name": "DB_PASSWORD", "value": CANARY_A}, {"name": "SMTP_PASSWORD", "value": CANARY_GLOBAL}],
            "sparkConf": [{"property": "spark.db.password", "value": CANARY_A}],
        })
    );
    // Its container without a list, one it does not have, no token, a malformed request.
    assert_refused(
        &broker.env(Some(&app), "sidecar").await,
        403,
        "not in broker mode",
    );
    assert_refused(&broker.env(Some(&app), "ghost").await, 404, "\"ghost\"");
    assert_refused(&broker.env(None, "main").await, 401, "no bearer token");
    let extra = json!({"container": "main", "pod": "other"}).to_string();
    assert_refused(&broker.post(Some(&app), extra).await, 400, "unknown field");

    // A token for another audience, and a token bound to another pod: that pod's lists only.
    let wrong_audience = token(cluster, ns_a, "app", &app_uid, None);
    assert_refused(
        &broker.env(Some(&wrong_audience), "main").await,
        401,
        "not accepted",
    );
    let plain = token(cluster, ns_a, "plain", &plain_uid, Some(BROKER_AUDIENCE));
    assert_refused(&broker.env(Some(&plain), "main").await, 403, "\"plain\"");
    assert_refused(&broker.env(Some(&plain), "sidecar").await, 404, "\"plain\"");
    let from = token(cluster, ns_a, "from", &from_uid, Some(BROKER_AUDIENCE));
    assert_refused(
        &broker.env(Some(&from), "main").await,
        403,
        "not in broker mode",
    );

    // Lists edited into a spec by hand are held to the namespace's scope and the denied names.
    let admin = token(
        cluster,
        ns_a,
        "wants-admin",
        &admin_uid,
        Some(BROKER_AUDIENCE),
    );
    assert_refused(&broker.env(Some(&admin), "main").await, 403, "admin");
    let loader = token(cluster, ns_a, "loader", &loader_uid, Some(BROKER_AUDIENCE));
    assert_refused(&broker.env(Some(&loader), "main").await, 403, "LD_PRELOAD");
    let other = token(
        cluster,
        ns_b,
        "other-domain",
        &other_uid,
        Some(BROKER_AUDIENCE),
    );
    assert_refused(&broker.env(Some(&other), "main").await, 403, "brb");

    let metrics = control_plane::http_get(broker.admin_port, "/metrics").unwrap_or_default();
    assert!(
        metrics.contains("iomete_secrets_webhook_broker_requests_total{outcome=\"served\"} 1"),
        "{metrics}"
    );
    let log = broker.log();
    assert!(
        log.contains("\"message\":\"broker\"")
            && log.contains("DB_PASSWORD <- KUBERNETES/bra/db-password"),
        "{log}"
    );
    for secret in [CANARY_A, CANARY_B, CANARY_GLOBAL, &app, &plain, &admin] {
        assert!(
            !log.contains(secret),
            "the log leaks a value or a token:\n{log}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_refuses_pods_that_are_gone_or_going_and_rate_limits_each_pod() {
    let Some(cluster) = Cluster::shared("broker_refuses_pods_that_are_gone") else {
        return;
    };
    let _ = rustls::crypto::ring::default_provider().install_default();
    let ns = "broker-c";
    namespace(cluster, ns, "brc");
    cluster.store("brc", &[("key", "broker-canary-c-5a90")]);
    let list = one_entry("VALUE", "brc", "key");
    let gone_uid = pod(cluster, ns, "gone", &[("main", listed(&list))]);
    // A finalizer keeps this one, with a deletionTimestamp, once deleted; removed at the end,
    // even when the test fails.
    let finalizer = json!({"finalizers": ["iomete.com/broker-test"]});
    let going_uid = pod_with(cluster, ns, "going", &[("main", listed(&list))], finalizer);
    struct Unfinalize<'c>(&'c Cluster);
    impl Drop for Unfinalize<'_> {
        fn drop(&mut self) {
            let patch = r#"{"metadata":{"finalizers":null}}"#;
            let _ = self.0.plane.kubectl_output(
                &[
                    "patch",
                    "pod",
                    "going",
                    "-n",
                    "broker-c",
                    "--type=merge",
                    "-p",
                    patch,
                ],
                None,
            );
        }
    }
    let _unfinalize = Unfinalize(cluster);
    let busy_uid = pod(cluster, ns, "busy", &[("main", listed(&list))]);
    let broker = Broker::start(cluster, "broker-gone");

    let gone = token(cluster, ns, "gone", &gone_uid, Some(BROKER_AUDIENCE));
    let going = token(cluster, ns, "going", &going_uid, Some(BROKER_AUDIENCE));
    assert_eq!(broker.env(Some(&gone), "main").await.0, 200);
    assert_eq!(broker.env(Some(&going), "main").await.0, 200);
    // Unscheduled, "gone" is removed at once; "going" stays, being deleted. Their reviews are
    // cached, so it is the broker's own read of the pod that refuses them.
    cluster
        .plane
        .kubectl_ok(&["delete", "pod", "gone", "-n", ns, "--wait=true"], None);
    cluster
        .plane
        .kubectl_ok(&["delete", "pod", "going", "-n", ns, "--wait=false"], None);
    assert_refused(
        &broker.env(Some(&gone), "main").await,
        409,
        "no longer exists",
    );
    assert_refused(
        &broker.env(Some(&going), "main").await,
        409,
        "being deleted",
    );

    // Ten at once, then one a second: a quick burst past ten is refused, retriable (however
    // slow the machine, fifteen requests take less than the five seconds that would refill
    // five more).
    let busy = token(cluster, ns, "busy", &busy_uid, Some(BROKER_AUDIENCE));
    let mut statuses = Vec::new();
    for _ in 0..15 {
        let (status, answer) = broker.env(Some(&busy), "main").await;
        if status == 429 {
            assert_refused(&(status, answer), 429, "too often");
        }
        statuses.push(status);
    }
    assert_eq!(&statuses[..10], &[200; 10], "{statuses:?}");
    assert!(statuses[10..].contains(&429), "{statuses:?}");
    // Other pods have buckets of their own.
    assert_refused(
        &broker.env(Some(&going), "main").await,
        409,
        "being deleted",
    );
}
