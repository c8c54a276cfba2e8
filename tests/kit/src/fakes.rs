//! Fake OpenAI Responses, Twilio Messages and SendGrid mail-send servers on one loopback port.
//! The fake OpenAI refuses a `previous_response_id` it did not produce, as OpenAI does.
//! They speak the real request and response formats, check what they receive (auth headers,
//! form fields, JSON), record every request, and inject latency and faults on demand. Latency
//! and hangs come after a request is handled, so a slow answer can hide a send that happened. The
//! processor tests use them in-process; `fake-providers` runs them standalone for the demo.
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine;
use futures::StreamExt;
use multicomms_runtime::worker::pod::PodConfig;
use serde_json::{json, Map, Value};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Service {
    OpenAi,
    Twilio,
    SendGrid,
}

/// What the next request to a service gets instead of a normal answer.
#[derive(Clone, Debug, PartialEq)]
pub enum Fault {
    /// An error answer in the service's error format.
    Status(u16),
    /// The request is handled (a message accepted) but no answer comes for an hour: the
    /// client's timeout fires.
    Hang,
    /// OpenAI: output text that is not JSON.
    NotJson,
    /// OpenAI: JSON that breaks the requested schema.
    OffSchema,
    /// OpenAI: a refusal instead of output text.
    Refusal,
    /// A success (for Twilio: the message accepted) whose answer is 1 GiB of whitespace,
    /// streamed without a length: what a hostile or broken endpoint could send.
    Oversized,
    /// Twilio: the message accepted, then its status callbacks say `sent` and `undelivered` with
    /// this error code (63016: outside WhatsApp's 24-hour window; 21610: the recipient opted out).
    Undelivered(u32),
}

/// A status callback the fake Twilio owes for a message that asked for them: the URL, the form
/// and its `X-Twilio-Signature` (with the sender's auth token, as Twilio signs).
#[derive(Clone, Debug)]
pub struct StatusCallback {
    pub url: String,
    pub params: Vec<(String, String)>,
    pub signature: String,
}

/// One SendGrid Event Webhook request the fake owes (or signs for a test): the body (a JSON
/// array of events), the timestamp header and the signature header.
#[derive(Clone, Debug)]
pub struct SignedEvents {
    pub body: String,
    pub timestamp: String,
    pub signature: String,
}

/// The fake SendGrid account's Event Webhook signing key.
struct SendgridKey {
    pair: ring::signature::EcdsaKeyPair,
    rng: ring::rand::SystemRandom,
}

impl SendgridKey {
    fn generate() -> Option<SendgridKey> {
        use ring::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).ok()?;
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref(), &rng).ok()?;
        Some(SendgridKey { pair, rng })
    }

    fn sign(&self, events: &[multicomms_wire::delivery::SendgridEvent]) -> SignedEvents {
        let body = serde_json::to_string(events).unwrap_or_default();
        let timestamp = chrono_now_secs().to_string();
        let signed = [timestamp.as_bytes(), body.as_bytes()].concat();
        let signature =
            self.pair.sign(&self.rng, &signed).map(|s| base64::engine::general_purpose::STANDARD.encode(s.as_ref()));
        SignedEvents { body, timestamp, signature: signature.unwrap_or_default() }
    }
}

impl StatusCallback {
    pub fn field(&self, name: &str) -> Option<&str> {
        self.params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    pub fn body(&self) -> String {
        serde_urlencoded::to_string(&self.params).unwrap_or_default()
    }
}

/// 1 GiB in 64 KiB chunks, produced as it is read (the fake holds none of it).
fn oversized(status: StatusCode) -> Response {
    let chunk = Bytes::from(vec![b' '; 64 * 1024]);
    let chunks = futures::stream::repeat_with(move || Ok::<_, std::io::Error>(chunk.clone())).take(16 * 1024);
    (status, [("content-type", "application/json")], axum::body::Body::from_stream(chunks)).into_response()
}

/// One request as the fake saw it.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub service: Service,
    pub path: String,
    pub authorization: String,
    /// Twilio's form fields.
    pub form: Vec<(String, String)>,
    /// OpenAI's and SendGrid's JSON body.
    pub json: Value,
    /// Whether the fake answered with success (a message "sent", a response produced).
    pub accepted: bool,
    /// When the request arrived.
    pub at: std::time::Instant,
}

