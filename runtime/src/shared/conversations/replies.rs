//! The conversation record as the replies flow uses it: found by the company's and the
//! recipient's numbers (the channel's index), the reply turn's lease, and the reply's send claim
//! and final update. The claim is the first message's protocol ([`crate::shared::claim`]):
//! the status is the lock, every update is conditioned on the state it moves from.
use super::{aws_failure, query_all, status, ConversationStore, Written};
use crate::shared::claim::{claim_is_ours, RecordState};
use crate::shared::failure::Failure;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue, ReturnValuesOnConditionCheckFailure};
use multicomms_wire::conversation::{
    attribute, ConversationKey, ConversationRecord, ConversationStatus, Message, CONVERSATION_ID, EXPIRES_AT,
    GLOBAL_INDEXES,
};
use multicomms_wire::timestamp::epoch_ms;
use multicomms_wire::ChannelKind;
use std::time::Duration;

/// What taking the lease found.
#[derive(Debug, Clone, PartialEq)]
pub enum Leased {
    /// Taken: the record as the lease left it.
    Ours(Box<ConversationRecord>),
    /// Another turn holds an unexpired lease, for this much longer.
    Held(Duration),
    NoConversation,
}

impl RecordState {
    pub fn of(record: &ConversationRecord) -> Self {
        RecordState {
            status: record.conversation_status,
            updated_at: record.updated_at.clone(),
            claim_id: record.claim_id.clone(),
        }
    }
}

impl ConversationStore {
    /// The conversations of `recipient` with the company number `company` on `channel` (the
    /// channel's company-number + recipient index; every page).
    pub async fn by_numbers(
        &self,
        channel: ChannelKind,
        company: &str,
        recipient: &str,
    ) -> Result<Vec<ConversationRecord>, Failure> {
        let index = match channel {
            ChannelKind::Whatsapp => &GLOBAL_INDEXES[1],
            ChannelKind::Sms => &GLOBAL_INDEXES[2],
            ChannelKind::Email => &GLOBAL_INDEXES[3],
        };
        let query = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(index.name)
            .key_condition_expression("#company = :company AND #recipient = :recipient")
            .expression_attribute_names("#company", index.partition_key)
            .expression_attribute_names("#recipient", index.sort_key)
            .expression_attribute_values(":company", AttributeValue::S(company.into()))
            .expression_attribute_values(":recipient", AttributeValue::S(recipient.into()));
        let pages = query_all(query).await?;
        // One record another tool wrote (or a person edited) must not hide the others.
        let read = pages.len();
        let records: Vec<ConversationRecord> = pages
            .into_iter()
            .filter_map(|item| {
                ConversationRecord::from_item(item)
                    .map_err(|e| tracing::warn!(error = %e, "a conversation record does not read; skipped"))
                    .ok()
            })
            .collect();
        if records.is_empty() && read > 0 {
            return Err(Failure::Permanent("no conversation record with these numbers reads".into()));
        }
        Ok(records)
    }

