//! The pods and AdmissionReviews both benchmarks send: the recorded Spark 3.5 driver pod with
//! five references, a 64-container pod carrying the same references, and Spark executors that
//! all reference one Vault secret (the burst). Shared by `benches/harness` and `benches/core`
//! so the micro-benchmarks measure exactly the bodies the load runs send.

#![allow(dead_code)] // each benchmark uses its own subset

use serde_json::{Value, json};

use crate::support::{fixture, review_of};

/// The store namespace of every benchmark (and the only admin namespace).
pub const STORE_NAMESPACE: &str = "iomete-system";
/// A namespace of domain `finance`: the driver's references are in scope there.
pub const FINANCE_NAMESPACE: &str = "spark-jobs";
/// A namespace of domain `marketing`: the first reference fails the scope check (403).
pub const MARKETING_NAMESPACE: &str = "marketing-jobs";
/// The VaultConfig the references name, owned by domain `finance`.
pub const VAULT_CONFIG: &str = "vault-finance";
/// The Vault secret (under the config's prefix) the driver reads its database password from.
pub const VAULT_DB_SECRET: &str = "db";

/// The finance store's keys and values the driver references.
pub const FINANCE_STORE: &[(&str, &str)] = &[
    ("s3-secret-key", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
    ("warehouse-password", "c0rrect-h0rse-battery-$taple"),
    (
        "catalog-token",
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJzcGFyayJ9.c2lnbmF0dXJl",
    ),
    ("db-password", "pg-s3cr3t-for-spark"),
];
/// The global store's key the driver references.
pub const GLOBAL_STORE: &[(&str, &str)] = &[("smtp_password", "smtp-pa55word")];

/// The five references of the driver: three keys of the domain store (one delivered as a Spark
/// property through `SPARK_SUBMIT_OPTS`), one of the global store and one Vault secret field.
pub fn driver_annotations(vault_config: &str) -> Value {
    annotations_with(json!({"key": format!("{VAULT_DB_SECRET}#password"),
                            "source": {"type": "VAULT", "id": vault_config}}))
}

/// The driver's references with `db_password` as the `secretObject` of `DB_PASSWORD`.
fn annotations_with(db_password: Value) -> Value {
    let env = json!([
        {"key": "AWS_SECRET_ACCESS_KEY",
         "secretObject": {"key": "s3-secret-key", "source": {"type": "KUBERNETES", "id": "finance"}}},
        {"key": "WAREHOUSE_PASSWORD",
         "secretObject": {"key": "warehouse-password", "source": {"type": "KUBERNETES", "id": "finance"}}},
        {"key": "SMTP_PASSWORD",
         "secretObject": {"key": "smtp_password", "source": {"type": "KUBERNETES", "id": "global"}}},
        {"key": "DB_PASSWORD", "secretObject": db_password},
    ]);
    let spark_conf = json!([
        {"key": "spark.sql.catalog.lakehouse.token",
         "secretObject": {"key": "catalog-token", "source": {"type": "KUBERNETES", "id": "finance"}}},
    ]);
    json!({
        "secrets.iomete.com/env-secrets": env.to_string(),
        "secrets.iomete.com/spark-conf-secrets": spark_conf.to_string(),
    })
}

/// The driver's references with the Vault one replaced by a fourth key of the domain store, for
/// in-process benchmarks that have no Vault server to warm the cache from.
pub fn driver_annotations_kubernetes_only() -> Value {
    annotations_with(
        json!({"key": "db-password", "source": {"type": "KUBERNETES", "id": "finance"}}),
    )
}

/// The recorded Spark 3.5 driver pod with the five references.
pub fn driver_pod() -> Value {
    let mut pod = fixture("spark/spark35-driver-pod.json");
    pod["metadata"]["annotations"] = driver_annotations(VAULT_CONFIG);
    pod
}

/// The driver pod with [`driver_annotations_kubernetes_only`].
pub fn driver_pod_kubernetes_only() -> Value {
    let mut pod = fixture("spark/spark35-driver-pod.json");
    pod["metadata"]["annotations"] = driver_annotations_kubernetes_only();
    pod
}

/// The driver pod grown to 64 containers (its one container copied under new names), each
/// receiving the five references: 320 env entries in the patch.
pub fn pod64() -> Value {
    grown_to_64_containers(driver_pod())
}

/// `pod` with its first container copied 64 times under new names.
pub fn grown_to_64_containers(pod: Value) -> Value {
    grown_to_containers(pod, 64)
}

/// `pod` with its first container copied `count` times under new names.
pub fn grown_to_containers(mut pod: Value, count: usize) -> Value {
    let container = pod["spec"]["containers"][0].clone();
    let containers: Vec<Value> = (0..count)
        .map(|index| {
            let mut copy = container.clone();
            copy["name"] = json!(format!("worker-{index}"));
            copy
        })
        .collect();
    pod["spec"]["containers"] = Value::Array(containers);
    pod["metadata"]["name"] = json!(format!("spark-pi-{count}-containers"));
    pod
}

/// Executor `index` of the recorded application, referencing one field of one Vault secret.
pub fn executor_pod(index: usize, vault_config: &str, secret: &str) -> Value {
    let mut pod = fixture("spark/spark35-executor-pod.json");
    let env = json!([
        {"key": "DB_PASSWORD",
         "secretObject": {"key": format!("{secret}#password"),
                          "source": {"type": "VAULT", "id": vault_config}}},
    ]);
    pod["metadata"]["annotations"] = json!({"secrets.iomete.com/env-secrets": env.to_string()});
    pod["metadata"]["name"] = json!(format!("spark-pi-2ac6d9a20388d360-exec-{index}"));
    pod["metadata"]["labels"]["spark-exec-id"] = json!(index.to_string());
    pod
}

/// A pod in `namespace` whose env-secrets name `secrets` (Vault secret paths, field
/// `password`), for filling the Vault cache.
pub fn vault_fill_pod(vault_config: &str, secrets: &[String]) -> Value {
    let mut pod = fixture("spark/spark35-driver-pod.json");
    let env: Vec<Value> = secrets
        .iter()
        .enumerate()
        .map(|(index, secret)| {
            json!({"key": format!("V{index}"),
                   "secretObject": {"key": format!("{secret}#password"),
                                    "source": {"type": "VAULT", "id": vault_config}}})
        })
        .collect();
    pod["metadata"]["annotations"] =
        json!({"secrets.iomete.com/env-secrets": Value::Array(env).to_string()});
    pod
}

/// An AdmissionReview of `pod` in `namespace`, with a uid of its own as the API server gives
/// every request.
pub fn review(pod: Value, namespace: &str, uid: &str) -> Value {
    let mut review = review_of(pod, namespace);
    review["request"]["uid"] = json!(uid);
    review
}
