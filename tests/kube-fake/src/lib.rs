//! A test-only fake of the Kubernetes API server, serving `v1` namespaces and secrets and the
//! custom resource `secrets.iomete.com/v1 VaultConfig` over plain HTTP on `127.0.0.1`, with
//! the semantics a controller or webhook relies on: resourceVersions, list + watch, 410
//! Expired after compaction, conflicts, a `/status` subresource, and `Status` errors. Real
//! clients work against it: kube-rs (`kube::Client`, `Api<DynamicObject>`,
//! `kube::runtime::watcher`) and `kubectl` (`get`, `create`, `label`, `apply -f`, `patch`,
//! `delete`).
//!
//! ```no_run
//! # async fn example() {
//! let fake = kube_fake::FakeApiServer::start().await;
//! fake.apply_namespace("team-a", &[("iomete.com/managed", "true")]);
//! fake.apply_secret("team-a", "db", &[("password", b"hunter2")]);
//! fake.apply_vault_config("team-a", "main", serde_json::json!({ "address": "https://vault" }));
//! let config = kube::Config::new(fake.url().parse().unwrap());
//! // ... build a kube::Client from `config`, or point kubectl at fake.write_kubeconfig(dir)
//! fake.stop().await;
//! # }
//! ```
//!
//! # What is emulated
//!
//! * Paths: `/api/v1/namespaces[/{name}]`, `/api/v1/namespaces/{ns}/secrets[/{name}]`,
//!   `/api/v1/secrets` (all namespaces; list and watch),
//!   `/apis/secrets.iomete.com/v1/namespaces/{ns}/vaultconfigs[/{name}[/status]]`,
//!   `/apis/secrets.iomete.com/v1/vaultconfigs` (all namespaces), and the deprecated
//!   `/api/v1/watch/...` and `/apis/secrets.iomete.com/v1/watch/...` forms. Verbs: GET
//!   (get, list, watch), POST, PUT, PATCH, DELETE; GET, PUT and PATCH on `/status`.
//! * Discovery for kubectl: `/api`, `/api/v1`, `/apis` (the `secrets.iomete.com` group),
//!   `/apis/secrets.iomete.com`, `/apis/secrets.iomete.com/v1` (with `vaultconfigs/status`),
//!   `/version`, `/`, and `/healthz`, `/livez`, `/readyz`. Aggregated discovery is not
//!   offered; kubectl falls back to these legacy documents. `/openapi/v3` holds just enough
//!   for kubectl to validate VaultConfigs on the server side, so `kubectl apply -f` works
//!   under its default `--validate=strict`.
//! * One global resourceVersion, incremented by every write (including each object deleted
//!   along with its namespace). Objects carry `kind`, `apiVersion`, `metadata.uid`,
//!   `creationTimestamp` and `resourceVersion`; lists carry the list's resourceVersion.
//! * Watches (`watch=true`/`1`): with `resourceVersion` unset or `"0"`, the current objects
//!   as ADDED events, then live changes; with `resourceVersion=N`, every change after N,
//!   then live changes; a single ERROR event with a 410 Expired `Status` when N is older
//!   than the compaction point ([`FakeApiServer::compact`]). Watches end at
//!   `timeoutSeconds` (default 300 s), on [`FakeApiServer::break_watches`] or on shutdown.
//!   `allowWatchBookmarks=true` gets a BOOKMARK every few seconds. Selector transitions
//!   are sent as ADDED/DELETED, as the real watch cache does.
//! * `labelSelector`: `a=b`, `a==b`, `a!=b`, `a`, `!a`, comma-separated. `fieldSelector`:
//!   `=`, `==`, `!=` on `metadata.name`, `metadata.namespace`, secrets' `type` and
//!   namespaces' `status.phase`. Anything else is a 400, not a silent mismatch.
//! * Writes: 201/200 with the stored object; 409 AlreadyExists on creating an existing
//!   name; 409 Conflict on a PUT/PATCH with a stale `metadata.resourceVersion` and on
//!   failed DELETE preconditions; 404 NotFound (also for a secret written into a missing
//!   namespace); 400 BadRequest for undecodable bodies or mismatched name, namespace or
//!   kind; 422 Invalid for bad names and secret keys; 500 for a create carrying a
//!   resourceVersion, as on the real server. `generateName` works. An update that changes
//!   nothing is a no-op (no new resourceVersion, no event), as on the real server.
//! * Secrets: `stringData` merged into base64 `data` and dropped; `data` must be valid
//!   base64; `type` defaults to `Opaque` and is immutable; `immutable: true` is enforced.
//! * Namespaces: the `kubernetes.io/metadata.name` label, `spec.finalizers: [kubernetes]`
//!   and `status.phase: Active` are set by the server; deleting one deletes its secrets and
//!   VaultConfigs.
//! * VaultConfigs, as the real server serves a CRD with `subresources: {status: {}}`:
//!   `metadata.generation` is 1 on create and goes up when anything outside metadata and
//!   status (in practice `spec`) changes; a create drops
//!   `.status`; a write of the main resource keeps the stored `.status`; a write of
//!   `/status` changes only `.status` (spec and metadata in its body are ignored; its
//!   resourceVersion is still a precondition). Bodies must carry `kind` (400 otherwise),
//!   protobuf bodies get 415, strategic merge patches get 415, and messages name the
//!   resource `vaultconfigs.secrets.iomete.com`, as on the real server.
//! * PATCH: `application/merge-patch+json`, `application/json-patch+json`, and, for
//!   namespaces and secrets, `application/strategic-merge-patch+json` applied as a merge
//!   patch (directives such as `$patch` and `$setElementOrder` are dropped; lists are
//!   replaced, not merged).
//! * Failure injection: [`FakeApiServer::set_unavailable`] (503 ServiceUnavailable for
//!   every request), [`FakeApiServer::break_watches`], [`FakeApiServer::compact`]; and
//!   [`FakeApiServer::requests`] records every request's method, path and query.
//!
//! # What is not emulated
//!
//! * Authentication, authorization (RBAC), admission (webhooks, namespace lifecycle
//!   beyond "the namespace must exist"), audit, API priority and fairness, TLS.
//! * Any resource other than namespaces, secrets and VaultConfigs, any other API group,
//!   subresources other than a VaultConfig's `/status` (no `/finalize`, no namespace or
//!   secret `/status`), `deletecollection`, the CustomResourceDefinition API itself
//!   (`apiextensions.k8s.io`), OpenAPI beyond the VaultConfig PATCH operations
//!   (`/openapi/v2` is 404; no schemas, so `kubectl explain` finds nothing and
//!   `kubectl apply -f` of a namespace or secret needs `--validate=false`) and aggregated
//!   discovery.
//! * The CRD's schema (deploy/base/vaultconfig-crd.yaml): a VaultConfig's `spec` and
//!   `status` are stored as sent, with no validation, defaulting (`spec.layout`) or pruning;
//!   no additional printer columns (kubectl shows NAME and AGE); no selectable fields beyond
//!   `metadata.name` and `metadata.namespace`. The short name `vc` is served.
//! * Server-side apply (`application/apply-patch+yaml` gets 415), `managedFields`,
//!   `fieldManager`, `fieldValidation` (unknown fields are kept, not rejected), `dryRun`
//!   (rejected with 400), strategic-merge list semantics.
//! * Protobuf beyond what kubectl sends: POST/PUT bodies in
//!   `application/vnd.kubernetes.protobuf` are decoded for the fields of namespaces and
//!   secrets the fake stores (kubectl's `create` commands send protobuf), but responses
//!   are always JSON and a watch never streams protobuf. YAML and CBOR bodies get 415.
//! * Table output: `as=Table` in Accept is ignored; kubectl prints NAME and AGE columns
//!   from the plain lists.
//! * HTTP/2 (h2c), websockets, `/proxy`, `/exec` and the like.
//! * Pagination: `limit` and `continue` are ignored; a list always returns everything.
//!   `resourceVersion` and `resourceVersionMatch` on a list are ignored (the current
//!   state is returned). Watch-list streaming (`sendInitialEvents=true`) is refused with
//!   422, as on a server without the WatchList feature.
//! * Finalizers and graceful deletion: a DELETE removes the object at once, a namespace
//!   without a Terminating phase; `gracePeriodSeconds` and `propagationPolicy` are ignored.
//! * Label key/value syntax and object size limits are not validated; set-based label
//!   selectors (`in`, `notin`) are refused with 400.
//! * Automatic compaction: the change history is kept until [`FakeApiServer::compact`].
//! * The fake starts empty: there are no `default` or `kube-system` namespaces.

mod discovery;
mod http;
mod object;
mod openapi;
mod protobuf;
mod resource;
mod selector;
mod server;
mod status;
mod store;
mod watch;

pub use server::{FakeApiServer, FakeApiServerOptions};
