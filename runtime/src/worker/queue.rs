//! The SQS side: long-poll the channel queue, run up to `concurrency` messages at once, keep
//! each invisible with a heartbeat while it is worked on (spec §4.4, with the queue's own
//! visibility timeout), and settle it by its outcome. On shutdown no new message is received
//! and the ones in flight finish.
use super::metrics::Metrics;
use super::outcome::Outcome;
use aws_sdk_sqs::error::DisplayErrorContext;
use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, MessageSystemAttributeName, QueueAttributeName};
use multicomms_service::coalesce::Coalescer;
use multicomms_wire::context::attributes;
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tracing::Instrument;

#[derive(Debug, Clone)]
pub struct Settings {
    pub queue_url: String,
    /// Messages worked on at once.
    pub concurrency: usize,
    /// How long a received message stays invisible; each heartbeat renews it.
    pub visibility: Duration,
    pub heartbeat: Duration,
    /// First retry delay of a transient failure; doubles with each receive, capped at 15 min.
    pub retry_base: Duration,
    /// Long-poll wait of each ReceiveMessage (at most 20 s).
    pub wait: Duration,
    /// The redrive policy's `maxReceiveCount`: the receive after which SQS dead-letters.
    pub max_receive_count: Option<u32>,
    /// The dead-letter queue, whose depth is exported beside the queue's own.
    pub dead_letter_queue_url: Option<String>,
    /// Reply processors: the human hand-off queue, whose depth is exported too (people read it;
    /// a depth that does not fall means nobody does).
    pub hand_off_queue_url: Option<String>,
    /// How often the queues' depths are read for the metrics.
    pub depth_interval: Duration,
}

/// What the processor learns from the queue itself.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueFacts {
    pub url: String,
    pub visibility: Duration,
    pub max_receive_count: Option<u32>,
    pub dead_letter_queue_url: Option<String>,
}

/// The queue's URL, visibility timeout and redrive policy (maxReceiveCount, dead-letter queue).
pub async fn discover(sqs: &aws_sdk_sqs::Client, name: &str) -> Result<QueueFacts, String> {
    let error = |e: &dyn std::fmt::Display| format!("{name}: {e}");
    let url = sqs.get_queue_url().queue_name(name).send().await.map_err(|e| error(&DisplayErrorContext(&e)))?;
    let url = url.queue_url.unwrap_or_default();
    let out = sqs
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(QueueAttributeName::VisibilityTimeout)
        .attribute_names(QueueAttributeName::RedrivePolicy)
        .send()
        .await
        .map_err(|e| error(&DisplayErrorContext(&e)))?;
    let attributes = out.attributes.unwrap_or_default();
    let seconds = attributes.get(&QueueAttributeName::VisibilityTimeout).and_then(|v| v.parse().ok()).unwrap_or(30);
    let redrive: serde_json::Value = attributes
        .get(&QueueAttributeName::RedrivePolicy)
        .and_then(|p| serde_json::from_str(p).ok())
        .unwrap_or_default();
    // SQS writes maxReceiveCount as a number or a string, depending on who set it.
    let max_receive_count = match &redrive["maxReceiveCount"] {
        serde_json::Value::Number(n) => n.as_u64().map(|n| n as u32),
        serde_json::Value::String(s) => s.parse().ok(),
        _ => None,
    };
    let dead_letter_queue_url = match redrive["deadLetterTargetArn"].as_str().and_then(|arn| arn.rsplit(':').next()) {
        Some(dlq) => {
            let out = sqs.get_queue_url().queue_name(dlq).send().await.map_err(|e| error(&DisplayErrorContext(&e)))?;
            out.queue_url
        }
        None => None,
    };
    Ok(QueueFacts { url, visibility: Duration::from_secs(seconds), max_receive_count, dead_letter_queue_url })
}

/// What works a queue's messages: the first-message processor, or the reply processor.
pub trait Worker: Send + Sync + 'static {
    /// One message's body; `last_receive`: SQS dead-letters it after this receive.
    fn process(&self, body: &str, last_receive: bool) -> impl Future<Output = Outcome> + Send;
    fn metrics(&self) -> &Metrics;
    /// The `channel` label of its metrics.
    fn channel_label(&self) -> &'static str;
}

/// SQS's limit per ReceiveMessage and per batch request.
const RECEIVE_BATCH: usize = 10;
/// How long a settled message's delete waits for others to share its DeleteMessageBatch.
const DELETE_WINDOW: Duration = Duration::from_millis(20);

/// Deletes of settled messages by receipt handle, sent together as DeleteMessageBatch: one
/// request per up to ten messages instead of one each.
type Deletes = Coalescer<String, (), String>;

