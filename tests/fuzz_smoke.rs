//! The fuzz smoke as part of `cargo test --workspace`: runs `scripts/fuzz-smoke.sh`, which
//! builds the cargo-fuzz targets of `fuzz/` (its own workspace, own target dir) and runs each for
//! a fixed time, and fails on any finding. The script's table of executions, corpus and findings
//! per target goes straight to the test's output.
//!
//! `IOMETE_FUZZ_SECONDS` sets the time per target (default 30: four targets, two minutes, on top
//! of the build, which is incremental after the first run). `IOMETE_SKIP_FUZZ=1` skips it with a
//! note on a developer's machine; under CI (`CI` set) the skip is refused, since CI is where the
//! smoke must run.

use std::path::Path;
use std::process::{Command, Stdio};

const DEFAULT_SECONDS: u32 = 30;

#[test]
fn every_fuzz_target_runs_its_time_without_findings() {
    let in_ci = std::env::var_os("CI").is_some_and(|value| !value.is_empty());
    if std::env::var("IOMETE_SKIP_FUZZ").as_deref() == Ok("1") {
        assert!(
            !in_ci,
            "IOMETE_SKIP_FUZZ=1 is set under CI, where the fuzz smoke must run"
        );
        println!("IOMETE_SKIP_FUZZ=1: skipping the fuzz smoke (scripts/fuzz-smoke.sh)");
        return;
    }
    let seconds: u32 = match std::env::var("IOMETE_FUZZ_SECONDS") {
        Ok(text) => text
            .parse()
            .ok()
            .filter(|seconds| *seconds > 0)
            .unwrap_or_else(|| panic!("IOMETE_FUZZ_SECONDS={text:?} is not a positive number")),
        Err(_) => DEFAULT_SECONDS,
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let script = root.join("scripts/fuzz-smoke.sh");
    // Inherited output: the build's progress and the per-target table reach the CI log even
    // though the test harness captures the test's own prints.
    let status = Command::new("bash")
        .arg(&script)
        .arg(seconds.to_string())
        .current_dir(root)
        .stdin(Stdio::null())
        .status()
        .unwrap_or_else(|error| panic!("cannot run {}: {error}", script.display()));
    assert!(
        status.success(),
        "{} {seconds} failed ({status}): a fuzz target found an input that breaks an invariant, \
         or the fuzz build failed; its output above names the target and the input file",
        script.display()
    );
}
