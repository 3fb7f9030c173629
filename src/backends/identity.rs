//! Who calls the broker: the pod a bearer token is bound to, as the API server says, and that
//! pod as it is now.
//!
//! [`IdentityBackend::caller`] sends the token to a TokenReview with the broker's audience and
//! accepts only an authenticated service account token for that audience that is bound to a
//! pod (the `authentication.kubernetes.io/pod-name` and `pod-uid` extra fields the API server
//! adds for a pod-bound token). Successful reviews are cached briefly (see [`ReviewCache`]).
//! [`IdentityBackend::pod`] reads that pod on every request with a GET in the token's
//! namespace, and [`pod::reference_list`] checks it. A watch cache of every pod would cost
//! memory proportional to the cluster for a read made once per container start; a reflector
//! restricted by a label the admission adds could replace the GET later.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec, TokenReviewStatus};
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::PostParams;
use tokio::sync::Semaphore;

use crate::decision::delivery::BROKER_AUDIENCE;

pub mod pod;
pub mod token;

pub use token::BearerToken;

/// The extra field of a pod-bound token's user that names its pod.
pub const POD_NAME_EXTRA: &str = "authentication.kubernetes.io/pod-name";
/// The extra field of a pod-bound token's user that holds its pod's uid.
pub const POD_UID_EXTRA: &str = "authentication.kubernetes.io/pod-uid";
/// Most calls to the API server (TokenReviews and pod reads) in flight at once. kube's client
/// speaks HTTP/1.1, one connection per call in flight: without a bound, a thousand containers
/// starting at once opened over a thousand sockets (docs/benchmarks.md, "Broker mode"). Calls
/// beyond it wait their turn, within the broker's timeout.
pub const MAX_API_CALLS_IN_FLIGHT: usize = 32;
/// Most reviews cached at once; past it, expired ones are dropped and, if none are, the new
/// review is simply not cached (the next request reviews its token again).
const MAX_CACHED_REVIEWS: usize = 16_384;

/// Why a caller or its pod was not accepted. Messages name pods, containers and service
/// accounts, never a token or a value, and say what happened; the advice is added where the
/// error becomes an answer (`broker::refusal`).
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("the token was not accepted by the API server{}", reason_suffix(.0))]
    Unauthenticated(Option<String>),
    #[error("the token is not valid for the audience {BROKER_AUDIENCE:?}")]
    WrongAudience,
    #[error("the token does not belong to a service account (user {0:?})")]
    NotServiceAccount(String),
    #[error("the token is not bound to a pod")]
    NotPodBound,
    #[error("the TokenReview failed: {0}")]
    Review(#[source] kube::Error),
    #[error("pod {pod:?} could not be read: {source}")]
    PodRead {
        pod: String,
        #[source]
        source: kube::Error,
    },
    #[error("pod {pod:?} no longer exists")]
    PodGone { pod: String },
    #[error("pod {pod:?} was replaced by another pod of the same name")]
    PodReplaced { pod: String },
    #[error("pod {pod:?} is being deleted")]
    PodDeleting { pod: String },
    #[error("pod {pod:?} has no container {container:?}")]
    NoSuchContainer { pod: String, container: String },
    #[error(
        "container {container:?} of pod {pod:?} is not in broker mode (no literal IOMETE_ENV_REFERENCES)"
    )]
    NotBrokerMode { pod: String, container: String },
}

fn reason_suffix(reason: &Option<String>) -> String {
    reason
        .as_deref()
        .map(|reason| format!(" ({reason})"))
        .unwrap_or_default()
}

/// The pod a token is bound to, as its TokenReview said. Holds no token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub namespace: String,
    pub service_account: String,
    pub pod: String,
    pub pod_uid: String,
}

impl Caller {
    /// The caller a TokenReview's status describes, if it is one the broker serves.
    pub fn from_review(status: &TokenReviewStatus) -> Result<Caller, IdentityError> {
        if status.authenticated != Some(true) {
            return Err(IdentityError::Unauthenticated(status.error.clone()));
        }
        // An API server that ignores audiences answers with none: never assume ours.
        if !status
            .audiences
            .iter()
            .flatten()
            .any(|a| a == BROKER_AUDIENCE)
        {
            return Err(IdentityError::WrongAudience);
        }
        let user = status.user.as_ref();
        let username = user.and_then(|user| user.username.as_deref());
        let (namespace, service_account) = username
            .and_then(|name| name.strip_prefix("system:serviceaccount:"))
            .and_then(|rest| rest.split_once(':'))
            .filter(|(namespace, account)| !namespace.is_empty() && !account.is_empty())
            .ok_or_else(|| IdentityError::NotServiceAccount(username.unwrap_or("").to_owned()))?;
        let extra = |key: &str| {
            let values = user?.extra.as_ref()?.get(key)?;
            match values.as_slice() {
                [one] if !one.is_empty() => Some(one.clone()),
                _ => None,
            }
        };
        let (Some(pod), Some(pod_uid)) = (extra(POD_NAME_EXTRA), extra(POD_UID_EXTRA)) else {
            return Err(IdentityError::NotPodBound);
        };
        Ok(Caller {
            namespace: namespace.to_owned(),
            service_account: service_account.to_owned(),
            pod,
            pod_uid,
        })
    }
}

