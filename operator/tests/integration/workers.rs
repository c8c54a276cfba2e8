//! A Channel's processor Deployments, made by the controller against the in-memory Kubernetes API
//! (kube-fake-client) and the AWS emulator: created with their owner, labels, hardening and
//! config hash; re-rolled when the queue settings change; removed with a flow; `WorkersReady`
//! following their status. Each test asserts the Deployment API calls made.
use crate::support::*;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentStatus};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::CustomResourceExt;
use kube::ResourceExt;
use kube_fake_client::{interceptor, ClientBuilder};
use multicomms_operator::controller::State;
use multicomms_operator::crd::{Channel, Company};
use multicomms_operator::desired::workers::{WorkerSettings, CONFIG_HASH};
use multicomms_operator::reconcile::{self, Mode};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const NS: &str = "multicomms-dev";

/// KEDA's kinds as the fake API server needs them typed (the operator uses them dynamically).
#[derive(kube::CustomResource, serde::Deserialize, serde::Serialize, Clone, Debug, Default, schemars::JsonSchema)]
#[kube(group = "keda.sh", version = "v1alpha1", kind = "ScaledObject", namespaced)]
struct ScaledObjectSpec {
    #[serde(default, rename = "maxReplicaCount", skip_serializing_if = "Option::is_none")]
    max_replica_count: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    triggers: Option<serde_json::Value>,
    #[serde(default, rename = "scaleTargetRef", skip_serializing_if = "Option::is_none")]
    scale_target_ref: Option<serde_json::Value>,
    #[serde(default, rename = "minReplicaCount", skip_serializing_if = "Option::is_none")]
    min_replica_count: Option<u32>,
}

#[derive(kube::CustomResource, serde::Deserialize, serde::Serialize, Clone, Debug, Default, schemars::JsonSchema)]
#[kube(group = "keda.sh", version = "v1alpha1", kind = "TriggerAuthentication", namespaced)]
struct TriggerAuthenticationSpec {
    #[serde(default, rename = "podIdentity", skip_serializing_if = "Option::is_none")]
    pod_identity: Option<serde_json::Value>,
}

fn settings(naming: &multicomms_wire::Naming) -> WorkerSettings {
    WorkerSettings {
        image: "ghcr.io/multicomms/multicomms-runtime:test".into(),
        service_account: "multicomms-processor".into(),
        naming: naming.clone(),
        version: "0.1.0".into(),
        openai_base_url: None,
        twilio_base_url: None,
        public_base_url: None,
        sendgrid_base_url: None,
        aws_region: Some("eu-north-1".into()),
        aws_endpoint_url: None,
    }
}

type Calls = Arc<Mutex<Vec<String>>>;

/// A fake API server holding `channel`, recording the Deployment calls made.
async fn fake(channel: Channel, calls: Calls) -> kube::Client {
    let (patch, list, delete) = (calls.clone(), calls.clone(), calls.clone());
    let log = |calls: &Calls, line: String| calls.lock().expect("calls").push(line);
    let funcs = interceptor::Funcs::new()
        .patch(move |ctx| {
            let manager = ctx.params.field_manager.clone().unwrap_or_default();
            log(&patch, format!("patch {} {:?} {manager}", ctx.name, ctx.patch_type));
            Ok(None)
        })
        .list(move |ctx| {
            log(&list, format!("list {}", ctx.params.label_selector.clone().unwrap_or_default()));
            Ok(None)
        })
        .delete(move |ctx| {
            log(&delete, format!("delete {}", ctx.name));
            Ok(None)
        });
    ClientBuilder::new()
        .with_interceptor_funcs(funcs)
        .with_resource::<Company>()
        .with_resource::<Channel>()
        .with_resource::<Deployment>()
        .with_resource::<k8s_openapi::api::events::v1::Event>()
        .with_resource::<CustomResourceDefinition>()
        .with_resource::<ScaledObject>()
        .with_resource::<TriggerAuthentication>()
        .with_status_subresource::<Deployment>()
        .with_object(channel)
        .build()
        .await
        .expect("fake client")
}

fn channel(kind: &str) -> Channel {
    let mut channel = example_channel(kind);
    channel.metadata.namespace = Some(NS.into());
    channel.metadata.uid = Some(format!("uid-{kind}"));
    channel.metadata.generation = Some(1);
    channel
}

async fn state(client: kube::Client) -> Arc<State> {
    let engine = context(Mode::Apply).await;
    assert!(reconcile::tables::reconcile(&engine).await.is_ready());
    let settings = settings(&engine.naming);
    Arc::new(State::new(engine, client, Duration::from_secs(600), None).with_workers(settings))
}

async fn reconcile_channel(channel: Channel, state: &Arc<State>) {
    multicomms_operator::controller::reconcile(Arc::new(channel), state.clone()).await.expect("reconciles");
}

async fn deployments(client: &kube::Client) -> Vec<Deployment> {
    let mut all =
        Api::<Deployment>::namespaced(client.clone(), NS).list(&ListParams::default()).await.expect("list").items;
    all.sort_by_key(|d| d.name_any());
    all
}

