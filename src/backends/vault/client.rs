//! One Vault connection per configuration: its login and token lifecycle, and KV v2 reads
//! classified into the few outcomes the webhook answers with.
//!
//! Requests go through [`VaultHttp`] (our own TLS configuration, no redirects, timeouts, answers
//! read with a byte cap). With AppRole the connection logs in once, reuses the token, renews it
//! (`renew-self`) after two thirds of its lease (logging in again when renewal is refused or no
//! longer extends it) and, when a read is refused with 403 and the token no longer looks itself
//! up, logs in again once and retries. Logins are single-flight: concurrent callers wait for one
//! login. A Token credential is used as given. Tokens and values live in [`SecretString`]s.
//! Failures are reported by status code and a fixed explanation: nothing Vault sends back with
//! a failure is ever read, so no error, log line or status carries its text.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use secrecy::zeroize::Zeroizing;
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use tokio::sync::{Mutex, RwLock};

mod http;
mod refusal;
mod wire;

use self::http::{AUTH_ANSWER_CAP, KV_ANSWER_CAP, Reply, VaultHttp};
use self::refusal::{classify, classify_login};
use self::wire::{
    AppRoleLogin, AuthAnswer, Data, Lookup, Secret, SecretMetadata, not_an_answer, parse,
};
use super::metrics::VaultMetrics;
use super::resource::{AuthMethod, VaultTarget};

/// How the connection authenticates; read from the credentials Secret. `Debug` redacts.
#[derive(Debug)]
pub enum Credentials {
    Token(SecretString),
    AppRole {
        role_id: SecretString,
        secret_id: SecretString,
    },
}

/// A field's value, as an env var can carry it. `Debug` redacts.
#[derive(Debug)]
pub enum FieldValue {
    Text(SecretString),
    /// A JSON null, object or array: named by its type, never shown.
    NotText(&'static str),
}

/// The fields of one KV v2 secret.
pub type Fields = HashMap<String, FieldValue>;

/// One KV v2 read: the fields, and the version of the secret they belong to (`None` when
/// Vault did not say). `Debug` redacts, as [`FieldValue`] does.
#[derive(Debug)]
pub struct KvSecret {
    pub fields: Fields,
    pub version: Option<u64>,
}

/// Why a Vault call failed; messages hold paths, status codes and fixed explanations, never a
/// body Vault sent back, a value or a token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VaultError {
    #[error("no secret at {0}")]
    NotFound(String),
    #[error("permission denied reading {path} (Vault answered 403)")]
    PermissionDenied { path: String },
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

/// Where a token looks itself up, also the path its refusals name.
const LOOKUP_SELF: &str = "auth/token/lookup-self";

/// What a token's lifetime looks like to the connection.
#[derive(Clone)]
struct Session {
    token: Arc<SecretString>,
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
    http: VaultHttp,
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
        let http = VaultHttp::new(&target, timeouts)?;
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
        self.read_secret(path).await.map(|secret| secret.fields)
    }

    /// Reads the KV v2 secret at `path` (below the mount) with its version.
    pub async fn read_secret(&self, path: &str) -> Result<KvSecret, VaultError> {
        let data = |path: &str| format!("{}/data/{path}", self.target.mount);
        let body = self.get_with_relogin(path, data).await?;
        {
            let secret: Data<Secret> = parse(&body)?;
            Ok(KvSecret {
                version: secret.data.metadata.and_then(|meta| meta.version),
                fields: secret
                    .data
                    .data
                    .into_iter()
                    .map(|(field, value)| (field, field_value(value)))
                    .collect(),
            })
        }
    }

    /// The current version of the KV v2 secret at `path`, read from its metadata
    /// (`<mount>/metadata/<path>`): no value is read, so the policy needs `read` on the
    /// metadata path, not on the data path (the admin tools use this).
    pub async fn current_version(&self, path: &str) -> Result<u64, VaultError> {
        let metadata = |path: &str| format!("{}/metadata/{path}", self.target.mount);
        let body = self.get_with_relogin(path, metadata).await?;
        let answer: Data<SecretMetadata> = parse(&body)?;
        Ok(answer.data.current_version)
    }

    /// GETs `api(path)`; a 403 with a token that no longer works logs in once and retries.
    async fn get_with_relogin(
        &self,
        path: &str,
        api: impl Fn(&str) -> String,
    ) -> Result<Zeroizing<Vec<u8>>, VaultError> {
        let (token, serial) = self.token().await?;
        match self.get_with(&token, path, &api).await {
            Err(denied @ VaultError::PermissionDenied { .. })
                if self.target.auth_method == AuthMethod::AppRole =>
            {
                // A 403 means a revoked or expired token, or a policy that does not cover the
                // path. Only the first is cured by a login, and logging in on every forbidden
                // path would let any pod make the webhook hammer Vault with logins.
                if self.lookup_self(&token).await.is_ok() {
                    return Err(denied);
                }
                let token = self.login_again(serial).await?;
                self.get_with(&token, path, &api).await
            }
            outcome => outcome,
        }
    }

    /// Logs in (or checks the token) and returns the token's remaining lifetime.
    pub async fn check_token(&self) -> Result<TokenInfo, VaultError> {
        let (token, _) = self.token().await?;
        self.lookup_self(&token).await
    }

