//! The in-cluster controller (`run`): the reconcile of `apply`, driven by the Kubernetes API.
//!
//! Per resource: make sure our finalizer is on it; read the Kubernetes Secrets it references;
//! run the engine ([`crate::reconcile`]); write `status` (conditions, observedGeneration, where
//! things are) with server-side apply under one field manager; publish an Event per change and
//! per failure; requeue. On deletion, `deletionPolicy` decides between leaving the AWS objects
//! (Retain, said in an Event) and deleting the ones that carry the resource's marker (Delete).
pub mod leader;
pub mod metrics;
mod resources;

pub use resources::{reconcile_channel, reconcile_company};

use crate::desired::secret::{SecretSpec, SecretValues, Source};
use crate::reconcile::{self, Action as Change, Report};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, PartialObjectMeta, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Resource, ResourceExt};
use secrecy::SecretString;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

/// Field manager of status writes and reporter of Events.
pub const MANAGER: &str = "multicomms-operator";
/// Keeps a resource until its AWS objects are dealt with per its `deletionPolicy`.
pub const FINALIZER: &str = "multicomms.io/cleanup";

/// Everything a reconcile needs, shared by all of them.
pub struct State {
    pub engine: reconcile::Context,
    pub client: kube::Client,
    pub recorder: Recorder,
    /// Base period of the periodic resync (jittered ±10 %), which also repairs AWS drift.
    pub resync: Duration,
    pub metrics: Arc<metrics::Metrics>,
}

