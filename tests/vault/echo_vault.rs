//! [`EchoVault`], a Vault stand-in for what OpenBao cannot be made to do (echo request headers
//! in error bodies, answer with any size and framing), and the helpers its tests share.

use super::*;

/// The token the webhook sends to [`EchoVault`], which puts it back into its error bodies.
pub(crate) const TOKEN_CANARY: &str = "s.token-canary-7f3a";
/// Text in every error body [`EchoVault`] sends.
pub(crate) const BODY_CANARY: &str = "vault-error-body-canary";
/// A KV answer five times the webhook's cap.
pub(crate) const OVERSIZE: usize = 5 << 20;
/// The webhook's caps: a KV v2 read answer, an auth answer (login, lookup, renewal).
pub(crate) const KV_CAP: usize = 1 << 20;
pub(crate) const AUTH_CAP: usize = 64 << 10;

/// A Vault stand-in for what real OpenBao cannot be made to do: echo the request's headers
/// (the `X-Vault-Token` among them) in its error bodies, as some proxies in front of a Vault
/// do, and answer reads of any size with any framing. What it does is chosen by the path
/// (`/v1/secret/data/<mode>/...`, `/v1/auth/<mode>/login`) or, for token lookups, by the
/// token (`...-<mode>`).
pub(crate) struct EchoVault {
    address: std::net::SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for EchoVault {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl EchoVault {
    pub(crate) async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .unwrap();
        let address = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(echo_answer(stream));
            }
        });
        EchoVault { address, task }
    }

    pub(crate) fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// A Token VaultConfig spec of domain finance reading below `/v1/secret/data/{prefix}`.
    pub(crate) fn spec(&self, prefix: &str, method: &str, auth_mount: Option<&str>) -> Value {
        let mut spec = json!({
            "domain": "finance",
            "host": self.url(),
            "path": format!("/v1/secret/data/{prefix}"),
            "auth": {"method": method},
        });
        if let Some(mount) = auth_mount {
            spec["auth"]["mount"] = json!(mount);
        }
        spec
    }
}

