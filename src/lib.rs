//! `iomete-secrets-webhook`: a Kubernetes mutating admission webhook that injects secrets into
//! pods from references in their annotations.
//!
//! The crate's parts, one directory each:
//! - [`decision`]: the pure core. Parsing references, authorizing them against a namespace's
//!   scope, planning and rendering the patch: plain data in, plain data out, no I/O.
//! - [`admission`]: one request end to end: the AdmissionReview wire format, the decision, the
//!   backends' reads, and the one place where every error becomes an answer.
//! - [`backends`]: all I/O to secret stores: the Kubernetes watches and caches, Vault KV v2.
//! - [`edge`]: thin infrastructure: the HTTPS server, TLS, the admin endpoint, metrics, logs.
//! - [`boot`]: configuration, start-up wiring and the binary's subcommands.
//! - [`tools`]: the admin tools (`check`, `catalogue`, `vault test`, `audit`), also the kubectl
//!   plugin `kubectl iomete-secrets`: the decision and backends above, run from a kubeconfig.
//! - [`wrapper`]: `iomete-env`, the broker mode's entrypoint wrapper: fetches a container's
//!   values from the broker at container start and `exec`s the application with them.

// `pub` in the library means API; the rest is `pub(crate)` or narrower.
#![warn(unreachable_pub)]

pub mod admission;
pub mod backends;
pub mod boot;
pub mod broker;
pub mod decision;
pub mod edge;
pub mod tools;
pub mod wrapper;