fn batched_deletes(sqs: &aws_sdk_sqs::Client, queue_url: &str) -> Deletes {
    let (sqs, queue_url) = (sqs.clone(), queue_url.to_string());
    let send = move |receipts| Box::pin(delete_batch(sqs.clone(), queue_url.clone(), receipts)) as _;
    Coalescer::new(RECEIVE_BATCH, DELETE_WINDOW, Arc::new(send))
}

async fn delete_batch(
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
    receipts: Vec<String>,
) -> HashMap<String, Result<(), String>> {
    let entries = receipts.iter().enumerate().map(|(i, receipt)| {
        DeleteMessageBatchRequestEntry::builder().id(i.to_string()).receipt_handle(receipt).build()
    });
    let sent = match entries.collect::<Result<Vec<_>, _>>() {
        Ok(entries) => sqs.delete_message_batch().queue_url(&queue_url).set_entries(Some(entries)).send().await,
        Err(e) => return receipts.into_iter().map(|r| (r, Err(e.to_string()))).collect(),
    };
    let failed: HashMap<String, String> = match sent {
        Ok(out) => out.failed.into_iter().map(|f| (f.id, f.message.unwrap_or(f.code))).collect(),
        Err(e) => {
            let error = DisplayErrorContext(&e).to_string();
            return receipts.into_iter().map(|r| (r, Err(error.clone()))).collect();
        }
    };
    let answer = |i: usize| failed.get(&i.to_string()).map_or(Ok(()), |why| Err(why.clone()));
    receipts.into_iter().enumerate().map(|(i, receipt)| (receipt, answer(i))).collect()
}
const MAX_RETRY_DELAY: Duration = Duration::from_secs(900);

pub async fn run<W: Worker>(
    processor: Arc<W>,
    sqs: aws_sdk_sqs::Client,
    settings: Settings,
    shutdown: impl Future<Output = ()>,
) {
    let slots = Arc::new(Semaphore::new(settings.concurrency.max(1)));
    let settings = Arc::new(settings);
    let mut in_flight = JoinSet::new();
    let deletes = batched_deletes(&sqs, &settings.queue_url);
    let _depths = AbortOnDrop(tokio::spawn(watch_depths(sqs.clone(), settings.clone(), processor.clone())));
    tokio::pin!(shutdown);
    loop {
        while in_flight.try_join_next().is_some() {}
        let Some(mut held) = free_slots(&slots, &mut shutdown).await else { break };
        let messages = match receive(&sqs, &settings, held.len(), &mut shutdown).await {
            Received::Messages(messages) => messages,
            Received::Failed => continue,
            Received::ShuttingDown => break,
        };
        for message in messages {
            let Some(slot) = held.pop() else { break };
            let (processor, sqs, settings, deletes) =
                (processor.clone(), sqs.clone(), settings.clone(), deletes.clone());
            in_flight.spawn(async move {
                handle(&*processor, &sqs, &deletes, &settings, message).await;
                drop(slot);
            });
        }
    }
    tracing::info!(in_flight = in_flight.len(), "stopped receiving; finishing the messages in flight");
    while in_flight.join_next().await.is_some() {}
}

/// Waits for one free slot, then takes as many more as are free (up to a receive's batch);
/// `None` on shutdown.
async fn free_slots(
    slots: &Arc<Semaphore>,
    shutdown: &mut std::pin::Pin<&mut impl Future<Output = ()>>,
) -> Option<Vec<tokio::sync::OwnedSemaphorePermit>> {
    let first = tokio::select! {
        _ = shutdown.as_mut() => return None,
        slot = slots.clone().acquire_owned() => slot.ok()?,
    };
    let mut held = vec![first];
    while held.len() < RECEIVE_BATCH {
        match slots.clone().try_acquire_owned() {
            Ok(slot) => held.push(slot),
            Err(_) => break,
        }
    }
    Some(held)
}

enum Received {
    Messages(Vec<aws_sdk_sqs::types::Message>),
    /// Logged; try again (after a pause).
    Failed,
    ShuttingDown,
}

