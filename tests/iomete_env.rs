//! The real `iomete-env` binary against a test broker: a small HTTPS server on 127.0.0.1 with a
//! CA made for the test, answering as each scenario says.
//!
//! The fake broker is deliberate: these tests are about what `iomete-env` does when the broker
//! is slow, unavailable, refuses, or answers what it must not (names outside the list,
//! `LD_PRELOAD`, duplicates, missing entries), which the real broker cannot be made to do.
//! Each server is stopped when its test ends, by `Drop`, so also when the test fails.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use iomete_secrets_webhook::decision::reference::{
    EnvSecret, KubernetesStore, SecretRef, Source, SparkConfSecret, write_reference_list,
};
use secrecy::ExposeSecret;
use serde_json::{Value, json};

mod support;
use support::hostile_values;

const BIN: &str = env!("CARGO_BIN_EXE_iomete-env");
const CONTAINER: &str = "spark-kubernetes-driver";
/// Never allowed in a message, a log or the termination message.
const CANARY: &str = "canary-value-7f3a";
const TOKEN: &str = "eyJhbGciOiJSUzI1NiJ9.test-token.sig";

/// How the test broker answers its `n`th request (from 0): a status and a JSON body.
type Script = Box<dyn Fn(usize) -> (u16, Value) + Send + Sync>;

struct Scenario {
    script: Script,
    calls: AtomicUsize,
    /// Every request's `Authorization` header and body.
    seen: Mutex<Vec<(Option<String>, String)>>,
}

async fn answer_env(
    State(scenario): State<Arc<Scenario>>,
    headers: HeaderMap,
    body: String,
) -> impl IntoResponse {
    let call = scenario.calls.fetch_add(1, Ordering::SeqCst);
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    scenario.seen.lock().unwrap().push((authorization, body));
    let (status, answer) = (scenario.script)(call);
    (
        StatusCode::from_u16(status).unwrap(),
        [(header::CONTENT_TYPE, "application/json")],
        answer.to_string(),
    )
}

/// A running test broker; stopped when dropped.
struct Broker {
    url: String,
    ca_pem: String,
    scenario: Arc<Scenario>,
    handle: axum_server::Handle<std::net::SocketAddr>,
    task: tokio::task::JoinHandle<()>,
}

impl Broker {
    async fn start(script: impl Fn(usize) -> (u16, Value) + Send + Sync + 'static) -> Broker {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let bundle = iomete_secrets_webhook::boot::certs::generate(&[
            "127.0.0.1".into(),
            "localhost".into(),
        ])
        .unwrap();
        let config = axum_server::tls_rustls::RustlsConfig::from_pem(
            bundle.cert_pem.clone().into_bytes(),
            bundle.key_pem.expose_secret().as_bytes().to_vec(),
        )
        .await
        .unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let scenario = Arc::new(Scenario {
            script: Box::new(script),
            calls: AtomicUsize::new(0),
            seen: Mutex::new(Vec::new()),
        });
        let app = axum::Router::new()
            .route("/v1/env", axum::routing::post(answer_env))
            .with_state(scenario.clone());
        let handle = axum_server::Handle::new();
        let server = axum_server::from_tcp_rustls(listener, config)
            .unwrap()
            .handle(handle.clone());
        let task = tokio::spawn(async move {
            let _ = server.serve(app.into_make_service()).await;
        });
        Broker {
            url: format!("https://127.0.0.1:{port}"),
            ca_pem: bundle.ca_pem,
            scenario,
            handle,
            task,
        }
    }

    /// The same broker by host name, resolved through `/etc/hosts` by hickory.
    fn url_by_name(&self) -> String {
        self.url.replace("127.0.0.1", "localhost")
    }

    fn calls(&self) -> usize {
        self.scenario.calls.load(Ordering::SeqCst)
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.handle.shutdown();
        self.task.abort();
    }
}

fn secret(key: &str) -> SecretRef {
    SecretRef {
        source: Source::Kubernetes(KubernetesStore::Domain("finance".into())),
        key: key.into(),
    }
}

/// The reference list the admission would write for these env names and Spark properties.
fn reference_list(env: &[&str], spark: &[&str]) -> String {
    let env: Vec<EnvSecret> = env
        .iter()
        .enumerate()
        .map(|(index, name)| EnvSecret {
            env_name: (*name).to_owned(),
            secret: secret(&format!("e{index}")),
        })
        .collect();
    let spark: Vec<SparkConfSecret> = spark
        .iter()
        .enumerate()
        .map(|(index, property)| SparkConfSecret {
            property: (*property).to_owned(),
            secret: secret(&format!("s{index}")),
        })
        .collect();
    write_reference_list(&env, &spark)
}

