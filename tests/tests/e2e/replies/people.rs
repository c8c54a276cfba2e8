//! People in the loop: the conversations API an agent answers handed-off conversations with
//! (and the inbox calls), against moto and the fake providers. A recruiter answers a handed-off
//! candidate, gives the conversation back, and the AI's next reply knows what they said; every
//! refusal is clear and says nothing of what the caller may not see.
use super::*;
use multicomms_runtime::router::agents::{Session, Sessions, CSRF_HEADER, SESSION_COOKIE};
use multicomms_testkit::environment::AGENT_TOKEN;
use multicomms_wire::inbox::ConversationRef;

const BASE: &str = "/companies/ci-aaa-001/projects/pi-aaa-001/conversations";
const SESSION_KEY: &[u8] = b"a session key of at least 32 bytes, for tests";

impl Env {
    /// A router whose agents' messages go to the fake Twilio, signing sessions with [`SESSION_KEY`].
    pub(super) async fn desk(&self) -> axum::Router {
        app::app(Arc::new(self.desk_state().await))
    }

    async fn desk_state(&self) -> AppState {
        AppState::build(&self.config, &self.naming, self.desk_settings()).await
    }

    fn desk_settings(&self) -> RouterSettings {
        RouterSettings {
            twilio_base_url: self.fakes.url.clone(),
            session_key: Some(SESSION_KEY.to_vec()),
            ..router_settings()
        }
    }
}

