//! The operator on a real Kubernetes control plane (`scripts/cluster.sh`: kube-apiserver, its
//! controllers, a scheduler and kwok's nodes), installed from its chart, with AWS on the
//! emulator and the providers faked. What the in-memory API cannot show: the API server's own
//! validation (schemas, CEL), RBAC as the chart grants it (the operator authenticates as the
//! chart's ServiceAccount), Argo CD's wave order on a first install, garbage collection through
//! ownerReferences, Leases between replicas, and two environments on one cluster.
//!
//! `scripts/test-cluster.sh` runs it (one test at a time: they share the cluster); run without
//! a cluster, each test fails, it never skips.
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams};
use kube::ResourceExt;
use multicomms_operator::crd::{Channel, Company};
use multicomms_testkit::cluster::{self, free_address, Process};
use multicomms_testkit::environment::{emulator_config, example_request, repo_root, API_KEY};
use multicomms_testkit::eventually::eventually;
use multicomms_testkit::fakes::Fakes;
use multicomms_testkit::twilio::{Inbound, AUTH_TOKEN};
use multicomms_wire::conversation::{ConversationRecord, ConversationStatus};
use multicomms_wire::{ChannelKind, Naming};
use serde_json::json;
use std::path::PathBuf;
use std::time::Duration;

const RELEASE: &str = "multicomms";
const PUBLIC_BASE_URL: &str = "https://hooks.cluster.test";
const RECIPIENT: &str = "+447835065013";
const COMPANY_NUMBER: &str = "+447588713814";

/// One environment released into the cluster as config/argocd/applicationset.yaml does: the
/// chart by helm into `multicomms-<env>`, its operator and router run from the chart's pod
/// templates as local processes (kwok's pods run nothing), the operator as the chart's
/// ServiceAccount.
struct Environment {
    name: String,
    namespace: String,
    naming: Naming,
    dir: PathBuf,
    admin: kube::Client,
    router: Option<(Process, String)>,
    operators: Vec<(Process, String)>,
    workers: Vec<Process>,
}

impl Environment {
    /// `helm install` (CRDs included, `--wait`: the chart's Deployments Available on kwok's node).
    async fn install(name: &str, fakes: &Fakes) -> Environment {
        let admin = cluster::admin().await;
        let namespace = format!("multicomms-{name}");
        let naming = Naming::new(format!("k{}", &uuid::Uuid::new_v4().simple().to_string()[..8]), name);
        let dir = repo_root().join("target/cluster-tests").join(&namespace);
        std::fs::create_dir_all(&dir).expect("the test's directory");
        remove_leftovers(&admin, &namespace).await;
        let values = json!({
            "environment": name,
            "prefix": naming.prefix,
            "replicas": 1,
            "resyncSeconds": 60,
            "aws": {"region": std::env::var("AWS_REGION").expect("AWS_REGION"),
                    "endpointUrl": std::env::var("AWS_ENDPOINT_URL").expect("AWS_ENDPOINT_URL")},
            "router": {"replicas": 1, "publicBaseUrl": PUBLIC_BASE_URL},
            "processors": {"openaiBaseUrl": fakes.openai_url(), "twilioBaseUrl": fakes.url,
                           "sendgridBaseUrl": fakes.url},
        });
        let values_file = dir.join("values.json");
        std::fs::write(&values_file, values.to_string()).expect("values");
        let chart = repo_root().join("charts/multicomms-operator");
        cluster::tool(
            "helm",
            &[
                "upgrade",
                "--install",
                RELEASE,
                &chart.to_string_lossy(),
                "--namespace",
                &namespace,
                "--create-namespace",
                "--wait",
                "--timeout",
                "3m",
                "--values",
                &values_file.to_string_lossy(),
            ],
        );
        Environment {
            name: name.into(),
            namespace,
            naming,
            dir,
            admin,
            router: None,
            operators: Vec::new(),
            workers: Vec::new(),
        }
    }

    /// Installed, its router ready, one operator replica running, the local Secrets made and
    /// config/environments/<name> synced (every resource Ready).
    async fn synced(name: &str, fakes: &Fakes) -> Environment {
        let mut env = Environment::install(name, fakes).await;
        env.start_router().await;
        env.start_operator("operator-0").await;
        env.add_local_secrets().await;
        env.sync_resources().await;
        env
    }

    fn companies(&self) -> Api<Company> {
        Api::namespaced(self.admin.clone(), &self.namespace)
    }

    fn channels(&self) -> Api<Channel> {
        Api::namespaced(self.admin.clone(), &self.namespace)
    }

    /// The example Company's record in this environment's company-data table.
    async fn company_record_exists(&self) -> bool {
        use aws_sdk_dynamodb::types::AttributeValue::S;
        let dynamo = aws_sdk_dynamodb::Client::new(&emulator_config().await);
        let out = dynamo
            .get_item()
            .table_name(self.naming.company_data_table())
            .key("company_id", S("ci-aaa-001".into()))
            .key("project_id", S("pi-aaa-001".into()))
            .send()
            .await
            .expect("GetItem");
        out.item.is_some()
    }

