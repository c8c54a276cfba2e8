//! The opt-outs table: who said STOP to which company on which channel. The webhook writes it
//! (STOP, START); the router reads it before queueing a first message, and both processors
//! before they send. Rows are keyed by [`recipient_key`], a hash: the table names no one.
use super::conversations::aws_failure;
use super::failure::Failure;
use aws_sdk_dynamodb::types::AttributeValue;
use multicomms_wire::opt_out::{recipient_key, KEYWORD, OPTED_OUT_AT, RECIPIENT_KEY};
use multicomms_wire::timestamp::now;
use multicomms_wire::ChannelKind;

#[derive(Clone)]
pub struct OptOuts {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl OptOuts {
    pub fn new(client: aws_sdk_dynamodb::Client, table: String) -> Self {
        OptOuts { client, table }
    }

    /// Whether `address` opted out of `company_id`'s messages on `channel` (a consistent read:
    /// a STOP acknowledged before this call is seen).
    pub async fn opted_out(&self, company_id: &str, channel: ChannelKind, address: &str) -> Result<bool, Failure> {
        let key = AttributeValue::S(recipient_key(company_id, channel, address));
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(RECIPIENT_KEY, key)
            .consistent_read(true)
            .projection_expression("#key")
            .expression_attribute_names("#key", RECIPIENT_KEY)
            .send()
            .await
            .map_err(|e| aws_failure("GetItem", &e))?;
        Ok(out.item.is_some())
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
