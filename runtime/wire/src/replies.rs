//! The replies flow's formats (replies-engine §2): a staged inbound message (a *fragment*), the
//! trigger lock, the delayed trigger on a channel's replies queue, and the message on the human
//! hand-off queue. The webhook writes them and the reply processor reads them.
pub use crate::conversation::Media;
use crate::conversation::{ConversationKey, ConversationRecord, CONVERSATION_ID, MESSAGE_SID};
use crate::ChannelKind;
use serde::{Deserialize, Serialize};

/// The batching window when a Company sets none (replies-engine §2.4).
pub const DEFAULT_BATCH_WINDOW_SECONDS: u32 = 10;
/// SQS's longest message delay, so the longest window.
pub const MAX_BATCH_WINDOW_SECONDS: u32 = 900;
/// How long a staged fragment is kept: as long as the replies DLQ keeps its trigger (14 days),
/// so a trigger redriven from the DLQ still finds the text. Consumed fragments are deleted at once.
pub const STAGE_TTL_SECONDS: u64 = 14 * 24 * 3600;
/// The trigger lock outlives its window by this much (the original's buffer); an expired lock
/// counts as absent.
pub const TRIGGER_LOCK_BUFFER_SECONDS: u64 = 60;
/// How long the webhook remembers a `MessageSid` it took: a signed request replayed within it is
/// answered once, whatever conversation is active by then (review r3, L6). Twilio signs no
/// timestamp, so a replay older than this cannot be told from a request.
pub const REPLAY_WINDOW_SECONDS: u64 = 30 * 24 * 3600;

/// Twilio retries one message within minutes: a `MessageSid` seen again within this is a retry
/// (handled as the message, once), after it a replay (changes nothing).
pub const RETRY_GRACE_SECONDS: u64 = 600;
/// A remembered `MessageSid`'s attribute: when it was first seen (epoch seconds).
pub const SEEN_AT: &str = "seen_at";

/// The key under which a `MessageSid` taken for a recipient's numbers is remembered
/// ([`REPLAY_WINDOW_SECONDS`]), in the trigger-lock table: nothing scans that table, while the
/// stage table, which the sweep scans, keeps only messages waiting for a turn. No conversation
/// id starts with `#`. A hash: the rows outlive an erasure of the recipient, so they name no one.
pub fn seen_key(channel: ChannelKind, company_number: &str, recipient: &str, message_sid: &str) -> String {
    use sha2::Digest;
    let mut hash = sha2::Sha256::new();
    for part in [channel.as_str(), company_number, recipient, message_sid] {
        hash.update(part.as_bytes());
        hash.update([0]);
    }
    format!("#seen#{}", hex::encode(hash.finalize()))
}

/// A remembered `MessageSid` (trigger-lock table, key [`seen_key`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeenMarker {
    /// [`seen_key`].
    pub conversation_id: String,
    /// When the webhook first took it (epoch seconds).
    pub seen_at: u64,
    /// TTL (epoch seconds): [`REPLAY_WINDOW_SECONDS`] after `seen_at`.
    pub expires_at: u64,
}

impl SeenMarker {
    pub fn new(key: String, now: u64) -> Self {
        SeenMarker { conversation_id: key, seen_at: now, expires_at: now + REPLAY_WINDOW_SECONDS }
    }

    /// Whether a request carrying this `MessageSid` at `now` replays it: first seen longer ago
    /// than Twilio's retries come.
    pub fn replayed_at(&self, now: u64) -> bool {
        now.saturating_sub(self.seen_at) > RETRY_GRACE_SECONDS
    }
}

/// Trigger-lock attribute: the id of the trigger it stands for.
pub const TRIGGER_ID: &str = "trigger_id";
/// Trigger-lock attribute: when its trigger becomes visible to the reply processors (epoch ms).
pub const FIRES_AT_MS: &str = "fires_at_ms";

/// A message staged this long before its trigger fires is surely in that turn's read (the turn
/// reads after the trigger is delivered); later, it arms a trigger of its own. Covers the clocks
/// of the router replicas and SQS disagreeing (synchronised hosts differ by milliseconds), and
/// is well under the shortest window (1 s).
pub const TRIGGER_FIRING_MARGIN_MS: u64 = 200;

/// The trigger lock of a conversation (trigger-lock table, key `conversation_id`): one delayed
/// trigger per batching window. While its trigger has yet to fire, a message staged for the
/// conversation needs none of its own: that turn reads it. Once it fires (its turn may already
/// have read the stage table), the next message arms the next trigger, so no turn ever has to
/// look for messages staged behind its back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TriggerLock {
    pub conversation_id: String,
    pub trigger_id: String,
    /// Rows written before the field existed have none: they hold until they expire.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fires_at_ms: Option<u64>,
    /// TTL (epoch seconds): the firing time plus [`TRIGGER_LOCK_BUFFER_SECONDS`].
    pub expires_at: u64,
}

