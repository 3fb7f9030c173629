//! Manifests → pod templates, pure: text in, the pods the workloads in it would create out.
//!
//! `check` reads what people deploy: multi-document YAML, JSON (one object, a stream of them,
//! or an array), `kubectl get -o yaml|json` output (a `List`), with Pods and every workload that
//! creates pods from a template (Deployment, StatefulSet, DaemonSet, Job, CronJob, ReplicaSet,
//! ReplicationController, PodTemplate) and the kubeflow spark-operator's SparkApplication and
//! ScheduledSparkApplication, whose driver and executor are described by their own fields
//! (annotations, labels, env, sidecars, init containers, template) rather than a pod template.
//! A document that cannot be read is an error naming the file, the document and the line;
//! errors never quote the input (a manifest from `kubectl get pod -o yaml` holds injected values).

use std::fmt;

use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::admission::describe_json_error;
use crate::decision::pod::Pod;

/// Why a manifest could not be read; names the file, the document and the line.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("{file}: document {document} (line {line}): {problem}")]
    Malformed {
        file: String,
        document: usize,
        line: usize,
        problem: String,
    },
    #[error("cannot read {file}")]
    Read {
        file: String,
        #[source]
        source: std::io::Error,
    },
}

/// Where a pod template was found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Origin {
    pub file: String,
    /// 1-based, counting the documents that hold something.
    pub document: usize,
    /// The document's first line.
    pub line: usize,
    pub kind: String,
    pub name: String,
    /// Where the template is in the object: `pod`, `spec.template`, `spec.driver`, ...
    pub path: String,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} document {} (line {}): {}/{} {}",
            self.file, self.document, self.line, self.kind, self.name, self.path
        )
    }
}

/// A pod a manifest would create, as the decision reads it.
#[derive(Debug, Clone)]
pub struct Template {
    pub origin: Origin,
    /// The object's `metadata.namespace`, when it names one.
    pub namespace: Option<String>,
    pub pod: Pod,
}

/// Every pod template in `text`, read from `file` (a name for messages).
pub fn templates(file: &str, text: &str) -> Result<Vec<Template>, ManifestError> {
    let mut found = Vec::new();
    for document in documents(file, text)? {
        let malformed = |problem: String| ManifestError::Malformed {
            file: file.to_owned(),
            document: document.index,
            line: document.line,
            problem,
        };
        let objects = match document.value {
            Value::Array(items) => items,
            Value::Null => continue,
            object => vec![object],
        };
        for object in objects {
            collect(&object, &mut |kind, name, path, namespace, template| {
                let pod: Pod = serde_json::from_value(template).map_err(|error| {
                    malformed(format!(
                        "{kind}/{name} {path} is not a valid pod template: {}",
                        describe_json_error(&error)
                    ))
                })?;
                found.push(Template {
                    origin: Origin {
                        file: file.to_owned(),
                        document: document.index,
                        line: document.line,
                        kind: kind.to_owned(),
                        name: name.to_owned(),
                        path: path.to_owned(),
                    },
                    namespace,
                    pod,
                });
                Ok(())
            })?;
        }
    }
    Ok(found)
}

/// One document of a file.
struct Document {
    index: usize,
    line: usize,
    value: Value,
}

fn documents(file: &str, text: &str) -> Result<Vec<Document>, ManifestError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if text.trim_start().starts_with(['{', '[']) {
        return json_documents(file, text);
    }
    let mut documents = Vec::new();
    let mut chunk = String::new();
    let mut chunk_line = 1;
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    for (number, line) in lines.iter().enumerate() {
        let bare = line.trim_end();
        let separator = bare == "---" || bare.starts_with("--- ") || bare == "...";
        if separator {
            yaml_document(file, &chunk, chunk_line, &mut documents)?;
            chunk.clear();
            chunk_line = number + 2;
        } else {
            chunk.push_str(line);
        }
    }
    yaml_document(file, &chunk, chunk_line, &mut documents)?;
    Ok(documents)
}

fn yaml_document(
    file: &str,
    chunk: &str,
    first_line: usize,
    documents: &mut Vec<Document>,
) -> Result<(), ManifestError> {
    let holds_something = chunk.lines().any(|line| {
        let line = line.trim();
        !line.is_empty() && !line.starts_with('#') && !line.starts_with('%')
    });
    if !holds_something {
        return Ok(());
    }
    let index = documents.len() + 1;
    // Directives (`%YAML`) belong before a `---`; drop them with the rest of the preamble.
    let value: Value = serde_saphyr::from_str(chunk).map_err(|error| {
        let error = error.without_snippet();
        let line = error.location().map_or(first_line, |at| {
            first_line + at.line().saturating_sub(1) as usize
        });
        ManifestError::Malformed {
            file: file.to_owned(),
            document: index,
            line,
            problem: format!("not valid YAML: {}", without_quotes(&error.to_string())),
        }
    })?;
    documents.push(Document {
        index,
        line: first_line,
        value,
    });
    Ok(())
}

