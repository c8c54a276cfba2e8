//! Inbound messages as Twilio sends them to a webhook: the form Twilio posts for a WhatsApp or
//! SMS message (blank parameters included) and its `X-Twilio-Signature`, signed with the
//! account's auth token over the public URL (the runtime's signer, itself checked against
//! Twilio's published example).
use multicomms_runtime::replies::signature;
use multicomms_wire::ChannelKind;

/// The example company's Twilio auth token (config/examples/local/secrets.yaml).
pub const AUTH_TOKEN: &str = "local-demo-twilio-token-not-a-secret";
pub const ACCOUNT_SID: &str = "AC00000000000000000000000000000000";

/// One inbound message.
#[derive(Debug, Clone)]
pub struct Inbound {
    pub channel: ChannelKind,
    pub from: String,
    pub to: String,
    pub sid: String,
    pub body: String,
    /// (URL, content type) of each attachment.
    pub media: Vec<(String, String)>,
}

impl Inbound {
    /// A text from `from` to the company number `to`, with a fresh `SM…` SID.
    pub fn text(channel: ChannelKind, from: &str, to: &str, body: &str) -> Self {
        let sid = format!("SM{}", uuid::Uuid::new_v4().simple());
        Inbound { channel, from: from.into(), to: to.into(), sid, body: body.into(), media: vec![] }
    }

    /// The form parameters, as Twilio sends them.
    pub fn params(&self) -> Vec<(String, String)> {
        let address = |n: &str| match self.channel {
            ChannelKind::Whatsapp => format!("whatsapp:{n}"),
            _ => n.to_string(),
        };
        let params = vec![
            ("SmsMessageSid", self.sid.clone()),
            ("NumMedia", self.media.len().to_string()),
            ("ProfileName", "Lee".into()),
            ("MessageType", if self.media.is_empty() { "text" } else { "image" }.into()),
            ("SmsSid", self.sid.clone()),
            ("WaId", self.from.trim_start_matches('+').into()),
            ("SmsStatus", "received".into()),
            ("Body", self.body.clone()),
            ("To", address(&self.to)),
            ("MessagingServiceSid", String::new()),
            ("NumSegments", "1".into()),
            ("ReferralNumMedia", "0".into()),
            ("MessageSid", self.sid.clone()),
            ("AccountSid", ACCOUNT_SID.into()),
            ("From", address(&self.from)),
            ("ApiVersion", "2010-04-01".into()),
        ];
        let mut params: Vec<(String, String)> = params.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        for (i, (url, content_type)) in self.media.iter().enumerate() {
            params.push((format!("MediaUrl{i}"), url.clone()));
            params.push((format!("MediaContentType{i}"), content_type.clone()));
        }
        params
    }

    /// The form body and the signature Twilio would send to `url`, signed with `auth_token`.
    pub fn signed(&self, auth_token: &str, url: &str) -> (String, String) {
        let params = self.params();
        let body = serde_urlencoded::to_string(&params).unwrap_or_default();
        (body, signature::sign(auth_token, url, &params))
    }
}