impl TriggerLock {
    /// The lock of a new trigger sent at `now_ms` with `delay`.
    pub fn new(conversation_id: &str, trigger_id: &str, now_ms: u64, delay: std::time::Duration) -> Self {
        let fires_at_ms = now_ms + delay.as_millis() as u64;
        TriggerLock {
            conversation_id: conversation_id.to_string(),
            trigger_id: trigger_id.to_string(),
            fires_at_ms: Some(fires_at_ms),
            expires_at: fires_at_ms / 1000 + TRIGGER_LOCK_BUFFER_SECONDS,
        }
    }

    /// Whether a message staged by `now_ms` is surely read by this lock's turn.
    pub fn covers(&self, now_ms: u64) -> bool {
        match self.fires_at_ms {
            Some(fires_at_ms) => now_ms + TRIGGER_FIRING_MARGIN_MS < fires_at_ms,
            None => now_ms / 1000 < self.expires_at,
        }
    }
}

/// One inbound message, staged until its reply turn (stage table: PK `conversation_id`, SK
/// `message_sid`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fragment {
    pub conversation_id: String,
    /// Twilio's `MessageSid`: a retried webhook writes the same row.
    pub message_sid: String,
    /// The recipient's number (the conversation record's partition key).
    pub primary_channel: String,
    /// The channel it came in on: the reply queue a trigger for it goes to. Rows staged before
    /// the field existed have none (their conversation record names the channel).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<ChannelKind>,
    /// The text (empty for a media-only message).
    pub body: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub media: Vec<Media>,
    /// When the webhook received it ([`crate::timestamp`] format).
    pub received_at: String,
    /// The same instant in epoch milliseconds: fragments are ordered by it, then by SID.
    pub received_at_ms: u64,
    /// TTL (epoch seconds); reads skip expired rows, since DynamoDB deletes them lazily.
    pub expires_at: u64,
    /// Marks a message handed to a person, not waiting for a turn: the row only stops a Twilio
    /// retry of it reaching the hand-off queue twice. Turns skip it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub handed_off: bool,
}

impl Fragment {
    pub fn key(&self) -> ConversationKey {
        ConversationKey { primary_channel: self.primary_channel.clone(), conversation_id: self.conversation_id.clone() }
    }

    /// The stage table key of this fragment.
    pub fn stage_key(&self) -> crate::Item {
        use aws_sdk_dynamodb::types::AttributeValue;
        [
            (CONVERSATION_ID.to_string(), AttributeValue::S(self.conversation_id.clone())),
            (MESSAGE_SID.to_string(), AttributeValue::S(self.message_sid.clone())),
        ]
        .into()
    }

    /// What the AI reads for this fragment: the text, and a line per attachment.
    pub fn as_input(&self) -> String {
        let media = self.media.iter().map(|m| format!("[attachment: {} {}]", m.content_type, m.url));
        std::iter::once(self.body.clone()).filter(|b| !b.is_empty()).chain(media).collect::<Vec<_>>().join("\n")
    }

    /// The entry the conversation record keeps of this message (its SID marks it answered).
    pub fn to_message(&self) -> crate::conversation::Message {
        crate::conversation::Message {
            message_id: self.message_sid.clone(),
            timestamp: self.received_at.clone(),
            role: crate::conversation::ROLE_USER.into(),
            content: self.body.clone(),
            media: self.media.clone(),
            ..Default::default()
        }
    }
}

/// Fragments in the order the recipient sent them: receive time (ms), then SID.
pub fn in_order(mut fragments: Vec<Fragment>) -> Vec<Fragment> {
    fragments.sort_by(|a, b| (a.received_at_ms, &a.message_sid).cmp(&(b.received_at_ms, &b.message_sid)));
    fragments
}

/// The delayed message on a channel's replies queue that starts a reply turn (the original's
/// `{conversation_id, primary_channel}`, plus the id of the trigger lock it stands for).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trigger {
    pub conversation_id: String,
    pub primary_channel: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger_id: Option<String>,
}

impl Trigger {
    pub fn key(&self) -> ConversationKey {
        ConversationKey { primary_channel: self.primary_channel.clone(), conversation_id: self.conversation_id.clone() }
    }
}

/// A message for a person instead of the AI, on `{prefix}-replies-human-handoff-queue-{env}`:
/// everything needed to answer by hand, always plain JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HandOffMessage {
    pub conversation_id: String,
    /// The recipient's number: with `conversation_id`, the conversation record's key.
    pub primary_channel: String,
    pub company_id: String,
    pub project_id: String,
    pub channel: ChannelKind,
    /// Who wrote (the recipient's number, without `whatsapp:`).
    pub from: String,
    /// The company's number they wrote to.
    pub to: String,
    /// Why no AI answers: a hand-off rule, or what went wrong in the reply turn.
    pub reason: String,
    /// The recipient's messages, in order.
    pub messages: Vec<HandOffFragment>,
    /// When it was handed off.
    pub handed_off_at: String,
}

