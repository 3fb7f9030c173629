//! Scope properties: random clusters, namespaces and references sent through the whole admission
//! path a pod takes, each decision compared with a small model of the scope rules written here
//! from the README alone.
//!
//! Every case builds its own webhook configuration (`--domain-label`, `--admin-namespaces`), its
//! own Namespace and store caches (fed as the watches feed them), a pod (the real Spark 3.5 driver
//! or executor from `tests/fixtures/spark/`) carrying random references, and sends the pod to the
//! [`Admitter`] inside the real GKE AdmissionReview capture. The answer must be exactly the
//! model's: the same allow or deny and code, and for an allowed pod exactly the requested values
//! where they belong, no other store value anywhere, and none at all in a dry run.
//!
//! The generator leans on the corners: label values that are uppercase, empty, too long, or equal
//! to the reserved ids `global` and `admin`; the domain label under a near-miss key, or under the
//! key another configuration would use; namespaces named like the reserved ids; admin lists with
//! near misses; pods that claim an admin namespace in their own metadata; executors, whose Spark
//! properties are authorized but not fetched; legacy placeholders; missing stores and keys.
//!
//! Vault references are left out: a Vault configuration's scope comes from its `VaultConfig`,
//! and the model covers the KUBERNETES stores only (each webhook here has its Vault backend
//! loaded, with no configuration).
//!
//! The run is 100 000 cases by default (`IOMETE_PROPERTY_CASES`), spread over the cores; the seed
//! is printed and can be replayed with `PROPTEST_RNG_SEED`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use iomete_secrets_webhook::admission::{Admitter, Limits};
use iomete_secrets_webhook::backends::Backends;
use iomete_secrets_webhook::backends::kubernetes::{CacheWriters, KubernetesCaches, ScopePolicy};
use iomete_secrets_webhook::backends::vault::VaultBackend;
use iomete_secrets_webhook::decision::expansion::kubelet_expand;
use iomete_secrets_webhook::decision::injection::{DRY_RUN_MARKER, Settings};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed, TestCaseError, TestRunner};
use serde_json::{Value, json};

mod support;
use support::log_capture::CapturedLog;
use support::{fixture, patched_object};

const STORE_NAMESPACE: &str = "iomete-system";
/// Namespace names, two of them equal to the reserved store ids.
const NAMESPACES: [&str; 8] = [
    "finance-jobs",
    "marketing-jobs",
    STORE_NAMESPACE,
    "global",
    "admin",
    "sandbox",
    "team-a",
    "kube-system",
];
/// Label keys the webhook can be configured to read the domain from.
const DOMAIN_LABELS: [&str; 2] = ["iomete.com/domain", "example.org/team"];
/// Keys that look like the domain label and are not.
const NEAR_MISS_LABELS: [&str; 3] = ["iomete.com/Domain", "domain", "iomete.com/domain-x"];
/// Label values and their weights: mostly the domains the references name, so that many pods
/// are in scope; the reserved ids; values that are not DNS labels (uppercase, empty, '_', a
/// leading or trailing '-', a dot, 64 characters); and a valid 63-character label.
const LABEL_VALUES: &[(&str, u32)] = &[
    ("finance", 24),
    ("marketing", 5),
    ("team-a", 2),
    ("global", 2),
    ("admin", 2),
    ("Finance", 1),
    ("", 1),
    ("fin_ance", 1),
    ("-finance", 1),
    ("finance-", 1),
    ("finance.eu", 1),
    (
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        1,
    ),
    (
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        1,
    ),
];
/// Entries `--admin-namespaces` may have, near misses included; the first is usually there.
const ADMIN_CANDIDATES: [&str; 7] = [
    STORE_NAMESPACE,
    "finance-jobs",
    "global",
    "admin",
    "sandbox",
    "Iomete-System",
    "iomete-system ",
];
/// Store ids that may exist in the store namespace, and their keys.
const STORE_IDS: [&str; 5] = ["finance", "marketing", "team-a", "global", "admin"];
const KEYS: [&str; 3] = ["k1", "k2", "db_password"];
/// Ids a reference may name and their weights: the stores, ids with no store, and ids that
/// are not DNS labels (rare, so most pods get as far as the scope check).
const REFERENCE_IDS: &[(&str, u32)] = &[
    ("global", 24),
    ("finance", 20),
    ("marketing", 3),
    ("team-a", 1),
    ("admin", 3),
    ("kube-system", 1),
    ("iomete-system", 1),
    ("Finance", 1),
    ("fin_ance", 1),
];
/// Keys a reference or placeholder may name and their weights; `missing` is in no store.
const REFERENCE_KEYS: &[(&str, u32)] = &[("k1", 3), ("k2", 2), ("db_password", 2), ("missing", 1)];

