//! Broker mode end to end on the real control plane: pods created with the real kubectl go
//! through the registered webhook in broker mode, and no value is stored. The stored pod, its
//! etcd key (read back with the real etcdctl) and an audit log that records whole pods
//! (`AUDITED_NAMESPACE`, level RequestResponse) hold no canary. An env-mode pod beside it shows
//! that the same three places do record values when the spec carries them. Then `iomete-env`,
//! the real binary, runs with the stored container's environment and a token that the API
//! server bound to that pod. It gets every value byte-exact from the registered webhook's
//! broker, and a real `spark-submit` started through it reads the Spark properties.
//!
//! No kubelet runs here, so the test does what the kubelet would: it expands the stored env,
//! writes the token file and runs the wrapped command.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};

use iomete_secrets_webhook::decision::delivery::{
    BROKER_AUDIENCE, DELIVERY_ANNOTATION, ENV_TOKEN_FILE, INSTALL_CONTAINER, WRAPPER_BINARY,
    WRAPPER_DIR,
};
use serde_json::{Value, json};

use crate::broker::harness::{self, ACCOUNT};
use crate::control_plane::AUDITED_NAMESPACE;
use crate::env::Cluster;
use crate::support::{hostile_values, kubelet_env};
use crate::{apply_pod, assert_no_canary, assert_success, audit_events_for, stderr, stdout};

const DOMAIN: &str = "brokeraudit";
/// The Spark test's namespace and domain, apart from the audited one's store.
const SPARK_NAMESPACE: &str = "broker-spark";
const SPARK_DOMAIN: &str = "brokerspark";
/// Delivered by the broker: must never be stored.
const CANARY_BROKER: &str = "broker-canary-value-3c9d";
/// Delivered in env mode, beside it: the control that the places searched do record values.
const CANARY_ENV: &str = "env-mode-canary-value-77b1";
const IOMETE_ENV: &str = env!("CARGO_BIN_EXE_iomete-env");

/// The corpus that can be an env value (no NUL), as `(env name, store key, value)`.
fn corpus() -> Vec<(String, String, String)> {
    let mut corpus = vec![(
        "BROKER_CANARY".to_owned(),
        "canary".to_owned(),
        CANARY_BROKER.to_owned(),
    )];
    for (index, value) in hostile_values().into_iter().enumerate() {
        if !value.contains('\0') {
            corpus.push((
                format!("HOSTILE_{index}"),
                format!("hostile-{index}"),
                value,
            ));
        }
    }
    corpus
}

fn broker_pod(name: &str, references: &[(String, String, String)], container: Value) -> Value {
    let entries: Vec<Value> = references
        .iter()
        .map(|(env, key, _)| json!({"key": env, "secretObject": {"key": key, "source": {"type": "KUBERNETES", "id": DOMAIN}}}))
        .collect();
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": AUDITED_NAMESPACE, "annotations": {
            "secrets.iomete.com/env-secrets": Value::Array(entries).to_string(),
            DELIVERY_ANNOTATION: "broker",
        }},
        "spec": {"serviceAccountName": ACCOUNT, "containers": [container]},
    })
}

/// The namespace, the ServiceAccount its pods run as (the TokenRequest API binds a token only to
/// a pod of the account it is for) and its store.
fn setup(cluster: &Cluster, namespace: &str, domain: &str, store: &[(String, String, String)]) {
    harness::namespace(cluster, namespace, domain);
    let data: Vec<(&str, &str)> = store
        .iter()
        .map(|(_, key, value)| (key.as_str(), value.as_str()))
        .collect();
    cluster.store(domain, &data);
}

