//! `POST /initiate-conversation` (and its CORS preflight): the original's envelope, headers and
//! status codes, plus what its API Gateway did (API key, body limit).
use super::companies::Companies;
use super::error::RouterError;
use super::guards::{Idempotency, RateLimiter};
use super::metrics::Metrics;
use super::queues::Queues;
use super::request;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use multicomms_wire::context::{self, attributes, ContextObject, ConversationData, Metadata};
use multicomms_wire::conversation::ConversationStatus;
use multicomms_wire::timestamp::now;
use multicomms_wire::ChannelKind;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

pub struct Router {
    pub metrics: Arc<Metrics>,
    pub companies: Companies,
    pub queues: Queues,
    pub limiter: RateLimiter,
    pub idempotency: Idempotency,
    /// `metadata.router_version` of every context object.
    pub version: String,
    pub max_body_bytes: usize,
    /// Longest a request may take, body upload included (API Gateway's was 29 s).
    pub request_timeout: Duration,
}

pub fn app(router: Arc<Router>) -> axum::Router {
    let limit = router.max_body_bytes;
    axum::Router::new()
        .route(
            "/initiate-conversation",
            post(initiate)
                .options(preflight)
                .layer(axum::middleware::from_fn_with_state(router.clone(), within_timeout)),
        )
        .route("/healthz", axum::routing::get(|| async { "ok" }))
        .route(
            "/readyz",
            axum::routing::get(|State(router): State<Arc<Router>>| async move {
                if router.queues.any_configured() {
                    (StatusCode::OK, "ready")
                } else {
                    (StatusCode::SERVICE_UNAVAILABLE, "no channel queue found")
                }
            }),
        )
        .route(
            "/metrics",
            axum::routing::get(|State(router): State<Arc<Router>>| async move { router.metrics.render() }),
        )
        // Over the limit, the body extractor fails and `too_large` answers instead.
        .layer(axum::extract::DefaultBodyLimit::max(limit))
        .with_state(router)
}

/// Serves until `shutdown` resolves, then stops accepting and lets every request in flight
/// finish; each awaits its own SendMessageBatch, so no accepted message is left unsent. Idle
/// connections are closed at once, slow ones after `limits.header_timeout`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Arc<Router>,
    limits: multicomms_service::http::ConnectionLimits,
    shutdown: impl Future<Output = ()>,
) {
    multicomms_service::http::serve(listener, app(router), limits, shutdown).await
}

/// The request timeout, over the whole exchange (a slow upload included). A request cut off
/// while its message is being sent may still be queued; a retry with the same request id is
/// then dropped by the processor's idempotent conversation record.
async fn within_timeout(
    State(router): State<Arc<Router>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let started = std::time::Instant::now();
    match tokio::time::timeout(router.request_timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            let error = RouterError::request_timeout(router.request_timeout);
            router.metrics.observe(error.status, error.code, started.elapsed());
            error_response(&error, "")
        }
    }
}

const CORS: [(&str, &str); 3] = [
    ("access-control-allow-origin", "*"),
    ("access-control-allow-headers", "Content-Type,X-Amz-Date,Authorization,X-Api-Key,X-Amz-Security-Token"),
    ("access-control-allow-methods", "OPTIONS,POST"),
];

fn with_cors(mut response: Response) -> Response {
    for (name, value) in CORS {
        response.headers_mut().insert(name, HeaderValue::from_static(value));
    }
    response
}

async fn preflight() -> Response {
    with_cors(StatusCode::OK.into_response())
}

fn json(status: StatusCode, body: serde_json::Value) -> Response {
    let mut response = (status, body.to_string()).into_response();
    response.headers_mut().insert("content-type", HeaderValue::from_static("application/json"));
    with_cors(response)
}

