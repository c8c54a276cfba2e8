//! `POST /webhooks/sendgrid/events/{company_id}/{project_id}`: a company's SendGrid Event
//! Webhook. The platform points each company's SendGrid account at its own URL; the request
//! must be signed with the verification key the company's record names (`channel_config.email.
//! event_webhook_public_key`), and each event may touch only that company's conversations and
//! recipients. Delivery events (processed, deferred, delivered, bounce, dropped, open) are
//! recorded on their message as Twilio's callbacks are ([`super::delivery::on_its_message`]);
//! unsubscribes and spam reports opt the address out of the company's email, and end the
//! conversation as a STOP does.
use super::delivery::{on_its_message, Callback, Reported};
use super::sendgrid_signature::verify;
use crate::shared::companies::Companies;
use crate::shared::conversations::ConversationStore;
use crate::shared::failure::Failure;
use crate::shared::opt_outs::OptOuts;
use multicomms_wire::conversation::ConversationKey;
use multicomms_wire::delivery::{DeliveryStatus, SendgridEvent};
use multicomms_wire::ChannelKind;

/// What the events endpoint reads and writes through.
pub struct Events<'a> {
    pub companies: &'a Companies,
    pub store: &'a ConversationStore,
    pub opt_outs: &'a OptOuts,
    pub client_events: &'a crate::shared::client_events::ClientEvents,
}

/// One signed request: the company its URL names, SendGrid's headers, the raw body.
pub struct Signed<'a> {
    pub company_id: &'a str,
    pub project_id: &'a str,
    pub timestamp: &'a str,
    pub signature: &'a str,
    pub body: &'a [u8],
}

/// How a request was taken: the HTTP status SendGrid gets, and each event's outcome label.
#[derive(Debug, Default, PartialEq)]
pub struct Taken {
    pub status: u16,
    pub outcomes: Vec<(&'static str, Option<DeliveryStatus>)>,
}

impl Events<'_> {
    /// `Err`: a transient failure (503: SendGrid retries the batch, and every event is
    /// idempotent).
    pub async fn take(&self, request: Signed<'_>) -> Result<Taken, Failure> {
        let found = self.companies.get(request.company_id, request.project_id).await?;
        let key = found.as_ref().and_then(|c| c.record.channel_config.email.as_ref()?.event_webhook_public_key.clone());
        let signed = key.is_some_and(|key| verify(&key, request.timestamp, request.body, request.signature));
        if !signed {
            tracing::warn!(company_id = request.company_id, "SendGrid events not signed with the company's key");
            return Ok(Taken { status: 403, outcomes: vec![("INVALID_SIGNATURE", None)] });
        }
        let Ok(events) = serde_json::from_slice::<Vec<serde_json::Value>>(request.body) else {
            return Ok(Taken { status: 400, outcomes: vec![("PARSING_ERROR", None)] });
        };
        let mut taken = Taken { status: 200, outcomes: Vec::with_capacity(events.len()) };
        for event in events {
            let outcome = match serde_json::from_value::<SendgridEvent>(event) {
                Ok(event) => self.one(request.company_id, &event).await?,
                Err(_) => ("ignored", None),
            };
            taken.outcomes.push(outcome);
        }
        Ok(taken)
    }

    /// One event of the company `company_id`'s account.
    async fn one(
        &self,
        company_id: &str,
        event: &SendgridEvent,
    ) -> Result<(&'static str, Option<DeliveryStatus>), Failure> {
        // Only the company's own conversations (ids start with its id).
        let conversation_id = event.conversation_id.clone().filter(|id| id.starts_with(&format!("{company_id}#")));
        let key = conversation_id
            .map(|conversation_id| ConversationKey { primary_channel: event.email.clone(), conversation_id });
        if let Some(opted_out) = event.opts_out() {
            if opted_out {
                self.opt_outs.opt_out(company_id, ChannelKind::Email, &event.email, &event.event).await?;
                if let Some(key) = &key {
                    self.store.opted_out(key, &format!("SendGrid {}", event.event)).await?;
                    if let Some(record) = self.store.record(key).await? {
                        let company = self.companies.get(company_id, &record.project_id).await?;
                        let data = serde_json::json!({"keyword": format!("SendGrid {}", event.event)});
                        let kind = multicomms_wire::client_events::EventType::OptedOut;
                        self.client_events.emit(company.as_ref().map(|c| &c.record), &record, kind, data).await;
                    }
                }
                return Ok(("opted_out", None));
            }
            self.opt_outs.opt_in(company_id, ChannelKind::Email, &event.email).await?;
            return Ok(("opted_in", None));
        }
        let (Some(status), Some(message_id), Some(key)) =
            (DeliveryStatus::parse(&event.event), event.message_id(), key)
        else {
            return Ok(("ignored", None));
        };
        let Some(record) = self.store.record(&key).await? else { return Ok(("ignored", None)) };
        let reported = Reported { message_id, status, error_code: event.status.as_deref() };
        let callback =
            on_its_message(self.companies, self.store, self.client_events, &record, ChannelKind::Email, &reported)
                .await?;
        let status = matches!(callback, Callback::Recorded(..)).then_some(status);
        Ok((callback.label(), status))
    }
}
