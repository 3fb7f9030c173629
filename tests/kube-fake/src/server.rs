//! [`FakeApiServer`]: starting and stopping the fake, and the controls a test uses to set
//! up state and inject failures without going through HTTP.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Map, Value, json};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::http::{AppState, router};
use crate::object;
use crate::resource::{ResourceKind, Subresource};
use crate::store::{Preconditions, Store};

/// How long [`FakeApiServer::stop`] waits for open connections to finish.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Settings for [`FakeApiServer::start_with`]; [`Default`] is what [`FakeApiServer::start`] uses.
#[derive(Debug, Clone)]
pub struct FakeApiServerOptions {
    /// How long a watch lasts when the request has no `timeoutSeconds` (default 300 s).
    pub default_watch_timeout: Duration,
    /// How often a watch with `allowWatchBookmarks=true` gets a BOOKMARK (default 5 s; a
    /// real server sends one about once a minute).
    pub bookmark_interval: Duration,
}

impl Default for FakeApiServerOptions {
    fn default() -> Self {
        Self {
            default_watch_timeout: Duration::from_secs(300),
            bookmark_interval: Duration::from_secs(5),
        }
    }
}

/// A fake Kubernetes API server serving namespaces, secrets and VaultConfigs on `127.0.0.1`.
///
/// Stopped by [`FakeApiServer::stop`] or, without waiting, when dropped.
pub struct FakeApiServer {
    app: Arc<AppState>,
    shutdown: watch::Sender<bool>,
    serve_task: Option<JoinHandle<()>>,
}

impl FakeApiServer {
    /// Starts the fake on a free port of 127.0.0.1 with default options.
    ///
    /// Panics if no port can be bound. Must be called within a Tokio runtime.
    pub async fn start() -> Self {
        Self::start_with(FakeApiServerOptions::default()).await
    }

