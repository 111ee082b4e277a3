//! Retry policy and waiting: capped exponential backoff with jitter,
//! `Retry-After` (seconds or HTTP-date, capped), and the [`Sleeper`] the
//! client waits through so tests can observe waits without sleeping.
//!
//! Depends on nothing of ours; the client applies it to each request.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use rand::Rng;

/// How often and how long to retry a failed request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Total attempts per request, the first one included (at least 1).
    pub max_attempts: u32,
    /// The backoff before the second attempt; it doubles per attempt.
    pub base_delay: Duration,
    /// The longest backoff between two attempts.
    pub max_delay: Duration,
    /// The longest wait a provider's `Retry-After` can impose per attempt.
    pub retry_after_cap: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 6,
            base_delay: Duration::from_secs(2),
            max_delay: Duration::from_secs(300),
            retry_after_cap: Duration::from_secs(900),
        }
    }
}

impl RetryPolicy {
    /// The capped exponential delay after failed attempt number `attempt`
    /// (1-based), before jitter.
    pub fn backoff_ceiling(&self, attempt: u32) -> Duration {
        let exp = attempt.saturating_sub(1).min(30);
        self.base_delay
            .checked_mul(1u32 << exp)
            .unwrap_or(self.max_delay)
            .min(self.max_delay)
    }

    /// The jittered backoff after failed attempt `attempt`: uniformly in
    /// `[ceiling/2, ceiling]` ("equal jitter"), so retries from many
    /// harvesters spread out but never collapse to zero.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let ceiling = self.backoff_ceiling(attempt);
        let half = ceiling / 2;
        let spread = ceiling.saturating_sub(half).as_millis() as u64;
        let jitter = if spread == 0 {
            0
        } else {
            rand::rng().random_range(0..=spread)
        };
        half + Duration::from_millis(jitter)
    }

    /// The wait before retrying: the provider's `Retry-After` (capped at
    /// [`RetryPolicy::retry_after_cap`]) when it sent one, else the backoff.
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        match retry_after {
            Some(d) => d.min(self.retry_after_cap),
            None => self.backoff(attempt),
        }
    }
}

/// Reads a `Retry-After` header value: delta-seconds or an HTTP-date
/// (relative to `now`; a date in the past means "now"). `None` when it is
/// neither.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// A boxed, sendable future, as [`Sleeper::sleep`] returns.
pub type SleepFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Waits for a duration. The client waits for backoff, `Retry-After` and
/// pacing only through this, so tests can record waits instead of sleeping.
pub trait Sleeper: Send + Sync + fmt::Debug {
    /// Completes after `d`.
    fn sleep(&self, d: Duration) -> SleepFuture;
}

/// The production sleeper: `tokio::time::sleep`, which follows the paused
/// test clock too.
#[derive(Debug, Clone, Copy, Default)]
pub struct TokioSleeper;

impl Sleeper for TokioSleeper {
    fn sleep(&self, d: Duration) -> SleepFuture {
        Box::pin(tokio::time::sleep(d))
    }
}

/// A sleeper that returns at once and remembers every requested wait;
/// for tests of retry and pacing decisions.
#[derive(Debug, Clone, Default)]
pub struct RecordingSleeper {
    waits: Arc<Mutex<Vec<Duration>>>,
}

impl RecordingSleeper {
    /// A new, empty recorder.
    pub fn new() -> Self {
        Self::default()
    }

    /// The waits requested so far, in order.
    pub fn waits(&self) -> Vec<Duration> {
        self.waits.lock().map(|w| w.clone()).unwrap_or_default()
    }
}

impl Sleeper for RecordingSleeper {
    fn sleep(&self, d: Duration) -> SleepFuture {
        if let Ok(mut w) = self.waits.lock() {
            w.push(d);
        }
        Box::pin(std::future::ready(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let p = RetryPolicy {
            max_attempts: 10,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(10),
            retry_after_cap: Duration::from_secs(60),
        };
        assert_eq!(p.backoff_ceiling(1), Duration::from_secs(1));
        assert_eq!(p.backoff_ceiling(2), Duration::from_secs(2));
        assert_eq!(p.backoff_ceiling(4), Duration::from_secs(8));
        assert_eq!(p.backoff_ceiling(5), Duration::from_secs(10));
        assert_eq!(p.backoff_ceiling(100), Duration::from_secs(10));
        for attempt in 1..12 {
            let c = p.backoff_ceiling(attempt);
            for _ in 0..50 {
                let d = p.backoff(attempt);
                assert!(d >= c / 2 && d <= c, "{d:?} outside [{:?}, {c:?}]", c / 2);
            }
        }
    }

    #[test]
    fn retry_after_is_capped() {
        let p = RetryPolicy {
            retry_after_cap: Duration::from_secs(30),
            ..RetryPolicy::default()
        };
        assert_eq!(
            p.delay(1, Some(Duration::from_secs(20))),
            Duration::from_secs(20)
        );
        assert_eq!(
            p.delay(1, Some(Duration::from_secs(86_400))),
            Duration::from_secs(30)
        );
    }

    #[test]
    fn parses_both_retry_after_forms() {
        let now = httpdate::parse_http_date("Wed, 21 Oct 2015 07:28:00 GMT").expect("date");
        assert_eq!(
            parse_retry_after(" 120 ", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:30:00 GMT", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-5", now), None);
    }
}