/// One long poll for up to `count` messages.
async fn receive(
    sqs: &aws_sdk_sqs::Client,
    settings: &Settings,
    count: usize,
    shutdown: &mut std::pin::Pin<&mut impl Future<Output = ()>>,
) -> Received {
    let wait = settings.wait.min(Duration::from_secs(20));
    // A long poll outlives the pod's usual call timeout.
    let timeouts = aws_config::timeout::TimeoutConfig::builder()
        .operation_attempt_timeout(wait + Duration::from_secs(10))
        .operation_timeout(wait + Duration::from_secs(30))
        .build();
    let receive = sqs
        .receive_message()
        .queue_url(&settings.queue_url)
        .max_number_of_messages(count as i32)
        .wait_time_seconds(wait.as_secs() as i32)
        .visibility_timeout(settings.visibility.as_secs() as i32)
        .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
        .message_attribute_names(attributes::CONVERSATION_ID)
        .customize()
        .config_override(aws_sdk_sqs::config::Builder::default().timeout_config(timeouts))
        .send();
    tokio::pin!(receive);
    let received = tokio::select! {
        received = &mut receive => received,
        _ = shutdown.as_mut() => {
            // SQS keeps serving an abandoned long poll, and what it hands out would stay
            // invisible for the whole visibility timeout: wait for it and give it back.
            if let Ok(out) = receive.await {
                release(sqs, settings, out.messages.unwrap_or_default()).await;
            }
            return Received::ShuttingDown;
        }
    };
    match received {
        Ok(out) => Received::Messages(out.messages.unwrap_or_default()),
        Err(e) => {
            tracing::warn!(error = %DisplayErrorContext(&e), "ReceiveMessage failed; retrying in 1 s");
            tokio::select! {
                _ = shutdown.as_mut() => Received::ShuttingDown,
                _ = tokio::time::sleep(Duration::from_secs(1)) => Received::Failed,
            }
        }
    }
}

/// One message: worked on under a heartbeat, then settled by its outcome. Every log line about
/// it carries its conversation id (the router's message attribute).
async fn handle<W: Worker>(
    processor: &W,
    sqs: &aws_sdk_sqs::Client,
    deletes: &Deletes,
    settings: &Settings,
    message: aws_sdk_sqs::types::Message,
) {
    let conversation_id = message
        .message_attributes
        .as_ref()
        .and_then(|a| a.get(attributes::CONVERSATION_ID))
        .and_then(|v| v.string_value.clone());
    // Without the router's attribute (another writer), the pipeline fills it in from the body.
    let span = tracing::info_span!("message", conversation_id = tracing::field::Empty);
    if let Some(id) = conversation_id {
        span.record("conversation_id", id);
    }
    work_and_settle(processor, sqs, deletes, settings, message).instrument(span).await
}

async fn work_and_settle<W: Worker>(
    processor: &W,
    sqs: &aws_sdk_sqs::Client,
    deletes: &Deletes,
    settings: &Settings,
    message: aws_sdk_sqs::types::Message,
) {
    let started = std::time::Instant::now();
    let Some(receipt) = message.receipt_handle.clone() else { return };
    let receive_count: u32 = message
        .attributes
        .as_ref()
        .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
        .and_then(|c| c.parse().ok())
        .unwrap_or(1);
    // After this receive SQS dead-letters the message: the processor must not leave it in limbo.
    let last_receive = settings.max_receive_count.is_some_and(|max| receive_count >= max);
    let heartbeat = Heartbeat::start(sqs, settings, &receipt);
    let outcome = processor.process(message.body.as_deref().unwrap_or_default(), last_receive).await;
    heartbeat.stop().await;
    settle(sqs, deletes, settings, &receipt, &outcome, receive_count, last_receive).await;
    processor.metrics().observe(processor.channel_label(), outcome.label(), started.elapsed());
}

/// Deletes a finished message; leaves a retry for its backoff and an unusable one for the DLQ.
async fn settle(
    sqs: &aws_sdk_sqs::Client,
    deletes: &Deletes,
    settings: &Settings,
    receipt: &str,
    outcome: &Outcome,
    receive_count: u32,
    last_receive: bool,
) {
    let visibility = match outcome {
        Outcome::Retry(reason) => {
            let delay = retry_delay(settings.retry_base, receive_count);
            if last_receive {
                tracing::error!(
                    reason,
                    receive_count,
                    "transient failure on the last receive; the message goes to the DLQ"
                );
            } else {
                tracing::warn!(
                    reason,
                    receive_count,
                    retry_in_s = delay.as_secs(),
                    "transient failure; message left for a retry"
                );
            }
            delay
        }
        Outcome::Busy(until_free) => {
            tracing::info!(receive_count, back_in_ms = until_free.as_millis() as u64, "another turn holds it");
            // Whole seconds, rounded up: back just after the other turn's lease ends.
            Duration::from_secs(until_free.as_millis().div_ceil(1000) as u64).max(Duration::from_secs(1))
        }
        Outcome::Poison(reason) => {
            tracing::error!(
                reason,
                receive_count,
                "unusable message; SQS moves it to the dead-letter queue after the queue's maxReceiveCount"
            );
            Duration::ZERO
        }
        _ => {
            if let Err(e) = deletes.get(receipt.to_string()).await {
                // It comes back, and the record makes it a duplicate.
                tracing::warn!(error = %e, "DeleteMessage failed");
            }
            return;
        }
    };
    if let Err(e) = set_visibility(sqs, settings, receipt, visibility).await {
        tracing::warn!(error = %e, "could not set the message's visibility; it returns after its visibility timeout");
    }
}

