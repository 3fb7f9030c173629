//! The threat model cites a test for each claim: every `file::test` it (and the robustness
//! notes) names must exist, so a renamed or deleted test cannot leave a claim unproven in
//! silence.

use std::path::Path;

const DOCUMENTS: [&str; 6] = [
    "SECURITY.md",
    "docs/robustness.md",
    "docs/robustness-e2e.md",
    "docs/admin-tools.md",
    "docs/broker-mode.md",
    "docs/iomete-env.md",
];

/// Every `` `path.rs::name` `` and `` `path.rs` `` cited in `text`.
fn citations(text: &str) -> Vec<(String, Option<String>)> {
    text.split('`')
        .skip(1)
        .step_by(2)
        .filter_map(|quoted| {
            let (path, name) = match quoted.split_once("::") {
                Some((path, name)) => (path, Some(name.to_owned())),
                None => (quoted, None),
            };
            let cited = path.ends_with(".rs")
                && ["src/", "tests/", "e2e/", "fuzz/", "benches/"]
                    .iter()
                    .any(|root| path.starts_with(root));
            cited.then(|| (path.to_owned(), name))
        })
        .collect()
}

#[test]
fn every_test_the_threat_model_cites_exists() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut missing = Vec::new();
    let mut checked = 0;
    for document in DOCUMENTS {
        let text = std::fs::read_to_string(root.join(document)).unwrap();
        for (path, name) in citations(&text) {
            checked += 1;
            let Ok(source) = std::fs::read_to_string(root.join(&path)) else {
                missing.push(format!("{document}: {path} does not exist"));
                continue;
            };
            if let Some(name) = name
                && !source.contains(&format!("fn {name}("))
                && !source.contains(&format!("fn {name}<"))
            {
                missing.push(format!("{document}: {path} has no fn {name}"));
            }
        }
    }
    assert!(checked > 50, "only {checked} citations found");
    assert!(missing.is_empty(), "{}", missing.join("\n"));
}
