//! The HTTP side of a Vault connection: one `reqwest` client per configuration and requests whose
//! answers are read with a byte cap.
//!
//! TLS is verified against the system roots plus the configuration's `caBundle`; redirects are
//! never followed (one could carry the token to another host); connect and request timeouts keep
//! every call inside the admission budget, body included. A successful answer is read chunk by
//! chunk and refused as soon as it passes its cap (before any byte is read when its
//! `Content-Length` already does), into a buffer wiped when dropped. The body of a refusal is
//! never read at all: Vault failures are reported by status code, so no text a Vault or a proxy
//! sends back (which may echo the request's headers, the token among them) reaches an error.

use reqwest::header::{CONTENT_TYPE, HeaderValue};
use reqwest::{Method, StatusCode};
use secrecy::zeroize::Zeroizing;
use secrecy::{ExposeSecret, SecretString};

use super::{Timeouts, VaultError};
use crate::backends::vault::resource::VaultTarget;
use crate::edge::telemetry::error_chain as chain;

/// The most a KV v2 read answer may hold: Vault's integrated storage refuses entries over 1 MiB
/// by default (`max_entry_size`), and a pod cannot carry more.
pub(super) const KV_ANSWER_CAP: usize = 1 << 20;
/// The most an auth answer (login, token lookup, renewal) may hold; real ones are about 1 KiB.
pub(super) const AUTH_ANSWER_CAP: usize = 64 << 10;

/// What Vault answered: the body of a success, or the status code of anything else.
pub(super) enum Reply {
    /// A 2xx answer's body, wiped when dropped (it may hold values or a token).
    Success(Zeroizing<Vec<u8>>),
    /// Any other status; its body was not read.
    Status(StatusCode),
}

/// The HTTP client of one configuration, with the headers every request carries.
pub(super) struct VaultHttp {
    client: reqwest::Client,
    host: String,
    namespace: Option<HeaderValue>,
}

impl VaultHttp {
    /// The client `target` is reached with.
    pub(super) fn new(target: &VaultTarget, timeouts: Timeouts) -> Result<Self, VaultError> {
        // Vault is reached with the same provider as everything else in the process.
        let _ = rustls::crypto::ring::default_provider().install_default();
        // The system resolver, as before iomete-env's client turned hickory on in the package.
        let mut builder = reqwest::Client::builder()
            .no_hickory_dns()
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
        let client = builder.build().map_err(|error| {
            VaultError::Misconfigured(format!("cannot build the HTTP client: {}", chain(&error)))
        })?;
        let namespace = match &target.vault_namespace {
            None => None,
            Some(namespace) => Some(HeaderValue::from_str(namespace).map_err(|_| {
                VaultError::Misconfigured("spec.vaultNamespace cannot be sent as a header".into())
            })?),
        };
        Ok(VaultHttp {
            client,
            host: target.host.clone(),
            namespace,
        })
    }

    /// `GET {host}/v1/{path}`, with `token` when given.
    pub(super) async fn get(
        &self,
        path: &str,
        token: Option<&SecretString>,
        cap: usize,
    ) -> Result<Reply, VaultError> {
        self.send(Method::GET, path, token, None, cap).await
    }

    /// `POST {host}/v1/{path}` with a JSON `body`, with `token` when given.
    pub(super) async fn post(
        &self,
        path: &str,
        token: Option<&SecretString>,
        body: Vec<u8>,
        cap: usize,
    ) -> Result<Reply, VaultError> {
        self.send(Method::POST, path, token, Some(body), cap).await
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        token: Option<&SecretString>,
        body: Option<Vec<u8>>,
        cap: usize,
    ) -> Result<Reply, VaultError> {
        let url = reqwest::Url::parse(&format!("{}/v1/{path}", self.host))
            .map_err(|_| VaultError::Misconfigured("spec.host is not a URL".into()))?;
        let mut request = self
            .client
            .request(method, url)
            .header("X-Vault-Request", "true");
        if let Some(token) = token {
            let mut value = HeaderValue::from_str(token.expose_secret()).map_err(|_| {
                VaultError::Misconfigured("the Vault token cannot be sent as a header".into())
            })?;
            value.set_sensitive(true);
            request = request.header("X-Vault-Token", value);
        }
        if let Some(namespace) = &self.namespace {
            request = request.header("X-Vault-Namespace", namespace.clone());
        }
        if let Some(body) = body {
            request = request.header(CONTENT_TYPE, "application/json").body(body);
        }
        let mut response = request.send().await.map_err(|error| {
            VaultError::Unavailable(format!("cannot reach Vault: {}", chain(&error)))
        })?;
        let status = response.status();
        if !status.is_success() {
            return Ok(Reply::Status(status));
        }
        read_capped(&mut response, cap).await.map(Reply::Success)
    }
}

/// A success's body, refused as soon as it is known to pass `cap` bytes.
async fn read_capped(
    response: &mut reqwest::Response,
    cap: usize,
) -> Result<Zeroizing<Vec<u8>>, VaultError> {
    let too_large =
        || VaultError::Unavailable(format!("Vault's answer is larger than {cap} bytes"));
    let declared = response.content_length();
    if declared.is_some_and(|length| length > cap as u64) {
        return Err(too_large());
    }
    let reserve = declared.map_or(0, |length| length as usize);
    let mut body = Zeroizing::new(Vec::with_capacity(reserve));
    while let Some(chunk) = response.chunk().await.map_err(|error| {
        VaultError::Unavailable(format!("cannot read Vault's answer: {}", chain(&error)))
    })? {
        if chunk.len() > cap - body.len() {
            return Err(too_large());
        }
        grow(&mut body, chunk.len(), cap);
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Makes room for `more` bytes, wiping the old buffer when it has to move (a plain `Vec` growth
/// would leave a copy of what was read so far behind).
fn grow(body: &mut Zeroizing<Vec<u8>>, more: usize, cap: usize) {
    let needed = body.len() + more;
    if needed <= body.capacity() {
        return;
    }
    let mut larger = Vec::with_capacity(needed.max(body.capacity() * 2).min(cap));
    larger.extend_from_slice(body);
    *body = Zeroizing::new(larger);
}
