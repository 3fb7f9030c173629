//! Development certificates: a private CA and a serving certificate for the webhook Service.
//!
//! `iomete-secrets-webhook certs` writes them with owner-only modes where they are secret, plus
//! the base64 `caBundle` for the MutatingWebhookConfiguration. Production clusters may use
//! cert-manager instead; the webhook only reads PEM files.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use secrecy::{ExposeSecret, SecretString};

/// Certificates could not be made or written.
#[derive(Debug, thiserror::Error)]
pub enum CertsError {
    #[error("cannot generate certificates: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// A CA and a leaf certificate it signed, PEM encoded. The private keys are secrets: their
/// `Debug` is redacted.
#[derive(Debug)]
pub struct CertBundle {
    pub ca_pem: String,
    /// The CA's private key; kept in memory for [`client_certificate`], never written.
    pub ca_key_pem: SecretString,
    pub cert_pem: String,
    pub key_pem: SecretString,
}

impl CertBundle {
    /// The `caBundle` value for a webhook configuration.
    pub fn ca_bundle_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(&self.ca_pem)
    }
}

/// The DNS names a Service is reached by inside the cluster.
pub fn service_dns_names(service: &str, namespace: &str) -> Vec<String> {
    vec![
        service.to_owned(),
        format!("{service}.{namespace}"),
        format!("{service}.{namespace}.svc"),
        format!("{service}.{namespace}.svc.cluster.local"),
    ]
}

fn ca_params() -> Result<CertificateParams, CertsError> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params
        .distinguished_name
        .push(DnType::CommonName, "iomete-secrets-webhook CA");
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    Ok(params)
}

/// Generates a CA and a serving certificate (CA:FALSE) for `names` (DNS names or IP addresses).
pub fn generate(names: &[String]) -> Result<CertBundle, CertsError> {
    let ca_key = KeyPair::generate()?;
    let ca_key_pem = SecretString::from(ca_key.serialize_pem());
    let ca = CertifiedIssuer::self_signed(ca_params()?, ca_key)?;

    let mut leaf_params = CertificateParams::new(names.to_vec())?;
    leaf_params.distinguished_name.push(
        DnType::CommonName,
        names
            .first()
            .map_or("iomete-secrets-webhook", String::as_str),
    );
    leaf_params.is_ca = IsCa::ExplicitNoCa;
    leaf_params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    leaf_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let leaf_key = KeyPair::generate()?;
    let leaf = leaf_params.signed_by(&leaf_key, &ca)?;
    Ok(CertBundle {
        ca_pem: ca.pem(),
        ca_key_pem,
        cert_pem: leaf.pem(),
        key_pem: SecretString::from(leaf_key.serialize_pem()),
    })
}

/// A client certificate (`ClientAuth`) signed by the bundle's CA: `(certificate, key)` in PEM,
/// for testing `--client-ca`.
pub fn client_certificate(
    bundle: &CertBundle,
    name: &str,
) -> Result<(String, SecretString), CertsError> {
    let ca_key = KeyPair::from_pem(bundle.ca_key_pem.expose_secret())?;
    // Same subject and key as the CA certificate, so what it signs chains to that certificate.
    let issuer = rcgen::Issuer::new(ca_params()?, ca_key);
    let mut params = CertificateParams::new(vec![name.to_owned()])?;
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &issuer)?;
    Ok((cert.pem(), SecretString::from(key.serialize_pem())))
}

/// Writes `ca.crt`, `tls.crt`, `tls.key` (mode 0600) and `ca-bundle.b64` into `dir`.
pub fn write(bundle: &CertBundle, dir: &Path) -> Result<(), CertsError> {
    fs::create_dir_all(dir).map_err(|source| CertsError::Write {
        path: dir.to_owned(),
        source,
    })?;
    let files = [
        ("ca.crt", bundle.ca_pem.as_str(), 0o644),
        ("tls.crt", bundle.cert_pem.as_str(), 0o644),
        ("tls.key", bundle.key_pem.expose_secret(), 0o600),
        ("ca-bundle.b64", &bundle.ca_bundle_base64(), 0o644),
    ];
    for (name, contents, mode) in files {
        let path = dir.join(name);
        let written = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&path)
            .and_then(|mut file| file.write_all(contents.as_bytes()))
            // `mode` applies only on creation; an existing file gets it here.
            .and_then(|()| fs::set_permissions(&path, fs::Permissions::from_mode(mode)));
        written.map_err(|source| CertsError::Write { path, source })?;
    }
    Ok(())
}
