//! Secrets: the shared AI key never reaches a company's endpoint, and a secret scheduled for
//! deletion holds its messages until it is restored.
use super::*;

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
    let held = eventually_ok("the record noting why the message waits", Duration::from_secs(10), || async {
        env.record(&key).await.filter(|r| r.failure_reason.is_some()).ok_or("no failure noted yet")
    })
    .await;
    assert_eq!(held.conversation_status, ConversationStatus::Processing, "not failed: the message waits on the queue");
    assert!(held.failure_reason.as_deref().is_some_and(|r| r.contains("scheduled for deletion")), "{held:?}");
    assert!(running.processor.metrics.render().lines().any(|l| l.starts_with(alarm) && !l.ends_with(" 0")));

    secrets.restore_secret().secret_id(&credentials).send().await.expect("restore");
    env.settled(&key, &[ConversationStatus::InitialMessageSent]).await;
    running.stop().await;
    assert_eq!(env.fakes.sent().len(), 1);
}
