//! How every multicomms process calls AWS: the standard SDK environment (credentials chain,
//! region, `AWS_ENDPOINT_URL`), standard retries (exponential backoff with jitter on throttling,
//! 5xx and transport errors), and timeouts. The SDK sets none on a call once connected, so
//! without them a request the service never answers holds a message, a concurrency slot or a
//! reconcile (and with it shutdown) forever.
//!
//! - connect 3 s: an AWS endpoint connects in milliseconds; a missing route should fail fast;
//! - attempt 10 s: DynamoDB, SQS and Secrets Manager answer in milliseconds, so a silent attempt
//!   is a broken connection: cut it and retry;
//! - operation 30 s: the most one call, retries included, may take.
//!
//! Only the attempts differ: the pods make 3 (a message that still fails is retried by its
//! queue, with backoff), the operator 5 (a reconcile is not latency-bound, and riding out a
//! throttling burst is cheaper than a requeue). A long poll overrides the attempt timeout on
//! its own call.
use aws_config::timeout::TimeoutConfig;
use std::time::Duration;

pub fn timeouts() -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(3))
        .operation_attempt_timeout(Duration::from_secs(10))
        .operation_timeout(Duration::from_secs(30))
        .build()
}

/// The pods' attempts: a message that still fails is retried by its queue.
pub const POD_ATTEMPTS: u32 = 3;
/// The operator's attempts: a reconcile is not latency-bound.
pub const OPERATOR_ATTEMPTS: u32 = 5;

/// The SDK configuration from the environment, with [`timeouts`] and `max_attempts` attempts.
pub async fn load_config(max_attempts: u32) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .timeout_config(timeouts())
        .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(max_attempts))
        .load()
        .await
}
