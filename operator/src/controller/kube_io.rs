//! The controller's Kubernetes reads and writes: the finalizer, the referenced Secrets' values,
//! the status, the Companies using a Channel, a Channel's worker Deployments.
use super::{Error, Watch, LEGACY_FINALIZER};
use crate::crd::{Channel, Company};
use crate::desired::secret::{Binding, SecretValues};
use crate::desired::Owner;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use secrecy::SecretString;
use std::sync::Arc;

/// Adds `finalizer` unless present, and returns the resource as it now is. The finalizer every
/// environment once shared ([`LEGACY_FINALIZER`]) is replaced by it in the same write. A merge
/// patch carrying the resourceVersion, so it fails rather than overwrite a concurrent change.
/// (Not kube's `finalizer()` helper for this step: its JSON patch cannot add the first finalizer
/// on every API server we test against; see docs/testing.md.) A resource being deleted gets no
/// new finalizer (the API server forbids it): one that still carries the shared finalizer is
/// cleaned up under that one (by the reconciler).
pub async fn ensure_finalizer<K>(api: &Api<K>, resource: Arc<K>, finalizer: &str) -> Result<Arc<K>, Error>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let has = |name: &str| resource.finalizers().iter().any(|f| f == name);
    if (has(finalizer) && !has(LEGACY_FINALIZER)) || resource.meta().deletion_timestamp.is_some() {
        return Ok(resource);
    }
    let mut finalizers: Vec<String> =
        resource.finalizers().iter().filter(|f| *f != LEGACY_FINALIZER && *f != finalizer).cloned().collect();
    finalizers.push(finalizer.to_string());
    let patch = serde_json::json!({
        "metadata": {"finalizers": finalizers, "resourceVersion": resource.resource_version()}
    });
    Ok(Arc::new(api.patch(&resource.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await?))
}

/// The Kubernetes Secrets that `specs` reference, from `reader`'s namespace: each one's binding,
/// and the values of those bound to `reader` only (no other value is loaded). A missing Secret
/// or key is simply absent: the engine reports it, naming the field.
pub async fn secret_values(
    client: &kube::Client,
    reader: &Owner,
    names: &std::collections::BTreeSet<String>,
) -> Result<SecretValues, Error> {
    let api: Api<Secret> = Api::namespaced(client.clone(), &reader.namespace);
    let mut values = SecretValues::default();
    for name in names {
        let Some(secret) = api.get_opt(name).await? else {
            continue;
        };
        let labels = secret.metadata.labels.iter().flatten().map(|(k, v)| (k.as_str(), v.as_str()));
        values.bind(name, Binding::from_labels(labels));
        if !values.allows(name, reader) {
            continue;
        }
        for (key, bytes) in secret.data.unwrap_or_default() {
            match String::from_utf8(bytes.0) {
                Ok(text) => values.insert(name, &key, SecretString::from(text)),
                Err(_) => tracing::warn!(secret = name, key, "Secret value is not UTF-8; treated as missing"),
            }
        }
    }
    Ok(values)
}

/// Server-side apply of `status` under `manager`.
pub async fn write_status<K>(api: &Api<K>, resource: &K, status: serde_json::Value, manager: &str) -> Result<(), Error>
where
    K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let patch = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    api.patch_status(&resource.name_any(), &PatchParams::apply(manager).force(), &Patch::Apply(&patch)).await?;
    Ok(())
}

/// Companies (in the watched namespaces, not being deleted) whose allowed channels include this
/// channel.
pub async fn companies_using(client: &kube::Client, watch: &Watch, channel: &Channel) -> Result<Vec<String>, Error> {
    let mut users = Vec::new();
    for scope in watch.scopes() {
        let companies = super::scoped::<Company>(client, &scope).list(&Default::default()).await?;
        users.extend(
            companies
                .items
                .iter()
                .filter(|c| c.meta().deletion_timestamp.is_none())
                .filter(|c| c.spec.allowed_channels.contains(&channel.spec.kind))
                .map(|c| format!("Company {}/{}", c.namespace().unwrap_or_default(), c.name_any())),
        );
    }
    Ok(users)
}

