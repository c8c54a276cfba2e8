//! Company lookup for the router and the replies flow: one read per company + project (concurrent
//! misses share a batched read), cached for a short TTL so the hot path is a single SQS send.
//!
//! Anyone may name any company id (the key is checked against the record, so the record comes
//! first), which makes the ids a caller invents the cache's biggest risk. Companies found and
//! pairs found absent are therefore cached apart, each evicting its least recently used entry:
//! made-up ids only ever push out other made-up ids, never a real company, and an id asked for
//! again costs no read until its entry expires.
use crate::shared::batched::{batch_get, ItemKey};
use crate::shared::failure::Failure;
use lru::LruCache;
use multicomms_service::coalesce::{Coalescer, FetchBatch, Unanswered};
use multicomms_wire::company::{API_KEY_HASH, PARTITION_KEY, SORT_KEY};
use multicomms_wire::CompanyRecord;
use std::collections::HashMap;
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
#[derive(Debug, Clone, Copy)]
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

impl From<Unanswered> for LookupError {
    fn from(_: Unanswered) -> Self {
        LookupError::Read
    }
}

pub struct Companies {
    /// Reads of companies missing from the cache: concurrent asks for one company share one
    /// read, and asks for several go as one BatchGetItem (a cold pod's first burst is one call).
    reads: Coalescer<Pair, Option<Arc<Company>>, LookupError>,
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
        let fetch: FetchBatch<Pair, Option<Arc<Company>>, LookupError> =
            Arc::new(move |pairs| Box::pin(read(client.clone(), table.clone(), pairs)));
        Companies {
            reads: Coalescer::new(BATCH_GET_LIMIT, READ_WINDOW, fetch),
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
        let company = self.reads.get(pair.clone()).await?;
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
}

/// BatchGetItem's limit, and how long a miss waits for others to join its read.
const BATCH_GET_LIMIT: usize = 100;
const READ_WINDOW: Duration = Duration::from_millis(2);

/// The companies of `pairs`, in one batched read.
async fn read(
    client: aws_sdk_dynamodb::Client,
    table: String,
    pairs: Vec<Pair>,
) -> HashMap<Pair, Result<Option<Arc<Company>>, LookupError>> {
    let keys: Vec<ItemKey> =
        pairs.iter().map(|(c, p)| ItemKey::new(&table, &[(PARTITION_KEY, c), (SORT_KEY, p)])).collect();
    let mut items = batch_get(client, keys.clone()).await;
    let mut answers = HashMap::new();
    for (pair, key) in pairs.into_iter().zip(keys) {
        let answer = match items.remove(&key) {
            Some(Ok(item)) => item.map(|item| parse(&pair, item).map(Arc::new)).transpose(),
            Some(Err(e)) => {
                tracing::error!(error = %e, table = %table, "company read failed");
                Err(LookupError::Read)
            }
            None => Err(LookupError::Read),
        };
        answers.insert(pair, answer);
    }
    answers
}

fn parse((company_id, project_id): &Pair, item: multicomms_wire::Item) -> Result<Company, LookupError> {
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
    Ok(Company { record, payload })
}
