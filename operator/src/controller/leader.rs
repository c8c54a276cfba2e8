//! Leader election on a `coordination.k8s.io/v1` Lease, so several replicas can run with one
//! active. The holder renews the lease; a standby takes it over once it has not been renewed
//! for `lease_duration`. Writes carry the Lease's resourceVersion, so two candidates can never
//! both win the same round.
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, ObjectMeta, PostParams};
use std::time::Duration;

pub struct LeaderElector {
    api: Api<Lease>,
    name: String,
    identity: String,
    lease_duration: Duration,
}

/// What one round of trying found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Round {
    /// We hold the lease (acquired or renewed).
    Leading,
    /// Someone else holds an unexpired lease.
    Following { holder: String },
}

impl LeaderElector {
    pub fn new(client: kube::Client, namespace: &str, name: &str, identity: &str, lease_duration: Duration) -> Self {
        LeaderElector {
            api: Api::namespaced(client, namespace),
            name: name.into(),
            identity: identity.into(),
            lease_duration,
        }
    }

    /// Acquires or renews the lease if it is free, ours, or expired. A lost race (409) is a
    /// `Following` round, not an error.
    pub async fn try_lead(&self) -> Result<Round, kube::Error> {
        let now = Timestamp::now();
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta { name: Some(self.name.clone()), ..Default::default() },
                spec: Some(self.spec(now, 0, now)),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(Round::Leading),
                Err(kube::Error::Api(e)) if e.code == 409 => self.follower_of(None),
                Err(e) => Err(e),
            };
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().unwrap_or_default();
        let renewed = spec.renew_time.as_ref().map(|t| t.0).unwrap_or(Timestamp::UNIX_EPOCH);
        let duration = spec.lease_duration_seconds.map(i64::from).unwrap_or(self.lease_duration.as_secs() as i64);
        let expired = renewed + SignedDuration::from_secs(duration) < now;
        if holder != self.identity && !holder.is_empty() && !expired {
            return self.follower_of(Some(holder));
        }
        let (acquired, transitions) = if holder == self.identity {
            (spec.acquire_time.map(|t| t.0).unwrap_or(now), spec.lease_transitions.unwrap_or(0))
        } else {
            (now, spec.lease_transitions.unwrap_or(0) + 1)
        };
        lease.spec = Some(self.spec(acquired, transitions, now));
        match self.api.replace(&self.name, &PostParams::default(), &lease).await {
            Ok(_) => Ok(Round::Leading),
            Err(kube::Error::Api(e)) if e.code == 409 => self.follower_of(Some(holder)),
            Err(e) => Err(e),
        }
    }

    /// Gives the lease up (on shutdown), so a standby takes over at once.
    pub async fn release(&self) -> Result<(), kube::Error> {
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            return Ok(());
        };
        if lease.spec.as_ref().and_then(|s| s.holder_identity.as_deref()) != Some(self.identity.as_str()) {
            return Ok(());
        }
        if let Some(spec) = lease.spec.as_mut() {
            spec.holder_identity = None;
            spec.renew_time = None;
        }
        self.api.replace(&self.name, &PostParams::default(), &lease).await.map(|_| ())
    }

    /// Tries every `retry` until this replica leads.
    pub async fn wait_until_leading(&self, retry: Duration) -> Result<(), kube::Error> {
        loop {
            match self.try_lead().await? {
                Round::Leading => return Ok(()),
                Round::Following { holder } => tracing::info!(%holder, "standing by: another replica leads"),
            }
            tokio::time::sleep(retry).await;
        }
    }

    fn follower_of(&self, holder: Option<String>) -> Result<Round, kube::Error> {
        Ok(Round::Following { holder: holder.unwrap_or_else(|| "(unknown)".into()) })
    }

    fn spec(&self, acquired: Timestamp, transitions: i32, now: Timestamp) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(self.lease_duration.as_secs() as i32),
            acquire_time: Some(MicroTime(acquired)),
            renew_time: Some(MicroTime(now)),
            lease_transitions: Some(transitions),
            ..Default::default()
        }
    }
}
