//! The router in-process (its axum app driven with tower's `oneshot`) against the moto emulator,
//! with tables, queues and the company record made by the operator's own reconcile from the
//! example manifests in config/.
use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use multicomms_operator::cli::manifests;
use multicomms_operator::crd::Company;
use multicomms_operator::reconcile::{self, Context, Mode};
use multicomms_runtime::router::app::{self, AppState, RouterSettings};
use multicomms_runtime::shared::companies::Companies;
use multicomms_service::http::ConnectionLimits;
use multicomms_testkit::environment::{
    apply, company_copy, emulator_config, example_manifests, example_request, repo_root, router_for, router_settings,
    API_KEY,
};
use multicomms_testkit::eventually::{eventually, eventually_ok};
use multicomms_wire::context::ContextObject;
use multicomms_wire::{ChannelKind, Naming};
use serde_json::{json, Value};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tower::ServiceExt;

const KEY: &str = API_KEY;
/// The router binary's defaults.
const LIMITS: ConnectionLimits = ConnectionLimits { header_timeout: Duration::from_secs(30), max_connections: 10_000 };

struct Setup {
    app: axum::Router,
    router: Arc<AppState>,
    naming: Naming,
    sqs: aws_sdk_sqs::Client,
}

/// The example Channels and Company applied under a fresh prefix; `edit` may change the
/// manifests first (e.g. drop a Channel).
async fn setup(edit: impl FnOnce(&mut manifests::Manifests)) -> Setup {
    let config = emulator_config().await;
    let mut loaded = example_manifests();
    edit(&mut loaded);
    let naming = apply(&config, &loaded).await;
    let sqs = aws_sdk_sqs::Client::new(&config);
    let router = Arc::new(router_for(&config, &naming).await);
    Setup { app: app::app(router.clone()), router, naming, sqs }
}

/// The example company under another resource name and project.
fn another_project(m: &mut manifests::Manifests, name: &str, project_id: &str, project_name: &str) -> Company {
    let mut company = company_copy(m, name);
    company.spec.project_id = project_id.into();
    company.spec.project_name = project_name.into();
    company
}

fn example() -> Value {
    example_request()
}

async fn post(
    app: &axum::Router,
    key: Option<&str>,
    body: impl Into<Body>,
) -> (StatusCode, axum::http::HeaderMap, Value) {
    let mut request = Request::post("/initiate-conversation").header("content-type", "application/json");
    if let Some(key) = key {
        request = request.header("x-api-key", key);
    }
    let response = app.clone().oneshot(request.body(body.into()).expect("request")).await.expect("response");
    let (parts, body) = response.into_parts();
    let bytes = body.collect().await.expect("body").to_bytes();
    let json = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).expect("JSON body") };
    (parts.status, parts.headers, json)
}

async fn receive(setup: &Setup, channel: ChannelKind) -> Vec<aws_sdk_sqs::types::Message> {
    let url = setup
        .sqs
        .get_queue_url()
        .queue_name(setup.naming.channel_queue(channel))
        .send()
        .await
        .expect("url")
        .queue_url
        .expect("url");
    let out = setup
        .sqs
        .receive_message()
        .queue_url(url)
        .max_number_of_messages(10)
        .message_attribute_names("All")
        .send()
        .await
        .expect("receive");
    out.messages.unwrap_or_default()
}

fn assert_error(response: &(StatusCode, axum::http::HeaderMap, Value), status: u16, code: &str) {
    let (got, headers, body) = response;
    assert_eq!(got.as_u16(), status, "{body}");
    assert_eq!(body["status"], "error");
    assert_eq!(body["error_code"], code, "{body}");
    assert_eq!(body.as_object().map(|o| o.len()), Some(4), "exactly four keys: {body}");
    assert_eq!(headers["access-control-allow-origin"], "*");
}

