//! In-process micro-benchmarks (divan) of the decision, for the bodies the load harness sends:
//! the Spark 3.5 driver pod with five references and the same references in a 64-container pod.
//!
//! Step by step: reading the pod out of the AdmissionReview body as `admission` does (beside
//! the way it did before and the parse-and-answer baseline's parse into `Value`), parsing the
//! reference annotations, planning (parse + authorize + plan), rendering the patch, encoding
//! the answer; then the whole [`Admitter::review`] over in-memory stores, allowed and denied;
//! then the same whole admission over a sweep of pod sizes (`admit_sweep`: 1, 4, 16, 64
//! containers × 1, 5, 20 references each; 64 × 16 in place of 64 × 20, past the per-pod cap),
//! whose items are injections (containers × references).
//! Run with `cargo bench --bench core` (or `scripts/bench.sh`); divan's flags pass through
//! (`cargo bench --bench core -- --sample-count 20 plan`). Each line also reports allocations
//! (count and bytes) per run, from divan's counting allocator.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use divan::Bencher;
use iomete_secrets_webhook::admission::review;
use iomete_secrets_webhook::admission::{Admitter, Limits};
use iomete_secrets_webhook::decision::injection::{
    self, MAX_INJECTIONS_PER_POD, Settings, ValueMode,
};
use iomete_secrets_webhook::decision::pod::Pod;
use iomete_secrets_webhook::decision::reference::{self, SecretRef};
use iomete_secrets_webhook::decision::scope::NamespaceScope;
use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionReview};
use secrecy::SecretString;
use serde_json::{Value, json};

#[path = "../tests/support/mod.rs"]
mod support;

#[path = "common/mod.rs"]
mod common;
use common::{FINANCE_NAMESPACE, FINANCE_STORE, GLOBAL_STORE, MARKETING_NAMESPACE};

/// Counts every allocation, so each benchmark also reports allocations and bytes per run
/// (deterministic, unlike times on a shared machine).
#[global_allocator]
static ALLOCATIONS: divan::AllocProfiler = divan::AllocProfiler::system();

fn main() {
    divan::main();
}

/// The pod shapes every step is measured with.
#[derive(Debug, Clone, Copy)]
enum Shape {
    /// The recorded Spark 3.5 driver, five references (one of them Vault).
    Driver,
    /// The same references in each of 64 containers.
    Pod64,
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Shape::Driver => "driver-5refs",
            Shape::Pod64 => "pod-64-containers",
        })
    }
}

const SHAPES: [Shape; 2] = [Shape::Driver, Shape::Pod64];

impl Shape {
    fn pod_json(self) -> Value {
        match self {
            Shape::Driver => common::driver_pod(),
            Shape::Pod64 => common::pod64(),
        }
    }

    /// The pod with the Vault reference swapped for a store key, for the whole-admission
    /// benchmark, which has no Vault server behind it.
    fn kubernetes_only_pod_json(self) -> Value {
        match self {
            Shape::Driver => common::driver_pod_kubernetes_only(),
            Shape::Pod64 => common::grown_to_64_containers(common::driver_pod_kubernetes_only()),
        }
    }

    fn pod(self) -> Pod {
        serde_json::from_value(self.pod_json()).expect("the fixture is a Pod")
    }

    fn body(self, pod: Value, namespace: &str) -> Vec<u8> {
        let review = common::review(pod, namespace, "4b0c7c3e-4d1c-4a8e-9a57-1f6f6b0f2a11");
        serde_json::to_vec(&review).expect("a review serializes")
    }
}

fn finance_scope() -> NamespaceScope {
    NamespaceScope {
        name: FINANCE_NAMESPACE.into(),
        domain: Some("finance".into()),
        admin: false,
    }
}

fn vault_owners() -> BTreeMap<String, String> {
    BTreeMap::from([(common::VAULT_CONFIG.to_owned(), "finance".to_owned())])
}

fn settings() -> Settings {
    Settings::env_delivery(true)
}

