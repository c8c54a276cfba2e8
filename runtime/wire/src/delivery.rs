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

/// The router path of a company's SendGrid Event Webhook: `<this>/<company_id>/<project_id>`
/// (each SendGrid account is configured with its company's URL; the company's public key
/// verifies it).
pub const SENDGRID_EVENTS_PATH: &str = "/webhooks/sendgrid/events";
/// SendGrid's signed Event Webhook headers: an ECDSA P-256 signature (base64 DER) over the
/// timestamp followed by the raw body.
pub const SENDGRID_SIGNATURE_HEADER: &str = "x-twilio-email-event-webhook-signature";
pub const SENDGRID_TIMESTAMP_HEADER: &str = "x-twilio-email-event-webhook-timestamp";

/// One event of SendGrid's Event Webhook (a JSON array of them per request), with the fields
/// this service reads; the mail's `custom_args` arrive as top-level fields (`conversation_id`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SendgridEvent {
    pub email: String,
    #[serde(default)]
    pub timestamp: u64,
    pub event: String,
    /// `<X-Message-Id of the send>.<SendGrid's suffix>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sg_message_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sg_event_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversation_id: Option<String>,
    /// A bounce's SMTP status (`5.1.1`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub asm_group_id: Option<u32>,
}

impl SendgridEvent {
    /// The send's `X-Message-Id`, which the record keeps as the message's id.
    pub fn message_id(&self) -> Option<&str> {
        self.sg_message_id.as_deref().and_then(|id| id.split('.').next()).filter(|id| !id.is_empty())
    }

    /// What the event says of the recipient's consent: `Some(true)` opted out (unsubscribe,
    /// a group unsubscribe, a spam report), `Some(false)` back in (group resubscribe).
    pub fn opts_out(&self) -> Option<bool> {
        match self.event.as_str() {
            "unsubscribe" | "group_unsubscribe" | "spamreport" => Some(true),
            "group_resubscribe" => Some(false),
            _ => None,
        }
    }
}

/// Twilio's `MessageStatus` values for an outbound message, and SendGrid's delivery events (their
/// spelling on the record).
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
    /// SendGrid: accepted for delivery.
    Processed,
    /// SendGrid: the receiving server deferred it (retried by SendGrid).
    Deferred,
    /// SendGrid: refused by the receiving server.
    Bounce,
    /// SendGrid: not sent (a suppression, an invalid address).
    Dropped,
    /// SendGrid: the recipient opened it.
    Open,
}

impl DeliveryStatus {
    pub const ALL: [DeliveryStatus; 16] = [
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
        DeliveryStatus::Processed,
        DeliveryStatus::Deferred,
        DeliveryStatus::Bounce,
        DeliveryStatus::Dropped,
        DeliveryStatus::Open,
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
            DeliveryStatus::Processed => "processed",
            DeliveryStatus::Deferred => "deferred",
            DeliveryStatus::Bounce => "bounce",
            DeliveryStatus::Dropped => "dropped",
            DeliveryStatus::Open => "open",
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
            DeliveryStatus::Queued | DeliveryStatus::Processed => 1,
            DeliveryStatus::Sending | DeliveryStatus::Deferred => 2,
            DeliveryStatus::Sent => 3,
            DeliveryStatus::Delivered
            | DeliveryStatus::Undelivered
            | DeliveryStatus::Failed
            | DeliveryStatus::Canceled
            | DeliveryStatus::PartiallyDelivered
            | DeliveryStatus::Bounce
            | DeliveryStatus::Dropped => 4,
            DeliveryStatus::Read | DeliveryStatus::Open => 5,
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
        matches!(
            self,
            DeliveryStatus::Undelivered | DeliveryStatus::Failed | DeliveryStatus::Bounce | DeliveryStatus::Dropped
        )
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
        assert_eq!(
            Delivered.not_behind(),
            [Delivered, Undelivered, Failed, Canceled, PartiallyDelivered, Read, Bounce, Dropped, Open]
        );
        assert!(Open.advances(Some(Delivered)) && !Processed.advances(Some(Deferred)), "SendGrid's events too");
    }

    #[test]
    fn every_status_reads_back_from_twilios_spelling() {
        for status in DeliveryStatus::ALL {
            assert_eq!(DeliveryStatus::parse(status.as_str()), Some(status));
            assert_eq!(serde_json::to_value(status).ok(), Some(serde_json::json!(status.as_str())));
        }
        assert_eq!(DeliveryStatus::parse("receiving"), None, "an inbound message's status");
    }

    #[test]
    fn a_sendgrid_event_names_its_send_and_says_what_it_means_for_consent() {
        let event: SendgridEvent = serde_json::from_value(serde_json::json!({
            "email": "lee@example.com", "timestamp": 1, "event": "group_unsubscribe", "asm_group_id": 42,
            "sg_message_id": "14c5d75ce93.filter0001.16648.5515E0B88.0", "conversation_id": "c#p#r#s"
        }))
        .expect("event");
        assert_eq!(event.message_id(), Some("14c5d75ce93"));
        assert_eq!(event.opts_out(), Some(true));
        assert_eq!(SendgridEvent { event: "delivered".into(), ..event }.opts_out(), None);
    }
}
