//! The router's error catalogue (spec template-sender §1.5): code, HTTP status and message in the
//! original's wording, plus the ones this router adds where API Gateway used to answer (API key,
//! body size).
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouterError {
    pub code: &'static str,
    pub status: u16,
    pub message: String,
    /// Seconds for a `Retry-After` header.
    pub retry_after: Option<u64>,
}

impl RouterError {
    fn new(code: &'static str, status: u16, message: impl Into<String>) -> Self {
        RouterError { code, status, message: message.into(), retry_after: None }
    }

    pub fn invalid_request() -> Self {
        Self::new("INVALID_REQUEST", 400, "Invalid or missing request body")
    }
    pub fn missing_identifiers() -> Self {
        Self::new("MISSING_IDENTIFIERS", 400, "company_id and project_id are required in company_data")
    }
    /// `section` is `company_data`, `recipient_data` or `request_data`.
    pub fn missing_section(code: &'static str, section: &str) -> Self {
        Self::new(code, 400, format!("'{section}' section is required"))
    }
    pub fn section_type(code: &'static str, section: &str) -> Self {
        Self::new(code, 400, format!("'{section}' must be a dictionary"))
    }
    pub fn missing_field(code: &'static str, field: &str) -> Self {
        Self::new(code, 400, format!("'{field}' is required in request_data"))
    }
    pub fn field_format(code: &'static str, field: &str) -> Self {
        Self::new(code, 400, format!("'{field}' must be a non-empty string"))
    }
    pub fn invalid_request_id() -> Self {
        Self::new("INVALID_REQUEST_ID", 400, "request_id must be a valid UUID v4 string")
    }
    pub fn unsupported_channel(sent: &str) -> Self {
        Self::new(
            "UNSUPPORTED_CHANNEL",
            400,
            format!("Channel method '{sent}' is not supported. Must be one of: ['whatsapp', 'email', 'sms']"),
        )
    }
    pub fn invalid_timestamp() -> Self {
        Self::new(
            "INVALID_TIMESTAMP",
            400,
            "initial_request_timestamp must be a valid ISO 8601 string (e.g., YYYY-MM-DDTHH:MM:SSZ or YYYY-MM-DDTHH:MM:SS+00:00)",
        )
    }
    pub fn missing_recipient(code: &'static str, channel: &str, field: &str) -> Self {
        Self::new(code, 400, format!("{channel} channel requires '{field}' in recipient_data"))
    }
    pub fn invalid_recipient(code: &'static str, field: &str) -> Self {
        Self::new(code, 400, format!("'{field}' must be a non-empty string"))
    }
    pub fn missing_consent() -> Self {
        Self::new("MISSING_COMMS_CONSENT", 400, "'comms_consent' is required in recipient_data")
    }
    pub fn consent_type() -> Self {
        Self::new("INVALID_COMMS_CONSENT_TYPE", 400, "'comms_consent' must be a boolean (true or false)")
    }
    pub fn project_inactive() -> Self {
        Self::new("PROJECT_INACTIVE", 403, "Project is not active")
    }
    pub fn channel_not_allowed(channel: &str) -> Self {
        Self::new("CHANNEL_NOT_ALLOWED", 403, format!("Channel '{channel}' is not permitted for this project."))
    }
    pub fn database_error() -> Self {
        Self::new("DATABASE_ERROR", 500, "Failed to access the database")
    }
    pub fn queue_not_configured(channel: &str) -> Self {
        Self::new("CONFIGURATION_ERROR", 500, format!("Processing queue for channel '{channel}' is not configured."))
    }
    pub fn queue_error() -> Self {
        Self::new("QUEUE_ERROR", 500, "Failed to send message to processing queue.")
    }
    pub fn payload_too_large(limit: usize) -> Self {
        Self::new("PAYLOAD_TOO_LARGE", 413, format!("Request body exceeds {limit} bytes"))
    }
    pub fn missing_api_key() -> Self {
        Self::new("MISSING_API_KEY", 401, "The x-api-key header is required")
    }
    pub fn invalid_api_key() -> Self {
        Self::new("INVALID_API_KEY", 403, "The API key is not valid for this company and project")
    }
    pub fn rate_limited(retry_after: u64) -> Self {
        RouterError {
            retry_after: Some(retry_after),
            ..Self::new("RATE_LIMIT_EXCEEDED", 429, "Rate limit exceeded for this company and project")
        }
    }
    pub fn consent_required() -> Self {
        Self::new(
            "COMMS_CONSENT_REQUIRED",
            400,
            "The recipient has not consented to communications (comms_consent is false)",
        )
    }
    /// What API Gateway answered at its 29 s integration timeout, now with the envelope.
    pub fn request_timeout(limit: std::time::Duration) -> Self {
        Self::new(
            "REQUEST_TIMEOUT",
            504,
            format!(
                "The request did not complete within {} ms; retrying with the same request_id is safe",
                limit.as_millis()
            ),
        )
    }
    pub fn internal() -> Self {
        Self::new("INTERNAL_ERROR", 500, "An internal server error occurred.")
    }
}

impl fmt::Display for RouterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.status, self.code, self.message)
    }
}

impl std::error::Error for RouterError {}
