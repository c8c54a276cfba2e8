//! The router as an axum application: `POST /initiate-conversation` (and its CORS preflight)
//! with the original's envelope, headers and status codes, plus what its API Gateway did (API
//! key, body limit, timeout); Twilio's inbound webhooks (`crate::replies::webhook`) when a public
//! base URL is configured; `/healthz`, `/readyz`, `/metrics`. [`AppState`] is built once,
//! by the binary and the tests alike.
use super::accept::{authorize, context_message};
use super::agents::{Credentials, Sessions};
use super::conversations::{Action, Asked, Desk, CONVERSATIONS_PATH};
use super::erasure::{EraseRequest, Erasure, ERASURE_PATH};
use super::error::{Rejected, RouterError};
use super::guards::{source_address, Idempotency, RateLimiter, UnverifiedSources};
use super::inbox::{INBOX_PATH, SESSION_PATH};
use super::metrics::Metrics;
use super::open_conversations::OpenConversations;
use super::queues::Queues;
use super::request::{self, ValidRequest};
use super::sendgrid_events::{Events, Signed};
use crate::replies::staging::Staging;
use crate::replies::webhook::{self, Webhook};
use crate::shared::client_events::ClientEvents;
use crate::shared::companies::Companies;
use crate::shared::conversations::ConversationStore;
use crate::shared::opt_outs::OptOuts;
use crate::shared::secrets::Secrets;
use crate::shared::senders::Senders;
use axum::body::Bytes;
use axum::extract::{rejection::BytesRejection, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri};
use axum::middleware::{from_fn_with_state, map_response, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, post};
use axum::Json;
use multicomms_service::http::{metrics_route, probe_routes, ConnectionLimits};
use multicomms_wire::delivery::{
    SENDGRID_EVENTS_PATH, SENDGRID_SIGNATURE_HEADER, SENDGRID_TIMESTAMP_HEADER, TWILIO_STATUS_PATH,
};
use multicomms_wire::timestamp::now;
use multicomms_wire::{ChannelKind, Naming};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// How the router behaves (its flags).
#[derive(Debug, Clone)]
pub struct RouterSettings {
    /// `metadata.router_version` of every context object.
    pub version: String,
    pub max_body_bytes: usize,
    /// The most request-body bytes held at once, across all connections: a request that would
    /// go over is answered 503 before its body is read, so the router's memory holds what it
    /// accepts whatever the number of connections (review r3, M3).
    pub body_budget_bytes: usize,
    /// Longest a request may take, body upload included (API Gateway's was 29 s).
    pub request_timeout: Duration,
    /// How long a company record is cached.
    pub company_cache: Duration,
    /// How long a queue message waits for others to share its SendMessageBatch call.
    pub batch_linger: Duration,
    /// How long a request id's first success is returned to retries.
    pub idempotency_window: Duration,
    /// The public URL prefix Twilio calls for the inbound webhooks; without it they are off.
    pub public_base_url: Option<String>,
    /// How long a Twilio auth token read for the webhooks is cached.
    pub secrets_cache: Duration,
    /// Webhook requests a source may send a minute that are not shown to come from Twilio;
    /// then 429 until the next minute, before any lookup (zero: no limit).
    pub unverified_per_minute: u32,
    /// The header an ingress in front sets to the client's address (its last value is used);
    /// without it, the connection's peer is the source.
    pub client_address_header: Option<axum::http::HeaderName>,
    /// Where an agent's messages go to Twilio (its API, or a fake in tests).
    pub twilio_base_url: String,
    /// The key inbox sessions are signed with, shared by every replica; without it each
    /// process signs with a key of its own (a session then holds on that replica only).
    pub session_key: Option<Vec<u8>>,
}

/// The longest an agent's message may take to reach Twilio (its lease lasts twice that). The
/// request may time out first: the send and its record go on in their own task.
const PERSON_SEND_TIMEOUT: Duration = Duration::from_secs(15);

