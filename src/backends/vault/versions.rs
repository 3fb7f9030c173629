//! Which version of a Vault secret is current, read from KV v2 metadata without reading a value.
//!
//! The admin tools use this to check that a referenced path exists (`check`) and to tell whether
//! a pod holds an older version than the current one (`audit`). A metadata read
//! (`GET /v1/<mount>/metadata/<path>`) returns versions and timestamps, never data, so the
//! policy the tools' credentials need is `read` on `<mount>/metadata/<prefix>/*`, not on the
//! data path. The webhook itself never calls this.

use super::{VaultBackend, VaultFetchError};
use crate::backends::BackendError;

/// The version identifier recorded for a Vault read: the KV v2 version number.
pub fn vault_version(version: u64) -> String {
    format!("v{version}")
}

/// The current version of the secret a reference's key names under a configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CurrentVersion {
    /// The metadata API path read, e.g. `/v1/secret/metadata/app/db`.
    pub metadata_path: String,
    /// The identifier the webhook records for this version ([`vault_version`]).
    pub version: String,
}

impl VaultBackend {
    /// The current version of the secret `key` names under the configuration `config_name`.
    /// Errors are the ones an admission would meet for the same key (no such configuration,
    /// key the layout cannot resolve, no secret, permission denied, Vault unreachable).
    pub async fn current_version(
        &self,
        config_name: &str,
        key: &str,
    ) -> Result<CurrentVersion, BackendError> {
        let failed = |source| BackendError::Vault {
            config: config_name.to_owned(),
            source,
        };
        let config = self
            .config(config_name)
            .ok_or_else(|| failed(VaultFetchError::ConfigGone))?;
        let (connection, _) = self.connection(&config)?;
        let target = connection.target();
        let location = target
            .locate(key)
            .map_err(|error| failed(VaultFetchError::Key(error)))?;
        let metadata_path = format!("/v1/{}/metadata/{}", target.mount, location.path);
        let version = connection
            .current_version(&location.path)
            .await
            .map_err(|error| failed(VaultFetchError::from_client(target, &error)))?;
        Ok(CurrentVersion {
            metadata_path,
            version: vault_version(version),
        })
    }
}
