//! The versions annotation: written beside the digest, in one patch under the cap, in dry runs
//! too (identifiers are not values), and a reinvocation stays a no-op.

use super::*;
use crate::decision::reference::VERSIONS_ANNOTATION;

fn versioned(
    original: &Value,
    versions: &BTreeMap<SecretRef, String>,
    mode: ValueMode,
) -> Result<(Plan, Value), InjectionError> {
    let plan = plan(&pod(original), &finance(), &V2_ON, &vaults())?;
    let values = values(&[
        (domain("finance", "db_password"), "v4lue"),
        (global("db_user"), "us3r"),
    ]);
    let rendered = render_versioned(
        &plan,
        &|secret| values.get(secret).cloned().map(SecretString::from),
        mode,
        versions,
    )?;
    let patched = apply(original, &rendered.patch);
    Ok((plan, patched))
}

fn original() -> Value {
    pod_json(
        &[(
            ENV,
            &env_secrets(&[("DB_PASSWORD", "finance", "db_password")]),
        )],
        json!([{"name": "main", "env": [{"name": "U", "value": "${secrets.db_user}"}]}]),
        Value::Null,
    )
}

#[rstest::rstest]
#[case::live(ValueMode::Live)]
#[case::dry_run(ValueMode::DryRun)]
fn versions_are_recorded_beside_the_digest(#[case] mode: ValueMode) {
    let versions = BTreeMap::from([
        (domain("finance", "db_password"), "uid-1/42".to_owned()),
        (global("db_user"), "uid-2/7".to_owned()),
    ]);
    let (_, patched) = versioned(&original(), &versions, mode).unwrap();
    let annotations = &patched["metadata"]["annotations"];
    assert_eq!(
        annotations[INJECTED_ANNOTATION],
        json!(digest_of(&original()))
    );
    let recorded: Value =
        serde_json::from_str(annotations[VERSIONS_ANNOTATION].as_str().unwrap()).unwrap();
    assert_eq!(
        recorded,
        json!({"KUBERNETES/finance/db_password": "uid-1/42", "KUBERNETES/global/db_user": "uid-2/7"})
    );
    // A reinvocation of the patched pod (annotation and all) plans nothing.
    let again = plan(&pod(&patched), &finance(), &V2_ON, &vaults()).unwrap();
    assert!(again.is_noop(), "{again:?}");
}

#[test]
fn without_versions_the_patch_is_as_before() {
    let (_, patched) = versioned(&original(), &BTreeMap::new(), ValueMode::Live).unwrap();
    assert!(patched["metadata"]["annotations"][VERSIONS_ANNOTATION].is_null());
}

#[test]
fn versions_count_against_the_patch_cap() {
    // One identifier large enough to take the patch past the cap on its own.
    let versions = BTreeMap::from([(
        domain("finance", "db_password"),
        "x".repeat(MAX_PATCH_BYTES),
    )]);
    let error = versioned(&original(), &versions, ValueMode::Live).unwrap_err();
    assert_eq!(error, InjectionError::PatchTooLarge);
}
