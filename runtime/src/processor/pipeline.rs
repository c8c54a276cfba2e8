//! What happens to one message: parse → conversation record → prepare (consent, credentials,
//! AI) → the send claim → the provider → the outcome on the record. What to do about an existing
//! record is [`crate::shared::claim`]'s; the I/O is behind the adapters (store, secrets, ai, senders).
use super::incoming::Incoming;
use crate::shared::ai::{Ai, Reply};
use crate::shared::claim::{self, OnExisting};
use crate::shared::client_events::ClientEvents;
use crate::shared::conversations::{ConversationStore, Created, Written};
use crate::shared::failure::Failure;
use crate::shared::opt_outs::OptOuts;
use crate::shared::secrets::{Secrets, TwilioCredentials};
use crate::shared::senders::{Addressed, Email, SendError, Senders, Sent};
use crate::worker::around_send::{sent_but_not_recorded, through_outage, Unrecorded};
use crate::worker::metrics::Metrics;
use crate::worker::outcome::{failed_at, Outcome, StepFailure};
use crate::worker::pod::{PodClients, PodConfig};
use multicomms_wire::client_events::EventType;
use multicomms_wire::conversation::{ConversationKey, ConversationRecord, ConversationStatus, Message, ROLE_ASSISTANT};
use multicomms_wire::timestamp::now;
use multicomms_wire::ChannelKind;
use secrecy::SecretString;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub struct Processor {
    pub channel: ChannelKind,
    /// `processor_version` on new records.
    pub version: String,
    pub store: ConversationStore,
    pub opt_outs: OptOuts,
    pub secrets: Arc<Secrets>,
    pub ai: Ai,
    pub senders: Senders,
    pub metrics: Arc<Metrics>,
    /// See [`PodConfig::send_grace`].
    pub send_grace: Duration,
    pub events: Arc<ClientEvents>,
}

/// What a processor is built from: the pod's settings, and `processor_version` on new records.
#[derive(Debug, Clone)]
pub struct ProcessorConfig {
    pub pod: PodConfig,
    pub version: String,
}

impl Processor {
    pub fn build(sdk: &aws_config::SdkConfig, config: ProcessorConfig) -> Result<Self, reqwest::Error> {
        let PodClients { dynamodb, opt_outs, secrets, ai, senders, metrics, events } =
            PodClients::build(sdk, &config.pod)?;
        Ok(Processor {
            events,
            opt_outs,
            channel: config.pod.channel,
            version: config.version,
            store: ConversationStore::new(dynamodb, config.pod.naming.conversations_table()),
            secrets,
            ai,
            senders,
            metrics,
            send_grace: config.pod.send_grace,
        })
    }
}

impl crate::worker::queue::Worker for Processor {
    fn process(&self, body: &str, last_receive: bool) -> impl std::future::Future<Output = Outcome> + Send {
        Processor::process(self, body, last_receive)
    }

    fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    fn channel_label(&self) -> &'static str {
        self.channel.as_str()
    }
}

/// Why the work on a message stopped before the end.
enum Halt {
    /// A step failed; the record must still have the status given (`processing` before the
    /// claim, `sending` after it).
    Failed(ConversationStatus, StepFailure),
    /// Settled already (a claim held elsewhere, an unknown send outcome handed off).
    Settled(Outcome),
}

impl From<StepFailure> for Halt {
    /// A failure before the send claim.
    fn from(failure: StepFailure) -> Self {
        Halt::Failed(ConversationStatus::Processing, failure)
    }
}

/// The outcome of a failed write of the record before any work: retried, or (the record cannot
/// be stored at all) the message is unusable.
fn record_unusable_or_later(failure: Failure) -> Outcome {
    match failure {
        Failure::Transient(reason) => Outcome::Retry(format!("record: {reason}")),
        Failure::Permanent(reason) => Outcome::Poison(format!("record: {reason}")),
    }
}

enum Credentials {
    Twilio(TwilioCredentials),
    SendGrid(SecretString),
}

/// What the send needs, gathered before the claim.
struct Prepared {
    credentials: Credentials,
    reply: Reply,
    /// SMS: the output's `body`.
    sms_body: Option<String>,
}