impl Recorded {
    pub fn field(&self, name: &str) -> Option<&str> {
        self.form.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// The name of the thread [`Fakes::start_on_own_thread`] runs them on.
pub const FAKES_THREAD: &str = "fake-providers";

#[derive(Default)]
struct Shared {
    requests: Mutex<Vec<Recorded>>,
    /// The responses produced (what `previous_response_id` may name), each with the `input`
    /// of the request it answered.
    responses: Mutex<HashMap<String, Value>>,
    /// Whether each produced text ends with ` [<response id>]`, so that a message a provider
    /// received names the AI answer it carries (see [`Fakes::tag_answers`]).
    tag_answers: std::sync::atomic::AtomicBool,
    faults: Mutex<HashMap<Service, VecDeque<Fault>>>,
    /// Faults drawn at random for requests with none queued: (share of requests, fault).
    mixes: Mutex<HashMap<Service, Vec<(f64, Fault)>>>,
    /// The state of the draws (splitmix64: a fixed seed makes a run repeatable).
    draws: AtomicU64,
    latency: Mutex<HashMap<Service, Duration>>,
    /// Status callbacks owed, in the order Twilio would send them.
    callbacks: Mutex<Vec<StatusCallback>>,
    /// SendGrid Event Webhook requests owed, and the key they are signed with.
    sendgrid_events: Mutex<Vec<SignedEvents>>,
    sendgrid_key: Option<SendgridKey>,
    /// Whether the fake Twilio also posts them (the demo; tests deliver them themselves, in
    /// any order).
    post_callbacks: std::sync::atomic::AtomicBool,
    /// Services whose answers wait, after the request is recorded, until released.
    held: tokio::sync::watch::Sender<Vec<Service>>,
    counter: AtomicU64,
    /// What the fake client's system (an applicant tracking system) was posted at
    /// `/client/events`: each event, and whether its signature held with the example company's
    /// key.
    client_events: Mutex<Vec<Value>>,
}

#[derive(Clone)]
pub struct Fakes {
    /// `http://127.0.0.1:<port>`: the base URL of all three services.
    pub url: String,
    shared: Arc<Shared>,
}

impl Fakes {
    /// A processor pod of `channel` on `naming` talking to these fakes: secrets cached 5
    /// minutes, a 30 s HTTP timeout and send grace, status callbacks to the test router's
    /// [`crate::environment::PUBLIC_BASE_URL`], no loopback AI endpoints.
    pub fn pod_config(&self, channel: multicomms_wire::ChannelKind, naming: &multicomms_wire::Naming) -> PodConfig {
        PodConfig {
            channel,
            naming: naming.clone(),
            secrets_cache: Duration::from_secs(300),
            http_timeout: Duration::from_secs(30),
            send_grace: Duration::from_secs(30),
            openai_base_url: self.openai_url(),
            twilio_base_url: self.url.clone(),
            sendgrid_base_url: self.url.clone(),
            public_base_url: Some(crate::environment::PUBLIC_BASE_URL.into()),
            allow_loopback_ai_endpoints: false,
        }
    }

    pub async fn start(address: &str) -> std::io::Result<Fakes> {
        let listener = tokio::net::TcpListener::bind(address).await?;
        let url = format!("http://{}", listener.local_addr()?);
        let shared = Arc::new(Shared { sendgrid_key: SendgridKey::generate(), ..Shared::default() });
        let app = axum::Router::new()
            .route("/v1/responses", post(openai))
            .route("/2010-04-01/Accounts/{account}/Messages.json", post(twilio))
            .route("/v3/mail/send", post(sendgrid))
            .route("/client/events", post(client_event).get(client_events))
            .with_state(shared.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(Fakes { url, shared })
    }

    /// [`Fakes::start`] on a thread of its own, named [`FAKES_THREAD`], so that a benchmark can
    /// leave the fake providers' CPU out of its own (real providers run elsewhere).
    pub fn start_on_own_thread() -> std::io::Result<Fakes> {
        let (started, fakes) = std::sync::mpsc::channel();
        std::thread::Builder::new().name(FAKES_THREAD.into()).spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build();
            match runtime {
                Ok(runtime) => runtime.block_on(async {
                    let _ = started.send(Fakes::start("127.0.0.1:0").await);
                    std::future::pending::<()>().await
                }),
                Err(e) => {
                    let _ = started.send(Err(e));
                }
            }
        })?;
        fakes.recv().map_err(std::io::Error::other)?
    }

    /// The OpenAI base URL (`…/v1`).
    pub fn openai_url(&self) -> String {
        format!("{}/v1", self.url)
    }

    /// Queues `fault` for the next request to `service` (one fault per request, in order).
    pub fn fail_next(&self, service: Service, fault: Fault) {
        if let Ok(mut faults) = self.shared.faults.lock() {
            faults.entry(service).or_default().push_back(fault);
        }
    }

    /// From now on each request to `service` with no queued fault gets one of `mix`'s faults
    /// with that fault's share of probability (e.g. `[(0.2, Fault::Hang), (0.1, Fault::Status(429))]`),
    /// drawn from a sequence seeded with `seed`.
    pub fn set_fault_mix(&self, service: Service, mix: Vec<(f64, Fault)>, seed: u64) {
        self.shared.draws.store(seed, Ordering::Relaxed);
        if let Ok(mut mixes) = self.shared.mixes.lock() {
            mixes.insert(service, mix);
        }
    }

    /// From now on every text the fake model produces ends with ` [<response id>]`: a message
    /// the providers received then says which AI answer it carries, and [`Fakes::answered`]
    /// what that answer was asked.
    pub fn tag_answers(&self) {
        self.shared.tag_answers.store(true, Ordering::Relaxed);
    }

    /// The `input` the fake model's response `response_id` answered.
    pub fn answered(&self, response_id: &str) -> Option<Value> {
        self.shared.responses.lock().ok().and_then(|r| r.get(response_id).cloned())
    }

    pub fn set_latency(&self, service: Service, latency: Duration) {
        if let Ok(mut all) = self.shared.latency.lock() {
            all.insert(service, latency);
        }
    }

    /// From now on `service`'s answers wait (each request recorded first, a message accepted)
    /// until [`Fakes::release`]: a test can act while a call is surely in progress.
    pub fn hold(&self, service: Service) {
        self.shared.held.send_modify(|held| held.push(service));
    }

    pub fn release(&self, service: Service) {
        self.shared.held.send_modify(|held| held.retain(|s| *s != service));
    }

    pub fn requests(&self, service: Service) -> Vec<Recorded> {
        let all = self.shared.requests.lock().map(|r| r.clone()).unwrap_or_default();
        all.into_iter().filter(|r| r.service == service).collect()
    }

    /// The status callbacks owed so far (`sent`, then `delivered` or `undelivered`, per message
    /// that named a `StatusCallback`).
    pub fn status_callbacks(&self) -> Vec<StatusCallback> {
        self.shared.callbacks.lock().map(|c| c.clone()).unwrap_or_default()
    }

    /// From now on the fake Twilio posts each message's status callbacks, in order, as Twilio
    /// does (the demo's router is reachable at the URL the processors name).
    pub fn post_status_callbacks(&self) {
        self.shared.post_callbacks.store(true, Ordering::Relaxed);
    }

    /// The Event Webhook requests the fake SendGrid owes so far (`processed`, then `delivered`,
    /// or `bounce` for a mail sent under [`Fault::Undelivered`]), one per accepted mail.
    pub fn sendgrid_events(&self) -> Vec<SignedEvents> {
        self.shared.sendgrid_events.lock().map(|e| e.clone()).unwrap_or_default()
    }

    /// `events` signed as the fake SendGrid account signs its Event Webhook.
    pub fn sendgrid_signed(&self, events: &[multicomms_wire::delivery::SendgridEvent]) -> SignedEvents {
        self.shared.sendgrid_key.as_ref().map(|key| key.sign(events)).unwrap_or_else(|| SignedEvents {
            body: String::new(),
            timestamp: String::new(),
            signature: String::new(),
        })
    }

    /// The account's verification key, as SendGrid shows it (a Company's
    /// `channels.email.eventWebhookPublicKey`).
    pub fn sendgrid_public_key(&self) -> String {
        use ring::signature::KeyPair;
        let point = self.shared.sendgrid_key.as_ref().map(|key| key.pair.public_key().as_ref().to_vec());
        multicomms_runtime::router::sendgrid_signature::public_key_base64(&point.unwrap_or_default())
    }

    /// Messages the providers accepted (Twilio and SendGrid).
    pub fn sent(&self) -> Vec<Recorded> {
        let sent = |r: &&Recorded| r.service != Service::OpenAi && r.accepted;
        self.shared.requests.lock().map(|all| all.iter().filter(sent).cloned().collect()).unwrap_or_default()
    }

    /// How many messages the providers accepted (without copying them: benchmarks poll it).
    pub fn sent_count(&self) -> usize {
        let sent = |r: &&Recorded| r.service != Service::OpenAi && r.accepted;
        self.shared.requests.lock().map(|all| all.iter().filter(sent).count()).unwrap_or_default()
    }
}

impl Shared {
    fn take_fault(&self, service: Service) -> Option<Fault> {
        let queued = self.faults.lock().ok().and_then(|mut f| f.get_mut(&service).and_then(VecDeque::pop_front));
        queued.or_else(|| self.draw_fault(service))
    }

