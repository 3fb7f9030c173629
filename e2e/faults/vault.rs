//! The Vault scenarios: OpenBao behind a delaying proxy, and [`BadVault`], a tiny HTTP server
//! answering 500s, garbage, truncated or endless bodies, resets, silence and a redirect, with
//! the VaultConfigs and credentials that point the binary at them ([`VaultSide`]).

use super::*;

/// What misbehaviour a [`BadVault`] path asks for.
pub(super) const BAD_MODES: [&str; 10] = [
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
pub(super) const HUGE_MODE: &str = "huge";
/// How much the huge body sends at most (less when the webhook hangs up).
pub(super) const HUGE_BODY: usize = 256 << 20;

/// A Vault that answers every read badly, chosen by the path (`/v1/secret/data/<mode>/...`),
/// and a "thief" listener that its redirect and the binary's `VAULT_ADDR` point at, which must
/// never be reached.
pub(super) struct BadVault {
    address: SocketAddr,
    pub(super) thief: SocketAddr,
    thief_visits: Arc<AtomicUsize>,
    tasks: [JoinHandle<()>; 2],
}

impl BadVault {
    pub(super) async fn start() -> Self {
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

    pub(super) fn url(&self) -> String {
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

pub(super) async fn answer_badly(mut stream: TcpStream, thief: SocketAddr) {
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
pub(super) struct VaultSide {
    /// Runs as long as the side does.
    _bao: OpenBao,
    slow: TcpProxy,
    pub(super) bad: BadVault,
    /// Credentials that must never appear anywhere.
    credentials: Vec<String>,
}

impl VaultSide {
    pub(super) async fn start(api: &Api) -> Self {
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

    pub(super) fn assert_no_credential(&self, what: &str, text: &str) {
        for credential in &self.credentials {
            assert!(
                !text.contains(credential.as_str()),
                "{what} leaks a Vault credential"
            );
        }
    }
}

/// A Spark driver of the finance domain taking `key` from VaultConfig `config`.
pub(super) fn vault_pod(config: &str, key: &str, uid: &str) -> Value {
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
pub(super) async fn slow_vault_scenario(
    harness: &Harness,
    vault: &VaultSide,
    transcript: &mut Transcript,
) {
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
pub(super) async fn bad_vault_scenario(
    harness: &Harness,
    vault: &VaultSide,
    transcript: &mut Transcript,
) {
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
pub(super) fn cause(message: &str) -> &str {
    message
        .split_once("cannot answer (")
        .and_then(|(_, rest)| rest.rsplit_once("); this is temporary"))
        .map_or(message, |(cause, _)| cause)
}
