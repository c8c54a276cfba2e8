//! Leader election on a `coordination.k8s.io/v1` Lease, so several replicas can run with one
//! active. Writes carry the Lease's resourceVersion, so two candidates can never both win the
//! same round.
//!
//! Timing, in the spirit of client-go's elector:
//! - a standby judges expiry on its **own monotonic clock**: the lease is free once it has not
//!   changed for `leaseDurationSeconds` since this replica last saw it change. The holder's
//!   `renewTime` comes from another machine's wall clock and is never compared with ours;
//! - the leader gives up at the **renew deadline** (two thirds of the lease), measured from the
//!   start of its last successful renewal, and each renewal attempt is cut off at that deadline,
//!   so a throttled or hung API call cannot keep it leading. A standby can take over no sooner
//!   than a full lease after it saw that renewal, so the old leader has stopped by then.
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ObjectMeta, PostParams};
use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

pub struct LeaderElector {
    api: Api<Lease>,
    name: String,
    identity: String,
    lease_duration: Duration,
    /// The lease's holder and renewal as last seen, and when this replica saw them change.
    observed: Mutex<Option<(Observed, Instant)>>,
}

/// What tells one renewal from the next.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Observed {
    holder: String,
    renew_time: Option<Timestamp>,
    transitions: Option<i32>,
}

/// What one round of trying found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Round {
    /// We hold the lease (acquired or renewed).
    Leading,
    /// Someone else holds a lease that has not expired by our clock.
    Following { holder: String },
}

/// Why a leader stopped leading.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LostLease {
    #[error("the lease was taken over by {0}")]
    TakenOver(String),
    #[error("the lease could not be renewed within the renew deadline ({0:?})")]
    NotRenewed(Duration),
}

impl LeaderElector {
    pub fn new(client: kube::Client, namespace: &str, name: &str, identity: &str, lease_duration: Duration) -> Self {
        LeaderElector {
            api: Api::namespaced(client, namespace),
            name: name.into(),
            identity: identity.into(),
            lease_duration,
            observed: Mutex::new(None),
        }
    }

    /// How long after the start of its last successful renewal a leader may go on leading.
    pub fn renew_deadline(&self) -> Duration {
        self.lease_duration * 2 / 3
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
        let duration =
            spec.lease_duration_seconds.map_or(self.lease_duration, |s| Duration::from_secs(s.max(1) as u64));
        let unchanged_for = self.observe(Observed {
            holder: holder.clone(),
            renew_time: spec.renew_time.as_ref().map(|t| t.0),
            transitions: spec.lease_transitions,
        });
        if holder != self.identity && !holder.is_empty() && unchanged_for < duration {
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

    /// Records what the lease says and returns how long it has said it, by our clock.
    fn observe(&self, now_seen: Observed) -> Duration {
        let Ok(mut observed) = self.observed.lock() else { return Duration::ZERO };
        match observed.as_ref() {
            Some((seen, since)) if *seen == now_seen => since.elapsed(),
            _ => {
                *observed = Some((now_seen, Instant::now()));
                Duration::ZERO
            }
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

    /// Tries every `retry` until this replica leads; returns when the winning attempt started.
    pub async fn wait_until_leading(&self, retry: Duration) -> Result<Instant, kube::Error> {
        loop {
            let started = Instant::now();
            match self.try_lead().await? {
                Round::Leading => return Ok(started),
                Round::Following { holder } => tracing::info!(%holder, "standing by: another replica leads"),
            }
            tokio::time::sleep(retry).await;
        }
    }

    /// Runs `work` while this replica leads, renewing every `renew`. Returns once `work` ends
    /// (the lease is then released), or with [`LostLease`] as soon as leadership is lost: `work`
    /// is dropped at the renew deadline at the latest, before a standby can take over.
    pub async fn lead(
        &self,
        renew: Duration,
        led_since: Instant,
        work: impl Future<Output = ()>,
    ) -> Result<(), LostLease> {
        let deadline = self.renew_deadline();
        let renewing = async {
            let mut renewed = led_since;
            loop {
                tokio::time::sleep_until((Instant::now() + renew).min(renewed + deadline)).await;
                let started = Instant::now();
                match tokio::time::timeout_at(renewed + deadline, self.try_lead()).await {
                    Ok(Ok(Round::Leading)) => renewed = started,
                    Ok(Ok(Round::Following { holder })) => return LostLease::TakenOver(holder),
                    Ok(Err(error)) => tracing::warn!(%error, "could not renew the lease"),
                    Err(_) => return LostLease::NotRenewed(deadline),
                }
                if Instant::now() >= renewed + deadline {
                    return LostLease::NotRenewed(deadline);
                }
            }
        };
        tokio::select! {
            () = work => {
                if let Err(error) = self.release().await {
                    tracing::warn!(%error, "could not release the lease");
                }
                Ok(())
            }
            lost = renewing => Err(lost),
        }
    }

    fn follower_of(&self, holder: Option<String>) -> Result<Round, kube::Error> {
        Ok(Round::Following { holder: holder.unwrap_or_else(|| "(unknown)".into()) })
    }

    fn spec(&self, acquired: Timestamp, transitions: i32, now: Timestamp) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(self.lease_duration.as_secs().max(1) as i32),
            acquire_time: Some(MicroTime(acquired)),
            renew_time: Some(MicroTime(now)),
            lease_transitions: Some(transitions),
            ..Default::default()
        }
    }
}

/// This replica's name in the lease: the pod's name, or the host's with a random suffix. Never
/// the process id alone, which is 1 in every container.
pub fn identity(pod_name: Option<String>) -> String {
    pod_name.filter(|n| !n.is_empty()).unwrap_or_else(|| {
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "multicomms-operator".into());
        format!("{host}-{}", &uuid::Uuid::new_v4().simple().to_string()[..8])
    })
}
