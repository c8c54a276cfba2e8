//! `Company`: one company + project, mirroring its company-data record. Credentials are
//! referenced from Kubernetes Secrets, never written in the resource. Length limits on the fields
//! that CEL rules read keep the API server's cost estimate for those rules within budget.
// clippy reads the repeated `type_ = "string"` of separate printcolumn(...) entries as one
// duplicated attribute.
#![allow(clippy::duplicated_attributes)]
use super::common::{Condition, DeletionPolicy, JsonText, SecretValue};
use kube::{CustomResource, KubeSchema};
use multicomms_wire::company::{PROJECT_ACTIVE, PROJECT_INACTIVE};
use multicomms_wire::ChannelKind;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(CustomResource, KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[kube(
    group = "multicomms.io",
    version = "v1alpha1",
    kind = "Company",
    plural = "companies",
    shortname = "co",
    category = "multicomms",
    namespaced,
    status = "CompanyStatus",
    cel,
    printcolumn(json_path = ".spec.companyId", name = "Company", type_ = "string"),
    printcolumn(json_path = ".spec.projectId", name = "Project", type_ = "string"),
    printcolumn(json_path = ".status.conditions[?(@.type==\"Ready\")].status", name = "Ready", type_ = "string"),
    printcolumn(json_path = ".status.conditions[?(@.type==\"Ready\")].reason", name = "Reason", type_ = "string"),
    printcolumn(json_path = ".metadata.creationTimestamp", name = "Age", type_ = "date")
)]
#[x_kube(
    validation = Rule::new("!('whatsapp' in self.allowedChannels) || has(self.channels.whatsapp)")
        .message("channels.whatsapp is required because allowedChannels lists whatsapp"),
    validation = Rule::new("!('sms' in self.allowedChannels) || has(self.channels.sms)")
        .message("channels.sms is required because allowedChannels lists sms"),
    validation = Rule::new("!('email' in self.allowedChannels) || has(self.channels.email)")
        .message("channels.email is required because allowedChannels lists email")
)]
#[serde(rename_all = "camelCase")]
pub struct CompanySpec {
    /// Company id, e.g. `ci-aaa-001`. Immutable: it is the record's partition key.
    #[x_kube(
        validation = Rule::new("self == oldSelf").message("is immutable"),
        validation = Rule::new("self.matches('^[a-z0-9]([a-z0-9-]{0,62}[a-z0-9])?$')")
            .message("must be 1-64 lower-case letters, digits and inner hyphens, e.g. ci-aaa-001")
    )]
    #[schemars(length(max = 64))]
    pub company_id: String,
    /// Project id, e.g. `pi-aaa-001`. Immutable: it is the record's sort key.
    #[x_kube(
        validation = Rule::new("self == oldSelf").message("is immutable"),
        validation = Rule::new("self.matches('^[a-z0-9]([a-z0-9-]{0,62}[a-z0-9])?$')")
            .message("must be 1-64 lower-case letters, digits and inner hyphens, e.g. pi-aaa-001")
    )]
    #[schemars(length(max = 64))]
    pub project_id: String,
    /// Display name; its slug names the company's secrets. Immutable: conversations under way
    /// read the secrets by the names they were started with, so a rename would leave them on a
    /// secret nobody updates (review r3, L7). A new name is a new Company.
    #[x_kube(
        validation = Rule::new("self == oldSelf")
            .message("is immutable: the company's secrets are named after it; a new name is a new Company"),
        validation = Rule::new("self.matches('[A-Za-z0-9]')").message("must contain a letter or digit")
    )]
    #[schemars(length(max = 256))]
    pub company_name: String,
    /// Display name; its slug names the company's secrets. Immutable, as `companyName`.
    #[x_kube(
        validation = Rule::new("self == oldSelf")
            .message("is immutable: the company's secrets are named after it; a new name is a new Company"),
        validation = Rule::new("self.matches('[A-Za-z0-9]')").message("must contain a letter or digit")
    )]
    #[schemars(length(max = 256))]
    pub project_name: String,
    #[serde(default)]
    pub project_status: ProjectStatus,
    /// Channels clients may request for this project.
    #[x_kube(validation = Rule::new("size(self) > 0").message("must list at least one channel"))]
    #[schemars(length(max = 3))]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub allowed_channels: Vec<ChannelKind>,
    #[serde(default)]
    pub rate_limits: RateLimits,
    /// Up to five representatives' names, given to the AI.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(validation = Rule::new("size(self) <= 5").message("takes at most 5 names"))]
    #[schemars(length(max = 5))]
    pub company_reps: Vec<String>,
    /// The key clients send in `x-api-key` to the router for this company + project.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<SecretValue>,
    /// Sender and AI settings per channel; one block for each allowed channel.
    pub channels: CompanyChannels,
    #[serde(default)]
    pub hand_off: HandOff,
    /// Queue requests whose `comms_consent` is false (the original system's behaviour). Off by
    /// default: the router refuses them with COMMS_CONSENT_REQUIRED.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub send_without_consent: bool,
    /// Seconds the replies flow waits after a recipient's message for more, then answers them
    /// together (default 10; at most 900, SQS's longest delay).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 900))]
    pub reply_batch_window_seconds: Option<u32>,
    /// What the company answers, instead of the AI, to a recipient's STOP (and its kin), START
    /// and HELP; the defaults where absent. A STOP always opts the recipient out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keyword_replies: Option<KeywordReplies>,
    /// Where a recipient's phone number without a country code is read (ISO 3166-1 alpha-2,
    /// e.g. `GB`). Every number is kept in E.164; without this, a client must send `+` and a
    /// country code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[A-Z]{2}$"))]
    pub default_region: Option<String>,
    /// Days after a conversation's last activity that it counts as closed: a recipient's
    /// message to it then goes to a person, not the AI, and it no longer counts towards
    /// `rateLimits.concurrentConversations`.
    #[serde(default = "default_inactivity_days")]
    #[schemars(range(min = 1, max = 365))]
    pub inactivity_days: u32,
    /// Days after a conversation's last activity that its record is deleted (DynamoDB's TTL,
    /// usually within two days of that). Unset: kept until erased.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 3650))]
    pub retention_days: Option<u32>,
    /// The people who answer handed-off conversations in the inbox (`/inbox`) and through the
    /// conversations API, each signing in with the token in a Secret bound to this Company.
    /// Every action they take is recorded under their name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(validation = Rule::new("self.all(a, self.exists_one(b, b.name == a.name))")
        .message("names each agent once"))]
    #[schemars(length(max = 50))]
    pub agents: Vec<Agent>,
    /// Where the company's systems hear what happens in its conversations (started, sent,
    /// delivered, answered, handed off, taken over, given back, opted out, closed): signed JSON
    /// events, retried with backoff (docs/operations.md, "Events to your systems").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events: Option<ClientEvents>,
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
}

