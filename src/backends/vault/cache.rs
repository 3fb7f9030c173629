//! The Vault value cache: one Vault read per secret per TTL, however many pods ask at once.
//!
//! Entries are whole KV v2 secrets keyed by (configuration, its epoch, Vault namespace, path):
//! several fields of one secret cost one read, and a changed configuration (new epoch) never sees
//! values read under the old one. Concurrent misses for one key share a single read (moka's
//! `try_get_with` runs one initializer per key and hands its result to every waiter). A missing
//! secret is cached too, for a short time, so a typo in a burst costs one read; any other error is
//! shared by the waiters of that read but not cached. With a stale window configured, the last
//! good read of a key is kept that long and served when Vault cannot answer.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use moka::Expiry;
use moka::future::Cache;

use super::client::{KvSecret, VaultError};

/// Upper bound on cached secrets (each holds one KV v2 secret's fields).
const MAX_ENTRIES: u64 = 50_000;
/// A missing secret is remembered at most this long, so that creating it takes effect quickly.
const MAX_NEGATIVE_TTL: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CacheKey {
    pub config: String,
    pub epoch: u64,
    pub vault_namespace: Option<String>,
    pub path: String,
}

/// What a lookup found and how.
pub struct Lookup {
    /// The fields and the KV v2 version they were read at (the version is recorded in the pod,
    /// so the one recorded is always the one whose value was served).
    pub secret: Arc<KvSecret>,
    pub source: LookupSource,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LookupSource {
    /// Served from the cache.
    Hit,
    /// This caller's read filled the cache.
    Miss,
    /// Another caller's concurrent read answered this one.
    Coalesced,
    /// Vault could not answer; a value read this long ago was served.
    Stale(Duration),
    /// Caching is disabled: read directly.
    Uncached,
}

impl LookupSource {
    pub fn label(self) -> &'static str {
        match self {
            LookupSource::Hit => "hit",
            LookupSource::Miss => "miss",
            LookupSource::Coalesced => "coalesced",
            LookupSource::Stale(_) => "stale",
            LookupSource::Uncached => "uncached",
        }
    }
}

#[derive(Clone)]
enum Cached {
    Found(Arc<KvSecret>),
    Missing(String),
}

struct ExpireByKind {
    ttl: Duration,
    negative_ttl: Duration,
}

impl Expiry<CacheKey, Cached> for ExpireByKind {
    fn expire_after_create(
        &self,
        _key: &CacheKey,
        value: &Cached,
        _created_at: Instant,
    ) -> Option<Duration> {
        Some(match value {
            Cached::Found(_) => self.ttl,
            Cached::Missing(_) => self.negative_ttl,
        })
    }
}

/// The last good read of each key, kept for the stale window.
struct LastGood {
    reads: Cache<CacheKey, (Instant, Arc<KvSecret>)>,
    window: Duration,
}

pub struct ValueCache {
    fresh: Option<Cache<CacheKey, Cached>>,
    last_good: Option<LastGood>,
}

impl ValueCache {
    /// `ttl` zero disables caching; `stale_if_error` enables serving old values in outages.
    pub fn new(ttl: Duration, stale_if_error: Option<Duration>) -> Self {
        let fresh = (!ttl.is_zero()).then(|| {
            Cache::builder()
                .max_capacity(MAX_ENTRIES)
                .expire_after(ExpireByKind {
                    ttl,
                    negative_ttl: ttl.min(MAX_NEGATIVE_TTL),
                })
                .build()
        });
        let last_good = stale_if_error
            .filter(|window| !window.is_zero())
            .map(|window| LastGood {
                reads: Cache::builder()
                    .max_capacity(MAX_ENTRIES)
                    .time_to_live(window)
                    .build(),
                window,
            });
        ValueCache { fresh, last_good }
    }

    /// The secret at `key`, from the cache or from `read`.
    pub async fn get<F>(&self, key: CacheKey, read: F) -> Result<Lookup, Arc<VaultError>>
    where
        F: Future<Output = Result<KvSecret, VaultError>>,
    {
        let Some(fresh) = &self.fresh else {
            return match read.await {
                Ok(secret) => {
                    let secret = Arc::new(secret);
                    self.remember(&key, &secret).await;
                    Ok(Lookup {
                        secret,
                        source: LookupSource::Uncached,
                    })
                }
                Err(error) => self.stale_or(&key, Arc::new(error)).await,
            };
        };
        if let Some(cached) = fresh.get(&key).await {
            return found(cached, LookupSource::Hit);
        }
        let ran_read = AtomicBool::new(false);
        let outcome = fresh
            .try_get_with(key.clone(), async {
                ran_read.store(true, Ordering::Relaxed);
                match read.await {
                    Ok(secret) => {
                        let secret = Arc::new(secret);
                        self.remember(&key, &secret).await;
                        Ok(Cached::Found(secret))
                    }
                    Err(VaultError::NotFound(path)) => Ok(Cached::Missing(path)),
                    Err(error) => Err(error),
                }
            })
            .await;
        let source = if ran_read.load(Ordering::Relaxed) {
            LookupSource::Miss
        } else {
            LookupSource::Coalesced
        };
        match outcome {
            Ok(cached) => found(cached, source),
            Err(error) => self.stale_or(&key, error).await,
        }
    }

    async fn remember(&self, key: &CacheKey, secret: &Arc<KvSecret>) {
        if let Some(last_good) = &self.last_good {
            last_good
                .reads
                .insert(key.clone(), (Instant::now(), secret.clone()))
                .await;
        }
    }

