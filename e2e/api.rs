//! The API server side of the e2e tests: a real kube-apiserver and etcd (the control plane
//! harness of `tests/support/control_plane/`), shared by every test of this binary that does not
//! break it, plus [`Api::dedicated`] ones for the tests that compact etcd behind the API server.
//!
//! Tests share the control plane, not their data: each [`Api`] has a store namespace of its own
//! (its webhook runs with `--store-namespace` set to it, so the store namespace is also its only
//! admin namespace), holding the stores every test starts from. The domain namespaces all tests
//! read (`spark-jobs` of finance, `marketing-jobs` of marketing, `sandbox` of none) are shared and
//! never relabelled; a scenario that moves a namespace to another domain uses one of its own.
//!
//! Each webhook runs as a ServiceAccount of its store namespace, so the API server's audit log
//! tells its requests from the tests' own ([`Api::requests_since`]).

use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::Value;

use crate::control_plane::{Admin, ControlPlane, service_account_user};

pub const CANARY_DRIVER: &str = "e2e-canary-1f7a$(HOME)$$'\"` \\";
pub const CANARY_GLOBAL: &str = "e2e-canary-global-77c3";
pub const CANARY_ADMIN: &str = "e2e-canary-admin-0b9e";
/// The ServiceAccount (in the store namespace) every webhook of these tests runs as.
const WEBHOOK_IDENTITY: &str = "iomete-secrets-webhook";

enum Plane {
    Shared(&'static ControlPlane),
    Owned(ControlPlane),
}

impl Deref for Plane {
    type Target = ControlPlane;
    fn deref(&self) -> &ControlPlane {
        match self {
            Plane::Shared(plane) => plane,
            Plane::Owned(plane) => plane,
        }
    }
}

/// One test's view of a control plane: its admin client and its own store namespace.
pub struct Api {
    plane: Plane,
    pub admin: Admin,
    store: String,
}

impl Api {
    /// On the control plane shared by this binary's tests; `None` when the binaries are missing
    /// outside CI (a message says how to build them).
    pub async fn shared(test: &str) -> Option<Api> {
        let plane = tokio::task::block_in_place(|| ControlPlane::shared(test))?;
        Some(Api::on(Plane::Shared(plane)).await)
    }

    /// On a control plane of the test's own, for faults that reach every client of an API
    /// server (etcd compacted behind it).
    pub async fn dedicated(test: &str) -> Option<Api> {
        let plane = tokio::task::block_in_place(|| ControlPlane::start(test))?;
        Some(Api::on(Plane::Owned(plane)).await)
    }

    async fn on(plane: Plane) -> Api {
        static STORES: AtomicUsize = AtomicUsize::new(0);
        tokio::task::block_in_place(|| plane.install_vaultconfig_crd());
        let admin = plane.admin().await;
        let store = format!("e2e-store-{:02}", STORES.fetch_add(1, Ordering::Relaxed));
        admin.apply_namespace(&store, &[]).await;
        Api {
            plane,
            admin,
            store,
        }
    }

    /// The store namespace of this test (also its webhook's only admin namespace).
    pub fn store(&self) -> &str {
        &self.store
    }

    pub fn plane(&self) -> &ControlPlane {
        &self.plane
    }

    /// The namespaces and stores every test starts from.
    pub async fn seed(&self) {
        let admin = &self.admin;
        admin
            .apply_namespace("spark-jobs", &[("iomete.com/domain", "finance")])
            .await;
        admin
            .apply_namespace("marketing-jobs", &[("iomete.com/domain", "marketing")])
            .await;
        admin.apply_namespace("sandbox", &[]).await;
        let store = self.store();
        admin
            .apply_secret(
                store,
                "iomete-secret-store-finance",
                &[("s3-secret-key", CANARY_DRIVER.as_bytes())],
            )
            .await;
        admin
            .apply_secret(
                store,
                "iomete-secret-store",
                &[("smtp_password", CANARY_GLOBAL.as_bytes())],
            )
            .await;
        admin
            .apply_secret(
                store,
                "iomete-secret-store-admin",
                &[("root", CANARY_ADMIN.as_bytes())],
            )
            .await;
        // A Secret that is not a store must never be cached or served.
        admin
            .apply_secret(store, "unrelated", &[("k", b"unrelated-value")])
            .await;
    }

    /// A kubeconfig in `dir` for this test's webhook, reaching the API server at `server` (a
    /// proxy in front of it) or directly.
    pub async fn webhook_kubeconfig(&self, dir: &Path, server: Option<&str>) -> PathBuf {
        let server = server.map_or_else(|| self.plane.server_url(), str::to_owned);
        self.admin
            .webhook_kubeconfig(
                &self.store,
                WEBHOOK_IDENTITY,
                &server,
                &dir.join("kubeconfig"),
            )
            .await
    }

    /// The moment from which [`Api::requests_since`] counts: the API server's audit timestamps
    /// have this form (UTC, microseconds), so they compare as text.
    pub fn audit_mark(&self) -> String {
        humantime::format_rfc3339_micros(std::time::SystemTime::now()).to_string()
    }

    /// `VERB URI` of every request this test's webhook sent after `mark` (watches included):
    /// by when the API server received it, not when it logged it, so that a listing answered
    /// before the mark and logged after it is not counted.
    pub fn requests_since(&self, mark: &str) -> Vec<String> {
        let user = service_account_user(&self.store, WEBHOOK_IDENTITY);
        self.plane
            .audit_events()
            .into_iter()
            .filter(|event| {
                event["user"]["username"] == user.as_str()
                    && event["requestReceivedTimestamp"]
                        .as_str()
                        .is_some_and(|received| received > mark)
            })
            .map(|event: Value| {
                format!(
                    "{} {}",
                    event["verb"].as_str().unwrap_or_default(),
                    event["requestURI"].as_str().unwrap_or_default()
                )
            })
            .collect()
    }
}