/// Keeps a message invisible while it is worked on, beside the work (never pausing it).
struct Heartbeat {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Heartbeat {
    fn start(sqs: &aws_sdk_sqs::Client, settings: &Settings, receipt: &str) -> Self {
        let (sqs, settings, receipt) = (sqs.clone(), settings.clone(), receipt.to_string());
        let (stop, mut stopped) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            let mut ticks =
                tokio::time::interval_at(tokio::time::Instant::now() + settings.heartbeat, settings.heartbeat);
            loop {
                tokio::select! {
                    _ = &mut stopped => return,
                    _ = ticks.tick() => {}
                }
                // A failed heartbeat only risks a concurrent redelivery, which the record's claim handles.
                if let Err(e) = set_visibility(&sqs, &settings, &receipt, settings.visibility).await {
                    tracing::warn!(error = %e, "visibility heartbeat failed");
                }
            }
        });
        Heartbeat { stop: Some(stop), task }
    }

    /// Stops renewing, and waits for a renewal already sent to be answered: one still on the
    /// wire could otherwise land after the message is settled and hide it for the whole
    /// visibility timeout.
    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }
}

impl Drop for Heartbeat {
    // Handling dropped mid-way (a panic, a killed task): the renewals end with it.
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A spawned task that ends with its owner.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Exports the queue's and its DLQ's depths (visible, in flight) every `depth_interval`: a
/// message in the DLQ is one a person must look at.
async fn watch_depths<W: Worker>(sqs: aws_sdk_sqs::Client, settings: Arc<Settings>, processor: Arc<W>) {
    let queues = [
        ("main", Some(settings.queue_url.clone())),
        ("dead_letter", settings.dead_letter_queue_url.clone()),
        ("hand_off", settings.hand_off_queue_url.clone()),
    ];
    let mut ticks = tokio::time::interval(settings.depth_interval);
    loop {
        ticks.tick().await;
        for (queue, url) in &queues {
            let Some(url) = url else { continue };
            let read = sqs
                .get_queue_attributes()
                .queue_url(url)
                .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
                .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
                .send()
                .await;
            let Ok(out) = read else { continue };
            let attributes = out.attributes.unwrap_or_default();
            let count = |name| attributes.get(&name).and_then(|v| v.parse::<i64>().ok()).unwrap_or(0);
            processor.metrics().queue_depth(queue, "visible", count(QueueAttributeName::ApproximateNumberOfMessages));
            processor.metrics().queue_depth(
                queue,
                "in_flight",
                count(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
            );
        }
    }
}

/// Makes received messages visible again at once (nobody will work on them here).
async fn release(sqs: &aws_sdk_sqs::Client, settings: &Settings, messages: Vec<aws_sdk_sqs::types::Message>) {
    for receipt in messages.iter().filter_map(|m| m.receipt_handle.as_deref()) {
        if let Err(e) = set_visibility(sqs, settings, receipt, Duration::ZERO).await {
            tracing::warn!(error = %e, "could not release a message received during shutdown");
        }
    }
}

async fn set_visibility(
    sqs: &aws_sdk_sqs::Client,
    settings: &Settings,
    receipt: &str,
    visibility: Duration,
) -> Result<(), String> {
    sqs.change_message_visibility()
        .queue_url(&settings.queue_url)
        .receipt_handle(receipt)
        .visibility_timeout(visibility.as_secs() as i32)
        .send()
        .await
        .map(|_| ())
        .map_err(|e| DisplayErrorContext(&e).to_string())
}

/// `base` · 2^(receives − 1), capped, plus up to a quarter of it as jitter.
pub fn retry_delay(base: Duration, receive_count: u32) -> Duration {
    let exponential = base.saturating_mul(1u32 << receive_count.saturating_sub(1).min(16)).min(MAX_RETRY_DELAY);
    let nanos = multicomms_wire::timestamp::subsec_nanos();
    let jitter_range = exponential.as_millis() as u64 / 4 + 1;
    (exponential + Duration::from_millis(nanos as u64 % jitter_range)).min(MAX_RETRY_DELAY)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delays_double_and_stop_at_15_minutes() {
        let base = Duration::from_secs(30);
        let within = |d: Duration, low: u64| d.as_secs() >= low && d.as_secs() <= low + low / 4 + 1;
        assert!(within(retry_delay(base, 1), 30));
        assert!(within(retry_delay(base, 2), 60));
        assert!(within(retry_delay(base, 3), 120));
        assert_eq!(retry_delay(base, 40), MAX_RETRY_DELAY);
    }
}