#[tokio::test]
async fn the_spec_example_is_accepted_and_its_context_object_lands_on_the_whatsapp_queue() {
    let setup = setup(|_| {}).await;
    let (status, headers, body) = post(&setup.app, Some(KEY), example().to_string()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(headers["access-control-allow-methods"], "OPTIONS,POST");
    assert_eq!(body["status"], "success");
    assert_eq!(body["request_id"], "550e8400-e29b-41d4-a716-446655440001");
    assert_eq!(body["message"], "Request accepted and queued for processing");
    assert!(body["queue_timestamp"].as_str().is_some_and(|t| t.ends_with("+00:00")), "{body}");
    assert_eq!(body.as_object().map(|o| o.len()), Some(4));

    let messages = receive(&setup, ChannelKind::Whatsapp).await;
    assert_eq!(messages.len(), 1);
    let message = &messages[0];
    let context: ContextObject = serde_json::from_str(message.body().expect("body")).expect("the wire type parses it");
    assert_eq!(context.frontend_payload, example(), "verbatim");
    assert_eq!(context.company_data_payload["company_id"], "ci-aaa-001");
    assert_eq!(context.company_data_payload["rate_limits"]["requests_per_minute"], 60);
    assert_eq!(context.company_data_payload.get("api_key_hash"), None, "the key's hash stays with the router");
    let id = "ci-aaa-001#pi-aaa-001#550e8400-e29b-41d4-a716-446655440001#447588713814";
    assert_eq!(context.conversation_data.conversation_id, id);
    assert_eq!(context.conversation_data.conversation_status.as_str(), "initiated");
    assert_eq!(context.metadata.router_version, "router-test-1");
    let attributes = message.message_attributes().expect("attributes");
    let attribute = |name: &str| attributes.get(name).and_then(|a| a.string_value()).map(str::to_string);
    assert_eq!(attribute("channelMethod").as_deref(), Some("whatsapp"));
    assert_eq!(attribute("conversationId").as_deref(), Some(id));
    assert_eq!(attribute("recipientTel").as_deref(), Some("+447835065013"));
    assert!(attribute("routerTimestamp").is_some_and(|t| t.ends_with("+00:00")));
    assert_eq!(attribute("recipientEmail"), None, "never both");
    assert!(receive(&setup, ChannelKind::Sms).await.is_empty());
}

#[tokio::test]
async fn email_and_sms_reach_their_own_queues() {
    let setup = setup(|_| {}).await;
    let mut email = example();
    email["request_data"]["channel_method"] = json!("email");
    email["request_data"]["request_id"] = json!("550e8400-e29b-41d4-a716-446655440002");
    assert_eq!(post(&setup.app, Some(KEY), email.to_string()).await.0, StatusCode::OK);
    let mut sms = example();
    sms["request_data"]["channel_method"] = json!("sms");
    assert_eq!(post(&setup.app, Some(KEY), sms.to_string()).await.0, StatusCode::OK);

    let emails = receive(&setup, ChannelKind::Email).await;
    assert_eq!(emails.len(), 1);
    let attributes = emails[0].message_attributes().expect("attributes");
    assert_eq!(attributes.get("recipientEmail").and_then(|a| a.string_value()), Some("lee@example.com"));
    let context: ContextObject = serde_json::from_str(emails[0].body().expect("body")).expect("context");
    assert!(context.conversation_data.conversation_id.ends_with("#recruitment@cucumber.example"));
    assert_eq!(receive(&setup, ChannelKind::Sms).await.len(), 1);
}

#[tokio::test]
async fn api_keys_bind_to_their_own_company() {
    // A second company with a key of its own.
    let setup = setup(|m| {
        let mut other = another_project(m, "other", "pi-bbb-001", "Other Project");
        if let Some(key) = other.spec.api_key.as_mut() {
            key.secret_key_ref.name = "other-router".into();
        }
        m.companies.push(other);
        let values = m.secrets.get_mut("multicomms-dev").expect("namespace");
        values.insert("other-router", "apiKey", secrecy::SecretString::from("other-company-key"));
    })
    .await;
    assert_error(&post(&setup.app, None, example().to_string()).await, 401, "MISSING_API_KEY");
    assert_error(&post(&setup.app, Some("other-company-key"), example().to_string()).await, 403, "INVALID_API_KEY");
    assert_error(&post(&setup.app, Some("made-up"), example().to_string()).await, 403, "INVALID_API_KEY");
    assert!(receive(&setup, ChannelKind::Whatsapp).await.is_empty(), "nothing queued");

    let mut other = example();
    other["company_data"]["project_id"] = json!("pi-bbb-001");
    assert_error(&post(&setup.app, Some(KEY), other.to_string()).await, 403, "INVALID_API_KEY");
    assert_eq!(post(&setup.app, Some("other-company-key"), other.to_string()).await.0, StatusCode::OK);
}

#[tokio::test]
async fn company_gating_and_configuration_errors() {
    // A second company allowing whatsapp only, inactive; and no sms Channel (so no sms queue).
    let setup = setup(|m| {
        let mut inactive = another_project(m, "inactive", "pi-aaa-002", "Paused");
        inactive.spec.project_status = multicomms_operator::crd::company::ProjectStatus::Inactive;
        m.companies.push(inactive);
        let mut whatsapp_only = another_project(m, "whatsapp-only", "pi-aaa-003", "Whatsapp Only");
        whatsapp_only.spec.allowed_channels = vec![ChannelKind::Whatsapp];
        m.companies.push(whatsapp_only);
        m.channels.retain(|c| c.spec.kind != ChannelKind::Sms);
    })
    .await;
    let with = |edit: &dyn Fn(&mut Value)| {
        let mut body = example();
        edit(&mut body);
        body.to_string()
    };
    // An unknown company answers as a wrong key does: nothing tells a caller which ids exist.
    let not_found = with(&|b| b["company_data"]["company_id"] = json!("ci-zzz-999"));
    let unknown = post(&setup.app, Some(KEY), not_found).await;
    assert_error(&unknown, 403, "INVALID_API_KEY");
    let wrong_key = post(&setup.app, Some("not-the-key"), example().to_string()).await;
    assert_eq!(unknown.2["message"], wrong_key.2["message"]);
    let inactive = with(&|b| b["company_data"]["project_id"] = json!("pi-aaa-002"));
    assert_error(&post(&setup.app, Some(KEY), inactive).await, 403, "PROJECT_INACTIVE");
    let not_allowed = with(&|b| {
        b["company_data"]["project_id"] = json!("pi-aaa-003");
        b["request_data"]["channel_method"] = json!("email");
    });
    let response = post(&setup.app, Some(KEY), not_allowed).await;
    assert_error(&response, 403, "CHANNEL_NOT_ALLOWED");
    assert_eq!(response.2["message"], "Channel 'email' is not permitted for this project.");
    let no_queue = with(&|b| b["request_data"]["channel_method"] = json!("sms"));
    let response = post(&setup.app, Some(KEY), no_queue.clone()).await;
    assert_error(&response, 500, "CONFIGURATION_ERROR");
    assert_eq!(response.2["message"], "Processing queue for channel 'sms' is not configured.");

    // The operator creates the sms queue later: the running router finds it by itself.
    let config = emulator_config().await;
    let ctx = Context::new(multicomms_operator::aws::Aws::new(&config), setup.naming.clone(), Mode::Apply);
    let root = repo_root();
    let loaded = manifests::load(&[root.join("config/channels"), root.join("config/examples/local")], "multicomms-dev")
        .expect("channels");
    let sms = loaded.channels.iter().find(|c| c.spec.kind == ChannelKind::Sms).expect("sms channel");
    let report = reconcile::channel::reconcile(&ctx, sms, &loaded.secrets["multicomms-dev"]).await;
    assert!(report.is_ready(), "{report:?}");
    eventually_ok("the sms queue found by the running router", Duration::from_secs(30), || async {
        match post(&setup.app, Some(KEY), no_queue.clone()).await {
            (StatusCode::OK, ..) => Ok(()),
            other => Err(other),
        }
    })
    .await;
}

#[tokio::test]
async fn bad_bodies_get_4xx_never_5xx_a_body_over_the_limit_closes_the_connection_and_cors_preflight_answers() {
    let setup = setup(|_| {}).await;
    for body in ["", "{", "null", "[]", "42", "\"x\"", "{\"company_data\": 7}", "{\"request_data\": []}"] {
        let (status, _, json) = post(&setup.app, Some(KEY), body.to_string()).await;
        assert!(status.is_client_error(), "{body:?} → {status} {json}");
    }
    let huge = json!({"padding": "x".repeat(20 * 1024)}).to_string();
    let too_large = post(&setup.app, Some(KEY), huge).await;
    assert_error(&too_large, 413, "PAYLOAD_TOO_LARGE");
    // The rest of the upload is never read, so the connection cannot carry another request: the
    // client is told, instead of finding out on its next request (found by the fault suite).
    assert_eq!(too_large.1.get("connection").map(|v| v.as_bytes()), Some(&b"close"[..]));
    let mut invalid = example();
    invalid["request_data"]["request_id"] = json!("not-a-uuid");
    let response = post(&setup.app, Some(KEY), invalid.to_string()).await;
    assert_error(&response, 400, "INVALID_REQUEST_ID");
    assert_eq!(response.2["request_id"], "not-a-uuid");

    let preflight = Request::options("/initiate-conversation").body(Body::empty()).expect("request");
    let response = setup.app.clone().oneshot(preflight).await.expect("response");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["access-control-allow-headers"],
        "Content-Type,X-Amz-Date,Authorization,X-Api-Key,X-Amz-Security-Token"
    );

    let get = |path: &str| Request::get(path).body(Body::empty()).expect("request");
    let ready = setup.app.clone().oneshot(get("/readyz")).await.expect("response");
    assert_eq!(ready.status(), StatusCode::OK);
    // Metrics have a listener of their own: the API's is public for Twilio's webhooks.
    let public = setup.app.clone().oneshot(get("/metrics")).await.expect("response");
    assert_eq!(public.status(), StatusCode::NOT_FOUND, "no traffic figures on the public listener");
    let metrics = app::metrics(&setup.router).oneshot(get("/metrics")).await.expect("response");
    let text = String::from_utf8(metrics.into_body().collect().await.expect("body").to_bytes().to_vec()).expect("utf8");
    assert!(text.contains(r#"status="413",error_code="PAYLOAD_TOO_LARGE"} 1"#), "{text}");
    assert!(text.contains("multicomms_router_request_duration_seconds_count"), "{text}");
}

/// A first install applies the router before any Channel exists (Argo CD's wave 0, `helm
/// --wait`): it must be ready then, or the Channels that make its queues are never applied.
#[tokio::test]
async fn a_router_with_no_channel_queue_yet_is_ready() {
    let config = emulator_config().await;
    let naming = Naming::new("no-queues-yet", "test");
    let router = Arc::new(router_for(&config, &naming).await);
    let ready = app::app(router).oneshot(Request::get("/readyz").body(Body::empty()).expect("request")).await;
    assert_eq!(ready.expect("response").status(), StatusCode::OK);
}

#[tokio::test]
async fn a_missing_table_is_a_database_error() {
    let config = emulator_config().await;
    let naming = Naming::new("no-such-prefix", "test");
    let router = Arc::new(router_for(&config, &naming).await);
    let response = post(&app::app(router), Some(KEY), example().to_string()).await;
    assert_error(&response, 500, "DATABASE_ERROR");
    assert_eq!(response.2["message"], "Failed to access the database");
}

#[tokio::test]
async fn a_retried_request_gets_the_first_answer_and_is_queued_once() {
    let setup = setup(|_| {}).await;
    let first = post(&setup.app, Some(KEY), example().to_string()).await;
    let again = post(&setup.app, Some(KEY), example().to_string()).await;
    assert_eq!((first.0, again.0), (StatusCode::OK, StatusCode::OK));
    assert_eq!(first.2, again.2, "same envelope, same queue_timestamp");
    assert_eq!(receive(&setup, ChannelKind::Whatsapp).await.len(), 1, "queued once");
}

#[tokio::test]
async fn the_61st_request_in_a_minute_for_a_60_per_minute_company_gets_429() {
    let setup = setup(|m| m.companies[0].spec.rate_limits.concurrent_conversations = 1000).await;
    let mut statuses = Vec::new();
    for i in 0..61 {
        let mut body = example();
        body["request_data"]["request_id"] = json!(format!("550e8400-e29b-41d4-a716-{:012x}", 0x1000 + i));
        body["request_data"]["channel_method"] = json!("email"); // keep the whatsapp queue shallow
        statuses.push(post(&setup.app, Some(KEY), body.to_string()).await);
    }
    // A minute boundary may fall inside the loop: then the budget restarts and all 61 pass.
    let refused: Vec<_> = statuses.iter().filter(|r| r.0 == StatusCode::TOO_MANY_REQUESTS).collect();
    let accepted = statuses.iter().filter(|r| r.0 == StatusCode::OK).count();
    assert!(accepted >= 60 && accepted + refused.len() == 61, "{accepted} accepted");
    if let Some(response) = refused.first() {
        assert_error(response, 429, "RATE_LIMIT_EXCEEDED");
        let retry_after: u64 = response.1["retry-after"].to_str().expect("header").parse().expect("seconds");
        assert!((1..=60).contains(&retry_after));
    }
}

#[tokio::test]
async fn a_company_at_its_concurrent_conversations_gets_429_until_one_of_them_ends() {
    let setup = setup(|m| m.companies[0].spec.rate_limits.concurrent_conversations = 2).await;
    let request = |i: u32| {
        let mut body = example();
        body["request_data"]["request_id"] = json!(format!("550e8400-e29b-41d4-a716-{:012x}", 0x2000 + i));
        body.to_string()
    };
    assert_eq!(post(&setup.app, Some(KEY), request(1)).await.0, StatusCode::OK);
    assert_eq!(post(&setup.app, Some(KEY), request(2)).await.0, StatusCode::OK);
    let refused = post(&setup.app, Some(KEY), request(3)).await;
    assert_error(&refused, 429, "CONCURRENT_CONVERSATIONS_EXCEEDED");
    assert_eq!(post(&setup.app, Some(KEY), request(1)).await.0, StatusCode::OK, "a retry is not a new conversation");

    // Two open conversations in the table, as the processors leave them: a fresh router counts them.
    let config = emulator_config().await;
    let dynamodb = aws_sdk_dynamodb::Client::new(&config);
    let now = multicomms_wire::timestamp::now();
    for i in 0..2 {
        let item = json!({"primary_channel": format!("+4477009000{i:02}"), "conversation_id": format!("ci-aaa-001#pi-aaa-001#{i}#447588713814"),
                          "company_id": "ci-aaa-001", "project_id": "pi-aaa-001", "conversation_status": "initial_message_sent",
                          "task_complete": 0, "updated_at": now});
        let item = serde_dynamo::to_item(item).expect("item");
        dynamodb
            .put_item()
            .table_name(setup.naming.conversations_table())
            .set_item(Some(item))
            .send()
            .await
            .expect("PutItem");
    }
    let fresh = app::app(Arc::new(router_for(&config, &setup.naming).await));
    assert_error(&post(&fresh, Some(KEY), request(4)).await, 429, "CONCURRENT_CONVERSATIONS_EXCEEDED");
    let key = multicomms_wire::conversation::ConversationKey {
        primary_channel: "+447700900000".into(),
        conversation_id: "ci-aaa-001#pi-aaa-001#0#447588713814".into(),
    };
    dynamodb
        .update_item()
        .table_name(setup.naming.conversations_table())
        .set_key(Some(key.to_item()))
        .update_expression("SET task_complete = :one")
        .expression_attribute_values(":one", aws_sdk_dynamodb::types::AttributeValue::N("1".into()))
        .send()
        .await
        .expect("UpdateItem");
    let fresh = app::app(Arc::new(router_for(&config, &setup.naming).await));
    assert_eq!(post(&fresh, Some(KEY), request(5)).await.0, StatusCode::OK, "one of them ended");
}

#[tokio::test]
async fn no_consent_is_refused_unless_the_company_opts_into_the_old_behaviour() {
    let setup = setup(|m| {
        let mut old_behaviour = another_project(m, "old-behaviour", "pi-aaa-004", "Old Behaviour");
        old_behaviour.spec.send_without_consent = true;
        m.companies.push(old_behaviour);
    })
    .await;
    let mut body = example();
    body["recipient_data"]["comms_consent"] = json!(false);
    assert_error(&post(&setup.app, Some(KEY), body.to_string()).await, 400, "COMMS_CONSENT_REQUIRED");
    body["company_data"]["project_id"] = json!("pi-aaa-004");
    assert_eq!(post(&setup.app, Some(KEY), body.to_string()).await.0, StatusCode::OK);
}

#[tokio::test]
async fn concurrent_requests_share_send_message_batch_calls() {
    let setup = setup(|_| {}).await;
    let requests = (0..30).map(|i| {
        let mut body = example();
        body["request_data"]["request_id"] = json!(format!("550e8400-e29b-41d4-a716-{:012x}", 0x2000 + i));
        let app = setup.app.clone();
        async move { post(&app, Some(KEY), body.to_string()).await.0 }
    });
    let statuses = futures::future::join_all(requests).await;
    assert!(statuses.iter().all(|s| *s == StatusCode::OK), "{statuses:?}");
    let stats = setup.router.queues.stats();
    let (batches, messages) = (stats.batches.load(Ordering::Relaxed), stats.messages.load(Ordering::Relaxed));
    assert_eq!(messages, 30);
    assert!(batches < 30, "{batches} SendMessageBatch calls for 30 messages");
    let metrics = setup.router.metrics.render();
    assert!(metrics.contains("multicomms_router_sqs_batch_size_sum 30.0"), "{metrics}");
    assert!(
        metrics.contains(
            r#"multicomms_router_requests_total{route="/initiate-conversation",status="200",error_code=""} 30"#
        ),
        "{metrics}"
    );
    let mut received = 0;
    for _ in 0..5 {
        received += receive(&setup, ChannelKind::Whatsapp).await.len();
    }
    assert!(received >= 10, "messages are on the queue ({received} seen in 5 receives)");
}

/// Every JSON path of `value` (as JSON pointers), containers included.
fn pointers(value: &Value, at: String, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => map.iter().for_each(|(k, v)| pointers(v, format!("{at}/{k}"), out)),
        Value::Array(items) => items.iter().enumerate().for_each(|(i, v)| pointers(v, format!("{at}/{i}"), out)),
        _ => {}
    }
    out.push(at);
}

#[tokio::test]
async fn malformed_bodies_never_get_a_5xx_or_a_broken_envelope() {
    let setup = setup(|_| {}).await;
    let valid = example().to_string().into_bytes();
    let mut bodies: Vec<Vec<u8>> = Vec::new();
    // Truncations.
    bodies.extend((0..valid.len()).step_by(7).map(|cut| valid[..cut].to_vec()));
    // Every value (and section) of the example swapped for each JSON type and some awkward ones.
    let mut paths = Vec::new();
    pointers(&example(), String::new(), &mut paths);
    let swaps = [
        json!(null),
        json!(0),
        json!(-1.5e300),
        json!(18446744073709551615u64),
        json!(""),
        json!(" "),
        json!("\u{0}\u{202e}é🙂"),
        json!(true),
        json!([]),
        json!({}),
        json!([{"a": [1, {"b": null}]}]),
        json!("x".repeat(4000)),
    ];
    for path in paths.iter().filter(|p| !p.is_empty()) {
        for swap in &swaps {
            let mut body = example();
            if let Some(slot) = body.pointer_mut(path) {
                *slot = swap.clone();
            }
            bodies.push(body.to_string().into_bytes());
        }
    }
    // Byte-level damage from a fixed-seed xorshift, so a failure reproduces.
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let alphabet = b"{}[]\":,\\ 0-.eEnulltruefalse\x00\xff\xc3";
    for _ in 0..300 {
        let mut body = valid.clone();
        for _ in 0..1 + next() % 3 {
            let at = (next() as usize) % body.len();
            body[at] = alphabet[(next() as usize) % alphabet.len()];
        }
        bodies.push(body);
    }
    // Structural extremes: deep nesting, duplicate keys, a byte-order mark, non-UTF-8.
    bodies.push(format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)).into_bytes());
    bodies.push(format!("{{\"a\":{}1{}}}", "{\"a\":".repeat(5_000), "}".repeat(5_000)).into_bytes());
    let duplicated = String::from_utf8(valid.clone()).expect("utf8").replacen('{', r#"{"request_data": 1, "#, 1);
    bodies.push(duplicated.into_bytes());
    bodies.push([b"\xef\xbb\xbf".as_slice(), &valid].concat());
    bodies.push([&valid[..10], b"\xff\xfe".as_slice(), &valid[10..]].concat());

    let total = bodies.len();
    for body in bodies {
        let shown = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
        let (status, headers, json) = post(&setup.app, Some(KEY), body).await;
        assert!(status.as_u16() < 500, "{shown:?} → {status} {json}");
        let keys = json.as_object().map(|o| o.len());
        assert_eq!(keys, Some(4), "{shown:?} → four-key envelope, got {json}");
        assert_eq!(headers["access-control-allow-origin"], "*");
    }
    assert!(total > 600, "{total} bodies");
}