    fn draw_fault(&self, service: Service) -> Option<Fault> {
        let mixes = self.mixes.lock().ok()?;
        let mix = mixes.get(&service)?;
        let mut at = self.draw();
        for (share, fault) in mix {
            if at < *share {
                return Some(fault.clone());
            }
            at -= share;
        }
        None
    }

    /// A uniform draw in [0, 1) (splitmix64).
    fn draw(&self) -> f64 {
        let mut z = self.draws.fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed).wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (z ^ (z >> 31)) as f64 / (u64::MAX as f64 + 1.0)
    }

    /// Runs after the request is recorded (and, for a provider, the message accepted): a slow
    /// or missing answer then hides a send that happened, as it does in production.
    async fn delay(&self, service: Service, fault: &Option<Fault>) {
        // Err only when the sender is gone, which it is not while `self` lives.
        let _ = self.held.subscribe().wait_for(|held| !held.contains(&service)).await;
        let latency = self.latency.lock().ok().and_then(|l| l.get(&service).copied());
        if let Some(latency) = latency {
            tokio::time::sleep(latency).await;
        }
        if *fault == Some(Fault::Hang) {
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
    }

    fn record(&self, recorded: Recorded) {
        if let Ok(mut requests) = self.requests.lock() {
            requests.push(recorded);
        }
    }

    /// The callbacks Twilio sends for an accepted message: `sent`, then `delivered` (or
    /// `undelivered` with the fault's error code), each signed with the sender's auth token.
    fn owe_callbacks(&self, url: &str, auth_token: &str, message: [(&str, &str); 4], fault: &Option<Fault>) {
        let last = match fault {
            Some(Fault::Undelivered(code)) => ("undelivered", Some(code.to_string())),
            _ => ("delivered", None),
        };
        let callbacks: Vec<StatusCallback> = [("sent", None), last]
            .into_iter()
            .map(|(status, error_code)| {
                let mut params: Vec<(String, String)> = vec![
                    ("SmsSid".into(), message[0].1.into()),
                    ("SmsStatus".into(), status.into()),
                    ("MessageStatus".into(), status.into()),
                ];
                params.extend(message.iter().map(|(k, v)| (k.to_string(), v.to_string())));
                params.push(("ApiVersion".into(), "2010-04-01".into()));
                if let Some(code) = error_code {
                    params.push(("ErrorCode".into(), code));
                }
                let signature = multicomms_runtime::replies::signature::sign(auth_token, url, &params);
                StatusCallback { url: url.to_string(), params, signature }
            })
            .collect();
        if let Ok(mut owed) = self.callbacks.lock() {
            owed.extend(callbacks.iter().cloned());
        }
        if self.post_callbacks.load(Ordering::Relaxed) {
            tokio::spawn(post_in_order(callbacks));
        }
    }

    /// SendGrid's events for an accepted mail: `processed`, then `delivered` (or `bounce`).
    fn owe_sendgrid_events(&self, request: &Value, message_id: &str, fault: &Option<Fault>) {
        let Some(key) = &self.sendgrid_key else { return };
        let event = |name: &str, n: u64| multicomms_wire::delivery::SendgridEvent {
            email: request["personalizations"][0]["to"][0]["email"].as_str().unwrap_or_default().to_string(),
            timestamp: chrono_now_secs(),
            event: name.to_string(),
            sg_message_id: Some(format!("{message_id}.filter0001.{n}.0")),
            sg_event_id: Some(format!("ev-{message_id}-{n}")),
            conversation_id: request["custom_args"]["conversation_id"].as_str().map(str::to_string),
            status: (name == "bounce").then(|| "5.1.1".to_string()),
            asm_group_id: request["asm"]["group_id"].as_u64().and_then(|g| u32::try_from(g).ok()),
        };
        let last = if matches!(fault, Some(Fault::Undelivered(_))) { "bounce" } else { "delivered" };
        let signed = key.sign(&[event("processed", 1), event(last, 2)]);
        if let Ok(mut owed) = self.sendgrid_events.lock() {
            owed.push(signed);
        }
    }

    fn next_id(&self) -> u64 {
        self.counter.fetch_add(1, Ordering::Relaxed) + 1
    }
}

fn authorization(headers: &HeaderMap) -> String {
    headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("").to_string()
}

fn json_response(status: u16, body: Value) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, [("content-type", "application/json")], body.to_string()).into_response()
}

