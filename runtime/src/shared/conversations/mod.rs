//! The conversations table: the conditional create that makes processing idempotent, the send
//! claim, and the outcome updates. Every update is conditioned on the status it moves from, so
//! none can leave a stub item behind (the original's failure update could) or overwrite what a
//! concurrent attempt for the same conversation already finished. A failed condition comes back
//! as [`Written::Superseded`]; what it means is [`crate::shared::claim`]'s business.
mod agents;
mod delivery;
mod erasure;
mod open;
mod replies;

pub use delivery::DeliveryUpdate;
pub use erasure::{to_erase, ToErase};
pub use replies::Leased;

use crate::shared::claim::{claim_is_ours, RecordState};
use crate::shared::failure::Failure;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder;
use aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValuesOnConditionCheckFailure};
use multicomms_wire::conversation::{
    attribute, ActivePointer, ConversationKey, ConversationRecord, ConversationStatus, Message, CONVERSATION_ID,
};
use multicomms_wire::Item;

pub struct ConversationStore {
    pub(crate) client: aws_sdk_dynamodb::Client,
    pub(crate) table: String,
}

pub enum Created {
    New,
    /// A record with this key exists (a duplicate or a redelivery): where it stands, and when it
    /// was created.
    Exists(RecordState, String),
}

/// A conditional update's result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    Applied,
    /// The record was no longer in the state the update required (another attempt moved it on).
    Superseded,
}

pub(crate) fn status(value: ConversationStatus) -> AttributeValue {
    AttributeValue::S(value.as_str().into())
}

impl ConversationStore {
    pub fn new(client: aws_sdk_dynamodb::Client, table: String) -> Self {
        ConversationStore { client, table }
    }

    /// PutItem if absent; on a condition failure, the existing record's state (which the failed
    /// put returns, so a duplicate costs no extra read).
    pub async fn create(&self, record: &ConversationRecord) -> Result<Created, Failure> {
        let item = record.to_item().map_err(|e| Failure::Permanent(format!("record not storable: {e}")))?;
        match put_if_absent(&self.client, &self.table, item).await? {
            Put::Written => Ok(Created::New),
            Put::Existed(item) => {
                let created_at = match item.get(attribute::CREATED_AT) {
                    Some(AttributeValue::S(created_at)) => created_at.clone(),
                    _ => String::new(),
                };
                Ok(Created::Exists(record_state(&item), created_at))
            }
        }
    }

    /// Points the recipient's answers at `pointer`'s conversation ([`ActivePointer`]), unless a
    /// conversation created later holds the pointer already (then nothing changes).
    pub async fn point(&self, pointer: &ActivePointer) -> Result<(), Failure> {
        let item = serde_dynamo::to_item(pointer).map_err(|e| Failure::Permanent(format!("pointer: {e}")))?;
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(#id) OR #started <= :started")
            .expression_attribute_names("#id", CONVERSATION_ID)
            .expression_attribute_names("#started", ActivePointer::STARTED_AT)
            .expression_attribute_values(":started", AttributeValue::S(pointer.started_at.clone()))
            .send()
            .await;
        match put {
            Ok(_) => Ok(()),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_conditional_check_failed_exception()) => Ok(()),
            Err(e) => Err(aws_failure("PutItem", &e)),
        }
    }

    /// Takes over a `processing` record whose worker gave up or stopped (`previous`, as read):
    /// it becomes this attempt's. False when another attempt took it over first.
    pub async fn take_over(&self, key: &ConversationKey, token: &str, previous: Option<&str>) -> Result<bool, Failure> {
        let update = self.claim_update(key, token).update_expression("SET #updated = :now, #claim = :token");
        let update = match previous {
            Some(previous) => update
                .condition_expression("#status = :processing AND #claim = :previous")
                .expression_attribute_values(":previous", AttributeValue::S(previous.into())),
            None => update.condition_expression("#status = :processing AND attribute_not_exists(#claim)"),
        };
        Ok(self.conditional(update).await? == Written::Applied)
    }

    /// The send claim: this attempt's `processing` → `sending`. True when the claim is this
    /// attempt's (also when an SDK retry finds its own earlier, unanswered write).
    pub async fn claim(&self, key: &ConversationKey, token: &str) -> Result<bool, Failure> {
        let update = self
            .claim_update(key, token)
            .update_expression("SET #status = :sending, #updated = :now")
            .condition_expression("#status = :processing AND #claim = :token")
            .expression_attribute_values(":sending", status(ConversationStatus::Sending));
        match self.update_or_found(update).await? {
            None => Ok(true),
            Some(found) => Ok(claim_is_ours(found.as_ref(), token, ConversationStatus::Sending)),
        }
    }

    /// Gives a claim back (`sending` → `processing`) after a send that surely did not happen.
    /// Already released (an SDK retry) or taken over: either way not ours to give back.
    pub async fn release(&self, key: &ConversationKey, token: &str) -> Result<(), Failure> {
        let update = self
            .claim_update(key, token)
            .update_expression("SET #status = :processing, #updated = :now REMOVE #claim")
            .condition_expression("#status = :sending AND #claim = :token")
            .expression_attribute_values(":sending", status(ConversationStatus::Sending));
        self.conditional(update).await.map(|_| ())
    }