/// Every referenced value, as the backends would return them.
fn value_of(secret: &SecretRef) -> Option<SecretString> {
    let known: HashMap<&str, &str> = FINANCE_STORE
        .iter()
        .chain(GLOBAL_STORE)
        .copied()
        .chain([("db#password", "vault-db-password")])
        .collect();
    known
        .get(secret.key.as_str())
        .map(|value| SecretString::from(value.to_string()))
}

/// AdmissionReview body → Pod, the way `admission` reads it: the envelope with the object left
/// raw, then the pod's decision fields.
#[divan::bench(args = SHAPES)]
fn decode_review(bencher: Bencher, shape: Shape) {
    let body = shape.body(shape.pod_json(), FINANCE_NAMESPACE);
    bencher.bench(|| {
        let received = review::read(divan::black_box(&body)).expect("a review");
        let object = received.request.object.expect("an object");
        serde_json::from_str::<Pod>(object.get()).expect("a Pod")
    });
}

/// The way `admission` read it before: kube's `AdmissionReview<DynamicObject>`, then
/// `DynamicObject` → `Value` → the full k8s-openapi `Pod` (kept to compare in one run).
#[divan::bench(args = SHAPES)]
fn decode_review_before(bencher: Bencher, shape: Shape) {
    let body = shape.body(shape.pod_json(), FINANCE_NAMESPACE);
    bencher.bench(|| {
        let review: AdmissionReview<DynamicObject> =
            serde_json::from_slice(divan::black_box(&body)).expect("a review");
        let request: AdmissionRequest<DynamicObject> = review.try_into().expect("a request");
        let object = serde_json::to_value(request.object.expect("an object")).expect("JSON");
        let pod: k8s_openapi::api::core::v1::Pod = serde_json::from_value(object).expect("a Pod");
        pod
    });
}

/// The parse-and-answer baseline's work: the body parsed into `serde_json::Value` and the uid
/// read.
#[divan::bench(args = SHAPES)]
fn decode_review_as_value(bencher: Bencher, shape: Shape) {
    let body = shape.body(shape.pod_json(), FINANCE_NAMESPACE);
    bencher.bench(|| {
        let review: Value = serde_json::from_slice(divan::black_box(&body)).expect("JSON");
        review["request"]["uid"].as_str().map(str::len)
    });
}

/// The strict parse of the reference annotations alone.
#[divan::bench(args = SHAPES)]
fn parse_annotations(bencher: Bencher, shape: Shape) {
    let pod = shape.pod();
    let annotations = pod.metadata.annotations.expect("annotations");
    bencher.bench(|| reference::parse_annotations(divan::black_box(&annotations)).expect("valid"));
}

/// Parse + authorize + plan.
#[divan::bench(args = SHAPES)]
fn plan(bencher: Bencher, shape: Shape) {
    let (pod, scope, owners, settings) = (shape.pod(), finance_scope(), vault_owners(), settings());
    bencher.bench(|| {
        injection::plan(divan::black_box(&pod), &scope, &settings, &owners).expect("a plan")
    });
}

/// Parse + authorize failing on the first reference (the pod in another domain's namespace).
#[divan::bench(args = SHAPES)]
fn plan_denied(bencher: Bencher, shape: Shape) {
    let (pod, owners, settings) = (shape.pod(), vault_owners(), settings());
    let scope = NamespaceScope {
        name: MARKETING_NAMESPACE.into(),
        domain: Some("marketing".into()),
        admin: false,
    };
    bencher.bench(|| {
        injection::plan(divan::black_box(&pod), &scope, &settings, &owners).expect_err("denied")
    });
}

/// The JSON patch from a plan and the values.
#[divan::bench(args = SHAPES)]
fn render(bencher: Bencher, shape: Shape) {
    let plan = injection::plan(&shape.pod(), &finance_scope(), &settings(), &vault_owners())
        .expect("a plan");
    bencher.bench(|| {
        injection::render(divan::black_box(&plan), &value_of, ValueMode::Live).expect("a patch")
    });
}