impl State {
    pub fn new(engine: reconcile::Context, client: kube::Client, resync: Duration) -> Self {
        let reporter = Reporter { controller: MANAGER.into(), instance: std::env::var("POD_NAME").ok() };
        let metrics = Arc::new(metrics::Metrics::new(engine.aws.calls.clone()));
        State { engine, recorder: Recorder::new(client.clone(), reporter), client, resync, metrics }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// A failure worth another try soon: AWS errors, objects still in use.
    #[error("{0}")]
    Retry(String),
    #[error("finalizer: {0}")]
    Finalizer(String),
    #[error("leadership: {0}")]
    Leadership(#[from] leader::LostLease),
}

/// Requeue after a failed reconcile. AWS throttling is already backed off inside the SDK; this
/// spaces whole reconciles.
pub fn error_policy<K>(_resource: Arc<K>, error: &Error, _state: Arc<State>) -> Action {
    tracing::warn!(%error, "reconcile failed; retrying");
    Action::requeue(jittered(Duration::from_secs(30)))
}

/// `base` ±10 %, so resources created together do not resync together.
fn jittered(base: Duration) -> Duration {
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    let factor = 0.9 + f64::from(nanos % 1000) / 5000.0;
    base.mul_f64(factor)
}

/// After a reconcile: in sync or a user error → wait for a change (watch) or the resync, never a
/// hot loop; anything else → retry soon.
fn next_action(report: &Report, resync: Duration) -> Result<Action, Error> {
    match report.failure() {
        Some(failure) if !failure.reason.is_terminal() => {
            Err(Error::Retry(format!("{}: {}", failure.reason.as_str(), failure.message)))
        }
        _ => Ok(Action::requeue(jittered(resync))),
    }
}

/// Adds our finalizer unless present, and returns the resource as it now is. A merge patch
/// carrying the resourceVersion, so it fails rather than overwrite a concurrent change.
async fn ensure_finalizer<K>(api: &Api<K>, resource: Arc<K>) -> Result<Arc<K>, Error>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    if resource.finalizers().iter().any(|f| f == FINALIZER) || resource.meta().deletion_timestamp.is_some() {
        return Ok(resource);
    }
    let mut finalizers = resource.finalizers().to_vec();
    finalizers.push(FINALIZER.to_string());
    let patch = serde_json::json!({
        "metadata": {"finalizers": finalizers, "resourceVersion": resource.resource_version()}
    });
    Ok(Arc::new(api.patch(&resource.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await?))
}

/// The values of the Kubernetes Secrets that `specs` reference, from `namespace`. A missing
/// Secret or key is simply absent: the engine reports it, naming the field.
async fn secret_values(client: &kube::Client, namespace: &str, specs: &[SecretSpec]) -> Result<SecretValues, Error> {
    let names = referenced_secrets(specs);
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let mut values = SecretValues::default();
    for name in names {
        let Some(secret) = api.get_opt(name).await? else {
            continue;
        };
        for (key, bytes) in secret.data.unwrap_or_default() {
            match String::from_utf8(bytes.0) {
                Ok(text) => values.insert(name, &key, SecretString::from(text)),
                Err(_) => tracing::warn!(secret = name, key, "Secret value is not UTF-8; treated as missing"),
            }
        }
    }
    Ok(values)
}

/// Server-side apply of `status` under [`MANAGER`].
async fn write_status<K>(api: &Api<K>, resource: &K, status: serde_json::Value) -> Result<(), Error>
where
    K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let patch = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    api.patch_status(&resource.name_any(), &PatchParams::apply(MANAGER).force(), &Patch::Apply(&patch)).await?;
    Ok(())
}

/// One Normal Event per kind of change (Created, Updated, …) listing its objects, and a Warning
/// for the deciding failure. (The recorder folds repeats of an Event into a series keyed by
/// reason, not note, so per-object Events would hide all but the first object.) Notes name
/// objects and fields, never values.
async fn publish<K>(recorder: &Recorder, resource: &K, report: &Report)
where
    K: Resource<DynamicType = ()>,
{
    let reference = resource.object_ref(&());
    let mut events = Vec::new();
    for (action, reason) in [
        (Change::Create, "Created"),
        (Change::Update, "Updated"),
        (Change::Restore, "Restored"),
        (Change::Delete, "Deleted"),
    ] {
        let changes: Vec<String> =
            report.changes.iter().filter(|c| c.action == action).map(ToString::to_string).collect();
        if !changes.is_empty() {
            events.push(event(EventType::Normal, reason, changes.join("; ")));
        }
    }
    if let Some((subsystem, failure)) = report.failed_subsystem() {
        events.push(event(EventType::Warning, failure.reason.as_str(), format!("{subsystem}: {}", failure.message)));
    }
    for event in events {
        if let Err(error) = recorder.publish(&event, &reference).await {
            tracing::warn!(%error, reason = event.reason, "could not publish an Event");
        }
    }
}

fn event(type_: EventType, reason: &str, note: String) -> Event {
    Event { type_, reason: reason.into(), note: Some(truncate(note)), action: "Reconcile".into(), secondary: None }
}

/// Event notes are limited to 1 kB.
fn truncate(mut note: String) -> String {
    if note.len() > 1000 {
        let mut end = 1000;
        while !note.is_char_boundary(end) {
            end -= 1;
        }
        note.truncate(end);
        note.push('…');
    }
    note
}

/// Runs both controllers until SIGTERM/SIGINT, then lets in-flight reconciles finish.
/// A change to a Kubernetes Secret re-reconciles every resource that references it, so a
/// rotated credential reaches Secrets Manager within seconds.
pub async fn run(state: Arc<State>, concurrency: u16) {
    use crate::crd::{Channel, Company};
    use futures::StreamExt;
    use kube::runtime::{controller::Config, watcher, Controller};

    let client = state.client.clone();
    let config = Config::default().concurrency(concurrency);

    let naming = state.engine.naming.clone();
    let companies = Controller::new(Api::<Company>::all(client.clone()), watcher::Config::default());
    let store = companies.store();
    let companies = companies
        .watches(secret_names(&client), watcher::Config::default(), move |secret| {
            referencing(&store, &secret, |c: &Company| crate::desired::company::secrets(&c.spec, &naming))
        })
        .with_config(config.clone())
        .shutdown_on_signal()
        .run(reconcile_company, error_policy, state.clone())
        .for_each(|result| async move { log_result("Company", result) });

    let naming = state.engine.naming.clone();
    let channels = Controller::new(Api::<Channel>::all(client.clone()), watcher::Config::default());
    let store = channels.store();
    let channels = channels
        .watches(secret_names(&client), watcher::Config::default(), move |secret| {
            referencing(&store, &secret, |c: &Channel| crate::desired::channel::secrets(&c.spec, &naming))
        })
        .with_config(config)
        .shutdown_on_signal()
        .run(reconcile_channel, error_policy, state)
        .for_each(|result| async move { log_result("Channel", result) });

    futures::join!(companies, channels);
}

/// Secrets as metadata only (`PartialObjectMetadata`): a change to one is all the controllers
/// watch for, so the cluster's Secret values (TLS keys, tokens) never stream through the
/// operator; it reads the values of the Secrets a resource references, in its namespace, when it
/// reconciles that resource.
fn secret_names(client: &kube::Client) -> Api<PartialObjectMeta<Secret>> {
    Api::all(client.clone())
}

fn log_result<T: std::fmt::Debug, E: std::fmt::Display>(kind: &str, result: Result<T, E>) {
    match result {
        Ok(reconciled) => tracing::debug!(kind, ?reconciled, "reconciled"),
        Err(error) => tracing::warn!(kind, %error, "reconcile error"),
    }
}

/// The resources in `store` (same namespace as `secret`) whose secrets read it.
fn referencing<K>(
    store: &kube::runtime::reflector::Store<K>,
    secret: &PartialObjectMeta<Secret>,
    specs: impl Fn(&K) -> Vec<SecretSpec>,
) -> Vec<kube::runtime::reflector::ObjectRef<K>>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    let (namespace, name) = (secret.namespace(), secret.name_any());
    store
        .state()
        .into_iter()
        .filter(|r| r.namespace() == namespace && referenced_secrets(&specs(r)).contains(name.as_str()))
        .map(|r| kube::runtime::reflector::ObjectRef::from_obj(&*r))
        .collect()
}

