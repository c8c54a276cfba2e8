//! One reconciler for both kinds, in the spirit of controller-rs's `impl Document { reconcile,
//! cleanup }`: what differs between a Company and a Channel is [`Managed`]; the glue between the
//! Kubernetes API and the engine is written once in [`reconcile`].
use super::events::{event, publish};
use super::kube_io::{
    apply_scalers, apply_workers, companies_using, ensure_finalizer, keda_installed, secret_values, write_status,
};
use super::{Error, State};
use crate::crd::channel::ChannelStatus;
use crate::crd::company::CompanyStatus;
use crate::crd::{Channel, Company, Condition, DeletionPolicy};
use crate::desired::secret::SecretValues;
use crate::desired::Owner;
use crate::reconcile::{self, cleanup, conditions::conditions, Report};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::finalizer::{finalizer, Event as Finalizer};
use kube::{Resource, ResourceExt};
use multicomms_wire::Naming;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// What the controller needs of a kind it reconciles.
pub trait Managed:
    Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
    + Clone
    + serde::de::DeserializeOwned
    + serde::Serialize
    + std::fmt::Debug
    + Send
    + Sync
    + 'static
{
    /// The kind's name, as the tenancy rule and ownership markers spell it.
    const KIND: &'static str;
    /// The names of the Kubernetes Secrets it reads (in its namespace).
    fn secrets_read(&self, naming: &Naming) -> std::collections::BTreeSet<String>;
    /// The engine's reconcile of this kind.
    fn sync(&self, engine: &reconcile::Context, values: &SecretValues) -> impl Future<Output = Report> + Send;
    /// What `deletionPolicy: Delete` removes.
    fn delete(&self, state: &State) -> impl Future<Output = Result<Report, Error>> + Send;
    fn deletion_policy(&self) -> DeletionPolicy;
    /// The conditions of the status last written.
    fn conditions(&self) -> &[Condition];
    /// The status to write after `report`.
    fn status(&self, report: &Report, conditions: Vec<Condition>, now: &Time) -> serde_json::Value;
    /// The Kubernetes workloads it runs, applied; their conditions (none by default).
    fn workers(
        &self,
        _state: &State,
        _report: &Report,
        _now: &Time,
    ) -> impl Future<Output = Result<Vec<Condition>, Error>> + Send {
        async { Ok(Vec::new()) }
    }
}

impl Managed for Company {
    const KIND: &'static str = "Company";
    fn secrets_read(&self, naming: &Naming) -> std::collections::BTreeSet<String> {
        crate::desired::company::secrets_read(&self.spec, naming)
    }
    async fn sync(&self, engine: &reconcile::Context, values: &SecretValues) -> Report {
        reconcile::company::reconcile(engine, self, values).await
    }
    async fn delete(&self, state: &State) -> Result<Report, Error> {
        Ok(cleanup::delete_company(&state.engine, self).await)
    }
    fn deletion_policy(&self) -> DeletionPolicy {
        self.spec.deletion_policy
    }
    fn conditions(&self) -> &[Condition] {
        self.status.as_ref().map(|s| s.conditions.as_slice()).unwrap_or_default()
    }
    fn status(&self, report: &Report, conditions: Vec<Condition>, now: &Time) -> serde_json::Value {
        let status = CompanyStatus {
            observed_generation: self.metadata.generation,
            conditions,
            record_version: report.outputs.record_version.clone(),
            secrets: report.outputs.secrets.clone(),
            last_synced: Some(now.0.to_string()),
        };
        serde_json::to_value(status).unwrap_or_default()
    }
}

