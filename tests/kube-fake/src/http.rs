//! The HTTP face of the fake: one handler that records the request, answers 503 while the
//! server is marked unavailable, parses the URL into a [`Route`] and dispatches it to the
//! store, the watch machinery or the discovery and OpenAPI documents. Every failure becomes
//! a `Status` response; no request input can make the handler panic.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method, StatusCode, Uri};
use axum::response::Response;
use percent_encoding::percent_decode_str;
use serde_json::Value;
use tokio::sync::watch;

use crate::discovery;
use crate::openapi;
use crate::protobuf;
use crate::resource::{ResourceKind, Subresource};
use crate::selector::ObjectFilter;
use crate::status::ApiError;
use crate::store::{PatchType, Preconditions, Store};
use crate::watch::{EventStream, WatchSettings, expired_body};

const JSON: &str = "application/json";
const PROTOBUF: &str = "application/vnd.kubernetes.protobuf";
const MERGE_PATCH: &str = "application/merge-patch+json";
const JSON_PATCH: &str = "application/json-patch+json";
const STRATEGIC_MERGE_PATCH: &str = "application/strategic-merge-patch+json";

/// The real server's default limit for request bodies (3 MiB).
const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;
/// The longest watch the fake keeps open, whatever `timeoutSeconds` asks for.
const MAX_WATCH_TIMEOUT: Duration = Duration::from_secs(24 * 60 * 60);

/// State shared by the request handler and the test controls.
pub(crate) struct AppState {
    pub(crate) store: Mutex<Store>,
    pub(crate) requests: Mutex<Vec<String>>,
    pub(crate) unavailable: AtomicBool,
    /// Set once shutdown begins, so no new watch can hold the server open.
    pub(crate) stopping: AtomicBool,
    /// Bumped to end every open watch.
    pub(crate) watch_breaks: watch::Sender<u64>,
    pub(crate) open_watches: Arc<AtomicUsize>,
    pub(crate) address: SocketAddr,
    pub(crate) default_watch_timeout: Duration,
    pub(crate) bookmark_interval: Duration,
}

