//! Helpers shared by the router, Spark and e2e tests: fixtures, AdmissionReviews built on a real
//! API-server capture, applying an answer's patch as the API server does, and namespaces.

#![allow(dead_code)] // each test target uses its own subset

use base64::Engine as _;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::{Value, json};

/// A JSON fixture from `tests/fixtures/`.
pub fn fixture(path: &str) -> Value {
    let full = format!("{}/tests/fixtures/{path}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{full}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{full}: {e}"))
}

/// A v1 AdmissionReview built on the real GKE capture, carrying `pod` in `namespace`.
pub fn review_of(pod: Value, namespace: &str) -> Value {
    let mut review = fixture("real/admissionreview-pod-create-kube-rs-gke.json");
    review["request"]["namespace"] = json!(namespace);
    review["request"]["name"] = pod["metadata"]["name"].clone();
    review["request"]["object"] = pod;
    review
}

/// The reviewed object with the answer's (base64) JSON patch applied, as the API server does.
pub fn patched_object(review: &Value, answer: &Value) -> Value {
    let patch = answer["response"]["patch"].as_str().expect("a patch");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(patch)
        .unwrap();
    let patch: json_patch::Patch = serde_json::from_slice(&bytes).unwrap();
    let mut object = review["request"]["object"].clone();
    json_patch::patch(&mut object, &patch).unwrap();
    object
}

/// A Namespace as the watch delivers it, with the domain label when given.
pub fn namespace(name: &str, domain: Option<&str>) -> Namespace {
    let labels = domain.map(|d| [("iomete.com/domain".to_owned(), d.to_owned())].into());
    Namespace {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels,
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    }
}
