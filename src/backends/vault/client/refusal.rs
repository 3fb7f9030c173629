//! Vault's refusals as the few outcomes the webhook answers with: by status code and a fixed
//! explanation, never by what Vault sent back (its body is not read).

use reqwest::StatusCode;

use super::VaultError;

/// Maps a refusal to what the webhook answers; `path` names what was asked for.
pub(super) fn classify(status: StatusCode, path: &str) -> VaultError {
    match status {
        StatusCode::NOT_FOUND => VaultError::NotFound(path.to_owned()),
        StatusCode::FORBIDDEN => VaultError::PermissionDenied {
            path: path.to_owned(),
        },
        StatusCode::SERVICE_UNAVAILABLE => {
            VaultError::Unavailable("Vault is sealed or in standby (503)".into())
        }
        other => VaultError::Unavailable(format!("Vault answered {}", describe(other))),
    }
}

/// Maps a refused AppRole login: a refusal names the mount and the status code.
pub(super) fn classify_login(status: StatusCode, mount: &str) -> VaultError {
    match status {
        // AppRole answers a wrong role ID or secret ID with 400.
        StatusCode::BAD_REQUEST => VaultError::LoginRefused(format!(
            "AppRole login at auth/{mount} answered 400: the role ID or secret ID was not accepted"
        )),
        StatusCode::FORBIDDEN => VaultError::LoginRefused(format!(
            "AppRole login at auth/{mount} answered 403: permission denied"
        )),
        StatusCode::NOT_FOUND => {
            VaultError::LoginRefused(format!("no AppRole auth mount at auth/{mount}"))
        }
        other => classify(other, ""),
    }
}

/// A status code and its standard reason phrase (fixed text, never what the server sent).
fn describe(status: StatusCode) -> String {
    let code = status.as_u16();
    match status.canonical_reason() {
        Some(reason) if status.is_redirection() => {
            format!("{code} {reason} (redirects are not followed)")
        }
        Some(reason) => format!("{code} {reason}"),
        None => code.to_string(),
    }
}
