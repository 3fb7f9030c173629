//! The broker's wire format, shared by the broker (`crate::broker`) and `iomete-env`
//! (`crate::wrapper`).
//!
//! `iomete-env` sends `POST /v1/env` ([`crate::decision::delivery::BROKER_PATH`]) with its
//! pod-bound token as `Authorization: Bearer …` and an [`EnvRequest`] naming its container. The
//! broker answers 200 with an [`EnvAnswer`] (the values of that container's reference list, as
//! the pod spec holds it), or an error status with a [`Refusal`] that names what is wrong and
//! never a value. Both ends refuse unknown fields.

use std::fmt;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

/// What `iomete-env` asks for: the values of one container of the token's pod.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvRequest {
    pub container: String,
}

/// The values of one container's reference list. Its `Debug` redacts the values.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EnvAnswer {
    /// One entry per `env-secrets` reference: the env var to set.
    #[serde(default)]
    pub env: Vec<NamedValue>,
    /// One entry per `spark-conf-secrets` reference, which `iomete-env` delivers in
    /// `SPARK_SUBMIT_OPTS` exactly as the env mode does.
    #[serde(default)]
    pub spark_conf: Vec<PropertyValue>,
}

/// An env var's name and value.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NamedValue {
    pub name: String,
    pub value: SecretString,
}

/// A Spark property's name and value.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PropertyValue {
    pub property: String,
    pub value: SecretString,
}

impl EnvAnswer {
    /// The answer's JSON body: the only place a value is exposed for the wire.
    pub fn to_json(&self) -> Vec<u8> {
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Out<'a> {
            env: Vec<OutEnv<'a>>,
            spark_conf: Vec<OutProperty<'a>>,
        }
        #[derive(Serialize)]
        struct OutEnv<'a> {
            name: &'a str,
            value: &'a str,
        }
        #[derive(Serialize)]
        struct OutProperty<'a> {
            property: &'a str,
            value: &'a str,
        }
        let out = Out {
            env: self
                .env
                .iter()
                .map(|entry| OutEnv {
                    name: &entry.name,
                    value: entry.value.expose_secret(),
                })
                .collect(),
            spark_conf: self
                .spark_conf
                .iter()
                .map(|entry| OutProperty {
                    property: &entry.property,
                    value: entry.value.expose_secret(),
                })
                .collect(),
        };
        // Strings and lists of strings only: serialization cannot fail.
        serde_json::to_vec(&out).unwrap_or_default()
    }
}

impl fmt::Debug for EnvAnswer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let env: Vec<&str> = self.env.iter().map(|entry| entry.name.as_str()).collect();
        let spark: Vec<&str> = self
            .spark_conf
            .iter()
            .map(|entry| entry.property.as_str())
            .collect();
        f.debug_struct("EnvAnswer")
            .field("env", &env)
            .field("spark_conf", &spark)
            .finish_non_exhaustive()
    }
}

/// Why the broker refused: a message for the pod's termination message and logs (names only,
/// never a value), and whether asking again may succeed (the broker is starting, its caches
/// are not fresh, a backend is unreachable, the pod is rate-limited).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Refusal {
    pub error: String,
    pub retriable: bool,
}

/// Every certificate of the broker's CA bundle (`--broker-ca`, given to each wrapped container
/// as `IOMETE_ENV_BROKER_CA`), if there is at least one and each can be a trust anchor: the
/// check the webhook makes at start and `iomete-env` makes before it connects, so a bundle the
/// one accepts the other does too.
pub fn broker_trust_anchors(pem: &str) -> Option<Vec<CertificateDer<'static>>> {
    let certificates = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .ok()?;
    let mut store = rustls::RootCertStore::empty();
    for certificate in &certificates {
        store.add(certificate.clone()).ok()?;
    }
    (!certificates.is_empty()).then_some(certificates)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_round_trips_and_its_debug_names_only() {
        let answer = EnvAnswer {
            env: vec![NamedValue {
                name: "DB_PASSWORD".into(),
                value: SecretString::from("canary-\u{0}-\"quoted\""),
            }],
            spark_conf: vec![PropertyValue {
                property: "spark.hadoop.fs.s3a.secret.key".into(),
                value: SecretString::from("canary-2"),
            }],
        };
        let read: EnvAnswer = serde_json::from_slice(&answer.to_json()).unwrap();
        assert_eq!(read.env[0].value.expose_secret(), "canary-\u{0}-\"quoted\"");
        assert_eq!(
            read.spark_conf[0].property,
            "spark.hadoop.fs.s3a.secret.key"
        );
        let debug = format!("{read:?}");
        assert!(
            debug.contains("DB_PASSWORD") && !debug.contains("canary"),
            "{debug}"
        );
    }

    #[test]
    fn unknown_fields_are_refused() {
        assert!(serde_json::from_str::<EnvAnswer>(r#"{"env":[],"extra":1}"#).is_err());
        assert!(serde_json::from_str::<EnvRequest>(r#"{"container":"c","pod":"p"}"#).is_err());
    }
}
