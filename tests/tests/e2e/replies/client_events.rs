//! Events to the client's system: a Company naming a webhook (`spec.events`, applied by the
//! operator, its signing key copied to Secrets Manager) hears what happens in its conversations.
//! A test server plays the client's applicant tracking system: it checks every delivery's
//! signature with the company's key and fails the first two deliveries; the worker retries with
//! backoff until one is taken, and an event that never is goes to the DLQ, counted.
use super::*;
use multicomms_operator::crd::company::ClientEvents;
use multicomms_operator::crd::{SecretKeyRef, SecretValue};
use multicomms_runtime::events::EventDelivery;
use multicomms_runtime::shared::client_events::verify;
use multicomms_testkit::environment::{AGENT_TOKEN, EVENTS_SIGNING_SECRET};
use multicomms_wire::client_events::{SIGNATURE_HEADER, SIGNATURE_TOLERANCE_SECONDS};
use multicomms_wire::inbox::ConversationRef;
use std::sync::Mutex;

/// The client's system: every delivery as it came (signature checked), failing each event's
/// first `failures` deliveries with 500.
#[derive(Default)]
struct Receiver {
    failures: usize,
    deliveries: Mutex<Vec<(bool, Value)>>,
}

async fn receiver(failures: usize) -> (String, Arc<Receiver>) {
    let shared = Arc::new(Receiver { failures, ..Receiver::default() });
    let state = shared.clone();
    let app = axum::Router::new().route(
        "/events",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
            let state = state.clone();
            async move {
                let header = headers.get(SIGNATURE_HEADER).and_then(|v| v.to_str().ok()).unwrap_or("");
                let now = multicomms_wire::timestamp::epoch_seconds();
                let signed = verify(EVENTS_SIGNING_SECRET.as_bytes(), header, &body, now, SIGNATURE_TOLERANCE_SECONDS);
                let event: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                let mut deliveries = state.deliveries.lock().expect("lock");
                let before = deliveries.iter().filter(|(_, e)| e["id"] == event["id"]).count();
                deliveries.push((signed.is_ok(), event));
                if before < state.failures {
                    StatusCode::INTERNAL_SERVER_ERROR
                } else {
                    StatusCode::NO_CONTENT
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/events", listener.local_addr().expect("address"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, shared)
}

/// The examples, the Company sending its events to `url`.
fn with_events(url: &str) -> multicomms_operator::cli::manifests::Manifests {
    let mut manifests = example_manifests();
    let reference = SecretKeyRef { name: "cucumber-recruitment-events".into(), key: "signingSecret".into() };
    manifests.companies[0].spec.events =
        Some(ClientEvents { url: url.into(), signing_secret: SecretValue { secret_key_ref: reference } });
    manifests
}

#[tokio::test]
async fn events_reach_the_clients_system_signed_retried_past_two_failures_and_never_hold_up_a_message() {
    let (url, ats) = receiver(2).await;
    let env = env_of(1, with_events(&url)).await;
    let router = env.router().await;
    let key = env.open(&router, ChannelKind::Whatsapp, 0xA1).await;
    // The receiver is failing, yet the conversation goes on: events wait on their own queue.
    env.send(&router, &whatsapp("Yes, I have a licence")).await;
    let desk = env.desk().await;
    let id = ConversationRef::encode(&key);
    let auth = format!("Bearer {AGENT_TOKEN}");
    let taken = people_call(&desk, &format!("{id}/take-over"), &auth).await;
    assert_eq!(taken, StatusCode::OK);

    let delivery = Arc::new(EventDelivery::build(&env.config, &env.naming, Duration::from_secs(5)).expect("worker"));
    let queue = queue::discover(&env.sqs, &env.naming.client_events_queue()).await.expect("the operator's queue");
    assert_eq!(queue.max_receive_count, Some(8), "retried eight times, then the DLQ");
    let running = env.run_worker(delivery, queue, 1, Duration::from_secs(30));
    let wanted = ["conversation_started", "reply_received", "taken_over"];
    let attempts = |kind: &str| {
        let deliveries = ats.deliveries.lock().expect("lock");
        deliveries.iter().filter(|(_, e)| e["type"] == kind).count()
    };
    eventually("every event taken by the client's system on its third attempt", Duration::from_secs(60), || async {
        wanted.iter().all(|kind| attempts(kind) >= 3)
    })
    .await;
    running.stop().await;

    let deliveries = ats.deliveries.lock().expect("lock").clone();
    assert!(deliveries.iter().all(|(signed, _)| *signed), "every delivery is signed with the company's key");
    for kind in wanted {
        let mut ids: Vec<&str> =
            deliveries.iter().filter(|(_, e)| e["type"] == kind).filter_map(|(_, e)| e["id"].as_str()).collect();
        ids.dedup();
        assert_eq!(ids.len(), 1, "{kind}: one event, its id the same on every attempt");
        assert_eq!(attempts(kind), 3, "{kind}: failed twice, taken on the third attempt, not sent again");
    }
    let started = deliveries.iter().map(|(_, e)| e).find(|e| e["type"] == "conversation_started").expect("started");
    assert_eq!(
        (started["company_id"].as_str(), started["conversation"]["id"].as_str()),
        (Some(COMPANY.0), Some(id.as_str()))
    );
    assert_eq!(started["conversation"]["recipient"], RECIPIENT);
    let received = deliveries.iter().map(|(_, e)| e).find(|e| e["type"] == "reply_received").expect("received");
    assert_eq!(received["data"]["text"], "Yes, I have a licence");
    let over = deliveries.iter().map(|(_, e)| e).find(|e| e["type"] == "taken_over").expect("taken over");
    assert_eq!(over["data"]["agent"], "carol");
}

#[tokio::test]
async fn an_event_the_client_never_takes_is_dead_lettered_counted_and_its_reason_logged() {
    let (url, ats) = receiver(usize::MAX).await;
    let env = env_of(1, with_events(&url)).await;
    env.open(&env.router().await, ChannelKind::Whatsapp, 0xA2).await;
    let body = env.take(&env.naming.client_events_queue(), 10).await.expect("the conversation_started event");
    let delivery = EventDelivery::build(&env.config, &env.naming, Duration::from_secs(5)).expect("worker");
    assert!(matches!(delivery.deliver(&body, false).await, Outcome::Retry(_)), "retried while attempts remain");
    assert_eq!(delivery.metrics.client_events_dead_lettered.get(), 0);
    assert!(matches!(delivery.deliver(&body, true).await, Outcome::Retry(_)));
    assert_eq!(delivery.metrics.client_events_dead_lettered.get(), 1, "the last attempt is counted for the alert");
    assert!(delivery.metrics.render().contains("multicomms_processor_client_events_dead_lettered_total 1"));
    assert_eq!(ats.deliveries.lock().expect("lock").len(), 2);
    assert!(matches!(delivery.deliver("not an event", false).await, Outcome::Poison(_)));
}

/// `POST <conversations>/<path>` as an agent: the status.
async fn people_call(desk: &axum::Router, path: &str, auth: &str) -> StatusCode {
    let request = Request::post(format!("/companies/{}/projects/{}/conversations/{path}", COMPANY.0, COMPANY.1))
        .header("authorization", auth)
        .body(Body::empty())
        .expect("request");
    desk.clone().oneshot(request).await.expect("answer").status()
}
