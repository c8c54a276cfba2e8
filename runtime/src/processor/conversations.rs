//! The conversations table: the conditional create that makes processing idempotent, the send
//! claim, and the outcome updates. Every update is conditioned on the item existing, so none
//! of them can leave a stub item behind (the original's failure update could).
use super::failure::Failure;
use crate::wire::conversation::{status, ConversationRecord, Message, CONVERSATION_ID, PRIMARY_CHANNEL};
use crate::wire::Item;
use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::types::AttributeValue;

pub struct Conversations {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

/// The record's key: (primary_channel, conversation_id).
pub type Key = (String, String);

pub enum Created {
    New,
    /// A record with this key exists (a duplicate or a redelivery): as it stands now.
    Exists(Box<ConversationRecord>),
}

const CONDITION_FAILED: &str = "ConditionalCheckFailedException";

impl Conversations {
    pub fn new(client: aws_sdk_dynamodb::Client, table: String) -> Self {
        Conversations { client, table }
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    /// PutItem if absent; on a condition failure, the existing record (strongly consistent).
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
                match self.get(&key).await? {
                    Some(existing) => Ok(Created::Exists(Box::new(existing))),
                    None => Err(Failure::Transient("record vanished between create and read".into())),
                }
            }
            Err(e) => Err(aws_failure("PutItem", &e)),
        }
    }

    pub async fn get(&self, key: &Key) -> Result<Option<ConversationRecord>, Failure> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(item_key(key)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| aws_failure("GetItem", &e))?;
        match out.item {
            None => Ok(None),
            Some(item) => ConversationRecord::from_item(item)
                .map(Some)
                .map_err(|e| Failure::Permanent(format!("stored record unreadable: {e}"))),
        }
    }

    /// Moves the status `from` → `to` only if it is still `from`; false if another worker or
    /// an earlier attempt moved it first.
    pub async fn transition(&self, key: &Key, from: &str, to: &str, now: &str) -> Result<bool, Failure> {
        let update = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(item_key(key)))
            .update_expression("SET #status = :to, #updated = :now")
            .condition_expression("#status = :from")
            .expression_attribute_names("#status", "conversation_status")
            .expression_attribute_names("#updated", "updated_at")
            .expression_attribute_values(":to", AttributeValue::S(to.into()))
            .expression_attribute_values(":from", AttributeValue::S(from.into()))
            .expression_attribute_values(":now", AttributeValue::S(now.into()))
            .send()
            .await;
        match update {
            Ok(_) => Ok(true),
            Err(e) if e.code() == Some(CONDITION_FAILED) => Ok(false),
            Err(e) => Err(aws_failure("UpdateItem", &e)),
        }
    }

    /// The success update (spec §5.5): status, the assistant message appended, the response id
    /// and the processing time.
    pub async fn sent(&self, key: &Key, message: &Message, response_id: &str, took_ms: u64) -> Result<(), Failure> {
        let message = serde_dynamo::to_attribute_value(message)
            .map_err(|e| Failure::Permanent(format!("message not storable: {e}")))?;
        self.client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(item_key(key)))
            .update_expression(
                "SET #status = :sent, #updated = :now, #messages = list_append(if_not_exists(#messages, :empty), :message), \
                 #response = :response, #took = :took REMOVE #failure",
            )
            .condition_expression("attribute_exists(#id)")
            .expression_attribute_names("#id", CONVERSATION_ID)
            .expression_attribute_names("#status", "conversation_status")
            .expression_attribute_names("#updated", "updated_at")
            .expression_attribute_names("#messages", "messages")
            .expression_attribute_names("#response", "response_id")
            .expression_attribute_names("#took", "initial_processing_time_ms")
            .expression_attribute_names("#failure", "failure_reason")
            .expression_attribute_values(":sent", AttributeValue::S(status::INITIAL_MESSAGE_SENT.into()))
            .expression_attribute_values(":now", AttributeValue::S(super::pipeline::now()))
            .expression_attribute_values(":empty", AttributeValue::L(vec![]))
            .expression_attribute_values(":message", AttributeValue::L(vec![message]))
            .expression_attribute_values(":response", AttributeValue::S(response_id.into()))
            .expression_attribute_values(":took", AttributeValue::N(took_ms.to_string()))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| aws_failure("UpdateItem", &e))
    }

    /// A final failure status with its reason; `hand_off` also asks a person to look.
    pub async fn failed(&self, key: &Key, to: &str, reason: &str, hand_off: bool) -> Result<(), Failure> {
        let mut update = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(item_key(key)))
            .update_expression("SET #status = :to, #updated = :now, #failure = :reason")
            .condition_expression("attribute_exists(#id)")
            .expression_attribute_names("#id", CONVERSATION_ID)
            .expression_attribute_names("#status", "conversation_status")
            .expression_attribute_names("#updated", "updated_at")
            .expression_attribute_names("#failure", "failure_reason")
            .expression_attribute_values(":to", AttributeValue::S(to.into()))
            .expression_attribute_values(":now", AttributeValue::S(super::pipeline::now()))
            .expression_attribute_values(":reason", AttributeValue::S(reason.into()));
        if hand_off {
            update = update
                .update_expression(
                    "SET #status = :to, #updated = :now, #failure = :reason, #handoff = :true, #handoff_reason = :reason",
                )
                .expression_attribute_names("#handoff", "hand_off_to_human")
                .expression_attribute_names("#handoff_reason", "hand_off_to_human_reason")
                .expression_attribute_values(":true", AttributeValue::Bool(true));
        }
        update.send().await.map(|_| ()).map_err(|e| aws_failure("UpdateItem", &e))
    }

    /// A transient failure being retried: the reason only, the status stays `processing`.
    pub async fn retrying(&self, key: &Key, reason: &str) -> Result<(), Failure> {
        self.client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(item_key(key)))
            .update_expression("SET #failure = :reason, #updated = :now")
            .condition_expression("attribute_exists(#id)")
            .expression_attribute_names("#id", CONVERSATION_ID)
            .expression_attribute_names("#failure", "failure_reason")
            .expression_attribute_names("#updated", "updated_at")
            .expression_attribute_values(":reason", AttributeValue::S(reason.into()))
            .expression_attribute_values(":now", AttributeValue::S(super::pipeline::now()))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| aws_failure("UpdateItem", &e))
    }
}

fn item_key(key: &Key) -> Item {
    [
        (PRIMARY_CHANNEL.to_string(), AttributeValue::S(key.0.clone())),
        (CONVERSATION_ID.to_string(), AttributeValue::S(key.1.clone())),
    ]
    .into()
}

/// Throttling, 5xx and network errors are transient; validation and missing-table errors are
/// not (they need a person).
fn aws_failure<E, R>(operation: &str, error: &aws_sdk_dynamodb::error::SdkError<E, R>) -> Failure
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let detail = aws_sdk_dynamodb::error::DisplayErrorContext(error).to_string();
    match error.code() {
        Some("ValidationException" | "ResourceNotFoundException" | "AccessDeniedException") => {
            Failure::Permanent(format!("DynamoDB {operation}: {detail}"))
        }
        _ => Failure::Transient(format!("DynamoDB {operation}: {detail}")),
    }
}
