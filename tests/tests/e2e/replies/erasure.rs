//! `DELETE /recipients/{channel}/{address}`: a recipient forgotten by one company on one channel
//! (conversations, pointers, staged messages), the opt-out kept so that messaging stays closed,
//! and an erasure during a reply turn leaves nothing behind.
use super::*;

impl Env {
    /// Erases `address` on `channel` for the example company with `key`: status and envelope.
    async fn erase(&self, router: &axum::Router, channel: &str, address: &str, key: &str) -> (StatusCode, Value) {
        let query = format!("company_id={}&project_id={}", COMPANY.0, COMPANY.1);
        let path = format!("/recipients/{channel}/{}?{query}", address.replace(' ', "%20"));
        let request = Request::delete(path).header("x-api-key", key).body(Body::empty()).expect("request");
        let response = router.clone().oneshot(request).await.expect("response");
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), 1 << 16).await.expect("body");
        (status, serde_json::from_slice(&body).expect("a JSON envelope"))
    }

    async fn exists(&self, key: &ConversationKey) -> bool {
        conversation_record(&self.dynamodb, &self.naming, key).await.is_some()
    }
}

#[tokio::test]
async fn erasing_a_recipient_removes_the_companys_conversations_on_the_channel_and_keeps_the_opt_out() {
    let env = env(1).await;
    env.set_company("SET default_region = :v", json!("GB")).await;
    let router = env.router().await;
    let first = env.open(&router, ChannelKind::Whatsapp, 0x71).await;
    let second = env.open(&router, ChannelKind::Whatsapp, 0x72).await;
    env.send(&router, &whatsapp("hello, is the job still open?")).await;
    let trigger =
        env.take(&env.naming.replies_queue(ChannelKind::Whatsapp), 10).await.expect("its reply turn's trigger");
    let sms = env.open(&router, ChannelKind::Sms, 0x73).await;
    let pointer = ActivePointer::key(ChannelKind::Whatsapp, COMPANY_NUMBER, RECIPIENT);

    let (status, envelope) = env.erase(&router, "whatsapp", RECIPIENT, "not-the-key").await;
    assert_eq!((status, &envelope["error_code"]), (StatusCode::FORBIDDEN, &json!("INVALID_API_KEY")));
    assert!(env.exists(&first).await && env.exists(&second).await, "a wrong key erases nothing");
    let (status, envelope) = env.erase(&router, "whatsapp", "not a number", API_KEY).await;
    assert_eq!((status, &envelope["error_code"]), (StatusCode::BAD_REQUEST, &json!("INVALID_RECIPIENT_TEL")));

    // The national form of the number: one person.
    let (status, envelope) = env.erase(&router, "whatsapp", "07835 065013", API_KEY).await;
    assert_eq!(status, StatusCode::OK, "{envelope}");
    assert_eq!(envelope["recipient"], RECIPIENT);
    assert_eq!(envelope["erased"], json!({"conversations": 2, "staged_messages": 1}));
    assert_eq!(envelope["opt_out_kept"], false);
    assert!(!env.exists(&first).await && !env.exists(&second).await);
    assert!(!env.exists(&pointer).await, "the pointer their answers were routed by");
    assert!(env.staged(&second).await.is_empty());
    assert!(env.exists(&sms).await, "another channel's conversation stays");
    let replier = env.replier(ChannelKind::Whatsapp, LONG, LONG);
    let outcome = replier.process(&trigger, false).await;
    assert_eq!(outcome, Outcome::Duplicate, "an erased conversation's trigger has nothing left to answer (no DLQ)");
    let (status, envelope) = env.erase(&router, "whatsapp", RECIPIENT, API_KEY).await;
    assert_eq!((status, &envelope["erased"]["conversations"]), (StatusCode::OK, &json!(0)), "a repeat finds nothing");

    // Someone who said STOP stays opted out after the erasure.
    env.open(&router, ChannelKind::Whatsapp, 0x74).await;
    assert_eq!(env.answered(&router, &whatsapp("STOP")).await.0, StatusCode::OK);
    let (status, envelope) = env.erase(&router, "whatsapp", RECIPIENT, API_KEY).await;
    assert_eq!((status, &envelope["opt_out_kept"]), (StatusCode::OK, &json!(true)));
    assert_eq!(env.initiate(&router, ChannelKind::Whatsapp, 0x75).await.0, StatusCode::CONFLICT, "still opted out");
}

#[tokio::test]
async fn an_erasure_during_a_reply_turn_leaves_no_record_and_sends_nothing() {
    let env = env(1).await;
    let router = env.router().await;
    let key = env.open(&router, ChannelKind::Whatsapp, 0x76).await;
    let replier = env.replier(ChannelKind::Whatsapp, LONG, LONG);
    env.send(&router, &whatsapp("please forget me")).await;
    let trigger = env.take(&env.naming.replies_queue(ChannelKind::Whatsapp), 10).await.expect("trigger");
    let sent_before = env.fakes.sent().len();

    env.fakes.hold(Service::OpenAi);
    let turn = tokio::spawn({
        let replier = replier.clone();
        async move { replier.process(&trigger, false).await }
    });
    eventually("the turn asking the AI", Duration::from_secs(10), || async { !env.reply_requests().is_empty() }).await;
    let (status, envelope) = env.erase(&router, "whatsapp", RECIPIENT, API_KEY).await;
    assert_eq!(status, StatusCode::OK, "{envelope}");
    env.fakes.release(Service::OpenAi);

    let outcome = turn.await.expect("turn");
    assert!(!matches!(outcome, Outcome::Sent), "{outcome:?}");
    assert_eq!(env.fakes.sent().len(), sent_before, "nothing sent to an erased recipient");
    assert!(!env.exists(&key).await, "no record written back: {outcome:?}");
    assert!(env.staged(&key).await.is_empty());
}