/// The error envelope: exactly `status`, `error_code`, `message`, `request_id`.
pub fn error_response(error: &RouterError, request_id: &str) -> Response {
    let status = StatusCode::from_u16(error.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let request_id = if request_id.is_empty() { "unknown" } else { request_id };
    let mut response = json(
        status,
        serde_json::json!({"status": "error", "error_code": error.code, "message": error.message, "request_id": request_id}),
    );
    if let Some(seconds) = error.retry_after.and_then(|s| HeaderValue::from_str(&s.to_string()).ok()) {
        response.headers_mut().insert("retry-after", seconds);
    }
    response
}

async fn initiate(
    State(router): State<Arc<Router>>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Response {
    let started = std::time::Instant::now();
    let (response, status, code) = match handle(&router, &headers, body).await {
        Ok(envelope) => (json(StatusCode::OK, envelope), 200, ""),
        Err((error, request_id)) => (error_response(&error, &request_id), error.status, error.code),
    };
    router.metrics.observe(status, code, started.elapsed());
    response
}

/// The success envelope, or the error with the request id to echo.
async fn handle(
    router: &Router,
    headers: &HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<serde_json::Value, (RouterError, String)> {
    let fallback_id = uuid::Uuid::new_v4().to_string();
    let body = match body {
        Ok(body) => body,
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return Err((RouterError::payload_too_large(router.max_body_bytes), fallback_id))
        }
        Err(_) => return Err((RouterError::invalid_request(), fallback_id)),
    };
    // Unauthenticated traffic is turned away before any parsing or lookup.
    let Some(api_key) = headers.get("x-api-key").and_then(|v| v.to_str().ok()).filter(|k| !k.is_empty()) else {
        return Err((RouterError::missing_api_key(), fallback_id));
    };
    let valid = request::validate(&body, &fallback_id).map_err(|rejected| (rejected.error, rejected.request_id))?;
    let request_id = valid.request_id.clone();
    accept(router, api_key, valid).await.map_err(|error| (error, request_id))
}

/// Steps 7–11 of the original, with the API key check where API Gateway's used to be, then
/// consent, and — once per request id — the rate limit and the send. Returns the success envelope.
async fn accept(
    router: &Router,
    api_key: &str,
    request: request::ValidRequest,
) -> Result<serde_json::Value, RouterError> {
    // An unknown company answers exactly as a wrong key does, so a caller without a valid key
    // cannot tell which company ids exist.
    let company = router.companies.get(&request.company_id, &request.project_id).await?;
    let key_matches = company.as_ref().and_then(|c| c.record.api_key_hash.as_deref()).is_some_and(|stored| {
        use subtle::ConstantTimeEq;
        let offered = multicomms_wire::company::api_key_hash(api_key);
        bool::from(offered.as_bytes().ct_eq(stored.as_bytes()))
    });
    let Some(company) = company.filter(|_| key_matches) else {
        return Err(RouterError::invalid_api_key());
    };
    let record = &company.record;
    if !record.is_active() {
        return Err(RouterError::project_inactive());
    }
    if !record.allowed_channels.contains(&request.channel) {
        return Err(RouterError::channel_not_allowed(request.channel.as_str()));
    }
    if !request.comms_consent && !record.send_without_consent {
        return Err(RouterError::consent_required());
    }
    if !router.queues.is_configured(request.channel) {
        return Err(RouterError::queue_not_configured(request.channel.as_str()));
    }
    let conversation_id = context::conversation_id(
        &request.company_id,
        &request.project_id,
        &request.request_id,
        request.channel,
        &record.channel_config,
    );
    let context = ContextObject {
        frontend_payload: request.body,
        company_data_payload: company.payload.clone(),
        conversation_data: ConversationData {
            conversation_id: conversation_id.clone(),
            conversation_status: ConversationStatus::Initiated,
        },
        metadata: Metadata { router_version: router.version.clone() },
    };
    let body = serde_json::to_string(&context).map_err(|_| RouterError::queue_error())?;
    let recipient_attribute = match request.channel {
        ChannelKind::Whatsapp | ChannelKind::Sms => attributes::RECIPIENT_TEL,
        ChannelKind::Email => attributes::RECIPIENT_EMAIL,
    };
    let message_attributes = vec![
        (attributes::CHANNEL_METHOD, request.channel.as_str().to_string()),
        (attributes::CONVERSATION_ID, conversation_id),
        (attributes::ROUTER_TIMESTAMP, now()),
        (recipient_attribute, request.recipient),
    ];
    let key = (request.company_id.clone(), request.project_id.clone(), request.request_id.clone());
    router
        .idempotency
        .once(key, || async {
            router.limiter.admit(&request.company_id, &request.project_id, &record.rate_limits, SystemTime::now())?;
            router.queues.send(request.channel, body, message_attributes).await?;
            Ok(serde_json::json!({
                "status": "success",
                "request_id": request.request_id,
                "message": "Request accepted and queued for processing",
                "queue_timestamp": now(),
            }))
        })
        .await
}
