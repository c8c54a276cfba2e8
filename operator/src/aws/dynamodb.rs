//! DynamoDB: the company-data item and the environment's tables.
use super::{AwsError, Writes};
use crate::desired::tables::{KeyType, TableSpec};
use aws_sdk_dynamodb::client::Waiters;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType as KeyRole,
    KeysAndAttributes, LocalSecondaryIndex, Projection, ProjectionType, ScalarAttributeType, TimeToLiveSpecification,
    TimeToLiveStatus,
};
use multicomms_service::coalesce::{Coalescer, FetchBatch};
use multicomms_wire::Item;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone)]
pub struct Dynamo {
    client: aws_sdk_dynamodb::Client,
    /// Item reads of concurrent reconciles, sent together as BatchGetItem.
    reads: Coalescer<ItemKey, Option<Item>, AwsError>,
}

/// An item's table and string key attributes: what a batched read is asked for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ItemKey {
    table: String,
    key: BTreeMap<String, String>,
}

impl ItemKey {
    /// `None` for a key with other than string attributes (read on its own).
    fn of(table: &str, key: &Item) -> Option<Self> {
        let key: Option<BTreeMap<_, _>> =
            key.iter().map(|(name, value)| Some((name.clone(), value.as_s().ok()?.clone()))).collect();
        Some(ItemKey { table: table.to_string(), key: key? })
    }

    fn to_item(&self) -> Item {
        self.key.iter().map(|(name, value)| (name.clone(), AttributeValue::S(value.clone()))).collect()
    }

    /// The key of `item`, a returned item of `table` whose key attributes are named `names`.
    fn of_returned(table: &str, names: &[String], item: &Item) -> Option<Self> {
        let key: Option<BTreeMap<_, _>> =
            names.iter().map(|n| Some((n.clone(), item.get(n)?.as_s().ok()?.clone()))).collect();
        Some(ItemKey { table: table.to_string(), key: key? })
    }
}

/// BatchGetItem's limit of keys per request.
const BATCH_GET_LIMIT: usize = 100;
/// How long the first read waits for others to join its batch: short beside a round trip.
const BATCH_WINDOW: Duration = Duration::from_millis(3);

/// When a put or delete may go ahead.
#[derive(Debug, Clone)]
pub enum WriteCondition {
    /// Only if no item has this key yet.
    Absent { partition_key: &'static str },
    /// Only if the item exists and its `attribute` (the ownership marker) still holds
    /// `expected`, or is still absent when `expected` is `None`.
    Owner { partition_key: &'static str, attribute: &'static str, expected: Option<String> },
}

impl WriteCondition {
    /// The condition expression with its attribute names and values.
    fn expression(self) -> (String, HashMap<String, String>, Option<HashMap<String, AttributeValue>>) {
        let names = |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        match self {
            WriteCondition::Absent { partition_key } => {
                ("attribute_not_exists(#pk)".into(), names(&[("#pk", partition_key)]), None)
            }
            WriteCondition::Owner { partition_key, attribute, expected: Some(value) } => (
                "attribute_exists(#pk) AND #attr = :value".into(),
                names(&[("#pk", partition_key), ("#attr", attribute)]),
                Some(HashMap::from([(":value".to_string(), AttributeValue::S(value))])),
            ),
            WriteCondition::Owner { partition_key, attribute, expected: None } => (
                "attribute_exists(#pk) AND attribute_not_exists(#attr)".into(),
                names(&[("#pk", partition_key), ("#attr", attribute)]),
                None,
            ),
        }
    }
}

/// A read of one item that found no table to read (a `plan` before the first `apply`) is not
/// an AWS failure like the others: the item is not there either.
#[derive(Debug, thiserror::Error)]
pub enum GetError {
    #[error("table {0} does not exist")]
    TableMissing(String),
    #[error(transparent)]
    Aws(#[from] AwsError),
}

#[derive(Debug, thiserror::Error)]
pub enum PutError {
    #[error("the item changed since it was read")]
    ConditionFailed,
    #[error(transparent)]
    Aws(#[from] AwsError),
}

/// A table as AWS describes it: what adoption checks.
#[derive(Debug, Clone, PartialEq)]
pub struct ObservedTable {
    pub partition: (String, Option<KeyType>),
    pub sort: Option<(String, Option<KeyType>)>,
    /// Names of its global and local secondary indexes.
    pub indexes: Vec<String>,
}

impl Dynamo {
    pub fn new(client: aws_sdk_dynamodb::Client) -> Self {
        let batch_client = client.clone();
        let fetch: FetchBatch<ItemKey, Option<Item>, AwsError> =
            Arc::new(move |keys| Box::pin(batch_get(batch_client.clone(), keys)));
        Dynamo { client, reads: Coalescer::new(BATCH_GET_LIMIT, BATCH_WINDOW, fetch) }
    }

