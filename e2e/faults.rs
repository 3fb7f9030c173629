//! Faults around the compiled binary, and the leak audit.
//!
//! The API server side, a real kube-apiserver and etcd (see `api.rs`): its address accepting
//! and closing connections at start (down behind a load balancer), every connection cut
//! mid-watch, and etcd compacted behind the API server while changes it never saw were written
//! (the webhook's resumed watches get 410 Gone, or 429 while the API server re-lists); the
//! binary reaches the API server through a [`TcpProxy`], which forwards, delays, cuts or
//! refuses. The Vault side: OpenBao behind a delaying [`TcpProxy`], and [`BadVault`], a tiny
//! HTTP server answering 500s, garbage, truncated or endless bodies, resets, silence and a
//! redirect. And a burst of admissions while a store is rewritten.
//!
//! Each scenario is a function the fault tests run alone and the leak audit
//! (`leak_audit_every_scenario_with_canaries_at_debug_level`) runs all together
//! with the hostile-input scenarios of `hostile.rs`, on one binary at debug log level with
//! canary values, scanning everything it printed, its metrics, its answers and the VaultConfig
//! statuses it wrote. The scenarios that compact etcd run on a control plane of their test's
//! own; the others share this binary's.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use super::{
    Webhook, assert_no_canary, certs, certs_of, container_env, local_names, review_of, tls_client,
    with_env_secrets,
};
use crate::api::Api;
use crate::hostile::{
    ANSWER_BOUND, Bystander, Reply, Transcript, admit, hostile_bodies, memory_kib, post,
    slow_and_idle_clients,
};
use crate::proxy::{Link, TcpProxy};
use crate::support::fixture;
use crate::support::openbao::OpenBao;

mod api_server;
mod burst;
mod vault;
use api_server::*;
use burst::*;
use vault::*;

/// Flags every fault test runs the binary with: a short admission budget so that a slow Vault
/// is given up on quickly, and no Vault cache so that every Vault pod reaches Vault.
const FLAGS: [&str; 6] = [
    "--admission-timeout",
    "3s",
    "--vault-timeout",
    "1s",
    "--vault-cache-ttl",
    "0s",
];
const ADMISSION_TIMEOUT: Duration = Duration::from_secs(3);
const VAULT_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a resync may take once the API server is back: the watches retry with backoff from
/// 0.5 s doubling (src/backends/watch.rs), so a few seconds of outage cost a few more; after a
/// compaction behind it the API server re-lists first. Generous: the machine is shared.
const RESYNC_BOUND: Duration = Duration::from_secs(60);
/// The value OpenBao serves through the slow proxy.
const VAULT_CANARY: &str = "e2e-canary-vault-slow-$(HOME)-5e1f";
/// Credentials of the configurations that point at [`BadVault`].
const BAD_TOKEN: &str = "e2e-canary-token-bad-vault";
const BAD_ROLE_ID: &str = "e2e-canary-role-id-bad-vault";
const BAD_SECRET_ID: &str = "e2e-canary-secret-id-bad-vault";
/// The message of a denial while caches resync (src/admission/mod.rs).
const SYNCING: &str = "caches are syncing";

/// The binary, with its Kubernetes client pointed at `proxy` (in front of `api`'s API server)
/// rather than at the API server itself, which is all that differs from [`Webhook::start`].
async fn spawn_behind(
    api: &Api,
    proxy: &TcpProxy,
    extra_args: &[&str],
    env: &[(&str, String)],
) -> Webhook {
    let dir = tempfile::tempdir().unwrap();
    let bundle = certs::generate(&local_names()).unwrap();
    certs::write(&bundle, dir.path()).unwrap();
    let kubeconfig = api
        .webhook_kubeconfig(dir.path(), Some(&proxy.https_url()))
        .await;
    let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    let mut env = env.to_vec();
    env.push(("RUST_LOG", log_level()));
    Webhook::spawn_with(
        api,
        dir,
        &cert,
        &key,
        &bundle.ca_pem,
        extra_args,
        &kubeconfig,
        &env,
    )
}

/// The binary's log filter: debug, as the rest of the suite, unless `IOMETE_LEAK_AUDIT_LOG`
/// asks for more (`trace` also logs every HTTP/2 frame and TLS record: ~40 MB for the audit).
fn log_level() -> String {
    std::env::var("IOMETE_LEAK_AUDIT_LOG").unwrap_or_else(|_| "debug".to_owned())
}

