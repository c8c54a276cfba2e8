//! The processor Deployments a Channel runs, and how ready they are: pure functions from the
//! Channel and the operator's worker settings. One Deployment per flow: first messages on every
//! channel, replies on whatsapp and sms. A hash of everything a pod is configured from (the
//! Channel's queue and worker settings, the operator's settings) is a pod-template annotation,
//! so a change rolls the pods (a processor reads its queue's settings once, at start).
use crate::crd::channel::Workers;
use crate::crd::{Channel, Condition};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{Resource, ResourceExt};
use multicomms_wire::{ChannelKind, Naming};
use serde_json::{json, Value};
use sha2::Digest;

/// Label naming the Channel a Deployment works for.
pub const CHANNEL_LABEL: &str = "multicomms.io/channel";
/// Pod-template annotation: the hash of the pods' configuration.
pub const CONFIG_HASH: &str = "multicomms.io/config-hash";
/// `app.kubernetes.io/managed-by` of the operator's Deployments.
pub const MANAGED_BY: &str = "multicomms-operator";
pub const WORKERS_READY: &str = "WorkersReady";
/// Port of the processors' /healthz, /readyz and /metrics.
const HEALTH_PORT: i32 = 8080;
/// The processors' per-call timeout to the AI and providers (their default), which sets how
/// long a stopping pod may need.
const HTTP_TIMEOUT_SECONDS: i64 = 120;

/// What the operator's flags say about the workers it runs.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerSettings {
    /// The runtime image (`multicomms-processor` inside).
    pub image: String,
    /// The processors' ServiceAccount (its IAM role annotation is the platform's).
    pub service_account: String,
    pub naming: Naming,
    /// `processor_version` on the records, e.g. `0.1.0`.
    pub version: String,
    pub openai_base_url: Option<String>,
    pub twilio_base_url: Option<String>,
    pub sendgrid_base_url: Option<String>,
    /// The router's public URL (Twilio's status callbacks go there).
    pub public_base_url: Option<String>,
    pub aws_region: Option<String>,
    /// Only for emulators (tests, kind): empty in production.
    pub aws_endpoint_url: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Initial,
    Replies,
}

impl Flow {
    pub fn as_str(self) -> &'static str {
        match self {
            Flow::Initial => "initial",
            Flow::Replies => "replies",
        }
    }
}

/// The flows a channel runs: replies only where the replies flow answers (whatsapp, sms).
pub fn flows(kind: ChannelKind) -> &'static [Flow] {
    match kind {
        ChannelKind::Email => &[Flow::Initial],
        ChannelKind::Whatsapp | ChannelKind::Sms => &[Flow::Initial, Flow::Replies],
    }
}

/// The Deployment's name: `<channel>-processor` or `<channel>-replies-processor`.
pub fn deployment_name(channel: &Channel, flow: Flow) -> String {
    match flow {
        Flow::Initial => format!("{}-processor", channel.name_any()),
        Flow::Replies => format!("{}-replies-processor", channel.name_any()),
    }
}

/// The Deployments `channel` should have. `autoscaled`: KEDA sets the replicas (the operator
/// leaves the field to it).
pub fn deployments(channel: &Channel, settings: &WorkerSettings, autoscaled: bool) -> Vec<Deployment> {
    let deployments = flows(channel.spec.kind).iter().filter_map(|flow| deployment(channel, *flow, settings));
    deployments
        .map(|mut d| {
            if autoscaled {
                if let Some(spec) = d.spec.as_mut() {
                    spec.replicas = None;
                }
            }
            d
        })
        .collect()
}

/// `spec.replicas` to apply to an autoscaled Deployment that is `live` already: nothing once
/// another writer (the HPA that KEDA makes) owns the field, and until then the live count.
/// Server-side apply resets a field its only manager leaves out to its default, so dropping
/// `replicas` at once would scale a Deployment running N pods down to one before KEDA scales it
/// back (review r3, kubernetes-objects M3); this hands the field over without a change.
pub fn replicas_to_hand_over(live: &Deployment, manager: &str) -> Option<i32> {
    let owns_replicas = |entry: &&k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry| {
        entry.fields_v1.as_ref().is_some_and(|f| f.0["f:spec"].get("f:replicas").is_some())
    };
    let mut owners = live.metadata.managed_fields.iter().flatten().filter(owns_replicas);
    if owners.any(|entry| entry.manager.as_deref() != Some(manager)) {
        None
    } else {
        live.spec.as_ref().and_then(|s| s.replicas)
    }
}

