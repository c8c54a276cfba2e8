//! The channel processors against the moto emulator and the fake providers (tests/src/fakes.rs):
//! a request accepted by the router ends as one provider request and a conversation record that
//! tells the story; redeliveries never send twice; each failure class ends where it should.
use aws_sdk_sqs::types::QueueAttributeName;
use aws_smithy_runtime_api::client::http::{
    http_client_fn, HttpClient, HttpConnector, HttpConnectorFuture, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_runtime_api::client::result::ConnectorError;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use multicomms_runtime::processor::pipeline::{Processor, ProcessorConfig};
use multicomms_runtime::router::app;
use multicomms_runtime::worker::pod::PodConfig;
use multicomms_runtime::worker::queue::{self, Settings};
use multicomms_testkit::environment::{
    apply, emulator_config, example_manifests, example_request, router_for, API_KEY,
};
use multicomms_testkit::fakes::{Fakes, Fault, Service};
use multicomms_wire::conversation::{ConversationKey, ConversationRecord, ConversationStatus};
use multicomms_wire::{ChannelKind, Naming};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use tower::ServiceExt;

struct Env {
    config: aws_config::SdkConfig,
    naming: Naming,
    sqs: aws_sdk_sqs::Client,
    fakes: Fakes,
    router: axum::Router,
}

async fn env() -> Env {
    let config = emulator_config().await;
    let naming = apply(&config, &example_manifests()).await;
    let fakes = Fakes::start("127.0.0.1:0").await.expect("fake providers");
    let sqs = aws_sdk_sqs::Client::new(&config);
    let router = app::app(Arc::new(router_for(&config, &naming).await));
    Env { config, naming, sqs, fakes, router }
}

impl Env {
    /// A processor as the binary builds it, on the fakes; a claim younger than `http_timeout`
    /// counts as one still in use.
    fn processor(&self, channel: ChannelKind, http_timeout: Duration) -> Arc<Processor> {
        Arc::new(Processor::build(&self.config, self.processor_config(channel, http_timeout)).expect("HTTP client"))
    }

    /// The binary's configuration on the fakes; a claim younger than `http_timeout` counts as
    /// one still in use.
    fn processor_config(&self, channel: ChannelKind, http_timeout: Duration) -> ProcessorConfig {
        let pod = PodConfig { http_timeout, send_grace: http_timeout, ..self.fakes.pod_config(channel, &self.naming) };
        ProcessorConfig { pod, version: "processor-test-1".into() }
    }

    async fn queue_url(&self, name: String) -> String {
        self.sqs.get_queue_url().queue_name(name).send().await.expect("queue").queue_url.expect("url")
    }

    /// What the processor binary reads from the queue, with `visibility` for its receives.
    async fn settings(&self, channel: ChannelKind, visibility: Duration) -> Settings {
        let queue = queue::discover(&self.sqs, &self.naming.channel_queue(channel)).await.expect("queue");
        Settings {
            queue_url: queue.url,
            concurrency: 4,
            visibility,
            heartbeat: Duration::from_secs(1),
            retry_base: Duration::from_secs(1),
            wait: Duration::from_secs(1),
            max_receive_count: queue.max_receive_count,
            dead_letter_queue_url: queue.dead_letter_queue_url,
            hand_off_queue_url: None,
            depth_interval: Duration::from_millis(500),
        }
    }

    /// Runs a processor for `channel` in the background until the returned sender fires.
    async fn start(&self, channel: ChannelKind, visibility: Duration, http_timeout: Duration) -> Running {
        let settings = self.settings(channel, visibility).await;
        self.run(self.processor(channel, http_timeout), settings)
    }

    /// Runs `processor` on the queue `settings` name, in the background.
    fn run(&self, processor: Arc<Processor>, settings: Settings) -> Running {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(queue::run(processor.clone(), self.sqs.clone(), settings, async {
            let _ = stopped.await;
        }));
        Running { stop, task, processor }
    }

    async fn post(&self, body: Value) -> StatusCode {
        let request = Request::post("/initiate-conversation")
            .header("x-api-key", API_KEY)
            .body(Body::from(body.to_string()))
            .expect("request");
        self.router.clone().oneshot(request).await.expect("response").status()
    }

    /// Puts a raw body on the channel's queue (as a redelivery or a foreign writer would).
    async fn enqueue(&self, channel: ChannelKind, body: &str) {
        let url = self.queue_url(self.naming.channel_queue(channel)).await;
        self.sqs.send_message().queue_url(url).message_body(body).send().await.expect("SendMessage");
    }

    /// The router's context object for `request`, taken off the queue (so tests can replay it).
    async fn context_for(&self, request: Value, channel: ChannelKind) -> Value {
        assert_eq!(self.post(request).await, StatusCode::OK);
        let url = self.queue_url(self.naming.channel_queue(channel)).await;
        for _ in 0..10 {
            let out = self.sqs.receive_message().queue_url(&url).wait_time_seconds(1).send().await.expect("receive");
            if let Some(message) = out.messages.unwrap_or_default().into_iter().next() {
                let receipt = message.receipt_handle.expect("receipt");
                self.sqs.delete_message().queue_url(&url).receipt_handle(receipt).send().await.expect("delete");
                return serde_json::from_str(&message.body.expect("body")).expect("JSON");
            }
        }
        panic!("the router's message never arrived");
    }

    async fn record(&self, key: &ConversationKey) -> Option<ConversationRecord> {
        let out = aws_sdk_dynamodb::Client::new(&self.config)
            .get_item()
            .table_name(self.naming.conversations_table())
            .set_key(Some(key.to_item()))
            .consistent_read(true)
            .send()
            .await
            .expect("GetItem");
        out.item.map(|item| ConversationRecord::from_item(item).expect("the wire type reads what the processor wrote"))
    }

    /// Polls until the record reaches one of `statuses` (30 s at most).
    async fn settled(&self, key: &ConversationKey, statuses: &[ConversationStatus]) -> ConversationRecord {
        let mut last = None;
        for _ in 0..150 {
            if let Some(record) = self.record(key).await {
                if statuses.contains(&record.conversation_status) {
                    return record;
                }
                last = Some(record);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!("the record never reached {statuses:?}: {last:#?}");
    }

    /// Puts the WhatsApp context of request `id` on the queue twice, runs a processor (first
    /// retry after `retry_base`) until the conversation is sent and the queue is empty, and
    /// returns it stopped.
    async fn deliver_twice(&self, id: u32, retry_base: Duration, second: SecondCopy) -> Arc<Processor> {
        let context = self.context_for(request(id, "whatsapp"), ChannelKind::Whatsapp).await;
        let body = context.to_string();
        self.enqueue(ChannelKind::Whatsapp, &body).await;
        if second == SecondCopy::Together {
            self.enqueue(ChannelKind::Whatsapp, &body).await;
        }
        let settings = Settings { retry_base, ..self.settings(ChannelKind::Whatsapp, LONG).await };
        let running = self.run(self.processor(ChannelKind::Whatsapp, LONG), settings);
        if second == SecondCopy::WhileTheFirstIsWorkedOn {
            self.settled(&key_of(&context), &[ConversationStatus::Processing]).await;
            self.enqueue(ChannelKind::Whatsapp, &body).await;
        }
        self.settled(&key_of(&context), &[ConversationStatus::InitialMessageSent]).await;
        // A second copy may still be backing off (up to 10 s, then 20 s, with the retry base of
        // the waiting test): two minutes leave room for a loaded machine.
        for _ in 0..600 {
            if self.depth(self.naming.channel_queue(ChannelKind::Whatsapp)).await == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        running.stop().await
    }

    /// Messages visible or in flight on a queue.
    async fn depth(&self, queue_name: String) -> u64 {
        let url = self.queue_url(queue_name).await;
        let out = self
            .sqs
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .expect("attributes");
        let attributes = out.attributes.unwrap_or_default();
        [QueueAttributeName::ApproximateNumberOfMessages, QueueAttributeName::ApproximateNumberOfMessagesNotVisible]
            .iter()
            .filter_map(|name| attributes.get(name).and_then(|v| v.parse::<u64>().ok()))
            .sum()
    }
}

/// When [`Env::deliver_twice`] puts the second copy on the queue.
#[derive(PartialEq)]
enum SecondCopy {
    /// Beside the first.
    Together,
    /// Once the first has created the record and is being worked on. (Two copies created at
    /// the same moment can both succeed under moto, whose conditional writes are not atomic
    /// across its server threads; DynamoDB's are.)
    WhileTheFirstIsWorkedOn,
}

struct Running {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
    processor: Arc<Processor>,
}

impl Running {
    /// Graceful stop (what SIGTERM does): returns once the messages in flight are finished.
    async fn stop(self) -> Arc<Processor> {
        let _ = self.stop.send(());
        self.task.await.expect("the processor loop ends cleanly");
        self.processor
    }

    /// A crash: everything in flight is dropped where it stands.
    fn kill(self) {
        self.task.abort();
    }
}

fn request(id: u32, channel: &str) -> Value {
    let mut body = example_request();
    body["request_data"]["request_id"] = json!(format!("550e8400-e29b-41d4-a716-{:012x}", id));
    body["request_data"]["channel_method"] = json!(channel);
    body
}

fn key_of(context: &Value) -> ConversationKey {
    let channel = context["frontend_payload"]["request_data"]["channel_method"].as_str().unwrap_or_default();
    let field = if channel == "email" { "recipient_email" } else { "recipient_tel" };
    ConversationKey {
        primary_channel: context["frontend_payload"]["recipient_data"][field].as_str().unwrap_or_default().to_string(),
        conversation_id: context["conversation_data"]["conversation_id"].as_str().unwrap_or_default().to_string(),
    }
}

const LONG: Duration = Duration::from_secs(60);

#[tokio::test]
async fn each_channel_ends_as_one_provider_request_and_a_record_that_tells_the_story() {
    let env = env().await;
    let channels = [ChannelKind::Whatsapp, ChannelKind::Sms, ChannelKind::Email];
    let mut running = Vec::new();
    for channel in channels {
        running.push(env.start(channel, LONG, LONG).await);
    }
    let keys = [
        ("+447835065013", "ci-aaa-001#pi-aaa-001#550e8400-e29b-41d4-a716-000000000101#447588713814"),
        ("+447835065013", "ci-aaa-001#pi-aaa-001#550e8400-e29b-41d4-a716-000000000102#447588713814"),
        ("lee@example.com", "ci-aaa-001#pi-aaa-001#550e8400-e29b-41d4-a716-000000000103#recruitment@cucumber.example"),
    ];
    for (i, channel) in channels.iter().enumerate() {
        assert_eq!(env.post(request(0x101 + i as u32, channel.as_str())).await, StatusCode::OK);
    }
    let mut records = Vec::new();
    for (pk, id) in keys {
        let key = ConversationKey { primary_channel: pk.into(), conversation_id: id.into() };
        records.push(env.settled(&key, &[ConversationStatus::InitialMessageSent]).await);
    }
    for run in running {
        run.stop().await;
    }

    // What the providers received.
    let twilio = env.fakes.requests(Service::Twilio);
    assert_eq!(twilio.len(), 2, "{twilio:#?}");
    let whatsapp = twilio.iter().find(|r| r.field("ContentSid").is_some()).expect("the WhatsApp request");
    assert_eq!(whatsapp.field("To"), Some("whatsapp:+447835065013"));
    assert_eq!(whatsapp.field("From"), Some("whatsapp:+447588713814"));
    assert_eq!(whatsapp.field("ContentSid"), Some("HX0123456789abcdef0123456789abcdef"));
    let variables: Value = serde_json::from_str(whatsapp.field("ContentVariables").expect("variables")).expect("JSON");
    assert_eq!(variables.as_object().map(|v| v.len()), Some(4), "the Company's schema has four variables");
    assert_eq!(whatsapp.path, "/2010-04-01/Accounts/AC00000000000000000000000000000000/Messages.json");
    // Basic AC…:local-demo-twilio-token-not-a-secret
    assert_eq!(
        whatsapp.authorization,
        "Basic QUMwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDpsb2NhbC1kZW1vLXR3aWxpby10b2tlbi1ub3QtYS1zZWNyZXQ="
    );
    let sms = twilio.iter().find(|r| r.field("Body").is_some()).expect("the SMS request");
    assert_eq!((sms.field("To"), sms.field("From")), (Some("+447835065013"), Some("+447588713814")));
    assert_eq!(sms.field("Body"), Some("Hello from the fake model"));
    let sendgrid = env.fakes.requests(Service::SendGrid);
    assert_eq!(sendgrid.len(), 1);
    let mail = &sendgrid[0].json;
    assert_eq!(sendgrid[0].authorization, "Bearer SG.local-demo-not-a-secret");
    assert_eq!(mail["template_id"], "d-0123456789abcdef0123456789abcdef");
    assert_eq!(mail["from"], json!({"email": "recruitment@cucumber.example", "name": "Cucumber Recruitment"}));
    assert_eq!(mail["personalizations"][0]["to"][0], json!({"email": "lee@example.com", "name": "Lee Hayton"}));
    assert_eq!(mail["custom_args"]["conversation_id"], keys[2].1);
    let openai = env.fakes.requests(Service::OpenAi);
    assert_eq!(openai.len(), 3);
    let whatsapp_ai =
        openai.iter().find(|r| r.authorization == "Bearer sk-local-demo-whatsapp").expect("whatsapp AI call");
    assert_eq!(whatsapp_ai.json["model"], "gpt-4o-mini");
    assert_eq!(whatsapp_ai.json["text"]["format"]["strict"], true);
    assert!(whatsapp_ai.json["instructions"].as_str().is_some_and(|i| i.contains("WhatsApp template")));
    let input = whatsapp_ai.json["input"].as_str().expect("input");
    assert!(
        input.contains("- Company Name: Cucumber Recruitment") && input.contains("Healthcare Assistant"),
        "{input}"
    );
    assert!(openai.iter().any(|r| r.authorization == "Bearer sk-local-demo-email"));

    // The records.
    let whatsapp_record = &records[0];
    assert_eq!(whatsapp_record.messages.len(), 1);
    let message = &whatsapp_record.messages[0];
    assert!(message.message_id.starts_with("SM") && message.role == "assistant", "{message:?}");
    assert!(message.content.starts_with("[HX0123456789abcdef0123456789abcdef] "), "{message:?}");
    assert!(message.prompt_tokens > 0 && message.total_tokens == message.prompt_tokens + message.completion_tokens);
    assert!(whatsapp_record.response_id.as_deref().is_some_and(|r| r.starts_with("resp_")));
    assert!(whatsapp_record.initial_processing_time_ms.is_some());
    assert_eq!(whatsapp_record.task_complete, 0);
    assert_eq!(whatsapp_record.processor_version, "test-1");
    assert_eq!(whatsapp_record.router_version.as_deref(), Some("router-test-1"));
    assert_eq!(whatsapp_record.gsi_company_whatsapp_number.as_deref(), Some("+447588713814"));
    assert_eq!(whatsapp_record.gsi_company_sms_number, None, "sparse: only the record's own channel");
    assert_eq!(
        whatsapp_record.channel_config["whatsapp_credentials_id"].as_str().map(|s| s.contains("twilio")),
        Some(true)
    );
    assert!(whatsapp_record.failure_reason.is_none());
    assert_eq!(records[1].messages[0].content, "Hello from the fake model");
    assert_eq!(records[2].gsi_company_email.as_deref(), Some("recruitment@cucumber.example"));
    assert!(records[2].messages[0].content.contains("value 1") || records[2].messages[0].content.starts_with('{'));
    for channel in channels {
        assert_eq!(env.depth(env.naming.channel_queue(channel)).await, 0, "{channel}: message deleted");
    }
}

#[tokio::test]
async fn a_redelivered_message_is_sent_once() {
    let env = env().await;
    let processor = env.deliver_twice(0x201, Duration::from_secs(1), SecondCopy::Together).await;
    assert_eq!(env.fakes.sent().len(), 1, "one send for two deliveries");
    let metrics = processor.metrics.render();
    assert!(
        metrics.contains(r#"multicomms_processor_messages_total{channel="whatsapp",outcome="duplicate"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"multicomms_processor_messages_total{channel="whatsapp",outcome="sent"} 1"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_copy_delivered_while_the_first_is_being_worked_on_waits_for_it_instead_of_asking_the_ai_again() {
    let logs = CapturedLogs::global();
    let env = env().await;
    // The first copy is still waiting for the AI when the second arrives. The second waits
    // 10 s, then 20 s, before its last receive (the example queue's third), when it would take
    // the conversation over rather than leave it to the dead-letter queue: far longer than the
    // first needs.
    env.fakes.set_latency(Service::OpenAi, Duration::from_secs(2));
    let processor = env.deliver_twice(0x202, Duration::from_secs(10), SecondCopy::WhileTheFirstIsWorkedOn).await;
    let metrics = processor.metrics.render();
    let ours: Vec<String> = logs.lines().into_iter().filter(|l| l.contains("000000000202")).collect();
    assert_eq!(env.fakes.requests(Service::OpenAi).len(), 1, "one Responses call for two copies: {metrics}\n{ours:#?}");
    assert_eq!(env.fakes.sent().len(), 1, "one send for two copies");
    assert_eq!(env.depth(env.naming.channel_queue(ChannelKind::Whatsapp)).await, 0, "the second copy was settled");
}

#[tokio::test]
async fn a_burst_of_messages_for_one_company_reads_each_of_its_secrets_once() {
    let env = env().await;
    let (counted, calls) = multicomms_testkit::aws_calls::counting(&env.config);
    let config = env.processor_config(ChannelKind::Whatsapp, LONG);
    let processor = Processor::build(&counted, config).expect("HTTP client");
    let mut contexts = Vec::new();
    for id in 0..16 {
        contexts.push(env.context_for(request(0x300 + id, "whatsapp"), ChannelKind::Whatsapp).await.to_string());
    }
    let outcomes = futures::future::join_all(contexts.iter().map(|c| processor.process(c, false))).await;
    assert!(
        outcomes.iter().all(|o| o.label() == "sent"),
        "{:?}",
        outcomes.iter().map(|o| o.label()).collect::<Vec<_>>()
    );
    let reads =
        calls.snapshot().iter().filter(|(target, _)| target.ends_with("GetSecretValue")).map(|(_, n)| n).sum::<u64>();
    assert_eq!(reads, 2, "the AI key and the Twilio credentials, once each for 16 messages");
}

/// The conversation key of the example request `id` on WhatsApp.
fn whatsapp_key(id: u32) -> ConversationKey {
    ConversationKey {
        primary_channel: "+447835065013".into(),
        conversation_id: format!("ci-aaa-001#pi-aaa-001#550e8400-e29b-41d4-a716-{id:012x}#447588713814"),
    }
}

/// One request through the router with `faults` queued at `service`; returns the settled record.
async fn with_fault(
    env: &Env,
    id: u32,
    service: Service,
    faults: &[Fault],
    statuses: &[ConversationStatus],
) -> ConversationRecord {
    for fault in faults {
        env.fakes.fail_next(service, fault.clone());
    }
    assert_eq!(env.post(request(id, "whatsapp")).await, StatusCode::OK);
    env.settled(&whatsapp_key(id), statuses).await
}

#[tokio::test]
async fn transient_failures_are_retried_and_permanent_ones_recorded() {
    let env = env().await;
    // Contexts edited as a foreign writer might, taken off the queue before a processor runs.
    let mut no_consent = env.context_for(request(0x309, "whatsapp"), ChannelKind::Whatsapp).await;
    no_consent["frontend_payload"]["recipient_data"]["comms_consent"] = json!(false);
    let mut no_secret = env.context_for(request(0x30a, "whatsapp"), ChannelKind::Whatsapp).await;
    no_secret["company_data_payload"]["channel_config"]["whatsapp"]["whatsapp_credentials_id"] =
        json!("no/such/secret");
    let running = env.start(ChannelKind::Whatsapp, LONG, Duration::from_secs(2)).await;

    // AI throttled, then fine: retried after the backoff, sent once.
    let record =
        with_fault(&env, 0x301, Service::OpenAi, &[Fault::Status(429)], &[ConversationStatus::InitialMessageSent])
            .await;
    assert!(record.failure_reason.is_none(), "cleared on success: {record:?}");
    assert_eq!(env.fakes.requests(Service::OpenAi).len(), 2);
    assert_eq!(env.fakes.sent().len(), 1);

    // Twilio throttled (nothing sent), then fine.
    with_fault(&env, 0x302, Service::Twilio, &[Fault::Status(429)], &[ConversationStatus::InitialMessageSent]).await;
    assert_eq!(env.fakes.sent().len(), 2);

    // Output that breaks the schema, not JSON, a refusal: permanent, nothing sent.
    for (id, fault, reason) in [
        (0x303, Fault::OffSchema, "ai: the model's output breaks the schema"),
        (0x304, Fault::NotJson, "ai: the model's output is not JSON"),
        (0x305, Fault::Refusal, "ai: the model refused"),
    ] {
        let record = with_fault(&env, id, Service::OpenAi, &[fault], &[ConversationStatus::FailedToProcessAi]).await;
        assert!(record.failure_reason.as_deref().is_some_and(|r| r.starts_with(reason)), "{record:?}");
    }
    assert_eq!(env.fakes.sent().len(), 2);

    // Twilio refuses the number: permanent.
    let record =
        with_fault(&env, 0x306, Service::Twilio, &[Fault::Status(400)], &[ConversationStatus::FailedToSendMessage])
            .await;
    assert!(record.failure_reason.as_deref().is_some_and(|r| r.contains("21211")), "{record:?}");

    // Twilio 500 or no answer: the message may have gone out; never sent again, handed off.
    for (id, fault) in [(0x307, Fault::Status(500)), (0x308, Fault::Hang)] {
        let record = with_fault(&env, id, Service::Twilio, &[fault], &[ConversationStatus::SendOutcomeUnknown]).await;
        assert!(record.hand_off_to_human, "{record:?}");
    }
    let twilio_calls = env.fakes.requests(Service::Twilio).len();

    // No consent: never reaches the AI or the provider.
    let ai_calls = env.fakes.requests(Service::OpenAi).len();
    env.enqueue(ChannelKind::Whatsapp, &no_consent.to_string()).await;
    env.settled(&key_of(&no_consent), &[ConversationStatus::FailedNoConsent]).await;

    // A credentials secret that does not exist.
    env.enqueue(ChannelKind::Whatsapp, &no_secret.to_string()).await;
    let record = env.settled(&key_of(&no_secret), &[ConversationStatus::FailedSecretsFetch]).await;
    assert_eq!(record.failure_reason.as_deref(), Some("secrets: secret no/such/secret: ResourceNotFoundException"));
    assert_eq!(env.fakes.requests(Service::OpenAi).len(), ai_calls, "no AI call without consent or credentials");
    assert_eq!(env.fakes.requests(Service::Twilio).len(), twilio_calls);
    running.stop().await;
}

#[tokio::test]
async fn a_transient_failure_on_the_last_receive_ends_the_conversation_instead_of_leaving_it_in_limbo() {
    let env = env().await;
    // The example queue dead-letters after 3 receives: the AI fails on every one of them.
    let running = env.start(ChannelKind::Whatsapp, Duration::from_secs(2), Duration::from_secs(2)).await;
    let record = with_fault(
        &env,
        0x311,
        Service::OpenAi,
        &[Fault::Status(500), Fault::Status(500), Fault::Status(500)],
        &[ConversationStatus::FailedToProcessAi],
    )
    .await;
    running.stop().await;
    let reason = record.failure_reason.unwrap_or_default();
    assert!(reason.contains("last receive") && reason.contains("500"), "{reason}");
    assert_eq!(env.fakes.requests(Service::OpenAi).len(), 3);
    assert!(env.fakes.sent().is_empty());
    assert_eq!(env.depth(env.naming.channel_queue(ChannelKind::Whatsapp)).await, 0);
    assert_eq!(env.depth(env.naming.channel_dlq(ChannelKind::Whatsapp)).await, 0, "nothing dead-lettered");
}

#[tokio::test]
async fn a_message_whose_send_outcome_is_unknown_is_not_sent_again_on_redelivery() {
    let env = env().await;
    env.fakes.fail_next(Service::Twilio, Fault::Status(502));
    let context = env.context_for(request(0x401, "whatsapp"), ChannelKind::Whatsapp).await;
    env.enqueue(ChannelKind::Whatsapp, &context.to_string()).await;
    let running = env.start(ChannelKind::Whatsapp, LONG, LONG).await;
    env.settled(&key_of(&context), &[ConversationStatus::SendOutcomeUnknown]).await;
    env.enqueue(ChannelKind::Whatsapp, &context.to_string()).await;
    for _ in 0..50 {
        if env.depth(env.naming.channel_queue(ChannelKind::Whatsapp)).await == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    running.stop().await;
    assert_eq!(env.fakes.requests(Service::Twilio).len(), 1, "the redelivery did not call Twilio");
    assert_eq!(
        env.record(&key_of(&context)).await.map(|r| r.conversation_status),
        Some(ConversationStatus::SendOutcomeUnknown)
    );
}

#[tokio::test]
async fn the_heartbeat_keeps_a_slow_message_invisible_beyond_its_visibility_timeout() {
    let env = env().await;
    env.fakes.set_latency(Service::OpenAi, Duration::from_secs(5));
    let context = env.context_for(request(0x501, "whatsapp"), ChannelKind::Whatsapp).await;
    env.enqueue(ChannelKind::Whatsapp, &context.to_string()).await;
    // Received with a 2 s visibility timeout, renewed every second, worked on for 5 s+.
    let running = env.start(ChannelKind::Whatsapp, Duration::from_secs(2), LONG).await;
    let url = env.queue_url(env.naming.channel_queue(ChannelKind::Whatsapp)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut seen_by_others = 0;
    for _ in 0..5 {
        let out = env.sqs.receive_message().queue_url(&url).wait_time_seconds(1).send().await.expect("receive");
        seen_by_others += out.messages.unwrap_or_default().len();
    }
    env.settled(&key_of(&context), &[ConversationStatus::InitialMessageSent]).await;
    running.stop().await;
    assert_eq!(seen_by_others, 0, "the message stayed invisible while it was worked on");
    assert_eq!(env.fakes.sent().len(), 1);
}

#[tokio::test]
async fn an_unusable_message_ends_in_the_dead_letter_queue() {
    let env = env().await;
    let mut wrong_channel = env.context_for(request(0x601, "whatsapp"), ChannelKind::Whatsapp).await;
    wrong_channel["frontend_payload"]["request_data"]["channel_method"] = json!("WhatsApp");
    env.enqueue(ChannelKind::Whatsapp, "this is not a context object").await;
    env.enqueue(ChannelKind::Whatsapp, &wrong_channel.to_string()).await;
    let running = env.start(ChannelKind::Whatsapp, LONG, LONG).await;
    let dlq = env.naming.channel_dlq(ChannelKind::Whatsapp);
    let mut in_dlq = 0;
    for _ in 0..100 {
        in_dlq = env.depth(dlq.clone()).await;
        if in_dlq == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let processor = running.stop().await;
    assert_eq!(in_dlq, 2, "both unusable messages reached the DLQ after maxReceiveCount receives");
    assert!(env.record(&key_of(&wrong_channel)).await.is_none(), "no record for an unusable message");
    assert!(processor.metrics.render().contains(r#"outcome="poison"} "#));
    assert!(env.fakes.requests(Service::OpenAi).is_empty());
}

#[tokio::test]
async fn sigterm_finishes_the_messages_in_flight() {
    let env = env().await;
    env.fakes.set_latency(Service::OpenAi, Duration::from_secs(2));
    let running = env.start(ChannelKind::Whatsapp, LONG, LONG).await;
    assert_eq!(env.post(request(0x701, "whatsapp")).await, StatusCode::OK);
    // Stop once the message is being worked on (the AI call has arrived).
    for _ in 0..100 {
        if !env.fakes.requests(Service::OpenAi).is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let started = std::time::Instant::now();
    running.stop().await;
    let record = env.record(&whatsapp_key(0x701)).await.expect("record");
    assert_eq!(
        record.conversation_status,
        ConversationStatus::InitialMessageSent,
        "finished before stopping ({:?})",
        started.elapsed()
    );
    assert_eq!(env.fakes.sent().len(), 1);
}

#[tokio::test]
async fn killing_the_processor_mid_flight_loses_nothing_and_sends_nothing_twice() {
    let env = env().await;
    let visibility = Duration::from_secs(2);
    // Provider calls time out after 3 s, so a claim older than that is an interrupted send.
    let http_timeout = Duration::from_secs(3);
    // Killed during the AI call: nothing was sent; after the visibility timeout a new
    // processor picks the message up and sends it once.
    env.fakes.set_latency(Service::OpenAi, Duration::from_secs(3));
    let context = env.context_for(request(0x801, "whatsapp"), ChannelKind::Whatsapp).await;
    env.enqueue(ChannelKind::Whatsapp, &context.to_string()).await;
    let first = env.start(ChannelKind::Whatsapp, visibility, http_timeout).await;
    for _ in 0..100 {
        if !env.fakes.requests(Service::OpenAi).is_empty() || env.record(&key_of(&context)).await.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    first.kill();
    env.fakes.set_latency(Service::OpenAi, Duration::ZERO);
    let second = env.start(ChannelKind::Whatsapp, visibility, http_timeout).await;
    env.settled(&key_of(&context), &[ConversationStatus::InitialMessageSent]).await;
    second.stop().await;
    assert_eq!(env.fakes.sent().len(), 1, "sent once after the restart");

    // Killed while the provider had the request: it may have been delivered (here it was), so
    // the restarted processor hands the conversation to a person instead of sending again.
    env.fakes.set_latency(Service::Twilio, Duration::from_secs(2));
    let context = env.context_for(request(0x802, "whatsapp"), ChannelKind::Whatsapp).await;
    env.enqueue(ChannelKind::Whatsapp, &context.to_string()).await;
    let first = env.start(ChannelKind::Whatsapp, visibility, http_timeout).await;
    for _ in 0..100 {
        if env.fakes.requests(Service::Twilio).len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    first.kill();
    env.fakes.set_latency(Service::Twilio, Duration::ZERO);
    let second = env.start(ChannelKind::Whatsapp, visibility, http_timeout).await;
    let record = env.settled(&key_of(&context), &[ConversationStatus::SendOutcomeUnknown]).await;
    second.stop().await;
    assert!(record.hand_off_to_human);
    assert_eq!(env.fakes.requests(Service::Twilio).len(), 2, "the interrupted send was not repeated");
    assert_eq!(env.fakes.sent().len(), 2);
    assert_eq!(env.depth(env.naming.channel_queue(ChannelKind::Whatsapp)).await, 0, "nothing left behind");
}

#[tokio::test]
async fn the_channels_shared_ai_key_never_reaches_an_endpoint_a_company_chose() {
    let env = env().await;
    // Another server, standing for a host a Company's YAML named; it records what it gets.
    let chosen = Fakes::start("127.0.0.1:0").await.expect("the chosen endpoint");
    // The record as a hand-written or tampered item would carry it: the operator refuses this
    // Company (a custom baseUrl needs the company's own apiKey), so only the processor guards.
    let mut context = env.context_for(request(0x901, "whatsapp"), ChannelKind::Whatsapp).await;
    let ai = &mut context["company_data_payload"]["ai_config"]["openai_config"]["whatsapp"];
    assert_eq!(ai["api_key_reference"], json!(env.naming.shared_ai_key_secret(ChannelKind::Whatsapp)));
    ai["base_url"] = json!(chosen.openai_url());
    env.enqueue(ChannelKind::Whatsapp, &context.to_string()).await;
    let running = env.start(ChannelKind::Whatsapp, LONG, LONG).await;
    let record = env.settled(&key_of(&context), &[ConversationStatus::FailedToProcessAi]).await;
    running.stop().await;
    assert!(chosen.requests(Service::OpenAi).is_empty(), "the shared key went to the company's endpoint");
    assert!(env.fakes.requests(Service::OpenAi).is_empty());
    assert!(
        record.failure_reason.as_deref().is_some_and(|r| r.contains("without the company's own key")),
        "{record:?}"
    );
}

#[tokio::test]
async fn the_channels_shared_key_copied_under_a_companys_own_name_never_reaches_its_endpoint() {
    let env = env().await;
    let chosen = Fakes::start("127.0.0.1:0").await.expect("the chosen endpoint");
    // What an operator that did not bind Secrets to their readers copied (review r3, C1), or a
    // hand-written secret: the Channel's shared key's value under the company's own key name.
    let secrets = aws_sdk_secretsmanager::Client::new(&env.config);
    let shared = secrets.get_secret_value().secret_id(env.naming.shared_ai_key_secret(ChannelKind::Whatsapp));
    let shared = shared.send().await.expect("the shared key").secret_string.expect("a string");
    let own = env.naming.company_ai_key_secret(ChannelKind::Whatsapp, "Cucumber Recruitment", "Clarify CV");
    secrets.create_secret().name(&own).secret_string(shared).send().await.expect("the copy");
    let mut context = env.context_for(request(0x905, "whatsapp"), ChannelKind::Whatsapp).await;
    let ai = &mut context["company_data_payload"]["ai_config"]["openai_config"]["whatsapp"];
    ai["api_key_reference"] = json!(own);
    ai["base_url"] = json!(chosen.openai_url());
    env.enqueue(ChannelKind::Whatsapp, &context.to_string()).await;
    // Loopback allowed, as in development, so that only the key's value can stop it.
    let mut config = env.processor_config(ChannelKind::Whatsapp, LONG);
    config.pod.allow_loopback_ai_endpoints = true;
    let processor = Arc::new(Processor::build(&env.config, config).expect("processor"));
    let running = env.run(processor, env.settings(ChannelKind::Whatsapp, LONG).await);
    let record = env.settled(&key_of(&context), &[ConversationStatus::FailedToProcessAi]).await;
    running.stop().await;
    assert!(chosen.requests(Service::OpenAi).is_empty(), "the shared key went to the company's endpoint");
    let reason = record.failure_reason.unwrap_or_default();
    assert!(reason.contains("holds the channel's shared key"), "{reason}");
}

#[tokio::test]
async fn an_oversized_provider_answer_fails_its_message_instead_of_filling_memory() {
    let env = env().await;
    let running = env.start(ChannelKind::Whatsapp, LONG, Duration::from_secs(20)).await;
    // 1 GiB from the AI endpoint: reading stops at the cap, the message fails for good.
    let record =
        with_fault(&env, 0x902, Service::OpenAi, &[Fault::Oversized], &[ConversationStatus::FailedToProcessAi]).await;
    assert!(record.failure_reason.as_deref().is_some_and(|r| r.contains("larger than")), "{record:?}");
    assert!(env.fakes.sent().is_empty());
    // 1 GiB from Twilio after it accepted the message: it may be on its way, so it is handed
    // off, never sent again.
    let record =
        with_fault(&env, 0x903, Service::Twilio, &[Fault::Oversized], &[ConversationStatus::SendOutcomeUnknown]).await;
    assert!(record.hand_off_to_human && record.failure_reason.as_deref().is_some_and(|r| r.contains("larger than")));
    running.stop().await;
    assert_eq!(env.fakes.requests(Service::Twilio).len(), 1);
}

#[tokio::test]
async fn a_secret_scheduled_for_deletion_holds_messages_until_it_is_restored() {
    let env = env().await;
    let secrets = aws_sdk_secretsmanager::Client::new(&env.config);
    let credentials =
        env.naming.channel_credentials_secret(ChannelKind::Whatsapp, "Cucumber Recruitment", "Clarify CV");
    secrets.delete_secret().secret_id(&credentials).recovery_window_in_days(7).send().await.expect("schedule");
    let running = env.start(ChannelKind::Whatsapp, LONG, LONG).await;
    assert_eq!(env.post(request(0x904, "whatsapp")).await, StatusCode::OK);
    let key = whatsapp_key(0x904);
    let alarm = r#"multicomms_processor_secrets_scheduled_for_deletion_total "#;
    let mut held = None;
    for _ in 0..100 {
        held = env.record(&key).await.filter(|r| r.failure_reason.is_some());
        if held.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let held = held.expect("the record notes why the message waits");
    assert_eq!(held.conversation_status, ConversationStatus::Processing, "not failed: the message waits on the queue");
    assert!(held.failure_reason.as_deref().is_some_and(|r| r.contains("scheduled for deletion")), "{held:?}");
    assert!(running.processor.metrics.render().lines().any(|l| l.starts_with(alarm) && !l.ends_with(" 0")));

    secrets.restore_secret().secret_id(&credentials).send().await.expect("restore");
    env.settled(&key, &[ConversationStatus::InitialMessageSent]).await;
    running.stop().await;
    assert_eq!(env.fakes.sent().len(), 1);
}

/// Every log line of this test binary, as JSON text: one process-wide subscriber (a thread's
/// own default proved unreliable beside the other tests' threads), so a test picks its lines
/// out by its conversation id.
#[derive(Clone, Default)]
struct CapturedLogs(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for CapturedLogs {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("logs").extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl CapturedLogs {
    fn global() -> &'static CapturedLogs {
        static LOGS: std::sync::OnceLock<CapturedLogs> = std::sync::OnceLock::new();
        LOGS.get_or_init(|| {
            let logs = CapturedLogs::default();
            let writer = logs.clone();
            let subscriber = tracing_subscriber::fmt().json().with_writer(move || writer.clone()).finish();
            tracing::subscriber::set_global_default(subscriber).expect("the only global subscriber");
            logs
        })
    }

    fn lines(&self) -> Vec<String> {
        String::from_utf8_lossy(&self.0.lock().expect("logs")).lines().map(str::to_string).collect()
    }
}

#[tokio::test]
async fn a_send_still_claimed_on_the_last_receive_is_handed_off_not_dead_lettered() {
    let logs = CapturedLogs::global();
    let env = env().await;
    // The example queue dead-letters after 3 receives. Each redelivery comes 2 s after the
    // last, far inside the claim's grace (60 s), so every one finds a young claim.
    let visibility = Duration::from_secs(2);
    env.fakes.set_latency(Service::Twilio, Duration::from_secs(30));
    let context = env.context_for(request(0xa01, "whatsapp"), ChannelKind::Whatsapp).await;
    env.enqueue(ChannelKind::Whatsapp, &context.to_string()).await;
    // The first worker keeps the message with slack (1 s heartbeats on 5 s): a heartbeat late on
    // a busy machine must not hand it a second receive before it is killed.
    let first = env.start(ChannelKind::Whatsapp, Duration::from_secs(5), LONG).await;
    for _ in 0..200 {
        if !env.fakes.requests(Service::Twilio).is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    first.kill();
    env.fakes.set_latency(Service::Twilio, Duration::ZERO);
    let second = env.start(ChannelKind::Whatsapp, visibility, LONG).await;
    let record = env.settled(&key_of(&context), &[ConversationStatus::SendOutcomeUnknown]).await;
    second.stop().await;
    assert!(record.hand_off_to_human, "{record:?}");
    assert!(record.failure_reason.as_deref().is_some_and(|r| r.contains("last receive")), "{record:?}");
    assert_eq!(env.fakes.requests(Service::Twilio).len(), 1, "never sent again");
    assert_eq!(env.depth(env.naming.channel_queue(ChannelKind::Whatsapp)).await, 0);
    assert_eq!(env.depth(env.naming.channel_dlq(ChannelKind::Whatsapp)).await, 0, "nothing dead-lettered");

    // The redelivery that waited for the claim said which conversation it waited for.
    let conversation_id = key_of(&context).conversation_id;
    let waited = logs.lines().into_iter().filter(|l| l.contains("another attempt is sending this conversation"));
    let ours: Vec<String> = waited.filter(|l| l.contains(&conversation_id)).collect();
    assert!(!ours.is_empty(), "the young claim was waited for, and the log line names the conversation");
}

#[tokio::test]
async fn the_dead_letter_queue_depth_is_a_metric() {
    let env = env().await;
    env.enqueue(ChannelKind::Whatsapp, "this is not a context object").await;
    let running = env.start(ChannelKind::Whatsapp, LONG, LONG).await;
    let wanted = r#"multicomms_processor_queue_messages{queue="dead_letter",state="visible"} 1"#;
    let mut metrics = String::new();
    for _ in 0..100 {
        metrics = running.processor.metrics.render();
        if metrics.contains(wanted) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    running.stop().await;
    assert!(metrics.contains(wanted), "{metrics}");
}

/// An HTTP connector on which the heartbeat's ChangeMessageVisibility (the one renewing the full
/// visibility timeout) takes half a second to reach SQS, and, once sent, arrives even if its
/// sender gives up waiting for the answer: a renewal on the wire when the message is settled.
#[derive(Debug)]
struct SlowHeartbeatOnTheWire {
    inner: SharedHttpConnector,
    visibility_seconds: u64,
}

impl HttpConnector for SlowHeartbeatOnTheWire {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let body = request.body().bytes().map(String::from_utf8_lossy).unwrap_or_default();
        let inner = self.inner.clone();
        if !body.contains(&format!("\"VisibilityTimeout\":{}", self.visibility_seconds)) {
            return inner.call(request);
        }
        let (answer, answered) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let _ = answer.send(inner.call(request).await);
        });
        HttpConnectorFuture::new(async move {
            answered.await.unwrap_or_else(|_| Err(ConnectorError::other("the connection went away".into(), None)))
        })
    }
}

#[tokio::test]
async fn a_heartbeat_in_flight_never_overrides_the_retry_delay() {
    let env = env().await;
    // The AI answers after 1.2 s with a 500: a retry in about a second, while the heartbeat
    // (every second) is renewing the 60 s visibility.
    env.fakes.set_latency(Service::OpenAi, Duration::from_millis(1_200));
    env.fakes.fail_next(Service::OpenAi, Fault::Status(500));
    let http = aws_smithy_http_client::Builder::new().build_http();
    let slow = http_client_fn(move |settings, components| {
        let inner = http.http_connector(settings, components);
        SharedHttpConnector::new(SlowHeartbeatOnTheWire { inner, visibility_seconds: 60 })
    });
    let sqs = aws_sdk_sqs::Client::from_conf(aws_sdk_sqs::config::Builder::from(&env.config).http_client(slow).build());
    let processor = env.processor(ChannelKind::Whatsapp, LONG);
    let settings = env.settings(ChannelKind::Whatsapp, LONG).await;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(queue::run(processor, sqs, settings, async {
        let _ = stopped.await;
    }));
    assert_eq!(env.post(request(0xa02, "whatsapp")).await, StatusCode::OK);
    // Back after its ~1 s retry delay, not after the 60 s a late heartbeat would set.
    let mut sent = false;
    for _ in 0..75 {
        if env
            .record(&whatsapp_key(0xa02))
            .await
            .is_some_and(|r| r.conversation_status == ConversationStatus::InitialMessageSent)
        {
            sent = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let _ = stop.send(());
    task.await.expect("stopped");
    assert!(sent, "the retry was hidden for the whole visibility timeout by a late heartbeat");
    assert_eq!(env.fakes.requests(Service::OpenAi).len(), 2);
}

/// A processor as the binary builds it (3 AWS attempts per call), whose AWS calls go through a
/// fault proxy in front of the emulator.
async fn processor_behind_a_proxy(env: &Env) -> (Arc<Processor>, multicomms_testkit::fault_proxy::FaultProxy) {
    let emulator = env.config.endpoint_url().and_then(|u| u.trim_start_matches("http://").parse().ok());
    let proxy = multicomms_testkit::fault_proxy::FaultProxy::start(emulator.expect("the emulator's address"))
        .await
        .expect("proxy");
    // The pods' attempts (3), so the SDK's own retries end inside an outage.
    let retries = aws_config::retry::RetryConfig::standard().with_max_attempts(multicomms_service::aws::POD_ATTEMPTS);
    let through_proxy = multicomms_testkit::environment::with_endpoint(&env.config, &proxy.url);
    let through_proxy = through_proxy.to_builder().retry_config(retries).build();
    let config = env.processor_config(ChannelKind::Whatsapp, LONG);
    (Arc::new(Processor::build(&through_proxy, config).expect("HTTP client")), proxy)
}

/// Processes `context` while AWS refuses every connection for 8 s from the moment `service`
/// gets its first request; the outcome's label.
async fn process_through_an_outage(env: &Env, context: &Value, service: Service) -> &'static str {
    use multicomms_testkit::fault_proxy::Mode;
    let (processor, proxy) = processor_behind_a_proxy(env).await;
    let work = tokio::spawn({
        let body = context.to_string();
        async move { processor.process(&body, false).await }
    });
    while env.fakes.requests(service).is_empty() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    proxy.set(Mode::Refuse);
    proxy.cut();
    tokio::time::sleep(Duration::from_secs(8)).await;
    proxy.set(Mode::Pass);
    work.await.expect("the message's work").label()
}

#[tokio::test]
async fn a_send_whose_final_record_update_meets_an_aws_outage_is_recorded_once_aws_is_back() {
    let env = env().await;
    // Twilio takes the message, then answers after 1 s: AWS goes away in between.
    env.fakes.set_latency(Service::Twilio, Duration::from_secs(1));
    let context = env.context_for(request(0xa11, "whatsapp"), ChannelKind::Whatsapp).await;
    assert_eq!(process_through_an_outage(&env, &context, Service::Twilio).await, "sent");
    let record = env.record(&key_of(&context)).await.expect("record");
    assert_eq!(record.conversation_status, ConversationStatus::InitialMessageSent, "not left `sending`: {record:?}");
    assert_eq!(env.fakes.sent().len(), 1);
}

#[tokio::test]
async fn a_claim_that_meets_an_aws_outage_is_taken_once_aws_is_back_without_asking_the_ai_again() {
    let env = env().await;
    // The AI answers after 1 s, and the claim comes next: AWS goes away in between.
    env.fakes.set_latency(Service::OpenAi, Duration::from_secs(1));
    let context = env.context_for(request(0xa12, "whatsapp"), ChannelKind::Whatsapp).await;
    assert_eq!(process_through_an_outage(&env, &context, Service::OpenAi).await, "sent");
    assert_eq!(env.fakes.requests(Service::OpenAi).len(), 1, "one AI call: tokens are what this system buys");
    assert_eq!(env.fakes.sent().len(), 1);
}
