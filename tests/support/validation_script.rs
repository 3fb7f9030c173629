//! Running one of the repository's validation scripts from a test: kubectl on PATH or a skip
//! (a failure under CI), then the script with this build's binary, its output shown on failure
//! and, with `--nocapture`, on success.

use std::ffi::OsStr;
use std::path::Path;
use std::process::{Command, Stdio};

/// Whether the system kubectl runs. Without it the test skips with a note, unless `in_ci`, where
/// it fails: CI runs every tier.
pub fn kubectl_or_skip(in_ci: bool, what: &str) -> bool {
    let kubectl = Command::new("kubectl")
        .args(["version", "--client"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if kubectl.is_ok() {
        return true;
    }
    assert!(!in_ci, "kubectl is not on PATH under CI, where {what}");
    eprintln!("note: kubectl is not on PATH; skipping: {what}");
    false
}

/// Runs `bash scripts/<script>` from the repository root with `envs` and this build's binary as
/// `IOMETE_SECRETS_WEBHOOK_BIN`; fails with everything it printed unless it succeeds.
pub fn run(script: &str, envs: &[(&str, &OsStr)]) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let output = Command::new("bash")
        .arg(root.join("scripts").join(script))
        .current_dir(root)
        .envs(envs.iter().copied())
        .env(
            "IOMETE_SECRETS_WEBHOOK_BIN",
            env!("CARGO_BIN_EXE_iomete-secrets-webhook"),
        )
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|error| panic!("bash cannot run scripts/{script}: {error}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "scripts/{script} failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    // Shown with --nocapture: what was validated.
    println!("{stdout}{stderr}");
}