/// The rendered patch into the answer body, as `admission` writes it.
#[divan::bench(args = SHAPES)]
fn encode_answer(bencher: Bencher, shape: Shape) {
    let plan = injection::plan(&shape.pod(), &finance_scope(), &settings(), &vault_owners())
        .expect("a plan");
    let rendered = injection::render(&plan, &value_of, ValueMode::Live).expect("a patch");
    bencher.bench(|| {
        let response = review::Response {
            uid: "4b0c7c3e-4d1c-4a8e-9a57-1f6f6b0f2a11",
            verdict: review::Verdict::Allowed {
                patch: Some(divan::black_box(&rendered.patch)),
                audit_annotations: &rendered.audit_annotations,
            },
            warnings: &rendered.warnings,
        };
        review::write("admission.k8s.io/v1", &response)
    });
}

/// In-memory stores holding the driver's keys, and namespaces of both domains.
fn admitter(runtime: &tokio::runtime::Runtime) -> Admitter {
    admitter_with(runtime, FINANCE_STORE)
}

/// [`admitter`] with `finance` as the finance domain's store.
fn admitter_with(runtime: &tokio::runtime::Runtime, finance: &[(&str, &str)]) -> Admitter {
    let stores = runtime.block_on(support::stores(
        vec![
            support::namespace(common::STORE_NAMESPACE, None),
            support::namespace(FINANCE_NAMESPACE, Some("finance")),
            support::namespace(MARKETING_NAMESPACE, Some("marketing")),
        ],
        vec![
            support::store("iomete-secret-store-finance", finance),
            support::store("iomete-secret-store", GLOBAL_STORE),
        ],
        true,
    ));
    // Inside the runtime: the Vault backend's cache is built for one.
    let backends = runtime
        .block_on(async { support::backends(stores, Vec::new(), support::vault_settings()) });
    Admitter::new(
        Arc::new(backends),
        settings(),
        Limits {
            timeout: Duration::from_secs(8),
            max_in_flight: 256,
        },
    )
}

/// The whole admission in process: body in, answer body out (the Kubernetes stores only).
#[divan::bench(args = SHAPES)]
fn admit(bencher: Bencher, shape: Shape) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let admitter = admitter(&runtime);
    let body = shape.body(shape.kubernetes_only_pod_json(), FINANCE_NAMESPACE);
    let first = runtime.block_on(admitter.review(&body));
    let first: serde_json::Value = serde_json::from_slice(&first.body).expect("json");
    assert!(first["response"]["patch"].is_string(), "{first}");
    bencher.bench(|| {
        runtime
            .block_on(admitter.review(divan::black_box(&body)))
            .body
    });
}

/// The whole admission in process, denied by the scope check.
#[divan::bench(args = SHAPES)]
fn admit_denied(bencher: Bencher, shape: Shape) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let admitter = admitter(&runtime);
    let body = shape.body(shape.kubernetes_only_pod_json(), MARKETING_NAMESPACE);
    let first = runtime.block_on(admitter.review(&body));
    let first: serde_json::Value = serde_json::from_slice(&first.body).expect("json");
    assert_eq!(first["response"]["status"]["code"], 403, "{first}");
    bencher.bench(|| {
        runtime
            .block_on(admitter.review(divan::black_box(&body)))
            .body
    });
}

/// One point of the size sweep: `containers` containers (the driver's copied), each receiving
/// the same `references` env references, every one a key of its own in the finance store.
#[derive(Debug, Clone, Copy)]
struct Size {
    containers: usize,
    references: usize,
}

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:02}-containers-x-{:02}-refs",
            self.containers, self.references
        )
    }
}

impl Size {
    const fn new(containers: usize, references: usize) -> Size {
        Size {
            containers,
            references,
        }
    }

    /// Injections per admission: one per container and reference.
    const fn injections(self) -> usize {
        self.containers * self.references
    }
}

