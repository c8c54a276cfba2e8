//! The router's error catalogue (spec template-sender §1.5): every code it answers with, its HTTP
//! status, and messages in the original's wording, plus the codes this router adds where API
//! Gateway used to answer (API key, body size, timeout). [`Rejected`] is an error with the
//! request id to echo; as a response it is the original's four-key envelope.
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use std::fmt;

/// Defines [`ErrorCode`] from one table: variant, `error_code`, HTTP status.
macro_rules! error_codes {
    ($($variant:ident => $code:literal, $status:ident;)*) => {
        /// Every error code of the router.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorCode {
            $($variant,)*
        }

        impl ErrorCode {
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant,)*];

            /// The `error_code` of the envelope.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $code,)*
                }
            }

            pub fn status(self) -> StatusCode {
                match self {
                    $(ErrorCode::$variant => StatusCode::$status,)*
                }
            }
        }
    };
}

error_codes! {
    InvalidRequest => "INVALID_REQUEST", BAD_REQUEST;
    MissingIdentifiers => "MISSING_IDENTIFIERS", BAD_REQUEST;
    InvalidCompanyDataType => "INVALID_COMPANY_DATA_TYPE", BAD_REQUEST;
    MissingRecipientData => "MISSING_RECIPIENT_DATA", BAD_REQUEST;
    InvalidRecipientDataType => "INVALID_RECIPIENT_DATA_TYPE", BAD_REQUEST;
    MissingRequestData => "MISSING_REQUEST_DATA", BAD_REQUEST;
    InvalidRequestDataType => "INVALID_REQUEST_DATA_TYPE", BAD_REQUEST;
    MissingRequestId => "MISSING_REQUEST_ID", BAD_REQUEST;
    InvalidRequestIdFormat => "INVALID_REQUEST_ID_FORMAT", BAD_REQUEST;
    MissingChannelMethod => "MISSING_CHANNEL_METHOD", BAD_REQUEST;
    InvalidChannelMethodFormat => "INVALID_CHANNEL_METHOD_FORMAT", BAD_REQUEST;
    MissingInitialRequestTimestamp => "MISSING_INITIAL_REQUEST_TIMESTAMP", BAD_REQUEST;
    InvalidInitialRequestTimestampFormat => "INVALID_INITIAL_REQUEST_TIMESTAMP_FORMAT", BAD_REQUEST;
    InvalidRequestId => "INVALID_REQUEST_ID", BAD_REQUEST;
    UnsupportedChannel => "UNSUPPORTED_CHANNEL", BAD_REQUEST;
    InvalidTimestamp => "INVALID_TIMESTAMP", BAD_REQUEST;
    MissingRecipientTel => "MISSING_RECIPIENT_TEL", BAD_REQUEST;
    InvalidRecipientTel => "INVALID_RECIPIENT_TEL", BAD_REQUEST;
    MissingRecipientEmail => "MISSING_RECIPIENT_EMAIL", BAD_REQUEST;
    InvalidRecipientEmail => "INVALID_RECIPIENT_EMAIL", BAD_REQUEST;
    MissingCommsConsent => "MISSING_COMMS_CONSENT", BAD_REQUEST;
    InvalidCommsConsentType => "INVALID_COMMS_CONSENT_TYPE", BAD_REQUEST;
    CommsConsentRequired => "COMMS_CONSENT_REQUIRED", BAD_REQUEST;
    PayloadTooLarge => "PAYLOAD_TOO_LARGE", PAYLOAD_TOO_LARGE;
    MissingApiKey => "MISSING_API_KEY", UNAUTHORIZED;
    InvalidApiKey => "INVALID_API_KEY", FORBIDDEN;
    ProjectInactive => "PROJECT_INACTIVE", FORBIDDEN;
    ChannelNotAllowed => "CHANNEL_NOT_ALLOWED", FORBIDDEN;
    RecipientOptedOut => "RECIPIENT_OPTED_OUT", CONFLICT;
    RateLimitExceeded => "RATE_LIMIT_EXCEEDED", TOO_MANY_REQUESTS;
    ConcurrentConversationsExceeded => "CONCURRENT_CONVERSATIONS_EXCEEDED", TOO_MANY_REQUESTS;
    MissingAgentCredentials => "MISSING_AGENT_CREDENTIALS", UNAUTHORIZED;
    InvalidAgentToken => "INVALID_AGENT_TOKEN", FORBIDDEN;
    InvalidSession => "INVALID_SESSION", UNAUTHORIZED;
    CsrfTokenInvalid => "CSRF_TOKEN_INVALID", FORBIDDEN;
    ConversationNotFound => "CONVERSATION_NOT_FOUND", NOT_FOUND;
    InvalidConversationQuery => "INVALID_CONVERSATION_QUERY", BAD_REQUEST;
    InvalidMessage => "INVALID_MESSAGE", BAD_REQUEST;
    AiIsAnswering => "AI_IS_ANSWERING", CONFLICT;
    ConversationClosed => "CONVERSATION_CLOSED", CONFLICT;
    ConversationBusy => "CONVERSATION_BUSY", CONFLICT;
    NotHandedToPerson => "NOT_HANDED_TO_PERSON", CONFLICT;
    WhatsappWindowClosed => "WHATSAPP_WINDOW_CLOSED", CONFLICT;
    ReplyChannelUnsupported => "REPLY_CHANNEL_UNSUPPORTED", UNPROCESSABLE_ENTITY;
    SendFailed => "SEND_FAILED", BAD_GATEWAY;
    SendOutcomeUnknown => "SEND_OUTCOME_UNKNOWN", BAD_GATEWAY;
    RequestTimeout => "REQUEST_TIMEOUT", GATEWAY_TIMEOUT;
    ServerBusy => "SERVER_BUSY", SERVICE_UNAVAILABLE;
    DatabaseError => "DATABASE_ERROR", INTERNAL_SERVER_ERROR;
    ConfigurationError => "CONFIGURATION_ERROR", INTERNAL_SERVER_ERROR;
    QueueError => "QUEUE_ERROR", INTERNAL_SERVER_ERROR;
    InternalError => "INTERNAL_ERROR", INTERNAL_SERVER_ERROR;
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouterError {
    pub code: ErrorCode,
    pub message: String,
    /// Seconds for a `Retry-After` header.
    pub retry_after: Option<u64>,
}

impl RouterError {
    fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        RouterError { code, message: message.into(), retry_after: None }
    }

    pub fn status(&self) -> StatusCode {
        self.code.status()
    }

    pub fn invalid_request() -> Self {
        Self::new(ErrorCode::InvalidRequest, "Invalid or missing request body")
    }
    pub fn missing_identifiers() -> Self {
        Self::new(ErrorCode::MissingIdentifiers, "company_id and project_id are required in company_data")
    }
    pub fn missing_query_identifiers() -> Self {
        Self::new(ErrorCode::MissingIdentifiers, "company_id and project_id are required as query parameters")
    }
    /// `section` is `company_data`, `recipient_data` or `request_data`.
    pub fn missing_section(code: ErrorCode, section: &str) -> Self {
        Self::new(code, format!("'{section}' section is required"))
    }
    pub fn section_type(code: ErrorCode, section: &str) -> Self {
        Self::new(code, format!("'{section}' must be a dictionary"))
    }
    pub fn missing_field(code: ErrorCode, field: &str) -> Self {
        Self::new(code, format!("'{field}' is required in request_data"))
    }
    pub fn field_format(code: ErrorCode, field: &str) -> Self {
        Self::new(code, format!("'{field}' must be a non-empty string"))
    }
    pub fn invalid_request_id() -> Self {
        Self::new(ErrorCode::InvalidRequestId, "request_id must be a valid UUID v4 string")
    }
    pub fn unsupported_channel(sent: &str) -> Self {
        Self::new(
            ErrorCode::UnsupportedChannel,
            format!("Channel method '{sent}' is not supported. Must be one of: ['whatsapp', 'email', 'sms']"),
        )
    }
    pub fn invalid_timestamp() -> Self {
        Self::new(
            ErrorCode::InvalidTimestamp,
            "initial_request_timestamp must be a valid ISO 8601 string (e.g., YYYY-MM-DDTHH:MM:SSZ or YYYY-MM-DDTHH:MM:SS+00:00)",
        )
    }
    pub fn missing_recipient(code: ErrorCode, channel: &str, field: &str) -> Self {
        Self::new(code, format!("{channel} channel requires '{field}' in recipient_data"))
    }
    pub fn invalid_recipient(code: ErrorCode, field: &str) -> Self {
        Self::new(code, format!("'{field}' must be a non-empty string"))
    }
    pub fn unreadable_number(field: &str, why: &str) -> Self {
        Self::new(ErrorCode::InvalidRecipientTel, format!("'{field}' {why}"))
    }
    pub fn missing_consent() -> Self {
        Self::new(ErrorCode::MissingCommsConsent, "'comms_consent' is required in recipient_data")
    }
    pub fn consent_type() -> Self {
        Self::new(ErrorCode::InvalidCommsConsentType, "'comms_consent' must be a boolean (true or false)")
    }
    pub fn project_inactive() -> Self {
        Self::new(ErrorCode::ProjectInactive, "Project is not active")
    }
    pub fn channel_not_allowed(channel: &str) -> Self {
        Self::new(ErrorCode::ChannelNotAllowed, format!("Channel '{channel}' is not permitted for this project."))
    }
    pub fn recipient_opted_out(channel: &str) -> Self {
        Self::new(
            ErrorCode::RecipientOptedOut,
            format!("The recipient has opted out of this company's messages on {channel}."),
        )
    }
    pub fn database_error() -> Self {
        Self::new(ErrorCode::DatabaseError, "Failed to access the database")
    }
    pub fn queue_not_configured(channel: &str) -> Self {
        Self::new(ErrorCode::ConfigurationError, format!("Processing queue for channel '{channel}' is not configured."))
    }
    pub fn queue_error() -> Self {
        Self::new(ErrorCode::QueueError, "Failed to send message to processing queue.")
    }
    pub fn payload_too_large(limit: usize) -> Self {
        Self::new(ErrorCode::PayloadTooLarge, format!("Request body exceeds {limit} bytes"))
    }
    pub fn missing_api_key() -> Self {
        Self::new(ErrorCode::MissingApiKey, "The x-api-key header is required")
    }
    pub fn invalid_api_key() -> Self {
        Self::new(ErrorCode::InvalidApiKey, "The API key is not valid for this company and project")
    }
    pub fn concurrent_conversations_exceeded(limit: u32) -> Self {
        Self::new(
            ErrorCode::ConcurrentConversationsExceeded,
            format!("This company and project already have {limit} open conversations, their limit"),
        )
    }
    pub fn rate_limited(retry_after: u64) -> Self {
        RouterError {
            retry_after: Some(retry_after),
            ..Self::new(ErrorCode::RateLimitExceeded, "Rate limit exceeded for this company and project")
        }
    }
    pub fn consent_required() -> Self {
        Self::new(
            ErrorCode::CommsConsentRequired,
            "The recipient has not consented to communications (comms_consent is false)",
        )
    }
    /// What API Gateway answered at its 29 s integration timeout, now with the envelope.
    pub fn request_timeout(limit: std::time::Duration) -> Self {
        Self::new(
            ErrorCode::RequestTimeout,
            format!(
                "The request did not complete within {} ms; retrying with the same request_id is safe",
                limit.as_millis()
            ),
        )
    }
    /// The request bodies in flight already fill the router's budget (it would otherwise hold
    /// more than its memory limit covers).
    pub fn server_busy() -> Self {
        RouterError {
            retry_after: Some(1),
            ..Self::new(ErrorCode::ServerBusy, "The router is taking as many requests as it can hold; retry shortly")
        }
    }
    pub fn missing_agent_credentials() -> Self {
        Self::new(
            ErrorCode::MissingAgentCredentials,
            "An agent's token (Authorization: Bearer) or an inbox session is required",
        )
    }
    pub fn invalid_agent_token() -> Self {
        Self::new(ErrorCode::InvalidAgentToken, "The token is not an agent's of this company and project")
    }
    pub fn invalid_session() -> Self {
        Self::new(
            ErrorCode::InvalidSession,
            "The session is not valid (expired, signed elsewhere, or its agent changed); sign in again",
        )
    }
    pub fn csrf_token_invalid() -> Self {
        Self::new(ErrorCode::CsrfTokenInvalid, "A change made with a session must carry its CSRF token in x-csrf-token")
    }
    /// The same answer for a conversation that does not exist and one of another company.
    pub fn conversation_not_found() -> Self {
        Self::new(ErrorCode::ConversationNotFound, "No such conversation in this company and project")
    }
    pub fn invalid_conversation_query(why: &str) -> Self {
        Self::new(ErrorCode::InvalidConversationQuery, why.to_string())
    }
    pub fn invalid_message(why: &str) -> Self {
        Self::new(ErrorCode::InvalidMessage, why.to_string())
    }
    pub fn ai_is_answering() -> Self {
        Self::new(
            ErrorCode::AiIsAnswering,
            "The AI is answering this conversation: take it over before writing to the recipient",
        )
    }
    pub fn conversation_closed() -> Self {
        Self::new(ErrorCode::ConversationClosed, "The conversation is closed")
    }
    pub fn conversation_busy() -> Self {
        RouterError {
            retry_after: Some(5),
            ..Self::new(
                ErrorCode::ConversationBusy,
                "A reply to this conversation is being sent right now; retry shortly",
            )
        }
    }
    pub fn not_handed_to_person() -> Self {
        Self::new(ErrorCode::NotHandedToPerson, "The AI already answers this conversation")
    }
    pub fn whatsapp_window_closed() -> Self {
        Self::new(
            ErrorCode::WhatsappWindowClosed,
            "The recipient has not written on WhatsApp in the last 24 hours, so only an approved template may go",
        )
    }
    pub fn reply_channel_unsupported(channel: &str) -> Self {
        Self::new(
            ErrorCode::ReplyChannelUnsupported,
            format!("People answer on WhatsApp and SMS; this conversation is on {channel}"),
        )
    }
    pub fn send_failed(why: &str) -> Self {
        Self::new(ErrorCode::SendFailed, format!("The provider did not take the message, so it was not sent: {why}"))
    }
    pub fn send_outcome_unknown() -> Self {
        Self::new(
            ErrorCode::SendOutcomeUnknown,
            "The provider may or may not have taken the message; it is not sent again. Check with the recipient before writing again",
        )
    }
    pub fn internal() -> Self {
        Self::new(ErrorCode::InternalError, "An internal server error occurred.")
    }
}

