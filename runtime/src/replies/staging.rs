//! The replies flow's own AWS state: the stage table (fragments waiting for their turn), the
//! trigger lock (one delayed trigger per window, replies-engine §2.3), the channels' replies
//! queues and the human hand-off queue. Used by the webhook (writer) and the reply processor
//! (reader, and writer of the next turn's trigger).
use crate::shared::batched::{Batched, Conditional, ConditionalPut, ItemKey, ItemWrite, QueueMessage};
use crate::shared::conversations::{aws_failure, put_if_absent, query_all, Put};
use crate::shared::failure::Failure;
use aws_sdk_dynamodb::types::AttributeValue;
use multicomms_wire::conversation::{
    ActivePointer, ConversationKey, ConversationRecord, CONVERSATION_ID, EXPIRES_AT, MESSAGE_SID, PRIMARY_CHANNEL,
};
use multicomms_wire::replies::{
    in_order, Fragment, HandOffMessage, SeenMarker, Trigger, TriggerLock, FIRES_AT_MS, TRIGGER_FIRING_MARGIN_MS,
    TRIGGER_ID,
};
use multicomms_wire::timestamp::{epoch_ms, epoch_seconds};
use multicomms_wire::{ChannelKind, Item, Naming};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;
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

/// When a conversation's trigger lock may be taken by a new trigger.
enum Taken {
    /// Once its trigger fired (or the lock expired).
    OnceFired,
    /// Only once it expired.
    OnceExpired,
}

pub struct Staging {
    dynamodb: aws_sdk_dynamodb::Client,
    sqs: aws_sdk_sqs::Client,
    naming: Naming,
    /// The webhook's reads and writes, the turns' deletes and the triggers, in batches.
    batched: Batched,
    /// Queue URLs by name, looked up once.
    queue_urls: Mutex<HashMap<String, String>>,
}

impl Staging {
    pub fn new(sdk: &aws_config::SdkConfig, naming: Naming) -> Self {
        let (dynamodb, sqs) = (aws_sdk_dynamodb::Client::new(sdk), aws_sdk_sqs::Client::new(sdk));
        Staging {
            batched: Batched::new(dynamodb.clone(), sqs.clone()),
            dynamodb,
            sqs,
            naming,
            queue_urls: Mutex::default(),
        }
    }

    /// What the webhook reads before it trusts a request, in one batched read: the pointer of
    /// its numbers (`pointer`, an [`ActivePointer::key`]) and whether its `MessageSid` was seen.
    pub async fn look_up(
        &self,
        pointer: &ConversationKey,
        seen: &str,
    ) -> Result<(Option<ActivePointer>, Option<SeenMarker>), Failure> {
        let (pointer, seen) =
            tokio::join!(self.batched.get(self.conversation_key(pointer)), self.batched.get(self.lock_key(seen)));
        Ok((parsed(pointer?, "pointer")?, parsed(seen?, "seen marker")?))
    }

    /// A conversation's record and its trigger lock, in one batched read.
    pub async fn record_and_lock(
        &self,
        key: &ConversationKey,
    ) -> Result<(Option<ConversationRecord>, Option<TriggerLock>), Failure> {
        let (record, lock) = tokio::join!(
            self.batched.get(self.conversation_key(key)),
            self.batched.get(self.lock_key(&key.conversation_id))
        );
        let record = record?
            .map(ConversationRecord::from_item)
            .transpose()
            .map_err(|e| Failure::Permanent(format!("the conversation record does not read: {e}")))?;
        Ok((record, parsed(lock?, "trigger lock").unwrap_or(None)))
    }

    fn conversation_key(&self, key: &ConversationKey) -> ItemKey {
        let table = self.naming.conversations_table();
        ItemKey::new(&table, &[(PRIMARY_CHANNEL, &key.primary_channel), (CONVERSATION_ID, &key.conversation_id)])
    }