#[tokio::test]
async fn a_request_that_outlives_the_timeout_gets_504_with_the_envelope() {
    let config = emulator_config().await;
    let naming = Naming::new("timeout-prefix", "test");
    let settings = RouterSettings { request_timeout: Duration::from_millis(200), ..router_settings() };
    let router = AppState::build(&config, &naming, settings).await;
    // A client that starts a body and never finishes it.
    let stalled = futures::stream::pending::<Result<bytes::Bytes, std::io::Error>>();
    let response = post(&app::app(Arc::new(router)), Some(KEY), Body::from_stream(stalled)).await;
    assert_error(&response, 504, "REQUEST_TIMEOUT");
    assert_eq!(
        response.2["message"],
        "The request did not complete within 200 ms; retrying with the same request_id is safe"
    );
}

#[tokio::test]
async fn request_bodies_in_flight_stay_within_the_budget_the_memory_limit_is_sized_for() {
    let config = emulator_config().await;
    let naming = Naming::new("budget-prefix", "test");
    // Room for two bodies of the largest size at once.
    let settings = RouterSettings { body_budget_bytes: 32 * 1024, ..router_settings() };
    let router = Arc::new(AppState::build(&config, &naming, settings).await);
    let app = app::app(router.clone());
    let stalled = |path: &str| {
        let body = Body::from_stream(futures::stream::pending::<Result<bytes::Bytes, std::io::Error>>());
        let request = Request::post(path).header("x-api-key", KEY).header("content-length", "16384");
        request.body(body).expect("request")
    };
    // Two clients that declare the largest body and never finish sending it (the timeout is 10 s).
    let holding: Vec<_> =
        (0..2).map(|_| tokio::spawn(app.clone().oneshot(stalled("/initiate-conversation")))).collect();
    let held = || async { router.bodies.available_permits() == 0 };
    eventually("the two stalled uploads hold the whole budget", Duration::from_secs(5), held).await;
    let refused = post(&app, Some(KEY), example().to_string()).await;
    assert_error(&refused, 503, "SERVER_BUSY");
    assert_eq!(refused.1.get("retry-after").map(|v| v.as_bytes()), Some(&b"1"[..]));
    let webhook = app.clone().oneshot(stalled("/webhooks/twilio/whatsapp")).await.expect("answer");
    assert_eq!(webhook.status(), StatusCode::SERVICE_UNAVAILABLE, "the webhooks share the budget");
    holding.iter().for_each(|h| h.abort());
    let given_back = || async { router.bodies.available_permits() == 32 };
    eventually("the aborted uploads give their budget back", Duration::from_secs(5), given_back).await;
    let served = post(&app, Some(KEY), example().to_string()).await;
    assert_ne!(served.0, StatusCode::SERVICE_UNAVAILABLE, "the budget is given back: {:?}", served.2);
}

