//! What happens to one message: the decisions of the processor, with I/O behind the adapters.
use super::ai::{self, Ai, Reply};
use super::conversations::{Conversations, Created, Key};
use super::failure::Failure;
use super::metrics::Metrics;
use super::secrets::{Secrets, TwilioCredentials};
use super::senders::{Email, SendError, Senders, Sent};
use crate::wire::company::AiChannelConfig;
use crate::wire::context::ContextObject;
use crate::wire::conversation::{status, ConversationRecord, Message};
use crate::wire::{ChannelKind, CompanyRecord};
use secrecy::SecretString;
use serde_json::{Map, Value};
use std::sync::Arc;
use std::time::Instant;

pub struct Processor {
    pub channel: ChannelKind,
    /// `processor_version` on new records.
    pub version: String,
    pub conversations: Conversations,
    pub secrets: Secrets,
    pub ai: Ai,
    pub senders: Senders,
    pub metrics: Arc<Metrics>,
    /// How long a send claim may legitimately last (the provider call's timeout plus a
    /// margin): a redelivery finding a younger claim waits instead of handing off.
    pub send_grace: std::time::Duration,
}

/// The message's fate.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Finished — sent, failed for good (the record says why), needs a person, or a duplicate:
    /// delete the message. The label is the metric's `outcome`.
    Done(&'static str),
    /// Leave the message for SQS to deliver again after a backoff.
    Retry(String),
    /// Unusable (not a context object for this channel): left for SQS to move to the DLQ.
    Poison(String),
}

pub const SENT: &str = "sent";
pub const FAILED: &str = "failed";
pub const DUPLICATE: &str = "duplicate";
pub const NEEDS_ATTENTION: &str = "needs_attention";

/// UTC now like Python's `isoformat()` (the original's timestamps).
pub fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, false)
}

/// A step's failure: the status the record must still have, and the one it then gets.
struct StepFailure {
    from: &'static str,
    status: &'static str,
    step: &'static str,
    failure: Failure,
}

/// A failure before the send claim.
fn at(status: &'static str, step: &'static str) -> impl FnOnce(Failure) -> StepFailure {
    move |failure| StepFailure { from: status::PROCESSING, status, step, failure }
}

enum Credentials {
    Twilio(TwilioCredentials),
    SendGrid(SecretString),
}

impl Processor {
    /// `last_receive`: SQS dead-letters the message after this receive, so it must not be left
    /// to come back.
    pub async fn process(&self, body: &str, last_receive: bool) -> Outcome {
        let incoming = match Incoming::parse(body, self.channel) {
            Ok(incoming) => incoming,
            Err(reason) => return Outcome::Poison(reason),
        };
        tracing::Span::current().record("conversation_id", &incoming.context.conversation_data.conversation_id);
        let started = Instant::now();
        let record = incoming.initial_record(&self.version, now());
        let key = (record.primary_channel.clone(), record.conversation_id.clone());
        match self.conversations.create(&record).await {
            Ok(Created::New) => {}
            Ok(Created::Exists(state)) => match state.status.as_str() {
                // An earlier attempt stopped before sending: nothing went out, start over.
                status::PROCESSING => {}
                // Another attempt may still be talking to the provider: ask again later, unless
                // there is no later (the conversation would be dead-lettered while `sending`).
                status::SENDING if self.claimed_recently(&state.updated_at) && !last_receive => {
                    return Outcome::Retry("another attempt is sending this conversation".into());
                }
                status::SENDING if self.claimed_recently(&state.updated_at) => {
                    let reason = "send: an attempt was still sending when the message reached its last receive; \
                                  the message may have been delivered, so it is handed off instead of dead-lettered";
                    return self.needs_attention(&key, reason).await;
                }
                status::SENDING => {
                    let reason = "send: an earlier attempt stopped while sending; the message may have been \
                                  delivered, so it is not sent again";
                    return self.needs_attention(&key, reason).await;
                }
                _ => return Outcome::Done(DUPLICATE),
            },
            Err(Failure::Transient(reason)) => return Outcome::Retry(format!("record: {reason}")),
            Err(Failure::Permanent(reason)) => return Outcome::Poison(format!("record: {reason}")),
        }
        match self.work(&incoming, &key, started).await {
            Ok(outcome) => outcome,
            Err(StepFailure { step, failure: Failure::Transient(why), .. }) => {
                let reason = format!("{step}: {why}");
                if let Err(e) = self.conversations.retrying(&key, &reason).await {
                    tracing::warn!(conversation_id = %key.1, error = %e, "could not note the retry on the record");
                }
                Outcome::Retry(reason)
            }
            Err(StepFailure { from, status, step, failure: Failure::Permanent(why) }) => {
                let reason = format!("{step}: {why}");
                tracing::warn!(conversation_id = %key.1, status, reason = %reason, "conversation failed");
                match self.conversations.failed(&key, from, status, &reason, false).await {
                    Ok(true) => Outcome::Done(FAILED),
                    // Another attempt finished the conversation meanwhile.
                    Ok(false) => Outcome::Done(DUPLICATE),
                    Err(e) => Outcome::Retry(format!("recording the failure: {e}")),
                }
            }
        }
    }

