//! The reply processor: one delayed trigger → one reply turn for the conversation (replies-engine
//! §3, its gaps closed). The turn holds a *lease* on the conversation record (an expiring lock,
//! renewed while it works, released on every exit; a crashed turn's lease simply expires), reads
//! the staged fragments, asks the AI to continue the conversation, sends the reply under the same
//! never-twice claim as the first message, records the recipient's messages and the reply in one
//! conditional update, and removes exactly what it consumed. Fragments that arrived meanwhile
//! get a trigger of their own.
use super::route::{self, Route};
use super::staging::Staging;
use crate::shared::ai::Ai;
use crate::shared::claim::{self, OnReply, RecordState};
use crate::shared::companies::Companies;
use crate::shared::conversations::Leased;
use crate::shared::conversations::{ConversationStore, Written};
use crate::shared::failure::Failure;
use crate::shared::opt_outs::OptOuts;
use crate::shared::secrets::Secrets;
use crate::shared::senders::Senders;
use crate::worker::metrics::Metrics;
use crate::worker::outcome::{failed_at, Outcome, StepFailure};
use crate::worker::pod::{PodClients, PodConfig};
use crate::worker::queue::Worker;
use multicomms_wire::client_events::EventType;
use multicomms_wire::conversation::{ConversationKey, ConversationRecord, ConversationStatus, Message};
use multicomms_wire::replies::{Fragment, HandOffMessage, Trigger};
use multicomms_wire::timestamp::epoch_ms;
use multicomms_wire::{ChannelKind, CompanyRecord};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub struct ReplyProcessor {
    pub channel: ChannelKind,
    pub store: ConversationStore,
    pub opt_outs: OptOuts,
    pub companies: Companies,
    pub secrets: Arc<Secrets>,
    pub ai: Ai,
    pub senders: Senders,
    pub staging: Staging,
    pub metrics: Arc<Metrics>,
    /// How long a send claim may legitimately last (see the first-message processor's).
    pub send_grace: Duration,
    /// How long a turn's lease lasts without renewal (a crashed turn blocks no longer).
    pub lease: Duration,
    pub events: Arc<crate::shared::client_events::ClientEvents>,
}

/// What a reply processor is built from: the pod's settings, how long company records are
/// cached, and the lease.
#[derive(Debug, Clone)]
pub struct ReplyConfig {
    pub pod: PodConfig,
    pub company_cache: Duration,
    pub lease: Duration,
}

impl ReplyProcessor {
    pub fn build(sdk: &aws_config::SdkConfig, config: ReplyConfig) -> Result<Self, reqwest::Error> {
        let PodClients { dynamodb, opt_outs, secrets, ai, senders, metrics, events } =
            PodClients::build(sdk, &config.pod)?;
        let naming = config.pod.naming;
        Ok(ReplyProcessor {
            events,
            opt_outs,
            channel: config.pod.channel,
            store: ConversationStore::new(dynamodb.clone(), naming.conversations_table()),
            companies: Companies::new(dynamodb, naming.company_data_table(), config.company_cache),
            ai,
            secrets,
            senders,
            staging: Staging::new(sdk, naming),
            metrics,
            send_grace: config.pod.send_grace,
            lease: config.lease,
        })
    }
}

impl Worker for ReplyProcessor {
    fn process(&self, body: &str, last_receive: bool) -> impl std::future::Future<Output = Outcome> + Send {
        ReplyProcessor::process(self, body, last_receive)
    }

    fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    fn channel_label(&self) -> &'static str {
        self.channel.as_str()
    }
}

/// One turn: the trigger, the lease's token, and the record as the turn found it.
pub(super) struct Turn<'a> {
    pub trigger: &'a Trigger,
    pub key: ConversationKey,
    pub token: String,
    pub record: ConversationRecord,
    /// SQS dead-letters the trigger after this receive: a failure now is handed to a person.
    pub last_receive: bool,
    /// When the turn took the lease: writes around the send are retried while other turns
    /// would still wait for its claim.
    pub started: Instant,
}

