//! Per company + project request limits, and idempotency on `request_id`. Both are kept in the
//! router's memory: exact for one replica; with N replicas a company gets up to N times its
//! limits, and a retry landing on another replica within the window is queued again (the
//! processors' conditional conversation record still stops a second send).
use super::error::RouterError;
use multicomms_wire::company::RateLimits;
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::OnceCell;

/// (company_id, project_id): whose limits.
type Tenant = (String, String);
/// (company_id, project_id, request_id).
type RequestKey = (String, String, String);
/// When the key was first seen, and its first successful envelope once there is one.
type Answer = (Instant, Arc<OnceCell<serde_json::Value>>);

#[derive(Default)]
pub struct RateLimiter {
    windows: Mutex<HashMap<Tenant, Windows>>,
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
///
/// Only accepted requests stay: a refused, failed or abandoned one leaves nothing behind, so a
/// tenant being refused cannot grow the map. Keys are spread over shards by their hash, so one
/// tenant's burst contends for every shard's lock in turn rather than holding a single one; each
/// shard keeps its accepted keys in arrival order and drops at most [`SWEEP`] expired ones per
/// request, so a request costs O(1) however many answers are kept. At [`MAX_ANSWERS`] the
/// oldest go first (a retry after that is queued again; the processors' conditional record
/// still sends once).
pub struct Idempotency {
    window: Duration,
    shards: Vec<Mutex<Shard>>,
}

const SHARDS: usize = 64;
/// Accepted answers kept at most (about 300 bytes each).
pub const MAX_ANSWERS: usize = 200_000;
/// Expired answers dropped per request: more than one arrives, so a backlog drains.
const SWEEP: usize = 8;

#[derive(Default)]
struct Shard {
    answers: HashMap<RequestKey, Answer>,
    /// Accepted keys, oldest first, with the time their entry was made.
    accepted: VecDeque<(Instant, RequestKey)>,
}

impl Shard {
    /// Drops a few expired answers, and the oldest beyond the shard's share of the cap.
    fn sweep(&mut self, now: Instant, window: Duration) {
        for _ in 0..SWEEP {
            match self.accepted.front() {
                Some((at, _)) if now.duration_since(*at) >= window || self.accepted.len() > MAX_ANSWERS / SHARDS => {}
                _ => break,
            }
            if let Some((at, key)) = self.accepted.pop_front() {
                // Remove the entry only if it is the one this slot recorded, not a newer one.
                if self.answers.get(&key).is_some_and(|(made, _)| *made == at) {
                    self.answers.remove(&key);
                }
            }
        }
    }
}

/// Removes its entry when dropped unanswered (refused, failed, or the request abandoned).
struct Pending<'a> {
    shard: &'a Mutex<Shard>,
    key: &'a RequestKey,
    cell: Arc<OnceCell<serde_json::Value>>,
}

impl Pending<'_> {
    /// The entry's request was accepted: it joins the expiry order (unless the entry was
    /// replaced meanwhile, which only an expired entry can be).
    fn accepted(&self) {
        let Ok(mut shard) = self.shard.lock() else { return };
        if let Some((at, cell)) = shard.answers.get(self.key) {
            if Arc::ptr_eq(cell, &self.cell) {
                let at = *at;
                shard.accepted.push_back((at, self.key.clone()));
            }
        }
    }
}

impl Drop for Pending<'_> {
    /// Removes the entry unless it was answered or another request still waits on it (that one
    /// tries next, on the same entry, so a duplicate arriving meanwhile waits instead of sending
    /// too). Counted under the shard's lock: the map's reference and this one.
    fn drop(&mut self) {
        if self.cell.initialized() {
            return;
        }
        if let Ok(mut shard) = self.shard.lock() {
            let ours = shard.answers.get(self.key).is_some_and(|(_, cell)| Arc::ptr_eq(cell, &self.cell));
            if ours && Arc::strong_count(&self.cell) == 2 {
                shard.answers.remove(self.key);
            }
        }
    }
}

impl Idempotency {
    pub fn new(window: Duration) -> Self {
        Idempotency { window, shards: (0..SHARDS).map(|_| Mutex::default()).collect() }
    }

    /// Runs `accept` once per key: a retry (or a concurrent duplicate, which waits) gets the
    /// first success back. Failures are not remembered, so a retry after one tries again.
    pub async fn once<F, Fut>(&self, key: RequestKey, accept: F) -> Result<serde_json::Value, RouterError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<serde_json::Value, RouterError>>,
    {
        let shard = &self.shards[shard_of(&key)];
        let cell = {
            let mut guard = shard.lock().map_err(|_| RouterError::internal())?;
            let now = Instant::now();
            guard.sweep(now, self.window);
            match guard.answers.get(&key) {
                Some((at, cell)) if now.duration_since(*at) < self.window => cell.clone(),
                _ => {
                    let cell = Arc::new(OnceCell::new());
                    guard.answers.insert(key.clone(), (now, cell.clone()));
                    cell
                }
            }
        };
        if let Some(answer) = cell.get() {
            return Ok(answer.clone());
        }
        let pending = Pending { shard, key: &key, cell };
        // Whoever's `accept` produced the answer puts the entry in the expiry order.
        let ran = std::sync::atomic::AtomicBool::new(false);
        let answer = pending
            .cell
            .get_or_try_init(|| {
                ran.store(true, std::sync::atomic::Ordering::Relaxed);
                accept()
            })
            .await
            .cloned()?;
        if ran.load(std::sync::atomic::Ordering::Relaxed) {
            pending.accepted();
        }
        Ok(answer)
    }

