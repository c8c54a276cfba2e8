//! What a provider says became of a message we sent, and where it says it: the processors name
//! the status callback URL on every Twilio send, the router serves it and records each status on
//! the conversation's message entry. One definition for both.
use serde::{Deserialize, Serialize};

/// The router path of Twilio's message status callbacks.
pub const TWILIO_STATUS_PATH: &str = "/webhooks/twilio/status";
/// The callback URL's query parameter naming the conversation (its recipient is Twilio's `To`).
pub const CONVERSATION_PARAM: &str = "conversation";

/// The `StatusCallback` URL of a message of conversation `conversation_id`: Twilio signs its
/// callbacks over exactly this URL.
pub fn twilio_status_callback(public_base_url: &str, conversation_id: &str) -> String {
    let query = serde_urlencoded::to_string([(CONVERSATION_PARAM, conversation_id)]).unwrap_or_default();
    format!("{}{TWILIO_STATUS_PATH}?{query}", public_base_url.trim_end_matches('/'))
}

/// The conversation id a callback URL's query names.
pub fn conversation_of(query: &str) -> Option<String> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query).ok()?;
    pairs.into_iter().find(|(name, _)| name == CONVERSATION_PARAM).map(|(_, id)| id).filter(|id| !id.is_empty())
}

/// Twilio's `MessageStatus` values for an outbound message (and their spelling on the record).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    Accepted,
    Scheduled,
    Queued,
    Sending,
    Sent,
    Delivered,
    Undelivered,
    Failed,
    Canceled,
    PartiallyDelivered,
    Read,
}

impl DeliveryStatus {
    pub const ALL: [DeliveryStatus; 11] = [
        DeliveryStatus::Accepted,
        DeliveryStatus::Scheduled,
        DeliveryStatus::Queued,
        DeliveryStatus::Sending,
        DeliveryStatus::Sent,
        DeliveryStatus::Delivered,
        DeliveryStatus::Undelivered,
        DeliveryStatus::Failed,
        DeliveryStatus::Canceled,
        DeliveryStatus::PartiallyDelivered,
        DeliveryStatus::Read,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Accepted => "accepted",
            DeliveryStatus::Scheduled => "scheduled",
            DeliveryStatus::Queued => "queued",
            DeliveryStatus::Sending => "sending",
            DeliveryStatus::Sent => "sent",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Undelivered => "undelivered",
            DeliveryStatus::Failed => "failed",
            DeliveryStatus::Canceled => "canceled",
            DeliveryStatus::PartiallyDelivered => "partially_delivered",
            DeliveryStatus::Read => "read",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == value)
    }

    /// How far along a message is. Callbacks arrive out of order, so a status replaces the
    /// recorded one only when it ranks higher: a late `sent` after `delivered` changes nothing,
    /// and the first final status (delivered, undelivered, failed, canceled) stands; only `read`
    /// comes after one.
    pub fn rank(self) -> u8 {
        match self {
            DeliveryStatus::Accepted | DeliveryStatus::Scheduled => 0,
            DeliveryStatus::Queued => 1,
            DeliveryStatus::Sending => 2,
            DeliveryStatus::Sent => 3,
            DeliveryStatus::Delivered
            | DeliveryStatus::Undelivered
            | DeliveryStatus::Failed
            | DeliveryStatus::Canceled
            | DeliveryStatus::PartiallyDelivered => 4,
            DeliveryStatus::Read => 5,
        }
    }

    /// Whether `self` replaces `recorded` on the message.
    pub fn advances(self, recorded: Option<DeliveryStatus>) -> bool {
        recorded.is_none_or(|recorded| self.rank() > recorded.rank())
    }

    /// The statuses `self` does not replace (a condition on the write lists them).
    pub fn not_behind(self) -> Vec<DeliveryStatus> {
        Self::ALL.into_iter().filter(|s| !self.advances(Some(*s))).collect()
    }

    /// The message did not reach the recipient.
    pub fn is_failure(self) -> bool {
        matches!(self, DeliveryStatus::Undelivered | DeliveryStatus::Failed)
    }
}

impl std::fmt::Display for DeliveryStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::DeliveryStatus::{self, *};
    use super::*;

    #[test]
    fn the_callback_url_names_its_conversation_and_reads_back() {
        let url = twilio_status_callback("https://hooks.example.com/", "c1#p1#r-1#447588713814");
        assert_eq!(url, "https://hooks.example.com/webhooks/twilio/status?conversation=c1%23p1%23r-1%23447588713814");
        let query = url.split_once('?').map(|(_, q)| q).unwrap_or_default();
        assert_eq!(conversation_of(query).as_deref(), Some("c1#p1#r-1#447588713814"));
        assert_eq!(conversation_of("other=1"), None);
        assert_eq!(conversation_of("conversation="), None);
    }

    #[test]
    fn a_status_never_moves_backwards_and_the_first_final_one_stands() {
        assert!(Sent.advances(None));
        assert!(Delivered.advances(Some(Sent)));
        assert!(!Sent.advances(Some(Delivered)), "a late sent after delivered");
        assert!(!Delivered.advances(Some(Delivered)), "a repeated callback");
        assert!(!Delivered.advances(Some(Undelivered)), "the first final status stands");
        assert!(Read.advances(Some(Delivered)));
        assert!(Undelivered.advances(Some(Queued)));
        assert_eq!(Delivered.not_behind(), [Delivered, Undelivered, Failed, Canceled, PartiallyDelivered, Read]);
    }

    #[test]
    fn every_status_reads_back_from_twilios_spelling() {
        for status in DeliveryStatus::ALL {
            assert_eq!(DeliveryStatus::parse(status.as_str()), Some(status));
            assert_eq!(serde_json::to_value(status).ok(), Some(serde_json::json!(status.as_str())));
        }
        assert_eq!(DeliveryStatus::parse("receiving"), None, "an inbound message's status");
    }
}
