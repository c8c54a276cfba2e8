//! The replies flow end to end against the moto emulator and the fake providers: signed Twilio
//! webhooks into the router, staging and the delayed trigger, the reply processor's turn (lease,
//! AI continuation, free-form send under the claim, the record), hand-off to a person, and what a
//! crash at each point leaves behind.
use axum::body::Body;
use axum::http::{Request, StatusCode};
use multicomms_runtime::processor::pipeline::{Processor, ProcessorConfig};
use multicomms_runtime::replies::turn::{ReplyConfig, ReplyProcessor};
use multicomms_runtime::replies::webhook::{path, EMPTY_TWIML};
use multicomms_runtime::router::app::{self, AppState, RouterSettings};
use multicomms_runtime::worker::outcome::Outcome;
use multicomms_runtime::worker::pod::PodConfig;
use multicomms_runtime::worker::queue::{self, Settings};
use multicomms_testkit::environment::{
    apply, conversation_record, emulator_config, example_manifests, example_request, router_for, router_settings,
    API_KEY, PUBLIC_BASE_URL,
};
use multicomms_testkit::eventually::{eventually, eventually_ok};
use multicomms_testkit::fakes::{Fakes, Fault, Service};
use multicomms_testkit::twilio::{Inbound, AUTH_TOKEN};
use multicomms_wire::conversation::{ActivePointer, ConversationKey, ConversationRecord, ConversationStatus};
use multicomms_wire::replies::{Fragment, HandOffMessage};
use multicomms_wire::{ChannelKind, Naming};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use tower::ServiceExt;

mod client_events;
mod delivery;
mod erasure;
mod keywords;
mod lifecycle;
mod people;
/// The example company's numbers (config/companies) and the example recipient.
const COMPANY_NUMBER: &str = "+447588713814";
const RECIPIENT: &str = "+447835065013";
const COMPANY: (&str, &str) = ("ci-aaa-001", "pi-aaa-001");

struct Env {
    config: aws_config::SdkConfig,
    naming: Naming,
    dynamodb: aws_sdk_dynamodb::Client,
    sqs: aws_sdk_sqs::Client,
    fakes: Fakes,
}

/// The examples applied, the company's batching window set to `window_seconds`.
async fn env(window_seconds: u32) -> Env {
    env_of(window_seconds, example_manifests()).await
}

/// `manifests` applied, the company's batching window set to `window_seconds`.
async fn env_of(window_seconds: u32, manifests: multicomms_operator::cli::manifests::Manifests) -> Env {
    let config = emulator_config().await;
    let naming = apply(&config, &manifests).await;
    let fakes = Fakes::start("127.0.0.1:0").await.expect("fake providers");
    let env = Env {
        dynamodb: aws_sdk_dynamodb::Client::new(&config),
        sqs: aws_sdk_sqs::Client::new(&config),
        config,
        naming,
        fakes,
    };
    env.set_company("SET reply_batch_window_seconds = :v", json!(window_seconds)).await;
    env
}

impl Env {
    /// Changes the company record (as a commit of its YAML would); routers built afterwards see it.
    async fn set_company(&self, update: &str, value: Value) {
        let value: aws_sdk_dynamodb::types::AttributeValue = serde_dynamo::to_attribute_value(value).expect("value");
        self.dynamodb
            .update_item()
            .table_name(self.naming.company_data_table())
            .set_key(Some(multicomms_wire::company::record_key(COMPANY.0, COMPANY.1)))
            .update_expression(update)
            .expression_attribute_values(":v", value)
            .send()
            .await
            .expect("UpdateItem");
    }

    /// A router as the binary builds it (a fresh company cache).
    async fn router(&self) -> axum::Router {
        app::app(Arc::new(router_for(&self.config, &self.naming).await))
    }

    /// A conversation opened the normal way: the router accepts the request, the WhatsApp (or
    /// SMS) processor sends the first message. Returns its key.
    async fn open(&self, router: &axum::Router, channel: ChannelKind, request_id: u32) -> ConversationKey {
        assert_eq!(self.initiate(router, channel, request_id).await.0, StatusCode::OK);
        let context = self.take(&self.naming.channel_queue(channel), 10).await.expect("the router's message");
        assert_eq!(self.first_message_processor(channel).process(&context, false).await, Outcome::Sent);
        key_of(&context)
    }

