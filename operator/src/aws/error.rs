//! AWS errors, mapped once from the SDK's.
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};

/// An AWS call that failed after the SDK's own retries.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{operation} {target}: {code}: {message}")]
pub struct AwsError {
    pub operation: &'static str,
    /// The table, queue or secret the call was about.
    pub target: String,
    pub code: String,
    pub message: String,
    /// Worth another try later (throttling, 5xx, network) rather than a request AWS refuses.
    pub retryable: bool,
}

const RETRYABLE_CODES: [&str; 8] = [
    "ThrottlingException",
    "Throttling",
    "RequestLimitExceeded",
    "ProvisionedThroughputExceededException",
    "ServiceUnavailable",
    "InternalServerError",
    "InternalFailure",
    "QueueDeletedRecently",
];

impl AwsError {
    pub fn from_sdk<E, R>(operation: &'static str, target: impl Into<String>, err: SdkError<E, R>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug + 'static,
    {
        let target = target.into();
        match &err {
            SdkError::ServiceError(service) => {
                let e = service.err();
                let code = e.code().unwrap_or("Unknown").to_string();
                AwsError {
                    operation,
                    target,
                    retryable: RETRYABLE_CODES.contains(&code.as_str()),
                    message: e.message().unwrap_or_default().to_string(),
                    code,
                }
            }
            SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
                let message = causes(&err);
                // The most common first-run mistake gets its own code and a hint.
                let (code, message) = if message.contains("credential") {
                    ("NoCredentials", format!("{message} (set AWS credentials: environment, profile or IRSA)"))
                } else {
                    ("Unreachable", message)
                };
                AwsError { operation, target, code: code.into(), message, retryable: true }
            }
            _ => AwsError { operation, target, code: "Client".into(), message: causes(&err), retryable: false },
        }
    }
}

/// The error and its causes, each once, by their Display (the SDK's Debug dumps are unreadable).
fn causes(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = vec![err.to_string()];
    let mut source = err.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = cause.source();
    }
    // One line: the credential chain's report lists its providers on lines of their own.
    parts.join(": ").split('\n').map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join("; ")
}

impl AwsError {
    /// A failure on our side of the wire: a request that could not be built, a waiter that gave up.
    pub fn local(operation: &'static str, target: &str, code: &str, message: impl std::fmt::Display) -> Self {
        AwsError {
            operation,
            target: target.to_string(),
            code: code.to_string(),
            message: message.to_string(),
            retryable: code == "WaiterFailed" || RETRYABLE_CODES.contains(&code),
        }
    }
}

/// A read left out of its batch's answer (see [`multicomms_service::coalesce`]).
impl From<multicomms_service::coalesce::Unanswered> for AwsError {
    fn from(unanswered: multicomms_service::coalesce::Unanswered) -> Self {
        AwsError::local("BatchRead", "", "Unanswered", unanswered)
    }
}
