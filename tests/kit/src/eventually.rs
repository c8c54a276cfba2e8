//! Tests wait on state, never on time: [`eventually`] polls a check until it holds, and fails
//! with what was awaited when it does not within its budget; [`eventually_ok`] also hands back
//! what the check found, and says what it saw last when it fails; [`within`] returns that
//! instead of failing.
use std::fmt::Debug;
use std::future::Future;
use std::time::Duration;

/// How often a check is polled.
const POLL: Duration = Duration::from_millis(20);

/// Polls `check` until it returns true; panics naming `what` when `timeout` (scaled by
/// `MULTICOMMS_TEST_TIMEOUT_SCALE`, e.g. `3` on a loaded machine) passes first.
pub async fn eventually<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    eventually_ok(what, timeout, || {
        let checked = check();
        async move {
            if checked.await {
                Ok(())
            } else {
                Err("not yet")
            }
        }
    })
    .await
}

/// Polls `check` until it returns `Ok`, and returns its value; panics naming `what` and the
/// last `Err` (what the check saw instead) when the scaled `timeout` passes first.
pub async fn eventually_ok<T, E, F, Fut>(what: &str, timeout: Duration, check: F) -> T
where
    E: Debug,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let budget = timeout.mul_f64(scale());
    match within(timeout, check).await {
        Ok(value) => value,
        Err(seen) => panic!("{what}: not within {budget:?}; last seen: {seen:#?}"),
    }
}

/// Polls `check` until it returns `Ok`; its last `Err` when the scaled `timeout` passes first
/// (for a test that gathers more evidence before it fails).
pub async fn within<T, E, F, Fut>(timeout: Duration, mut check: F) -> Result<T, E>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let budget = timeout.mul_f64(scale());
    let started = tokio::time::Instant::now();
    loop {
        match check().await {
            Ok(value) => return Ok(value),
            Err(seen) if started.elapsed() >= budget => return Err(seen),
            Err(_) => tokio::time::sleep(POLL).await,
        }
    }
}

/// `MULTICOMMS_TEST_TIMEOUT_SCALE`, 1 when unset or not a positive number.
fn scale() -> f64 {
    let scale = std::env::var("MULTICOMMS_TEST_TIMEOUT_SCALE").ok().and_then(|s| s.parse::<f64>().ok());
    scale.filter(|s| *s > 0.0).unwrap_or(1.0)
}
