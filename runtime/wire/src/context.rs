//! The context object: the router's SQS message body, which the processors read (spec
//! template-sender §3, §4.2). Exactly four keys, in this order.
use crate::company::ChannelConfig;
use crate::conversation::ConversationStatus;
use crate::ChannelKind;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContextObject {
    /// The request body, verbatim.
    pub frontend_payload: serde_json::Value,
    /// The whole company-data item, as JSON (numbers whole or fractional, sets as lists).
    pub company_data_payload: serde_json::Value,
    pub conversation_data: ConversationData,
    pub metadata: Metadata,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConversationData {
    pub conversation_id: String,
    /// `initiated`, as the router sets it.
    pub conversation_status: ConversationStatus,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metadata {
    pub router_version: String,
}

/// SQS message attribute names (all `String`).
pub mod attributes {
    pub const CHANNEL_METHOD: &str = "channelMethod";
    pub const CONVERSATION_ID: &str = "conversationId";
    pub const ROUTER_TIMESTAMP: &str = "routerTimestamp";
    pub const RECIPIENT_TEL: &str = "recipientTel";
    pub const RECIPIENT_EMAIL: &str = "recipientEmail";

    /// The attribute carrying the recipient's address on `channel`.
    pub fn recipient(channel: crate::ChannelKind) -> &'static str {
        match channel {
            crate::ChannelKind::Whatsapp | crate::ChannelKind::Sms => RECIPIENT_TEL,
            crate::ChannelKind::Email => RECIPIENT_EMAIL,
        }
    }
}

/// `company#project#request#sender`, the sender being the company's number without its
/// leading `+` (whatsapp, sms) or its email address, or a placeholder when not configured.
pub fn conversation_id(
    company_id: &str,
    project_id: &str,
    request_id: &str,
    channel: ChannelKind,
    config: &ChannelConfig,
) -> String {
    let sender = match (channel, config.sender(channel)) {
        (_, Some(sender)) if !sender.trim_start_matches('+').is_empty() => sender.trim_start_matches('+').to_string(),
        (ChannelKind::Whatsapp, _) => "unknown_whatsapp_number".to_string(),
        (ChannelKind::Sms, _) => "unknown_sms_number".to_string(),
        (ChannelKind::Email, _) => "unknown_company_email".to_string(),
    };
    format!("{company_id}#{project_id}#{request_id}#{sender}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::company::WhatsappConfig;

    #[test]
    fn conversation_ids_follow_the_original() {
        let config = ChannelConfig {
            whatsapp: Some(WhatsappConfig {
                company_whatsapp_number: "+447588713814".into(),
                whatsapp_credentials_id: "x".into(),
                reengagement_content_sid: None,
            }),
            ..Default::default()
        };
        let id = conversation_id(
            "ci-aaa-001",
            "pi-aaa-001",
            "550e8400-e29b-41d4-a716-446655440001",
            ChannelKind::Whatsapp,
            &config,
        );
        assert_eq!(id, "ci-aaa-001#pi-aaa-001#550e8400-e29b-41d4-a716-446655440001#447588713814");
        assert!(conversation_id("c", "p", "r", ChannelKind::Sms, &config).ends_with("#unknown_sms_number"));
        assert!(conversation_id("c", "p", "r", ChannelKind::Email, &config).ends_with("#unknown_company_email"));
    }

    #[test]
    fn serialises_the_four_keys_in_order() {
        let context = ContextObject {
            frontend_payload: serde_json::json!({"b": 1, "a": 2}),
            company_data_payload: serde_json::json!({}),
            conversation_data: ConversationData {
                conversation_id: "id".into(),
                conversation_status: ConversationStatus::Initiated,
            },
            metadata: Metadata { router_version: "router-dev-1".into() },
        };
        let text = serde_json::to_string(&context).expect("json");
        let keys: Vec<usize> = ["frontend_payload", "company_data_payload", "conversation_data", "metadata"]
            .iter()
            .map(|k| text.find(k).expect("key"))
            .collect();
        assert!(keys.windows(2).all(|w| w[0] < w[1]), "{text}");
    }
}
