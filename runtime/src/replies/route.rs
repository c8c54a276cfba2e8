//! Where an inbound message goes, as pure functions: which conversation it belongs to, the
//! spec's gates (replies-engine §2.1 step 7) and its hand-off rules (step 8, plus a conversation
//! already handed off, which the original ignored). The company's current record decides, so a
//! change committed to its YAML applies to conversations already under way.
use super::refusal::Refusal;
use multicomms_wire::company::PROJECT_ACTIVE;
use multicomms_wire::conversation::{ConversationRecord, ROLE_ASSISTANT};
use multicomms_wire::replies::Fragment;
use multicomms_wire::{ChannelKind, CompanyRecord};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// Not answered by anyone: acknowledged, logged with this code.
    Refuse(Refusal),
    /// To a person, with the rule that sent it.
    HandOff(String),
    /// Staged for the AI's reply.
    Reply,
}

/// The conversation a message answers: the newest of those not complete (the original took
/// whichever its index returned first), preferring one whose first message went out (a newer
/// conversation that failed must not capture the answer to a live one).
pub fn active_newest(conversations: Vec<ConversationRecord>) -> Option<ConversationRecord> {
    conversations
        .into_iter()
        .filter(|c| c.task_complete == 0)
        .max_by(|a, b| (started(a), &a.created_at).cmp(&(started(b), &b.created_at)))
}

/// The most replies the AI sends in one conversation: each turn sends the whole history, so a
/// turn's cost grows with the conversation (review r3, L4); past it, a person takes over.
pub const MAX_AI_REPLIES: usize = 50;
/// The most AI tokens one conversation may spend.
pub const MAX_AI_TOKENS: u64 = 500_000;
/// The largest a conversation record may be before a turn adds the messages and the reply:
/// DynamoDB refuses items over 400 KB, and a reply sent but not recorded is worse than none.
pub const MAX_RECORD_BYTES: usize = 300 * 1024;
/// Room kept for the reply itself.
const REPLY_ALLOWANCE_BYTES: usize = 8 * 1024;

/// Why the AI must not answer `fragments` in `conversation` (a limit it reached), if it must not.
pub fn over_limits(conversation: &ConversationRecord, fragments: &[Fragment]) -> Option<String> {
    // The first message is the company's, not a reply.
    let replies = conversation.messages.iter().filter(|m| m.role == ROLE_ASSISTANT).count().saturating_sub(1);
    if replies >= MAX_AI_REPLIES {
        return Some(format!("the conversation reached its limit of {MAX_AI_REPLIES} AI replies"));
    }
    let tokens: u64 = conversation.messages.iter().map(|m| m.total_tokens).sum();
    if tokens >= MAX_AI_TOKENS {
        return Some(format!("the conversation spent its {MAX_AI_TOKENS} AI tokens"));
    }
    let stored = serde_json::to_string(conversation).map_or(usize::MAX, |s| s.len());
    let added: usize = fragments.iter().map(|f| f.body.len() + 256).sum::<usize>() + REPLY_ALLOWANCE_BYTES;
    if stored.saturating_add(added) > MAX_RECORD_BYTES {
        return Some(format!("the conversation's record would outgrow {} KB", MAX_RECORD_BYTES / 1024));
    }
    None
}

/// How long after a recipient's last message WhatsApp takes a free-form message from the
/// company (its customer service window); after it only an approved template goes, and Twilio
/// fails anything else (error 63016).
pub const WHATSAPP_WINDOW_MS: u64 = 24 * 3600 * 1000;

/// Why a WhatsApp reply to `fragments` must not be sent free-form at `now_ms`: the window their
/// newest message opened shuts before a reply started now could reach Twilio (`margin`: the
/// longest an AI call and a send may take). Asked before the AI is paid for.
pub fn outside_whatsapp_window(
    channel: ChannelKind,
    fragments: &[Fragment],
    now_ms: u64,
    margin: std::time::Duration,
) -> Option<String> {
    let last_inbound = fragments.iter().map(|f| f.received_at_ms).max()?;
    let shuts = last_inbound.saturating_add(WHATSAPP_WINDOW_MS);
    let due = now_ms.saturating_add(margin.as_millis() as u64);
    (channel == ChannelKind::Whatsapp && due >= shuts).then(|| {
        let hours = now_ms.saturating_sub(last_inbound) / 3_600_000;
        format!("the recipient's last message is {hours} h old: WhatsApp's 24-hour window is shut, so no free-form reply can go")
    })
}

