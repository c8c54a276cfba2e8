//! How many of a company's conversations are open, for its `concurrent_conversations`.
use super::{aws_failure, status, ConversationStore};
use crate::shared::failure::Failure;
use aws_sdk_dynamodb::types::{AttributeValue, Select};
use multicomms_wire::conversation::{attribute, ConversationStatus};

impl ConversationStore {
    /// The company project's conversations that are open: not over (`task_complete` 0), not
    /// failed before their first message went out, not ended by an opt-out nor closed by an agent, and active since
    /// `since` (an RFC 3339 time: the start of the inactivity period). A paginated count on the
    /// company index, which reads every conversation the project has in the table.
    pub async fn count_open(&self, company_id: &str, project_id: &str, since: &str) -> Result<u64, Failure> {
        let pages = self
            .project_query(company_id, project_id)
            .filter_expression(
                "#complete = :zero AND #updated > :since AND NOT begins_with(#status, :failed) AND #status <> :opted_out \
                 AND attribute_not_exists(#closed)",
            )
            .expression_attribute_names("#complete", attribute::TASK_COMPLETE)
            .expression_attribute_names("#updated", attribute::UPDATED_AT)
            .expression_attribute_names("#status", attribute::STATUS)
            .expression_attribute_names("#closed", attribute::CLOSED_AT)
            .expression_attribute_values(":zero", AttributeValue::N("0".into()))
            .expression_attribute_values(":since", AttributeValue::S(since.into()))
            .expression_attribute_values(":failed", AttributeValue::S("failed".into()))
            .expression_attribute_values(":opted_out", status(ConversationStatus::RecipientOptedOut))
            .select(Select::Count)
            .into_paginator()
            .send();
        let counts: Vec<_> = pages.collect::<Result<_, _>>().await.map_err(|e| aws_failure("Query", &e))?;
        Ok(counts.iter().map(|page| page.count() as u64).sum())
    }
}