/// What every request shares.
pub struct AppState {
    pub metrics: Arc<Metrics>,
    pub companies: Arc<Companies>,
    pub queues: Queues,
    pub limiter: RateLimiter,
    /// The companies' `concurrent_conversations`.
    pub open_conversations: OpenConversations,
    pub idempotency: Idempotency,
    /// Recipients who said STOP: no first message is queued for them.
    pub opt_outs: OptOuts,
    /// Twilio's inbound webhooks, when a public base URL is configured.
    pub replies: Option<Webhook>,
    /// The conversations and staged messages, for erasures.
    pub conversations: ConversationStore,
    pub staging: Staging,
    pub unverified: UnverifiedSources,
    pub settings: RouterSettings,
    /// [`RouterSettings::body_budget_bytes`], in KiB.
    pub bodies: Arc<tokio::sync::Semaphore>,
    /// The conversations API and the inbox's sessions.
    pub desk: Desk,
}

impl AppState {
    /// On the tables and queues `naming` names; queues missing now are looked up again later.
    pub async fn build(sdk: &aws_config::SdkConfig, naming: &Naming, settings: RouterSettings) -> Self {
        let metrics = Arc::new(Metrics::default());
        // libphonenumber reads its numbering plans on first use (0.5 s in a debug build): here,
        // not in the first request.
        let _ = crate::shared::phone::as_e164("+447835065013");
        let dynamodb = aws_sdk_dynamodb::Client::new(sdk);
        let opt_outs = OptOuts::new(dynamodb.clone(), naming.opt_outs_table());
        let companies = Arc::new(Companies::new(dynamodb.clone(), naming.company_data_table(), settings.company_cache));
        let sqs = aws_sdk_sqs::Client::new(sdk);
        let queues = Queues::resolve(sqs.clone(), naming, settings.batch_linger, metrics.batch_size.clone()).await;
        let events = Arc::new(ClientEvents::new(sqs.clone(), naming, metrics.client_events_not_queued.clone()));
        let replies = settings.public_base_url.clone().map(|public_base_url| Webhook {
            events: events.clone(),
            public_base_url,
            store: ConversationStore::new(dynamodb.clone(), naming.conversations_table()),
            // Read for requests not yet authenticated: a failed read is not repeated for 30 s.
            secrets: Secrets::new(
                aws_sdk_secretsmanager::Client::new(sdk),
                settings.secrets_cache,
                metrics.secrets_scheduled_for_deletion.clone(),
            )
            .remembering_failures_for(Duration::from_secs(30)),
            staging: Staging::new(sdk, naming.clone()),
            opt_outs: opt_outs.clone(),
            refreshed: Default::default(),
        });
        let desk = Desk {
            companies: companies.clone(),
            store: ConversationStore::new(dynamodb.clone(), naming.conversations_table()),
            sessions: Sessions::new(settings.session_key.as_deref()),
            secrets: Secrets::new(
                aws_sdk_secretsmanager::Client::new(sdk),
                settings.secrets_cache,
                metrics.secrets_scheduled_for_deletion.clone(),
            ),
            senders: Senders::new(
                reqwest::Client::builder().timeout(PERSON_SEND_TIMEOUT).build().unwrap_or_default(),
                settings.twilio_base_url.clone(),
                crate::shared::senders::SENDGRID_BASE_URL,
                settings.public_base_url.clone(),
            ),
            opt_outs: opt_outs.clone(),
            events,
            lease: PERSON_SEND_TIMEOUT * 2,
        };
        AppState {
            desk,
            metrics,
            companies,
            queues,
            limiter: RateLimiter::default(),
            open_conversations: OpenConversations::new(ConversationStore::new(
                dynamodb.clone(),
                naming.conversations_table(),
            )),
            opt_outs,
            idempotency: Idempotency::new(settings.idempotency_window),
            replies,
            conversations: ConversationStore::new(dynamodb.clone(), naming.conversations_table()),
            staging: Staging::new(sdk, naming.clone()),
            unverified: UnverifiedSources::new(settings.unverified_per_minute),
            bodies: Arc::new(tokio::sync::Semaphore::new(settings.body_budget_bytes.div_ceil(1024).max(1))),
            settings,
        }
    }
}

