//! Per company + project request limits, and idempotency on `request_id`. Both are kept in the
//! router's memory: exact for one replica; with N replicas a company gets up to N times its
//! limits, and a retry landing on another replica within the window is queued again (the
//! processors' conditional conversation record still stops a second send).
use super::error::RouterError;
use crate::wire::company::RateLimits;
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::OnceCell;

type Key = (String, String);
/// (company_id, project_id, request_id).
type RequestKey = (String, String, String);
/// When the key was first seen, and its first successful envelope once there is one.
type Answer = (Instant, Arc<OnceCell<serde_json::Value>>);

#[derive(Default)]
pub struct RateLimiter {
    windows: Mutex<HashMap<Key, Windows>>,
}

#[derive(Default, Clone, Copy)]
struct Windows {
    minute: u64,
    in_minute: u32,
    day: u64,
    in_day: u32,
}

impl RateLimiter {
    /// Counts one request against the clock-aligned minute and day windows, or says how long to
    /// wait when either is full (nothing is counted then).
    pub fn admit(&self, company: &str, project: &str, limits: &RateLimits, now: SystemTime) -> Result<(), RouterError> {
        let seconds = now.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let (minute, day) = (seconds / 60, seconds / 86_400);
        let mut windows = self.windows.lock().map_err(|_| RouterError::internal())?;
        let w = windows.entry((company.to_string(), project.to_string())).or_default();
        if w.minute != minute {
            (w.minute, w.in_minute) = (minute, 0);
        }
        if w.day != day {
            (w.day, w.in_day) = (day, 0);
        }
        if w.in_minute >= limits.requests_per_minute {
            return Err(RouterError::rate_limited(60 - seconds % 60));
        }
        if w.in_day >= limits.requests_per_day {
            return Err(RouterError::rate_limited(86_400 - seconds % 86_400));
        }
        w.in_minute += 1;
        w.in_day += 1;
        Ok(())
    }
}

/// The first successful answer per (company, project, request_id), kept for `window`.
pub struct Idempotency {
    window: Duration,
    answers: Mutex<HashMap<RequestKey, Answer>>,
}

impl Idempotency {
    pub fn new(window: Duration) -> Self {
        Idempotency { window, answers: Mutex::default() }
    }

    /// Runs `accept` once per key: a retry (or a concurrent duplicate, which waits) gets the
    /// first success back. Failures are not remembered, so a retry after one tries again.
    pub async fn once<F, Fut>(&self, key: RequestKey, accept: F) -> Result<serde_json::Value, RouterError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<serde_json::Value, RouterError>>,
    {
        let cell = {
            let mut answers = self.answers.lock().map_err(|_| RouterError::internal())?;
            let now = Instant::now();
            if answers.len() > 10_000 {
                answers.retain(|_, (at, _)| now.duration_since(*at) < self.window);
            }
            let entry = answers.entry(key).or_insert_with(|| (now, Arc::new(OnceCell::new())));
            if now.duration_since(entry.0) >= self.window {
                *entry = (now, Arc::new(OnceCell::new()));
            }
            entry.1.clone()
        };
        cell.get_or_try_init(accept).await.cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(per_minute: u32, per_day: u32) -> RateLimits {
        RateLimits {
            requests_per_minute: per_minute,
            requests_per_day: per_day,
            concurrent_conversations: 30,
            max_message_length: 4096,
        }
    }

    #[test]
    fn the_61st_request_in_a_minute_is_refused_until_the_next_minute() {
        let limiter = RateLimiter::default();
        // 15 s into a minute (1_800_000_000 is a whole number of minutes).
        let start = UNIX_EPOCH + Duration::from_secs(1_800_000_015);
        for _ in 0..60 {
            limiter.admit("c", "p", &limits(60, 2000), start).expect("within the limit");
        }
        let refused = limiter.admit("c", "p", &limits(60, 2000), start).expect_err("61st");
        assert_eq!((refused.code, refused.status), ("RATE_LIMIT_EXCEEDED", 429));
        assert_eq!(refused.retry_after, Some(45));
        limiter.admit("c", "other", &limits(60, 2000), start).expect("another project has its own budget");
        limiter.admit("c", "p", &limits(60, 2000), start + Duration::from_secs(45)).expect("next minute");
    }

    #[test]
    fn the_daily_limit_holds_across_minutes() {
        let limiter = RateLimiter::default();
        let start = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        for minute in 0..3 {
            limiter.admit("c", "p", &limits(60, 3), start + Duration::from_secs(60 * minute)).expect("ok");
        }
        let refused = limiter.admit("c", "p", &limits(60, 3), start + Duration::from_secs(300)).expect_err("day full");
        assert!(refused.retry_after.is_some_and(|s| s > 60));
    }

    #[tokio::test]
    async fn a_retry_gets_the_first_answer_and_a_failure_is_not_remembered() {
        let idempotency = Idempotency::new(Duration::from_secs(600));
        let key = || ("c".to_string(), "p".to_string(), "r".to_string());
        let failed = idempotency.once(key(), || async { Err(RouterError::queue_error()) }).await;
        assert!(failed.is_err());
        let first = idempotency.once(key(), || async { Ok(serde_json::json!({"n": 1})) }).await.expect("ok");
        let again = idempotency.once(key(), || async { Ok(serde_json::json!({"n": 2})) }).await.expect("ok");
        assert_eq!((first["n"].as_i64(), again["n"].as_i64()), (Some(1), Some(1)));
    }
}
