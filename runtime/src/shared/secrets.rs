//! Credentials from Secrets Manager, cached for a short TTL (the original fetched them for every
//! message), values kept in secrecy types. Shapes are the ones the operator writes (spec §6).
use super::failure::Failure;
use aws_sdk_secretsmanager::error::ProvideErrorMetadata;
use futures::future::{BoxFuture, FutureExt, Shared};
use multicomms_wire::secret_keys;
use prometheus_client::metrics::counter::Counter;
use secrecy::{ExposeSecret, SecretString};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

pub struct TwilioCredentials {
    pub account_sid: String,
    pub auth_token: SecretString,
    /// The WhatsApp Content API template (`HX…`); absent in SMS secrets.
    pub template_sid: Option<String>,
}

type Read = Result<Arc<SecretString>, Failure>;

pub struct Secrets {
    client: aws_sdk_secretsmanager::Client,
    ttl: Duration,
    cache: Mutex<HashMap<String, (Instant, Arc<SecretString>)>>,
    /// Reads under way, shared by every message that misses the cache meanwhile: a burst of
    /// messages for one company costs one GetSecretValue per secret, not one each.
    reading: Mutex<HashMap<String, Shared<BoxFuture<'static, Read>>>>,
    /// Reads that found a secret scheduled for deletion (an alert: someone is deleting what
    /// live conversations need).
    scheduled_for_deletion: Counter,
    /// How long a failed read is answered from memory (zero: never). The router's webhook reads
    /// secrets for requests not yet authenticated, which must not cost a read each.
    failure_ttl: Duration,
    failed: Mutex<HashMap<String, (Instant, Failure)>>,
}

impl Secrets {
    pub fn new(client: aws_sdk_secretsmanager::Client, ttl: Duration, scheduled_for_deletion: Counter) -> Self {
        Secrets {
            client,
            ttl,
            cache: Mutex::default(),
            reading: Mutex::default(),
            scheduled_for_deletion,
            failure_ttl: Duration::ZERO,
            failed: Mutex::default(),
        }
    }

    /// Answers a failed read again from memory for `ttl`, instead of reading once more.
    pub fn remembering_failures_for(mut self, ttl: Duration) -> Self {
        self.failure_ttl = ttl;
        self
    }

    /// `{"ai_api_key": …}` (the keys are in [`secret_keys`]).
    pub async fn ai_key(&self, name: &str) -> Result<SecretString, Failure> {
        self.field(name, secret_keys::AI_API_KEY).await
    }

    /// `{"signing_secret": …}`: the key a company's events are signed with.
    pub async fn client_events_key(&self, name: &str) -> Result<SecretString, Failure> {
        self.field(name, secret_keys::CLIENT_EVENTS_SIGNING_SECRET).await
    }

    /// `{"sendgrid_api_key": …}`.
    pub async fn sendgrid_key(&self, name: &str) -> Result<SecretString, Failure> {
        self.field(name, secret_keys::SENDGRID_API_KEY).await
    }

    /// `{"twilio_account_sid", "twilio_auth_token", "twilio_template_sid"?}`.
    pub async fn twilio(&self, name: &str) -> Result<TwilioCredentials, Failure> {
        let json = self.json(name).await?;
        let text = |key: &str| json.get(key).and_then(|v| v.as_str()).filter(|v| !v.is_empty()).map(str::to_string);
        match (text(secret_keys::TWILIO_ACCOUNT_SID), text(secret_keys::TWILIO_AUTH_TOKEN)) {
            (Some(account_sid), Some(token)) => Ok(TwilioCredentials {
                account_sid,
                auth_token: SecretString::from(token),
                template_sid: text(secret_keys::TWILIO_TEMPLATE_SID),
            }),
            _ => Err(Failure::Permanent(format!("secret {name} lacks twilio_account_sid or twilio_auth_token"))),
        }
    }

    /// Drops a cached value (its credential was rejected and may have been rotated).
    pub fn forget(&self, name: &str) {
        if let Ok(mut cache) = self.cache.lock() {
            cache.remove(name);
        }
        self.failed.lock().unwrap_or_else(PoisonError::into_inner).remove(name);
    }

