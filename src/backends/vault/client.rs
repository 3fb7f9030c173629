//! One Vault connection per configuration: its HTTP client, its login and token lifecycle, and
//! KV v2 reads classified into the few outcomes the webhook answers with.
//!
//! The HTTP client is ours (vaultrs accepts one): TLS verified against the system roots plus the
//! configuration's `caBundle`, no redirects (a redirect could carry the token to another host),
//! connect and request timeouts inside the admission budget. With AppRole the connection logs in
//! once, reuses the token, renews it after two thirds of its lease (logging in again when renewal
//! is refused or no longer extends it) and, when a read is refused with 403 and the token no
//! longer looks itself up, logs in again once and retries.
//! Logins are single-flight: concurrent callers wait for one login. A Token credential is used as
//! given. Tokens live in [`SecretString`]s; vaultrs keeps its own copy inside the client, which is
//! never formatted.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use tokio::sync::{Mutex, RwLock};
use vaultrs::api::EndpointMiddleware;
use vaultrs::client::{VaultClient, VaultClientSettings};
use vaultrs::error::ClientError;

use super::metrics::VaultMetrics;
use super::resource::{AuthMethod, VaultTarget};

/// How the connection authenticates; read from the credentials Secret.
pub enum Credentials {
    Token(SecretString),
    AppRole {
        role_id: SecretString,
        secret_id: SecretString,
    },
}

/// A field's value, as an env var can carry it.
pub enum FieldValue {
    Text(SecretString),
    /// A JSON null, object or array: named by its type, never shown.
    NotText(&'static str),
}

/// The fields of one KV v2 secret.
pub type Fields = HashMap<String, FieldValue>;

/// Why a Vault call failed; messages hold paths and Vault's own error strings, never values or
/// tokens.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VaultError {
    #[error("no secret at {0}")]
    NotFound(String),
    #[error("permission denied reading {path}{detail}")]
    PermissionDenied { path: String, detail: String },
    #[error("login refused: {0}")]
    LoginRefused(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Misconfigured(String),
}

impl VaultError {
    /// A bounded label for metrics.
    pub fn class(&self) -> &'static str {
        match self {
            VaultError::NotFound(_) => "not_found",
            VaultError::PermissionDenied { .. } => "permission_denied",
            VaultError::LoginRefused(_) => "login_refused",
            VaultError::Unavailable(_) => "unavailable",
            VaultError::Misconfigured(_) => "misconfigured",
        }
    }
}

/// Timeouts for every call to Vault.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub connect: Duration,
    pub request: Duration,
}

/// A token this close to expiry is no longer handed out while a renewal is pending.
const EXPIRY_MARGIN: Duration = Duration::from_millis(500);

/// What a token's lifetime looks like to the connection.
#[derive(Clone)]
struct Session {
    client: Arc<VaultClient>,
    /// Bumped by every login, so a 403 retry logs in again only if nobody else did meanwhile.
    serial: u64,
    renew_after: Option<Instant>,
    expires_at: Option<Instant>,
    renewable: bool,
}

/// What a token check found, for the status condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenInfo {
    /// When the token expires as Vault words it (RFC 3339), `None` for one that does not.
    pub expire_time: Option<String>,
}

pub struct VaultConnection {
    target: VaultTarget,
    credentials: Credentials,
    http: reqwest::Client,
    session: RwLock<Option<Session>>,
    login: Mutex<u64>,
    metrics: VaultMetrics,
    config: String,
}

impl VaultConnection {
    pub fn new(
        target: VaultTarget,
        credentials: Credentials,
        timeouts: Timeouts,
        metrics: VaultMetrics,
        config: String,
    ) -> Result<Self, VaultError> {
        // Vault is reached with the same provider as everything else in the process.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut builder = reqwest::Client::builder()
            .tls_backend_rustls()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(timeouts.connect)
            .timeout(timeouts.request)
            .user_agent(concat!(
                "iomete-secrets-webhook/",
                env!("CARGO_PKG_VERSION")
            ));
        let mut extra_roots = Vec::with_capacity(target.ca_certificates.len());
        for der in &target.ca_certificates {
            let certificate = reqwest::Certificate::from_der(der).map_err(|_| {
                VaultError::Misconfigured(
                    "spec.caBundle holds a certificate that cannot be used".into(),
                )
            })?;
            extra_roots.push(certificate);
        }
        if !extra_roots.is_empty() {
            builder = builder.tls_certs_merge(extra_roots);
        }
        let http = builder.build().map_err(|error| {
            VaultError::Misconfigured(format!("cannot build the HTTP client: {}", chain(&error)))
        })?;
        Ok(VaultConnection {
            target,
            credentials,
            http,
            session: RwLock::new(None),
            login: Mutex::new(0),
            metrics,
            config,
        })
    }

    pub fn target(&self) -> &VaultTarget {
        &self.target
    }

