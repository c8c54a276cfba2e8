//! Keys and indexes of the conversations table and of the replies engine's stage and
//! trigger-lock tables (spec template-sender §5.5, replies-engine §2.2–2.3). The operator creates
//! the tables from these names; processors and the replies flow query them.

/// Conversations table: partition key (recipient phone number or email).
pub const PRIMARY_CHANNEL: &str = "primary_channel";
/// Conversations table: sort key, `company#project#request#sender`; stage/lock partition key.
pub const CONVERSATION_ID: &str = "conversation_id";
/// Stage table sort key: the provider's inbound message id.
pub const MESSAGE_SID: &str = "message_sid";
/// TTL attribute (epoch seconds) of the stage and trigger-lock tables.
pub const EXPIRES_AT: &str = "expires_at";

/// Attributes of the conversations table that updates name (the record's field names; a test
/// checks they match).
pub mod attribute {
    pub const STATUS: &str = "conversation_status";
    pub const CREATED_AT: &str = "created_at";
    pub const UPDATED_AT: &str = "updated_at";
    pub const MESSAGES: &str = "messages";
    pub const RESPONSE_ID: &str = "response_id";
    pub const PROCESSING_TIME_MS: &str = "initial_processing_time_ms";
    pub const FAILURE_REASON: &str = "failure_reason";
    pub const HAND_OFF: &str = "hand_off_to_human";
    pub const HAND_OFF_REASON: &str = "hand_off_to_human_reason";
    pub const CLAIM_ID: &str = "claim_id";
    pub const REPLY_LEASE_ID: &str = "reply_lease_id";
    pub const REPLY_LEASE_EXPIRES_AT: &str = "reply_lease_expires_at";
    /// 0 while the conversation is under way, 1 once it is over (a number: an index's sort key).
    pub const TASK_COMPLETE: &str = "task_complete";
    pub const TAKEN_OVER_BY: &str = "taken_over_by";
    pub const CLOSED_AT: &str = "closed_at";
    pub const CLOSED_BY: &str = "closed_by";
    pub const GIVEN_BACK_BY: &str = "given_back_by";
}

/// A conversation record's key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ConversationKey {
    /// The recipient's phone number or email address.
    pub primary_channel: String,
    /// `company#project#request#sender`.
    pub conversation_id: String,
}

impl ConversationKey {
    pub fn to_item(&self) -> crate::Item {
        use aws_sdk_dynamodb::types::AttributeValue;
        [
            (PRIMARY_CHANNEL.to_string(), AttributeValue::S(self.primary_channel.clone())),
            (CONVERSATION_ID.to_string(), AttributeValue::S(self.conversation_id.clone())),
        ]
        .into()
    }
}

/// Where a recipient's answer goes: one item per (channel, company number, recipient) in the
/// conversations table, beside that recipient's records (its sort key starts with `#`, which no
/// conversation id does, and it carries none of the indexes' keys). It names the newest
/// conversation the company started with the recipient on that channel, and the Twilio
/// credentials that conversation uses: the webhook finds it by key and checks Twilio's signature
/// before it reads anything else, so a stranger's request costs one key lookup and learns
/// nothing. The first-message processor writes it before its send; a conversation created
/// earlier never moves it back ([`ActivePointer::STARTED_AT`] is the condition).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ActivePointer {
    /// The recipient's number (the table's partition key).
    pub primary_channel: String,
    /// `#active#<channel>#<company number>` (the table's sort key).
    pub conversation_id: String,
    pub active_conversation_id: String,
    /// The Twilio credentials' secret name.
    pub credentials_id: String,
    /// The conversation's `created_at`: a pointer moves only to a conversation created later.
    pub started_at: String,
}

impl ActivePointer {
    pub const STARTED_AT: &str = "started_at";

    /// The pointer's key for `recipient` writing to `company_number` on `channel`.
    pub fn key(channel: crate::ChannelKind, company_number: &str, recipient: &str) -> ConversationKey {
        ConversationKey {
            primary_channel: recipient.to_string(),
            conversation_id: format!("#active#{channel}#{company_number}"),
        }
    }

