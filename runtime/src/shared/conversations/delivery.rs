//! What the provider's status callbacks say about a message we sent, on that message's entry.
//! Neither write touches the record's status or `updated_at` (a send claim's age).
use super::{ConversationStore, Written};
use crate::shared::failure::Failure;
use aws_sdk_dynamodb::types::AttributeValue;
use multicomms_wire::conversation::{attribute, delivery_attribute, ConversationKey};
use multicomms_wire::delivery::DeliveryStatus;
use multicomms_wire::timestamp::now;

/// One status callback, for the message at `index` of the record's `messages`.
pub struct DeliveryUpdate<'a> {
    pub index: usize,
    pub message_id: &'a str,
    pub status: DeliveryStatus,
    pub error_code: Option<&'a str>,
}

impl ConversationStore {
    /// Records the status on its message, unless the entry already has one as far along
    /// ([`DeliveryStatus::advances`]): callbacks arrive out of order and repeated, and a status
    /// never moves backwards. `Superseded`: nothing to change (or the entry is not that message).
    pub async fn delivery_status(
        &self,
        key: &ConversationKey,
        update: &DeliveryUpdate<'_>,
    ) -> Result<Written, Failure> {
        let entry = format!("#messages[{}]", update.index);
        let not_behind = update.status.not_behind();
        let placeholders: Vec<String> = (0..not_behind.len()).map(|i| format!(":s{i}")).collect();
        let mut set = format!("{entry}.#ds = :status, {entry}.#dat = :now");
        if update.error_code.is_some() {
            set.push_str(&format!(", {entry}.#dec = :code"));
        }
        let condition = format!(
            "{entry}.#id = :id AND (attribute_not_exists({entry}.#ds) OR NOT {entry}.#ds IN ({}))",
            placeholders.join(", ")
        );
        let mut write = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key.to_item()))
            .update_expression(format!("SET {set}"))
            .condition_expression(condition)
            .expression_attribute_names("#messages", attribute::MESSAGES)
            .expression_attribute_names("#id", delivery_attribute::MESSAGE_ID)
            .expression_attribute_names("#ds", delivery_attribute::STATUS)
            .expression_attribute_names("#dat", delivery_attribute::UPDATED_AT)
            .expression_attribute_values(":id", AttributeValue::S(update.message_id.into()))
            .expression_attribute_values(":status", AttributeValue::S(update.status.as_str().into()))
            .expression_attribute_values(":now", AttributeValue::S(now()));
        for (placeholder, status) in placeholders.iter().zip(not_behind) {
            write = write.expression_attribute_values(placeholder, AttributeValue::S(status.as_str().into()));
        }
        if let Some(code) = update.error_code {
            write = write
                .expression_attribute_names("#dec", delivery_attribute::ERROR_CODE)
                .expression_attribute_values(":code", AttributeValue::S(code.into()));
        }
        self.conditional(write).await
    }

    /// Hands the conversation to a person for a message that did not arrive (the company asks
    /// for it); once: a conversation already handed off keeps its first reason.
    pub async fn hand_off_undelivered(&self, key: &ConversationKey, reason: &str) -> Result<Written, Failure> {
        let write = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key.to_item()))
            .update_expression("SET #handoff = :yes, #handoff_reason = :reason")
            .condition_expression("attribute_exists(#handoff) AND #handoff = :no")
            .expression_attribute_names("#handoff", attribute::HAND_OFF)
            .expression_attribute_names("#handoff_reason", attribute::HAND_OFF_REASON)
            .expression_attribute_values(":yes", AttributeValue::Bool(true))
            .expression_attribute_values(":no", AttributeValue::Bool(false))
            .expression_attribute_values(":reason", AttributeValue::S(reason.into()));
        self.conditional(write).await
    }
}
