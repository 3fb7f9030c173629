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
/// The message of a denial while caches resync (src/admission.rs).
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

/// Namespaces and stores of their own for each scenario that changes them, so that the leak
/// audit can run every scenario on one binary.
fn base64_of(text: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(text)
}

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

const RESYNC_OLD: &str = "e2e-canary-resync-old";
const RESYNC_NEW: &str = "e2e-canary-resync-new";

/// The API server goes away mid-run: every connection is cut and new ones are closed at once.
/// While away, a namespace moves to another domain and a store value rotates. From the moment
/// the webhook notices, pods that need a secret get a retriable 503 until a fresh listing has
/// replaced the caches whole; then they get the new decision. Never the old value, never the
/// old domain's access; pods that mention no secret are admitted throughout.
async fn watch_failure_scenario(harness: &Harness, transcript: &mut Transcript) {
    let moved = store_pod(&harness.ns("resync-jobs"), "resync");
    let stays = store_pod(&harness.ns("resync-other"), "resync");
    let old = Verdict::Value(RESYNC_OLD.into());
    for review in [&moved, &stays] {
        assert_eq!(verdict(review, &harness.admit(review).await), old);
    }
    let bystander = Bystander::plain_pod(&harness.webhook);

    harness.api.set(Link::Refuse);
    harness.api.cut();
    let (noticed, _) = admit_until(
        harness,
        transcript,
        &moved,
        |v| *v == old || is_syncing(v),
        is_syncing,
    )
    .await;
    transcript.row(
        "API server gone: connections cut, new ones closed",
        format!("noticed (first 503) after {noticed:.1?}"),
        Some(noticed),
    );
    let admin = &harness.apiserver.admin;
    admin
        .apply_namespace(
            &harness.ns("resync-jobs"),
            &[("iomete.com/domain", "marketing")],
        )
        .await;
    admin
        .apply_secret(
            harness.store(),
            "iomete-secret-store-resync",
            &[("k", RESYNC_NEW.as_bytes())],
        )
        .await;
    let held = Instant::now();
    let mut refused = 0;
    while held.elapsed() < Duration::from_secs(1) {
        for review in [&moved, &stays] {
            let reply = harness.admit(review).await;
            transcript.saw_reply(&reply);
            assert!(
                is_syncing(&verdict(review, &reply)),
                "while the API server is away: {}",
                reply.body
            );
            refused += 1;
        }
    }
    // Readiness was earned once; a resync does not take the replica out of the Service.
    assert_eq!(harness.webhook.admin_get("/readyz").await.0, 200);
    transcript.row(
        "secret pods while the caches are stale",
        format!("{refused} of {refused} denied 503 \"{SYNCING}\""),
        None,
    );

    harness.api.set(Link::Forward);
    let (moved_after, moved_seen) = admit_until(
        harness,
        transcript,
        &moved,
        |v| is_syncing(v) || matches!(v, Verdict::Denied(403, _)),
        |v| matches!(v, Verdict::Denied(403, _)),
    )
    .await;
    let (_, stays_seen) = admit_until(
        harness,
        transcript,
        &stays,
        |v| is_syncing(v) || *v == Verdict::Value(RESYNC_NEW.into()),
        |v| *v == Verdict::Value(RESYNC_NEW.into()),
    )
    .await;
    transcript.row(
        "API server back",
        format!(
            "resynced after {moved_after:.1?}: moved namespace {:?}, other namespace {:?}",
            kinds(&moved_seen),
            kinds(&stays_seen)
        ),
        Some(moved_after),
    );
    bystander
        .finish()
        .await
        .assert_served("a watch failure and its resync");
}

/// The verdicts in order, without values, for the figures.
fn kinds(seen: &[Verdict]) -> Vec<String> {
    seen.iter()
        .map(|verdict| match verdict {
            Verdict::Value(value) if value.ends_with("-old") => "old value".to_owned(),
            Verdict::Value(_) => "new value".to_owned(),
            Verdict::Denied(code, _) => format!("{code}"),
        })
        .collect()
}

const GONE_OLD: &str = "e2e-canary-gone-old";
const GONE_NEW: &str = "e2e-canary-gone-new";

