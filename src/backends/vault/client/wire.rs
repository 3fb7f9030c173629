//! The shapes of the Vault answers the connection reads, and the one message for an answer of
//! any other shape (a parse error may quote the body, so it is never shown).

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::VaultError;

/// `{"data": ...}`: how Vault wraps a read and a token lookup.
#[derive(Deserialize)]
pub(super) struct Data<T> {
    pub data: T,
}

/// The `data` of a KV v2 read: the secret's fields and the version they are.
#[derive(Deserialize)]
pub(super) struct Secret {
    pub data: serde_json::Map<String, Value>,
    #[serde(default)]
    pub metadata: Option<VersionMetadata>,
}

/// The `metadata` of a KV v2 read: which version of the secret was read.
#[derive(Deserialize)]
pub(super) struct VersionMetadata {
    #[serde(default)]
    pub version: Option<u64>,
}

/// The `data` of a KV v2 metadata read (`<mount>/metadata/<path>`): no value, only versions.
#[derive(Deserialize)]
pub(super) struct SecretMetadata {
    pub current_version: u64,
}

/// The `data` of a token lookup; the rest (the token's own id among it) is not kept.
#[derive(Deserialize)]
pub(super) struct Lookup {
    #[serde(default)]
    pub expire_time: Option<String>,
}

/// `{"auth": ...}`: how Vault answers a login and a renewal.
#[derive(Deserialize)]
pub(super) struct AuthAnswer {
    pub auth: Auth,
}

/// A token Vault issued or renewed, and its lease.
#[derive(Deserialize)]
pub(super) struct Auth {
    pub client_token: String,
    #[serde(default)]
    pub lease_duration: u64,
    #[serde(default)]
    pub renewable: bool,
}

/// The body of an AppRole login.
#[derive(serde::Serialize)]
pub(super) struct AppRoleLogin<'a> {
    pub role_id: &'a str,
    pub secret_id: &'a str,
}

/// The answer parsed, or the one fixed message: a parse error may quote the body.
pub(super) fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, VaultError> {
    serde_json::from_slice(body).map_err(|_| not_an_answer())
}

pub(super) fn not_an_answer() -> VaultError {
    VaultError::Unavailable("Vault answered with something that is not a Vault API response".into())
}