/// The pod's bytes as etcd stores them (the API server's protobuf), read back with the real
/// etcdctl built beside etcd.
fn etcd_bytes(cluster: &Cluster, namespace: &str, name: &str) -> Vec<u8> {
    let output = Command::new(cluster.plane.bin_dir().join("etcdctl"))
        .arg(format!(
            "--endpoints=http://127.0.0.1:{}",
            cluster.plane.etcd_port()
        ))
        .args(["get", "--print-value-only"])
        .arg(format!("/registry/pods/{namespace}/{name}"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        output.status.success() && !output.stdout.is_empty(),
        "etcdctl get {namespace}/{name}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle.as_bytes())
}

/// A token the API server mints for `pod` (audience `iomete-secrets-broker`), written where
/// `iomete-env` reads it.
fn token_file(cluster: &Cluster, pod: &Value, dir: &Path) -> std::path::PathBuf {
    let meta = &pod["metadata"];
    let [name, namespace, uid] = ["name", "namespace", "uid"].map(|f| meta[f].as_str().unwrap());
    let token = harness::token(cluster, namespace, name, uid, Some(BROKER_AUDIENCE));
    let path = dir.join(format!("{name}.token"));
    std::fs::write(&path, token).unwrap();
    path
}

/// The stored container's wrapped command, with `iomete-env` at the path of this build.
fn wrapped_command(container: &Value) -> Vec<String> {
    let command: Vec<String> = container["command"]
        .as_array()
        .unwrap()
        .iter()
        .map(|part| part.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(command[0], format!("{WRAPPER_DIR}/{WRAPPER_BINARY}"));
    assert_eq!(command[1], "--");
    command
}

#[test]
fn a_broker_pod_stores_no_value_and_iomete_env_delivers_every_value_byte_exact() {
    let Some(cluster) = Cluster::shared("broker_flow_no_value_stored") else {
        return;
    };
    let references = corpus();
    let mut store = references.clone();
    store.push(("ENV_CANARY".into(), "env-canary".into(), CANARY_ENV.into()));
    setup(cluster, AUDITED_NAMESPACE, DOMAIN, &store);

    let pod = broker_pod(
        "broker-app",
        &references,
        json!({"name": "app", "image": "busybox", "command": ["/usr/bin/env", "-0"]}),
    );
    let output = apply_pod(cluster, &pod, &[]);
    assert_success(&output);
    assert_no_canary(
        "kubectl's output",
        &(stdout(&output) + &stderr(&output)),
        &[CANARY_BROKER],
    );
    let control = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "env-app", "namespace": AUDITED_NAMESPACE, "annotations": {
            "secrets.iomete.com/env-secrets": json!([{"key": "ENV_CANARY", "secretObject":
                {"key": "env-canary", "source": {"type": "KUBERNETES", "id": DOMAIN}}}]).to_string(),
        }},
        "spec": {"serviceAccountName": ACCOUNT, "containers": [{"name": "app", "image": "busybox"}]},
    });
    assert_success(&apply_pod(cluster, &control, &[]));

    // The stored pod: wrapped, and not one value in it.
    let stored = cluster.stored_pod(AUDITED_NAMESPACE, "broker-app");
    let text = stored.to_string();
    let distinctive: Vec<&str> = references
        .iter()
        .map(|(_, _, value)| value.as_str())
        .filter(|value| value.len() >= 12)
        .collect();
    assert_no_canary("the stored broker-mode pod", &text, &distinctive);
    assert_eq!(
        stored["spec"]["initContainers"][0]["name"],
        INSTALL_CONTAINER
    );
    let container = &stored["spec"]["containers"][0];
    assert_eq!(
        wrapped_command(container)[2..],
        ["/usr/bin/env".to_owned(), "-0".to_owned()]
    );

    // etcd and the audit log: nothing from the broker pod, the control pod's value from the
    // env-mode pod (so the search would find one).
    let broker_bytes = etcd_bytes(cluster, AUDITED_NAMESPACE, "broker-app");
    assert!(contains(&broker_bytes, "broker-app"), "read the right key");
    assert!(
        !contains(&broker_bytes, CANARY_BROKER),
        "etcd holds the value"
    );
    let control_bytes = etcd_bytes(cluster, AUDITED_NAMESPACE, "env-app");
    assert!(
        contains(&control_bytes, CANARY_ENV),
        "the control's value is in etcd"
    );
    let events = audit_events_for(cluster, AUDITED_NAMESPACE, "broker-app");
    assert!(
        events
            .iter()
            .any(|event| event["level"] == "RequestResponse"
                && event["responseObject"]["metadata"]["name"] == "broker-app"),
        "the audit log records the whole pod: {events:?}"
    );
    assert_no_canary(
        "the audit log",
        &Value::Array(events).to_string(),
        &distinctive,
    );
    let control_events = audit_events_for(cluster, AUDITED_NAMESPACE, "env-app");
    assert!(
        Value::Array(control_events)
            .to_string()
            .contains(CANARY_ENV),
        "the control's value is in the audit log"
    );

    // At container start: the stored env, a pod-bound token, the wrapped command.
    let work = tempfile::tempdir().unwrap();
    let token = token_file(cluster, &stored, work.path());
    let command = wrapped_command(container);
    let output = Command::new(IOMETE_ENV)
        .args(&command[1..])
        .env_clear()
        .envs(kubelet_env(container))
        .env(ENV_TOKEN_FILE, &token)
        .env(
            "IOMETE_ENV_TERMINATION_LOG",
            work.path().join("termination"),
        )
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let errors = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "iomete-env failed: {errors}");
    assert_no_canary("iomete-env's errors", &errors, &distinctive);
    let delivered: BTreeMap<String, Vec<u8>> = output
        .stdout
        .split(|byte| *byte == 0)
        .filter(|entry| !entry.is_empty())
        .filter_map(|entry| {
            let split = entry.iter().position(|byte| *byte == b'=')?;
            let name = String::from_utf8(entry[..split].to_vec()).ok()?;
            Some((name, entry[split + 1..].to_vec()))
        })
        .collect();
    for (name, _, value) in &references {
        assert_eq!(
            delivered.get(name).map(Vec::as_slice),
            Some(value.as_bytes()),
            "{name} arrives byte-exact"
        );
    }
    assert!(
        delivered
            .keys()
            .all(|name| !name.starts_with("IOMETE_ENV_")),
        "the control variables are removed: {:?}",
        delivered.keys().collect::<Vec<_>>()
    );
    assert_no_canary("the webhook's log", &cluster.webhook_log(), &distinctive);
}