    async fn field(&self, name: &str, key: &str) -> Result<SecretString, Failure> {
        let json = self.json(name).await?;
        match json.get(key).and_then(|v| v.as_str()).filter(|v| !v.is_empty()) {
            Some(value) => Ok(SecretString::from(value.to_string())),
            None => Err(Failure::Permanent(format!("secret {name} lacks the key {key}"))),
        }
    }

    /// The secret's JSON object. The parsed map lives only as long as the caller's borrow; the
    /// cache keeps the raw string in a `SecretString`.
    async fn json(&self, name: &str) -> Result<serde_json::Map<String, serde_json::Value>, Failure> {
        let raw = self.raw(name).await?;
        match serde_json::from_str(raw.expose_secret()) {
            Ok(serde_json::Value::Object(map)) => Ok(map),
            // Never echo the content: it is a credential.
            _ => Err(Failure::Permanent(format!("secret {name} is not a JSON object"))),
        }
    }

    async fn raw(&self, name: &str) -> Result<Arc<SecretString>, Failure> {
        if name.is_empty() {
            return Err(Failure::Permanent("no secret name configured".into()));
        }
        if let Some((at, value)) = self.cache.lock().ok().and_then(|c| c.get(name).cloned()) {
            if at.elapsed() < self.ttl {
                return Ok(value);
            }
        }
        if let Some((at, failure)) = self.failed.lock().unwrap_or_else(PoisonError::into_inner).get(name) {
            if at.elapsed() < self.failure_ttl {
                return Err(failure.clone());
            }
        }
        let read = {
            let mut reading = self.reading.lock().unwrap_or_else(PoisonError::into_inner);
            let started = || read(self.client.clone(), self.scheduled_for_deletion.clone(), name.to_string());
            reading.entry(name.to_string()).or_insert_with(|| started().boxed().shared()).clone()
        };
        let value = read.await;
        self.reading.lock().unwrap_or_else(PoisonError::into_inner).remove(name);
        let value = match value {
            Ok(value) => value,
            Err(failure) => {
                if !self.failure_ttl.is_zero() {
                    let mut failed = self.failed.lock().unwrap_or_else(PoisonError::into_inner);
                    failed.insert(name.to_string(), (Instant::now(), failure.clone()));
                }
                return Err(failure);
            }
        };
        if let Ok(mut cache) = self.cache.lock() {
            cache.insert(name.to_string(), (Instant::now(), value.clone()));
        }
        Ok(value)
    }
}

/// One GetSecretValue.
async fn read(client: aws_sdk_secretsmanager::Client, scheduled_for_deletion: Counter, name: String) -> Read {
    let out = client.get_secret_value().secret_id(&name).send().await.map_err(|e| {
        let code = e.code().unwrap_or("");
        let detail = aws_sdk_secretsmanager::error::DisplayErrorContext(&e).to_string();
        let being_deleted = code == "InvalidRequestException"
            && e.message().is_some_and(|m| m.contains("deletion") || m.contains("deleted"));
        if being_deleted {
            // Restorable, and the operator restores what is still referenced: wait for it
            // rather than fail the conversation.
            scheduled_for_deletion.inc();
            tracing::error!(secret = %name, "secret is scheduled for deletion but still in use; retrying later");
            return Failure::Transient(format!("secret {name} is scheduled for deletion"));
        }
        match code {
            // AccessDenied stays transient: IAM changes take a while to land.
            "ResourceNotFoundException"
            | "InvalidRequestException"
            | "DecryptionFailure"
            | "InvalidParameterException" => Failure::Permanent(format!("secret {name}: {code}")),
            _ => Failure::Transient(format!("secret {name}: {detail}")),
        }
    })?;
    let Some(value) = out.secret_string else {
        return Err(Failure::Permanent(format!("secret {name} has no string value")));
    };
    Ok(Arc::new(SecretString::from(value)))
}