    fn lock_key(&self, id: &str) -> ItemKey {
        ItemKey::new(&self.naming.replies_trigger_lock_table(), &[(CONVERSATION_ID, id)])
    }

    /// Remembers a `MessageSid` for the replay window (batched).
    pub async fn remember(&self, seen: &SeenMarker) -> Result<(), Failure> {
        let item = serde_dynamo::to_item(seen).map_err(|e| Failure::Permanent(format!("seen marker: {e}")))?;
        self.batched.write(ItemWrite::Put { key: self.lock_key(&seen.conversation_id), item }).await
    }

    /// Stages a fragment for its turn (batched). A Twilio retry writes the same row again; once
    /// a turn consumed it, the record holds its SID and the next turn drops it as answered.
    pub async fn take(&self, fragment: &Fragment) -> Result<(), Failure> {
        let item = serde_dynamo::to_item(fragment).map_err(|e| Failure::Permanent(format!("fragment: {e}")))?;
        let key = self.stage_key(&fragment.conversation_id, &fragment.message_sid);
        self.batched.write(ItemWrite::Put { key, item }).await
    }

    fn stage_key(&self, conversation_id: &str, message_sid: &str) -> ItemKey {
        let table = self.naming.replies_stage_table();
        ItemKey::new(&table, &[(CONVERSATION_ID, conversation_id), (MESSAGE_SID, message_sid)])
    }