    /// Starts the fake on a free port of 127.0.0.1.
    ///
    /// Panics if no port can be bound. Must be called within a Tokio runtime.
    pub async fn start_with(options: FakeApiServerOptions) -> Self {
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .expect("kube-fake: cannot bind a port on 127.0.0.1");
        let address = listener
            .local_addr()
            .expect("kube-fake: a bound listener has an address");
        let app = Arc::new(AppState {
            store: Mutex::new(Store::new()),
            requests: Mutex::new(Vec::new()),
            unavailable: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            watch_breaks: watch::Sender::new(0),
            open_watches: Arc::new(AtomicUsize::new(0)),
            address,
            default_watch_timeout: options.default_watch_timeout,
            bookmark_interval: options.bookmark_interval,
        });
        let (shutdown, mut shutdown_requested) = watch::channel(false);
        let server =
            axum::serve(listener, router(Arc::clone(&app))).with_graceful_shutdown(async move {
                // An error means the FakeApiServer is gone, which is a shutdown too.
                let _ = shutdown_requested.wait_for(|stop| *stop).await;
            });
        let serve_task = tokio::spawn(async move {
            // Accept errors are retried inside axum; serve() only returns on shutdown.
            let _ = server.await;
        });
        Self {
            app,
            shutdown,
            serve_task: Some(serve_task),
        }
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.app.address)
    }

    pub fn address(&self) -> SocketAddr {
        self.app.address
    }

    /// A kubeconfig whose current context points at the fake, with a dummy bearer token
    /// (the fake checks no credentials).
    pub fn kubeconfig_yaml(&self) -> String {
        format!(
            "apiVersion: v1
kind: Config
clusters:
- name: kube-fake
  cluster:
    server: {url}
users:
- name: kube-fake
  user:
    token: kube-fake-token
contexts:
- name: kube-fake
  context:
    cluster: kube-fake
    user: kube-fake
current-context: kube-fake
preferences: {{}}
",
            url = self.url()
        )
    }

    /// Writes [`FakeApiServer::kubeconfig_yaml`] to `dir/kubeconfig` and returns that path.
    ///
    /// Panics if the file cannot be written.
    pub fn write_kubeconfig(&self, dir: impl AsRef<Path>) -> PathBuf {
        let path = dir.as_ref().join("kubeconfig");
        std::fs::write(&path, self.kubeconfig_yaml())
            .unwrap_or_else(|error| panic!("kube-fake: cannot write {}: {error}", path.display()));
        path
    }

    /// Creates the namespace, or replaces its labels (emitting ADDED or MODIFIED); the
    /// server adds `kubernetes.io/metadata.name`. Returns the new resourceVersion.
    ///
    /// As on the real server, an apply that changes nothing writes nothing: the
    /// resourceVersion stays and no watch event is sent.
    ///
    /// Panics if the name is not a valid namespace name.
    pub fn apply_namespace(&self, name: &str, labels: &[(&str, &str)]) -> String {
        let labels: Map<String, Value> = labels
            .iter()
            .map(|(key, value)| ((*key).to_owned(), json!(value)))
            .collect();
        self.apply(ResourceKind::Namespace, "", name, |object| {
            object["metadata"]["labels"] = Value::Object(labels);
        })
    }

    /// Deletes the namespace and, first, every secret and VaultConfig in it (each a DELETED
    /// event).
    /// Returns whether it existed.
    pub fn delete_namespace(&self, name: &str) -> bool {
        self.delete(ResourceKind::Namespace, "", name)
    }

    /// Creates the `Opaque` secret, or replaces its data (emitting ADDED or MODIFIED).
    /// Returns the new resourceVersion; an apply that changes nothing writes nothing.
    ///
    /// Panics if the namespace does not exist or a name or key is invalid.
    pub fn apply_secret(&self, namespace: &str, name: &str, data: &[(&str, &[u8])]) -> String {
        let data: Map<String, Value> = data
            .iter()
            .map(|(key, value)| ((*key).to_owned(), json!(BASE64.encode(value))))
            .collect();
        self.apply(ResourceKind::Secret, namespace, name, |object| {
            object["data"] = Value::Object(data);
        })
    }

    /// Deletes the secret; returns whether it existed.
    pub fn delete_secret(&self, namespace: &str, name: &str) -> bool {
        self.delete(ResourceKind::Secret, namespace, name)
    }

    /// Creates the `secrets.iomete.com/v1` VaultConfig with this `spec` (generation 1), or
    /// replaces the spec of the stored one (the generation goes up when the spec changes;
    /// the status is kept). Emits ADDED or MODIFIED and returns the new resourceVersion; an
    /// apply that changes nothing writes nothing.
    ///
    /// Panics if the namespace does not exist or the name is invalid.
    pub fn apply_vault_config(&self, namespace: &str, name: &str, spec: Value) -> String {
        self.apply(ResourceKind::VaultConfig, namespace, name, |object| {
            object["spec"] = spec;
        })
    }

    /// Replaces the status of the stored VaultConfig, as a controller's write to `/status`
    /// does (spec, metadata and generation stay). Returns the new resourceVersion; a status
    /// equal to the stored one writes nothing.
    ///
    /// Panics if the VaultConfig does not exist.
    pub fn apply_vault_config_status(&self, namespace: &str, name: &str, status: Value) -> String {
        let kind = ResourceKind::VaultConfig;
        let mut store = self.app.store();
        let Some(mut object) = store.find(kind, namespace, name).cloned() else {
            panic!(
                "kube-fake: cannot set the status of VaultConfig {namespace}/{name}: it does not exist"
            );
        };
        object["status"] = status;
        match store.update(kind, namespace, name, Some(Subresource::Status), object) {
            Ok(written) => object::resource_version(&written).to_owned(),
            Err(error) => panic!(
                "kube-fake: cannot set the status of VaultConfig {namespace}/{name}: {}",
                error.message
            ),
        }
    }

    /// Deletes the VaultConfig; returns whether it existed.
    pub fn delete_vault_config(&self, namespace: &str, name: &str) -> bool {
        self.delete(ResourceKind::VaultConfig, namespace, name)
    }

    /// The namespace as stored (what a GET returns), if it exists.
    pub fn namespace(&self, name: &str) -> Option<Value> {
        self.app
            .store()
            .find(ResourceKind::Namespace, "", name)
            .cloned()
    }

    /// The secret as stored (what a GET returns), if it exists.
    pub fn secret(&self, namespace: &str, name: &str) -> Option<Value> {
        self.app
            .store()
            .find(ResourceKind::Secret, namespace, name)
            .cloned()
    }

    /// The VaultConfig as stored (what a GET returns, status included), if it exists.
    pub fn vault_config(&self, namespace: &str, name: &str) -> Option<Value> {
        self.app
            .store()
            .find(ResourceKind::VaultConfig, namespace, name)
            .cloned()
    }

    /// The resourceVersion of the latest write.
    pub fn resource_version(&self) -> String {
        self.app.store().resource_version().to_string()
    }

    /// Moves the compaction point to the current resourceVersion: from now on a watch
    /// asking for changes since an older version gets a 410 Expired ERROR event.
    pub fn compact(&self) {
        self.app.store().compact();
    }

    /// Ends every open watch response now, as an API server restart or a load balancer
    /// timeout would. Clients see a clean end of stream.
    pub fn break_watches(&self) {
        self.app
            .watch_breaks
            .send_modify(|generation| *generation += 1);
    }

    /// How many watch responses are streaming right now (handy to wait until a client's
    /// watch is established).
    pub fn open_watches(&self) -> usize {
        self.app.open_watches.load(Ordering::SeqCst)
    }

    /// While `true`, every HTTP request gets 503 ServiceUnavailable (without `Retry-After`).
    /// Open watches are not affected; combine with [`FakeApiServer::break_watches`] to cut
    /// them too.
    ///
    /// Note that kube 5's default client retries 429/503/504 itself (15 times, backoff from
    /// 5 ms doubling, with jitter: minutes in total), so a kube call made while the fake is
    /// unavailable usually waits for it to come back rather than failing; build the client
    /// with `Config::default_retry = false` to see the 503.
    pub fn set_unavailable(&self, unavailable: bool) {
        self.app.unavailable.store(unavailable, Ordering::SeqCst);
    }

    /// Method, path and query of every HTTP request received so far, in order, e.g.
    /// `GET /api/v1/namespaces/a/secrets?watch=true&resourceVersion=5`.
    pub fn requests(&self) -> Vec<String> {
        self.app.request_log().clone()
    }

    /// Forgets the requests received so far.
    pub fn clear_requests(&self) {
        self.app.request_log().clear();
    }

    /// Stops accepting connections, ends open watches and waits (a few seconds at most)
    /// for in-flight requests to finish.
    pub async fn stop(mut self) {
        self.begin_shutdown();
        if let Some(mut serve_task) = self.serve_task.take()
            && tokio::time::timeout(SHUTDOWN_GRACE, &mut serve_task)
                .await
                .is_err()
        {
            serve_task.abort();
        }
    }

    fn begin_shutdown(&self) {
        self.app.stopping.store(true, Ordering::SeqCst);
        self.shutdown.send_replace(true);
        self.break_watches();
    }

    /// Creates the object from an empty one, or updates the stored one, after `edit`.
    fn apply(
        &self,
        kind: ResourceKind,
        namespace: &str,
        name: &str,
        edit: impl FnOnce(&mut Value),
    ) -> String {
        let mut store = self.app.store();
        let existing = store.find(kind, namespace, name).cloned();
        let mut object = existing.clone().unwrap_or_else(|| {
            json!({
                "kind": kind.kind(),
                "apiVersion": kind.api_version(),
                "metadata": { "name": name },
            })
        });
        edit(&mut object);
        let written = match existing {
            Some(_) => store.update(kind, namespace, name, None, object),
            None => store.create(kind, namespace, object),
        };
        match written {
            Ok(written) => object::resource_version(&written).to_owned(),
            Err(error) => panic!(
                "kube-fake: cannot apply {} {namespace}/{name}: {}",
                kind.kind(),
                error.message
            ),
        }
    }

    fn delete(&self, kind: ResourceKind, namespace: &str, name: &str) -> bool {
        self.app
            .store()
            .delete(kind, namespace, name, &Preconditions::default())
            .is_ok()
    }
}

impl Drop for FakeApiServer {
    /// Begins a graceful shutdown that finishes in the background: the listener closes
    /// and open watches end, so no connection task outlives the fake for long.
    fn drop(&mut self) {
        if self.serve_task.is_some() {
            self.begin_shutdown();
        }
    }
}
