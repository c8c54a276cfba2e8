//! Benchmark of the replies flow, in one process against the AWS emulator and the fake providers
//! (OpenAI answers after 1 s): the router's webhook and the reply processor as their binaries
//! build them. For each number of concurrent conversations it opens that many conversations
//! (router + first-message processor), then measures
//! 1. the webhook: CPU per inbound message and AWS calls per message (one signed message per
//!    conversation, the reply processor not running);
//! 2. the reply turns that answer them: CPU and AWS calls per turn;
//! 3. reply latency: each conversation sends two messages 0.5 s apart, and the time from the
//!    last one to the reply reaching the fake Twilio is taken, with a 2 s batching window.
//!
//! AWS calls are counted by an HTTP connector that reads each request's `X-Amz-Target`.
//! CPU is this process's on-CPU time (its threads' schedstat) but the fake providers' thread: ours
//! and the driver's (which signs the webhook requests), not what the providers do.
//! The last column is one index query's time on the emulator, which scans the whole table for
//! it: with many conversations the emulator, not our code, sets the latency.
//! Run through `scripts/bench-replies.sh`. usage: bench_replies [conversations ...] (default 1 200)
use axum::body::Body;
use axum::http::{Request, StatusCode};
use futures::StreamExt;
use multicomms_runtime::processor::pipeline::{Processor, ProcessorConfig};
use multicomms_runtime::replies::turn::{ReplyConfig, ReplyProcessor};
use multicomms_runtime::replies::webhook::path;
use multicomms_runtime::router::app;
use multicomms_runtime::worker::pod::PodConfig;
use multicomms_runtime::worker::queue::{self, Settings};
use multicomms_testkit::bench::{busy_and_limit, cpu_seconds_without, EmulatorMeter};
use multicomms_testkit::environment::{
    apply, example_manifests, example_request, router_settings, API_KEY, PUBLIC_BASE_URL,
};
use multicomms_testkit::fakes::{Fakes, Service, FAKES_THREAD};
use multicomms_testkit::twilio::{Inbound, AUTH_TOKEN};
use multicomms_wire::ChannelKind;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tower::ServiceExt;

const COMPANY_NUMBER: &str = "+447588713814";

/// Calls made between two snapshots, per `per`, as "Service.Operation n" sorted.
fn per_unit(before: &BTreeMap<String, u64>, after: &BTreeMap<String, u64>, per: usize) -> (f64, String) {
    let mut total = 0;
    let mut parts = Vec::new();
    for (target, n) in after {
        let n = n - before.get(target).copied().unwrap_or(0);
        if n == 0 {
            continue;
        }
        total += n;
        let short = target
            .replace("DynamoDB_20120810.", "ddb.")
            .replace("AmazonSQS.", "sqs.")
            .replace("secretsmanager.", "sm.");
        parts.push(format!("{short} {:.2}", n as f64 / per as f64));
    }
    (total as f64 / per as f64, parts.join(", "))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len().max(1)) - 1;
    sorted.get(index).copied().unwrap_or_default()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    multicomms_service::logging::init(multicomms_service::logging::LogFormat::Text, "warn");
    let runs: Vec<usize> = std::env::args().skip(1).map(|a| a.parse()).collect::<Result<_, _>>()?;
    let runs = if runs.is_empty() { vec![1, 200] } else { runs };
    anyhow::ensure!(
        std::env::var("AWS_ENDPOINT_URL").is_ok_and(|e| e.starts_with("http://127.0.0.1:")),
        "AWS_ENDPOINT_URL must point at the local emulator: run scripts/bench-replies.sh"
    );
    println!("| conversations | first message: AWS calls/msg | webhook CPU ms/msg | AWS calls/msg (webhook) | reply CPU ms/turn | AWS calls/turn | latency p50 | p99 | max | emulator index query | emulator busy, whose limit (webhook) | (turns) |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    for conversations in runs {
        run(conversations).await?;
    }
    Ok(())
}