/// Why the conversation counts as closed: nothing happened in it (`updated_at`) for longer than
/// the company's inactivity period. An unreadable time counts as recent.
fn closed_by_inactivity(
    company: &CompanyRecord,
    conversation: &ConversationRecord,
    now: chrono::DateTime<chrono::Utc>,
) -> Option<String> {
    let days = company.inactivity_days();
    multicomms_wire::inbox::idle_past(conversation, days, now)
        .then(|| format!("the conversation closed after {days} days without activity; the recipient wrote again"))
}

/// Whether the conversation's first message went out (or may have).
pub fn started(conversation: &ConversationRecord) -> bool {
    conversation.conversation_status.first_message_out()
}

/// Where an answer to `conversation` on `channel` goes, at `now`.
pub fn route(
    company: Option<&CompanyRecord>,
    conversation: &ConversationRecord,
    channel: ChannelKind,
    now: chrono::DateTime<chrono::Utc>,
) -> Route {
    let Some(company) = company else { return Route::Refuse(Refusal::CompanyNotFound) };
    if company.project_status != PROJECT_ACTIVE {
        return Route::Refuse(Refusal::ProjectInactive);
    }
    if !company.allowed_channels.contains(&channel) {
        return Route::Refuse(Refusal::ChannelNotAllowed);
    }
    let listed = |list: &[String], who: &Option<String>| who.as_ref().is_some_and(|w| list.contains(w));
    if company.auto_queue_reply_message {
        Route::HandOff("auto_queue_reply_message: the company answers every reply in person".into())
    } else if channel != ChannelKind::Email
        && listed(&company.auto_queue_reply_message_from_number, &conversation.recipient_tel)
    {
        Route::HandOff("auto_queue_reply_message_from_number lists this recipient".into())
    } else if channel == ChannelKind::Email
        && listed(&company.auto_queue_reply_message_from_email, &conversation.recipient_email)
    {
        Route::HandOff("auto_queue_reply_message_from_email lists this recipient".into())
    } else if let Some(closed_at) = &conversation.closed_at {
        let by = conversation.closed_by.as_deref().unwrap_or("an agent");
        Route::HandOff(format!("{by} closed the conversation at {closed_at}; the recipient wrote again"))
    } else if let Some(closed) = closed_by_inactivity(company, conversation, now) {
        Route::HandOff(closed)
    } else if conversation.hand_off_to_human {
        let why = conversation.hand_off_to_human_reason.as_deref().unwrap_or("no reason recorded");
        Route::HandOff(format!("the conversation is handed off to a person ({why})"))
    } else {
        Route::Reply
    }
}

#[cfg(test)]
pub(crate) mod tests {
    fn now() -> chrono::DateTime<chrono::Utc> {
        "2026-12-07T12:00:00Z".parse().expect("time")
    }

    #[test]
    fn a_whatsapp_reply_that_would_reach_twilio_after_the_window_shuts_is_not_sent_free_form() {
        use super::super::turn::tests::at;
        let margin = std::time::Duration::from_secs(180);
        let opened = 1_000_000;
        let fragments = [at(opened - 5_000), at(opened)];
        let shuts = opened + WHATSAPP_WINDOW_MS;
        assert_eq!(outside_whatsapp_window(ChannelKind::Whatsapp, &fragments, shuts - 181_000, margin), None);
        let late = outside_whatsapp_window(ChannelKind::Whatsapp, &fragments, shuts - 179_000, margin);
        assert!(late.is_some_and(|why| why.contains("24-hour")), "within the margin of the window's end");
        assert_eq!(outside_whatsapp_window(ChannelKind::Sms, &fragments, shuts + 1, margin), None, "SMS has no window");
        assert_eq!(outside_whatsapp_window(ChannelKind::Whatsapp, &[], shuts + 1, margin), None);
    }
    use super::*;
    use multicomms_wire::conversation::ConversationStatus;
    use serde_json::json;