    async fn lookup_self(&self, token: &SecretString) -> Result<TokenInfo, VaultError> {
        match self
            .http
            .get(LOOKUP_SELF, Some(token), AUTH_ANSWER_CAP)
            .await?
        {
            Reply::Success(body) => {
                let lookup: Data<Lookup> = parse(&body)?;
                Ok(TokenInfo {
                    expire_time: lookup.data.expire_time.filter(|time| !time.is_empty()),
                })
            }
            Reply::Status(status) => Err(classify(status, LOOKUP_SELF)),
        }
    }

    async fn get_with(
        &self,
        token: &SecretString,
        path: &str,
        api: &impl Fn(&str) -> String,
    ) -> Result<Zeroizing<Vec<u8>>, VaultError> {
        let api = api(path);
        match self.http.get(&api, Some(token), KV_ANSWER_CAP).await? {
            Reply::Success(body) => Ok(body),
            Reply::Status(status) => Err(classify(status, &format!("/v1/{api}"))),
        }
    }

    /// A usable token: the current one, renewed if due, or a new login.
    ///
    /// While a token due for renewal is still valid, one caller renews it and the others keep
    /// using it rather than queueing behind the renewal.
    async fn token(&self) -> Result<(Arc<SecretString>, u64), VaultError> {
        let now = Instant::now();
        if let Some(current) = self.current().await {
            if current.renew_after.is_none_or(|at| now < at) {
                return Ok((current.token, current.serial));
            }
            let still_valid = current.expires_at.is_none_or(|at| now + EXPIRY_MARGIN < at);
            if still_valid {
                return match self.login.try_lock() {
                    Ok(mut serial) => self.refresh(&mut serial).await,
                    Err(_) => Ok((current.token, current.serial)),
                };
            }
        }
        let mut serial = self.login.lock().await;
        self.refresh(&mut serial).await
    }

    /// Under the login lock: renews or logs in, unless someone else just did.
    async fn refresh(&self, serial: &mut u64) -> Result<(Arc<SecretString>, u64), VaultError> {
        let now = Instant::now();
        if let Some(current) = self.current().await
            && current.renew_after.is_none_or(|at| now < at)
        {
            return Ok((current.token, current.serial));
        }
        if let Some(token) = self.try_renew(now).await {
            return Ok((token, *serial));
        }
        let token = self.log_in(serial).await?;
        Ok((token, *serial))
    }

    async fn current(&self) -> Option<Session> {
        self.session.read().await.clone()
    }

    /// Logs in again unless a login newer than `seen_serial` already happened.
    async fn login_again(&self, seen_serial: u64) -> Result<Arc<SecretString>, VaultError> {
        let mut serial = self.login.lock().await;
        if *serial != seen_serial
            && let Some(current) = self.current().await
        {
            return Ok(current.token);
        }
        self.log_in(&mut serial).await
    }

    /// Renews the current token when it is renewable and not yet expired; `None` means log in.
    /// Callers hold the login lock, so the session changes only here and in `log_in`.
    async fn try_renew(&self, now: Instant) -> Option<Arc<SecretString>> {
        let current = self.current().await?;
        if !current.renewable || current.expires_at.is_some_and(|at| now >= at) {
            return None;
        }
        let reply = self
            .http
            .post(
                "auth/token/renew-self",
                Some(&current.token),
                b"{}".to_vec(),
                AUTH_ANSWER_CAP,
            )
            .await
            .ok()?;
        let Reply::Success(body) = reply else {
            return None;
        };
        let auth = parse::<AuthAnswer>(&body).ok()?.auth;
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
        Some(current.token)
    }

    async fn log_in(&self, serial: &mut u64) -> Result<Arc<SecretString>, VaultError> {
        let issued = Instant::now();
        let (token, lease, renewable) = match &self.credentials {
            Credentials::Token(token) => (SecretString::from(token.expose_secret()), None, false),
            Credentials::AppRole { role_id, secret_id } => {
                let mount = &self.target.auth_mount;
                let body = serde_json::to_vec(&AppRoleLogin {
                    role_id: role_id.expose_secret(),
                    secret_id: secret_id.expose_secret(),
                })
                .map_err(|_| VaultError::Misconfigured("cannot encode the AppRole login".into()))?;
                let path = format!("auth/{mount}/login");
                let auth = match self.http.post(&path, None, body, AUTH_ANSWER_CAP).await? {
                    Reply::Success(body) => parse::<AuthAnswer>(&body)?.auth,
                    Reply::Status(status) => return Err(classify_login(status, mount)),
                };
                if auth.client_token.is_empty() {
                    return Err(not_an_answer());
                }
                self.metrics.logins(&self.config, 1);
                let lease =
                    (auth.lease_duration > 0).then(|| Duration::from_secs(auth.lease_duration));
                (SecretString::from(auth.client_token), lease, auth.renewable)
            }
        };
        let token = Arc::new(token);
        *serial += 1;
        *self.session.write().await = Some(Session {
            token: token.clone(),
            serial: *serial,
            renew_after: lease.map(|lease| issued + lease * 2 / 3),
            expires_at: lease.map(|lease| issued + lease),
            renewable,
        });
        Ok(token)
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
