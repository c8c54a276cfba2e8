//! The in-cluster controller (`run`): the reconcile of `apply`, driven by the Kubernetes API.
//!
//! It caches only its resources' metadata, trimmed ([`slim`]). Per resource ([`reconciler`]):
//! read it; make sure our finalizer is on it; read the Kubernetes Secrets it references; run the
//! engine ([`crate::reconcile`]); write `status` (conditions, observedGeneration, where things
//! are) with server-side apply under one field manager; publish an Event per change and per
//! failure ([`events`]); requeue. On deletion, `deletionPolicy` decides between leaving the AWS
//! objects (Retain, said in an Event) and deleting the ones that carry the resource's marker
//! (Delete). A Channel also gets its processor Deployments (server-side applied, owned by the
//! Channel, a `WorkersReady` condition). With several replicas, one leads ([`leader`]).
pub mod environment;
pub mod events;
pub mod kube_io;
pub mod leader;
pub mod metrics;
pub mod reconciler;

pub use reconciler::{reconcile, Managed};

use crate::reconcile::{self, Failure, Reason};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, PartialObjectMeta};
use kube::runtime::controller::Action;
use kube::runtime::events::Reporter;
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};
use multicomms_wire::Naming;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// The field manager and finalizer every environment shared before they were named per
/// environment; a resource still carrying them is moved to the environment's own
/// ([`kube_io::ensure_finalizer`]).
pub const LEGACY_MANAGER: &str = "multicomms-operator";
pub const LEGACY_FINALIZER: &str = "multicomms.io/cleanup";

/// Field manager of the environment's writes (status, Deployments), reporter of its Events and
/// name of its Lease: per environment, so two environments' operators on one cluster never take
/// each other's fields or leadership.
pub fn manager(naming: &Naming) -> String {
    format!("{LEGACY_MANAGER}-{}", naming.env)
}

/// Keeps a resource until its AWS objects in this environment are dealt with per its
/// `deletionPolicy`; per environment, so one environment's cleanup never releases another's.
pub fn finalizer(naming: &Naming) -> String {
    format!("{LEGACY_FINALIZER}-{}", naming.env)
}

/// The namespaces whose Companies and Channels (and their Secrets and Deployments) the
/// controller watches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Watch {
    AllNamespaces,
    Namespaces(Vec<String>),
}

impl Watch {
    /// `--watch-namespaces`: a list of namespaces, `*` for all, empty for the operator's own.
    pub fn parse(list: Vec<String>, own: &str) -> Self {
        let list: Vec<String> = list.into_iter().map(|n| n.trim().to_owned()).filter(|n| !n.is_empty()).collect();
        if list.iter().any(|n| n == "*") {
            Watch::AllNamespaces
        } else if list.is_empty() {
            Watch::Namespaces(vec![own.to_owned()])
        } else {
            Watch::Namespaces(list)
        }
    }

    /// Each watched namespace (`None`: all of them, watched as one).
    pub fn scopes(&self) -> Vec<Option<String>> {
        match self {
            Watch::AllNamespaces => vec![None],
            Watch::Namespaces(namespaces) => namespaces.iter().cloned().map(Some).collect(),
        }
    }
}

/// The API of kind `K` in `scope` (a namespace, or all of them).
pub fn scoped<K>(client: &kube::Client, scope: &Option<String>) -> Api<K>
where
    K: Resource<Scope = kube::core::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    match scope {
        Some(namespace) => Api::namespaced(client.clone(), namespace),
        None => Api::all(client.clone()),
    }
}

/// Everything a reconcile needs, shared by all of them.
pub struct State {
    pub engine: reconcile::Context,
    pub client: kube::Client,
    pub events: events::Events,
    /// Base period of the periodic resync (jittered ±10 %), which also repairs AWS drift.
    pub resync: Duration,
    pub metrics: Arc<metrics::Metrics>,
    /// What a Kubernetes Secret's change wakes.
    pub secret_readers: SecretReaders,
    /// The processor Deployments each Channel runs; `None`: workers are not managed here.
    pub workers: Option<crate::desired::workers::WorkerSettings>,
    /// See [`manager`] and [`finalizer`].
    pub manager: String,
    pub finalizer: String,
    pub watch: Watch,
    /// Where the environment's own Events go (the operator's namespace).
    pub home_namespace: String,
}

