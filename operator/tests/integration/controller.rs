//! The in-cluster controller's reconcilers against an in-memory Kubernetes API
//! (kube-fake-client) and the moto AWS emulator. The reconcilers are called directly: the fake
//! has no watch, which only the `Controller` loop itself needs.

use crate::support::*;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::ByteString;
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::ResourceExt;
use kube_fake_client::{interceptor, ClientBuilder};
use multicomms_operator::controller::{Error, State};
use multicomms_operator::crd::{Channel, Company, DeletionPolicy};
use multicomms_operator::desired::secret::{CHANNEL_LABEL, COMPANY_LABEL};
use multicomms_operator::reconcile::{self, Mode, Reason};
use multicomms_wire::ChannelKind;
use secrecy::ExposeSecret;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const NS: &str = "multicomms-dev";

async fn reconcile_company(company: Arc<Company>, state: Arc<State>) -> Result<Action, Error> {
    multicomms_operator::controller::reconcile(company, state).await
}

async fn reconcile_channel(channel: Arc<Channel>, state: Arc<State>) -> Result<Action, Error> {
    multicomms_operator::controller::reconcile(channel, state).await
}
const RESYNC: Duration = Duration::from_secs(600);

/// A Secret of the examples, bound as the platform's tooling binds them: the Channel's shared
/// key to its Channel, the rest to the example Company.
fn secret(name: &str, data: &[(&str, &str)]) -> Secret {
    let binding = match name.strip_prefix("openai-") {
        Some(channel) => (CHANNEL_LABEL.to_string(), channel.to_string()),
        None => (COMPANY_LABEL.to_string(), "cucumber-recruitment-clarify-cv".to_string()),
    };
    Secret {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(NS.into()),
            labels: Some([binding].into()),
            ..Default::default()
        },
        data: Some(data.iter().map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec()))).collect()),
        ..Default::default()
    }
}

fn twilio() -> Secret {
    secret(
        "cucumber-recruitment-twilio",
        &[("accountSid", "AC00000000000000000000000000000000"), ("authToken", "tok-1")],
    )
}

fn other_secrets() -> Vec<Secret> {
    vec![
        secret("cucumber-recruitment-router", &[("apiKey", "router-key")]),
        secret("cucumber-recruitment-sendgrid", &[("apiKey", "SG.key")]),
        secret("cucumber-recruitment-agents", &[("carol", "carol-agent-token-0123456789abcdefghij")]),
    ]
}

fn company() -> Company {
    let mut company = example_company();
    company.metadata.namespace = Some(NS.into());
    company.metadata.generation = Some(1);
    company
}

async fn fake(company: Company, secrets: Vec<Secret>) -> kube::Client {
    fake_recording(company, secrets, Calls::default()).await
}

/// The API calls a test's reconciles made, as `verb name [detail]`.
type Calls = Arc<Mutex<Vec<String>>>;

async fn fake_recording(company: Company, secrets: Vec<Secret>, calls: Calls) -> kube::Client {
    let log = |calls: &Calls, line: String| calls.lock().expect("calls").push(line);
    let (get, patch, status, create) = (calls.clone(), calls.clone(), calls.clone(), calls.clone());
    let funcs = interceptor::Funcs::new()
        .get(move |ctx| {
            log(&get, format!("get {}", ctx.name));
            Ok(None)
        })
        .patch(move |ctx| {
            log(&patch, format!("patch {} {:?}", ctx.name, ctx.patch_type));
            Ok(None)
        })
        .patch_status(move |ctx| {
            let manager = ctx.params.field_manager.clone().unwrap_or_default();
            log(&status, format!("patch_status {} {:?} {manager}", ctx.name, ctx.patch_type));
            Ok(None)
        })
        .create(move |ctx| {
            log(&create, format!("create {}", ctx.object["kind"].as_str().unwrap_or("?")));
            Ok(None)
        });
    ClientBuilder::new()
        .with_interceptor_funcs(funcs)
        .with_resource::<Company>()
        .with_resource::<Channel>()
        .with_object(company)
        .with_objects(secrets)
        .build()
        .await
        .expect("fake client")
}

/// The finalizer of the tests' environment (`test`).
fn finalizer() -> String {
    multicomms_operator::controller::finalizer(&multicomms_wire::Naming::new("any", "test"))
}

/// A controller state on a fresh AWS name prefix, with the environment's tables in place.
async fn state(client: kube::Client) -> Arc<State> {
    let engine = context(Mode::Apply).await;
    assert!(reconcile::tables::reconcile(&engine).await.is_ready());
    Arc::new(State::new(engine, client, RESYNC, None))
}

