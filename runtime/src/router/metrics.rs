//! The router's Prometheus metrics: requests by status and error code, latency, and the sizes
//! of the SendMessageBatch calls (SQS requests per accepted request = batches ÷ messages).
use prometheus_client::encoding::{text::encode, EncodeLabelSet};
use prometheus_client::metrics::{counter::Counter, family::Family, histogram::Histogram};
use prometheus_client::registry::Registry;
use std::time::Duration;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: &'static str,
    status: u16,
    error_code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WebhookLabels {
    channel: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DeliveryLabels {
    channel: &'static str,
    status: &'static str,
}

pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    webhook: Family<WebhookLabels, Counter>,
    status_callbacks: Family<WebhookLabels, Counter>,
    delivery_statuses: Family<DeliveryLabels, Counter>,
    latency: Histogram,
    /// Observed by the queue senders, one sample per SendMessageBatch call.
    pub batch_size: Histogram,
    /// The webhook's reads of a Twilio secret that found it scheduled for deletion.
    pub secrets_scheduled_for_deletion: Counter,
    /// Company events that could not be put on the client-events queue (lost).
    pub client_events_not_queued: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("multicomms_router");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Histogram::new([0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5]);
        let batch_size = Histogram::new([1.0, 2.0, 3.0, 5.0, 8.0, 10.0]);
        registry.register("requests", "Requests by route, HTTP status and error code", requests.clone());
        registry.register("request_duration_seconds", "Time to answer POST /initiate-conversation", latency.clone());
        registry.register("sqs_batch_size", "Messages per SendMessageBatch call", batch_size.clone());
        let webhook = Family::<WebhookLabels, Counter>::default();
        registry.register(
            "inbound_messages",
            "Inbound Twilio messages by channel and outcome (staged, handed_off, already_answered, an error code)",
            webhook.clone(),
        );
        let status_callbacks = Family::<WebhookLabels, Counter>::default();
        registry.register(
            "status_callbacks",
            "Twilio status callbacks by channel and outcome (recorded, unchanged, ignored, not_yet_recorded, an error code)",
            status_callbacks.clone(),
        );
        let delivery_statuses = Family::<DeliveryLabels, Counter>::default();
        registry.register(
            "delivery_statuses",
            "Delivery statuses recorded on sent messages, by channel and Twilio status (failed and undelivered: not received)",
            delivery_statuses.clone(),
        );
        let secrets_scheduled_for_deletion = Counter::default();
        registry.register(
            "secrets_scheduled_for_deletion",
            "Webhook reads of a Twilio secret found scheduled for deletion (messages get 503 until it is restored)",
            secrets_scheduled_for_deletion.clone(),
        );
        let client_events_not_queued = Counter::default();
        registry.register(
            "client_events_not_queued",
            "Company events that could not be put on the client-events queue (their companies never get them)",
            client_events_not_queued.clone(),
        );
        Metrics {
            client_events_not_queued,
            registry,
            requests,
            webhook,
            status_callbacks,
            delivery_statuses,
            latency,
            batch_size,
            secrets_scheduled_for_deletion,
        }
    }
}

impl Metrics {
    pub fn observe(&self, status: u16, error_code: &'static str, took: Duration) {
        self.requests.get_or_create(&RequestLabels { route: "/initiate-conversation", status, error_code }).inc();
        self.latency.observe(took.as_secs_f64());
    }

    pub fn webhook(&self, channel: &'static str, outcome: &'static str) {
        self.webhook.get_or_create(&WebhookLabels { channel, outcome }).inc();
    }

    pub fn status_callback(&self, channel: &'static str, outcome: &'static str) {
        self.status_callbacks.get_or_create(&WebhookLabels { channel, outcome }).inc();
    }

    pub fn delivery_status(&self, channel: &'static str, status: &'static str) {
        self.delivery_statuses.get_or_create(&DeliveryLabels { channel, status }).inc();
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        match encode(&mut out, &self.registry) {
            Ok(()) => out,
            Err(_) => String::new(),
        }
    }
}
