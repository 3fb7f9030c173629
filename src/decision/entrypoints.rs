//! The entrypoint of an image, for wrapping a container that sets no `command` in broker mode.
//!
//! Setting a container's `command` replaces its image's ENTRYPOINT, and also drops the image's
//! CMD when the container sets no `args`. To wrap a container without asking a registry, the
//! webhook must therefore know both from a table: [`EntrypointTable::shipped`] holds the Spark
//! and Jupyter docker-stacks images, and the operator's file (`--broker-entrypoints`, read by
//! [`EntrypointTable::with_file`]) adds to and overrides it. Images are matched by repository,
//! tag and digest ignored, Docker Hub names normalized (`spark` is `docker.io/library/spark`);
//! a key ending in `/*` matches every repository under it.

use std::collections::BTreeMap;

use serde::Deserialize;

/// An image's ENTRYPOINT and CMD, as the container runtime would run them.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entrypoint {
    pub entrypoint: Vec<String>,
    /// The image's CMD, used when the container sets no `args`; absent when the image has none.
    #[serde(default)]
    pub cmd: Option<Vec<String>>,
}

/// The operator's entrypoint file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum EntrypointError {
    #[error("not a JSON object of repository → {{\"entrypoint\": [...], \"cmd\": [...]}}: {0}")]
    Malformed(#[source] serde_json::Error),
    #[error(
        "repository {0:?} is not an image repository (e.g. registry.example.com/team/spark, or a prefix ending in /*)"
    )]
    Repository(String),
    #[error("repository {0:?} has an empty entrypoint")]
    EmptyEntrypoint(String),
}

/// Image repository (normalized) → entrypoint; keys ending in `/*` are prefixes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntrypointTable {
    entries: BTreeMap<String, Entrypoint>,
}

impl EntrypointTable {
    /// The entries shipped with the webhook: the Apache Spark images (`/opt/entrypoint.sh`, no
    /// CMD) and the Jupyter docker-stacks images (`tini -g -- start.sh`, CMD
    /// `start-notebook.sh`; JupyterHub's singleuser image runs `jupyterhub-singleuser`).
    pub fn shipped() -> Self {
        let spark = || Entrypoint {
            entrypoint: vec!["/opt/entrypoint.sh".into()],
            cmd: None,
        };
        let docker_stacks = |cmd: &str| Entrypoint {
            entrypoint: ["tini", "-g", "--", "start.sh"].map(String::from).to_vec(),
            cmd: Some(vec![cmd.to_owned()]),
        };
        let entries = BTreeMap::from([
            ("docker.io/apache/spark".to_owned(), spark()),
            ("docker.io/apache/spark-py".to_owned(), spark()),
            ("docker.io/library/spark".to_owned(), spark()),
            (
                "quay.io/jupyter/*".to_owned(),
                docker_stacks("start-notebook.sh"),
            ),
            (
                "docker.io/jupyter/*".to_owned(),
                docker_stacks("start-notebook.sh"),
            ),
            (
                "quay.io/jupyterhub/singleuser".to_owned(),
                docker_stacks("jupyterhub-singleuser"),
            ),
            (
                "docker.io/jupyterhub/singleuser".to_owned(),
                docker_stacks("jupyterhub-singleuser"),
            ),
        ]);
        EntrypointTable { entries }
    }

    /// The shipped table with the operator's entries (the `--broker-entrypoints` file's text)
    /// added; an operator's entry replaces a shipped one for the same key.
    pub fn with_file(mut self, text: &str) -> Result<Self, EntrypointError> {
        let read: BTreeMap<String, Entrypoint> =
            serde_json::from_str(text).map_err(EntrypointError::Malformed)?;
        for (key, entry) in read {
            let normalized = match key.strip_suffix("/*") {
                Some(prefix) => normalize_repository(prefix).map(|prefix| format!("{prefix}/*")),
                None => normalize_repository(&key),
            }
            .ok_or_else(|| EntrypointError::Repository(key.clone()))?;
            if entry.entrypoint.is_empty() {
                return Err(EntrypointError::EmptyEntrypoint(key));
            }
            self.entries.insert(normalized, entry);
        }
        Ok(self)
    }