impl Processor {
    /// `last_receive`: SQS dead-letters the message after this receive, so it must not be left
    /// to come back.
    pub async fn process(&self, body: &str, last_receive: bool) -> Outcome {
        let incoming = match Incoming::parse(body, self.channel) {
            Ok(incoming) => incoming,
            Err(invalid) => return Outcome::Poison(invalid.0),
        };
        tracing::Span::current().record("conversation_id", &incoming.context.conversation_data.conversation_id);
        let started = Instant::now();
        let key = incoming.key();
        // This delivery's token: the record's worker while it prepares, then its send claim.
        let token = uuid::Uuid::new_v4().to_string();
        let created_at = match self.begin(&incoming, &key, &token, last_receive).await {
            Ok(created_at) => created_at,
            Err(settled) => return settled,
        };
        match self.work(&incoming, &key, &token, &created_at, started).await {
            Ok(outcome) | Err(Halt::Settled(outcome)) => outcome,
            Err(Halt::Failed(from, failure)) => self.record_failure(&key, &token, from, failure, last_receive).await,
        }
    }

    /// Creates the record as this delivery's, or decides from the existing one; `Ok`: go on
    /// working (the record is this delivery's), with the record's creation time.
    async fn begin(
        &self,
        m: &Incoming,
        key: &ConversationKey,
        token: &str,
        last_receive: bool,
    ) -> Result<String, Outcome> {
        let record = ConversationRecord { claim_id: Some(token.into()), ..m.initial_record(&self.version, now()) };
        let (existing, created_at) = match self.store.create(&record).await {
            Ok(Created::New) => return Ok(record.created_at),
            Ok(Created::Exists(state, created_at)) => (state, created_at),
            Err(failure) => return Err(record_unusable_or_later(failure)),
        };
        match claim::on_existing(&existing, token, chrono::Utc::now(), self.send_grace, last_receive) {
            OnExisting::Resume if existing.claim_id.as_deref() == Some(token) => Ok(created_at),
            OnExisting::Resume => match self.store.take_over(key, token, existing.claim_id.as_deref()).await {
                Ok(true) => Ok(created_at),
                Ok(false) => Err(Outcome::Retry("another attempt took the conversation over".into())),
                Err(failure) => Err(record_unusable_or_later(failure)),
            },
            OnExisting::Wait if existing.status == ConversationStatus::Processing => {
                Err(Outcome::Retry("another attempt is preparing this conversation's message".into()))
            }
            OnExisting::Wait => Err(Outcome::Retry("another attempt is sending this conversation".into())),
            OnExisting::HandOff(reason) => Err(self.needs_attention(key, reason).await),
            OnExisting::Duplicate => Err(Outcome::Duplicate),
        }
    }

    async fn work(
        &self,
        m: &Incoming,
        key: &ConversationKey,
        token: &str,
        created_at: &str,
        started: Instant,
    ) -> Result<Outcome, Halt> {
        let prepared = self.prepare(m).await?;
        // Before the send: the recipient may answer the moment the message arrives.
        if let Some(pointer) = m.active_pointer(created_at) {
            let point = || self.store.point(&pointer);
            through_outage(started, self.send_grace, "pointer", point)
                .await
                .map_err(failed_at(ConversationStatus::FailedUnknown, "pointer"))?;
        }
        // The claim: from here on the provider may get the message, so a redelivery must not
        // send again. A record taken over by another attempt is left to it; the message comes
        // back later and finds the outcome.
        let claim = || self.store.claim(key, token);
        let claimed = through_outage(started, self.send_grace, "claim", claim).await;
        let claimed = claimed.map_err(failed_at(ConversationStatus::FailedUnknown, "claim"))?;
        if !claimed {
            return Ok(Outcome::Retry("another attempt took the conversation over".into()));
        }
        // Again under the claim, just before the provider: a STOP acknowledged while the AI was
        // asked (to the conversation the recipient had then, not this one) is seen here.
        if let Err(refused) = self.refuse_opted_out(m).await {
            if let Failure::Transient(_) = refused.failure {
                self.store
                    .release(key, token)
                    .await
                    .map_err(failed_at(ConversationStatus::FailedUnknown, "opt-out"))?;
                return Err(refused.into());
            }
            return Err(Halt::Failed(ConversationStatus::Sending, refused));
        }
        let sent = self.send_claimed(m, key, token, &prepared).await?;
        let data = json!({"message_id": sent.message_id, "text": sent.content});
        let outcome = self.record_sent(key, sent, &prepared.reply, started).await;
        // The event's record is built only for a company that takes events.
        if outcome == Outcome::Sent && m.company.client_events.is_some() {
            let record = m.initial_record(&self.version, created_at.to_string());
            self.events.emit(Some(&m.company), &record, EventType::ConversationStarted, data).await;
        }
        Ok(outcome)
    }

