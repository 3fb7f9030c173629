//! The API-server scenarios: gone mid-run (every connection cut, new ones closed), etcd
//! compacted behind it while changes it never saw were written (410 Gone), and down from the
//! start. Each is run alone by its test in `faults.rs` and together by the leak audit.

use super::*;

pub(super) const RESYNC_OLD: &str = "e2e-canary-resync-old";
pub(super) const RESYNC_NEW: &str = "e2e-canary-resync-new";

/// The API server goes away mid-run: every connection is cut and new ones are closed at once.
/// While away, a namespace moves to another domain and a store value rotates. From the moment
/// the webhook notices, pods that need a secret get a retriable 503 until a fresh listing has
/// replaced the caches whole; then they get the new decision. Never the old value, never the
/// old domain's access; pods that mention no secret are admitted throughout.
pub(super) async fn watch_failure_scenario(harness: &Harness, transcript: &mut Transcript) {
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
pub(super) fn kinds(seen: &[Verdict]) -> Vec<String> {
    seen.iter()
        .map(|verdict| match verdict {
            Verdict::Value(value) if value.ends_with("-old") => "old value".to_owned(),
            Verdict::Value(_) => "new value".to_owned(),
            Verdict::Denied(code, _) => format!("{code}"),
        })
        .collect()
}

pub(super) const GONE_OLD: &str = "e2e-canary-gone-old";
pub(super) const GONE_NEW: &str = "e2e-canary-gone-new";

/// A namespace moves and a store rotates in etcd while the API server cannot see it, and etcd's
/// history is compacted past everything the API server had seen (as when another API server of
/// an HA control plane took the writes during a partition): the API server re-lists, ending its
/// clients' watches, and their resumption from their last resourceVersion gets 410 Gone (or 429
/// while the re-list runs). The webhook must relist and take the missed changes whole: once it
/// has given a pod a new answer (or a 503), never the old one. Needs a control plane of its own.
pub(super) async fn gone_scenario(harness: &Harness, transcript: &mut Transcript) {
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
    // pod's first answer that is not old, an old one for that pod is a stale allow. Per pod, and
    // the moved namespace may briefly get the store's new value: the API server re-lists each
    // resource on its own, so one watch (store or namespaces) may end a moment after the other,
    // and until it ends nobody, the API server included, can know that its resource changed.
    let no_return = |final_verdict: fn(&Verdict) -> bool, interim: fn(&Verdict) -> bool| {
        let noticed = std::cell::Cell::new(false);
        move |verdict: &Verdict| {
            if *verdict == Verdict::Value(GONE_OLD.into()) {
                return !noticed.get();
            }
            noticed.set(true);
            is_syncing(verdict) || final_verdict(verdict) || interim(verdict)
        }
    };
    let new_value = |v: &Verdict| *v == Verdict::Value(GONE_NEW.into());
    let nothing = |_: &Verdict| false;
    let moved_final = |v: &Verdict| matches!(v, Verdict::Denied(403, _));
    let stays_final = |v: &Verdict| *v == Verdict::Value(GONE_NEW.into());
    let (_, moved_seen) = admit_until(
        harness,
        transcript,
        &moved,
        no_return(moved_final, new_value),
        moved_final,
    )
    .await;
    let (_, stays_seen) = admit_until(
        harness,
        transcript,
        &stays,
        no_return(stays_final, nothing),
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
pub(super) async fn down_at_start_scenario(harness: &mut Harness, transcript: &mut Transcript) {
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
