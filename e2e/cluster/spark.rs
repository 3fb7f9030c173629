//! Spark for real: `spark-submit` (PySpark 3.5 from `scripts/ensure-pyspark.sh`, Java 17)
//! submits to the real API server, and the pods Spark's Kubernetes client creates go through
//! the webhook. The driver (cluster mode) and the executors (client mode, created by Spark's
//! own allocator) are stored patched. Nothing runs them: there is no kubelet, so they stay
//! `Pending`; the cluster-mode submission does not wait for the application, and the
//! client-mode driver is stopped once its executor pods exist.
//!
//! `IOMETE_SKIP_SPARK=1` skips these tests (machines without PyPI), as for tests/spark_submit.rs.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::control_plane::{spawn_guarded, terminate};
use crate::env::{Cluster, apply};
use crate::{assert_no_canary, container_env, expected_digest};

const EXECUTORS: usize = 24;

/// The venv's spark-submit, or `None` when `IOMETE_SKIP_SPARK=1`.
pub fn spark_submit() -> Option<PathBuf> {
    if std::env::var("IOMETE_SKIP_SPARK").as_deref() == Ok("1") {
        use std::io::Write as _;
        let _ = writeln!(
            std::io::stderr(),
            "IOMETE_SKIP_SPARK=1: skipping a cluster spark-submit test"
        );
        return None;
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/ensure-pyspark.sh");
    let output = Command::new("bash")
        .arg(script)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let path = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim().to_owned());
    assert!(
        output.status.success() && path.is_file(),
        "PySpark could not be installed by scripts/ensure-pyspark.sh (IOMETE_SKIP_SPARK=1 skips \
         these tests): {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Some(path)
}

/// A namespace of `domain` with a ServiceAccount that may do anything there (`cluster-admin`
/// bound in the namespace: the aggregated `edit` role stays empty without a controller-manager),
/// its token, and a store; the files spark-submit needs.
fn spark_namespace(
    cluster: &Cluster,
    namespace: &str,
    domain: &str,
    value: &str,
) -> (String, PathBuf) {
    cluster.namespace(namespace, Some(domain));
    cluster.store(domain, &[("s3-secret-key", value)]);
    apply(
        &cluster.plane,
        &json!({"apiVersion": "v1", "kind": "List", "items": [
            {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "spark", "namespace": namespace}},
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
             "metadata": {"name": "spark-admin", "namespace": namespace},
             "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
             "subjects": [{"kind": "ServiceAccount", "name": "spark", "namespace": namespace}]}
        ]}),
    );
    let token = cluster
        .plane
        .kubectl_ok(&["create", "token", "spark", "-n", namespace], None);
    let ca = cluster.plane.dir().join(format!("{namespace}-ca.crt"));
    std::fs::write(&ca, cluster.plane.ca_pem()).unwrap();
    (token.trim().to_owned(), ca)
}

fn references(domain: &str) -> String {
    json!([{"key": "AWS_SECRET_ACCESS_KEY",
            "secretObject": {"key": "s3-secret-key", "source": {"type": "KUBERNETES", "id": domain}}}])
    .to_string()
}

/// spark-submit with the connection settings; stdout and stderr into `log`.
fn submit_command(
    cluster: &Cluster,
    spark: &Path,
    token: &str,
    ca: &Path,
    namespace: &str,
    log: &Path,
) -> Command {
    let mut command = Command::new(spark);
    let out = std::fs::File::create(log).unwrap();
    let venv_bin = spark.parent().unwrap();
    let path = format!(
        "{}:{}",
        venv_bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    command
        .arg("--master")
        .arg(format!("k8s://{}", cluster.plane.server_url()))
        .arg("--conf")
        .arg(format!("spark.kubernetes.namespace={namespace}"))
        .arg("--conf")
        .arg("spark.kubernetes.container.image=apache/spark:3.5.8")
        .arg("--conf")
        .arg(format!(
            "spark.kubernetes.authenticate.submission.caCertFile={}",
            ca.display()
        ))
        .arg("--conf")
        .arg(format!(
            "spark.kubernetes.authenticate.caCertFile={}",
            ca.display()
        ))
        .arg("--conf")
        .arg(format!(
            "spark.kubernetes.authenticate.submission.oauthToken={token}"
        ))
        .arg("--conf")
        .arg(format!("spark.kubernetes.authenticate.oauthToken={token}"))
        // Not the user's kubeconfig: only what is given here.
        .env("KUBECONFIG", cluster.plane.dir().join("no-such-kubeconfig"))
        // spark-submit finds its Spark home with the venv's Python.
        .env("PATH", path)
        .env("PYSPARK_PYTHON", venv_bin.join("python"))
        .env("LC_ALL", "C.UTF-8")
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out);
    command
}