// ---- OpenAI Responses API -------------------------------------------------------------------

fn openai_error(status: u16, message: &str, kind: &str) -> Response {
    json_response(status, json!({"error": {"message": message, "type": kind, "param": null, "code": null}}))
}

async fn openai(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let fault = shared.take_fault(Service::OpenAi);
    let auth = authorization(&headers);
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let answer = openai_refusal(&auth, &request).unwrap_or_else(|| openai_answer(&shared, &request, &fault));
    shared.record(Recorded {
        service: Service::OpenAi,
        path: "/v1/responses".into(),
        authorization: auth,
        form: vec![],
        json: request,
        accepted: answer.status().is_success(),
        at: std::time::Instant::now(),
    });
    shared.delay(Service::OpenAi, &fault).await;
    answer
}

/// What OpenAI answers a request it does not accept (no key, missing parameters).
fn openai_refusal(auth: &str, request: &Value) -> Option<Response> {
    let invalid = |message: &str| Some(openai_error(400, message, "invalid_request_error"));
    if !auth.starts_with("Bearer ") || auth.len() <= "Bearer ".len() {
        return Some(openai_error(401, "You didn't provide an API key.", "invalid_request_error"));
    }
    if !request["model"].is_string() {
        return invalid("Missing required parameter: 'model'.");
    }
    if !(request["input"].is_string() || request["input"].is_array()) {
        return invalid("Missing required parameter: 'input'.");
    }
    let format = &request["text"]["format"];
    if format["type"] != "json_schema" || !format["schema"].is_object() || !format["name"].is_string() {
        return invalid("Invalid 'text.format': expected a json_schema with name and schema.");
    }
    None
}