    /// `POST /initiate-conversation` of the example request with id `request_id` on `channel`:
    /// the status and the envelope.
    async fn initiate(&self, router: &axum::Router, channel: ChannelKind, request_id: u32) -> (StatusCode, Value) {
        let mut body = example_request();
        body["request_data"]["request_id"] = json!(format!("550e8400-e29b-41d4-a716-{request_id:012x}"));
        body["request_data"]["channel_method"] = json!(channel.as_str());
        let request = Request::post("/initiate-conversation")
            .header("x-api-key", API_KEY)
            .body(Body::from(body.to_string()))
            .expect("request");
        let response = router.clone().oneshot(request).await.expect("response");
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), 1 << 16).await.expect("body");
        (status, serde_json::from_slice(&body).expect("a JSON envelope"))
    }

    /// The first-message processor of `channel` on the fakes.
    fn first_message_processor(&self, channel: ChannelKind) -> Processor {
        let config =
            ProcessorConfig { pod: self.fakes.pod_config(channel, &self.naming), version: "processor-test-1".into() };
        Processor::build(&self.config, config).expect("processor")
    }

    /// A reply processor on the fakes: `lease` long, a send claim younger than `grace` in use.
    fn replier(&self, channel: ChannelKind, lease: Duration, grace: Duration) -> Arc<ReplyProcessor> {
        let pod = PodConfig { send_grace: grace, ..self.fakes.pod_config(channel, &self.naming) };
        let config = ReplyConfig { pod, company_cache: Duration::ZERO, lease };
        Arc::new(ReplyProcessor::build(&self.config, config).expect("reply processor"))
    }

    /// Posts `message` to the webhook signed as Twilio would for `signed_url` (or unsigned).
    async fn post(&self, router: &axum::Router, message: &Inbound, signed_url: Option<&str>) -> StatusCode {
        let path = path(message.channel);
        let url = signed_url.map(str::to_string).unwrap_or_else(|| format!("{PUBLIC_BASE_URL}{path}"));
        let (body, signature) = message.signed(AUTH_TOKEN, &url);
        let mut request =
            Request::post(path).header("content-type", "application/x-www-form-urlencoded; charset=utf-8");
        if signed_url != Some("") {
            request = request.header("x-twilio-signature", signature);
        }
        let response = router.clone().oneshot(request.body(Body::from(body)).expect("request")).await.expect("answer");
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), 1 << 16).await.expect("body");
        assert_eq!(body, EMPTY_TWIML, "Twilio gets empty TwiML for all but a keyword");
        status
    }

    /// A correctly signed inbound message; the status and the TwiML it was answered with.
    async fn answered(&self, router: &axum::Router, message: &Inbound) -> (StatusCode, String) {
        let path = path(message.channel);
        let (body, signature) = message.signed(AUTH_TOKEN, &format!("{PUBLIC_BASE_URL}{path}"));
        let request = Request::post(path)
            .header("content-type", "application/x-www-form-urlencoded; charset=utf-8")
            .header("x-twilio-signature", signature)
            .body(Body::from(body))
            .expect("request");
        let response = router.clone().oneshot(request).await.expect("answer");
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), 1 << 16).await.expect("body");
        (status, String::from_utf8(body.to_vec()).expect("TwiML is text"))
    }

    /// A correctly signed inbound message.
    async fn send(&self, router: &axum::Router, message: &Inbound) {
        assert_eq!(self.post(router, message, None).await, StatusCode::OK);
    }

    /// Messages on a queue: visible, in flight or delayed.
    async fn queued(&self, queue: &str) -> u64 {
        use aws_sdk_sqs::types::QueueAttributeName::{
            ApproximateNumberOfMessages, ApproximateNumberOfMessagesDelayed, ApproximateNumberOfMessagesNotVisible,
        };
        let url = self.sqs.get_queue_url().queue_name(queue).send().await.expect("queue").queue_url.expect("url");
        let counts =
            [ApproximateNumberOfMessages, ApproximateNumberOfMessagesNotVisible, ApproximateNumberOfMessagesDelayed];
        let out =
            self.sqs.get_queue_attributes().queue_url(url).set_attribute_names(Some(counts.to_vec())).send().await;
        let attributes = out.expect("GetQueueAttributes").attributes.unwrap_or_default();
        counts.iter().map(|c| attributes.get(c).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)).sum()
    }

    /// Takes one message off a queue within `seconds` (deleting it).
    async fn take(&self, queue: &str, seconds: u32) -> Option<String> {
        multicomms_testkit::environment::take(&self.sqs, queue, seconds).await
    }

    /// Removes the conversation's trigger lock, as its expiry would.
    async fn expire_trigger_lock(&self, key: &ConversationKey) {
        let id = aws_sdk_dynamodb::types::AttributeValue::S(key.conversation_id.clone());
        let table = self.naming.replies_trigger_lock_table();
        self.dynamodb.delete_item().table_name(table).key("conversation_id", id).send().await.expect("DeleteItem");
    }

    /// The pointer of a recipient's numbers, as stored.
    async fn pointer(&self, key: &ConversationKey) -> Option<ActivePointer> {
        let table = self.naming.conversations_table();
        let out = self.dynamodb.get_item().table_name(table).set_key(Some(key.to_item())).send().await;
        out.expect("GetItem").item.map(|item| serde_dynamo::from_item(item).expect("a pointer"))
    }

    async fn handed_off(&self) -> Option<HandOffMessage> {
        let body = self.take(&self.naming.handoff_queue(), 5).await?;
        Some(serde_json::from_str(&body).expect("the hand-off message is the documented JSON"))
    }

    async fn staged(&self, key: &ConversationKey) -> Vec<Fragment> {
        let out = self
            .dynamodb
            .query()
            .table_name(self.naming.replies_stage_table())
            .key_condition_expression("conversation_id = :id")
            .expression_attribute_values(":id", aws_sdk_dynamodb::types::AttributeValue::S(key.conversation_id.clone()))
            .consistent_read(true)
            .send()
            .await
            .expect("Query");
        let rows: Vec<Fragment> =
            out.items.unwrap_or_default().into_iter().map(|i| serde_dynamo::from_item(i).expect("fragment")).collect();
        // Waiting for a turn: not the markers of messages handed to a person.
        rows.into_iter().filter(|f| !f.handed_off).collect()
    }

    async fn record(&self, key: &ConversationKey) -> ConversationRecord {
        conversation_record(&self.dynamodb, &self.naming, key).await.expect("record")
    }

    /// Free-form replies Twilio accepted (the first messages are templates).
    fn replies(&self) -> Vec<String> {
        let sent = self.fakes.sent().into_iter().filter(|r| r.field("ContentSid").is_none());
        sent.map(|r| r.field("Body").unwrap_or_default().to_string()).collect()
    }

    /// The reply turns' requests to OpenAI (those continuing a conversation).
    fn reply_requests(&self) -> Vec<Value> {
        let all = self.fakes.requests(Service::OpenAi).into_iter().map(|r| r.json);
        all.filter(|json| json.get("previous_response_id").is_some()).collect()
    }
}

/// The key of the conversation the router's context message `context` (the queue's body) opens
/// with the example recipient.
fn key_of(context: &str) -> ConversationKey {
    let context: Value = serde_json::from_str(context).expect("JSON");
    ConversationKey {
        primary_channel: RECIPIENT.into(),
        conversation_id: context["conversation_data"]["conversation_id"].as_str().expect("id").into(),
    }
}

fn trigger(key: &ConversationKey) -> String {
    json!({"conversation_id": key.conversation_id, "primary_channel": key.primary_channel}).to_string()
}

fn whatsapp(body: &str) -> Inbound {
    Inbound::text(ChannelKind::Whatsapp, RECIPIENT, COMPANY_NUMBER, body)
}

const LONG: Duration = Duration::from_secs(60);

/// A worker's SQS loop running in the background until [`Running::stop`].
struct Running {
    stop: tokio::sync::oneshot::Sender<()>,
    loop_: tokio::task::JoinHandle<()>,
}

impl Running {
    async fn stop(self) {
        let _ = self.stop.send(());
        self.loop_.await.expect("the loop ends");
    }
}

impl Env {
    /// `worker` on the queue `facts` describe: `concurrency` at once, hidden `visibility`, 1 s
    /// retries and receive waits.
    fn run_worker<W: multicomms_runtime::worker::queue::Worker + 'static>(
        &self,
        worker: Arc<W>,
        facts: queue::QueueFacts,
        concurrency: usize,
        visibility: Duration,
    ) -> Running {
        let settings = Settings {
            queue_url: facts.url,
            concurrency,
            visibility,
            heartbeat: visibility / 6,
            retry_base: Duration::from_secs(1),
            wait: Duration::from_secs(1),
            max_receive_count: facts.max_receive_count,
            dead_letter_queue_url: facts.dead_letter_queue_url,
            hand_off_queue_url: None,
            depth_interval: Duration::from_secs(5),
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let loop_ = tokio::spawn(queue::run(worker, self.sqs.clone(), settings, async {
            let _ = stopped.await;
        }));
        Running { stop, loop_ }
    }
}