#[tokio::test]
async fn shutdown_finishes_requests_in_flight_and_flushes_their_batches() {
    let setup = setup(|_| {}).await;
    let config = emulator_config().await;
    // Messages wait 2 s for company in a batch, so the stop lands while they are pending.
    let settings = RouterSettings { batch_linger: Duration::from_secs(2), ..router_settings() };
    let router = Arc::new(AppState::build(&config, &setup.naming, settings).await);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/initiate-conversation", listener.local_addr().expect("address"));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app::serve(listener, router.clone(), LIMITS, async {
        let _ = stopped.await;
    }));

    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
    let requests: Vec<_> = (0..5)
        .map(|i| {
            let mut body = example();
            body["request_data"]["request_id"] = json!(format!("550e8400-e29b-41d4-a716-{:012x}", 0x3000 + i));
            let request = Request::post(&url)
                .header("x-api-key", KEY)
                .body(http_body_util::Full::new(bytes::Bytes::from(body.to_string())))
                .expect("request");
            tokio::spawn(client.request(request))
        })
        .collect();
    // Each request holds its body's share of the body budget until it is answered.
    let budget = router.settings.body_budget_bytes.div_ceil(1024);
    let per_request = example().to_string().len().div_ceil(1024);
    let in_flight = || async { budget - router.bodies.available_permits() == 5 * per_request };
    eventually("all five requests in flight", Duration::from_secs(10), in_flight).await;
    let _ = stop.send(());
    for request in requests {
        let response = request.await.expect("task").expect("answered, not cut off");
        assert_eq!(response.status(), StatusCode::OK);
    }
    server.await.expect("served");
    let mut received = 0;
    for _ in 0..10 {
        received += receive(&setup, ChannelKind::Whatsapp).await.len();
        if received >= 5 {
            break;
        }
    }
    assert_eq!(received, 5, "every accepted message was sent before the router stopped");
}