/// The region in a queue's URL (`https://sqs.<region>.amazonaws.com/...`), for KEDA, which
/// refuses a scaler without one, when the operator was given none (`AWS_REGION` unset: a
/// profile or instance metadata supplied it).
fn queue_region(url: &str) -> Option<String> {
    let host = url.split("://").nth(1)?.split('/').next()?;
    let region = host.strip_prefix("sqs.")?.split('.').next()?;
    (!region.is_empty() && host.contains(".amazonaws.com")).then(|| region.to_string())
}

/// KEDA's ScaledObject and TriggerAuthentication: group, version, kinds and plurals.
pub const KEDA_GROUP: &str = "keda.sh";
pub const KEDA_VERSION: &str = "v1alpha1";
/// The CRD whose presence means KEDA is installed.
pub const SCALED_OBJECT_CRD: &str = "scaledobjects.keda.sh";

/// Whether the Channel asks for autoscaling (`workers.maxReplicas`).
pub fn wants_autoscaling(channel: &Channel) -> bool {
    channel.spec.workers.max_replicas.is_some()
}

/// The TriggerAuthentication the scalers use: pod identity, the workers' own (IRSA) role.
pub fn trigger_authentication(channel: &Channel, settings: &WorkerSettings) -> Value {
    json!({
        "apiVersion": format!("{KEDA_GROUP}/{KEDA_VERSION}"),
        "kind": "TriggerAuthentication",
        "metadata": {
            "name": format!("{}-sqs", channel.name_any()),
            "namespace": channel.namespace(),
            "labels": {"app.kubernetes.io/managed-by": MANAGED_BY, CHANNEL_LABEL: channel.name_any(),
                       "app.kubernetes.io/version": settings.version},
            "ownerReferences": channel.controller_owner_ref(&()).into_iter().collect::<Vec<_>>(),
        },
        "spec": {"podIdentity": {"provider": "aws", "identityOwner": "workload"}},
    })
}

/// One ScaledObject per flow: the flow's Deployment scaled on its queue's depth (visible + in
/// flight), `queue_urls` giving each flow's queue.
pub fn scaled_objects(channel: &Channel, settings: &WorkerSettings, queue_urls: &[(Flow, String)]) -> Vec<Value> {
    let workers = &channel.spec.workers;
    queue_urls
        .iter()
        .map(|(flow, url)| {
            let name = deployment_name(channel, *flow);
            let mut metadata = json!({
                "queueURL": url,
                "queueLength": workers.target_queue_depth.unwrap_or(5).to_string(),
                "awsRegion": settings.aws_region.clone().or_else(|| queue_region(url)).unwrap_or_default(),
            });
            if let Some(endpoint) = &settings.aws_endpoint_url {
                metadata["awsEndpoint"] = json!(endpoint);
            }
            json!({
                "apiVersion": format!("{KEDA_GROUP}/{KEDA_VERSION}"),
                "kind": "ScaledObject",
                "metadata": {
                    "name": name,
                    "namespace": channel.namespace(),
                    "labels": labels(channel, *flow, settings),
                    "ownerReferences": channel.controller_owner_ref(&()).into_iter().collect::<Vec<_>>(),
                },
                "spec": {
                    "scaleTargetRef": {"name": name},
                    "minReplicaCount": workers.min_replicas.unwrap_or(1),
                    "maxReplicaCount": workers.max_replicas.unwrap_or(workers.replicas.max(1)),
                    "triggers": [{
                        "type": "aws-sqs-queue",
                        "metadata": metadata,
                        "authenticationRef": {"name": format!("{}-sqs", channel.name_any())},
                    }],
                },
            })
        })
        .collect()
}