async fn get(client: &kube::Client, name: &str) -> Company {
    Api::<Company>::namespaced(client.clone(), NS).get(name).await.expect("company")
}

async fn events(client: &kube::Client) -> Vec<(String, String)> {
    let list = Api::<Event>::namespaced(client.clone(), NS).list(&Default::default()).await.expect("events");
    list.items.into_iter().map(|e| (e.reason.unwrap_or_default(), e.note.unwrap_or_default())).collect()
}

fn requeue_after(action: &Action) -> String {
    format!("{action:?}")
}

#[tokio::test]
async fn a_reconcile_that_changes_nothing_writes_no_status_so_the_controller_does_not_wake_itself() {
    // A status write is a watch event for the controller itself: one on every reconcile would
    // reconcile again at once, forever (found by the fault suite's operator scenario).
    let calls = Calls::default();
    let client = fake_recording(company(), [vec![twilio()], other_secrets()].concat(), calls.clone()).await;
    let state = state(client.clone()).await;
    let name = "cucumber-recruitment-clarify-cv";
    // The second reconcile still has news ("record written" becomes "record up to date").
    for _ in 0..2 {
        reconcile_company(Arc::new(get(&client, name).await), state.clone()).await.expect("reconciles");
    }
    calls.lock().expect("calls").clear();
    reconcile_company(Arc::new(get(&client, name).await), state.clone()).await.expect("reconciles again");
    let made = calls.lock().expect("calls").clone();
    assert!(!made.iter().any(|call| call.starts_with("patch")), "nothing to write, nothing written: {made:?}");
    assert!(get(&client, name).await.status.is_some_and(|s| s.conditions.iter().any(|c| c.type_ == "Ready")));
}

#[tokio::test]
async fn a_company_gets_its_finalizer_aws_objects_status_and_events() {
    let calls = Calls::default();
    let client = fake_recording(company(), [vec![twilio()], other_secrets()].concat(), calls.clone()).await;
    let state = state(client.clone()).await;
    let name = "cucumber-recruitment-clarify-cv";

    let company = get(&client, name).await;
    calls.lock().expect("calls").clear();
    let action = reconcile_company(Arc::new(company), state.clone()).await.expect("reconciles");
    assert!(requeue_after(&action).contains("requeue_after"), "{action:?}");
    let made = calls.lock().expect("calls").clone();
    assert_eq!(
        &made[..6],
        [
            format!("patch {name} MergePatch"), // the finalizer
            "get cucumber-recruitment-agents".into(),
            "get cucumber-recruitment-router".into(),
            "get cucumber-recruitment-sendgrid".into(),
            "get cucumber-recruitment-twilio".into(),
            format!("patch_status {name} ApplyPatch multicomms-operator-test"),
        ],
        "{made:?}"
    );
    assert_eq!(made[6..], ["create Event".to_string()], "one Event: Created, listing the objects");

    let stored = get(&client, name).await;
    assert_eq!(stored.finalizers(), [finalizer()]);
    let status = stored.status.expect("status written");
    let ready = &status.conditions[0];
    assert_eq!((ready.type_.as_str(), ready.status.as_str(), ready.reason.as_str()), ("Ready", "True", "Synced"));
    assert_eq!(status.observed_generation, stored.metadata.generation);
    assert!(status.conditions.iter().all(|c| c.observed_generation == stored.metadata.generation));
    assert_eq!(status.secrets.len(), 4);
    assert!(status.record_version.is_some());
    let status_text = serde_json::to_string(&status).expect("json");
    assert!(!status_text.contains("tok-1") && !status_text.contains("router-key"), "status shows a secret value");

    let table = state.engine.naming.company_data_table();
    assert!(state.engine.aws.dynamodb.get_item(&table, key()).await.expect("get").is_some());
    let events = events(&client).await;
    assert!(events.iter().any(|(reason, note)| reason == "Created" && note.contains("create item")), "{events:?}");
    assert!(!format!("{events:?}").contains("tok-1"));
}