#[tokio::test]
async fn callers_without_a_key_cannot_evict_companies_nor_learn_which_exist() {
    let config = emulator_config().await;
    let naming = apply(&config, &example_manifests()).await;
    let calls = multicomms_operator::aws::CallCounter::default();
    let counted = aws_sdk_dynamodb::config::Builder::from(&config).interceptor(calls.clone()).build();
    let mut router = router_for(&config, &naming).await;
    let capacity = std::num::NonZeroUsize::new(100).expect("non-zero");
    router.companies = Arc::new(Companies::with_capacity(
        aws_sdk_dynamodb::Client::from_conf(counted),
        naming.company_data_table(),
        Duration::from_secs(600),
        capacity,
    ));
    let app = app::app(Arc::new(router));
    // Reads of companies missing from the cache (concurrent ones batched together).
    let reads = || calls.by_operation().get("BatchGetItem").copied().unwrap_or(0);
    let with_id = |request: u32, company: &str| {
        let mut body = example();
        body["company_data"]["company_id"] = json!(company);
        body["request_data"]["request_id"] = json!(format!("550e8400-e29b-41d4-a716-{request:012x}"));
        body.to_string()
    };
    assert_eq!(post(&app, Some(KEY), with_id(1, "ci-aaa-001")).await.0, StatusCode::OK);
    assert_eq!(reads(), 1);

    // 2.5 times the cache's size in made-up company ids, without a valid key.
    let answers = futures::future::join_all(
        (0..250).map(|i| post(&app, Some("guessing"), with_id(0x100 + i, &format!("ci-guess-{i:04}")))),
    )
    .await;
    for answer in &answers {
        assert_error(answer, 403, "INVALID_API_KEY");
    }
    let flooded = reads();
    assert!((4..=251).contains(&flooded), "each made-up id read, in batches of at most 100: {flooded}");
    // The real company was not evicted.
    assert_eq!(post(&app, Some(KEY), with_id(2, "ci-aaa-001")).await.0, StatusCode::OK);
    assert_eq!(reads(), flooded, "the real company was not read again");
    // A made-up id costs one read, then none while it is remembered.
    for request in [0x500, 0x501] {
        assert_error(&post(&app, Some("guessing"), with_id(request, "ci-guess-again")).await, 403, "INVALID_API_KEY");
    }
    assert_eq!(reads(), flooded + 1);
}

