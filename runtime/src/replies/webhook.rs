//! `POST /webhooks/twilio/whatsapp` and `POST /webhooks/twilio/sms`: Twilio's inbound-message
//! webhooks, served by the router (replies-engine §1–§2), in two steps. [`authenticate`]: the
//! form is parsed, its numbers' [`ActivePointer`] read by key, and the signature checked with
//! the auth token of the tenant the pointer names, before anything else is read. [`dispatch`]:
//! the message is matched to the recipient's active, newest conversation, put through the gates
//! and hand-off rules, and either handed to a person or staged for the AI's reply with one
//! delayed trigger per batching window.
//!
//! The router's HTTP handler answers with empty TwiML: 200 for every message Twilio sent (even
//! one nobody answers), 503 for a transient infrastructure error (so Twilio may retry), 400 for
//! a body that is no Twilio form, and the same 403 for every request not shown to come from
//! Twilio, whether or not its numbers have a conversation ([`Acknowledged::status`]). A forged
//! request costs one key lookup and a (cached) secret read, and a source that sends many gets
//! 429 before any (the router's per-source limit on unverified requests).
use super::inbound::Inbound;
use super::refusal::Refusal;
use super::route::{self, Route};
use super::staging::Staging;
use crate::shared::companies::Companies;
use crate::shared::conversations::ConversationStore;
use crate::shared::failure::Failure;
use crate::shared::opt_outs::OptOuts;
use crate::shared::secrets::Secrets;
use multicomms_wire::client_events::EventType;
use multicomms_wire::conversation::{ActivePointer, ConversationRecord};
use multicomms_wire::opt_out::{keyword, Keyword};
use multicomms_wire::replies::{seen_key, Fragment, HandOffMessage, SeenMarker, TriggerLock, STAGE_TTL_SECONDS};
use multicomms_wire::timestamp::{epoch_ms, epoch_seconds, now};
use multicomms_wire::ChannelKind;
use secrecy::ExposeSecret;
use tracing::Instrument;

/// How long a handed-off message's marker row stops Twilio's retries of it (a day: Twilio
/// retries within minutes).
const HAND_OFF_MARKER_SECONDS: u64 = 24 * 3600;

pub const EMPTY_TWIML: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response></Response>";

/// The router path of a channel's webhook (the URL Twilio calls is the public base URL + this).
pub fn path(channel: ChannelKind) -> String {
    format!("/webhooks/twilio/{channel}")
}

/// What the webhook needs beside the router's company cache.
pub struct Webhook {
    /// The URL prefix Twilio calls, as configured in Twilio (scheme, host, any path the ingress
    /// adds): signatures are over the public URL, which the router cannot see.
    pub public_base_url: String,
    pub store: ConversationStore,
    /// Twilio auth tokens, cached.
    pub secrets: Secrets,
    pub staging: Staging,
    pub opt_outs: OptOuts,
    /// The companies' events (a message received, handed off, a delivery status).
    pub events: std::sync::Arc<crate::shared::client_events::ClientEvents>,
    /// When each secret was last read afresh after a failed signature.
    pub refreshed: std::sync::Mutex<std::collections::HashMap<String, std::time::Instant>>,
}

/// How often a signature that fails with the cached auth token may cause a fresh read of it.
const TOKEN_REFRESH_INTERVAL: std::time::Duration = std::time::Duration::from_secs(30);

impl Webhook {
    /// A signature that fails with the cached token is checked once more with a fresh read of
    /// the secret (the token may have been rotated), at most every [`TOKEN_REFRESH_INTERVAL`]
    /// per secret, so forged requests cannot make every request read Secrets Manager.
    pub(crate) async fn signed_with_a_fresh_token(
        &self,
        credentials: &str,
        signed: impl Fn(&str) -> bool,
    ) -> Result<bool, Failure> {
        {
            let Ok(mut refreshed) = self.refreshed.lock() else { return Ok(false) };
            if refreshed.get(credentials).is_some_and(|at| at.elapsed() < TOKEN_REFRESH_INTERVAL) {
                return Ok(false);
            }
            refreshed.insert(credentials.to_string(), std::time::Instant::now());
        }
        self.secrets.forget(credentials);
        match self.secrets.twilio(credentials).await {
            Ok(twilio) => Ok(signed(twilio.auth_token.expose_secret())),
            Err(Failure::Permanent(_)) => Ok(false),
            Err(transient) => Err(transient),
        }
    }
}

