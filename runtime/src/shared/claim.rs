//! The "never send twice" decisions, as pure functions of what the record says: no I/O, so every
//! branch is unit-tested here. The record's status is the send's lock (`processing` → `sending`
//! is the first message's claim, a reply turn's is `sending_reply`); the pipelines and the store
//! only carry these decisions out.
use multicomms_wire::conversation::ConversationStatus;
use std::time::Duration;

/// The attributes of a conversation record that decide what a delivery does.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordState {
    pub status: ConversationStatus,
    /// When the status last changed (the claim's time while `sending`), as stored.
    pub updated_at: String,
    /// The token of the attempt working on the record: while `processing` the one preparing the
    /// message (absent once it gave up), from `sending` on the one that claimed the send.
    pub claim_id: Option<String>,
}

/// What a delivery does about a record that already exists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OnExisting {
    /// Nothing went out yet (`processing`) and nobody is working on it any more: take it over.
    Resume,
    /// Another attempt may still be asking the AI or talking to the provider: ask again later
    /// (a second AI call would buy the same tokens twice).
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

/// The decision for delivery `token` that found `state`. A claim (or, while `processing`, the
/// record's worker) younger than `grace` (the provider timeout plus a margin) may still be in
/// use, unless this is the queue's `last_receive`. A claim time that cannot be read counts as
/// old; one in the future (another machine's clock) counts as young: clock trouble can only
/// cause a hand-off or a second AI call, never a second send.
pub fn on_existing(
    state: &RecordState,
    token: &str,
    now: chrono::DateTime<chrono::Utc>,
    grace: Duration,
    last_receive: bool,
) -> OnExisting {
    match state.status {
        // An SDK retry of this delivery's own create finds its own token.
        ConversationStatus::Processing if state.claim_id.as_deref() == Some(token) => OnExisting::Resume,
        ConversationStatus::Processing => match (&state.claim_id, in_flight(state, now, grace, last_receive)) {
            (Some(_), None) => OnExisting::Wait,
            // Given up (no worker), or its worker stopped or has no receive left to wait with.
            _ => OnExisting::Resume,
        },
        ConversationStatus::Sending => match in_flight(state, now, grace, last_receive) {
            None => OnExisting::Wait,
            Some(reason) => OnExisting::HandOff(reason),
        },
        _ => OnExisting::Duplicate,
    }
}

/// A send claim found by another attempt: `None` while it may still be in use (wait), else why
/// a person must check (it is never sent again).
fn in_flight(
    state: &RecordState,
    now: chrono::DateTime<chrono::Utc>,
    grace: Duration,
    last_receive: bool,
) -> Option<&'static str> {
    if !claim_is_young(&state.updated_at, now, grace) {
        Some(STOPPED_WHILE_SENDING)
    } else if last_receive {
        Some(STILL_SENDING_ON_LAST_RECEIVE)
    } else {
        None
    }
}

