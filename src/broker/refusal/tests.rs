use rstest::rstest;

use super::*;
use crate::backends::{StoreError, VaultFetchError};
use crate::decision::reference::REFERENCE_LIST;
use crate::decision::scope::{RequiredScope, ScopeError};

fn io() -> kube::Error {
    kube::Error::ReadEvents(std::io::Error::other("connection refused"))
}

fn pod() -> String {
    "spark-driver".to_owned()
}

fn container() -> String {
    "main".to_owned()
}

#[rstest]
#[case::malformed(BrokerError::Malformed("unknown field `pod`".into()), 400, "malformed")]
#[case::no_token(BrokerError::NoToken, 401, "unauthenticated")]
#[case::rejected(IdentityError::Unauthenticated(Some("token expired".into())).into(), 401, "unauthenticated")]
#[case::rejected_silently(IdentityError::Unauthenticated(None).into(), 401, "unauthenticated")]
#[case::audience(IdentityError::WrongAudience.into(), 401, "unauthenticated")]
#[case::not_account(IdentityError::NotServiceAccount("alice".into()).into(), 401, "unauthenticated")]
#[case::not_pod_bound(IdentityError::NotPodBound.into(), 401, "unauthenticated")]
#[case::review_failed(IdentityError::Review(io()).into(), 503, "unavailable")]
#[case::pod_read_failed(IdentityError::PodRead { pod: pod(), source: io() }.into(), 503, "unavailable")]
#[case::pod_gone(IdentityError::PodGone { pod: pod() }.into(), 409, "pod_gone")]
#[case::pod_replaced(IdentityError::PodReplaced { pod: pod() }.into(), 409, "pod_gone")]
#[case::pod_deleting(IdentityError::PodDeleting { pod: pod() }.into(), 409, "pod_gone")]
#[case::no_container(IdentityError::NoSuchContainer { pod: pod(), container: container() }.into(), 404, "no_container")]
#[case::not_broker(IdentityError::NotBrokerMode { pod: pod(), container: container() }.into(), 403, "not_broker_mode")]
#[case::rate_limited(BrokerError::RateLimited { pod: pod() }, 429, "rate_limited")]
#[case::bad_list(BrokerError::ReferenceList { container: container(), source: ReferenceError::Malformed { annotation: REFERENCE_LIST, reason: "expected value".into() } }, 403, "not_broker_mode")]
#[case::v2_disabled(BrokerError::SecretsV2Disabled, 403, "not_broker_mode")]
#[case::unknown_namespace(BrokerError::UnknownNamespace("jobs".into()), 503, "unavailable")]
#[case::out_of_scope(BrokerError::Scope(InjectionError::OutOfScope(ScopeError { reference: "env-secrets entry \"DB\" (KUBERNETES/admin/db)".into(), required: RequiredScope::Admin, namespace: "jobs".into() })), 403, "out_of_scope")]
#[case::no_vault_config(BrokerError::Scope(InjectionError::VaultConfigNotFound { reference: "entry \"DB\"".into(), config: "vault-x".into() }), 404, "not_found")]
#[case::vault_configs_stale(BrokerError::Scope(InjectionError::VaultConfigsNotFresh { reference: "entry \"DB\"".into() }), 503, "unavailable")]
#[case::denied_name(BrokerError::DeniedName { container: container(), name: "LD_PRELOAD".into() }, 403, "denied_name")]
#[case::no_store(BrokerError::Backend(StoreError::StoreNotFound { store: "iomete-secret-store-x".into(), namespace: "iomete-system".into() }.into()), 404, "not_found")]
#[case::no_key(BrokerError::Backend(StoreError::KeyNotFound { store: "iomete-secret-store-x".into(), key: "db".into() }.into()), 404, "not_found")]
#[case::not_text(BrokerError::Backend(StoreError::NotText { store: "iomete-secret-store-x".into(), key: "db".into() }.into()), 400, "not_text")]
#[case::caches_stale(BrokerError::Backend(BackendError::Unavailable("its caches are syncing".into())), 503, "unavailable")]
#[case::vault_down(BrokerError::Backend(BackendError::Vault { config: "vault-x".into(), source: VaultFetchError::ConfigChanged }), 503, "unavailable")]
#[case::vault_misconfigured(BrokerError::Backend(BackendError::Vault { config: "vault-x".into(), source: VaultFetchError::Misconfigured("no role".into()) }), 500, "vault_misconfigured")]
#[case::wrong_source(
    BrokerError::Backend(BackendError::WrongSource("VAULT")),
    500,
    "internal"
)]
#[case::timeout(BrokerError::Timeout(Duration::from_secs(8)), 503, "timeout")]
#[case::overloaded(BrokerError::Overloaded(256), 503, "overloaded")]
fn every_error_has_one_status_and_advice(
    #[case] error: BrokerError,
    #[case] status: u16,
    #[case] label: &str,
) {
    let kind = error.kind();
    assert_eq!((kind.status, kind.label), (status, label), "{error}");
    let refusal = error.refusal();
    assert_eq!(refusal.retriable, matches!(status, 429 | 503), "{error}");
    // What went wrong, then advice (or the admission's own, already in its message).
    assert!(
        refusal.error.starts_with(&error.to_string())
            && refusal.error.len() > error.to_string().len()
            || matches!(error, BrokerError::Scope(_) | BrokerError::Backend(_)),
        "{}",
        refusal.error
    );
    // The refusal is read by iomete-env with unknown fields refused.
    let wire = serde_json::to_string(&refusal).unwrap();
    assert_eq!(serde_json::from_str::<Refusal>(&wire).unwrap(), refusal);
}

#[test]
fn messages_name_the_pod_and_container_and_nothing_secret() {
    let error = BrokerError::from(IdentityError::NoSuchContainer {
        pod: pod(),
        container: container(),
    });
    let message = error.message();
    assert!(
        message.contains("\"spark-driver\"") && message.contains("\"main\""),
        "{message}"
    );
    let backend = BrokerError::Backend(BackendError::Vault {
        config: "vault-x".into(),
        source: VaultFetchError::Misconfigured("no role".into()),
    });
    // The advice of an admission denial of the same failure.
    assert!(
        backend
            .message()
            .contains("kubectl get vaultconfig vault-x"),
        "{}",
        backend.message()
    );
}
