//! Company lookup for the router and the replies flow: one GetItem per company + project, cached for a short TTL so
//! the hot path is a single SQS send.
//!
//! Anyone may name any company id (the key is checked against the record, so the record comes
//! first), which makes the ids a caller invents the cache's biggest risk. Companies found and
//! pairs found absent are therefore cached apart, each evicting its least recently used entry:
//! made-up ids only ever push out other made-up ids, never a real company, and an id asked for
//! again costs no read until its entry expires.
use crate::shared::failure::Failure;
use lru::LruCache;
use multicomms_wire::company::{record_key, API_KEY_HASH};
use multicomms_wire::CompanyRecord;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A company as the router uses it: the typed record, and the whole item as JSON for the
/// context object's `company_data_payload`.
#[derive(Debug)]
pub struct Company {
    pub record: CompanyRecord,
    pub payload: serde_json::Value,
}

/// Why a company could not be looked up (its detail is logged where it happens; the router
/// answers `DATABASE_ERROR`, the replies flow retries).
#[derive(Debug)]
pub enum LookupError {
    /// DynamoDB did not answer.
    Read,
    /// The item is not in the record format the operator writes.
    Malformed,
}

impl std::fmt::Display for LookupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LookupError::Read => "the company record could not be read",
            LookupError::Malformed => "the company record is not in the record format",
        })
    }
}

impl From<LookupError> for Failure {
    /// Both may pass (DynamoDB recovers; the operator rewrites the record on its next sync).
    fn from(error: LookupError) -> Self {
        Failure::Transient(error.to_string())
    }
}

/// (company_id, project_id).
type Pair = (String, String);

/// DynamoDB's key size limits: a longer id cannot name a record (and AWS would answer a
/// ValidationException, not "absent").
const MAX_PARTITION_KEY_BYTES: usize = 2048;
const MAX_SORT_KEY_BYTES: usize = 1024;
/// Entries kept in each cache: more companies than a deployment has, and as many absent pairs.
pub const DEFAULT_CAPACITY: NonZeroUsize = NonZeroUsize::new(10_000).expect("non-zero");

pub struct Companies {
    client: aws_sdk_dynamodb::Client,
    table: String,
    ttl: Duration,
    found: Mutex<LruCache<Pair, (Instant, Arc<Company>)>>,
    absent: Mutex<LruCache<Pair, Instant>>,
}

impl Companies {
    pub fn new(client: aws_sdk_dynamodb::Client, table: String, ttl: Duration) -> Self {
        Self::with_capacity(client, table, ttl, DEFAULT_CAPACITY)
    }

    /// `capacity` entries in each of the two caches.
    pub fn with_capacity(
        client: aws_sdk_dynamodb::Client,
        table: String,
        ttl: Duration,
        capacity: NonZeroUsize,
    ) -> Self {
        Companies {
            client,
            table,
            ttl,
            found: Mutex::new(LruCache::new(capacity)),
            absent: Mutex::new(LruCache::new(capacity)),
        }
    }

    /// `None` when no record exists for the pair (absence is cached too).
    pub async fn get(&self, company_id: &str, project_id: &str) -> Result<Option<Arc<Company>>, LookupError> {
        // DynamoDB refuses an empty or oversized key: no such company.
        let empty = company_id.is_empty() || project_id.is_empty();
        if empty || company_id.len() > MAX_PARTITION_KEY_BYTES || project_id.len() > MAX_SORT_KEY_BYTES {
            return Ok(None);
        }
        let pair = (company_id.to_string(), project_id.to_string());
        if let Some(cached) = self.cached(&pair) {
            return Ok(cached);
        }
        let company = self.read(company_id, project_id).await?;
        match &company {
            Some(company) => {
                if let Ok(mut found) = self.found.lock() {
                    found.put(pair, (Instant::now(), company.clone()));
                }
            }
            None => {
                if let Ok(mut absent) = self.absent.lock() {
                    absent.put(pair, Instant::now());
                }
            }
        }
        Ok(company)
    }

    /// `Some(answer)` when a fresh entry knows it.
    fn cached(&self, pair: &Pair) -> Option<Option<Arc<Company>>> {
        let fresh = |at: &Instant| at.elapsed() < self.ttl;
        if let Some((_, company)) = self.found.lock().ok()?.get(pair).filter(|(at, _)| fresh(at)) {
            return Some(Some(company.clone()));
        }
        self.absent.lock().ok()?.get(pair).filter(|at| fresh(at)).map(|_| None)
    }

    async fn read(&self, company_id: &str, project_id: &str) -> Result<Option<Arc<Company>>, LookupError> {
        let key = record_key(company_id, project_id);
        let out = self.client.get_item().table_name(&self.table).set_key(Some(key)).send().await.map_err(|e| {
            tracing::error!(error = %aws_sdk_dynamodb::error::DisplayErrorContext(&e), table = %self.table, "GetItem failed");
            LookupError::Read
        })?;
        let Some(item) = out.item else { return Ok(None) };
        let mut payload: serde_json::Value = serde_dynamo::from_item(item.clone()).map_err(|e| {
            tracing::error!(error = %e, company_id, project_id, "company item is not JSON-representable");
            LookupError::Malformed
        })?;
        let record = CompanyRecord::from_item(item).map_err(|e| {
            tracing::error!(error = %e, company_id, project_id, "company item does not match the record format");
            LookupError::Malformed
        })?;
        // The key's hash is the router's business only; it never travels on the queue.
        if let Some(fields) = payload.as_object_mut() {
            fields.remove(API_KEY_HASH);
        }
        Ok(Some(Arc::new(Company { record, payload })))
    }
}
