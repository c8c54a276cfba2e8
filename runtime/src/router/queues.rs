//! The channel queues, found by the names the operator created them under. Sends from
//! concurrent requests share SendMessageBatch calls: a batch goes out at 10 messages or after
//! `linger`, whichever comes first, so under load there are well under one SQS request per
//! accepted request, and a lone request waits at most `linger`.
use super::error::RouterError;
use crate::wire::{ChannelKind, Naming};
use aws_sdk_sqs::types::{MessageAttributeValue, SendMessageBatchRequestEntry};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// SQS's limit of entries per SendMessageBatch.
const BATCH_SIZE: usize = 10;

struct Pending {
    body: String,
    attributes: Vec<(&'static str, String)>,
    done: oneshot::Sender<Result<(), RouterError>>,
}

pub struct Queues {
    batchers: HashMap<ChannelKind, mpsc::Sender<Pending>>,
    stats: Arc<SendStats>,
}

/// How many SendMessageBatch calls carried how many messages.
#[derive(Default, Debug)]
pub struct SendStats {
    pub batches: AtomicU64,
    pub messages: AtomicU64,
}

impl Queues {
    /// Looks up each channel's queue URL once. A channel whose queue does not exist stays
    /// unconfigured (its requests get CONFIGURATION_ERROR), as in the original.
    pub async fn resolve(
        client: aws_sdk_sqs::Client,
        naming: &Naming,
        linger: Duration,
        batch_size: prometheus_client::metrics::histogram::Histogram,
    ) -> Self {
        let stats = Arc::new(SendStats::default());
        let mut batchers = HashMap::new();
        for channel in [ChannelKind::Whatsapp, ChannelKind::Sms, ChannelKind::Email] {
            let name = naming.channel_queue(channel);
            match client.get_queue_url().queue_name(&name).send().await {
                Ok(out) => {
                    let (sender, receiver) = mpsc::channel(1024);
                    let url = out.queue_url.unwrap_or_default();
                    let sender_stats = (stats.clone(), batch_size.clone());
                    tokio::spawn(send_batches(client.clone(), url, receiver, linger, sender_stats));
                    batchers.insert(channel, sender);
                }
                Err(e) => {
                    tracing::warn!(queue = %name, error = %aws_sdk_sqs::error::DisplayErrorContext(&e), "queue not found; channel unavailable")
                }
            }
        }
        Queues { batchers, stats }
    }

    pub fn any_configured(&self) -> bool {
        !self.batchers.is_empty()
    }

    pub fn is_configured(&self, channel: ChannelKind) -> bool {
        self.batchers.contains_key(&channel)
    }

    pub fn stats(&self) -> &SendStats {
        &self.stats
    }

    pub async fn send(
        &self,
        channel: ChannelKind,
        body: String,
        attributes: Vec<(&'static str, String)>,
    ) -> Result<(), RouterError> {
        let batcher = self.batchers.get(&channel).ok_or_else(|| RouterError::queue_not_configured(channel.as_str()))?;
        let (done, result) = oneshot::channel();
        batcher.send(Pending { body, attributes, done }).await.map_err(|_| RouterError::queue_error())?;
        result.await.map_err(|_| RouterError::queue_error())?
    }
}

/// One per queue: collects pending messages into batches until every sender is gone (shutdown),
/// then sends what is left.
async fn send_batches(
    client: aws_sdk_sqs::Client,
    url: String,
    mut pending: mpsc::Receiver<Pending>,
    linger: Duration,
    stats: (Arc<SendStats>, prometheus_client::metrics::histogram::Histogram),
) {
    while let Some(first) = pending.recv().await {
        let mut batch = vec![first];
        let deadline = tokio::time::Instant::now() + linger;
        while batch.len() < BATCH_SIZE {
            match tokio::time::timeout_at(deadline, pending.recv()).await {
                Ok(Some(next)) => batch.push(next),
                Ok(None) | Err(_) => break,
            }
        }
        stats.1.observe(batch.len() as f64);
        send_batch(&client, &url, batch, &stats.0).await;
    }
}

async fn send_batch(client: &aws_sdk_sqs::Client, url: &str, batch: Vec<Pending>, stats: &SendStats) {
    let mut entries = Vec::with_capacity(batch.len());
    let mut waiting = HashMap::new();
    for (i, message) in batch.into_iter().enumerate() {
        let id = i.to_string();
        let mut entry = SendMessageBatchRequestEntry::builder().id(&id).message_body(message.body);
        for (name, value) in &message.attributes {
            match MessageAttributeValue::builder().data_type("String").string_value(value).build() {
                Ok(attribute) => entry = entry.message_attributes(*name, attribute),
                Err(_) => continue,
            }
        }
        match entry.build() {
            Ok(entry) => {
                entries.push(entry);
                waiting.insert(id, message.done);
            }
            Err(_) => {
                let _ = message.done.send(Err(RouterError::queue_error()));
            }
        }
    }
    stats.batches.fetch_add(1, Ordering::Relaxed);
    stats.messages.fetch_add(entries.len() as u64, Ordering::Relaxed);
    match client.send_message_batch().queue_url(url).set_entries(Some(entries)).send().await {
        Ok(out) => {
            for ok in out.successful() {
                if let Some(done) = waiting.remove(ok.id()) {
                    let _ = done.send(Ok(()));
                }
            }
            for failed in out.failed() {
                tracing::error!(code = failed.code(), message = failed.message(), "SQS refused a message of a batch");
            }
            // Entries not reported as successful failed.
            for (_, done) in waiting {
                let _ = done.send(Err(RouterError::queue_error()));
            }
        }
        Err(e) => {
            tracing::error!(error = %aws_sdk_sqs::error::DisplayErrorContext(&e), "SendMessageBatch failed");
            for (_, done) in waiting {
                let _ = done.send(Err(RouterError::queue_error()));
            }
        }
    }
}
