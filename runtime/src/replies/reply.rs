//! The reply itself, once the turn decided to answer: what the send needs (the company's AI
//! and Twilio settings, the secrets, the AI's continuation), the provider call under the
//! claim, and the one conditional update that records the recipient's messages and the reply.
use super::turn::{ReplyProcessor, Turn};
use crate::shared::ai::Reply;
use crate::shared::failure::Failure;
use crate::shared::secrets::TwilioCredentials;
use crate::shared::senders::{Addressed, SendError, Sent};
use crate::worker::around_send::{sent_but_not_recorded, through_outage, Unrecorded};
use crate::worker::outcome::{failed_at, Outcome, StepFailure};
use multicomms_wire::conversation::{ConversationRecord, ConversationStatus, Message, ROLE_ASSISTANT, ROLE_HUMAN};
use multicomms_wire::replies::Fragment;
use multicomms_wire::timestamp::now;
use multicomms_wire::{ChannelKind, CompanyRecord};

/// What the send needs, gathered before the claim.
pub(super) struct Prepared {
    credentials: TwilioCredentials,
    /// The credentials' secret name (forgotten when the provider refuses them).
    credentials_id: String,
    sender: String,
    /// The AI's continuation; for a re-engagement template, its variables and the previous
    /// response (the AI's conversation goes on from there), no usage.
    reply: Reply,
    /// The free-form text; empty for a template.
    content: String,
    /// The re-engagement template sent instead of a free-form reply (after WhatsApp's window).
    template: Option<String>,
    /// When the record expires once the reply is in it (the company's retention).
    expires_at: Option<u64>,
}

/// What the AI reads for a turn: the recipient's new messages, after what was said since the AI
/// last spoke (while a person had the conversation), which the AI's own conversation
/// (`previous_response_id`) does not hold: so, given back, it carries on knowing what the
/// company's person told the recipient.
pub fn ai_input(record: &ConversationRecord, fragments: &[Fragment]) -> String {
    let new = fragments.iter().map(Fragment::as_input).collect::<Vec<_>>().join("\n");
    let since = record.messages.iter().rposition(|m| m.role == ROLE_ASSISTANT).map_or(0, |i| i + 1);
    let missed: Vec<String> = record.messages[since..]
        .iter()
        .map(|m| match (m.role.as_str(), &m.agent) {
            (ROLE_HUMAN, Some(agent)) => format!("{agent}, a person at the company, wrote to them: {}", m.content),
            (ROLE_HUMAN, None) => format!("A person at the company wrote to them: {}", m.content),
            _ => format!("They wrote: {}", m.content),
        })
        .collect();
    if missed.is_empty() {
        return new;
    }
    format!(
        "[While a person at the company had this conversation, since your last message:]\n{}\n[The recipient now writes:]\n{new}",
        missed.join("\n")
    )
}

impl ReplyProcessor {
    /// Consent, the credentials, and the AI's reply, or (`reengagement`: WhatsApp's window is
    /// shut and the company has an approved template) that template instead, with no AI call.
    pub(super) async fn prepare(
        &self,
        turn: &Turn<'_>,
        company: &CompanyRecord,
        fragments: &[Fragment],
        reengagement: Option<String>,
    ) -> Result<Prepared, StepFailure> {
        let (company_id, recipient) = (&turn.record.company_id, &turn.key.primary_channel);
        let opted_out = self.opt_outs.opted_out(company_id, self.channel, recipient).await;
        if opted_out.map_err(failed_at(ConversationStatus::FailedToProcessReplyAi, "opt-out"))? {
            let failure = Failure::Permanent("the recipient opted out of this company's messages".into());
            return Err(failed_at(ConversationStatus::RecipientOptedOut, "opt-out")(failure));
        }
        let secrets_failed = || failed_at(ConversationStatus::FailedReplySecretsFetch, "secrets");
        let no_config = |what: &str| Failure::Permanent(format!("the company has no {what} for {}", self.channel));
        let credentials_id = company.channel_config.credentials_id(self.channel);
        let credentials_id = credentials_id.ok_or_else(|| secrets_failed()(no_config("channel_config")))?;
        let credentials = self.secrets.twilio(credentials_id).await.map_err(secrets_failed())?;
        let (reply, content) = match &reengagement {
            Some(_) => {
                let name = turn.record.recipient_first_name.clone().unwrap_or_default();
                let variables = serde_json::Map::from_iter([("1".to_string(), serde_json::Value::String(name))]);
                let previous = turn.record.response_id.clone().unwrap_or_default();
                (Reply { variables, response_id: previous, usage: Default::default() }, String::new())
            }
            None => self.ask_ai(turn, company, fragments).await?,
        };
        Ok(Prepared {
            credentials,
            credentials_id: credentials_id.to_string(),
            sender: company.channel_config.sender(self.channel).unwrap_or_default().to_string(),
            reply,
            content,
            template: reengagement,
            expires_at: company.expires_at(multicomms_wire::timestamp::epoch_seconds()),
        })
    }