    fn company() -> CompanyRecord {
        serde_json::from_value(json!({
            "company_id": "ci", "project_id": "pi", "company_name": "C", "project_name": "P",
            "allowed_channels": ["whatsapp", "sms"], "project_status": "active",
            "rate_limits": {"requests_per_minute": 1, "requests_per_day": 1, "concurrent_conversations": 1,
                            "max_message_length": 1},
            "channel_config": {}
        }))
        .expect("company")
    }

    pub(crate) fn conversation(created_at: &str, task_complete: u8) -> ConversationRecord {
        serde_json::from_value(json!({
            "primary_channel": "+447835065013", "conversation_id": created_at, "company_id": "ci", "project_id": "pi",
            "request_id": "r", "channel_method": "whatsapp", "company_name": null, "project_name": null,
            "allowed_channels": ["whatsapp"], "project_status": "active",
            "auto_queue_initial_message": false, "auto_queue_initial_message_from_number": null,
            "auto_queue_initial_message_from_email": null, "auto_queue_reply_message": false,
            "auto_queue_reply_message_from_number": null, "auto_queue_reply_message_from_email": null,
            "company_rep": null, "ai_config": {}, "channel_config": {}, "router_version": null,
            "recipient_first_name": null, "recipient_last_name": null, "recipient_tel": "+447835065013",
            "recipient_email": null, "comms_consent": true, "project_data": null, "processor_version": "1",
            "conversation_status": "initial_message_sent", "messages": [], "created_at": created_at,
            "updated_at": created_at, "task_complete": task_complete, "initial_request_timestamp": null,
            "email_id": null, "function_call": false, "function_call_type": null, "thread_id": null,
            "hand_off_to_human": false, "hand_off_to_human_reason": null
        }))
        .expect("conversation")
    }

    #[test]
    fn the_active_newest_conversation_is_answered() {
        let found = active_newest(vec![
            conversation("2026-11-01T10:00:00.000000+00:00", 0),
            conversation("2026-11-03T10:00:00.000000+00:00", 1),
            conversation("2026-11-02T10:00:00.000000+00:00", 0),
        ]);
        assert_eq!(found.map(|c| c.created_at), Some("2026-11-02T10:00:00.000000+00:00".into()));
        assert_eq!(active_newest(vec![conversation("2026-11-03T10:00:00.000000+00:00", 1)]), None);
        let failed = ConversationRecord {
            conversation_status: ConversationStatus::FailedToSendMessage,
            ..conversation("2026-11-04T10:00:00.000000+00:00", 0)
        };
        let live = conversation("2026-11-02T10:00:00.000000+00:00", 0);
        let found = active_newest(vec![failed.clone(), live]);
        assert_eq!(found.map(|c| c.created_at), Some("2026-11-02T10:00:00.000000+00:00".into()), "a live one first");
        assert_eq!(
            active_newest(vec![failed]).map(|c| c.conversation_status),
            Some(ConversationStatus::FailedToSendMessage)
        );
    }

    #[test]
    fn the_gates_refuse_before_any_rule() {
        let c = conversation("t", 0);
        assert_eq!(route(None, &c, ChannelKind::Whatsapp, now()), Route::Refuse(Refusal::CompanyNotFound));
        let inactive = CompanyRecord { project_status: "inactive".into(), auto_queue_reply_message: true, ..company() };
        assert_eq!(route(Some(&inactive), &c, ChannelKind::Whatsapp, now()), Route::Refuse(Refusal::ProjectInactive));
        assert_eq!(route(Some(&company()), &c, ChannelKind::Email, now()), Route::Refuse(Refusal::ChannelNotAllowed));
        assert_eq!(route(Some(&company()), &c, ChannelKind::Whatsapp, now()), Route::Reply);
    }

