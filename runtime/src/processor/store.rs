//! The conversations table: the conditional create that makes processing idempotent, the send
//! claim, and the outcome updates. Every update is conditioned on the status it moves from, so
//! none can leave a stub item behind (the original's failure update could) or overwrite what a
//! concurrent attempt for the same conversation already finished.
use super::failure::Failure;
use crate::wire::conversation::{status, ConversationRecord, Message, CONVERSATION_ID, PRIMARY_CHANNEL};

/// [`ConversationRecord::claim_id`].
const CLAIM_ID: &str = "claim_id";
use crate::wire::Item;
use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder;
use aws_sdk_dynamodb::types::AttributeValue;

pub struct Conversations {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

/// The record's key: (primary_channel, conversation_id).
pub type Key = (String, String);

pub enum Created {
    New,
    /// A record with this key exists (a duplicate or a redelivery): where it stands.
    Exists(State),
}

/// The attributes that decide what a redelivery does (read alone, so a record grown by later
/// flows never stops a duplicate from being recognised).
#[derive(Debug, Clone, PartialEq)]
pub struct State {
    pub status: String,
    pub updated_at: String,
    /// The token of the attempt that claimed the send.
    pub claim_id: Option<String>,
}

const CONDITION_FAILED: &str = "ConditionalCheckFailedException";
const STATUS: &str = "conversation_status";

impl Conversations {
    pub fn new(client: aws_sdk_dynamodb::Client, table: String) -> Self {
        Conversations { client, table }
    }

    /// PutItem if absent; on a condition failure, the existing record's state.
    pub async fn create(&self, record: &ConversationRecord) -> Result<Created, Failure> {
        let item = record.to_item().map_err(|e| Failure::Permanent(format!("record not storable: {e}")))?;
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(#id)")
            .expression_attribute_names("#id", CONVERSATION_ID)
            .send()
            .await;
        match put {
            Ok(_) => Ok(Created::New),
            Err(e) if e.code() == Some(CONDITION_FAILED) => {
                let key = (record.primary_channel.clone(), record.conversation_id.clone());
                match self.state(&key).await? {
                    Some(state) => Ok(Created::Exists(state)),
                    None => Err(Failure::Transient("record vanished between create and read".into())),
                }
            }
            Err(e) => Err(aws_failure("PutItem", &e)),
        }
    }

    /// An UpdateItem on the record, with what every update here uses: `#status`, `#updated`
    /// and `:now`.
    fn update(&self, key: &Key) -> UpdateItemFluentBuilder {
        self.client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(item_key(key)))
            .expression_attribute_names("#status", STATUS)
            .expression_attribute_names("#updated", "updated_at")
            .expression_attribute_values(":now", AttributeValue::S(super::pipeline::now()))
    }

    /// [`Self::update`] plus what taking and giving back a claim use: `#claim`, `:token`,
    /// `:sending`, `:processing`.
    fn claim_update(&self, key: &Key, token: &str) -> UpdateItemFluentBuilder {
        self.update(key)
            .expression_attribute_names("#claim", CLAIM_ID)
            .expression_attribute_values(":sending", AttributeValue::S(status::SENDING.into()))
            .expression_attribute_values(":processing", AttributeValue::S(status::PROCESSING.into()))
            .expression_attribute_values(":token", AttributeValue::S(token.into()))
    }