/// Which control plane a [`Harness`] runs on.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Plane {
    /// The one this binary's tests share.
    Shared,
    /// One of the test's own, for scenarios that compact etcd behind the API server.
    Dedicated,
}

/// The API server (with this test's store namespace), the proxy in front of it and the binary
/// behind the proxy.
struct Harness {
    apiserver: Api,
    api: TcpProxy,
    webhook: Webhook,
}

impl Harness {
    /// The seeded API server plus every scenario's namespaces and stores; not waited on for
    /// readiness. `None` (skip) when the control plane's binaries are missing outside CI.
    async fn start(test: &str, plane: Plane, link: Link) -> Option<Harness> {
        Some(Self::start_with(test, plane, link, false).await?.0)
    }

    /// As [`Harness::start`], with the Vault side's configurations in place before the binary
    /// starts, so that its first listing holds them all.
    async fn start_with_vault(
        test: &str,
        plane: Plane,
        link: Link,
    ) -> Option<(Harness, VaultSide)> {
        let (harness, vault) = Self::start_with(test, plane, link, true).await?;
        Some((harness, vault.unwrap()))
    }

    async fn start_with(
        test: &str,
        plane: Plane,
        link: Link,
        with_vault: bool,
    ) -> Option<(Harness, Option<VaultSide>)> {
        let apiserver = match plane {
            Plane::Shared => Api::shared(test).await?,
            Plane::Dedicated => Api::dedicated(test).await?,
        };
        apiserver.seed().await;
        seed_scenarios(&apiserver).await;
        let vault = if with_vault {
            Some(VaultSide::start(&apiserver).await)
        } else {
            None
        };
        let api = TcpProxy::start(apiserver.plane().api_address(), link).await;
        // Vault's own client reads these; the webhook must not, or its reads would go to the
        // thief that BadVault counts visits to.
        let env: Vec<(&str, String)> = vault
            .iter()
            .flat_map(|vault| {
                [
                    ("VAULT_ADDR", format!("http://{}", vault.bad.thief)),
                    ("VAULT_TOKEN", BAD_TOKEN.to_owned()),
                ]
            })
            .collect();
        let webhook = spawn_behind(&apiserver, &api, &FLAGS, &env).await;
        Some((
            Harness {
                apiserver,
                api,
                webhook,
            },
            vault,
        ))
    }

    async fn ready(test: &str, plane: Plane, link: Link) -> Option<Harness> {
        let mut harness = Harness::start(test, plane, link).await?;
        harness.webhook.wait_ready().await;
        Some(harness)
    }

    async fn admit(&self, review: &Value) -> Reply {
        admit(&self.webhook, &self.webhook.client, review).await
    }

    /// The name of scenario namespace `base` for this test: scenarios move namespaces between
    /// domains, so each test has its own (prefixed with its store namespace).
    fn ns(&self, base: &str) -> String {
        scenario_namespace(&self.apiserver, base)
    }

    fn store(&self) -> &str {
        self.apiserver.store()
    }
}

fn scenario_namespace(api: &Api, base: &str) -> String {
    format!("{}-{base}", api.store())
}

fn base64_of(text: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(text)
}

/// Namespaces and stores of their own for each scenario that changes them, so that the leak
/// audit can run every scenario on one binary.
async fn seed_scenarios(api: &Api) {
    let admin = &api.admin;
    for (domain, value) in [
        ("resync", RESYNC_OLD),
        ("gone", GONE_OLD),
        ("stuck", STUCK_OLD),
    ] {
        for base in ["jobs", "other"] {
            let name = scenario_namespace(api, &format!("{domain}-{base}"));
            admin
                .apply_namespace(&name, &[("iomete.com/domain", domain)])
                .await;
        }
        admin
            .apply_secret(
                api.store(),
                &format!("iomete-secret-store-{domain}"),
                &[("k", value.as_bytes())],
            )
            .await;
    }
    admin
        .apply_namespace(
            &scenario_namespace(api, "burst-jobs"),
            &[("iomete.com/domain", "burst")],
        )
        .await;
    apply_burst_version(api, 0).await;
}