/// A response object (or the fault's answer) for an accepted request.
fn openai_answer(shared: &Shared, request: &Value, fault: &Option<Fault>) -> Response {
    if let Some(previous) = request.get("previous_response_id").and_then(Value::as_str) {
        let known = shared.responses.lock().map(|r| r.contains_key(previous)).unwrap_or(false);
        if !known {
            return json_response(
                400,
                json!({"error": {"message": format!("Previous response with id '{previous}' not found."),
                                 "type": "invalid_request_error", "param": "previous_response_id", "code": null}}),
            );
        }
    }
    let id = shared.next_id();
    let content = match fault {
        Some(Fault::Status(429)) => return openai_error(429, "Rate limit reached for requests", "requests"),
        Some(Fault::Status(status)) => {
            return openai_error(*status, "The server had an error while processing your request.", "server_error")
        }
        Some(Fault::Oversized) => return oversized(StatusCode::OK),
        Some(Fault::NotJson) => {
            json!({"type": "output_text", "text": "Sure! Here are the variables you asked for.", "annotations": []})
        }
        Some(Fault::OffSchema) => json!({"type": "output_text", "text": "{\"unexpected\": 42}", "annotations": []}),
        Some(Fault::Refusal) => json!({"type": "refusal", "refusal": "I'm sorry, I can't help with that."}),
        Some(Fault::Hang) | Some(Fault::Undelivered(_)) | None => {
            let mut output = output_for(&request["text"]["format"]["schema"]);
            if shared.tag_answers.load(Ordering::Relaxed) {
                tag(&mut output, &format!(" [resp_{id:024x}]"));
            }
            json!({"type": "output_text", "text": output.to_string(), "annotations": []})
        }
    };
    if let Ok(mut responses) = shared.responses.lock() {
        responses.insert(format!("resp_{id:024x}"), request["input"].clone());
    }
    let input_tokens = request["input"].to_string().len() as u64 / 4;
    json_response(
        200,
        json!({
            "id": format!("resp_{id:024x}"),
            "object": "response",
            "created_at": chrono_now_secs(),
            "status": "completed",
            "error": null,
            "incomplete_details": null,
            "model": request["model"],
            "output": [{
                "id": format!("msg_{id:024x}"),
                "type": "message",
                "status": "completed",
                "role": "assistant",
                "content": [content],
            }],
            "usage": {
                "input_tokens": input_tokens,
                "input_tokens_details": {"cached_tokens": 0},
                "output_tokens": 24,
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": input_tokens + 24,
            },
        }),
    )
}