pub fn app(state: Arc<AppState>) -> axum::Router {
    let initiate = post(initiate)
        .layer(from_fn_with_state(state.clone(), within_timeout))
        .layer(from_fn_with_state(state.clone(), within_body_budget))
        .layer(from_fn_with_state(state.clone(), track_metrics))
        .options(|| async { StatusCode::OK })
        .layer(map_response(with_cors));
    // Ready means serving: a channel whose queue is not there yet refuses its own requests
    // (CONFIGURATION_ERROR), and a first install applies the router before any Channel.
    let probes = probe_routes(|| Ok(()));
    let twilio = |channel| {
        post(move |state, peer, uri, headers, body| inbound(state, peer, uri, headers, body, channel))
            .layer(from_fn_with_state(state.clone(), within_timeout))
            .layer(from_fn_with_state(state.clone(), within_body_budget))
    };
    let status_callback = post(status_callback)
        .layer(from_fn_with_state(state.clone(), within_timeout))
        .layer(from_fn_with_state(state.clone(), within_body_budget));
    let sendgrid_events = post(sendgrid_events)
        .layer(from_fn_with_state(state.clone(), within_timeout))
        .layer(from_fn_with_state(state.clone(), within_body_budget));
    let document = Arc::new(super::openapi::document(&state.settings.version, state.settings.max_body_bytes));
    let openapi = axum::routing::get(move || async move { Json(document.as_ref().clone()) });
    axum::Router::new()
        .route("/initiate-conversation", initiate)
        .route(super::openapi::PATH, openapi)
        .route(&webhook::path(ChannelKind::Whatsapp), twilio(ChannelKind::Whatsapp))
        .route(&webhook::path(ChannelKind::Sms), twilio(ChannelKind::Sms))
        .route(TWILIO_STATUS_PATH, status_callback)
        .route(ERASURE_PATH, delete(erase).layer(from_fn_with_state(state.clone(), within_timeout)))
        .route(&format!("{SENDGRID_EVENTS_PATH}/{{company_id}}/{{project_id}}"), sendgrid_events)
        .merge(people(&state))
        // Over the limit, the body extractor fails and the handler answers 413.
        .layer(axum::extract::DefaultBodyLimit::max(state.settings.max_body_bytes))
        .with_state(state)
        .merge(probes)
}

/// The conversations API and the inbox (see [`super::conversations`], [`super::inbox`]).
fn people(state: &Arc<AppState>) -> axum::Router<Arc<AppState>> {
    use axum::routing::get;
    let limited = |route: axum::routing::MethodRouter<Arc<AppState>>| {
        route
            .layer(from_fn_with_state(state.clone(), within_timeout))
            .layer(from_fn_with_state(state.clone(), within_body_budget))
    };
    let one = format!("{CONVERSATIONS_PATH}/{{id}}");
    let action = |action| limited(post(move |state, path, headers| act(state, path, headers, action)));
    axum::Router::new()
        .route(CONVERSATIONS_PATH, limited(get(list_conversations)))
        .route(&one, limited(get(read_conversation)))
        .route(&format!("{one}/messages"), limited(post(write_message)))
        .route(&format!("{one}/take-over"), action(Action::TakeOver))
        .route(&format!("{one}/give-back"), action(Action::GiveBack))
        .route(&format!("{one}/close"), action(Action::Close))
        .route(INBOX_PATH, get(|| async { super::inbox::asset("") }))
        .route(
            &format!("{INBOX_PATH}/{{file}}"),
            get(|axum::extract::Path(file): axum::extract::Path<String>| async move { super::inbox::asset(&file) }),
        )
        .route(
            SESSION_PATH,
            limited(
                post(sign_in).get(session).delete(|headers: HeaderMap| async move { super::inbox::sign_out(&headers) }),
            ),
        )
}

type PathIds = axum::extract::Path<(String, String)>;
type PathOne = axum::extract::Path<(String, String, String)>;

/// The catalogue's envelope for the API's refusals (no request id: a fresh one to quote).
fn refused(error: RouterError) -> Response {
    Rejected { error, request_id: uuid::Uuid::new_v4().to_string() }.into_response()
}

fn answered(result: Result<serde_json::Value, RouterError>) -> Response {
    match result {
        Ok(value) => Json(value).into_response(),
        Err(error) => refused(error),
    }
}