    fn claimed_recently(&self, claimed_at: &str) -> bool {
        chrono::DateTime::parse_from_rfc3339(claimed_at).is_ok_and(|at| {
            let age = chrono::Utc::now().signed_duration_since(at);
            age.to_std().map_or(true, |age| age < self.send_grace)
        })
    }

    async fn work(&self, m: &Incoming, key: &Key, started: Instant) -> Result<Outcome, StepFailure> {
        if !m.comms_consent && !m.company.send_without_consent {
            let failure = Failure::Permanent("comms_consent is false and the company does not send without it".into());
            return Err(at(status::FAILED_NO_CONSENT, "consent")(failure));
        }
        let ai_key =
            self.secrets.ai_key(&m.ai.api_key_reference).await.map_err(at(status::FAILED_SECRETS_FETCH, "secrets"))?;
        let credentials_name = m.credentials_name();
        let credentials =
            self.credentials(credentials_name).await.map_err(at(status::FAILED_SECRETS_FETCH, "secrets"))?;
        let reply = match self.ai.first_message(self.channel, &m.ai, &ai_key, m.ai_input(), &key.1).await {
            Ok(reply) => reply,
            Err(failure) => {
                // A rejected key may have been rotated: read it afresh next time.
                self.secrets.forget(&m.ai.api_key_reference);
                return Err(at(status::FAILED_TO_PROCESS_AI, "ai")(failure));
            }
        };
        let sms_body = match self.channel {
            ChannelKind::Sms => {
                Some(reply.variables.get("body").and_then(Value::as_str).map(str::to_string).ok_or_else(|| {
                    at(status::FAILED_TO_PROCESS_AI, "ai")(Failure::Permanent("the output has no string `body`".into()))
                })?)
            }
            _ => None,
        };
        // The claim: from here on the provider may get the message, so a redelivery must not
        // send again. A claim held by another attempt is left to it; the message comes back
        // later and finds the outcome.
        let token = uuid::Uuid::new_v4().to_string();
        if !self.conversations.claim(key, &token).await.map_err(at(status::FAILED_UNKNOWN, "claim"))? {
            return Ok(Outcome::Retry("another attempt claimed the send".into()));
        }
        let sent = match self.send(m, &credentials, &reply, sms_body.as_deref()).await {
            Ok(sent) => sent,
            Err(SendError::NotSent(failure)) => {
                self.secrets.forget(credentials_name);
                if let Failure::Transient(_) = failure {
                    // Nothing went out: give the claim back so the retry may send.
                    self.conversations.release(key, &token).await.map_err(at(status::FAILED_UNKNOWN, "send"))?;
                    return Err(at(status::FAILED_TO_SEND_MESSAGE, "send")(failure));
                }
                let step = "send";
                return Err(StepFailure {
                    from: status::SENDING,
                    status: status::FAILED_TO_SEND_MESSAGE,
                    step,
                    failure,
                });
            }
            Err(SendError::Unknown(why)) => {
                let reason = format!("send: {why}; the message may have been delivered, so it is not sent again");
                return Ok(self.needs_attention(key, &reason).await);
            }
        };
        let message = Message {
            message_id: sent.message_id.clone(),
            timestamp: now(),
            role: "assistant".into(),
            content: sent.content,
            prompt_tokens: reply.usage.input_tokens,
            completion_tokens: reply.usage.output_tokens,
            total_tokens: reply.usage.total_tokens,
        };
        let took = started.elapsed().as_millis() as u64;
        if let Err(e) = self.conversations.sent(key, &message, &reply.response_id, took).await {
            // The original's alarm text; the message is still deleted so it is never re-sent.
            self.metrics.sent_but_record_update_failed.inc();
            tracing::error!(
                critical = true,
                conversation_id = %key.1,
                message_id = %sent.message_id,
                error = %e,
                "CRITICAL: Message sent (SID: {}) for conversation {}, but final DynamoDB update failed. \
                 Manual intervention required to update record. Data to update: status='{}', response_id='{}', \
                 processing_time='{took}'",
                sent.message_id,
                key.1,
                status::INITIAL_MESSAGE_SENT,
                reply.response_id,
            );
        }
        Ok(Outcome::Done(SENT))
    }

