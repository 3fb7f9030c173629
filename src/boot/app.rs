//! Start-up wiring, in one place: the caches and their watches, the Vault backend, the admitter,
//! the broker (in broker mode, sharing the admitter's backends), the metrics and the one
//! readiness flag, handed to the server and the admin endpoint.
//!
//! [`run`] is given its listeners bound (a port in use fails before anything starts), starts the
//! watches, marks the webhook ready once the caches have synced, and serves until `shutdown`
//! resolves; the server then drains in-flight admissions. Nothing here decides an admission or
//! speaks HTTP: `admission` decides, `server` and `admin` serve.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::admission::{Admitter, Limits};
use crate::backends::identity::IdentityBackend;
use crate::backends::{Backends, KubernetesCaches, VaultBackend};
use crate::boot::config::ServeConfig;
use crate::broker::Broker;
use crate::decision::injection::Settings;
use crate::edge::admin::{self, AdminState};
use crate::edge::broker::{self, BrokerState};
use crate::edge::metrics::{CacheState, Metrics};
use crate::edge::server::{self, Listeners, Routers, ServerError, WebhookState};
use crate::edge::tls::ServerTls;
use crate::tools::auditor::{self, AuditorMetrics};

/// Whether the webhook answers admissions correctly now: true once the caches have synced,
/// false again when shutdown begins. The admin endpoint's `/readyz` reads it.
#[derive(Clone, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    pub fn is_ready(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }

    pub fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::Release);
    }
}

/// Runs the webhook until `shutdown` resolves. `tls` is loaded and `listeners` are bound by the
/// caller (after the configuration is validated), so a bad certificate or a taken port fails
/// before anything else starts, and a caller that bound port 0 knows the ports; the
/// certificate is reloaded while serving.
pub async fn run(
    config: ServeConfig,
    tls: ServerTls,
    listeners: Listeners,
    client: kube::Client,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServerError> {
    let mut metrics = Metrics::new();
    metrics.register_serving_certificate_expiry(tls.certificates.expiry());
    let metrics = Arc::new(metrics);
    let reload_certificates = tokio::spawn(tls.certificates.watch());

    // The broker asks the API server who calls (TokenReview) and reads the caller's pod.
    let identity = config
        .broker
        .as_ref()
        .map(|_| IdentityBackend::new(client.clone()));
    let (stores, drive_watches) = KubernetesCaches::watch(client.clone(), config.stores.clone());
    let auditor_client = client.clone();
    let (vault, drive_vault) = VaultBackend::watch(
        client,
        config.vault.clone(),
        stores.clone(),
        metrics.vault(),
    );
    let ready = Readiness::default();
    let readiness = tokio::spawn(ready_once_caches_fresh(stores.clone(), ready.clone()));
    let stop_readiness = readiness.abort_handle();
    let mut background = vec![
        tokio::spawn(drive_watches),
        tokio::spawn(drive_vault),
        readiness,
    ];
    // The opt-in pod auditor (`--audit-pods`): its gauges are appended to `/metrics`.
    let auditor = config.audit_pods.map(|interval| {
        let auditor_metrics = Arc::new(AuditorMetrics::default());
        background.push(tokio::spawn(auditor::run(
            auditor_client,
            stores.clone(),
            vault.clone(),
            auditor_metrics.clone(),
            interval,
        )));
        auditor_metrics
    });
    // Once shutdown begins, caches that finish syncing must not make the webhook ready again.
    let shutdown = async move {
        shutdown.await;
        stop_readiness.abort();
    };

    let (scraped, stores_read, vault_read) = (metrics.clone(), stores.clone(), vault.clone());
    let admin = admin::router(AdminState {
        ready: ready.clone(),
        metrics: Arc::new(move || {
            let mut text = scraped.render(CacheState {
                sizes: stores_read.sizes(),
                kubernetes_fresh: stores_read.is_fresh(),
                vault_configs_fresh: vault_read.is_fresh(),
            });
            if let Some(auditor) = &auditor {
                auditor.append_to(&mut text);
            }
            text
        }),
    });
    let backends = Arc::new(Backends {
        kubernetes: stores,
        vault,
    });
    let settings = Settings {
        secrets_v2_enabled: config.secrets_v2_enabled,
        delivery: config.delivery,
        broker: config.broker.as_ref().map(|broker| broker.settings.clone()),
    };
    let limits = Limits {
        timeout: config.admission_timeout,
        max_in_flight: config.max_in_flight,
    };
    // The broker shares the admitter's backends (caches, single-flight Vault reads) and bounds.
    let broker = identity.map(|identity| {
        let broker = Broker::new(identity, backends.clone(), settings.clone(), limits);
        let router = broker::router(BrokerState {
            broker: Arc::new(broker),
            metrics: metrics.clone(),
        });
        (router, tls.broker_config.clone())
    });
    let admitter = Arc::new(Admitter::new(backends, settings, limits));
    let webhook = server::router(WebhookState { admitter, metrics });

    let routers = Routers {
        webhook,
        admin,
        broker,
    };
    let served = server::serve(
        listeners,
        tls.config,
        config.max_connections,
        routers,
        ready,
        shutdown,
    )
    .await;
    for task in background {
        task.abort();
    }
    reload_certificates.abort();
    served
}

async fn ready_once_caches_fresh(stores: KubernetesCaches, ready: Readiness) {
    stores.until_fresh().await;
    ready.set(true);
    tracing::info!("secret store and namespace caches synced; ready");
}
