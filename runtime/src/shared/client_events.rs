//! A company's events on their way to its webhook ([`multicomms_wire::client_events`]): the
//! producers' side (put on the environment's client-events queue) and the signature both sides
//! compute. Producing never blocks or fails the message flow: an event that cannot be queued
//! is logged and counted, and the conversation goes on. A company without a webhook costs no
//! AWS call.
use multicomms_wire::client_events::{ClientEvent, EventType};
use multicomms_wire::conversation::ConversationRecord;
use multicomms_wire::{CompanyRecord, Naming};
use prometheus_client::metrics::counter::Counter;
use ring::hmac;
use std::sync::Mutex;

pub struct ClientEvents {
    sqs: aws_sdk_sqs::Client,
    queue: String,
    url: Mutex<Option<String>>,
    /// Events that could not be queued (a metric of the pod's).
    not_queued: Counter,
}

impl ClientEvents {
    pub fn new(sqs: aws_sdk_sqs::Client, naming: &Naming, not_queued: Counter) -> Self {
        ClientEvents { sqs, queue: naming.client_events_queue(), url: Mutex::default(), not_queued }
    }

    /// Queues an event of `kind` about `record` for `company`'s webhook, if it has one.
    pub async fn emit(
        &self,
        company: Option<&CompanyRecord>,
        record: &ConversationRecord,
        kind: EventType,
        data: serde_json::Value,
    ) {
        if company.and_then(|c| c.client_events.as_ref()).is_none() {
            return;
        }
        let event = ClientEvent::about(record, kind, data);
        if let Err(why) = self.send(&event).await {
            self.not_queued.inc();
            tracing::error!(event = event.id, kind = kind.as_str(), why, "a client event was not queued");
        }
    }

    async fn send(&self, event: &ClientEvent) -> Result<(), String> {
        let body = serde_json::to_string(event).map_err(|e| e.to_string())?;
        let known = self.url.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        let url = match known {
            Some(url) => url,
            None => {
                let found = self.sqs.get_queue_url().queue_name(&self.queue).send().await;
                let url = found.map_err(|e| format!("the queue {}: {e}", self.queue))?.queue_url.unwrap_or_default();
                *self.url.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(url.clone());
                url
            }
        };
        self.sqs.send_message().queue_url(url).message_body(body).send().await.map_err(|e| e.to_string())?;
        Ok(())
    }
}

/// The [`multicomms_wire::client_events::SIGNATURE_HEADER`] value for `body` sent at
/// `timestamp` (epoch seconds).
pub fn signature(secret: &[u8], timestamp: u64, body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    let mut signed = format!("{timestamp}.").into_bytes();
    signed.extend_from_slice(body);
    format!("t={timestamp},v1={}", hex::encode(hmac::sign(&key, &signed)))
}

/// What a receiver does with the header: the signature must be over this body with this secret,
/// and no older than `tolerance_seconds` at `now` (a replay later is refused).
pub fn verify(secret: &[u8], header: &str, body: &[u8], now: u64, tolerance_seconds: u64) -> Result<(), &'static str> {
    let part = |name: &str| header.split(',').find_map(|p| p.trim().strip_prefix(name));
    let timestamp: u64 = part("t=").and_then(|t| t.parse().ok()).ok_or("no timestamp")?;
    let tag = part("v1=").and_then(|v| hex::decode(v).ok()).ok_or("no v1 signature")?;
    if now.abs_diff(timestamp) > tolerance_seconds {
        return Err("the timestamp is outside the tolerance");
    }
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    let mut signed = format!("{timestamp}.").into_bytes();
    signed.extend_from_slice(body);
    hmac::verify(&key, &signed, &tag).map_err(|_| "the signature does not match")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_verifies_only_for_its_body_secret_and_time() {
        let body = br#"{"id":"evt_1","type":"taken_over"}"#;
        let header = signature(b"whsec", 1_000, body);
        assert!(header.starts_with("t=1000,v1="), "{header}");
        assert_eq!(verify(b"whsec", &header, body, 1_100, 300), Ok(()));
        assert!(verify(b"other", &header, body, 1_100, 300).is_err(), "another secret");
        assert!(verify(b"whsec", &header, b"{}", 1_100, 300).is_err(), "another body");
        assert!(verify(b"whsec", &header, body, 1_301, 300).is_err(), "too old: a replay");
        assert!(verify(b"whsec", "v1=00", body, 1_000, 300).is_err(), "no timestamp");
    }
}