/// Answers one request on `stream` as its path and token ask, then closes.
pub(crate) async fn echo_answer(mut stream: tokio::net::TcpStream) {
    use tokio::io::AsyncWriteExt as _;
    let Some(request) = support::read_request(&mut stream).await else {
        return;
    };
    let text = request.text();
    let path = request.path();
    let token = request.header("x-vault-token").unwrap_or_default();
    let mode = if path == "/v1/auth/token/lookup-self" {
        token.rsplit('-').next().unwrap_or_default().to_owned()
    } else if let Some(mount) = path
        .strip_prefix("/v1/auth/")
        .and_then(|rest| rest.strip_suffix("/login"))
    {
        mount.to_owned()
    } else if path == "/v1/auth/token/renew-self" {
        "renew".to_owned()
    } else {
        let rest = path.strip_prefix("/v1/secret/data/").unwrap_or_default();
        rest.split('/').next().unwrap_or_default().to_owned()
    };
    // What an echoing proxy says: the token first, so that a bounded quote still holds it.
    let echo = format!(
        "{BODY_CANARY}: permission denied; x-vault-token={token}; request: {}",
        text.replace(['\r', '\n'], " ")
    );
    let json_errors = json!({"errors": [echo]}).to_string();
    let kv_answer = |value_len: usize| {
        let value = "A".repeat(value_len);
        let metadata = json!({"created_time": "2026-01-01T00:00:00Z", "custom_metadata": null, "deletion_time": "", "destroyed": false, "version": 1});
        envelope(
            json!({"data": {"value": value}, "metadata": metadata}),
            Value::Null,
        )
    };
    // A KV answer of exactly `total` bytes.
    let kv_of_size = |total: usize| {
        let overhead = kv_answer(0).len();
        kv_answer(total - overhead)
    };
    let sized = |status: &str, content_type: &str, body: &str| {
        format!(
            "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    };
    let chunked = |body: &str| {
        let mut out = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n".to_vec();
        for piece in body.as_bytes().chunks(16 << 10) {
            out.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
            out.extend_from_slice(piece);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"0\r\n\r\n");
        out
    };
    let response = match mode.as_str() {
        "echo403" => sized("403 Forbidden", "application/json", &json_errors),
        "echo500" => sized(
            "500 Internal Server Error",
            "application/json",
            &json_errors,
        ),
        "echo400" => sized("400 Bad Request", "application/json", &json_errors),
        "echo502" => sized("502 Bad Gateway", "text/plain", &echo),
        "lookup403" => sized("403 Forbidden", "application/json", &json_errors),
        "hugelookup" | "hugelogin" => chunked(&kv_of_size(AUTH_CAP + 1)),
        "approle" | "renew" => sized("200 OK", "application/json", &auth_answer()),
        "huge" => sized("200 OK", "application/json", &kv_of_size(OVERSIZE)),
        "chunked" => chunked(&kv_of_size(OVERSIZE)),
        "overbyone" => chunked(&kv_of_size(KV_CAP + 1)),
        "atcap" => chunked(&kv_of_size(KV_CAP)),
        "unframed" => {
            // No Content-Length, no chunking: the body ends when the connection does.
            let mut out =
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\n\r\n"
                    .to_vec();
            out.extend_from_slice(kv_of_size(OVERSIZE).as_bytes());
            out
        }
        "understated" => {
            // A Content-Length far below the body: HTTP framing ends the answer there.
            let mut out = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 64\r\nconnection: close\r\n\r\n".to_vec();
            out.extend_from_slice(kv_of_size(OVERSIZE).as_bytes());
            out
        }
        _ => sized("200 OK", "application/json", &lookup_answer()),
    };
    let _ = stream.write_all(&response).await;
    let _ = stream.shutdown().await;
}

/// A login or renewal answer, shaped as OpenBao's.
pub(crate) fn auth_answer() -> String {
    let auth = json!({
        "client_token": format!("{TOKEN_CANARY}-ok"), "accessor": "a", "policies": ["default"],
        "token_policies": ["default"], "metadata": {}, "lease_duration": 3600, "renewable": true,
        "entity_id": "e", "token_type": "service", "orphan": true,
    });
    envelope(Value::Null, auth)
}

/// A token lookup answer, shaped as OpenBao's, for a token that does not expire.
pub(crate) fn lookup_answer() -> String {
    let data = json!({
        "accessor": "a", "creation_time": 1, "creation_ttl": 0, "display_name": "token",
        "entity_id": "", "expire_time": null, "explicit_max_ttl": 0, "id": "i", "meta": null,
        "num_uses": 0, "orphan": true, "path": "auth/token/create", "policies": ["default"],
        "ttl": 0, "type": "service",
    });
    envelope(data, Value::Null)
}

/// The envelope of every successful Vault answer.
pub(crate) fn envelope(data: Value, auth: Value) -> String {
    json!({
        "request_id": "r", "lease_id": "", "renewable": false, "lease_duration": 0,
        "data": data, "wrap_info": null, "warnings": null, "auth": auth,
    })
    .to_string()
}

/// A connection of its own to `vault`, as the backend builds one.
pub(crate) fn echo_connection(
    vault: &EchoVault,
    prefix: &str,
    credentials: iomete_secrets_webhook::backends::vault::client::Credentials,
    auth_mount: Option<&str>,
) -> iomete_secrets_webhook::backends::vault::client::VaultConnection {
    use iomete_secrets_webhook::backends::vault::client::VaultConnection;
    use iomete_secrets_webhook::backends::vault::resource::VaultTarget;
    let method = match credentials {
        iomete_secrets_webhook::backends::vault::client::Credentials::Token(_) => "Token",
        _ => "AppRole",
    };
    let spec: VaultConfigSpec =
        serde_json::from_value(vault.spec(prefix, method, auth_mount)).unwrap();
    VaultConnection::new(
        VaultTarget::from_spec(&spec).unwrap(),
        credentials,
        settings().timeouts,
        VaultMetrics::default(),
        "echo".into(),
    )
    .unwrap()
}

pub(crate) fn token(value: &str) -> iomete_secrets_webhook::backends::vault::client::Credentials {
    iomete_secrets_webhook::backends::vault::client::Credentials::Token(value.into())
}

pub(crate) fn assert_quotes_nothing(what: &str, text: &str) {
    for canary in [TOKEN_CANARY, BODY_CANARY, "x-vault-token", "request:"] {
        assert!(
            !text.contains(canary),
            "{what} quotes Vault's answer: {text}"
        );
    }
}