/// Appends `suffix` to every string value of a generated output.
fn tag(output: &mut Value, suffix: &str) {
    if let Some(values) = output.as_object_mut() {
        for value in values.values_mut() {
            if let Value::String(text) = value {
                text.push_str(suffix);
            }
        }
    }
}

/// A value for every property the schema names (strings), or one variable for an open object.
fn output_for(schema: &Value) -> Value {
    match schema["properties"].as_object() {
        Some(properties) if !properties.is_empty() => {
            let values: Map<String, Value> = properties
                .keys()
                .map(|name| {
                    let text = match name.as_str() {
                        "body" => "Hello from the fake model".to_string(),
                        "content" => "A reply from the fake model".to_string(),
                        _ => format!("value {name}"),
                    };
                    (name.clone(), Value::String(text))
                })
                .collect();
            Value::Object(values)
        }
        _ => json!({"1": "value 1"}),
    }
}

fn chrono_now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

// ---- Twilio Messages API --------------------------------------------------------------------

fn twilio_error(status: u16, code: u32, message: &str) -> Response {
    json_response(
        status,
        json!({"code": code, "message": message, "more_info": format!("https://www.twilio.com/docs/errors/{code}"), "status": status}),
    )
}

async fn twilio(
    State(shared): State<Arc<Shared>>,
    Path(account): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let fault = shared.take_fault(Service::Twilio);
    let auth = authorization(&headers);
    let form: Vec<(String, String)> = serde_urlencoded::from_bytes(&body).unwrap_or_default();
    let answer = twilio_answer(&shared, &account, &auth, &form, &fault)
        .unwrap_or_else(|TwilioError(status, code, message)| twilio_error(status, code, message));
    shared.record(Recorded {
        service: Service::Twilio,
        path: format!("/2010-04-01/Accounts/{account}/Messages.json"),
        authorization: auth,
        form,
        json: Value::Null,
        accepted: answer.status().is_success(),
        at: std::time::Instant::now(),
    });
    shared.delay(Service::Twilio, &fault).await;
    answer
}