/// The company's webhook for events.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClientEvents {
    /// The URL events are posted to: https (http only on loopback, for development).
    #[x_kube(validation = Rule::new(r"self.matches('^https://[^/@\\s]+(/.*)?$') || self.matches('^http://(localhost|127\\.0\\.0\\.1|\\[::1\\])(:[0-9]+)?(/.*)?$')")
        .message("must be an https:// URL (http:// only for localhost, 127.0.0.1 or [::1])"))]
    #[schemars(length(max = 2048))]
    pub url: String,
    /// The key every delivery is signed with (HMAC-SHA256; the receiver holds it too).
    pub signing_secret: SecretValue,
}

/// A person of the company who answers conversations.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Agent {
    /// The name the agent's messages and actions are recorded under, e.g. `carol`.
    #[schemars(length(min = 1, max = 64), regex(pattern = r"^[A-Za-z0-9][A-Za-z0-9 ._-]*$"))]
    pub name: String,
    /// The agent's sign-in token (at least 32 characters; the record keeps only its hash).
    pub token: SecretValue,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KeywordReplies {
    /// Sent when a recipient opts out (STOP, STOPALL, UNSUBSCRIBE, CANCEL, END, QUIT, OPTOUT,
    /// REVOKE).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1600))]
    pub opt_out: Option<String>,
    /// Sent when an opted-out recipient opts back in (START, UNSTOP, YES).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1600))]
    pub opt_in: Option<String>,
    /// Sent for HELP or INFO.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1600))]
    pub help: Option<String>,
}

