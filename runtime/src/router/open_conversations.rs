//! A company's `concurrentConversations`: a first message is accepted only while fewer of the
//! company project's conversations are open ([`ConversationStore::count_open`]). Counting reads
//! the project's conversations, so each router replica counts at most every [`FRESH_FOR`] per
//! project and adds what it accepted since: together, replicas may go over the limit by what they
//! accept within that time.
use super::error::RouterError;
use crate::shared::conversations::ConversationStore;
use multicomms_wire::CompanyRecord;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a count is used before the table is read again.
pub const FRESH_FOR: Duration = Duration::from_secs(10);

pub struct OpenConversations {
    store: ConversationStore,
    /// Per company and project: when counted, and the count plus what was accepted since.
    counts: Mutex<HashMap<(String, String), (Instant, u64)>>,
}

impl OpenConversations {
    pub fn new(store: ConversationStore) -> Self {
        OpenConversations { store, counts: Mutex::default() }
    }

    /// Counts one more conversation for `company`, or refuses it at the limit.
    pub async fn admit(&self, company: &CompanyRecord, now: Instant) -> Result<(), RouterError> {
        let tenant = (company.company_id.clone(), company.project_id.clone());
        let cached = self.counts.lock().ok().and_then(|c| c.get(&tenant).copied());
        let open = match cached.filter(|(at, _)| now.duration_since(*at) < FRESH_FOR) {
            Some((_, open)) => open,
            None => {
                let days = chrono::Duration::days(i64::from(company.inactivity_days()));
                let since = (chrono::Utc::now() - days).to_rfc3339_opts(chrono::SecondsFormat::Micros, false);
                let counted = self.store.count_open(&tenant.0, &tenant.1, &since).await.map_err(|e| {
                    tracing::error!(error = %e, "open conversations not counted");
                    RouterError::database_error()
                })?;
                if let Ok(mut counts) = self.counts.lock() {
                    counts.insert(tenant.clone(), (now, counted));
                }
                counted
            }
        };
        let limit = company.rate_limits.concurrent_conversations;
        if open >= u64::from(limit) {
            return Err(RouterError::concurrent_conversations_exceeded(limit));
        }
        if let Ok(mut counts) = self.counts.lock() {
            counts.entry(tenant).and_modify(|(_, n)| *n += 1);
        }
        Ok(())
    }
}
