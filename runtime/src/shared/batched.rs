//! The single DynamoDB and SQS requests of concurrent tasks, sent together as batch calls: one AWS
//! call costs about as much of our CPU as all the rest of an inbound message's work (0.2–0.46 ms,
//! docs/benchmarks.md), so the webhook's reads and writes, and the reply turns' deletes, go out
//! in batches ([`multicomms_service::coalesce`]): N concurrent messages make about N/batch calls.
//! Each kind keeps its API's meaning: reads are strongly consistent, writes unconditional,
//! trigger locks conditional (in one transaction, each lock still taken or refused on its own),
//! and an asker learns exactly what happened to its own request.
use super::conversations::aws_failure;
use super::failure::Failure;
use aws_sdk_dynamodb::types::{
    AttributeValue, KeysAndAttributes, Put, ReturnValuesOnConditionCheckFailure, TransactWriteItem, WriteRequest,
};
use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use multicomms_service::coalesce::{Coalescer, FetchBatch, Unanswered};
use multicomms_wire::Item;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How long the first ask waits for others to join its batch: short beside a round trip.
const WINDOW: Duration = Duration::from_millis(2);
/// The APIs' limits per request.
const BATCH_GET_LIMIT: usize = 100;
const BATCH_WRITE_LIMIT: usize = 25;
const TRANSACTION_LIMIT: usize = 100;
const SEND_BATCH_LIMIT: usize = 10;
/// How many times keys DynamoDB left unprocessed (throttling) are asked again.
const ATTEMPTS: u32 = 6;

impl From<Unanswered> for Failure {
    fn from(unanswered: Unanswered) -> Self {
        Failure::Transient(unanswered.to_string())
    }
}

/// An item's table and (string) key: what a batched read asks for.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ItemKey {
    pub table: String,
    pub key: BTreeMap<String, String>,
}

impl ItemKey {
    pub fn new(table: &str, key: &[(&str, &str)]) -> Self {
        let key = key.iter().map(|(name, value)| (name.to_string(), value.to_string())).collect();
        ItemKey { table: table.to_string(), key }
    }

    fn to_item(&self) -> Item {
        self.key.iter().map(|(name, value)| (name.clone(), AttributeValue::S(value.clone()))).collect()
    }

    /// The key of `item`, an item of this key's table.
    fn of(&self, item: &Item) -> Option<ItemKey> {
        let key: Option<BTreeMap<_, _>> =
            self.key.keys().map(|n| Some((n.clone(), item.get(n)?.as_s().ok()?.clone()))).collect();
        Some(ItemKey { table: self.table.clone(), key: key? })
    }
}

/// One asker's request in a batch of writes or sends: told apart by a number of its own, so two
/// askers never share an answer.
#[derive(Debug, Clone)]
pub struct Asked<T> {
    id: u64,
    request: T,
}

impl<T> PartialEq for Asked<T> {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
    }
}
impl<T> Eq for Asked<T> {}
impl<T> std::hash::Hash for Asked<T> {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.id.hash(state)
    }
}

/// A write of one item: a put or a delete.
#[derive(Debug, Clone)]
pub enum ItemWrite {
    Put { key: ItemKey, item: Item },
    Delete { key: ItemKey },
}

impl ItemWrite {
    fn key(&self) -> &ItemKey {
        match self {
            ItemWrite::Put { key, .. } | ItemWrite::Delete { key } => key,
        }
    }
}

/// A conditional put (the condition with its names and values), taken or refused on its own:
/// the same key asked twice in one batch goes once (the first ask's item), and each asker
/// compares the item written with its own.
#[derive(Debug, Clone)]
pub struct ConditionalPut {
    pub key: ItemKey,
    pub item: Item,
    pub condition: String,
    pub names: HashMap<String, String>,
    pub values: HashMap<String, AttributeValue>,
}

impl PartialEq for ConditionalPut {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}
impl Eq for ConditionalPut {}
impl std::hash::Hash for ConditionalPut {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.key.hash(state)
    }
}

/// What a conditional put found.
#[derive(Debug, Clone, PartialEq)]
pub enum Conditional {
    Written(Item),
    /// The condition refused it; the item in the way (empty when there was none).
    Refused(Item),
}