    /// The conversation it points at.
    pub fn conversation(&self) -> ConversationKey {
        ConversationKey {
            primary_channel: self.primary_channel.clone(),
            conversation_id: self.active_conversation_id.clone(),
        }
    }
}

/// A global secondary index of the conversations table: name, partition key, sort key.
pub struct GlobalIndex {
    pub name: &'static str,
    pub partition_key: &'static str,
    pub sort_key: &'static str,
}

pub const GLOBAL_INDEXES: [GlobalIndex; 4] = [
    GlobalIndex { name: "company-id-project-id-index", partition_key: "company_id", sort_key: "project_id" },
    GlobalIndex {
        name: "company-whatsapp-number-recipient-tel-index",
        partition_key: "gsi_company_whatsapp_number",
        sort_key: "gsi_recipient_tel",
    },
    GlobalIndex {
        name: "company-sms-number-recipient-tel-index",
        partition_key: "gsi_company_sms_number",
        sort_key: "gsi_recipient_tel",
    },
    GlobalIndex {
        name: "company-email-recipient-email-index",
        partition_key: "gsi_company_email",
        sort_key: "gsi_recipient_email",
    },
];

/// A local secondary index (partition key `primary_channel`): name, sort key, and whether the
/// sort key is a number (`task_complete` is 0/1) rather than a string.
pub struct LocalIndex {
    pub name: &'static str,
    pub sort_key: &'static str,
    pub numeric: bool,
}

pub const LOCAL_INDEXES: [LocalIndex; 4] = [
    LocalIndex { name: "created-at-index", sort_key: "created_at", numeric: false },
    LocalIndex { name: "task-complete-index", sort_key: "task_complete", numeric: true },
    LocalIndex { name: "conversation-status-index", sort_key: "conversation_status", numeric: false },
    LocalIndex { name: "channel-method-index", sort_key: "channel_method", numeric: false },
];

/// `conversation_status` values (spec §5.5 and replies-engine §5.2), and those this rewrite adds
/// (`sending`, `send_outcome_unknown`, `failed_no_consent`, `sending_reply` and the reply
/// failures).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConversationStatus {
    /// The router's context object: queued, no record yet.
    Initiated,
    /// Written with the record; the message has not been sent.
    Processing,
    /// A processor has claimed the send and is calling the provider. Found on a redelivered
    /// message, the send may or may not have happened: see [`ConversationStatus::SendOutcomeUnknown`].
    Sending,
    InitialMessageSent,
    FailedSecretsFetch,
    FailedToProcessAi,
    FailedToSendMessage,
    /// A store or configuration error outside the steps above.
    FailedUnknown,
    /// `comms_consent` is false and the company did not opt into sending without it.
    FailedNoConsent,
    /// The provider may have accepted the message (timeout, 5xx, crash mid-send): never sent
    /// again automatically; `hand_off_to_human` is set for a person to check.
    SendOutcomeUnknown,
    /// A reply turn has claimed its send (the reply's `sending`).
    SendingReply,
    /// The AI's reply to the recipient's last messages went out and is recorded.
    ReplySent,
    /// A reply turn failed transiently before anything was sent; the next attempt starts over.
    Retry,
    FailedReplySecretsFetch,
    FailedToProcessReplyAi,
    FailedToSendReply,
    /// The recipient opted out (STOP): the conversation is over, and nothing more is sent.
    RecipientOptedOut,
    /// A status another flow wrote (e.g. the replies engine's `processing_reply`): the initial
    /// message is long done. Read only; never written.
    #[serde(other)]
    Other,
}

