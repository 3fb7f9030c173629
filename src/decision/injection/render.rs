//! Rendering: a plan and the fetched values in, the RFC 6902 patch out, written straight to JSON
//! bytes under [`MAX_PATCH_BYTES`].
//!
//! Each value is escaped for the kubelet once per secret, however many containers receive it,
//! and every operation is serialized from borrowed parts into one buffer; rendering stops at the
//! first operation that takes the patch past the cap, so the work done for a pod whose patch
//! could never be stored is bounded by the cap too.

use std::collections::{BTreeMap, HashMap};

use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;

use super::model::{EnvChange, InjectionError, MissingValue, Plan};
use super::{
    AUDIT_ANNOTATION_KEY, DRY_RUN_MARKER, MAX_LISTED_REFERENCES, MAX_PATCH_BYTES, MAX_WARNINGS,
    broker_wrap, env_secrets, placeholders, spark_conf,
};
use crate::decision::expansion::escape_for_kubelet;
use crate::decision::reference::{INJECTED_ANNOTATION, SecretRef, VERSIONS_ANNOTATION};

/// How values are written into the patch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueMode {
    /// The real value, escaped for the kubelet.
    Live,
    /// [`DRY_RUN_MARKER`] in place of every value.
    DryRun,
}

/// The patch and the reviewer-facing extras for a plan. Its `Debug` shows the patch's size
/// only: the patch holds live values.
pub struct Rendered {
    /// The JSON patch, as the bytes of a JSON array of operations.
    pub patch: Vec<u8>,
    pub warnings: Vec<String>,
    pub audit_annotations: BTreeMap<String, String>,
}

impl std::fmt::Debug for Rendered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rendered")
            .field(
                "patch",
                &format_args!("<{} bytes, redacted>", self.patch.len()),
            )
            .field("warnings", &self.warnings)
            .field("audit_annotations", &self.audit_annotations)
            .finish()
    }
}

/// Builds the patch from a plan and the fetched values.
///
/// Fails with [`InjectionError::SparkConf`] when a Spark property's value cannot travel through
/// `SPARK_SUBMIT_OPTS` (checked on the real values in a dry run too, so a dry run is refused
/// exactly when the real request would be), with [`InjectionError::PatchTooLarge`] past
/// [`MAX_PATCH_BYTES`], and with [`InjectionError::Internal`] when `values` does not cover the
/// plan.
pub fn render(
    plan: &Plan,
    values: &dyn Fn(&SecretRef) -> Option<SecretString>,
    mode: ValueMode,
) -> Result<Rendered, InjectionError> {
    render_versioned(plan, values, mode, &BTreeMap::new())
}

/// [`render`], also recording `versions` (reference → version identifier of the value read,
/// never derived from a value) in the [`VERSIONS_ANNOTATION`], inside the same patch cap. A
/// dry run records them too: they are not values.
pub fn render_versioned(
    plan: &Plan,
    values: &dyn Fn(&SecretRef) -> Option<SecretString>,
    mode: ValueMode,
    versions: &BTreeMap<SecretRef, String>,
) -> Result<Rendered, InjectionError> {
    let mut written = WrittenValues {
        values,
        mode,
        escaped: HashMap::new(),
    };
    let mut patch = PatchWriter::default();
    for (path, change) in &plan.changes {
        match change {
            EnvChange::CreateEnv(_)
            | EnvChange::ReplaceVar { .. }
            | EnvChange::AppendVar { .. } => {
                env_secrets::render(&mut patch, &mut written, path, change)?;
            }
            EnvChange::ReplaceValue { index, template } => {
                placeholders::render(&mut patch, &mut written, path, *index, template)?;
            }
            EnvChange::SparkSubmitOpts {
                placement,
                properties,
            } => {
                spark_conf::render(&mut patch, path, placement, properties, values, mode)?;
            }
        }
    }
    if let Some(broker) = &plan.broker {
        broker_wrap::render(&mut patch, broker)?;
    }
    let mut annotations: BTreeMap<&str, String> = BTreeMap::new();
    if let Some(digest) = &plan.mark_injected {
        annotations.insert(INJECTED_ANNOTATION, digest.clone());
    }
    // A broker-mode container reads its values at each start, so no version is fixed at
    // admission.
    if !plan.is_noop() && plan.broker.is_none() && !versions.is_empty() {
        let listed: BTreeMap<String, &str> = versions
            .iter()
            .map(|(secret, version)| (secret.to_string(), version.as_str()))
            .collect();
        let listed = serde_json::to_string(&listed).map_err(|_| InjectionError::PatchTooLarge)?;
        annotations.insert(VERSIONS_ANNOTATION, listed);
    }
    if plan.annotations_present {
        for (name, value) in &annotations {
            // RFC 6901: the `/` in the annotation's name is written `~1`.
            let pointer = format!(
                "/metadata/annotations/{}",
                name.replace('~', "~0").replace('/', "~1")
            );
            patch.add(&pointer, value)?;
        }
    } else if !annotations.is_empty() {
        patch.add("/metadata/annotations", &annotations)?;
    }
    Ok(Rendered {
        patch: patch.finish(),
        warnings: capped_warnings(&plan.warnings),
        audit_annotations: audit_annotations(plan),
    })
}

