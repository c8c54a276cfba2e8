//! What both processors (first messages and replies) are built from, and the clients they build
//! from it alike: one HTTP client with the provider timeouts, the metrics, the cached secrets,
//! the opt-outs, the AI and the senders.
use crate::shared::ai::Ai;
use crate::shared::opt_outs::OptOuts;
use crate::shared::secrets::Secrets;
use crate::shared::senders::Senders;
use crate::worker::metrics::Metrics;
use multicomms_wire::{ChannelKind, Naming};
use std::sync::Arc;
use std::time::Duration;

/// A processor pod's settings: the binary's flags, or a test's choices.
#[derive(Debug, Clone)]
pub struct PodConfig {
    pub channel: ChannelKind,
    pub naming: Naming,
    pub secrets_cache: Duration,
    /// Per-request timeout of the AI and provider calls.
    pub http_timeout: Duration,
    /// How long a send claim may legitimately last (the provider call's timeout plus a margin):
    /// a redelivery finding a younger claim waits instead of handing off. The binary uses
    /// `http_timeout` + 60 s.
    pub send_grace: Duration,
    pub openai_base_url: String,
    pub twilio_base_url: String,
    pub sendgrid_base_url: String,
    /// The router's public URL, where Twilio sends each message's status callbacks (none
    /// without it).
    pub public_base_url: Option<String>,
    /// Whether a company may name an AI endpoint on this machine (development only).
    pub allow_loopback_ai_endpoints: bool,
}

/// The clients a processor pod talks through.
pub struct PodClients {
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub opt_outs: OptOuts,
    pub secrets: Arc<Secrets>,
    pub ai: Ai,
    pub senders: Senders,
    pub metrics: Arc<Metrics>,
    /// The companies' events (a conversation started, a reply sent, handed off).
    pub events: Arc<crate::shared::client_events::ClientEvents>,
}

impl PodClients {
    pub fn build(sdk: &aws_config::SdkConfig, config: &PodConfig) -> Result<Self, reqwest::Error> {
        let http =
            reqwest::Client::builder().timeout(config.http_timeout).connect_timeout(Duration::from_secs(10)).build()?;
        let metrics = Arc::new(Metrics::default());
        let alarm = metrics.secrets_scheduled_for_deletion.clone();
        let secrets = Arc::new(Secrets::new(aws_sdk_secretsmanager::Client::new(sdk), config.secrets_cache, alarm));
        let shared_key = config.naming.shared_ai_key_secret(config.channel);
        let ai = Ai::new(
            http.clone(),
            config.openai_base_url.clone(),
            shared_key,
            secrets.clone(),
            config.allow_loopback_ai_endpoints,
        );
        let dynamodb = aws_sdk_dynamodb::Client::new(sdk);
        let not_queued = metrics.client_events_not_queued.clone();
        let sqs = aws_sdk_sqs::Client::new(sdk);
        let events = crate::shared::client_events::ClientEvents::new(sqs, &config.naming, not_queued);
        Ok(PodClients {
            events: Arc::new(events),
            opt_outs: OptOuts::new(dynamodb.clone(), config.naming.opt_outs_table()),
            dynamodb,
            secrets,
            ai,
            senders: Senders::new(
                http,
                config.twilio_base_url.clone(),
                config.sendgrid_base_url.clone(),
                config.public_base_url.clone(),
            ),
            metrics,
        })
    }
}