impl ConversationStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ConversationStatus::Initiated => "initiated",
            ConversationStatus::Processing => "processing",
            ConversationStatus::Sending => "sending",
            ConversationStatus::InitialMessageSent => "initial_message_sent",
            ConversationStatus::FailedSecretsFetch => "failed_secrets_fetch",
            ConversationStatus::FailedToProcessAi => "failed_to_process_ai",
            ConversationStatus::FailedToSendMessage => "failed_to_send_message",
            ConversationStatus::FailedUnknown => "failed_unknown",
            ConversationStatus::FailedNoConsent => "failed_no_consent",
            ConversationStatus::SendOutcomeUnknown => "send_outcome_unknown",
            ConversationStatus::SendingReply => "sending_reply",
            ConversationStatus::ReplySent => "reply_sent",
            ConversationStatus::Retry => "retry",
            ConversationStatus::FailedReplySecretsFetch => "failed_reply_secrets_fetch",
            ConversationStatus::FailedToProcessReplyAi => "failed_to_process_reply_ai",
            ConversationStatus::FailedToSendReply => "failed_to_send_reply",
            ConversationStatus::RecipientOptedOut => "recipient_opted_out",
            ConversationStatus::Other => "other",
        }
    }
}

impl ConversationStatus {
    /// Whether the conversation's first message went out (or may have): not still being
    /// written or sent, nor failed before it was sent.
    pub fn first_message_out(self) -> bool {
        use ConversationStatus::*;
        !matches!(
            self,
            Processing
                | Sending
                | FailedSecretsFetch
                | FailedToProcessAi
                | FailedToSendMessage
                | FailedUnknown
                | FailedNoConsent
        )
    }
}

impl std::fmt::Display for ConversationStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One entry of `messages` (spec §5.5, replies-engine §3.2 step 11): an assistant message (the
/// first one, each reply) or a message the recipient sent (role `user`, one entry per inbound
/// message, so its `MessageSid` marks it answered).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Message {
    /// The provider's message id (Twilio `SM…` SID, SendGrid `X-Message-Id`).
    pub message_id: String,
    pub timestamp: String,
    pub role: String,
    /// What the recipient got (Twilio's rendered body, or the email's template data as JSON),
    /// or what the recipient wrote.
    pub content: String,
    #[serde(default)]
    pub prompt_tokens: u64,
    #[serde(default)]
    pub completion_tokens: u64,
    #[serde(default)]
    pub total_tokens: u64,
    /// Media the recipient sent with an inbound message.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub media: Vec<Media>,
    /// What the provider last said became of a message we sent (its status callbacks), when,
    /// and the provider's error code for a failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery_status: Option<crate::delivery::DeliveryStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery_updated_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery_error_code: Option<String>,
    /// The company's agent who wrote a [`ROLE_HUMAN`] message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
}

/// The delivery attributes of a [`Message`] (a test checks they match).
pub mod delivery_attribute {
    pub const MESSAGE_ID: &str = "message_id";
    pub const STATUS: &str = "delivery_status";
    pub const UPDATED_AT: &str = "delivery_updated_at";
    pub const ERROR_CODE: &str = "delivery_error_code";
}

/// Something the recipient attached (Twilio `MediaUrlN`, `MediaContentTypeN`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Media {
    pub url: String,
    pub content_type: String,
}

pub const ROLE_ASSISTANT: &str = "assistant";
pub const ROLE_USER: &str = "user";
/// A message one of the company's agents wrote to the recipient from the inbox or the API.
pub const ROLE_HUMAN: &str = "human";