/// One random situation: a webhook configuration, a cluster, and a pod created in it.
#[derive(Debug, Clone)]
struct Case {
    domain_label: &'static str,
    admin_namespaces: Vec<&'static str>,
    /// The namespaces the webhook has seen, with their labels.
    cluster: Vec<(&'static str, Vec<(&'static str, &'static str)>)>,
    /// The AdmissionRequest's namespace.
    namespace: &'static str,
    /// What the pod's own `metadata.namespace` says, which must never matter.
    pod_claims: Option<&'static str>,
    stores: Vec<(&'static str, Vec<&'static str>)>,
    /// env-secrets entries `(store id, key)`, delivered as `VAR_<i>`.
    env: Vec<(&'static str, &'static str)>,
    /// spark-conf-secrets entries `(store id, key)`, delivered as `spark.p<i>`.
    spark: Vec<(&'static str, &'static str)>,
    /// Keys of legacy `${secrets.KEY}` placeholders, each in its own variable `LEGACY_<i>`.
    legacy: Vec<&'static str>,
    executor: bool,
    dry_run: bool,
    secrets_v2_enabled: bool,
}

/// Draws from a table of `(value, weight)` with the bits of a gene.
fn pick(table: &[(&'static str, u32)], gene: u32) -> &'static str {
    let total: u32 = table.iter().map(|(_, weight)| weight).sum();
    let mut draw = gene % total;
    for (value, weight) in table {
        if draw < *weight {
            return value;
        }
        draw -= weight;
    }
    unreachable!("the draw is below the total weight")
}

/// The raw draws a case is decoded from. Plain integers keep generation cheap (most of a debug
/// build's time per case would otherwise go to building strategy trees) and still shrink: every
/// gene decodes 0 to the simplest choice (a namespace known and labelled with the first value, a
/// store present with all its keys, a switch off).
#[derive(Debug, Clone)]
struct Genes {
    configuration: u32,
    namespaces: Vec<u32>,
    stores: u64,
    namespace: u8,
    pod_claims: Option<u8>,
    env: Vec<(u8, u8)>,
    spark: Vec<(u8, u8)>,
    legacy: Vec<u8>,
}

fn genes() -> impl Strategy<Value = Genes> {
    let references = |max| prop::collection::vec((any::<u8>(), any::<u8>()), 0..=max);
    (
        any::<u32>(),
        prop::collection::vec(any::<u32>(), NAMESPACES.len()),
        any::<u64>(),
        any::<u8>(),
        prop::option::weighted(0.2, any::<u8>()),
        references(2),
        references(2),
        prop::collection::vec(any::<u8>(), 1..3),
    )
        .prop_map(
            |(configuration, namespaces, stores, namespace, pod_claims, env, spark, legacy)| {
                Genes {
                    configuration,
                    namespaces,
                    stores,
                    namespace,
                    pod_claims,
                    env,
                    spark,
                    legacy,
                }
            },
        )
}

impl Genes {
    fn decode(&self) -> Case {
        let configuration = self.configuration;
        let domain_label = DOMAIN_LABELS[(configuration & 1) as usize];
        let other_label = DOMAIN_LABELS[1 - (configuration & 1) as usize];
        // Two bits per candidate: the store namespace is in the list unless they are 00, any
        // other candidate only when they are 01.
        let admin_namespaces = ADMIN_CANDIDATES
            .iter()
            .enumerate()
            .filter(|(index, _)| {
                let bits = (configuration >> (1 + 2 * index)) & 3;
                if *index == 0 { bits != 3 } else { bits == 1 }
            })
            .map(|(_, name)| *name)
            .collect();
        let switches = configuration >> 15;
        let cluster = NAMESPACES
            .iter()
            .zip(&self.namespaces)
            .filter(|(_, gene)| *gene & 15 != 15)
            .map(|(name, gene)| (*name, Self::labels(*gene, domain_label, other_label)))
            .collect();
        let stores = STORE_IDS
            .iter()
            .enumerate()
            .filter_map(|(index, id)| {
                let group = self.stores >> (12 * index);
                let keys = KEYS
                    .iter()
                    .enumerate()
                    .filter(|(key, _)| (group >> (3 + 3 * key)) & 7 != 7)
                    .map(|(_, key)| *key)
                    .collect();
                (group & 7 != 7).then_some((*id, keys))
            })
            .collect();
        let references = |genes: &[(u8, u8)]| {
            genes
                .iter()
                .map(|(id, key)| {
                    let id = pick(REFERENCE_IDS, u32::from(*id));
                    (id, pick(REFERENCE_KEYS, u32::from(*key)))
                })
                .collect()
        };
        Case {
            domain_label,
            admin_namespaces,
            cluster,
            namespace: NAMESPACES[usize::from(self.namespace) % NAMESPACES.len()],
            pod_claims: self
                .pod_claims
                .map(|gene| NAMESPACES[usize::from(gene) % NAMESPACES.len()]),
            stores,
            env: references(&self.env),
            spark: references(&self.spark),
            // Legacy placeholders in a third of the pods.
            legacy: if switches % 3 == 2 {
                self.legacy
                    .iter()
                    .map(|gene| pick(REFERENCE_KEYS, u32::from(*gene)))
                    .collect()
            } else {
                Vec::new()
            },
            executor: (switches / 3) % 5 == 4,
            dry_run: (switches / 15) % 10 == 9,
            secrets_v2_enabled: (switches / 150) % 32 != 31,
        }
    }

    /// A namespace's labels: one or two, each under the configured domain label (mostly), the
    /// label another configuration would read, or a near miss.
    fn labels(
        gene: u32,
        domain_label: &'static str,
        other_label: &'static str,
    ) -> Vec<(&'static str, &'static str)> {
        let count = [1, 1, 1, 2][((gene >> 4) & 3) as usize];
        (0..count)
            .map(|index| {
                let bits = gene >> (6 + 12 * index);
                let key = match bits & 15 {
                    0..=10 => domain_label,
                    11 | 12 => other_label,
                    near => NEAR_MISS_LABELS[(near - 13) as usize],
                };
                (key, pick(LABEL_VALUES, bits >> 4 & 255))
            })
            .collect()
    }
}

fn case() -> impl Strategy<Value = Case> {
    genes().prop_map(|genes| genes.decode())
}

/// The value of `key` in store `id`: unique, traceable by its `«id/key»` prefix, and written so
/// the kubelet would mangle it unescaped (`$(HOME)`, `$$`) and JSON must escape it (`"`, `\`).
fn store_value(id: &str, key: &str) -> String {
    format!("\u{ab}{id}/{key}\u{bb}$(HOME)$$ \"x\\y\" \u{e9}")
}

/// What the README says the webhook answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Expected {
    /// Allowed without a patch: the pod mentions no secret.
    Untouched,
    /// Allowed with a patch carrying every requested value.
    Patched,
    /// Denied with this code.
    Denied(u16),
}

/// The scope rules, from the README: a namespace belongs to domain D when the configured label
/// says D (and D is a DNS label); admin namespaces are the configured list; a domain store is
/// readable from its domain, `global` from any domain or admin namespace, `admin` from admin
/// namespaces only. A label value equal to a reserved id names a domain like any other (the
/// webhook treats it so today; see docs/robustness.md).
struct Model<'a> {
    case: &'a Case,
}

impl Model<'_> {
    fn domain(&self) -> Option<&'static str> {
        let (_, labels) = self
            .case
            .cluster
            .iter()
            .find(|(name, _)| *name == self.case.namespace)?;
        // A Namespace's labels are a map: the last value given for a key is the one it holds.
        let value = labels
            .iter()
            .rev()
            .find(|(key, _)| *key == self.case.domain_label)
            .map(|(_, value)| *value)?;
        is_dns_label(value).then_some(value)
    }

