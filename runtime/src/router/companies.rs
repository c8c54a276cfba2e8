//! Company lookup for the router: one GetItem per company + project, cached for a short TTL so
//! the hot path is a single SQS send.
use super::error::RouterError;
use crate::wire::company::{PARTITION_KEY, SORT_KEY};
use crate::wire::{CompanyRecord, Item};
use aws_sdk_dynamodb::types::AttributeValue;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// A company as the router uses it: the typed record, and the whole item as JSON for the
/// context object's `company_data_payload`.
#[derive(Debug)]
pub struct Company {
    pub record: CompanyRecord,
    pub payload: serde_json::Value,
}

type Entry = (Instant, Option<Arc<Company>>);

/// DynamoDB's key size limits: a longer id cannot name a record (and AWS would answer a
/// ValidationException, not "absent").
const MAX_PARTITION_KEY_BYTES: usize = 2048;
const MAX_SORT_KEY_BYTES: usize = 1024;
/// Cached pairs, absences included; the key check comes after the lookup, so unauthenticated
/// callers choose the pairs, and the cache must not grow with them.
const MAX_CACHED: usize = 10_000;

pub struct Companies {
    client: aws_sdk_dynamodb::Client,
    table: String,
    ttl: Duration,
    cache: RwLock<HashMap<(String, String), Entry>>,
}

impl Companies {
    pub fn new(client: aws_sdk_dynamodb::Client, table: String, ttl: Duration) -> Self {
        Companies { client, table, ttl, cache: RwLock::default() }
    }

    /// `None` when no record exists for the pair (absence is cached too).
    pub async fn get(&self, company_id: &str, project_id: &str) -> Result<Option<Arc<Company>>, RouterError> {
        if company_id.len() > MAX_PARTITION_KEY_BYTES || project_id.len() > MAX_SORT_KEY_BYTES {
            return Ok(None);
        }
        let key = (company_id.to_string(), project_id.to_string());
        if let Some((at, company)) = self.cache.read().ok().and_then(|c| c.get(&key).cloned()) {
            if at.elapsed() < self.ttl {
                return Ok(company);
            }
        }
        let item: Item = [
            (PARTITION_KEY.to_string(), AttributeValue::S(key.0.clone())),
            (SORT_KEY.to_string(), AttributeValue::S(key.1.clone())),
        ]
        .into();
        let out = self.client.get_item().table_name(&self.table).set_key(Some(item)).send().await.map_err(|e| {
            tracing::error!(error = %aws_sdk_dynamodb::error::DisplayErrorContext(&e), table = %self.table, "GetItem failed");
            RouterError::database_error()
        })?;
        let company = match out.item {
            None => None,
            Some(item) => {
                let mut payload: serde_json::Value = serde_dynamo::from_item(item.clone()).map_err(|e| {
                    tracing::error!(error = %e, company_id, project_id, "company item is not JSON-representable");
                    RouterError::database_error()
                })?;
                let record = CompanyRecord::from_item(item).map_err(|e| {
                    tracing::error!(error = %e, company_id, project_id, "company item does not match the record format");
                    RouterError::database_error()
                })?;
                // The key's hash is the router's business only; it never travels on the queue.
                if let Some(fields) = payload.as_object_mut() {
                    fields.remove(crate::wire::company::API_KEY_HASH);
                }
                Some(Arc::new(Company { record, payload }))
            }
        };
        if let Ok(mut cache) = self.cache.write() {
            if cache.len() >= MAX_CACHED {
                cache.retain(|_, (at, _)| at.elapsed() < self.ttl);
                if cache.len() >= MAX_CACHED {
                    cache.clear();
                }
            }
            cache.insert(key, (Instant::now(), company.clone()));
        }
        Ok(company)
    }
}