fn workers_ready(channel: &Channel) -> (String, String) {
    let conditions = channel.status.as_ref().map(|s| s.conditions.clone()).unwrap_or_default();
    let c = conditions.iter().find(|c| c.type_ == "WorkersReady").expect("WorkersReady condition");
    (c.status.clone(), c.message.clone())
}

async fn current(client: &kube::Client, name: &str) -> Channel {
    Api::<Channel>::namespaced(client.clone(), NS).get(name).await.expect("channel")
}

#[tokio::test]
async fn a_new_channel_gets_its_processor_deployments_owned_labelled_and_hardened() {
    let calls = Calls::default();
    let client = fake(channel("whatsapp"), calls.clone()).await;
    let state = state(client.clone()).await;
    reconcile_channel(current(&client, "whatsapp").await, &state).await;

    let made = deployments(&client).await;
    let names: Vec<String> = made.iter().map(|d| d.name_any()).collect();
    assert_eq!(names, ["whatsapp-processor", "whatsapp-replies-processor"]);
    for d in &made {
        let owner = &d.owner_references()[0];
        assert_eq!((owner.kind.as_str(), owner.uid.as_str()), ("Channel", "uid-whatsapp"));
        assert_eq!(d.labels()["app.kubernetes.io/managed-by"], "multicomms-operator");
        let template = &d.spec.as_ref().expect("spec").template;
        assert!(template
            .metadata
            .as_ref()
            .and_then(|m| m.annotations.as_ref())
            .is_some_and(|a| a.contains_key(CONFIG_HASH)));
        let pod = template.spec.as_ref().expect("pod");
        assert_eq!(pod.containers[0].security_context.as_ref().and_then(|s| s.read_only_root_filesystem), Some(true));
        assert!(pod.containers[0].readiness_probe.is_some());
    }
    let (status, message) = workers_ready(&current(&client, "whatsapp").await);
    assert_eq!(status, "False", "no pod is ready yet: {message}");

    let calls = calls.lock().expect("calls").clone();
    let deployment_calls: Vec<&String> =
        calls.iter().filter(|c| c.contains("processor") || c.starts_with("list app.kubernetes.io")).collect();
    assert_eq!(
        deployment_calls,
        [
            "patch whatsapp-processor ApplyPatch multicomms-operator-test",
            "patch whatsapp-replies-processor ApplyPatch multicomms-operator-test",
            "list app.kubernetes.io/managed-by=multicomms-operator,multicomms.io/channel=whatsapp",
        ],
        "server-side apply under the environment's field manager, then the stale check"
    );
}

