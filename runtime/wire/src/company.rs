//! The company-data record: one DynamoDB item per company + project in
//! `{prefix}-company-data-{env}` (spec template-sender §2). The operator writes it from a
//! `Company` resource; the router and processors read it.
//!
//! Attribute names and shapes are the original system's, so records written by its onboarding
//! scripts read the same way. Two deliberate changes: the AI settings per channel describe an
//! OpenAI Responses API call (model, instructions or a stored prompt, output schema) instead of
//! Assistants API ids (that API was shut down on 2026-08-26), and `managed_by` names the
//! resource that owns the item.
use crate::{ChannelKind, Item};
use serde::{Deserialize, Serialize};

/// Partition key attribute of the company-data table.
pub const PARTITION_KEY: &str = "company_id";
/// Sort key attribute of the company-data table.
pub const SORT_KEY: &str = "project_id";
/// Attribute naming the resource that owns the item (see [`CompanyRecord::managed_by`]).
pub const MANAGED_BY: &str = "managed_by";
/// Attribute holding [`api_key_hash`] of the router API key.
pub const API_KEY_HASH: &str = "api_key_hash";
pub const CREATED_AT: &str = "created_at";
pub const UPDATED_AT: &str = "updated_at";
/// Attributes the writer stamps on every write; they never count as a difference.
pub const TIMESTAMPS: [&str; 2] = [CREATED_AT, UPDATED_AT];
/// The only `project_status` value the router accepts.
pub const PROJECT_ACTIVE: &str = "active";
pub const PROJECT_INACTIVE: &str = "inactive";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompanyRecord {
    pub company_id: String,
    pub project_id: String,
    pub company_name: String,
    pub project_name: String,
    /// Secrets Manager name of the router API key for this company + project.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_reference: Option<String>,
    /// [`api_key_hash`] of that key: what the router checks `x-api-key` against.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_hash: Option<String>,
    pub allowed_channels: Vec<ChannelKind>,
    /// `active` or `inactive`; anything but exactly `active` is refused by the router.
    pub project_status: String,
    pub rate_limits: RateLimits,
    /// `company_rep_1` … `company_rep_5`, always all five keys, unused ones NULL.
    #[serde(default)]
    pub company_rep: std::collections::BTreeMap<String, Option<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ai_config: Option<AiConfig>,
    pub channel_config: ChannelConfig,
    #[serde(default)]
    pub auto_queue_initial_message: bool,
    #[serde(default)]
    pub auto_queue_initial_message_from_number: Vec<String>,
    #[serde(default)]
    pub auto_queue_initial_message_from_email: Vec<String>,
    #[serde(default)]
    pub auto_queue_reply_message: bool,
    #[serde(default)]
    pub auto_queue_reply_message_from_number: Vec<String>,
    #[serde(default)]
    pub auto_queue_reply_message_from_email: Vec<String>,
    /// Queue requests whose `comms_consent` is false (the original's behaviour); off by default.
    #[serde(default)]
    pub send_without_consent: bool,
    /// Days after a conversation's last activity (`updated_at`) that it counts as closed: an
    /// answer to it then goes to a person, not the AI, and it no longer counts towards
    /// `concurrent_conversations`; [`DEFAULT_INACTIVITY_DAYS`] when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inactivity_days: Option<u32>,
    /// Days after a conversation's last activity that its record expires (DynamoDB TTL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention_days: Option<u32>,
    /// Hand a conversation to a person when the provider reports one of its messages failed or
    /// undelivered.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub hand_off_on_delivery_failure: bool,
    /// How long the replies flow waits after a recipient's message for more before answering
    /// them together; [`crate::replies::DEFAULT_BATCH_WINDOW_SECONDS`] when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_batch_window_seconds: Option<u32>,
    /// What the company answers to STOP, START and HELP (the defaults where absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keyword_replies: Option<crate::opt_out::KeywordReplies>,
    /// Where a recipient's number without a country code is read (ISO 3166-1 alpha-2, e.g.
    /// `GB`); without it such a number is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_region: Option<String>,
    /// The people who answer the company's handed-off conversations (the inbox, the
    /// conversations API), each with a hash of their token.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub agents: Vec<Agent>,
    /// Where the company's events go ([`crate::client_events`]); none without it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_events: Option<ClientEventsTarget>,
    #[serde(default)]
    pub created_at: String,
    #[serde(default)]
    pub updated_at: String,
    /// Ownership marker: `Company/<namespace>/<name>` of the resource that wrote the item.
    /// Absent on items written by other tools.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managed_by: Option<String>,
}

