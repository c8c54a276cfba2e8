//! What the conversations API and the inbox show of a conversation: its state for a person
//! ([`InboxState`], decided from the record alone) and the opaque id a conversation goes by in
//! their URLs ([`ConversationRef`]).
use crate::conversation::{ConversationKey, ConversationRecord, ConversationStatus, ROLE_USER};
use base64::Engine;

/// Where a conversation stands for the company's people.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InboxState {
    /// Handed to a person (a hand-off rule, a send whose outcome is unknown, a failed AI) and
    /// nobody has taken it yet.
    HandedOff,
    /// An agent took it over and the recipient wrote last: the agent owes an answer.
    WaitingForPerson,
    /// The AI is answering it, or an agent took it over and answered last.
    Open,
    /// Closed by an agent, ended by an opt-out, never started, or idle past the company's
    /// inactivity period: an answer to it goes to a person, not the AI.
    Closed,
}

impl InboxState {
    pub const ALL: [InboxState; 4] =
        [InboxState::HandedOff, InboxState::WaitingForPerson, InboxState::Open, InboxState::Closed];

    pub fn as_str(self) -> &'static str {
        match self {
            InboxState::HandedOff => "handed_off",
            InboxState::WaitingForPerson => "waiting_for_person",
            InboxState::Open => "open",
            InboxState::Closed => "closed",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        InboxState::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// The state of `record`, `idle_days` after which a quiet conversation counts as closed,
    /// at `now`. A time that does not read counts as recent.
    pub fn of(record: &ConversationRecord, idle_days: u32, now: chrono::DateTime<chrono::Utc>) -> Self {
        // Failed before its first message went out; one still being written or sent is open.
        let in_progress =
            matches!(record.conversation_status, ConversationStatus::Processing | ConversationStatus::Sending);
        let never_started = !record.conversation_status.first_message_out() && !in_progress;
        let idle = idle_past(record, idle_days, now);
        if record.closed_at.is_some()
            || record.task_complete == 1
            || record.conversation_status == ConversationStatus::RecipientOptedOut
            || never_started
            || idle
        {
            InboxState::Closed
        } else if record.taken_over_by.is_some() {
            let recipient_last = record.messages.last().is_some_and(|m| m.role == ROLE_USER);
            if recipient_last {
                InboxState::WaitingForPerson
            } else {
                InboxState::Open
            }
        } else if record.hand_off_to_human {
            InboxState::HandedOff
        } else {
            InboxState::Open
        }
    }

    /// Whether a person may answer the recipient: the AI is not answering and it is not closed.
    pub fn person_may_answer(self) -> bool {
        matches!(self, InboxState::HandedOff | InboxState::WaitingForPerson | InboxState::Open)
    }
}

/// Whether nothing happened in the conversation (`updated_at`) for more than `days` at `now`:
/// it counts as closed. A time that does not read counts as recent.
pub fn idle_past(record: &ConversationRecord, days: u32, now: chrono::DateTime<chrono::Utc>) -> bool {
    chrono::DateTime::parse_from_rfc3339(&record.updated_at)
        .is_ok_and(|at| now.signed_duration_since(at) > chrono::Duration::days(i64::from(days)))
}

/// A conversation's id in the API: its record's key, base64url without padding (a conversation
/// id holds `#`, and the key needs the recipient too). Not a secret: the API checks the company
/// of every record it reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConversationRef(pub ConversationKey);

impl ConversationRef {
    pub fn encode(key: &ConversationKey) -> String {
        let joined = format!("{}\n{}", key.primary_channel, key.conversation_id);
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(joined)
    }