/// Names of the Kubernetes Secrets that `specs` read.
fn referenced_secrets(specs: &[SecretSpec]) -> BTreeSet<&str> {
    specs
        .iter()
        .flat_map(|s| &s.keys)
        .filter_map(|(_, source)| match source {
            Source::Secret { reference, .. } => Some(reference.name.as_str()),
            Source::Literal(_) => None,
        })
        .collect()
}

/// [`run`] on the replica that holds the lease: waits for leadership, then runs the controllers
/// while renewing it, and gives it up on shutdown. Leadership lost ends the controllers before
/// a standby can take over (see [`leader`]) and returns the error: the caller exits, and
/// Kubernetes restarts the replica as a standby.
pub async fn run_as_leader(
    state: Arc<State>,
    concurrency: u16,
    elector: leader::LeaderElector,
    renew: Duration,
) -> Result<(), Error> {
    let led_since = elector.wait_until_leading(renew).await?;
    tracing::info!("leading: starting the controllers");
    elector.lead(renew, led_since, run(state, concurrency)).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::Company;
    use kube::runtime::{reflector::store::Writer, watcher};
    use multicomms_wire::Naming;

    fn company(namespace: &str, name: &str) -> Company {
        let mut company: Company =
            serde_yaml::from_str(include_str!("../../../config/companies/cucumber-recruitment-clarify-cv.yaml"))
                .expect("example");
        company.metadata.namespace = Some(namespace.into());
        company.metadata.name = Some(name.into());
        company
    }

    fn secret(namespace: &str, name: &str) -> PartialObjectMeta<Secret> {
        let mut secret = PartialObjectMeta::<Secret>::default();
        secret.metadata.namespace = Some(namespace.into());
        secret.metadata.name = Some(name.into());
        secret
    }

    #[test]
    fn a_secret_change_wakes_exactly_the_resources_of_its_namespace_that_read_it() {
        let mut writer = Writer::<Company>::default();
        for c in [company("dev", "a"), company("dev", "b"), company("prod", "c")] {
            writer.apply_watcher_event(&watcher::Event::Apply(c));
        }
        let mut other = company("dev", "d");
        other.spec.channels.email = None;
        other.spec.allowed_channels.retain(|k| *k != multicomms_wire::ChannelKind::Email);
        writer.apply_watcher_event(&watcher::Event::Apply(other));
        let store = writer.as_reader();
        let naming = Naming::new("p", "dev");
        let specs = |c: &Company| crate::desired::company::secrets(&c.spec, &naming);

        let mut woken: Vec<String> = referencing(&store, &secret("dev", "cucumber-recruitment-sendgrid"), specs)
            .into_iter()
            .map(|r| r.name)
            .collect();
        woken.sort();
        assert_eq!(woken, ["a", "b"], "d reads no SendGrid key; c is in another namespace");
        assert!(referencing(&store, &secret("dev", "unrelated"), specs).is_empty());
    }
}
