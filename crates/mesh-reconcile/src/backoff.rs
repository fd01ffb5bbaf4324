//! Per-object exponential backoff for failed reconciles.
//!
//! kube-runtime's `error_policy` only returns an `Action`; it keeps no memory of earlier failures.
//! Without one, a MeshService whose apply keeps failing would be retried at a fixed rate forever,
//! and a burst of failures (an apiserver restart) would hammer it. We keep a failure count per
//! object, as client-go's `ItemExponentialFailureRateLimiter` does, and reset it on success.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::Duration;

/// `min(base * 2^(failures - 1), max)`: the delay before the next attempt after `failures`
/// consecutive failures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BackoffPolicy {
    /// Delay after the first failure.
    pub base: Duration,
    /// Upper bound of the delay.
    pub max: Duration,
}

impl Default for BackoffPolicy {
    /// 500 ms doubling up to 5 minutes: a transient conflict is retried at once, a persistent
    /// failure settles at a rate the apiserver does not notice.
    fn default() -> Self {
        Self {
            base: Duration::from_millis(500),
            max: Duration::from_secs(300),
        }
    }
}

impl BackoffPolicy {
    /// The delay after `failures` consecutive failures (0 is treated as 1).
    pub fn delay(&self, failures: u32) -> Duration {
        let exponent = failures.saturating_sub(1).min(31);
        self.base
            .checked_mul(1u32 << exponent)
            .map_or(self.max, |delay| delay.min(self.max))
    }
}

/// Failure counts per object key.
#[derive(Debug)]
pub struct Backoffs<K> {
    policy: BackoffPolicy,
    failures: Mutex<HashMap<K, u32>>,
}

impl<K: Eq + Hash + Clone> Backoffs<K> {
    /// An empty table with the given policy.
    pub fn new(policy: BackoffPolicy) -> Self {
        Self {
            policy,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// Counts one more failure of `key` and returns how long to wait before the next attempt.
    pub fn failed(&self, key: &K) -> Duration {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let count = failures.entry(key.clone()).or_insert(0);
        *count = count.saturating_add(1);
        self.policy.delay(*count)
    }

    /// Forgets the failures of `key`: its next failure starts again at the base delay.
    pub fn succeeded(&self, key: &K) {
        self.failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }

    /// Consecutive failures of `key` so far.
    pub fn failures(&self, key: &K) -> u32 {
        self.failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
            .copied()
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> BackoffPolicy {
        BackoffPolicy {
            base: Duration::from_millis(100),
            max: Duration::from_secs(2),
        }
    }

    #[test]
    fn delay_doubles_from_the_base_and_stops_at_the_maximum() {
        let delays: Vec<u128> = (1..=7).map(|n| policy().delay(n).as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 800, 1600, 2000, 2000]);
    }

    #[test]
    fn a_huge_failure_count_neither_overflows_nor_exceeds_the_maximum() {
        assert_eq!(policy().delay(u32::MAX), Duration::from_secs(2));
        assert_eq!(policy().delay(0), Duration::from_millis(100));
    }

    #[test]
    fn each_object_backs_off_on_its_own_failures() {
        let backoffs = Backoffs::new(policy());
        assert_eq!(backoffs.failed(&"a"), Duration::from_millis(100));
        assert_eq!(backoffs.failed(&"a"), Duration::from_millis(200));
        assert_eq!(backoffs.failed(&"b"), Duration::from_millis(100));
        assert_eq!(backoffs.failures(&"a"), 2);
    }

    #[test]
    fn success_resets_the_count_so_the_next_failure_starts_at_the_base() {
        let backoffs = Backoffs::new(policy());
        backoffs.failed(&"a");
        backoffs.failed(&"a");
        backoffs.succeeded(&"a");
        assert_eq!(backoffs.failures(&"a"), 0);
        assert_eq!(backoffs.failed(&"a"), Duration::from_millis(100));
    }
}