async fn list_conversations(
    State(state): State<Arc<AppState>>,
    axum::extract::Path((company_id, project_id)): PathIds,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
    headers: HeaderMap,
) -> Response {
    let asked = Asked { company_id: &company_id, project_id: &project_id, credentials: Credentials::of(&headers) };
    answered(state.desk.list(asked, query.as_deref()).await)
}

async fn read_conversation(
    State(state): State<Arc<AppState>>,
    axum::extract::Path((company_id, project_id, id)): PathOne,
    headers: HeaderMap,
) -> Response {
    let asked = Asked { company_id: &company_id, project_id: &project_id, credentials: Credentials::of(&headers) };
    answered(state.desk.read(asked, &id).await)
}

async fn write_message(
    State(state): State<Arc<AppState>>,
    axum::extract::Path((company_id, project_id, id)): PathOne,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    // Its own task: the request timeout (or the agent going away) must not cut the work off
    // between the send claim and the record of what was sent.
    let written = tokio::spawn(async move {
        let asked = Asked { company_id: &company_id, project_id: &project_id, credentials: Credentials::of(&headers) };
        state.desk.write(asked, &id, &body).await
    });
    answered(written.await.unwrap_or_else(|e| {
        tracing::error!(error = %e, "the agent's message task failed");
        Err(RouterError::internal())
    }))
}

async fn act(
    State(state): State<Arc<AppState>>,
    axum::extract::Path((company_id, project_id, id)): PathOne,
    headers: HeaderMap,
    action: Action,
) -> Response {
    let asked = Asked { company_id: &company_id, project_id: &project_id, credentials: Credentials::of(&headers) };
    answered(state.desk.act(asked, &id, action).await)
}

async fn sign_in(State(state): State<Arc<AppState>>, headers: HeaderMap, body: Bytes) -> Response {
    match super::inbox::sign_in(&state.desk.companies, &state.desk.sessions, &headers, &body).await {
        Ok(response) => response,
        Err(error) => refused(error),
    }
}

async fn session(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    answered(super::inbox::current(&state.desk.companies, &state.desk.sessions, &headers).await)
}

/// `/metrics`, served on a listener of its own: the API's listener is public (Twilio must reach
/// the webhooks), and the metrics tell traffic volumes and outcomes (review r3, L9).
pub fn metrics(state: &AppState) -> axum::Router {
    let metrics = state.metrics.clone();
    metrics_route(move || metrics.render())
}

/// Serves until `shutdown` resolves, then stops accepting and lets every request in flight
/// finish; each awaits its own SendMessageBatch, so no accepted message is left unsent. Idle
/// connections are closed at once, slow ones after `limits.header_timeout`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()>,
) {
    multicomms_service::http::serve(listener, app(state), limits, shutdown).await
}

/// Every answer of the route, counted by status and error code (504s from the timeout too).
async fn track_metrics(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let response = next.run(request).await;
    let code = response.extensions().get::<super::error::ErrorCode>().map_or("", |c| c.as_str());
    state.metrics.observe(response.status().as_u16(), code, started.elapsed());
    response
}

/// The request timeout, over the whole exchange (a slow upload included). A request cut off
/// while its message is being sent may still be queued; a retry with the same request id is
/// then dropped by the processor's idempotent conversation record.
async fn within_timeout(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let limit = state.settings.request_timeout;
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => Rejected { error: RouterError::request_timeout(limit), request_id: String::new() }.into_response(),
    }
}

/// Holds the request's share of the body budget (its declared length, or the most it may send)
/// while it is served; with none left, 503 before a byte of the body is read.
async fn within_body_budget(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let max = state.settings.max_body_bytes;
    let declared = request.headers().get(axum::http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok());
    let bytes = declared.and_then(|v| v.parse::<usize>().ok()).unwrap_or(max).min(max);
    let kib = u32::try_from(bytes.div_ceil(1024).max(1)).unwrap_or(u32::MAX);
    let Ok(_held) = state.bodies.clone().try_acquire_many_owned(kib) else {
        let mut response = if request.uri().path().starts_with("/webhooks/") {
            (StatusCode::SERVICE_UNAVAILABLE, [("content-type", "text/xml")], webhook::EMPTY_TWIML).into_response()
        } else {
            Rejected { error: RouterError::server_busy(), request_id: String::new() }.into_response()
        };
        // The body is left unread, so the connection cannot carry another request.
        response.headers_mut().insert(axum::http::header::CONNECTION, HeaderValue::from_static("close"));
        return response;
    };
    next.run(request).await
}

