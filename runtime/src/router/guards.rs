//! Per company + project request limits, idempotency on `request_id`, and a per-source limit on
//! webhook requests that could not be verified. All are kept in the router's memory: exact for
//! one replica; with N replicas a company gets up to N times its limits, and a retry landing on
//! another replica within the window is queued again (the processors' conditional conversation
//! record still stops a second send).
use super::error::RouterError;
use axum::http::{HeaderMap, HeaderName};
use multicomms_wire::company::RateLimits;
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
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

/// Webhook requests not shown to come from Twilio, counted per source over a minute from the
/// first one: past `per_minute`, a source's webhook requests are answered 429 before any
/// lookup until its minute ends, so a stranger's requests cost the router and DynamoDB little
/// (review r3, M2). Only requests that fail verification count: Twilio's own verify and are
/// never counted, so they are limited only when they share a source with a stranger's (behind
/// an ingress: configure the header that carries the client's address, [`source_address`]).
/// An IPv6 source is counted per /64, which one host commonly holds whole. At most
/// [`MAX_SOURCES`] are tracked; when a new one finds the map full, ended minutes are dropped,
/// and any source still not fitting shares one count with the others that did not.
pub struct UnverifiedSources {
    per_minute: u32,
    counts: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

/// Sources tracked at most (about 48 bytes each).
pub const MAX_SOURCES: usize = 100_000;
/// Where the sources that do not fit in the map are counted together.
const OVERFLOW: IpAddr = IpAddr::V6(Ipv6Addr::UNSPECIFIED);
const SOURCE_WINDOW: Duration = Duration::from_secs(60);

impl UnverifiedSources {
    /// `per_minute` zero: no limit.
    pub fn new(per_minute: u32) -> Self {
        UnverifiedSources { per_minute, counts: Mutex::default() }
    }

    /// How long until `source` is heard again, when its unverified requests in its current
    /// minute reached the limit.
    pub fn throttled(&self, source: IpAddr, now: Instant) -> Option<Duration> {
        let counts = self.counts.lock().ok()?;
        let overflowed = || if counts.len() >= MAX_SOURCES { counts.get(&OVERFLOW) } else { None };
        let &(since, n) = counts.get(&counted_as(source)).or_else(overflowed)?;
        let left = SOURCE_WINDOW.saturating_sub(now.saturating_duration_since(since));
        (self.per_minute > 0 && n >= self.per_minute && !left.is_zero()).then_some(left)
    }

    /// One more request from `source` that could not be verified.
    pub fn count(&self, source: IpAddr, now: Instant) {
        if self.per_minute == 0 {
            return;
        }
        let ended = |since: Instant| now.saturating_duration_since(since) >= SOURCE_WINDOW;
        let Ok(mut counts) = self.counts.lock() else { return };
        let mut source = counted_as(source);
        if !counts.contains_key(&source) && counts.len() >= MAX_SOURCES {
            counts.retain(|_, (since, _)| !ended(*since));
            if counts.len() >= MAX_SOURCES {
                source = OVERFLOW;
            }
        }
        let (since, n) = counts.entry(source).or_insert((now, 0));
        if ended(*since) {
            (*since, *n) = (now, 0);
        }
        *n = n.saturating_add(1);
    }
}

/// An IPv4 address as is; an IPv6 one as its /64 (an IPv4-mapped one as the IPv4 address).
fn counted_as(source: IpAddr) -> IpAddr {
    match source {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !((1u128 << 64) - 1))),
        },
        v4 => v4,
    }
}