#[tokio::test]
async fn a_resource_with_the_finalizer_all_environments_once_shared_is_moved_to_its_environments_own() {
    let mut shared = company();
    let other = "example.com/keep".to_string();
    shared.metadata.finalizers = Some(vec![other.clone(), multicomms_operator::controller::LEGACY_FINALIZER.into()]);
    let client = fake(shared, [vec![twilio()], other_secrets()].concat()).await;
    let state = state(client.clone()).await;
    let name = "cucumber-recruitment-clarify-cv";
    reconcile_company(Arc::new(get(&client, name).await), state).await.expect("reconciles");
    assert_eq!(get(&client, name).await.finalizers(), [other, finalizer()], "the shared one replaced, others kept");
}

fn key() -> multicomms_wire::Item {
    use aws_sdk_dynamodb::types::AttributeValue;
    [
        ("company_id".to_string(), AttributeValue::S("ci-aaa-001".into())),
        ("project_id".to_string(), AttributeValue::S("pi-aaa-001".into())),
    ]
    .into()
}

#[tokio::test]
async fn a_missing_secret_is_reported_without_hot_looping_and_recovers_when_it_appears() {
    let client = fake(company(), other_secrets()).await;
    let state = state(client.clone()).await;
    let name = "cucumber-recruitment-clarify-cv";

    let action =
        reconcile_company(Arc::new(get(&client, name).await), state.clone()).await.expect("a user error is no Err");
    assert!(
        requeue_after(&action).contains(&format!("{:?}", RESYNC.as_secs()).chars().take(2).collect::<String>())
            || requeue_after(&action).contains("requeue_after")
    );
    let status = get(&client, name).await.status.expect("status");
    let ready = &status.conditions[0];
    assert_eq!((ready.status.as_str(), ready.reason.as_str()), ("False", "SecretNotFound"));
    assert!(
        ready
            .message
            .contains(r#"spec.channels.whatsapp.twilio.accountSid: Secret not found: "cucumber-recruitment-twilio""#),
        "{}",
        ready.message
    );
    assert!(events(&client).await.iter().any(|(reason, _)| reason == "SecretNotFound"));

    Api::<Secret>::namespaced(client.clone(), NS).create(&PostParams::default(), &twilio()).await.expect("create");
    reconcile_company(Arc::new(get(&client, name).await), state).await.expect("reconciles");
    let ready = get(&client, name).await.status.expect("status").conditions.remove(0);
    assert_eq!((ready.status.as_str(), ready.reason.as_str()), ("True", "Synced"));
}

#[tokio::test]
async fn a_company_naming_another_tenants_or_the_channels_secret_is_refused_before_anything_is_copied() {
    // The impostor names the example Company's Secrets (bound to it by their label), and the
    // Channel's shared OpenAI key as its own beside an endpoint of its choosing.
    let mut impostor = company();
    impostor.metadata.name = Some("impostor".into());
    impostor.spec.company_id = "ci-zzz-001".into();
    impostor.spec.company_name = "Impostor".into();
    let whatsapp = impostor.spec.channels.whatsapp.as_mut().expect("whatsapp");
    let ai = whatsapp.ai.as_mut().expect("ai");
    ai.base_url = Some("https://collector.invalid/v1".into());
    ai.api_key = Some(multicomms_operator::crd::common::SecretValue {
        secret_key_ref: multicomms_operator::crd::SecretKeyRef { name: "openai-whatsapp".into(), key: "apiKey".into() },
    });
    let shared_key = secret("openai-whatsapp", &[("apiKey", "sk-shared")]);
    let client = fake(impostor, [vec![twilio(), shared_key], other_secrets()].concat()).await;
    // The platform allows the endpoint: only the Secret's binding stands in the way.
    let platform = multicomms_operator::reconcile::validate::AiEndpoints::new(["collector.invalid"], false);
    let engine = context(Mode::Apply).await.allowing_ai_endpoints(platform);
    assert!(reconcile::tables::reconcile(&engine).await.is_ready());
    let state = Arc::new(State::new(engine, client.clone(), RESYNC, None));
    reconcile_company(Arc::new(get(&client, "impostor").await), state.clone()).await.expect("a user error is no Err");
    let ready = get(&client, "impostor").await.status.expect("status").conditions.remove(0);
    assert_eq!((ready.status.as_str(), ready.reason.as_str()), ("False", "SecretNotAllowed"));
    assert!(
        ready.message.contains(r#"spec.apiKey: Secret "cucumber-recruitment-router" is not bound to this Company"#),
        "{}",
        ready.message
    );
    assert!(events(&client).await.iter().any(|(reason, _)| reason == "SecretNotAllowed"));
    let names = state.engine.aws.calls.by_operation();
    assert!(!names.contains_key("CreateSecret") && !names.contains_key("PutSecretValue"), "nothing copied: {names:?}");

    // Its own Secrets bound to it, the Channel's key still named: refused for that field alone.
    let relabelled = serde_json::json!({"metadata": {"labels": {COMPANY_LABEL: "impostor"}}});
    for name in ["cucumber-recruitment-router", "cucumber-recruitment-twilio", "cucumber-recruitment-sendgrid"] {
        Api::<Secret>::namespaced(client.clone(), NS)
            .patch(name, &PatchParams::default(), &Patch::Merge(&relabelled))
            .await
            .expect("relabel");
    }
    reconcile_company(Arc::new(get(&client, "impostor").await), state.clone()).await.expect("a user error is no Err");
    let ready = get(&client, "impostor").await.status.expect("status").conditions.remove(0);
    assert_eq!(ready.reason, "SecretNotAllowed");
    assert!(
        ready
            .message
            .contains(r#"spec.channels.whatsapp.ai.apiKey: Secret "openai-whatsapp" is not bound to this Company"#),
        "{}",
        ready.message
    );
    assert!(!ready.message.contains("sk-shared"));
}

/// The example Company reconciled, then its Twilio auth token changed in its Kubernetes Secret
/// ("tok-1" becomes "tok-2") and the Company reconciled again.
async fn reconciled_with_a_rotated_twilio_token() -> (kube::Client, Arc<State>) {
    let client = fake(company(), [vec![twilio()], other_secrets()].concat()).await;
    let state = state(client.clone()).await;
    let name = "cucumber-recruitment-clarify-cv";
    reconcile_company(Arc::new(get(&client, name).await), state.clone()).await.expect("reconciles");
    let rotated = serde_json::json!({"data": {"authToken": ByteString(b"tok-2".to_vec())}});
    Api::<Secret>::namespaced(client.clone(), NS)
        .patch("cucumber-recruitment-twilio", &PatchParams::default(), &Patch::Merge(&rotated))
        .await
        .expect("rotate");
    reconcile_company(Arc::new(get(&client, name).await), state.clone()).await.expect("reconciles");
    (client, state)
}

#[tokio::test]
async fn a_rotated_secret_is_pushed_to_secrets_manager() {
    let (client, state) = reconciled_with_a_rotated_twilio_token().await;
    let secret_name = state.engine.naming.channel_credentials_secret(
        multicomms_wire::ChannelKind::Whatsapp,
        "Cucumber Recruitment",
        "Clarify CV",
    );
    let (value, _) = state.engine.aws.secrets.current_value(&secret_name).await.expect("read");
    assert!(value.expect("value").expose_secret().contains("tok-2"));
    let events = events(&client).await;
    assert!(events.iter().any(|(reason, note)| reason == "Updated" && note.contains(&secret_name)), "{events:?}");
}

#[tokio::test]
async fn two_changes_of_one_kind_minutes_apart_each_keep_their_own_event_note() {
    // kube's recorder folds an Event repeated within six minutes into the first one's series,
    // note included: the second change would be told as the first.
    let (client, state) = reconciled_with_a_rotated_twilio_token().await;
    let name = "cucumber-recruitment-clarify-cv";
    let edit = serde_json::json!({"metadata": {"generation": 2}, "spec": {"rateLimits": {"requestsPerMinute": 75}}});
    Api::<Company>::namespaced(client.clone(), NS)
        .patch(name, &PatchParams::default(), &Patch::Merge(&edit))
        .await
        .expect("edit");
    reconcile_company(Arc::new(get(&client, name).await), state.clone()).await.expect("reconciles");

    let updates: Vec<String> =
        events(&client).await.into_iter().filter(|(reason, _)| reason == "Updated").map(|(_, note)| note).collect();
    assert_eq!(updates.len(), 2, "{updates:?}");
    // (The in-memory API lists Events in no particular order.)
    assert!(updates.iter().any(|n| n.contains("update secret") && !n.contains("rate_limits")), "{updates:?}");
    assert!(updates.iter().any(|n| n.contains("update item") && n.contains("rate_limits")), "{updates:?}");
}

#[tokio::test]
async fn editing_a_company_bumps_observed_generation_after_the_change_lands() {
    let client = fake(company(), [vec![twilio()], other_secrets()].concat()).await;
    let state = state(client.clone()).await;
    let name = "cucumber-recruitment-clarify-cv";
    reconcile_company(Arc::new(get(&client, name).await), state.clone()).await.expect("reconciles");
    let first = get(&client, name).await;

    let edit = serde_json::json!({"metadata": {"generation": 2}, "spec": {"rateLimits": {"requestsPerMinute": 75}}});
    Api::<Company>::namespaced(client.clone(), NS)
        .patch(name, &PatchParams::default(), &Patch::Merge(&edit))
        .await
        .expect("edit");
    let edited = get(&client, name).await;
    assert!(edited.metadata.generation > first.metadata.generation);
    reconcile_company(Arc::new(edited.clone()), state.clone()).await.expect("reconciles");

    let status = get(&client, name).await.status.expect("status");
    assert_eq!(status.observed_generation, edited.metadata.generation);
    let table = state.engine.naming.company_data_table();
    let item = state.engine.aws.dynamodb.get_item(&table, key()).await.expect("get").expect("item");
    let record = multicomms_wire::CompanyRecord::from_item(item).expect("record");
    assert_eq!(record.rate_limits.requests_per_minute, 75);
}

/// The fake ignores finalizers on delete, so a deleting object is seeded as the API server
/// would hold it: deletionTimestamp set, finalizer still on.
async fn deleting(policy: DeletionPolicy, state_from: &Arc<State>) -> (kube::Client, Arc<State>) {
    let mut company = company();
    company.spec.deletion_policy = policy;
    company.metadata.finalizers = Some(vec![finalizer()]);
    company.metadata.deletion_timestamp =
        Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::now()));
    let client = fake(company, vec![]).await;
    let engine = same_place(&state_from.engine, Mode::Apply).await;
    (client.clone(), Arc::new(State::new(engine, client, RESYNC, None)))
}

#[tokio::test]
async fn deleting_with_delete_removes_only_its_own_aws_objects_then_the_finalizer() {
    let client = fake(company(), [vec![twilio()], other_secrets()].concat()).await;
    let state = state(client.clone()).await;
    reconcile_company(Arc::new(get(&client, "cucumber-recruitment-clarify-cv").await), state.clone())
        .await
        .expect("ok");
    // Another company's record in the same table must survive.
    let mut manifests = example_manifests();
    let mut other = company_copy(&mut manifests, "other");
    other.spec.project_id = "pi-aaa-002".into();
    other.spec.project_name = "Other".into();
    let secrets = manifests.secrets_in("multicomms-dev");
    assert!(reconcile::company::reconcile(&state.engine, &other, secrets).await.is_ready());

    let (client, deleting_state) = deleting(DeletionPolicy::Delete, &state).await;
    let name = "cucumber-recruitment-clarify-cv";
    reconcile_company(Arc::new(get(&client, name).await), deleting_state.clone()).await.expect("cleanup");

    let table = state.engine.naming.company_data_table();
    assert!(state.engine.aws.dynamodb.get_item(&table, key()).await.expect("get").is_none(), "record deleted");
    let other_key = {
        let mut k = key();
        k.insert("project_id".into(), aws_sdk_dynamodb::types::AttributeValue::S("pi-aaa-002".into()));
        k
    };
    assert!(state.engine.aws.dynamodb.get_item(&table, other_key).await.expect("get").is_some(), "other record kept");
    let secret_name = state.engine.naming.router_api_key_secret("Cucumber Recruitment", "Clarify CV");
    let observed = state.engine.aws.secrets.describe(&secret_name).await.expect("describe").expect("recoverable");
    assert!(observed.scheduled_for_deletion);
    assert!(
        Api::<Company>::namespaced(client.clone(), NS).get_opt(name).await.expect("get").is_none(),
        "finalizer removed"
    );
    let events = events(&client).await;
    assert!(events.iter().any(|(reason, note)| reason == "Deleted" && note.contains("delete item")), "{events:?}");
}

#[tokio::test]
async fn deleting_with_retain_leaves_aws_alone_and_says_so() {
    let client = fake(company(), [vec![twilio()], other_secrets()].concat()).await;
    let state = state(client.clone()).await;
    let name = "cucumber-recruitment-clarify-cv";
    reconcile_company(Arc::new(get(&client, name).await), state.clone()).await.expect("ok");

    let (client, deleting_state) = deleting(DeletionPolicy::Retain, &state).await;
    reconcile_company(Arc::new(get(&client, name).await), deleting_state).await.expect("cleanup");
    let table = state.engine.naming.company_data_table();
    assert!(state.engine.aws.dynamodb.get_item(&table, key()).await.expect("get").is_some(), "record retained");
    assert!(Api::<Company>::namespaced(client.clone(), NS).get_opt(name).await.expect("get").is_none());
    assert!(events(&client).await.iter().any(|(reason, _)| reason == "Retained"));
}

#[tokio::test]
async fn a_channel_in_use_keeps_its_queues_and_retries() {
    let mut channel = example_channel("whatsapp");
    channel.metadata.namespace = Some(NS.into());
    channel.spec.deletion_policy = DeletionPolicy::Delete;
    channel.metadata.finalizers = Some(vec![finalizer()]);
    channel.metadata.deletion_timestamp =
        Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::now()));
    let client = ClientBuilder::new()
        .with_resource::<Company>()
        .with_resource::<Channel>()
        .with_object(channel.clone())
        .with_object(company())
        .build()
        .await
        .expect("fake");
    let state = state(client.clone()).await;
    let error = reconcile_channel(Arc::new(channel), state).await.expect_err("in use");
    assert!(
        matches!(&error, Error::Retry { reason: Reason::InUse, message: m } if m.contains("Company multicomms-dev/cucumber-recruitment-clarify-cv")),
        "{error}"
    );
    let kept = Api::<Channel>::namespaced(client, NS).get("whatsapp").await.expect("still there");
    assert_eq!(kept.finalizers(), [finalizer()]);
}

