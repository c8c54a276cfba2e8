//! A message body that is a usable context object for this processor's channel: parsed and
//! checked once (every problem named at once, spec §5.3), then read by the pipeline's steps.
use crate::shared::ai;
use multicomms_wire::company::AiChannelConfig;
use multicomms_wire::context::ContextObject;
use multicomms_wire::conversation::{ActivePointer, ConversationKey, ConversationRecord, ConversationStatus};
use multicomms_wire::{ChannelKind, CompanyRecord};
use serde_json::{Map, Value};

pub struct Incoming {
    pub channel: ChannelKind,
    pub context: ContextObject,
    pub company: CompanyRecord,
    pub ai: AiChannelConfig,
    /// recipient_tel (whatsapp, sms) or recipient_email (email): the record's partition key.
    pub primary_channel: String,
    pub comms_consent: bool,
}

/// Why a body is not a usable context object: every problem, naming the fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid(pub String);

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl Incoming {
    pub fn parse(body: &str, channel: ChannelKind) -> Result<Self, Invalid> {
        let context: ContextObject =
            serde_json::from_str(body).map_err(|e| Invalid(format!("the body is not a context object: {e}")))?;
        let company: CompanyRecord = serde_json::from_value(context.company_data_payload.clone())
            .map_err(|e| Invalid(format!("company_data_payload is not a company record: {e}")))?;
        let frontend = &context.frontend_payload;
        let text = |path: &[&str]| {
            path.iter().try_fold(frontend, |v, k| v.get(k)).and_then(Value::as_str).filter(|s| !s.is_empty())
        };
        let mut problems = Vec::new();
        for path in [["company_data", "company_id"], ["company_data", "project_id"], ["request_data", "request_id"]] {
            if text(&path).is_none() {
                problems.push(format!("missing 'frontend_payload.{}'", path.join(".")));
            }
        }
        if text(&["request_data", "channel_method"]) != Some(channel.as_str()) {
            problems.push(format!("'frontend_payload.request_data.channel_method' is not '{channel}'"));
        }
        let recipient_field = channel.recipient_field();
        let primary_channel = text(&["recipient_data", recipient_field]).map(str::to_string);
        if primary_channel.is_none() {
            problems.push(format!("missing 'frontend_payload.recipient_data.{recipient_field}'"));
        }
        if company.channel_config.sender(channel).is_none() {
            problems.push(format!("missing 'company_data_payload.channel_config.{channel}'"));
        }
        let ai = company.ai_config.as_ref().and_then(|a| a.openai_config.get(channel)).cloned();
        if ai.is_none() {
            problems.push(format!("missing 'company_data_payload.ai_config.openai_config.{channel}'"));
        }
        if context.conversation_data.conversation_id.is_empty() {
            problems.push("missing 'conversation_data.conversation_id'".into());
        }
        match (problems.is_empty(), primary_channel, ai) {
            (true, Some(primary_channel), Some(ai)) => {
                let comms_consent =
                    frontend.pointer("/recipient_data/comms_consent").and_then(Value::as_bool).unwrap_or(false);
                Ok(Incoming { channel, context, company, ai, primary_channel, comms_consent })
            }
            _ => Err(Invalid(format!("context validation failed: {}", problems.join(", ")))),
        }
    }

    pub fn key(&self) -> ConversationKey {
        ConversationKey {
            primary_channel: self.primary_channel.clone(),
            conversation_id: self.context.conversation_data.conversation_id.clone(),
        }
    }

    /// The Secrets Manager name of this channel's provider credentials.
    pub fn credentials_name(&self) -> &str {
        self.company.channel_config.credentials_id(self.channel).unwrap_or("")
    }

    /// The pointer a recipient's answers find this conversation by (WhatsApp and SMS), for the
    /// conversation created at `created_at`.
    pub fn active_pointer(&self, created_at: &str) -> Option<ActivePointer> {
        if self.channel == ChannelKind::Email {
            return None;
        }
        let key = ActivePointer::key(self.channel, self.sender(), &self.primary_channel);
        Some(ActivePointer {
            primary_channel: key.primary_channel,
            conversation_id: key.conversation_id,
            active_conversation_id: self.context.conversation_data.conversation_id.clone(),
            credentials_id: self.credentials_name().to_string(),
            started_at: created_at.to_string(),
        })
    }

    /// The company's sender on this channel.
    pub fn sender(&self) -> &str {
        self.company.channel_config.sender(self.channel).unwrap_or("")
    }

    /// A non-empty string of the request at `path`.
    pub fn text(&self, path: &[&str]) -> Option<String> {
        let value = path.iter().try_fold(&self.context.frontend_payload, |v, k| v.get(k))?;
        value.as_str().filter(|s| !s.is_empty()).map(str::to_string)
    }

    fn sender_contacts(&self) -> Map<String, Value> {
        let config = &self.company.channel_config;
        ChannelKind::ALL
            .iter()
            .filter_map(|kind| {
                let sender = config.sender(*kind).map(str::trim).filter(|s| !s.is_empty())?;
                Some((kind.as_str().to_string(), Value::String(sender.into())))
            })
            .collect()
    }

    /// The AI's input: the original's "Initial context" document.
    pub fn ai_input(&self) -> String {
        let payload = &self.context.company_data_payload;
        ai::initial_context(
            Some(&self.company.company_name),
            Some(&self.company.project_name),
            payload.get("company_rep"),
            self.context.frontend_payload.get("recipient_data").unwrap_or(&Value::Null),
            &self.sender_contacts(),
            self.context.frontend_payload.get("project_data"),
        )
    }

    /// The record as first written (spec §5.5).
    pub fn initial_record(&self, version: &str, now: String) -> ConversationRecord {
        let company = &self.company;
        let frontend = &self.context.frontend_payload;
        let channel = self.channel;
        let non_empty = |list: &Vec<String>| (!list.is_empty()).then(|| list.clone());
        let slice = |value: Option<Value>| value.unwrap_or_else(|| Value::Object(Map::new()));
        let sender = || Some(self.sender().to_string()).filter(|s| !s.is_empty());
        let project_data = frontend.get("project_data").filter(|p| p.as_object().is_some_and(|o| !o.is_empty()));
        let recipient_tel = self.text(&["recipient_data", "recipient_tel"]);
        let recipient_email = self.text(&["recipient_data", "recipient_email"]);
        ConversationRecord {
            primary_channel: self.primary_channel.clone(),
            conversation_id: self.context.conversation_data.conversation_id.clone(),
            company_id: company.company_id.clone(),
            project_id: company.project_id.clone(),
            request_id: self.text(&["request_data", "request_id"]).unwrap_or_default(),
            channel_method: channel,
            company_name: Some(company.company_name.clone()).filter(|n| !n.is_empty()),
            project_name: Some(company.project_name.clone()).filter(|n| !n.is_empty()),
            allowed_channels: company.allowed_channels.clone(),
            project_status: Some(company.project_status.clone()),
            auto_queue_initial_message: company.auto_queue_initial_message,
            auto_queue_initial_message_from_number: non_empty(&company.auto_queue_initial_message_from_number),
            auto_queue_initial_message_from_email: non_empty(&company.auto_queue_initial_message_from_email),
            auto_queue_reply_message: company.auto_queue_reply_message,
            auto_queue_reply_message_from_number: non_empty(&company.auto_queue_reply_message_from_number),
            auto_queue_reply_message_from_email: non_empty(&company.auto_queue_reply_message_from_email),
            company_rep: self.context.company_data_payload.get("company_rep").cloned(),
            ai_config: slice(serde_json::to_value(&self.ai).ok()),
            channel_config: slice(company.channel_config.slice(channel)),
            router_version: Some(self.context.metadata.router_version.clone()).filter(|v| !v.is_empty()),
            recipient_first_name: self.text(&["recipient_data", "recipient_first_name"]),
            recipient_last_name: self.text(&["recipient_data", "recipient_last_name"]),
            recipient_tel: recipient_tel.clone(),
            recipient_email: recipient_email.clone(),
            comms_consent: self.comms_consent,
            project_data: project_data.cloned(),
            processor_version: version.replace("processor-", ""),
            conversation_status: ConversationStatus::Processing,
            messages: Vec::new(),
            created_at: now.clone(),
            updated_at: now,
            task_complete: 0,
            initial_request_timestamp: self.text(&["request_data", "initial_request_timestamp"]),
            email_id: None,
            function_call: false,
            function_call_type: None,
            thread_id: None,
            hand_off_to_human: false,
            hand_off_to_human_reason: None,
            gsi_recipient_tel: recipient_tel,
            gsi_recipient_email: recipient_email,
            gsi_company_whatsapp_number: sender().filter(|_| channel == ChannelKind::Whatsapp),
            gsi_company_sms_number: sender().filter(|_| channel == ChannelKind::Sms),
            gsi_company_email: sender().filter(|_| channel == ChannelKind::Email),
            response_id: None,
            failure_reason: None,
            initial_processing_time_ms: None,
            claim_id: None,
            reply_lease_id: None,
            reply_lease_expires_at: None,
            expires_at: company.expires_at(multicomms_wire::timestamp::epoch_seconds()),
            taken_over_by: None,
            closed_at: None,
            closed_by: None,
            given_back_by: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_dynamodb::types::AttributeValue;
    use serde_json::json;

    fn context() -> Value {
        json!({
            "frontend_payload": {
                "company_data": {"company_id": "ci-aaa-001", "project_id": "pi-aaa-001"},
                "recipient_data": {"recipient_first_name": "Lee", "recipient_tel": "+447835065013", "comms_consent": true},
                "request_data": {"request_id": "550e8400-e29b-41d4-a716-446655440001", "channel_method": "whatsapp"}
            },
            "company_data_payload": {
                "company_id": "ci-aaa-001", "project_id": "pi-aaa-001",
                "company_name": "Cucumber Recruitment", "project_name": "Clarify CV",
                "allowed_channels": ["whatsapp"], "project_status": "active",
                "rate_limits": {"requests_per_minute": 60, "requests_per_day": 2000,
                                "concurrent_conversations": 30, "max_message_length": 4096},
                "company_rep": {"company_rep_1": "Carol", "company_rep_2": null},
                "ai_config": {"openai_config": {"whatsapp": {"api_key_reference": "ai-multi-comms/openai-api-key/whatsapp-dev"}}},
                "channel_config": {"whatsapp": {"company_whatsapp_number": "+447588713814",
                                                "whatsapp_credentials_id": "ai-multi-comms/whatsapp-credentials/c/p/twilio-dev"}}
            },
            "conversation_data": {"conversation_id": "ci-aaa-001#pi-aaa-001#550e8400-e29b-41d4-a716-446655440001#447588713814",
                                  "conversation_status": "initiated"},
            "metadata": {"router_version": "router-dev-1.0.1"}
        })
    }

    #[test]
    fn every_problem_of_a_context_is_named_at_once() {
        let mut bad = context();
        bad["frontend_payload"]["recipient_data"]["recipient_tel"] = json!("");
        bad["frontend_payload"]["request_data"]["channel_method"] = json!("WhatsApp");
        bad["company_data_payload"]["ai_config"]["openai_config"] = json!({});
        let error = Incoming::parse(&bad.to_string(), ChannelKind::Whatsapp).err().expect("rejected").0;
        assert_eq!(
            error,
            "context validation failed: 'frontend_payload.request_data.channel_method' is not 'whatsapp', \
             missing 'frontend_payload.recipient_data.recipient_tel', \
             missing 'company_data_payload.ai_config.openai_config.whatsapp'"
        );
        let error = Incoming::parse(&context().to_string(), ChannelKind::Sms).err().expect("other channel").0;
        assert!(error.contains("is not 'sms'") && error.contains("channel_config.sms"), "{error}");
        assert!(Incoming::parse("[]", ChannelKind::Whatsapp).is_err());
    }

    #[test]
    fn the_initial_record_has_the_original_shape() {
        let incoming = Incoming::parse(&context().to_string(), ChannelKind::Whatsapp).expect("valid");
        let record = incoming.initial_record("processor-dev-1.0.0", "2026-11-23T10:00:00.000000+00:00".into());
        let item = record.to_item().expect("storable");
        let attribute = |name: &str| item.get(name).unwrap_or_else(|| panic!("{name} missing"));
        assert_eq!(attribute("primary_channel"), &AttributeValue::S("+447835065013".into()));
        assert_eq!(attribute("conversation_status"), &AttributeValue::S("processing".into()));
        assert_eq!(attribute("task_complete"), &AttributeValue::N("0".into()), "a number: the LSI sort key");
        assert_eq!(attribute("messages"), &AttributeValue::L(vec![]));
        assert_eq!(attribute("processor_version"), &AttributeValue::S("dev-1.0.0".into()));
        for null in [
            "recipient_last_name",
            "recipient_email",
            "project_data",
            "thread_id",
            "email_id",
            "hand_off_to_human_reason",
        ] {
            assert_eq!(attribute(null), &AttributeValue::Null(true), "{null} is stored as NULL");
        }
        assert_eq!(attribute("gsi_company_whatsapp_number"), &AttributeValue::S("+447588713814".into()));
        for sparse in
            ["gsi_recipient_email", "gsi_company_sms_number", "gsi_company_email", "response_id", "failure_reason"]
        {
            assert!(!item.contains_key(sparse), "{sparse} is omitted when empty");
        }
        // Only this channel's slices of the company's configuration.
        assert_eq!(record.channel_config["company_whatsapp_number"], "+447588713814");
        assert_eq!(record.ai_config["api_key_reference"], "ai-multi-comms/openai-api-key/whatsapp-dev");
        assert_eq!(ConversationRecord::from_item(item).expect("reads back"), record);
    }
}