    /// The success update (spec §5.5): status, the assistant message appended, the response id
    /// and the processing time; a hand-off set meanwhile (the send took longer than the grace
    /// period) is cleared. Only from `sending` or `send_outcome_unknown`, so an SDK retry of a
    /// write that landed does not append the message twice.
    pub async fn sent(
        &self,
        key: &ConversationKey,
        message: &Message,
        response_id: &str,
        took_ms: u64,
    ) -> Result<(), Failure> {
        let message = serde_dynamo::to_attribute_value(message)
            .map_err(|e| Failure::Permanent(format!("message not storable: {e}")))?;
        let update = self
            .update(key)
            .update_expression(
                "SET #status = :sent, #updated = :now, #messages = list_append(if_not_exists(#messages, :empty), :message), \
                 #response = :response, #took = :took, #handoff = :false, #handoff_reason = :null REMOVE #failure",
            )
            .condition_expression("#status IN (:sending, :unknown)")
            .expression_attribute_names("#messages", attribute::MESSAGES)
            .expression_attribute_names("#response", attribute::RESPONSE_ID)
            .expression_attribute_names("#took", attribute::PROCESSING_TIME_MS)
            .expression_attribute_names("#failure", attribute::FAILURE_REASON)
            .expression_attribute_names("#handoff", attribute::HAND_OFF)
            .expression_attribute_names("#handoff_reason", attribute::HAND_OFF_REASON)
            .expression_attribute_values(":sent", status(ConversationStatus::InitialMessageSent))
            .expression_attribute_values(":sending", status(ConversationStatus::Sending))
            .expression_attribute_values(":unknown", status(ConversationStatus::SendOutcomeUnknown))
            .expression_attribute_values(":empty", AttributeValue::L(vec![]))
            .expression_attribute_values(":message", AttributeValue::L(vec![message]))
            .expression_attribute_values(":response", AttributeValue::S(response_id.into()))
            .expression_attribute_values(":took", AttributeValue::N(took_ms.to_string()))
            .expression_attribute_values(":false", AttributeValue::Bool(false))
            .expression_attribute_values(":null", AttributeValue::Null(true));
        match self.update_or_found(update).await? {
            None => Ok(()),
            Some(Some(state)) if state.status == ConversationStatus::InitialMessageSent => Ok(()),
            Some(other) => Err(Failure::Permanent(format!("the record moved on meanwhile: {other:?}"))),
        }
    }

    /// A final failure status with its reason, only while the record is still `from` (another
    /// attempt may have finished it meanwhile: then nothing is written). `hand_off` also asks a
    /// person to look.
    pub async fn failed(
        &self,
        key: &ConversationKey,
        from: ConversationStatus,
        to: ConversationStatus,
        reason: &str,
        hand_off: bool,
    ) -> Result<Written, Failure> {
        let expression = if hand_off {
            "SET #status = :to, #updated = :now, #failure = :reason, #handoff = :true, #handoff_reason = :reason"
        } else {
            "SET #status = :to, #updated = :now, #failure = :reason"
        };
        let mut update = self
            .update(key)
            .update_expression(expression)
            .condition_expression("#status = :from")
            .expression_attribute_names("#failure", attribute::FAILURE_REASON)
            .expression_attribute_values(":from", status(from))
            .expression_attribute_values(":to", status(to))
            .expression_attribute_values(":reason", AttributeValue::S(reason.into()));
        if hand_off {
            update = update
                .expression_attribute_names("#handoff", attribute::HAND_OFF)
                .expression_attribute_names("#handoff_reason", attribute::HAND_OFF_REASON)
                .expression_attribute_values(":true", AttributeValue::Bool(true));
        }
        self.conditional(update).await
    }

    /// A transient failure being retried: the reason, and the record given up by this attempt
    /// (the next delivery takes it over at once), while it is `processing` and not another's.
    pub async fn retrying(&self, key: &ConversationKey, token: &str, reason: &str) -> Result<(), Failure> {
        let update = self
            .claim_update(key, token)
            .update_expression("SET #failure = :reason, #updated = :now REMOVE #claim")
            .condition_expression("#status = :processing AND (attribute_not_exists(#claim) OR #claim = :token)")
            .expression_attribute_names("#failure", attribute::FAILURE_REASON)
            .expression_attribute_values(":reason", AttributeValue::S(reason.into()));
        self.conditional(update).await.map(|_| ())
    }

