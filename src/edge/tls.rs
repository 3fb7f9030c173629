//! TLS for the admission and broker endpoints: rustls server configurations whose certificate
//! follows the mounted PEM files (the broker's never asks for a client certificate).
//!
//! The endpoint offers HTTP/2 and HTTP/1.1 through ALPN (the kube-apiserver speaks h2 to
//! webhooks) and uses the `ring` provider, the same one the Kubernetes client uses. The kubelet
//! updates a mounted Secret by swapping a `..data` symlink, so [`CertificateReloader`] re-reads
//! the files periodically: new connections get a new pair as soon as it loads, and a broken pair
//! keeps the old one in service and logs an error. The served certificate's expiry is exported
//! as a gauge ([`CertificateReloader::expiry`]), so an alert can fire before it lapses.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use prometheus_client::metrics::gauge::Gauge;
use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

mod expiry;

/// How often the certificate files are checked for a new pair.
pub const RELOAD_INTERVAL: Duration = Duration::from_secs(2);

/// The certificate or key cannot be used; the message names the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read the certificate chain in {path}: {source}")]
    Certificate {
        path: PathBuf,
        #[source]
        source: PemProblem,
    },
    #[error("cannot read the private key in {path}: {source}")]
    PrivateKey {
        path: PathBuf,
        #[source]
        source: PemProblem,
    },
    #[error("cannot use the client CA in {path}: {source}")]
    ClientCa {
        path: PathBuf,
        #[source]
        source: PemProblem,
    },
    #[error("cannot configure TLS: {0}")]
    Protocol(#[source] rustls::Error),
    #[error("the certificate in {cert} and the key in {key} cannot be used together: {source}")]
    Mismatch {
        cert: PathBuf,
        key: PathBuf,
        #[source]
        source: rustls::Error,
    },
}

/// What is wrong with one PEM file.
#[derive(Debug, thiserror::Error)]
pub enum PemProblem {
    #[error(transparent)]
    Read(#[from] std::io::Error),
    #[error(transparent)]
    Parse(#[from] rustls::pki_types::pem::Error),
    #[error("no CERTIFICATE block found")]
    NoCertificate,
    #[error(transparent)]
    Rejected(#[from] rustls::Error),
    #[error(transparent)]
    Verifier(#[from] rustls::server::VerifierBuilderError),
}

/// The files as last loaded, to notice a change without parsing.
type FileContents = (Vec<u8>, Vec<u8>);

/// Serves the current certificate pair and reloads it from its files.
pub struct CertificateReloader {
    cert_path: PathBuf,
    key_path: PathBuf,
    provider: Arc<CryptoProvider>,
    current: RwLock<(Arc<CertifiedKey>, FileContents)>,
    /// `notAfter` of the served certificate in Unix seconds (0: unreadable), kept current.
    expiry: Gauge,
}

impl fmt::Debug for CertificateReloader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertificateReloader")
            .field("cert_path", &self.cert_path)
            .field("key_path", &self.key_path)
            .finish_non_exhaustive()
    }
}

impl CertificateReloader {
    /// Loads the pair once; fails when it cannot be used.
    pub fn load(cert: &Path, key: &Path) -> Result<Arc<Self>, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let contents = read_files(cert, key)?;
        let certified = certified_key(cert, key, &contents, &provider)?;
        let expiry = Gauge::default();
        expiry.set(not_after(&certified));
        Ok(Arc::new(CertificateReloader {
            cert_path: cert.to_owned(),
            key_path: key.to_owned(),
            provider,
            current: RwLock::new((certified, contents)),
            expiry,
        }))
    }

    /// Re-reads the files; a changed, valid pair replaces the current one. Returns whether it
    /// did; a changed but unusable pair is an error and leaves the current pair in place.
    pub fn reload(&self) -> Result<bool, TlsError> {
        let contents = read_files(&self.cert_path, &self.key_path)?;
        if self.read_current().1 == contents {
            return Ok(false);
        }
        let certified = certified_key(&self.cert_path, &self.key_path, &contents, &self.provider)?;
        self.expiry.set(not_after(&certified));
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = (certified, contents);
        Ok(true)
    }

    /// The served certificate's `notAfter` (Unix seconds), as a gauge for the metrics registry.
    pub fn expiry(&self) -> Gauge {
        self.expiry.clone()
    }

    /// Reloads every [`RELOAD_INTERVAL`] until the task is dropped.
    pub async fn watch(self: Arc<Self>) {
        let mut ticks = tokio::time::interval(RELOAD_INTERVAL);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            match self.reload() {
                Ok(true) => {
                    tracing::info!(cert = %self.cert_path.display(), "serving a new TLS certificate")
                }
                Ok(false) => {}
                Err(error) => {
                    tracing::error!(%error, "new TLS certificate rejected; still serving the previous one")
                }
            }
        }
    }

