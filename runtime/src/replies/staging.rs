//! The replies flow's own AWS state: the stage table (fragments waiting for their turn), the
//! trigger lock (one delayed trigger per window, replies-engine §2.3), the channels' replies
//! queues and the human hand-off queue. Used by the webhook (writer) and the reply processor
//! (reader, and writer of the next turn's trigger).
use crate::shared::conversations::{aws_failure, put_if_absent, query_all, Put};
use crate::shared::failure::Failure;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::{AttributeValue, DeleteRequest, ReturnValuesOnConditionCheckFailure, WriteRequest};
use multicomms_wire::conversation::{ConversationKey, CONVERSATION_ID, EXPIRES_AT, MESSAGE_SID};
use multicomms_wire::replies::{
    in_order, Fragment, HandOffMessage, Trigger, REPLAY_WINDOW_SECONDS, RETRY_GRACE_SECONDS, SEEN_AT, TRIGGER_ID,
    TRIGGER_LOCK_BUFFER_SECONDS,
};
use multicomms_wire::timestamp::epoch_seconds;
use multicomms_wire::{ChannelKind, Item, Naming};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// BatchWriteItem's limit of requests per call.
const BATCH_WRITE_LIMIT: usize = 25;
/// SQS's largest message is 256 KiB; this leaves room for the attributes.
const MAX_SQS_MESSAGE_BYTES: usize = 240 * 1024;

/// `message` as one or more messages of at most `limit` bytes of JSON each, splitting its
/// recipient messages between them in order (one alone too large is cut to fit).
fn split_to_fit(message: HandOffMessage, limit: usize) -> Vec<HandOffMessage> {
    let size = |m: &HandOffMessage| serde_json::to_string(m).map_or(usize::MAX, |s| s.len());
    if size(&message) <= limit {
        return vec![message];
    }
    if message.messages.len() <= 1 {
        let mut cut = message;
        for fragment in &mut cut.messages {
            let end = (0..=limit / 2).rev().find(|i| fragment.text.is_char_boundary(*i)).unwrap_or(0);
            fragment.text.truncate(end);
            fragment.text.push_str(" [cut to fit the hand-off queue]");
        }
        return vec![cut];
    }
    let mut second = message.clone();
    let mut first = message;
    second.messages = first.messages.split_off(first.messages.len() / 2);
    let mut parts = split_to_fit(first, limit);
    parts.extend(split_to_fit(second, limit));
    parts
}

pub struct Staging {
    dynamodb: aws_sdk_dynamodb::Client,
    sqs: aws_sdk_sqs::Client,
    naming: Naming,
    /// Queue URLs by name, looked up once.
    queue_urls: Mutex<HashMap<String, String>>,
}

impl Staging {
    pub fn new(sdk: &aws_config::SdkConfig, naming: Naming) -> Self {
        Staging {
            dynamodb: aws_sdk_dynamodb::Client::new(sdk),
            sqs: aws_sdk_sqs::Client::new(sdk),
            naming,
            queue_urls: Mutex::default(),
        }
    }

    /// Stages a fragment once: a retried webhook finds its row and changes nothing. True when
    /// the row is new.
    pub async fn stage(&self, fragment: &Fragment) -> Result<bool, Failure> {
        let item = serde_dynamo::to_item(fragment).map_err(|e| Failure::Permanent(format!("fragment: {e}")))?;
        let table = self.naming.replies_stage_table();
        Ok(matches!(put_if_absent(&self.dynamodb, &table, item).await?, Put::Written))
    }