/// How a message was answered: the metric's `outcome` label, Twilio's status, and the TwiML.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Acknowledged {
    Staged,
    /// A keyword (STOP, START, HELP) answered with the company's text in the TwiML, not by the
    /// AI ([`super::keywords`]).
    Keyword(Keyword, String),
    HandedOff,
    /// Its `MessageSid` is already in the conversation: a Twilio retry of an answered message.
    AlreadyAnswered,
    /// Twilio sent it and nobody answers it; the code says why (the original's error codes).
    Refused(Refusal),
    /// Not shown to come from Twilio for a tenant: no conversation points a tenant's credentials
    /// at these numbers, or the signature does not verify with them. Every such request gets the
    /// same answer, so a stranger learns nothing (not even whether the numbers talk).
    Unverified(Refusal),
    /// Not looked at: its source sent too many unverified requests this minute (answered 429
    /// by the router, before this module sees it).
    Throttled,
}

impl Acknowledged {
    /// The HTTP status Twilio gets: 200 for every message Twilio sent (even one nobody
    /// answers), so that Twilio does not retry it; 400 for a body that is no Twilio form; 403
    /// for a request not shown to come from Twilio.
    pub fn status(&self) -> u16 {
        match self {
            Acknowledged::Refused(Refusal::ParsingError) => 400,
            Acknowledged::Unverified(_) => 403,
            Acknowledged::Throttled => 429,
            _ => 200,
        }
    }

    pub fn label(&self) -> &'static str {
        match self {
            Acknowledged::Staged => "staged",
            Acknowledged::Keyword(Keyword::OptOut, _) => "opted_out",
            Acknowledged::Keyword(Keyword::OptIn, _) => "opted_in",
            Acknowledged::Keyword(Keyword::Help, _) => "help",
            Acknowledged::HandedOff => "handed_off",
            Acknowledged::AlreadyAnswered => "already_answered",
            Acknowledged::Throttled => "RATE_LIMITED",
            Acknowledged::Refused(code) | Acknowledged::Unverified(code) => code.as_str(),
        }
    }

    /// The TwiML answer: a `<Message>` Twilio sends back to the recipient for a keyword,
    /// otherwise empty.
    pub fn twiml(&self) -> String {
        match self {
            Acknowledged::Keyword(_, reply) => format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Message>{}</Message></Response>",
                xml_escaped(reply)
            ),
            _ => EMPTY_TWIML.to_string(),
        }
    }
}

fn xml_escaped(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&apos;")
}

/// A message shown to come from Twilio for the tenant whose conversation its numbers point at.
pub struct Authenticated {
    inbound: Inbound,
    pointer: ActivePointer,
    /// Its `MessageSid`'s marker, read with the pointer: when it was first seen.
    seen: Option<SeenMarker>,
}

/// Step one, before anything but one key lookup: the form, the pointer of its numbers (read with
/// its `MessageSid`'s marker, in a batch with other requests' reads), and the signature with the
/// tenant's (cached) auth token. `Err(Ok(_))`: answered here; `Err(Err(_))`: a transient failure
/// (Twilio should retry). Cheap and safe to abandon when the caller leaves.
pub async fn authenticate(
    webhook: &Webhook,
    channel: ChannelKind,
    url: &str,
    signature: &str,
    form: &[u8],
) -> Result<Authenticated, Result<Acknowledged, Failure>> {
    let inbound = match Inbound::parse(channel, form) {
        Ok(inbound) => inbound,
        Err(why) => return Err(Ok(refused(Refusal::ParsingError, &why))),
    };
    let unverified = |code: Refusal, why: &str| {
        tracing::warn!(code = code.as_str(), why, message_sid = %inbound.message_sid, "inbound request not shown to come from Twilio");
        Err(Ok(Acknowledged::Unverified(code)))
    };
    if signature.is_empty() {
        return unverified(Refusal::InvalidSignature, "no X-Twilio-Signature");
    }
    let key = ActivePointer::key(channel, &inbound.to, &inbound.from);
    let seen = seen_key(channel, &inbound.to, &inbound.from, &inbound.message_sid);
    let (pointer, seen) = match webhook.staging.look_up(&key, &seen).await {
        Ok((Some(pointer), seen)) => (pointer, seen),
        Ok((None, _)) => return unverified(Refusal::ConversationNotFound, "no conversation with these numbers"),
        Err(Failure::Permanent(why)) => return unverified(Refusal::DbQueryError, &why),
        Err(transient) => return Err(Err(transient)),
    };
    let twilio = match webhook.secrets.twilio(&pointer.credentials_id).await {
        Ok(twilio) => twilio,
        Err(Failure::Permanent(why)) => return unverified(Refusal::SecretFetchFailed, &why),
        Err(transient) => return Err(Err(transient)),
    };
    let signed = |token: &str| super::signature::verify(token, url, &inbound.params, signature);
    let fresh = || webhook.signed_with_a_fresh_token(&pointer.credentials_id, signed);
    if !signed(twilio.auth_token.expose_secret()) && !fresh().await.map_err(Err)? {
        return unverified(Refusal::InvalidSignature, "the signature does not verify with the tenant's auth token");
    }
    Ok(Authenticated { inbound, pointer, seen })
}