    pub async fn state(&self, key: &Key) -> Result<Option<State>, Failure> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(item_key(key)))
            .projection_expression("#status, #updated, #claim")
            .expression_attribute_names("#status", STATUS)
            .expression_attribute_names("#updated", "updated_at")
            .expression_attribute_names("#claim", CLAIM_ID)
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| aws_failure("GetItem", &e))?;
        let text = |item: &Item, name: &str| match item.get(name) {
            Some(AttributeValue::S(value)) => Some(value.clone()),
            _ => None,
        };
        Ok(out.item.map(|item| State {
            status: text(&item, STATUS).unwrap_or_default(),
            updated_at: text(&item, "updated_at").unwrap_or_default(),
            claim_id: text(&item, CLAIM_ID),
        }))
    }

    /// The send claim: `processing` → `sending` with this attempt's token. True when the claim
    /// is this attempt's (also when an SDK retry finds its own earlier, unanswered write).
    pub async fn claim(&self, key: &Key, token: &str) -> Result<bool, Failure> {
        let update = self
            .claim_update(key, token)
            .update_expression("SET #status = :sending, #updated = :now, #claim = :token")
            .condition_expression("#status = :processing")
            .send()
            .await;
        match update {
            Ok(_) => Ok(true),
            Err(e) if e.code() == Some(CONDITION_FAILED) => {
                let state = self.state(key).await?;
                Ok(state.is_some_and(|s| s.status == status::SENDING && s.claim_id.as_deref() == Some(token)))
            }
            Err(e) => Err(aws_failure("UpdateItem", &e)),
        }
    }

    /// Gives a claim back (`sending` → `processing`) after a send that surely did not happen.
    pub async fn release(&self, key: &Key, token: &str) -> Result<(), Failure> {
        let update = self
            .claim_update(key, token)
            .update_expression("SET #status = :processing, #updated = :now REMOVE #claim")
            .condition_expression("#status = :sending AND #claim = :token")
            .send()
            .await;
        match update {
            Ok(_) => Ok(()),
            // Already released (an SDK retry) or taken over: either way not ours to give back.
            Err(e) if e.code() == Some(CONDITION_FAILED) => Ok(()),
            Err(e) => Err(aws_failure("UpdateItem", &e)),
        }
    }

    /// The success update (spec §5.5): status, the assistant message appended, the response id
    /// and the processing time; a hand-off set meanwhile (the send took longer than the grace
    /// period) is cleared. Only from `sending` or `send_outcome_unknown`, so an SDK retry of a
    /// write that landed does not append the message twice.
    pub async fn sent(&self, key: &Key, message: &Message, response_id: &str, took_ms: u64) -> Result<(), Failure> {
        let message = serde_dynamo::to_attribute_value(message)
            .map_err(|e| Failure::Permanent(format!("message not storable: {e}")))?;
        let update = self
            .update(key)
            .update_expression(
                "SET #status = :sent, #updated = :now, #messages = list_append(if_not_exists(#messages, :empty), :message), \
                 #response = :response, #took = :took, #handoff = :false, #handoff_reason = :null REMOVE #failure",
            )
            .condition_expression("#status IN (:sending, :unknown)")
            .expression_attribute_names("#messages", "messages")
            .expression_attribute_names("#response", "response_id")
            .expression_attribute_names("#took", "initial_processing_time_ms")
            .expression_attribute_names("#failure", "failure_reason")
            .expression_attribute_names("#handoff", "hand_off_to_human")
            .expression_attribute_names("#handoff_reason", "hand_off_to_human_reason")
            .expression_attribute_values(":sent", AttributeValue::S(status::INITIAL_MESSAGE_SENT.into()))
            .expression_attribute_values(":sending", AttributeValue::S(status::SENDING.into()))
            .expression_attribute_values(":unknown", AttributeValue::S(status::SEND_OUTCOME_UNKNOWN.into()))
            .expression_attribute_values(":empty", AttributeValue::L(vec![]))
            .expression_attribute_values(":message", AttributeValue::L(vec![message]))
            .expression_attribute_values(":response", AttributeValue::S(response_id.into()))
            .expression_attribute_values(":took", AttributeValue::N(took_ms.to_string()))
            .expression_attribute_values(":false", AttributeValue::Bool(false))
            .expression_attribute_values(":null", AttributeValue::Null(true))
            .send()
            .await;
        match update {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some(CONDITION_FAILED) => match self.state(key).await? {
                Some(state) if state.status == status::INITIAL_MESSAGE_SENT => Ok(()),
                other => Err(Failure::Permanent(format!("the record moved on meanwhile: {other:?}"))),
            },
            Err(e) => Err(aws_failure("UpdateItem", &e)),
        }
    }

    /// A final failure status with its reason, only while the record is still `from` (another
    /// attempt may have finished it meanwhile: then false, nothing written). `hand_off` also
    /// asks a person to look.
    pub async fn failed(&self, key: &Key, from: &str, to: &str, reason: &str, hand_off: bool) -> Result<bool, Failure> {
        let expression = if hand_off {
            "SET #status = :to, #updated = :now, #failure = :reason, #handoff = :true, #handoff_reason = :reason"
        } else {
            "SET #status = :to, #updated = :now, #failure = :reason"
        };
        let mut update = self
            .update(key)
            .update_expression(expression)
            .condition_expression("#status = :from")
            .expression_attribute_names("#failure", "failure_reason")
            .expression_attribute_values(":from", AttributeValue::S(from.into()))
            .expression_attribute_values(":to", AttributeValue::S(to.into()))
            .expression_attribute_values(":reason", AttributeValue::S(reason.into()));
        if hand_off {
            update = update
                .expression_attribute_names("#handoff", "hand_off_to_human")
                .expression_attribute_names("#handoff_reason", "hand_off_to_human_reason")
                .expression_attribute_values(":true", AttributeValue::Bool(true));
        }
        match update.send().await {
            Ok(_) => Ok(true),
            Err(e) if e.code() == Some(CONDITION_FAILED) => Ok(false),
            Err(e) => Err(aws_failure("UpdateItem", &e)),
        }
    }

    /// A transient failure being retried: the reason only, while the record is `processing`.
    pub async fn retrying(&self, key: &Key, reason: &str) -> Result<(), Failure> {
        let update = self
            .update(key)
            .update_expression("SET #failure = :reason, #updated = :now")
            .condition_expression("#status = :processing")
            .expression_attribute_names("#failure", "failure_reason")
            .expression_attribute_values(":processing", AttributeValue::S(status::PROCESSING.into()))
            .expression_attribute_values(":reason", AttributeValue::S(reason.into()))
            .send()
            .await;
        match update {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some(CONDITION_FAILED) => Ok(()),
            Err(e) => Err(aws_failure("UpdateItem", &e)),
        }
    }
}

fn item_key(key: &Key) -> Item {
    [
        (PRIMARY_CHANNEL.to_string(), AttributeValue::S(key.0.clone())),
        (CONVERSATION_ID.to_string(), AttributeValue::S(key.1.clone())),
    ]
    .into()
}

/// Only a validation error fails the same way every time; a missing table or denied access is a
/// deployment in progress, retried until the message's receives run out (then the DLQ).
fn aws_failure<E, R>(operation: &str, error: &aws_sdk_dynamodb::error::SdkError<E, R>) -> Failure
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