/// What a reply turn does once it holds the conversation's lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OnReply {
    /// The conversation is waiting for an answer: answer it.
    Proceed,
    /// The first message is still being sent, or another turn's reply may still be: later.
    Wait,
    /// A reply may have been sent and not recorded: a person must check; never sent again.
    NeedsAttention(&'static str),
    /// No AI answers this conversation (handed to a person, or it never started): the
    /// recipient's messages go to the hand-off queue.
    HandOff(&'static str),
}

pub const HANDED_OFF: &str = "the conversation is handed off to a person";
pub const NEVER_STARTED: &str = "the conversation's first message was not sent";

/// The decision for a reply turn on a record in `state`; `handed_off` is its
/// `hand_off_to_human`. The same claim rules as the first message: a `sending_reply` claim is
/// waited for while young and handed off when old, never repeated.
pub fn on_reply(
    state: &RecordState,
    handed_off: bool,
    now: chrono::DateTime<chrono::Utc>,
    grace: Duration,
    last_receive: bool,
) -> OnReply {
    match state.status {
        ConversationStatus::SendingReply => match in_flight(state, now, grace, last_receive) {
            None => OnReply::Wait,
            Some(reason) => OnReply::NeedsAttention(reason),
        },
        _ if handed_off => OnReply::HandOff(HANDED_OFF),
        ConversationStatus::InitialMessageSent | ConversationStatus::ReplySent | ConversationStatus::Retry => {
            OnReply::Proceed
        }
        ConversationStatus::Processing | ConversationStatus::Sending if !last_receive => OnReply::Wait,
        _ => OnReply::HandOff(NEVER_STARTED),
    }
}

fn claim_is_young(claimed_at: &str, now: chrono::DateTime<chrono::Utc>, grace: Duration) -> bool {
    chrono::DateTime::parse_from_rfc3339(claimed_at)
        .is_ok_and(|at| now.signed_duration_since(at).to_std().map_or(true, |age| age < grace))
}

/// Whether a claim whose conditional write failed is this attempt's after all: an SDK retry of
/// a write that landed finds `sending` (a reply's `sending_reply`) with its own token.
pub fn claim_is_ours(found: Option<&RecordState>, token: &str, sending: ConversationStatus) -> bool {
    found.is_some_and(|s| s.status == sending && s.claim_id.as_deref() == Some(token))
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

    /// The decision for a delivery other than the one holding `token-a`.
    fn on_existing_of(
        state: &RecordState,
        now: chrono::DateTime<chrono::Utc>,
        grace: Duration,
        last_receive: bool,
    ) -> OnExisting {
        on_existing(state, "token-b", now, grace, last_receive)
    }

    #[test]
    fn a_record_another_attempt_is_preparing_is_waited_for_while_its_worker_may_live() {
        assert_eq!(on_existing_of(&state(Processing, 5), now(), GRACE, false), OnExisting::Wait);
        assert_eq!(on_existing_of(&state(Processing, 181), now(), GRACE, false), OnExisting::Resume, "worker gone");
        assert_eq!(on_existing_of(&state(Processing, 5), now(), GRACE, true), OnExisting::Resume, "last receive");
    }

    #[test]
    fn a_record_nobody_is_preparing_or_this_deliverys_own_is_resumed_nothing_went_out() {
        let given_up = RecordState { claim_id: None, ..state(Processing, 5) };
        assert_eq!(on_existing_of(&given_up, now(), GRACE, false), OnExisting::Resume);
        assert_eq!(on_existing(&state(Processing, 5), "token-a", now(), GRACE, false), OnExisting::Resume);
    }

    #[test]
    fn a_young_claim_is_waited_for_unless_no_receive_is_left() {
        assert_eq!(on_existing_of(&state(Sending, 30), now(), GRACE, false), OnExisting::Wait);
        assert_eq!(
            on_existing_of(&state(Sending, 30), now(), GRACE, true),
            OnExisting::HandOff(STILL_SENDING_ON_LAST_RECEIVE)
        );
    }

    #[test]
    fn an_old_claim_is_handed_off_never_resent() {
        assert_eq!(
            on_existing_of(&state(Sending, 181), now(), GRACE, false),
            OnExisting::HandOff(STOPPED_WHILE_SENDING)
        );
        let unreadable = RecordState { updated_at: "yesterday".into(), ..state(Sending, 0) };
        assert_eq!(on_existing_of(&unreadable, now(), GRACE, false), OnExisting::HandOff(STOPPED_WHILE_SENDING));
    }

    #[test]
    fn a_claim_from_a_clock_ahead_of_ours_counts_as_young() {
        assert_eq!(on_existing_of(&state(Sending, -60), now(), GRACE, false), OnExisting::Wait);
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
            assert_eq!(on_existing_of(&state(status, 1_000), now(), GRACE, false), OnExisting::Duplicate, "{status}");
        }
    }

    #[test]
    fn a_reply_turn_answers_only_a_conversation_waiting_for_one() {
        for status in [InitialMessageSent, ReplySent, Retry] {
            assert_eq!(on_reply(&state(status, 1), false, now(), GRACE, false), OnReply::Proceed, "{status}");
            assert_eq!(on_reply(&state(status, 1), true, now(), GRACE, false), OnReply::HandOff(HANDED_OFF));
        }
        assert_eq!(on_reply(&state(Processing, 1), false, now(), GRACE, false), OnReply::Wait, "first message pending");
        assert_eq!(on_reply(&state(Sending, 1), false, now(), GRACE, true), OnReply::HandOff(NEVER_STARTED));
        for status in [FailedToProcessAi, FailedToSendReply, SendOutcomeUnknown, Other] {
            assert_eq!(on_reply(&state(status, 1), false, now(), GRACE, false), OnReply::HandOff(NEVER_STARTED));
        }
    }

    #[test]
    fn a_reply_claim_follows_the_first_messages_rules() {
        assert_eq!(on_reply(&state(SendingReply, 30), true, now(), GRACE, false), OnReply::Wait);
        assert_eq!(
            on_reply(&state(SendingReply, 30), false, now(), GRACE, true),
            OnReply::NeedsAttention(STILL_SENDING_ON_LAST_RECEIVE)
        );
        assert_eq!(
            on_reply(&state(SendingReply, 181), false, now(), GRACE, false),
            OnReply::NeedsAttention(STOPPED_WHILE_SENDING)
        );
    }

    #[test]
    fn a_failed_claim_write_is_ours_only_with_our_token() {
        assert!(claim_is_ours(Some(&state(Sending, 0)), "token-a", Sending), "an SDK retry of a claim that landed");
        assert!(!claim_is_ours(Some(&state(Sending, 0)), "token-b", Sending), "claim lost to another attempt");
        assert!(!claim_is_ours(Some(&state(InitialMessageSent, 0)), "token-a", Sending), "finished meanwhile");
        assert!(!claim_is_ours(None, "token-a", Sending));
        assert!(claim_is_ours(Some(&state(SendingReply, 0)), "token-a", SendingReply), "a reply's claim");
    }
}
