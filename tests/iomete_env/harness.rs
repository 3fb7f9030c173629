//! The test broker and one `iomete-env` run, for `tests/iomete_env.rs`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use iomete_secrets_webhook::decision::reference::{
    EnvSecret, KubernetesStore, SecretRef, Source, SparkConfSecret, write_reference_list,
};
use secrecy::ExposeSecret;
use serde_json::{Value, json};

use super::{BIN, CANARY, CONTAINER, TOKEN};

/// How the test broker answers its `n`th request (from 0): a status and a JSON body.
pub type Script = Box<dyn Fn(usize) -> (u16, Value) + Send + Sync>;

pub struct Scenario {
    script: Script,
    pub calls: AtomicUsize,
    /// Every request's `Authorization` header and body.
    pub seen: Mutex<Vec<(Option<String>, String)>>,
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
pub struct Broker {
    pub url: String,
    pub ca_pem: String,
    pub scenario: Arc<Scenario>,
    handle: axum_server::Handle<std::net::SocketAddr>,
    task: tokio::task::JoinHandle<()>,
}

impl Broker {
    pub async fn start(script: impl Fn(usize) -> (u16, Value) + Send + Sync + 'static) -> Broker {
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
    pub fn url_by_name(&self) -> String {
        self.url.replace("127.0.0.1", "localhost")
    }

    pub fn calls(&self) -> usize {
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
pub fn reference_list(env: &[&str], spark: &[&str]) -> String {
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

pub fn answer(env: &[(&str, &str)], spark: &[(&str, &str)]) -> Value {
    json!({
        "env": env.iter().map(|(name, value)| json!({"name": name, "value": value})).collect::<Vec<_>>(),
        "sparkConf": spark.iter().map(|(property, value)| json!({"property": property, "value": value})).collect::<Vec<_>>(),
    })
}

/// One `iomete-env` run: its files and environment.
pub struct Run {
    dir: tempfile::TempDir,
    env: Vec<(String, String)>,
}

impl Run {
    /// A run against `broker_url` trusting `ca_pem`, for the container's `references`.
    pub fn new(broker_url: &str, ca_pem: &str, references: &str) -> Run {
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

    pub fn set(&mut self, name: &str, value: &str) -> &mut Run {
        self.env.retain(|(existing, _)| existing != name);
        self.env.push((name.into(), value.into()));
        self
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn command(&self, binary: &Path, command: &[&str]) -> std::process::Command {
        let mut child = std::process::Command::new(binary);
        child
            .arg("--")
            .args(command)
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        child
    }

    /// Runs `iomete-env -- command` (off the runtime, which serves the broker).
    pub async fn output(&self, command: &[&str]) -> Outcome {
        self.output_with(Path::new(BIN), command).await
    }

    pub async fn output_with(&self, binary: &Path, command: &[&str]) -> Outcome {
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
pub struct Outcome {
    pub code: Option<i32>,
    pub stdout: Vec<u8>,
    pub stderr: String,
    pub termination: Option<String>,
}

impl Outcome {
    /// The child's environment, from `env -0`.
    pub fn env(&self) -> BTreeMap<String, String> {
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
    pub fn assert_failed(&self, code: i32, mentions: &str) {
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

/// Whether a 64-bit little-endian ELF file has a `PT_INTERP` program header (a dynamic loader).
pub fn has_interpreter(elf: &[u8]) -> bool {
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
