//! Thin adapters over the official AWS SDK clients, one per service. They speak in the
//! operator's terms (an item, a queue, a secret) and map SDK errors once, in [`error`].
//! Endpoint, region and credentials come from the standard SDK environment
//! (`AWS_ENDPOINT_URL`, `AWS_REGION`, the credentials chain), so one build talks to the emulator,
//! LocalStack or a real account.
pub mod calls;
pub mod dynamodb;
pub mod error;
pub mod secrets;
pub mod sqs;

pub use calls::CallCounter;
pub use error::AwsError;

use aws_config::SdkConfig;

/// The SDK configuration of the operator: the policy shared with the pods
/// ([`multicomms_service::aws`]: standard environment, retries and timeouts).
pub async fn load_config() -> SdkConfig {
    multicomms_service::aws::load_config(multicomms_service::aws::OPERATOR_ATTEMPTS).await
}

/// Permission to change AWS. Every write method of the adapters asks for one, and only the
/// reconcile's write gate (`Context::apply`) hands it out, in apply mode, so `plan` cannot write
/// by construction.
#[derive(Debug, Clone, Copy)]
pub struct Writes(());

impl Writes {
    pub(crate) const fn granted() -> Self {
        Writes(())
    }
}

/// The three service adapters, sharing one SDK configuration and one call counter.
#[derive(Clone)]
pub struct Aws {
    pub dynamodb: dynamodb::Dynamo,
    pub sqs: sqs::Sqs,
    pub secrets: secrets::SecretsManager,
    pub calls: CallCounter,
}

impl Aws {
    pub fn new(config: &SdkConfig) -> Self {
        let calls = CallCounter::default();
        Aws {
            dynamodb: dynamodb::Dynamo::new(aws_sdk_dynamodb::Client::from_conf(
                aws_sdk_dynamodb::config::Builder::from(config).interceptor(calls.clone()).build(),
            )),
            sqs: sqs::Sqs::new(aws_sdk_sqs::Client::from_conf(
                aws_sdk_sqs::config::Builder::from(config).interceptor(calls.clone()).build(),
            )),
            secrets: secrets::SecretsManager::new(aws_sdk_secretsmanager::Client::from_conf(
                aws_sdk_secretsmanager::config::Builder::from(config).interceptor(calls.clone()).build(),
            )),
            calls,
        }
    }
}