/// Server-side applies `desired` (a Channel's Deployments) under `manager`, and deletes the
/// Deployments of that Channel the operator made that are no longer desired (a flow removed).
/// Returns the Deployments as the API server now has them (their status says how ready they are).
pub async fn apply_workers(
    client: &kube::Client,
    channel: &Channel,
    desired: &[Deployment],
    manager: &str,
) -> Result<Vec<Deployment>, Error> {
    use crate::desired::workers::{CHANNEL_LABEL, MANAGED_BY};
    let api: Api<Deployment> = Api::namespaced(client.clone(), &channel.namespace().unwrap_or_default());
    let mut applied = Vec::with_capacity(desired.len());
    for deployment in desired {
        let (mut deployment, name) = (deployment.clone(), deployment.name_any());
        let spec = deployment.spec.get_or_insert_with(Default::default);
        if spec.replicas.is_none() {
            // Autoscaled: `replicas` is handed to the HPA without a reset (see the function).
            if let Some(live) = api.get_opt(&name).await? {
                spec.replicas = crate::desired::workers::replicas_to_hand_over(&live, manager);
            }
        }
        let params = PatchParams::apply(manager).force();
        applied.push(api.patch(&name, &params, &Patch::Apply(&deployment)).await?);
    }
    let selector = format!("app.kubernetes.io/managed-by={MANAGED_BY},{CHANNEL_LABEL}={}", channel.name_any());
    let existing = api.list(&kube::api::ListParams::default().labels(&selector)).await?;
    for stale in existing.items.iter().filter(|d| !desired.iter().any(|w| w.name_any() == d.name_any())) {
        api.delete(&stale.name_any(), &Default::default()).await?;
    }
    Ok(applied)
}

/// The worker Deployments the operator made for `channel` (for `plan`).
pub async fn existing_workers(client: &kube::Client, channel: &Channel) -> Result<Vec<Deployment>, Error> {
    use crate::desired::workers::{CHANNEL_LABEL, MANAGED_BY};
    let api: Api<Deployment> = Api::namespaced(client.clone(), &channel.namespace().unwrap_or_default());
    let selector = format!("app.kubernetes.io/managed-by={MANAGED_BY},{CHANNEL_LABEL}={}", channel.name_any());
    Ok(api.list(&kube::api::ListParams::default().labels(&selector)).await?.items)
}

/// Whether KEDA is installed (its ScaledObject CRD exists); asked on each Channel reconcile, so
/// installing or removing KEDA takes effect at the next one.
pub async fn keda_installed(client: &kube::Client) -> Result<bool, Error> {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    Ok(crds.get_opt(crate::desired::workers::SCALED_OBJECT_CRD).await?.is_some())
}

fn keda(client: &kube::Client, namespace: &str, kind: &str, plural: &str) -> Api<kube::api::DynamicObject> {
    use crate::desired::workers::{KEDA_GROUP, KEDA_VERSION};
    let gvk = kube::api::GroupVersionKind::gvk(KEDA_GROUP, KEDA_VERSION, kind);
    Api::namespaced_with(client.clone(), namespace, &kube::api::ApiResource::from_gvk_with_plural(&gvk, plural))
}

/// Server-side applies the Channel's TriggerAuthentication and ScaledObjects (`scalers` empty:
/// none wanted) and deletes those no longer desired.
pub async fn apply_scalers(
    client: &kube::Client,
    channel: &Channel,
    authentication: &serde_json::Value,
    scalers: &[serde_json::Value],
    manager: &str,
) -> Result<(), Error> {
    use crate::desired::workers::{CHANNEL_LABEL, MANAGED_BY};
    let namespace = channel.namespace().unwrap_or_default();
    let params = PatchParams::apply(manager).force();
    if !scalers.is_empty() {
        let name = authentication["metadata"]["name"].as_str().unwrap_or_default();
        keda(client, &namespace, "TriggerAuthentication", "triggerauthentications")
            .patch(name, &params, &Patch::Apply(authentication))
            .await?;
    }
    let scaled_objects = keda(client, &namespace, "ScaledObject", "scaledobjects");
    for scaler in scalers {
        let name = scaler["metadata"]["name"].as_str().unwrap_or_default();
        scaled_objects.patch(name, &params, &Patch::Apply(scaler)).await?;
    }
    let selector = format!("app.kubernetes.io/managed-by={MANAGED_BY},{CHANNEL_LABEL}={}", channel.name_any());
    let existing = scaled_objects.list(&kube::api::ListParams::default().labels(&selector)).await?;
    for stale in existing.items.iter().filter(|o| !scalers.iter().any(|s| s["metadata"]["name"] == o.name_any())) {
        scaled_objects.delete(&stale.name_any(), &Default::default()).await?;
    }
    if scalers.is_empty() {
        // Autoscaling off: its TriggerAuthentication goes too, not only with the Channel.
        let authentications = keda(client, &namespace, "TriggerAuthentication", "triggerauthentications");
        for stale in authentications.list(&kube::api::ListParams::default().labels(&selector)).await?.items {
            authentications.delete(&stale.name_any(), &Default::default()).await?;
        }
    }
    Ok(())
}