    fn admin(&self) -> bool {
        self.case.admin_namespaces.contains(&self.case.namespace)
    }

    fn may_read(&self, store_id: &str) -> bool {
        match store_id {
            "global" => self.domain().is_some() || self.admin(),
            "admin" => self.admin(),
            domain => self.domain() == Some(domain),
        }
    }

    fn store_has(&self, id: &str, key: &str) -> bool {
        self.case
            .stores
            .iter()
            .any(|(store, keys)| *store == id && keys.contains(&key))
    }

    /// The secrets the webhook has to read: env-secrets, Spark properties except on executors,
    /// and legacy placeholders (from the global store).
    fn needed(&self) -> Vec<(&'static str, &'static str)> {
        let spark: &[(&str, &str)] = if self.case.executor {
            &[]
        } else {
            &self.case.spark
        };
        let legacy = self.case.legacy.iter().map(|key| ("global", *key));
        self.case
            .env
            .iter()
            .chain(spark)
            .copied()
            .chain(legacy)
            .collect()
    }

    fn expected(&self) -> Expected {
        let case = self.case;
        let v2 = !case.env.is_empty() || !case.spark.is_empty();
        if !v2 && case.legacy.is_empty() {
            return Expected::Untouched;
        }
        if !case.cluster.iter().any(|(name, _)| *name == case.namespace) {
            return Expected::Denied(503);
        }
        if !case
            .env
            .iter()
            .chain(&case.spark)
            .all(|(id, _)| is_dns_label(id))
        {
            return Expected::Denied(400);
        }
        if v2 && !case.secrets_v2_enabled {
            return Expected::Denied(400);
        }
        let v2_in_scope = case
            .env
            .iter()
            .chain(&case.spark)
            .all(|(id, _)| self.may_read(id));
        let legacy_in_scope = case.legacy.is_empty() || self.may_read("global");
        if !v2_in_scope || !legacy_in_scope {
            return Expected::Denied(403);
        }
        if !self
            .needed()
            .iter()
            .all(|(id, key)| self.store_has(id, key))
        {
            return Expected::Denied(404);
        }
        Expected::Patched
    }
}