    /// A strongly consistent read, so a write just made is seen; batched with the concurrent
    /// reads of other reconciles.
    pub async fn get_item(&self, table: &str, key: Item) -> Result<Option<Item>, GetError> {
        let read = match ItemKey::of(table, &key) {
            Some(key) => self.reads.get(key).await,
            None => self.get_item_alone(table, key).await,
        };
        read.map_err(|e| match e.code.as_str() {
            "ResourceNotFoundException" => GetError::TableMissing(table.to_string()),
            _ => GetError::Aws(e),
        })
    }

    async fn get_item_alone(&self, table: &str, key: Item) -> Result<Option<Item>, AwsError> {
        let out = self
            .client
            .get_item()
            .table_name(table)
            .set_key(Some(key))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("GetItem", table, e))?;
        Ok(out.item)
    }

    pub async fn put_item(
        &self,
        _: Writes,
        table: &str,
        item: Item,
        condition: WriteCondition,
    ) -> Result<(), PutError> {
        let request = self.client.put_item().table_name(table).set_item(Some(item));
        let (expression, names, values) = condition.expression();
        let request = request
            .condition_expression(expression)
            .set_expression_attribute_names(Some(names))
            .set_expression_attribute_values(values);
        match request.send().await {
            Ok(_) => Ok(()),
            Err(e) if matches!(e.as_service_error(), Some(PutItemError::ConditionalCheckFailedException(_))) => {
                Err(PutError::ConditionFailed)
            }
            Err(e) => Err(AwsError::from_sdk("PutItem", table, e).into()),
        }
    }

    /// Deletes the item if `condition` holds; `Ok(false)` when it does not (gone, or not ours).
    pub async fn delete_item(
        &self,
        _: Writes,
        table: &str,
        key: Item,
        condition: WriteCondition,
    ) -> Result<bool, AwsError> {
        let request = self.client.delete_item().table_name(table).set_key(Some(key));
        let (expression, names, values) = condition.expression();
        let request = request
            .condition_expression(expression)
            .set_expression_attribute_names(Some(names))
            .set_expression_attribute_values(values);
        match request.send().await {
            Ok(_) => Ok(true),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_conditional_check_failed_exception()) => Ok(false),
            Err(e) => Err(AwsError::from_sdk("DeleteItem", table, e)),
        }
    }

    pub async fn describe_table(&self, name: &str) -> Result<Option<ObservedTable>, AwsError> {
        let out = match self.client.describe_table().table_name(name).send().await {
            Ok(out) => out,
            Err(e) if e.as_service_error().is_some_and(|s| s.is_resource_not_found_exception()) => return Ok(None),
            Err(e) => return Err(AwsError::from_sdk("DescribeTable", name, e)),
        };
        let Some(table) = out.table else { return Ok(None) };
        let type_of = |attribute: &str| {
            table.attribute_definitions().iter().find(|d| d.attribute_name() == attribute).and_then(|d| {
                match d.attribute_type() {
                    ScalarAttributeType::S => Some(KeyType::String),
                    ScalarAttributeType::N => Some(KeyType::Number),
                    _ => None,
                }
            })
        };
        let key = |role: KeyRole| {
            table
                .key_schema()
                .iter()
                .find(|k| *k.key_type() == role)
                .map(|k| (k.attribute_name().to_string(), type_of(k.attribute_name())))
        };
        Ok(Some(ObservedTable {
            partition: key(KeyRole::Hash).unwrap_or_default(),
            sort: key(KeyRole::Range),
            indexes: table
                .global_secondary_indexes()
                .iter()
                .filter_map(|g| g.index_name())
                .chain(table.local_secondary_indexes().iter().filter_map(|l| l.index_name()))
                .map(str::to_string)
                .collect(),
        }))
    }

    pub async fn create_table(&self, _: Writes, spec: &TableSpec) -> Result<(), AwsError> {
        let err = |e| AwsError::from_sdk("CreateTable", &spec.name, e);
        let build = |e: aws_sdk_dynamodb::error::BuildError| AwsError::local("CreateTable", &spec.name, "Client", e);
        let key = |name: &str, role: KeyRole| KeySchemaElement::builder().attribute_name(name).key_type(role).build();
        let mut keys = vec![key(spec.partition.name, KeyRole::Hash).map_err(build)?];
        if let Some(sort) = &spec.sort {
            keys.push(key(sort.name, KeyRole::Range).map_err(build)?);
        }
        let all = || Projection::builder().projection_type(ProjectionType::All).build();
        let mut request = self
            .client
            .create_table()
            .table_name(&spec.name)
            .billing_mode(BillingMode::PayPerRequest)
            .set_key_schema(Some(keys));
        for attribute in spec.key_attributes() {
            let kind = match attribute.kind {
                KeyType::String => ScalarAttributeType::S,
                KeyType::Number => ScalarAttributeType::N,
            };
            request = request.attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name(attribute.name)
                    .attribute_type(kind)
                    .build()
                    .map_err(build)?,
            );
        }
        let index_keys = |index: &crate::desired::tables::Index| {
            Ok::<_, AwsError>(vec![
                key(index.partition.name, KeyRole::Hash).map_err(build)?,
                key(index.sort.name, KeyRole::Range).map_err(build)?,
            ])
        };
        for index in &spec.global_indexes {
            let builder = GlobalSecondaryIndex::builder().index_name(index.name).projection(all());
            request = request
                .global_secondary_indexes(builder.set_key_schema(Some(index_keys(index)?)).build().map_err(build)?);
        }
        for index in &spec.local_indexes {
            let builder = LocalSecondaryIndex::builder().index_name(index.name).projection(all());
            request = request
                .local_secondary_indexes(builder.set_key_schema(Some(index_keys(index)?)).build().map_err(build)?);
        }
        request.send().await.map_err(err)?;
        // TTL can only be set on an ACTIVE table.
        self.wait_until_active(&spec.name).await
    }

