//! The opt-outs table: who said STOP to which company on which channel. The webhook writes it
//! (STOP, START); the router reads it before queueing a first message, and both processors
//! before they send. Rows are keyed by [`recipient_key`], a hash: the table names no one.
use super::batched::{batch_get, ItemKey};
use super::conversations::aws_failure;
use super::failure::Failure;
use aws_sdk_dynamodb::types::AttributeValue;
use multicomms_service::coalesce::{Coalescer, FetchBatch};
use multicomms_wire::opt_out::{recipient_key, KEYWORD, OPTED_OUT_AT, RECIPIENT_KEY};
use multicomms_wire::timestamp::now;
use multicomms_wire::ChannelKind;
use std::sync::Arc;

#[derive(Clone)]
pub struct OptOuts {
    client: aws_sdk_dynamodb::Client,
    table: String,
    /// The checks of concurrent sends, read together (consistently) in one BatchGetItem.
    reads: Coalescer<String, bool, Failure>,
}

/// BatchGetItem's limit, and how long a check waits for others to join its read.
const BATCH_GET_LIMIT: usize = 100;
const READ_WINDOW: std::time::Duration = std::time::Duration::from_millis(2);

impl OptOuts {
    pub fn new(client: aws_sdk_dynamodb::Client, table: String) -> Self {
        let (reader, read_table) = (client.clone(), table.clone());
        let fetch: FetchBatch<String, bool, Failure> = Arc::new(move |keys| {
            let (client, table) = (reader.clone(), read_table.clone());
            Box::pin(async move {
                let items: Vec<ItemKey> = keys.iter().map(|k| ItemKey::new(&table, &[(RECIPIENT_KEY, k)])).collect();
                let mut found = batch_get(client, items.clone()).await;
                keys.into_iter()
                    .zip(items)
                    .map(|(key, item)| {
                        let answer = found.remove(&item).unwrap_or(Ok(None)).map(|row| row.is_some());
                        (key, answer)
                    })
                    .collect()
            })
        });
        OptOuts { client, table, reads: Coalescer::new(BATCH_GET_LIMIT, READ_WINDOW, fetch) }
    }

    /// Whether `address` opted out of `company_id`'s messages on `channel` (a consistent read:
    /// a STOP acknowledged before this call is seen).
    pub async fn opted_out(&self, company_id: &str, channel: ChannelKind, address: &str) -> Result<bool, Failure> {
        self.reads.get(recipient_key(company_id, channel, address)).await
    }

    /// Records the opt-out (again, if it was: the latest word and time stand).
    pub async fn opt_out(
        &self,
        company_id: &str,
        channel: ChannelKind,
        address: &str,
        word: &str,
    ) -> Result<(), Failure> {
        self.client
            .put_item()
            .table_name(&self.table)
            .item(RECIPIENT_KEY, AttributeValue::S(recipient_key(company_id, channel, address)))
            .item(OPTED_OUT_AT, AttributeValue::S(now()))
            .item(KEYWORD, AttributeValue::S(word.to_string()))
            .send()
            .await
            .map_err(|e| aws_failure("PutItem", &e))?;
        Ok(())
    }

    /// Removes the opt-out; whether there was one (an opt-in word from someone never opted out
    /// is an ordinary answer, such as "yes").
    pub async fn opt_in(&self, company_id: &str, channel: ChannelKind, address: &str) -> Result<bool, Failure> {
        let out = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key(RECIPIENT_KEY, AttributeValue::S(recipient_key(company_id, channel, address)))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllOld)
            .send()
            .await
            .map_err(|e| aws_failure("DeleteItem", &e))?;
        Ok(out.attributes.is_some_and(|old| !old.is_empty()))
    }
}