/// Step two, for an authenticated message: its conversation, the gates and hand-off rules, and
/// staging or the hand-off queue. `Err` only for a transient failure (Twilio should retry).
pub async fn dispatch(
    companies: &Companies,
    webhook: &Webhook,
    message: Authenticated,
) -> Result<Acknowledged, Failure> {
    let Authenticated { inbound, pointer, seen } = message;
    let span = tracing::info_span!("inbound", message_sid = %inbound.message_sid, conversation_id = %pointer.active_conversation_id);
    once(companies, webhook, &inbound, &pointer, seen).instrument(span).await
}

/// [`answer`], unless the request replays a `MessageSid` first seen longer ago than Twilio's
/// retries come (the replay window): that one is acknowledged and changes nothing, whatever
/// conversation is active by then. A retry is answered as the message, once. A `MessageSid` seen
/// for the first time is remembered alongside the answer (in the same batch as its staging).
async fn once(
    companies: &Companies,
    webhook: &Webhook,
    inbound: &Inbound,
    pointer: &ActivePointer,
    seen: Option<SeenMarker>,
) -> Result<Acknowledged, Failure> {
    let now = epoch_seconds();
    match seen {
        Some(seen) if seen.replayed_at(now) => {
            tracing::warn!("a MessageSid seen long ago came again: a replayed request; ignored");
            Ok(Acknowledged::AlreadyAnswered)
        }
        Some(_) => answer(companies, webhook, inbound, pointer).await,
        None => {
            let key = seen_key(inbound.channel, &inbound.to, &inbound.from, &inbound.message_sid);
            let marker = SeenMarker::new(key, now);
            let (remembered, answered) =
                tokio::join!(webhook.staging.remember(&marker), answer(companies, webhook, inbound, pointer));
            remembered?;
            answered
        }
    }
}

/// The conversation the pointer names, with its trigger lock (one batched read), or, when that
/// one is complete or never started, the newest other active one (the channel's index: only for
/// authenticated messages; its lock unread).
async fn conversation(
    webhook: &Webhook,
    inbound: &Inbound,
    pointer: &ActivePointer,
) -> Result<Option<(ConversationRecord, Option<TriggerLock>)>, Failure> {
    let (pointed, lock) = webhook.staging.record_and_lock(&pointer.conversation()).await?;
    if let Some(active) = pointed.and_then(|c| route::active_newest(vec![c])).filter(route::started) {
        return Ok(Some((active, lock)));
    }
    let all = webhook.store.by_numbers(inbound.channel, &inbound.to, &inbound.from).await?;
    Ok(route::active_newest(all).map(|c| (c, None)))
}

