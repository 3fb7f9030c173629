//! A test-only fake of the Kubernetes API server, serving `v1` namespaces and secrets over
//! plain HTTP on `127.0.0.1`, with the semantics a controller or webhook relies on:
//! resourceVersions, list + watch, 410 Expired after compaction, conflicts, and `Status`
//! errors. Real clients work against it: kube-rs (`kube::Client`, `kube::runtime::watcher`)
//! and `kubectl` (`get`, `create`, `label`, `delete`).
//!
//! ```no_run
//! # async fn example() {
//! let fake = kube_fake::FakeApiServer::start().await;
//! fake.apply_namespace("team-a", &[("iomete.com/managed", "true")]);
//! fake.apply_secret("team-a", "db", &[("password", b"hunter2")]);
//! let config = kube::Config::new(fake.url().parse().unwrap());
//! // ... build a kube::Client from `config`, or point kubectl at fake.write_kubeconfig(dir)
//! fake.stop().await;
//! # }
//! ```
//!
//! # What is emulated
//!
//! * Paths: `/api/v1/namespaces[/{name}]`, `/api/v1/namespaces/{ns}/secrets[/{name}]`,
//!   `/api/v1/secrets` (all namespaces; list and watch), and the deprecated
//!   `/api/v1/watch/...` forms. Verbs: GET (get, list, watch), POST, PUT, PATCH, DELETE.
//! * Discovery for kubectl: `/api`, `/api/v1`, `/apis` (no groups), `/version`, `/`, and
//!   `/healthz`, `/livez`, `/readyz`. Aggregated discovery is not offered; kubectl falls
//!   back to these legacy documents.
//! * One global resourceVersion, incremented by every write (including each secret deleted
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
//!   and `status.phase: Active` are set by the server; deleting one deletes its secrets.
//! * PATCH: `application/merge-patch+json`, `application/json-patch+json`, and
//!   `application/strategic-merge-patch+json` applied as a merge patch (directives such as
//!   `$patch` and `$setElementOrder` are dropped; lists are replaced, not merged).
//! * Failure injection: [`FakeApiServer::set_unavailable`] (503 ServiceUnavailable for
//!   every request), [`FakeApiServer::break_watches`], [`FakeApiServer::compact`]; and
//!   [`FakeApiServer::requests`] records every request's method, path and query.
//!
//! # What is not emulated
//!
//! * Authentication, authorization (RBAC), admission (webhooks, namespace lifecycle
//!   beyond "the namespace must exist"), audit, API priority and fairness, TLS.
//! * Any resource other than namespaces and secrets, any API group, subresources
//!   (`/status`, `/finalize`), `deletecollection`, OpenAPI (`/openapi/v2`, `/openapi/v3`
//!   are 404) and aggregated discovery.
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
mod protobuf;
mod resource;
mod selector;
mod server;
mod status;
mod store;
mod watch;

pub use server::{FakeApiServer, FakeApiServerOptions};
