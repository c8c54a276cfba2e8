//! What the router decides about a valid request, as pure functions: whether the caller may send
//! it ([`authorize`]) and the queue message it becomes ([`context_message`]).
use super::error::RouterError;
use super::request::ValidRequest;
use crate::shared::companies::Company;
use multicomms_wire::context::{self, attributes, ContextObject, ConversationData, Metadata};
use multicomms_wire::conversation::ConversationStatus;
use multicomms_wire::ChannelKind;

/// Steps 7–10 of the original, with the API key check where API Gateway's used to be: the key
/// must be this company + project's (compared in constant time with its stored hash), the
/// project active, the channel allowed, and consent given unless the company opts out of that.
/// An unknown company answers exactly as a wrong key does, so a caller without a valid key
/// cannot tell which company ids exist.
pub fn authorize<'a>(
    company: Option<&'a Company>,
    api_key: &str,
    request: &ValidRequest,
) -> Result<&'a Company, RouterError> {
    let company = with_key(company, api_key)?;
    let record = &company.record;
    if !record.is_active() {
        return Err(RouterError::project_inactive());
    }
    if !record.allowed_channels.contains(&request.channel) {
        return Err(RouterError::channel_not_allowed(request.channel.as_str()));
    }
    if !request.comms_consent && !record.send_without_consent {
        return Err(RouterError::consent_required());
    }
    Ok(company)
}

/// The company, if `api_key` is its key; an unknown company answers as a wrong key does.
pub fn with_key<'a>(company: Option<&'a Company>, api_key: &str) -> Result<&'a Company, RouterError> {
    company.filter(|c| key_matches(c, api_key)).ok_or_else(RouterError::invalid_api_key)
}

/// A missing hash fails closed.
fn key_matches(company: &Company, api_key: &str) -> bool {
    use subtle::ConstantTimeEq;
    company.record.api_key_hash.as_deref().is_some_and(|stored| {
        let offered = multicomms_wire::company::api_key_hash(api_key);
        bool::from(offered.as_bytes().ct_eq(stored.as_bytes()))
    })
}

/// An SQS message: its body and its string attributes.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueMessage {
    pub channel: ChannelKind,
    pub body: String,
    pub attributes: Vec<(&'static str, String)>,
}

