//! What the company's people do to a conversation (the conversations API, the inbox): read a
//! project's conversations, take one over, give it back to the AI, close it, and answer under
//! the same lease and never-twice claim as a reply turn. Every write is conditioned on the state
//! its decision was made on, and none while a reply turn holds the lease: an agent never races
//! the AI's send.
use super::replies::storable;
use super::{query_all, status, ConversationStore, Written};
use crate::shared::failure::Failure;
use aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder;
use aws_sdk_dynamodb::types::AttributeValue;
use multicomms_wire::conversation::{
    attribute, ConversationKey, ConversationRecord, ConversationStatus, Message, CONVERSATION_ID,
};
use multicomms_wire::timestamp::epoch_ms;

/// The condition every agent action shares: the record exists and no reply turn holds its lease.
const UNLEASED: &str = "attribute_exists(#id) AND (attribute_not_exists(#lease_until) OR #lease_until < :now_ms)";

impl ConversationStore {
    /// Every conversation of the company's project (the company index; pointers carry none of
    /// its keys). Reads all of them: a project's conversations are bounded by its retention.
    pub async fn project_conversations(
        &self,
        company_id: &str,
        project_id: &str,
    ) -> Result<Vec<ConversationRecord>, Failure> {
        let items = query_all(self.project_query(company_id, project_id)).await?;
        items
            .into_iter()
            .map(|item| {
                ConversationRecord::from_item(item)
                    .map_err(|e| Failure::Permanent(format!("a conversation record does not read: {e}")))
            })
            .collect()
    }

    /// `agent` takes the conversation over: the AI stops answering it (`hand_off_to_human`).
    pub async fn agent_takes_over(&self, key: &ConversationKey, agent: &str) -> Result<Written, Failure> {
        let update = self
            .agent_update(key)
            .update_expression("SET #taken = :agent, #handoff = :true, #handoff_reason = :reason, #updated = :now")
            .condition_expression(format!("{UNLEASED} AND attribute_not_exists(#closed) AND #status <> :opted_out"))
            .expression_attribute_names("#taken", attribute::TAKEN_OVER_BY)
            .expression_attribute_names("#handoff", attribute::HAND_OFF)
            .expression_attribute_names("#handoff_reason", attribute::HAND_OFF_REASON)
            .expression_attribute_values(":agent", AttributeValue::S(agent.into()))
            .expression_attribute_values(":true", AttributeValue::Bool(true))
            .expression_attribute_values(":reason", AttributeValue::S(format!("taken over by {agent}")))
            .expression_attribute_values(":opted_out", status(ConversationStatus::RecipientOptedOut));
        self.conditional(update).await
    }

    /// `agent` gives the conversation back to the AI, from `from` (the status the decision read)
    /// to `to`: its next inbound message is answered by the AI.
    pub async fn give_back(
        &self,
        key: &ConversationKey,
        agent: &str,
        (from, to): (ConversationStatus, ConversationStatus),
    ) -> Result<Written, Failure> {
        let update = self
            .agent_update(key)
            .update_expression(
                "SET #handoff = :false, #status = :to, #updated = :now, #given_back = :agent \
                 REMOVE #taken, #handoff_reason, #failure",
            )
            .expression_attribute_names("#given_back", attribute::GIVEN_BACK_BY)
            .expression_attribute_values(":agent", AttributeValue::S(agent.into()))
            .condition_expression(format!("{UNLEASED} AND attribute_not_exists(#closed) AND #status = :from"))
            .expression_attribute_names("#taken", attribute::TAKEN_OVER_BY)
            .expression_attribute_names("#handoff", attribute::HAND_OFF)
            .expression_attribute_names("#handoff_reason", attribute::HAND_OFF_REASON)
            .expression_attribute_names("#failure", attribute::FAILURE_REASON)
            .expression_attribute_values(":false", AttributeValue::Bool(false))
            .expression_attribute_values(":from", status(from))
            .expression_attribute_values(":to", status(to));
        self.conditional(update).await
    }

    /// `agent` closes the conversation: it no longer counts as open, and an answer to it goes to
    /// a person (`task_complete` stays 0, so the answer still finds it).
    pub async fn close(&self, key: &ConversationKey, agent: &str) -> Result<Written, Failure> {
        let update = self
            .agent_update(key)
            .update_expression("SET #closed = :now, #closed_by = :agent, #updated = :now")
            .condition_expression(format!("{UNLEASED} AND attribute_not_exists(#closed) AND attribute_exists(#status)"))
            .expression_attribute_names("#closed_by", attribute::CLOSED_BY)
            .expression_attribute_values(":agent", AttributeValue::S(agent.into()));
        self.conditional(update).await
    }