#[tokio::test]
async fn three_messages_two_seconds_apart_get_one_reply_that_continues_the_conversation() {
    // The example company's window: 10 s.
    let env = env(10).await;
    let router = env.router().await;
    let key = env.open(&router, ChannelKind::Whatsapp, 1).await;
    let first_response = env.record(&key).await.response_id.expect("the first message's response id");

    let replier = env.replier(ChannelKind::Whatsapp, LONG, LONG);
    let queue = queue::discover(&env.sqs, &env.naming.replies_queue(ChannelKind::Whatsapp)).await.expect("queue");
    let running = env.run_worker(replier, queue, 4, LONG);

    let texts = ["Hi", "yes I drive", "but no car"];
    let messages: Vec<Inbound> = texts.iter().map(|t| whatsapp(t)).collect();
    for (i, message) in messages.iter().enumerate() {
        if i > 0 {
            // The recipient writes 2 s apart: time is what batching is about.
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        env.send(&router, message).await;
    }
    let last_sent = std::time::Instant::now();
    eventually_ok("the reply sent", Duration::from_secs(30), || async {
        let record = env.record(&key).await;
        if record.conversation_status == ConversationStatus::ReplySent {
            Ok(())
        } else {
            Err(record)
        }
    })
    .await;
    // Not a timing assertion (that is the benchmark's): the reply waited for the quiet window.
    assert!(last_sent.elapsed() >= Duration::from_secs(9), "answered before the recipient was quiet");
    // Any second trigger is on the queue (delayed, visible or in flight) until it is answered.
    let replies_queue = env.naming.replies_queue(ChannelKind::Whatsapp);
    let drained = || async { env.queued(&replies_queue).await == 0 };
    eventually("every trigger answered (none left on the replies queue)", Duration::from_secs(30), drained).await;
    running.stop().await;

    assert_eq!(env.replies(), ["A reply from the fake model"], "exactly one reply");
    let reply = &env.fakes.sent()[1];
    assert_eq!(reply.field("To"), Some("whatsapp:+447835065013"));
    assert_eq!(reply.field("From"), Some("whatsapp:+447588713814"));
    let asked = env.reply_requests();
    assert_eq!(asked.len(), 1);
    assert_eq!(asked[0]["previous_response_id"], first_response.as_str(), "the same AI conversation");
    assert_eq!(asked[0]["input"], "Hi\nyes I drive\nbut no car", "all three, in order");
    assert!(asked[0]["instructions"].as_str().is_some_and(|i| i.contains("Carol")), "the company's reply voice");

    let record = env.record(&key).await;
    assert_eq!(record.conversation_status, ConversationStatus::ReplySent);
    let story: Vec<(&str, &str)> = record.messages.iter().map(|m| (m.role.as_str(), m.content.as_str())).collect();
    assert_eq!(story.len(), 5, "{story:?}");
    assert_eq!(story[0].0, "assistant", "the template message first");
    assert_eq!(&story[1..4], &[("user", "Hi"), ("user", "yes I drive"), ("user", "but no car")]);
    assert_eq!(story[4], ("assistant", "A reply from the fake model"));
    let sids: Vec<&str> = record.messages[1..4].iter().map(|m| m.message_id.as_str()).collect();
    assert_eq!(sids, messages.iter().map(|m| m.sid.as_str()).collect::<Vec<_>>());
    assert_ne!(record.response_id.as_deref(), Some(first_response.as_str()), "the new response id is kept");
    assert!(record.reply_lease_id.is_none() && record.claim_id.is_none(), "lease and claim released");
    assert!(env.staged(&key).await.is_empty(), "the consumed fragments are gone");
}

#[tokio::test]
async fn only_a_correct_signature_stages_a_message_and_what_twilio_did_not_send_is_refused() {
    let env = env(2).await;
    let router = env.router().await;
    let key = env.open(&router, ChannelKind::Whatsapp, 2).await;
    let forged = whatsapp("forged");
    let url = format!("{PUBLIC_BASE_URL}{}", path(ChannelKind::Whatsapp));
    let (body, _) = forged.signed("someone-elses-token", &url);
    let (_, good_signature) = forged.signed(AUTH_TOKEN, &url);
    let request = Request::post(path(ChannelKind::Whatsapp))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-twilio-signature", forged.signed("someone-elses-token", &url).1)
        .body(Body::from(body.clone()))
        .expect("request");
    assert_eq!(router.clone().oneshot(request).await.expect("answer").status(), StatusCode::FORBIDDEN);
    let altered = body.replace("forged", "altered");
    let request = Request::post(path(ChannelKind::Whatsapp))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-twilio-signature", good_signature)
        .body(Body::from(altered))
        .expect("request");
    assert_eq!(router.clone().oneshot(request).await.expect("answer").status(), StatusCode::FORBIDDEN);
    assert_eq!(env.post(&router, &whatsapp("unsigned"), Some("")).await, StatusCode::FORBIDDEN);
    let wrong_url = "https://elsewhere.example/webhooks/twilio/whatsapp";
    assert_eq!(env.post(&router, &whatsapp("signed for another URL"), Some(wrong_url)).await, StatusCode::FORBIDDEN);
    // Not a Twilio form at all (no MessageSid, From or To): a bad request.
    let empty = Request::post(path(ChannelKind::Whatsapp)).body(Body::empty()).expect("request");
    assert_eq!(router.clone().oneshot(empty).await.expect("answer").status(), StatusCode::BAD_REQUEST);
    assert!(env.staged(&key).await.is_empty(), "a forged, altered, missing or misdirected signature stages nothing");
    assert_eq!(env.take(&env.naming.replies_queue(ChannelKind::Whatsapp), 3).await, None, "and triggers nothing");

    let with_port = format!("https://hooks.multicomms.test:443{}", path(ChannelKind::Whatsapp));
    env.send(&router, &whatsapp("signed for the URL")).await;
    assert_eq!(env.post(&router, &whatsapp("signed with :443"), Some(&with_port)).await, StatusCode::OK);
    let staged: Vec<String> = env.staged(&key).await.into_iter().map(|f| f.body).collect();
    assert_eq!(staged.len(), 2, "{staged:?}");
}

#[tokio::test]
async fn a_message_arriving_during_a_turn_is_answered_in_the_next_turn() {
    let env = env(1).await;
    let router = env.router().await;
    let key = env.open(&router, ChannelKind::Whatsapp, 3).await;
    let replier = env.replier(ChannelKind::Whatsapp, LONG, LONG);
    env.send(&router, &whatsapp("first")).await;
    let first_trigger = env.take(&env.naming.replies_queue(ChannelKind::Whatsapp), 10).await.expect("trigger");
    env.fakes.set_latency(Service::OpenAi, Duration::from_secs(2));
    let turn = tokio::spawn({
        let replier = replier.clone();
        async move { replier.process(&first_trigger, false).await }
    });
    let thinking = || async { !env.reply_requests().is_empty() };
    eventually("the AI asked for the first reply", Duration::from_secs(10), thinking).await;
    env.send(&router, &whatsapp("second, while the AI thinks")).await;
    assert_eq!(turn.await.expect("turn"), Outcome::Sent);
    env.fakes.set_latency(Service::OpenAi, Duration::ZERO);

    let second_trigger = env.take(&env.naming.replies_queue(ChannelKind::Whatsapp), 10).await;
    let second_trigger = second_trigger.expect("the message staged during the turn got its own trigger");
    assert_eq!(replier.process(&second_trigger, false).await, Outcome::Sent);
    let asked = env.reply_requests();
    assert_eq!(
        asked.iter().map(|a| a["input"].as_str().unwrap_or("")).collect::<Vec<_>>(),
        ["first", "second, while the AI thinks"]
    );
    let record = env.record(&key).await;
    let first_reply_response = asked[1]["previous_response_id"].as_str().expect("continues");
    assert_ne!(
        first_reply_response, asked[0]["previous_response_id"],
        "the second turn continues from the first reply"
    );
    assert_eq!(record.messages.len(), 5, "template, first, reply, second, reply");
    assert_eq!(env.replies().len(), 2);
}

#[tokio::test]
async fn twilio_retries_of_one_message_sid_never_get_a_second_reply() {
    let env = env(1).await;
    let router = env.router().await;
    let key = env.open(&router, ChannelKind::Whatsapp, 4).await;
    let replier = env.replier(ChannelKind::Whatsapp, LONG, LONG);
    let message = whatsapp("are you there?");
    env.send(&router, &message).await;
    env.send(&router, &message).await;
    assert_eq!(env.staged(&key).await.len(), 1, "a retry while staged changes nothing");
    let trigger = env.take(&env.naming.replies_queue(ChannelKind::Whatsapp), 10).await.expect("trigger");
    assert_eq!(env.take(&env.naming.replies_queue(ChannelKind::Whatsapp), 2).await, None, "one trigger per window");
    assert_eq!(replier.process(&trigger, false).await, Outcome::Sent);

    env.send(&router, &message).await;
    assert!(env.staged(&key).await.is_empty(), "a retry after the answer is not staged again");
    // Even a fragment staged again (a retry that read a stale index) is not answered twice.
    let mut again = env.record(&key).await.messages[1].clone();
    again.content = "are you there?".into();
    let fragment = Fragment {
        conversation_id: key.conversation_id.clone(),
        message_sid: message.sid.clone(),
        primary_channel: key.primary_channel.clone(),
        channel: Some(ChannelKind::Whatsapp),
        body: again.content,
        media: vec![],
        received_at: again.timestamp,
        received_at_ms: 1,
        expires_at: u64::MAX / 2,
        handed_off: false,
    };
    env.dynamodb
        .put_item()
        .table_name(env.naming.replies_stage_table())
        .set_item(Some(serde_dynamo::to_item(&fragment).expect("item")))
        .send()
        .await
        .expect("PutItem");
    assert_eq!(replier.process(&trigger, false).await, Outcome::Duplicate);
    assert_eq!(env.replies().len(), 1);
    assert!(env.staged(&key).await.is_empty(), "the answered fragment is removed");
}

#[tokio::test]
async fn the_active_newest_of_two_conversations_with_one_number_is_answered() {
    let env = env(1).await;
    let router = env.router().await;
    let older = env.open(&router, ChannelKind::Whatsapp, 5).await;
    let newer = env.open(&router, ChannelKind::Whatsapp, 6).await;
    env.send(&router, &whatsapp("to the newest")).await;
    assert_eq!(env.staged(&newer).await.len(), 1);
    assert!(env.staged(&older).await.is_empty());

    env.dynamodb
        .update_item()
        .table_name(env.naming.conversations_table())
        .set_key(Some(newer.to_item()))
        .update_expression("SET task_complete = :one")
        .expression_attribute_values(":one", aws_sdk_dynamodb::types::AttributeValue::N("1".into()))
        .send()
        .await
        .expect("UpdateItem");
    env.send(&router, &whatsapp("the newest is complete")).await;
    assert_eq!(env.staged(&older).await.len(), 1, "the newest conversation still open gets it");
}

#[tokio::test]
async fn a_turn_that_crashed_holding_the_lease_is_taken_over_after_it_expires() {
    let env = env(1).await;
    let router = env.router().await;
    let key = env.open(&router, ChannelKind::Whatsapp, 7).await;
    // Long enough that the retry right after the crash surely finds it unexpired.
    let lease = Duration::from_secs(4);
    let replier = env.replier(ChannelKind::Whatsapp, lease, LONG);
    env.send(&router, &whatsapp("hello?")).await;
    env.fakes.set_latency(Service::OpenAi, Duration::from_secs(3600));
    let crashed = tokio::spawn({
        let replier = replier.clone();
        let trigger = trigger(&key);
        async move { replier.process(&trigger, false).await }
    });
    let thinking = || async { !env.reply_requests().is_empty() };
    eventually("the turn asking the AI", Duration::from_secs(10), thinking).await;
    crashed.abort();
    env.fakes.set_latency(Service::OpenAi, Duration::ZERO);
    assert!(env.record(&key).await.reply_lease_id.is_some(), "the crash left its lease");
    // Held until it expires: the trigger comes back when the lease ends, not after a backoff.
    match replier.process(&trigger(&key), false).await {
        Outcome::Busy(left) => assert!(left <= lease && left > Duration::ZERO, "back in {left:?}"),
        other => panic!("a crashed turn's lease makes the trigger wait for it, got {other:?}"),
    }
    let taken_over = || async {
        match replier.process(&trigger(&key), false).await {
            Outcome::Sent => Ok(()),
            other => Err(other),
        }
    };
    eventually_ok("the trigger taken over once the crashed turn's lease expired", lease * 3, taken_over).await;
    assert_eq!(env.replies().len(), 1);
    assert_eq!(env.record(&key).await.conversation_status, ConversationStatus::ReplySent);
}

#[tokio::test]
async fn a_turn_that_crashed_mid_send_is_handed_off_and_never_sent_again() {
    let env = env(1).await;
    let router = env.router().await;
    let key = env.open(&router, ChannelKind::Whatsapp, 8).await;
    let lease = Duration::from_secs(2);
    let replier = env.replier(ChannelKind::Whatsapp, lease, Duration::from_secs(1));
    let message = whatsapp("can I come on Monday?");
    env.send(&router, &message).await;
    env.fakes.fail_next(Service::Twilio, Fault::Hang);
    let crashed = tokio::spawn({
        let replier = replier.clone();
        let trigger = trigger(&key);
        async move { replier.process(&trigger, false).await }
    });
    let sending = || async { !env.replies().is_empty() };
    eventually("the turn mid-send", Duration::from_secs(10), sending).await;
    crashed.abort();
    assert_eq!(env.record(&key).await.conversation_status, ConversationStatus::SendingReply);
    let handed_off = || async {
        match replier.process(&trigger(&key), false).await {
            Outcome::NeedsAttention => Ok(()),
            other => Err(other),
        }
    };
    eventually_ok("the crashed send handed off once its lease expired", lease * 3, handed_off).await;
    assert_eq!(env.replies().len(), 1, "never sent twice");
    let record = env.record(&key).await;
    assert_eq!(record.conversation_status, ConversationStatus::SendOutcomeUnknown);
    assert!(record.hand_off_to_human);
    let handed = env.handed_off().await.expect("the recipient's message reaches a person");
    assert_eq!(handed.messages[0].text, "can I come on Monday?");
    assert!(handed.reason.contains("may have been delivered"), "{}", handed.reason);
    assert!(env.staged(&key).await.is_empty());

    // From now on the conversation is a person's: the next message goes to them, whole.
    env.send(&router, &whatsapp("hello?")).await;
    let next = env.handed_off().await.expect("handed off");
    assert!(next.reason.contains("handed off to a person"), "{}", next.reason);
    assert!(env.staged(&key).await.is_empty());
}

#[tokio::test]
async fn each_hand_off_rule_puts_the_message_whole_on_the_hand_off_queue() {
    let env = env(1).await;
    let router = env.router().await;
    let key = env.open(&router, ChannelKind::Whatsapp, 9).await;
    let cases = [
        ("SET auto_queue_reply_message = :v", json!(true), "auto_queue_reply_message:"),
        ("SET auto_queue_reply_message = :v", json!(false), ""),
        ("SET auto_queue_reply_message_from_number = :v", json!([RECIPIENT]), "from_number"),
    ];
    for (update, value, reason) in cases {
        env.set_company(update, value).await;
        if reason.is_empty() {
            continue;
        }
        let router = env.router().await;
        let mut message = whatsapp("I'd rather talk to a person");
        message.media.push((
            "https://api.twilio.com/2010-04-01/Accounts/AC0/Messages/MM1/Media/ME1".into(),
            "image/jpeg".into(),
        ));
        env.send(&router, &message).await;
        let handed = env.handed_off().await.expect("handed off");
        env.send(&router, &message).await;
        assert_eq!(env.handed_off().await, None, "Twilio's retry of it is not handed off twice");
        assert!(handed.reason.contains(reason), "{}", handed.reason);
        assert_eq!(
            (handed.conversation_id.as_str(), handed.primary_channel.as_str()),
            (key.conversation_id.as_str(), RECIPIENT)
        );
        assert_eq!((handed.company_id.as_str(), handed.channel), (COMPANY.0, ChannelKind::Whatsapp));
        assert_eq!((handed.from.as_str(), handed.to.as_str()), (RECIPIENT, COMPANY_NUMBER));
        assert_eq!(handed.messages[0].message_sid, message.sid);
        assert_eq!(handed.messages[0].text, "I'd rather talk to a person");
        assert_eq!(handed.messages[0].media[0].content_type, "image/jpeg");
    }
    env.set_company("SET auto_queue_reply_message_from_number = :v", json!([])).await;
    env.dynamodb
        .update_item()
        .table_name(env.naming.conversations_table())
        .set_key(Some(key.to_item()))
        .update_expression("SET hand_off_to_human = :t, hand_off_to_human_reason = :r")
        .expression_attribute_values(":t", aws_sdk_dynamodb::types::AttributeValue::Bool(true))
        .expression_attribute_values(":r", aws_sdk_dynamodb::types::AttributeValue::S("escalated by Carol".into()))
        .send()
        .await
        .expect("UpdateItem");
    env.send(&env.router().await, &whatsapp("still there?")).await;
    let handed = env.handed_off().await.expect("a handed-off conversation stays with a person");
    assert!(handed.reason.contains("escalated by Carol"), "{}", handed.reason);
    assert!(env.staged(&key).await.is_empty(), "no AI turn for any of them");
    assert!(env.reply_requests().is_empty());
}

#[tokio::test]
async fn an_inactive_project_or_an_unknown_conversation_is_acknowledged_and_stages_nothing() {
    let env = env(1).await;
    let router = env.router().await;
    let key = env.open(&router, ChannelKind::Whatsapp, 10).await;
    // No conversation points a tenant's credentials at these numbers: nothing can verify it.
    let stranger = Inbound::text(ChannelKind::Whatsapp, "+447700900999", COMPANY_NUMBER, "who is this?");
    assert_eq!(env.post(&router, &stranger, None).await, StatusCode::FORBIDDEN);
    env.set_company("SET project_status = :v", json!("inactive")).await;
    env.send(&env.router().await, &whatsapp("hello")).await;
    assert!(env.staged(&key).await.is_empty());
    assert_eq!(env.handed_off().await, None);
    assert_eq!(env.take(&env.naming.replies_queue(ChannelKind::Whatsapp), 2).await, None);
}

#[tokio::test]
async fn sms_replies_are_answered_by_sms() {
    let env = env(1).await;
    let router = env.router().await;
    let key = env.open(&router, ChannelKind::Sms, 11).await;
    let replier = env.replier(ChannelKind::Sms, LONG, LONG);
    env.send(&router, &Inbound::text(ChannelKind::Sms, RECIPIENT, COMPANY_NUMBER, "yes please")).await;
    let trigger = env.take(&env.naming.replies_queue(ChannelKind::Sms), 10).await.expect("trigger on the SMS queue");
    assert_eq!(replier.process(&trigger, false).await, Outcome::Sent);
    let reply = env.fakes.sent().into_iter().last().expect("sent");
    assert_eq!((reply.field("To"), reply.field("From")), (Some(RECIPIENT), Some(COMPANY_NUMBER)), "plain numbers");
    assert_eq!(reply.field("Body"), Some("A reply from the fake model"));
    assert_eq!(env.record(&key).await.conversation_status, ConversationStatus::ReplySent);
}

#[tokio::test]
async fn a_media_only_message_is_kept_and_answered() {
    let env = env(1).await;
    let router = env.router().await;
    let key = env.open(&router, ChannelKind::Whatsapp, 12).await;
    let replier = env.replier(ChannelKind::Whatsapp, LONG, LONG);
    let mut photo = whatsapp("");
    photo
        .media
        .push(("https://api.twilio.com/2010-04-01/Accounts/AC0/Messages/MM2/Media/ME2".into(), "image/jpeg".into()));
    env.send(&router, &photo).await;
    let trigger = env.take(&env.naming.replies_queue(ChannelKind::Whatsapp), 10).await.expect("trigger");
    assert_eq!(replier.process(&trigger, false).await, Outcome::Sent);
    let input = env.reply_requests()[0]["input"].as_str().unwrap_or_default().to_string();
    assert!(input.contains("image/jpeg") && input.contains("ME2"), "{input}");
    let record = env.record(&key).await;
    assert_eq!(record.messages[1].media.len(), 1, "the attachment is in the conversation");
}

#[tokio::test]
async fn a_failed_trigger_send_releases_the_lock_and_asks_twilio_to_retry() {
    let env = env(1).await;
    let router = env.router().await;
    let key = env.open(&router, ChannelKind::Whatsapp, 13).await;
    let queue = env.naming.replies_queue(ChannelKind::Whatsapp);
    let url = env.sqs.get_queue_url().queue_name(&queue).send().await.expect("queue").queue_url.expect("url");
    let attributes = env
        .sqs
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::All)
        .send()
        .await
        .expect("attributes")
        .attributes;
    env.sqs.delete_queue().queue_url(&url).send().await.expect("DeleteQueue");

    let message = whatsapp("is the job still open?");
    assert_eq!(env.post(&router, &message, None).await, StatusCode::SERVICE_UNAVAILABLE, "transient: Twilio retries");
    assert_eq!(env.staged(&key).await.len(), 1, "the message is kept");
    let lock = env
        .dynamodb
        .get_item()
        .table_name(env.naming.replies_trigger_lock_table())
        .key("conversation_id", aws_sdk_dynamodb::types::AttributeValue::S(key.conversation_id.clone()))
        .consistent_read(true)
        .send()
        .await
        .expect("GetItem");
    assert!(lock.item.is_none(), "the failed send gave the trigger lock back");

    // The queue is back (the operator recreates it); Twilio's retry gets the trigger sent.
    let mut create = env.sqs.create_queue().queue_name(&queue);
    for (name, value) in attributes.unwrap_or_default() {
        if matches!(name, aws_sdk_sqs::types::QueueAttributeName::VisibilityTimeout) {
            create = create.attributes(name, value);
        }
    }
    create.send().await.expect("CreateQueue");
    env.send(&router, &message).await;
    assert!(env.take(&queue, 10).await.is_some(), "the retry's trigger");
    assert_eq!(env.staged(&key).await.len(), 1, "still once");
}

