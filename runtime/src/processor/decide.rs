//! The "never send twice" decisions, as pure functions of what the record says: no I/O, so every
//! branch is unit-tested here. The record's status is the send's lock (`processing` → `sending`
//! is the claim); the pipeline and the store only carry these decisions out.
use multicomms_wire::conversation::ConversationStatus;
use std::time::Duration;

/// The attributes of a conversation record that decide what a delivery does.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordState {
    pub status: ConversationStatus,
    /// When the status last changed (the claim's time while `sending`), as stored.
    pub updated_at: String,
    /// The token of the attempt that claimed the send.
    pub claim_id: Option<String>,
}

/// What a delivery does about a record that already exists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OnExisting {
    /// Nothing went out yet (`processing`): work on it.
    Resume,
    /// Another attempt may still be talking to the provider: ask again later.
    Wait,
    /// The send may have happened, and no later delivery will find out: a person must check.
    HandOff(&'static str),
    /// Finished (sent, failed, handed off, or moved on to another flow): nothing to do.
    Duplicate,
}

pub const STOPPED_WHILE_SENDING: &str = "send: an earlier attempt stopped while sending; the message may have been \
     delivered, so it is not sent again";
pub const STILL_SENDING_ON_LAST_RECEIVE: &str = "send: an attempt was still sending when the message reached its last \
     receive; the message may have been delivered, so it is handed off instead of dead-lettered";

/// The decision for a delivery that found `state`. A claim younger than `grace` (the provider
/// timeout plus a margin) may still be in use, unless this is the queue's `last_receive`. A
/// claim time that cannot be read counts as old; one in the future (another machine's clock)
/// counts as young: clock trouble can only cause a hand-off, never a second send.
pub fn on_existing(
    state: &RecordState,
    now: chrono::DateTime<chrono::Utc>,
    grace: Duration,
    last_receive: bool,
) -> OnExisting {
    match state.status {
        ConversationStatus::Processing => OnExisting::Resume,
        ConversationStatus::Sending if claim_is_young(&state.updated_at, now, grace) => {
            if last_receive {
                OnExisting::HandOff(STILL_SENDING_ON_LAST_RECEIVE)
            } else {
                OnExisting::Wait
            }
        }
        ConversationStatus::Sending => OnExisting::HandOff(STOPPED_WHILE_SENDING),
        _ => OnExisting::Duplicate,
    }
}

fn claim_is_young(claimed_at: &str, now: chrono::DateTime<chrono::Utc>, grace: Duration) -> bool {
    chrono::DateTime::parse_from_rfc3339(claimed_at)
        .is_ok_and(|at| now.signed_duration_since(at).to_std().map_or(true, |age| age < grace))
}

/// Whether a claim whose conditional write failed is this attempt's after all: an SDK retry of
/// a write that landed finds `sending` with its own token.
pub fn claim_is_ours(found: Option<&RecordState>, token: &str) -> bool {
    found.is_some_and(|s| s.status == ConversationStatus::Sending && s.claim_id.as_deref() == Some(token))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ConversationStatus::*;

    const GRACE: Duration = Duration::from_secs(180);

    fn now() -> chrono::DateTime<chrono::Utc> {
        "2026-11-29T12:00:00Z".parse().expect("time")
    }

    fn state(status: ConversationStatus, seconds_ago: i64) -> RecordState {
        let at = now() - chrono::Duration::seconds(seconds_ago);
        RecordState {
            status,
            updated_at: at.to_rfc3339_opts(chrono::SecondsFormat::Micros, false),
            claim_id: Some("token-a".into()),
        }
    }

    #[test]
    fn a_record_still_processing_is_resumed_nothing_went_out() {
        assert_eq!(on_existing(&state(Processing, 5), now(), GRACE, false), OnExisting::Resume);
        assert_eq!(on_existing(&state(Processing, 5), now(), GRACE, true), OnExisting::Resume);
    }

    #[test]
    fn a_young_claim_is_waited_for_unless_no_receive_is_left() {
        assert_eq!(on_existing(&state(Sending, 30), now(), GRACE, false), OnExisting::Wait);
        assert_eq!(
            on_existing(&state(Sending, 30), now(), GRACE, true),
            OnExisting::HandOff(STILL_SENDING_ON_LAST_RECEIVE)
        );
    }

    #[test]
    fn an_old_claim_is_handed_off_never_resent() {
        assert_eq!(on_existing(&state(Sending, 181), now(), GRACE, false), OnExisting::HandOff(STOPPED_WHILE_SENDING));
        let unreadable = RecordState { updated_at: "yesterday".into(), ..state(Sending, 0) };
        assert_eq!(on_existing(&unreadable, now(), GRACE, false), OnExisting::HandOff(STOPPED_WHILE_SENDING));
    }

    #[test]
    fn a_claim_from_a_clock_ahead_of_ours_counts_as_young() {
        assert_eq!(on_existing(&state(Sending, -60), now(), GRACE, false), OnExisting::Wait);
    }

    #[test]
    fn finished_and_failed_records_are_duplicates() {
        for status in [
            InitialMessageSent,
            SendOutcomeUnknown,
            FailedToProcessAi,
            FailedToSendMessage,
            FailedSecretsFetch,
            FailedNoConsent,
            Other,
        ] {
            assert_eq!(on_existing(&state(status, 1_000), now(), GRACE, false), OnExisting::Duplicate, "{status}");
        }
    }

    #[test]
    fn a_failed_claim_write_is_ours_only_with_our_token() {
        assert!(claim_is_ours(Some(&state(Sending, 0)), "token-a"), "an SDK retry of a claim that landed");
        assert!(!claim_is_ours(Some(&state(Sending, 0)), "token-b"), "claim lost to another attempt");
        assert!(!claim_is_ours(Some(&state(InitialMessageSent, 0)), "token-a"), "finished meanwhile");
        assert!(!claim_is_ours(None, "token-a"));
    }
}