    /// Stages a fragment once: a retried webhook finds its row and changes nothing. True when
    /// the row is new. (The hand-off markers: a conditional write of its own.)
    pub async fn stage(&self, fragment: &Fragment) -> Result<bool, Failure> {
        let item = serde_dynamo::to_item(fragment).map_err(|e| Failure::Permanent(format!("fragment: {e}")))?;
        let table = self.naming.replies_stage_table();
        Ok(matches!(put_if_absent(&self.dynamodb, &table, item).await?, Put::Written))
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

    /// Deletes exactly these fragments' rows (batched with other turns' deletes).
    pub async fn remove(&self, fragments: &[Fragment]) -> Result<(), Failure> {
        let deletes = fragments
            .iter()
            .map(|f| self.batched.write(ItemWrite::Delete { key: self.stage_key(&f.conversation_id, &f.message_sid) }));
        futures::future::try_join_all(deletes).await.map(|_| ())
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
        let sids: Vec<String> = keys.iter().filter_map(|k| k.get(MESSAGE_SID)?.as_s().ok().cloned()).collect();
        let deletes =
            sids.iter().map(|sid| self.batched.write(ItemWrite::Delete { key: self.stage_key(conversation_id, sid) }));
        futures::future::try_join_all(deletes).await?;
        Ok(sids.len())
    }

    /// A trigger for what was just staged, unless `lock` (read before the staging) stands for a
    /// trigger that has yet to fire: that turn reads it ([`TriggerLock::covers`]). True when
    /// this call sent one.
    pub async fn trigger_unless_covered(
        &self,
        channel: ChannelKind,
        key: &ConversationKey,
        lock: Option<&TriggerLock>,
        window: Duration,
    ) -> Result<bool, Failure> {
        if lock.is_some_and(|lock| lock.covers(epoch_ms())) {
            return Ok(false);
        }
        self.trigger(channel, key, window).await
    }

    /// One delayed trigger per window: takes the conversation's trigger lock (absent, expired or
    /// its trigger fired) and sends the trigger with `delay`. `false` when a trigger that has yet
    /// to fire holds it. A failed send gives the lock back, so the next attempt sends.
    pub async fn trigger(&self, channel: ChannelKind, key: &ConversationKey, delay: Duration) -> Result<bool, Failure> {
        self.arm(channel, key, delay, Taken::OnceFired).await
    }

    /// The sweep's trigger: only once the conversation's lock expired (a minute after its trigger
    /// fired, [`multicomms_wire::replies::TRIGGER_LOCK_BUFFER_SECONDS`]), so a trigger still
    /// queued behind a backlog is not joined by one more at every sweep.
    pub async fn trigger_if_expired(&self, channel: ChannelKind, key: &ConversationKey) -> Result<bool, Failure> {
        self.arm(channel, key, Duration::ZERO, Taken::OnceExpired).await
    }

    async fn arm(
        &self,
        channel: ChannelKind,
        key: &ConversationKey,
        delay: Duration,
        taken: Taken,
    ) -> Result<bool, Failure> {
        let trigger_id = uuid::Uuid::new_v4().to_string();
        let now_ms = epoch_ms();
        let lock = TriggerLock::new(&key.conversation_id, &trigger_id, now_ms, delay);
        let item = serde_dynamo::to_item(&lock).map_err(|e| Failure::Permanent(format!("trigger lock: {e}")))?;
        let mut names = HashMap::from([("#id".into(), CONVERSATION_ID.into()), ("#expires".into(), EXPIRES_AT.into())]);
        let mut values = HashMap::from([(":now".into(), AttributeValue::N((now_ms / 1000).to_string()))]);
        let condition = match taken {
            Taken::OnceExpired => "attribute_not_exists(#id) OR #expires < :now",
            Taken::OnceFired => {
                names.insert("#fires".into(), FIRES_AT_MS.into());
                values.insert(":due".into(), AttributeValue::N((now_ms + TRIGGER_FIRING_MARGIN_MS).to_string()));
                "attribute_not_exists(#id) OR #expires < :now OR #fires <= :due"
            }
        };
        let put = ConditionalPut {
            key: self.lock_key(&key.conversation_id),
            item,
            condition: condition.into(),
            names,
            values,
        };
        // Another ask for this conversation in the same batch may have written its own lock; an
        // SDK retry of ours that landed finds ours.
        let held = match self.batched.put_if(put).await? {
            Conditional::Written(item) | Conditional::Refused(item) => item,
        };
        if held.get(TRIGGER_ID) != Some(&AttributeValue::S(trigger_id.clone())) {
            return Ok(false);
        }
        let trigger = Trigger {
            conversation_id: key.conversation_id.clone(),
            primary_channel: key.primary_channel.clone(),
            trigger_id: Some(trigger_id.clone()),
        };
        let body = serde_json::to_string(&trigger).map_err(|e| Failure::Permanent(format!("trigger: {e}")))?;
        let queue_url = self.queue_url(&self.naming.replies_queue(channel)).await;
        let sent = match queue_url {
            Ok(queue_url) => self.batched.send(QueueMessage { queue_url, body, delay }).await,
            Err(failure) => Err(failure),
        };
        if let Err(failure) = sent {
            self.release_lock(&key.conversation_id, &trigger_id).await;
            return Err(failure);
        }
        Ok(true)
    }

    /// Deletes the trigger lock if it is still `trigger_id`'s (a newer trigger keeps its own).
    async fn release_lock(&self, conversation_id: &str, trigger_id: &str) {
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
        let url = self.queue_url(&self.naming.handoff_queue()).await?;
        for part in split_to_fit(message.clone(), MAX_SQS_MESSAGE_BYTES) {
            let body =
                serde_json::to_string(&part).map_err(|e| Failure::Permanent(format!("hand-off message: {e}")))?;
            self.sqs
                .send_message()
                .queue_url(&url)
                .message_body(body)
                .send()
                .await
                .map_err(|e| aws_failure("SendMessage", &e))?;
        }
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

/// An item read as `T`, if there was one.
fn parsed<T: serde::de::DeserializeOwned>(item: Option<Item>, what: &str) -> Result<Option<T>, Failure> {
    item.map(|item| {
        serde_dynamo::from_item(item).map_err(|e| Failure::Permanent(format!("the {what} does not read: {e}")))
    })
    .transpose()
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
