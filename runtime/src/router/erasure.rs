//! `DELETE /recipients/{channel}/{address}?company_id=…&project_id=…` with the company's
//! `x-api-key`: erases what the company holds about a recipient on a channel (their
//! conversation records, the pointers their answers were routed by, their staged messages) and
//! answers what it removed. The opt-out, a hash of the recipient with the company and channel,
//! is kept: an erasure must not re-open messaging to someone who said STOP.
use super::accept::with_key;
use super::error::RouterError;
use crate::replies::staging::Staging;
use crate::shared::companies::Companies;
use crate::shared::conversations::{to_erase, ConversationStore};
use crate::shared::opt_outs::OptOuts;
use multicomms_wire::ChannelKind;
use serde_json::{json, Value};

pub const ERASURE_PATH: &str = "/recipients/{channel}/{address}";

/// What the erasure endpoint reads and deletes through.
pub struct Erasure<'a> {
    pub companies: &'a Companies,
    pub store: &'a ConversationStore,
    pub staging: &'a Staging,
    pub opt_outs: &'a OptOuts,
}

/// The request: the path's channel and address, the query's company, the key.
pub struct EraseRequest<'a> {
    pub channel: &'a str,
    pub address: &'a str,
    pub query: Option<&'a str>,
    pub api_key: Option<&'a str>,
}

impl Erasure<'_> {
    /// Erases the recipient; the success envelope, or the catalogue's error.
    pub async fn erase(&self, request: EraseRequest<'_>) -> Result<Value, RouterError> {
        let api_key = request.api_key.filter(|k| !k.is_empty()).ok_or_else(RouterError::missing_api_key)?;
        let pairs: Vec<(String, String)> =
            request.query.and_then(|q| serde_urlencoded::from_str(q).ok()).unwrap_or_default();
        let param =
            |name: &str| pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()).filter(|v| !v.is_empty());
        let (Some(company_id), Some(project_id)) = (param("company_id"), param("project_id")) else {
            return Err(RouterError::missing_query_identifiers());
        };
        let channel: ChannelKind =
            request.channel.parse().map_err(|_| RouterError::unsupported_channel(request.channel))?;
        let found = self.companies.get(&company_id, &project_id).await?;
        let company = with_key(found.as_deref(), api_key)?;
        let recipient = match channel {
            ChannelKind::Email => request.address.trim().to_string(),
            _ => crate::shared::phone::e164(request.address, company.record.default_region.as_deref())
                .map_err(|why| RouterError::unreadable_number(channel.recipient_field(), &why))?,
        };
        let database = |e: crate::shared::failure::Failure| {
            tracing::error!(error = %e, "the erasure did not finish; a retry erases the rest");
            RouterError::database_error()
        };
        let items = self.store.recipient_items(&recipient).await.map_err(database)?;
        let erase = to_erase(&items, &company_id, channel);
        let mut staged = 0;
        // Staged messages first, then the records: a retry after a failure still finds the
        // conversations whose messages are left.
        for key in &erase.conversations {
            staged += self.staging.erase(&key.conversation_id).await.map_err(database)?;
        }
        for key in erase.pointers.iter().chain(&erase.conversations) {
            self.store.delete(key).await.map_err(database)?;
        }
        let opted_out = self.opt_outs.opted_out(&company_id, channel, &recipient).await.map_err(database)?;
        tracing::info!(
            company_id,
            %channel,
            conversations = erase.conversations.len(),
            staged_messages = staged,
            "a recipient was erased"
        );
        Ok(json!({
            "status": "success",
            "message": "The recipient's conversations and staged messages with this company are erased",
            "channel": channel.as_str(),
            "recipient": recipient,
            "erased": {"conversations": erase.conversations.len(), "staged_messages": staged},
            "opt_out_kept": opted_out,
        }))
    }
}