    /// Deletes `name` of kind `K` and waits until the API server no longer has it (its
    /// finalizer released by the operator).
    async fn delete_and_wait<K>(&self, api: &Api<K>, name: &str)
    where
        K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    {
        api.delete(name, &DeleteParams::default()).await.expect("delete");
        let what = format!("{name} is gone (operator log: {})", self.operators[0].0.log.display());
        eventually(
            &what,
            Duration::from_secs(60),
            || async move { api.get_opt(name).await.is_ok_and(|o| o.is_none()) },
        )
        .await;
    }

    fn deployments(&self) -> Api<Deployment> {
        Api::namespaced(self.admin.clone(), &self.namespace)
    }

    async fn template(&self, deployment: &str) -> k8s_openapi::api::core::v1::PodTemplateSpec {
        self.deployments()
            .get(deployment)
            .await
            .unwrap_or_else(|e| panic!("Deployment {deployment}: {e}"))
            .spec
            .expect("spec")
            .template
    }

    /// Wave 0's health for the router: its readiness probe answers 200 (kwok only pretends).
    async fn start_router(&mut self) {
        let template = self.template(&format!("{RELEASE}-multicomms-router")).await;
        let (address, metrics) = (free_address(), free_address());
        let overrides = [("MULTICOMMS_ROUTER_ADDRESS", address.clone()), ("MULTICOMMS_METRICS_ADDRESS", metrics)];
        let router = Process::start(&template, ("router-0", &self.namespace), &overrides, self.dir.join("router.log"));
        let probe =
            template.spec.as_ref().and_then(|s| s.containers[0].readiness_probe.clone()).expect("a readiness probe");
        let path = probe.http_get.and_then(|g| g.path).expect("an HTTP readiness probe");
        let url = format!("http://{address}{path}");
        eventually(&format!("the router's readiness probe {path} answers 200"), Duration::from_secs(30), || {
            let url = url.clone();
            async move { reqwest::get(&url).await.is_ok_and(|r| r.status() == 200) }
        })
        .await;
        self.router = Some((router, address));
    }

    /// An operator replica: the chart's pod template, authenticated as the chart's
    /// ServiceAccount (so the chart's RBAC is what it may do).
    async fn start_operator(&mut self, replica: &str) {
        let template = self.template(&format!("{RELEASE}-multicomms-operator")).await;
        let account = template.spec.as_ref().and_then(|s| s.service_account_name.clone()).expect("a ServiceAccount");
        let kubeconfig = cluster::service_account_kubeconfig(&self.admin, &self.namespace, &account, &self.dir).await;
        let metrics = free_address();
        let overrides = [
            ("KUBECONFIG", kubeconfig.to_string_lossy().into_owned()),
            ("MULTICOMMS_METRICS_ADDRESS", metrics.clone()),
            ("MULTICOMMS_LOG_FORMAT", "text".into()),
        ];
        let log = self.dir.join(format!("{replica}.log"));
        self.operators.push((Process::start(&template, (replica, &self.namespace), &overrides, log), metrics));
    }

    /// Each worker Deployment the operator made, its container started from its pod template.
    async fn start_workers(&mut self) {
        let managed = ListParams::default().labels("app.kubernetes.io/managed-by=multicomms-operator");
        for deployment in self.deployments().list(&managed).await.expect("list").items {
            let name = deployment.name_any();
            let template = deployment.spec.expect("spec").template;
            let address = free_address();
            let overrides = [("MULTICOMMS_PROCESSOR_ADDRESS", address.clone())];
            let worker =
                Process::start(&template, (&name, &self.namespace), &overrides, self.dir.join(format!("{name}.log")));
            let url = format!("http://{address}/readyz");
            eventually(&format!("worker {name} is ready"), Duration::from_secs(30), || {
                let url = url.clone();
                async move { reqwest::get(&url).await.is_ok_and(|r| r.status() == 200) }
            })
            .await;
            self.workers.push(worker);
        }
    }

    /// The environment's resources (`kubectl kustomize config/environments/<env>`), applied
    /// server-side as Argo CD does: wave by wave, each wave healthy before the next (a Channel
    /// Ready and WorkersReady, a Company Ready: config/argocd/health.lua).
    async fn sync_resources(&self) {
        let rendered = cluster::tool(
            "kubectl",
            &["kustomize", &repo_root().join("config/environments").join(&self.name).to_string_lossy()],
        );
        let mut objects = cluster::documents(&rendered);
        objects.sort_by_key(cluster::sync_wave);
        let mut waves: Vec<Vec<DynamicObject>> = Vec::new();
        for object in objects {
            match waves.last_mut() {
                Some(wave) if cluster::sync_wave(&wave[0]) == cluster::sync_wave(&object) => wave.push(object),
                _ => waves.push(vec![object]),
            }
        }
        for wave in waves {
            for object in &wave {
                cluster::apply(&self.admin, object, &self.namespace, "argocd-controller").await.unwrap_or_else(|e| {
                    panic!(
                        "applying {} {}: {e}",
                        object.types.as_ref().map(|t| t.kind.as_str()).unwrap_or(""),
                        object.name_any()
                    )
                });
            }
            for object in &wave {
                self.wait_healthy(object).await;
            }
        }
    }