async fn answer(
    companies: &Companies,
    webhook: &Webhook,
    inbound: &Inbound,
    pointer: &ActivePointer,
) -> Result<Acknowledged, Failure> {
    let channel = inbound.channel;
    if let Some(keyword) = keyword(&inbound.body) {
        let tables = (&webhook.store, &webhook.opt_outs, webhook.events.as_ref());
        if let Some(reply) = super::keywords::answer(companies, tables, inbound, pointer, keyword).await? {
            return Ok(Acknowledged::Keyword(keyword, reply));
        }
    }
    let (conversation, lock) = match conversation(webhook, inbound, pointer).await {
        Ok(Some(found)) => found,
        Ok(None) => return Ok(refused(Refusal::ConversationNotFound, "no active conversation with this number")),
        Err(Failure::Permanent(why)) => return Ok(refused(Refusal::DbQueryError, &why)),
        Err(transient) => return Err(transient),
    };
    tracing::Span::current().record("conversation_id", &conversation.conversation_id);
    if conversation.messages.iter().any(|m| m.message_id == inbound.message_sid) {
        return Ok(Acknowledged::AlreadyAnswered);
    }
    let company = companies.get(&conversation.company_id, &conversation.project_id).await?;
    let fragment = fragment(inbound, &conversation);
    match route::route(company.as_ref().map(|c| &c.record), &conversation, channel, chrono::Utc::now()) {
        Route::Refuse(code) => Ok(refused(code, "the company does not take replies on this conversation")),
        Route::HandOff(reason) => {
            // A marker row first, so a Twilio retry of this message is not handed off twice; a
            // failed send removes it again, so the retry sends.
            let marker =
                Fragment { handed_off: true, expires_at: epoch_seconds() + HAND_OFF_MARKER_SECONDS, ..fragment };
            if !webhook.staging.stage(&marker).await? {
                return Ok(Acknowledged::AlreadyAnswered);
            }
            let message = HandOffMessage::new(&conversation, channel, reason.clone(), std::slice::from_ref(&marker));
            if let Err(failure) = webhook.staging.hand_off(&message).await {
                if let Err(e) = webhook.staging.remove(std::slice::from_ref(&marker)).await {
                    tracing::warn!(error = %e, "the hand-off marker was not removed; a retry of this message is dropped");
                }
                return Err(failure);
            }
            // Into the record too, where the inbox shows it (the queue only notifies).
            if let Err(e) = webhook.store.add_handed_off(&conversation.key(), &marker.to_message(), &reason).await {
                tracing::warn!(error = %e, "a handed-off message is on the hand-off queue but not in the record");
            }
            let company = company.as_ref().map(|c| &c.record);
            received(webhook, company, &conversation, &marker).await;
            if !conversation.hand_off_to_human {
                let data = serde_json::json!({"reason": reason});
                webhook.events.emit(company, &conversation, EventType::HandedOff, data).await;
            }
            Ok(Acknowledged::HandedOff)
        }
        Route::Reply => {
            let window = company.as_ref().map(|c| c.record.reply_batch_window()).unwrap_or_default();
            webhook.staging.take(&fragment).await?;
            webhook.staging.trigger_unless_covered(channel, &conversation.key(), lock.as_ref(), window).await?;
            received(webhook, company.as_ref().map(|c| &c.record), &conversation, &fragment).await;
            Ok(Acknowledged::Staged)
        }
    }
}

/// The company's `reply_received` event for `fragment`.
async fn received(
    webhook: &Webhook,
    company: Option<&multicomms_wire::CompanyRecord>,
    conversation: &ConversationRecord,
    fragment: &Fragment,
) {
    let data = serde_json::json!({"message_id": fragment.message_sid, "text": fragment.body, "media": fragment.media});
    webhook.events.emit(company, conversation, EventType::ReplyReceived, data).await;
}

fn refused(code: Refusal, why: &str) -> Acknowledged {
    tracing::warn!(code = code.as_str(), why, "inbound message acknowledged and not answered");
    Acknowledged::Refused(code)
}

fn fragment(inbound: &Inbound, conversation: &ConversationRecord) -> Fragment {
    let received_at_ms = epoch_ms();
    Fragment {
        conversation_id: conversation.conversation_id.clone(),
        message_sid: inbound.message_sid.clone(),
        primary_channel: conversation.primary_channel.clone(),
        channel: Some(inbound.channel),
        body: inbound.body.clone(),
        media: inbound.media.clone(),
        received_at: now(),
        received_at_ms,
        expires_at: epoch_seconds() + STAGE_TTL_SECONDS,
        handed_off: false,
    }
}
