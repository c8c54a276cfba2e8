//! Least privilege, checked: each component runs its flows against the emulator with its AWS
//! calls counted (`multicomms_testkit::aws_calls`), and each action on each resource it needed
//! must be granted by its policy in `charts/multicomms-operator/files/iam/`, while every action
//! the policy grants must have been used: a call missing from the policy would be denied in
//! production; a grant nothing uses is privilege to remove. Resources are matched as IAM
//! matches them, with the policy's placeholders filled in for this run's names.
use axum::body::Body;
use axum::http::{Request, StatusCode};
use multicomms_operator::cli::batch::reconcile_manifests;
use multicomms_operator::reconcile::{cleanup, Context, Mode, ADOPT_ANNOTATION};
use multicomms_runtime::events::EventDelivery;
use multicomms_runtime::processor::pipeline::{Processor, ProcessorConfig};
use multicomms_runtime::replies::turn::{ReplyConfig, ReplyProcessor};
use multicomms_runtime::replies::webhook::path;
use multicomms_runtime::router::app;
use multicomms_runtime::worker::queue::{self, Settings, Worker};
use multicomms_testkit::aws_calls::{counting, Calls};
use multicomms_testkit::environment::{
    emulator_config, example_manifests, example_request, repo_root, router_settings, unique_naming, API_KEY,
    PUBLIC_BASE_URL,
};
use multicomms_testkit::eventually::eventually;
use multicomms_testkit::fakes::{Fakes, Fault, Service};
use multicomms_testkit::twilio::{Inbound, AUTH_TOKEN};
use multicomms_wire::{ChannelKind, Naming};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;
use tower::ServiceExt;

/// The emulator's region and account, which every ARN here is built with.
const REGION: &str = "eu-north-1";
const ACCOUNT: &str = "123456789012";

/// One statement of a policy: its id, actions, and resource patterns (placeholders filled in).
struct Statement {
    sid: String,
    actions: Vec<String>,
    resources: Vec<String>,
}

/// The statements of `component`'s policy document, for `naming`'s prefix and environment.
fn policy(component: &str, naming: &Naming) -> Vec<Statement> {
    let file = repo_root().join(format!("charts/multicomms-operator/files/iam/{component}.json"));
    let policy: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).expect("policy file")).expect("policy JSON");
    let statements = policy["Statement"].as_array().expect("statements");
    let strings = |v: &serde_json::Value| -> Vec<String> {
        v.as_array().expect("a list").iter().filter_map(|s| s.as_str()).map(str::to_string).collect()
    };
    statements
        .iter()
        .map(|statement| {
            let resources = strings(&statement["Resource"]);
            assert!(
                resources.iter().all(|r| r.contains("${prefix}") && r.contains("${env}")),
                "{component}: every resource is scoped by prefix and environment: {statement}"
            );
            let fill = |r: &String| {
                r.replace("${region}", REGION)
                    .replace("${account}", ACCOUNT)
                    .replace("${prefix}", &naming.prefix)
                    .replace("${env}", &naming.env)
            };
            Statement {
                sid: statement["Sid"].as_str().unwrap_or_default().to_string(),
                actions: strings(&statement["Action"]),
                resources: resources.iter().map(fill).collect(),
            }
        })
        .collect()
}

