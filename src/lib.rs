//! `iomete-secrets-webhook`: a Kubernetes mutating admission webhook that injects secrets into
//! pods from references in their annotations.
//!
//! The decision is pure and lives in [`reference`] (parsing), [`scope`] (authorization),
//! [`legacy`] (placeholders), [`injection`] (plan and patch), [`spark`] (Spark option
//! encoding) and [`expansion`] (kubelet escaping), over the [`pod`] fields it reads. I/O lives
//! in [`backends`]. [`review`] is the AdmissionReview wire format; [`admission`] ties one
//! request together and maps every error to its answer; [`server`], [`tls`], [`admin`], [`config`], [`telemetry`] and [`certs`] are
//! thin infrastructure around it.

pub mod admin;
pub mod admission;
pub mod app;
pub mod backends;
pub mod certs;
pub mod config;
pub mod expansion;
pub mod injection;
pub mod legacy;
pub mod metrics;
pub mod pod;
pub mod reference;
pub mod review;
pub mod scope;
pub mod server;
pub mod spark;
pub mod telemetry;
pub mod tls;