fn labels(channel: &Channel, flow: Flow, settings: &WorkerSettings) -> Value {
    json!({
        "app.kubernetes.io/name": "multicomms-processor",
        "app.kubernetes.io/instance": deployment_name(channel, flow),
        "app.kubernetes.io/component": flow.as_str(),
        "app.kubernetes.io/part-of": "multicomms",
        "app.kubernetes.io/version": settings.version,
        "app.kubernetes.io/managed-by": MANAGED_BY,
        CHANNEL_LABEL: channel.name_any(),
    })
}

fn deployment(channel: &Channel, flow: Flow, settings: &WorkerSettings) -> Option<Deployment> {
    let workers = &channel.spec.workers;
    let name = deployment_name(channel, flow);
    let labels = labels(channel, flow, settings);
    let selector = json!({"app.kubernetes.io/instance": name, CHANNEL_LABEL: channel.name_any()});
    let owner = channel.controller_owner_ref(&());
    let deployment = json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": name,
            "namespace": channel.namespace(),
            "labels": labels,
            "ownerReferences": owner.into_iter().collect::<Vec<_>>(),
        },
        "spec": {
            "replicas": workers.replicas,
            "selector": {"matchLabels": selector},
            "template": {
                "metadata": {
                    "labels": labels,
                    "annotations": {
                        CONFIG_HASH: config_hash(channel, flow, settings),
                        "prometheus.io/scrape": "true",
                        "prometheus.io/port": HEALTH_PORT.to_string(),
                    },
                },
                "spec": {
                    "serviceAccountName": settings.service_account,
                    // Processors never call the Kubernetes API; their AWS role comes from the
                    // IRSA token, a volume of its own.
                    "automountServiceAccountToken": false,
                    // On SIGTERM a processor stops receiving and finishes what is in flight:
                    // at most one AI call and one send.
                    "terminationGracePeriodSeconds": 30 + 2 * HTTP_TIMEOUT_SECONDS,
                    "securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
                    "containers": [{
                        "name": "processor",
                        "image": settings.image,
                        "args": ["multicomms-processor"],
                        "env": env(channel, flow, settings),
                        "ports": [{"name": "http-metrics", "containerPort": HEALTH_PORT}],
                        "livenessProbe": {"httpGet": {"path": "/healthz", "port": "http-metrics"}},
                        // Ready once its queue exists.
                        "readinessProbe": {"httpGet": {"path": "/readyz", "port": "http-metrics"}},
                        "securityContext": {
                            "allowPrivilegeEscalation": false,
                            "readOnlyRootFilesystem": true,
                            "capabilities": {"drop": ["ALL"]},
                        },
                        "resources": resources(workers),
                    }],
                },
            },
        },
    });
    serde_json::from_value(deployment).ok()
}

fn env(channel: &Channel, flow: Flow, settings: &WorkerSettings) -> Vec<Value> {
    let variable = |name: &str, value: &str| json!({"name": name, "value": value});
    let concurrency = channel.spec.workers.concurrency.unwrap_or(16).to_string();
    let version = format!("processor-{}-{}", settings.naming.env, settings.version);
    let mut env = vec![
        variable("MULTICOMMS_CHANNEL", channel.spec.kind.as_str()),
        variable("MULTICOMMS_FLOW", flow.as_str()),
        variable("MULTICOMMS_PREFIX", &settings.naming.prefix),
        variable("MULTICOMMS_ENV", &settings.naming.env),
        variable("VERSION", &version),
        variable("MULTICOMMS_CONCURRENCY", &concurrency),
        variable("MULTICOMMS_HTTP_TIMEOUT_SECONDS", &HTTP_TIMEOUT_SECONDS.to_string()),
    ];
    let optional = [
        ("MULTICOMMS_OPENAI_BASE_URL", &settings.openai_base_url),
        ("MULTICOMMS_TWILIO_BASE_URL", &settings.twilio_base_url),
        ("MULTICOMMS_SENDGRID_BASE_URL", &settings.sendgrid_base_url),
        ("MULTICOMMS_PUBLIC_BASE_URL", &settings.public_base_url),
        ("AWS_REGION", &settings.aws_region),
        ("AWS_ENDPOINT_URL", &settings.aws_endpoint_url),
    ];
    env.extend(optional.iter().filter_map(|(name, value)| value.as_deref().map(|v| variable(name, v))));
    env
}

