//! Processor metrics (Prometheus text on /metrics).
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::time::Duration;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub channel: &'static str,
    /// sent | failed | duplicate | needs_attention | retry | poison
    pub outcome: &'static str,
}

pub struct Metrics {
    registry: Registry,
    pub messages: Family<OutcomeLabels, Counter>,
    /// The original's CRITICAL alarm: the provider accepted the message but the record still
    /// says otherwise. Alert on any increase.
    pub sent_but_record_update_failed: Counter,
    pub duration: Histogram,
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
        let duration = Histogram::new(exponential_buckets(0.01, 2.0, 14));
        registry.register("message_duration_seconds", "Time from receive to outcome", duration.clone());
        Metrics { registry, messages, sent_but_record_update_failed, duration }
    }
}

impl Metrics {
    pub fn observe(&self, channel: &'static str, outcome: &'static str, took: Duration) {
        self.messages.get_or_create(&OutcomeLabels { channel, outcome }).inc();
        self.duration.observe(took.as_secs_f64());
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        match encode(&mut out, &self.registry) {
            Ok(()) => out,
            Err(_) => String::from("# metrics encoding failed\n"),
        }
    }
}