#[tokio::test]
async fn a_rotated_auth_token_is_read_afresh_when_a_signature_fails_with_the_cached_one() {
    let env = env(1).await;
    let router = env.router().await;
    let key = env.open(&router, ChannelKind::Whatsapp, 14).await;
    env.send(&router, &whatsapp("before the rotation")).await;
    let secret = env.record(&key).await.channel_config["whatsapp_credentials_id"].as_str().expect("name").to_string();
    let secrets = aws_sdk_secretsmanager::Client::new(&env.config);
    let current = secrets.get_secret_value().secret_id(&secret).send().await.expect("secret");
    let mut value: Value = serde_json::from_str(current.secret_string().expect("string")).expect("JSON");
    value["twilio_auth_token"] = json!("rotated-token");
    secrets.put_secret_value().secret_id(&secret).secret_string(value.to_string()).send().await.expect("rotate");

    let after = whatsapp("after the rotation");
    let url = format!("{PUBLIC_BASE_URL}{}", path(ChannelKind::Whatsapp));
    let (body, signature) = after.signed("rotated-token", &url);
    let request = Request::post(path(ChannelKind::Whatsapp))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-twilio-signature", signature)
        .body(Body::from(body))
        .expect("request");
    assert_eq!(router.clone().oneshot(request).await.expect("answer").status(), StatusCode::OK);
    let staged: Vec<String> = env.staged(&key).await.into_iter().map(|f| f.body).collect();
    assert!(staged.contains(&"after the rotation".to_string()), "{staged:?}");
}