    /// Consent, the AI key and the provider credentials, then the AI's message.
    async fn prepare(&self, m: &Incoming) -> Result<Prepared, StepFailure> {
        if !m.comms_consent && !m.company.send_without_consent {
            let failure = Failure::Permanent("comms_consent is false and the company does not send without it".into());
            return Err(failed_at(ConversationStatus::FailedNoConsent, "consent")(failure));
        }
        // Before the AI is paid for (and again under the claim).
        self.refuse_opted_out(m).await?;
        let secrets_failed = || failed_at(ConversationStatus::FailedSecretsFetch, "secrets");
        let ai_key = self.secrets.ai_key(&m.ai.api_key_reference).await.map_err(secrets_failed())?;
        let credentials = self.credentials(m.credentials_name()).await.map_err(secrets_failed())?;
        let ai_failed = || failed_at(ConversationStatus::FailedToProcessAi, "ai");
        let reply =
            match self.ai.first_message(self.channel, &m.ai, &ai_key, m.ai_input(), &m.key().conversation_id).await {
                Ok(reply) => reply,
                Err(failure) => {
                    // A rejected key may have been rotated: read it afresh next time.
                    self.secrets.forget(&m.ai.api_key_reference);
                    return Err(ai_failed()(failure));
                }
            };
        let sms_body = match self.channel {
            ChannelKind::Sms => Some(
                reply
                    .variables
                    .get("body")
                    .and_then(Value::as_str)
                    .map(str::to_string)
                    .ok_or_else(|| ai_failed()(Failure::Permanent("the output has no string `body`".into())))?,
            ),
            _ => None,
        };
        if let Some(why) = sms_body.as_deref().and_then(|body| m.company.rate_limits.too_long(self.channel, body)) {
            return Err(ai_failed()(Failure::Permanent(why)));
        }
        Ok(Prepared { credentials, reply, sms_body })
    }

    /// A recipient who opted out of the company's messages on this channel gets none (a
    /// consistent read: a STOP acknowledged before it is seen).
    async fn refuse_opted_out(&self, m: &Incoming) -> Result<(), StepFailure> {
        let opted_out = self.opt_outs.opted_out(&m.company.company_id, self.channel, &m.primary_channel).await;
        if opted_out.map_err(failed_at(ConversationStatus::FailedUnknown, "opt-out"))? {
            let failure = Failure::Permanent("the recipient opted out of this company's messages".into());
            return Err(failed_at(ConversationStatus::RecipientOptedOut, "opt-out")(failure));
        }
        Ok(())
    }

    /// The provider call under a claim. Nothing sent and worth a retry: the claim is given back.
    /// Maybe sent: handed off, never sent again.
    async fn send_claimed(
        &self,
        m: &Incoming,
        key: &ConversationKey,
        token: &str,
        prepared: &Prepared,
    ) -> Result<Sent, Halt> {
        let failure = match self.send(m, prepared).await {
            Ok(sent) => return Ok(sent),
            Err(SendError::Unknown(why)) => {
                let reason = format!("send: {why}; the message may have been delivered, so it is not sent again");
                return Err(Halt::Settled(self.needs_attention(key, &reason).await));
            }
            Err(SendError::NotSent(failure)) => failure,
        };
        self.secrets.forget(m.credentials_name());
        let (from, status) = (ConversationStatus::Sending, ConversationStatus::FailedToSendMessage);
        if let Failure::Transient(_) = failure {
            // Nothing went out: give the claim back so the retry may send.
            self.store.release(key, token).await.map_err(failed_at(ConversationStatus::FailedUnknown, "send"))?;
            return Err(failed_at(status, "send")(failure).into());
        }
        Err(Halt::Failed(from, failed_at(status, "send")(failure)))
    }

    async fn credentials(&self, name: &str) -> Result<Credentials, Failure> {
        match self.channel {
            ChannelKind::Whatsapp | ChannelKind::Sms => self.secrets.twilio(name).await.map(Credentials::Twilio),
            ChannelKind::Email => self.secrets.sendgrid_key(name).await.map(Credentials::SendGrid),
        }
    }

    async fn send(&self, m: &Incoming, prepared: &Prepared) -> Result<Sent, SendError> {
        let variables = &prepared.reply.variables;
        let to = Addressed {
            from: m.sender(),
            to: &m.primary_channel,
            conversation_id: &m.context.conversation_data.conversation_id,
        };
        match (&prepared.credentials, self.channel) {
            (Credentials::Twilio(twilio), ChannelKind::Whatsapp) => self.senders.whatsapp(twilio, to, variables).await,
            (Credentials::Twilio(twilio), _) => {
                self.senders.sms(twilio, to, prepared.sms_body.as_deref().unwrap_or("")).await
            }
            (Credentials::SendGrid(api_key), _) => self.send_email(m, api_key, variables).await,
        }
    }