/// The address a request comes from: the connection's peer, or, when `header` is configured
/// (the router behind an ingress, which sets or appends the client's address there), the last
/// address in that header's last value. Values a client sent itself come before the one the
/// ingress adds, so a client cannot choose its own. A request without the header (or without a
/// known peer) counts as the peer (or the unspecified address).
pub fn source_address(peer: Option<IpAddr>, header: Option<&HeaderName>, headers: &HeaderMap) -> IpAddr {
    let forwarded = header
        .and_then(|name| headers.get_all(name).iter().next_back())
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.rsplit(',').next())
        .map(str::trim)
        .and_then(|last| {
            last.parse::<IpAddr>().ok().or_else(|| last.parse::<std::net::SocketAddr>().ok().map(|a| a.ip()))
        });
    forwarded.or(peer).unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
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

    #[test]
    fn the_source_is_the_address_the_ingress_added_not_one_the_client_chose() {
        let header = HeaderName::from_static("x-forwarded-for");
        let ingress: IpAddr = "10.0.0.5".parse().expect("ip");
        let mut headers = HeaderMap::new();
        assert_eq!(source_address(Some(ingress), Some(&header), &headers), ingress, "no header: the peer");
        headers.insert(&header, "198.51.100.1, 203.0.113.7".parse().expect("value"));
        assert_eq!(
            source_address(Some(ingress), Some(&header), &headers),
            "203.0.113.7".parse::<IpAddr>().expect("ip")
        );
        assert_eq!(source_address(Some(ingress), None, &headers), ingress, "not configured: the header is not trusted");
        headers.append(&header, "[2001:db8::1]:4711".parse().expect("value"));
        assert_eq!(source_address(None, Some(&header), &headers), "2001:db8::1".parse::<IpAddr>().expect("ip"));
        assert_eq!(source_address(None, None, &HeaderMap::new()), IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    }

    #[test]
    fn a_source_past_its_unverified_requests_waits_out_its_minute_and_others_do_not() {
        let sources = UnverifiedSources::new(3);
        let start = Instant::now();
        let at = |s: u64| start + Duration::from_secs(s);
        let stranger: IpAddr = "203.0.113.7".parse().expect("ip");
        let twilio: IpAddr = "54.172.60.1".parse().expect("ip");
        for _ in 0..3 {
            assert_eq!(sources.throttled(stranger, at(10)), None);
            sources.count(stranger, at(10));
        }
        assert_eq!(sources.throttled(stranger, at(15)), Some(Duration::from_secs(55)), "until its minute ends");
        assert_eq!(sources.throttled(twilio, at(15)), None, "another source is not limited");
        assert_eq!(sources.throttled(stranger, at(70)), None, "its minute ended");
        sources.count(stranger, at(70));
        assert_eq!(sources.throttled(stranger, at(71)), None, "and counting starts again");
        let (one, same_64): (IpAddr, IpAddr) =
            ("2001:db8:1:2::1".parse().expect("ip"), "2001:db8:1:2:ffff::9".parse().expect("ip"));
        for _ in 0..3 {
            sources.count(one, at(70));
        }
        assert_eq!(sources.throttled(same_64, at(80)), Some(Duration::from_secs(50)), "an IPv6 /64 is one source");
        assert_eq!(UnverifiedSources::new(0).throttled(stranger, at(0)), None, "zero: no limit");
    }

    #[test]
    fn sources_beyond_the_map_share_one_count_and_ended_minutes_make_room() {
        let sources = UnverifiedSources::new(1);
        let start = Instant::now();
        let at = |s: u64| start + Duration::from_secs(s);
        let address = |i: usize| IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i as u32));
        for i in 0..MAX_SOURCES {
            sources.count(address(i), at(0));
        }
        let (late, later) = (address(MAX_SOURCES), address(MAX_SOURCES + 1));
        sources.count(late, at(30));
        assert_eq!(sources.throttled(later, at(40)), Some(Duration::from_secs(50)), "the overflow's count is shared");
        sources.count(later, at(61));
        assert_eq!(sources.counts.lock().expect("lock").len(), 2, "the ended minutes are dropped");
        assert_eq!(sources.throttled(later, at(61)), Some(Duration::from_secs(60)));
        assert_eq!(sources.throttled(address(0), at(61)), None);
    }
}