    /// The key `text` encodes; `None` for anything [`ConversationRef::encode`] did not make.
    pub fn decode(text: &str) -> Option<ConversationKey> {
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(text).ok()?;
        let joined = String::from_utf8(bytes).ok()?;
        let (primary_channel, conversation_id) = joined.split_once('\n')?;
        (!primary_channel.is_empty() && !conversation_id.is_empty() && !conversation_id.contains('\n')).then(|| {
            ConversationKey { primary_channel: primary_channel.into(), conversation_id: conversation_id.into() }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conversation::{Message, ROLE_ASSISTANT, ROLE_HUMAN};

    fn now() -> chrono::DateTime<chrono::Utc> {
        "2026-12-07T12:00:00Z".parse().expect("time")
    }

    fn record() -> ConversationRecord {
        let mut record: ConversationRecord = serde_json::from_value(serde_json::json!({
            "primary_channel": "+447835065013", "conversation_id": "ci#pi#r#+44", "company_id": "ci",
            "project_id": "pi", "request_id": "r", "channel_method": "whatsapp", "company_name": null,
            "project_name": null, "allowed_channels": ["whatsapp"], "project_status": "active",
            "auto_queue_initial_message": false, "auto_queue_initial_message_from_number": null,
            "auto_queue_initial_message_from_email": null, "auto_queue_reply_message": false,
            "auto_queue_reply_message_from_number": null, "auto_queue_reply_message_from_email": null,
            "company_rep": null, "ai_config": {}, "channel_config": {}, "router_version": null,
            "recipient_first_name": null, "recipient_last_name": null, "recipient_tel": "+447835065013",
            "recipient_email": null, "comms_consent": true, "project_data": null, "processor_version": "1",
            "conversation_status": "initial_message_sent", "messages": [], "created_at": "2026-12-07T11:00:00Z",
            "updated_at": "2026-12-07T11:00:00Z", "task_complete": 0, "initial_request_timestamp": null,
            "email_id": null, "function_call": false, "function_call_type": null, "thread_id": null,
            "hand_off_to_human": false, "hand_off_to_human_reason": null
        }))
        .expect("record");
        record.messages.push(Message { role: ROLE_ASSISTANT.into(), ..Default::default() });
        record
    }

    #[test]
    fn a_conversation_is_in_the_state_a_person_would_file_it_under() {
        let mut r = record();
        assert_eq!(InboxState::of(&r, 30, now()), InboxState::Open, "the AI answers it");
        r.hand_off_to_human = true;
        assert_eq!(InboxState::of(&r, 30, now()), InboxState::HandedOff);
        r.taken_over_by = Some("carol".into());
        r.messages.push(Message { role: ROLE_USER.into(), ..Default::default() });
        assert_eq!(InboxState::of(&r, 30, now()), InboxState::WaitingForPerson, "the recipient wrote last");
        r.messages.push(Message { role: ROLE_HUMAN.into(), agent: Some("carol".into()), ..Default::default() });
        assert_eq!(InboxState::of(&r, 30, now()), InboxState::Open, "carol answered");
        r.closed_at = Some("2026-12-07T11:30:00Z".into());
        assert_eq!(InboxState::of(&r, 30, now()), InboxState::Closed);

        let mut idle = record();
        idle.updated_at = "2026-10-01T00:00:00Z".into();
        assert_eq!(InboxState::of(&idle, 30, now()), InboxState::Closed, "idle past the inactivity period");
        let mut stopped = record();
        stopped.conversation_status = ConversationStatus::RecipientOptedOut;
        assert_eq!(InboxState::of(&stopped, 30, now()), InboxState::Closed);
        let mut failed = record();
        failed.conversation_status = ConversationStatus::FailedToProcessAi;
        assert_eq!(InboxState::of(&failed, 30, now()), InboxState::Closed, "nothing was ever sent");
        failed.conversation_status = ConversationStatus::Sending;
        assert_eq!(InboxState::of(&failed, 30, now()), InboxState::Open, "its first message is on its way");
        for state in InboxState::ALL {
            assert_eq!(InboxState::parse(state.as_str()), Some(state));
        }
    }

    #[test]
    fn a_conversation_ref_carries_its_key_and_nothing_else_reads_as_one() {
        let key = ConversationKey { primary_channel: "+447835065013".into(), conversation_id: "ci#pi#r#+44".into() };
        let text = ConversationRef::encode(&key);
        assert!(text.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'), "{text}");
        assert_eq!(ConversationRef::decode(&text), Some(key));
        for bad in ["", "!!", "bm9uZXdsaW5l", "Cg"] {
            assert_eq!(ConversationRef::decode(bad), None, "{bad}");
        }
    }
}
