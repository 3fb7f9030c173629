//! Every type that can hold a secret value or a private key prints neither: each is formatted
//! with `{:?}` around a canary, and the canary must not appear. (`admission::Answer` has no
//! `Debug` at all: its body holds the patch.)

use std::collections::{BTreeMap, HashMap};

use iomete_secrets_webhook::backends::vault::client::{Credentials, FieldValue, KvSecret};
use iomete_secrets_webhook::backends::{Fetched, FetchedValue};
use iomete_secrets_webhook::boot::certs;
use iomete_secrets_webhook::decision::injection::{
    ContainerList, ContainerPath, EnvChange, Injected, Plan, ValueMode, render,
};
use iomete_secrets_webhook::decision::reference::{KubernetesStore, SecretRef, Source};
use secrecy::{ExposeSecret, SecretString};

const CANARY: &str = "canary-7f3a-value-that-must-not-print";

fn canary() -> SecretString {
    SecretString::from(CANARY)
}

fn secret() -> SecretRef {
    SecretRef {
        source: Source::Kubernetes(KubernetesStore::Global),
        key: "password".to_owned(),
    }
}

fn assert_redacted(what: &str, printed: String) {
    assert!(
        !printed.contains(CANARY),
        "{what} printed its value: {printed}"
    );
}

#[test]
fn fetched_values_do_not_print_them() {
    let fetched = FetchedValue {
        value: canary(),
        warning: None,
        version: Some("v1".into()),
    };
    assert_redacted("FetchedValue", format!("{fetched:?}"));
    let all = Fetched {
        values: HashMap::from([(secret(), canary())]),
        warnings: Vec::new(),
        versions: Default::default(),
    };
    assert_redacted("Fetched", format!("{all:?}"));
}

#[test]
fn vault_credentials_and_fields_do_not_print_them() {
    assert_redacted(
        "Credentials::Token",
        format!("{:?}", Credentials::Token(canary())),
    );
    let approle = Credentials::AppRole {
        role_id: canary(),
        secret_id: canary(),
    };
    assert_redacted("Credentials::AppRole", format!("{approle:?}"));
    assert_redacted("FieldValue", format!("{:?}", FieldValue::Text(canary())));
    let read = KvSecret {
        fields: HashMap::from([("value".to_owned(), FieldValue::Text(canary()))]),
        version: Some(3),
    };
    assert_redacted("KvSecret", format!("{read:?}"));
}

#[test]
fn a_rendered_patch_does_not_print_its_values() {
    let path = ContainerPath {
        list: ContainerList::Containers,
        index: 0,
        name: "main".to_owned(),
    };
    let plan = Plan {
        changes: vec![(
            path,
            EnvChange::AppendVar {
                name: "PASSWORD".to_owned(),
                secret: secret(),
            },
        )],
        injected: vec![Injected {
            target: "container \"main\" env \"PASSWORD\"".to_owned(),
            secret: secret(),
        }],
        vault_grants: BTreeMap::new(),
        ..Plan::default()
    };
    let rendered = render(&plan, &|_| Some(canary()), ValueMode::Live).unwrap();
    // The canary is in the patch (so the check below can fail), but not in what Debug prints.
    assert!(String::from_utf8_lossy(&rendered.patch).contains(CANARY));
    assert_redacted("Rendered", format!("{rendered:?}"));
}

#[test]
fn certificate_bundles_do_not_print_their_private_keys() {
    let bundle = certs::generate(&["localhost".to_owned()]).unwrap();
    let printed = format!("{bundle:?}");
    for key in [&bundle.key_pem, &bundle.ca_key_pem] {
        let body = key.expose_secret().lines().nth(1).expect("a PEM body line");
        assert!(!printed.contains(body), "a private key printed: {printed}");
    }
    let ca_line = bundle.ca_pem.lines().nth(1).unwrap();
    assert!(
        printed.contains(ca_line),
        "the public parts still print: {printed}"
    );
}

#[test]
fn iomete_envs_values_and_child_environment_do_not_print_them() {
    use iomete_secrets_webhook::wrapper::answer::Values;
    use iomete_secrets_webhook::wrapper::environment::child_environment;
    let values = Values {
        env: vec![("DB_PASSWORD".to_owned(), canary())],
        spark_conf: vec![("spark.hadoop.fs.s3a.secret.key".to_owned(), canary())],
    };
    assert_redacted("wrapper::answer::Values", format!("{values:?}"));
    let child = child_environment(Vec::new(), &values).unwrap();
    assert_redacted("wrapper::environment::ChildEnv", format!("{child:?}"));
    assert!(
        child
            .vars()
            .any(|(_, value)| value.to_string_lossy() == CANARY)
    );
}
