//! The Vault backend against a real server: OpenBao (the Vault fork with the same API) started by
//! each test, and the webhook's real watches of VaultConfigs (the shipped CRD), credentials
//! Secrets, stores and Namespaces on a real kube-apiserver with etcd, answering real
//! AdmissionReviews.
//!
//! The tests share one control plane (`tests/support/control_plane/`); each has a store
//! namespace of its own, so that its VaultConfigs and Secrets are its alone. When the control
//! plane's binaries are missing, each test says how to build them and skips, except with
//! `CI=true`, where it fails. Vault reads and logins are counted at the server, from OpenBao's
//! file audit device.

#[path = "support/control_plane/mod.rs"]
mod control_plane;
#[path = "vault/echo_vault.rs"]
mod echo_vault;
mod support;
use echo_vault::*;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use iomete_secrets_webhook::admission::{Admitter, Limits};
use iomete_secrets_webhook::backends::Backends;
use iomete_secrets_webhook::backends::kubernetes::{KubernetesCaches, ScopePolicy};
use iomete_secrets_webhook::backends::vault::metrics::VaultMetrics;
use iomete_secrets_webhook::backends::vault::resource::VaultConfigSpec;
use iomete_secrets_webhook::backends::vault::{VaultBackend, VaultSettings};
use iomete_secrets_webhook::decision::injection::Settings;
use iomete_secrets_webhook::decision::scope::{VaultOwner, VaultOwners};
use serde_json::{Value, json};

use control_plane::{Admin, ControlPlane};
use support::openbao::{OpenBao, OpenBaoOptions};
use support::{fixture, patched_object, review_of};

const FINANCE_NS: &str = "finance-jobs";
const MARKETING_NS: &str = "marketing-jobs";
const CANARY: &str = "vault-canary-5d1e";
const READ_POLICY: &str = r#"path "secret/data/production/*" { capabilities = ["read"] }
path "secret/data/spark" { capabilities = ["read"] }"#;