    /// The whole record, read consistently.
    pub async fn record(&self, key: &ConversationKey) -> Result<Option<ConversationRecord>, Failure> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key.to_item()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| aws_failure("GetItem", &e))?;
        out.item
            .map(|item| {
                ConversationRecord::from_item(item)
                    .map_err(|e| Failure::Permanent(format!("the conversation record does not read: {e}")))
            })
            .transpose()
    }

    /// The reply turn's lease: taken when absent or expired, never creating a record. The update
    /// returns the record as it left it (and a refusal the record as it found it), so taking the
    /// lease is also the turn's read of the record.
    pub async fn lease(&self, key: &ConversationKey, token: &str, duration: Duration) -> Result<Leased, Failure> {
        let now = epoch_ms();
        let update = self
            .lease_update(key, token, now + duration.as_millis() as u64)
            .condition_expression(
                "attribute_exists(#id) AND (attribute_not_exists(#lease_until) OR #lease_until < :now_ms)",
            )
            .expression_attribute_names("#id", CONVERSATION_ID)
            .expression_attribute_values(":now_ms", AttributeValue::N(now.to_string()))
            .return_values(ReturnValue::AllNew)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        let found = match update.send().await {
            Ok(out) => out.attributes,
            Err(e) => match e.as_service_error() {
                Some(UpdateItemError::ConditionalCheckFailedException(refused)) => match &refused.item {
                    None => return Ok(Leased::NoConversation),
                    Some(item) => {
                        let record = leased_record(item.clone())?;
                        // An SDK retry of a lease that landed finds it ours.
                        if record.reply_lease_id.as_deref() != Some(token) {
                            let until = record.reply_lease_expires_at.unwrap_or(now);
                            return Ok(Leased::Held(Duration::from_millis(until.saturating_sub(epoch_ms()))));
                        }
                        Some(item.clone())
                    }
                },
                _ => return Err(aws_failure("UpdateItem", &e)),
            },
        };
        match found {
            Some(item) => Ok(Leased::Ours(Box::new(leased_record(item)?))),
            None => Err(Failure::Transient("the lease update returned no record".into())),
        }
    }

    /// Extends a lease this turn holds; `Superseded` when it was lost (it expired and another
    /// turn took it: this turn's claim then fails, so nothing is sent twice).
    pub async fn renew_lease(
        &self,
        key: &ConversationKey,
        token: &str,
        duration: Duration,
    ) -> Result<Written, Failure> {
        let update = self
            .lease_update(key, token, epoch_ms() + duration.as_millis() as u64)
            .condition_expression("#lease = :token");
        self.conditional(update).await
    }

    /// Gives the lease back (noting `reason` when the turn failed transiently).
    pub async fn release_lease(&self, key: &ConversationKey, token: &str, reason: Option<&str>) -> Result<(), Failure> {
        let update = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key.to_item()))
            .condition_expression("#lease = :token")
            .expression_attribute_names("#lease", attribute::REPLY_LEASE_ID)
            .expression_attribute_names("#lease_until", attribute::REPLY_LEASE_EXPIRES_AT)
            .expression_attribute_values(":token", AttributeValue::S(token.into()));
        let update = match reason {
            Some(reason) => update
                .update_expression("SET #failure = :reason REMOVE #lease, #lease_until")
                .expression_attribute_names("#failure", attribute::FAILURE_REASON)
                .expression_attribute_values(":reason", AttributeValue::S(reason.into())),
            None => update.update_expression("REMOVE #lease, #lease_until"),
        };
        self.conditional(update).await.map(|_| ())
    }

    /// The reply's send claim, under the lease: → `sending_reply` with the turn's token. True
    /// when the claim is this turn's.
    pub async fn claim_reply(&self, key: &ConversationKey, token: &str) -> Result<bool, Failure> {
        let update = self
            .update(key)
            .update_expression("SET #status = :sending_reply, #updated = :now, #claim = :token")
            .condition_expression("#lease = :token AND #status IN (:initial_sent, :reply_sent, :retry)")
            .expression_attribute_names("#lease", attribute::REPLY_LEASE_ID)
            .expression_attribute_names("#claim", attribute::CLAIM_ID)
            .expression_attribute_values(":token", AttributeValue::S(token.into()))
            .expression_attribute_values(":sending_reply", status(ConversationStatus::SendingReply))
            .expression_attribute_values(":initial_sent", status(ConversationStatus::InitialMessageSent))
            .expression_attribute_values(":reply_sent", status(ConversationStatus::ReplySent))
            .expression_attribute_values(":retry", status(ConversationStatus::Retry));
        // A refusal returns the record it found: an SDK retry of a claim that landed finds its own.
        match self.update_or_found(update).await? {
            None => Ok(true),
            Some(found) => Ok(claim_is_ours(found.as_ref(), token, ConversationStatus::SendingReply)),
        }
    }

    /// Gives a reply's claim and lease back after a send that surely did not happen
    /// (`sending_reply` → `retry`).
    pub async fn release_reply_claim(&self, key: &ConversationKey, token: &str, reason: &str) -> Result<(), Failure> {
        let update = self
            .turn_update(key, token)
            .update_expression(
                "SET #status = :retry, #updated = :now, #failure = :reason REMOVE #claim, #lease, #lease_until",
            )
            .condition_expression("#status = :sending_reply AND #claim = :token")
            .expression_attribute_names("#failure", attribute::FAILURE_REASON)
            .expression_attribute_values(":reason", AttributeValue::S(reason.into()))
            .expression_attribute_values(":retry", status(ConversationStatus::Retry))
            .expression_attribute_values(":sending_reply", status(ConversationStatus::SendingReply));
        self.conditional(update).await.map(|_| ())
    }

    /// The reply's final update (replies-engine §3.2 step 12): the recipient's messages and the
    /// reply appended in order, the new response id, status `reply_sent`, claim and lease gone.
    /// Only from this turn's claim, so an SDK retry of a write that landed appends nothing twice.
    pub async fn reply_sent(
        &self,
        key: &ConversationKey,
        token: &str,
        messages: &[Message],
        response_id: &str,
        expires_at: Option<u64>,
    ) -> Result<(), Failure> {
        // The reply's provider id: a refused write whose record holds it was an SDK retry of
        // one that landed.
        let reply_id = messages.last().map(|m| m.message_id.clone()).unwrap_or_default();
        let messages = storable(messages)?;
        // The company's retention runs from the last activity.
        let expiry = if expires_at.is_some() { ", #expires = :expires" } else { "" };
        let mut update = self
            .turn_update(key, token)
            .update_expression(format!(
                "SET #status = :reply_sent, #updated = :now, \
                 #messages = list_append(if_not_exists(#messages, :empty), :messages), #response = :response{expiry} \
                 REMOVE #claim, #lease, #lease_until, #failure"
            ))
            .condition_expression("#status IN (:sending_reply, :unknown) AND #claim = :token")
            .expression_attribute_names("#messages", attribute::MESSAGES)
            .expression_attribute_names("#response", attribute::RESPONSE_ID)
            .expression_attribute_names("#failure", attribute::FAILURE_REASON)
            .expression_attribute_values(":reply_sent", status(ConversationStatus::ReplySent))
            .expression_attribute_values(":sending_reply", status(ConversationStatus::SendingReply))
            .expression_attribute_values(":unknown", status(ConversationStatus::SendOutcomeUnknown))
            .expression_attribute_values(":empty", AttributeValue::L(vec![]))
            .expression_attribute_values(":messages", AttributeValue::L(messages))
            .expression_attribute_values(":response", AttributeValue::S(response_id.into()));
        if let Some(at) = expires_at {
            update = update
                .expression_attribute_names("#expires", EXPIRES_AT)
                .expression_attribute_values(":expires", AttributeValue::N(at.to_string()));
        }
        let found = match self.update_or_item(update).await? {
            None => return Ok(()),
            Some(found) => found.map(ConversationRecord::from_item).transpose(),
        };
        match found.map_err(|e| Failure::Permanent(format!("the conversation record does not read: {e}")))? {
            Some(r) if r.messages.iter().any(|m| m.message_id == reply_id) => Ok(()),
            other => Err(Failure::Permanent(format!(
                "the record moved on meanwhile: {:?}",
                other.map(|r| r.conversation_status)
            ))),
        }
    }

    /// A reply turn that ends without the AI: the recipient's `messages` appended (a person
    /// reads them in the inbox), and with `outcome` its status and `hand_off_to_human` with the
    /// reason, the lease (and any claim) released. Only while this turn holds the lease.
    pub async fn handed_off(
        &self,
        key: &ConversationKey,
        token: &str,
        messages: &[Message],
        outcome: Option<(ConversationStatus, &str)>,
    ) -> Result<Written, Failure> {
        let messages = storable(messages)?;
        let mut update = self
            .turn_update(key, token)
            .condition_expression("#lease = :token")
            .expression_attribute_names("#messages", attribute::MESSAGES)
            .expression_attribute_values(":empty", AttributeValue::L(vec![]))
            .expression_attribute_values(":messages", AttributeValue::L(messages));
        let append = "#updated = :now, #messages = list_append(if_not_exists(#messages, :empty), :messages)";
        update = match outcome {
            None => update.update_expression(format!("SET {append}")),
            Some((to, reason)) => update
                .update_expression(format!(
                    "SET {append}, #status = :to, #failure = :reason, #handoff = :true, #handoff_reason = :reason \
                     REMOVE #claim, #lease, #lease_until"
                ))
                .expression_attribute_names("#failure", attribute::FAILURE_REASON)
                .expression_attribute_names("#handoff", attribute::HAND_OFF)
                .expression_attribute_names("#handoff_reason", attribute::HAND_OFF_REASON)
                .expression_attribute_values(":to", status(to))
                .expression_attribute_values(":reason", AttributeValue::S(reason.into()))
                .expression_attribute_values(":true", AttributeValue::Bool(true)),
        };
        self.conditional(update).await
    }

    /// [`ConversationStore::update`] plus what ending a turn's claim and lease uses: `#claim`,
    /// `#lease`, `#lease_until` and the turn's `:token`.
    /// Ends the conversation because its recipient opted out: `recipient_opted_out`, complete.
    /// Not while a send is claimed (`sending`, `sending_reply`): that send's own update must
    /// still find its claim; the opt-out stops every send after it.
    pub async fn opted_out(&self, key: &ConversationKey, keyword: &str) -> Result<Written, Failure> {
        let update = self
            .update(key)
            .update_expression("SET #status = :to, #updated = :now, #complete = :one, #failure = :reason")
            .condition_expression("attribute_exists(#status) AND #status <> :sending AND #status <> :sending_reply")
            .expression_attribute_names("#complete", attribute::TASK_COMPLETE)
            .expression_attribute_names("#failure", attribute::FAILURE_REASON)
            .expression_attribute_values(":to", status(ConversationStatus::RecipientOptedOut))
            .expression_attribute_values(":one", AttributeValue::N("1".into()))
            .expression_attribute_values(":reason", AttributeValue::S(format!("the recipient answered {keyword}")))
            .expression_attribute_values(":sending", status(ConversationStatus::Sending))
            .expression_attribute_values(":sending_reply", status(ConversationStatus::SendingReply));
        self.conditional(update).await
    }

    fn turn_update(
        &self,
        key: &ConversationKey,
        token: &str,
    ) -> aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder {
        self.update(key)
            .expression_attribute_names("#claim", attribute::CLAIM_ID)
            .expression_attribute_names("#lease", attribute::REPLY_LEASE_ID)
            .expression_attribute_names("#lease_until", attribute::REPLY_LEASE_EXPIRES_AT)
            .expression_attribute_values(":token", AttributeValue::S(token.into()))
    }

    fn lease_update(
        &self,
        key: &ConversationKey,
        token: &str,
        until_ms: u64,
    ) -> aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder {
        self.client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key.to_item()))
            .update_expression("SET #lease = :token, #lease_until = :until")
            .expression_attribute_names("#lease", attribute::REPLY_LEASE_ID)
            .expression_attribute_names("#lease_until", attribute::REPLY_LEASE_EXPIRES_AT)
            .expression_attribute_values(":token", AttributeValue::S(token.into()))
            .expression_attribute_values(":until", AttributeValue::N(until_ms.to_string()))
    }
}

fn leased_record(item: multicomms_wire::Item) -> Result<ConversationRecord, Failure> {
    ConversationRecord::from_item(item)
        .map_err(|e| Failure::Permanent(format!("the conversation record does not read: {e}")))
}

/// `messages` as a DynamoDB list's entries.
pub(crate) fn storable(messages: &[Message]) -> Result<Vec<AttributeValue>, Failure> {
    messages
        .iter()
        .map(serde_dynamo::to_attribute_value)
        .collect::<Result<Vec<AttributeValue>, _>>()
        .map_err(|e| Failure::Permanent(format!("message not storable: {e}")))
}