#[tokio::test]
async fn editing_the_queue_settings_rolls_the_pods_and_workers_ready_follows_the_deployments() {
    let client = fake(channel("sms"), Calls::default()).await;
    let state = state(client.clone()).await;
    reconcile_channel(current(&client, "sms").await, &state).await;
    let hash = |d: &Deployment| {
        d.spec
            .as_ref()
            .and_then(|s| s.template.metadata.as_ref())
            .and_then(|m| m.annotations.clone())
            .unwrap_or_default()[CONFIG_HASH]
            .clone()
    };
    let before: Vec<String> = deployments(&client).await.iter().map(hash).collect();

    let mut edited = current(&client, "sms").await;
    edited.spec.queue.visibility_timeout_seconds = Some(1200);
    reconcile_channel(edited, &state).await;
    let after: Vec<String> = deployments(&client).await.iter().map(hash).collect();
    assert_ne!(before[0], after[0], "the initial flow's queue changed: its pods roll");
    assert_eq!(before[1], after[1], "the replies queue did not change");

    // The Deployment controller reports every replica ready. (The fake bumps `generation` on
    // every write, even an unchanged apply; a real API server does not: the observed generation
    // here is set ahead of the next reconcile's apply.)
    let api = Api::<Deployment>::namespaced(client.clone(), NS);
    for d in deployments(&client).await {
        let status = DeploymentStatus {
            observed_generation: d.metadata.generation.map(|g| g + 100),
            replicas: Some(1),
            ready_replicas: Some(1),
            updated_replicas: Some(1),
            available_replicas: Some(1),
            ..Default::default()
        };
        let patch = serde_json::json!({"status": status});
        api.patch_status(&d.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await.expect("status");
    }
    reconcile_channel(current(&client, "sms").await, &state).await;
    let (status, message) = workers_ready(&current(&client, "sms").await);
    assert_eq!(status, "True", "{message}");
    let events = Api::<k8s_openapi::api::events::v1::Event>::namespaced(client.clone(), NS)
        .list(&ListParams::default())
        .await
        .expect("events");
    let reasons: Vec<String> = events.items.iter().filter_map(|e| e.reason.clone()).collect();
    assert!(reasons.contains(&"WorkersRollingOut".into()) && reasons.contains(&"WorkersReady".into()), "{reasons:?}");
}

#[tokio::test]
async fn a_flow_no_longer_run_loses_its_deployment() {
    let calls = Calls::default();
    let client = fake(channel("whatsapp"), calls.clone()).await;
    let state = state(client.clone()).await;
    reconcile_channel(current(&client, "whatsapp").await, &state).await;
    // A replies Deployment left by an earlier version under another name is stale.
    let mut stale = deployments(&client).await.remove(1);
    stale.metadata.name = Some("whatsapp-old-replies-processor".into());
    stale.metadata.resource_version = None;
    stale.metadata.uid = None;
    Api::<Deployment>::namespaced(client.clone(), NS).create(&Default::default(), &stale).await.expect("create");
    reconcile_channel(current(&client, "whatsapp").await, &state).await;
    let names: Vec<String> = deployments(&client).await.iter().map(|d| d.name_any()).collect();
    assert_eq!(names, ["whatsapp-processor", "whatsapp-replies-processor"]);
    assert!(calls.lock().expect("calls").contains(&"delete whatsapp-old-replies-processor".to_string()));
}

#[tokio::test]
async fn with_keda_installed_a_scaled_object_replaces_fixed_replicas_and_goes_when_keda_does() {
    let mut sms = channel("sms");
    sms.spec.workers.max_replicas = Some(4);
    sms.spec.workers.target_queue_depth = Some(10);
    let client = fake(sms, Calls::default()).await;
    let crds = Api::<CustomResourceDefinition>::all(client.clone());
    crds.create(&Default::default(), &ScaledObject::crd()).await.expect("KEDA installed");
    let state = state(client.clone()).await;
    reconcile_channel(current(&client, "sms").await, &state).await;

    let scalers = Api::<ScaledObject>::namespaced(client.clone(), NS).list(&ListParams::default()).await.expect("list");
    let mut names: Vec<String> = scalers.items.iter().map(|o| o.name_any()).collect();
    names.sort();
    assert_eq!(names, ["sms-processor", "sms-replies-processor"]);
    let scaler = scalers.items.iter().find(|o| o.name_any() == "sms-processor").expect("scaler");
    assert_eq!(scaler.spec.max_replica_count, Some(4));
    let trigger = &scaler.spec.triggers.as_ref().expect("triggers")[0];
    assert_eq!(trigger["type"], "aws-sqs-queue");
    assert!(trigger["metadata"]["queueURL"].as_str().is_some_and(|u| u.contains("-sms-queue-")), "{trigger}");
    assert_eq!(trigger["metadata"]["queueLength"], "10");
    assert!(Api::<TriggerAuthentication>::namespaced(client.clone(), NS)
        .get_opt("sms-sqs")
        .await
        .expect("get")
        .is_some());
    for d in deployments(&client).await {
        assert_eq!(d.spec.as_ref().and_then(|s| s.replicas), None, "{}: KEDA sets the replicas", d.name_any());
    }

    // Autoscaling no longer asked for: the ScaledObjects go, fixed replicas come back.
    let mut fixed = current(&client, "sms").await;
    fixed.spec.workers.max_replicas = None;
    reconcile_channel(fixed, &state).await;
    assert!(Api::<ScaledObject>::namespaced(client.clone(), NS)
        .list(&ListParams::default())
        .await
        .expect("list")
        .items
        .is_empty());

    // Asked again, then KEDA uninstalled: fixed replicas (its objects go with its CRD).
    let mut again = current(&client, "sms").await;
    again.spec.workers.max_replicas = Some(4);
    reconcile_channel(again.clone(), &state).await;
    crds.delete(&ScaledObject::crd().name_any(), &Default::default()).await.expect("KEDA removed");
    reconcile_channel(again, &state).await;
    for d in deployments(&client).await {
        assert_eq!(d.spec.as_ref().and_then(|s| s.replicas), Some(1), "{}: fixed replicas without KEDA", d.name_any());
    }
}

#[tokio::test]
async fn a_channel_whose_reconcile_failed_gets_no_processor_deployments() {
    // Its rules refuse it (as a Channel in another's conflict is refused): no second consumer
    // fleet may start on the channel's shared queues (review r3, M5).
    let mut refused = channel("sms");
    refused.spec.queue.visibility_timeout_seconds = Some(50_000);
    let calls = Calls::default();
    let client = fake(refused, calls.clone()).await;
    let state = state(client.clone()).await;
    reconcile_channel(current(&client, "sms").await, &state).await;
    assert!(deployments(&client).await.is_empty(), "no Deployment made");
    assert!(!calls.lock().expect("calls").iter().any(|c| c.contains("processor")), "no Deployment call");
    let channel = current(&client, "sms").await;
    let conditions = channel.status.as_ref().map(|s| s.conditions.clone()).unwrap_or_default();
    let workers = conditions.iter().find(|c| c.type_ == "WorkersReady").expect("WorkersReady");
    assert_eq!((workers.status.as_str(), workers.reason.as_str()), ("False", "Blocked"));
    assert!(workers.message.contains("InvalidSpec"), "{}", workers.message);
}