/// The webhook's backends on real watches of the API server, and an admitter over them.
struct Webhook {
    plane: &'static ControlPlane,
    admin: Admin,
    /// This test's store namespace (also its only admin namespace).
    store: String,
    admitter: Admitter,
    stores: KubernetesCaches,
    vault: VaultBackend,
    metrics: VaultMetrics,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Webhook {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

fn settings() -> VaultSettings {
    support::vault_settings()
}

impl Webhook {
    /// The backends watching the shared control plane with a store namespace of their own;
    /// `None` (skip) when its binaries are missing outside CI.
    async fn start(mut vault_settings: VaultSettings) -> Option<Webhook> {
        static STORES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let plane = tokio::task::block_in_place(|| {
            let plane = ControlPlane::shared("tests/vault.rs")?;
            plane.install_vaultconfig_crd();
            Some(plane)
        })?;
        let admin = plane.admin().await;
        let store = format!(
            "vault-store-{:02}",
            STORES.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        // Every test labels these two the same way, and none relabels them.
        admin
            .apply_namespace(FINANCE_NS, &[("iomete.com/domain", "finance")])
            .await;
        admin
            .apply_namespace(MARKETING_NS, &[("iomete.com/domain", "marketing")])
            .await;
        admin.apply_namespace(&store, &[]).await;
        admin
            .apply_secret(
                &store,
                "iomete-secret-store-finance",
                &[("db_password", b"k8s-finance-db")],
            )
            .await;
        let client = admin.client.clone();
        let store_settings = ScopePolicy {
            store_namespace: store.clone(),
            admin_namespaces: BTreeSet::from([store.clone()]),
            domain_label: "iomete.com/domain".into(),
        };
        let (stores, drive_stores) = KubernetesCaches::watch(client.clone(), store_settings);
        let metrics = VaultMetrics::default();
        vault_settings.store_namespace = store.clone();
        let (vault, drive_vault) =
            VaultBackend::watch(client, vault_settings, stores.clone(), metrics.clone());
        let tasks = vec![tokio::spawn(drive_stores), tokio::spawn(drive_vault)];
        tokio::time::timeout(Duration::from_secs(60), stores.until_fresh())
            .await
            .expect("the store caches sync");
        wait_for("the VaultConfigs to load", || vault.is_fresh()).await;
        let admitter = Admitter::new(
            Arc::new(Backends {
                kubernetes: stores.clone(),
                vault: vault.clone(),
            }),
            Settings::env_delivery(true),
            Limits {
                timeout: Duration::from_secs(8),
                max_in_flight: 2048,
            },
        );
        Some(Webhook {
            plane,
            admin,
            store,
            admitter,
            stores,
            vault,
            metrics,
            tasks,
        })
    }

    /// Creates or updates a VaultConfig and waits until the webhook's cache holds this spec.
    async fn apply_config(&self, name: &str, spec: Value) {
        self.admin
            .apply_vault_config(&self.store, name, spec.clone())
            .await;
        let expected: VaultConfigSpec = serde_json::from_value(spec).expect("a VaultConfig spec");
        wait_for("the VaultConfig to reach the cache", || {
            self.vault
                .config(name)
                .is_some_and(|config| config.spec == expected)
        })
        .await;
    }

    /// Writes the domain's credentials Secret and waits until the webhook's cache holds it.
    async fn apply_credentials(&self, domain: &str, data: &[(&str, &str)]) {
        let name = format!("iomete-vault-credentials-{domain}");
        let bytes: Vec<(&str, &[u8])> = data.iter().map(|(k, v)| (*k, v.as_bytes())).collect();
        self.admin.apply_secret(&self.store, &name, &bytes).await;
        wait_for("the credentials to reach the cache", || {
            self.stores.vault_credentials(&name).is_some_and(|secret| {
                let stored = secret.data.clone().unwrap_or_default();
                data.iter().all(|(key, value)| {
                    stored
                        .get(*key)
                        .is_some_and(|bytes| bytes.0 == value.as_bytes())
                })
            })
        })
        .await;
    }

    /// Admits the Spark driver fixture with `entries` (env var, source JSON, key) in `namespace`.
    async fn admit(&self, namespace: &str, entries: &[(&str, Value, &str)]) -> (Value, Value) {
        let review = review_of(driver_with(entries), namespace);
        let answer = self
            .admitter
            .review(serde_json::to_vec(&review).unwrap().as_slice())
            .await;
        (review, serde_json::from_slice(&answer.body).unwrap())
    }
}

/// A webhook with one AppRole VaultConfig `name` of domain finance reading below `path`.
async fn with_approle_config(
    bao: &OpenBao,
    (role_id, secret_id): (&str, &str),
    name: &str,
    path: &str,
    vault_settings: VaultSettings,
) -> Option<Webhook> {
    let webhook = Webhook::start(vault_settings).await?;
    let (role_key, secret_key) = (format!("{name}.roleId"), format!("{name}.secretId"));
    webhook
        .apply_credentials("finance", &[(&role_key, role_id), (&secret_key, secret_id)])
        .await;
    webhook
        .apply_config(name, config_spec(bao, path, "SecretPerKey", "AppRole"))
        .await;
    Some(webhook)
}

fn vault(config: &str) -> Value {
    json!({"type": "VAULT", "id": config})
}

fn kubernetes(id: &str) -> Value {
    json!({"type": "KUBERNETES", "id": id})
}

fn driver_with(entries: &[(&str, Value, &str)]) -> Value {
    let annotation: Vec<Value> = entries
        .iter()
        .map(|(env, source, key)| json!({"key": env, "secretObject": {"key": key, "source": source}}))
        .collect();
    let mut pod = fixture("spark/spark35-driver-pod.json");
    pod["metadata"]["annotations"]["secrets.iomete.com/env-secrets"] =
        json!(Value::Array(annotation).to_string());
    pod
}

fn env_of(review: &Value, answer: &Value, name: &str) -> Option<String> {
    let pod = patched_object(review, answer);
    pod["spec"]["containers"][0]["env"]
        .as_array()?
        .iter()
        .find(|var| var["name"] == name)
        .and_then(|var| var["value"].as_str())
        .map(str::to_owned)
}

fn denial(answer: &Value) -> (u64, String) {
    assert_eq!(answer["response"]["allowed"], false, "{answer}");
    (
        answer["response"]["status"]["code"].as_u64().unwrap_or(0),
        answer["response"]["status"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    )
}

/// Polls `condition` for a minute at most (generous: the API server and this machine are
/// shared with other tests and builds).
async fn wait_for(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn config_spec(bao: &OpenBao, path: &str, layout: &str, method: &str) -> Value {
    json!({
        "domain": "finance",
        "host": bao.address(),
        "path": path,
        "layout": layout,
        "auth": {"method": method},
    })
}

/// OpenBao with the production secrets, a read policy and an AppRole role.
async fn seeded_openbao(options: OpenBaoOptions) -> (OpenBao, String, String) {
    let bao = OpenBao::start_with(options).await;
    let admin = bao.admin();
    admin
        .kv_put(
            "secret",
            "production/db",
            json!({"value": CANARY, "username": "spark", "port": 5432, "tags": ["a"]}),
        )
        .await;
    admin
        .kv_put("secret", "production/team/s3", json!({"value": "s3-key"}))
        .await;
    admin
        .kv_put(
            "secret",
            "spark",
            json!({"password": "field-per-key", "user": "u"}),
        )
        .await;
    admin
        .kv_put("secret", "restricted/root", json!({"value": "no"}))
        .await;
    admin.write_policy("webhook-read", READ_POLICY).await;
    admin.enable_approle("approle").await;
    let (role_id, secret_id) = admin
        .approle_role("approle", "webhook", &["webhook-read"], "1h", "4h")
        .await;
    (bao, role_id, secret_id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv2_reads_through_both_layouts_fields_and_token_auth() {
    let (bao, _, _) = seeded_openbao(OpenBaoOptions::default()).await;
    let token = bao.admin().create_token(&["webhook-read"], "1h").await;
    let Some(webhook) = Webhook::start(settings()).await else {
        return;
    };
    webhook
        .apply_credentials(
            "finance",
            &[("per-key.token", &token), ("per-field.token", &token)],
        )
        .await;
    webhook
        .apply_config(
            "per-key",
            config_spec(&bao, "/v1/secret/data/production", "SecretPerKey", "Token"),
        )
        .await;
    webhook
        .apply_config(
            "per-field",
            config_spec(&bao, "/v1/secret/data/spark", "FieldPerKey", "Token"),
        )
        .await;

    let (review, answer) = webhook
        .admit(
            FINANCE_NS,
            &[
                ("DB_PASSWORD", vault("per-key"), "db"),
                ("DB_USER", vault("per-key"), "db#username"),
                ("DB_PORT", vault("per-key"), "db#port"),
                ("S3_KEY", vault("per-key"), "team/s3"),
                ("SPARK_PASSWORD", vault("per-field"), "password"),
            ],
        )
        .await;
    assert_eq!(answer["response"]["allowed"], true, "{answer}");
    assert_eq!(
        env_of(&review, &answer, "DB_PASSWORD").as_deref(),
        Some(CANARY)
    );
    assert_eq!(
        env_of(&review, &answer, "DB_USER").as_deref(),
        Some("spark")
    );
    assert_eq!(env_of(&review, &answer, "DB_PORT").as_deref(), Some("5432"));
    assert_eq!(
        env_of(&review, &answer, "S3_KEY").as_deref(),
        Some("s3-key")
    );
    assert_eq!(
        env_of(&review, &answer, "SPARK_PASSWORD").as_deref(),
        Some("field-per-key")
    );
    // Three fields of one secret cost one read.
    assert_eq!(bao.admin().audit_reads("secret/data/production/db"), 1);

    let (_, missing_field) = webhook
        .admit(FINANCE_NS, &[("X", vault("per-key"), "db#nope")])
        .await;
    let (code, message) = denial(&missing_field);
    assert_eq!(code, 404);
    assert!(
        message.contains("\"per-key\"")
            && message.contains("/v1/secret/data/production/db")
            && message.contains("\"nope\""),
        "{message}"
    );
    let (_, missing_secret) = webhook
        .admit(FINANCE_NS, &[("X", vault("per-key"), "ghost")])
        .await;
    let (code, message) = denial(&missing_secret);
    assert_eq!(code, 404);
    assert!(
        message.contains("no secret at /v1/secret/data/production/ghost"),
        "{message}"
    );
    let (_, not_text) = webhook
        .admit(FINANCE_NS, &[("X", vault("per-key"), "db#tags")])
        .await;
    assert_eq!(denial(&not_text).0, 400);
    let (_, nested_field_per_key) = webhook
        .admit(FINANCE_NS, &[("X", vault("per-field"), "a/b")])
        .await;
    assert_eq!(denial(&nested_field_per_key).0, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scope_is_the_configuration_domain_and_the_policy_is_enforced_by_vault() {
    let (bao, role_id, secret_id) = seeded_openbao(OpenBaoOptions::default()).await;
    let Some(webhook) = with_approle_config(
        &bao,
        (&role_id, &secret_id),
        "prod",
        "/v1/secret/data",
        settings(),
    )
    .await
    else {
        return;
    };
    // Another domain's namespace: denied before Vault is asked. (The status checks talk to
    // Vault on their own schedule, so only reads of the secret itself are counted.)
    let (_, answer) = webhook
        .admit(MARKETING_NS, &[("DB", vault("prod"), "production/db")])
        .await;
    let (code, message) = denial(&answer);
    assert_eq!(code, 403);
    assert!(message.contains("domain \"finance\""), "{message}");
    assert_eq!(bao.admin().audit_reads("secret/data/production/db"), 0);
    // The admin namespace is not the domain either.
    let (_, answer) = webhook
        .admit(&webhook.store, &[("DB", vault("prod"), "production/db")])
        .await;
    assert_eq!(denial(&answer).0, 403);
    assert_eq!(bao.admin().audit_reads("secret/data/production/db"), 0);
    // Inside the policy it works, with AppRole.
    let (review, answer) = webhook
        .admit(FINANCE_NS, &[("DB", vault("prod"), "production/db")])
        .await;
    assert_eq!(env_of(&review, &answer, "DB").as_deref(), Some(CANARY));
    // A path outside the Vault policy: Vault says 403, so does the webhook, and a forbidden
    // path costs no new login (the token is checked, still valid).
    let logins = bao.admin().audit_logins();
    let (_, answer) = webhook
        .admit(FINANCE_NS, &[("ROOT", vault("prod"), "restricted/root")])
        .await;
    let (code, message) = denial(&answer);
    assert_eq!(code, 403);
    assert!(message.contains("secret/data/restricted/root"), "{message}");
    assert!(message.contains("permission denied"), "{message}");
    assert_eq!(bao.admin().audit_logins(), logins);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kubernetes_store_and_a_vault_secret_in_one_pod() {
    let (bao, role_id, secret_id) = seeded_openbao(OpenBaoOptions::default()).await;
    let Some(webhook) = with_approle_config(
        &bao,
        (&role_id, &secret_id),
        "prod",
        "/v1/secret/data/production",
        settings(),
    )
    .await
    else {
        return;
    };
    let (review, answer) = webhook
        .admit(
            FINANCE_NS,
            &[
                ("FROM_VAULT", vault("prod"), "db"),
                ("FROM_STORE", kubernetes("finance"), "db_password"),
            ],
        )
        .await;
    assert_eq!(answer["response"]["allowed"], true, "{answer}");
    assert_eq!(
        env_of(&review, &answer, "FROM_VAULT").as_deref(),
        Some(CANARY)
    );
    assert_eq!(
        env_of(&review, &answer, "FROM_STORE").as_deref(),
        Some("k8s-finance-db")
    );
    let audit = answer["response"]["auditAnnotations"].to_string();
    assert!(!audit.contains(CANARY), "{audit}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approle_inside_a_vault_namespace() {
    let bao = OpenBao::start().await;
    let team = bao.admin().create_namespace("team-a").await;
    team.enable_kv2("kv").await;
    team.kv_put("kv", "apps/db", json!({"value": "namespaced-value"}))
        .await;
    team.write_policy(
        "read-apps",
        r#"path "kv/data/apps/*" { capabilities = ["read"] }"#,
    )
    .await;
    team.enable_approle("approle").await;
    let (role_id, secret_id) = team
        .approle_role("approle", "webhook", &["read-apps"], "1h", "4h")
        .await;
    let Some(webhook) = Webhook::start(settings()).await else {
        return;
    };
    webhook
        .apply_credentials(
            "finance",
            &[("team.roleId", &role_id), ("team.secretId", &secret_id)],
        )
        .await;
    let mut spec = config_spec(&bao, "/v1/kv/data/apps", "SecretPerKey", "AppRole");
    spec["vaultNamespace"] = json!("team-a");
    webhook.apply_config("team", spec).await;
    let (review, answer) = webhook
        .admit(FINANCE_NS, &[("DB", vault("team"), "db")])
        .await;
    assert_eq!(
        env_of(&review, &answer, "DB").as_deref(),
        Some("namespaced-value"),
        "{answer}"
    );
    assert_eq!(team.audit_reads("kv/data/apps/db"), 1);
    assert!(team.audit_logins() >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_lived_approle_tokens_are_renewed_and_replaced() {
    let (bao, _, _) = seeded_openbao(OpenBaoOptions::default()).await;
    // Tokens live 2 s and at most 5 s in all: admissions over 8 s need renewals and new logins.
    let (role_id, secret_id) = bao
        .admin()
        .approle_role("approle", "short", &["webhook-read"], "2s", "5s")
        .await;
    let mut vault_settings = settings();
    vault_settings.cache_ttl = Duration::ZERO;
    // Counted from before the first login: the status checks may make it.
    let logins_before = bao.admin().audit_logins();
    let Some(webhook) = with_approle_config(
        &bao,
        (&role_id, &secret_id),
        "short",
        "/v1/secret/data/production",
        vault_settings,
    )
    .await
    else {
        return;
    };
    let started = Instant::now();
    let mut admitted = 0;
    while started.elapsed() < Duration::from_secs(8) {
        let (review, answer) = webhook
            .admit(FINANCE_NS, &[("DB", vault("short"), "db")])
            .await;
        assert_eq!(
            env_of(&review, &answer, "DB").as_deref(),
            Some(CANARY),
            "after {:?}: {answer}",
            started.elapsed()
        );
        admitted += 1;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let renewals = bao
        .admin()
        .audit_requests(|entry| entry["request"]["path"] == "auth/token/renew-self");
    let logins = bao.admin().audit_logins() - logins_before;
    assert!(admitted >= 20, "{admitted}");
    assert!(renewals >= 1, "no renewal in 8 s of 2 s tokens");
    assert!(
        logins >= 2,
        "no new login after the 5 s max TTL: {logins} in all"
    );
    assert!(
        logins <= 6,
        "a login per admission is not reuse: {logins} for {admitted}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_is_verified_against_the_configuration_ca_bundle() {
    let (bao, role_id, secret_id) = seeded_openbao(OpenBaoOptions { tls: true }).await;
    let Some(webhook) = Webhook::start(settings()).await else {
        return;
    };
    webhook
        .apply_credentials(
            "finance",
            &[
                ("trusted.roleId", &role_id),
                ("trusted.secretId", &secret_id),
                ("untrusted.roleId", &role_id),
                ("untrusted.secretId", &secret_id),
            ],
        )
        .await;
    let mut trusted = config_spec(
        &bao,
        "/v1/secret/data/production",
        "SecretPerKey",
        "AppRole",
    );
    trusted["caBundle"] = json!(bao.ca_pem().expect("a TLS server has a CA"));
    webhook.apply_config("trusted", trusted).await;
    webhook
        .apply_config(
            "untrusted",
            config_spec(
                &bao,
                "/v1/secret/data/production",
                "SecretPerKey",
                "AppRole",
            ),
        )
        .await;
    assert!(bao.address().starts_with("https://"));
    let (review, answer) = webhook
        .admit(FINANCE_NS, &[("DB", vault("trusted"), "db")])
        .await;
    assert_eq!(
        env_of(&review, &answer, "DB").as_deref(),
        Some(CANARY),
        "{answer}"
    );
    // Without the CA the server's certificate is not trusted: no login is even attempted.
    let logins = bao.admin().audit_logins();
    let (_, answer) = webhook
        .admit(FINANCE_NS, &[("DB", vault("untrusted"), "db")])
        .await;
    let (code, message) = denial(&answer);
    assert_eq!(code, 503, "{message}");
    assert!(message.contains("cannot reach Vault"), "{message}");
    assert_eq!(bao.admin().audit_logins(), logins);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_500_executors_costs_vault_one_read_and_one_login() {
    let (bao, role_id, secret_id) = seeded_openbao(OpenBaoOptions::default()).await;
    let Some(webhook) = with_approle_config(
        &bao,
        (&role_id, &secret_id),
        "prod",
        "/v1/secret/data/production",
        settings(),
    )
    .await
    else {
        return;
    };
    let webhook = Arc::new(webhook);
    // The status check logs in and probes on its own schedule; count only the burst.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let logins_before = bao.admin().audit_logins();
    let reads_before = bao.admin().audit_reads("secret/data/production/db");
    let burst = (0..500).map(|_| {
        let webhook = webhook.clone();
        tokio::spawn(async move {
            let (review, answer) = webhook
                .admit(FINANCE_NS, &[("DB", vault("prod"), "db")])
                .await;
            env_of(&review, &answer, "DB")
        })
    });
    let values = futures::future::join_all(burst).await;
    assert!(
        values
            .iter()
            .all(|value| value.as_ref().unwrap().as_deref() == Some(CANARY))
    );
    assert_eq!(
        bao.admin().audit_reads("secret/data/production/db") - reads_before,
        1
    );
    assert!(bao.admin().audit_logins() - logins_before <= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vault_down_denies_vault_pods_503_only_and_recovers_without_a_restart() {
    let (mut bao, role_id, secret_id) = seeded_openbao(OpenBaoOptions::default()).await;
    let mut vault_settings = settings();
    vault_settings.cache_ttl = Duration::ZERO;
    let Some(webhook) = with_approle_config(
        &bao,
        (&role_id, &secret_id),
        "prod",
        "/v1/secret/data/production",
        vault_settings,
    )
    .await
    else {
        return;
    };
    let (review, answer) = webhook
        .admit(FINANCE_NS, &[("DB", vault("prod"), "db")])
        .await;
    assert_eq!(env_of(&review, &answer, "DB").as_deref(), Some(CANARY));

    bao.stop();
    let started = Instant::now();
    let (_, answer) = webhook
        .admit(FINANCE_NS, &[("DB", vault("prod"), "db")])
        .await;
    let (code, message) = denial(&answer);
    assert_eq!(code, 503, "{message}");
    assert!(message.contains("retry"), "{message}");
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
    let started = Instant::now();
    let (review, answer) = webhook
        .admit(FINANCE_NS, &[("DB", kubernetes("finance"), "db_password")])
        .await;
    assert_eq!(
        env_of(&review, &answer, "DB").as_deref(),
        Some("k8s-finance-db")
    );
    assert!(started.elapsed() < Duration::from_millis(500));

    // Dev mode forgets everything on restart: seed it again, as an operator restoring Vault.
    bao.restart().await;
    let admin = bao.admin();
    admin
        .kv_put("secret", "production/db", json!({"value": "after-restart"}))
        .await;
    admin.write_policy("webhook-read", READ_POLICY).await;
    admin.enable_approle("approle").await;
    let (role_id, secret_id) = admin
        .approle_role("approle", "webhook", &["webhook-read"], "1h", "4h")
        .await;
    webhook
        .apply_credentials(
            "finance",
            &[("prod.roleId", &role_id), ("prod.secretId", &secret_id)],
        )
        .await;
    let (review, answer) = webhook
        .admit(FINANCE_NS, &[("DB", vault("prod"), "db")])
        .await;
    assert_eq!(
        env_of(&review, &answer, "DB").as_deref(),
        Some("after-restart"),
        "{answer}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_values_bridge_an_outage_only_when_asked_to() {
    let (mut bao, role_id, secret_id) = seeded_openbao(OpenBaoOptions::default()).await;
    let mut vault_settings = settings();
    vault_settings.cache_ttl = Duration::from_millis(200);
    vault_settings.stale_if_error = Some(Duration::from_secs(60));
    let Some(webhook) = with_approle_config(
        &bao,
        (&role_id, &secret_id),
        "prod",
        "/v1/secret/data/production",
        vault_settings,
    )
    .await
    else {
        return;
    };
    let (_, answer) = webhook
        .admit(FINANCE_NS, &[("DB", vault("prod"), "db")])
        .await;
    assert_eq!(answer["response"]["allowed"], true);
    bao.stop();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (review, answer) = webhook
        .admit(FINANCE_NS, &[("DB", vault("prod"), "db")])
        .await;
    assert_eq!(
        env_of(&review, &answer, "DB").as_deref(),
        Some(CANARY),
        "{answer}"
    );
    let warnings = answer["response"]["warnings"].to_string();
    assert!(warnings.contains("--vault-stale-if-error"), "{warnings}");
    assert!(!warnings.contains(CANARY));
    let mut exposition = String::new();
    let mut registry = prometheus_client::registry::Registry::default();
    webhook.metrics.register(&mut registry);
    prometheus_client::encoding::text::encode(&mut exposition, &registry).unwrap();
    assert!(
        exposition.contains(r#"vault_cache_lookups_total{config="prod",class="stale"} 1"#),
        "{exposition}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configuration_changes_and_deletion_are_picked_up_without_a_restart() {
    let (bao, role_id, secret_id) = seeded_openbao(OpenBaoOptions::default()).await;
    let Some(webhook) = Webhook::start(settings()).await else {
        return;
    };
    // Credentials missing: the configuration cannot be used, and says why.
    webhook
        .apply_config(
            "prod",
            config_spec(
                &bao,
                "/v1/secret/data/production",
                "SecretPerKey",
                "AppRole",
            ),
        )
        .await;
    let (_, answer) = webhook
        .admit(FINANCE_NS, &[("DB", vault("prod"), "db")])
        .await;
    let (code, message) = denial(&answer);
    assert_eq!(code, 500);
    assert!(
        message.contains("iomete-vault-credentials-finance") && message.contains("does not exist"),
        "{message}"
    );
    // Wrong secret ID: Vault refuses the login.
    webhook
        .apply_credentials(
            "finance",
            &[
                ("prod.roleId", &role_id),
                ("prod.secretId", "not-the-secret-id"),
            ],
        )
        .await;
    let (_, answer) = webhook
        .admit(FINANCE_NS, &[("DB", vault("prod"), "db")])
        .await;
    let (code, message) = denial(&answer);
    assert_eq!(code, 403, "{message}");
    assert!(message.contains("login"), "{message}");
    assert!(!message.contains("not-the-secret-id"), "{message}");
    // Fixed credentials: the next pod works.
    webhook
        .apply_credentials(
            "finance",
            &[("prod.roleId", &role_id), ("prod.secretId", &secret_id)],
        )
        .await;
    let (review, answer) = webhook
        .admit(FINANCE_NS, &[("DB", vault("prod"), "db")])
        .await;
    assert_eq!(
        env_of(&review, &answer, "DB").as_deref(),
        Some(CANARY),
        "{answer}"
    );
    // The prefix moves: new pods read the new place.
    webhook
        .apply_config(
            "prod",
            config_spec(
                &bao,
                "/v1/secret/data/production/team",
                "SecretPerKey",
                "AppRole",
            ),
        )
        .await;
    let (review, answer) = webhook
        .admit(FINANCE_NS, &[("S3", vault("prod"), "s3")])
        .await;
    assert_eq!(
        env_of(&review, &answer, "S3").as_deref(),
        Some("s3-key"),
        "{answer}"
    );
    // Deleted: a clear 404 naming it.
    webhook
        .admin
        .delete_vault_config(&webhook.store, "prod")
        .await;
    wait_for("the deletion to reach the cache", || {
        webhook.vault.owner("prod") == VaultOwner::NoSuchConfig
    })
    .await;
    let (_, answer) = webhook
        .admit(FINANCE_NS, &[("DB", vault("prod"), "db")])
        .await;
    let (code, message) = denial(&answer);
    assert_eq!(code, 404);
    assert!(message.contains("\"prod\""), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_conditions_say_which_configurations_work_and_why_not() {
    let (bao, role_id, secret_id) = seeded_openbao(OpenBaoOptions::default()).await;
    let token = bao.admin().create_token(&["webhook-read"], "24h").await;
    let no_read = bao.admin().create_token(&["default"], "1h").await;
    let Some(webhook) = Webhook::start(settings()).await else {
        return;
    };
    webhook
        .apply_credentials(
            "finance",
            &[
                ("good.roleId", &role_id),
                ("good.secretId", &secret_id),
                ("bad-login.roleId", &role_id),
                ("bad-login.secretId", "wrong"),
                ("token.token", &token),
                ("no-read.token", &no_read),
            ],
        )
        .await;
    let base = "/v1/secret/data/production";
    webhook
        .apply_config("good", config_spec(&bao, base, "SecretPerKey", "AppRole"))
        .await;
    webhook
        .apply_config(
            "bad-login",
            config_spec(&bao, base, "SecretPerKey", "AppRole"),
        )
        .await;
    webhook
        .apply_config("token", config_spec(&bao, base, "SecretPerKey", "Token"))
        .await;
    webhook
        .apply_config("no-read", config_spec(&bao, base, "SecretPerKey", "Token"))
        .await;
    webhook
        .apply_config("no-creds", config_spec(&bao, base, "SecretPerKey", "Token"))
        .await;
    // A path that is no KV v2 path: the shipped CRD's schema refuses it before the webhook
    // could see it.
    let refused = webhook
        .admin
        .try_apply_vault_config(
            &webhook.store,
            "bad-path",
            config_spec(&bao, "/secret/production", "SecretPerKey", "Token"),
        )
        .await;
    assert!(
        matches!(&refused, Err(kube::Error::Api(status)) if status.code == 422 && status.message.contains("spec.path")),
        "{refused:?}"
    );
    // A spec the schema lets through and the webhook cannot use: a Vault namespace that
    // climbs out of its parent.
    let mut bad_namespace = config_spec(&bao, base, "SecretPerKey", "Token");
    bad_namespace["vaultNamespace"] = json!("team/../../escape");
    webhook.apply_config("bad-namespace", bad_namespace).await;
    let expected = [
        ("good", "True", "Connected"),
        ("bad-login", "False", "LoginFailed"),
        ("token", "True", "Connected"),
        ("no-read", "False", "ReadDenied"),
        ("no-creds", "False", "CredentialsInvalid"),
        ("bad-namespace", "False", "InvalidSpec"),
    ];
    let names = expected.map(|(name, ..)| name);
    let conditions = wait_for_conditions(&webhook, &names, |name, condition| {
        expected.iter().any(|(expected_name, status, reason)| {
            *expected_name == name
                && condition["status"] == *status
                && condition["reason"] == *reason
        })
    })
    .await;
    let ready_of = |name: &str| conditions[name].clone();
    let token_message = ready_of("token")["message"].to_string();
    assert!(token_message.contains("expires at"), "{token_message}");
    let good = ready_of("good");
    assert_eq!(good["observedGeneration"], 1);
    for (name, _, _) in expected {
        let text = ready_of(name).to_string();
        for secret in [token.as_str(), &no_read, &secret_id, &role_id, CANARY] {
            assert!(!text.contains(secret), "{name}: {text}");
        }
    }
    // Writes are idempotent: a re-check that finds the same writes nothing.
    let version_of = async || {
        let good = webhook.admin.vault_config(&webhook.store, "good").await;
        good.unwrap()["metadata"]["resourceVersion"].clone()
    };
    let version = version_of().await;
    webhook.vault.notify_changed();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(version_of().await, version);
    // kubectl shows them.
    let output = webhook.plane.kubectl_ok(
        &["get", "vaultconfigs", "-n", &webhook.store, "-o", "json"],
        None,
    );
    assert!(
        output.contains("good") && output.contains("LoginFailed"),
        "{output}"
    );
}

/// Waits until every VaultConfig of `names` has a Ready condition that `settled` accepts;
/// returns the conditions by name.
async fn wait_for_conditions(
    webhook: &Webhook,
    names: &[&str],
    settled: impl Fn(&str, &Value) -> bool,
) -> std::collections::BTreeMap<String, Value> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut conditions = std::collections::BTreeMap::new();
        for name in names {
            let config = webhook.admin.vault_config(&webhook.store, name).await;
            let condition = config.and_then(|config| {
                config["status"]["conditions"]
                    .as_array()?
                    .iter()
                    .find(|c| c["type"] == "Ready")
                    .cloned()
            });
            if let Some(condition) = condition {
                conditions.insert(name.to_string(), condition);
            }
        }
        let done = names.iter().all(|name| {
            conditions
                .get(*name)
                .is_some_and(|condition| settled(name, condition))
        });
        if done {
            return conditions;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for every Ready condition: {conditions:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vault_failures_are_reported_by_status_code_never_by_body() {
    use iomete_secrets_webhook::backends::vault::client::{Credentials, VaultError};
    let vault = EchoVault::start().await;
    let read = |prefix: &'static str| {
        let connection = echo_connection(&vault, prefix, token(TOKEN_CANARY), None);
        async move { connection.read(&format!("{prefix}/db")).await }
    };
    let cases = [
        (
            "echo403",
            VaultError::PermissionDenied {
                path: "/v1/secret/data/echo403/db".into(),
            },
        ),
        (
            "echo500",
            VaultError::Unavailable("Vault answered 500 Internal Server Error".into()),
        ),
        (
            "echo400",
            VaultError::Unavailable("Vault answered 400 Bad Request".into()),
        ),
        (
            "echo502",
            VaultError::Unavailable("Vault answered 502 Bad Gateway".into()),
        ),
    ];
    for (mode, expected) in cases {
        let error = read(mode).await.expect_err("a failure");
        assert_quotes_nothing(mode, &error.to_string());
        assert_eq!(error, expected);
    }
    // A token lookup refused (the status check's first step).
    let lookup = echo_connection(
        &vault,
        "ok",
        token(&format!("{TOKEN_CANARY}-lookup403")),
        None,
    );
    let error = lookup.check_token().await.expect_err("a refused lookup");
    assert_quotes_nothing("lookup", &error.to_string());
    assert_eq!(
        error.to_string(),
        "permission denied reading auth/token/lookup-self (Vault answered 403)"
    );
    // A login refused, with the mount echoing what it got.
    for (mount, expected) in [
        (
            "echo400",
            "login refused: AppRole login at auth/echo400 answered 400: the role ID or secret ID was not accepted",
        ),
        (
            "echo403",
            "login refused: AppRole login at auth/echo403 answered 403: permission denied",
        ),
    ] {
        let approle = Credentials::AppRole {
            role_id: TOKEN_CANARY.into(),
            secret_id: TOKEN_CANARY.into(),
        };
        let connection = echo_connection(&vault, "ok", approle, Some(mount));
        let error = connection.read("ok/db").await.expect_err("a refused login");
        assert_quotes_nothing(mount, &error.to_string());
        assert_eq!(error.to_string(), expected);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vault_answers_past_their_cap_are_refused_whatever_their_framing() {
    use iomete_secrets_webhook::backends::vault::client::{Credentials, FieldValue, VaultError};
    use secrecy::ExposeSecret as _;
    let vault = EchoVault::start().await;
    let kv_too_large =
        VaultError::Unavailable(format!("Vault's answer is larger than {KV_CAP} bytes"));
    let auth_too_large =
        VaultError::Unavailable(format!("Vault's answer is larger than {AUTH_CAP} bytes"));
    // A declared length past the cap, chunks adding up past it, a body that ends only when the
    // connection does, and one byte too many.
    for mode in ["huge", "chunked", "unframed", "overbyone"] {
        let connection = echo_connection(&vault, mode, token(TOKEN_CANARY), None);
        let error = connection.read(&format!("{mode}/db")).await.err();
        assert_eq!(error.as_ref(), Some(&kv_too_large), "{mode}");
    }
    // An answer of exactly the cap is read.
    let connection = echo_connection(&vault, "atcap", token(TOKEN_CANARY), None);
    let fields = connection
        .read("atcap/db")
        .await
        .expect("an answer at the cap");
    let Some(FieldValue::Text(value)) = fields.get("value") else {
        panic!("no text field");
    };
    // All but the envelope of the answer is the value.
    assert!(value.expose_secret().len() > KV_CAP - 1024);
    // A Content-Length below the truth: the answer ends where it says, and is not JSON.
    let connection = echo_connection(&vault, "understated", token(TOKEN_CANARY), None);
    let error = connection.read("understated/db").await.err();
    assert_eq!(
        error.map(|error| error.to_string()).as_deref(),
        Some("Vault answered with something that is not a Vault API response")
    );
    // Auth answers have a cap of their own: a login, a token lookup.
    let approle = Credentials::AppRole {
        role_id: "r".into(),
        secret_id: "s".into(),
    };
    let connection = echo_connection(&vault, "ok", approle, Some("hugelogin"));
    assert_eq!(
        connection.read("ok/db").await.err(),
        Some(auth_too_large.clone())
    );
    let connection = echo_connection(&vault, "ok", token("t-hugelookup"), None);
    assert_eq!(connection.check_token().await.err(), Some(auth_too_large));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denials_and_statuses_quote_nothing_vault_sent_back() {
    let echo = EchoVault::start().await;
    let Some(webhook) = Webhook::start(settings()).await else {
        return;
    };
    let lookup_token = format!("{TOKEN_CANARY}-lookup403");
    webhook
        .apply_credentials(
            "finance",
            &[
                ("read403.token", TOKEN_CANARY),
                ("read500.token", TOKEN_CANARY),
                ("lookup.token", &lookup_token),
                ("login.roleId", TOKEN_CANARY),
                ("login.secretId", TOKEN_CANARY),
                ("oversize.token", TOKEN_CANARY),
            ],
        )
        .await;
    let configs = [
        (
            "read403",
            echo.spec("echo403", "Token", None),
            403,
            "ReadDenied",
        ),
        (
            "read500",
            echo.spec("echo500", "Token", None),
            503,
            "Unreachable",
        ),
        (
            "lookup",
            echo.spec("echo403", "Token", None),
            403,
            "TokenInvalid",
        ),
        (
            "login",
            echo.spec("ok", "AppRole", Some("echo400")),
            403,
            "LoginFailed",
        ),
        (
            "oversize",
            echo.spec("chunked", "Token", None),
            503,
            "Unreachable",
        ),
    ];
    for (name, spec, _, _) in &configs {
        webhook.apply_config(name, spec.clone()).await;
    }
    let names: Vec<&str> = configs.iter().map(|(name, ..)| *name).collect();
    let conditions = wait_for_conditions(&webhook, &names, |_, _| true).await;
    for (name, _, code, reason) in configs {
        let condition = &conditions[name];
        assert_quotes_nothing(name, &condition.to_string());
        assert_eq!(condition["reason"], reason, "{name}: {condition}");
        let (_, answer) = webhook
            .admit(FINANCE_NS, &[("DB", vault(name), "db")])
            .await;
        let (denied, message) = denial(&answer);
        assert_quotes_nothing(name, &message);
        assert_eq!(denied, code, "{name}: {message}");
        if name == "oversize" {
            assert!(
                message.contains(&format!("Vault's answer is larger than {KV_CAP} bytes")),
                "{message}"
            );
        }
    }
    let (_, answer) = webhook
        .admit(FINANCE_NS, &[("DB", vault("read403"), "db")])
        .await;
    assert_eq!(
        denial(&answer).1,
        "Vault configuration \"read403\": Vault denied reading /v1/secret/data/echo403/db (403 permission denied); ask an administrator to check the Vault policy and credentials"
    );
}