    async fn wait_healthy(&self, object: &DynamicObject) {
        let kind = object.types.as_ref().map(|t| t.kind.clone()).unwrap_or_default();
        let wanted: &[&str] = match kind.as_str() {
            "Channel" => &["Ready", "WorkersReady"],
            "Company" => &["Ready"],
            _ => return,
        };
        let api = cluster::api_for(&self.admin, object, &self.namespace).await;
        let name = object.name_any();
        let what = format!(
            "{kind} {name} is {wanted:?} at its generation (operator log: {})",
            self.operators[0].0.log.display()
        );
        eventually(&what, Duration::from_secs(120), || {
            let (api, name) = (api.clone(), name.clone());
            async move {
                let Ok(live) = api.get(&name).await else { return false };
                let status = &live.data["status"];
                let current = status["observedGeneration"].as_i64() == live.metadata.generation;
                current
                    && wanted.iter().all(|t| {
                        status["conditions"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .any(|c| c["type"] == *t && c["status"] == "True")
                    })
            }
        })
        .await;
    }

    /// The local Secrets (config/examples/local/secrets.yaml), as the platform's secret tooling
    /// would make them.
    async fn add_local_secrets(&self) {
        let text = std::fs::read_to_string(repo_root().join("config/examples/local/secrets.yaml")).expect("secrets");
        for secret in cluster::documents(&text) {
            cluster::apply(&self.admin, &secret, &self.namespace, "secret-tooling").await.expect("a Secret");
        }
    }

    async fn record(&self, conversation_id: &str) -> Option<ConversationRecord> {
        use aws_sdk_dynamodb::types::AttributeValue::S;
        let dynamo = aws_sdk_dynamodb::Client::new(&emulator_config().await);
        let out = dynamo
            .get_item()
            .table_name(self.naming.conversations_table())
            .key("primary_channel", S(RECIPIENT.into()))
            .key("conversation_id", S(conversation_id.into()))
            .send()
            .await
            .ok()?;
        out.item.map(|item| ConversationRecord::from_item(item).expect("a record"))
    }

    /// Everything this environment started stops; the release and its namespace are deleted.
    async fn uninstall(mut self) {
        self.workers.clear();
        self.operators.clear();
        self.router = None;
        let _ = cluster::tool("helm", &["uninstall", RELEASE, "--namespace", &self.namespace, "--wait"]);
        let namespaces: Api<Namespace> = Api::all(self.admin.clone());
        let _ = namespaces.delete(&self.namespace, &DeleteParams::default()).await;
    }
}

/// What an earlier, failed run left in `namespace`: its resources' finalizers dropped (no
/// operator runs to release them), then the release and the namespace deleted, and waited for.
async fn remove_leftovers(admin: &kube::Client, namespace: &str) {
    let namespaces: Api<Namespace> = Api::all(admin.clone());
    if namespaces.get_opt(namespace).await.expect("namespaces").is_none() {
        return;
    }
    drop_finalizers::<Company>(admin, namespace).await;
    drop_finalizers::<Channel>(admin, namespace).await;
    let _ = std::process::Command::new("helm")
        .args(["uninstall", RELEASE, "--namespace", namespace, "--wait"])
        .env("KUBECONFIG", cluster::kubeconfig())
        .output();
    let _ = namespaces.delete(namespace, &DeleteParams::default()).await;
    eventually(&format!("namespace {namespace} of an earlier run is gone"), Duration::from_secs(120), || {
        let namespaces = namespaces.clone();
        async move { namespaces.get_opt(namespace).await.is_ok_and(|n| n.is_none()) }
    })
    .await;
}

/// Every `K` in `namespace` without its finalizers (nothing runs to release them).
async fn drop_finalizers<K>(admin: &kube::Client, namespace: &str)
where
    K: kube::Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let api = Api::<K>::namespaced(admin.clone(), namespace);
    let unfinalized = kube::api::Patch::Merge(json!({"metadata": {"finalizers": null}}));
    for resource in api.list(&ListParams::default()).await.map(|l| l.items).unwrap_or_default() {
        let _ = api.patch(&resource.name_any(), &Default::default(), &unfinalized).await;
    }
}

