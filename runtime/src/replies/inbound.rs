//! An inbound Twilio message webhook (WhatsApp or SMS), form-encoded: parsed once, every
//! parameter kept as sent (blank ones too: they are signed).
use multicomms_wire::replies::Media;
use multicomms_wire::ChannelKind;

/// Twilio sends at most 10 media per message.
const MAX_MEDIA: usize = 10;

#[derive(Debug, Clone, PartialEq)]
pub struct Inbound {
    pub channel: ChannelKind,
    /// The recipient's number, without `whatsapp:`.
    pub from: String,
    /// The company's number, without `whatsapp:`.
    pub to: String,
    pub message_sid: String,
    /// The text; empty for a media-only message.
    pub body: String,
    pub media: Vec<Media>,
    /// Every parameter, as the signature covers them.
    pub params: Vec<(String, String)>,
}

impl Inbound {
    /// The form, or what makes it unusable (a field name, never a value).
    pub fn parse(channel: ChannelKind, form: &[u8]) -> Result<Self, String> {
        let params: Vec<(String, String)> =
            serde_urlencoded::from_bytes(form).map_err(|_| "the body is not form-encoded".to_string())?;
        let first = |name: &str| params.iter().find(|(k, _)| k == name).map(|(_, v)| v.trim().to_string());
        let required = |name: &str| first(name).filter(|v| !v.is_empty()).ok_or_else(|| format!("missing {name}"));
        // Twilio sends E.164; written the router's way all the same, so the two always meet.
        let number = |value: String| {
            let value = match channel {
                ChannelKind::Whatsapp => value.strip_prefix("whatsapp:").map(str::to_string).unwrap_or(value),
                _ => value,
            };
            crate::shared::phone::as_e164(&value).unwrap_or(value)
        };
        let from = number(required("From")?);
        let to = number(required("To")?);
        let message_sid = required("MessageSid")?;
        let count: usize = first("NumMedia").and_then(|n| n.parse().ok()).unwrap_or(0);
        let media: Vec<Media> = (0..count.min(MAX_MEDIA))
            .filter_map(|i| {
                let url = first(&format!("MediaUrl{i}")).filter(|u| !u.is_empty())?;
                let content_type = first(&format!("MediaContentType{i}")).unwrap_or_default();
                Some(Media { url, content_type })
            })
            .collect();
        let body = first("Body").unwrap_or_default();
        if body.is_empty() && media.is_empty() {
            return Err("neither Body nor media".into());
        }
        Ok(Inbound { channel, from, to, message_sid, body, media, params })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_whatsapp_message_loses_its_address_prefixes() {
        let form = b"SmsMessageSid=SM1&NumMedia=0&ProfileName=Lee&Body=yes+I+drive&To=whatsapp%3A%2B447588713814\
                     &From=whatsapp%3A%2B447835065013&MessageSid=SM1&AccountSid=AC1&ApiVersion=2010-04-01&WaId=447835065013\
                     &SmsStatus=received&NumSegments=1&ReferralNumMedia=0&MessagingServiceSid=";
        let inbound = Inbound::parse(ChannelKind::Whatsapp, form).expect("valid");
        assert_eq!((inbound.from.as_str(), inbound.to.as_str()), ("+447835065013", "+447588713814"));
        assert_eq!(inbound.body, "yes I drive");
        assert!(
            inbound.params.contains(&("MessagingServiceSid".into(), String::new())),
            "blank kept for the signature"
        );
    }

    #[test]
    fn a_media_only_message_is_kept() {
        let form = b"From=%2B447835065013&To=%2B447588713814&MessageSid=SM2&Body=&NumMedia=2\
                     &MediaUrl0=https%3A%2F%2Fapi.twilio.com%2Fm%2FME1&MediaContentType0=image%2Fjpeg\
                     &MediaUrl1=https%3A%2F%2Fapi.twilio.com%2Fm%2FME2&MediaContentType1=application%2Fpdf";
        let inbound = Inbound::parse(ChannelKind::Sms, form).expect("media only is a message");
        assert_eq!(inbound.body, "");
        assert_eq!(inbound.media.len(), 2);
        assert_eq!(inbound.media[1].content_type, "application/pdf");
    }

    #[test]
    fn what_is_missing_is_named() {
        let missing = |form: &[u8]| Inbound::parse(ChannelKind::Sms, form).expect_err("invalid");
        assert_eq!(missing(b"To=%2B1&MessageSid=SM1&Body=hi"), "missing From");
        assert_eq!(missing(b"From=%2B2&To=%2B1&Body=hi"), "missing MessageSid");
        assert_eq!(missing(b"From=%2B2&To=%2B1&MessageSid=SM1&Body=&NumMedia=0"), "neither Body nor media");
    }
}