/// A Spark driver in `namespace` taking key `k` of the store of `domain` as `VALUE`.
fn store_pod(namespace: &str, domain: &str) -> Value {
    let pod = with_env_secrets(
        fixture("spark/spark35-driver-pod.json"),
        &[("VALUE", "k", domain)],
    );
    review_of(pod, namespace, namespace)
}

/// What an answer to a [`store_pod`] review says: the value injected, or the denial code.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Verdict {
    Value(String),
    Denied(u64, String),
}

fn verdict(review: &Value, reply: &Reply) -> Verdict {
    let answer = reply.json();
    if answer["response"]["allowed"] == true {
        let pod = crate::support::patched_object(review, &answer);
        Verdict::Value(container_env(&pod, 0, "VALUE").unwrap_or_default())
    } else {
        Verdict::Denied(
            answer["response"]["status"]["code"]
                .as_u64()
                .unwrap_or_default(),
            reply.message(),
        )
    }
}

/// Admits `review` until `done` says its verdict is the final one, checking each verdict on
/// the way with `allowed`; returns how long it took and what was seen, in order.
async fn admit_until(
    harness: &Harness,
    transcript: &mut Transcript,
    review: &Value,
    allowed: impl Fn(&Verdict) -> bool,
    done: impl Fn(&Verdict) -> bool,
) -> (Duration, Vec<Verdict>) {
    let started = Instant::now();
    let mut seen: Vec<Verdict> = Vec::new();
    loop {
        let reply = harness.admit(review).await;
        transcript.saw_reply(&reply);
        let verdict = verdict(review, &reply);
        assert!(allowed(&verdict), "{verdict:?} after {seen:?}");
        if seen.last() != Some(&verdict) {
            seen.push(verdict.clone());
        }
        if done(&verdict) {
            return (started.elapsed(), seen);
        }
        assert!(started.elapsed() < RESYNC_BOUND, "never settled: {seen:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn is_syncing(verdict: &Verdict) -> bool {
    matches!(verdict, Verdict::Denied(503, message) if message.contains(SYNCING))
}

/// Scans what a run produced for every canary value and credential, and for panics.
fn assert_nothing_leaked(
    output: &str,
    metrics: &str,
    transcript: &Transcript,
    vault: Option<&VaultSide>,
) {
    assert!(
        !output.contains("panicked"),
        "the binary panicked:\n{output}"
    );
    for (what, text) in [
        ("the process output", output),
        ("the metrics", metrics),
        ("the answers", transcript.seen()),
    ] {
        assert_no_canary(what, text);
        if let Some(vault) = vault {
            vault.assert_no_credential(what, text);
        }
    }
}

async fn stop_and_scan(harness: Harness, transcript: &Transcript, vault: Option<&VaultSide>) {
    let (_, metrics) = harness.webhook.admin_get("/metrics").await;
    let (status, output) = harness.webhook.stop();
    assert!(status.success(), "exit {status}: {output}");
    assert_nothing_leaked(&output, &metrics, transcript, vault);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_watch_means_503s_until_a_fresh_listing_never_a_stale_allow() {
    let Some(harness) = Harness::ready(
        "a_failed_watch_means_503s_until_a_fresh_listing_never_a_stale_allow",
        Plane::Shared,
        Link::Forward,
    )
    .await
    else {
        return;
    };
    let mut transcript = Transcript::default();
    watch_failure_scenario(&harness, &mut transcript).await;
    transcript.print("API server gone mid-run");
    stop_and_scan(harness, &transcript, None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_410_gone_relists_and_the_missed_changes_arrive_whole() {
    let Some(harness) = Harness::ready(
        "a_410_gone_relists_and_the_missed_changes_arrive_whole",
        Plane::Dedicated,
        Link::Forward,
    )
    .await
    else {
        return;
    };
    let mut transcript = Transcript::default();
    gone_scenario(&harness, &mut transcript).await;
    transcript.print("410 Gone");
    stop_and_scan(harness, &transcript, None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_server_down_at_start_is_not_ready_and_no_crash_loop() {
    let test = "api_server_down_at_start_is_not_ready_and_no_crash_loop";
    let Some(mut harness) = Harness::start(test, Plane::Shared, Link::Refuse).await else {
        return;
    };
    let mut transcript = Transcript::default();
    down_at_start_scenario(&mut harness, &mut transcript).await;
    transcript.print("API server down at start");
    stop_and_scan(harness, &transcript, None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_vault_costs_bounded_time_and_only_vault_pods() {
    let test = "a_slow_vault_costs_bounded_time_and_only_vault_pods";
    let Some((mut harness, vault)) =
        Harness::start_with_vault(test, Plane::Shared, Link::Forward).await
    else {
        return;
    };
    harness.webhook.wait_ready().await;
    harness.webhook.wait_vault_configs_fresh().await;
    let mut transcript = Transcript::default();
    slow_vault_scenario(&harness, &vault, &mut transcript).await;
    transcript.print("Slow Vault");
    stop_and_scan(harness, &transcript, Some(&vault)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vault_errors_and_garbage_are_bounded_clear_503s() {
    let test = "vault_errors_and_garbage_are_bounded_clear_503s";
    let Some((mut harness, vault)) =
        Harness::start_with_vault(test, Plane::Shared, Link::Forward).await
    else {
        return;
    };
    harness.webhook.wait_ready().await;
    harness.webhook.wait_vault_configs_fresh().await;
    let mut transcript = Transcript::default();
    bad_vault_scenario(&harness, &vault, &mut transcript).await;
    transcript.print("Vault errors and garbage");
    stop_and_scan(harness, &transcript, Some(&vault)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_during_store_updates_gets_only_stored_values() {
    let Some(harness) = Harness::ready(
        "a_burst_during_store_updates_gets_only_stored_values",
        Plane::Shared,
        Link::Forward,
    )
    .await
    else {
        return;
    };
    let mut transcript = Transcript::default();
    let report = store_burst_scenario(&harness, 2_000, &mut transcript).await;
    transcript.print("Store updates during a burst");
    assert_eq!(report.answers, 2_000);
    assert!(
        report.versions_seen > 1,
        "the store did not change during the burst"
    );
    stop_and_scan(harness, &transcript, None).await;
}

const STUCK_OLD: &str = "e2e-canary-stuck-old";
/// How long a cache may go unfollowed before its decisions are refused: a watch that ends
/// cleanly (its timeout, a load balancer) is normally resumed within milliseconds.
const UNFOLLOWED_BOUND: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cache_whose_watch_cannot_resume_stops_deciding() {
    let Some(harness) = Harness::ready(
        "a_cache_whose_watch_cannot_resume_stops_deciding",
        Plane::Shared,
        Link::Forward,
    )
    .await
    else {
        return;
    };
    let moved = store_pod(&harness.ns("stuck-jobs"), "stuck");
    let old = Verdict::Value(STUCK_OLD.into());
    assert_eq!(verdict(&moved, &harness.admit(&moved).await), old);
    // Every watch ends and no new connection gets through.
    harness.api.set(Link::Refuse);
    harness.api.cut();
    let broke = Instant::now();
    harness
        .apiserver
        .admin
        .apply_namespace(
            &harness.ns("stuck-jobs"),
            &[("iomete.com/domain", "marketing")],
        )
        .await;
    let mut last_old_allow = None;
    while broke.elapsed() < UNFOLLOWED_BOUND + Duration::from_secs(5) {
        if verdict(&moved, &harness.admit(&moved).await) == old {
            last_old_allow = Some(broke.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    harness.api.set(Link::Forward);
    let (status, output) = harness.webhook.stop();
    assert!(status.success(), "exit {status}: {output}");
    if let Some(last) = last_old_allow {
        assert!(
            last <= UNFOLLOWED_BOUND,
            "the moved namespace still got its old domain's value {last:.1?} after its watch ended"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_during_store_updates_never_mixes_versions() {
    let Some(harness) = Harness::ready(
        "a_burst_during_store_updates_never_mixes_versions",
        Plane::Shared,
        Link::Forward,
    )
    .await
    else {
        return;
    };
    let mut transcript = Transcript::default();
    let report = store_burst_scenario(&harness, 2_000, &mut transcript).await;
    transcript.print("Store updates during a burst");
    let (status, output) = harness.webhook.stop();
    assert!(status.success(), "exit {status}: {output}");
    assert!(
        report.mixed.is_empty(),
        "{} of {} answers mixed versions, e.g. {:?}",
        report.mixed.len(),
        report.answers,
        report.mixed.first()
    );
}

/// The same race without the network in between, so that it shows within a second: the
/// admission path of the library against caches rewritten by another thread as fast as it can.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_admission_reads_one_version_of_a_store() {
    use crate::support;
    use iomete_secrets_webhook::admission::{Admitter, Limits};
    use iomete_secrets_webhook::backends::KubernetesCaches;
    use iomete_secrets_webhook::backends::kubernetes::ScopePolicy;
    use iomete_secrets_webhook::decision::injection::Settings;
    use kube::runtime::watcher::Event;

    let versions: Vec<_> = (0..64)
        .map(|version| {
            let values: Vec<String> = BURST_KEYS
                .iter()
                .map(|key| burst_value(version, key))
                .collect();
            let data: Vec<(&str, &str)> = BURST_KEYS
                .iter()
                .copied()
                .zip(values.iter().map(String::as_str))
                .collect();
            support::store("iomete-secret-store-burst", &data)
        })
        .collect();
    let (stores, mut writers) = KubernetesCaches::new(ScopePolicy {
        store_namespace: support::STORE_NAMESPACE.into(),
        admin_namespaces: [support::STORE_NAMESPACE.to_owned()].into(),
        domain_label: "iomete.com/domain".into(),
    });
    writers.feed_listing(
        [support::namespace("burst-jobs", Some("burst"))],
        [versions[0].clone()],
    );
    stores.mark_fresh_once_listed().await;
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = std::thread::spawn({
        let done = done.clone();
        move || {
            for version in versions.iter().cycle() {
                if done.load(Ordering::Relaxed) {
                    break;
                }
                writers
                    .secrets
                    .apply_watcher_event(&Event::Apply(version.clone()));
            }
        }
    });
    let backends = support::backends(stores, Vec::new(), support::vault_settings());
    let limits = Limits {
        timeout: Duration::from_secs(5),
        max_in_flight: 1,
    };
    let admitter = Admitter::new(Arc::new(backends), Settings::env_delivery(true), limits);
    let entries: Vec<(&str, &str, &str)> =
        BURST_KEYS.iter().map(|key| (*key, *key, "burst")).collect();
    let review = review_of(
        with_env_secrets(fixture("spark/spark35-driver-pod.json"), &entries),
        "burst-jobs",
        "burst",
    );
    let body = serde_json::to_vec(&review).unwrap();
    let started = Instant::now();
    let (mut admissions, mut mixed) = (0, 0);
    while started.elapsed() < Duration::from_secs(3) && mixed == 0 {
        let answer = admitter.review(&body).await;
        let answer: Value = serde_json::from_slice(&answer.body).unwrap();
        let pod = crate::support::patched_object(&review, &answer);
        let values: std::collections::BTreeSet<String> = BURST_KEYS
            .iter()
            .map(|key| {
                container_env(&pod, 0, key)
                    .unwrap()
                    .rsplit_once('-')
                    .unwrap()
                    .0
                    .to_owned()
            })
            .collect();
        admissions += 1;
        mixed += usize::from(values.len() > 1);
    }
    done.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    assert_eq!(
        mixed, 0,
        "an answer mixed two versions of the store after {admissions} admissions"
    );
}

/// The leak audit: one binary at debug log level, every hostile-input and fault scenario of
/// this suite in turn with canary values in every store and in Vault, then everything it printed
/// (stdout and stderr: logs, warnings, any panic), its metrics, every answer (without the
/// patches, which carry values by design) and the VaultConfig statuses it wrote are scanned for
/// every value and credential.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leak_audit_every_scenario_with_canaries_at_debug_level() {
    let started = Instant::now();
    let test = "leak_audit_every_scenario_with_canaries_at_debug_level";
    // A control plane of its own: the 410 Gone scenario compacts etcd behind the API server.
    let Some((mut harness, vault)) =
        Harness::start_with_vault(test, Plane::Dedicated, Link::Refuse).await
    else {
        return;
    };
    let mut transcript = Transcript::default();
    down_at_start_scenario(&mut harness, &mut transcript).await;
    hostile_bodies(&harness.webhook, &mut transcript).await;
    let slow = slow_and_idle_clients(&harness.webhook, 200, 50, Duration::from_secs(3)).await;
    slow.record(&mut transcript);
    assert!(slow.alive);
    slow.bystander.assert_served("slow and idle clients");
    watch_failure_scenario(&harness, &mut transcript).await;
    gone_scenario(&harness, &mut transcript).await;
    slow_vault_scenario(&harness, &vault, &mut transcript).await;
    bad_vault_scenario(&harness, &vault, &mut transcript).await;
    store_burst_scenario(&harness, 300, &mut transcript).await;

    let mut statuses = String::new();
    for name in
        std::iter::once("slow".to_owned()).chain(BAD_MODES.iter().map(|mode| format!("bad-{mode}")))
    {
        let stored = harness.apiserver.admin.vault_config(harness.store(), &name);
        if let Some(config) = stored.await {
            statuses.push_str(&config["status"].to_string());
        }
    }
    transcript.saw(&statuses);
    let (_, metrics) = harness.webhook.admin_get("/metrics").await;
    let (status, output) = harness.webhook.stop();
    assert!(status.success(), "exit {status}: {output}");
    // The scan is only as good as what was logged: debug lines must be in it.
    assert!(
        output.contains("\"level\":\"DEBUG\""),
        "no debug lines were logged"
    );
    assert_nothing_leaked(&output, &metrics, &transcript, Some(&vault));
    transcript.print("Leak audit");
    println!(
        "\nleak audit: {} observations, {} KiB of output, {} KiB of metrics, {} KiB of answers and statuses scanned in {:.1?}; values leaked: 0",
        transcript.observations(),
        output.len() >> 10,
        metrics.len() >> 10,
        transcript.seen().len() >> 10,
        started.elapsed()
    );
}

/// A 256 MiB KV answer is refused with the cap's message within the admission timeout, and
/// barely moves the peak RSS (read whole, it cost up to 516 MiB and 7 s). The answer declares
/// its length; `tests/vault.rs` covers answers that do not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vault_answer_of_any_size_costs_bounded_memory() {
    let test = "a_vault_answer_of_any_size_costs_bounded_memory";
    let Some((mut harness, vault)) =
        Harness::start_with_vault(test, Plane::Shared, Link::Forward).await
    else {
        return;
    };
    harness.webhook.wait_ready().await;
    harness.webhook.wait_vault_configs_fresh().await;
    let pid = harness.webhook.child.id();
    let peak_before = memory_kib(pid, "VmHWM");
    // Applied now, so that everything the configuration costs (its status check too) is
    // measured from here.
    let admin = &harness.apiserver.admin;
    admin
        .apply_vault_config(
            harness.store(),
            "bad-huge",
            json!({"domain": "finance", "host": vault.bad.url(), "path": "/v1/secret/data/huge", "auth": {"method": "Token"}}),
        )
        .await;
    let mut credentials: Vec<(String, Vec<u8>)> = vec![("bad-huge.token".into(), BAD_TOKEN.into())];
    let secret = admin
        .secret(harness.store(), "iomete-vault-credentials-finance")
        .await
        .unwrap();
    for (key, value) in secret["data"].as_object().unwrap() {
        use base64::Engine as _;
        let value = base64::engine::general_purpose::STANDARD
            .decode(value.as_str().unwrap())
            .unwrap();
        credentials.push((key.clone(), value));
    }
    let credentials: Vec<(&str, &[u8])> = credentials
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_slice()))
        .collect();
    admin
        .apply_secret(
            harness.store(),
            "iomete-vault-credentials-finance",
            &credentials,
        )
        .await;
    let review = vault_pod("bad-huge", "db", "huge");
    let deadline = Instant::now() + RESYNC_BOUND;
    let reply = loop {
        let reply = harness.admit(&review).await;
        if reply.code() != Some(404) {
            break reply;
        }
        assert!(Instant::now() < deadline, "the configuration never arrived");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let grew = memory_kib(pid, "VmHWM").saturating_sub(peak_before);
    let (status, output) = harness.webhook.stop();
    assert!(status.success(), "exit {status}: {output}");
    assert_eq!(reply.code(), Some(503), "{}", reply.body);
    assert!(
        reply.body.contains("Vault's answer is larger than"),
        "{}",
        reply.body
    );
    assert!(
        reply.elapsed <= ADMISSION_TIMEOUT + Duration::from_millis(500) && grew < 64 << 10,
        "a {} MiB Vault answer: answered after {:.1?}, peak RSS +{} MiB",
        HUGE_BODY >> 20,
        reply.elapsed,
        grew >> 10
    );
}