#[tokio::test]
async fn a_reply_turn_failing_transiently_on_its_last_receive_hands_off_instead_of_dead_lettering() {
    let env = env(1).await;
    let router = env.router().await;
    let key = env.open(&router, ChannelKind::Whatsapp, 15).await;
    let replier = env.replier(ChannelKind::Whatsapp, LONG, LONG);
    env.send(&router, &whatsapp("any news?")).await;
    env.fakes.fail_next(Service::OpenAi, Fault::Status(429));
    env.fakes.fail_next(Service::OpenAi, Fault::Status(429));
    assert!(matches!(replier.process(&trigger(&key), false).await, Outcome::Retry(_)), "an earlier receive retries");
    assert_eq!(replier.process(&trigger(&key), true).await, Outcome::Failed, "the last receive hands off");
    let handed = env.handed_off().await.expect("the recipient's message reaches a person");
    assert_eq!(handed.messages[0].text, "any news?");
    assert!(handed.reason.contains("429"), "{}", handed.reason);
    let record = env.record(&key).await;
    assert_eq!(record.conversation_status, ConversationStatus::FailedToProcessReplyAi);
    assert!(record.hand_off_to_human && record.reply_lease_id.is_none());
    assert!(env.staged(&key).await.is_empty(), "nothing is left staged");
    assert!(env.replies().is_empty(), "and nothing was sent");
}

