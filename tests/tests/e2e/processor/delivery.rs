//! A message accepted by the router ends as one provider request and a record that tells the
//! story, once however often it is delivered.
use super::*;

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