fn answer(env: &[(&str, &str)], spark: &[(&str, &str)]) -> Value {
    json!({
        "env": env.iter().map(|(name, value)| json!({"name": name, "value": value})).collect::<Vec<_>>(),
        "sparkConf": spark.iter().map(|(property, value)| json!({"property": property, "value": value})).collect::<Vec<_>>(),
    })
}

/// One `iomete-env` run: its files and environment.
struct Run {
    dir: tempfile::TempDir,
    env: Vec<(String, String)>,
}

impl Run {
    /// A run against `broker_url` trusting `ca_pem`, for the container's `references`.
    fn new(broker_url: &str, ca_pem: &str, references: &str) -> Run {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("token"), format!("{TOKEN}\n")).unwrap();
        let path = |name: &str| dir.path().join(name).to_string_lossy().into_owned();
        let env = vec![
            ("PATH".into(), "/usr/local/bin:/usr/bin:/bin".into()),
            ("IOMETE_ENV_BROKER_URL".into(), broker_url.into()),
            ("IOMETE_ENV_BROKER_CA".into(), ca_pem.into()),
            ("IOMETE_ENV_CONTAINER".into(), CONTAINER.into()),
            ("IOMETE_ENV_REFERENCES".into(), references.into()),
            ("IOMETE_ENV_TOKEN_FILE".into(), path("token")),
            ("IOMETE_ENV_TERMINATION_LOG".into(), path("termination-log")),
            ("IOMETE_ENV_DEADLINE".into(), "20".into()),
        ];
        Run { dir, env }
    }

    fn set(&mut self, name: &str, value: &str) -> &mut Run {
        self.env.retain(|(existing, _)| existing != name);
        self.env.push((name.into(), value.into()));
        self
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn command(&self, binary: &Path, command: &[&str]) -> std::process::Command {
        let mut child = std::process::Command::new(binary);
        child
            .arg("--")
            .args(command)
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        child
    }

    /// Runs `iomete-env -- command` (off the runtime, which serves the broker).
    async fn output(&self, command: &[&str]) -> Outcome {
        self.output_with(Path::new(BIN), command).await
    }

    async fn output_with(&self, binary: &Path, command: &[&str]) -> Outcome {
        let mut child = self.command(binary, command);
        let output = tokio::task::spawn_blocking(move || child.output().unwrap())
            .await
            .unwrap();
        Outcome {
            code: output.status.code(),
            stdout: output.stdout,
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            termination: std::fs::read_to_string(self.path("termination-log")).ok(),
        }
    }
}

#[derive(Debug)]
struct Outcome {
    code: Option<i32>,
    stdout: Vec<u8>,
    stderr: String,
    termination: Option<String>,
}

impl Outcome {
    /// The child's environment, from `env -0`.
    fn env(&self) -> BTreeMap<String, String> {
        self.stdout
            .split(|&b| b == 0)
            .filter(|entry| !entry.is_empty())
            .map(|entry| {
                let text = String::from_utf8(entry.to_vec()).unwrap();
                let (name, value) = text.split_once('=').unwrap();
                (name.to_owned(), value.to_owned())
            })
            .collect()
    }

