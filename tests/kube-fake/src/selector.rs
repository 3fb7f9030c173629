//! `labelSelector` and `fieldSelector` query parameters, parsed once per request and
//! matched against stored objects by lists and watches.
//!
//! Label selectors support the equality-based terms (`a=b`, `a==b`, `a!=b`) and existence
//! terms (`a`, `!a`), comma-separated; set-based terms (`a in (x,y)`, `a notin (x)`) are
//! rejected with 400 rather than silently mis-matched. Field selectors support `=`, `==`
//! and `!=` on `metadata.name` and `metadata.namespace` (plus `type` for secrets and
//! `status.phase` for namespaces, as the real server does); other fields are a 400.

use serde_json::Value;

use crate::object;
use crate::resource::ResourceKind;
use crate::status::ApiError;

#[derive(Debug, Clone, PartialEq)]
enum LabelRequirement {
    Equals(String, String),
    NotEquals(String, String),
    Exists(String),
    DoesNotExist(String),
}

impl LabelRequirement {
    fn matches(&self, object: &Value) -> bool {
        match self {
            Self::Equals(key, value) => object::label(object, key) == Some(value),
            // As on the real server, an object without the label matches `key!=value`.
            Self::NotEquals(key, value) => object::label(object, key) != Some(value),
            Self::Exists(key) => object::label(object, key).is_some(),
            Self::DoesNotExist(key) => object::label(object, key).is_none(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
struct FieldRequirement {
    field: String,
    value: String,
    negated: bool,
}

/// Everything that decides whether an object belongs in a list or watch: the namespace
/// from the URL (if any) and both selectors.
#[derive(Debug, Clone)]
pub(crate) struct ObjectFilter {
    kind: ResourceKind,
    namespace: Option<String>,
    labels: Vec<LabelRequirement>,
    fields: Vec<FieldRequirement>,
}

impl ObjectFilter {
    pub(crate) fn new(
        kind: ResourceKind,
        namespace: Option<String>,
        label_selector: Option<&str>,
        field_selector: Option<&str>,
    ) -> Result<Self, ApiError> {
        Ok(Self {
            kind,
            namespace,
            labels: parse_label_selector(label_selector.unwrap_or_default())?,
            fields: parse_field_selector(kind, field_selector.unwrap_or_default())?,
        })
    }

    pub(crate) fn kind(&self) -> ResourceKind {
        self.kind
    }

    pub(crate) fn matches(&self, object: &Value) -> bool {
        if let Some(namespace) = &self.namespace
            && object::namespace(object) != namespace
        {
            return false;
        }
        self.labels.iter().all(|term| term.matches(object))
            && self.fields.iter().all(|term| {
                let actual = self.kind.selectable_field(object, &term.field);
                (actual == Some(term.value.as_str())) != term.negated
            })
    }
}

fn terms(selector: &str) -> impl Iterator<Item = &str> {
    selector
        .split(',')
        .map(str::trim)
        .filter(|term| !term.is_empty())
}

fn parse_label_selector(selector: &str) -> Result<Vec<LabelRequirement>, ApiError> {
    if selector.contains('(') {
        return Err(ApiError::bad_request(format!(
            "unable to parse requirement: set-based label selectors (in, notin) are not supported by kube-fake: {selector:?}"
        )));
    }
    terms(selector)
        .map(|term| {
            let requirement = if let Some((key, value)) = term.split_once("!=") {
                LabelRequirement::NotEquals(key.trim().into(), value.trim().into())
            } else if let Some((key, value)) = term.split_once("==") {
                LabelRequirement::Equals(key.trim().into(), value.trim().into())
            } else if let Some((key, value)) = term.split_once('=') {
                LabelRequirement::Equals(key.trim().into(), value.trim().into())
            } else if let Some(key) = term.strip_prefix('!') {
                LabelRequirement::DoesNotExist(key.trim().into())
            } else {
                LabelRequirement::Exists(term.into())
            };
            let key = match &requirement {
                LabelRequirement::Equals(key, _)
                | LabelRequirement::NotEquals(key, _)
                | LabelRequirement::Exists(key)
                | LabelRequirement::DoesNotExist(key) => key,
            };
            if key.is_empty() || key.contains(char::is_whitespace) {
                return Err(ApiError::bad_request(format!(
                    "unable to parse requirement: {term:?} in label selector {selector:?}"
                )));
            }
            Ok(requirement)
        })
        .collect()
}

fn parse_field_selector(
    kind: ResourceKind,
    selector: &str,
) -> Result<Vec<FieldRequirement>, ApiError> {
    terms(selector)
        .map(|term| {
            let (field, value, negated) = if let Some((field, value)) = term.split_once("!=") {
                (field, value, true)
            } else if let Some((field, value)) = term.split_once("==") {
                (field, value, false)
            } else if let Some((field, value)) = term.split_once('=') {
                (field, value, false)
            } else {
                return Err(ApiError::bad_request(format!(
                    "invalid selector: '{selector}'; can't understand '{term}'"
                )));
            };
            let field = field.trim();
            // Probe with an empty object: `None` means the field is not selectable at all.
            if kind.selectable_field(&Value::Null, field).is_none() {
                return Err(ApiError::bad_request(format!(
                    "field label not supported: {field}"
                )));
            }
            Ok(FieldRequirement {
                field: field.into(),
                value: value.trim().into(),
                negated,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn secret(namespace: &str, name: &str, labels: Value) -> Value {
        json!({ "metadata": { "namespace": namespace, "name": name, "labels": labels }, "type": "Opaque" })
    }

    fn filter(labels: &str, fields: &str) -> ObjectFilter {
        ObjectFilter::new(ResourceKind::Secret, None, Some(labels), Some(fields)).unwrap()
    }

    #[test]
    fn label_terms_combine_with_and() {
        let object = secret("ns", "s", json!({ "a": "1", "b": "2" }));
        assert!(filter("a=1,b==2", "").matches(&object));
        assert!(filter("a", "").matches(&object));
        assert!(filter("!c", "").matches(&object));
        assert!(filter("c!=1", "").matches(&object));
        assert!(!filter("a=1,b=3", "").matches(&object));
        assert!(!filter("!a", "").matches(&object));
        assert!(!filter("a!=1", "").matches(&object));
        assert!(filter("", "").matches(&object));
    }

    #[test]
    fn field_terms_select_on_name_namespace_and_type() {
        let object = secret("ns", "s", json!({}));
        assert!(filter("", "metadata.name=s,metadata.namespace=ns").matches(&object));
        assert!(filter("", "metadata.name!=t").matches(&object));
        assert!(filter("", "type=Opaque").matches(&object));
        assert!(!filter("", "metadata.namespace==other").matches(&object));
    }

    #[test]
    fn namespace_from_the_url_restricts_matches() {
        let scoped =
            ObjectFilter::new(ResourceKind::Secret, Some("other".into()), None, None).unwrap();
        assert!(!scoped.matches(&secret("ns", "s", json!({}))));
    }

    #[test]
    fn unsupported_selectors_are_bad_requests() {
        for (labels, fields) in [
            ("a in (x,y)", ""),
            ("=x", ""),
            ("", "spec.foo=bar"),
            ("", "metadata.name"),
        ] {
            let error = ObjectFilter::new(ResourceKind::Secret, None, Some(labels), Some(fields))
                .unwrap_err();
            assert_eq!(error.code, 400, "{labels:?} {fields:?}");
        }
        let namespace_phase = ObjectFilter::new(
            ResourceKind::Namespace,
            None,
            None,
            Some("status.phase=Active"),
        );
        assert!(namespace_phase.is_ok());
        let secret_phase = ObjectFilter::new(
            ResourceKind::Secret,
            None,
            None,
            Some("status.phase=Active"),
        );
        assert!(secret_phase.is_err());
    }
}