#[test]
fn a_real_spark_submit_started_through_iomete_env_reads_the_spark_properties() {
    let Some(cluster) = Cluster::shared("broker_flow_spark_submit") else {
        return;
    };
    let Some(spark_submit) = crate::spark::spark_submit() else {
        return;
    };
    let value = "spark-broker-canary-' -Dspark.evil=1 '$(HOME)\"\\ end";
    setup(
        cluster,
        SPARK_NAMESPACE,
        SPARK_DOMAIN,
        &[("UNUSED".into(), "s3-secret".into(), value.into())],
    );
    let conf = json!([{"key": "spark.iomete.broker.secret", "secretObject":
        {"key": "s3-secret", "source": {"type": "KUBERNETES", "id": SPARK_DOMAIN}}}])
    .to_string();
    let mut pod = broker_pod(
        "broker-spark-driver",
        &[],
        json!({"name": "spark-kubernetes-driver", "image": "apache/spark:3.5.8",
            "args": ["driver"], "env": [{"name": "SPARK_SUBMIT_OPTS", "value": "-Dspark.iomete.literal=kept"}]}),
    );
    pod["metadata"]["namespace"] = json!(SPARK_NAMESPACE);
    let annotations = pod["metadata"]["annotations"].as_object_mut().unwrap();
    annotations.remove("secrets.iomete.com/env-secrets");
    annotations.insert("secrets.iomete.com/spark-conf-secrets".into(), conf.into());
    assert_success(&apply_pod(cluster, &pod, &[]));
    let stored = cluster.stored_pod(SPARK_NAMESPACE, "broker-spark-driver");
    assert_no_canary(
        "the stored driver pod",
        &stored.to_string(),
        &["spark-broker-canary"],
    );
    let container = &stored["spec"]["containers"][0];
    assert_eq!(
        wrapped_command(container)[2..],
        ["/opt/entrypoint.sh".to_owned()]
    );

    // The image's entrypoint would run spark-submit; here iomete-env runs it directly.
    let work = tempfile::tempdir().unwrap();
    let token = token_file(cluster, &stored, work.path());
    let probe = work.path().join("probe.py");
    std::fs::write(&probe, PROBE).unwrap();
    let venv = spark_submit.parent().unwrap();
    let path = format!(
        "{}:{}",
        venv.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut command = Command::new(IOMETE_ENV);
    command
        .arg("--")
        .arg(&spark_submit)
        .args(["--master", "local[1]", "--conf", "spark.ui.enabled=false"])
        .arg(&probe)
        .env_clear()
        .envs(kubelet_env(container))
        .env(ENV_TOKEN_FILE, &token)
        .env("PATH", path)
        .env("HOME", work.path())
        .env("LC_ALL", "C.UTF-8")
        .env("PYSPARK_PYTHON", venv.join("python"))
        .current_dir(work.path())
        .stdin(Stdio::null());
    if let Some(java_home) = std::env::var_os("JAVA_HOME") {
        command.env("JAVA_HOME", java_home);
    }
    let output = command.output().unwrap();
    let (out, err) = (
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    assert!(
        output.status.success(),
        "spark-submit through iomete-env: {err}"
    );
    assert_no_canary(
        "spark-submit's output",
        &format!("{out}{err}"),
        &["spark-broker-canary"],
    );
    let line = out
        .lines()
        .find_map(|line| line.strip_prefix("IOMETE-RESULT "))
        .unwrap_or_else(|| panic!("no result line in:\n{out}\n{err}"));
    let result: Value = serde_json::from_str(line).unwrap();
    let hex = |property: &str| result[property].as_str().unwrap_or_default().to_owned();
    assert_eq!(hex("spark.iomete.broker.secret"), hex_of(value));
    assert_eq!(
        hex("spark.iomete.literal"),
        hex_of("kept"),
        "the container's own options stay"
    );
}

fn hex_of(text: &str) -> String {
    text.bytes().map(|byte| format!("{byte:02x}")).collect()
}

/// Prints the `spark.iomete.*` properties SparkConf holds, hex-encoded (never as themselves).
const PROBE: &str = r#"
import json
from pyspark.sql import SparkSession
spark = SparkSession.builder.getOrCreate()
conf = spark.sparkContext.getConf().getAll()
print("IOMETE-RESULT " + json.dumps({k: v.encode("utf-8", "surrogatepass").hex() for k, v in conf if k.startswith("spark.iomete.")}))
spark.stop()
"#;
