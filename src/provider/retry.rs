//! Retries with exponential backoff and full jitter that honour `Retry-After`.
//!
//! promptgate owns its retry loop (async-openai's built-in retry is replaced, see
//! `provider/openai.rs`) so that attempts are bounded, counted, and never doubled by a second
//! loop inside an SDK.

use std::future::Future;
use std::time::Duration;

use rand::Rng;

use super::failure::{FailureKind, ProviderError};

/// How often and how long to retry one call.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Attempts, the first included.
    pub max_attempts: u32,
    /// Upper bound of the first backoff; doubles per attempt.
    pub base_delay: Duration,
    /// Longest single wait, `Retry-After` included.
    pub max_delay: Duration,
}

impl RetryPolicy {
    /// The wait before attempt `attempt + 1`, after `attempt` (1-based) failed with `error`.
    ///
    /// A server's `Retry-After` is obeyed (capped at `max_delay`); otherwise "full jitter"
    /// (a uniform draw up to the exponential bound) spreads retries of many concurrent calls.
    pub fn delay(&self, attempt: u32, error: &ProviderError, rng: &mut impl Rng) -> Duration {
        if let Some(wait) = error.retry_after {
            return wait.min(self.max_delay);
        }
        let exponent = attempt.saturating_sub(1).min(20);
        let bound = self.base_delay.saturating_mul(1 << exponent).min(self.max_delay);
        let millis = u64::try_from(bound.as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(rng.random_range(0..=millis))
    }
}

/// The outcome of a call after retries, with the number of attempts made.
#[derive(Debug)]
pub struct Attempted<T> {
    pub result: Result<T, ProviderError>,
    pub attempts: u32,
}

/// Run `call` until it succeeds, fails permanently, or runs out of attempts.
pub async fn with_retries<T, F, Fut>(policy: RetryPolicy, call: F) -> Attempted<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, ProviderError>>,
{
    with_retries_releasing(policy, (), || async {}, call).await
}

/// [`with_retries`], holding a slot only while an attempt is in flight: the first attempt
/// runs on `first`, each later one on a slot from `acquire`, and no slot is held while waiting
/// out a backoff or `Retry-After` (a waiting call would otherwise keep a call that could run
/// from starting).
pub async fn with_retries_releasing<T, S, F, Fut, A, AFut>(
    policy: RetryPolicy,
    first: S,
    mut acquire: A,
    mut call: F,
) -> Attempted<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, ProviderError>>,
    A: FnMut() -> AFut,
    AFut: Future<Output = S>,
{
    let mut attempt = 1;
    let mut slot = Some(first);
    loop {
        let held = match slot.take() {
            Some(held) => held,
            None => acquire().await,
        };
        let result = call().await;
        drop(held);
        match result {
            Ok(value) => {
                return Attempted {
                    result: Ok(value),
                    attempts: attempt,
                }
            }
            Err(error) if error.kind.is_retryable() && attempt < policy.max_attempts => {
                let wait = policy.delay(attempt, &error, &mut rand::rng());
                tokio::time::sleep(wait).await;
                attempt += 1;
            }
            Err(error) => {
                return Attempted {
                    result: Err(error),
                    attempts: attempt,
                }
            }
        }
    }
}

impl FailureKind {
    /// Whether another attempt may succeed.
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            FailureKind::RateLimit
                | FailureKind::Server
                | FailureKind::Timeout
                | FailureKind::Connection
                | FailureKind::BadResponse
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use std::cell::Cell;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 4,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(2),
        }
    }

    fn failure(kind: FailureKind, retry_after: Option<Duration>) -> ProviderError {
        ProviderError {
            kind,
            message: "x".into(),
            status: None,
            retry_after,
        }
    }

    #[test]
    fn retry_after_wins_and_is_capped() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let e = failure(FailureKind::RateLimit, Some(Duration::from_millis(1500)));
        assert_eq!(policy().delay(1, &e, &mut rng), Duration::from_millis(1500));
        let e = failure(FailureKind::RateLimit, Some(Duration::from_secs(600)));
        assert_eq!(policy().delay(1, &e, &mut rng), Duration::from_secs(2));
    }

    #[test]
    fn jittered_backoff_stays_under_the_exponential_bound() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let e = failure(FailureKind::Server, None);
        for attempt in 1..=6 {
            let bound = Duration::from_millis(100 * (1 << (attempt - 1))).min(Duration::from_secs(2));
            let draws: Vec<Duration> = (0..200).map(|_| policy().delay(attempt, &e, &mut rng)).collect();
            assert!(draws.iter().all(|d| *d <= bound), "attempt {attempt}");
            // Full jitter spreads the draws over the whole range.
            assert!(draws.iter().any(|d| *d < bound / 4) && draws.iter().any(|d| *d > bound * 3 / 4));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn stops_at_max_attempts_and_on_permanent_errors() {
        let calls = Cell::new(0);
        let out: Attempted<()> = with_retries(policy(), || {
            calls.set(calls.get() + 1);
            async { Err(failure(FailureKind::Server, None)) }
        })
        .await;
        assert_eq!((out.attempts, calls.get()), (4, 4));

        calls.set(0);
        let out: Attempted<()> = with_retries(policy(), || {
            calls.set(calls.get() + 1);
            async { Err(failure(FailureKind::Client, None)) }
        })
        .await;
        assert_eq!((out.attempts, calls.get()), (1, 1));

        calls.set(0);
        let out = with_retries(policy(), || {
            calls.set(calls.get() + 1);
            let n = calls.get();
            async move {
                if n < 3 {
                    Err(failure(FailureKind::RateLimit, Some(Duration::from_secs(1))))
                } else {
                    Ok(n)
                }
            }
        })
        .await;
        assert_eq!(out.result.unwrap(), 3);
        assert_eq!(out.attempts, 3);
    }

    /// One slot, two calls: the first is told to wait 50 ms and waits without the slot, so the
    /// second runs meanwhile; the first's retry then takes the slot back.
    #[tokio::test(start_paused = true)]
    async fn a_call_waiting_to_retry_holds_no_slot() {
        use std::sync::{Arc, Mutex};
        let slots = Arc::new(tokio::sync::Semaphore::new(1));
        let log = Arc::new(Mutex::new(Vec::new()));
        let first_slot = Arc::clone(&slots).acquire_owned().await.unwrap();
        let waiting = {
            let (slots, log) = (Arc::clone(&slots), Arc::clone(&log));
            tokio::spawn(async move {
                let attempts = std::sync::atomic::AtomicU32::new(0);
                with_retries_releasing(
                    policy(),
                    first_slot,
                    || {
                        let slots = Arc::clone(&slots);
                        async move { slots.acquire_owned().await.unwrap() }
                    },
                    || {
                        let attempt = attempts.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                        log.lock().unwrap().push(format!("first, attempt {attempt}"));
                        async move {
                            if attempt == 1 {
                                Err(failure(FailureKind::RateLimit, Some(Duration::from_millis(50))))
                            } else {
                                Ok(())
                            }
                        }
                    },
                )
                .await
            })
        };
        tokio::task::yield_now().await;
        let other = {
            let (slots, log) = (Arc::clone(&slots), Arc::clone(&log));
            tokio::spawn(async move {
                let _slot = slots.acquire_owned().await.unwrap();
                log.lock().unwrap().push("second".to_string());
            })
        };
        other.await.unwrap();
        let out = waiting.await.unwrap();
        assert_eq!(out.attempts, 2);
        assert_eq!(
            *log.lock().unwrap(),
            ["first, attempt 1", "second", "first, attempt 2"],
            "the second call ran while the first waited"
        );
    }
}