/// One of the company's agents: the name every action of theirs is recorded under, and
/// [`api_key_hash`] of their token (the token itself is never stored).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Agent {
    pub name: String,
    pub token_hash: String,
}

/// The company's webhook for events, and the Secrets Manager name of the key they are signed
/// with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClientEventsTarget {
    pub url: String,
    pub signing_secret_id: String,
}

/// The longest text a channel carries in one message: Twilio's 1,600 characters for an SMS
/// (sent as up to ten segments), WhatsApp's 4,096 for a free-form message.
pub fn channel_text_limit(channel: ChannelKind) -> Option<usize> {
    match channel {
        ChannelKind::Sms => Some(1_600),
        ChannelKind::Whatsapp => Some(4_096),
        ChannelKind::Email => None,
    }
}

impl RateLimits {
    /// Why `text` must not be sent on `channel`: longer than the company's `maxMessageLength`
    /// or than the channel carries (a text is never sent cut, nor left for the provider to
    /// refuse after the AI was paid for).
    pub fn too_long(&self, channel: ChannelKind, text: &str) -> Option<String> {
        let length = text.chars().count();
        let company = self.max_message_length as usize;
        let limit = channel_text_limit(channel).map_or(company, |carried| carried.min(company));
        (length > limit)
            .then(|| format!("the AI's message is {length} characters, more than the {limit} allowed on {channel}"))
    }
}

/// How long a conversation stays open without activity when the company does not say.
pub const DEFAULT_INACTIVITY_DAYS: u32 = 30;

impl CompanyRecord {
    /// The company's inactivity period, in days.
    pub fn inactivity_days(&self) -> u32 {
        self.inactivity_days.unwrap_or(DEFAULT_INACTIVITY_DAYS)
    }

    /// When a conversation active now expires (epoch seconds), if the company keeps them for a
    /// limited time.
    pub fn expires_at(&self, now_seconds: u64) -> Option<u64> {
        self.retention_days.map(|days| now_seconds + u64::from(days) * 86_400)
    }