    /// The AI's continuation of the conversation for `fragments`, and its text.
    async fn ask_ai(
        &self,
        turn: &Turn<'_>,
        company: &CompanyRecord,
        fragments: &[Fragment],
    ) -> Result<(Reply, String), StepFailure> {
        let secrets_failed = || failed_at(ConversationStatus::FailedReplySecretsFetch, "secrets");
        let ai_failed = || failed_at(ConversationStatus::FailedToProcessReplyAi, "ai");
        let no_config = Failure::Permanent(format!("the company has no ai_config for {}", self.channel));
        let ai = company.ai_config.as_ref().and_then(|a| a.openai_config.get(self.channel));
        let ai = ai.ok_or_else(|| ai_failed()(no_config))?;
        let key = self.secrets.ai_key(&ai.api_key_reference).await.map_err(secrets_failed())?;
        let input = ai_input(&turn.record, fragments);
        let previous = turn.record.response_id.as_deref();
        match self.ai.reply(ai, &key, input, previous, &turn.key.conversation_id).await {
            // Never sent cut, nor left for the provider to refuse: a person answers instead.
            Ok((reply, content)) => match company.rate_limits.too_long(self.channel, &content) {
                Some(why) => Err(ai_failed()(Failure::Permanent(why))),
                None => Ok((reply, content)),
            },
            Err(failure) => {
                self.secrets.forget(&ai.api_key_reference);
                Err(ai_failed()(failure))
            }
        }
    }

    /// The provider call under the claim. Surely not sent and worth a retry: the claim is given
    /// back. Maybe sent: handed to a person, never sent again.
    pub(super) async fn send(&self, turn: &Turn<'_>, prepared: &Prepared) -> Result<Sent, Outcome> {
        let (credentials, body) = (&prepared.credentials, &prepared.content);
        let to = Addressed {
            from: &prepared.sender,
            to: &turn.key.primary_channel,
            conversation_id: &turn.key.conversation_id,
        };
        let sent = match (&prepared.template, self.channel) {
            (Some(template), _) => {
                self.senders.whatsapp_template(credentials, to, template, &prepared.reply.variables).await
            }
            (None, ChannelKind::Whatsapp) => self.senders.whatsapp_text(credentials, to, body).await,
            (None, _) => self.senders.sms(credentials, to, body).await,
        };
        let failure = match sent {
            Ok(sent) => return Ok(sent),
            Err(SendError::Unknown(why)) => {
                let reason = format!("send: {why}; the reply may have been delivered, so it is not sent again");
                return Err(self.hand_off(turn, reason, Some(ConversationStatus::SendOutcomeUnknown)).await);
            }
            Err(SendError::NotSent(failure)) => failure,
        };
        self.secrets.forget(&prepared.credentials_id);
        // Surely not sent: retried, unless this is the trigger's last receive (then handed off).
        if let (Failure::Transient(why), false) = (&failure, turn.last_receive) {
            let reason = format!("send: {why}");
            if let Err(e) = self.store.release_reply_claim(&turn.key, &turn.token, &reason).await {
                tracing::warn!(error = %e, "the reply claim was not given back; the next turn hands it off");
            }
            return Err(Outcome::Retry(reason));
        }
        Err(self.stopped(turn, failed_at(ConversationStatus::FailedToSendReply, "send")(failure)).await)
    }

    /// The final update, retried through an AWS outage ([`through_outage`]). If it still fails
    /// the reply is out, so nothing more is retried: the original's CRITICAL alarm instead (the
    /// next turn finds the claim and hands the conversation off).
    pub(super) async fn record_reply(&self, turn: &Turn<'_>, fragments: &[Fragment], sent: Sent, prepared: &Prepared) {
        let mut messages: Vec<Message> = fragments.iter().map(Fragment::to_message).collect();
        let usage = &prepared.reply.usage;
        messages.push(Message {
            message_id: sent.message_id.clone(),
            timestamp: now(),
            role: ROLE_ASSISTANT.into(),
            content: sent.content,
            prompt_tokens: usage.input_tokens,
            completion_tokens: usage.output_tokens,
            total_tokens: usage.total_tokens,
            media: vec![],
            ..Default::default()
        });
        let response_id = &prepared.reply.response_id;
        // Conditioned on this turn's claim, so a repeat appends nothing.
        let update = || self.store.reply_sent(&turn.key, &turn.token, &messages, response_id, prepared.expires_at);
        let recorded = through_outage(turn.started, self.send_grace, "the record update after a reply", update).await;
        if let Err(error) = recorded {
            let unrecorded = Unrecorded {
                what: "Reply",
                message_id: &sent.message_id,
                conversation_id: &turn.key.conversation_id,
                status: ConversationStatus::ReplySent,
                response_id,
                processing_time_ms: None,
            };
            sent_but_not_recorded(&self.metrics, &unrecorded, &error);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replies::turn::tests::at;
    use multicomms_wire::conversation::ROLE_USER;

    #[test]
    fn the_ai_given_a_conversation_back_reads_what_the_person_said_before_the_new_message() {
        let mut record = crate::replies::route::tests::conversation("2026-12-07T10:00:00Z", 0);
        let message = |role: &str, content: &str, agent: Option<&str>| Message {
            role: role.into(),
            content: content.into(),
            agent: agent.map(Into::into),
            ..Default::default()
        };
        record.messages.push(message(ROLE_ASSISTANT, "Hi Lee, can you clarify your CV?", None));
        let mut fragment = at(1);
        fragment.body = "Thanks, back to you".into();
        assert_eq!(ai_input(&record, &[fragment.clone()]), "Thanks, back to you", "nothing missed: the new message");

        record.messages.push(message(ROLE_USER, "Can I talk to someone?", None));
        record.messages.push(message(
            ROLE_HUMAN,
            "Hi Lee, Carol here: the interview is on Monday at 10.",
            Some("carol"),
        ));
        let input = ai_input(&record, &[fragment]);
        assert!(input.contains("They wrote: Can I talk to someone?"), "{input}");
        assert!(
            input.contains(
                "carol, a person at the company, wrote to them: Hi Lee, Carol here: the interview is on Monday at 10."
            ),
            "{input}"
        );
        assert!(input.ends_with("[The recipient now writes:]\nThanks, back to you"), "{input}");
    }
}