/// Posts a message's callbacks one after the other, each again while the router answers 503
/// (its send not recorded yet), as Twilio does with retries on.
async fn post_in_order(callbacks: Vec<StatusCallback>) {
    let client = reqwest::Client::new();
    for callback in callbacks {
        let post = || async {
            let posted = client
                .post(&callback.url)
                .header("x-twilio-signature", &callback.signature)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(callback.body())
                .send()
                .await;
            match posted {
                Ok(answer) if answer.status() == 503 => Err("503".to_string()),
                Ok(_) => Ok(()),
                Err(e) => Err(e.to_string()),
            }
        };
        if let Err(e) = crate::eventually::within(Duration::from_secs(10), post).await {
            eprintln!("fake Twilio: a status callback was not delivered: {e}");
        }
    }
}

/// Twilio's error answer: HTTP status, Twilio error code, message.
struct TwilioError(u16, u32, &'static str);

/// The message resource Twilio returns for an accepted message, or its error answer.
fn twilio_answer(
    shared: &Shared,
    account: &str,
    auth: &str,
    form: &[(String, String)],
    fault: &Option<Fault>,
) -> Result<Response, TwilioError> {
    let field = |name: &str| form.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    let credentials = auth
        .strip_prefix("Basic ")
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .and_then(|b| String::from_utf8(b).ok());
    match credentials.as_deref().and_then(|c| c.split_once(':')) {
        Some((sid, token)) if sid == account && !token.is_empty() => {}
        _ => return Err(TwilioError(401, 20003, "Authenticate")),
    }
    let (Some(to), Some(from)) = (field("To"), field("From")) else {
        return Err(TwilioError(400, 21604, "A 'To' phone number is required."));
    };
    if to.starts_with("whatsapp:") != from.starts_with("whatsapp:") {
        return Err(TwilioError(400, 63007, "Twilio could not find a Channel with the specified From address"));
    }
    let body = rendered_body(field("Body"), field("ContentSid"), field("ContentVariables"))?;
    match fault {
        Some(Fault::Status(400)) => {
            return Err(TwilioError(400, 21211, "The 'To' number is not a valid phone number."))
        }
        Some(Fault::Status(429)) => return Err(TwilioError(429, 20429, "Too Many Requests")),
        Some(Fault::Status(status)) => return Err(TwilioError(*status, 20500, "Internal Server Error")),
        Some(Fault::Oversized) => return Ok(oversized(StatusCode::CREATED)),
        _ => {}
    }
    let sid = format!("SM{:032x}", shared.next_id());
    if let (Some(url), Some(token)) = (field("StatusCallback"), credentials.as_deref().and_then(|c| c.split_once(':')))
    {
        shared.owe_callbacks(
            &url,
            token.1,
            [("MessageSid", sid.as_str()), ("AccountSid", account), ("From", &from), ("To", &to)],
            fault,
        );
    }
    Ok(json_response(
        201,
        json!({
            "sid": sid, "account_sid": account, "to": to, "from": from, "body": body,
            "status": "queued", "direction": "outbound-api", "num_segments": "1", "num_media": "0",
            "messaging_service_sid": null, "error_code": null, "error_message": null, "price": null,
            "api_version": "2010-04-01",
            "uri": format!("/2010-04-01/Accounts/{account}/Messages/{sid}.json"),
        }),
    ))
}

/// The text the recipient gets: the `Body`, or the Content template with its variables in
/// placeholder order, as Twilio renders them.
fn rendered_body(body: Option<String>, sid: Option<String>, variables: Option<String>) -> Result<String, TwilioError> {
    match (body, sid, variables) {
        (_, Some(sid), Some(variables)) => {
            if !sid.starts_with("HX") {
                return Err(TwilioError(400, 21655, "The ContentSid is invalid."));
            }
            let vars = serde_json::from_str::<Map<String, Value>>(&variables)
                .map_err(|_| TwilioError(400, 21656, "The ContentVariables Parameter is invalid."))?;
            let sorted: std::collections::BTreeMap<_, _> = vars.iter().collect();
            let values: Vec<&str> = sorted.values().map(|v| v.as_str().unwrap_or_default()).collect();
            Ok(format!("[{sid}] {}", values.join(" | ")))
        }
        (Some(body), None, _) if !body.is_empty() => Ok(body),
        _ => Err(TwilioError(400, 21602, "Message body is required.")),
    }
}

// ---- SendGrid v3 mail send ------------------------------------------------------------------

fn sendgrid_error(status: u16, message: &str, field: Option<&str>) -> Response {
    json_response(status, json!({"errors": [{"message": message, "field": field, "help": null}]}))
}

/// The fake client's system taking a company's event: its signature checked with the example
/// company's key ([`crate::environment::EVENTS_SIGNING_SECRET`]), the event kept.
async fn client_event(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    use multicomms_wire::client_events::{SIGNATURE_HEADER, SIGNATURE_TOLERANCE_SECONDS};
    let header = headers.get(SIGNATURE_HEADER).and_then(|v| v.to_str().ok()).unwrap_or("");
    let secret = crate::environment::EVENTS_SIGNING_SECRET.as_bytes();
    let now = multicomms_wire::timestamp::epoch_seconds();
    let verified =
        multicomms_runtime::shared::client_events::verify(secret, header, &body, now, SIGNATURE_TOLERANCE_SECONDS);
    let event: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if let Ok(mut events) = shared.client_events.lock() {
        events.push(json!({"verified": verified.is_ok(), "event": event}));
    }
    if verified.is_ok() {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::UNAUTHORIZED
    }
}

/// `GET /client/events`: what the fake client's system was posted.
async fn client_events(State(shared): State<Arc<Shared>>) -> axum::Json<Value> {
    axum::Json(Value::Array(shared.client_events.lock().map(|e| e.clone()).unwrap_or_default()))
}

async fn sendgrid(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let fault = shared.take_fault(Service::SendGrid);
    let auth = authorization(&headers);
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let mut recorded = Recorded {
        service: Service::SendGrid,
        path: "/v3/mail/send".into(),
        authorization: auth.clone(),
        form: vec![],
        json: request.clone(),
        accepted: false,
        at: std::time::Instant::now(),
    };
    let answer = (|| {
        if !auth.starts_with("Bearer ") || auth.len() <= "Bearer ".len() {
            return sendgrid_error(401, "The provided authorization grant is invalid, expired, or revoked", None);
        }
        if !request["personalizations"][0]["to"][0]["email"].is_string() {
            return sendgrid_error(400, "The to email is required.", Some("personalizations.0.to"));
        }
        if !request["from"]["email"].is_string() {
            return sendgrid_error(400, "The from email does not contain a valid address.", Some("from.email"));
        }
        if !request["template_id"].as_str().is_some_and(|t| t.starts_with("d-")) {
            return sendgrid_error(400, "The template_id must be a valid dynamic template id.", Some("template_id"));
        }
        if let Some(Fault::Status(status)) = fault {
            return sendgrid_error(status, "fault injected by the test", None);
        }
        recorded.accepted = true;
        let id = format!("{:022x}", shared.next_id());
        shared.owe_sendgrid_events(&request, &id, &fault);
        (StatusCode::ACCEPTED, [("x-message-id", id)]).into_response()
    })();
    shared.record(recorded);
    shared.delay(Service::SendGrid, &fault).await;
    answer
}
