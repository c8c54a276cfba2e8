//! The recipient's word: STOP opts them out of the company's messages on the channel and ends
//! the conversation, START opts them back in, HELP gets the company's help text; none of them
//! costs an AI call, and the router refuses a first message for someone opted out.
use super::*;
use multicomms_wire::opt_out::{DEFAULT_HELP_REPLY, DEFAULT_OPT_IN_REPLY, DEFAULT_OPT_OUT_REPLY};

#[tokio::test]
async fn stop_opts_the_recipient_out_ends_the_conversation_and_costs_no_ai_call() {
    let env = env(1).await;
    let router = env.router().await;
    let key = env.open(&router, ChannelKind::Whatsapp, 0x51).await;
    let ai_calls = env.fakes.requests(Service::OpenAi).len();

    let (status, twiml) = env.answered(&router, &whatsapp(" stop ")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(twiml.contains(&format!("<Message>{DEFAULT_OPT_OUT_REPLY}</Message>")), "{twiml}");
    let record = env.record(&key).await;
    assert_eq!(record.conversation_status, ConversationStatus::RecipientOptedOut);
    assert_eq!(record.task_complete, 1, "the conversation is over");
    assert!(env.staged(&key).await.is_empty(), "nothing staged for the AI");
    assert_eq!(env.take(&env.naming.replies_queue(ChannelKind::Whatsapp), 1).await, None, "no reply turn");
    assert_eq!(env.fakes.requests(Service::OpenAi).len(), ai_calls, "no AI call");

    let (status, envelope) = env.initiate(&router, ChannelKind::Whatsapp, 0x52).await;
    assert_eq!(status, StatusCode::CONFLICT, "{envelope}");
    assert_eq!(envelope["error_code"], "RECIPIENT_OPTED_OUT");
    let (status, _) = env.initiate(&router, ChannelKind::Sms, 0x53).await;
    assert_eq!(status, StatusCode::OK, "an opt-out holds for its channel only");

    let (status, twiml) = env.answered(&router, &whatsapp("START")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(twiml.contains(DEFAULT_OPT_IN_REPLY), "{twiml}");
    assert_eq!(env.initiate(&router, ChannelKind::Whatsapp, 0x54).await.0, StatusCode::OK, "opted back in");
    assert_eq!(env.fakes.requests(Service::OpenAi).len(), ai_calls, "still no AI call");
}

#[tokio::test]
async fn help_gets_the_companys_text_and_yes_from_someone_not_opted_out_is_an_answer() {
    let env = env(1).await;
    env.set_company("SET keyword_replies = :v", json!({"help": "Cucumber Recruitment: call 0800 000 000"})).await;
    let router = env.router().await;
    let key = env.open(&router, ChannelKind::Whatsapp, 0x55).await;

    let (status, twiml) = env.answered(&router, &whatsapp("Help")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(twiml.contains("<Message>Cucumber Recruitment: call 0800 000 000</Message>"), "{twiml}");
    assert!(!twiml.contains(DEFAULT_HELP_REPLY));
    assert!(env.staged(&key).await.is_empty(), "HELP is not for the AI");

    env.send(&router, &whatsapp("yes")).await;
    let staged = env.staged(&key).await;
    assert_eq!(staged.iter().map(|f| f.body.as_str()).collect::<Vec<_>>(), ["yes"], "an answer, staged for the AI");
}

#[tokio::test]
async fn a_first_message_queued_before_the_stop_is_not_sent_and_its_record_says_why() {
    let env = env(1).await;
    let router = env.router().await;
    env.open(&router, ChannelKind::Whatsapp, 0x56).await;
    // A second request is queued, then the recipient answers the first message with STOP.
    assert_eq!(env.initiate(&router, ChannelKind::Whatsapp, 0x57).await.0, StatusCode::OK);
    let queued = env.take(&env.naming.channel_queue(ChannelKind::Whatsapp), 10).await.expect("the queued message");
    assert_eq!(env.answered(&router, &whatsapp("STOP")).await.0, StatusCode::OK);
    let sent_before = env.fakes.sent().len();

    let processor = env.first_message_processor(ChannelKind::Whatsapp);
    assert_eq!(processor.process(&queued, false).await, Outcome::Failed);
    assert_eq!(env.fakes.sent().len(), sent_before, "not sent");
    let key = key_of(&queued);
    let record = env.record(&key).await;
    assert_eq!(record.conversation_status, ConversationStatus::RecipientOptedOut);
    assert!(record.failure_reason.as_deref().is_some_and(|r| r.contains("opted out")), "{record:?}");
}

#[tokio::test]
async fn a_stop_acknowledged_while_a_first_message_is_with_the_ai_stops_that_message() {
    let env = env(1).await;
    let router = env.router().await;
    env.open(&router, ChannelKind::Whatsapp, 0x58).await;
    assert_eq!(env.initiate(&router, ChannelKind::Whatsapp, 0x59).await.0, StatusCode::OK);
    let queued = env.take(&env.naming.channel_queue(ChannelKind::Whatsapp), 10).await.expect("the queued message");
    let (ai_calls, sent_before) = (env.fakes.requests(Service::OpenAi).len(), env.fakes.sent().len());

    // The processor has passed its first opt-out check and waits for the AI when STOP comes
    // (to the conversation the recipient has: the new one's pointer is not written yet).
    env.fakes.hold(Service::OpenAi);
    let processor = env.first_message_processor(ChannelKind::Whatsapp);
    let processing = tokio::spawn(async move { processor.process(&queued, false).await });
    eventually("the AI is asked", Duration::from_secs(10), || async {
        env.fakes.requests(Service::OpenAi).len() > ai_calls
    })
    .await;
    assert_eq!(env.answered(&router, &whatsapp("STOP")).await.0, StatusCode::OK);
    env.fakes.release(Service::OpenAi);

    assert_eq!(processing.await.expect("processor"), Outcome::Failed);
    assert_eq!(env.fakes.sent().len(), sent_before, "nothing sent after the STOP was acknowledged");
}