#[test]
fn spark_submit_in_cluster_mode_creates_a_driver_pod_stored_patched() {
    let Some(cluster) = Cluster::shared("spark_submit_in_cluster_mode") else {
        return;
    };
    let Some(spark) = spark_submit() else {
        return;
    };
    const VALUE: &str = "cluster-canary-spark-submit-$(HOME)-g1";
    let (namespace, domain) = ("spark-g1", "sparkg1");
    let (token, ca) = spark_namespace(cluster, namespace, domain, VALUE);
    let log = cluster.plane.dir().join("spark-submit-g1.log");
    let mut command = submit_command(cluster, &spark, &token, &ca, namespace, &log);
    command
        .args(["--deploy-mode", "cluster", "--name", "spark-pi"])
        .arg("--conf")
        .arg("spark.kubernetes.driver.pod.name=spark-pi-driver")
        .arg("--conf")
        .arg("spark.kubernetes.submission.waitAppCompletion=false")
        .arg("--conf")
        .arg(format!(
            "spark.kubernetes.driver.annotation.secrets.iomete.com/env-secrets={}",
            references(domain)
        ))
        .args(["--class", "org.apache.spark.examples.SparkPi"])
        .arg("local:///opt/spark/examples/jars/spark-examples.jar");
    let status = command.status().unwrap();
    let printed = std::fs::read_to_string(&log).unwrap();
    assert!(
        status.success(),
        "spark-submit failed ({status}):\n{printed}"
    );
    assert_no_canary("spark-submit's output", &printed, &[VALUE]);

    let stored = cluster.stored_pod(namespace, "spark-pi-driver");
    assert_eq!(stored["status"]["phase"], "Pending", "no kubelet runs it");
    assert_eq!(
        container_env(&stored, "spark-kubernetes-driver", "AWS_SECRET_ACCESS_KEY").as_deref(),
        Some(VALUE)
    );
    assert_eq!(
        stored["metadata"]["annotations"]["secrets.iomete.com/injected"].as_str(),
        Some(expected_digest(&stored).as_str())
    );
    // Spark's own variables are there too: the webhook added to what Spark built.
    let names: Vec<&str> = stored["spec"]["containers"][0]["env"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|var| var["name"].as_str())
        .collect();
    for name in [
        "SPARK_USER",
        "SPARK_APPLICATION_ID",
        "SPARK_DRIVER_BIND_ADDRESS",
    ] {
        assert!(names.contains(&name), "{name} missing: {names:?}");
    }
}

#[test]
fn spark_client_mode_executor_pods_from_sparks_allocator_are_stored_patched() {
    let Some(cluster) = Cluster::shared("spark_client_mode_executor_pods") else {
        return;
    };
    let Some(spark) = spark_submit() else {
        return;
    };
    const VALUE: &str = "cluster-canary-executors-g2";
    let (namespace, domain) = ("spark-g2", "sparkg2");
    let (token, ca) = spark_namespace(cluster, namespace, domain, VALUE);
    let app = cluster.plane.dir().join("spark-g2-app.py");
    std::fs::write(
        &app,
        "import time\nfrom pyspark import SparkContext\nsc = SparkContext()\ntime.sleep(600)\n",
    )
    .unwrap();
    let log = cluster.plane.dir().join("spark-submit-g2.log");
    let mut command = submit_command(cluster, &spark, &token, &ca, namespace, &log);
    command
        .args(["--deploy-mode", "client", "--name", "executors-g2"])
        .args(["--conf", &format!("spark.executor.instances={EXECUTORS}")])
        .args(["--conf", "spark.kubernetes.allocation.batch.size=8"])
        .args(["--conf", "spark.kubernetes.allocation.batch.delay=200ms"])
        .args([
            "--conf",
            "spark.kubernetes.executor.podNamePrefix=executors-g2",
        ])
        .args(["--conf", "spark.driver.host=127.0.0.1"])
        .args(["--conf", "spark.driver.bindAddress=127.0.0.1"])
        .args(["--conf", "spark.ui.enabled=false"])
        .arg("--conf")
        .arg(format!(
            "spark.kubernetes.executor.annotation.secrets.iomete.com/env-secrets={}",
            references(domain)
        ))
        .arg(&app);
    // The driver runs here, as a child of this test process: stopped below or by the harness.
    let mut child = spawn_guarded(command).unwrap();
    let deadline = Instant::now() + Duration::from_secs(180);
    let pods = loop {
        let text = cluster.plane.kubectl_ok(
            &[
                "get",
                "pods",
                "-n",
                namespace,
                "-l",
                "spark-role=executor",
                "-o",
                "json",
            ],
            None,
        );
        let list: Value = serde_json::from_str(&text).unwrap();
        let pods = list["items"].as_array().cloned().unwrap_or_default();
        if pods.len() >= EXECUTORS {
            break pods;
        }
        let exited = child.try_wait().unwrap();
        assert!(
            Instant::now() < deadline && exited.is_none(),
            "{} executor pods ({exited:?}):\n{}",
            pods.len(),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    terminate(child, Duration::from_secs(10));
    for pod in &pods {
        assert_eq!(
            container_env(pod, "spark-kubernetes-executor", "AWS_SECRET_ACCESS_KEY").as_deref(),
            Some(VALUE),
            "{}",
            pod["metadata"]["name"]
        );
        assert_eq!(
            pod["metadata"]["annotations"]["secrets.iomete.com/injected"].as_str(),
            Some(expected_digest(pod).as_str())
        );
    }
    let printed = std::fs::read_to_string(&log).unwrap_or_default();
    assert_no_canary("spark-submit's output", &printed, &[VALUE]);
}
