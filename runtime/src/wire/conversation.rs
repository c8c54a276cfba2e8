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
