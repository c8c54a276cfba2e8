//! The SQS loop around the flow: the heartbeat, SIGTERM, a kill mid-flight, the queue depths.
use super::*;

#[tokio::test]
async fn the_heartbeat_keeps_a_slow_message_invisible_beyond_its_visibility_timeout() {
    let env = env().await;
    env.fakes.set_latency(Service::OpenAi, Duration::from_secs(7));
    let context = env.context_for(request(0x501, "whatsapp"), ChannelKind::Whatsapp).await;
    env.enqueue(ChannelKind::Whatsapp, &context.to_string()).await;
    // Received with a 4 s visibility timeout, renewed every 1.3 s (slack for a late heartbeat on
    // a busy machine), worked on for 7 s+.
    let running = env.start(ChannelKind::Whatsapp, Duration::from_secs(4), LONG).await;
    let url = env.queue_url(env.naming.channel_queue(ChannelKind::Whatsapp)).await;
    let working = || async { !env.fakes.requests(Service::OpenAi).is_empty() };
    eventually("the processor working on the message", Duration::from_secs(10), working).await;
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
async fn sigterm_finishes_the_messages_in_flight() {
    let env = env().await;
    env.fakes.set_latency(Service::OpenAi, Duration::from_secs(2));
    let running = env.start(ChannelKind::Whatsapp, LONG, LONG).await;
    assert_eq!(env.post(request(0x701, "whatsapp")).await, StatusCode::OK);
    // Stop once the message is being worked on (the AI call has arrived).
    let working = || async { !env.fakes.requests(Service::OpenAi).is_empty() };
    eventually("the processor working on the message", Duration::from_secs(10), working).await;
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
    let asking_the_ai = || async { !env.fakes.requests(Service::OpenAi).is_empty() };
    eventually("the first processor mid-AI", Duration::from_secs(10), asking_the_ai).await;
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
    let sending = || async { env.fakes.requests(Service::Twilio).len() == 2 };
    eventually("the first processor mid-send", Duration::from_secs(10), sending).await;
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
async fn the_dead_letter_queue_depth_is_a_metric() {
    let env = env().await;
    env.enqueue(ChannelKind::Whatsapp, "this is not a context object").await;
    let running = env.start(ChannelKind::Whatsapp, LONG, LONG).await;
    let wanted = r#"multicomms_processor_queue_messages{queue="dead_letter",state="visible"} 1"#;
    eventually_ok("the dead-letter queue's depth exported", Duration::from_secs(20), || async {
        let metrics = running.processor.metrics.render();
        if metrics.contains(wanted) {
            Ok(())
        } else {
            Err(metrics)
        }
    })
    .await;
    running.stop().await;
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
    let what = "the retry back after its delay, not hidden for the whole visibility timeout by a late heartbeat";
    env.settled_within(&whatsapp_key(0xa02), ConversationStatus::InitialMessageSent, what, Duration::from_secs(15))
        .await;
    let _ = stop.send(());
    task.await.expect("stopped");
    assert_eq!(env.fakes.requests(Service::OpenAi).len(), 2);
}
