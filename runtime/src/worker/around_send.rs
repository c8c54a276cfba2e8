//! The writes around a send, as both flows make them: retried through an AWS outage for as
//! long as other deliveries wait for the claim, and the original's CRITICAL alarm when the
//! record of a send that happened still fails.
use super::metrics::Metrics;
use crate::shared::failure::Failure;
use multicomms_wire::conversation::ConversationStatus;
use std::future::Future;
use std::time::{Duration, Instant};

/// A write around the send (the claim, the record of the send), retried on transient failures
/// (an AWS outage) with backoff from 1 s to 15 s, while `started` is younger than `grace`, the
/// time other deliveries wait for the claim: failing it later would leave a claim nobody knows
/// the fate of, which ends in a hand-off. The writes passed here are safe to repeat.
pub async fn through_outage<T, W, F>(started: Instant, grace: Duration, what: &str, mut write: W) -> Result<T, Failure>
where
    W: FnMut() -> F,
    F: Future<Output = Result<T, Failure>>,
{
    let mut pause = Duration::from_secs(1);
    loop {
        match write().await {
            Err(Failure::Transient(e)) if started.elapsed() + pause < grace => {
                tracing::warn!(error = %e, retry_in_s = pause.as_secs(), "{what} failed; retrying");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(15));
            }
            result => return result,
        }
    }
}

/// A send the provider accepted whose final record update failed.
pub struct Unrecorded<'a> {
    /// "Message" (the first message) or "Reply".
    pub what: &'static str,
    pub message_id: &'a str,
    pub conversation_id: &'a str,
    /// The status the record should have.
    pub status: ConversationStatus,
    pub response_id: &'a str,
    /// The first message's processing time, which its record keeps.
    pub processing_time_ms: Option<u64>,
}

/// The original's CRITICAL alarm, word for word, and its counter: someone must put the record
/// right by hand.
pub fn sent_but_not_recorded(metrics: &Metrics, unrecorded: &Unrecorded<'_>, error: &Failure) {
    metrics.sent_but_record_update_failed.inc();
    let processing_time =
        unrecorded.processing_time_ms.map(|ms| format!(", processing_time='{ms}'")).unwrap_or_default();
    tracing::error!(
        critical = true,
        message_id = %unrecorded.message_id,
        error = %error,
        "CRITICAL: {} sent (SID: {}) for conversation {}, but final DynamoDB update failed. \
         Manual intervention required to update record. Data to update: status='{}', response_id='{}'{processing_time}",
        unrecorded.what,
        unrecorded.message_id,
        unrecorded.conversation_id,
        unrecorded.status,
        unrecorded.response_id,
    );
}