impl AppState {
    /// Locks the store; a panic elsewhere while it was held does not make it unusable.
    pub(crate) fn store(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn request_log(&self) -> MutexGuard<'_, Vec<String>> {
        self.requests.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

pub(crate) fn router(state: Arc<AppState>) -> Router {
    Router::new().fallback(handle).with_state(state)
}

async fn handle(State(app): State<Arc<AppState>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    app.request_log()
        .push(format!("{} {}", parts.method, path_and_query(&parts.uri)));
    serve(&app, parts, body)
        .await
        .unwrap_or_else(|error| json_response(error.code, &error.to_status()))
}

fn path_and_query(uri: &Uri) -> &str {
    uri.path_and_query()
        .map_or_else(|| uri.path(), |path_and_query| path_and_query.as_str())
}

/// Where a URL points.
#[derive(Debug, PartialEq)]
enum Route {
    Root,
    Version,
    Health,
    /// `/api`
    ApiVersions,
    /// `/apis`
    ApiGroups,
    /// `/apis/{group}`
    ApiGroup {
        group: &'static str,
    },
    /// `/api/v1` (`group` empty) or `/apis/{group}/{version}`
    ApiResources {
        group: &'static str,
        version: &'static str,
    },
    /// `/openapi/v3`
    OpenApiRoot,
    /// `/openapi/v3/apis/{group}/{version}`
    OpenApiDocument {
        group: &'static str,
        version: &'static str,
    },
    Collection(CollectionPath),
    Object(ObjectPath),
}

#[derive(Debug, PartialEq)]
struct CollectionPath {
    kind: ResourceKind,
    /// `None` for namespaces, and for namespaced kinds across all namespaces.
    namespace: Option<String>,
    /// The deprecated `/api/v1/watch/...` (or `/apis/{group}/{version}/watch/...`) form.
    legacy_watch: bool,
}

#[derive(Debug, PartialEq)]
struct ObjectPath {
    kind: ResourceKind,
    /// Empty for namespaces (cluster-scoped), as in the store.
    namespace: String,
    name: String,
    /// `Some` for `.../{name}/status`.
    subresource: Option<Subresource>,
    legacy_watch: bool,
}

impl Route {
    fn parse(path: &str) -> Result<Self, ApiError> {
        let segments: Vec<String> = path
            .split('/')
            .filter(|segment| !segment.is_empty())
            .map(|segment| percent_decode_str(segment).decode_utf8_lossy().into_owned())
            .collect();
        let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
        match segments.as_slice() {
            [] => Ok(Self::Root),
            ["version"] => Ok(Self::Version),
            ["healthz" | "livez" | "readyz"] => Ok(Self::Health),
            ["api"] => Ok(Self::ApiVersions),
            ["api", "v1"] => Ok(Self::ApiResources {
                group: "",
                version: "v1",
            }),
            ["api", "v1", "watch", rest @ ..] => Self::parse_resource("", "v1", rest, true),
            ["api", "v1", rest @ ..] => Self::parse_resource("", "v1", rest, false),
            ["apis"] => Ok(Self::ApiGroups),
            ["apis", group] => served_group_version(group, None)
                .map(|kind| Self::ApiGroup {
                    group: kind.group(),
                })
                .ok_or_else(ApiError::no_such_route),
            ["apis", group, version] => served_group_version(group, Some(version))
                .map(|kind| Self::ApiResources {
                    group: kind.group(),
                    version: kind.version(),
                })
                .ok_or_else(ApiError::no_such_route),
            ["openapi", "v3"] => Ok(Self::OpenApiRoot),
            ["openapi", "v3", "apis", group, version] => served_group_version(group, Some(version))
                .map(|kind| Self::OpenApiDocument {
                    group: kind.group(),
                    version: kind.version(),
                })
                .ok_or_else(ApiError::no_such_route),
            ["apis", group, version, "watch", rest @ ..] => {
                Self::parse_resource(group, version, rest, true)
            }
            ["apis", group, version, rest @ ..] => {
                Self::parse_resource(group, version, rest, false)
            }
            _ => Err(ApiError::no_such_route()),
        }
    }

    /// The part of a resource URL after `/api/v1` or `/apis/{group}/{version}` (and after
    /// `/watch` in the deprecated watch form).
    fn parse_resource(
        group: &str,
        version: &str,
        segments: &[&str],
        legacy_watch: bool,
    ) -> Result<Self, ApiError> {
        let kind = |plural: &str| {
            ResourceKind::find(group, version, plural).ok_or_else(ApiError::no_such_route)
        };
        let collection = |kind: ResourceKind, namespace: Option<&str>| {
            Ok(Self::Collection(CollectionPath {
                kind,
                namespace: namespace.map(String::from),
                legacy_watch,
            }))
        };
        let object =
            |kind: ResourceKind, namespace: &str, name: &str, subresource: Option<Subresource>| {
                // A namespaced kind is only reachable under /namespaces/{ns}/, a cluster-scoped
                // one only outside it; and nothing is watched through a subresource.
                let namespaced_url = !namespace.is_empty();
                if kind.is_namespaced() != namespaced_url || (legacy_watch && subresource.is_some())
                {
                    return Err(ApiError::no_such_route());
                }
                Ok(Self::Object(ObjectPath {
                    kind,
                    namespace: namespace.into(),
                    name: name.into(),
                    subresource,
                    legacy_watch,
                }))
            };
        match *segments {
            // A cluster-scoped collection, or a namespaced kind across all namespaces.
            [plural] => collection(kind(plural)?, None),
            [plural, name] => object(kind(plural)?, "", name, None),
            ["namespaces", namespace, plural] => match kind(plural)? {
                kind if kind.is_namespaced() => collection(kind, Some(namespace)),
                _ => Err(ApiError::no_such_route()),
            },
            ["namespaces", namespace, plural, name] => object(kind(plural)?, namespace, name, None),
            ["namespaces", namespace, plural, name, "status"] => match kind(plural)? {
                kind if kind.has_status_subresource() => {
                    object(kind, namespace, name, Some(Subresource::Status))
                }
                _ => Err(ApiError::no_such_route()),
            },
            _ => Err(ApiError::no_such_route()),
        }
    }
}

/// A kind served in `group` (and `version`, when given); `None` when the group or version
/// is not served. The core group is not an `/apis` group.
fn served_group_version(group: &str, version: Option<&str>) -> Option<ResourceKind> {
    ResourceKind::ALL.into_iter().find(|kind| {
        kind.is_custom_resource()
            && kind.group() == group
            && version.is_none_or(|version| kind.version() == version)
    })
}

/// The decoded query string.
struct QueryParams(Vec<(String, String)>);

impl QueryParams {
    fn parse(uri: &Uri) -> Self {
        let query = uri.query().unwrap_or_default();
        Self(
            form_urlencoded::parse(query.as_bytes())
                .into_owned()
                .collect(),
        )
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    /// A boolean parameter, spelled any way Go's `strconv.ParseBool` accepts.
    fn flag(&self, name: &str) -> Result<bool, ApiError> {
        match self.get(name) {
            None | Some("") => Ok(false),
            Some("1" | "t" | "T" | "true" | "TRUE" | "True") => Ok(true),
            Some("0" | "f" | "F" | "false" | "FALSE" | "False") => Ok(false),
            Some(other) => Err(ApiError::bad_request(format!(
                "invalid value for {name}: {other:?} is not a boolean"
            ))),
        }
    }
}

async fn serve(app: &AppState, parts: Parts, body: Body) -> Result<Response, ApiError> {
    if app.unavailable.load(Ordering::SeqCst) || app.stopping.load(Ordering::SeqCst) {
        return Err(ApiError::service_unavailable());
    }
    let route = Route::parse(parts.uri.path())?;
    let query = QueryParams::parse(&parts.uri);
    let method = parts.method.clone();
    if query.get("dryRun").is_some() && method != Method::GET {
        return Err(ApiError::bad_request(
            "dryRun is not supported by kube-fake",
        ));
    }
    match (route, method) {
        (Route::Root, Method::GET) => Ok(json_response(200, &discovery::root_paths())),
        (Route::Version, Method::GET) => Ok(json_response(200, &discovery::version())),
        (Route::Health, Method::GET) => Ok(text_response("ok")),
        (Route::ApiVersions, Method::GET) => Ok(json_response(
            200,
            &discovery::api_versions(&app.address.to_string()),
        )),
        (Route::ApiGroups, Method::GET) => Ok(json_response(200, &discovery::api_group_list())),
        (Route::ApiGroup { group }, Method::GET) => {
            Ok(json_response(200, &discovery::api_group(group)))
        }
        (Route::ApiResources { group, version }, Method::GET) => Ok(json_response(
            200,
            &discovery::api_resource_list(group, version),
        )),
        (Route::OpenApiRoot, Method::GET) => Ok(json_response(200, &openapi::root())),
        (Route::OpenApiDocument { group, version }, Method::GET) => {
            let document = openapi::group_version_document(group, version)
                .ok_or_else(ApiError::no_such_route)?;
            Ok(json_response(200, &document))
        }
        (Route::Collection(path), Method::GET) => {
            let filter = ObjectFilter::new(
                path.kind,
                path.namespace,
                query.get("labelSelector"),
                query.get("fieldSelector"),
            )?;
            if path.legacy_watch || query.flag("watch")? {
                start_watch(app, filter, &query)
            } else {
                Ok(json_response(200, &app.store().list(&filter)))
            }
        }
        (Route::Collection(path), Method::POST) if !path.legacy_watch => {
            let namespace = match (path.kind.is_namespaced(), path.namespace) {
                (false, _) => String::new(),
                (true, Some(namespace)) => namespace,
                // POST /api/v1/secrets: there is no namespace to create in.
                (true, None) => return Err(ApiError::method_not_allowed()),
            };
            let object = read_object(&parts, body, path.kind).await?;
            let created = app.store().create(path.kind, &namespace, object)?;
            Ok(json_response(201, &created))
        }
        (Route::Object(path), Method::GET) if path.legacy_watch => {
            let field_selector = match query.get("fieldSelector") {
                Some(more) if !more.is_empty() => format!("metadata.name={},{more}", path.name),
                _ => format!("metadata.name={}", path.name),
            };
            let namespace = path.kind.is_namespaced().then_some(path.namespace);
            let filter = ObjectFilter::new(
                path.kind,
                namespace,
                query.get("labelSelector"),
                Some(&field_selector),
            )?;
            start_watch(app, filter, &query)
        }
        (Route::Object(path), Method::GET) => {
            let object = app.store().get(path.kind, &path.namespace, &path.name)?;
            Ok(json_response(200, &object))
        }
        (Route::Object(path), Method::PUT) if !path.legacy_watch => {
            let object = read_object(&parts, body, path.kind).await?;
            let updated = app.store().update(
                path.kind,
                &path.namespace,
                &path.name,
                path.subresource,
                object,
            )?;
            Ok(json_response(200, &updated))
        }
        (Route::Object(path), Method::PATCH) if !path.legacy_watch => {
            let patch_type = patch_type(&parts, path.kind)?;
            let patch = read_body(body).await?;
            let patched = app.store().patch(
                path.kind,
                &path.namespace,
                &path.name,
                path.subresource,
                patch_type,
                &patch,
            )?;
            Ok(json_response(200, &patched))
        }
        // A subresource is deleted with its object, never on its own.
        (Route::Object(path), Method::DELETE)
            if !path.legacy_watch && path.subresource.is_none() =>
        {
            let preconditions = delete_preconditions(&read_body(body).await?)?;
            let status =
                app.store()
                    .delete(path.kind, &path.namespace, &path.name, &preconditions)?;
            Ok(json_response(200, &status))
        }
        _ => Err(ApiError::method_not_allowed()),
    }
}

fn start_watch(
    app: &AppState,
    filter: ObjectFilter,
    query: &QueryParams,
) -> Result<Response, ApiError> {
    if query.flag("sendInitialEvents")? {
        // What a real server without the WatchList feature answers; clients then fall
        // back to list + watch.
        return Err(ApiError::unprocessable(
            "sendInitialEvents is forbidden for watch unless the WatchList feature gate is enabled (kube-fake does not implement streaming lists)",
        ));
    }
    let since = match query.get("resourceVersion") {
        None | Some("" | "0") => None,
        Some(version) => Some(version.parse::<u64>().map_err(|_| {
            ApiError::bad_request(format!("invalid resource version: {version:?}"))
        })?),
    };
    let timeout =
        match query.get("timeoutSeconds") {
            None | Some("" | "0") => app.default_watch_timeout,
            Some(seconds) => Duration::from_secs(seconds.parse().map_err(|_| {
                ApiError::bad_request(format!("invalid timeoutSeconds: {seconds:?}"))
            })?),
        }
        // Keeps `now + timeout` representable whatever the client asks for.
        .min(MAX_WATCH_TIMEOUT);
    let settings = WatchSettings {
        timeout,
        bookmark_interval: query
            .flag("allowWatchBookmarks")?
            .then_some(app.bookmark_interval),
    };
    let subscription = app.store().subscribe(filter.kind(), since);
    let body = match subscription {
        Ok(subscription) => EventStream::new(
            filter,
            subscription,
            &settings,
            app.watch_breaks.subscribe(),
            &app.open_watches,
        )
        .into_body(),
        Err(expired) => expired_body(&expired),
    };
    Ok(response(200, "application/json", body))
}

fn content_type(parts: &Parts) -> String {
    parts
        .headers
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

/// The patch format of a PATCH. Custom resources have no strategic merge patch (it needs
/// Go struct tags), so the real server answers 415 for it, and so does the fake.
fn patch_type(parts: &Parts, kind: ResourceKind) -> Result<PatchType, ApiError> {
    let accepted: &[&str] = if kind.is_custom_resource() {
        &[JSON_PATCH, MERGE_PATCH]
    } else {
        &[JSON_PATCH, MERGE_PATCH, STRATEGIC_MERGE_PATCH]
    };
    match content_type(parts).as_str() {
        MERGE_PATCH => Ok(PatchType::Merge),
        JSON_PATCH => Ok(PatchType::Json),
        STRATEGIC_MERGE_PATCH if !kind.is_custom_resource() => Ok(PatchType::StrategicMerge),
        other => Err(ApiError::unsupported_media_type(other, accepted)),
    }
}

async fn read_body(body: Body) -> Result<Bytes, ApiError> {
    axum::body::to_bytes(body, MAX_BODY_BYTES)
        .await
        .map_err(|_| ApiError::request_too_large())
}

/// The object in the body of a POST or PUT: JSON, or (built-in kinds only, as custom
/// resources have no protobuf encoding) protobuf as kubectl's typed clients send it. Other
/// media types, YAML included, get 415.
async fn read_object(parts: &Parts, body: Body, kind: ResourceKind) -> Result<Value, ApiError> {
    let media_type = content_type(parts);
    let bytes = read_body(body).await?;
    match media_type.as_str() {
        "" | JSON | "*/*" => serde_json::from_slice(&bytes).map_err(|error| {
            ApiError::bad_request(format!(
                "couldn't get version/kind; json parse error: {error}"
            ))
        }),
        PROTOBUF if !kind.is_custom_resource() => protobuf::decode_object(kind, &bytes),
        other => {
            let accepted: &[&str] = if kind.is_custom_resource() {
                &[JSON]
            } else {
                &[JSON, PROTOBUF]
            };
            Err(ApiError::unsupported_media_type(other, accepted))
        }
    }
}

/// `DeleteOptions.preconditions` from an optional DELETE body.
fn delete_preconditions(body: &[u8]) -> Result<Preconditions, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Preconditions::default());
    }
    let options: Value = serde_json::from_slice(body).map_err(|error| {
        ApiError::bad_request(format!("couldn't decode DeleteOptions: {error}"))
    })?;
    let precondition = |field: &str| {
        options
            .get("preconditions")
            .and_then(|preconditions| preconditions.get(field))
            .and_then(Value::as_str)
            .map(String::from)
    };
    Ok(Preconditions {
        uid: precondition("uid"),
        resource_version: precondition("resourceVersion"),
    })
}

fn response(status: u16, content_type: &'static str, body: Body) -> Response {
    let mut response = Response::new(body);
    *response.status_mut() =
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

fn json_response(status: u16, value: &Value) -> Response {
    response(status, "application/json", Body::from(value.to_string()))
}

fn text_response(text: &'static str) -> Response {
    response(200, "text/plain; charset=utf-8", Body::from(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_map_to_routes() {
        let object = |kind, namespace: &str, name: &str| {
            Route::Object(ObjectPath {
                kind,
                namespace: namespace.into(),
                name: name.into(),
                subresource: None,
                legacy_watch: false,
            })
        };
        assert_eq!(
            Route::parse("/api/v1/namespaces/a/secrets/b").unwrap(),
            object(ResourceKind::Secret, "a", "b")
        );
        assert_eq!(
            Route::parse("/api/v1/namespaces/a").unwrap(),
            object(ResourceKind::Namespace, "", "a")
        );
        assert_eq!(
            Route::parse("/api/v1/watch/secrets").unwrap(),
            Route::Collection(CollectionPath {
                kind: ResourceKind::Secret,
                namespace: None,
                legacy_watch: true,
            })
        );
        assert_eq!(Route::parse("/api/").unwrap(), Route::ApiVersions);
        assert_eq!(
            Route::parse("/apis/secrets.iomete.com/v1/namespaces/a/vaultconfigs/b").unwrap(),
            object(ResourceKind::VaultConfig, "a", "b")
        );
        assert_eq!(
            Route::parse("/apis/secrets.iomete.com/v1/namespaces/a/vaultconfigs/b/status").unwrap(),
            Route::Object(ObjectPath {
                kind: ResourceKind::VaultConfig,
                namespace: "a".into(),
                name: "b".into(),
                subresource: Some(Subresource::Status),
                legacy_watch: false,
            })
        );
        assert_eq!(
            Route::parse("/apis/secrets.iomete.com/v1/watch/vaultconfigs").unwrap(),
            Route::Collection(CollectionPath {
                kind: ResourceKind::VaultConfig,
                namespace: None,
                legacy_watch: true,
            })
        );
        assert_eq!(
            Route::parse("/apis/secrets.iomete.com").unwrap(),
            Route::ApiGroup {
                group: "secrets.iomete.com"
            }
        );
        for unknown in [
            "/api/v1/pods",
            "/apis/apps/v1",
            "/api/v1/namespaces/a/configmaps",
            "/openapi/v2",
            "/api/v1/secrets/a",
            "/api/v1/namespaces/a/status",
            "/api/v1/namespaces/a/secrets/b/status",
            "/apis/secrets.iomete.com/v2",
            "/apis/secrets.iomete.com/v1/vaultconfigs/a",
            "/apis/secrets.iomete.com/v1/namespaces/a",
            "/apis/secrets.iomete.com/v1/namespaces/a/secrets",
            "/apis/secrets.iomete.com/v1/watch/namespaces/a/vaultconfigs/b/status",
            "/apis/v1",
        ] {
            assert_eq!(Route::parse(unknown).unwrap_err().code, 404, "{unknown}");
        }
    }

    #[test]
    fn boolean_parameters_follow_go_parse_bool() {
        let query = QueryParams::parse(&"/x?watch=1&a=True&b=false&c=yes".parse().unwrap());
        assert!(query.flag("watch").unwrap());
        assert!(query.flag("a").unwrap());
        assert!(!query.flag("b").unwrap());
        assert!(!query.flag("missing").unwrap());
        assert_eq!(query.flag("c").unwrap_err().code, 400);
    }
}
