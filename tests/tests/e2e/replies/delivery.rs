//! Twilio's status callbacks: every send asks for them, the router records each on its message
//! (never backwards, a repeat changes nothing), a failed delivery keeps Twilio's error code and
//! hands the conversation to a person when the company asks, and a callback not signed by the
//! conversation's own account changes nothing. SendGrid's signed events do the same for email,
//! and its unsubscribes opt the address out.
use super::*;
use multicomms_testkit::fakes::{SignedEvents, StatusCallback};
use multicomms_wire::delivery::{
    twilio_status_callback, DeliveryStatus, SendgridEvent, SENDGRID_EVENTS_PATH, SENDGRID_SIGNATURE_HEADER,
    SENDGRID_TIMESTAMP_HEADER,
};

impl Env {
    /// Posts `callback` to the router as Twilio would (its URL's path and query, its signature).
    async fn callback(&self, router: &axum::Router, callback: &StatusCallback) -> StatusCode {
        let path = callback.url.strip_prefix(PUBLIC_BASE_URL).expect("a callback to the router's public URL");
        let request = Request::post(path)
            .header("content-type", "application/x-www-form-urlencoded")
            .header("x-twilio-signature", &callback.signature)
            .body(Body::from(callback.body()))
            .expect("request");
        router.clone().oneshot(request).await.expect("answer").status()
    }

    /// The status callbacks owed for the message Twilio accepted last.
    fn callbacks_of_last_send(&self) -> Vec<StatusCallback> {
        let sid = self.fakes.status_callbacks().last().and_then(|c| c.field("MessageSid").map(str::to_string));
        self.fakes.status_callbacks().into_iter().filter(|c| c.field("MessageSid") == sid.as_deref()).collect()
    }
}

#[tokio::test]
async fn delivery_statuses_land_on_their_message_never_backwards_whatever_order_they_come_in() {
    let env = env(1).await;
    let router = env.router().await;
    let key = env.open(&router, ChannelKind::Whatsapp, 0x61).await;
    let sent = env.fakes.sent();
    let asked = sent.last().and_then(|r| r.field("StatusCallback")).expect("the send asks for status callbacks");
    assert_eq!(asked, twilio_status_callback(PUBLIC_BASE_URL, &key.conversation_id));
    let before = env.record(&key).await;
    let [sent_status, delivered] =
        <[StatusCallback; 2]>::try_from(env.callbacks_of_last_send()).expect("two callbacks");
    assert_eq!(delivered.field("MessageStatus"), Some("delivered"));

    assert_eq!(env.callback(&router, &delivered).await, StatusCode::OK);
    let message = env.record(&key).await.messages[0].clone();
    assert_eq!(message.delivery_status, Some(DeliveryStatus::Delivered));
    assert!(message.delivery_updated_at.is_some());
    assert_eq!(env.callback(&router, &sent_status).await, StatusCode::OK, "a late `sent`");
    assert_eq!(env.callback(&router, &delivered).await, StatusCode::OK, "a repeat");
    let after = env.record(&key).await;
    assert_eq!(after.messages[0], message, "neither the late status nor the repeat changed anything");
    assert_eq!(
        (after.conversation_status, &after.updated_at),
        (before.conversation_status, &before.updated_at),
        "the conversation's status and claim time are not the callbacks' business"
    );
}