#[tokio::test]
async fn staged_messages_whose_trigger_was_dead_lettered_are_answered_by_the_sweep() {
    let env = env(1).await;
    let router = env.router().await;
    let key = env.open(&router, ChannelKind::Whatsapp, 16).await;
    let replier = env.replier(ChannelKind::Whatsapp, LONG, LONG);
    let queue = env.naming.replies_queue(ChannelKind::Whatsapp);
    env.send(&router, &whatsapp("still there?")).await;
    assert_eq!(replier.sweep(Duration::ZERO).await, 0, "a trigger is on its way: the sweep leaves it");
    // The trigger is lost (a processor killed on its last receive: SQS dead-letters it) and
    // its lock expires.
    assert!(env.take(&queue, 10).await.is_some(), "the webhook's trigger");
    env.expire_trigger_lock(&key).await;
    assert_eq!(replier.sweep(Duration::from_secs(3600)).await, 0, "not yet older than the sweep's age");
    assert_eq!(replier.sweep(Duration::ZERO).await, 1, "the stranded message gets a trigger");
    assert_eq!(replier.sweep(Duration::ZERO).await, 0, "one, not one per sweep");
    let swept = env.take(&queue, 10).await.expect("the sweep's trigger");
    assert_eq!(replier.process(&swept, false).await, Outcome::Sent);
    assert_eq!(env.replies(), ["A reply from the fake model"]);
    assert!(env.staged(&key).await.is_empty());
    let sms = env.replier(ChannelKind::Sms, LONG, LONG);
    env.send(&router, &whatsapp("and again")).await;
    assert!(env.take(&queue, 10).await.is_some(), "the webhook's trigger, lost again");
    env.expire_trigger_lock(&key).await;
    assert_eq!(sms.sweep(Duration::ZERO).await, 0, "another channel's processor leaves a WhatsApp message");
}

#[tokio::test]
async fn a_forged_request_learns_nothing_of_a_conversation_and_costs_one_key_lookup() {
    let env = env(1).await;
    let router = env.router().await;
    env.open(&router, ChannelKind::Whatsapp, 17).await;
    let (counted, calls) = multicomms_testkit::aws_calls::counting(&env.config);
    let router = app::app(Arc::new(router_for(&counted, &env.naming).await));
    let url = format!("{PUBLIC_BASE_URL}{}", path(ChannelKind::Whatsapp));
    let forged = |recipient: &str| {
        let message = Inbound::text(ChannelKind::Whatsapp, recipient, COMPANY_NUMBER, "forged");
        let (body, signature) = message.signed("not-the-tenants-token", &url);
        Request::post(path(ChannelKind::Whatsapp))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("x-twilio-signature", signature)
            .body(Body::from(body))
            .expect("request")
    };
    let before = calls.snapshot();
    for round in 0..10 {
        let known = router.clone().oneshot(forged(RECIPIENT)).await.expect("answer").status();
        let stranger = format!("+4477009{round:05}");
        let unknown = router.clone().oneshot(forged(&stranger)).await.expect("answer").status();
        assert_eq!((known, unknown), (StatusCode::FORBIDDEN, StatusCode::FORBIDDEN), "the same answer either way");
    }
    let after = calls.snapshot();
    let made = |target: &str| after.get(target).copied().unwrap_or(0) - before.get(target).copied().unwrap_or(0);
    // One batched read per request (sent one at a time here): the pointer, and the seen marker.
    assert_eq!(made("DynamoDB_20120810.BatchGetItem"), 20, "one key lookup per request: {after:?}");
    assert_eq!(made("DynamoDB_20120810.Query"), 0, "no index query before the signature verifies");
    assert!(
        made("secretsmanager.GetSecretValue") <= 2,
        "the token is cached (and read afresh at most once): {after:?}"
    );
    assert_eq!(after.values().sum::<u64>() - before.values().sum::<u64>(), 20 + made("secretsmanager.GetSecretValue"));
}