/// An env entry as the patch writes it.
#[derive(Serialize)]
pub(super) struct EnvVarOut<'a> {
    pub(super) name: &'a str,
    pub(super) value: &'a str,
}

/// One RFC 6902 operation, serialized from borrowed parts.
#[derive(Serialize)]
struct Operation<'a, V: Serialize + ?Sized> {
    op: &'static str,
    path: &'a str,
    value: &'a V,
}

/// The patch's bytes so far, against [`MAX_PATCH_BYTES`].
#[derive(Default)]
pub(super) struct PatchWriter {
    bytes: Vec<u8>,
}

impl PatchWriter {
    pub(super) fn add<V: Serialize + ?Sized>(
        &mut self,
        path: &str,
        value: &V,
    ) -> Result<(), InjectionError> {
        self.push("add", path, value)
    }

    pub(super) fn replace<V: Serialize + ?Sized>(
        &mut self,
        path: &str,
        value: &V,
    ) -> Result<(), InjectionError> {
        self.push("replace", path, value)
    }

    /// Appends one operation; fails once the patch passes the cap, so at most one operation
    /// (itself bounded by the env limit) is written beyond it.
    fn push<V: Serialize + ?Sized>(
        &mut self,
        op: &'static str,
        path: &str,
        value: &V,
    ) -> Result<(), InjectionError> {
        self.bytes
            .push(if self.bytes.is_empty() { b'[' } else { b',' });
        let operation = Operation { op, path, value };
        serde_json::to_writer(&mut self.bytes, &operation)
            .map_err(|_| InjectionError::PatchTooLarge)?;
        if self.bytes.len() > MAX_PATCH_BYTES {
            return Err(InjectionError::PatchTooLarge);
        }
        Ok(())
    }

    fn finish(mut self) -> Vec<u8> {
        if self.bytes.is_empty() {
            self.bytes.push(b'[');
        }
        self.bytes.push(b']');
        self.bytes
    }
}

/// The values as written into the patch, each escaped once however many containers get it.
pub(super) struct WrittenValues<'a> {
    values: &'a dyn Fn(&SecretRef) -> Option<SecretString>,
    mode: ValueMode,
    escaped: HashMap<SecretRef, SecretString>,
}

impl WrittenValues<'_> {
    pub(super) fn value(&mut self, secret: &SecretRef) -> Result<SecretString, MissingValue> {
        if let Some(written) = self.escaped.get(secret) {
            return Ok(written.clone());
        }
        let value = (self.values)(secret).ok_or_else(|| MissingValue(secret.clone()))?;
        let written = SecretString::from(match self.mode {
            ValueMode::Live => escape_for_kubelet(value.expose_secret()).into_owned(),
            ValueMode::DryRun => DRY_RUN_MARKER.to_owned(),
        });
        self.escaped.insert(secret.clone(), written.clone());
        Ok(written)
    }
}

fn capped_warnings(warnings: &[String]) -> Vec<String> {
    if warnings.len() <= MAX_WARNINGS {
        return warnings.to_vec();
    }
    let mut capped = warnings[..MAX_WARNINGS - 1].to_vec();
    capped.push(format!(
        "{} more warnings like the above",
        warnings.len() - (MAX_WARNINGS - 1)
    ));
    capped
}

fn audit_annotations(plan: &Plan) -> BTreeMap<String, String> {
    if plan.injected.is_empty() {
        return BTreeMap::new();
    }
    #[derive(Serialize)]
    struct Listed<'a> {
        id: &'a str,
        key: &'a str,
        source: String,
        target: &'a str,
    }
    #[derive(Serialize)]
    struct Omitted {
        omitted: usize,
    }
    let mut listed = String::from("[");
    for injected in plan.injected.iter().take(MAX_LISTED_REFERENCES) {
        if listed.len() > 1 {
            listed.push(',');
        }
        let entry = Listed {
            id: injected.secret.source.id(),
            key: &injected.secret.key,
            source: injected.secret.source.source_type().to_string(),
            target: &injected.target,
        };
        listed.push_str(&serde_json::to_string(&entry).unwrap_or_default());
    }
    let omitted = plan.injected.len().saturating_sub(MAX_LISTED_REFERENCES);
    if omitted > 0 {
        listed.push(',');
        listed.push_str(&serde_json::to_string(&Omitted { omitted }).unwrap_or_default());
    }
    listed.push(']');
    BTreeMap::from([(AUDIT_ANNOTATION_KEY.to_owned(), listed)])
}