    /// Reads the KV v2 secret at `path` (below the mount).
    pub async fn read(&self, path: &str) -> Result<Fields, VaultError> {
        let (client, serial) = self.client().await?;
        match self.read_with(&client, path).await {
            Err(denied @ VaultError::PermissionDenied { .. })
                if self.target.auth_method == AuthMethod::AppRole =>
            {
                // A 403 means a revoked or expired token, or a policy that does not cover the
                // path. Only the first is cured by a login, and logging in on every forbidden
                // path would let any pod make the webhook hammer Vault with logins.
                if self.token_is_valid(&client).await {
                    return Err(denied);
                }
                let client = self.login_again(serial).await?;
                self.read_with(&client, path).await
            }
            outcome => outcome,
        }
    }

    async fn token_is_valid(&self, client: &VaultClient) -> bool {
        vaultrs::token::lookup_self(client).await.is_ok()
    }

    /// Logs in (or checks the token) and returns the token's remaining lifetime.
    pub async fn check_token(&self) -> Result<TokenInfo, VaultError> {
        let (client, _) = self.client().await?;
        let lookup = vaultrs::token::lookup_self(client.as_ref())
            .await
            .map_err(|error| classify(error, "auth/token/lookup-self"))?;
        Ok(TokenInfo {
            expire_time: lookup.expire_time.filter(|time| !time.is_empty()),
        })
    }

    async fn read_with(&self, client: &VaultClient, path: &str) -> Result<Fields, VaultError> {
        let data: serde_json::Map<String, Value> =
            vaultrs::kv2::read(client, &self.target.mount, path)
                .await
                .map_err(|error| classify(error, &self.target.api_path(path)))?;
        Ok(data
            .into_iter()
            .map(|(field, value)| (field, field_value(value)))
            .collect())
    }

    /// A client with a usable token: the current one, renewed if due, or a new login.
    ///
    /// While a token due for renewal is still valid, one caller renews it and the others keep
    /// using it rather than queueing behind the renewal.
    async fn client(&self) -> Result<(Arc<VaultClient>, u64), VaultError> {
        let now = Instant::now();
        if let Some(current) = self.current().await {
            if current.renew_after.is_none_or(|at| now < at) {
                return Ok((current.client, current.serial));
            }
            let still_valid = current.expires_at.is_none_or(|at| now + EXPIRY_MARGIN < at);
            if still_valid {
                return match self.login.try_lock() {
                    Ok(mut serial) => self.refresh(&mut serial).await,
                    Err(_) => Ok((current.client, current.serial)),
                };
            }
        }
        let mut serial = self.login.lock().await;
        self.refresh(&mut serial).await
    }

    /// Under the login lock: renews or logs in, unless someone else just did.
    async fn refresh(&self, serial: &mut u64) -> Result<(Arc<VaultClient>, u64), VaultError> {
        let now = Instant::now();
        if let Some(current) = self.current().await
            && current.renew_after.is_none_or(|at| now < at)
        {
            return Ok((current.client, current.serial));
        }
        if let Some(client) = self.try_renew(now).await {
            return Ok((client, *serial));
        }
        let client = self.log_in(serial).await?;
        Ok((client, *serial))
    }

    async fn current(&self) -> Option<Session> {
        self.session.read().await.clone()
    }

    /// Logs in again unless a login newer than `seen_serial` already happened.
    async fn login_again(&self, seen_serial: u64) -> Result<Arc<VaultClient>, VaultError> {
        let mut serial = self.login.lock().await;
        if *serial != seen_serial
            && let Some(current) = self.current().await
        {
            return Ok(current.client);
        }
        self.log_in(&mut serial).await
    }

    /// Renews the current token when it is renewable and not yet expired; `None` means log in.
    /// Callers hold the login lock, so the session changes only here and in `log_in`.
    async fn try_renew(&self, now: Instant) -> Option<Arc<VaultClient>> {
        let current = self.current().await?;
        if !current.renewable || current.expires_at.is_some_and(|at| now >= at) {
            return None;
        }
        let auth = vaultrs::token::renew_self(current.client.as_ref(), None)
            .await
            .ok()?;
        let previous_lease = current
            .expires_at
            .zip(current.renew_after)
            .map(|(expires, renew)| (expires - renew) * 3);
        let lease = Duration::from_secs(auth.lease_duration);
        // Near the token's max TTL a renewal grants less and less: log in afresh instead.
        if previous_lease.is_some_and(|previous| lease < previous / 2) {
            return None;
        }
        let issued = Instant::now();
        *self.session.write().await = Some(Session {
            renew_after: Some(issued + lease * 2 / 3),
            expires_at: Some(issued + lease),
            ..current.clone()
        });
        Some(current.client)
    }

    async fn log_in(&self, serial: &mut u64) -> Result<Arc<VaultClient>, VaultError> {
        let issued = Instant::now();
        let (token, lease, renewable) = match &self.credentials {
            Credentials::Token(token) => (token.expose_secret().to_owned(), None, false),
            Credentials::AppRole { role_id, secret_id } => {
                let anonymous = self.vault_client(String::new())?;
                let auth = vaultrs::auth::approle::login(
                    &anonymous,
                    &self.target.auth_mount,
                    role_id.expose_secret(),
                    secret_id.expose_secret(),
                )
                .await
                .map_err(|error| classify_login(error, &self.target.auth_mount))?;
                self.metrics.logins(&self.config, 1);
                let lease =
                    (auth.lease_duration > 0).then(|| Duration::from_secs(auth.lease_duration));
                (auth.client_token, lease, auth.renewable)
            }
        };
        let client = Arc::new(self.vault_client(token)?);
        *serial += 1;
        *self.session.write().await = Some(Session {
            client: client.clone(),
            serial: *serial,
            renew_after: lease.map(|lease| issued + lease * 2 / 3),
            expires_at: lease.map(|lease| issued + lease),
            renewable,
        });
        Ok(client)
    }