#[tokio::test]
async fn a_tenant_refused_for_its_rate_limit_grows_no_router_state() {
    let setup = setup(|m| m.companies[0].spec.rate_limits.requests_per_minute = 1).await;
    let mut refused = 0;
    for i in 0..2_000u32 {
        let mut body = example();
        body["request_data"]["request_id"] = json!(format!("550e8400-e29b-41d4-a716-{:012x}", 0x9000 + i));
        body["request_data"]["channel_method"] = json!("email"); // keep the whatsapp queue shallow
        let (status, _, _) = post(&setup.app, Some(KEY), body.to_string()).await;
        refused += usize::from(status == StatusCode::TOO_MANY_REQUESTS);
    }
    assert!(refused >= 1_997, "{refused} refused");
    // One answer per accepted request (one a minute), none for the refused ones.
    assert!(setup.router.idempotency.len() <= 3, "{} answers held", setup.router.idempotency.len());
}

/// The router on a loopback port with `limits`; stopped through the returned sender.
async fn serving(
    limits: ConnectionLimits,
) -> (Setup, std::net::SocketAddr, tokio::sync::oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
    let setup = setup(|_| {}).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app::serve(listener, setup.router.clone(), limits, async {
        let _ = stopped.await;
    }));
    (setup, address, stop, server)
}