/// A message for a queue, with its delay.
#[derive(Debug, Clone)]
pub struct QueueMessage {
    pub queue_url: String,
    pub body: String,
    pub delay: Duration,
}

/// The batched DynamoDB reads and writes and SQS sends of one process.
#[derive(Clone)]
pub struct Batched {
    reads: Coalescer<ItemKey, Option<Item>, Failure>,
    writes: Coalescer<Asked<ItemWrite>, (), Failure>,
    conditional_puts: Coalescer<ConditionalPut, Conditional, Failure>,
    sends: Coalescer<Asked<QueueMessage>, (), Failure>,
    next_id: Arc<AtomicU64>,
}

impl Batched {
    pub fn new(dynamodb: aws_sdk_dynamodb::Client, sqs: aws_sdk_sqs::Client) -> Self {
        let client = dynamodb.clone();
        let reads: FetchBatch<ItemKey, Option<Item>, Failure> =
            Arc::new(move |keys| Box::pin(batch_get(client.clone(), keys)));
        let client = dynamodb.clone();
        let writes: FetchBatch<Asked<ItemWrite>, (), Failure> =
            Arc::new(move |asks| Box::pin(batch_write(client.clone(), asks)));
        let client = dynamodb;
        let conditional_puts: FetchBatch<ConditionalPut, Conditional, Failure> =
            Arc::new(move |puts| Box::pin(transact_puts(client.clone(), puts)));
        let sends: FetchBatch<Asked<QueueMessage>, (), Failure> =
            Arc::new(move |asks| Box::pin(send_batch(sqs.clone(), asks)));
        Batched {
            reads: Coalescer::new(BATCH_GET_LIMIT, WINDOW, reads),
            writes: Coalescer::new(BATCH_WRITE_LIMIT, WINDOW, writes),
            conditional_puts: Coalescer::new(TRANSACTION_LIMIT, WINDOW, conditional_puts),
            sends: Coalescer::new(SEND_BATCH_LIMIT, WINDOW, sends),
            next_id: Arc::default(),
        }
    }

    fn ask<T>(&self, request: T) -> Asked<T> {
        Asked { id: self.next_id.fetch_add(1, Ordering::Relaxed), request }
    }

    /// The item, read strongly consistently.
    pub async fn get(&self, key: ItemKey) -> Result<Option<Item>, Failure> {
        self.reads.get(key).await
    }

    pub async fn write(&self, write: ItemWrite) -> Result<(), Failure> {
        self.writes.get(self.ask(write)).await
    }

    /// What became of a conditional put: this item (or, asked in the same batch, another's for
    /// the same key) written, or the item that refused it.
    pub async fn put_if(&self, put: ConditionalPut) -> Result<Conditional, Failure> {
        self.conditional_puts.get(put).await
    }

    pub async fn send(&self, message: QueueMessage) -> Result<(), Failure> {
        self.sends.get(self.ask(message)).await
    }
}

/// One BatchGetItem for every table asked (each strongly consistent), unprocessed keys asked again.
pub(crate) async fn batch_get(
    client: aws_sdk_dynamodb::Client,
    keys: Vec<ItemKey>,
) -> HashMap<ItemKey, Result<Option<Item>, Failure>> {
    let mut found: HashMap<ItemKey, Option<Item>> = keys.iter().map(|k| (k.clone(), None)).collect();
    let asked_of = |table: &str| keys.iter().find(|k| k.table == table).cloned();
    let mut unread: HashMap<String, Vec<Item>> = HashMap::new();
    for key in &keys {
        unread.entry(key.table.clone()).or_default().push(key.to_item());
    }
    let mut pause = Duration::from_millis(25);
    for _ in 0..ATTEMPTS {
        let mut request = client.batch_get_item();
        for (table, items) in unread.drain() {
            match KeysAndAttributes::builder().set_keys(Some(items)).consistent_read(true).build() {
                Ok(keys) => request = request.request_items(table, keys),
                Err(e) => return every(keys, Failure::Permanent(format!("BatchGetItem: {e}"))),
            }
        }
        let out = match request.send().await {
            Ok(out) => out,
            Err(e) => return every(keys, aws_failure("BatchGetItem", &e)),
        };
        for (table, items) in out.responses.unwrap_or_default() {
            let Some(asked) = asked_of(&table) else { continue };
            for item in items {
                if let Some(key) = asked.of(&item) {
                    found.insert(key, Some(item));
                }
            }
        }
        unread = out.unprocessed_keys.unwrap_or_default().into_iter().map(|(t, k)| (t, k.keys)).collect();
        if unread.values().all(Vec::is_empty) {
            return found.into_iter().map(|(k, v)| (k, Ok(v))).collect();
        }
        tokio::time::sleep(pause).await;
        pause *= 2;
    }
    every(keys, Failure::Transient("BatchGetItem: keys still unprocessed (throttled)".into()))
}