/// 1, 4, 16, 64 containers × 1, 5, 20 references, except 64 × 20: 1280 injections are more
/// than the webhook allows in one pod ([`MAX_INJECTIONS_PER_POD`], refused with a 400), so
/// that row stops at 64 × 16 = 1024, the most allowed.
const SWEEP: [Size; 12] = [
    Size::new(1, 1),
    Size::new(1, 5),
    Size::new(1, 20),
    Size::new(4, 1),
    Size::new(4, 5),
    Size::new(4, 20),
    Size::new(16, 1),
    Size::new(16, 5),
    Size::new(16, 20),
    Size::new(64, 1),
    Size::new(64, 5),
    Size::new(64, 16),
];

const _: () = {
    let mut index = 0;
    while index < SWEEP.len() {
        assert!(SWEEP[index].injections() <= MAX_INJECTIONS_PER_POD);
        index += 1;
    }
};

/// The most references a sweep point names.
const SWEEP_REFERENCES: usize = 20;

/// The finance store with [`SWEEP_REFERENCES`] more keys (`sweep-00`, ...), each with a
/// value of 32 bytes.
fn sweep_store() -> Vec<(String, String)> {
    FINANCE_STORE
        .iter()
        .map(|(key, value)| (key.to_string(), value.to_string()))
        .chain((0..SWEEP_REFERENCES).map(|index| {
            (
                format!("sweep-{index:02}"),
                format!("sweep-value-{index:02}-0123456789abcdefghij"),
            )
        }))
        .collect()
}

/// The driver pod with `size.references` env references (`sweep-00`, ... of the finance
/// store) and nothing else, grown to `size.containers` containers.
fn sweep_pod(size: Size) -> Value {
    let env: Vec<Value> = (0..size.references)
        .map(|index| {
            json!({"key": format!("SWEEP_SECRET_{index:02}"),
                   "secretObject": {"key": format!("sweep-{index:02}"),
                                    "source": {"type": "KUBERNETES", "id": "finance"}}})
        })
        .collect();
    let mut pod = common::driver_pod_kubernetes_only();
    pod["metadata"]["annotations"] =
        json!({"secrets.iomete.com/env-secrets": Value::Array(env).to_string()});
    common::grown_to_containers(pod, size.containers)
}

/// The whole admission in process over the size sweep (the Kubernetes stores only); items are
/// injections (containers × references). The cost is a fixed part per admission, a part per
/// container (the pod body is read and its containers walked) and a part per injection; it is
/// linear in containers × references when, at each container count, the time grows by the
/// same amount per added reference (1 → 5 → 20), and the items/s, which include the fixed
/// parts, approach the per-injection rate as pods grow.
#[divan::bench(args = SWEEP)]
fn admit_sweep(bencher: Bencher, size: Size) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let store = sweep_store();
    let store: Vec<(&str, &str)> = store
        .iter()
        .map(|(key, value)| (key.as_str(), value.as_str()))
        .collect();
    let admitter = admitter_with(&runtime, &store);
    let review = common::review(
        sweep_pod(size),
        FINANCE_NAMESPACE,
        "4b0c7c3e-4d1c-4a8e-9a57-1f6f6b0f2a11",
    );
    let body = serde_json::to_vec(&review).expect("a review serializes");
    let first = runtime.block_on(admitter.review(&body));
    let first: serde_json::Value = serde_json::from_slice(&first.body).expect("json");
    assert!(first["response"]["patch"].is_string(), "{size}: {first}");
    // Patched, and every container received every reference.
    let patched = support::patched_object(&review, &first);
    let injected = patched["spec"]["containers"]
        .as_array()
        .expect("containers")
        .iter()
        .flat_map(|container| container["env"].as_array().into_iter().flatten())
        .filter(|env| {
            env["name"]
                .as_str()
                .is_some_and(|name| name.starts_with("SWEEP_SECRET_"))
        })
        .count();
    assert_eq!(injected, size.injections(), "{size}");
    bencher
        .counter(divan::counter::ItemsCount::new(size.injections()))
        .bench(|| {
            runtime
                .block_on(admitter.review(divan::black_box(&body)))
                .body
        });
}