impl Managed for Channel {
    const KIND: &'static str = "Channel";
    fn secrets_read(&self, naming: &Naming) -> std::collections::BTreeSet<String> {
        crate::desired::secret::read_by(&crate::desired::channel::secrets(&self.spec, naming))
    }
    async fn sync(&self, engine: &reconcile::Context, values: &SecretValues) -> Report {
        reconcile::channel::reconcile(engine, self, values).await
    }
    async fn delete(&self, state: &State) -> Result<Report, Error> {
        let users = companies_using(&state.client, &state.watch, self).await?;
        Ok(cleanup::delete_channel(&state.engine, self, &users).await)
    }
    fn deletion_policy(&self) -> DeletionPolicy {
        self.spec.deletion_policy
    }
    fn conditions(&self) -> &[Condition] {
        self.status.as_ref().map(|s| s.conditions.as_slice()).unwrap_or_default()
    }
    fn status(&self, report: &Report, conditions: Vec<Condition>, now: &Time) -> serde_json::Value {
        let outputs = &report.outputs;
        let url = |q: &Option<reconcile::QueueOutput>| q.as_ref().map(|q| q.url.clone());
        let arn = |q: &Option<reconcile::QueueOutput>| q.as_ref().map(|q| q.arn.clone());
        let status = ChannelStatus {
            observed_generation: self.metadata.generation,
            conditions,
            queue_url: url(&outputs.queue),
            queue_arn: arn(&outputs.queue),
            dead_letter_queue_url: url(&outputs.dead_letter_queue),
            dead_letter_queue_arn: arn(&outputs.dead_letter_queue),
            replies_queue_url: url(&outputs.replies_queue),
            replies_queue_arn: arn(&outputs.replies_queue),
            replies_dead_letter_queue_url: url(&outputs.replies_dead_letter_queue),
            replies_dead_letter_queue_arn: arn(&outputs.replies_dead_letter_queue),
            last_synced: Some(now.0.to_string()),
        };
        serde_json::to_value(status).unwrap_or_default()
    }
    async fn workers(&self, state: &State, report: &Report, now: &Time) -> Result<Vec<Condition>, Error> {
        use crate::desired::workers::{self as desired, Flow};
        let Some(settings) = &state.workers else { return Ok(Vec::new()) };
        // The workers consume the Channel's queues: not while those are not this Channel's, in sync.
        let queues = report.subsystems.iter().find(|(name, _)| *name == reconcile::channel::QUEUES_SYNCED);
        if let Some((_, Err(failure))) = queues {
            let why = failure.reason.as_str();
            return Ok(vec![desired::blocked(why, self.metadata.generation, self.conditions(), now)]);
        }
        let autoscaled = desired::wants_autoscaling(self) && keda_installed(&state.client).await?;
        let wanted = desired::deployments(self, settings, autoscaled);
        let applied = apply_workers(&state.client, self, &wanted, &state.manager).await?;
        let url = |q: &Option<reconcile::QueueOutput>| q.as_ref().map(|q| q.url.clone());
        let queues = [(Flow::Initial, url(&report.outputs.queue)), (Flow::Replies, url(&report.outputs.replies_queue))];
        let queue_urls: Vec<(Flow, String)> = queues
            .into_iter()
            .filter(|(flow, _)| desired::flows(self.spec.kind).contains(flow))
            .filter_map(|(flow, url)| Some((flow, url?)))
            .collect();
        if autoscaled {
            let authentication = desired::trigger_authentication(self, settings);
            let scalers = desired::scaled_objects(self, settings, &queue_urls);
            apply_scalers(&state.client, self, &authentication, &scalers, &state.manager).await?;
        } else if keda_installed(&state.client).await? {
            apply_scalers(&state.client, self, &serde_json::Value::Null, &[], &state.manager).await?;
        }
        let condition = crate::desired::workers::condition(&applied, self.metadata.generation, self.conditions(), now);
        // An Event when the workers become ready or start rolling (a scale or a new config).
        let was = self.conditions().iter().find(|c| c.type_ == condition.type_).map(|c| c.status.as_str());
        if was != Some(condition.status.as_str()) {
            let reason = if condition.status == "True" { "WorkersReady" } else { "WorkersRollingOut" };
            let note = event(EventType::Normal, reason, condition.message.clone());
            state.events.publish(&note, &self.object_ref(&())).await;
        }
        Ok(vec![condition])
    }
}

/// Per resource: our finalizer on it; on apply, its Secrets read, the engine run, status and
/// Events written; on deletion, its `deletionPolicy` carried out.
pub async fn reconcile<K: Managed>(resource: Arc<K>, state: Arc<State>) -> Result<Action, Error> {
    let namespace = resource.namespace().unwrap_or_default();
    let api: Api<K> = Api::namespaced(state.client.clone(), &namespace);
    let resource = ensure_finalizer(&api, resource, &state.finalizer).await?;
    // Deleted before it was moved to this environment's finalizer: cleaned up under the old one.
    let legacy = resource.finalizers().iter().any(|f| f == super::LEGACY_FINALIZER);
    let finalizer_name = if legacy { super::LEGACY_FINALIZER } else { state.finalizer.as_str() };
    finalizer(&api, finalizer_name, resource, |event| async {
        match event {
            Finalizer::Apply(resource) => apply(&state, &api, &namespace, &*resource).await,
            Finalizer::Cleanup(resource) => {
                state.secret_readers.forget(&*resource);
                clean_up(&state, &*resource).await
            }
        }
    })
    .await
    .map_err(Error::from_finalizer)
}