/// `method path` with `headers` and a JSON `body`: the status and the JSON answer.
async fn call(
    router: &axum::Router,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut request = Request::builder().method(method).uri(path);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let body = match body {
        Some(json) => {
            request = request.header("content-type", "application/json");
            Body::from(json.to_string())
        }
        None => Body::empty(),
    };
    let response = router.clone().oneshot(request.body(body).expect("request")).await.expect("response");
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.expect("body");
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

fn bearer() -> String {
    format!("Bearer {AGENT_TOKEN}")
}

#[tokio::test]
async fn a_recruiter_answers_a_handed_off_candidate_gives_it_back_and_the_ai_knows_what_they_said() {
    let env = env(1).await;
    let router = env.router().await;
    let key = env.open(&router, ChannelKind::Whatsapp, 0x91).await;
    let id = ConversationRef::encode(&key);
    let auth = bearer();
    let auth = [("authorization", auth.as_str())];
    // The company hands this candidate's answers to a person.
    env.set_company("SET auto_queue_reply_message_from_number = :v", json!([RECIPIENT])).await;
    env.send(&env.router().await, &whatsapp("Can I talk to someone about the interview?")).await;
    assert!(env.handed_off().await.is_some(), "the hand-off queue still notifies");

    let desk = env.desk().await;
    let (status, list) = call(&desk, "GET", &format!("{BASE}?state=handed_off"), &auth, None).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    let listed = &list["conversations"][0];
    assert_eq!((listed["id"].as_str(), listed["state"].as_str()), (Some(id.as_str()), Some("handed_off")));
    assert_eq!(listed["last_message"]["content"], "Can I talk to someone about the interview?");
    let (_, open) = call(&desk, "GET", &format!("{BASE}?state=open"), &auth, None).await;
    assert_eq!(open["conversations"], json!([]), "handed off is not open");

    let said = "Hi Lee, Carol here: the interview is on Monday at 10, at our Leeds office.";
    let (status, answer) =
        call(&desk, "POST", &format!("{BASE}/{id}/messages"), &auth, Some(json!({"text": said}))).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let sent = env.fakes.sent();
    let to_twilio = sent.last().expect("the recruiter's message reached Twilio");
    assert_eq!((to_twilio.field("Body"), to_twilio.field("To")), (Some(said), Some("whatsapp:+447835065013")));
    let record = env.record(&key).await;
    let last = record.messages.last().expect("recorded");
    assert_eq!((last.role.as_str(), last.agent.as_deref(), last.content.as_str()), ("human", Some("carol"), said));
    assert_eq!(last.message_id, answer["message"]["id"].as_str().unwrap_or_default());
    assert_eq!(record.taken_over_by.as_deref(), Some("carol"), "answering takes the conversation over");
    assert!(record.claim_id.is_none() && record.reply_lease_id.is_none(), "claim and lease released");

    env.set_company("SET auto_queue_reply_message_from_number = :v", json!([])).await;
    let (status, given) = call(&desk, "POST", &format!("{BASE}/{id}/give-back"), &auth, None).await;
    assert_eq!((status, given["conversation"]["state"].as_str()), (StatusCode::OK, Some("open")), "{given}");
    assert_eq!(env.record(&key).await.given_back_by.as_deref(), Some("carol"), "who gave it back is recorded");
    let (status, again) =
        call(&desk, "POST", &format!("{BASE}/{id}/messages"), &auth, Some(json!({"text": "x"}))).await;
    assert_eq!((status, again["error_code"].as_str()), (StatusCode::CONFLICT, Some("AI_IS_ANSWERING")));

    // The candidate writes again: the AI answers, knowing what Carol told them.
    env.send(&env.router().await, &whatsapp("Great, do I need to bring anything?")).await;
    let trigger = env.take(&env.naming.replies_queue(ChannelKind::Whatsapp), 10).await.expect("a reply turn");
    let replier = env.replier(ChannelKind::Whatsapp, LONG, LONG);
    assert_eq!(replier.process(&trigger, false).await, Outcome::Sent);
    let asked = env.reply_requests();
    let input = asked.last().and_then(|r| r["input"].as_str()).unwrap_or_default().to_string();
    assert!(input.contains(said), "the AI reads what Carol said: {input}");
    assert!(input.ends_with("Great, do I need to bring anything?"), "{input}");
    assert_eq!(env.replies().last().map(String::as_str), Some("A reply from the fake model"));
    let (_, read) = call(&desk, "GET", &format!("{BASE}/{id}"), &auth, None).await;
    let roles: Vec<&str> = read["conversation"]["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .filter_map(|m| m["role"].as_str())
        .collect();
    assert_eq!(roles, ["assistant", "user", "human", "user", "assistant"], "{read}");

    let (status, closed) = call(&desk, "POST", &format!("{BASE}/{id}/close"), &auth, None).await;
    assert_eq!((status, closed["conversation"]["state"].as_str()), (StatusCode::OK, Some("closed")));
    env.send(&env.router().await, &whatsapp("one more thing")).await;
    let handed = env.handed_off().await.expect("an answer to a closed conversation goes to a person");
    assert!(handed.reason.contains("carol closed the conversation"), "{}", handed.reason);
}

#[tokio::test]
async fn forged_or_expired_sessions_other_companies_conversations_and_the_ais_own_get_clear_refusals() {
    let env = env(1).await;
    let router = env.router().await;
    let key = env.open(&router, ChannelKind::Whatsapp, 0x92).await;
    let id = ConversationRef::encode(&key);
    let desk = env.desk().await;
    let code =
        |answer: &(StatusCode, Value)| (answer.0, answer.1["error_code"].as_str().unwrap_or_default().to_string());
    let one = format!("{BASE}/{id}");

    assert_eq!(
        code(&call(&desk, "GET", &one, &[], None).await),
        (StatusCode::UNAUTHORIZED, "MISSING_AGENT_CREDENTIALS".into())
    );
    let wrong = [("authorization", "Bearer not-an-agents-token")];
    assert_eq!(
        code(&call(&desk, "GET", &one, &wrong, None).await),
        (StatusCode::FORBIDDEN, "INVALID_AGENT_TOKEN".into())
    );
    let elsewhere = "/companies/ci-zzz-999/projects/pi-aaa-001/conversations";
    let auth = bearer();
    let auth = [("authorization", auth.as_str())];
    let unknown = call(&desk, "GET", elsewhere, &auth, None).await;
    assert_eq!(
        code(&unknown),
        (StatusCode::FORBIDDEN, "INVALID_AGENT_TOKEN".into()),
        "an unknown company answers as a wrong token"
    );

    // Another company's conversation, in the same table: exactly as one that does not exist.
    let mut theirs = env.record(&key).await;
    theirs.company_id = "ci-bbb-002".into();
    theirs.conversation_id = theirs.conversation_id.replace("ci-aaa-001#", "ci-bbb-002#");
    env.dynamodb
        .put_item()
        .table_name(env.naming.conversations_table())
        .set_item(Some(theirs.to_item().expect("item")))
        .send()
        .await
        .expect("PutItem");
    let their_id = ConversationRef::encode(&theirs.key());
    let missing = ConversationRef::encode(&ConversationKey {
        conversation_id: format!("{}x", key.conversation_id),
        ..key.clone()
    });
    let (their_status, their_answer) = call(&desk, "GET", &format!("{BASE}/{their_id}"), &auth, None).await;
    let (missing_status, missing_answer) = call(&desk, "GET", &format!("{BASE}/{missing}"), &auth, None).await;
    assert_eq!((their_status, missing_status), (StatusCode::NOT_FOUND, StatusCode::NOT_FOUND));
    assert_eq!(their_answer["message"], missing_answer["message"], "nothing tells the two apart");
    assert_eq!(their_answer["error_code"], "CONVERSATION_NOT_FOUND");
    let (_, listed) = call(&desk, "GET", BASE, &auth, None).await;
    let ids: Vec<&str> =
        listed["conversations"].as_array().expect("list").iter().filter_map(|c| c["id"].as_str()).collect();
    assert_eq!(ids, [id.as_str()], "only the company's own conversations are listed");
    let taken = call(&desk, "POST", &format!("{BASE}/{their_id}/take-over"), &auth, None).await;
    assert_eq!(code(&taken).0, StatusCode::NOT_FOUND);
    assert_eq!(env.record(&theirs.key()).await.taken_over_by, None, "their conversation is untouched");

    // The AI answers this one: a person must take it over first, and nothing is sent.
    let sent_before = env.fakes.sent().len();
    let written = call(&desk, "POST", &format!("{one}/messages"), &auth, Some(json!({"text": "hello"}))).await;
    assert_eq!(code(&written), (StatusCode::CONFLICT, "AI_IS_ANSWERING".into()));
    assert_eq!(env.fakes.sent().len(), sent_before);

    // Sessions: one signed elsewhere, one expired, one without its CSRF token on a change.
    let company = multicomms_runtime::shared::companies::Companies::new(
        env.dynamodb.clone(),
        env.naming.company_data_table(),
        Duration::ZERO,
    )
    .get(COMPANY.0, COMPANY.1)
    .await
    .expect("read")
    .expect("the example company");
    let carol = &company.record.agents[0];
    let now = multicomms_wire::timestamp::epoch_seconds();
    let session = Session::begin(&company, carol, now);
    let cookie = |sealed: String| format!("{SESSION_COOKIE}={sealed}");
    let forged = cookie(Sessions::new(Some(b"another key, of another deployment!")).seal(&session));
    let forged = call(&desk, "GET", &one, &[("cookie", &forged)], None).await;
    assert_eq!(code(&forged), (StatusCode::UNAUTHORIZED, "INVALID_SESSION".into()));
    let expired = cookie(Sessions::new(Some(SESSION_KEY)).seal(&Session::begin(&company, carol, now - 9 * 3600)));
    let expired = call(&desk, "GET", &one, &[("cookie", &expired)], None).await;
    assert_eq!(code(&expired), (StatusCode::UNAUTHORIZED, "INVALID_SESSION".into()));
    let valid = cookie(Sessions::new(Some(SESSION_KEY)).seal(&session));
    assert_eq!(call(&desk, "GET", &one, &[("cookie", &valid)], None).await.0, StatusCode::OK);
    let no_csrf = call(&desk, "POST", &format!("{one}/take-over"), &[("cookie", &valid)], None).await;
    assert_eq!(code(&no_csrf), (StatusCode::FORBIDDEN, "CSRF_TOKEN_INVALID".into()));
    let with_csrf = [("cookie", valid.as_str()), (CSRF_HEADER, session.csrf.as_str())];
    assert_eq!(call(&desk, "POST", &format!("{one}/take-over"), &with_csrf, None).await.0, StatusCode::OK);
    assert_eq!(env.record(&key).await.taken_over_by.as_deref(), Some("carol"));
    // Signing in: a wrong token, and ids DynamoDB could not even look up, answer alike.
    for (company_id, token) in [(COMPANY.0, "not-carols"), ("", AGENT_TOKEN)] {
        let body = json!({"company_id": company_id, "project_id": COMPANY.1, "token": token});
        let refused = call(&desk, "POST", "/inbox/session", &[], Some(body)).await;
        assert_eq!(code(&refused), (StatusCode::FORBIDDEN, "INVALID_AGENT_TOKEN".into()), "{company_id:?}");
    }
    for answer in [&their_answer, &missing_answer, &forged.1, &expired.1] {
        let text = answer.to_string();
        assert!(!text.contains(RECIPIENT) && !text.contains("ci-bbb-002"), "{text}");
    }
}

#[tokio::test]
async fn from_the_inbox_alone_a_recruiter_answers_a_handed_off_candidate_and_gives_the_conversation_back() {
    use multicomms_testkit::webdriver::Browser;
    let env = env(1).await;
    let router = env.router().await;
    let key = env.open(&router, ChannelKind::Whatsapp, 0x93).await;
    env.set_company("SET auto_queue_reply_message_from_number = :v", json!([RECIPIENT])).await;
    env.send(&env.router().await, &whatsapp("Can I speak to a recruiter, please?")).await;
    env.set_company("SET auto_queue_reply_message_from_number = :v", json!([])).await;

    // The router on a socket, as the recruiter's browser reaches it.
    let state = Arc::new(env.desk_state().await);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    let limits =
        multicomms_service::http::ConnectionLimits { header_timeout: Duration::from_secs(30), max_connections: 64 };
    let server = tokio::spawn(app::serve(listener, state, limits, std::future::pending()));

    let browser = Browser::start().await;
    browser.goto(&format!("http://{address}/inbox")).await;
    browser.fill("#token", "not-carols-token").await;
    browser.fill("#company-id", COMPANY.0).await;
    browser.fill("#project-id", COMPANY.1).await;
    browser.click("#sign-in-button").await;
    browser.wait_for_text("#notice", "not an agent's", Duration::from_secs(10)).await;
    browser.fill("#token", AGENT_TOKEN).await;
    browser.click("#sign-in-button").await;
    browser.wait_for_text("#agent", "Signed in as carol", Duration::from_secs(10)).await;
    let cookies = browser.cookies().await;
    let session = cookies.iter().find(|c| c["name"] == SESSION_COOKIE).expect("the session cookie");
    assert_eq!(
        (session["httpOnly"].as_bool(), session["sameSite"].as_str()),
        (Some(true), Some("Strict")),
        "{session}"
    );

    // Handed off first; the conversation opens with the candidate's message.
    browser.click("#conversations li:first-child button").await;
    browser.wait_for_text("#messages", "Can I speak to a recruiter, please?", Duration::from_secs(10)).await;
    let said = "Hello Lee, Carol here. Your interview is on Monday at 10; bring your driving licence.";
    browser.fill("#reply-text", said).await;
    browser.click("#send").await;
    eventually("the fake Twilio received Carol's text", Duration::from_secs(20), || async {
        env.fakes.sent().iter().any(|r| r.field("Body") == Some(said))
    })
    .await;
    browser.wait_for_text("#messages", said, Duration::from_secs(10)).await;

    // The candidate answers while the page is open: it appears without a reload.
    env.send(&env.router().await, &whatsapp("Thank you! Is parking available?")).await;
    browser.wait_for_text("#messages", "Thank you! Is parking available?", Duration::from_secs(20)).await;
    browser.click("#give-back").await;
    browser.wait_for_text("#conversation-state", "The AI is answering", Duration::from_secs(10)).await;
    assert!(!env.record(&key).await.hand_off_to_human, "given back to the AI");

    env.send(&env.router().await, &whatsapp("Great, see you Monday")).await;
    let trigger = env.take(&env.naming.replies_queue(ChannelKind::Whatsapp), 10).await.expect("a reply turn");
    assert_eq!(env.replier(ChannelKind::Whatsapp, LONG, LONG).process(&trigger, false).await, Outcome::Sent);
    let input = env.reply_requests().last().and_then(|r| r["input"].as_str().map(str::to_string)).unwrap_or_default();
    assert!(input.contains(said) && input.contains("Is parking available?"), "the AI knows: {input}");
    browser.wait_for_text("#messages", "A reply from the fake model", Duration::from_secs(20)).await;
    browser.quit().await;
    server.abort();
}

#[tokio::test]
async fn a_person_writing_while_the_first_message_is_being_sent_is_told_to_retry_and_holds_nothing() {
    let env = env(1).await;
    let router = env.router().await;
    assert_eq!(env.initiate(&router, ChannelKind::Sms, 0x94).await.0, StatusCode::OK);
    let queued = env.take(&env.naming.channel_queue(ChannelKind::Sms), 10).await.expect("the queued message");
    let key = key_of(&queued);
    // Twilio is slow to answer: the first message is `sending` under the processor's claim.
    env.fakes.hold(Service::Twilio);
    let processor = env.first_message_processor(ChannelKind::Sms);
    let sending = tokio::spawn(async move { processor.process(&queued, false).await });
    let claimed = || async {
        let record = conversation_record(&env.dynamodb, &env.naming, &key).await;
        record.is_some_and(|r| r.conversation_status == ConversationStatus::Sending)
    };
    eventually("the first message claimed", Duration::from_secs(10), claimed).await;

    let desk = env.desk().await;
    let (auth, one) = (bearer(), format!("{BASE}/{}", ConversationRef::encode(&key)));
    let auth = [("authorization", auth.as_str())];
    assert_eq!(call(&desk, "POST", &format!("{one}/take-over"), &auth, None).await.0, StatusCode::OK);
    let written = call(&desk, "POST", &format!("{one}/messages"), &auth, Some(json!({"text": "hello"}))).await;
    assert_eq!((written.0, written.1["error_code"].as_str()), (StatusCode::CONFLICT, Some("CONVERSATION_BUSY")));
    let record = env.record(&key).await;
    assert_eq!(record.reply_lease_id, None, "the request's lease went back: nothing waits on it");
    assert_eq!(record.conversation_status, ConversationStatus::Sending, "the processor's claim untouched");

    env.fakes.release(Service::Twilio);
    assert_eq!(sending.await.expect("processor"), Outcome::Sent);
    let written = call(&desk, "POST", &format!("{one}/messages"), &auth, Some(json!({"text": "hello"}))).await;
    assert_eq!(written.0, StatusCode::OK, "{}", written.1);
    let bodies: Vec<String> = env.fakes.sent().iter().filter_map(|r| r.field("Body").map(str::to_string)).collect();
    assert_eq!(bodies.iter().filter(|b| b.as_str() == "hello").count(), 1, "sent once: {bodies:?}");
}

#[tokio::test]
async fn a_persons_message_outlasting_the_request_timeout_is_still_sent_once_and_recorded() {
    let env = env(1).await;
    let key = env.open(&env.router().await, ChannelKind::Sms, 0x95).await;
    let settings = RouterSettings { request_timeout: Duration::from_millis(300), ..env.desk_settings() };
    let desk = app::app(Arc::new(AppState::build(&env.config, &env.naming, settings).await));
    let (auth, one) = (bearer(), format!("{BASE}/{}", ConversationRef::encode(&key)));
    let auth = [("authorization", auth.as_str())];
    assert_eq!(call(&desk, "POST", &format!("{one}/take-over"), &auth, None).await.0, StatusCode::OK);
    // Twilio answers after the router has given up on the request.
    env.fakes.hold(Service::Twilio);
    let written = call(&desk, "POST", &format!("{one}/messages"), &auth, Some(json!({"text": "slow hello"}))).await;
    assert_eq!((written.0, written.1["error_code"].as_str()), (StatusCode::GATEWAY_TIMEOUT, Some("REQUEST_TIMEOUT")));
    env.fakes.release(Service::Twilio);
    let recorded = || async {
        let record = env.record(&key).await;
        let last = record.messages.last().map(|m| (m.role.clone(), m.content.clone()));
        last == Some(("human".into(), "slow hello".into()))
            && record.claim_id.is_none()
            && record.reply_lease_id.is_none()
    };
    eventually("the message recorded, claim and lease released", Duration::from_secs(20), recorded).await;
    let sent = env.fakes.sent().iter().filter(|r| r.field("Body") == Some("slow hello")).count();
    assert_eq!(sent, 1, "sent once");
}