/// One BatchWriteItem per 25 writes (the last write of a key in the batch wins, as it would
/// have one after the other), unprocessed writes sent again.
async fn batch_write(
    client: aws_sdk_dynamodb::Client,
    asks: Vec<Asked<ItemWrite>>,
) -> HashMap<Asked<ItemWrite>, Result<(), Failure>> {
    let mut last: BTreeMap<&ItemKey, &ItemWrite> = BTreeMap::new();
    for ask in &asks {
        last.insert(ask.request.key(), &ask.request);
    }
    let mut requests: Vec<(String, WriteRequest)> = Vec::with_capacity(last.len());
    for write in last.values() {
        let request = match write {
            ItemWrite::Put { key, item } => aws_sdk_dynamodb::types::PutRequest::builder()
                .set_item(Some(item.clone()))
                .build()
                .map(|put| (key.table.clone(), WriteRequest::builder().put_request(put).build())),
            ItemWrite::Delete { key } => aws_sdk_dynamodb::types::DeleteRequest::builder()
                .set_key(Some(key.to_item()))
                .build()
                .map(|delete| (key.table.clone(), WriteRequest::builder().delete_request(delete).build())),
        };
        match request {
            Ok(request) => requests.push(request),
            Err(e) => return every(asks, Failure::Permanent(format!("BatchWriteItem: {e}"))),
        }
    }
    let mut result = Ok(());
    for chunk in requests.chunks(BATCH_WRITE_LIMIT) {
        if let Err(failure) = write_chunk(&client, chunk).await {
            result = Err(failure);
        }
    }
    asks.into_iter().map(|ask| (ask, result.clone())).collect()
}

async fn write_chunk(client: &aws_sdk_dynamodb::Client, chunk: &[(String, WriteRequest)]) -> Result<(), Failure> {
    let mut unwritten: HashMap<String, Vec<WriteRequest>> = HashMap::new();
    for (table, request) in chunk {
        unwritten.entry(table.clone()).or_default().push(request.clone());
    }
    let mut pause = Duration::from_millis(25);
    for _ in 0..ATTEMPTS {
        let out = client
            .batch_write_item()
            .set_request_items(Some(std::mem::take(&mut unwritten)))
            .send()
            .await
            .map_err(|e| aws_failure("BatchWriteItem", &e))?;
        unwritten = out.unprocessed_items.unwrap_or_default();
        unwritten.retain(|_, requests| !requests.is_empty());
        if unwritten.is_empty() {
            return Ok(());
        }
        tokio::time::sleep(pause).await;
        pause *= 2;
    }
    Err(Failure::Transient("BatchWriteItem: writes still unprocessed (throttled)".into()))
}

