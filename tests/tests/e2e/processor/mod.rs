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
use multicomms_testkit::eventually::{eventually, eventually_ok};
use multicomms_testkit::fakes::{Fakes, Fault, Service};
use multicomms_wire::conversation::{ConversationKey, ConversationRecord, ConversationStatus};
use multicomms_wire::{ChannelKind, Naming};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use tower::ServiceExt;

mod delivery;
mod failures;
mod queue_loop;
mod secrets;

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
        let dynamodb = aws_sdk_dynamodb::Client::new(&self.config);
        multicomms_testkit::environment::conversation_record(&dynamodb, &self.naming, key).await
    }

    /// Waits until the record reaches one of `statuses` (30 s at most).
    async fn settled(&self, key: &ConversationKey, statuses: &[ConversationStatus]) -> ConversationRecord {
        let what = format!("the record reaching {statuses:?}");
        self.settled_in(key, statuses, &what, Duration::from_secs(30)).await
    }

    /// Waits until the record reaches `status`, failing with `what` after `timeout`.
    async fn settled_within(&self, key: &ConversationKey, status: ConversationStatus, what: &str, timeout: Duration) {
        self.settled_in(key, &[status], what, timeout).await;
    }

    async fn settled_in(
        &self,
        key: &ConversationKey,
        statuses: &[ConversationStatus],
        what: &str,
        timeout: Duration,
    ) -> ConversationRecord {
        // moto applies an update's attributes one after the other and a read may fall between
        // them: a status that comes with its reason is reached once the reason is there too.
        let whole = |record: &ConversationRecord| {
            let status = record.conversation_status.as_str();
            record.failure_reason.is_some() || !(status.starts_with("failed") || status == "send_outcome_unknown")
        };
        eventually_ok(what, timeout, || async {
            match self.record(key).await {
                Some(record) if statuses.contains(&record.conversation_status) && whole(&record) => Ok(record),
                other => Err(other),
            }
        })
        .await
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
        // the waiting test): two minutes leave room for a loaded machine. Waited on by outcome:
        // the emulator's queue counts can miss a message between its backoff and its receive.
        let settled = |outcome| {
            let labels = multicomms_runtime::worker::metrics::OutcomeLabels { channel: "whatsapp", outcome };
            running.processor.metrics.messages.get_or_create(&labels).get()
        };
        eventually("both copies settled, one sent and one a duplicate", Duration::from_secs(120), || async {
            settled("sent") + settled("duplicate") == 2
        })
        .await;
        let queue = self.naming.channel_queue(ChannelKind::Whatsapp);
        eventually("every copy taken off the queue", Duration::from_secs(30), || async {
            self.depth(queue.clone()).await == 0
        })
        .await;
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

/// The conversation key of the example request `id` on WhatsApp.
fn whatsapp_key(id: u32) -> ConversationKey {
    ConversationKey {
        primary_channel: "+447835065013".into(),
        conversation_id: format!("ci-aaa-001#pi-aaa-001#550e8400-e29b-41d4-a716-{id:012x}#447588713814"),
    }
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