fn resources(workers: &Workers) -> Value {
    match &workers.resources {
        Some(resources) => serde_json::to_value(resources).unwrap_or_default(),
        None => json!({"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"memory": "512Mi"}}),
    }
}

/// A hash of what the flow's pods are configured from: the queue, the pods' concurrency and
/// resources, the operator's settings. Not the replica counts or the autoscaler's target, which
/// a pod never reads: scaling adds or removes pods without rolling the others (review r3, L8).
pub fn config_hash(channel: &Channel, flow: Flow, settings: &WorkerSettings) -> String {
    let spec = &channel.spec;
    let queue = match flow {
        Flow::Initial => &spec.queue,
        Flow::Replies => &spec.replies_queue,
    };
    let s = settings;
    let settings = json!([
        s.image,
        s.service_account,
        s.naming.prefix,
        s.naming.env,
        s.version,
        s.openai_base_url,
        s.twilio_base_url,
        s.sendgrid_base_url,
        s.public_base_url,
        s.aws_region,
        s.aws_endpoint_url
    ]);
    let pods = json!({"concurrency": spec.workers.concurrency, "resources": spec.workers.resources});
    let input = json!({"flow": flow.as_str(), "queue": queue, "pods": pods, "settings": settings});
    let digest = sha2::Sha256::digest(input.to_string().as_bytes());
    hex::encode(&digest[..8])
}

/// What applying `desired` would change, against the Deployments a cluster holds for the
/// Channel (`existing`): created, rolled (a new config hash), rescaled, deleted. `plan` prints it.
pub fn changes(desired: &[Deployment], existing: &[Deployment]) -> Vec<String> {
    let hash = |d: &Deployment| {
        d.spec
            .as_ref()
            .and_then(|s| s.template.metadata.as_ref())
            .and_then(|m| m.annotations.as_ref())
            .and_then(|a| a.get(CONFIG_HASH).cloned())
    };
    let replicas = |d: &Deployment| d.spec.as_ref().and_then(|s| s.replicas);
    let mut changes = Vec::new();
    for want in desired {
        let name = want.name_any();
        match existing.iter().find(|d| d.name_any() == name) {
            None => changes.push(format!("create Deployment {name}")),
            Some(have) => {
                if hash(have) != hash(want) {
                    let (from, to) = (hash(have).unwrap_or_default(), hash(want).unwrap_or_default());
                    changes.push(format!("update Deployment {name}: config hash {from} → {to} (pods roll)"));
                }
                if want.spec.as_ref().is_some_and(|s| s.replicas.is_some()) && replicas(have) != replicas(want) {
                    let show = |r: Option<i32>| r.map_or("-".to_string(), |r| r.to_string());
                    changes.push(format!(
                        "update Deployment {name}: replicas {} → {}",
                        show(replicas(have)),
                        show(replicas(want))
                    ));
                }
            }
        }
    }
    for stale in existing.iter().filter(|d| !desired.iter().any(|w| w.name_any() == d.name_any())) {
        changes.push(format!("delete Deployment {}", stale.name_any()));
    }
    changes
}

/// `WorkersReady` while the Channel's queues are not in sync: its workers are neither created
/// nor changed (a Channel in another's conflict, or with a spec the rules refuse, must not start
/// a second consumer fleet on the shared queues; review r3, M5). Ones already running are left.
pub fn blocked(why: &str, generation: Option<i64>, previous: &[Condition], now: &Time) -> Condition {
    Condition {
        type_: WORKERS_READY.into(),
        status: "False".into(),
        reason: "Blocked".into(),
        message: format!(
            "waiting for the Channel's queues to be in sync ({why}); its worker Deployments are not changed"
        ),
        observed_generation: generation,
        last_transition_time: crate::crd::common::transition_time(previous, WORKERS_READY, "False", now),
    }
}

/// `WorkersReady` from the Deployments as the API server returned them: True when every one has
/// all its replicas updated and ready for its current generation.
pub fn condition(deployments: &[Deployment], generation: Option<i64>, previous: &[Condition], now: &Time) -> Condition {
    let mut waiting = Vec::new();
    for deployment in deployments {
        let wanted = deployment.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        let status = deployment.status.clone().unwrap_or_default();
        let current = status.observed_generation >= deployment.metadata.generation;
        let (ready, updated) = (status.ready_replicas.unwrap_or(0), status.updated_replicas.unwrap_or(0));
        if !current || ready < wanted || updated < wanted {
            waiting.push(format!("{} {ready}/{wanted} ready, {updated}/{wanted} updated", deployment.name_any()));
        }
    }
    let (status, reason, message) = if waiting.is_empty() {
        let names: Vec<String> = deployments.iter().map(ResourceExt::name_any).collect();
        ("True", "Ready", format!("{} ready", names.join(", ")))
    } else {
        ("False", "RollingOut", waiting.join("; "))
    };
    let last_transition_time = crate::crd::common::transition_time(previous, WORKERS_READY, status, now);
    Condition {
        type_: WORKERS_READY.into(),
        status: status.into(),
        reason: reason.into(),
        message,
        observed_generation: generation,
        last_transition_time,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn channel(kind: &str) -> Channel {
        let mut channel: Channel = serde_yaml::from_str(&format!(
            "apiVersion: multicomms.io/v1alpha1\nkind: Channel\nmetadata: {{name: {kind}, namespace: dev, uid: u-1}}\n\
             spec: {{type: {kind}, provider: {}}}",
            if kind == "email" { "sendgrid" } else { "twilio" }
        ))
        .expect("channel");
        channel.metadata.generation = Some(1);
        channel
    }

    fn settings() -> WorkerSettings {
        WorkerSettings {
            image: "ghcr.io/multicomms/multicomms-runtime:0.1.0".into(),
            service_account: "multicomms-processor".into(),
            naming: Naming::new("ai-multi-comms", "dev"),
            version: "0.1.0".into(),
            openai_base_url: None,
            twilio_base_url: Some("http://fakes:8090".into()),
            public_base_url: Some("https://hooks.example.com".into()),
            sendgrid_base_url: None,
            aws_region: Some("eu-north-1".into()),
            aws_endpoint_url: None,
        }
    }

    #[test]
    fn keda_gets_a_region_from_the_queue_url_when_the_operator_has_none() {
        let mut unset = settings();
        unset.aws_region = None;
        let url = "https://sqs.eu-west-2.amazonaws.com/123456789012/ai-multi-comms-whatsapp-queue-dev";
        let objects = scaled_objects(&channel("whatsapp"), &unset, &[(Flow::Initial, url.into())]);
        assert_eq!(objects[0]["spec"]["triggers"][0]["metadata"]["awsRegion"], "eu-west-2");
        assert_eq!(queue_region("http://127.0.0.1:5000/000000000000/q"), None, "an emulator's URL names none");
    }

    #[test]
    fn replicas_stay_the_operators_until_another_writer_owns_them() {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::{FieldsV1, ManagedFieldsEntry};
        let entry = |manager: &str, fields: serde_json::Value| ManagedFieldsEntry {
            manager: Some(manager.into()),
            fields_v1: Some(FieldsV1(fields)),
            ..Default::default()
        };
        let mut live = deployments(&channel("sms"), &settings(), false).remove(0);
        live.spec.as_mut().expect("spec").replicas = Some(3);
        let ours =
            entry("multicomms-operator-dev", serde_json::json!({"f:spec": {"f:replicas": {}, "f:template": {}}}));
        live.metadata.managed_fields = Some(vec![ours.clone()]);
        assert_eq!(replicas_to_hand_over(&live, "multicomms-operator-dev"), Some(3), "kept, not reset to 1");
        let hpa = entry("kube-controller-manager", serde_json::json!({"f:spec": {"f:replicas": {}}}));
        live.metadata.managed_fields = Some(vec![ours, hpa]);
        assert_eq!(replicas_to_hand_over(&live, "multicomms-operator-dev"), None, "the HPA owns them now");
    }

    #[test]
    fn a_channel_runs_one_hardened_deployment_per_flow() {
        let whatsapp = deployments(&channel("whatsapp"), &settings(), false);
        let names: Vec<String> = whatsapp.iter().map(ResourceExt::name_any).collect();
        assert_eq!(names, ["whatsapp-processor", "whatsapp-replies-processor"]);
        assert_eq!(deployments(&channel("email"), &settings(), false).len(), 1, "no replies flow for email");

        let d = &whatsapp[1];
        let owner = &d.metadata.owner_references.as_ref().expect("owner")[0];
        assert_eq!((owner.kind.as_str(), owner.name.as_str(), owner.controller), ("Channel", "whatsapp", Some(true)));
        assert_eq!(d.labels()["app.kubernetes.io/managed-by"], MANAGED_BY);
        let pod = d.spec.as_ref().and_then(|s| s.template.spec.as_ref()).expect("pod");
        let security = pod.security_context.as_ref().expect("pod security");
        assert_eq!(security.run_as_non_root, Some(true));
        assert_eq!(security.seccomp_profile.as_ref().map(|p| p.type_.as_str()), Some("RuntimeDefault"));
        let container = &pod.containers[0];
        let hardened = container.security_context.as_ref().expect("container security");
        assert_eq!(hardened.read_only_root_filesystem, Some(true));
        assert_eq!(hardened.allow_privilege_escalation, Some(false));
        assert_eq!(hardened.capabilities.as_ref().and_then(|c| c.drop.clone()), Some(vec!["ALL".into()]));
        assert!(container.liveness_probe.is_some() && container.readiness_probe.is_some());
        let env: Vec<(String, String)> =
            container.env.iter().flatten().map(|e| (e.name.clone(), e.value.clone().unwrap_or_default())).collect();
        assert!(env.contains(&("MULTICOMMS_FLOW".into(), "replies".into())));
        assert!(env.contains(&("MULTICOMMS_TWILIO_BASE_URL".into(), "http://fakes:8090".into())));
        let callbacks = ("MULTICOMMS_PUBLIC_BASE_URL".into(), "https://hooks.example.com".into());
        assert!(env.contains(&callbacks), "Twilio's status callbacks go to the router");
        assert!(!env.iter().any(|(name, _)| name == "AWS_ENDPOINT_URL"), "unset settings stay out");
        assert_eq!(pod.service_account_name.as_deref(), Some("multicomms-processor"));
        assert_eq!(pod.automount_service_account_token, Some(false), "no Kubernetes API token in a processor");
    }

    #[test]
    fn the_config_hash_changes_with_the_queue_and_worker_settings_it_is_made_of() {
        let before = channel("whatsapp");
        let hash = |c: &Channel, flow| config_hash(c, flow, &settings());
        let mut queue = before.clone();
        queue.spec.queue.visibility_timeout_seconds = Some(1200);
        assert_ne!(hash(&before, Flow::Initial), hash(&queue, Flow::Initial));
        assert_eq!(hash(&before, Flow::Replies), hash(&queue, Flow::Replies), "the replies queue did not change");
        let mut workers = before.clone();
        workers.spec.workers.concurrency = Some(4);
        assert_ne!(hash(&before, Flow::Initial), hash(&workers, Flow::Initial));
        let image = WorkerSettings { image: "other:1".into(), ..settings() };
        assert_ne!(hash(&before, Flow::Initial), config_hash(&before, Flow::Initial, &image));
    }

    #[test]
    fn scaling_a_channel_does_not_roll_its_pods() {
        let before = channel("whatsapp");
        let mut scaled = before.clone();
        scaled.spec.workers.replicas = 3;
        scaled.spec.workers.min_replicas = Some(2);
        scaled.spec.workers.max_replicas = Some(10);
        scaled.spec.workers.target_queue_depth = Some(50);
        for flow in [Flow::Initial, Flow::Replies] {
            assert_eq!(config_hash(&before, flow, &settings()), config_hash(&scaled, flow, &settings()));
        }
        let planned = changes(&deployments(&scaled, &settings(), false), &deployments(&before, &settings(), false));
        assert!(planned.iter().all(|c| !c.contains("pods roll")), "{planned:?}");
    }

    #[test]
    fn an_autoscaled_flow_leaves_its_replicas_to_a_scaled_object_on_its_queue() {
        let mut autoscaled = channel("sms");
        autoscaled.spec.workers.max_replicas = Some(8);
        autoscaled.spec.workers.target_queue_depth = Some(20);
        assert!(wants_autoscaling(&autoscaled));
        let fixed = deployments(&autoscaled, &settings(), false);
        assert_eq!(fixed[0].spec.as_ref().and_then(|s| s.replicas), Some(1), "without KEDA: fixed replicas");
        let scaled = deployments(&autoscaled, &settings(), true);
        assert_eq!(scaled[0].spec.as_ref().and_then(|s| s.replicas), None, "KEDA owns the field");
        let urls = [(Flow::Initial, "https://sqs/q".to_string()), (Flow::Replies, "https://sqs/r".to_string())];
        let objects = scaled_objects(&autoscaled, &settings(), &urls);
        assert_eq!(objects[1]["spec"]["scaleTargetRef"]["name"], "sms-replies-processor");
        assert_eq!(objects[1]["spec"]["maxReplicaCount"], 8);
        let trigger = &objects[0]["spec"]["triggers"][0];
        assert_eq!(
            (trigger["type"].as_str(), trigger["metadata"]["queueLength"].as_str()),
            (Some("aws-sqs-queue"), Some("20"))
        );
        assert_eq!(trigger["metadata"]["queueURL"], "https://sqs/q");
        assert_eq!(trigger_authentication(&autoscaled, &settings())["spec"]["podIdentity"]["provider"], "aws");
    }

    #[test]
    fn a_plan_names_the_workload_changes() {
        let before = deployments(&channel("whatsapp"), &settings(), false);
        assert_eq!(
            changes(&before, &[]),
            ["create Deployment whatsapp-processor", "create Deployment whatsapp-replies-processor"]
        );
        assert!(changes(&before, &before).is_empty(), "in sync");
        let mut edited = channel("whatsapp");
        edited.spec.queue.visibility_timeout_seconds = Some(1200);
        edited.spec.workers.replicas = 3;
        let after = deployments(&edited, &settings(), false);
        let planned = changes(&after[..1], &before);
        assert!(planned[0].starts_with("update Deployment whatsapp-processor: config hash "), "{planned:?}");
        assert_eq!(planned[1], "update Deployment whatsapp-processor: replicas 1 → 3");
        assert_eq!(planned[2], "delete Deployment whatsapp-replies-processor");
    }

    #[test]
    fn workers_are_ready_when_every_replica_is_updated_and_ready() {
        let now = Time(k8s_openapi::jiff::Timestamp::now());
        let mut deployments = deployments(&channel("sms"), &settings(), false);
        let rolling = condition(&deployments, Some(1), &[], &now);
        assert_eq!((rolling.status.as_str(), rolling.reason.as_str()), ("False", "RollingOut"));
        assert!(rolling.message.contains("sms-processor 0/1 ready"), "{}", rolling.message);
        for d in &mut deployments {
            d.metadata.generation = Some(2);
            d.status = Some(k8s_openapi::api::apps::v1::DeploymentStatus {
                observed_generation: Some(2),
                ready_replicas: Some(1),
                updated_replicas: Some(1),
                ..Default::default()
            });
        }
        let ready = condition(&deployments, Some(1), &[rolling], &now);
        assert_eq!((ready.status.as_str(), ready.reason.as_str()), ("True", "Ready"));
    }
}