/// IAM's wildcard match: `*` any run of characters (`/` and `:` included), `?` exactly one.
fn matches(pattern: &str, arn: &str) -> bool {
    let (pattern, arn): (Vec<char>, Vec<char>) = (pattern.chars().collect(), arn.chars().collect());
    let (mut p, mut a, mut star, mut resume) = (0, 0, None, 0);
    while a < arn.len() {
        if p < pattern.len() && (pattern[p] == '?' || pattern[p] == arn[a]) {
            (p, a) = (p + 1, a + 1);
        } else if p < pattern.len() && pattern[p] == '*' {
            (star, resume, p) = (Some(p), a, p + 1);
        } else if let Some(at) = star {
            (p, resume) = (at + 1, resume + 1);
            a = resume;
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|c| *c == '*')
}

/// Every call's action on its resource is granted by some statement (else production denies
/// it), and every action of every statement was used on one of its resources (else it is
/// privilege to remove). `namings`: the environments the calls were made in.
fn assert_least_privilege(component: &str, calls: &Calls, namings: &[&Naming]) {
    let statements: Vec<Statement> = namings.iter().flat_map(|naming| policy(component, naming)).collect();
    let used = calls.actions_on();
    assert!(!used.is_empty(), "{component}: no call was recorded");
    let allows = |s: &Statement, action: &str, arn: &str| {
        s.actions.iter().any(|a| a == action) && s.resources.iter().any(|r| matches(r, arn))
    };
    let missing: Vec<String> = used
        .iter()
        .map(|(action, resource)| (action, resource.arn(REGION, ACCOUNT)))
        .filter(|(action, arn)| !statements.iter().any(|s| allows(s, action, arn)))
        .map(|(action, arn)| format!("{action} on {arn}"))
        .collect();
    let granted: BTreeSet<(&str, &str)> =
        statements.iter().flat_map(|s| s.actions.iter().map(move |a| (s.sid.as_str(), a.as_str()))).collect();
    let used_by = |sid: &str, action: &str| {
        let mine = statements.iter().filter(|s| s.sid == sid);
        mine.into_iter().any(|s| used.iter().any(|(a, r)| a == action && allows(s, a, &r.arn(REGION, ACCOUNT))))
    };
    let unused: Vec<String> = granted
        .into_iter()
        .filter(|(sid, action)| !used_by(sid, action))
        .map(|(sid, action)| format!("{sid} {action}"))
        .collect();
    assert!(
        missing.is_empty() && unused.is_empty(),
        "{component}: not granted {missing:#?}; granted but never used {unused:?}"
    );
}

#[test]
fn iam_wildcards_match_as_iam_does_and_an_environment_never_matches_another() {
    let dev = "arn:aws:secretsmanager:r:a:secret:p/whatsapp-credentials/*-dev-??????";
    assert!(matches(dev, "arn:aws:secretsmanager:r:a:secret:p/whatsapp-credentials/acme/hiring/twilio-dev-AbC123"));
    // A company or project slug with "-dev-" in it, in prod: the anchored suffix keeps it out.
    assert!(!matches(
        dev,
        "arn:aws:secretsmanager:r:a:secret:p/whatsapp-credentials/web-dev-agency/x/twilio-prod-AbC123"
    ));
    assert!(!matches(dev, "arn:aws:secretsmanager:r:a:secret:p/email-credentials/acme/hiring/sendgrid-dev-AbC123"));
    assert!(!matches("arn:aws:sqs:r:a:p-whatsapp-queue-dev", "arn:aws:sqs:r:a:p-replies-human-handoff-queue-dev"));
    assert!(matches("arn:*:q?", "arn:x:y:qz") && !matches("a?", "a"));
}

struct Env {
    base: aws_config::SdkConfig,
    naming: Naming,
    fakes: Fakes,
}

/// The example Channels and Company applied by the operator with its calls counted, then its
/// other paths: a no-op re-apply, drift repaired (a queue attribute, a secret value), a secret
/// scheduled for deletion restored, untagged objects adopted, both deletions.
/// The examples, the Company sending its events to `events_url`.
fn manifests_with_events(events_url: &str) -> multicomms_operator::cli::manifests::Manifests {
    use multicomms_operator::crd::{company::ClientEvents, SecretKeyRef, SecretValue};
    let mut manifests = example_manifests();
    let reference = SecretKeyRef { name: "cucumber-recruitment-events".into(), key: "signingSecret".into() };
    let signing_secret = SecretValue { secret_key_ref: reference };
    manifests.companies[0].spec.events = Some(ClientEvents { url: events_url.into(), signing_secret });
    manifests
}

/// A client's system taking every event but the first (a retry sets the event's visibility);
/// how many it took.
async fn events_receiver() -> (String, Arc<std::sync::atomic::AtomicUsize>) {
    let taken = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = taken.clone();
    let app = axum::Router::new().route(
        "/events",
        axum::routing::post(move || {
            let before = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            async move {
                if before == 0 {
                    StatusCode::SERVICE_UNAVAILABLE
                } else {
                    StatusCode::NO_CONTENT
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/events", listener.local_addr().expect("address"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, taken)
}

async fn operator(base: &aws_config::SdkConfig, events_url: &str) -> (Naming, Naming, Calls) {
    let (config, calls) = counting(base);
    let naming = unique_naming('i');
    let ctx = Context::new(multicomms_operator::aws::Aws::new(&config), naming.clone(), Mode::Apply);
    let manifests = manifests_with_events(events_url);
    for _ in 0..2 {
        let reports = reconcile_manifests(&ctx, manifests.clone(), 4).await;
        assert!(reports.iter().all(|r| r.is_ready()), "{:?}", reports.iter().find(|r| !r.is_ready()));
    }
    let company = &manifests.companies[0];
    let (sqs, secrets) = (aws_sdk_sqs::Client::new(base), aws_sdk_secretsmanager::Client::new(base));
    let secret = naming.router_api_key_secret(&company.spec.company_name, &company.spec.project_name);
    let queue = sqs.get_queue_url().queue_name(naming.channel_queue(ChannelKind::Sms)).send().await.expect("url");
    let queue = queue.queue_url.expect("url");
    sqs.set_queue_attributes()
        .queue_url(&queue)
        .attributes(aws_sdk_sqs::types::QueueAttributeName::VisibilityTimeout, "31")
        .send()
        .await
        .expect("drift");
    secrets
        .put_secret_value()
        .secret_id(&secret)
        .secret_string("{\"router_api_key\": \"drifted\"}")
        .send()
        .await
        .expect("drift");
    let reports = reconcile_manifests(&ctx, manifests.clone(), 4).await;
    assert!(reports.iter().all(|r| r.is_ready()), "drift repaired");
    secrets.delete_secret().secret_id(&secret).send().await.expect("schedule");
    let reports = reconcile_manifests(&ctx, manifests.clone(), 4).await;
    assert!(reports.iter().all(|r| r.is_ready()), "restored");
    // Adoption and deletion on a second environment, so the other components keep theirs. Its
    // sms queue and router key exist untagged, as an earlier deployment left them.
    let doomed = unique_naming('d');
    sqs.create_queue().queue_name(doomed.channel_queue(ChannelKind::Sms)).send().await.expect("untagged queue");
    let doomed_secret = doomed.router_api_key_secret(&company.spec.company_name, &company.spec.project_name);
    secrets.create_secret().name(&doomed_secret).secret_string("{}").send().await.expect("untagged secret");
    let adopting = multicomms_operator::reconcile::AdoptionPolicy::namespaces(["multicomms-dev"]);
    let doomed_ctx =
        Context::new(multicomms_operator::aws::Aws::new(&config), doomed.clone(), Mode::Apply).adopting_in(adopting);
    let mut adopting_manifests = example_manifests();
    let asks = |annotations: &mut Option<std::collections::BTreeMap<String, String>>| {
        annotations.get_or_insert_with(Default::default).insert(ADOPT_ANNOTATION.into(), "true".into());
    };
    adopting_manifests.companies.iter_mut().for_each(|c| asks(&mut c.metadata.annotations));
    adopting_manifests.channels.iter_mut().for_each(|c| asks(&mut c.metadata.annotations));
    let reports = reconcile_manifests(&doomed_ctx, adopting_manifests.clone(), 4).await;
    assert!(reports.iter().all(|r| r.is_ready()), "{:?}", reports.iter().find(|r| !r.is_ready()));
    assert!(cleanup::delete_company(&doomed_ctx, company).await.is_ready());
    let sms = manifests.channels.iter().find(|c| c.spec.kind == ChannelKind::Sms).expect("sms");
    assert!(cleanup::delete_channel(&doomed_ctx, sms, &[]).await.is_ready());
    (naming, doomed, calls)
}

fn processor_config(env: &Env) -> ProcessorConfig {
    ProcessorConfig { pod: env.fakes.pod_config(ChannelKind::Whatsapp, &env.naming), version: "processor-iam".into() }
}

/// Runs `worker` on `queue` until `done` holds (30 s at most), with 1 s heartbeats.
async fn work<W: Worker, F: std::future::Future<Output = bool>>(
    config: &aws_config::SdkConfig,
    worker: Arc<W>,
    queue: &str,
    done: impl Fn() -> F,
) {
    let sqs = aws_sdk_sqs::Client::new(config);
    let facts = queue::discover(&sqs, queue).await.expect("queue");
    let settings = Settings {
        queue_url: facts.url,
        concurrency: 4,
        visibility: Duration::from_secs(30),
        heartbeat: Duration::from_secs(1),
        retry_base: Duration::from_secs(1),
        wait: Duration::from_secs(1),
        max_receive_count: facts.max_receive_count,
        dead_letter_queue_url: facts.dead_letter_queue_url,
        hand_off_queue_url: None,
        depth_interval: Duration::from_millis(500),
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(queue::run(worker, sqs, settings, async {
        let _ = stopped.await;
    }));
    eventually("the worker finished its messages", Duration::from_secs(30), done).await;
    let _ = stop.send(());
    running.await.expect("stops");
}

async fn inbound(router: &axum::Router, text: &str) -> StatusCode {
    let message = Inbound::text(ChannelKind::Whatsapp, "+447835065013", "+447588713814", text);
    let (body, signature) = message.signed(AUTH_TOKEN, &format!("{PUBLIC_BASE_URL}{}", path(ChannelKind::Whatsapp)));
    let request = Request::post(path(ChannelKind::Whatsapp))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-twilio-signature", signature)
        .body(Body::from(body))
        .expect("request");
    router.clone().oneshot(request).await.expect("answer").status()
}

#[tokio::test]
async fn each_components_policy_grants_exactly_the_aws_actions_it_performs() {
    let base = emulator_config().await;
    let (events_url, events_taken) = events_receiver().await;
    let (naming, doomed, operator_calls) = operator(&base, &events_url).await;
    assert_least_privilege("operator", &operator_calls, &[&naming, &doomed]);
    let env = Env { base, naming, fakes: Fakes::start("127.0.0.1:0").await.expect("fakes") };
    let uncounted = aws_sdk_dynamodb::Client::new(&env.base);
    uncounted
        .update_item()
        .table_name(env.naming.company_data_table())
        .set_key(Some(multicomms_wire::company::record_key("ci-aaa-001", "pi-aaa-001")))
        .update_expression("SET reply_batch_window_seconds = :one")
        .expression_attribute_values(":one", aws_sdk_dynamodb::types::AttributeValue::N("1".into()))
        .send()
        .await
        .expect("window");

    // The router: a request, then inbound messages (staged; a failed trigger send, which
    // gives its lock back; handed off).
    let (router_config, router_calls) = counting(&env.base);
    let router = app::app(Arc::new(app::AppState::build(&router_config, &env.naming, router_settings()).await));
    let request = Request::post("/initiate-conversation")
        .header("x-api-key", API_KEY)
        .body(Body::from(example_request().to_string()))
        .expect("request");
    assert_eq!(router.clone().oneshot(request).await.expect("answer").status(), StatusCode::OK);

    // The processor sends the first message (a 1.2 s AI answer gives the heartbeat a beat), and
    // meets a duplicate of it (a redelivery reads the record).
    let sqs = aws_sdk_sqs::Client::new(&env.base);
    let channel_queue = env.naming.channel_queue(ChannelKind::Whatsapp);
    let url = sqs.get_queue_url().queue_name(&channel_queue).send().await.expect("url").queue_url.expect("url");
    let received = sqs.receive_message().queue_url(&url).wait_time_seconds(5).send().await.expect("receive");
    let message = received.messages.unwrap_or_default().pop().expect("the router's message");
    for _ in 0..2 {
        sqs.send_message()
            .queue_url(&url)
            .message_body(message.body.clone().expect("body"))
            .send()
            .await
            .expect("send");
    }
    sqs.delete_message()
        .queue_url(&url)
        .receipt_handle(message.receipt_handle.expect("receipt"))
        .send()
        .await
        .expect("delete");
    let (processor_config_aws, processor_calls) = counting(&env.base);
    let processor = Arc::new(Processor::build(&processor_config_aws, processor_config(&env)).expect("processor"));
    env.fakes.set_latency(Service::OpenAi, Duration::from_millis(1_200));
    let fakes = env.fakes.clone();
    let depth = {
        let sqs = sqs.clone();
        move |url: String| {
            let sqs = sqs.clone();
            async move {
                let names = [
                    aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages,
                    aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
                ];
                let out =
                    sqs.get_queue_attributes().queue_url(url).set_attribute_names(Some(names.to_vec())).send().await;
                let attributes = out.expect("attributes").attributes.unwrap_or_default();
                names.iter().filter_map(|n| attributes.get(n).and_then(|v| v.parse::<u64>().ok())).sum::<u64>()
            }
        }
    };
    work(&processor_config_aws, processor, &channel_queue, || {
        let (sent, in_queue) = (!fakes.sent().is_empty(), depth(url.clone()));
        async move { sent && in_queue.await == 0 }
    })
    .await;
    env.fakes.set_latency(Service::OpenAi, Duration::from_millis(0));
    assert_least_privilege("processor", &processor_calls, &[&env.naming]);

    let replies_queue = env.naming.replies_queue(ChannelKind::Whatsapp);
    let url = sqs.get_queue_url().queue_name(&replies_queue).send().await.expect("url").queue_url.expect("url");
    let redrive = aws_sdk_sqs::types::QueueAttributeName::RedrivePolicy;
    let attributes = sqs.get_queue_attributes().queue_url(&url).attribute_names(redrive.clone()).send().await;
    let redrive_policy = attributes.expect("attributes").attributes.and_then(|mut a| a.remove(&redrive));
    sqs.delete_queue().queue_url(&url).send().await.expect("delete");
    assert_eq!(inbound(&router, "while the queue is gone").await, StatusCode::SERVICE_UNAVAILABLE);
    // Back as the operator makes it, with its dead-letter queue (whose depth the processor reads).
    let recreate = sqs.create_queue().queue_name(&replies_queue);
    recreate.set_attributes(redrive_policy.map(|p| [(redrive, p)].into())).send().await.expect("recreate");
    assert_eq!(inbound(&router, "hello").await, StatusCode::OK);

    // The reply processor answers; a message during its turn gets the next trigger.
    let (reply_config_aws, reply_calls) = counting(&env.base);
    let replier = Arc::new(
        ReplyProcessor::build(
            &reply_config_aws,
            ReplyConfig {
                pod: env.fakes.pod_config(ChannelKind::Whatsapp, &env.naming),
                company_cache: Duration::from_secs(30),
                lease: Duration::from_secs(30),
            },
        )
        .expect("reply processor"),
    );
    env.fakes.set_latency(Service::OpenAi, Duration::from_millis(2_500));
    let during = {
        let (router, fakes) = (router.clone(), env.fakes.clone());
        let asked_before = fakes.requests(Service::OpenAi).len();
        tokio::spawn(async move {
            let thinking = || async { fakes.requests(Service::OpenAi).len() > asked_before };
            eventually("the turn asking the AI", Duration::from_secs(30), thinking).await;
            inbound(&router, "one more").await
        })
    };
    let fakes = env.fakes.clone();
    let sweeper = replier.clone();
    work(&reply_config_aws, replier, &replies_queue, move || {
        let done = fakes.sent().len() >= 3;
        async move { done }
    })
    .await;
    assert_eq!(during.await.expect("sent"), StatusCode::OK);

    // The sweep looks for stranded messages (none; then one whose trigger was lost, its lock
    // expired), and a turn failing on its trigger's last receive hands the message to a person.
    assert_eq!(sweeper.sweep(Duration::ZERO).await, 0);
    assert_eq!(inbound(&router, "for the AI, which is down").await, StatusCode::OK);
    let lost = multicomms_testkit::environment::take(&sqs, &replies_queue, 10).await.expect("the webhook's trigger");
    let lost: multicomms_wire::replies::Trigger = serde_json::from_str(&lost).expect("a trigger");
    let id = aws_sdk_dynamodb::types::AttributeValue::S(lost.conversation_id);
    uncounted
        .delete_item()
        .table_name(env.naming.replies_trigger_lock_table())
        .key("conversation_id", id.clone())
        .send()
        .await
        .expect("the lock expires");
    // Staged as a row from before fragments named their channel: the sweep reads the record.
    let staged = uncounted
        .query()
        .table_name(env.naming.replies_stage_table())
        .key_condition_expression("conversation_id = :id")
        .expression_attribute_values(":id", id.clone())
        .send()
        .await
        .expect("Query");
    for row in staged.items.unwrap_or_default() {
        uncounted
            .update_item()
            .table_name(env.naming.replies_stage_table())
            .key("conversation_id", id.clone())
            .key("message_sid", row.get("message_sid").cloned().expect("a sid"))
            .update_expression("REMOVE channel")
            .send()
            .await
            .expect("an older row");
    }
    assert_eq!(sweeper.sweep(Duration::ZERO).await, 1);
    let trigger = multicomms_testkit::environment::take(&sqs, &replies_queue, 10).await;
    env.fakes.fail_next(Service::OpenAi, Fault::Status(429));
    let outcome = sweeper.process(&trigger.expect("the message's trigger"), true).await;
    assert_eq!(outcome, multicomms_runtime::worker::outcome::Outcome::Failed, "handed off");

    // A company that answers replies in person: the next message is handed off.
    uncounted
        .update_item()
        .table_name(env.naming.company_data_table())
        .set_key(Some(multicomms_wire::company::record_key("ci-aaa-001", "pi-aaa-001")))
        .update_expression("SET auto_queue_reply_message = :t")
        .expression_attribute_values(":t", aws_sdk_dynamodb::types::AttributeValue::Bool(true))
        .send()
        .await
        .expect("hand off");
    let router = app::app(Arc::new(app::AppState::build(&router_config, &env.naming, router_settings()).await));
    // The hand-off queue missing: 503, and the message's marker removed for Twilio's retry.
    let handoff = env.naming.handoff_queue();
    let url = sqs.get_queue_url().queue_name(&handoff).send().await.expect("url").queue_url.expect("url");
    sqs.delete_queue().queue_url(&url).send().await.expect("delete");
    assert_eq!(inbound(&router, "while the hand-off queue is gone").await, StatusCode::SERVICE_UNAVAILABLE);
    sqs.create_queue().queue_name(&handoff).send().await.expect("recreate");
    let router = app::app(Arc::new(app::AppState::build(&router_config, &env.naming, router_settings()).await));
    assert_eq!(inbound(&router, "for a person").await, StatusCode::OK);
    // The pointed conversation complete: the router looks for another active one in the index.
    let pointer =
        multicomms_wire::conversation::ActivePointer::key(ChannelKind::Whatsapp, "+447588713814", "+447835065013");
    let pointer = uncounted
        .get_item()
        .table_name(env.naming.conversations_table())
        .set_key(Some(pointer.to_item()))
        .send()
        .await
        .expect("pointer")
        .item
        .expect("the conversation's pointer");
    let pointer: multicomms_wire::conversation::ActivePointer = serde_dynamo::from_item(pointer).expect("reads");
    uncounted
        .update_item()
        .table_name(env.naming.conversations_table())
        .set_key(Some(pointer.conversation().to_item()))
        .update_expression("SET task_complete = :one")
        .expression_attribute_values(":one", aws_sdk_dynamodb::types::AttributeValue::N("1".into()))
        .send()
        .await
        .expect("complete");
    assert_eq!(inbound(&router, "after the end").await, StatusCode::OK);
    // The recipient's word: STOP records the opt-out, START removes it.
    assert_eq!(inbound(&router, "STOP").await, StatusCode::OK);
    assert_eq!(inbound(&router, "START").await, StatusCode::OK);
    // The recipient erased: their partition read, conversations and staged messages deleted.
    let erase = "/recipients/whatsapp/+447835065013?company_id=ci-aaa-001&project_id=pi-aaa-001";
    let request = Request::delete(erase).header("x-api-key", API_KEY).body(Body::empty()).expect("request");
    assert_eq!(router.clone().oneshot(request).await.expect("answer").status(), StatusCode::OK);
    assert_least_privilege("router", &router_calls, &[&env.naming]);
    assert_least_privilege("reply-processor", &reply_calls, &[&env.naming]);

    // The client-events worker delivers what the flows above emitted.
    let (events_config, events_calls) = counting(&env.base);
    let delivery = EventDelivery::build(&events_config, &env.naming, Duration::from_secs(5)).expect("worker");
    let events_queue = env.naming.client_events_queue();
    let url = sqs.get_queue_url().queue_name(&events_queue).send().await.expect("url").queue_url.expect("url");
    work(&events_config, Arc::new(delivery), &events_queue, || {
        let (some, in_queue) = (events_taken.load(std::sync::atomic::Ordering::Relaxed) > 1, depth(url.clone()));
        async move { some && in_queue.await == 0 }
    })
    .await;
    assert_least_privilege("client-events", &events_calls, &[&env.naming]);
}
