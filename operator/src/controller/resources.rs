//! The two reconcilers the controller runs: glue between the Kubernetes API and the engine.
use super::{ensure_finalizer, next_action, publish, secret_values, write_status, Error, State, FINALIZER};
use crate::crd::channel::ChannelStatus;
use crate::crd::company::CompanyStatus;
use crate::crd::{Channel, Company, DeletionPolicy};
use crate::desired;
use crate::reconcile::{self, cleanup, conditions::conditions, Report};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::finalizer::{finalizer, Event as Finalizer};
use kube::{Resource, ResourceExt};
use std::sync::Arc;

pub async fn reconcile_company(company: Arc<Company>, state: Arc<State>) -> Result<Action, Error> {
    let namespace = company.namespace().unwrap_or_default();
    let api: Api<Company> = Api::namespaced(state.client.clone(), &namespace);
    let company = ensure_finalizer(&api, company).await?;
    finalizer(&api, FINALIZER, company, |event| async {
        match event {
            Finalizer::Apply(company) => {
                let specs = desired::company::secrets(&company.spec, &state.engine.naming);
                let values = secret_values(&state.client, &namespace, &specs).await?;
                let started = std::time::Instant::now();
                let report = reconcile::company::reconcile(&state.engine, &company, &values).await;
                let status = CompanyStatus {
                    observed_generation: company.metadata.generation,
                    conditions: conditions(&report, previous(&company.status), &now()),
                    record_version: report.outputs.record_version.clone(),
                    secrets: report.outputs.secrets.clone(),
                    last_synced: Some(now().0.to_string()),
                };
                let was_ready = is_ready(previous(&company.status));
                finish(&state, &api, &*company, &report, started, was_ready, serde_json::to_value(status)).await
            }
            Finalizer::Cleanup(company) => {
                let delete = async { Ok(cleanup::delete_company(&state.engine, &company).await) };
                clean_up(&state, &*company, company.spec.deletion_policy, delete).await
            }
        }
    })
    .await
    .map_err(finalizer_error)
}

pub async fn reconcile_channel(channel: Arc<Channel>, state: Arc<State>) -> Result<Action, Error> {
    let namespace = channel.namespace().unwrap_or_default();
    let api: Api<Channel> = Api::namespaced(state.client.clone(), &namespace);
    let channel = ensure_finalizer(&api, channel).await?;
    finalizer(&api, FINALIZER, channel, |event| async {
        match event {
            Finalizer::Apply(channel) => {
                let specs = desired::channel::secrets(&channel.spec, &state.engine.naming);
                let values = secret_values(&state.client, &namespace, &specs).await?;
                let started = std::time::Instant::now();
                let report = reconcile::channel::reconcile(&state.engine, &channel, &values).await;
                let (queue, dead_letter) = (&report.outputs.queue, &report.outputs.dead_letter_queue);
                let status = ChannelStatus {
                    observed_generation: channel.metadata.generation,
                    conditions: conditions(&report, previous(&channel.status), &now()),
                    queue_url: queue.as_ref().map(|q| q.url.clone()),
                    queue_arn: queue.as_ref().map(|q| q.arn.clone()),
                    dead_letter_queue_url: dead_letter.as_ref().map(|q| q.url.clone()),
                    dead_letter_queue_arn: dead_letter.as_ref().map(|q| q.arn.clone()),
                    last_synced: Some(now().0.to_string()),
                };
                let was_ready = is_ready(previous(&channel.status));
                finish(&state, &api, &*channel, &report, started, was_ready, serde_json::to_value(status)).await
            }
            Finalizer::Cleanup(channel) => {
                let delete = async {
                    let users = companies_using(&state.client, &channel).await?;
                    Ok(cleanup::delete_channel(&state.engine, &channel, &users).await)
                };
                clean_up(&state, &*channel, channel.spec.deletion_policy, delete).await
            }
        }
    })
    .await
    .map_err(finalizer_error)
}

/// Companies (any namespace, not being deleted) whose allowed channels include this channel.
async fn companies_using(client: &kube::Client, channel: &Channel) -> Result<Vec<String>, Error> {
    let companies = Api::<Company>::all(client.clone()).list(&Default::default()).await?;
    Ok(companies
        .items
        .iter()
        .filter(|c| c.meta().deletion_timestamp.is_none() && c.spec.allowed_channels.contains(&channel.spec.kind))
        .map(|c| format!("Company {}/{}", c.namespace().unwrap_or_default(), c.name_any()))
        .collect())
}

trait HasConditions {
    fn conditions(&self) -> &[crate::crd::Condition];
}

impl HasConditions for CompanyStatus {
    fn conditions(&self) -> &[crate::crd::Condition] {
        &self.conditions
    }
}

impl HasConditions for ChannelStatus {
    fn conditions(&self) -> &[crate::crd::Condition] {
        &self.conditions
    }
}

fn previous<S: HasConditions>(status: &Option<S>) -> &[crate::crd::Condition] {
    status.as_ref().map(HasConditions::conditions).unwrap_or_default()
}

fn is_ready(conditions: &[crate::crd::Condition]) -> bool {
    conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True")
}

fn now() -> Time {
    Time(k8s_openapi::jiff::Timestamp::now())
}

/// Status, Events, metrics, and when to come back.
async fn finish<K>(
    state: &State,
    api: &Api<K>,
    resource: &K,
    report: &Report,
    started: std::time::Instant,
    was_ready: bool,
    status: Result<serde_json::Value, serde_json::Error>,
) -> Result<Action, Error>
where
    K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let status = status.map_err(|e| Error::Retry(format!("status does not serialise: {e}")))?;
    write_status(api, resource, status).await?;
    publish(&state.recorder, resource, report).await;
    let first_ready = (report.is_ready() && !was_ready).then(|| {
        let created = resource.meta().creation_timestamp.as_ref().map(|t| t.0).unwrap_or_else(|| now().0);
        let age = now().0.duration_since(created);
        std::time::Duration::try_from(age).unwrap_or_default()
    });
    state.metrics.observe(report, started.elapsed(), first_ready);
    next_action(report, state.resync)
}

/// Deletion: Retain leaves AWS as it is and says so; Delete removes what carries our marker.
/// A failed deletion keeps the finalizer, is published as a Warning and is retried.
async fn clean_up<K>(
    state: &State,
    resource: &K,
    policy: DeletionPolicy,
    delete: impl std::future::Future<Output = Result<Report, Error>>,
) -> Result<Action, Error>
where
    K: Resource<DynamicType = ()>,
{
    match policy {
        DeletionPolicy::Retain => {
            let note = "deletionPolicy Retain: its record, secrets and queues stay in AWS".to_string();
            let event = super::event(EventType::Normal, "Retained", note);
            if let Err(error) = state.recorder.publish(&event, &resource.object_ref(&())).await {
                tracing::warn!(%error, "could not publish an Event");
            }
            Ok(Action::await_change())
        }
        DeletionPolicy::Delete => {
            let report = delete.await?;
            publish(&state.recorder, resource, &report).await;
            match report.failure() {
                None => Ok(Action::await_change()),
                Some(failure) => Err(Error::Retry(format!("{}: {}", failure.reason.as_str(), failure.message))),
            }
        }
    }
}

fn finalizer_error(error: kube::runtime::finalizer::Error<Error>) -> Error {
    match error {
        kube::runtime::finalizer::Error::ApplyFailed(e) | kube::runtime::finalizer::Error::CleanupFailed(e) => e,
        other => Error::Finalizer(other.to_string()),
    }
}