async fn apply<K: Managed>(state: &State, api: &Api<K>, namespace: &str, resource: &K) -> Result<Action, Error> {
    let names = resource.secrets_read(&state.engine.naming);
    state.secret_readers.note(resource, &names);
    let reader = Owner { kind: K::KIND, namespace: namespace.to_string(), name: resource.name_any() };
    let values = secret_values(&state.client, &reader, &names).await?;
    let started = std::time::Instant::now();
    let report = resource.sync(&state.engine, &values).await;
    let now = now();
    let mut conditions = conditions(&report, resource.conditions(), &now);
    conditions.extend(resource.workers(state, &report, &now).await?);
    let status = resource.status(&report, conditions, &now);
    let current = serde_json::to_value(resource).map(|r| r["status"].clone()).unwrap_or_default();
    if worth_writing(&current, &status, &now, state.resync) {
        write_status(api, resource, status, &state.manager).await?;
    }
    publish(&state.events, resource, &report).await;
    let was_ready = resource.conditions().iter().any(|c| c.type_ == "Ready" && c.status == "True");
    let first_ready = (report.is_ready() && !was_ready).then(|| {
        let created = resource.meta().creation_timestamp.as_ref().map(|t| t.0).unwrap_or(now.0);
        Duration::try_from(now.0.duration_since(created)).unwrap_or_default()
    });
    state.metrics.observe(&report, started.elapsed(), first_ready);
    next_action(&report, state.resync)
}

/// Whether `new` tells something `current` does not: any field but `lastSynced`, or a
/// `lastSynced` older than half the resync. A status write is a watch event for this very
/// controller, so a reconcile that found nothing new must not write, or it wakes itself at once,
/// forever; `lastSynced` is thereby at most half a resync old.
fn worth_writing(current: &serde_json::Value, new: &serde_json::Value, now: &Time, resync: Duration) -> bool {
    const LAST_SYNCED: &str = "lastSynced";
    let without_sync_time = |status: &serde_json::Value| {
        let mut status = status.clone();
        if let Some(fields) = status.as_object_mut() {
            fields.remove(LAST_SYNCED);
        }
        status
    };
    let synced = current[LAST_SYNCED].as_str().and_then(|t| t.parse::<k8s_openapi::jiff::Timestamp>().ok());
    let stale = synced.is_none_or(|at| Duration::try_from(now.0.duration_since(at)).is_ok_and(|age| age > resync / 2));
    stale || without_sync_time(current) != without_sync_time(new)
}

/// After a reconcile: in sync or a user error → wait for a change (watch) or the resync, never a
/// hot loop; anything else → retry soon.
fn next_action(report: &Report, resync: Duration) -> Result<Action, Error> {
    match report.failure() {
        Some(failure) if !failure.reason.is_terminal() => Err(Error::retry(failure)),
        _ => Ok(Action::requeue(super::jittered(resync))),
    }
}

/// Deletion: Retain leaves AWS as it is and says so; Delete removes what carries our marker.
/// A failed deletion keeps the finalizer, is published as a Warning and is retried.
async fn clean_up<K: Managed>(state: &State, resource: &K) -> Result<Action, Error> {
    match resource.deletion_policy() {
        DeletionPolicy::Retain => {
            let note = "deletionPolicy Retain: its record, secrets and queues stay in AWS".to_string();
            let event = event(EventType::Normal, "Retained", note);
            state.events.publish(&event, &resource.object_ref(&())).await;
            Ok(Action::await_change())
        }
        DeletionPolicy::Delete => {
            let report = resource.delete(state).await?;
            publish(&state.events, resource, &report).await;
            match report.failure() {
                None => Ok(Action::await_change()),
                Some(failure) => Err(Error::retry(failure)),
            }
        }
    }
}

fn now() -> Time {
    Time(k8s_openapi::jiff::Timestamp::now())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn at(text: &str) -> Time {
        Time(text.parse().expect("a timestamp"))
    }

    #[test]
    fn a_status_is_written_when_it_says_something_new_or_its_sync_time_is_half_a_resync_old() {
        let resync = Duration::from_secs(600);
        let now = at("2026-11-29T12:10:00Z");
        let current =
            json!({"observedGeneration": 2, "conditions": [{"type": "Ready"}], "lastSynced": "2026-11-29T12:08:00Z"});
        let same =
            json!({"observedGeneration": 2, "conditions": [{"type": "Ready"}], "lastSynced": "2026-11-29T12:10:00Z"});
        assert!(!worth_writing(&current, &same, &now, resync), "only the sync time differs");
        let changed =
            json!({"observedGeneration": 3, "conditions": [{"type": "Ready"}], "lastSynced": "2026-11-29T12:10:00Z"});
        assert!(worth_writing(&current, &changed, &now, resync));
        assert!(worth_writing(&current, &same, &at("2026-11-29T12:13:01Z"), resync), "older than half a resync");
        assert!(worth_writing(&serde_json::Value::Null, &same, &now, resync), "no status yet");
    }
}
