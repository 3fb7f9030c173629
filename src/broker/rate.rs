//! The per-pod rate limit of the broker: a token bucket per pod uid, so one pod restarting its
//! containers in a loop cannot turn every start into Vault reads and API server calls.
//!
//! The map of buckets is bounded: when it is full, buckets that have refilled completely (their
//! pod has been quiet long enough to be indistinguishable from a new one) are dropped; if none
//! has, the request is refused as retriable rather than the map grown, so memory stays bounded
//! whatever the number of pods calling.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Requests one pod may make at once.
pub const BURST: u32 = 10;
/// Requests per second one pod may make once its burst is spent.
pub const PER_SECOND: u32 = 1;
/// Most pods tracked at once.
const MAX_TRACKED: usize = 16_384;

/// Token buckets keyed by pod uid.
pub struct RateLimiter {
    burst: f64,
    per_second: f64,
    max_tracked: usize,
    buckets: Mutex<HashMap<String, Bucket>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

impl Default for RateLimiter {
    fn default() -> Self {
        RateLimiter::new(BURST, PER_SECOND, MAX_TRACKED)
    }
}

impl RateLimiter {
    pub fn new(burst: u32, per_second: u32, max_tracked: usize) -> Self {
        RateLimiter {
            burst: f64::from(burst.max(1)),
            per_second: f64::from(per_second.max(1)),
            max_tracked,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one request from `key`'s bucket at `now`; false when it is empty (or no bucket
    /// can be tracked for a new key).
    pub fn allow(&self, key: &str, now: Instant) -> bool {
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if !buckets.contains_key(key) && buckets.len() >= self.max_tracked {
            let refill = Duration::from_secs_f64(self.burst / self.per_second);
            buckets.retain(|_, bucket| now.saturating_duration_since(bucket.updated) < refill);
            if buckets.len() >= self.max_tracked {
                return false;
            }
        }
        let bucket = buckets.entry(key.to_owned()).or_insert(Bucket {
            tokens: self.burst,
            updated: now,
        });
        let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.per_second).min(self.burst);
        bucket.updated = now.max(bucket.updated);
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.buckets.lock().unwrap().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    /// How many of `requests` requests, `gap` apart, pass a fresh default limiter.
    #[rstest]
    #[case::burst(20, Duration::ZERO, 10)]
    #[case::one_per_second(5, Duration::from_secs(1), 5)]
    #[case::half_second(30, Duration::from_millis(500), 10 + 14)]
    fn allows_the_burst_then_the_rate(
        #[case] requests: u32,
        #[case] gap: Duration,
        #[case] allowed: usize,
    ) {
        let limiter = RateLimiter::default();
        let start = Instant::now();
        let passed = (0..requests)
            .filter(|i| limiter.allow("uid-1", start + gap * *i))
            .count();
        assert_eq!(passed, allowed);
    }

    #[test]
    fn pods_have_their_own_buckets_and_refill() {
        let limiter = RateLimiter::new(2, 1, 100);
        let now = Instant::now();
        assert!(limiter.allow("a", now) && limiter.allow("a", now));
        assert!(!limiter.allow("a", now));
        assert!(limiter.allow("b", now));
        assert!(limiter.allow("a", now + Duration::from_secs(1)));
        assert!(!limiter.allow("a", now + Duration::from_secs(1)));
        // A clock read earlier than the last one refills nothing and panics on nothing.
        assert!(!limiter.allow("a", now));
    }

    #[test]
    fn the_map_stays_bounded_and_forgets_quiet_pods() {
        let limiter = RateLimiter::new(2, 1, 3);
        let now = Instant::now();
        for key in ["a", "b", "c"] {
            assert!(limiter.allow(key, now));
        }
        // Full of pods that called just now: a new pod is refused, nothing is dropped.
        assert!(!limiter.allow("d", now));
        assert_eq!(limiter.tracked(), 3);
        // Once they have been quiet for a full refill, they make room.
        assert!(limiter.allow("d", now + Duration::from_secs(2)));
        assert_eq!(limiter.tracked(), 1);
    }
}
