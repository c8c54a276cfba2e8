//! The events a company's own systems (an applicant tracking system, say) receive at the webhook
//! its Company names: one JSON object per event, with a unique id, posted with a signature
//! header. The producers (router, processors) put them on the environment's client-events queue;
//! the client-events worker posts them ([`SIGNATURE_HEADER`] says how they are signed).
use crate::conversation::ConversationRecord;
use serde::{Deserialize, Serialize};

/// `t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>" with the company's signing secret>`.
pub const SIGNATURE_HEADER: &str = "Multicomms-Signature";
/// How old a signature a receiver should still take (and the worker's deliveries keep within).
pub const SIGNATURE_TOLERANCE_SECONDS: u64 = 300;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventType {
    /// The first message went out.
    ConversationStarted,
    /// A message of the company's went out: the first one, or a person's.
    MessageSent,
    /// The provider said what became of a message.
    DeliveryStatusChanged,
    /// The recipient wrote.
    ReplyReceived,
    /// The AI answered the recipient.
    ReplySent,
    /// The conversation went to a person.
    HandedOff,
    /// An agent took it over.
    TakenOver,
    /// An agent gave it back to the AI.
    GivenBack,
    /// The recipient opted out (STOP, an unsubscribe).
    OptedOut,
    /// An agent closed it.
    Closed,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::ConversationStarted => "conversation_started",
            EventType::MessageSent => "message_sent",
            EventType::DeliveryStatusChanged => "delivery_status_changed",
            EventType::ReplyReceived => "reply_received",
            EventType::ReplySent => "reply_sent",
            EventType::HandedOff => "handed_off",
            EventType::TakenOver => "taken_over",
            EventType::GivenBack => "given_back",
            EventType::OptedOut => "opted_out",
            EventType::Closed => "closed",
        }
    }
}

/// The conversation an event is about, as the conversations API names it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventConversation {
    /// The conversations API's id of it.
    pub id: String,
    pub channel: crate::ChannelKind,
    pub recipient: String,
    /// The client's own `request_id` that started it.
    pub request_id: String,
}

/// One event, as posted (and as queued).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClientEvent {
    /// Unique: a receiver that sees an id twice (a retried delivery) has it already.
    pub id: String,
    #[serde(rename = "type")]
    pub kind: EventType,
    pub occurred_at: String,
    pub company_id: String,
    pub project_id: String,
    pub conversation: EventConversation,
    /// What happened, by type (a message's id and text, a status, an agent's name, a reason).
    pub data: serde_json::Value,
}

impl ClientEvent {
    /// A new event of `kind` about `record`, now.
    pub fn about(record: &ConversationRecord, kind: EventType, data: serde_json::Value) -> ClientEvent {
        ClientEvent {
            id: format!("evt_{}", uuid::Uuid::new_v4().simple()),
            kind,
            occurred_at: crate::timestamp::now(),
            company_id: record.company_id.clone(),
            project_id: record.project_id.clone(),
            conversation: EventConversation {
                id: crate::inbox::ConversationRef::encode(&record.key()),
                channel: record.channel_method,
                recipient: record.primary_channel.clone(),
                request_id: record.request_id.clone(),
            },
            data,
        }
    }
}
