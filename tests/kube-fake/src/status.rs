//! Failures as the real API server reports them: a `meta/v1 Status` object with an HTTP
//! code, a machine-readable `reason` and, where the real server gives them, `details`.
//! Every error path of the fake goes through [`ApiError`], so clients (kube-rs, kubectl)
//! see the same shapes they would see from a real cluster.

use serde_json::{Value, json};

use crate::resource::ResourceKind;

/// A failed request, rendered as a `Status` body with `code` as the HTTP status.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ApiError {
    pub(crate) code: u16,
    pub(crate) reason: &'static str,
    pub(crate) message: String,
    pub(crate) details: Option<Value>,
}

impl ApiError {
    fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            reason,
            message: message.into(),
            details: None,
        }
    }

    fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }

    /// `secrets "x" not found`, `vaultconfigs.secrets.iomete.com "x" not found`.
    pub(crate) fn not_found(kind: ResourceKind, name: &str) -> Self {
        Self::new(
            404,
            "NotFound",
            format!("{} \"{name}\" not found", kind.qualified_resource()),
        )
        .with_details(resource_details(kind, name))
    }

    /// The URL names no resource the fake serves.
    pub(crate) fn no_such_route() -> Self {
        Self::new(404, "NotFound", "the server could not find the requested resource")
            .with_details(json!({ "causes": [{ "reason": "UnexpectedServerResponse", "message": "404 page not found" }] }))
    }

    pub(crate) fn already_exists(kind: ResourceKind, name: &str) -> Self {
        Self::new(
            409,
            "AlreadyExists",
            format!("{} \"{name}\" already exists", kind.qualified_resource()),
        )
        .with_details(resource_details(kind, name))
    }

    /// The optimistic-concurrency failure of an update carrying a stale resourceVersion.
    pub(crate) fn conflict(kind: ResourceKind, name: &str, why: &str) -> Self {
        Self::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{name}\": {why}",
                kind.qualified_resource()
            ),
        )
        .with_details(resource_details(kind, name))
    }

    pub(crate) fn stale_resource_version(kind: ResourceKind, name: &str) -> Self {
        Self::conflict(
            kind,
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        )
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    /// A validation failure (HTTP 422), as `Kind "name" is invalid: field: detail` (the kind
    /// qualified with its group for custom resources).
    pub(crate) fn invalid(kind: ResourceKind, name: &str, field: &str, detail: &str) -> Self {
        let mut details = json!({
            "name": name,
            "kind": kind.kind(),
            "causes": [{ "reason": "FieldValueInvalid", "message": detail, "field": field }],
        });
        if !kind.group().is_empty() {
            details["group"] = json!(kind.group());
        }
        Self::new(
            422,
            "Invalid",
            format!(
                "{} \"{name}\" is invalid: {field}: {detail}",
                kind.qualified_kind()
            ),
        )
        .with_details(details)
    }

    /// A 422 without field details (e.g. a JSON patch whose `test` operation fails).
    pub(crate) fn unprocessable(message: impl Into<String>) -> Self {
        Self::new(422, "Invalid", message)
    }

    pub(crate) fn internal(message: impl Into<String>) -> Self {
        Self::new(500, "InternalError", message)
    }

    pub(crate) fn method_not_allowed() -> Self {
        Self::new(
            405,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
        )
    }

    /// A body in a media type the request does not take; `accepted` lists those it does.
    pub(crate) fn unsupported_media_type(content_type: &str, accepted: &[&str]) -> Self {
        Self::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format ({content_type}) - accepted media types include: {}",
                accepted.join(", ")
            ),
        )
    }

    pub(crate) fn request_too_large() -> Self {
        Self::new(
            413,
            "RequestEntityTooLarge",
            "the request body is too large",
        )
    }

    pub(crate) fn service_unavailable() -> Self {
        Self::new(
            503,
            "ServiceUnavailable",
            "the server is currently unable to handle the request",
        )
    }

    /// What a watch from before the compaction point receives (as an ERROR event).
    pub(crate) fn expired(requested: u64, oldest_available: u64) -> Self {
        Self::new(
            410,
            "Expired",
            format!("too old resource version: {requested} ({oldest_available})"),
        )
    }

    /// The `Status` object sent as the body of an error response (or an ERROR watch event).
    pub(crate) fn to_status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(details) = &self.details {
            status["details"] = details.clone();
        }
        status
    }
}

/// `details` naming an object as the real server does: `kind` holds the resource name
/// (`secrets`), and `group` is there for resources outside the core group.
fn resource_details(kind: ResourceKind, name: &str) -> Value {
    let mut details = json!({ "name": name, "kind": kind.plural() });
    if !kind.group().is_empty() {
        details["group"] = json!(kind.group());
    }
    details
}

/// The `Status` a successful DELETE returns (no object is returned, as for every kind the
/// fake serves).
pub(crate) fn deleted_status(kind: ResourceKind, name: &str, uid: &str) -> Value {
    let mut details = resource_details(kind, name);
    details["uid"] = json!(uid);
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": details,
    })
}
