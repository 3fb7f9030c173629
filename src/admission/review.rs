//! The AdmissionReview wire format (`admission.k8s.io/v1` and `v1beta1`): the request read once,
//! the answer written straight to bytes.
//!
//! The envelope is decoded with the object left as raw JSON, so the pod is parsed once, into
//! [`crate::decision::pod::Pod`], and only when the request is a pod CREATE; everything else in the body is
//! skipped without being copied. The answer is serialized from borrowed parts, its patch already
//! JSON bytes, in the version the request came in. The shapes follow Kubernetes'
//! `admission/v1` types: `uid`, `kind`, `resource`, `operation` and `userInfo` are required, as
//! in the API server's own decoding.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use kube::core::admission::Operation;
use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// The two versions the webhook answers in.
const VERSIONS: [&str; 2] = ["admission.k8s.io/v1", "admission.k8s.io/v1beta1"];

/// An AdmissionReview as received, borrowing from the body.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReviewIn<'a> {
    api_version: String,
    kind: String,
    #[serde(borrow)]
    request: Option<Request<'a>>,
}

/// The fields of an AdmissionRequest the webhook reads.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Request<'a> {
    pub uid: String,
    pub kind: Kind,
    #[allow(dead_code)]
    resource: IgnoredAny,
    #[serde(default)]
    pub sub_resource: Option<String>,
    #[serde(default)]
    pub namespace: Option<String>,
    pub operation: Operation,
    #[allow(dead_code)]
    user_info: IgnoredAny,
    #[serde(default, borrow)]
    pub object: Option<&'a RawValue>,
    #[serde(default)]
    pub dry_run: bool,
}

/// The group, version and kind of the object under review.
#[derive(Debug, Deserialize)]
pub struct Kind {
    pub group: String,
    pub version: String,
    pub kind: String,
}

impl Request<'_> {
    /// Whether this is the one request the webhook acts on: a core/v1 Pod CREATE.
    pub fn is_pod_create(&self) -> bool {
        self.kind.group.is_empty()
            && self.kind.version == "v1"
            && self.kind.kind == "Pod"
            && self.operation == Operation::Create
            && self.sub_resource.is_none()
    }
}

/// A readable AdmissionReview: its version (to answer in) and its request.
pub struct Received<'a> {
    pub api_version: &'static str,
    pub request: Request<'a>,
}

/// Reads the envelope; the error says why the body is not an AdmissionReview.
pub fn read(body: &[u8]) -> Result<Received<'_>, String> {
    // Checked whole first: the object is kept as raw text, whose strings are not read here.
    let body = std::str::from_utf8(body).map_err(|error| {
        format!(
            "not an AdmissionReview: the body is not UTF-8 (invalid byte at {})",
            error.valid_up_to()
        )
    })?;
    let review: ReviewIn<'_> = serde_json::from_str(body).map_err(|error| {
        format!(
            "not an AdmissionReview: {}",
            crate::admission::describe_json_error(&error)
        )
    })?;
    let api_version = VERSIONS
        .into_iter()
        .find(|version| *version == review.api_version)
        .filter(|_| review.kind == "AdmissionReview")
        .ok_or_else(|| {
            format!(
                "expected kind AdmissionReview in admission.k8s.io/v1 or v1beta1, got kind {:?} in {:?}",
                review.kind, review.api_version
            )
        })?;
    let request = review
        .request
        .ok_or_else(|| "the AdmissionReview has no request".to_owned())?;
    Ok(Received {
        api_version,
        request,
    })
}

/// What the answer says, before it is written.
pub struct Response<'a> {
    pub uid: &'a str,
    pub verdict: Verdict<'a>,
    pub warnings: &'a [String],
}

/// Allowed (with a patch, as JSON bytes, or without), or denied with a metav1 Status.
pub enum Verdict<'a> {
    Allowed {
        patch: Option<&'a [u8]>,
        audit_annotations: &'a BTreeMap<String, String>,
    },
    Denied {
        message: &'a str,
        reason: &'a str,
        code: u16,
    },
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ReviewOut<'a> {
    api_version: &'a str,
    kind: &'static str,
    response: ResponseOut<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ResponseOut<'a> {
    uid: &'a str,
    allowed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<StatusOut<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    patch: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    patch_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    audit_annotations: Option<&'a BTreeMap<String, String>>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    warnings: &'a [String],
}

#[derive(Serialize)]
struct StatusOut<'a> {
    status: &'static str,
    message: &'a str,
    reason: &'a str,
    code: u16,
}

/// The AdmissionReview answer in `api_version`, as bytes. The patch travels base64-encoded,
/// as the API server's own encoding of `[]byte` does.
pub fn write(api_version: &str, response: &Response<'_>) -> Vec<u8> {
    let (allowed, status, patch, audit_annotations) = match &response.verdict {
        Verdict::Allowed {
            patch,
            audit_annotations,
        } => (
            true,
            None,
            patch.map(|patch| BASE64.encode(patch)),
            (!audit_annotations.is_empty()).then_some(*audit_annotations),
        ),
        Verdict::Denied {
            message,
            reason,
            code,
        } => {
            let status = StatusOut {
                status: "Failure",
                message,
                reason,
                code: *code,
            };
            (false, Some(status), None, None)
        }
    };
    let review = ReviewOut {
        api_version,
        kind: "AdmissionReview",
        response: ResponseOut {
            uid: response.uid,
            allowed,
            status,
            patch_type: patch.as_ref().map(|_| "JSONPatch"),
            patch,
            audit_annotations,
            warnings: response.warnings,
        },
    };
    // Sized for the usual answer up front: the patch's base64 plus the envelope.
    let size = review.response.patch.as_ref().map_or(0, String::len) + 512;
    let mut bytes = Vec::with_capacity(size);
    // Serializing strings and numbers into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut bytes, &review);
    bytes
}

/// The version and uid of a body that is not a readable AdmissionReview, when they can be found,
/// so even an invalid answer names the request.
pub fn salvage(body: &[u8]) -> (&'static str, String) {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Loose {
        #[serde(default)]
        api_version: Option<String>,
        #[serde(default)]
        request: Option<LooseRequest>,
    }
    #[derive(Deserialize)]
    struct LooseRequest {
        #[serde(default)]
        uid: Option<String>,
    }
    let loose: Option<Loose> = serde_json::from_slice(body).ok();
    let version = loose
        .as_ref()
        .and_then(|loose| loose.api_version.as_deref())
        .and_then(|asked| VERSIONS.into_iter().find(|version| *version == asked))
        .unwrap_or(VERSIONS[0]);
    let uid = loose
        .and_then(|loose| loose.request)
        .and_then(|request| request.uid)
        .unwrap_or_default();
    (version, uid)
}
