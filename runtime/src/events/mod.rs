//! The client-events worker: takes each event off the environment's client-events queue and
//! posts it to its company's webhook, signed ([`crate::shared::client_events::signature`]).
//! A 2xx answer delivers it; anything else (an error status, a timeout, a refused connection) is
//! retried through SQS with the worker's doubling backoff, and after the queue's last attempt
//! the event goes to the DLQ, counted (`multicomms_processor_client_events_dead_lettered_total`)
//! and logged with the reason. Redirects are not followed: the URL in the Company is the one
//! that gets the events. Nothing here touches a conversation.
use crate::shared::client_events::signature;
use crate::shared::companies::Companies;
use crate::shared::secrets::Secrets;
use crate::worker::metrics::Metrics;
use crate::worker::outcome::Outcome;
use crate::worker::queue::Worker;
use multicomms_wire::client_events::{ClientEvent, SIGNATURE_HEADER};
use secrecy::ExposeSecret;
use std::sync::Arc;
use std::time::Duration;

pub struct EventDelivery {
    pub companies: Companies,
    pub secrets: Arc<Secrets>,
    pub http: reqwest::Client,
    pub metrics: Arc<Metrics>,
}

impl EventDelivery {
    /// On the environment `naming` names; each post may take `timeout`.
    pub fn build(
        sdk: &aws_config::SdkConfig,
        naming: &multicomms_wire::Naming,
        timeout: Duration,
    ) -> Result<Self, reqwest::Error> {
        let metrics = Arc::new(Metrics::default());
        let alarm = metrics.secrets_scheduled_for_deletion.clone();
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent("multicomms-events/1")
            .build()?;
        let dynamodb = aws_sdk_dynamodb::Client::new(sdk);
        Ok(EventDelivery {
            companies: Companies::new(dynamodb, naming.company_data_table(), Duration::from_secs(30)),
            secrets: Arc::new(Secrets::new(aws_sdk_secretsmanager::Client::new(sdk), Duration::from_secs(300), alarm)),
            http,
            metrics,
        })
    }

    /// One queued event; `last_receive`: SQS dead-letters it if this attempt fails too.
    pub async fn deliver(&self, body: &str, last_receive: bool) -> Outcome {
        let event: ClientEvent = match serde_json::from_str(body) {
            Ok(event) => event,
            Err(e) => return Outcome::Poison(format!("not a client event: {e}")),
        };
        let outcome = self.post(&event, body).await;
        if let (Outcome::Retry(why), true) = (&outcome, last_receive) {
            self.metrics.client_events_dead_lettered.inc();
            tracing::error!(
                event = event.id,
                company_id = event.company_id,
                why,
                "a client event was given up after its last attempt"
            );
        }
        outcome
    }

    /// The post of the queued `body` (as queued: the bytes signed are the bytes sent).
    async fn post(&self, event: &ClientEvent, body: &str) -> Outcome {
        let company = match self.companies.get(&event.company_id, &event.project_id).await {
            Ok(company) => company,
            Err(e) => return Outcome::Retry(format!("company lookup: {e:?}")),
        };
        let Some(target) = company.as_ref().and_then(|c| c.record.client_events.clone()) else {
            tracing::info!(event = event.id, "the company no longer takes events; dropped");
            return Outcome::Duplicate;
        };
        let secret = match self.secrets.client_events_key(&target.signing_secret_id).await {
            Ok(secret) => secret,
            Err(e) => return Outcome::Retry(format!("signing secret: {e}")),
        };
        let now = multicomms_wire::timestamp::epoch_seconds();
        let signed = signature(secret.expose_secret().as_bytes(), now, body.as_bytes());
        let sent = self
            .http
            .post(&target.url)
            .header("content-type", "application/json")
            .header(SIGNATURE_HEADER, signed)
            .body(body.to_string())
            .send()
            .await;
        match sent {
            Ok(answer) if answer.status().is_success() => Outcome::Sent,
            Ok(answer) => Outcome::Retry(format!("the webhook answered {}", answer.status())),
            Err(e) => Outcome::Retry(format!("the webhook was not reached: {}", e.without_url())),
        }
    }
}

impl Worker for EventDelivery {
    fn process(&self, body: &str, last_receive: bool) -> impl std::future::Future<Output = Outcome> + Send {
        self.deliver(body, last_receive)
    }

    fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    fn channel_label(&self) -> &'static str {
        "client_events"
    }
}