/// A namespace moves and a store rotates in etcd while the API server cannot see it, and etcd's
/// history is compacted past everything the API server had seen (as when another API server of
/// an HA control plane took the writes during a partition): the API server re-lists, ending its
/// clients' watches, and their resumption from their last resourceVersion gets 410 Gone (or 429
/// while the re-list runs). The webhook must relist and take the missed changes whole: once it
/// has given a new answer (or a 503), never an old one. Needs a control plane of its own.
async fn gone_scenario(harness: &Harness, transcript: &mut Transcript) {
    let (moved_ns, stays_ns) = (harness.ns("gone-jobs"), harness.ns("gone-other"));
    let moved = store_pod(&moved_ns, "gone");
    let stays = store_pod(&stays_ns, "gone");
    let old = Verdict::Value(GONE_OLD.into());
    for review in [&moved, &stays] {
        assert_eq!(verdict(review, &harness.admit(review).await), old);
    }
    let bystander = Bystander::plain_pod(&harness.webhook);
    let log_before = harness.webhook.output().len();
    // The changes, as the API server would have stored them, written to etcd behind its back.
    let admin = &harness.apiserver.admin;
    let mut namespace: Value = serde_json::to_value(
        kube::Api::<k8s_openapi::api::core::v1::Namespace>::all(admin.client.clone())
            .get(&moved_ns)
            .await
            .unwrap(),
    )
    .unwrap();
    namespace["metadata"]["labels"]["iomete.com/domain"] = json!("marketing");
    let mut secret = admin
        .secret(harness.store(), "iomete-secret-store-gone")
        .await
        .unwrap();
    secret["data"]["k"] = json!(base64_of(GONE_NEW));
    for object in [&mut namespace, &mut secret] {
        let metadata = object["metadata"].as_object_mut().unwrap();
        metadata.remove("resourceVersion");
        metadata.remove("managedFields");
    }
    let writes = [
        (format!("/registry/namespaces/{moved_ns}"), namespace),
        (
            format!(
                "/registry/secrets/{}/iomete-secret-store-gone",
                harness.store()
            ),
            secret,
        ),
    ];
    let plane = harness.apiserver.plane();
    tokio::task::block_in_place(|| plane.write_and_compact_behind_the_api_server(&writes));
    let started = Instant::now();
    // The old answers are the window before a watch notices (its 410 Gone, or 429); after a
    // pod's first answer that is not old, an old one for that pod is a stale allow. Per pod: the
    // API server re-lists each resource on its own, so the store's watch may end a moment after
    // the namespaces' one, and until it ends nobody can know that the store changed.
    let no_return = |final_verdict: fn(&Verdict) -> bool| {
        let noticed = std::cell::Cell::new(false);
        move |verdict: &Verdict| {
            if *verdict == Verdict::Value(GONE_OLD.into()) {
                return !noticed.get();
            }
            noticed.set(true);
            is_syncing(verdict) || final_verdict(verdict)
        }
    };
    let moved_final = |v: &Verdict| matches!(v, Verdict::Denied(403, _));
    let stays_final = |v: &Verdict| *v == Verdict::Value(GONE_NEW.into());
    let (_, moved_seen) = admit_until(
        harness,
        transcript,
        &moved,
        no_return(moved_final),
        moved_final,
    )
    .await;
    let (_, stays_seen) = admit_until(
        harness,
        transcript,
        &stays,
        no_return(stays_final),
        stays_final,
    )
    .await;
    let relisted = started.elapsed();
    let output = harness.webhook.output()[log_before..].to_owned();
    for watch in ["namespaces", "secrets"] {
        // The resumed watch hears 410 Gone, or 429 when it comes back before the API server's
        // re-list is done; either way the cache is marked stale and rebuilt from a fresh listing.
        let expired = output.lines().any(|line| {
            line.contains("\"message\":\"watch failed")
                && line.contains(&format!("\"watch\":\"{watch}\""))
                && (line.contains("too old resource version")
                    || line.contains("storage is (re)initializing"))
        });
        assert!(
            expired,
            "the resumed {watch} watch never reported 410 Gone:\n{}",
            output
                .lines()
                .filter(|line| line.contains("watch"))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    transcript.row(
        "watch resumed after compaction (410 Gone), changes missed meanwhile",
        format!(
            "relisted after {relisted:.1?}: moved namespace {:?}, other namespace {:?}",
            kinds(&moved_seen),
            kinds(&stays_seen)
        ),
        Some(relisted),
    );
    // The re-list ended the VaultConfig watch too: it is current again once an unknown
    // configuration is a 404 rather than a 503.
    let unknown = vault_pod("no-such-config", "db", "gone-vault");
    admit_until(
        harness,
        transcript,
        &unknown,
        |v| matches!(v, Verdict::Denied(404 | 503, _)),
        |v| matches!(v, Verdict::Denied(404, _)),
    )
    .await;
    bystander
        .finish()
        .await
        .assert_served("a 410 Gone and its relist");
}

/// With the API server's address closing every connection, the binary starts, stays live and
/// unready, answers secret pods 503 and admits the rest, retries with backoff rather than in a
/// loop, and becomes ready once the API server answers. The harness must be started with
/// [`Link::Refuse`].
async fn down_at_start_scenario(harness: &mut Harness, transcript: &mut Transcript) {
    let started = Instant::now();
    let webhook = &harness.webhook;
    while webhook.admin_get("/livez").await.0 != 200 {
        assert!(started.elapsed() < ANSWER_BOUND, "{}", webhook.output());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let secret_pod = review_of(
        fixture("spark/spark35-driver-pod.json"),
        "spark-jobs",
        "down",
    );
    let mut plain = fixture("spark/spark35-driver-pod.json");
    plain["metadata"]["annotations"] = json!({});
    let plain_pod = review_of(plain, "spark-jobs", "down-plain");
    while started.elapsed() < Duration::from_secs(3) {
        assert_eq!(webhook.admin_get("/readyz").await.0, 503);
        let reply = harness.admit(&secret_pod).await;
        transcript.saw_reply(&reply);
        assert!(is_syncing(&verdict(&secret_pod, &reply)), "{}", reply.body);
        let reply = harness.admit(&plain_pod).await;
        assert_eq!(reply.allowed(), Some(true), "{}", reply.body);
        assert!(reply.json()["response"]["patch"].is_null());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let attempts = harness.api.accepted();
    let failures = webhook
        .output()
        .matches("\"message\":\"watch failed")
        .count();
    assert!(
        harness.webhook.child.try_wait().unwrap().is_none(),
        "the binary exited"
    );
    // Three watches (secrets, namespaces, VaultConfigs) backing off from 0.5 s: 0.5, 1, 2 s.
    assert!(attempts <= 20, "{attempts} connection attempts in 3 s");
    transcript.row(
        "API server address closing every connection at start, for 3 s",
        format!("live, not ready, secret pods 503, other pods admitted; {attempts} connection attempts, {failures} \"watch failed\" warnings, no exit"),
        None,
    );
    harness.api.set(Link::Forward);
    let back = Instant::now();
    harness.webhook.wait_ready().await;
    let reply = harness.admit(&secret_pod).await;
    assert_eq!(reply.allowed(), Some(true), "{}", reply.body);
    transcript.row(
        "API server answering again",
        format!("ready after {:.1?}", back.elapsed()),
        Some(back.elapsed()),
    );
}

/// What misbehaviour a [`BadVault`] path asks for.
const BAD_MODES: [&str; 10] = [
    "status500",
    "html502",
    "notjson",
    "wrongshape",
    "empty",
    "truncated",
    "reset",
    "hang",
    "redirect",
    "status429",
];
/// The misbehaviour of a body far larger than any secret, kept apart from [`BAD_MODES`]: read
/// whole, it cost the binary hundreds of MiB; it is now refused at the cap (see
/// [`a_vault_answer_of_any_size_costs_bounded_memory`]).
const HUGE_MODE: &str = "huge";
/// How much the huge body sends at most (less when the webhook hangs up).
const HUGE_BODY: usize = 256 << 20;

/// A Vault that answers every read badly, chosen by the path (`/v1/secret/data/<mode>/...`),
/// and a "thief" listener that its redirect and the binary's `VAULT_ADDR` point at, which must
/// never be reached.
struct BadVault {
    address: SocketAddr,
    thief: SocketAddr,
    thief_visits: Arc<AtomicUsize>,
    tasks: [JoinHandle<()>; 2],
}

impl BadVault {
    async fn start() -> Self {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
        let thief = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
        let address = listener.local_addr().unwrap();
        let thief_address = thief.local_addr().unwrap();
        let thief_visits = Arc::new(AtomicUsize::new(0));
        let serve = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(answer_badly(stream, thief_address));
            }
        });
        let steal = tokio::spawn({
            let visits = thief_visits.clone();
            async move {
                while let Ok((_stream, _)) = thief.accept().await {
                    visits.fetch_add(1, Ordering::SeqCst);
                }
            }
        });
        BadVault {
            address,
            thief: thief_address,
            thief_visits,
            tasks: [serve, steal],
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.address)
    }
}

impl Drop for BadVault {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

async fn answer_badly(mut stream: TcpStream, thief: SocketAddr) {
    let Some(request) = crate::support::read_request(&mut stream).await else {
        return;
    };
    let path = request.path();
    let mode = if path.contains("/auth/approle/login") {
        "notjson"
    } else {
        BAD_MODES
            .into_iter()
            .chain([HUGE_MODE])
            .find(|mode| path.contains(&format!("/{mode}")))
            .unwrap_or("status500")
    };
    let respond = |status: &str, content_type: &str, body: &str| {
        format!(
            "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
    };
    let response = match mode {
        "status500" => respond("500 Internal Server Error", "application/json", r#"{"errors":["internal error"]}"#),
        "status429" => respond("429 Too Many Requests", "application/json", r#"{"errors":["rate limited"]}"#),
        "html502" => respond("502 Bad Gateway", "text/html", "<html><body><h1>502 Bad Gateway</h1></body></html>"),
        "notjson" => respond("200 OK", "application/json", "e2e-canary-garbage-notjson: this is not JSON"),
        "wrongshape" => respond("200 OK", "application/json", r#"{"data":"e2e-canary-garbage-wrongshape"}"#),
        "empty" => respond("200 OK", "application/json", "{}"),
        "truncated" => "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 4096\r\n\r\n{\"data\":{\"data\":{\"value\":\"e2e-canary-garbage-truncated".to_owned(),
        "redirect" => format!("HTTP/1.1 307 Temporary Redirect\r\nlocation: http://{thief}{path}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"),
        "reset" => {
            // RST rather than FIN: no answer at all.
            let _ = stream.set_zero_linger();
            return;
        }
        "hang" => {
            let mut buffer = [0u8; 4096];
            while !matches!(stream.read(&mut buffer).await, Ok(0) | Err(_)) {}
            return;
        }
        HUGE_MODE => {
            let head = format!("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {HUGE_BODY}\r\n\r\n{{\"data\":{{\"data\":{{\"value\":\"");
            if stream.write_all(head.as_bytes()).await.is_err() {
                return;
            }
            let chunk = vec![b'A'; 1 << 20];
            let mut sent = head.len();
            while sent < HUGE_BODY && stream.write_all(&chunk).await.is_ok() {
                sent += chunk.len();
            }
            return;
        }
        _ => unreachable!(),
    };
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// OpenBao behind a delaying proxy, a [`BadVault`], and the VaultConfigs and credentials that
/// point the binary at them (all of the finance domain).
struct VaultSide {
    /// Runs as long as the side does.
    _bao: OpenBao,
    slow: TcpProxy,
    bad: BadVault,
    /// Credentials that must never appear anywhere.
    credentials: Vec<String>,
}

impl VaultSide {
    async fn start(api: &Api) -> Self {
        let bao = OpenBao::start().await;
        let admin = bao.admin();
        admin
            .kv_put("secret", "production/db", json!({"value": VAULT_CANARY}))
            .await;
        admin
            .write_policy(
                "webhook-read",
                r#"path "secret/data/*" { capabilities = ["read"] }"#,
            )
            .await;
        admin.enable_approle("approle").await;
        let (role_id, secret_id) = admin
            .approle_role("approle", "webhook", &["webhook-read"], "1h", "4h")
            .await;
        let upstream: SocketAddr = bao.address().trim_start_matches("http://").parse().unwrap();
        let slow = TcpProxy::start(upstream, Link::Forward).await;
        let bad = BadVault::start().await;

        let mut data: Vec<(String, Vec<u8>)> = vec![
            ("slow.roleId".into(), role_id.clone().into_bytes()),
            ("slow.secretId".into(), secret_id.clone().into_bytes()),
            ("bad-login.roleId".into(), BAD_ROLE_ID.into()),
            ("bad-login.secretId".into(), BAD_SECRET_ID.into()),
        ];
        let vault_config = |host: &str, path: &str, method: &str| json!({"domain": "finance", "host": host, "path": path, "auth": {"method": method}});
        let (admin, store) = (&api.admin, api.store());
        admin
            .apply_vault_config(
                store,
                "slow",
                vault_config(&slow.url(), "/v1/secret/data", "AppRole"),
            )
            .await;
        admin
            .apply_vault_config(
                store,
                "bad-login",
                vault_config(&bad.url(), "/v1/secret/data/notjson", "AppRole"),
            )
            .await;
        for mode in BAD_MODES {
            data.push((format!("bad-{mode}.token"), BAD_TOKEN.into()));
            admin
                .apply_vault_config(
                    store,
                    &format!("bad-{mode}"),
                    vault_config(&bad.url(), &format!("/v1/secret/data/{mode}"), "Token"),
                )
                .await;
        }
        let data: Vec<(&str, &[u8])> = data
            .iter()
            .map(|(key, value)| (key.as_str(), value.as_slice()))
            .collect();
        admin
            .apply_secret(store, "iomete-vault-credentials-finance", &data)
            .await;
        VaultSide {
            _bao: bao,
            slow,
            bad,
            credentials: vec![
                role_id,
                secret_id,
                BAD_ROLE_ID.into(),
                BAD_SECRET_ID.into(),
                BAD_TOKEN.into(),
            ],
        }
    }

    fn assert_no_credential(&self, what: &str, text: &str) {
        for credential in &self.credentials {
            assert!(
                !text.contains(credential.as_str()),
                "{what} leaks a Vault credential"
            );
        }
    }
}

/// A Spark driver of the finance domain taking `key` from VaultConfig `config`.
fn vault_pod(config: &str, key: &str, uid: &str) -> Value {
    let mut pod = fixture("spark/spark35-driver-pod.json");
    pod["metadata"]["annotations"] = json!({
        "secrets.iomete.com/env-secrets": json!([
            {"key": "VALUE", "secretObject": {"key": key, "source": {"type": "VAULT", "id": config}}}
        ]).to_string()
    });
    review_of(pod, "spark-jobs", uid)
}

/// Vault answers slowly: within the budget the value arrives, late; beyond it every Vault pod
/// is denied 503 within --admission-timeout, while pods taking Kubernetes store values are
/// admitted as fast as ever; when Vault is fast again, so are its pods, without a restart.
async fn slow_vault_scenario(harness: &Harness, vault: &VaultSide, transcript: &mut Transcript) {
    let review = vault_pod("slow", "production/db", "slow");
    let expect_value = |reply: &Reply| {
        assert_eq!(
            verdict(&review, reply),
            Verdict::Value(VAULT_CANARY.into()),
            "{}",
            reply.body
        );
    };
    let reply = harness.admit(&review).await;
    expect_value(&reply);
    transcript.row(
        "Vault pod, Vault answering at once",
        reply.summary(),
        Some(reply.elapsed),
    );

    vault.slow.set(Link::Delay(Duration::from_millis(150)));
    let reply = harness.admit(&review).await;
    expect_value(&reply);
    transcript.row(
        "Vault pod, every Vault packet delayed 150 ms",
        reply.summary(),
        Some(reply.elapsed),
    );

    let bystander = Bystander::secret_pod(&harness.webhook);
    vault.slow.set(Link::Delay(Duration::from_secs(5)));
    let burst = futures::future::join_all((0..16).map(|_| harness.admit(&review))).await;
    let slowest = burst.iter().map(|reply| reply.elapsed).max().unwrap();
    for reply in &burst {
        transcript.saw_reply(reply);
        let verdict = verdict(&review, reply);
        assert!(
            matches!(&verdict, Verdict::Denied(503, message) if message.contains("retry")),
            "{verdict:?}"
        );
        assert!(
            reply.elapsed <= ADMISSION_TIMEOUT + Duration::from_secs(1),
            "{:?}",
            reply.elapsed
        );
    }
    let report = bystander.finish().await;
    report.assert_served("a Vault slower than its timeout");
    transcript.row(
        "16 Vault pods at once, every Vault packet delayed 5 s",
        format!(
            "16 denied 503 ({}), slowest after {slowest:.1?}; Kubernetes-store pods meanwhile: {} admitted, slowest {:.1?}",
            cause(&burst[0].message()),
            report.answered,
            report.slowest
        ),
        Some(slowest),
    );

    vault.slow.set(Link::Forward);
    vault.slow.cut();
    // A pooled connection the cut has not reached yet may fail one read: that is a retriable
    // 503 like any other, and the next admission reconnects.
    let recovering = Instant::now();
    let reply = loop {
        let reply = harness.admit(&review).await;
        transcript.saw_reply(&reply);
        match verdict(&review, &reply) {
            Verdict::Denied(503, _) if recovering.elapsed() < ANSWER_BOUND => {}
            _ => break reply,
        }
    };
    expect_value(&reply);
    transcript.row(
        "Vault pod, Vault fast again",
        format!(
            "{}, {:.1?} after Vault recovered",
            reply.summary(),
            recovering.elapsed()
        ),
        Some(reply.elapsed),
    );
}

/// Vault answers with errors and garbage: each Vault pod is denied 503 (retriable) within the
/// Vault timeout, with a message that names the configuration and quotes nothing from the
/// body; neither a redirect nor `VAULT_ADDR` is followed (the token stays home); no answer
/// raises the peak memory noticeably; pods without Vault references are admitted throughout.
async fn bad_vault_scenario(harness: &Harness, vault: &VaultSide, transcript: &mut Transcript) {
    let pid = harness.webhook.child.id();
    let bystander = Bystander::secret_pod(&harness.webhook);
    let configs = BAD_MODES
        .iter()
        .map(|mode| format!("bad-{mode}"))
        .chain(["bad-login".to_owned()]);
    for config in configs {
        let review = vault_pod(&config, "db", &config);
        let peak_before = memory_kib(pid, "VmHWM");
        let reply = harness.admit(&review).await;
        transcript.saw_reply(&reply);
        let peak_after = memory_kib(pid, "VmHWM");
        let verdict = verdict(&review, &reply);
        let Verdict::Denied(code, message) = &verdict else {
            panic!("{config}: {verdict:?}");
        };
        assert_eq!(*code, 503, "{config}: {message}");
        assert!(
            message.contains(&format!("{config:?}")) && message.contains("retry"),
            "{config}: {message}"
        );
        // A login and a read, each within --vault-timeout.
        assert!(
            reply.elapsed <= 2 * VAULT_TIMEOUT + Duration::from_millis(500),
            "{config}: {:?}",
            reply.elapsed
        );
        let grew = peak_after.saturating_sub(peak_before);
        assert!(grew < 32 << 10, "{config}: peak RSS +{} MiB", grew >> 10);
        transcript.row(
            format!("Vault answering {config}"),
            format!(
                "denied 503 ({}); peak RSS +{} MiB",
                cause(message),
                grew >> 10
            ),
            Some(reply.elapsed),
        );
    }
    assert_eq!(
        vault.bad.thief_visits.load(Ordering::SeqCst),
        0,
        "a redirect was followed, or VAULT_ADDR was"
    );
    bystander
        .finish()
        .await
        .assert_served("Vault errors and garbage");
}

/// What a Vault denial says went wrong, without the address and the advice around it.
fn cause(message: &str) -> &str {
    message
        .split_once("cannot answer (")
        .and_then(|(_, rest)| rest.rsplit_once("); this is temporary"))
        .map_or(message, |(cause, _)| cause)
}

/// Keys of the burst store; each version of the store holds one value per key.
const BURST_KEYS: [&str; 4] = ["k0", "k1", "k2", "k3"];

fn burst_value(version: usize, key: &str) -> String {
    format!("e2e-canary-burst-v{version}-{key}")
}

async fn apply_burst_version(api: &Api, version: usize) {
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
struct BurstReport {
    answers: usize,
    versions_written: usize,
    versions_seen: usize,
    /// Answers whose values came from more than one version of the store.
    mixed: Vec<Vec<String>>,
}

/// `admissions` pods, 32 at a time over four HTTP/2 connections, each taking all four keys of
/// one store, while the store is rewritten as fast as the API server takes it (one write at a
/// time, 1 ms apart) with a new version of every key.
/// Every answer must carry values that were stored; the report says how many mixed versions.
async fn store_burst_scenario(
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
    use iomete_secrets_webhook::backends::KubernetesStores;
    use iomete_secrets_webhook::backends::kubernetes::StoreSettings;
    use iomete_secrets_webhook::injection::Settings;
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
    let (stores, mut writers) = KubernetesStores::new(StoreSettings {
        store_namespace: support::STORE_NAMESPACE.into(),
        admin_namespaces: [support::STORE_NAMESPACE.to_owned()].into(),
        domain_label: "iomete.com/domain".into(),
    });
    writers.namespaces.apply_watcher_event(&Event::Init);
    writers
        .namespaces
        .apply_watcher_event(&Event::InitApply(support::namespace(
            "burst-jobs",
            Some("burst"),
        )));
    writers.namespaces.apply_watcher_event(&Event::InitDone);
    writers.secrets.apply_watcher_event(&Event::Init);
    writers
        .secrets
        .apply_watcher_event(&Event::InitApply(versions[0].clone()));
    writers.secrets.apply_watcher_event(&Event::InitDone);
    stores.mark_ready_when_synced().await;
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
    let admitter = Admitter::new(
        Arc::new(backends),
        Settings {
            secrets_v2_enabled: true,
        },
        limits,
    );
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