#[tokio::test]
async fn an_undelivered_message_keeps_twilios_error_code_counts_and_goes_to_a_person_when_the_company_asks() {
    let env = env(1).await;
    env.set_company("SET hand_off_on_delivery_failure = :v", json!(true)).await;
    let state = Arc::new(router_for(&env.config, &env.naming).await);
    let router = app::app(state.clone());
    env.fakes.fail_next(Service::Twilio, Fault::Undelivered(63016));
    let key = env.open(&router, ChannelKind::Whatsapp, 0x62).await;

    for callback in env.callbacks_of_last_send() {
        assert_eq!(env.callback(&router, &callback).await, StatusCode::OK);
    }
    let record = env.record(&key).await;
    assert_eq!(record.messages[0].delivery_status, Some(DeliveryStatus::Undelivered));
    assert_eq!(record.messages[0].delivery_error_code.as_deref(), Some("63016"));
    assert!(record.hand_off_to_human, "the company asked for a person on a failed delivery");
    assert!(record.hand_off_to_human_reason.as_deref().is_some_and(|r| r.contains("63016")), "{record:?}");
    let metrics = state.metrics.render();
    assert!(
        metrics.contains(r#"multicomms_router_delivery_statuses_total{channel="whatsapp",status="undelivered"} 1"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_callback_not_signed_by_the_conversations_own_account_changes_nothing() {
    let env = env(1).await;
    let router = env.router().await;
    let key = env.open(&router, ChannelKind::Whatsapp, 0x63).await;
    let delivered = env.callbacks_of_last_send().pop().expect("a callback");
    let resigned = |params: Vec<(String, String)>, token: &str| StatusCallback {
        signature: multicomms_runtime::replies::signature::sign(token, &delivered.url, &params),
        url: delivered.url.clone(),
        params,
    };
    let forged = resigned(delivered.params.clone(), "another-tenants-auth-token");
    assert_eq!(env.callback(&router, &forged).await, StatusCode::FORBIDDEN);
    let with = |name: &str, value: &str| {
        let params =
            delivered.params.iter().map(|(k, v)| (k.clone(), if k == name { value.into() } else { v.clone() }));
        resigned(params.collect(), AUTH_TOKEN)
    };
    let another_account = with("AccountSid", "AC11111111111111111111111111111111");
    assert_eq!(env.callback(&router, &another_account).await, StatusCode::FORBIDDEN);
    let another_number = with("From", "whatsapp:+447700900999");
    assert_eq!(env.callback(&router, &another_number).await, StatusCode::FORBIDDEN);
    let another_recipient = with("To", "whatsapp:+447700900111");
    assert_eq!(env.callback(&router, &another_recipient).await, StatusCode::FORBIDDEN);
    assert_eq!(env.record(&key).await.messages[0].delivery_status, None);
}

impl Env {
    /// Posts SendGrid's signed events to the company's Event Webhook URL.
    async fn sendgrid(&self, router: &axum::Router, events: &SignedEvents) -> StatusCode {
        let path = format!("{SENDGRID_EVENTS_PATH}/{}/{}", COMPANY.0, COMPANY.1);
        let request = Request::post(path)
            .header("content-type", "application/json")
            .header(SENDGRID_SIGNATURE_HEADER, &events.signature)
            .header(SENDGRID_TIMESTAMP_HEADER, &events.timestamp)
            .body(Body::from(events.body.clone()))
            .expect("request");
        router.clone().oneshot(request).await.expect("answer").status()
    }
}

const EMAIL: &str = "lee@example.com";

#[tokio::test]
async fn sendgrid_events_record_an_emails_fate_and_an_unsubscribe_opts_the_address_out() {
    let env = env(1).await;
    let key = json!(env.fakes.sendgrid_public_key());
    env.set_company("SET channel_config.email.event_webhook_public_key = :v", key).await;
    env.set_company("SET channel_config.email.unsubscribe_group_id = :v", json!(4242)).await;
    let router = env.router().await;
    let opened = env.open(&router, ChannelKind::Email, 0x91).await;
    let key = ConversationKey { primary_channel: EMAIL.into(), ..opened };
    let mail = env.fakes.sent().pop().expect("the mail");
    assert_eq!(mail.json["asm"]["group_id"], 4242, "SendGrid adds the company's unsubscribe link");
    let owed = env.fakes.sendgrid_events().pop().expect("the mail's events");

    let forged = SignedEvents { signature: env.fakes.sendgrid_events()[0].signature.clone(), ..owed.clone() };
    let forged = SignedEvents { timestamp: "1".into(), ..forged };
    assert_eq!(env.sendgrid(&router, &forged).await, StatusCode::FORBIDDEN, "not signed over this timestamp");
    assert_eq!(env.record(&key).await.messages[0].delivery_status, None);
    assert_eq!(env.sendgrid(&router, &owed).await, StatusCode::OK);
    assert_eq!(env.sendgrid(&router, &owed).await, StatusCode::OK, "SendGrid retries a batch");
    assert_eq!(env.record(&key).await.messages[0].delivery_status, Some(DeliveryStatus::Delivered));

    let events: Vec<SendgridEvent> = serde_json::from_str(&owed.body).expect("events");
    let unsubscribe =
        SendgridEvent { event: "group_unsubscribe".into(), asm_group_id: Some(4242), ..events[1].clone() };
    let another_company = SendgridEvent {
        event: "delivered".into(),
        conversation_id: Some("ci-zzz-999#pi#r#s".into()),
        ..events[1].clone()
    };
    let batch = env.fakes.sendgrid_signed(&[another_company, unsubscribe]);
    assert_eq!(env.sendgrid(&router, &batch).await, StatusCode::OK);
    assert_eq!(env.record(&key).await.conversation_status, ConversationStatus::RecipientOptedOut);
    let (status, envelope) = env.initiate(&router, ChannelKind::Email, 0x92).await;
    assert_eq!((status, &envelope["error_code"]), (StatusCode::CONFLICT, &json!("RECIPIENT_OPTED_OUT")));
    assert_eq!(env.initiate(&router, ChannelKind::Whatsapp, 0x93).await.0, StatusCode::OK, "email only");
}

#[tokio::test]
async fn a_callback_for_a_send_not_yet_recorded_gets_503_and_lands_when_twilio_tries_again() {
    let env = env(1).await;
    let router = env.router().await;
    assert_eq!(env.initiate(&router, ChannelKind::Whatsapp, 0x64).await.0, StatusCode::OK);
    let queued = env.take(&env.naming.channel_queue(ChannelKind::Whatsapp), 10).await.expect("the queued message");
    let key = key_of(&queued);
    // Twilio took the message and sends its callbacks before its answer reaches the processor.
    env.fakes.hold(Service::Twilio);
    let processor = env.first_message_processor(ChannelKind::Whatsapp);
    let sending = tokio::spawn(async move { processor.process(&queued, false).await });
    let owed = || async { env.fakes.status_callbacks().len() == 2 };
    eventually("Twilio's callbacks owed", Duration::from_secs(10), owed).await;
    let sent_callback = env.fakes.status_callbacks()[0].clone();
    assert_eq!(env.callback(&router, &sent_callback).await, StatusCode::SERVICE_UNAVAILABLE, "not recorded yet");

    env.fakes.release(Service::Twilio);
    assert_eq!(sending.await.expect("processor"), Outcome::Sent);
    assert_eq!(env.callback(&router, &sent_callback).await, StatusCode::OK, "Twilio's next try");
    assert_eq!(env.record(&key).await.messages[0].delivery_status, Some(DeliveryStatus::Sent));
}