/// Successful TokenReviews, keyed by the SHA-256 of the token (never the token), each kept at
/// most until shortly before its token expires and never longer than a minute
/// ([`token::cache_lifetime`]). Caching is safe because the API server already validated the
/// token and said whose it is; a cached answer never outlives the token; and what may change
/// during its life (the pod deleted or replaced) is checked on every request anyway, since the
/// pod is read every time. Failed reviews are not cached, so a refused token costs a review
/// per request, which the per-pod rate limit cannot bound (there is no pod): the broker's
/// in-flight bound does.
#[derive(Default)]
pub struct ReviewCache {
    entries: Mutex<HashMap<[u8; 32], (Caller, Instant)>>,
}

impl ReviewCache {
    pub fn get(&self, key: &[u8; 32], now: Instant) -> Option<Caller> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let (caller, until) = entries.get(key)?;
        (now < *until).then(|| caller.clone())
    }

    pub fn insert(&self, key: [u8; 32], caller: Caller, now: Instant, lifetime: Duration) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= MAX_CACHED_REVIEWS {
            entries.retain(|_, (_, until)| now < *until);
        }
        if entries.len() < MAX_CACHED_REVIEWS {
            entries.insert(key, (caller, now + lifetime));
        }
    }
}

/// Reviews tokens and reads pods through the webhook's Kubernetes client.
pub struct IdentityBackend {
    client: kube::Client,
    cache: ReviewCache,
    api_calls: Semaphore,
}

impl IdentityBackend {
    pub fn new(client: kube::Client) -> Self {
        IdentityBackend {
            client,
            cache: ReviewCache::default(),
            api_calls: Semaphore::new(MAX_API_CALLS_IN_FLIGHT),
        }
    }