async fn with_cors(mut response: Response) -> Response {
    const CORS: [(&str, &str); 3] = [
        ("access-control-allow-origin", "*"),
        ("access-control-allow-headers", "Content-Type,X-Amz-Date,Authorization,X-Api-Key,X-Amz-Security-Token"),
        ("access-control-allow-methods", "OPTIONS,POST"),
    ];
    for (name, value) in CORS {
        response.headers_mut().insert(name, HeaderValue::from_static(value));
    }
    response
}

/// Twilio's inbound webhook for `channel` (see [`crate::replies::webhook`]).
async fn inbound(
    State(state): State<Arc<AppState>>,
    peer: Option<axum::Extension<axum::extract::ConnectInfo<std::net::SocketAddr>>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
    channel: ChannelKind,
) -> Response {
    let Some(webhook) = &state.replies else { return StatusCode::NOT_FOUND.into_response() };
    let source = match source_within_limit(&state, peer, &headers) {
        Ok(source) => source,
        Err(retry_after) => {
            state.metrics.webhook(channel.as_str(), webhook::Acknowledged::Throttled.label());
            return throttled(retry_after);
        }
    };
    let (url, signature) = signed_url(webhook, &uri, &headers);
    // In this request's task: a caller who leaves stops it (it wrote nothing yet).
    let outcome = match webhook::authenticate(webhook, channel, &url, &signature, &body).await {
        // Its own task: the request timeout (or Twilio going away) must not cut the work off
        // between taking the trigger lock and sending the trigger or giving the lock back.
        Ok(authenticated) => tokio::spawn({
            let state = state.clone();
            async move {
                let Some(webhook) = &state.replies else {
                    return Ok(webhook::Acknowledged::Refused(crate::replies::refusal::Refusal::WebhookOff));
                };
                webhook::dispatch(&state.companies, webhook, authenticated).await
            }
        })
        .await
        .unwrap_or_else(|e| Err(crate::shared::failure::Failure::Transient(format!("the webhook task failed: {e}")))),
        Err(answered) => {
            if let Ok(webhook::Acknowledged::Unverified(_)) = answered {
                state.unverified.count(source, Instant::now());
            }
            answered
        }
    };
    match outcome {
        Ok(acknowledged) => {
            state.metrics.webhook(channel.as_str(), acknowledged.label());
            let status = StatusCode::from_u16(acknowledged.status()).unwrap_or(StatusCode::OK);
            (status, [("content-type", "text/xml")], acknowledged.twiml()).into_response()
        }
        Err(crate::shared::failure::Failure::Permanent(why)) => {
            state.metrics.webhook(channel.as_str(), "INTERNAL_ERROR");
            tracing::error!(error = %why, "inbound message not taken, and a retry would fail the same way");
            ([("content-type", "text/xml")], webhook::EMPTY_TWIML).into_response()
        }
        Err(failure) => {
            state.metrics.webhook(channel.as_str(), "transient_error");
            tracing::warn!(error = %failure, "inbound message not taken; Twilio may retry");
            (StatusCode::SERVICE_UNAVAILABLE, [("content-type", "text/xml")], webhook::EMPTY_TWIML).into_response()
        }
    }
}

/// The request's source address, unless that source sent too many unverified webhook requests
/// this minute: then how long until it may again.
fn source_within_limit(
    state: &AppState,
    peer: Option<axum::Extension<axum::extract::ConnectInfo<std::net::SocketAddr>>>,
    headers: &HeaderMap,
) -> Result<std::net::IpAddr, Duration> {
    let peer = peer.map(|axum::Extension(axum::extract::ConnectInfo(address))| address.ip());
    let source = source_address(peer, state.settings.client_address_header.as_ref(), headers);
    match state.unverified.throttled(source, Instant::now()) {
        None => Ok(source),
        Some(retry_after) => Err(retry_after),
    }
}

