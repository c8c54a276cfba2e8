//! The providers: Twilio Messages (WhatsApp with a Content API template or, for replies, a
//! free-form body; SMS with a body) and
//! SendGrid v3 mail send (dynamic template). Base URLs are configurable (tests and the local
//! demo point them at fakes).
//!
//! A send either surely did not happen ([`SendError::NotSent`]: refused with a 4xx, 429 or
//! 503, or never reached the provider) or may have ([`SendError::Unknown`]: a timeout or any
//! other 5xx after the request went out). Only the first may be retried.
use super::body::{read_capped, MAX_PROVIDER_ANSWER_BYTES};
use super::failure::{without_url, Failure};
use super::secrets::TwilioCredentials;
use multicomms_wire::delivery::twilio_status_callback;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{json, Map, Value};

pub const TWILIO_BASE_URL: &str = "https://api.twilio.com";
pub const SENDGRID_BASE_URL: &str = "https://api.sendgrid.com";

pub struct Senders {
    http: reqwest::Client,
    twilio_base: String,
    sendgrid_base: String,
    /// The router's public URL: each Twilio send asks for status callbacks there.
    public_base_url: Option<String>,
}

/// A Twilio message's addresses and the conversation it belongs to (its status callbacks name
/// it).
pub struct Addressed<'a> {
    pub from: &'a str,
    pub to: &'a str,
    pub conversation_id: &'a str,
}

/// What the provider accepted.
#[derive(Debug, Clone, PartialEq)]
pub struct Sent {
    pub message_id: String,
    /// The text the recipient gets (Twilio's rendered body), or the email's template data.
    pub content: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum SendError {
    NotSent(Failure),
    Unknown(String),
}

pub struct Email<'a> {
    pub api_key: &'a SecretString,
    pub from_email: &'a str,
    pub from_name: Option<&'a str>,
    pub to_email: &'a str,
    pub to_name: Option<String>,
    pub template_id: &'a str,
    pub data: &'a Map<String, Value>,
    pub conversation_id: &'a str,
    /// The company's unsubscribe group: SendGrid adds its unsubscribe link and suppressions.
    pub unsubscribe_group_id: Option<u32>,
}

impl Senders {
    pub fn new(
        http: reqwest::Client,
        twilio_base: impl Into<String>,
        sendgrid_base: impl Into<String>,
        public_base_url: Option<String>,
    ) -> Self {
        Senders { http, twilio_base: twilio_base.into(), sendgrid_base: sendgrid_base.into(), public_base_url }
    }

    /// WhatsApp: `whatsapp:`-prefixed addresses, `ContentSid` + `ContentVariables` (JSON).
    pub async fn whatsapp(
        &self,
        credentials: &TwilioCredentials,
        to: Addressed<'_>,
        variables: &Map<String, Value>,
    ) -> Result<Sent, SendError> {
        let Some(content_sid) = credentials.template_sid.as_deref() else {
            return Err(SendError::NotSent(Failure::Permanent("the Twilio secret has no twilio_template_sid".into())));
        };
        self.whatsapp_template(credentials, to, content_sid, variables).await
    }

    /// WhatsApp with the Content API template `content_sid`.
    pub async fn whatsapp_template(
        &self,
        credentials: &TwilioCredentials,
        to: Addressed<'_>,
        content_sid: &str,
        variables: &Map<String, Value>,
    ) -> Result<Sent, SendError> {
        let form = vec![
            ("To", format!("whatsapp:{}", to.to)),
            ("From", format!("whatsapp:{}", to.from)),
            ("ContentSid", content_sid.to_string()),
            ("ContentVariables", Value::Object(variables.clone()).to_string()),
        ];
        self.twilio(credentials, form, to.conversation_id).await
    }

    /// A free-form WhatsApp message (a reply inside the 24-hour window the recipient's message
    /// opened): `Body` between `whatsapp:` addresses.
    pub async fn whatsapp_text(
        &self,
        credentials: &TwilioCredentials,
        to: Addressed<'_>,
        body: &str,
    ) -> Result<Sent, SendError> {
        let form = vec![
            ("To", format!("whatsapp:{}", to.to)),
            ("From", format!("whatsapp:{}", to.from)),
            ("Body", body.to_string()),
        ];
        self.twilio(credentials, form, to.conversation_id).await
    }

    /// SMS: a plain `Body`.
    pub async fn sms(&self, credentials: &TwilioCredentials, to: Addressed<'_>, body: &str) -> Result<Sent, SendError> {
        let form = vec![("To", to.to.to_string()), ("From", to.from.to_string()), ("Body", body.to_string())];
        self.twilio(credentials, form, to.conversation_id).await
    }