impl State {
    /// `instance`: this replica's name on its Events (the pod's name).
    pub fn new(engine: reconcile::Context, client: kube::Client, resync: Duration, instance: Option<String>) -> Self {
        let (manager, finalizer) = (manager(&engine.naming), finalizer(&engine.naming));
        let reporter = Reporter { controller: manager.clone(), instance };
        let metrics = Arc::new(metrics::Metrics::new(engine.aws.calls.clone()));
        let events = events::Events::new(client.clone(), reporter);
        State {
            engine,
            events,
            client,
            resync,
            metrics,
            secret_readers: SecretReaders::default(),
            workers: None,
            manager,
            finalizer,
            watch: Watch::AllNamespaces,
            home_namespace: "default".into(),
        }
    }

    /// Watches only `watch`; the environment's Events go to `home_namespace`.
    pub fn watching(mut self, watch: Watch, home_namespace: &str) -> Self {
        (self.watch, self.home_namespace) = (watch, home_namespace.to_owned());
        self
    }

    /// Runs each Channel's processors as Deployments, per `settings`.
    pub fn with_workers(mut self, settings: crate::desired::workers::WorkerSettings) -> Self {
        self.workers = Some(settings);
        self
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// A failure worth another try soon (AWS errors, objects still in use), with its reason.
    #[error("{}: {message}", reason.as_str())]
    Retry { reason: Reason, message: String },
    #[error("finalizer: {0}")]
    Finalizer(String),
    #[error("leadership: {0}")]
    Leadership(#[from] leader::LostLease),
}

impl Error {
    pub fn retry(failure: &Failure) -> Self {
        Error::Retry { reason: failure.reason, message: failure.message.clone() }
    }

    fn from_finalizer(error: kube::runtime::finalizer::Error<Error>) -> Self {
        match error {
            kube::runtime::finalizer::Error::ApplyFailed(e) | kube::runtime::finalizer::Error::CleanupFailed(e) => e,
            other => Error::Finalizer(other.to_string()),
        }
    }
}

/// Requeue after a failed reconcile. AWS throttling is already backed off inside the SDK; this
/// spaces whole reconciles.
pub fn error_policy<K>(_resource: Arc<K>, error: &Error, _state: Arc<State>) -> Action {
    tracing::warn!(%error, "reconcile failed; retrying");
    Action::requeue(jittered(Duration::from_secs(30)))
}

/// `base` ±10 %, so resources created together do not resync together.
fn jittered(base: Duration) -> Duration {
    let factor = 0.9 + f64::from(multicomms_wire::timestamp::subsec_nanos() % 1000) / 5000.0;
    base.mul_f64(factor)
}

/// Runs both controllers until SIGTERM/SIGINT, then lets in-flight reconciles finish. The
/// environment (its tables and hand-off queue, which every resource needs) is reconciled first
/// and then at each resync.
pub async fn run(state: Arc<State>, concurrency: u16) {
    let environment = environment::reconcile(&state).await;
    let scopes = state.watch.scopes();
    let controllers = futures::future::join(
        futures::future::join_all(scopes.iter().map(|s| control::<crate::crd::Company>(state.clone(), s, concurrency))),
        futures::future::join_all(scopes.iter().map(|s| control::<crate::crd::Channel>(state.clone(), s, concurrency))),
    );
    // The environment's loop ends with the controllers (on a signal).
    futures::future::select(Box::pin(controllers), Box::pin(environment::keep(state.clone(), environment))).await;
}

/// The controller of one kind. It holds only its resources' metadata and reads a resource when it
/// reconciles it (one GET): a Company's spec and status take about 7 KB in memory, so 10,000 of
/// them cached would alone exceed the operator's memory budget. A change to a Kubernetes Secret
/// re-reconciles every resource of the kind that read it ([`SecretReaders`]), so a rotated
/// credential reaches Secrets Manager within seconds.
async fn control<K: Managed>(state: Arc<State>, scope: &Option<String>, concurrency: u16) {
    use futures::StreamExt;
    use kube::runtime::{controller::Config, watcher, Controller};
    use kube::runtime::{reflector, WatchStreamExt};
    let client = state.client.clone();
    let (cache, writer) = reflector::store();
    let resources = watcher(scoped::<PartialObjectMeta<K>>(&client, scope), listed_in_small_pages())
        .modify(slim)
        .reflect(writer)
        .applied_objects();
    let mut controller = Controller::for_stream(resources, cache);
    if state.workers.is_some() {
        use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
        // A worker Deployment's status change re-reconciles its Channel (WorkersReady).
        let managed = format!("app.kubernetes.io/managed-by={}", crate::desired::workers::MANAGED_BY);
        let deployments = scoped::<k8s_openapi::api::apps::v1::Deployment>(&client, scope);
        controller = controller.owns(deployments, watcher::Config::default().labels(&managed));
        // KEDA installed or removed: every Channel switches between ScaledObjects and fixed
        // replicas at once.
        if K::kind(&()) == "Channel" {
            let keda = format!("metadata.name={}", crate::desired::workers::SCALED_OBJECT_CRD);
            let channels = controller.store();
            controller = controller.watches(
                Api::<CustomResourceDefinition>::all(client.clone()),
                watcher::Config::default().fields(&keda),
                move |_| channels.state().iter().map(|c| ObjectRef::from_obj(&**c)).collect::<Vec<_>>(),
            );
        }
    }
    let readers = state.secret_readers.clone();
    controller
        // Secrets as metadata only (`PartialObjectMetadata`): a change to one is all the
        // controller watches for, so Secret values (TLS keys, tokens) never stream through the
        // operator; it reads the values a resource references when it reconciles it.
        .watches(scoped::<PartialObjectMeta<Secret>>(&client, scope), listed_in_small_pages(), move |secret| {
            readers.of::<K>(&secret)
        })
        .with_config(Config::default().concurrency(concurrency))
        .shutdown_on_signal()
        .run(reconcile_latest::<K>, error_policy, state)
        .for_each(|result| async move {
            match result {
                Ok(reconciled) => tracing::debug!(?reconciled, "reconciled"),
                Err(error) => tracing::warn!(%error, "reconcile error"),
            }
        })
        .await
}

/// The watchers' first LIST in pages of 100, not kube's 500: a page is held whole, parsed, before
/// anything is trimmed, and 500 Companies as a cluster serves them (field managers, the applied
/// manifest) were most of the operator's peak memory (heaptrack: 14 of 18 MB).
fn listed_in_small_pages() -> kube::runtime::watcher::Config {
    kube::runtime::watcher::Config::default().page_size(100)
}

/// What the cache keeps of a resource's metadata: not its field managers nor its annotations, which
/// on a cluster (an Argo CD or `kubectl apply`'s copy of the manifest, the field sets of every
/// writer of spec and status) outweigh the rest several times over, and which the reconcile
/// reads afresh with the resource.
fn slim<K: Resource>(resource: &mut K) {
    // `None`, not emptied: an emptied list would keep its allocation.
    let meta = resource.meta_mut();
    (meta.managed_fields, meta.annotations) = (None, None);
}

/// The controller's reconcile: the resource `meta` names, read as it is now, reconciled. Gone
/// already: nothing is left to do (our finalizer held it until its deletion was carried out).
pub async fn reconcile_latest<K: Managed>(meta: Arc<PartialObjectMeta<K>>, state: Arc<State>) -> Result<Action, Error> {
    let api: Api<K> = Api::namespaced(state.client.clone(), &meta.namespace().unwrap_or_default());
    match api.get_opt(&meta.name_any()).await? {
        Some(resource) => reconcile(Arc::new(resource), state).await,
        None => {
            state.secret_readers.forget(&*meta);
            Ok(Action::await_change())
        }
    }
}

/// Which Kubernetes Secrets each resource read at its last reconcile, by kind, namespace and
/// name, and the reverse: what a Secret's change wakes, found directly (a re-list of a cluster's
/// Secrets is one lookup per Secret, not a scan of every resource). A resource not yet reconciled
/// reads its Secrets when it is.
#[derive(Clone, Default)]
pub struct SecretReaders(Arc<Mutex<ReadIndex>>);

#[derive(Default)]
struct ReadIndex {
    /// (kind, namespace, resource name) → the Secrets it read.
    read: HashMap<ResourceKey, Vec<String>>,
    /// (kind, namespace, Secret name) → the resources that read it.
    readers: HashMap<ResourceKey, HashSet<String>>,
}

/// A kind, a namespace and a name.
type ResourceKey = (String, String, String);

impl ReadIndex {
    /// Sets what the resource `key` names read: `secrets`, or nothing once it is gone.
    fn set(&mut self, key: ResourceKey, secrets: Vec<String>) {
        let secret_key = |secret: &str| (key.0.clone(), key.1.clone(), secret.to_owned());
        for secret in self.read.remove(&key).unwrap_or_default() {
            let secret = secret_key(&secret);
            if let Some(readers) = self.readers.get_mut(&secret) {
                readers.remove(&key.2);
                if readers.is_empty() {
                    self.readers.remove(&secret);
                }
            }
        }
        for secret in &secrets {
            self.readers.entry(secret_key(secret)).or_default().insert(key.2.clone());
        }
        if !secrets.is_empty() {
            self.read.insert(key, secrets);
        }
    }
}

impl SecretReaders {
    fn key<K: Resource<DynamicType = ()>>(resource: &K) -> ResourceKey {
        (K::kind(&()).into_owned(), resource.namespace().unwrap_or_default(), resource.name_any())
    }

    fn index(&self) -> std::sync::MutexGuard<'_, ReadIndex> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `resource` reads the Kubernetes Secrets of `specs`.
    pub fn note<K: Resource<DynamicType = ()>>(&self, resource: &K, secrets: &BTreeSet<String>) {
        self.index().set(Self::key(resource), secrets.iter().cloned().collect());
    }

    /// After `resource` is gone.
    pub fn forget<K: Resource<DynamicType = ()>>(&self, resource: &K) {
        self.index().set(Self::key(resource), Vec::new());
    }

    /// The resources of kind `K` (in `secret`'s namespace) that read `secret`.
    fn of<K: Resource<DynamicType = ()>>(
        &self,
        secret: &PartialObjectMeta<Secret>,
    ) -> Vec<ObjectRef<PartialObjectMeta<K>>> {
        let (kind, namespace) = (K::kind(&()).into_owned(), secret.namespace().unwrap_or_default());
        let key = (kind, namespace, secret.name_any());
        let index = self.index();
        let readers = index.readers.get(&key).into_iter().flatten();
        readers.map(|resource| ObjectRef::new(resource).within(&key.1)).collect()
    }
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
    use crate::crd::{Channel, Company};
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
    fn the_watched_namespaces_default_to_the_operators_own_and_star_means_all() {
        let list = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
        assert_eq!(Watch::parse(vec![], "multicomms-dev"), Watch::Namespaces(list(&["multicomms-dev"])));
        assert_eq!(Watch::parse(list(&[" ", ""]), "multicomms-dev"), Watch::Namespaces(list(&["multicomms-dev"])));
        assert_eq!(Watch::parse(list(&["a", " b"]), "own"), Watch::Namespaces(list(&["a", "b"])));
        assert_eq!(Watch::parse(list(&["a", "*"]), "own"), Watch::AllNamespaces);
        assert_eq!(Watch::AllNamespaces.scopes(), [None]);
        let naming = Naming::new("p", "prod");
        assert_eq!(
            (manager(&naming), finalizer(&naming)),
            ("multicomms-operator-prod".into(), "multicomms.io/cleanup-prod".into())
        );
    }

    #[test]
    fn the_cache_keeps_what_identifies_a_resource_and_drops_its_field_managers_and_annotations() {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry;
        let mut meta = company("dev", "a");
        let m = &mut meta.metadata;
        m.uid = Some("u-1".into());
        (m.resource_version, m.generation) = (Some("42".into()), Some(3));
        m.finalizers = Some(vec![LEGACY_FINALIZER.into()]);
        m.labels = Some([("team".to_string(), "growth".to_string())].into());
        m.annotations = Some([("kubectl.kubernetes.io/last-applied-configuration".into(), "{}".into())].into());
        m.managed_fields =
            Some(vec![ManagedFieldsEntry { manager: Some("argocd-controller".into()), ..Default::default() }]);
        let mut slimmed = meta.clone();
        slim(&mut slimmed);
        let mut expected = meta.metadata;
        (expected.managed_fields, expected.annotations) = (None, None);
        assert_eq!(slimmed.metadata, expected, "name, namespace, uid, version, generation, finalizers, labels kept");
    }

    #[test]
    fn a_secret_change_wakes_exactly_the_resources_of_its_namespace_and_kind_that_read_it() {
        let readers = SecretReaders::default();
        let naming = Naming::new("p", "dev");
        let specs = |c: &Company| crate::desired::company::secrets_read(&c.spec, &naming);
        let mut other = company("dev", "d");
        other.spec.channels.email = None;
        other.spec.allowed_channels.retain(|k| *k != multicomms_wire::ChannelKind::Email);
        for c in [company("dev", "a"), company("dev", "b"), company("prod", "c"), other, company("dev", "gone")] {
            readers.note(&c, &specs(&c));
        }
        readers.forget(&company("dev", "gone"));
        let mut channel: Channel =
            serde_yaml::from_str(include_str!("../../../config/channels/email.yaml")).expect("example");
        (channel.metadata.namespace, channel.metadata.name) = (Some("dev".into()), Some("a".into()));
        readers.note(
            &channel,
            &crate::desired::secret::read_by(&crate::desired::channel::secrets(&channel.spec, &naming)),
        );

        let sendgrid = secret("dev", "cucumber-recruitment-sendgrid");
        let mut woken: Vec<String> = readers.of::<Company>(&sendgrid).into_iter().map(|r| r.name).collect();
        woken.sort();
        assert_eq!(woken, ["a", "b"], "d reads no SendGrid key; c is in another namespace; gone is gone");
        assert!(readers.of::<Channel>(&sendgrid).is_empty(), "a Company's Secret wakes no Channel of its name");
        let openai = secret("dev", "openai-email");
        assert_eq!(readers.of::<Channel>(&openai).into_iter().map(|r| r.name).collect::<Vec<_>>(), ["a"]);
        assert!(readers.of::<Company>(&openai).is_empty());
        assert!(readers.of::<Company>(&secret("dev", "unrelated")).is_empty());
    }

    #[test]
    fn a_resource_that_stops_reading_a_secret_is_no_longer_woken_by_it_and_leaves_nothing_behind() {
        let readers = SecretReaders::default();
        let naming = Naming::new("p", "dev");
        let mut a = company("dev", "a");
        readers.note(&a, &crate::desired::company::secrets_read(&a.spec, &naming));
        let sendgrid = secret("dev", "cucumber-recruitment-sendgrid");
        assert_eq!(readers.of::<Company>(&sendgrid).len(), 1);

        a.spec.channels.email = None;
        a.spec.allowed_channels.retain(|k| *k != multicomms_wire::ChannelKind::Email);
        readers.note(&a, &crate::desired::company::secrets_read(&a.spec, &naming));
        assert!(readers.of::<Company>(&sendgrid).is_empty(), "its email channel, and so its SendGrid key, is gone");
        assert!(!readers.index().readers.is_empty(), "it still reads its other Secrets");

        readers.forget(&a);
        let index = readers.index();
        assert!(index.read.is_empty() && index.readers.is_empty(), "a deleted resource leaves no entry either way");
    }
}