/// The 429 a throttled source gets, before any lookup.
fn throttled(retry_after: Duration) -> Response {
    let headers = [("content-type", "text/xml".to_string()), ("retry-after", retry_after.as_secs().max(1).to_string())];
    (StatusCode::TOO_MANY_REQUESTS, headers, webhook::EMPTY_TWIML).into_response()
}

/// The public URL Twilio called (query included: its signature covers it) and the signature.
fn signed_url(webhook: &Webhook, uri: &Uri, headers: &HeaderMap) -> (String, String) {
    let path = uri.path_and_query().map_or(uri.path(), |p| p.as_str());
    let url = format!("{}{path}", webhook.public_base_url.trim_end_matches('/'));
    let signature = headers.get("x-twilio-signature").and_then(|v| v.to_str().ok()).unwrap_or("");
    (url, signature.to_string())
}

/// Twilio's message status callbacks (see [`super::delivery`]).
async fn status_callback(
    State(state): State<Arc<AppState>>,
    peer: Option<axum::Extension<axum::extract::ConnectInfo<std::net::SocketAddr>>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(webhook) = &state.replies else { return StatusCode::NOT_FOUND.into_response() };
    let source = match source_within_limit(&state, peer, &headers) {
        Ok(source) => source,
        Err(retry_after) => {
            state.metrics.status_callback("unknown", webhook::Acknowledged::Throttled.label());
            return throttled(retry_after);
        }
    };
    let (url, signature) = signed_url(webhook, &uri, &headers);
    let outcome = super::delivery::record(&state.companies, webhook, &url, &signature, &body).await;
    let status = match outcome {
        Ok(callback) => {
            if let super::delivery::Callback::Unverified(_) = callback {
                state.unverified.count(source, Instant::now());
            }
            let channel = match &callback {
                super::delivery::Callback::Recorded(channel, status) => {
                    state.metrics.delivery_status(channel.as_str(), status.as_str());
                    channel.as_str()
                }
                _ => "unknown",
            };
            state.metrics.status_callback(channel, callback.label());
            StatusCode::from_u16(callback.status()).unwrap_or(StatusCode::OK)
        }
        Err(failure) => {
            state.metrics.status_callback("unknown", "transient_error");
            tracing::warn!(error = %failure, "status callback not recorded; Twilio may retry");
            StatusCode::SERVICE_UNAVAILABLE
        }
    };
    (status, [("content-type", "text/xml")], webhook::EMPTY_TWIML).into_response()
}

/// A company's SendGrid Event Webhook (see [`super::sendgrid_events`]).
async fn sendgrid_events(
    State(state): State<Arc<AppState>>,
    axum::extract::Path((company_id, project_id)): axum::extract::Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("");
    let events = Events {
        companies: &state.companies,
        store: &state.conversations,
        opt_outs: &state.opt_outs,
        client_events: &state.desk.events,
    };
    let signed = Signed {
        company_id: &company_id,
        project_id: &project_id,
        timestamp: header(SENDGRID_TIMESTAMP_HEADER),
        signature: header(SENDGRID_SIGNATURE_HEADER),
        body: &body,
    };
    let status = match events.take(signed).await {
        Ok(taken) => {
            for (outcome, status) in &taken.outcomes {
                state.metrics.status_callback("email", outcome);
                if let Some(status) = status {
                    state.metrics.delivery_status("email", status.as_str());
                }
            }
            StatusCode::from_u16(taken.status).unwrap_or(StatusCode::OK)
        }
        Err(failure) => {
            state.metrics.status_callback("email", "transient_error");
            tracing::warn!(error = %failure, "SendGrid events not recorded; SendGrid retries");
            StatusCode::SERVICE_UNAVAILABLE
        }
    };
    status.into_response()
}