impl fmt::Display for RouterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.status().as_u16(), self.code, self.message)
    }
}

impl std::error::Error for RouterError {}

/// A refused request: the error and the request id to echo (`unknown` when there is none).
#[derive(Debug, Clone, PartialEq)]
pub struct Rejected {
    pub error: RouterError,
    pub request_id: String,
}

impl IntoResponse for Rejected {
    /// Exactly `status`, `error_code`, `message`, `request_id`; `Retry-After` when the error
    /// says when to retry. The code rides along as an extension, for the metrics layer.
    fn into_response(self) -> Response {
        let request_id = if self.request_id.is_empty() { "unknown".to_string() } else { self.request_id };
        let body = serde_json::json!({
            "status": "error",
            "error_code": self.error.code.as_str(),
            "message": self.error.message,
            "request_id": request_id,
        });
        let mut response =
            (self.error.status(), [("content-type", "application/json")], body.to_string()).into_response();
        if let Some(seconds) = self.error.retry_after.and_then(|s| HeaderValue::from_str(&s.to_string()).ok()) {
            response.headers_mut().insert("retry-after", seconds);
        }
        response.extensions_mut().insert(self.error.code);
        response
    }
}

impl From<crate::shared::companies::LookupError> for RouterError {
    /// Whatever went wrong is logged where it happened; the client learns only that the
    /// database failed (the original's answer).
    fn from(_: crate::shared::companies::LookupError) -> Self {
        RouterError::database_error()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_is_listed_once_with_a_client_or_server_status() {
        let mut names: Vec<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ErrorCode::ALL.len());
        for &code in ErrorCode::ALL {
            assert!(code.status().is_client_error() || code.status().is_server_error(), "{code}");
            assert!(code.as_str().chars().all(|c| c.is_ascii_uppercase() || c == '_'), "{code}");
        }
    }
}