#[tokio::test]
async fn a_source_sending_forged_requests_is_refused_before_any_lookup_and_twilio_is_not() {
    let env = env(1).await;
    env.open(&env.router().await, ChannelKind::Whatsapp, 20).await;
    let (counted, calls) = multicomms_testkit::aws_calls::counting(&env.config);
    let settings = RouterSettings { unverified_per_minute: 5, ..router_settings() };
    let router = AppState::build(&counted, &env.naming, settings).await;
    // Served on a socket as in production, behind an "ingress" that appends X-Forwarded-For.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}{}", listener.local_addr().expect("address"), path(ChannelKind::Whatsapp));
    let limits =
        multicomms_service::http::ConnectionLimits { header_timeout: Duration::from_secs(30), max_connections: 64 };
    let server = tokio::spawn(app::serve(listener, Arc::new(router), limits, std::future::pending()));
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
    let signed_url = format!("{PUBLIC_BASE_URL}{}", path(ChannelKind::Whatsapp));
    let post = |token: &str, forwarded: Option<&str>, text: &str| {
        let (body, signature) =
            Inbound::text(ChannelKind::Whatsapp, RECIPIENT, COMPANY_NUMBER, text).signed(token, &signed_url);
        let mut request = Request::post(&url)
            .header("content-type", "application/x-www-form-urlencoded")
            .header("x-twilio-signature", signature);
        if let Some(forwarded) = forwarded {
            request = request.header("x-forwarded-for", forwarded);
        }
        let request = request.body(http_body_util::Full::new(bytes::Bytes::from(body))).expect("request");
        let client = client.clone();
        async move { client.request(request).await.expect("answered") }
    };
    // A stranger behind the ingress, putting Twilio's address first to pass for it.
    let stranger = Some("54.172.60.1, 203.0.113.7");
    let before = calls.snapshot();
    for _ in 0..5 {
        assert_eq!(post("forged", stranger, "forged").await.status(), StatusCode::FORBIDDEN);
    }
    for _ in 0..3 {
        let refused = post("forged", stranger, "forged").await;
        assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS, "past its limit");
        let retry_after = refused.headers().get("retry-after").and_then(|v| v.to_str().ok()).map(str::parse::<u64>);
        assert!(matches!(retry_after, Some(Ok(1..=60))), "{retry_after:?}");
    }
    let after = calls.snapshot();
    let made = |target: &str| after.get(target).copied().unwrap_or(0) - before.get(target).copied().unwrap_or(0);
    assert_eq!(made("DynamoDB_20120810.BatchGetItem"), 5, "no lookup once limited: {after:?}");
    // Twilio, through the same ingress, and a stranger with another address, are heard.
    assert_eq!(post(AUTH_TOKEN, Some("54.172.60.1"), "still interested").await.status(), StatusCode::OK);
    assert_eq!(post("forged", None, "forged").await.status(), StatusCode::FORBIDDEN, "the ingress's own address");
    let trigger = env.take(&env.naming.replies_queue(ChannelKind::Whatsapp), 10).await;
    assert!(trigger.is_some(), "Twilio's message is staged and triggered");
    server.abort();
}

#[tokio::test]
async fn answers_go_to_the_newest_conversation_however_the_pointer_writes_land() {
    let env = env(1).await;
    let store = multicomms_runtime::shared::conversations::ConversationStore::new(
        env.dynamodb.clone(),
        env.naming.conversations_table(),
    );
    let key = ActivePointer::key(ChannelKind::Whatsapp, COMPANY_NUMBER, RECIPIENT);
    let pointer = |conversation: &str, started_at: &str| ActivePointer {
        primary_channel: key.primary_channel.clone(),
        conversation_id: key.conversation_id.clone(),
        active_conversation_id: conversation.into(),
        credentials_id: "creds".into(),
        started_at: started_at.into(),
    };
    // Two conversations started one after the other; their processors' writes land newer first.
    let (older, newer) =
        (pointer("c#older", "2026-12-07T10:00:00.000Z"), pointer("c#newer", "2026-12-07T10:00:01.000Z"));
    store.point(&newer).await.expect("the newer conversation's pointer");
    store.point(&older).await.expect("a refused move is no error");
    assert_eq!(env.pointer(&key).await, Some(newer.clone()), "an older conversation never moves it back");
    let newest = pointer("c#newest", "2026-12-07T10:00:02.000Z");
    store.point(&newest).await.expect("moved");
    assert_eq!(env.pointer(&key).await, Some(newest.clone()));
    store.point(&newest).await.expect("a retry of the same write changes nothing");
    assert_eq!(env.pointer(&key).await, Some(newest));
}

#[tokio::test]
async fn a_burst_of_one_conversations_messages_stages_them_all_and_sends_one_trigger() {
    let env = env(1).await;
    let router = env.router().await;
    let key = env.open(&router, ChannelKind::Whatsapp, 20).await;
    // Five messages at once: their lock asks meet in one batch, where only one may win.
    let burst: Vec<Inbound> = (0..5).map(|i| whatsapp(&format!("part {i}"))).collect();
    futures::future::join_all(burst.iter().map(|m| env.send(&router, m))).await;
    assert_eq!(env.staged(&key).await.len(), 5);
    let queue = env.naming.replies_queue(ChannelKind::Whatsapp);
    assert!(env.take(&queue, 10).await.is_some(), "a trigger");
    assert_eq!(env.take(&queue, 2).await, None, "and only one");
}

#[tokio::test]
async fn conditional_puts_batched_together_are_each_taken_or_refused_on_their_own() {
    use aws_sdk_dynamodb::types::AttributeValue::S;
    use multicomms_runtime::shared::batched::{Batched, Conditional, ConditionalPut, ItemKey};
    let env = env(1).await;
    let batched = Batched::new(env.dynamodb.clone(), env.sqs.clone());
    let table = env.naming.replies_trigger_lock_table();
    let put = |id: &str, value: &str| ConditionalPut {
        key: ItemKey::new(&table, &[("conversation_id", id)]),
        item: [("conversation_id".to_string(), S(id.into())), ("v".to_string(), S(value.into()))].into(),
        condition: "attribute_not_exists(#id)".into(),
        names: [("#id".to_string(), "conversation_id".to_string())].into(),
        values: Default::default(),
    };
    let first = put("held", "first");
    assert_eq!(batched.put_if(first.clone()).await.expect("put"), Conditional::Written(first.item.clone()));
    // In one transaction: a refused put (its item comes back), and two asks for one free key.
    let (held, x, y) = tokio::join!(
        batched.put_if(put("held", "second")),
        batched.put_if(put("free", "x")),
        batched.put_if(put("free", "y"))
    );
    assert_eq!(held.expect("answered"), Conditional::Refused(first.item));
    let (x, y) = (x.expect("answered"), y.expect("answered"));
    assert_eq!(x, y, "both askers learn which item was written");
    let written = [put("free", "x").item, put("free", "y").item];
    assert!(matches!(&x, Conditional::Written(item) if written.contains(item)), "{x:?}");
}