async fn run(n: usize) -> anyhow::Result<()> {
    let base = multicomms_service::aws::load_config(multicomms_service::aws::POD_ATTEMPTS).await;
    let (config, calls) = multicomms_testkit::aws_calls::counting_only(&base);
    let naming = apply(&config, &example_manifests()).await;
    let dynamodb = aws_sdk_dynamodb::Client::new(&config);
    dynamodb
        .update_item()
        .table_name(naming.company_data_table())
        .set_key(Some(multicomms_wire::company::record_key("ci-aaa-001", "pi-aaa-001")))
        .update_expression(
            "SET reply_batch_window_seconds = :w, rate_limits.requests_per_minute = :big, \
             rate_limits.requests_per_day = :big, rate_limits.concurrent_conversations = :big",
        )
        .expression_attribute_values(":w", aws_sdk_dynamodb::types::AttributeValue::N("2".into()))
        .expression_attribute_values(":big", aws_sdk_dynamodb::types::AttributeValue::N("1000000".into()))
        .send()
        .await?;
    let fakes = Fakes::start_on_own_thread()?;
    fakes.set_latency(Service::OpenAi, Duration::from_secs(1));
    // The emulator, not the router, is slow under load here: a long timeout keeps its queueing
    // in the latency figures instead of turning it into 504s.
    let settings = app::RouterSettings { request_timeout: Duration::from_secs(120), ..router_settings() };
    let router = app::app(Arc::new(app::AppState::build(&config, &naming, settings).await));
    let sqs = aws_sdk_sqs::Client::new(&config);

    // Conversations, each with its own recipient, opened the normal way.
    // One more conversation than measured: the warm-up's.
    let mut recipients: Vec<String> = (0..=n).map(|i| format!("+4477009{i:05}")).collect();
    for (i, recipient) in recipients.iter().enumerate() {
        let mut body = example_request();
        body["request_data"]["request_id"] = serde_json::json!(format!("550e8400-e29b-41d4-a716-{i:012x}"));
        body["recipient_data"]["recipient_tel"] = serde_json::json!(recipient);
        let request =
            Request::post("/initiate-conversation").header("x-api-key", API_KEY).body(Body::from(body.to_string()))?;
        anyhow::ensure!(router.clone().oneshot(request).await?.status() == StatusCode::OK, "request {i} refused");
    }
    let first = Arc::new(Processor::build(
        &config,
        ProcessorConfig {
            pod: PodConfig { send_grace: Duration::from_secs(90), ..fakes.pod_config(ChannelKind::Whatsapp, &naming) },
            version: "processor-bench".into(),
        },
    )?);
    let queue_url = sqs
        .get_queue_url()
        .queue_name(naming.channel_queue(ChannelKind::Whatsapp))
        .send()
        .await?
        .queue_url
        .unwrap_or_default();
    let mut contexts = Vec::new();
    while contexts.len() <= n {
        let out =
            sqs.receive_message().queue_url(&queue_url).max_number_of_messages(10).wait_time_seconds(1).send().await?;
        for message in out.messages.unwrap_or_default() {
            contexts.push(message.body.unwrap_or_default());
        }
    }
    let calls_before = calls.snapshot();
    futures::stream::iter(contexts)
        .for_each_concurrent(256, |context| {
            let first = first.clone();
            async move {
                first.process(&context, false).await;
            }
        })
        .await;
    let templates = fakes.sent().len();
    // The first message's pipeline (the queue's receives and batched deletes come on top).
    let (first_calls, first_detail) = per_unit(&calls_before, &calls.snapshot(), n + 1);

    // 1. The webhook: one message per conversation, no reply processor running.
    let send = |recipient: String, text: &'static str| {
        let router = router.clone();
        async move {
            let message = Inbound::text(ChannelKind::Whatsapp, &recipient, COMPANY_NUMBER, text);
            let (body, signature) =
                message.signed(AUTH_TOKEN, &format!("{PUBLIC_BASE_URL}{}", path(ChannelKind::Whatsapp)));
            // As Twilio sends it, with its length: the router's body budget holds what it declares.
            let request = Request::post(path(ChannelKind::Whatsapp))
                .header("content-type", "application/x-www-form-urlencoded")
                .header("content-length", body.len())
                .header("x-twilio-signature", signature)
                .body(Body::from(body))
                .expect("request");
            let started = Instant::now();
            let status = router.oneshot(request).await.map(|r| r.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            if status != StatusCode::OK {
                eprintln!("webhook answered {status} for {recipient} after {:?}", started.elapsed());
            }
        }
    };
    // Warm the caches (auth token, company) the way a running router has them; the warm-up
    // also times the emulator's index query on this table (it scans every item).
    let warm_up = recipients.remove(n);
    send(warm_up.clone(), "warm-up").await;
    let query_started = Instant::now();
    let store = multicomms_runtime::shared::conversations::ConversationStore::new(
        dynamodb.clone(),
        naming.conversations_table(),
    );
    store
        .by_numbers(ChannelKind::Whatsapp, COMPANY_NUMBER, &recipients[0])
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let query_ms = query_started.elapsed().as_secs_f64() * 1000.0;
    let (calls_before, cpu_before, emulator) =
        (calls.snapshot(), cpu_seconds_without(FAKES_THREAD), EmulatorMeter::start());
    futures::stream::iter(recipients.clone()).for_each_concurrent(16, |r| send(r, "hello")).await;
    let webhook_busy = emulator.busy();
    let (webhook_calls, webhook_detail) = per_unit(&calls_before, &calls.snapshot(), n);
    let webhook_cpu_ms = (cpu_seconds_without(FAKES_THREAD) - cpu_before) * 1000.0 / n as f64;

    // 2. The reply processor answers them.
    let replier = Arc::new(ReplyProcessor::build(
        &config,
        ReplyConfig {
            pod: PodConfig { send_grace: Duration::from_secs(90), ..fakes.pod_config(ChannelKind::Whatsapp, &naming) },
            company_cache: Duration::from_secs(30),
            lease: Duration::from_secs(60),
        },
    )?);
    let replies_queue =
        queue::discover(&sqs, &naming.replies_queue(ChannelKind::Whatsapp)).await.map_err(anyhow::Error::msg)?;
    let settings = Settings {
        queue_url: replies_queue.url,
        concurrency: 256,
        visibility: Duration::from_secs(300),
        heartbeat: Duration::from_secs(100),
        retry_base: Duration::from_secs(1),
        wait: Duration::from_secs(1),
        max_receive_count: replies_queue.max_receive_count,
        dead_letter_queue_url: replies_queue.dead_letter_queue_url,
        hand_off_queue_url: None,
        depth_interval: Duration::from_secs(3600),
    };
    let (calls_before, cpu_before, emulator) =
        (calls.snapshot(), cpu_seconds_without(FAKES_THREAD), EmulatorMeter::start());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(queue::run(replier, sqs.clone(), settings, async {
        let _ = stopped.await;
    }));
    let answered = |count: usize| {
        let fakes = fakes.clone();
        async move {
            for _ in 0..1200 {
                if fakes.sent_count() >= templates + count {
                    return true;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            false
        }
    };
    anyhow::ensure!(answered(n + 1).await, "the first replies did not all arrive");
    // The receive loop's idle long polls in these seconds are not the turns' calls.
    // n turns, and the warm-up conversation's.
    let (turn_calls, turn_detail) = per_unit(&calls_before, &calls.snapshot(), n + 1);
    let turn_cpu_ms = (cpu_seconds_without(FAKES_THREAD) - cpu_before) * 1000.0 / (n + 1) as f64;
    let turns_busy = emulator.busy();

    // 3. Latency: two messages 0.5 s apart per conversation; last message → reply at Twilio.
    let last_sent: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    futures::stream::iter(recipients.clone())
        .for_each_concurrent(n, |r| {
            let (send, last_sent) = (&send, last_sent.clone());
            async move {
                send(r.clone(), "one more thing").await;
                tokio::time::sleep(Duration::from_millis(500)).await;
                send(r.clone(), "and another").await;
                if let Ok(mut last) = last_sent.lock() {
                    last.insert(format!("whatsapp:{r}"), Instant::now());
                }
            }
        })
        .await;
    anyhow::ensure!(answered(2 * n + 1).await, "the second replies did not all arrive");
    let _ = stop.send(());
    let _ = running.await;
    let last_sent = last_sent.lock().map(|l| l.clone()).unwrap_or_default();
    let mut latencies: Vec<Duration> = fakes
        .sent()
        .iter()
        .filter(|r| r.field("ContentSid").is_none())
        .filter_map(|r| {
            let sent = last_sent.get(r.field("To")?)?;
            r.at.checked_duration_since(*sent)
        })
        .collect();
    latencies.sort();
    let ms = |d: Duration| format!("{:.0} ms", d.as_secs_f64() * 1000.0);
    println!(
        "| {n} | {first_calls:.2} ({first_detail}) | {webhook_cpu_ms:.2} | {webhook_calls:.2} ({webhook_detail}) | {turn_cpu_ms:.2} | {turn_calls:.2} ({turn_detail}) | {} | {} | {} | {query_ms:.0} ms | {} | {} |",
        ms(percentile(&latencies, 0.5)),
        ms(percentile(&latencies, 0.99)),
        ms(latencies.last().copied().unwrap_or_default()),
        busy_and_limit(webhook_busy),
        busy_and_limit(turns_busy),
    );
    Ok(())
}
