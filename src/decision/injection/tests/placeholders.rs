//! Legacy `${secrets.key}` placeholders, alone and beside env-secrets; the warning cap.

use super::*;

#[test]
fn legacy_placeholders_resolve_in_place_in_containers_and_init_containers() {
    let original = pod_json(
        &[],
        json!([{"name": "main", "env": [
            {"name": "URL", "value": "jdbc:postgresql://$(DB_HOST)/app?user=${secrets.db_user}&password=${secrets.db_password}#$$"},
            {"name": "PLAIN", "value": "$(HOME) ${HOME} $(secrets.x)"},
            {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        ]}]),
        json!([{"name": "prepare", "env": [{"name": "TOKEN", "value": "${secrets.token}${secrets.token}"}]}]),
    );
    let (plan, rendered, patched) = inject(
        &original,
        &finance(),
        &[
            (global("db_user"), "admin"),
            (global("db_password"), TRICKY),
            (global("token"), "t$"),
        ],
    );

    let mut expected = original.clone();
    let url = format!(
        "jdbc:postgresql://$(DB_HOST)/app?user=admin&password={}#$$",
        TRICKY.replace('$', "$$")
    );
    expected["spec"]["containers"][0]["env"][0]["value"] = json!(url);
    expected["spec"]["initContainers"][0]["env"][0]["value"] = json!("t$$t$$");
    assert_eq!(
        patched, expected,
        "only the two values change, no annotation"
    );

    let url = &patched["spec"]["containers"][0]["env"][0]["value"];
    assert_eq!(
        seen_by_container(url),
        format!("jdbc:postgresql://db.internal/app?user=admin&password={TRICKY}#$")
    );
    let token = &patched["spec"]["initContainers"][0]["env"][0]["value"];
    assert_eq!(seen_by_container(token), "t$t$");

    assert_eq!(
        rendered.warnings,
        vec![
            legacy_warning("main", "URL", "db_user"),
            legacy_warning("main", "URL", "db_password"),
            legacy_warning("prepare", "TOKEN", "token"),
            legacy_warning("prepare", "TOKEN", "token"),
        ]
    );
    assert_eq!(
        plan.needed_secrets(),
        vec![global("db_password"), global("db_user"), global("token")]
    );
    assert_eq!(plan.mark_injected, None);
}

#[test]
fn env_secret_wins_over_a_legacy_placeholder_on_the_same_var() {
    let annotation = env_secrets(&[("DB_PASSWORD", "finance", "db_password")]);
    let original = pod_json(
        &[(ENV, &annotation)],
        json!([{"name": "main", "env": [
            {"name": "DB_PASSWORD", "value": "${secrets.legacy_pw}"},
            {"name": "OTHER", "value": "${secrets.other}"},
        ]}]),
        // not targeted by default, so its placeholder still resolves the legacy way
        json!([{"name": "prepare", "env": [{"name": "DB_PASSWORD", "value": "${secrets.init_pw}"}]}]),
    );
    // no value for legacy_pw: it must not be needed
    let (plan, rendered, patched) = inject(
        &original,
        &finance(),
        &[
            (domain("finance", "db_password"), "v2"),
            (global("other"), "o"),
            (global("init_pw"), "i"),
        ],
    );
    assert_eq!(
        patched["spec"]["containers"][0]["env"],
        json!([{"name": "DB_PASSWORD", "value": "v2"}, {"name": "OTHER", "value": "o"}])
    );
    assert_eq!(
        patched["spec"]["initContainers"][0]["env"],
        json!([{"name": "DB_PASSWORD", "value": "i"}])
    );
    assert_eq!(
        plan.needed_secrets(),
        vec![
            domain("finance", "db_password"),
            global("init_pw"),
            global("other")
        ]
    );
    assert_eq!(
        rendered.warnings,
        vec![
            replaced_warning("main", "DB_PASSWORD"),
            legacy_warning("main", "OTHER", "other"),
            legacy_warning("prepare", "DB_PASSWORD", "init_pw"),
        ]
    );
}

#[test]
fn warnings_are_capped() {
    let value: String = (0..25).map(|i| format!("${{secrets.k{i}}}")).collect();
    let original = pod_json(
        &[],
        json!([{"name": "main", "env": [{"name": "MANY", "value": value}]}]),
        Value::Null,
    );
    let pairs: Vec<(SecretRef, &str)> = (0..25).map(|i| (global(&format!("k{i}")), "v")).collect();
    let (plan, rendered, patched) = inject(&original, &finance(), &pairs);
    assert_eq!(plan.warnings.len(), 25);
    assert_eq!(rendered.warnings.len(), 20);
    assert_eq!(rendered.warnings[0], legacy_warning("main", "MANY", "k0"));
    assert_eq!(rendered.warnings[19], "6 more warnings like the above");
    assert_eq!(
        patched["spec"]["containers"][0]["env"][0]["value"],
        json!("v".repeat(25))
    );
}
