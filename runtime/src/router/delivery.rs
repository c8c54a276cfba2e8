//! `POST /webhooks/twilio/status`: Twilio's message status callbacks. Every Twilio send asks
//! for them at this path with its conversation in the query ([`multicomms_wire::delivery`]), and
//! Twilio signs each over that exact URL with the sending account's auth token. The record the
//! query and `To` name is read by key, the signature checked with the credentials that
//! conversation sends with (so one tenant's account cannot write another's conversation), and
//! the status recorded on the message entry whose id is the `MessageSid`, never backwards.
//! A `failed` or `undelivered` message keeps Twilio's error code, counts in the router's
//! `delivery_statuses` metric (and its alert), and hands the conversation to a person when the
//! company asks for it.
use crate::replies::refusal::Refusal;
use crate::replies::webhook::Webhook;
use crate::shared::client_events::ClientEvents;
use crate::shared::companies::Companies;
use crate::shared::conversations::{ConversationStore, DeliveryUpdate, Written};
use crate::shared::failure::Failure;
use multicomms_wire::client_events::EventType;
use multicomms_wire::conversation::{ConversationKey, ConversationRecord, ConversationStatus, ROLE_ASSISTANT};
use multicomms_wire::delivery::{conversation_of, DeliveryStatus};
use multicomms_wire::ChannelKind;
use secrecy::ExposeSecret;

/// What became of a callback: the metric's `outcome` label and the HTTP status Twilio gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Callback {
    /// The status is on the message now.
    Recorded(ChannelKind, DeliveryStatus),
    /// The message already has a status as far along (a repeat, or one that came late).
    Unchanged,
    /// Nothing to record: a status this service does not track, or a message the conversation
    /// does not have.
    Ignored(&'static str),
    /// The message is not in its record yet (the send is being recorded): 503, so that the
    /// status is not lost if Twilio tries again.
    NotYet,
    /// Not a Twilio form.
    Invalid,
    /// Not shown to come from Twilio for the conversation it names; every such request gets
    /// the same answer.
    Unverified(Refusal),
}

impl Callback {
    pub fn status(&self) -> u16 {
        match self {
            Callback::Invalid => 400,
            Callback::Unverified(_) => 403,
            Callback::NotYet => 503,
            _ => 200,
        }
    }

    pub fn label(&self) -> &'static str {
        match self {
            Callback::Recorded(..) => "recorded",
            Callback::Unchanged => "unchanged",
            Callback::Ignored(_) => "ignored",
            Callback::NotYet => "not_yet_recorded",
            Callback::Invalid => Refusal::ParsingError.as_str(),
            Callback::Unverified(code) => code.as_str(),
        }
    }
}

/// A status callback's form.
struct StatusForm {
    channel: ChannelKind,
    /// Twilio's `To` (the recipient) and `From` (the company's number), without `whatsapp:`.
    to: String,
    from: String,
    message_sid: String,
    account_sid: String,
    status: String,
    error_code: Option<String>,
    params: Vec<(String, String)>,
}

impl StatusForm {
    fn parse(form: &[u8]) -> Option<Self> {
        let params: Vec<(String, String)> = serde_urlencoded::from_bytes(form).ok()?;
        let field = |name: &str| {
            params.iter().find(|(k, _)| k == name).map(|(_, v)| v.trim().to_string()).filter(|v| !v.is_empty())
        };
        let (to, from) = (field("To")?, field("From")?);
        let channel = if to.starts_with("whatsapp:") { ChannelKind::Whatsapp } else { ChannelKind::Sms };
        let address = |a: String| a.strip_prefix("whatsapp:").map(str::to_string).unwrap_or(a);
        Some(StatusForm {
            channel,
            to: address(to),
            from: address(from),
            message_sid: field("MessageSid")?,
            account_sid: field("AccountSid")?,
            status: field("MessageStatus")?,
            error_code: field("ErrorCode"),
            params: params.clone(),
        })
    }
}

/// Handles one callback Twilio sent to `url` (the public URL, query included). `Err`: a
/// transient failure (503; the status may come again).
pub async fn record(
    companies: &Companies,
    webhook: &Webhook,
    url: &str,
    signature: &str,
    form: &[u8],
) -> Result<Callback, Failure> {
    let Some(form) = StatusForm::parse(form) else { return Ok(Callback::Invalid) };
    let record = match authenticate(webhook, url, signature, &form).await? {
        Ok(found) => found,
        Err(code) => {
            tracing::warn!(code = code.as_str(), message_sid = %form.message_sid, "status callback not shown to come from Twilio");
            return Ok(Callback::Unverified(code));
        }
    };
    let Some(status) = DeliveryStatus::parse(&form.status) else { return Ok(Callback::Ignored("untracked status")) };
    let reported = Reported { message_id: &form.message_sid, status, error_code: form.error_code.as_deref() };
    on_its_message(companies, &webhook.store, &webhook.events, &record, form.channel, &reported).await
}