    /// Remembers a `MessageSid` under `seen` (its [`multicomms_wire::replies::seen_key`]) for
    /// the replay window; true when it was first seen longer ago than [`RETRY_GRACE_SECONDS`]:
    /// a replay. A repeat within the grace is Twilio retrying (perhaps a message whose first
    /// attempt failed), which goes on: staging and the conversation's messages keep it answered
    /// once.
    pub async fn is_replay(&self, seen: &str) -> Result<bool, Failure> {
        let now = epoch_seconds();
        let item = HashMap::from([
            (CONVERSATION_ID.to_string(), AttributeValue::S(seen.into())),
            (SEEN_AT.to_string(), AttributeValue::N(now.to_string())),
            (EXPIRES_AT.to_string(), AttributeValue::N((now + REPLAY_WINDOW_SECONDS).to_string())),
        ]);
        let table = self.naming.replies_trigger_lock_table();
        match put_if_absent(&self.dynamodb, &table, item).await? {
            Put::Written => Ok(false),
            Put::Existed(seen) => {
                let seen_at = match seen.get(SEEN_AT) {
                    Some(AttributeValue::N(at)) => at.parse().unwrap_or(now),
                    _ => now,
                };
                Ok(now.saturating_sub(seen_at) > RETRY_GRACE_SECONDS)
            }
        }
    }