    /// A failure: its code, one termination line naming no value, the same on stderr.
    fn assert_failed(&self, code: i32, mentions: &str) {
        assert_eq!(self.code, Some(code), "{self:?}");
        let termination = self.termination.as_deref().expect("a termination message");
        assert_eq!(termination.lines().count(), 1, "{termination:?}");
        assert!(termination.starts_with("iomete-env: "), "{termination:?}");
        assert!(termination.contains(mentions), "{termination:?}");
        assert!(self.stderr.contains(termination.trim_end()), "{self:?}");
        for text in [termination, &self.stderr] {
            assert!(!text.contains(CANARY) && !text.contains(TOKEN), "{text}");
        }
        assert!(self.stdout.is_empty(), "the command must not have run");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_reach_the_command_byte_exact_without_control_variables() {
    let corpus = hostile_values();
    let names: Vec<String> = (0..corpus.len()).map(|i| format!("HOSTILE_{i}")).collect();
    let mut env_names: Vec<&str> = names.iter().map(String::as_str).collect();
    env_names.push("DB_PASSWORD");
    let mut values: Vec<(&str, &str)> = names
        .iter()
        .map(String::as_str)
        .zip(corpus.iter().map(String::as_str))
        .collect();
    values.push(("DB_PASSWORD", CANARY));
    let body = answer(&values, &[]);
    let broker = Broker::start(move |_| (200, body.clone())).await;
    let mut run = Run::new(
        &broker.url,
        &broker.ca_pem,
        &reference_list(&env_names, &[]),
    );
    run.set("KEEP_ME", "kept")
        .set("DB_PASSWORD", "from the pod spec");

    let outcome = run.output(&["/usr/bin/env", "-0"]).await;

    assert_eq!(outcome.code, Some(0), "{outcome:?}");
    let env = outcome.env();
    for (name, value) in &values {
        assert_eq!(env.get(*name).map(String::as_str), Some(*value), "{name}");
    }
    assert_eq!(env["KEEP_ME"], "kept");
    assert_eq!(env["PATH"], "/usr/local/bin:/usr/bin:/bin");
    let control: Vec<&String> = env
        .keys()
        .filter(|k| k.starts_with("IOMETE_ENV_"))
        .collect();
    assert!(control.is_empty(), "{control:?}");
    assert_eq!(env.len(), values.len() + 2, "{:?}", env.keys());
    assert!(!outcome.stderr.contains(CANARY), "{}", outcome.stderr);
    // The token file's content, sent as bearer, and the container's name.
    let seen = broker.scenario.seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        vec![(
            Some(format!("Bearer {TOKEN}")),
            json!({"container": CONTAINER}).to_string()
        )]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_keeps_the_process_id() {
    let broker = Broker::start(|_| (200, answer(&[("DB_PASSWORD", CANARY)], &[]))).await;
    let run = Run::new(
        &broker.url,
        &broker.ca_pem,
        &reference_list(&["DB_PASSWORD"], &[]),
    );
    let mut command = run.command(Path::new(BIN), &["sh", "-c", "echo $$"]);
    let output = tokio::task::spawn_blocking(move || {
        let child = command
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let pid = child.id();
        (pid, child.wait_with_output().unwrap())
    })
    .await
    .unwrap();
    let (pid, output) = output;
    assert!(output.status.success(), "{output:?}");
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        pid.to_string()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spark_properties_are_appended_to_spark_submit_opts() {
    const S3: &str = "spark.hadoop.fs.s3a.secret.key";
    let broker = Broker::start(|_| {
        let value = format!("{CANARY} it's $(HOME)");
        (
            200,
            answer(&[], &[(S3, value.as_str()), ("spark.iomete.tag", "t")]),
        )
    })
    .await;
    let mut run = Run::new(
        &broker.url,
        &broker.ca_pem,
        &reference_list(&[], &[S3, "spark.iomete.tag"]),
    );
    run.set("SPARK_SUBMIT_OPTS", "-Xss4m '-Dx=a b'");
    let outcome = run.output(&["/usr/bin/env", "-0"]).await;
    assert_eq!(outcome.code, Some(0), "{outcome:?}");
    assert_eq!(
        outcome.env()["SPARK_SUBMIT_OPTS"],
        format!("-Xss4m '-Dx=a b' '-D{S3}={CANARY} it'\\''s $(HOME)' '-Dspark.iomete.tag=t'")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_that_is_unavailable_at_first_is_retried() {
    let broker = Broker::start(|call| match call {
        0 => (
            503,
            json!({"error": "caches are not synced yet", "retriable": true}),
        ),
        1 => (429, json!({"error": "rate limited", "retriable": true})),
        _ => (200, answer(&[("DB_PASSWORD", CANARY)], &[])),
    })
    .await;
    let run = Run::new(
        &broker.url,
        &broker.ca_pem,
        &reference_list(&["DB_PASSWORD"], &[]),
    );
    let outcome = run.output(&["/usr/bin/env", "-0"]).await;
    assert_eq!(outcome.code, Some(0), "{outcome:?}");
    assert_eq!(outcome.env()["DB_PASSWORD"], CANARY);
    assert_eq!(broker.calls(), 3);
    // The token is read again for every attempt.
    let seen = broker.scenario.seen.lock().unwrap().clone();
    assert!(
        seen.iter()
            .all(|(auth, _)| auth.as_deref() == Some(&format!("Bearer {TOKEN}")))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_is_final_and_reported_without_values() {
    let broker = Broker::start(|_| {
        (403, json!({"error": "container \"spark-kubernetes-driver\" is not wrapped in this pod", "retriable": false}))
    })
    .await;
    let run = Run::new(
        &broker.url,
        &broker.ca_pem,
        &reference_list(&["DB_PASSWORD"], &[]),
    );
    let outcome = run.output(&["/usr/bin/env", "-0"]).await;
    outcome.assert_failed(68, "the broker refused (HTTP 403): container");
    assert_eq!(broker.calls(), 1, "a 403 is not retried");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_broker_fails_at_the_deadline() {
    // A port nothing listens on: bound, then closed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let ca = iomete_secrets_webhook::boot::certs::generate(&["127.0.0.1".into()]).unwrap();
    let mut run = Run::new(
        &format!("https://127.0.0.1:{port}"),
        &ca.ca_pem,
        &reference_list(&["DB_PASSWORD"], &[]),
    );
    run.set("IOMETE_ENV_DEADLINE", "2");
    let started = Instant::now();
    let outcome = run.output(&["/usr/bin/env", "-0"]).await;
    let elapsed = started.elapsed();
    outcome.assert_failed(67, "did not answer within the 2s deadline");
    assert!(
        elapsed >= Duration::from_secs(2) && elapsed < Duration::from_secs(10),
        "{elapsed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_whose_certificate_another_ca_signed_is_refused() {
    let broker = Broker::start(|_| (200, answer(&[("DB_PASSWORD", CANARY)], &[]))).await;
    let other = iomete_secrets_webhook::boot::certs::generate(&["127.0.0.1".into()]).unwrap();
    let mut run = Run::new(
        &broker.url,
        &other.ca_pem,
        &reference_list(&["DB_PASSWORD"], &[]),
    );
    run.set("IOMETE_ENV_DEADLINE", "1");
    let outcome = run.output(&["/usr/bin/env", "-0"]).await;
    outcome.assert_failed(67, "certificate");
    assert_eq!(broker.calls(), 0, "no request passed the handshake");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_token_is_named() {
    let broker = Broker::start(|_| (200, answer(&[("DB_PASSWORD", CANARY)], &[]))).await;
    let mut run = Run::new(
        &broker.url,
        &broker.ca_pem,
        &reference_list(&["DB_PASSWORD"], &[]),
    );
    let missing = run.path("no-such-token");
    run.set("IOMETE_ENV_TOKEN_FILE", &missing.to_string_lossy());
    let outcome = run.output(&["/usr/bin/env", "-0"]).await;
    outcome.assert_failed(66, "cannot read the token file");
    assert_eq!(broker.calls(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_named_by_host_name_is_resolved() {
    let broker = Broker::start(|_| (200, answer(&[("DB_PASSWORD", CANARY)], &[]))).await;
    let run = Run::new(
        &broker.url_by_name(),
        &broker.ca_pem,
        &reference_list(&["DB_PASSWORD"], &[]),
    );
    let outcome = run.output(&["/usr/bin/env", "-0"]).await;
    assert_eq!(outcome.code, Some(0), "{outcome:?}");
    assert_eq!(outcome.env()["DB_PASSWORD"], CANARY);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_that_cannot_be_executed_is_named() {
    let broker = Broker::start(|_| (200, answer(&[("DB_PASSWORD", CANARY)], &[]))).await;
    let run = Run::new(
        &broker.url,
        &broker.ca_pem,
        &reference_list(&["DB_PASSWORD"], &[]),
    );
    let outcome = run.output(&["no-such-command-on-path", "arg"]).await;
    outcome.assert_failed(71, "cannot execute \"no-such-command-on-path\"");
}

/// The answers `iomete-env` must refuse, each with the list it was asked for.
#[rstest::rstest]
#[case::name_outside_the_list(&["DB_PASSWORD"], answer(&[("DB_PASSWORD", CANARY), ("EXTRA", CANARY)], &[]), "\"EXTRA\", which the reference list does not name")]
#[case::loader_name_outside_the_list(&["DB_PASSWORD"], answer(&[("DB_PASSWORD", CANARY), ("LD_PRELOAD", "/tmp/evil.so")], &[]), "\"LD_PRELOAD\", a name iomete-env never sets")]
#[case::loader_name_in_the_list(&["LD_PRELOAD"], answer(&[("LD_PRELOAD", "/tmp/evil.so")], &[]), "\"LD_PRELOAD\", a name iomete-env never sets")]
#[case::missing_reference(&["DB_PASSWORD", "API_TOKEN"], answer(&[("DB_PASSWORD", CANARY)], &[]), "no value for env \"API_TOKEN\"")]
#[case::duplicate(&["DB_PASSWORD"], answer(&[("DB_PASSWORD", CANARY), ("DB_PASSWORD", CANARY)], &[]), "sets \"DB_PASSWORD\" twice")]
#[case::malformed(&["DB_PASSWORD"], json!({"env": [{"name": "DB_PASSWORD", "value": CANARY, "extra": CANARY}]}), "not the expected JSON")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_that_do_not_match_the_list_are_refused(
    #[case] listed: &[&str],
    #[case] body: Value,
    #[case] mentions: &str,
) {
    let broker = Broker::start(move |_| (200, body.clone())).await;
    let run = Run::new(&broker.url, &broker.ca_pem, &reference_list(listed, &[]));
    let outcome = run.output(&["/usr/bin/env", "-0"]).await;
    outcome.assert_failed(69, mentions);
}

/// The static build (scripts/build-iomete-env.sh, which `.ci/run` runs and names in
/// `IOMETE_ENV_STATIC_BIN`): no ELF interpreter, `install` copies it, and the copy delivers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_static_build_installs_and_delivers() {
    let Some(binary) = std::env::var_os("IOMETE_ENV_STATIC_BIN") else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "IOMETE_ENV_STATIC_BIN is not set: in CI the static build is tested, never skipped (run scripts/build-iomete-env.sh)"
        );
        eprintln!("note: IOMETE_ENV_STATIC_BIN is not set; the static build is not tested");
        return;
    };
    let binary = PathBuf::from(binary);
    let elf = std::fs::read(&binary).unwrap();
    assert!(!has_interpreter(&elf), "{} is not static", binary.display());

    let broker = Broker::start(|_| (200, answer(&[("DB_PASSWORD", CANARY)], &[]))).await;
    // By host name: a static glibc has no NSS, so this resolves only through hickory.
    let run = Run::new(
        &broker.url_by_name(),
        &broker.ca_pem,
        &reference_list(&["DB_PASSWORD"], &[]),
    );
    let dest = run.path("volume").join("iomete-env");
    std::fs::create_dir(run.path("volume")).unwrap();
    let status = std::process::Command::new(&binary)
        .arg("install")
        .arg(&dest)
        .env_clear()
        .status()
        .unwrap();
    assert!(status.success(), "{status:?}");
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(&dest).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o555);
    assert_eq!(std::fs::read(&dest).unwrap(), elf);

    let outcome = run.output_with(&dest, &["/usr/bin/env", "-0"]).await;
    assert_eq!(outcome.code, Some(0), "{outcome:?}");
    assert_eq!(outcome.env()["DB_PASSWORD"], CANARY);
}

/// Whether a 64-bit little-endian ELF file has a `PT_INTERP` program header (a dynamic loader).
fn has_interpreter(elf: &[u8]) -> bool {
    const PT_INTERP: u32 = 3;
    assert!(elf.len() > 64 && &elf[..4] == b"\x7fELF", "not an ELF file");
    assert_eq!(elf[4], 2, "not a 64-bit ELF file");
    assert_eq!(elf[5], 1, "not a little-endian ELF file");
    let u16_at = |at: usize| u16::from_le_bytes(elf[at..at + 2].try_into().unwrap());
    let u32_at = |at: usize| u32::from_le_bytes(elf[at..at + 4].try_into().unwrap());
    let u64_at = |at: usize| u64::from_le_bytes(elf[at..at + 8].try_into().unwrap());
    let table = usize::try_from(u64_at(0x20)).unwrap();
    let entry_size = usize::from(u16_at(0x36));
    let entries = usize::from(u16_at(0x38));
    (0..entries).any(|index| u32_at(table + index * entry_size) == PT_INTERP)
}

#[test]
fn the_elf_reader_sees_the_test_binarys_interpreter() {
    // This test binary is linked dynamically, as cargo links tests by default.
    let own = std::fs::read(std::env::current_exe().unwrap()).unwrap();
    assert!(has_interpreter(&own));
}