/// What a provider reported about one message it was sent.
pub struct Reported<'a> {
    pub message_id: &'a str,
    pub status: DeliveryStatus,
    pub error_code: Option<&'a str>,
}

/// Records `reported` on its message in `record` (Twilio's callbacks and SendGrid's events
/// alike): never backwards, and a failure hands the conversation to a person when the company
/// asks for it.
pub async fn on_its_message(
    companies: &Companies,
    store: &ConversationStore,
    events: &ClientEvents,
    record: &ConversationRecord,
    channel: ChannelKind,
    reported: &Reported<'_>,
) -> Result<Callback, Failure> {
    let (key, status) = (record.key(), reported.status);
    let sent =
        |m: &multicomms_wire::conversation::Message| m.role == ROLE_ASSISTANT && m.message_id == reported.message_id;
    let Some(index) = record.messages.iter().position(sent) else {
        let sending =
            matches!(record.conversation_status, ConversationStatus::Sending | ConversationStatus::SendingReply);
        return Ok(if sending { Callback::NotYet } else { Callback::Ignored("no such message in the conversation") });
    };
    let update = DeliveryUpdate { index, message_id: reported.message_id, status, error_code: reported.error_code };
    if store.delivery_status(&key, &update).await? == Written::Superseded {
        return Ok(Callback::Unchanged);
    }
    let company = companies.get(&record.company_id, &record.project_id).await?;
    let company = company.as_ref().map(|c| &c.record);
    let data = serde_json::json!({"message_id": reported.message_id, "delivery_status": status.as_str(),
                                  "error_code": reported.error_code});
    events.emit(company, record, EventType::DeliveryStatusChanged, data).await;
    if status.is_failure() {
        let code = reported.error_code.unwrap_or("none");
        tracing::warn!(%status, error_code = code, message_id = reported.message_id, conversation_id = %key.conversation_id, "a message did not reach its recipient");
        if company.is_some_and(|c| c.hand_off_on_delivery_failure) {
            let reason =
                format!("delivery: the provider reports the message {} {status} (error {code})", reported.message_id);
            store.hand_off_undelivered(&key, &reason).await?;
            events.emit(company, record, EventType::HandedOff, serde_json::json!({"reason": reason})).await;
        }
    }
    Ok(Callback::Recorded(channel, status))
}

/// The record the callback names, if the callback is signed with the credentials that record's
/// conversation sends with, from its company's number and account. `Ok(Err(_))`: not shown to
/// come from Twilio (why, for the log and the metric).
async fn authenticate(
    webhook: &Webhook,
    url: &str,
    signature: &str,
    form: &StatusForm,
) -> Result<Result<ConversationRecord, Refusal>, Failure> {
    let query = url.split_once('?').map(|(_, query)| query).unwrap_or_default();
    let (Some(conversation_id), false) = (conversation_of(query), signature.is_empty()) else {
        return Ok(Err(Refusal::InvalidSignature));
    };
    let key = ConversationKey { primary_channel: form.to.clone(), conversation_id };
    let record = match webhook.store.record(&key).await {
        Ok(Some(record)) if record.channel_method == form.channel => record,
        Ok(_) => return Ok(Err(Refusal::ConversationNotFound)),
        Err(Failure::Permanent(_)) => return Ok(Err(Refusal::DbQueryError)),
        Err(transient) => return Err(transient),
    };
    let credentials_id = record.channel_config.get(format!("{}_credentials_id", form.channel));
    let Some(credentials_id) = credentials_id.and_then(serde_json::Value::as_str) else {
        return Ok(Err(Refusal::SecretFetchFailed));
    };
    let twilio = match webhook.secrets.twilio(credentials_id).await {
        Ok(twilio) => twilio,
        Err(Failure::Permanent(_)) => return Ok(Err(Refusal::SecretFetchFailed)),
        Err(transient) => return Err(transient),
    };
    let signed = |token: &str| crate::replies::signature::verify(token, url, &form.params, signature);
    if !signed(twilio.auth_token.expose_secret()) && !webhook.signed_with_a_fresh_token(credentials_id, signed).await? {
        return Ok(Err(Refusal::InvalidSignature));
    }
    // Signed by the conversation's own account, for a message between its numbers.
    if form.account_sid != twilio.account_sid || form.from != record.company_number(form.channel) {
        return Ok(Err(Refusal::InvalidSignature));
    }
    Ok(Ok(record))
}
