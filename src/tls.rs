//! TLS for the admission endpoint: a rustls server configuration from PEM files.
//!
//! The endpoint offers HTTP/2 and HTTP/1.1 through ALPN (the kube-apiserver speaks h2 to
//! webhooks) and uses the `ring` provider, the same one the Kubernetes client uses.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// The certificate or key cannot be used; the message names the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read the certificate chain in {path}: {reason}")]
    Certificate { path: PathBuf, reason: String },
    #[error("cannot read the private key in {path}: {reason}")]
    PrivateKey { path: PathBuf, reason: String },
    #[error("the certificate in {cert} and the key in {key} cannot be used together: {reason}")]
    Mismatch {
        cert: PathBuf,
        key: PathBuf,
        reason: String,
    },
}

/// Builds the server configuration from a PEM certificate chain and a PEM private key.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, TlsError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<_, _>>())
        .map_err(|error| TlsError::Certificate {
            path: cert.to_owned(),
            reason: error.to_string(),
        })?;
    if chain.is_empty() {
        return Err(TlsError::Certificate {
            path: cert.to_owned(),
            reason: "no CERTIFICATE block found".into(),
        });
    }
    let private_key = PrivateKeyDer::from_pem_file(key).map_err(|error| TlsError::PrivateKey {
        path: key.to_owned(),
        reason: error.to_string(),
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|builder| {
            builder
                .with_no_client_auth()
                .with_single_cert(chain, private_key)
        })
        .map_err(|error| TlsError::Mismatch {
            cert: cert.to_owned(),
            key: key.to_owned(),
            reason: error.to_string(),
        })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