    async fn send_email(
        &self,
        m: &Incoming,
        api_key: &SecretString,
        data: &serde_json::Map<String, Value>,
    ) -> Result<Sent, SendError> {
        let missing = |what: &str| SendError::NotSent(Failure::Permanent(format!("{what} is not configured")));
        let email = m.company.channel_config.email.as_ref().ok_or_else(|| missing("channel_config.email"))?;
        let template_id = email.sendgrid_template_id.as_deref().ok_or_else(|| missing("the SendGrid template id"))?;
        let name =
            [m.text(&["recipient_data", "recipient_first_name"]), m.text(&["recipient_data", "recipient_last_name"])];
        let to_name = name.into_iter().flatten().collect::<Vec<_>>().join(" ");
        let email = Email {
            api_key,
            from_email: &email.company_email,
            from_name: email.email_from_name.as_deref(),
            to_email: &m.primary_channel,
            to_name: Some(to_name),
            template_id,
            data,
            conversation_id: &m.context.conversation_data.conversation_id,
            unsubscribe_group_id: email.unsubscribe_group_id,
        };
        self.senders.email(email).await
    }

    /// The final update after a send, retried through an AWS outage ([`through_outage`]).
    /// If it still fails, the original's CRITICAL alarm goes out and the message is left to come
    /// back: the next delivery finds the claim past its grace and hands the conversation to a
    /// person, instead of it staying `sending`.
    async fn record_sent(&self, key: &ConversationKey, sent: Sent, reply: &Reply, started: Instant) -> Outcome {
        let message = Message {
            message_id: sent.message_id.clone(),
            timestamp: now(),
            role: ROLE_ASSISTANT.into(),
            content: sent.content,
            prompt_tokens: reply.usage.input_tokens,
            completion_tokens: reply.usage.output_tokens,
            total_tokens: reply.usage.total_tokens,
            media: vec![],
            ..Default::default()
        };
        let took = started.elapsed().as_millis() as u64;
        let update = || self.store.sent(key, &message, &reply.response_id, took);
        let what = "the record update after a send";
        let Err(error) = through_outage(started, self.send_grace, what, update).await else {
            return Outcome::Sent;
        };
        let unrecorded = Unrecorded {
            what: "Message",
            message_id: &sent.message_id,
            conversation_id: &key.conversation_id,
            status: ConversationStatus::InitialMessageSent,
            response_id: &reply.response_id,
            processing_time_ms: Some(took),
        };
        sent_but_not_recorded(&self.metrics, &unrecorded, &error);
        Outcome::Retry(format!("sent, but the record could not be updated: {error}"))
    }

    /// Transient: noted on the record, retried through SQS. Permanent, or transient on the last
    /// receive (SQS would dead-letter the message and leave the record unfinished): the step's
    /// status.
    async fn record_failure(
        &self,
        key: &ConversationKey,
        token: &str,
        from: ConversationStatus,
        failed: StepFailure,
        last_receive: bool,
    ) -> Outcome {
        let StepFailure { status, step, failure } = failed;
        let reason = match (&failure, last_receive) {
            (Failure::Transient(_), true) => format!("{step}: {failure}; still failing on the last receive"),
            _ => format!("{step}: {failure}"),
        };
        if let (Failure::Transient(_), false) = (&failure, last_receive) {
            if let Err(e) = self.store.retrying(key, token, &reason).await {
                tracing::warn!(error = %e, "could not note the retry on the record");
            }
            return Outcome::Retry(reason);
        }
        tracing::warn!(%status, reason = %reason, "conversation failed");
        match self.store.failed(key, from, status, &reason, false).await {
            Ok(Written::Applied) => Outcome::Failed,
            // Another attempt finished the conversation meanwhile.
            Ok(Written::Superseded) => Outcome::Duplicate,
            Err(e) => Outcome::Retry(format!("recording the failure: {e}")),
        }
    }

    async fn needs_attention(&self, key: &ConversationKey, reason: &str) -> Outcome {
        let (from, to) = (ConversationStatus::Sending, ConversationStatus::SendOutcomeUnknown);
        match self.store.failed(key, from, to, reason, true).await {
            Ok(Written::Applied) => {
                tracing::error!(reason, "send outcome unknown; handed off to a person");
                Outcome::NeedsAttention
            }
            // The sending attempt finished meanwhile.
            Ok(Written::Superseded) => Outcome::Duplicate,
            Err(e) => Outcome::Retry(format!("recording an unknown send outcome: {e}")),
        }
    }
}