    /// Whose `token` is, from the cache or a TokenReview with the broker's audience.
    pub async fn caller(&self, token: &BearerToken) -> Result<Caller, IdentityError> {
        let key = token.digest();
        if let Some(caller) = self.cache.get(&key, Instant::now()) {
            return Ok(caller);
        }
        let review = TokenReview {
            spec: TokenReviewSpec {
                audiences: Some(vec![BROKER_AUDIENCE.to_owned()]),
                token: token.expose().to_owned(),
            },
            ..TokenReview::default()
        };
        let reviewed = {
            let _turn = self.api_calls.acquire().await;
            Api::<TokenReview>::all(self.client.clone())
                .create(&PostParams::default(), &review)
                .await
                .map_err(IdentityError::Review)?
        };
        let caller = Caller::from_review(&reviewed.status.unwrap_or_default())?;
        let now_unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_secs());
        if let Some(lifetime) = token::cache_lifetime(token.expiry(), now_unix) {
            self.cache
                .insert(key, caller.clone(), Instant::now(), lifetime);
        }
        Ok(caller)
    }

    /// The caller's pod as the API server holds it now, read in the token's namespace.
    pub async fn pod(&self, caller: &Caller) -> Result<Pod, IdentityError> {
        let _turn = self.api_calls.acquire().await;
        Api::<Pod>::namespaced(self.client.clone(), &caller.namespace)
            .get_opt(&caller.pod)
            .await
            .map_err(|source| IdentityError::PodRead {
                pod: caller.pod.clone(),
                source,
            })?
            .ok_or_else(|| IdentityError::PodGone {
                pod: caller.pod.clone(),
            })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use axum::http;
    use rstest::rstest;
    use serde_json::json;

    fn status(patch: serde_json::Value) -> TokenReviewStatus {
        let mut status = json!({
            "authenticated": true,
            "audiences": [BROKER_AUDIENCE],
            "user": {
                "username": "system:serviceaccount:jobs:runner",
                "extra": {POD_NAME_EXTRA: ["driver"], POD_UID_EXTRA: ["uid-1"]},
            },
        });
        json_patch::merge(&mut status, &patch);
        serde_json::from_value(status).unwrap()
    }

    #[rstest]
    #[case::pod_bound(json!({}), None)]
    #[case::not_authenticated(json!({"authenticated": false, "error": "token expired"}), Some("not accepted by the API server (token expired)"))]
    #[case::authenticated_missing(json!({"authenticated": null}), Some("not accepted"))]
    #[case::other_audience(json!({"audiences": ["https://kubernetes.default.svc"]}), Some("audience"))]
    #[case::no_audiences(json!({"audiences": null}), Some("audience"))]
    #[case::a_user(json!({"user": {"username": "alice"}}), Some("service account"))]
    #[case::empty_namespace(json!({"user": {"username": "system:serviceaccount::x"}}), Some("service account"))]
    #[case::not_pod_bound(json!({"user": {"extra": null}}), Some("not bound to a pod"))]
    #[case::secret_bound(json!({"user": {"extra": {POD_NAME_EXTRA: null, POD_UID_EXTRA: null, "authentication.kubernetes.io/credential-id": ["x"]}}}), Some("not bound to a pod"))]
    #[case::no_uid(json!({"user": {"extra": {POD_UID_EXTRA: null}}}), Some("not bound to a pod"))]
    #[case::two_pods(json!({"user": {"extra": {POD_NAME_EXTRA: ["a", "b"]}}}), Some("not bound to a pod"))]
    fn accepts_only_pod_bound_service_account_tokens_for_the_broker(
        #[case] patch: serde_json::Value,
        #[case] refused: Option<&str>,
    ) {
        match (Caller::from_review(&status(patch)), refused) {
            (Ok(caller), None) => assert_eq!(
                caller,
                Caller {
                    namespace: "jobs".into(),
                    service_account: "runner".into(),
                    pod: "driver".into(),
                    pod_uid: "uid-1".into(),
                }
            ),
            (Err(error), Some(expected)) => {
                assert!(error.to_string().contains(expected), "{error}")
            }
            (got, expected) => panic!("{got:?}, expected refusal {expected:?}"),
        }
    }

    /// A client whose API server answers every TokenReview after a pause, counting the calls
    /// in flight at once.
    fn counting_client(peak: Arc<AtomicUsize>) -> kube::Client {
        let in_flight = Arc::new(AtomicUsize::new(0));
        let service = tower::service_fn(move |_: http::Request<kube::client::Body>| {
            let (in_flight, peak) = (in_flight.clone(), peak.clone());
            async move {
                let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(5)).await;
                in_flight.fetch_sub(1, Ordering::SeqCst);
                let body = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
                    "spec": {}, "status": {"authenticated": false, "error": "test"}});
                Ok::<_, std::convert::Infallible>(http::Response::new(kube::client::Body::from(
                    body.to_string().into_bytes(),
                )))
            }
        });
        kube::Client::new(service, "default")
    }

    #[tokio::test]
    async fn calls_to_the_api_server_in_flight_are_bounded() {
        let peak = Arc::new(AtomicUsize::new(0));
        let identity = IdentityBackend::new(counting_client(peak.clone()));
        let tokens: Vec<BearerToken> = (0..MAX_API_CALLS_IN_FLIGHT * 4)
            .map(|i| BearerToken::from_authorization(&format!("Bearer token-{i}")).unwrap())
            .collect();
        let answers =
            futures::future::join_all(tokens.iter().map(|token| identity.caller(token))).await;
        assert!(
            answers
                .iter()
                .all(|answer| matches!(answer, Err(IdentityError::Unauthenticated(_))))
        );
        let peak = peak.load(Ordering::SeqCst);
        assert!(
            (2..=MAX_API_CALLS_IN_FLIGHT).contains(&peak),
            "{peak} calls in flight at once"
        );
    }

    #[test]
    fn cached_reviews_end_and_the_cache_stays_bounded() {
        let cache = ReviewCache::default();
        let caller = Caller::from_review(&status(json!({}))).unwrap();
        let now = Instant::now();
        cache.insert([1; 32], caller.clone(), now, Duration::from_secs(10));
        assert_eq!(cache.get(&[1; 32], now), Some(caller.clone()));
        assert_eq!(cache.get(&[1; 32], now + Duration::from_secs(10)), None);
        assert_eq!(cache.get(&[2; 32], now), None);
        for i in 0..MAX_CACHED_REVIEWS + 10 {
            let mut key = [0; 32];
            key[..8].copy_from_slice(&(i as u64).to_le_bytes());
            cache.insert(key, caller.clone(), now, Duration::from_secs(1));
        }
        assert!(cache.entries.lock().unwrap().len() <= MAX_CACHED_REVIEWS);
        // Once they have expired, room is made for new reviews.
        let later = now + Duration::from_secs(2);
        cache.insert([9; 32], caller.clone(), later, Duration::from_secs(1));
        assert_eq!(cache.get(&[9; 32], later), Some(caller));
    }
}
