//! Where the Helm chart's test tools are: helm, promtool and the Prometheus Operator's CRDs,
//! built once by `scripts/ensure-helm-tools.sh` (its last line of output is the directory).
//!
//! `IOMETE_HELM_TOOLS_BIN`, else the cache directory the script fills. When they are missing a
//! test skips with a message saying how to build them, unless `CI` is set (to anything but
//! empty, `false` or `0`) or `IOMETE_HELM_TOOLS_BIN` names a directory: then it fails.

#![allow(dead_code)] // each test target uses its own subset

use std::io::Write as _;
use std::path::{Path, PathBuf};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The directory holding `helm`, `promtool` and `prometheus-operator-crds/`, or why not.
pub fn helm_tools() -> Result<PathBuf, String> {
    let explicit = std::env::var_os("IOMETE_HELM_TOOLS_BIN").map(PathBuf::from);
    let dir = explicit.clone().unwrap_or_else(default_dir);
    let missing: Vec<&str> = ["helm", "promtool", "prometheus-operator-crds"]
        .into_iter()
        .filter(|tool| !dir.join(tool).exists())
        .collect();
    if missing.is_empty() {
        return Ok(dir);
    }
    Err(format!(
        "{} missing in {}{}; build them once with `bash scripts/ensure-helm-tools.sh` \
         (about 9 minutes on 2 cores the first time, under a second afterwards)",
        missing.join(", "),
        dir.display(),
        if explicit.is_some() {
            " (IOMETE_HELM_TOOLS_BIN)"
        } else {
            ""
        },
    ))
}

/// `Some(dir)`, or `None` after printing why the test skips; panics instead under CI.
pub fn helm_tools_or_skip(test: &str) -> Option<PathBuf> {
    match helm_tools() {
        Ok(dir) => Some(dir),
        Err(why) if ci() || std::env::var_os("IOMETE_HELM_TOOLS_BIN").is_some() => panic!(
            "{test}: helm and promtool are required here (CI or IOMETE_HELM_TOOLS_BIN set) and not available: {why}"
        ),
        Err(why) => {
            // Straight to the process's stderr: the test harness would capture eprintln!.
            let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {why}");
            None
        }
    }
}

/// True under CI (`CI` set to anything but empty, `false` or `0`): missing tools fail tests.
pub fn ci() -> bool {
    std::env::var("CI").is_ok_and(|ci| !matches!(ci.as_str(), "" | "false" | "0"))
}

/// The bin directory of the pinned versions, named as `scripts/ensure-helm-tools.sh` names it.
fn default_dir() -> PathBuf {
    let read = |path: &str| {
        std::fs::read_to_string(Path::new(ROOT).join(path))
            .unwrap_or_else(|e| panic!("{path}: {e}"))
    };
    let module_version = |path: &str, module: &str| {
        read(path)
            .lines()
            .find_map(|line| {
                let mut words = line.split_whitespace();
                let first = words.next()?;
                let first = if first == "require" {
                    words.next()?
                } else {
                    first
                };
                (first == module).then(|| words.next().map(str::to_owned))?
            })
            .unwrap_or_else(|| panic!("{path} does not require {module}"))
    };
    let helm = module_version("tools/helm/go.mod", "helm.sh/helm/v4");
    let prometheus = module_version("tools/promtool/go.mod", "github.com/prometheus/prometheus");
    let operator = read("scripts/ensure-helm-tools.sh")
        .lines()
        .find_map(|line| line.strip_prefix("operator_version=").map(str::to_owned))
        .expect("scripts/ensure-helm-tools.sh sets operator_version");
    let cache = std::env::var_os("IOMETE_HELM_TOOLS_CACHE")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("XDG_CACHE_HOME")
                .map(|xdg| PathBuf::from(xdg).join("iomete-secrets-webhook/helm-tools"))
        })
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
                .join(".cache/iomete-secrets-webhook/helm-tools")
        });
    cache
        .join(format!(
            "helm-{helm}-prometheus-{prometheus}-operator-{operator}"
        ))
        .join("bin")
}