    /// An UpdateItem on the record, with what every update here uses: `#status`, `#updated`
    /// and `:now`.
    pub(crate) fn update(&self, key: &ConversationKey) -> UpdateItemFluentBuilder {
        self.client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key.to_item()))
            .expression_attribute_names("#status", attribute::STATUS)
            .expression_attribute_names("#updated", attribute::UPDATED_AT)
            .expression_attribute_values(":now", AttributeValue::S(multicomms_wire::timestamp::now()))
    }

    /// A Query of the company index for one company's project (`#company`, `#project` named).
    pub(crate) fn project_query(&self, company_id: &str, project_id: &str) -> QueryFluentBuilder {
        let index = &multicomms_wire::conversation::GLOBAL_INDEXES[0];
        self.client
            .query()
            .table_name(&self.table)
            .index_name(index.name)
            .key_condition_expression("#company = :company AND #project = :project")
            .expression_attribute_names("#company", index.partition_key)
            .expression_attribute_names("#project", index.sort_key)
            .expression_attribute_values(":company", AttributeValue::S(company_id.into()))
            .expression_attribute_values(":project", AttributeValue::S(project_id.into()))
    }

    /// [`Self::update`] plus what every write of a claim uses: `#claim`, `:token`, `:processing`
    /// (DynamoDB refuses a value the expressions leave unused).
    fn claim_update(&self, key: &ConversationKey, token: &str) -> UpdateItemFluentBuilder {
        self.update(key)
            .expression_attribute_names("#claim", attribute::CLAIM_ID)
            .expression_attribute_values(":processing", status(ConversationStatus::Processing))
            .expression_attribute_values(":token", AttributeValue::S(token.into()))
    }

    /// A conditional update that, when refused, says where the record stood (DynamoDB returns
    /// it with the refusal, so no second read): `None` when applied, else what was found.
    async fn update_or_found(&self, update: UpdateItemFluentBuilder) -> Result<Option<Option<RecordState>>, Failure> {
        Ok(self.update_or_item(update).await?.map(|found| found.as_ref().map(record_state)))
    }

    /// [`Self::update_or_found`] with the whole item found.
    async fn update_or_item(&self, update: UpdateItemFluentBuilder) -> Result<Option<Option<Item>>, Failure> {
        let sent = update.return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld).send();
        match sent.await {
            Ok(_) => Ok(None),
            Err(e) => match e.as_service_error() {
                Some(UpdateItemError::ConditionalCheckFailedException(failed)) => Ok(Some(failed.item.clone())),
                _ => Err(aws_failure("UpdateItem", &e)),
            },
        }
    }

    pub(crate) async fn conditional(&self, update: UpdateItemFluentBuilder) -> Result<Written, Failure> {
        match update.send().await {
            Ok(_) => Ok(Written::Applied),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_conditional_check_failed_exception()) => {
                Ok(Written::Superseded)
            }
            Err(e) => Err(aws_failure("UpdateItem", &e)),
        }
    }
}

/// The attributes of a stored record that decide what a delivery does.
fn record_state(item: &Item) -> RecordState {
    let text = |name: &str| match item.get(name) {
        Some(AttributeValue::S(value)) => Some(value.clone()),
        _ => None,
    };
    let stored = text(attribute::STATUS).unwrap_or_default();
    // A status this processor does not know reads as `Other`: another flow's, so done here.
    let status = serde_json::from_value(serde_json::Value::String(stored)).unwrap_or(ConversationStatus::Other);
    RecordState {
        status,
        updated_at: text(attribute::UPDATED_AT).unwrap_or_default(),
        claim_id: text(attribute::CLAIM_ID),
    }
}

/// What a put-if-absent found.
pub enum Put {
    Written,
    /// An item with that `conversation_id` was there already: this one.
    Existed(Item),
}

/// PutItem of `item` unless an item with its `conversation_id` (the partition key of every
/// table the pods write) exists. The existing item comes back with the refused condition, so a
/// duplicate costs no extra read.
pub(crate) async fn put_if_absent(client: &aws_sdk_dynamodb::Client, table: &str, item: Item) -> Result<Put, Failure> {
    let put = client
        .put_item()
        .table_name(table)
        .set_item(Some(item))
        .condition_expression("attribute_not_exists(#id)")
        .expression_attribute_names("#id", CONVERSATION_ID)
        .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
        .send()
        .await;
    match put {
        Ok(_) => Ok(Put::Written),
        Err(error) => match error.as_service_error() {
            Some(PutItemError::ConditionalCheckFailedException(failed)) => failed
                .item
                .clone()
                .map(Put::Existed)
                .ok_or_else(|| Failure::Transient("the refused put did not return the item".into())),
            _ => Err(aws_failure("PutItem", &error)),
        },
    }
}

/// Every item `query` finds, page after page.
pub(crate) async fn query_all(query: QueryFluentBuilder) -> Result<Vec<Item>, Failure> {
    let pages = query.into_paginator().items().send();
    pages.collect::<Result<Vec<_>, _>>().await.map_err(|e| aws_failure("Query", &e))
}

/// Only a validation error fails the same way every time; a missing table or denied access is a
/// deployment in progress, retried until the message's receives run out (then the DLQ).
pub(crate) fn aws_failure<E, R>(operation: &str, error: &SdkError<E, R>) -> Failure
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let detail = aws_sdk_dynamodb::error::DisplayErrorContext(error).to_string();
    match error.code() {
        Some("ValidationException") => Failure::Permanent(format!("DynamoDB {operation}: {detail}")),
        _ => Failure::Transient(format!("DynamoDB {operation}: {detail}")),
    }
}