/// Reads until the server closes the connection (or `within` passes); returns what it said.
async fn closed_within(stream: &mut tokio::net::TcpStream, within: Duration) -> Option<String> {
    use tokio::io::AsyncReadExt;
    let mut seen = Vec::new();
    let read = tokio::time::timeout(within, stream.read_to_end(&mut seen)).await;
    read.ok().map(|_| String::from_utf8_lossy(&seen).into_owned())
}

/// One request over a fresh connection with `Connection: close`; the status line's code.
async fn status_over_tcp(address: std::net::SocketAddr) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(address).await.expect("connect");
    let body = example().to_string();
    let request = format!(
        "POST /initiate-conversation HTTP/1.1\r\nHost: x\r\nx-api-key: {KEY}\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("read");
    response.split(' ').nth(1).unwrap_or_default().to_string()
}

#[tokio::test]
async fn a_client_that_sends_half_a_request_or_idles_is_cut_off_after_the_header_timeout() {
    use tokio::io::AsyncWriteExt;
    let limits = ConnectionLimits { header_timeout: Duration::from_secs(1), ..LIMITS };
    let (_setup, address, stop, server) = serving(limits).await;
    // Half a request line, then nothing.
    let mut slow = tokio::net::TcpStream::connect(address).await.expect("connect");
    slow.write_all(b"POST /initiate-conversation HTTP/1.1\r\nHost: x\r\n").await.expect("send");
    assert_eq!(closed_within(&mut slow, Duration::from_secs(5)).await.as_deref(), Some(""), "no answer, closed");
    // A keep-alive connection left idle after a request.
    let mut idle = tokio::net::TcpStream::connect(address).await.expect("connect");
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await.expect("send");
    let answered = closed_within(&mut idle, Duration::from_secs(5)).await.expect("closed while idle");
    assert!(answered.starts_with("HTTP/1.1 200"), "{answered}");
    let _ = stop.send(());
    server.await.expect("stopped");
}