    #[test]
    fn a_conversation_idle_past_the_companys_inactivity_period_is_closed() {
        let closing = CompanyRecord { inactivity_days: Some(30), ..company() };
        let idle = conversation("2026-11-06T11:59:00+00:00", 0);
        assert!(
            matches!(route(Some(&closing), &idle, ChannelKind::Whatsapp, now()), Route::HandOff(r) if r.contains("30 days"))
        );
        let recent = conversation("2026-11-08T12:00:00+00:00", 0);
        assert_eq!(route(Some(&closing), &recent, ChannelKind::Whatsapp, now()), Route::Reply);
        let longer = CompanyRecord { inactivity_days: Some(60), ..company() };
        assert_eq!(route(Some(&longer), &idle, ChannelKind::Whatsapp, now()), Route::Reply, "a longer period");
        assert!(
            matches!(route(Some(&company()), &idle, ChannelKind::Whatsapp, now()), Route::HandOff(r) if r.contains("30 days")),
            "the default"
        );
    }

    #[test]
    fn each_hand_off_rule_sends_to_a_person() {
        let c = conversation("t", 0);
        let global = CompanyRecord { auto_queue_reply_message: true, ..company() };
        assert!(
            matches!(route(Some(&global), &c, ChannelKind::Whatsapp, now()), Route::HandOff(r) if r.starts_with("auto_queue_reply_message:"))
        );
        let listed = CompanyRecord { auto_queue_reply_message_from_number: vec!["+447835065013".into()], ..company() };
        assert!(
            matches!(route(Some(&listed), &c, ChannelKind::Sms, now()), Route::HandOff(r) if r.contains("from_number"))
        );
        let other = CompanyRecord { auto_queue_reply_message_from_number: vec!["+15550000000".into()], ..company() };
        assert_eq!(route(Some(&other), &c, ChannelKind::Sms, now()), Route::Reply);
        let handed_off = ConversationRecord {
            hand_off_to_human: true,
            hand_off_to_human_reason: Some("send_outcome_unknown".into()),
            ..c
        };
        assert!(
            matches!(route(Some(&company()), &handed_off, ChannelKind::Whatsapp, now()), Route::HandOff(r) if r.contains("send_outcome_unknown"))
        );
    }

    #[test]
    fn a_conversation_past_its_limits_goes_to_a_person_instead_of_the_ai() {
        use multicomms_wire::conversation::Message;
        let message = |role: &str, content: String, tokens: u64| Message {
            message_id: "SM".into(),
            timestamp: String::new(),
            role: role.into(),
            content,
            prompt_tokens: 0,
            completion_tokens: 0,
            total_tokens: tokens,
            media: vec![],
            ..Default::default()
        };
        let fragment = |body: &str| Fragment {
            conversation_id: "c".into(),
            message_sid: "SM1".into(),
            primary_channel: "+1".into(),
            channel: Some(ChannelKind::Whatsapp),
            body: body.into(),
            media: vec![],
            received_at: String::new(),
            received_at_ms: 0,
            expires_at: 0,
            handed_off: false,
        };
        let mut talk = conversation("2026-11-01T10:00:00.000000+00:00", 0);
        talk.messages.push(message(ROLE_ASSISTANT, "the first message".into(), 100));
        for _ in 0..MAX_AI_REPLIES - 1 {
            talk.messages.push(message("user", "hi".into(), 0));
            talk.messages.push(message(ROLE_ASSISTANT, "hello".into(), 100));
        }
        assert_eq!(over_limits(&talk, &[fragment("one more")]), None, "one reply left");
        talk.messages.push(message(ROLE_ASSISTANT, "hello".into(), 100));
        let reason = over_limits(&talk, &[fragment("one more")]).expect("replies spent");
        assert!(reason.contains("limit of 50 AI replies"), "{reason}");

        let mut costly = conversation("2026-11-01T10:00:00.000000+00:00", 0);
        costly.messages.push(message(ROLE_ASSISTANT, "x".into(), MAX_AI_TOKENS));
        assert!(over_limits(&costly, &[]).is_some_and(|r| r.contains("AI tokens")));

        let mut long = conversation("2026-11-01T10:00:00.000000+00:00", 0);
        long.messages.push(message("user", "x".repeat(200 * 1024), 0));
        assert_eq!(over_limits(&long, &[fragment("short")]), None);
        let reason = over_limits(&long, &[fragment(&"y".repeat(100 * 1024))]).expect("too large to record");
        assert!(reason.contains("300 KB"), "{reason}");
    }
}