/// The conversations-table item as a processor creates it (spec §5.5), plus the outcome
/// attributes later updates set. `None` fields are stored as DynamoDB NULL, as the original
/// did, except the sparse index keys (`gsi_*`) and outcome attributes, which are omitted.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ConversationRecord {
    pub primary_channel: String,
    pub conversation_id: String,
    pub company_id: String,
    pub project_id: String,
    pub request_id: String,
    pub channel_method: crate::ChannelKind,
    pub company_name: Option<String>,
    pub project_name: Option<String>,
    pub allowed_channels: Vec<crate::ChannelKind>,
    pub project_status: Option<String>,
    pub auto_queue_initial_message: bool,
    pub auto_queue_initial_message_from_number: Option<Vec<String>>,
    pub auto_queue_initial_message_from_email: Option<Vec<String>>,
    pub auto_queue_reply_message: bool,
    pub auto_queue_reply_message_from_number: Option<Vec<String>>,
    pub auto_queue_reply_message_from_email: Option<Vec<String>>,
    pub company_rep: Option<serde_json::Value>,
    /// Only this channel's slice of the company's `ai_config.openai_config`.
    pub ai_config: serde_json::Value,
    /// Only this channel's slice of the company's `channel_config`.
    pub channel_config: serde_json::Value,
    pub router_version: Option<String>,
    pub recipient_first_name: Option<String>,
    pub recipient_last_name: Option<String>,
    pub recipient_tel: Option<String>,
    pub recipient_email: Option<String>,
    pub comms_consent: bool,
    pub project_data: Option<serde_json::Value>,
    pub processor_version: String,
    pub conversation_status: ConversationStatus,
    pub messages: Vec<Message>,
    pub created_at: String,
    pub updated_at: String,
    /// 0 or 1 (the `task-complete-index` sort key is a number).
    pub task_complete: u8,
    pub initial_request_timestamp: Option<String>,
    pub email_id: Option<String>,
    pub function_call: bool,
    pub function_call_type: Option<String>,
    /// Assistants API thread id in the original; always NULL now (see `response_id`).
    pub thread_id: Option<String>,
    pub hand_off_to_human: bool,
    pub hand_off_to_human_reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gsi_recipient_tel: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gsi_recipient_email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gsi_company_whatsapp_number: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gsi_company_sms_number: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gsi_company_email: Option<String>,
    /// The OpenAI Responses API response id, for `previous_response_id` in later replies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_id: Option<String>,
    /// `<step>: <why>` of the last failure (permanent, or transient and being retried).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_processing_time_ms: Option<u64>,
    /// The token of the processor attempt that claimed the send.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim_id: Option<String>,
    /// The reply turn holding the conversation's processing lease, and until when (epoch ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_lease_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_lease_expires_at: Option<u64>,
    /// When DynamoDB's TTL deletes the record (epoch seconds): the company's retention after the
    /// last activity; absent when it keeps conversations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<u64>,
    /// The agent who took the conversation over: the AI does not answer while it is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub taken_over_by: Option<String>,
    /// When an agent closed the conversation, and who: an answer to it then goes to a person.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closed_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closed_by: Option<String>,
    /// The agent who last gave the conversation back to the AI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub given_back_by: Option<String>,
}

impl ConversationRecord {
    pub fn key(&self) -> ConversationKey {
        ConversationKey { primary_channel: self.primary_channel.clone(), conversation_id: self.conversation_id.clone() }
    }

    pub fn to_item(&self) -> Result<crate::Item, serde_dynamo::Error> {
        serde_dynamo::to_item(self)
    }

    pub fn from_item(item: crate::Item) -> Result<Self, serde_dynamo::Error> {
        serde_dynamo::from_item(item)
    }

    /// The company's number on `channel`, from this conversation's slice of the company's
    /// channel config (`company_<channel>_number`; empty when the slice has none).
    pub fn company_number(&self, channel: crate::ChannelKind) -> &str {
        self.channel_config.get(format!("company_{channel}_number")).and_then(serde_json::Value::as_str).unwrap_or("")
    }
}

#[cfg(test)]
mod tests {
    use super::ConversationStatus::{self, *};

    #[test]
    fn statuses_are_stored_as_the_original_spelt_them() {
        let all = [
            Initiated,
            Processing,
            Sending,
            InitialMessageSent,
            FailedSecretsFetch,
            FailedToProcessAi,
            FailedToSendMessage,
            FailedUnknown,
            FailedNoConsent,
            SendOutcomeUnknown,
            SendingReply,
            ReplySent,
            Retry,
            FailedReplySecretsFetch,
            FailedToProcessReplyAi,
            FailedToSendReply,
            RecipientOptedOut,
        ];
        for status in all {
            let stored = serde_json::to_value(status).expect("serialises");
            assert_eq!(stored, status.as_str());
            assert_eq!(serde_json::from_value::<ConversationStatus>(stored).expect("reads back"), status);
        }
        let replies: ConversationStatus = serde_json::from_value("processing_reply".into()).expect("reads");
        assert_eq!(replies, ConversationStatus::Other, "another flow's status reads, as something else");
    }
}