    fn vault_client(&self, token: String) -> Result<VaultClient, VaultError> {
        // Every field set explicitly: vaultrs otherwise falls back to VAULT_* environment
        // variables, which must not redirect or weaken the webhook.
        let settings = VaultClientSettings {
            address: reqwest::Url::parse(&self.target.host)
                .map_err(|_| VaultError::Misconfigured("spec.host is not a URL".into()))?,
            ca_certs: Vec::new(),
            identity: None,
            timeout: None,
            token: token.clone(),
            verify: true,
            version: 1,
            wrapping: false,
            namespace: self.target.vault_namespace.clone(),
            proxy: None,
        };
        Ok(VaultClient {
            http: rustify::clients::reqwest::Client::new(&self.target.host, self.http.clone()),
            middle: EndpointMiddleware {
                token,
                version: "v1".into(),
                wrap: None,
                namespace: self.target.vault_namespace.clone(),
            },
            settings,
        })
    }
}

fn field_value(value: Value) -> FieldValue {
    match value {
        Value::String(text) => FieldValue::Text(SecretString::from(text)),
        Value::Number(number) => FieldValue::Text(SecretString::from(number.to_string())),
        Value::Bool(flag) => FieldValue::Text(SecretString::from(flag.to_string())),
        Value::Null => FieldValue::NotText("null"),
        Value::Array(_) => FieldValue::NotText("a JSON array"),
        Value::Object(_) => FieldValue::NotText("a JSON object"),
    }
}

/// Maps vaultrs's errors to what the webhook answers; `path` names what was asked for.
fn classify(error: ClientError, path: &str) -> VaultError {
    match error {
        ClientError::APIError { code: 404, .. } => VaultError::NotFound(path.to_owned()),
        ClientError::APIError { code: 403, errors } => VaultError::PermissionDenied {
            path: path.to_owned(),
            detail: vault_detail(&errors),
        },
        ClientError::APIError { code: 503, .. } => {
            VaultError::Unavailable("Vault is sealed or in standby (503)".into())
        }
        ClientError::APIError { code, errors } => {
            VaultError::Unavailable(format!("Vault answered {code}{}", vault_detail(&errors)))
        }
        ClientError::RestClientError { source } => match source {
            rustify::errors::ClientError::ServerResponseError { code: 404, .. } => {
                VaultError::NotFound(path.to_owned())
            }
            rustify::errors::ClientError::ServerResponseError { code: 403, .. } => {
                VaultError::PermissionDenied {
                    path: path.to_owned(),
                    detail: String::new(),
                }
            }
            rustify::errors::ClientError::ServerResponseError { code, .. } => {
                VaultError::Unavailable(format!("Vault answered {code}"))
            }
            rustify::errors::ClientError::RequestError { source, .. } => {
                VaultError::Unavailable(format!("cannot reach Vault: {}", chain(source.as_ref())))
            }
            // Parse errors may quote the body, which can hold values: never shown.
            _ => VaultError::Unavailable(
                "Vault answered with something that is not a Vault API response".into(),
            ),
        },
        ClientError::ResponseEmptyError | ClientError::ResponseDataEmptyError => {
            VaultError::Unavailable("Vault answered with an empty response".into())
        }
        // JSON errors may quote the body, which can hold values: never shown.
        _ => VaultError::Unavailable(
            "Vault answered with something that is not a Vault API response".into(),
        ),
    }
}

/// Maps a failed AppRole login: a refusal names the mount, whatever form Vault gave it in.
fn classify_login(error: ClientError, mount: &str) -> VaultError {
    let refused =
        |detail: String| VaultError::LoginRefused(format!("AppRole login at auth/{mount}{detail}"));
    match error {
        // AppRole answers a bad role or secret ID with 400.
        ClientError::APIError { code: 400, errors } => refused(vault_detail(&errors)),
        other => match classify(other, "") {
            VaultError::PermissionDenied { detail, .. } => refused(detail),
            VaultError::NotFound(_) => {
                VaultError::LoginRefused(format!("no AppRole auth mount at auth/{mount}"))
            }
            other => other,
        },
    }
}

/// Vault's own error strings (e.g. "permission denied"), bounded; they never carry values.
fn vault_detail(errors: &[String]) -> String {
    let joined = errors.join("; ");
    let printable: String = joined
        .chars()
        .filter(|c| !c.is_control())
        .take(200)
        .collect();
    if printable.is_empty() {
        String::new()
    } else {
        format!(" (Vault: {printable})")
    }
}

/// An error and its sources, e.g. "error sending request: tcp connect error: Connection refused".
fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