impl KeywordReplies {
    /// As the company record keeps them.
    pub fn to_record(&self) -> multicomms_wire::opt_out::KeywordReplies {
        multicomms_wire::opt_out::KeywordReplies {
            opt_out: self.opt_out.clone(),
            opt_in: self.opt_in.clone(),
            help: self.help.clone(),
        }
    }
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ProjectStatus {
    #[default]
    Active,
    Inactive,
}

impl ProjectStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ProjectStatus::Active => PROJECT_ACTIVE,
            ProjectStatus::Inactive => PROJECT_INACTIVE,
        }
    }
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new(
    "self.requestsPerMinute > 0 && self.requestsPerDay > 0 && self.concurrentConversations > 0 && self.maxMessageLength > 0"
).message("values must be greater than 0"))]
pub struct RateLimits {
    #[serde(default = "default_requests_per_minute")]
    pub requests_per_minute: u32,
    #[serde(default = "default_requests_per_day")]
    pub requests_per_day: u32,
    #[serde(default = "default_concurrent_conversations")]
    pub concurrent_conversations: u32,
    /// The longest message the AI may write, in characters (also capped by the channel: 1,600
    /// for SMS, 4,096 for WhatsApp). A longer one is never sent cut: the first message fails at
    /// its AI step, a reply goes to a person.
    #[serde(default = "default_max_message_length")]
    pub max_message_length: u32,
}

fn default_inactivity_days() -> u32 {
    multicomms_wire::company::DEFAULT_INACTIVITY_DAYS
}

// The original onboarding defaults (spec §2.1).
fn default_requests_per_minute() -> u32 {
    60
}
fn default_requests_per_day() -> u32 {
    2000
}
fn default_concurrent_conversations() -> u32 {
    30
}
fn default_max_message_length() -> u32 {
    4096
}

impl Default for RateLimits {
    fn default() -> Self {
        RateLimits {
            requests_per_minute: default_requests_per_minute(),
            requests_per_day: default_requests_per_day(),
            concurrent_conversations: default_concurrent_conversations(),
            max_message_length: default_max_message_length(),
        }
    }
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct CompanyChannels {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub whatsapp: Option<WhatsappChannel>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sms: Option<SmsChannel>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<EmailChannel>,
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct WhatsappChannel {
    /// The company's WhatsApp sender, E.164 with `+` (no `whatsapp:` prefix).
    #[x_kube(validation = Rule::new("self.matches('^\\\\+[1-9][0-9]{6,14}$')")
        .message("must be an E.164 number such as +447588713814"))]
    #[schemars(length(max = 16))]
    pub sender_number: String,
    /// Twilio Content API template SID (`HX` + 32 hex digits).
    #[x_kube(validation = Rule::new("self.matches('^HX[0-9a-fA-F]{32}$')")
        .message("must be a Twilio Content SID: HX followed by 32 hex digits"))]
    #[schemars(length(max = 34))]
    pub content_sid: String,
    /// An approved template (`HX…`) sent instead of a reply that comes after WhatsApp's 24-hour
    /// window has shut (its `{{1}}` is the recipient's first name). Without it such a reply goes
    /// to a person.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.matches('^HX[0-9a-fA-F]{32}$')")
        .message("must be a Twilio Content SID: HX followed by 32 hex digits"))]
    #[schemars(length(max = 34))]
    pub reengagement_content_sid: Option<String>,
    pub twilio: TwilioCredentials,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ai: Option<AiSettings>,
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct SmsChannel {
    #[x_kube(validation = Rule::new("self.matches('^\\\\+[1-9][0-9]{6,14}$')")
        .message("must be an E.164 number such as +447588713814"))]
    #[schemars(length(max = 16))]
    pub sender_number: String,
    pub twilio: TwilioCredentials,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ai: Option<AiSettings>,
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct EmailChannel {
    #[x_kube(validation = Rule::new("self.matches('^[^@\\\\s]+@[^@\\\\s]+\\\\.[^@\\\\s]+$')")
        .message("must be an email address"))]
    #[schemars(length(max = 254))]
    pub sender_email: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender_name: Option<String>,
    /// SendGrid dynamic template id (`d-…`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.startsWith('d-')")
        .message("must be a SendGrid dynamic template id starting with d-"))]
    #[schemars(length(max = 64))]
    pub template_id: Option<String>,
    /// The SendGrid unsubscribe group (ASM) every mail names: SendGrid adds its unsubscribe
    /// link, and an unsubscribe from it opts the recipient out here too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unsubscribe_group_id: Option<u32>,
    /// The verification key of the SendGrid account's signed Event Webhook (Settings → Mail
    /// Settings → Event Webhook → Signature Verification), base64: delivery events and
    /// unsubscribes posted to `<publicBaseUrl>/webhooks/sendgrid/events/<companyId>/<projectId>`
    /// are accepted only when signed with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.matches('^MF[A-Za-z0-9+/]+=*$')")
        .message("must be the base64 public key SendGrid shows (it starts with MF)"))]
    #[schemars(length(max = 200))]
    pub event_webhook_public_key: Option<String>,
    pub sendgrid: SendgridCredentials,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ai: Option<AiSettings>,
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TwilioCredentials {
    pub account_sid: SecretValue,
    pub auth_token: SecretValue,
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SendgridCredentials {
    pub api_key: SecretValue,
}

/// How the first message of a conversation is written (OpenAI Responses API).
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("has(self.instructions) || has(self.promptId)")
        .message("needs instructions or promptId"),
    validation = Rule::new("!has(self.baseUrl) || has(self.apiKey)")
        .message("baseUrl needs the company's own apiKey: the Channel's shared key is only ever sent to the default endpoint")
)]
pub struct AiSettings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instructions: Option<String>,
    /// A stored prompt (`pmpt_…`) instead of, or with, inline instructions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_id: Option<String>,
    /// JSON Schema of the template variables the model must return.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "free_form_object")]
    pub output_schema: Option<JsonText>,
    /// An OpenAI-compatible endpoint; the processor's default when absent. Needs `apiKey`, and
    /// https unless on loopback (a key must never cross the network in cleartext).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new(r"self.matches('^https://[^/@\\s]+(/.*)?$') || self.matches('^http://(localhost|127\\.0\\.0\\.1|\\[::1\\])(:[0-9]+)?(/.*)?$')")
        .message("must be an https:// URL (http:// only for localhost, 127.0.0.1 or [::1])"))]
    #[schemars(length(max = 2048))]
    pub base_url: Option<String>,
    /// The company's own OpenAI key; without it the Channel's shared key is used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<SecretValue>,
    /// How the AI answers the recipient's replies, continuing the conversation; the reply
    /// processor's defaults when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replies: Option<ReplyAiSettings>,
}