/// RFC 1123 label: lowercase letters, digits and '-', 1 to 63, not starting or ending in '-'.
fn is_dns_label(value: &str) -> bool {
    (1..=63).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !value.starts_with('-')
        && !value.ends_with('-')
}

/// The fixtures every case starts from, serialized once with placeholders where cases differ:
/// building each body by splicing text keeps a debug build's time on the webhook, not on
/// cloning and re-serializing two JSON trees per case.
struct Fixtures {
    /// The real GKE AdmissionReview capture.
    envelope: String,
    /// The real Spark 3.5 driver and executor pods.
    driver: PodTemplate,
    executor: PodTemplate,
}

struct PodTemplate {
    text: String,
    name: String,
}

/// A JSON string no fixture contains, standing for the text a case puts there.
fn placeholder(what: &str) -> Value {
    json!(format!("\u{0}{what}"))
}

fn spliced(template: &str, what: &str, json: &str) -> String {
    template.replacen(&placeholder(what).to_string(), json, 1)
}

impl PodTemplate {
    fn new(mut pod: Value) -> Self {
        pod["metadata"]["annotations"] = placeholder("ANNOTATIONS");
        pod["metadata"]["namespace"] = placeholder("CLAIM");
        let env = pod["spec"]["containers"][0]["env"].as_array_mut().unwrap();
        env.push(placeholder("LEGACY"));
        PodTemplate {
            name: pod["metadata"]["name"].as_str().unwrap().to_owned(),
            text: pod.to_string(),
        }
    }
}

impl Fixtures {
    fn load() -> Self {
        let mut envelope = fixture("real/admissionreview-pod-create-kube-rs-gke.json");
        for (field, what) in [
            ("namespace", "NAMESPACE"),
            ("name", "NAME"),
            ("dryRun", "DRYRUN"),
            ("object", "OBJECT"),
        ] {
            envelope["request"][field] = placeholder(what);
        }
        let fixtures = Fixtures {
            envelope: envelope.to_string(),
            driver: PodTemplate::new(fixture("spark/spark35-driver-pod.json")),
            executor: PodTemplate::new(fixture("spark/spark35-executor-pod.json")),
        };
        let templates = [
            (
                &fixtures.envelope,
                &["NAMESPACE", "NAME", "DRYRUN", "OBJECT"][..],
            ),
            (
                &fixtures.driver.text,
                &["ANNOTATIONS", "CLAIM", "LEGACY"][..],
            ),
            (
                &fixtures.executor.text,
                &["ANNOTATIONS", "CLAIM", "LEGACY"][..],
            ),
        ];
        for (text, places) in templates {
            for what in places {
                let found = text.matches(&placeholder(what).to_string()).count();
                assert_eq!(found, 1, "placeholder {what} in a fixture template");
            }
        }
        fixtures
    }