    async fn wait_until_active(&self, table: &str) -> Result<(), AwsError> {
        let waited = self.client.wait_until_table_exists().table_name(table).wait(Duration::from_secs(120)).await;
        waited.map(|_| ()).map_err(|e| {
            AwsError::local("DescribeTable", table, "WaiterFailed", aws_sdk_dynamodb::error::DisplayErrorContext(e))
        })
    }

    /// The attribute TTL expires items by, if TTL is on (or being switched on).
    pub async fn ttl_attribute(&self, table: &str) -> Result<Option<String>, AwsError> {
        let out = self
            .client
            .describe_time_to_live()
            .table_name(table)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("DescribeTimeToLive", table, e))?;
        Ok(out.time_to_live_description.and_then(|d| match d.time_to_live_status {
            Some(TimeToLiveStatus::Enabled | TimeToLiveStatus::Enabling) => d.attribute_name,
            _ => None,
        }))
    }

    pub async fn enable_ttl(&self, _: Writes, table: &str, attribute: &str) -> Result<(), AwsError> {
        let spec = TimeToLiveSpecification::builder()
            .enabled(true)
            .attribute_name(attribute)
            .build()
            .map_err(|e| AwsError::local("UpdateTimeToLive", table, "Client", e))?;
        self.client
            .update_time_to_live()
            .table_name(table)
            .time_to_live_specification(spec)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("UpdateTimeToLive", table, e))?;
        Ok(())
    }
}

/// The batched reads of `keys`, one BatchGetItem per table; a key not returned is an absent
/// item.
async fn batch_get(
    client: aws_sdk_dynamodb::Client,
    keys: Vec<ItemKey>,
) -> HashMap<ItemKey, Result<Option<Item>, AwsError>> {
    let mut by_table: BTreeMap<String, Vec<ItemKey>> = BTreeMap::new();
    for key in keys {
        by_table.entry(key.table.clone()).or_default().push(key);
    }
    let mut answers = HashMap::new();
    for (table, keys) in by_table {
        let found = read_table(&client, &table, &keys).await;
        for key in keys {
            let answer = match &found {
                Ok(items) => Ok(items.get(&key).cloned()),
                Err(e) => Err(e.clone()),
            };
            answers.insert(key, answer);
        }
    }
    answers
}

/// The items of `table` among `keys` (strongly consistent), the keys DynamoDB leaves
/// unprocessed asked again after a short backoff.
async fn read_table(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    keys: &[ItemKey],
) -> Result<HashMap<ItemKey, Item>, AwsError> {
    let names: Vec<String> = keys.first().map(|k| k.key.keys().cloned().collect()).unwrap_or_default();
    let mut found = HashMap::new();
    let mut unread: Vec<Item> = keys.iter().map(ItemKey::to_item).collect();
    let mut pause = Duration::from_millis(50);
    for _ in 0..8 {
        let request = KeysAndAttributes::builder()
            .set_keys(Some(unread))
            .consistent_read(true)
            .build()
            .map_err(|e| AwsError::local("BatchGetItem", table, "Client", e))?;
        let out = client.batch_get_item().request_items(table, request).send().await;
        let mut out = out.map_err(|e| AwsError::from_sdk("BatchGetItem", table, e))?;
        for item in out.responses.as_mut().and_then(|r| r.remove(table)).unwrap_or_default() {
            if let Some(key) = ItemKey::of_returned(table, &names, &item) {
                found.insert(key, item);
            }
        }
        unread = out.unprocessed_keys.and_then(|mut u| u.remove(table)).map(|k| k.keys).unwrap_or_default();
        if unread.is_empty() {
            return Ok(found);
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(2));
    }
    let message = "keys still unprocessed after 8 attempts";
    Err(AwsError::local("BatchGetItem", table, "ProvisionedThroughputExceededException", message))
}
