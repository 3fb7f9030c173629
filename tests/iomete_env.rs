//! The real `iomete-env` binary against a test broker: a small HTTPS server on 127.0.0.1 with a
//! CA made for the test, answering as each scenario says.
//!
//! The fake broker is deliberate: these tests are about what `iomete-env` does when the broker
//! is slow, unavailable, refuses, or answers what it must not (names outside the list,
//! `LD_PRELOAD`, duplicates, missing entries), which the real broker cannot be made to do.
//! Each server is stopped when its test ends, by `Drop`, so also when the test fails.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

#[path = "iomete_env/harness.rs"]
mod harness;
mod support;
use harness::{Broker, Run, answer, has_interpreter, reference_list};
use support::hostile_values;

const BIN: &str = env!("CARGO_BIN_EXE_iomete-env");
const CONTAINER: &str = "spark-kubernetes-driver";
/// Never allowed in a message, a log or the termination message.
const CANARY: &str = "canary-value-7f3a";
const TOKEN: &str = "eyJhbGciOiJSUzI1NiJ9.test-token.sig";

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

#[test]
fn the_elf_reader_sees_the_test_binarys_interpreter() {
    // This test binary is linked dynamically, as cargo links tests by default.
    let own = std::fs::read(std::env::current_exe().unwrap()).unwrap();
    assert!(has_interpreter(&own));
}