fn json_documents(file: &str, text: &str) -> Result<Vec<Document>, ManifestError> {
    let mut documents = Vec::new();
    let mut stream = serde_json::Deserializer::from_str(text).into_iter::<Value>();
    loop {
        let offset = stream.byte_offset();
        let skipped = text[offset..].len() - text[offset..].trim_start().len();
        let line = text[..offset + skipped].matches('\n').count() + 1;
        match stream.next() {
            None => break,
            Some(Ok(value)) => documents.push(Document {
                index: documents.len() + 1,
                line,
                value,
            }),
            Some(Err(error)) => {
                return Err(ManifestError::Malformed {
                    file: file.to_owned(),
                    document: documents.len() + 1,
                    line: error.line(),
                    problem: format!("not valid JSON: {}", describe_json_error(&error)),
                });
            }
        }
    }
    Ok(documents)
}

/// A parser message with anything it quotes from the input elided.
fn without_quotes(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut inside: Option<char> = None;
    for c in message.chars() {
        match inside {
            Some(closing) if c == closing => {
                inside = None;
                out.push('…');
                out.push(c);
            }
            Some(_) => {}
            None => {
                out.push(c);
                if matches!(c, '"' | '`' | '\'') {
                    inside = Some(c);
                }
            }
        }
    }
    out
}

type Found<'a> =
    dyn FnMut(&str, &str, &str, Option<String>, Value) -> Result<(), ManifestError> + 'a;

/// Calls `found(kind, name, path, namespace, pod)` for each pod template in `object`.
fn collect(object: &Value, found: &mut Found<'_>) -> Result<(), ManifestError> {
    let kind = object["kind"].as_str().unwrap_or_default();
    if let Some(items) = object["items"].as_array()
        && (kind == "List" || kind.ends_with("List"))
    {
        for item in items {
            collect(item, found)?;
        }
        return Ok(());
    }
    let metadata = &object["metadata"];
    let name = match (metadata["name"].as_str(), metadata["generateName"].as_str()) {
        (Some(name), _) => name.to_owned(),
        (None, Some(prefix)) => format!("{prefix}*"),
        (None, None) => "(unnamed)".to_owned(),
    };
    let namespace = metadata["namespace"].as_str().map(str::to_owned);
    let spec = &object["spec"];
    let mut emit = |path: &str, template: &Value| {
        found(kind, &name, path, namespace.clone(), pod_of(template))
    };
    match kind {
        "Pod" => emit("pod", object),
        "Deployment"
        | "StatefulSet"
        | "DaemonSet"
        | "Job"
        | "ReplicaSet"
        | "ReplicationController" => emit("spec.template", &spec["template"]),
        "PodTemplate" => emit("template", &object["template"]),
        "CronJob" => emit(
            "spec.jobTemplate.spec.template",
            &spec["jobTemplate"]["spec"]["template"],
        ),
        "SparkApplication" => spark(spec, "spec", &mut emit),
        "ScheduledSparkApplication" => spark(&spec["template"], "spec.template", &mut emit),
        _ => Ok(()),
    }
}

/// The metadata and spec of a pod template (the rest is not the decision's).
fn pod_of(template: &Value) -> Value {
    let mut pod = Map::new();
    for field in ["metadata", "spec"] {
        if !template[field].is_null() {
            pod.insert(field.to_owned(), template[field].clone());
        }
    }
    Value::Object(pod)
}

/// The driver and executor pods the spark-operator creates from a SparkApplication spec: its
/// `annotations` and `labels` on the pod (with `spark-role`), the main container
/// (`spark-kubernetes-driver` / `-executor`) with its `env`, its `sidecars` and
/// `initContainers`, merged over its pod `template` when it has one.
fn spark(
    spec: &Value,
    at: &str,
    emit: &mut dyn FnMut(&str, &Value) -> Result<(), ManifestError>,
) -> Result<(), ManifestError> {
    for role in ["driver", "executor"] {
        let part = &spec[role];
        if !part.is_object() {
            continue;
        }
        let template = &part["template"];
        let mut annotations = object_or_empty(&template["metadata"]["annotations"]);
        annotations.extend(object_or_empty(&part["annotations"]));
        let mut labels = object_or_empty(&template["metadata"]["labels"]);
        labels.extend(object_or_empty(&part["labels"]));
        labels.insert("spark-role".into(), Value::String(role.into()));
        let main = format!("spark-kubernetes-{role}");
        let mut containers = vec![json!({"name": main, "env": part["env"]})];
        for list in [&template["spec"]["containers"], &part["sidecars"]] {
            for container in list.as_array().into_iter().flatten() {
                if container["name"].as_str() != Some(main.as_str()) {
                    containers.push(container.clone());
                }
            }
        }
        let mut init: Vec<Value> = Vec::new();
        for list in [&template["spec"]["initContainers"], &part["initContainers"]] {
            init.extend(list.as_array().into_iter().flatten().cloned());
        }
        let pod = json!({
            "metadata": {"annotations": annotations, "labels": labels},
            "spec": {"containers": containers, "initContainers": init},
        });
        emit(&format!("{at}.{role}"), &pod)?;
    }
    Ok(())
}

fn object_or_empty(value: &Value) -> Map<String, Value> {
    value.as_object().cloned().unwrap_or_default()
}

#[cfg(test)]
mod tests;