impl HandOffMessage {
    /// The hand-off of `fragments` (the recipient's messages on `channel`) of `conversation`.
    pub fn new(
        conversation: &ConversationRecord,
        channel: ChannelKind,
        reason: String,
        fragments: &[Fragment],
    ) -> Self {
        HandOffMessage {
            conversation_id: conversation.conversation_id.clone(),
            primary_channel: conversation.primary_channel.clone(),
            company_id: conversation.company_id.clone(),
            project_id: conversation.project_id.clone(),
            channel,
            from: conversation.primary_channel.clone(),
            to: conversation.company_number(channel).to_string(),
            reason,
            messages: fragments.iter().map(Into::into).collect(),
            handed_off_at: crate::timestamp::now(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HandOffFragment {
    pub message_sid: String,
    pub text: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub media: Vec<Media>,
    pub received_at: String,
}

impl From<&Fragment> for HandOffFragment {
    fn from(f: &Fragment) -> Self {
        HandOffFragment {
            message_sid: f.message_sid.clone(),
            text: f.body.clone(),
            media: f.media.clone(),
            received_at: f.received_at.clone(),
        }
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_remembered_message_sid_names_no_number() {
        let seen = seen_key(ChannelKind::Whatsapp, "+447588713814", "+447835065013", "SM123");
        assert!(
            seen.starts_with("#seen#") && !seen.contains("447835065013") && !seen.contains("447588713814"),
            "{seen}"
        );
        assert_ne!(seen, seen_key(ChannelKind::Whatsapp, "+447588713814", "+447835065014", "SM123"));
    }

    use super::*;

    #[test]
    fn a_trigger_covers_what_is_staged_until_just_before_it_fires() {
        let lock = TriggerLock::new("c", "t", 1_000_000, std::time::Duration::from_secs(2));
        assert_eq!((lock.fires_at_ms, lock.expires_at), (Some(1_002_000), 1_002 + TRIGGER_LOCK_BUFFER_SECONDS));
        assert!(lock.covers(1_000_000) && lock.covers(1_001_799));
        assert!(!lock.covers(1_001_800), "too close to firing: its turn may already have read");
        assert!(!lock.covers(1_005_000), "fired");
        let older_row = TriggerLock { fires_at_ms: None, ..lock };
        assert!(older_row.covers(1_005_000) && !older_row.covers(1_062_000), "a row without it holds until it expires");
    }

    #[test]
    fn a_message_sid_seen_again_after_twilios_retries_is_a_replay() {
        let seen = SeenMarker::new("#seen#x".into(), 1_000);
        assert_eq!(seen.expires_at, 1_000 + REPLAY_WINDOW_SECONDS);
        assert!(!seen.replayed_at(1_000 + RETRY_GRACE_SECONDS), "a retry");
        assert!(seen.replayed_at(1_001 + RETRY_GRACE_SECONDS));
    }

    fn fragment(sid: &str, ms: u64, body: &str) -> Fragment {
        Fragment {
            conversation_id: "c".into(),
            message_sid: sid.into(),
            primary_channel: "+447700900001".into(),
            channel: Some(ChannelKind::Whatsapp),
            body: body.into(),
            media: vec![],
            received_at: String::new(),
            received_at_ms: ms,
            expires_at: 0,
            handed_off: false,
        }
    }

    #[test]
    fn fragments_are_ordered_by_millisecond_then_sid() {
        let ordered =
            in_order(vec![fragment("SM3", 2_001, "c"), fragment("SM2", 2_000, "b"), fragment("SM1", 2_000, "a")]);
        let bodies: Vec<_> = ordered.iter().map(|f| f.body.as_str()).collect();
        assert_eq!(bodies, ["a", "b", "c"]);
    }

    #[test]
    fn a_media_only_fragment_still_has_input() {
        let mut media = fragment("SM1", 0, "");
        media.media.push(Media { url: "https://api.twilio.com/m/ME1".into(), content_type: "image/jpeg".into() });
        assert_eq!(media.as_input(), "[attachment: image/jpeg https://api.twilio.com/m/ME1]");
    }

    #[test]
    fn a_hand_off_message_is_plain_json() {
        let message = HandOffMessage {
            conversation_id: "c".into(),
            primary_channel: "+447700900001".into(),
            company_id: "ci".into(),
            project_id: "pi".into(),
            channel: ChannelKind::Whatsapp,
            from: "+447700900001".into(),
            to: "+447700900002".into(),
            reason: "auto_queue_reply_message".into(),
            messages: vec![(&fragment("SM1", 0, "hi")).into()],
            handed_off_at: "2026-11-29T12:00:00.000000+00:00".into(),
        };
        let json = serde_json::to_value(&message).expect("serialises");
        assert_eq!(json["channel"], "whatsapp");
        assert_eq!(json["messages"][0]["text"], "hi");
        assert_eq!(serde_json::from_value::<HandOffMessage>(json).expect("reads back"), message);
    }
}