    async fn credentials(&self, name: &str) -> Result<Credentials, Failure> {
        match self.channel {
            ChannelKind::Whatsapp | ChannelKind::Sms => self.secrets.twilio(name).await.map(Credentials::Twilio),
            ChannelKind::Email => self.secrets.sendgrid_key(name).await.map(Credentials::SendGrid),
        }
    }

    async fn send(
        &self,
        m: &Incoming,
        credentials: &Credentials,
        reply: &Reply,
        sms_body: Option<&str>,
    ) -> Result<Sent, SendError> {
        let config = &m.company.channel_config;
        let missing = |what: &str| SendError::NotSent(Failure::Permanent(format!("{what} is not configured")));
        match (self.channel, credentials) {
            (ChannelKind::Whatsapp, Credentials::Twilio(twilio)) => {
                let from = config.whatsapp.as_ref().map(|w| w.company_whatsapp_number.as_str()).unwrap_or("");
                self.senders.whatsapp(twilio, from, &m.primary_channel, &reply.variables).await
            }
            (ChannelKind::Sms, Credentials::Twilio(twilio)) => {
                let from = config.sms.as_ref().map(|s| s.company_sms_number.as_str()).unwrap_or("");
                self.senders.sms(twilio, from, &m.primary_channel, sms_body.unwrap_or("")).await
            }
            (ChannelKind::Email, Credentials::SendGrid(api_key)) => {
                let email = config.email.as_ref().ok_or_else(|| missing("channel_config.email"))?;
                let template_id =
                    email.sendgrid_template_id.as_deref().ok_or_else(|| missing("the SendGrid template id"))?;
                let name = [
                    m.text(&["recipient_data", "recipient_first_name"]),
                    m.text(&["recipient_data", "recipient_last_name"]),
                ];
                let to_name = name.into_iter().flatten().collect::<Vec<_>>().join(" ");
                self.senders
                    .email(Email {
                        api_key,
                        from_email: &email.company_email,
                        from_name: email.email_from_name.as_deref(),
                        to_email: &m.primary_channel,
                        to_name: Some(to_name),
                        template_id,
                        data: &reply.variables,
                        conversation_id: &m.context.conversation_data.conversation_id,
                    })
                    .await
            }
            _ => Err(missing("a provider for this channel")),
        }
    }

    async fn needs_attention(&self, key: &Key, reason: &str) -> Outcome {
        match self.conversations.failed(key, status::SENDING, status::SEND_OUTCOME_UNKNOWN, reason, true).await {
            Ok(true) => {
                tracing::error!(conversation_id = %key.1, reason, "send outcome unknown; handed off to a person");
                Outcome::Done(NEEDS_ATTENTION)
            }
            // The sending attempt finished meanwhile.
            Ok(false) => Outcome::Done(DUPLICATE),
            Err(e) => Outcome::Retry(format!("recording an unknown send outcome: {e}")),
        }
    }
}

/// A message body that is a usable context object for this processor's channel.
struct Incoming {
    channel: ChannelKind,
    context: ContextObject,
    company: CompanyRecord,
    ai: AiChannelConfig,
    /// recipient_tel (whatsapp, sms) or recipient_email (email): the record's partition key.
    primary_channel: String,
    comms_consent: bool,
}

impl Incoming {
    /// Every problem at once (spec §5.3), naming the fields.
    fn parse(body: &str, channel: ChannelKind) -> Result<Self, String> {
        let context: ContextObject =
            serde_json::from_str(body).map_err(|e| format!("the body is not a context object: {e}"))?;
        let company: CompanyRecord = serde_json::from_value(context.company_data_payload.clone())
            .map_err(|e| format!("company_data_payload is not a company record: {e}"))?;
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
        let recipient_field = match channel {
            ChannelKind::Whatsapp | ChannelKind::Sms => "recipient_tel",
            ChannelKind::Email => "recipient_email",
        };
        let primary_channel = text(&["recipient_data", recipient_field]).map(str::to_string);
        if primary_channel.is_none() {
            problems.push(format!("missing 'frontend_payload.recipient_data.{recipient_field}'"));
        }
        let channel_configured = match channel {
            ChannelKind::Whatsapp => company.channel_config.whatsapp.is_some(),
            ChannelKind::Sms => company.channel_config.sms.is_some(),
            ChannelKind::Email => company.channel_config.email.is_some(),
        };
        if !channel_configured {
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
            _ => Err(format!("context validation failed: {}", problems.join(", "))),
        }
    }