    /// Serves the last good value when Vault is unavailable and one is young enough.
    async fn stale_or(
        &self,
        key: &CacheKey,
        error: Arc<VaultError>,
    ) -> Result<Lookup, Arc<VaultError>> {
        if let (VaultError::Unavailable(_), Some(last_good)) = (error.as_ref(), &self.last_good)
            && let Some((read_at, secret)) = last_good.reads.get(key).await
        {
            let age = read_at.elapsed();
            if age < last_good.window {
                return Ok(Lookup {
                    secret,
                    source: LookupSource::Stale(age),
                });
            }
        }
        Err(error)
    }
}

fn found(cached: Cached, source: LookupSource) -> Result<Lookup, Arc<VaultError>> {
    match cached {
        Cached::Found(secret) => Ok(Lookup { secret, source }),
        Cached::Missing(path) => Err(Arc::new(VaultError::NotFound(path))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backends::vault::client::{FieldValue, Fields};
    use secrecy::{ExposeSecret, SecretString};
    use std::sync::atomic::AtomicUsize;

    fn key(path: &str) -> CacheKey {
        CacheKey {
            config: "vault-finance".into(),
            epoch: 1,
            vault_namespace: None,
            path: path.into(),
        }
    }

    fn fields(value: &str) -> KvSecret {
        KvSecret {
            fields: Fields::from([(
                "value".to_owned(),
                FieldValue::Text(SecretString::from(value)),
            )]),
            version: Some(1),
        }
    }

    fn text(lookup: &Lookup) -> String {
        match lookup.secret.fields.get("value") {
            Some(FieldValue::Text(value)) => value.expose_secret().to_owned(),
            _ => panic!("no text value"),
        }
    }

    /// A read that counts itself and takes a while, so that callers overlap.
    async fn slow_read(
        reads: &AtomicUsize,
        outcome: Result<&str, VaultError>,
    ) -> Result<KvSecret, VaultError> {
        reads.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(50)).await;
        outcome.map(fields)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_misses_share_one_read() {
        let cache = ValueCache::new(Duration::from_secs(30), None);
        let reads = AtomicUsize::new(0);
        let lookups = futures::future::join_all(
            (0..200).map(|_| cache.get(key("db"), slow_read(&reads, Ok("v1")))),
        )
        .await;
        assert_eq!(reads.load(Ordering::SeqCst), 1);
        let sources: Vec<_> = lookups
            .iter()
            .map(|lookup| lookup.as_ref().map(|l| l.source).unwrap())
            .collect();
        assert_eq!(
            sources.iter().filter(|s| **s == LookupSource::Miss).count(),
            1
        );
        assert!(lookups.iter().all(|l| text(l.as_ref().unwrap()) == "v1"));
        let again = cache
            .get(key("db"), slow_read(&reads, Ok("v2")))
            .await
            .unwrap();
        assert_eq!(
            (again.source, text(&again)),
            (LookupSource::Hit, "v1".into())
        );
        assert_eq!(reads.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn missing_secrets_are_cached_briefly_and_errors_not_at_all() {
        let cache = ValueCache::new(Duration::from_secs(30), None);
        let reads = AtomicUsize::new(0);
        for _ in 0..3 {
            let missing = cache
                .get(
                    key("typo"),
                    slow_read(&reads, Err(VaultError::NotFound("p".into()))),
                )
                .await;
            assert!(matches!(
                missing.as_ref().map_err(|e| e.as_ref()),
                Err(VaultError::NotFound(_))
            ));
        }
        assert_eq!(
            reads.load(Ordering::SeqCst),
            1,
            "negative entries are cached"
        );
        for _ in 0..3 {
            let unavailable = cache
                .get(
                    key("db"),
                    slow_read(&reads, Err(VaultError::Unavailable("down".into()))),
                )
                .await;
            assert!(matches!(
                unavailable.as_ref().map_err(|e| e.as_ref()),
                Err(VaultError::Unavailable(_))
            ));
        }
        assert_eq!(
            reads.load(Ordering::SeqCst),
            4,
            "errors are retried, not cached"
        );
    }

    #[tokio::test]
    async fn zero_ttl_reads_every_time() {
        let cache = ValueCache::new(Duration::ZERO, None);
        let reads = AtomicUsize::new(0);
        for _ in 0..3 {
            let lookup = cache
                .get(key("db"), slow_read(&reads, Ok("v")))
                .await
                .unwrap();
            assert_eq!(lookup.source, LookupSource::Uncached);
        }
        assert_eq!(reads.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn expired_entries_are_read_again() {
        let cache = ValueCache::new(Duration::from_millis(100), None);
        let reads = AtomicUsize::new(0);
        cache
            .get(key("db"), slow_read(&reads, Ok("v1")))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(150)).await;
        let rotated = cache
            .get(key("db"), slow_read(&reads, Ok("v2")))
            .await
            .unwrap();
        assert_eq!(
            (rotated.source, text(&rotated)),
            (LookupSource::Miss, "v2".into())
        );
    }

    #[tokio::test]
    async fn stale_values_serve_outages_within_the_window_only() {
        let cache = ValueCache::new(Duration::from_millis(50), Some(Duration::from_millis(400)));
        let reads = AtomicUsize::new(0);
        let down = || Err(VaultError::Unavailable("down".into()));
        cache
            .get(key("db"), slow_read(&reads, Ok("v1")))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(80)).await;
        let stale = cache
            .get(key("db"), slow_read(&reads, down()))
            .await
            .unwrap();
        assert!(matches!(stale.source, LookupSource::Stale(_)));
        assert_eq!(text(&stale), "v1");
        // Permission errors are answers, not outages: never papered over.
        let denied = cache
            .get(
                key("db"),
                slow_read(
                    &reads,
                    Err(VaultError::PermissionDenied { path: "p".into() }),
                ),
            )
            .await;
        assert!(denied.is_err());
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert!(
            cache
                .get(key("db"), slow_read(&reads, down()))
                .await
                .is_err()
        );
    }
}