/// Company and Channel reconciles an operator has run (its /metrics).
async fn reconciles(metrics_address: &str) -> f64 {
    let Ok(answer) = reqwest::get(format!("http://{metrics_address}/metrics")).await else { return 0.0 };
    let text = answer.text().await.unwrap_or_default();
    let counts = text.lines().filter(|l| {
        l.starts_with(r#"multicomms_reconciles_total{kind="Company"}"#)
            || l.starts_with(r#"multicomms_reconciles_total{kind="Channel"}"#)
    });
    counts.filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok()).sum()
}

async fn table_exists(name: &str) -> bool {
    let dynamo = aws_sdk_dynamodb::Client::new(&emulator_config().await);
    dynamo.describe_table().table_name(name).send().await.is_ok()
}

async fn queue_exists(name: &str) -> bool {
    let sqs = aws_sdk_sqs::Client::new(&emulator_config().await);
    sqs.get_queue_url().queue_name(name).send().await.is_ok()
}

/// From nothing (empty AWS, a cluster without the CRDs), as Argo CD's first sync of a new
/// environment goes: the chart in wave 0 must be healthy (the router ready) before the Channels
/// (wave 1) that make its queues, the controller itself makes the environment's tables and
/// hand-off queue, every resource becomes Ready, and a conversation goes through the pods the
/// operator runs: a request to the router, the first message, a signed reply, the AI's answer.
#[tokio::test]
#[ignore = "needs the local control plane: scripts/test-cluster.sh"]
async fn a_first_install_from_nothing_converges_in_wave_order_and_carries_a_conversation() {
    let fakes = Fakes::start("127.0.0.1:0").await.expect("fakes");
    let mut env = Environment::install("dev", &fakes).await;
    env.start_router().await;
    env.start_operator("operator-0").await;
    env.add_local_secrets().await;
    env.sync_resources().await;

    for table in [env.naming.company_data_table(), env.naming.conversations_table()] {
        assert!(table_exists(&table).await, "the controller made {table}");
    }
    assert!(queue_exists(&env.naming.handoff_queue()).await, "the controller made the hand-off queue");
    let logs = env.operators[0].0.logs();
    assert!(logs.contains("environment in sync"), "{logs}");
    let metrics = reqwest::get(format!("http://{}/metrics", env.operators[0].1)).await.expect("metrics");
    let metrics = metrics.text().await.expect("text");
    assert!(metrics.contains(r#"multicomms_reconciles_total{kind="Environment"}"#), "{metrics}");
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(env.admin.clone(), &env.namespace);
    let events = events.list(&ListParams::default()).await.expect("events").items;
    assert!(
        events.iter().any(|e| e.regarding.as_ref().and_then(|r| r.kind.as_deref()) == Some("Namespace")
            && e.reason.as_deref() == Some("Created")),
        "an Event on the namespace says what the environment's reconcile created"
    );

    env.start_workers().await;
    let router = env.router.as_ref().map(|(_, a)| a.clone()).expect("router");
    let http = reqwest::Client::new();
    // The router looks for a channel's queue every 10 s until it appears (its readiness does not
    // wait on it: the Channels come after it).
    eventually("the router takes the request (it has found the WhatsApp queue)", Duration::from_secs(30), || {
        let (http, router) = (http.clone(), router.clone());
        async move {
            let answer = http
                .post(format!("http://{router}/initiate-conversation"))
                .header("x-api-key", API_KEY)
                .header("content-type", "application/json")
                .body(example_request().to_string())
                .send()
                .await;
            answer.is_ok_and(|a| a.status() == 200)
        }
    })
    .await;
    let id = "ci-aaa-001#pi-aaa-001#550e8400-e29b-41d4-a716-446655440001#447588713814";
    let status_is = |wanted: ConversationStatus| {
        let env = &env;
        move || async move { env.record(id).await.is_some_and(|r| r.conversation_status == wanted) }
    };
    eventually("the first message is sent", Duration::from_secs(60), status_is(ConversationStatus::InitialMessageSent))
        .await;

    let reply = Inbound::text(ChannelKind::Whatsapp, RECIPIENT, COMPANY_NUMBER, "Yes, tell me more");
    let (body, signature) = reply.signed(AUTH_TOKEN, &format!("{PUBLIC_BASE_URL}/webhooks/twilio/whatsapp"));
    let answer = http
        .post(format!("http://{router}/webhooks/twilio/whatsapp"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-twilio-signature", signature)
        .body(body)
        .send()
        .await
        .expect("the webhook answers");
    assert_eq!(answer.status(), 200);
    eventually("the AI's reply is sent", Duration::from_secs(90), status_is(ConversationStatus::ReplySent)).await;
    assert_eq!(fakes.sent().len(), 2, "the first message and one reply");
    let processes = env.operators.iter().map(|(p, _)| p).chain(env.router.iter().map(|(p, _)| p)).chain(&env.workers);
    for process in processes {
        let logs = process.logs();
        for secret in ["local-demo-twilio-token-not-a-secret", "sk-local-demo", "SG.local-demo", API_KEY] {
            assert!(!logs.contains(secret), "{} logged a secret: {}", process.name, process.log.display());
        }
    }
    env.uninstall().await;
}

/// The CRDs as the project generates them (crds/), applied server-side as docs/operations.md
/// says to before an upgrade: under Helm's field manager (`helm`), since Helm 4 applies the
/// chart's CRDs server-side at install and conflicts with any other manager of them (found
/// here); Established.
async fn apply_crds(admin: &kube::Client) {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    for file in ["crds/companies.yaml", "crds/channels.yaml"] {
        let text = std::fs::read_to_string(repo_root().join(file)).expect("a CRD file");
        for crd in cluster::documents(&text) {
            cluster::apply(admin, &crd, "", "helm").await.unwrap_or_else(|e| panic!("{file}: {e}"));
            let crds: Api<CustomResourceDefinition> = Api::all(admin.clone());
            let name = crd.name_any();
            eventually(&format!("CRD {name} is Established"), Duration::from_secs(30), || {
                let crds = crds.clone();
                let name = name.clone();
                async move {
                    let Ok(crd) = crds.get(&name).await else { return false };
                    let conditions = crd.status.and_then(|s| s.conditions).unwrap_or_default();
                    conditions.iter().any(|c| c.type_ == "Established" && c.status == "True")
                }
            })
            .await;
        }
    }
}

async fn fresh_namespace(admin: &kube::Client, name: &str) {
    remove_leftovers(admin, name).await;
    let namespace = cluster::documents(&format!("apiVersion: v1\nkind: Namespace\nmetadata: {{name: {name}}}"));
    cluster::apply(admin, &namespace[0], "", "multicomms-tests").await.expect("namespace");
}

/// What the offline checks (`apply`/`plan` from git: the manifests' schema and the CRDs' CEL
/// rules, evaluated locally) say of a Company or Channel file: refused or not.
fn refused_offline(file: &std::path::Path) -> bool {
    use multicomms_operator::reconcile::validate;
    let loaded = multicomms_operator::cli::manifests::load(&[file.to_path_buf()], "default").expect("load");
    !loaded.invalid.is_empty()
        || loaded.companies.iter().any(|c| validate::company(c).is_err())
        || loaded.channels.iter().any(|c| validate::channel(c).is_err())
}

/// Every example, the invalid ones and the valid ones, offered to the real API server (a
/// server-side apply, dry run): it refuses exactly those the offline checks refuse, so a `plan`
/// from git tells what a sync will meet. (The tenancy and AI-endpoint rules are the operator's,
/// not the CRD's: the server takes those files, and the operator refuses them with a condition;
/// the offline suite checks that, operator/tests/integration/examples.rs.)
#[tokio::test]
#[ignore = "needs the local control plane: scripts/test-cluster.sh"]
async fn the_api_server_refuses_exactly_the_examples_the_offline_checks_refuse() {
    let admin = cluster::admin().await;
    apply_crds(&admin).await;
    let namespace = "multicomms-examples";
    fresh_namespace(&admin, namespace).await;
    let mut files: Vec<PathBuf> = ["config/examples/invalid", "config/channels", "config/companies"]
        .iter()
        .flat_map(|dir| std::fs::read_dir(repo_root().join(dir)).expect("dir").map(|e| e.expect("entry").path()))
        .filter(|p| p.extension().is_some_and(|e| e == "yaml") && !p.ends_with("kustomization.yaml"))
        .collect();
    files.sort();
    let mut disagreements = Vec::new();
    let mut refused_by_server = 0;
    for file in &files {
        let text = std::fs::read_to_string(file).expect("read");
        let mut answers = Vec::new();
        for object in cluster::documents(&text) {
            let kind = object.types.as_ref().map(|t| t.kind.clone()).unwrap_or_default();
            if kind == "Company" || kind == "Channel" {
                answers.push(cluster::dry_run(&admin, &object, namespace).await.err().map(|e| e.to_string()));
            }
        }
        let refused = answers.iter().any(Option::is_some);
        refused_by_server += usize::from(refused);
        let offline = refused_offline(file);
        if refused != offline {
            disagreements.push(format!("{}: server {answers:?}, offline refused: {offline}", file.display()));
        }
    }
    assert!(disagreements.is_empty(), "{disagreements:#?}");
    assert!(refused_by_server >= 14, "the CRD-level invalid examples are refused by the server ({refused_by_server})");
}

/// Status conditions are a list map keyed by type (the API conventions): a condition another
/// writer adds (a policy engine, a person's `kubectl`) survives the operator's next status write,
/// where an atomic list would make the two managers take the whole list from each other.
#[tokio::test]
#[ignore = "needs the local control plane: scripts/test-cluster.sh"]
async fn status_conditions_merge_by_type_between_field_managers() {
    let admin = cluster::admin().await;
    apply_crds(&admin).await;
    let namespace = "multicomms-conditions";
    fresh_namespace(&admin, namespace).await;
    let text = std::fs::read_to_string(repo_root().join("config/channels/sms.yaml")).expect("channel");
    let channel = &cluster::documents(&text)[0];
    cluster::apply(&admin, channel, namespace, "argocd-controller").await.expect("the Channel");
    let channels: Api<multicomms_operator::crd::Channel> = Api::namespaced(admin.clone(), namespace);
    let condition = |type_: &str| json!({"type": type_, "status": "True", "reason": "Set", "message": "m", "lastTransitionTime": "2026-12-07T00:00:00Z"});
    let status = |conditions: serde_json::Value| json!({"apiVersion": "multicomms.io/v1alpha1", "kind": "Channel", "status": {"conditions": conditions}});
    let by = |manager: &str| kube::api::PatchParams::apply(manager);
    let name = channel.name_any();
    channels
        .patch_status(
            &name,
            &by("multicomms-operator-dev"),
            &kube::api::Patch::Apply(status(json!([condition("Ready")]))),
        )
        .await
        .expect("the operator's status");
    channels
        .patch_status(&name, &by("policy-engine"), &kube::api::Patch::Apply(status(json!([condition("Compliant")]))))
        .await
        .expect("another writer's condition, without a conflict");
    channels
        .patch_status(
            &name,
            &by("multicomms-operator-dev"),
            &kube::api::Patch::Apply(status(json!([condition("Ready")]))),
        )
        .await
        .expect("the operator's next write");
    let live = channels.get(&name).await.expect("channel");
    let mut types: Vec<String> = live.status.expect("status").conditions.into_iter().map(|c| c.type_).collect();
    types.sort();
    assert_eq!(types, ["Compliant", "Ready"]);
}

/// Deletion on a real API server: finalizers hold a resource until the operator has carried out
/// its `deletionPolicy` (Retain leaves AWS as it is, Delete leaves nothing), and a deleted
/// Channel's Deployments go with it through their ownerReferences (the garbage collector, not
/// the operator, removes them).
#[tokio::test]
#[ignore = "needs the local control plane: scripts/test-cluster.sh"]
async fn deletion_retain_keeps_aws_delete_leaves_nothing_and_a_channels_workers_are_collected() {
    let fakes = Fakes::start("127.0.0.1:0").await.expect("fakes");
    let env = Environment::synced("dev", &fakes).await;
    let name = "cucumber-recruitment-clarify-cv";
    assert!(env.company_record_exists().await);

    env.delete_and_wait(&env.companies(), name).await;
    assert!(env.company_record_exists().await, "deletionPolicy Retain keeps the record");

    let text =
        std::fs::read_to_string(repo_root().join("config/companies").join(format!("{name}.yaml"))).expect("yaml");
    let mut company = cluster::documents(&text.replace("deletionPolicy: Retain", "deletionPolicy: Delete")).remove(0);
    company.metadata.namespace = Some(env.namespace.clone());
    cluster::apply(&env.admin, &company, &env.namespace, "argocd-controller").await.expect("the Company again");
    env.wait_healthy(&company).await;
    let secrets = env.companies().get(name).await.expect("company").status.expect("status").secrets;
    assert!(!secrets.is_empty());
    env.delete_and_wait(&env.companies(), name).await;
    assert!(!env.company_record_exists().await, "deletionPolicy Delete removes the record");
    let manager = aws_sdk_secretsmanager::Client::new(&emulator_config().await);
    for secret in &secrets {
        let described = manager.describe_secret().secret_id(&secret.arn).send().await;
        assert!(described.map_or(true, |d| d.deleted_date.is_some()), "{} is deleted", secret.name);
    }

    let workers = ListParams::default().labels("multicomms.io/channel=whatsapp");
    assert_eq!(env.deployments().list(&workers).await.expect("list").items.len(), 2, "first messages and replies");
    let owned = env.deployments().list(&workers).await.expect("list").items;
    assert!(owned.iter().all(|d| d.owner_references().iter().any(|o| o.kind == "Channel" && o.name == "whatsapp")));
    env.delete_and_wait(&env.channels(), "whatsapp").await;
    let deployments = env.deployments();
    eventually("the garbage collector removed the whatsapp Channel's Deployments", Duration::from_secs(60), || {
        let (deployments, workers) = (deployments.clone(), workers.clone());
        async move { deployments.list(&workers).await.is_ok_and(|l| l.items.is_empty()) }
    })
    .await;
    env.uninstall().await;
}

/// Two replicas, one Lease: the standby does nothing while the leader holds it, and takes over
/// within the lease (15 s) when the leader dies without a word; what changes after that is
/// reconciled by the new leader.
#[tokio::test]
#[ignore = "needs the local control plane: scripts/test-cluster.sh"]
async fn killing_the_leader_hands_over_within_the_lease_and_only_the_leader_writes() {
    let fakes = Fakes::start("127.0.0.1:0").await.expect("fakes");
    let mut env = Environment::synced("dev", &fakes).await;
    env.start_operator("operator-1").await;
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> = Api::namespaced(env.admin.clone(), &env.namespace);
    let lease_name = format!("multicomms-operator-{}", env.name);
    let holder = || {
        let (leases, lease_name) = (leases.clone(), lease_name.clone());
        async move { leases.get(&lease_name).await.ok().and_then(|l| l.spec?.holder_identity) }
    };
    assert_eq!(holder().await.as_deref(), Some("operator-0"), "the first replica leads");
    let standby_logs = env.operators[1].0.logs();
    assert!(!standby_logs.contains("starting the controllers"), "the standby waits: {standby_logs}");

    let killed_at = std::time::Instant::now();
    env.operators[0].0.kill();
    eventually("operator-1 holds the Lease", Duration::from_secs(30), || {
        let holder = holder();
        async move { holder.await.as_deref() == Some("operator-1") }
    })
    .await;
    let took = killed_at.elapsed();
    assert!(took < Duration::from_secs(25), "handed over in {took:?}, within the 15 s lease and a renewal");

    // A change after the handover: the new leader reconciles it (a new generation observed).
    let mut channel = env.channels().get("sms").await.expect("sms");
    channel.spec.workers.replicas = 2;
    channel.metadata.managed_fields = None;
    let apply = kube::api::PatchParams::apply("argocd-controller").force();
    env.channels().patch("sms", &apply, &kube::api::Patch::Apply(&channel)).await.expect("scale sms");
    let generation = env.channels().get("sms").await.expect("sms").metadata.generation;
    let channels = env.channels();
    eventually("the new leader observed the sms Channel's new generation", Duration::from_secs(60), || {
        let channels = channels.clone();
        async move { channels.get("sms").await.ok().and_then(|c| c.status?.observed_generation) == generation }
    })
    .await;
    env.operators.swap(0, 1);
    env.uninstall().await;
}

/// dev and prod released into one cluster as the ApplicationSet does (same release name, the
/// chart's cluster-scoped objects side by side): each operator reconciles its own namespace
/// only, under its own finalizer and field manager; neither rewrites the other's Deployments;
/// deleting in one environment leaves the other as it was.
#[tokio::test]
#[ignore = "needs the local control plane: scripts/test-cluster.sh"]
async fn dev_and_prod_on_one_cluster_each_reconcile_their_own_and_never_touch_the_other() {
    let fakes = Fakes::start("127.0.0.1:0").await.expect("fakes");
    let dev = Environment::synced("dev", &fakes).await;
    let prod = Environment::synced("prod", &fakes).await;
    let name = "cucumber-recruitment-clarify-cv";
    for (env, other) in [(&dev, &prod), (&prod, &dev)] {
        let company = env.companies().get(name).await.expect("company");
        assert_eq!(company.finalizers(), [format!("multicomms.io/cleanup-{}", env.name)], "only its own finalizer");
        let managers: Vec<String> = company
            .managed_fields()
            .iter()
            .filter_map(|m| m.manager.clone())
            .filter(|m| m.starts_with("multicomms"))
            .collect();
        assert_eq!(managers, [format!("multicomms-operator-{}", env.name)], "only its own field manager");
        assert!(env.company_record_exists().await);
        let logs = env.operators[0].0.logs();
        assert!(!logs.contains(&other.namespace), "{} never reads {}: {logs}", env.name, other.namespace);
    }
    let generations = || async {
        let mut all = Vec::new();
        for env in [&dev, &prod] {
            for d in env.deployments().list(&ListParams::default()).await.expect("list").items {
                all.push((env.name.clone(), d.name_any(), d.metadata.generation));
            }
        }
        all
    };
    let before = generations().await;
    // Both operators resync (every 60 s here) each of their 4 resources: two writers of one
    // Deployment would show by then.
    let (dev_metrics, prod_metrics) = (dev.operators[0].1.clone(), prod.operators[0].1.clone());
    let (dev_start, prod_start) = (reconciles(&dev_metrics).await, reconciles(&prod_metrics).await);
    eventually("both operators have resynced every Company and Channel", Duration::from_secs(120), || {
        let (dev_metrics, prod_metrics) = (dev_metrics.clone(), prod_metrics.clone());
        async move {
            reconciles(&dev_metrics).await >= dev_start + 4.0 && reconciles(&prod_metrics).await >= prod_start + 4.0
        }
    })
    .await;
    assert_eq!(generations().await, before, "no Deployment rewritten while both operators resynced");

    let prod_workers = prod.deployments().list(&ListParams::default()).await.expect("list").items.len();
    dev.delete_and_wait(&dev.channels(), "whatsapp").await;
    let dev_gone = dev.deployments();
    eventually("dev's whatsapp workers are collected", Duration::from_secs(60), || {
        let deployments = dev_gone.clone();
        async move {
            let workers = ListParams::default().labels("multicomms.io/channel=whatsapp");
            deployments.list(&workers).await.is_ok_and(|l| l.items.is_empty())
        }
    })
    .await;
    assert_eq!(prod.deployments().list(&ListParams::default()).await.expect("list").items.len(), prod_workers);
    assert!(prod.channels().get("whatsapp").await.is_ok(), "prod's whatsapp Channel stays");
    assert!(queue_exists(&prod.naming.channel_queue(ChannelKind::Whatsapp)).await, "prod's queue stays");
    dev.uninstall().await;
    let prod_channel = prod.channels().get("sms").await.expect("prod still reconciles after dev's release is gone");
    assert!(prod_channel.status.is_some());
    prod.uninstall().await;
}

/// One of KEDA's CRDs, as far as the operator needs it (its schema left open): with both,
/// the operator autoscales Channels that ask for it. No KEDA controller runs.
fn keda_crd(kind: &str) -> DynamicObject {
    let (singular, plural) = (kind.to_lowercase(), format!("{}s", kind.to_lowercase()));
    serde_json::from_value(json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("{plural}.keda.sh")},
        "spec": {
            "group": "keda.sh", "scope": "Namespaced",
            "names": {"kind": kind, "listKind": format!("{kind}List"), "plural": plural, "singular": singular},
            "versions": [{"name": "v1alpha1", "served": true, "storage": true,
                          "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}],
        },
    }))
    .expect("a CRD")
}

/// A Channel running 3 pods per flow that turns autoscaled keeps its 3 pods until KEDA's HPA
/// takes `replicas` over: server-side apply would reset a field its only manager drops to the
/// default of 1, stopping two of three pods at the switch (review r3, kubernetes-objects M3).
#[tokio::test]
#[ignore = "needs the local control plane: scripts/test-cluster.sh"]
async fn switching_a_channel_to_autoscaling_keeps_its_running_replicas() {
    let fakes = Fakes::start("127.0.0.1:0").await.expect("fakes");
    let env = Environment::synced("dev", &fakes).await;
    let apply = kube::api::PatchParams::apply("argocd-controller").force();
    let scale = |workers: serde_json::Value| {
        json!({"apiVersion": "multicomms.io/v1alpha1", "kind": "Channel", "metadata": {"name": "sms"},
               "spec": {"type": "sms", "provider": "twilio", "workers": workers}})
    };
    env.channels().patch("sms", &apply, &kube::api::Patch::Apply(scale(json!({"replicas": 3})))).await.expect("3 pods");
    let deployments = env.deployments();
    let replicas = |name: &'static str| {
        let deployments = deployments.clone();
        async move { deployments.get(name).await.ok().and_then(|d| d.spec?.replicas) }
    };
    eventually("sms-processor runs 3 replicas", Duration::from_secs(60), || async {
        replicas("sms-processor").await == Some(3)
    })
    .await;

    let keda = [keda_crd("ScaledObject"), keda_crd("TriggerAuthentication")];
    for crd in &keda {
        cluster::apply(&env.admin, crd, "", "multicomms-tests").await.expect("a KEDA CRD");
    }
    let autoscaled = scale(json!({"replicas": 3, "maxReplicas": 5}));
    env.channels().patch("sms", &apply, &kube::api::Patch::Apply(autoscaled)).await.expect("autoscaled");
    let scaled_object = kube::api::ApiResource::from_gvk_with_plural(
        &kube::api::GroupVersionKind::gvk("keda.sh", "v1alpha1", "ScaledObject"),
        "scaledobjects",
    );
    let scaled_objects: Api<DynamicObject> = Api::namespaced_with(env.admin.clone(), &env.namespace, &scaled_object);
    eventually("the sms flows have ScaledObjects", Duration::from_secs(60), || {
        let scaled_objects = scaled_objects.clone();
        async move { scaled_objects.get_opt("sms-processor").await.is_ok_and(|o| o.is_some()) }
    })
    .await;
    let channels = env.channels();
    eventually("the autoscaled generation is reconciled", Duration::from_secs(60), || {
        let channels = channels.clone();
        async move {
            channels
                .get("sms")
                .await
                .is_ok_and(|c| c.status.and_then(|s| s.observed_generation) == c.metadata.generation)
        }
    })
    .await;
    assert_eq!(replicas("sms-processor").await, Some(3), "the running pods are kept until the HPA takes over");
    assert_eq!(replicas("sms-replies-processor").await, Some(3));

    // Autoscaling off again: fixed replicas, and no KEDA object of the Channel left behind.
    env.channels().patch("sms", &apply, &kube::api::Patch::Apply(scale(json!({"replicas": 3})))).await.expect("fixed");
    let authentication = kube::api::ApiResource::from_gvk_with_plural(
        &kube::api::GroupVersionKind::gvk("keda.sh", "v1alpha1", "TriggerAuthentication"),
        "triggerauthentications",
    );
    let authentications: Api<DynamicObject> = Api::namespaced_with(env.admin.clone(), &env.namespace, &authentication);
    eventually("the sms Channel's ScaledObjects and TriggerAuthentication are gone", Duration::from_secs(60), || {
        let (scaled_objects, authentications) = (scaled_objects.clone(), authentications.clone());
        async move {
            let none =
                |list: kube::Result<kube::api::ObjectList<DynamicObject>>| list.is_ok_and(|l| l.items.is_empty());
            none(scaled_objects.list(&ListParams::default()).await)
                && none(authentications.list(&ListParams::default()).await)
        }
    })
    .await;
    assert_eq!(replicas("sms-processor").await, Some(3));

    let crds: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> =
        Api::all(env.admin.clone());
    for crd in &keda {
        crds.delete(&crd.name_any(), &DeleteParams::default()).await.expect("KEDA's CRD removed");
    }
    env.uninstall().await;
}