    /// The AdmissionReview the API server would send for the case's pod.
    fn review(&self, case: &Case) -> Vec<u8> {
        let template = if case.executor {
            &self.executor
        } else {
            &self.driver
        };
        let list = |entries: &[(&str, &str)], target: &dyn Fn(usize) -> String| {
            let entries: Vec<Value> = entries
                .iter()
                .enumerate()
                .map(|(index, (id, key))| {
                    json!({"key": target(index), "secretObject": {"key": key, "source": {"type": "KUBERNETES", "id": id}}})
                })
                .collect();
            Value::Array(entries).to_string()
        };
        let mut annotations = serde_json::Map::new();
        if !case.env.is_empty() {
            let value = list(&case.env, &|index| format!("VAR_{index}"));
            annotations.insert("secrets.iomete.com/env-secrets".into(), json!(value));
        }
        if !case.spark.is_empty() {
            let value = list(&case.spark, &|index| format!("spark.p{index}"));
            annotations.insert("secrets.iomete.com/spark-conf-secrets".into(), json!(value));
        }
        let legacy: String = case
            .legacy
            .iter()
            .enumerate()
            .map(|(index, key)| {
                let var = json!({"name": format!("LEGACY_{index}"), "value": format!("pre-${{secrets.{key}}}-post")});
                format!(",{var}")
            })
            .collect();
        // A pod's own namespace is normally the request's; a case may make it claim another.
        let claim = case.pod_claims.unwrap_or(case.namespace);
        let pod = spliced(
            &template.text,
            "ANNOTATIONS",
            &Value::Object(annotations).to_string(),
        );
        let pod = spliced(&pod, "CLAIM", &json!(claim).to_string());
        let pod = pod.replacen(&format!(",{}", placeholder("LEGACY")), &legacy, 1);
        let review = spliced(
            &self.envelope,
            "NAMESPACE",
            &json!(case.namespace).to_string(),
        );
        let review = spliced(&review, "NAME", &json!(template.name).to_string());
        let review = spliced(&review, "DRYRUN", &case.dry_run.to_string());
        spliced(&review, "OBJECT", &pod).into_bytes()
    }
}