#[tokio::test]
async fn metrics_count_reconciles_failures_aws_calls_and_time_to_ready_over_http() {
    let client = fake(company(), other_secrets()).await;
    let state = state(client.clone()).await;
    let name = "cucumber-recruitment-clarify-cv";
    reconcile_company(Arc::new(get(&client, name).await), state.clone()).await.expect("not ready, no Err");
    Api::<Secret>::namespaced(client.clone(), NS).create(&PostParams::default(), &twilio()).await.expect("create");
    reconcile_company(Arc::new(get(&client, name).await), state.clone()).await.expect("ready");

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    state.metrics.ready.store(true, std::sync::atomic::Ordering::Relaxed);
    tokio::spawn(multicomms_operator::controller::metrics::serve(state.metrics.clone(), listener));
    let body = http_get(address, "/metrics").await;
    assert!(body.contains(r#"multicomms_reconciles_total{kind="Company"} 2"#), "{body}");
    assert!(
        body.contains(r#"multicomms_reconcile_failures_total{kind="Company",reason="SecretNotFound"} 1"#),
        "{body}"
    );
    assert!(body.contains(r#"multicomms_time_to_ready_seconds_count{kind="Company"} 1"#), "{body}");
    assert!(
        body.contains(r#"multicomms_aws_calls_total{service="DynamoDB",operation="PutItem",outcome="ok"} 1"#),
        "{body}"
    );
    assert!(body.trim_end().ends_with("# EOF"));
    assert!(http_get(address, "/healthz").await.contains("ok"));
    assert!(http_get(address, "/readyz").await.contains("ready"));
}

/// A plain HTTP/1.1 GET, body returned.
async fn http_get(address: std::net::SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(address).await.expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("read");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    response
}

/// Polls the Company until its Ready reason is `reason` (10 s at most).
async fn wait_for_ready_reason(client: &kube::Client, reason: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let company = get(client, "cucumber-recruitment-clarify-cv").await;
        let current = company.status.and_then(|s| s.conditions.first().map(|c| c.reason.clone()));
        if current.as_deref() == Some(reason) {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "Ready reason is {current:?}, waited for {reason}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn the_running_controller_recovers_by_itself_once_the_secret_appears() {
    // The full Controller loop (watches included, through the shim); the resync is 10 minutes,
    // so only the Secret watch can bring the Company to Ready within the wait.
    let client = multicomms_testkit::watch_shim::watching(fake(company(), other_secrets()).await);
    let state = state(client.clone()).await;
    let running = tokio::spawn(multicomms_operator::controller::run(state, 2));

    wait_for_ready_reason(&client, "SecretNotFound").await;
    Api::<Secret>::namespaced(client.clone(), NS).create(&PostParams::default(), &twilio()).await.expect("create");
    wait_for_ready_reason(&client, "Synced").await;
    running.abort();
}

/// The example Company applied, then deleted (Delete policy) by a controller whose AWS refuses
/// `operation`: the client, the applying state, and the deletion's error.
async fn deletion_refused(operation: &'static str) -> (kube::Client, Arc<State>, Error) {
    let client = fake(company(), [vec![twilio()], other_secrets()].concat()).await;
    let state = state(client.clone()).await;
    let name = "cucumber-recruitment-clarify-cv";
    reconcile_company(Arc::new(get(&client, name).await), state.clone()).await.expect("ok");

    let (client, deleting_state) = deleting(DeletionPolicy::Delete, &state).await;
    let mut engine = same_place(&deleting_state.engine, Mode::Apply).await;
    let refusal = Fault::new(operation, "AccessDeniedException", "not authorized to perform this operation", 10);
    match operation {
        "DeleteItem" => engine.aws.dynamodb = dynamodb_with_fault(&engine, refusal).await,
        _ => engine.aws.secrets = secrets_with_fault(&engine, refusal).await,
    }
    let refused = Arc::new(State::new(engine, client.clone(), RESYNC, None));
    let error = reconcile_company(Arc::new(get(&client, name).await), refused).await.expect_err("refused");
    (client, state, error)
}

#[tokio::test]
async fn a_deletion_aws_refuses_keeps_the_finalizer_is_visible_and_retried() {
    let (client, _, error) = deletion_refused("DeleteSecret").await;
    let name = "cucumber-recruitment-clarify-cv";
    assert!(matches!(&error, Error::Retry { message: m, .. } if m.contains("AccessDeniedException")), "{error}");
    assert_eq!(get(&client, name).await.finalizers(), [finalizer()], "kept until the deletion succeeds");
    let events = events(&client).await;
    assert!(events.iter().any(|(reason, note)| reason == "AwsError" && note.contains("DeleteSecret")), "{events:?}");
}

#[tokio::test]
async fn a_channel_no_company_uses_is_deleted_with_its_queues() {
    let mut channel = example_channel("sms");
    channel.metadata.namespace = Some(NS.into());
    let client = ClientBuilder::new()
        .with_resource::<Company>()
        .with_resource::<Channel>()
        .with_object(channel.clone())
        .build()
        .await
        .expect("fake");
    let state = state(client.clone()).await;
    reconcile_channel(Arc::new(channel.clone()), state.clone()).await.expect("created");
    let queue = state.engine.naming.channel_queue(multicomms_wire::ChannelKind::Sms);
    assert!(state.engine.aws.sqs.observe(&queue).await.expect("observe").is_some());

    let mut deleting = Api::<Channel>::namespaced(client.clone(), NS).get("sms").await.expect("get");
    deleting.spec.deletion_policy = DeletionPolicy::Delete;
    deleting.metadata.deletion_timestamp =
        Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::now()));
    let client = ClientBuilder::new()
        .with_resource::<Company>()
        .with_resource::<Channel>()
        .with_object(deleting.clone())
        .build()
        .await
        .expect("fake");
    let deleting_state =
        Arc::new(State::new(same_place(&state.engine, Mode::Apply).await, client.clone(), RESYNC, None));
    reconcile_channel(Arc::new(deleting), deleting_state).await.expect("deleted");
    assert!(state.engine.aws.sqs.observe(&queue).await.expect("observe").is_none(), "queue deleted");
    let dlq = state.engine.naming.channel_dlq(multicomms_wire::ChannelKind::Sms);
    assert!(state.engine.aws.sqs.observe(&dlq).await.expect("observe").is_none(), "DLQ deleted");
    let naming = &state.engine.naming;
    for replies in [naming.replies_queue(ChannelKind::Sms), naming.replies_dlq(ChannelKind::Sms)] {
        assert!(state.engine.aws.sqs.observe(&replies).await.expect("observe").is_none(), "{replies} deleted");
    }
    assert!(Api::<Channel>::namespaced(client, NS).get_opt("sms").await.expect("get").is_none());
}

/// A Channel seeded as the API server holds one being deleted (deletionTimestamp, finalizer).
fn deleting_channel(mut channel: Channel) -> Channel {
    channel.spec.deletion_policy = DeletionPolicy::Delete;
    channel.metadata.finalizers = Some(vec![finalizer()]);
    channel.metadata.deletion_timestamp =
        Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::now()));
    channel
}

#[tokio::test]
async fn a_channel_in_use_keeps_its_shared_ai_key_and_restores_one_scheduled_for_deletion() {
    let mut channel = example_channel("whatsapp");
    channel.metadata.namespace = Some(NS.into());
    let shared_key = secret("openai-whatsapp", &[("apiKey", "sk-shared")]);
    let client = ClientBuilder::new()
        .with_resource::<Company>()
        .with_resource::<Channel>()
        .with_object(channel.clone())
        .with_object(shared_key)
        .build()
        .await
        .expect("fake");
    let state = state(client).await;
    reconcile_channel(Arc::new(channel.clone()), state.clone()).await.expect("created");
    let name = state.engine.naming.shared_ai_key_secret(multicomms_wire::ChannelKind::Whatsapp);
    let scheduled = || async { state.engine.aws.secrets.describe(&name).await.expect("describe").expect("exists") };
    assert!(!scheduled().await.scheduled_for_deletion);

    // Deleted (Delete policy) while a Company still sends on it.
    let deleting = deleting_channel(channel);
    let client = ClientBuilder::new()
        .with_resource::<Company>()
        .with_resource::<Channel>()
        .with_object(deleting.clone())
        .with_object(company())
        .build()
        .await
        .expect("fake");
    let deleting_state = Arc::new(State::new(same_place(&state.engine, Mode::Apply).await, client, RESYNC, None));
    let error = reconcile_channel(Arc::new(deleting.clone()), deleting_state.clone()).await.expect_err("in use");
    assert!(matches!(&error, Error::Retry { reason: Reason::InUse, .. }), "{error}");
    assert!(!scheduled().await.scheduled_for_deletion, "the key every shared-key company uses was kept");

    // A key an earlier attempt (or a person) scheduled for deletion comes back on the next try.
    let raw = raw_clients().await;
    raw.secrets.delete_secret().secret_id(&name).recovery_window_in_days(7).send().await.expect("schedule deletion");
    assert!(scheduled().await.scheduled_for_deletion);
    reconcile_channel(Arc::new(deleting), deleting_state).await.expect_err("still in use");
    assert!(!scheduled().await.scheduled_for_deletion, "restored while still referenced");
}

#[tokio::test]
async fn a_company_keeps_its_secrets_while_its_record_cannot_be_deleted() {
    let (client, state, error) = deletion_refused("DeleteItem").await;
    let name = "cucumber-recruitment-clarify-cv";
    assert!(matches!(&error, Error::Retry { message: m, .. } if m.contains("AccessDeniedException")), "{error}");

    // The router still finds the record, so the processors must still find the credentials.
    let table = state.engine.naming.company_data_table();
    assert!(state.engine.aws.dynamodb.get_item(&table, key()).await.expect("get").is_some(), "record still there");
    for secret in multicomms_operator::desired::company::secrets(&company().spec, &state.engine.naming) {
        let observed = state.engine.aws.secrets.describe(&secret.name).await.expect("describe").expect("exists");
        assert!(!observed.scheduled_for_deletion, "{} was scheduled for deletion before the record", secret.name);
    }
    assert_eq!(get(&client, name).await.finalizers(), [finalizer()]);
}

/// The controller's lists and watches of `collections` (URI prefixes), once it made the example
/// Company Ready: each with the Accept header it sent.
async fn controller_watch_requests(collections: &[&str]) -> Vec<(String, String)> {
    let (client, requests) = multicomms_testkit::watch_shim::watching_recorded(
        fake(company(), [vec![twilio()], other_secrets()].concat()).await,
    );
    let state = state(client.clone()).await;
    let running = tokio::spawn(multicomms_operator::controller::run(state, 2));
    wait_for_ready_reason(&client, "Synced").await;
    running.abort();
    let requests = requests.lock().expect("requests").clone();
    for collection in collections {
        let made = requests.iter().filter(|(uri, _)| uri.starts_with(collection)).count();
        assert!(made >= 2, "the list and the watch of {collection}: {requests:?}");
    }
    requests.into_iter().filter(|(uri, _)| collections.iter().any(|c| uri.starts_with(c))).collect()
}

#[tokio::test]
async fn the_controller_caches_only_its_resources_metadata_and_reads_each_when_it_reconciles_it() {
    // 10,000 Companies cached whole would take about 70 MB: more than the operator may use. The
    // Company still turns Ready: each reconcile reads it whole.
    let kinds = ["/apis/multicomms.io/v1alpha1/companies", "/apis/multicomms.io/v1alpha1/channels"];
    for (uri, accept) in controller_watch_requests(&kinds).await {
        assert!(accept.contains("as=PartialObjectMetadata"), "{uri} asked for whole resources ({accept:?})");
    }
}

#[tokio::test]
async fn the_controller_watches_secrets_as_metadata_only() {
    for (uri, accept) in controller_watch_requests(&["/api/v1/secrets"]).await {
        assert!(accept.contains("as=PartialObjectMetadata"), "{uri} asked for whole Secrets ({accept:?})");
    }
}
