//! The command line, the control variables and the exit codes.

use std::ffi::OsString;
use std::time::Duration;

use rstest::rstest;

use super::*;
use crate::broker::protocol::Refusal;
use crate::decision::reference::ReferenceError;

const CANARY: &str = "canary-value-7f3a";
/// PEM armour around bytes that are not a certificate.
const NOT_A_CERTIFICATE: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
const LIST: &str = r#"{"env-secrets":[{"key":"DB_PASSWORD","secretObject":{"key":"db","source":{"type":"KUBERNETES","id":"finance"}}}]}"#;

fn args(words: &[&str]) -> Vec<OsString> {
    words.iter().map(OsString::from).collect()
}

fn env(pairs: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
    pairs
        .iter()
        .map(|(name, value)| (OsString::from(name), OsString::from(value)))
        .collect()
}

fn control_env(overrides: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
    let ca = crate::boot::certs::generate(&["broker".to_owned()])
        .unwrap()
        .ca_pem;
    let mut pairs = vec![
        (
            "IOMETE_ENV_BROKER_URL",
            "https://broker.iomete-system.svc:8444",
        ),
        ("IOMETE_ENV_BROKER_CA", ca.as_str()),
        ("IOMETE_ENV_CONTAINER", "spark-kubernetes-driver"),
        ("IOMETE_ENV_REFERENCES", LIST),
    ];
    for (name, value) in overrides {
        pairs.retain(|(existing, _)| existing != name);
        pairs.push((name, value));
    }
    env(&pairs)
}

#[rstest]
#[case::exec(&["--", "java", "-jar", "app.jar"], Some(Invocation::Exec { command: args(&["java", "-jar", "app.jar"]) }))]
#[case::exec_keeps_later_dashes(&["--", "sh", "--", "-c"], Some(Invocation::Exec { command: args(&["sh", "--", "-c"]) }))]
#[case::install(&["install", "/var/run/iomete-env/iomete-env"], Some(Invocation::Install { dest: "/var/run/iomete-env/iomete-env".into() }))]
#[case::nothing(&[], None)]
#[case::no_command(&["--"], None)]
#[case::no_dashes(&["java", "-jar"], None)]
#[case::install_without_dest(&["install"], None)]
#[case::install_empty_dest(&["install", ""], None)]
#[case::install_two_dests(&["install", "a", "b"], None)]
#[case::help(&["--help"], None)]
fn the_command_line_has_two_forms(#[case] words: &[&str], #[case] expected: Option<Invocation>) {
    match expected {
        Some(expected) => assert_eq!(Invocation::parse(args(words)).unwrap(), expected),
        None => {
            let error = Invocation::parse(args(words)).unwrap_err();
            assert!(matches!(error, control::ControlError::Usage), "{error:?}");
            assert_eq!(WrapperError::from(error).exit_status().code(), 64);
        }
    }
}

#[test]
fn control_variables_are_read_with_their_defaults() {
    let control = Control::from_env(&control_env(&[(
        "IOMETE_ENV_BROKER_URL",
        "https://10.0.0.1:8444/",
    )]))
    .unwrap();
    assert_eq!(control.broker_url, "https://10.0.0.1:8444");
    assert_eq!(control.container, "spark-kubernetes-driver");
    assert_eq!(control.references.env[0].env_name, "DB_PASSWORD");
    assert_eq!(
        control.token_file,
        std::path::Path::new("/var/run/secrets/iomete.com/broker/token")
    );
    assert_eq!(control.deadline, control::DEFAULT_DEADLINE);
    assert_eq!(
        termination_log(&control_env(&[])),
        std::path::Path::new("/dev/termination-log")
    );
    let custom = control_env(&[
        ("IOMETE_ENV_TOKEN_FILE", "/tmp/token"),
        ("IOMETE_ENV_DEADLINE", "7"),
        ("IOMETE_ENV_TERMINATION_LOG", "/tmp/reason"),
    ]);
    let control = Control::from_env(&custom).unwrap();
    assert_eq!(control.token_file, std::path::Path::new("/tmp/token"));
    assert_eq!(control.deadline, Duration::from_secs(7));
    assert_eq!(
        termination_log(&custom),
        std::path::Path::new("/tmp/reason")
    );
}