/// The context object (spec §3, §4.2: the body verbatim, the company item, the conversation id,
/// the router's version) and the message attributes the processors and the original's tools read.
pub fn context_message(
    request: ValidRequest,
    company: &Company,
    version: &str,
    now: String,
) -> Result<QueueMessage, RouterError> {
    let channel = request.channel;
    let conversation_id = context::conversation_id(
        &request.company_id,
        &request.project_id,
        &request.request_id,
        channel,
        &company.record.channel_config,
    );
    let attributes = vec![
        (attributes::CHANNEL_METHOD, channel.as_str().to_string()),
        (attributes::CONVERSATION_ID, conversation_id.clone()),
        (attributes::ROUTER_TIMESTAMP, now),
        (attributes::recipient(channel), request.recipient),
    ];
    let context = ContextObject {
        frontend_payload: request.body,
        company_data_payload: company.payload.clone(),
        conversation_data: ConversationData { conversation_id, conversation_status: ConversationStatus::Initiated },
        metadata: Metadata { router_version: version.to_string() },
    };
    let body = serde_json::to_string(&context).map_err(|_| RouterError::queue_error())?;
    Ok(QueueMessage { channel, body, attributes })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::router::error::ErrorCode;
    use multicomms_wire::CompanyRecord;
    use serde_json::json;

    fn company(edit: impl FnOnce(&mut serde_json::Value)) -> Company {
        let mut payload = json!({
            "company_id": "ci-aaa-001", "project_id": "pi-aaa-001",
            "company_name": "Cucumber Recruitment", "project_name": "Clarify CV",
            "api_key_hash": multicomms_wire::company::api_key_hash("the-key"),
            "allowed_channels": ["whatsapp"], "project_status": "active",
            "rate_limits": {"requests_per_minute": 60, "requests_per_day": 2000,
                            "concurrent_conversations": 30, "max_message_length": 4096},
            "channel_config": {"whatsapp": {"company_whatsapp_number": "+447588713814",
                                            "whatsapp_credentials_id": "p/whatsapp-credentials/c/p/twilio-dev"}}
        });
        edit(&mut payload);
        let record: CompanyRecord = serde_json::from_value(payload.clone()).expect("record");
        Company { record, payload }
    }

    fn request(channel: ChannelKind, consent: bool) -> ValidRequest {
        ValidRequest {
            body: json!({"request_data": {"request_id": "r-1"}}),
            request_id: "r-1".into(),
            company_id: "ci-aaa-001".into(),
            project_id: "pi-aaa-001".into(),
            channel,
            recipient: "+447835065013".into(),
            comms_consent: consent,
        }
    }

    fn refusal(company: Option<&Company>, key: &str, request: &ValidRequest) -> Option<ErrorCode> {
        authorize(company, key, request).err().map(|e| e.code)
    }

    #[test]
    fn the_key_gates_first_and_an_unknown_company_looks_like_a_wrong_key() {
        let known = company(|_| {});
        let whatsapp = request(ChannelKind::Whatsapp, true);
        assert_eq!(refusal(Some(&known), "the-key", &whatsapp), None);
        assert_eq!(refusal(Some(&known), "another-key", &whatsapp), Some(ErrorCode::InvalidApiKey));
        assert_eq!(refusal(None, "the-key", &whatsapp), Some(ErrorCode::InvalidApiKey));
        let no_hash = company(|c| c["api_key_hash"] = json!(null));
        assert_eq!(refusal(Some(&no_hash), "the-key", &whatsapp), Some(ErrorCode::InvalidApiKey), "fails closed");
        // The key is checked before anything that would tell a stranger about the company.
        let inactive = company(|c| c["project_status"] = json!("inactive"));
        assert_eq!(refusal(Some(&inactive), "another-key", &whatsapp), Some(ErrorCode::InvalidApiKey));
    }

    #[test]
    fn then_the_project_the_channel_and_consent() {
        let whatsapp = request(ChannelKind::Whatsapp, true);
        let inactive = company(|c| c["project_status"] = json!("inactive"));
        assert_eq!(refusal(Some(&inactive), "the-key", &whatsapp), Some(ErrorCode::ProjectInactive));
        let known = company(|_| {});
        assert_eq!(
            refusal(Some(&known), "the-key", &request(ChannelKind::Sms, true)),
            Some(ErrorCode::ChannelNotAllowed)
        );
        let no_consent = request(ChannelKind::Whatsapp, false);
        assert_eq!(refusal(Some(&known), "the-key", &no_consent), Some(ErrorCode::CommsConsentRequired));
        let old_behaviour = company(|c| c["send_without_consent"] = json!(true));
        assert_eq!(refusal(Some(&old_behaviour), "the-key", &no_consent), None);
    }

    #[test]
    fn the_context_message_carries_the_body_the_company_and_the_conversation() {
        let known = company(|_| {});
        let message = context_message(request(ChannelKind::Whatsapp, true), &known, "router-1", "now".into())
            .expect("serialises");
        let context: serde_json::Value = serde_json::from_str(&message.body).expect("JSON");
        let keys: Vec<&String> = context.as_object().expect("object").keys().collect();
        assert_eq!(keys, ["frontend_payload", "company_data_payload", "conversation_data", "metadata"]);
        assert_eq!(context["frontend_payload"], json!({"request_data": {"request_id": "r-1"}}));
        assert_eq!(context["conversation_data"]["conversation_id"], "ci-aaa-001#pi-aaa-001#r-1#447588713814");
        assert_eq!(context["conversation_data"]["conversation_status"], "initiated");
        assert_eq!(context["metadata"]["router_version"], "router-1");
        assert_eq!(
            message.attributes,
            [
                (attributes::CHANNEL_METHOD, "whatsapp".to_string()),
                (attributes::CONVERSATION_ID, "ci-aaa-001#pi-aaa-001#r-1#447588713814".to_string()),
                (attributes::ROUTER_TIMESTAMP, "now".to_string()),
                (attributes::RECIPIENT_TEL, "+447835065013".to_string()),
            ]
        );
    }
}