    async fn twilio(
        &self,
        credentials: &TwilioCredentials,
        mut form: Vec<(&str, String)>,
        conversation_id: &str,
    ) -> Result<Sent, SendError> {
        if let Some(base) = &self.public_base_url {
            form.push(("StatusCallback", twilio_status_callback(base, conversation_id)));
        }
        let url = format!(
            "{}/2010-04-01/Accounts/{}/Messages.json",
            self.twilio_base.trim_end_matches('/'),
            credentials.account_sid
        );
        let response = self
            .http
            .post(url)
            .basic_auth(&credentials.account_sid, Some(credentials.auth_token.expose_secret()))
            .form(&form)
            .send()
            .await
            .map_err(|e| unsent_or_unknown(&e, "Twilio"))?;
        let status = response.status().as_u16();
        let body = read_capped(response, MAX_PROVIDER_ANSWER_BYTES).await;
        if status < 300 {
            // Accepted, whatever the answer's size: the message may well be on its way.
            if let Err(e) = &body {
                return Err(SendError::Unknown(format!("Twilio answered {status}: {e}")));
            }
        }
        let body: Value = body.ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or(Value::Null);
        if status >= 300 {
            // Twilio's error shape: {"code": 21211, "message": "...", "more_info": ..., "status": 400}.
            let detail = format!("{} (code {})", body["message"].as_str().unwrap_or("no message"), body["code"]);
            return Err(refused(status, "Twilio", &detail));
        }
        match body["sid"].as_str() {
            Some(sid) => Ok(Sent { message_id: sid.to_string(), content: body["body"].as_str().unwrap_or("").into() }),
            // Accepted but unreadable: the message may well be on its way.
            None => Err(SendError::Unknown(format!("Twilio answered {status} without a message sid"))),
        }
    }

    pub async fn email(&self, email: Email<'_>) -> Result<Sent, SendError> {
        let mut to = json!({"email": email.to_email});
        if let Some(name) = email.to_name.filter(|n| !n.is_empty()) {
            to["name"] = json!(name);
        }
        let mut from = json!({"email": email.from_email});
        if let Some(name) = email.from_name.filter(|n| !n.is_empty()) {
            from["name"] = json!(name);
        }
        // `custom_args` come back in every event SendGrid posts about the mail.
        let mut request = json!({
            "personalizations": [{"to": [to], "dynamic_template_data": email.data}],
            "from": from,
            "template_id": email.template_id,
            "custom_args": {"conversation_id": email.conversation_id},
        });
        if let Some(group_id) = email.unsubscribe_group_id {
            request["asm"] = json!({"group_id": group_id});
        }
        let url = format!("{}/v3/mail/send", self.sendgrid_base.trim_end_matches('/'));
        let response = self
            .http
            .post(url)
            .bearer_auth(email.api_key.expose_secret())
            .json(&request)
            .send()
            .await
            .map_err(|e| unsent_or_unknown(&e, "SendGrid"))?;
        let status = response.status().as_u16();
        let message_id = response.headers().get("x-message-id").and_then(|v| v.to_str().ok()).map(str::to_string);
        if status >= 300 {
            let body = read_capped(response, MAX_PROVIDER_ANSWER_BYTES).await;
            let body: Value = body.ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or(Value::Null);
            let detail = body["errors"][0]["message"].as_str().unwrap_or("no message").to_string();
            return Err(refused(status, "SendGrid", &detail));
        }
        match message_id {
            Some(id) => Ok(Sent { message_id: id, content: Value::Object(email.data.clone()).to_string() }),
            None => Err(SendError::Unknown(format!("SendGrid answered {status} without X-Message-Id"))),
        }
    }
}

/// An error answer: 429 and 503 mean the provider did not take the message (retry later);
/// other 5xx may hide an accepted message; other statuses are refusals.
fn refused(status: u16, provider: &str, detail: &str) -> SendError {
    match status {
        429 | 503 => SendError::NotSent(Failure::from_status(status, provider, detail)),
        500..=599 => SendError::Unknown(format!("{provider} answered {status}: {detail}")),
        _ => SendError::NotSent(Failure::from_status(status, provider, detail)),
    }
}

/// No answer: a connection that was never made sent nothing; a timeout may have.
fn unsent_or_unknown(error: &reqwest::Error, provider: &str) -> SendError {
    if error.is_connect() {
        SendError::NotSent(Failure::from_http(error, provider))
    } else {
        SendError::Unknown(format!("{provider} gave no answer: {}", without_url(error)))
    }
}