/// Store caches holding the case's cluster, fed as a watch's first listing and marked synced,
/// and their writers, which must live as long as the caches are read (as the watch task keeps
/// them in production).
async fn caches(case: &Case) -> (KubernetesCaches, CacheWriters) {
    let settings = ScopePolicy {
        store_namespace: STORE_NAMESPACE.to_owned(),
        admin_namespaces: case
            .admin_namespaces
            .iter()
            .map(|s| s.to_string())
            .collect(),
        domain_label: case.domain_label.to_owned(),
    };
    let namespaces = case.cluster.iter().map(|(name, labels)| Namespace {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            labels: Some(
                labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    });
    let secrets = case.stores.iter().map(|(id, keys)| {
        let name = match *id {
            "global" => "iomete-secret-store".to_owned(),
            domain_or_admin => format!("iomete-secret-store-{domain_or_admin}"),
        };
        let data = keys
            .iter()
            .map(|key| {
                (
                    key.to_string(),
                    ByteString(store_value(id, key).into_bytes()),
                )
            })
            .collect();
        Secret {
            metadata: ObjectMeta {
                name: Some(name),
                namespace: Some(STORE_NAMESPACE.to_owned()),
                ..ObjectMeta::default()
            },
            data: Some(data),
            ..Secret::default()
        }
    });
    let (stores, mut writers) = KubernetesCaches::new(settings);
    writers.feed_listing(namespaces, secrets);
    stores.mark_fresh_once_listed().await;
    (stores, writers)
}

/// The webhook for one case: the case's caches and settings. Its Vault backend (configurations
/// loaded, none defined: no case references Vault) is the worker's, shared by all its cases,
/// which saves a fifth of a debug build's time per case.
fn admitter(stores: KubernetesCaches, vault: &VaultBackend, case: &Case) -> Admitter {
    Admitter::new(
        Arc::new(Backends {
            kubernetes: stores,
            vault: vault.clone(),
        }),
        Settings::env_delivery(case.secrets_v2_enabled),
        Limits {
            timeout: Duration::from_secs(30),
            max_in_flight: 4,
        },
    )
}

/// A worker's Vault backend. It never reads credentials, so it gets caches that hold nothing.
fn vault_backend() -> VaultBackend {
    let settings = ScopePolicy {
        store_namespace: STORE_NAMESPACE.to_owned(),
        admin_namespaces: BTreeSet::new(),
        domain_label: DOMAIN_LABELS[0].to_owned(),
    };
    let (credentials, _) = KubernetesCaches::new(settings);
    support::backends(credentials, Vec::new(), support::vault_settings()).vault
}

/// What one case was, for the summary: its expected outcome and the corners it touched.
#[derive(Default)]
struct Tally {
    cases: AtomicU64,
    untouched: AtomicU64,
    patched: AtomicU64,
    denied: [AtomicU64; 4],
    escapes: AtomicU64,
    false_denials: AtomicU64,
    reserved_label: AtomicU64,
    invalid_label: AtomicU64,
    near_miss_key: AtomicU64,
    admin_with_domain: AtomicU64,
    pod_claims_admin: AtomicU64,
    executor_spark: AtomicU64,
    legacy: AtomicU64,
    dry_run_patched: AtomicU64,
}

const DENIAL_CODES: [u16; 4] = [400, 403, 404, 503];

impl Tally {
    fn count(&self, case: &Case, model: &Model, expected: Expected) {
        let bump = |counter: &AtomicU64| {
            counter.fetch_add(1, Ordering::Relaxed);
        };
        bump(&self.cases);
        match expected {
            Expected::Untouched => bump(&self.untouched),
            Expected::Patched => bump(&self.patched),
            Expected::Denied(code) => {
                let index = DENIAL_CODES.iter().position(|c| *c == code).unwrap();
                bump(&self.denied[index]);
            }
        }
        let labels = case
            .cluster
            .iter()
            .find(|(name, _)| *name == case.namespace)
            .map(|(_, labels)| labels.as_slice())
            .unwrap_or_default();
        let own_values = labels
            .iter()
            .filter(|(key, _)| *key == case.domain_label)
            .map(|(_, value)| *value);
        if own_values.clone().any(|v| v == "global" || v == "admin") {
            bump(&self.reserved_label);
        }
        if own_values.clone().any(|v| !is_dns_label(v)) {
            bump(&self.invalid_label);
        }
        if labels.iter().any(|(key, _)| *key != case.domain_label) {
            bump(&self.near_miss_key);
        }
        if model.admin() && model.domain().is_some() {
            bump(&self.admin_with_domain);
        }
        if case
            .pod_claims
            .is_some_and(|claim| case.admin_namespaces.contains(&claim))
            && !model.admin()
        {
            bump(&self.pod_claims_admin);
        }
        if case.executor && !case.spark.is_empty() {
            bump(&self.executor_spark);
        }
        if !case.legacy.is_empty() {
            bump(&self.legacy);
        }
        if case.dry_run && expected == Expected::Patched {
            bump(&self.dry_run_patched);
        }
    }

    fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// Runs one case through the webhook and compares the answer with the model.
fn check(
    runtime: &tokio::runtime::Runtime,
    vault: &VaultBackend,
    fixtures: &Fixtures,
    tally: &Tally,
    log: &CapturedLog,
    case: &Case,
) -> Result<(), TestCaseError> {
    let model = Model { case };
    let expected = model.expected();
    let body = fixtures.review(case);
    let answer = runtime.block_on(async {
        let (stores, _writers) = caches(case).await;
        admitter(stores, vault, case).review(&body).await
    });
    answer.log(Duration::ZERO);
    let logged = log.take();
    tally.count(case, &model, expected);
    let answered: Value = serde_json::from_slice(&answer.body).expect("an AdmissionReview");
    let response = &answered["response"];
    let allowed = response["allowed"].as_bool().unwrap_or(false);
    let code = response["status"]["code"].as_u64();

    if allowed && matches!(expected, Expected::Denied(_)) {
        tally.escapes.fetch_add(1, Ordering::Relaxed);
        return Err(TestCaseError::fail(format!(
            "ESCAPE: allowed, the model expects {expected:?}: {}",
            answered
        )));
    }
    if !allowed && !matches!(expected, Expected::Denied(_)) {
        tally.false_denials.fetch_add(1, Ordering::Relaxed);
        return Err(TestCaseError::fail(format!(
            "FALSE DENIAL: denied, the model expects {expected:?}: {}",
            answered
        )));
    }
    prop_assert_eq!(answer.http_status, 200);

    // No store value outside the patch: not in the status, warnings, audit annotations, or log.
    let mut outside = answered.clone();
    outside["response"].as_object_mut().unwrap().remove("patch");
    let outside = format!("{outside} {logged}");
    prop_assert!(
        !outside.contains('\u{ab}'),
        "a store value outside the patch: {}",
        outside
    );

    match expected {
        Expected::Denied(want) => {
            prop_assert_eq!(code, Some(u64::from(want)), "{}", answered);
            let message = response["status"]["message"].as_str().unwrap_or_default();
            prop_assert!(!message.is_empty(), "a denial without a message");
        }
        Expected::Untouched => {
            prop_assert!(response.get("patch").is_none(), "{}", answered);
        }
        Expected::Patched => {
            let review: Value = serde_json::from_slice(&body).unwrap();
            check_patch(case, &model, &review, &answered)?
        }
    }
    Ok(())
}

/// The patched pod holds exactly the requested values, where they were asked for, and no other
/// store value; a dry run holds none.
fn check_patch(
    case: &Case,
    model: &Model,
    review: &Value,
    answer: &Value,
) -> Result<(), TestCaseError> {
    prop_assert!(answer["response"]["patch"].is_string(), "{}", answer);
    let pod = patched_object(review, answer);
    let container = &pod["spec"]["containers"][0];
    let env: BTreeMap<&str, &str> = container["env"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|var| Some((var["name"].as_str()?, var["value"].as_str()?)))
        .collect();
    let seen = |name: &str| {
        env.get(name)
            .map(|written| kubelet_expand(written, |_| None))
    };
    let value = |id: &str, key: &str| {
        if case.dry_run {
            DRY_RUN_MARKER.to_owned()
        } else {
            store_value(id, key)
        }
    };
    for (index, (id, key)) in case.env.iter().enumerate() {
        prop_assert_eq!(seen(&format!("VAR_{index}")), Some(value(id, key)));
    }
    for (index, key) in case.legacy.iter().enumerate() {
        let expected = format!("pre-{}-post", value("global", key));
        prop_assert_eq!(seen(&format!("LEGACY_{index}")), Some(expected));
    }
    let options = seen("SPARK_SUBMIT_OPTS");
    if case.executor || case.spark.is_empty() {
        prop_assert_eq!(options, None, "an executor got SPARK_SUBMIT_OPTS");
    } else {
        let options = options.expect("SPARK_SUBMIT_OPTS on a driver");
        for (index, (id, key)) in case.spark.iter().enumerate() {
            let token = format!("'-Dspark.p{index}={}'", value(id, key));
            prop_assert!(options.contains(&token), "{} not in {}", token, options);
        }
    }

    // Every store value in the whole pod was asked for, by this pod, from a store in its scope.
    let text = pod.to_string();
    let allowed: BTreeSet<(&str, &str)> = if case.dry_run {
        BTreeSet::new()
    } else {
        model.needed().into_iter().collect()
    };
    for (start, _) in text.match_indices('\u{ab}') {
        let rest = &text[start + '\u{ab}'.len_utf8()..];
        let traced = rest.split('\u{bb}').next().unwrap_or_default();
        let (id, key) = traced.split_once('/').unwrap_or_default();
        prop_assert!(
            allowed.contains(&(id, key)) && model.may_read(id),
            "the pod got the value of {}/{}, which it may not have",
            id,
            key
        );
    }
    Ok(())
}

fn cases_wanted() -> u32 {
    std::env::var("IOMETE_PROPERTY_CASES")
        .ok()
        .map(|text| text.parse().expect("IOMETE_PROPERTY_CASES is a number"))
        .unwrap_or(100_000)
}

fn seed() -> u64 {
    match std::env::var("PROPTEST_RNG_SEED") {
        Ok(text) => text.parse().expect("PROPTEST_RNG_SEED is a number"),
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64,
    }
}

#[test]
fn admission_decisions_match_an_independent_scope_model() {
    let total = cases_wanted();
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get().min(4)) as u32;
    let seed = seed();
    println!(
        "scope properties: {total} cases on {workers} threads, seed {seed} \
         (replay with PROPTEST_RNG_SEED={seed})"
    );
    let fixtures = Fixtures::load();
    let tally = Tally::default();
    let started = Instant::now();
    let results: Vec<Result<(), String>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|worker| {
                let (fixtures, tally) = (&fixtures, &tally);
                // Worker w runs cases w, w + workers, ...: the counts add up to `total`.
                let cases = (total + workers - 1 - worker) / workers;
                scope.spawn(move || {
                    let (log, _capturing) = CapturedLog::install();
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_time()
                        .build()
                        .unwrap();
                    let vault = vault_backend();
                    let config = Config {
                        cases,
                        failure_persistence: None,
                        rng_seed: RngSeed::Fixed(seed.wrapping_add(u64::from(worker))),
                        ..Config::default()
                    };
                    TestRunner::new(config)
                        .run(&case(), |case| {
                            check(&runtime, &vault, fixtures, tally, &log, &case)
                        })
                        .map_err(|error| error.to_string())
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let elapsed = started.elapsed();

    let get = Tally::get;
    println!(
        "scope properties: {} cases in {:.1}s; expected outcomes: {} untouched, {} patched, \
         {} denied 400, {} denied 403, {} denied 404, {} denied 503",
        get(&tally.cases),
        elapsed.as_secs_f64(),
        get(&tally.untouched),
        get(&tally.patched),
        get(&tally.denied[0]),
        get(&tally.denied[1]),
        get(&tally.denied[2]),
        get(&tally.denied[3]),
    );
    let corners = [
        ("reserved id as label value", get(&tally.reserved_label)),
        ("invalid label value", get(&tally.invalid_label)),
        ("label under another key", get(&tally.near_miss_key)),
        (
            "admin namespace with a domain",
            get(&tally.admin_with_domain),
        ),
        (
            "pod claims an admin namespace",
            get(&tally.pod_claims_admin),
        ),
        ("executor with Spark properties", get(&tally.executor_spark)),
        ("legacy placeholders", get(&tally.legacy)),
        ("dry run of a patched pod", get(&tally.dry_run_patched)),
    ];
    for (corner, count) in corners {
        println!("scope properties:   {count:>6} cases with {corner}");
    }
    println!(
        "scope properties: escapes {}, false denials {}",
        get(&tally.escapes),
        get(&tally.false_denials)
    );

    for result in &results {
        if let Err(error) = result {
            panic!("{error}");
        }
    }
    assert_eq!(get(&tally.escapes), 0, "allowed where the model denies");
    assert_eq!(
        get(&tally.false_denials),
        0,
        "denied where the model allows"
    );
    // The run counts only if it reached the cases it is for; the thresholds sit far below what
    // the generator's weights give (see the printed tallies), so they fail only if it degenerates.
    assert!(
        get(&tally.cases) >= u64::from(total),
        "{} cases run",
        get(&tally.cases)
    );
    let floor = u64::from(total) / 200;
    for (outcome, count) in [
        ("patched", get(&tally.patched)),
        ("denied 400", get(&tally.denied[0])),
        ("denied 403", get(&tally.denied[1])),
        ("denied 404", get(&tally.denied[2])),
        ("denied 503", get(&tally.denied[3])),
        ("untouched", get(&tally.untouched)),
    ] {
        assert!(count >= floor, "only {count} cases expected {outcome}");
    }
    for (corner, count) in corners {
        assert!(count >= floor, "only {count} cases with {corner}");
    }
}
