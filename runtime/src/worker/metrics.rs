//! Processor metrics (Prometheus text on /metrics).
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::time::Duration;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DepthLabels {
    /// main | dead_letter
    pub queue: &'static str,
    /// visible | in_flight
    pub state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub channel: &'static str,
    /// sent | failed | duplicate | needs_attention | handed_off | deferred | retry | busy | poison
    pub outcome: &'static str,
}

pub struct Metrics {
    registry: Registry,
    pub messages: Family<OutcomeLabels, Counter>,
    /// The original's CRITICAL alarm: the provider accepted the message but the record still
    /// says otherwise. Alert on any increase.
    pub sent_but_record_update_failed: Counter,
    /// Secrets found scheduled for deletion while conversations still need them. Alert on any
    /// increase: their messages wait on the queue until the secret is restored.
    pub secrets_scheduled_for_deletion: Counter,
    /// Messages on the channel's queue and its DLQ. Alert on any in the DLQ.
    pub queue_messages: Family<DepthLabels, Gauge>,
    pub duration: Histogram,
    /// Reply processors: conversations whose staged messages had no trigger on its way (their
    /// turn crashed on its last receive, or a trigger was never sent) and got one from the sweep.
    pub replies_swept: Counter,
    /// The client-events worker: events given up after their last delivery attempt (to the
    /// DLQ). Alert on any increase: a company's system is missing them.
    pub client_events_dead_lettered: Counter,
    /// Company events that could not be put on the client-events queue (lost).
    pub client_events_not_queued: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("multicomms_processor");
        let messages = Family::<OutcomeLabels, Counter>::default();
        registry.register("messages", "Messages handled, by outcome", messages.clone());
        let sent_but_record_update_failed = Counter::default();
        registry.register(
            "sent_but_record_update_failed",
            "Sends whose final conversation-record update failed (manual reconciliation needed)",
            sent_but_record_update_failed.clone(),
        );
        let secrets_scheduled_for_deletion = Counter::default();
        registry.register(
            "secrets_scheduled_for_deletion",
            "Secret reads that found the secret scheduled for deletion (messages wait until it is restored)",
            secrets_scheduled_for_deletion.clone(),
        );
        let queue_messages = Family::<DepthLabels, Gauge>::default();
        registry.register(
            "queue_messages",
            "Messages on the channel's queue and its dead-letter queue, visible or in flight",
            queue_messages.clone(),
        );
        let duration = Histogram::new(exponential_buckets(0.01, 2.0, 14));
        registry.register("message_duration_seconds", "Time from receive to outcome", duration.clone());
        let replies_swept = Counter::default();
        registry.register(
            "replies_swept",
            "Conversations whose staged messages had no trigger and were given one by the sweep",
            replies_swept.clone(),
        );
        let client_events_dead_lettered = Counter::default();
        registry.register(
            "client_events_dead_lettered",
            "Client events whose last delivery attempt failed: they go to the client-events DLQ",
            client_events_dead_lettered.clone(),
        );
        let client_events_not_queued = Counter::default();
        registry.register(
            "client_events_not_queued",
            "Company events that could not be put on the client-events queue (their companies never get them)",
            client_events_not_queued.clone(),
        );
        Metrics {
            client_events_not_queued,
            client_events_dead_lettered,
            registry,
            messages,
            sent_but_record_update_failed,
            secrets_scheduled_for_deletion,
            queue_messages,
            duration,
            replies_swept,
        }
    }
}

impl Metrics {
    pub fn observe(&self, channel: &'static str, outcome: &'static str, took: Duration) {
        self.messages.get_or_create(&OutcomeLabels { channel, outcome }).inc();
        self.duration.observe(took.as_secs_f64());
    }

    pub fn queue_depth(&self, queue: &'static str, state: &'static str, messages: i64) {
        self.queue_messages.get_or_create(&DepthLabels { queue, state }).set(messages);
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        match encode(&mut out, &self.registry) {
            Ok(()) => out,
            Err(_) => String::from("# metrics encoding failed\n"),
        }
    }
}