    fn read_current(&self) -> std::sync::RwLockReadGuard<'_, (Arc<CertifiedKey>, FileContents)> {
        self.current.read().unwrap_or_else(|e| e.into_inner())
    }
}

impl ResolvesServerCert for CertificateReloader {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.read_current().0.clone())
    }
}

/// The leaf certificate's `notAfter`, 0 when it cannot be read.
fn not_after(certified: &CertifiedKey) -> i64 {
    certified
        .cert
        .first()
        .and_then(|der| expiry::not_after(der))
        .unwrap_or(0)
}

fn read_files(cert: &Path, key: &Path) -> Result<FileContents, TlsError> {
    let cert_bytes = std::fs::read(cert).map_err(|error| TlsError::Certificate {
        path: cert.to_owned(),
        source: error.into(),
    })?;
    let key_bytes = std::fs::read(key).map_err(|error| TlsError::PrivateKey {
        path: key.to_owned(),
        source: error.into(),
    })?;
    Ok((cert_bytes, key_bytes))
}

fn certified_key(
    cert: &Path,
    key: &Path,
    (cert_pem, key_pem): &FileContents,
    provider: &CryptoProvider,
) -> Result<Arc<CertifiedKey>, TlsError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|error| TlsError::Certificate {
            path: cert.to_owned(),
            source: error.into(),
        })?;
    if chain.is_empty() {
        return Err(TlsError::Certificate {
            path: cert.to_owned(),
            source: PemProblem::NoCertificate,
        });
    }
    let private_key =
        PrivateKeyDer::from_pem_slice(key_pem).map_err(|error| TlsError::PrivateKey {
            path: key.to_owned(),
            source: error.into(),
        })?;
    CertifiedKey::from_der(chain, private_key, provider)
        .map(Arc::new)
        .map_err(|source| TlsError::Mismatch {
            cert: cert.to_owned(),
            key: key.to_owned(),
            source,
        })
}

/// Everything the TLS endpoints need: their configurations and the reloader behind both.
pub struct ServerTls {
    /// The admission endpoint's: a client certificate is required when a client CA is given.
    pub config: Arc<ServerConfig>,
    /// The broker's: the same certificate, never a client certificate (pods have none).
    pub broker_config: Arc<ServerConfig>,
    pub certificates: Arc<CertificateReloader>,
}

impl ServerTls {
    /// Loads the serving pair and the optional client CA; fails naming the unusable file.
    pub fn load(cert: &Path, key: &Path, client_ca: Option<&Path>) -> Result<Self, TlsError> {
        let certificates = CertificateReloader::load(cert, key)?;
        let config = server_config(certificates.clone(), client_ca)?;
        let broker_config = server_config(certificates.clone(), None)?;
        Ok(ServerTls {
            config,
            broker_config,
            certificates,
        })
    }
}