/// How often a trigger that finds another turn holding the lease looks again.
const BUSY_RECHECK: Duration = Duration::from_secs(2);

/// The longest a reply waits for the recipient to stop writing, in batching windows after the
/// first message it answers.
const MAX_WINDOWS_WAITED: u32 = 3;

/// The window for a trigger sent when the company's record was not read.
fn default_window() -> Duration {
    Duration::from_secs(multicomms_wire::replies::DEFAULT_BATCH_WINDOW_SECONDS.into())
}

/// How much longer to wait before answering `fragments` (in order): the reply goes out once the
/// recipient has been quiet for a whole `window`, but no later than [`MAX_WINDOWS_WAITED`]
/// windows after their first message. `None`: answer now.
pub fn wait_for_more(fragments: &[Fragment], window: Duration, now_ms: u64) -> Option<Duration> {
    let (first, last) = (fragments.first()?, fragments.last()?);
    let window_ms = window.as_millis() as u64;
    let quiet_at = last.received_at_ms + window_ms;
    let deadline = first.received_at_ms + window_ms * u64::from(MAX_WINDOWS_WAITED);
    let answer_at = quiet_at.min(deadline);
    // SQS delays are whole seconds; a wait under a second is not worth another trigger.
    let wait_ms = answer_at.checked_sub(now_ms).filter(|ms| *ms >= 1_000)?;
    Some(Duration::from_secs(wait_ms.div_ceil(1_000)))
}

impl ReplyProcessor {
    pub async fn process(&self, body: &str, last_receive: bool) -> Outcome {
        let trigger: Trigger = match serde_json::from_str(body) {
            Ok(trigger) => trigger,
            Err(e) => return Outcome::Poison(format!("the body is not a reply trigger: {e}")),
        };
        tracing::Span::current().record("conversation_id", &trigger.conversation_id);
        let key = trigger.key();
        let token = uuid::Uuid::new_v4().to_string();
        let record = match self.store.lease(&key, &token, self.lease).await {
            Ok(Leased::Ours(record)) => *record,
            // Dropped: what is staged gets a trigger that waits its turn.
            Ok(Leased::Held(_)) if last_receive => {
                self.retrigger_leftovers(&key).await;
                return Outcome::Duplicate;
            }
            // Back when that lease ends, or sooner: a live turn releases it well before it
            // expires, and this trigger (a message that came during that turn) is then next.
            Ok(Leased::Held(left)) => return Outcome::Busy(left.min(BUSY_RECHECK)),
            // Erased (or expired) since the trigger was sent, its staged messages with it.
            Ok(Leased::NoConversation) => {
                tracing::info!("no conversation record for this trigger (erased or expired): nothing to answer");
                return Outcome::Duplicate;
            }
            Err(failure) => return Outcome::Retry(format!("lease: {failure}")),
        };
        let work = self.turn(Turn {
            trigger: &trigger,
            key: key.clone(),
            token: token.clone(),
            record,
            last_receive,
            started: Instant::now(),
        });
        tokio::select! {
            outcome = work => outcome,
            never = self.keep_lease(&key, &token) => never,
        }
    }