/// The puts in one TransactWriteItems; a cancelled transaction says which conditions refused
/// (those askers get the item in the way), and the rest go again without them.
async fn transact_puts(
    client: aws_sdk_dynamodb::Client,
    puts: Vec<ConditionalPut>,
) -> HashMap<ConditionalPut, Result<Conditional, Failure>> {
    let mut answers = HashMap::new();
    let mut pending = puts;
    let mut pause = Duration::from_millis(25);
    for _ in 0..ATTEMPTS {
        let mut items = Vec::with_capacity(pending.len());
        for put in &pending {
            let built = Put::builder()
                .table_name(&put.key.table)
                .set_item(Some(put.item.clone()))
                .condition_expression(&put.condition)
                .set_expression_attribute_names(Some(put.names.clone()))
                .set_expression_attribute_values(Some(put.values.clone()).filter(|v| !v.is_empty()))
                .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
                .build();
            match built {
                Ok(put) => items.push(TransactWriteItem::builder().put(put).build()),
                Err(e) => return fill(answers, pending, Failure::Permanent(format!("TransactWriteItems: {e}"))),
            }
        }
        // The same token on the SDK's own retries: a transaction that landed is not applied twice.
        let token = uuid::Uuid::new_v4().to_string();
        let sent = client.transact_write_items().set_transact_items(Some(items)).client_request_token(token);
        let error = match sent.send().await {
            Ok(_) => {
                answers.extend(pending.into_iter().map(|put| {
                    let written = Conditional::Written(put.item.clone());
                    (put, Ok(written))
                }));
                return answers;
            }
            Err(e) => e,
        };
        let Some(reasons) = error.as_service_error().and_then(|s| {
            match s {
            aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError::TransactionCanceledException(
                cancelled,
            ) => Some(cancelled.cancellation_reasons().to_vec()),
            _ => None,
        }
        }) else {
            return fill(answers, pending, aws_failure("TransactWriteItems", &error));
        };
        let mut again = Vec::new();
        for (put, reason) in pending.into_iter().zip(reasons.into_iter().map(Some).chain(std::iter::repeat(None))) {
            match reason.as_ref().and_then(|r| r.code()) {
                Some("ConditionalCheckFailed") => {
                    let found = reason.and_then(|r| r.item).unwrap_or_default();
                    answers.insert(put, Ok(Conditional::Refused(found)));
                }
                _ => again.push(put),
            }
        }
        pending = again;
        if pending.is_empty() {
            return answers;
        }
        tokio::time::sleep(pause).await;
        pause *= 2;
    }
    fill(answers, pending, Failure::Transient("TransactWriteItems: cancelled again and again (conflicts)".into()))
}

/// One SendMessageBatch per queue and 10 messages; each asker learns its own message's fate.
async fn send_batch(
    sqs: aws_sdk_sqs::Client,
    asks: Vec<Asked<QueueMessage>>,
) -> HashMap<Asked<QueueMessage>, Result<(), Failure>> {
    let mut by_queue: BTreeMap<String, Vec<Asked<QueueMessage>>> = BTreeMap::new();
    for ask in asks {
        by_queue.entry(ask.request.queue_url.clone()).or_default().push(ask);
    }
    let mut answers = HashMap::new();
    for (queue_url, asks) in by_queue {
        for chunk in asks.chunks(SEND_BATCH_LIMIT) {
            let entries: Result<Vec<_>, _> = chunk
                .iter()
                .map(|ask| {
                    SendMessageBatchRequestEntry::builder()
                        .id(ask.id.to_string())
                        .message_body(&ask.request.body)
                        .delay_seconds(ask.request.delay.as_secs().min(900) as i32)
                        .build()
                })
                .collect();
            let sent = match entries {
                Ok(entries) => {
                    sqs.send_message_batch().queue_url(&queue_url).set_entries(Some(entries)).send().await.map_err(
                        |e| {
                            Failure::Transient(format!(
                                "SQS SendMessageBatch: {}",
                                aws_sdk_sqs::error::DisplayErrorContext(&e)
                            ))
                        },
                    )
                }
                Err(e) => Err(Failure::Permanent(format!("SendMessageBatch: {e}"))),
            };
            match sent {
                Ok(out) => {
                    let failed: HashMap<String, String> = out
                        .failed
                        .into_iter()
                        .map(|f| (f.id, format!("SQS SendMessageBatch: {} {}", f.code, f.message.unwrap_or_default())))
                        .collect();
                    for ask in chunk {
                        let answer = match failed.get(&ask.id.to_string()) {
                            Some(why) => Err(Failure::Transient(why.clone())),
                            None => Ok(()),
                        };
                        answers.insert(ask.clone(), answer);
                    }
                }
                Err(failure) => answers.extend(chunk.iter().map(|ask| (ask.clone(), Err(failure.clone())))),
            }
        }
    }
    answers
}

fn every<K: Eq + std::hash::Hash, V>(keys: Vec<K>, failure: Failure) -> HashMap<K, Result<V, Failure>> {
    keys.into_iter().map(|k| (k, Err(failure.clone()))).collect()
}

fn fill<K: Eq + std::hash::Hash, V>(
    mut answers: HashMap<K, Result<V, Failure>>,
    rest: Vec<K>,
    failure: Failure,
) -> HashMap<K, Result<V, Failure>> {
    answers.extend(every(rest, failure));
    answers
}
