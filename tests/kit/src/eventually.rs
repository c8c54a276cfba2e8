//! Tests wait on state, never on time: [`eventually`] polls a check until it holds, and fails
//! with what was awaited when it does not within its budget.
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
    let scale = std::env::var("MULTICOMMS_TEST_TIMEOUT_SCALE").ok().and_then(|s| s.parse::<f64>().ok());
    let budget = timeout.mul_f64(scale.filter(|s| *s > 0.0).unwrap_or(1.0));
    let started = tokio::time::Instant::now();
    while !check().await {
        assert!(started.elapsed() < budget, "{what}: not within {budget:?}");
        tokio::time::sleep(POLL).await;
    }
}
