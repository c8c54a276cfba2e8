//! AWS errors, mapped once from the SDK's.
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

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
        R: std::fmt::Debug,
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
            SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => AwsError {
                operation,
                target,
                code: "Unreachable".into(),
                message: DisplayErrorContext(&err).to_string(),
                retryable: true,
            },
            _ => AwsError {
                operation,
                target,
                code: "Client".into(),
                message: DisplayErrorContext(&err).to_string(),
                retryable: false,
            },
        }
    }
}

impl AwsError {
    /// A failure on our side of the wire: a request that could not be built, a waiter that gave up.
    pub fn local(operation: &'static str, target: &str, code: &str, message: impl std::fmt::Display) -> Self {
        AwsError {
            operation,
            target: target.to_string(),
            code: code.to_string(),
            message: message.to_string(),
            retryable: code == "WaiterFailed",
        }
    }
}