    /// Renews the lease every third of its duration while the turn holds it (never returns).
    /// Once it is no longer this turn's (the turn's own last steps released it, or it expired
    /// after a stall and another turn took it, whose claim then wins) there is nothing to renew.
    async fn keep_lease(&self, key: &ConversationKey, token: &str) -> Outcome {
        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + self.lease / 3, self.lease / 3);
        loop {
            ticks.tick().await;
            match self.store.renew_lease(key, token, self.lease).await {
                Ok(Written::Applied) => {}
                Ok(Written::Superseded) => break,
                Err(e) => tracing::warn!(error = %e, "the reply lease was not renewed"),
            }
        }
        std::future::pending().await
    }

    async fn turn(&self, turn: Turn<'_>) -> Outcome {
        let state = RecordState::of(&turn.record);
        let decision = claim::on_reply(
            &state,
            turn.record.hand_off_to_human,
            chrono::Utc::now(),
            self.send_grace,
            turn.last_receive,
        );
        match decision {
            OnReply::Proceed => self.answer(&turn).await,
            OnReply::Wait => {
                self.release(&turn.key, &turn.token, Failure::Transient("a send is in flight".into())).await
            }
            OnReply::NeedsAttention(reason) => {
                self.hand_off(&turn, reason.into(), Some(ConversationStatus::SendOutcomeUnknown)).await
            }
            OnReply::HandOff(reason) => self.hand_off(&turn, reason.into(), None).await,
        }
    }

    /// The reply: fragments, company, AI, claim, send, record, clean-up.
    async fn answer(&self, turn: &Turn<'_>) -> Outcome {
        let fragments = match self.unanswered(turn).await {
            Ok(fragments) => fragments,
            Err(failure) => return self.release(&turn.key, &turn.token, failure).await,
        };
        if fragments.is_empty() {
            // A redelivered trigger, or one whose fragments an earlier turn answered.
            self.finish(turn, &[]).await;
            return Outcome::Duplicate;
        }
        let company = match self.companies.get(&turn.record.company_id, &turn.record.project_id).await {
            Ok(company) => company,
            Err(error) => {
                let stop = failed_at(ConversationStatus::FailedToProcessReplyAi, "company lookup");
                return self.stopped(turn, stop(error.into())).await;
            }
        };
        let company = company.map(|c| c.record.clone());
        match route::route(company.as_ref(), &turn.record, self.channel, chrono::Utc::now()) {
            Route::Reply => {}
            Route::HandOff(reason) => return self.hand_off(turn, reason, None).await,
            Route::Refuse(code) => return self.hand_off(turn, format!("{code}: the AI does not answer"), None).await,
        }
        let Some(company) = company else { return Outcome::Duplicate };
        if let Some(limit) = route::over_limits(&turn.record, &fragments) {
            // The conversation stays a person's from now on (`hand_off_to_human`), its status as it is.
            return self.hand_off(turn, limit, Some(turn.record.conversation_status)).await;
        }
        let reengagement = match self.after_window(&company, &fragments) {
            Ok(template) => template,
            Err(shut) => return self.hand_off(turn, shut, Some(turn.record.conversation_status)).await,
        };
        if let Some(wait) = wait_for_more(&fragments, company.reply_batch_window(), epoch_ms()) {
            if turn.trigger.trigger_id.is_some() {
                return self.defer(turn, &company, wait).await;
            }
        }
        let prepared = match self.prepare(turn, &company, &fragments, reengagement).await {
            Ok(prepared) => prepared,
            Err(stop) => return self.stopped(turn, stop).await,
        };
        match self.store.claim_reply(&turn.key, &turn.token).await {
            Ok(true) => {}
            // The lease was lost after a stall: the turn that took it answers.
            Ok(false) => {
                tracing::warn!("the reply lease was lost during the turn; the turn that took it answers");
                return Outcome::Duplicate;
            }
            Err(failure) => {
                return self.stopped(turn, failed_at(ConversationStatus::FailedToSendReply, "claim")(failure)).await
            }
        }
        let sent = match self.send(turn, &prepared).await {
            Ok(sent) => sent,
            Err(outcome) => return outcome,
        };
        let data = serde_json::json!({"message_id": sent.message_id, "text": sent.content});
        // The final update releases claim and lease; what is left is the consumed rows.
        self.record_reply(turn, &fragments, sent, &prepared).await;
        self.events.emit(Some(&company), &turn.record, EventType::ReplySent, data).await;
        if let Err(e) = self.staging.remove(&fragments).await {
            tracing::warn!(error = %e, "consumed fragments not removed; the next turn skips them as answered");
        }
        Outcome::Sent
    }

    /// After WhatsApp's window only an approved template may go: `Ok(Some(_))` the company's,
    /// `Err(why)` none (a person answers); `Ok(None)` inside the window.
    fn after_window(&self, company: &CompanyRecord, fragments: &[Fragment]) -> Result<Option<String>, String> {
        let Some(shut) = route::outside_whatsapp_window(self.channel, fragments, epoch_ms(), self.send_grace) else {
            return Ok(None);
        };
        let template = company.channel_config.whatsapp.as_ref().and_then(|w| w.reengagement_content_sid.clone());
        template.map(Some).ok_or(shut)
    }

    /// The recipient is still writing: this trigger steps aside for one `wait` later (its lock,
    /// fired, taken by the new trigger), and the lease goes back.
    async fn defer(&self, turn: &Turn<'_>, company: &CompanyRecord, wait: Duration) -> Outcome {
        let triggered = self.staging.trigger(self.channel, &turn.key, wait).await;
        if let Err(e) = self.store.release_lease(&turn.key, &turn.token, None).await {
            tracing::warn!(error = %e, "the reply lease was not released; it expires");
        }
        match triggered {
            // Sent, or another trigger is on its way (a message staged just now): either answers.
            Ok(_) => {
                tracing::debug!(wait_s = wait.as_secs(), window_s = company.reply_batch_window().as_secs(), "deferred");
                Outcome::Deferred
            }
            Err(failure) => Outcome::Retry(format!("deferring the reply: {failure}")),
        }
    }

    /// The staged fragments not yet in the conversation (a retried webhook may have staged an
    /// answered message again); the answered ones are removed.
    async fn unanswered(&self, turn: &Turn<'_>) -> Result<Vec<Fragment>, Failure> {
        let staged = self.staging.staged(&turn.key.conversation_id).await?;
        let answered = |f: &Fragment| turn.record.messages.iter().any(|m| m.message_id == f.message_sid);
        let (old, new): (Vec<Fragment>, Vec<Fragment>) = staged.into_iter().partition(answered);
        if !old.is_empty() {
            self.staging.remove(&old).await?;
        }
        Ok(new)
    }

    /// A turn that ends without a reply (nothing to answer, a hand-off): the consumed rows and
    /// the lease go (its expiry is the fallback). A message staged meanwhile needs nothing from
    /// it: once this turn's trigger fired, such a message armed a trigger of its own
    /// ([`multicomms_wire::replies::TriggerLock`]).
    async fn finish(&self, turn: &Turn<'_>, consumed: &[Fragment]) {
        let (removed, released) =
            tokio::join!(self.staging.remove(consumed), self.store.release_lease(&turn.key, &turn.token, None));
        if let Err(e) = removed {
            tracing::warn!(error = %e, "consumed fragments not removed; the next turn skips them as answered");
        }
        if let Err(e) = released {
            tracing::warn!(error = %e, "the reply lease was not released; it expires");
        }
    }

    /// A trigger dropped while another turn held the lease: whatever is staged gets a new one
    /// (a whole window on), so none is left waiting for a trigger that is gone.
    async fn retrigger_leftovers(&self, key: &ConversationKey) {
        let window = default_window();
        let leftovers = match self.staging.staged(&key.conversation_id).await {
            Ok(leftovers) => leftovers,
            Err(e) => return tracing::warn!(error = %e, "could not look for staged messages; the sweep finds them"),
        };
        if leftovers.is_empty() {
            return;
        }
        if let Err(e) = self.staging.trigger(self.channel, key, window).await {
            tracing::error!(error = %e, staged = leftovers.len(), "staged messages have no trigger; the sweep finds them");
        }
    }

    /// A step failed before the send (or the provider refused it): transient → lease back and
    /// retried through SQS; permanent, or transient on the trigger's last receive (SQS would
    /// dead-letter it) → the step's status, and the messages to a person.
    pub(super) async fn stopped(&self, turn: &Turn<'_>, stop: StepFailure) -> Outcome {
        let reason = format!("reply {}: {}", stop.step, stop.failure);
        if matches!(stop.failure, Failure::Transient(_)) && !turn.last_receive {
            return self.release(&turn.key, &turn.token, stop.failure).await;
        }
        tracing::warn!(status = %stop.status, reason = %reason, "reply turn failed");
        match self.hand_off(turn, reason, Some(stop.status)).await {
            Outcome::HandedOff => Outcome::Failed,
            other => other,
        }
    }

    /// The staged messages to the hand-off queue, whole, and into the record; then `status`
    /// (with `hand_off_to_human`) on the record if given, and the rows, lock and lease released.
    pub(super) async fn hand_off(
        &self,
        turn: &Turn<'_>,
        reason: String,
        status: Option<ConversationStatus>,
    ) -> Outcome {
        let fragments = match self.unanswered(turn).await {
            Ok(fragments) => fragments,
            Err(failure) => return self.release(&turn.key, &turn.token, failure).await,
        };
        if !fragments.is_empty() {
            let message = HandOffMessage::new(&turn.record, self.channel, reason.clone(), &fragments);
            if let Err(failure) = self.staging.hand_off(&message).await {
                return self.release(&turn.key, &turn.token, failure).await;
            }
        }
        // The messages join the record, where the inbox shows them; the queue only notifies.
        let messages: Vec<Message> = fragments.iter().map(Fragment::to_message).collect();
        if status.is_some() || !messages.is_empty() {
            let outcome = status.map(|status| (status, reason.as_str()));
            match self.store.handed_off(&turn.key, &turn.token, &messages, outcome).await {
                Ok(Written::Applied) => {}
                Ok(Written::Superseded) => tracing::warn!("the reply lease was lost before the hand-off was recorded"),
                Err(e) => tracing::error!(error = %e, reason, "the hand-off was not recorded on the conversation"),
            }
        }
        self.finish(turn, &fragments).await;
        tracing::warn!(reason, messages = fragments.len(), "reply turn handed to a person");
        if !turn.record.hand_off_to_human {
            let company = self.companies.get(&turn.record.company_id, &turn.record.project_id).await.ok().flatten();
            let data = serde_json::json!({"reason": reason});
            self.events.emit(company.as_ref().map(|c| &c.record), &turn.record, EventType::HandedOff, data).await;
        }
        match status {
            Some(ConversationStatus::SendOutcomeUnknown) => Outcome::NeedsAttention,
            _ => Outcome::HandedOff,
        }
    }

    /// A transient failure: the lease back with the reason, the trigger retried through SQS.
    async fn release(&self, key: &ConversationKey, token: &str, failure: Failure) -> Outcome {
        let reason = failure.to_string();
        if let Err(e) = self.store.release_lease(key, token, Some(&reason)).await {
            tracing::warn!(error = %e, "the reply lease was not released; it expires");
        }
        match failure {
            Failure::Transient(_) => Outcome::Retry(reason),
            Failure::Permanent(_) => Outcome::Poison(reason),
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// A fragment received at `ms`.
    pub(in crate::replies) fn at(ms: u64) -> Fragment {
        Fragment {
            conversation_id: "c".into(),
            message_sid: format!("SM{ms}"),
            primary_channel: "+1".into(),
            channel: Some(ChannelKind::Whatsapp),
            body: "x".into(),
            media: vec![],
            received_at: String::new(),
            received_at_ms: ms,
            expires_at: 0,
            handed_off: false,
        }
    }

    #[test]
    fn a_reply_waits_until_the_recipient_has_been_quiet_for_a_window() {
        let window = Duration::from_secs(10);
        // Three messages 2 s apart, the trigger of the first fires at 10 s: 6 s more.
        let burst = [at(0), at(2_000), at(4_000)];
        assert_eq!(wait_for_more(&burst, window, 10_000), Some(Duration::from_secs(4)));
        assert_eq!(wait_for_more(&burst, window, 14_000), None, "quiet for a whole window");
        assert_eq!(wait_for_more(&burst, window, 13_500), None, "under a second left");
    }

    #[test]
    fn a_recipient_who_never_stops_is_answered_after_three_windows() {
        let window = Duration::from_secs(10);
        let chatty: Vec<Fragment> = (0..=14).map(|i| at(i * 2_000)).collect();
        assert_eq!(wait_for_more(&chatty, window, 28_000), Some(Duration::from_secs(2)));
        assert_eq!(wait_for_more(&chatty, window, 30_000), None);
    }
}