/// `DELETE /recipients/{channel}/{address}` (see [`super::erasure`]).
async fn erase(
    State(state): State<Arc<AppState>>,
    axum::extract::Path((channel, address)): axum::extract::Path<(String, String)>,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
    headers: HeaderMap,
) -> Response {
    let erasure = Erasure {
        companies: &state.companies,
        store: &state.conversations,
        staging: &state.staging,
        opt_outs: &state.opt_outs,
    };
    let api_key = headers.get("x-api-key").and_then(|v| v.to_str().ok());
    let request = EraseRequest { channel: &channel, address: &address, query: query.as_deref(), api_key };
    match erasure.erase(request).await {
        Ok(answer) => Json(answer).into_response(),
        Err(error) => Rejected { error, request_id: uuid::Uuid::new_v4().to_string() }.into_response(),
    }
}

async fn initiate(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Rejected> {
    let fallback_id = uuid::Uuid::new_v4().to_string();
    let reject = |error| Rejected { error, request_id: fallback_id.clone() };
    let body = match body {
        Ok(body) => body,
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            // The rest of the upload is left unread, so this connection cannot carry another
            // request: say so, or a keep-alive client learns it on its next request.
            let mut response = reject(RouterError::payload_too_large(state.settings.max_body_bytes)).into_response();
            response.headers_mut().insert(axum::http::header::CONNECTION, HeaderValue::from_static("close"));
            return Ok(response);
        }
        Err(_) => return Err(reject(RouterError::invalid_request())),
    };
    // Unauthenticated traffic is turned away before any parsing or lookup.
    let api_key = headers.get("x-api-key").and_then(|v| v.to_str().ok()).filter(|k| !k.is_empty());
    let api_key = api_key.ok_or_else(|| reject(RouterError::missing_api_key()))?;
    let request = request::validate(&body, &fallback_id)?;
    let request_id = request.request_id.clone();
    accept(&state, api_key, request)
        .await
        .map(|accepted| Json(accepted).into_response())
        .map_err(|error| Rejected { error, request_id })
}

/// A phone recipient's number in E.164 (read in the company's region when it has no country
/// code), in the request and in the body that travels on; an email address as it came.
fn in_e164(mut request: ValidRequest, region: Option<&str>) -> Result<ValidRequest, RouterError> {
    if request.channel == ChannelKind::Email {
        return Ok(request);
    }
    let field = request.channel.recipient_field();
    let number = crate::shared::phone::e164(&request.recipient, region)
        .map_err(|why| RouterError::unreadable_number(field, &why))?;
    request.body["recipient_data"][field] = serde_json::Value::String(number.clone());
    request.recipient = number;
    Ok(request)
}

/// The company and its key, the gates, then — once per request id — the rate limit and the send.
/// Returns the success envelope.
async fn accept(state: &AppState, api_key: &str, request: ValidRequest) -> Result<serde_json::Value, RouterError> {
    let found = state.companies.get(&request.company_id, &request.project_id).await?;
    let company = authorize(found.as_deref(), api_key, &request)?;
    let request = in_e164(request, company.record.default_region.as_deref())?;
    let opted_out = state.opt_outs.opted_out(&request.company_id, request.channel, &request.recipient).await;
    if opted_out.map_err(|e| {
        tracing::error!(error = %e, "the opt-outs table was not read");
        RouterError::database_error()
    })? {
        return Err(RouterError::recipient_opted_out(request.channel.as_str()));
    }
    if !state.queues.is_configured(request.channel) {
        return Err(RouterError::queue_not_configured(request.channel.as_str()));
    }
    let ids = (request.company_id.clone(), request.project_id.clone(), request.request_id.clone());
    let message = context_message(request, company, &state.settings.version, now())?;
    let limits = &company.record.rate_limits;
    let (company_id, project_id, request_id) = &ids;
    state
        .idempotency
        .once(ids.clone(), || async {
            state.limiter.admit(company_id, project_id, limits, SystemTime::now())?;
            state.open_conversations.admit(&company.record, Instant::now()).await?;
            state.queues.send(message.channel, message.body, message.attributes).await?;
            Ok(serde_json::json!({
                "status": "success",
                "request_id": request_id,
                "message": "Request accepted and queued for processing",
                "queue_timestamp": now(),
            }))
        })
        .await
}