    /// The entrypoint of `image`: its repository's entry, else the longest matching prefix.
    pub fn lookup(&self, image: &str) -> Option<&Entrypoint> {
        let repository = normalize_repository(strip_tag_and_digest(image))?;
        if let Some(entry) = self.entries.get(&repository) {
            return Some(entry);
        }
        self.entries
            .iter()
            .filter_map(|(key, entry)| {
                let prefix = key.strip_suffix('*')?;
                repository
                    .starts_with(prefix)
                    .then_some((prefix.len(), entry))
            })
            .max_by_key(|(length, _)| *length)
            .map(|(_, entry)| entry)
    }
}

/// `registry/path/name:tag@sha256:…` → `registry/path/name`.
fn strip_tag_and_digest(image: &str) -> &str {
    let without_digest = image.split_once('@').map_or(image, |(name, _)| name);
    let last_slash = without_digest.rfind('/').map_or(0, |index| index + 1);
    match without_digest[last_slash..].find(':') {
        Some(colon) => &without_digest[..last_slash + colon],
        None => without_digest,
    }
}

/// A repository as the container runtime resolves it: Docker Hub names get `docker.io/` (and
/// `library/` for official images). `None` for what cannot be a repository.
fn normalize_repository(repository: &str) -> Option<String> {
    let valid = !repository.is_empty()
        && repository.split('/').all(|part| !part.is_empty())
        && repository.chars().all(|c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '-' | '_' | '/' | ':')
        });
    if !valid {
        return None;
    }
    let (first, rest) = repository.split_once('/').unwrap_or(("", repository));
    let has_registry =
        !first.is_empty() && (first.contains('.') || first.contains(':') || first == "localhost");
    Some(match (has_registry, first) {
        (true, "index.docker.io" | "registry-1.docker.io") => format!("docker.io/{rest}"),
        (true, _) => repository.to_owned(),
        (false, "") => format!("docker.io/library/{repository}"),
        (false, _) => format!("docker.io/{repository}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case("apache/spark:3.5.8", Some("/opt/entrypoint.sh"))]
    #[case("docker.io/apache/spark@sha256:abc", Some("/opt/entrypoint.sh"))]
    #[case("spark:3.5.1-scala2.12-java17-ubuntu", Some("/opt/entrypoint.sh"))]
    #[case("quay.io/jupyter/pyspark-notebook:2024-10-07", Some("tini"))]
    #[case("jupyter/singleuser:latest", Some("tini"))]
    #[case("registry.example.com/apache/spark:3.5.8", None)]
    #[case("busybox", None)]
    #[case("", None)]
    fn shipped_entries_match_by_repository(#[case] image: &str, #[case] first: Option<&str>) {
        let table = EntrypointTable::shipped();
        let found = table
            .lookup(image)
            .map(|entry| entry.entrypoint[0].as_str());
        assert_eq!(found, first, "{image}");
    }

    #[test]
    fn jupyterhub_singleuser_keeps_its_own_cmd() {
        let table = EntrypointTable::shipped();
        let entry = table.lookup("quay.io/jupyterhub/singleuser:5").unwrap();
        assert_eq!(entry.cmd, Some(vec!["jupyterhub-singleuser".to_owned()]));
    }

    #[test]
    fn the_operators_file_adds_and_overrides() {
        let table = EntrypointTable::shipped()
            .with_file(
                r#"{"registry.example.com:5000/iomete/*": {"entrypoint": ["/bin/run"]},
                    "apache/spark": {"entrypoint": ["/custom"], "cmd": ["serve"]}}"#,
            )
            .unwrap();
        let ours = table
            .lookup("registry.example.com:5000/iomete/spark:1")
            .unwrap();
        assert_eq!(ours.entrypoint, ["/bin/run"]);
        let spark = table.lookup("apache/spark:3.5.8").unwrap();
        assert_eq!(spark.entrypoint, ["/custom"]);
        assert_eq!(spark.cmd, Some(vec!["serve".to_owned()]));
    }

    #[rstest]
    #[case("[]", "not a JSON object")]
    #[case(
        r#"{"Apache/Spark": {"entrypoint": ["/x"]}}"#,
        "not an image repository"
    )]
    #[case(r#"{"spark": {"entrypoint": []}}"#, "empty entrypoint")]
    #[case(
        r#"{"spark": {"entrypoint": ["/x"], "user": "root"}}"#,
        "unknown field"
    )]
    fn a_bad_file_is_named(#[case] text: &str, #[case] expected: &str) {
        let error = EntrypointTable::shipped().with_file(text).unwrap_err();
        let message = format!(
            "{error} {}",
            std::error::Error::source(&error)
                .map(ToString::to_string)
                .unwrap_or_default()
        );
        assert!(message.contains(expected), "{message}");
    }
}