    /// A person's send claim, under the lease the request took: → `sending_reply` with its
    /// token, from any status but a send in flight.
    pub async fn claim_person_reply(&self, key: &ConversationKey, token: &str) -> Result<Written, Failure> {
        let update = self
            .update(key)
            .update_expression("SET #status = :sending_reply, #updated = :now, #claim = :token")
            .condition_expression("#lease = :token AND #status <> :sending AND #status <> :sending_reply")
            .expression_attribute_names("#lease", attribute::REPLY_LEASE_ID)
            .expression_attribute_names("#claim", attribute::CLAIM_ID)
            .expression_attribute_values(":token", AttributeValue::S(token.into()))
            .expression_attribute_values(":sending", status(ConversationStatus::Sending))
            .expression_attribute_values(":sending_reply", status(ConversationStatus::SendingReply));
        self.conditional(update).await
    }

    /// The person's message sent: appended with their name, `reply_sent`, the conversation
    /// theirs (taken over), claim and lease gone. Only from this request's claim; a refused
    /// write whose record holds the message was an SDK retry of one that landed.
    pub async fn person_reply_sent(
        &self,
        key: &ConversationKey,
        token: &str,
        message: &Message,
        expires_at: Option<u64>,
    ) -> Result<(), Failure> {
        let agent = message.agent.clone().unwrap_or_default();
        let expiry = if expires_at.is_some() { ", #expires = :expires" } else { "" };
        let mut update = self
            .update(key)
            .update_expression(format!(
                "SET #status = :reply_sent, #updated = :now, #taken = :agent, #handoff = :true, \
                 #handoff_reason = :reason, #messages = list_append(if_not_exists(#messages, :empty), :messages){expiry} \
                 REMOVE #claim, #lease, #lease_until, #failure"
            ))
            .condition_expression("#status = :sending_reply AND #claim = :token")
            .expression_attribute_names("#claim", attribute::CLAIM_ID)
            .expression_attribute_names("#lease", attribute::REPLY_LEASE_ID)
            .expression_attribute_names("#lease_until", attribute::REPLY_LEASE_EXPIRES_AT)
            .expression_attribute_names("#failure", attribute::FAILURE_REASON)
            .expression_attribute_names("#taken", attribute::TAKEN_OVER_BY)
            .expression_attribute_names("#handoff", attribute::HAND_OFF)
            .expression_attribute_names("#handoff_reason", attribute::HAND_OFF_REASON)
            .expression_attribute_names("#messages", attribute::MESSAGES)
            .expression_attribute_values(":token", AttributeValue::S(token.into()))
            .expression_attribute_values(":reply_sent", status(ConversationStatus::ReplySent))
            .expression_attribute_values(":sending_reply", status(ConversationStatus::SendingReply))
            .expression_attribute_values(":agent", AttributeValue::S(agent.clone()))
            .expression_attribute_values(":true", AttributeValue::Bool(true))
            .expression_attribute_values(":reason", AttributeValue::S(format!("taken over by {agent}")))
            .expression_attribute_values(":empty", AttributeValue::L(vec![]))
            .expression_attribute_values(":messages", AttributeValue::L(storable(std::slice::from_ref(message))?));
        if let Some(at) = expires_at {
            update = update
                .expression_attribute_names("#expires", multicomms_wire::conversation::EXPIRES_AT)
                .expression_attribute_values(":expires", AttributeValue::N(at.to_string()));
        }
        match self.conditional(update).await? {
            Written::Applied => Ok(()),
            Written::Superseded => match self.record(key).await? {
                Some(r) if r.messages.iter().any(|m| m.message_id == message.message_id) => Ok(()),
                _ => Err(Failure::Permanent("the record moved on while the person's message was sent".into())),
            },
        }
    }

    /// A recipient's message handed to a person (`reason`), appended to the record as it came;
    /// the conversation is a person's from then on (`hand_off_to_human`) until one gives it back.
    pub async fn add_handed_off(
        &self,
        key: &ConversationKey,
        message: &Message,
        reason: &str,
    ) -> Result<Written, Failure> {
        let update = self
            .update(key)
            .update_expression(
                "SET #updated = :now, #messages = list_append(if_not_exists(#messages, :empty), :messages), \
                 #handoff = :true, #handoff_reason = if_not_exists(#handoff_reason, :reason)",
            )
            .condition_expression("attribute_exists(#status)")
            .expression_attribute_names("#messages", attribute::MESSAGES)
            .expression_attribute_names("#handoff", attribute::HAND_OFF)
            .expression_attribute_names("#handoff_reason", attribute::HAND_OFF_REASON)
            .expression_attribute_values(":empty", AttributeValue::L(vec![]))
            .expression_attribute_values(":messages", AttributeValue::L(storable(std::slice::from_ref(message))?))
            .expression_attribute_values(":true", AttributeValue::Bool(true))
            .expression_attribute_values(":reason", AttributeValue::S(reason.into()));
        self.conditional(update).await
    }

    /// [`ConversationStore::update`] plus [`UNLEASED`]'s names and values, and `#closed`.
    fn agent_update(&self, key: &ConversationKey) -> UpdateItemFluentBuilder {
        self.update(key)
            .expression_attribute_names("#id", CONVERSATION_ID)
            .expression_attribute_names("#lease_until", attribute::REPLY_LEASE_EXPIRES_AT)
            .expression_attribute_names("#closed", attribute::CLOSED_AT)
            .expression_attribute_values(":now_ms", AttributeValue::N(epoch_ms().to_string()))
    }
}
