//! Each failure class ends where it should: retried, recorded, handed to a person, or
//! dead-lettered; and an AWS outage around the send neither loses nor repeats it.
use super::*;

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
    let redelivery_settled = || async { running.processor.metrics.render().contains(r#"outcome="duplicate"} 1"#) };
    eventually("the redelivery settled as a duplicate", Duration::from_secs(10), redelivery_settled).await;
    running.stop().await;
    assert_eq!(env.fakes.requests(Service::Twilio).len(), 1, "the redelivery did not call Twilio");
    assert_eq!(
        env.record(&key_of(&context)).await.map(|r| r.conversation_status),
        Some(ConversationStatus::SendOutcomeUnknown)
    );
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
    let both_dead_lettered = || async { env.depth(dlq.clone()).await == 2 };
    eventually(
        "both unusable messages in the DLQ after maxReceiveCount receives",
        Duration::from_secs(20),
        both_dead_lettered,
    )
    .await;
    let processor = running.stop().await;
    assert!(env.record(&key_of(&wrong_channel)).await.is_none(), "no record for an unusable message");
    assert!(processor.metrics.render().contains(r#"outcome="poison"} "#));
    assert!(env.fakes.requests(Service::OpenAi).is_empty());
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
    let sending = || async { !env.fakes.requests(Service::Twilio).is_empty() };
    eventually("the first worker mid-send", Duration::from_secs(10), sending).await;
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

/// Processes `context` while AWS refuses every connection, from the moment `service` gets its
/// first request until the SDK's retries have failed twice over; the outcome's label.
async fn process_through_an_outage(env: &Env, context: &Value, service: Service) -> &'static str {
    use multicomms_testkit::fault_proxy::Mode;
    let (processor, proxy) = processor_behind_a_proxy(env).await;
    let work = tokio::spawn({
        let body = context.to_string();
        async move { processor.process(&body, false).await }
    });
    let called = || async { !env.fakes.requests(service).is_empty() };
    eventually("the provider called", Duration::from_secs(30), called).await;
    proxy.set(Mode::Refuse);
    proxy.cut();
    // The outage lasts until the SDK's own attempts have failed twice over: the write around the
    // send has had to retry it by itself.
    let attempts = u64::from(multicomms_service::aws::POD_ATTEMPTS) * 2 + 1;
    let outlasted = || async { proxy.refused() >= attempts };
    eventually("the outage outlasting the SDK's retries", Duration::from_secs(60), outlasted).await;
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