#[rstest]
#[case::no_url(("IOMETE_ENV_BROKER_URL", ""), "IOMETE_ENV_BROKER_URL", 64)]
#[case::http_url(("IOMETE_ENV_BROKER_URL", "http://broker:8444"), "IOMETE_ENV_BROKER_URL", 64)]
#[case::url_with_path(("IOMETE_ENV_BROKER_URL", "https://broker:8444/v1/env"), "IOMETE_ENV_BROKER_URL", 64)]
#[case::no_pem(("IOMETE_ENV_BROKER_CA", "not a certificate"), "IOMETE_ENV_BROKER_CA", 64)]
#[case::bad_pem(("IOMETE_ENV_BROKER_CA", NOT_A_CERTIFICATE), "IOMETE_ENV_BROKER_CA", 64)]
#[case::bad_container(("IOMETE_ENV_CONTAINER", "Not_A_Label"), "IOMETE_ENV_CONTAINER", 64)]
#[case::zero_deadline(("IOMETE_ENV_DEADLINE", "0"), "IOMETE_ENV_DEADLINE", 64)]
#[case::long_deadline(("IOMETE_ENV_DEADLINE", "3601"), "IOMETE_ENV_DEADLINE", 64)]
#[case::words_deadline(("IOMETE_ENV_DEADLINE", "2m"), "IOMETE_ENV_DEADLINE", 64)]
#[case::bad_list(("IOMETE_ENV_REFERENCES", "[]"), "IOMETE_ENV_REFERENCES", 65)]
#[case::bad_entry(("IOMETE_ENV_REFERENCES", r#"{"env-secrets":[{"key":"1BAD","secretObject":{"key":"db","source":{"type":"KUBERNETES","id":"finance"}}}]}"#), "IOMETE_ENV_REFERENCES", 65)]
fn bad_control_variables_are_named(
    #[case] bad: (&str, &str),
    #[case] named: &str,
    #[case] code: u8,
) {
    let mut pairs = control_env(&[bad]);
    if bad.1.is_empty() {
        pairs.retain(|(name, _)| name != bad.0);
    }
    let error = WrapperError::from(Control::from_env(&pairs).unwrap_err());
    assert!(error.to_string().contains(named), "{error}");
    assert_eq!(error.exit_status().code(), code);
}

fn io_error() -> std::io::Error {
    std::io::Error::from(std::io::ErrorKind::NotFound)
}

#[rstest]
#[case::usage(control::ControlError::Usage.into(), 64)]
#[case::missing(control::ControlError::Missing("IOMETE_ENV_CONTAINER").into(), 64)]
#[case::references(control::ControlError::References(ReferenceError::InvalidContainers("x".into())).into(), 65)]
#[case::token(fetch::FetchError::Token { path: "/t".into(), source: io_error() }.into(), 66)]
#[case::empty_token(fetch::FetchError::BadToken { path: "/t".into() }.into(), 66)]
#[case::unreachable(fetch::FetchError::Unreachable { url: "https://b".into(), deadline: Duration::from_secs(1), attempts: 3, last: "refused".into() }.into(), 67)]
#[case::refused(fetch::FetchError::Refused { status: 403, reason: "no".into() }.into(), 68)]
#[case::too_large(fetch::FetchError::TooLarge.into(), 69)]
#[case::answer(answer::AnswerError::Denied("LD_PRELOAD".into()).into(), 69)]
#[case::undeliverable(environment::EnvironmentError::Nul("A".into()).into(), 70)]
#[case::exec(launch::LaunchError::Exec { program: "java".into(), source: io_error() }.into(), 71)]
#[case::install(launch::LaunchError::Install { path: "/x".into(), source: io_error() }.into(), 72)]
fn each_cause_has_its_exit_code(#[case] error: WrapperError, #[case] code: u8) {
    assert_eq!(error.exit_status().code(), code);
}

#[test]
fn exit_codes_are_distinct_and_clear_of_the_shells() {
    let all = [
        ExitStatus::Usage,
        ExitStatus::References,
        ExitStatus::Token,
        ExitStatus::Unreachable,
        ExitStatus::Refused,
        ExitStatus::Answer,
        ExitStatus::Undeliverable,
        ExitStatus::Exec,
        ExitStatus::Install,
    ];
    let codes: std::collections::BTreeSet<u8> = all.iter().map(|s| s.code()).collect();
    assert_eq!(codes.len(), all.len());
    assert!(codes.iter().all(|&c| c > 2 && c < 126), "{codes:?}");
}

#[test]
fn the_report_is_one_line_in_the_termination_message() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("termination-log");
    let refusal = fetch::judge(
        reqwest::StatusCode::FORBIDDEN,
        Some(Refusal {
            error: "container \"x\"\nis not in the pod\r".into(),
            retriable: false,
        }),
    );
    let fetch::Verdict::Refuse { status, reason } = refusal else {
        panic!("{refusal:?}")
    };
    report(&fetch::FetchError::Refused { status, reason }.into(), &path);
    let written = std::fs::read_to_string(&path).unwrap();
    assert_eq!(
        written,
        "iomete-env: the broker refused (HTTP 403): container \"x\" is not in the pod \n"
    );
    // A termination message that cannot be written is ignored.
    report(
        &control::ControlError::Usage.into(),
        std::path::Path::new("/nonexistent/dir/log"),
    );
    assert!(!written.contains(CANARY));
}