    /// The replies batching window, within SQS's delay limit.
    pub fn reply_batch_window(&self) -> std::time::Duration {
        use crate::replies::{DEFAULT_BATCH_WINDOW_SECONDS, MAX_BATCH_WINDOW_SECONDS};
        let seconds = self.reply_batch_window_seconds.unwrap_or(DEFAULT_BATCH_WINDOW_SECONDS);
        std::time::Duration::from_secs(seconds.min(MAX_BATCH_WINDOW_SECONDS).into())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RateLimits {
    pub requests_per_minute: u32,
    pub requests_per_day: u32,
    pub concurrent_conversations: u32,
    pub max_message_length: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AiConfig {
    pub openai_config: PerChannel<AiChannelConfig>,
}

/// One optional entry per channel, keyed by the lower-case channel name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PerChannel<T> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub whatsapp: Option<T>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sms: Option<T>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<T>,
}

impl<T> Default for PerChannel<T> {
    fn default() -> Self {
        PerChannel { whatsapp: None, sms: None, email: None }
    }
}

impl<T> PerChannel<T> {
    pub fn get(&self, kind: ChannelKind) -> Option<&T> {
        match kind {
            ChannelKind::Whatsapp => self.whatsapp.as_ref(),
            ChannelKind::Sms => self.sms.as_ref(),
            ChannelKind::Email => self.email.as_ref(),
        }
    }

    pub fn set(&mut self, kind: ChannelKind, value: T) {
        let slot = match kind {
            ChannelKind::Whatsapp => &mut self.whatsapp,
            ChannelKind::Sms => &mut self.sms,
            ChannelKind::Email => &mut self.email,
        };
        *slot = Some(value);
    }
}

/// How a processor asks the model for a channel's first message (OpenAI Responses API).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AiChannelConfig {
    /// Secrets Manager name of the secret `{"ai_api_key": "..."}`.
    pub api_key_reference: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instructions: Option<String>,
    /// A stored prompt id (`pmpt_…`), used instead of or with `instructions`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_id: Option<String>,
    /// JSON Schema the model's structured output must satisfy (the template variables).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_schema: Option<serde_json::Value>,
    /// Base URL of an OpenAI-compatible endpoint; the processor's default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
    /// How the AI answers the recipient's replies (same endpoint and key as above).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replies: Option<ReplyAiConfig>,
}

/// How the reply processor asks the model for a reply: the Responses API call continues the
/// conversation (`previous_response_id`), so only what differs from the first message is here.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ReplyAiConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instructions: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_id: Option<String>,
    /// JSON Schema of the reply; it must produce a string `content` (the text sent). Default
    /// `{"content": string}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_schema: Option<serde_json::Value>,
}

/// Sender settings per channel. The `*_credentials_id` values are Secrets Manager names.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChannelConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub whatsapp: Option<WhatsappConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sms: Option<SmsConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<EmailConfig>,
}

impl ChannelConfig {
    /// The company's sender on `kind`: its number (whatsapp, sms) or email address.
    pub fn sender(&self, kind: ChannelKind) -> Option<&str> {
        match kind {
            ChannelKind::Whatsapp => self.whatsapp.as_ref().map(|c| c.company_whatsapp_number.as_str()),
            ChannelKind::Sms => self.sms.as_ref().map(|c| c.company_sms_number.as_str()),
            ChannelKind::Email => self.email.as_ref().map(|c| c.company_email.as_str()),
        }
    }

    /// The Secrets Manager name of `kind`'s provider credentials.
    pub fn credentials_id(&self, kind: ChannelKind) -> Option<&str> {
        match kind {
            ChannelKind::Whatsapp => self.whatsapp.as_ref().map(|c| c.whatsapp_credentials_id.as_str()),
            ChannelKind::Sms => self.sms.as_ref().map(|c| c.sms_credentials_id.as_str()),
            ChannelKind::Email => self.email.as_ref().map(|c| c.email_credentials_id.as_str()),
        }
    }

    /// `kind`'s settings as JSON, when configured (a conversation record keeps its own slice).
    pub fn slice(&self, kind: ChannelKind) -> Option<serde_json::Value> {
        match kind {
            ChannelKind::Whatsapp => self.whatsapp.as_ref().and_then(|c| serde_json::to_value(c).ok()),
            ChannelKind::Sms => self.sms.as_ref().and_then(|c| serde_json::to_value(c).ok()),
            ChannelKind::Email => self.email.as_ref().and_then(|c| serde_json::to_value(c).ok()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WhatsappConfig {
    /// E.164 with `+`, without the `whatsapp:` prefix (senders add it).
    pub company_whatsapp_number: String,
    /// Secret `{"twilio_account_sid", "twilio_auth_token", "twilio_template_sid"}`.
    pub whatsapp_credentials_id: String,
    /// The approved template (`HX…`) sent instead of a reply that comes after WhatsApp's 24-hour
    /// window; its `{{1}}` is the recipient's first name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reengagement_content_sid: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SmsConfig {
    pub company_sms_number: String,
    /// Secret `{"twilio_account_sid", "twilio_auth_token"}`.
    pub sms_credentials_id: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmailConfig {
    pub company_email: String,
    /// Secret `{"sendgrid_api_key"}`.
    pub email_credentials_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email_from_name: Option<String>,
    /// SendGrid dynamic template id (`d-…`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sendgrid_template_id: Option<String>,
    /// The SendGrid unsubscribe group every mail names (its unsubscribe link and suppressions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unsubscribe_group_id: Option<u32>,
    /// The public key (base64 DER) SendGrid signs the company's Event Webhook with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_webhook_public_key: Option<String>,
}

/// How the record stores a router API key: `sha256:` and the hex digest, never the key. API keys
/// are long random strings, so an unsalted hash does not make them guessable.
pub fn api_key_hash(key: &str) -> String {
    use sha2::Digest;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(key.as_bytes())))
}

/// A record could not be turned into an item or back.
#[derive(Debug)]
pub struct ItemError(serde_dynamo::Error);

impl std::fmt::Display for ItemError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "company-data item does not match the record format: {}", self.0)
    }
}