/// The server configuration, answering with whatever pair `certificates` holds. With
/// `client_ca`, every client (the API server) must present a certificate that CA signed.
pub fn server_config(
    certificates: Arc<CertificateReloader>,
    client_ca: Option<&Path>,
) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = certificates.provider.clone();
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Protocol)?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(path) => builder.with_client_cert_verifier(client_verifier(path, provider)?),
    };
    let mut config = builder.with_cert_resolver(certificates);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn client_verifier(
    path: &Path,
    provider: Arc<CryptoProvider>,
) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, TlsError> {
    let invalid = |source: PemProblem| TlsError::ClientCa {
        path: path.to_owned(),
        source,
    };
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(path).map_err(|e| invalid(e.into()))? {
        roots
            .add(cert.map_err(|e| invalid(e.into()))?)
            .map_err(|e| invalid(e.into()))?;
    }
    if roots.is_empty() {
        return Err(invalid(PemProblem::NoCertificate));
    }
    rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .map_err(|e| invalid(e.into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::boot::certs;
    use secrecy::ExposeSecret;

    fn write_pair(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let bundle = certs::generate(&[name.to_owned()]).unwrap();
        let (cert, key) = (dir.join("tls.crt"), dir.join("tls.key"));
        std::fs::write(&cert, bundle.cert_pem).unwrap();
        std::fs::write(&key, bundle.key_pem.expose_secret()).unwrap();
        (cert, key)
    }

    fn served(reloader: &CertificateReloader) -> Vec<u8> {
        reloader.read_current().0.cert[0].to_vec()
    }

    #[test]
    fn unchanged_files_are_not_reloaded_and_changed_ones_are() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = write_pair(dir.path(), "one.example");
        let reloader = CertificateReloader::load(&cert, &key).unwrap();
        let first = served(&reloader);
        assert!(!reloader.reload().unwrap());
        write_pair(dir.path(), "two.example");
        assert!(reloader.reload().unwrap());
        assert_ne!(served(&reloader), first);
    }

    #[test]
    fn the_expiry_gauge_follows_the_served_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = write_pair(dir.path(), "one.example");
        let reloader = CertificateReloader::load(&cert, &key).unwrap();
        let gauge = reloader.expiry();
        // `certs` leaves rcgen's default validity: until 4096-01-01T00:00:00Z.
        assert_eq!(gauge.get(), 67_090_118_400);
        let mut params = rcgen::CertificateParams::new(vec!["two.example".to_owned()]).unwrap();
        params.not_after = rcgen::date_time_ymd(2031, 5, 17);
        let pair = rcgen::KeyPair::generate().unwrap();
        std::fs::write(&cert, params.self_signed(&pair).unwrap().pem()).unwrap();
        std::fs::write(&key, pair.serialize_pem()).unwrap();
        assert!(reloader.reload().unwrap());
        assert_eq!(gauge.get(), 1_936_742_400);
        // A rejected pair leaves the gauge on the certificate still served.
        std::fs::write(&cert, "not a certificate").unwrap();
        assert!(reloader.reload().is_err());
        assert_eq!(gauge.get(), 1_936_742_400);
    }

    #[test]
    fn a_broken_new_pair_keeps_the_old_one() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = write_pair(dir.path(), "one.example");
        let reloader = CertificateReloader::load(&cert, &key).unwrap();
        let first = served(&reloader);
        // A key that does not match the certificate.
        let other = certs::generate(&["x".to_owned()]).unwrap();
        std::fs::write(&key, other.key_pem.expose_secret()).unwrap();
        assert!(matches!(reloader.reload(), Err(TlsError::Mismatch { .. })));
        std::fs::write(&cert, "not a certificate").unwrap();
        assert!(reloader.reload().is_err());
        assert_eq!(served(&reloader), first);
    }

    #[test]
    fn unusable_files_fail_at_load_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let error = CertificateReloader::load(&missing, &missing).unwrap_err();
        assert!(error.to_string().contains("missing.pem"), "{error}");
    }
}