/// The reply turn's settings (same endpoint and key as the first message).
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReplyAiSettings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instructions: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_id: Option<String>,
    /// JSON Schema of the reply; it must produce a string `content`, the text sent. Default
    /// `{"content": string}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "free_form_object")]
    pub output_schema: Option<JsonText>,
}

fn free_form_object(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true
    })
}

/// Hand-off to a human (spec §5.12): empty lists apply to every recipient.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HandOff {
    #[serde(default)]
    pub auto_queue_initial_message: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub auto_queue_initial_message_from_number: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub auto_queue_initial_message_from_email: Vec<String>,
    #[serde(default)]
    pub auto_queue_reply_message: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub auto_queue_reply_message_from_number: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub auto_queue_reply_message_from_email: Vec<String>,
    /// Hand a conversation to a person when Twilio reports one of its messages `failed` or
    /// `undelivered` (the record keeps Twilio's error code either way).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub on_delivery_failure: bool,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CompanyStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// One per type (API conventions): merged by type, so another writer's condition is kept.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// `updated_at` of the company-data record as last written or confirmed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record_version: Option<String>,
    /// Secrets Manager secrets written for this resource: ARNs and version ids, never values.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<SecretStatus>,
    /// When a reconcile last found AWS in sync: refreshed with any status change, else at most
    /// every half resync (a write on every reconcile would wake the controller forever).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_synced: Option<String>,
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretStatus {
    pub name: String,
    pub arn: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_id: Option<String>,
}

impl CompanySpec {
    /// Channels with a settings block, in a fixed order.
    pub fn configured_channels(&self) -> Vec<ChannelKind> {
        let c = &self.channels;
        [
            c.whatsapp.as_ref().map(|_| ChannelKind::Whatsapp),
            c.sms.as_ref().map(|_| ChannelKind::Sms),
            c.email.as_ref().map(|_| ChannelKind::Email),
        ]
        .into_iter()
        .flatten()
        .collect()
    }

    pub fn ai_settings(&self, kind: ChannelKind) -> Option<&AiSettings> {
        let c = &self.channels;
        match kind {
            ChannelKind::Whatsapp => c.whatsapp.as_ref()?.ai.as_ref(),
            ChannelKind::Sms => c.sms.as_ref()?.ai.as_ref(),
            ChannelKind::Email => c.email.as_ref()?.ai.as_ref(),
        }
    }
}
