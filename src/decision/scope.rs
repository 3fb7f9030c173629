//! Scope: which secrets a namespace may read, decided from the namespace alone.
//!
//! The caller classifies the AdmissionRequest's namespace (its domain label and whether it is an
//! admin namespace) from the webhook's own watch of Namespaces; nothing in the pod object takes
//! part. A domain store is readable from that domain's namespaces, the global store from any
//! domain or admin namespace, the admin store from admin namespaces only.

use std::fmt;

use crate::decision::reference::KubernetesStore;

/// What the webhook knows about the namespace a pod is created in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamespaceScope {
    pub name: String,
    /// The value of the domain label, when the namespace carries a valid one.
    pub domain: Option<String>,
    /// Whether the namespace is one of the configured admin namespaces.
    pub admin: bool,
}

impl fmt::Display for NamespaceScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.domain, self.admin) {
            (Some(domain), true) => {
                write!(f, "namespace {:?} (admin, domain {domain:?})", self.name)
            }
            (Some(domain), false) => write!(f, "namespace {:?} (domain {domain:?})", self.name),
            (None, true) => write!(f, "namespace {:?} (admin)", self.name),
            (None, false) => write!(
                f,
                "namespace {:?} (no domain label and not an admin namespace)",
                self.name
            ),
        }
    }
}

/// The scope a source demands of the namespace that references it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequiredScope {
    Domain(String),
    AnyDomainOrAdmin,
    Admin,
}

impl fmt::Display for RequiredScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RequiredScope::Domain(domain) => {
                write!(f, "a namespace of domain {domain:?}")
            }
            RequiredScope::AnyDomainOrAdmin => {
                f.write_str("a domain namespace or an admin namespace")
            }
            RequiredScope::Admin => f.write_str("an admin namespace"),
        }
    }
}

/// A reference reaches outside the namespace's scope.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reference} is readable only from {required}, and this pod is in {namespace}")]
pub struct ScopeError {
    /// How the pod referenced the secret, e.g. `env-secrets entry "DB_PASSWORD"`.
    pub reference: String,
    pub required: RequiredScope,
    pub namespace: String,
}

/// What a pod was authorized against for one Vault configuration: the configuration's uid and
/// owning domain at the time of the decision. The fetch checks the configuration against it
/// again, so one whose owner changed in between serves nothing to a pod authorized under the
/// old owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VaultGrant {
    pub domain: String,
    pub uid: String,
}

/// What the webhook knows of the domain that owns a Vault configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VaultOwner {
    Owned(VaultGrant),
    /// The configurations are fresh and this one is not among them.
    NoSuchConfig,
    /// The configurations are not fresh (not listed yet, or their watch is reconnecting), so
    /// nothing can be decided.
    NotFresh,
}

/// Who owns each Vault configuration. The Vault backend answers from its watch cache; tests
/// answer from a map. A configuration is readable only from its domain's namespaces.
pub trait VaultOwners {
    fn owner(&self, config: &str) -> VaultOwner;
}

/// A loaded directory: configuration name → owning domain (each configuration's uid is its
/// name, for tests and benchmarks).
impl VaultOwners for std::collections::BTreeMap<String, String> {
    fn owner(&self, config: &str) -> VaultOwner {
        self.get(config).map_or(VaultOwner::NoSuchConfig, |domain| {
            VaultOwner::Owned(VaultGrant {
                domain: domain.clone(),
                uid: config.to_owned(),
            })
        })
    }
}

/// The scope a Kubernetes store requires. (A Vault configuration requires its owner's domain.)
pub fn required_scope(store: &KubernetesStore) -> RequiredScope {
    match store {
        KubernetesStore::Domain(domain) => RequiredScope::Domain(domain.clone()),
        KubernetesStore::Global => RequiredScope::AnyDomainOrAdmin,
        KubernetesStore::Admin => RequiredScope::Admin,
    }
}

/// Whether a namespace satisfies a required scope.
pub fn satisfies(namespace: &NamespaceScope, required: &RequiredScope) -> bool {
    match required {
        RequiredScope::Domain(domain) => namespace.domain.as_deref() == Some(domain.as_str()),
        RequiredScope::AnyDomainOrAdmin => namespace.domain.is_some() || namespace.admin,
        RequiredScope::Admin => namespace.admin,
    }
}

/// Authorizes one reference whose source requires `required`; `describe` says how the pod
/// referenced it (only called on denial).
pub fn authorize(
    namespace: &NamespaceScope,
    required: RequiredScope,
    describe: impl FnOnce() -> String,
) -> Result<(), ScopeError> {
    if satisfies(namespace, &required) {
        Ok(())
    } else {
        Err(ScopeError {
            reference: describe(),
            required,
            namespace: namespace.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    fn ns(domain: Option<&str>, admin: bool) -> NamespaceScope {
        NamespaceScope {
            name: "ns".into(),
            domain: domain.map(str::to_owned),
            admin,
        }
    }

    fn store(id: &str) -> RequiredScope {
        required_scope(&match id {
            "global" => KubernetesStore::Global,
            "admin" => KubernetesStore::Admin,
            domain => KubernetesStore::Domain(domain.into()),
        })
    }

    /// The full matrix: every namespace kind × every store kind.
    #[rstest]
    // a namespace of domain finance
    #[case(Some("finance"), false, "finance", true)]
    #[case(Some("finance"), false, "marketing", false)]
    #[case(Some("finance"), false, "global", true)]
    #[case(Some("finance"), false, "admin", false)]
    // an admin namespace with no domain
    #[case(None, true, "finance", false)]
    #[case(None, true, "global", true)]
    #[case(None, true, "admin", true)]
    // an admin namespace that is also labelled with a domain
    #[case(Some("finance"), true, "finance", true)]
    #[case(Some("finance"), true, "marketing", false)]
    #[case(Some("finance"), true, "global", true)]
    #[case(Some("finance"), true, "admin", true)]
    // a namespace with no domain that is not admin gets nothing
    #[case(None, false, "finance", false)]
    #[case(None, false, "global", false)]
    #[case(None, false, "admin", false)]
    fn scope_matrix(
        #[case] domain: Option<&str>,
        #[case] admin: bool,
        #[case] store_id: &str,
        #[case] allowed: bool,
    ) {
        let result = authorize(&ns(domain, admin), store(store_id), || "ref".into());
        assert_eq!(result.is_ok(), allowed, "{result:?}");
    }

    #[test]
    fn denial_names_reference_required_scope_and_namespace() {
        let error = authorize(&ns(Some("marketing"), false), store("finance"), || {
            "env-secrets entry \"DB_PASSWORD\"".into()
        })
        .unwrap_err();
        assert_eq!(
            error.to_string(),
            "env-secrets entry \"DB_PASSWORD\" is readable only from a namespace of domain \"finance\", \
             and this pod is in namespace \"ns\" (domain \"marketing\")"
        );
    }
}