    /// Answers held (accepted, or being accepted now).
    pub fn len(&self) -> usize {
        self.shards.iter().filter_map(|s| s.lock().ok().map(|s| s.answers.len())).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn shard_of(key: &RequestKey) -> usize {
    use std::hash::{Hash, Hasher};
    // Fixed keys: the spread need not resist attack (a key names the caller's own tenant).
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    key.hash(&mut hasher);
    hasher.finish() as usize % SHARDS
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
        assert_eq!(refused.code, crate::router::error::ErrorCode::RateLimitExceeded);
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
    async fn refused_requests_leave_nothing_in_the_idempotency_map() {
        let idempotency = Idempotency::new(Duration::from_secs(600));
        for i in 0..20_000 {
            let key = ("c".to_string(), "p".to_string(), format!("request-{i}"));
            let refused = idempotency.once(key, || async { Err(RouterError::rate_limited(1)) }).await;
            assert!(refused.is_err());
        }
        assert_eq!(idempotency.len(), 0);
        // A request abandoned mid-way (client gone, timeout) leaves nothing either.
        let key = ("c".to_string(), "p".to_string(), "abandoned".to_string());
        let never = idempotency.once(key, std::future::pending::<Result<serde_json::Value, RouterError>>);
        assert!(tokio::time::timeout(Duration::from_millis(10), never).await.is_err());
        assert_eq!(idempotency.len(), 0);
    }

    #[tokio::test]
    async fn expired_answers_are_dropped_a_few_per_request_so_each_request_costs_the_same() {
        let window = Duration::from_secs(2);
        let idempotency = Idempotency::new(window);
        let accept = |i: u32| {
            let key = ("c".to_string(), "p".to_string(), format!("request-{i}"));
            idempotency.once(key, move || async move { Ok(serde_json::json!({"n": i})) })
        };
        for i in 0..2_000 {
            accept(i).await.expect("accepted");
        }
        assert_eq!(idempotency.len(), 2_000, "none expired yet");
        tokio::time::sleep(window).await;
        // One request sweeps at most SWEEP expired answers of its own shard, not the whole map.
        accept(2_000).await.expect("accepted");
        let after_one = idempotency.len();
        assert!((2_000 + 1 - SWEEP..2_000).contains(&after_one), "{after_one}");
        // Requests keep coming: the backlog drains, SWEEP per request.
        for i in 2_001..3_000 {
            accept(i).await.expect("accepted");
        }
        assert!(idempotency.len() <= 1_000 + SHARDS * SWEEP, "{}", idempotency.len());
    }

    #[tokio::test]
    async fn a_duplicate_waiting_on_a_failed_attempt_tries_on_the_same_entry_and_is_remembered() {
        let idempotency = Arc::new(Idempotency::new(Duration::from_secs(600)));
        let key = || ("c".to_string(), "p".to_string(), "r".to_string());
        let (release_first, first_may_fail) = tokio::sync::oneshot::channel::<()>();
        let first = {
            let idempotency = idempotency.clone();
            tokio::spawn(async move {
                idempotency
                    .once(key(), || async {
                        let _ = first_may_fail.await;
                        Err(RouterError::queue_error())
                    })
                    .await
            })
        };
        tokio::task::yield_now().await;
        let sends = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let second = {
            let (idempotency, sends) = (idempotency.clone(), sends.clone());
            tokio::spawn(async move {
                idempotency
                    .once(key(), || async move {
                        sends.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        Ok(serde_json::json!({"n": 2}))
                    })
                    .await
            })
        };
        tokio::task::yield_now().await;
        let _ = release_first.send(());
        assert!(first.await.expect("task").is_err());
        assert_eq!(second.await.expect("task").expect("accepted")["n"], 2);
        // A later retry gets the second attempt's answer; nothing is sent again.
        let third = idempotency.once(key(), || async { Ok(serde_json::json!({"n": 3})) }).await.expect("answer");
        assert_eq!((third["n"].as_i64(), sends.load(std::sync::atomic::Ordering::SeqCst)), (Some(2), 1));
        assert_eq!(idempotency.len(), 1);
    }

    #[test]
    fn one_tenants_requests_spread_over_every_shard() {
        let shards: std::collections::HashSet<usize> = (0..2_000)
            .map(|i| shard_of(&("c".to_string(), "p".to_string(), format!("550e8400-e29b-41d4-a716-{i:012x}"))))
            .collect();
        assert_eq!(shards.len(), SHARDS);
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