impl std::error::Error for ItemError {}

/// The key of the record of `company_id` + `project_id`.
pub fn record_key(company_id: &str, project_id: &str) -> Item {
    use aws_sdk_dynamodb::types::AttributeValue;
    [
        (PARTITION_KEY.to_string(), AttributeValue::S(company_id.to_string())),
        (SORT_KEY.to_string(), AttributeValue::S(project_id.to_string())),
    ]
    .into()
}

impl CompanyRecord {
    pub fn to_item(&self) -> Result<Item, ItemError> {
        serde_dynamo::to_item(self).map_err(ItemError)
    }

    pub fn from_item(item: Item) -> Result<Self, ItemError> {
        serde_dynamo::from_item(item).map_err(ItemError)
    }

    pub fn is_active(&self) -> bool {
        self.project_status == PROJECT_ACTIVE
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_dynamodb::types::AttributeValue;

    fn sample() -> CompanyRecord {
        let mut openai = PerChannel::default();
        openai.set(
            ChannelKind::Whatsapp,
            AiChannelConfig {
                api_key_reference: "ai-multi-comms/openai-api-key/whatsapp-dev".into(),
                model: Some("gpt-4o-mini".into()),
                instructions: Some("Write the template variables.".into()),
                prompt_id: None,
                output_schema: Some(serde_json::json!({
                    "type": "object",
                    "properties": {"1": {"type": "string", "maxLength": 60}},
                    "required": ["1"],
                    "additionalProperties": false
                })),
                base_url: None,
                replies: Some(ReplyAiConfig { instructions: Some("Answer briefly.".into()), ..Default::default() }),
            },
        );
        CompanyRecord {
            company_id: "ci-aaa-001".into(),
            project_id: "pi-aaa-001".into(),
            company_name: "Cucumber Recruitment".into(),
            project_name: "Clarify CV".into(),
            api_key_reference: None,
            api_key_hash: Some(api_key_hash("k")),
            allowed_channels: vec![ChannelKind::Whatsapp],
            project_status: PROJECT_ACTIVE.into(),
            rate_limits: RateLimits {
                requests_per_minute: 60,
                requests_per_day: 2000,
                concurrent_conversations: 30,
                max_message_length: 4096,
            },
            company_rep: [("company_rep_1".to_string(), Some("Carol".to_string()))]
                .into_iter()
                .chain((2..=5).map(|i| (format!("company_rep_{i}"), None)))
                .collect(),
            ai_config: Some(AiConfig { openai_config: openai }),
            channel_config: ChannelConfig {
                whatsapp: Some(WhatsappConfig {
                    company_whatsapp_number: "+447588713814".into(),
                    whatsapp_credentials_id: "x".into(),
                    reengagement_content_sid: None,
                }),
                ..Default::default()
            },
            auto_queue_initial_message: false,
            auto_queue_initial_message_from_number: vec![],
            auto_queue_initial_message_from_email: vec![],
            auto_queue_reply_message: false,
            auto_queue_reply_message_from_number: vec![],
            auto_queue_reply_message_from_email: vec![],
            send_without_consent: false,
            reply_batch_window_seconds: Some(2),
            keyword_replies: None,
            default_region: None,
            agents: vec![],
            client_events: None,
            hand_off_on_delivery_failure: false,
            inactivity_days: None,
            retention_days: None,
            created_at: "2026-11-23T10:00:00.000000+00:00".into(),
            updated_at: "2026-11-23T10:00:00.000000+00:00".into(),
            managed_by: Some("Company/dev/cucumber".into()),
        }
    }

    #[test]
    fn item_uses_the_original_attribute_types() {
        let item = sample().to_item().expect("serialises");
        assert_eq!(item["company_id"], AttributeValue::S("ci-aaa-001".into()));
        assert_eq!(item["allowed_channels"], AttributeValue::L(vec![AttributeValue::S("whatsapp".into())]));
        let AttributeValue::M(limits) = &item["rate_limits"] else { panic!("rate_limits is a map") };
        assert_eq!(limits["requests_per_minute"], AttributeValue::N("60".into()));
        let AttributeValue::M(reps) = &item["company_rep"] else { panic!("company_rep is a map") };
        assert_eq!(reps["company_rep_2"], AttributeValue::Null(true));
        assert_eq!(item["auto_queue_initial_message"], AttributeValue::Bool(false));
        assert!(!item.contains_key("api_key_reference"), "absent options are omitted");
    }

    #[test]
    fn item_round_trips_including_the_output_schema() {
        let record = sample();
        let back = CompanyRecord::from_item(record.to_item().expect("serialises")).expect("parses");
        assert_eq!(back, record);
    }

    #[test]
    fn reads_a_record_written_by_the_original_onboarding_script() {
        // Shape of spec §2.5: Assistants-era ai_config keys, no owner, no hand-off lists.
        let json = serde_json::json!({
            "company_id": "ci-aaa-XXX", "project_id": "pi-aaa-XXX",
            "company_name": "Cucumber Recruitment", "project_name": "Clarify CV",
            "allowed_channels": ["whatsapp", "sms", "email"],
            "rate_limits": {"requests_per_minute": 60, "requests_per_day": 2000,
                            "concurrent_conversations": 30, "max_message_length": 4096},
            "project_status": "active",
            "ai_config": {"openai_config": {"whatsapp": {
                "api_key_reference": "ai-multi-comms/openai-api-key/whatsapp-dev",
                "assistant_id_template_sender": "asst_x"}}},
            "channel_config": {"whatsapp": {"company_whatsapp_number": "+447588713814",
                "whatsapp_credentials_id": "ai-multi-comms/whatsapp-credentials/a/b/twilio-dev"}},
            "created_at": "2023-10-27T10:00:00Z", "updated_at": "2023-10-27T10:00:00Z"
        });
        let item: Item = serde_dynamo::to_item(json).expect("item");
        let record = CompanyRecord::from_item(item).expect("parses");
        assert!(record.is_active());
        assert_eq!(record.managed_by, None);
        assert_eq!(record.allowed_channels.len(), 3);
    }

    #[test]
    fn a_message_longer_than_the_company_or_the_channel_allows_is_too_long() {
        let limits = RateLimits {
            requests_per_minute: 60,
            requests_per_day: 2000,
            concurrent_conversations: 30,
            max_message_length: 10,
        };
        assert_eq!(limits.too_long(ChannelKind::Sms, "ten chars!"), None);
        assert!(limits.too_long(ChannelKind::Sms, "eleven char").is_some_and(|why| why.contains("11 characters")));
        let generous = RateLimits { max_message_length: 100_000, ..limits };
        assert!(generous.too_long(ChannelKind::Sms, &"x".repeat(1_601)).is_some(), "SMS carries 1,600");
        assert!(generous.too_long(ChannelKind::Whatsapp, &"é".repeat(4_096)).is_none(), "characters, not bytes");
        assert!(generous.too_long(ChannelKind::Email, &"x".repeat(50_000)).is_none());
    }
}