    /// The conversation's fragments not yet expired, in the order they were sent (a consistent
    /// read: a fragment staged before this call is in it).
    pub async fn staged(&self, conversation_id: &str) -> Result<Vec<Fragment>, Failure> {
        let query = self
            .dynamodb
            .query()
            .table_name(self.naming.replies_stage_table())
            .key_condition_expression("#id = :id")
            .expression_attribute_names("#id", CONVERSATION_ID)
            .expression_attribute_values(":id", AttributeValue::S(conversation_id.into()))
            .consistent_read(true);
        let items = query_all(query).await?;
        let now = epoch_seconds();
        let mut fragments = Vec::with_capacity(items.len());
        for item in items {
            match serde_dynamo::from_item::<_, Fragment>(item) {
                Ok(fragment) if fragment.expires_at > now && !fragment.handed_off => fragments.push(fragment),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "a staged row is not a fragment; left for its TTL"),
            }
        }
        Ok(in_order(fragments))
    }

    /// Every fragment still waiting for a turn that was staged before `before_ms` (epoch ms), on
    /// any channel: the sweep's candidates. A scan, filtered; the table holds only unanswered
    /// fragments and a day of hand-off markers, so it stays small.
    pub async fn staged_before(&self, before_ms: u64) -> Result<Vec<Fragment>, Failure> {
        let items = self
            .dynamodb
            .scan()
            .table_name(self.naming.replies_stage_table())
            .filter_expression("#received < :before AND attribute_not_exists(#handed_off)")
            .expression_attribute_names("#received", "received_at_ms")
            .expression_attribute_names("#handed_off", "handed_off")
            .expression_attribute_values(":before", AttributeValue::N(before_ms.to_string()))
            .into_paginator()
            .items()
            .send()
            .collect::<Result<Vec<_>, _>>()
            .await
            .map_err(|e| aws_failure("Scan", &e))?;
        let now = epoch_seconds();
        let fragments = items.into_iter().filter_map(|item| serde_dynamo::from_item::<_, Fragment>(item).ok());
        Ok(fragments.filter(|f| f.expires_at > now && !f.handed_off).collect())
    }

    /// Deletes exactly these fragments' rows.
    pub async fn remove(&self, fragments: &[Fragment]) -> Result<(), Failure> {
        self.delete_rows(fragments.iter().map(Fragment::stage_key).collect()).await
    }

    /// Deletes every row staged for the conversation (its fragments and hand-off markers), for
    /// an erasure; how many there were.
    pub async fn erase(&self, conversation_id: &str) -> Result<usize, Failure> {
        let query = self
            .dynamodb
            .query()
            .table_name(self.naming.replies_stage_table())
            .key_condition_expression("#id = :id")
            .projection_expression("#id, #sid")
            .expression_attribute_names("#id", CONVERSATION_ID)
            .expression_attribute_names("#sid", MESSAGE_SID)
            .expression_attribute_values(":id", AttributeValue::S(conversation_id.into()))
            .consistent_read(true);
        let keys = query_all(query).await?;
        let count = keys.len();
        self.delete_rows(keys).await?;
        Ok(count)
    }

    async fn delete_rows(&self, keys: Vec<Item>) -> Result<(), Failure> {
        let table = self.naming.replies_stage_table();
        for chunk in keys.chunks(BATCH_WRITE_LIMIT) {
            let mut requests: Vec<WriteRequest> = chunk
                .iter()
                .filter_map(|key| DeleteRequest::builder().set_key(Some(key.clone())).build().ok())
                .map(|d| WriteRequest::builder().delete_request(d).build())
                .collect();
            for attempt in 0..5 {
                if requests.is_empty() {
                    break;
                }
                if attempt > 0 {
                    tokio::time::sleep(Duration::from_millis(50 << attempt)).await;
                }
                let out = self
                    .dynamodb
                    .batch_write_item()
                    .request_items(&table, requests)
                    .send()
                    .await
                    .map_err(|e| aws_failure("BatchWriteItem", &e))?;
                requests = out.unprocessed_items.and_then(|mut u| u.remove(&table)).unwrap_or_default();
            }
            if !requests.is_empty() {
                return Err(Failure::Transient(format!("{} staged rows not deleted", requests.len())));
            }
        }
        Ok(())
    }

    /// One delayed trigger per window: takes the conversation's trigger lock (absent or
    /// expired) and sends the trigger with `window` as its delay. `false` when a trigger is
    /// already on its way. A failed send gives the lock back, so the next attempt sends.
    pub async fn trigger(
        &self,
        channel: ChannelKind,
        key: &ConversationKey,
        window: Duration,
    ) -> Result<bool, Failure> {
        let trigger_id = uuid::Uuid::new_v4().to_string();
        let now = epoch_seconds();
        let lock = self
            .dynamodb
            .put_item()
            .table_name(self.naming.replies_trigger_lock_table())
            .item(CONVERSATION_ID, AttributeValue::S(key.conversation_id.clone()))
            .item(TRIGGER_ID, AttributeValue::S(trigger_id.clone()))
            .item(EXPIRES_AT, AttributeValue::N((now + window.as_secs() + TRIGGER_LOCK_BUFFER_SECONDS).to_string()))
            .condition_expression("attribute_not_exists(#id) OR #expires < :now")
            .expression_attribute_names("#id", CONVERSATION_ID)
            .expression_attribute_names("#expires", EXPIRES_AT)
            .expression_attribute_values(":now", AttributeValue::N(now.to_string()))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match lock {
            Ok(_) => {}
            Err(e) => match e.as_service_error() {
                Some(PutItemError::ConditionalCheckFailedException(held)) => {
                    // An SDK retry of a put that landed finds our own lock: still ours to send.
                    let ours =
                        held.item().and_then(|i| i.get(TRIGGER_ID)) == Some(&AttributeValue::S(trigger_id.clone()));
                    if !ours {
                        return Ok(false);
                    }
                }
                _ => return Err(aws_failure("PutItem", &e)),
            },
        }
        let trigger = Trigger {
            conversation_id: key.conversation_id.clone(),
            primary_channel: key.primary_channel.clone(),
            trigger_id: Some(trigger_id.clone()),
        };
        let body = serde_json::to_string(&trigger).map_err(|e| Failure::Permanent(format!("trigger: {e}")))?;
        let sent = self.send(&self.naming.replies_queue(channel), body, window).await;
        if let Err(failure) = sent {
            self.release_lock(&key.conversation_id, &trigger_id).await;
            return Err(failure);
        }
        Ok(true)
    }

    /// Deletes the trigger lock if it is still `trigger_id`'s (a newer trigger keeps its own).
    pub async fn release_lock(&self, conversation_id: &str, trigger_id: &str) {
        let deleted = self
            .dynamodb
            .delete_item()
            .table_name(self.naming.replies_trigger_lock_table())
            .key(CONVERSATION_ID, AttributeValue::S(conversation_id.into()))
            .condition_expression("#trigger = :trigger")
            .expression_attribute_names("#trigger", TRIGGER_ID)
            .expression_attribute_values(":trigger", AttributeValue::S(trigger_id.into()))
            .send()
            .await;
        if let Err(e) = deleted {
            if !e.as_service_error().is_some_and(|s| s.is_conditional_check_failed_exception()) {
                // Harmless: the lock expires after its window.
                tracing::warn!(error = %aws_sdk_dynamodb::error::DisplayErrorContext(&e), "trigger lock not released");
            }
        }
    }

    /// Puts a message on the human hand-off queue (no delay); one over SQS's size limit goes as
    /// several, each with some of the recipient's messages, in order.
    pub async fn hand_off(&self, message: &HandOffMessage) -> Result<(), Failure> {
        for part in split_to_fit(message.clone(), MAX_SQS_MESSAGE_BYTES) {
            let body =
                serde_json::to_string(&part).map_err(|e| Failure::Permanent(format!("hand-off message: {e}")))?;
            self.send(&self.naming.handoff_queue(), body, Duration::ZERO).await?;
        }
        Ok(())
    }

    async fn send(&self, queue: &str, body: String, delay: Duration) -> Result<(), Failure> {
        let url = self.queue_url(queue).await?;
        self.sqs
            .send_message()
            .queue_url(url)
            .message_body(body)
            .delay_seconds(delay.as_secs().min(900) as i32)
            .send()
            .await
            .map_err(|e| aws_failure("SendMessage", &e))?;
        Ok(())
    }

    async fn queue_url(&self, name: &str) -> Result<String, Failure> {
        if let Some(url) = self.queue_urls.lock().ok().and_then(|urls| urls.get(name).cloned()) {
            return Ok(url);
        }
        let out = self.sqs.get_queue_url().queue_name(name).send().await.map_err(|e| aws_failure("GetQueueUrl", &e))?;
        let url = out.queue_url.ok_or_else(|| Failure::Transient(format!("no URL for queue {name}")))?;
        if let Ok(mut urls) = self.queue_urls.lock() {
            urls.insert(name.to_string(), url.clone());
        }
        Ok(url)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use multicomms_wire::replies::HandOffFragment;

    #[test]
    fn a_hand_off_too_large_for_sqs_goes_as_several_messages_in_order() {
        let fragment = |i: usize, size: usize| HandOffFragment {
            message_sid: format!("SM{i}"),
            text: "x".repeat(size),
            media: vec![],
            received_at: String::new(),
        };
        let message = HandOffMessage {
            conversation_id: "c".into(),
            primary_channel: "+447700900001".into(),
            company_id: "ci".into(),
            project_id: "pi".into(),
            channel: ChannelKind::Whatsapp,
            from: "+447700900001".into(),
            to: "+447588713814".into(),
            reason: "r".into(),
            messages: (0..100).map(|i| fragment(i, 4_000)).collect(),
            handed_off_at: String::new(),
        };
        let parts = split_to_fit(message.clone(), MAX_SQS_MESSAGE_BYTES);
        assert!(parts.len() > 1);
        assert!(parts.iter().all(|p| serde_json::to_string(p).expect("JSON").len() <= MAX_SQS_MESSAGE_BYTES));
        let sids: Vec<String> = parts.iter().flat_map(|p| p.messages.iter().map(|m| m.message_sid.clone())).collect();
        assert_eq!(sids, (0..100).map(|i| format!("SM{i}")).collect::<Vec<_>>(), "every message, in order");
        let one_huge = HandOffMessage { messages: vec![fragment(0, 400_000)], ..message };
        let parts = split_to_fit(one_huge, MAX_SQS_MESSAGE_BYTES);
        assert_eq!(parts.len(), 1);
        assert!(serde_json::to_string(&parts[0]).expect("JSON").len() <= MAX_SQS_MESSAGE_BYTES);
        assert!(parts[0].messages[0].text.ends_with("[cut to fit the hand-off queue]"));
    }
}