#[tokio::test]
async fn five_thousand_idle_connections_neither_delay_requests_nor_hold_shutdown() {
    use tokio::io::AsyncWriteExt;
    let limits = ConnectionLimits { header_timeout: Duration::from_secs(120), ..LIMITS };
    let (setup, address, stop, server) = serving(limits).await;
    let mut held = Vec::with_capacity(5_000);
    for i in 0..5_000 {
        let mut stream = tokio::net::TcpStream::connect(address).await.expect("connect");
        if i % 2 == 0 {
            stream.write_all(b"POST /initiate-conversation HTTP/1.1\r\nHo").await.expect("half a request");
        }
        held.push(stream);
    }
    assert_eq!(status_over_tcp(address).await, "200", "a valid request is served beside them");
    // Shutdown closes the idle ones at once (a half-sent one waits out its header timeout, so
    // those clients go away here and only the idle ones stay connected).
    let idle: Vec<_> = held.into_iter().enumerate().filter(|(i, _)| i % 2 == 1).map(|(_, s)| s).collect();
    let stopping = std::time::Instant::now();
    let _ = stop.send(());
    server.await.expect("stopped");
    assert!(stopping.elapsed() < Duration::from_secs(60), "shutdown waited {:?}", stopping.elapsed());
    drop(idle);
    assert_eq!(receive(&setup, ChannelKind::Whatsapp).await.len(), 1);
}

#[tokio::test]
async fn connections_beyond_the_cap_wait_for_a_free_slot() {
    let limits = ConnectionLimits { header_timeout: Duration::from_secs(1), max_connections: 10 };
    let (_setup, address, stop, server) = serving(limits).await;
    let mut held = Vec::new();
    for _ in 0..10 {
        held.push(tokio::net::TcpStream::connect(address).await.expect("connect"));
    }
    // The eleventh is accepted once a held one is cut off by the header timeout.
    let served = tokio::time::timeout(Duration::from_secs(10), status_over_tcp(address)).await;
    assert_eq!(served.expect("served within 10 s"), "200");
    drop(held);
    let _ = stop.send(());
    server.await.expect("stopped");
}

#[tokio::test]
async fn a_recipients_number_is_kept_in_e164_whatever_the_client_sent() {
    // The company reads national numbers as British.
    let setup = setup(|m| m.companies[0].spec.default_region = Some("GB".into())).await;
    let numbers = ["+44 7835 065013", "07835-065013", "0044 (0)7835 065013"];
    for (i, number) in numbers.iter().enumerate() {
        let mut body = example();
        body["request_data"]["request_id"] = json!(format!("550e8400-e29b-41d4-a716-{:012x}", 0xe164 + i));
        body["recipient_data"]["recipient_tel"] = json!(number);
        assert_eq!(post(&setup.app, Some(KEY), body.to_string()).await.0, StatusCode::OK, "{number}");
    }
    let mut queued = Vec::new();
    for _ in 0..10 {
        queued.extend(receive(&setup, ChannelKind::Whatsapp).await);
        if queued.len() >= numbers.len() {
            break;
        }
    }
    assert_eq!(queued.len(), numbers.len());
    for message in queued {
        let context: Value = serde_json::from_str(message.body().expect("body")).expect("JSON");
        assert_eq!(context["frontend_payload"]["recipient_data"]["recipient_tel"], "+447835065013");
    }

    let mut unreadable = example();
    unreadable["recipient_data"]["recipient_tel"] = json!("+44 1234");
    let (status, _, envelope) = post(&setup.app, Some(KEY), unreadable.to_string()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(envelope["error_code"], "INVALID_RECIPIENT_TEL");
    assert!(envelope["message"].as_str().is_some_and(|m| m.contains("'recipient_tel'")), "{envelope}");
}

#[tokio::test]
async fn a_national_number_is_refused_when_the_company_names_no_region() {
    let setup = setup(|_| {}).await;
    let mut body = example();
    body["recipient_data"]["recipient_tel"] = json!("07835 065013");
    let (status, _, envelope) = post(&setup.app, Some(KEY), body.to_string()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{envelope}");
    assert_eq!(envelope["error_code"], "INVALID_RECIPIENT_TEL");
    assert!(envelope["message"].as_str().is_some_and(|m| m.contains("default region")), "{envelope}");
}