    /// The Secrets Manager name of this channel's provider credentials.
    fn credentials_name(&self) -> &str {
        let config = &self.company.channel_config;
        let name = match self.channel {
            ChannelKind::Whatsapp => config.whatsapp.as_ref().map(|w| w.whatsapp_credentials_id.as_str()),
            ChannelKind::Sms => config.sms.as_ref().map(|s| s.sms_credentials_id.as_str()),
            ChannelKind::Email => config.email.as_ref().map(|e| e.email_credentials_id.as_str()),
        };
        name.unwrap_or("")
    }

    fn text(&self, path: &[&str]) -> Option<String> {
        let value = path.iter().try_fold(&self.context.frontend_payload, |v, k| v.get(k))?;
        value.as_str().filter(|s| !s.is_empty()).map(str::to_string)
    }

    fn sender_contacts(&self) -> Map<String, Value> {
        let config = &self.company.channel_config;
        let mut contacts = Map::new();
        let mut add = |k: &str, v: Option<&String>| {
            if let Some(v) = v.map(|v| v.trim()).filter(|v| !v.is_empty()) {
                contacts.insert(k.into(), Value::String(v.into()));
            }
        };
        add("whatsapp", config.whatsapp.as_ref().map(|w| &w.company_whatsapp_number));
        add("sms", config.sms.as_ref().map(|s| &s.company_sms_number));
        add("email", config.email.as_ref().map(|e| &e.company_email));
        contacts
    }

    fn ai_input(&self) -> String {
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
    fn initial_record(&self, version: &str, now: String) -> ConversationRecord {
        let company = &self.company;
        let frontend = &self.context.frontend_payload;
        let channel = self.channel;
        let non_empty = |list: &Vec<String>| (!list.is_empty()).then(|| list.clone());
        let slice = |value: Option<Value>| value.unwrap_or_else(|| Value::Object(Map::new()));
        let config = &company.channel_config;
        let channel_config = match channel {
            ChannelKind::Whatsapp => config.whatsapp.as_ref().and_then(|c| serde_json::to_value(c).ok()),
            ChannelKind::Sms => config.sms.as_ref().and_then(|c| serde_json::to_value(c).ok()),
            ChannelKind::Email => config.email.as_ref().and_then(|c| serde_json::to_value(c).ok()),
        };
        let sender = self.sender_contacts().get(channel.as_str()).and_then(Value::as_str).map(str::to_string);
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
            channel_config: slice(channel_config),
            router_version: Some(self.context.metadata.router_version.clone()).filter(|v| !v.is_empty()),
            recipient_first_name: self.text(&["recipient_data", "recipient_first_name"]),
            recipient_last_name: self.text(&["recipient_data", "recipient_last_name"]),
            recipient_tel: recipient_tel.clone(),
            recipient_email: recipient_email.clone(),
            comms_consent: self.comms_consent,
            project_data: project_data.cloned(),
            processor_version: version.replace("processor-", ""),
            conversation_status: status::PROCESSING.into(),
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
            gsi_company_whatsapp_number: sender.clone().filter(|_| channel == ChannelKind::Whatsapp),
            gsi_company_sms_number: sender.clone().filter(|_| channel == ChannelKind::Sms),
            gsi_company_email: sender.filter(|_| channel == ChannelKind::Email),
            response_id: None,
            failure_reason: None,
            initial_processing_time_ms: None,
            claim_id: None,
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
        let error = Incoming::parse(&bad.to_string(), ChannelKind::Whatsapp).err().expect("rejected");
        assert_eq!(
            error,
            "context validation failed: 'frontend_payload.request_data.channel_method' is not 'whatsapp', \
             missing 'frontend_payload.recipient_data.recipient_tel', \
             missing 'company_data_payload.ai_config.openai_config.whatsapp'"
        );
        let error = Incoming::parse(&context().to_string(), ChannelKind::Sms).err().expect("other channel");
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
