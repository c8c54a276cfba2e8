//! The channel queues, found by the names the operator created them under. Sends from
//! concurrent requests share SendMessageBatch calls: a batch goes out at 10 messages or after
//! `linger`, whichever comes first, so under load there are well under one SQS request per
//! accepted request, and a lone request waits at most `linger`.
use super::error::RouterError;
use aws_sdk_sqs::types::{MessageAttributeValue, SendMessageBatchRequestEntry};
use multicomms_wire::{ChannelKind, Naming};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
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
    shared: Arc<Shared>,
}

struct Shared {
    client: aws_sdk_sqs::Client,
    linger: Duration,
    batch_size: prometheus_client::metrics::histogram::Histogram,
    stats: Arc<SendStats>,
    batchers: RwLock<HashMap<ChannelKind, mpsc::Sender<Pending>>>,
}

/// How many SendMessageBatch calls carried how many messages.
#[derive(Default, Debug)]
pub struct SendStats {
    pub batches: AtomicU64,
    pub messages: AtomicU64,
}

/// How often a channel whose queue did not exist yet is looked up again (the operator may
/// create the queue after the router starts).
const LOOK_AGAIN: Duration = Duration::from_secs(10);

impl Queues {
    /// Looks up each channel's queue URL by the operator's naming. A channel whose queue does not
    /// exist stays unconfigured (its requests get CONFIGURATION_ERROR, as in the original) and
    /// is looked up again every 10 s until it appears.
    pub async fn resolve(
        client: aws_sdk_sqs::Client,
        naming: &Naming,
        linger: Duration,
        batch_size: prometheus_client::metrics::histogram::Histogram,
    ) -> Self {
        let stats = Arc::new(SendStats::default());
        let shared = Arc::new(Shared { client, linger, batch_size, stats, batchers: RwLock::default() });
        for channel in ChannelKind::ALL {
            let name = naming.channel_queue(channel);
            if !shared.attach(channel, &name, true).await {
                let shared = shared.clone();
                tokio::spawn(async move {
                    loop {
                        tokio::time::sleep(LOOK_AGAIN).await;
                        if shared.attach(channel, &name, false).await {
                            break;
                        }
                    }
                });
            }
        }
        Queues { shared }
    }

    fn batcher(&self, channel: ChannelKind) -> Option<mpsc::Sender<Pending>> {
        self.shared.batchers.read().ok().and_then(|b| b.get(&channel).cloned())
    }

    pub fn is_configured(&self, channel: ChannelKind) -> bool {
        self.batcher(channel).is_some()
    }

    pub fn stats(&self) -> &SendStats {
        &self.shared.stats
    }

    pub async fn send(
        &self,
        channel: ChannelKind,
        body: String,
        attributes: Vec<(&'static str, String)>,
    ) -> Result<(), RouterError> {
        let batcher = self.batcher(channel).ok_or_else(|| RouterError::queue_not_configured(channel.as_str()))?;
        let (done, result) = oneshot::channel();
        batcher.send(Pending { body, attributes, done }).await.map_err(|_| RouterError::queue_error())?;
        result.await.map_err(|_| RouterError::queue_error())?
    }
}

impl Shared {
    /// Finds the queue and starts its batcher; false when it is not there (yet).
    async fn attach(&self, channel: ChannelKind, name: &str, first_attempt: bool) -> bool {
        match self.client.get_queue_url().queue_name(name).send().await {
            Ok(out) => {
                let (sender, receiver) = mpsc::channel(1024);
                let url = out.queue_url.unwrap_or_default();
                let stats = (self.stats.clone(), self.batch_size.clone());
                tokio::spawn(send_batches(self.client.clone(), url, receiver, self.linger, stats));
                if let Ok(mut batchers) = self.batchers.write() {
                    batchers.insert(channel, sender);
                }
                if !first_attempt {
                    tracing::info!(queue = %name, "queue found; channel available");
                }
                true
            }
            Err(e) => {
                if first_attempt {
                    let error = aws_sdk_sqs::error::DisplayErrorContext(&e);
                    tracing::warn!(queue = %name, error = %error, "queue not found; channel unavailable until it appears");
                }
                false
            }
        }
    }
}

/// SendMessageBatch's limit on the sum of its message bodies and attributes.
const BATCH_BYTES: usize = 256 * 1024;

/// One per queue: collects pending messages into batches (10 messages, [`BATCH_BYTES`], or
/// `linger`, whichever comes first) until every sender is gone (shutdown), then sends what is left.
async fn send_batches(
    client: aws_sdk_sqs::Client,
    url: String,
    mut pending: mpsc::Receiver<Pending>,
    linger: Duration,
    stats: (Arc<SendStats>, prometheus_client::metrics::histogram::Histogram),
) {
    let mut carried: Option<Pending> = None;
    loop {
        let first = match carried.take() {
            Some(first) => first,
            None => match pending.recv().await {
                Some(first) => first,
                None => break,
            },
        };
        let mut bytes = first.size();
        let mut batch = vec![first];
        let deadline = tokio::time::Instant::now() + linger;
        while batch.len() < BATCH_SIZE {
            match tokio::time::timeout_at(deadline, pending.recv()).await {
                Ok(Some(next)) if bytes + next.size() > BATCH_BYTES => {
                    carried = Some(next);
                    break;
                }
                Ok(Some(next)) => {
                    bytes += next.size();
                    batch.push(next);
                }
                Ok(None) | Err(_) => break,
            }
        }
        stats.1.observe(batch.len() as f64);
        send_batch(&client, &url, batch, &stats.0).await;
    }
}

impl Pending {
    /// What the message counts against the batch size limit.
    fn size(&self) -> usize {
        self.body.len()
            + self.attributes.iter().map(|(name, value)| name.len() + "String".len() + value.len()).sum::<usize>()
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