#[tokio::test]
async fn conversations_started_at_once_leave_the_pointer_at_the_newest() {
    let env = env(1).await;
    let store = multicomms_runtime::shared::conversations::ConversationStore::new(
        env.dynamodb.clone(),
        env.naming.conversations_table(),
    );
    let key = ActivePointer::key(ChannelKind::Whatsapp, COMPANY_NUMBER, RECIPIENT);
    let pointer = |i: u32| ActivePointer {
        primary_channel: key.primary_channel.clone(),
        conversation_id: key.conversation_id.clone(),
        active_conversation_id: format!("c#{i:02}"),
        credentials_id: "creds".into(),
        started_at: format!("2026-12-08T10:{:02}:{:02}.000Z", i / 60, i % 60),
    };
    let point_all = |conversations: Vec<u32>| {
        let (store, pointer) = (&store, &pointer);
        futures::future::try_join_all(
            conversations.into_iter().map(move |i| async move { store.point(&pointer(i)).await }),
        )
    };
    // Twenty first-message processors start conversations with one recipient at once; the
    // newest's pointer write lands first and the nineteen older ones race in after it.
    store.point(&pointer(19)).await.expect("the newest conversation's pointer");
    point_all((0..19).collect()).await.expect("a refused move is no error");
    assert_eq!(env.pointer(&key).await, Some(pointer(19)), "older starts never move it back");
    // Then forty more, all at once, in no particular order.
    point_all((20..60).rev().collect()).await.expect("pointer writes");
    assert_eq!(env.pointer(&key).await, Some(pointer(59)), "the newest start holds it");
}

#[tokio::test]
async fn a_signed_message_replayed_into_a_newer_conversation_is_not_answered_again() {
    let env = env(1).await;
    let router = env.router().await;
    env.open(&router, ChannelKind::Whatsapp, 18).await;
    let replier = env.replier(ChannelKind::Whatsapp, LONG, LONG);
    let queue = env.naming.replies_queue(ChannelKind::Whatsapp);
    let message = whatsapp("is the job still open?");
    env.send(&router, &message).await;
    let trigger = env.take(&queue, 10).await.expect("trigger");
    assert_eq!(replier.process(&trigger, false).await, Outcome::Sent);
    // A newer conversation with the same recipient; an hour later, the captured request,
    // replayed as is (a repeat within minutes is Twilio retrying, and is answered once).
    let newer = env.open(&router, ChannelKind::Whatsapp, 19).await;
    let seen = multicomms_wire::replies::seen_key(ChannelKind::Whatsapp, COMPANY_NUMBER, RECIPIENT, &message.sid);
    let an_hour_ago = (multicomms_wire::timestamp::epoch_seconds() - 3600).to_string();
    env.dynamodb
        .update_item()
        .table_name(env.naming.replies_trigger_lock_table())
        .key("conversation_id", aws_sdk_dynamodb::types::AttributeValue::S(seen))
        .update_expression("SET seen_at = :then")
        .expression_attribute_values(":then", aws_sdk_dynamodb::types::AttributeValue::N(an_hour_ago))
        .send()
        .await
        .expect("UpdateItem");
    env.send(&router, &message).await;
    assert!(env.staged(&newer).await.is_empty(), "the replay is not staged into the newer conversation");
    assert_eq!(env.take(&queue, 2).await, None, "and triggers nothing");
    assert_eq!(env.replies().len(), 1, "answered once");
}

#[tokio::test]
async fn an_answer_finds_its_conversation_however_the_client_spaced_the_number() {
    let env = env(1).await;
    let router = env.router().await;
    let mut body = example_request();
    body["request_data"]["request_id"] = json!("550e8400-e29b-41d4-a716-0000000e1640");
    body["recipient_data"]["recipient_tel"] = json!("+44 7835 065013");
    let request = Request::post("/initiate-conversation")
        .header("x-api-key", API_KEY)
        .body(Body::from(body.to_string()))
        .expect("request");
    assert_eq!(router.clone().oneshot(request).await.expect("response").status(), StatusCode::OK);
    let context = env.take(&env.naming.channel_queue(ChannelKind::Whatsapp), 10).await.expect("the router's message");
    assert_eq!(env.first_message_processor(ChannelKind::Whatsapp).process(&context, false).await, Outcome::Sent);
    let key = key_of(&context);
    // Twilio writes the recipient's number in E.164.
    env.send(&router, &whatsapp("sounds good")).await;
    let staged = env.staged(&key).await;
    assert_eq!(staged.iter().map(|f| f.body.as_str()).collect::<Vec<_>>(), ["sounds good"]);
}

#[tokio::test]
async fn an_ai_message_longer_than_the_company_allows_is_never_sent_cut() {
    let env = env(1).await;
    let router = env.router().await;
    let key = env.open(&router, ChannelKind::Whatsapp, 0x61).await;
    // The fake model's reply ("A reply from the fake model") is 27 characters.
    env.set_company("SET rate_limits.max_message_length = :v", json!(10)).await;
    env.send(&router, &whatsapp("any news?")).await;
    let trigger = env.take(&env.naming.replies_queue(ChannelKind::Whatsapp), 10).await.expect("trigger");
    let replier = env.replier(ChannelKind::Whatsapp, LONG, LONG);
    assert_eq!(replier.process(&trigger, false).await, Outcome::Failed);
    assert!(env.replies().is_empty(), "nothing sent, cut or whole");
    let handed = env.handed_off().await.expect("the recipient's message reaches a person");
    assert_eq!(handed.messages[0].text, "any news?");
    assert!(handed.reason.contains("27 characters, more than the 10 allowed"), "{}", handed.reason);
    assert_eq!(env.record(&key).await.conversation_status, ConversationStatus::FailedToProcessReplyAi);

    // A first SMS the same: failed at the AI step, never sent (a router that reads the company
    // afresh: the first one cached it).
    let router = env.router().await;
    let sent_before = env.fakes.sent().len();
    assert_eq!(env.initiate(&router, ChannelKind::Sms, 0x62).await.0, StatusCode::OK);
    let context = env.take(&env.naming.channel_queue(ChannelKind::Sms), 10).await.expect("the router's message");
    assert_eq!(env.first_message_processor(ChannelKind::Sms).process(&context, false).await, Outcome::Failed);
    assert_eq!(env.fakes.sent().len(), sent_before, "no SMS sent");
    let sms = key_of(&context);
    let record = env.record(&sms).await;
    assert_eq!(record.conversation_status, ConversationStatus::FailedToProcessAi);
    assert!(record.failure_reason.as_deref().is_some_and(|r| r.contains("more than the 10 allowed")), "{record:?}");
}
