//! Test support: AWS clients on the moto emulator that `scripts/test.sh` (and `.ci/run`)
//! start, a unique name prefix per test so tests run in parallel on one emulator, and a fault
//! injector for the few AWS errors moto cannot produce.

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::{
    BeforeDeserializationInterceptorContextMut, BeforeTransmitInterceptorContextMut,
};
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::orchestrator::{HttpResponse, Metadata};
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::config_bag::ConfigBag;
use multicomms_operator::aws::Aws;
use multicomms_operator::cli::manifests::Manifests;
use multicomms_operator::crd::{Channel, Company};
use multicomms_operator::desired::secret::SecretValues;
use multicomms_operator::reconcile::{Context, Mode};
pub use multicomms_testkit::environment::company_copy;
use multicomms_testkit::environment::unique_naming;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// The SDK configuration the binaries use, on the local emulator (the test kit refuses anything
/// else, and fails rather than skips when it is missing).
pub async fn sdk_config() -> aws_config::SdkConfig {
    multicomms_testkit::environment::emulator_config().await
}

/// A context with a fresh call counter and a prefix no other test uses.
pub async fn context(mode: Mode) -> Context {
    Context::new(Aws::new(&sdk_config().await), unique_naming('t'), mode)
}

/// The same naming and emulator, in another mode, with its own call counter.
pub async fn same_place(ctx: &Context, mode: Mode) -> Context {
    Context::new(Aws::new(&sdk_config().await), ctx.naming.clone(), mode).adopting_in(ctx.adoption.clone())
}

pub fn repo_path(relative: &str) -> PathBuf {
    multicomms_testkit::environment::repo_root().join(relative)
}

/// The example channels, company and local Secrets from config/.
pub fn example_manifests() -> Manifests {
    multicomms_testkit::environment::example_manifests()
}

pub fn example_company() -> Company {
    example_manifests().companies.remove(0)
}

pub fn example_channel(kind: &str) -> Channel {
    let mut manifests = example_manifests();
    let at = manifests.channels.iter().position(|c| c.metadata.name.as_deref() == Some(kind)).expect("channel");
    manifests.channels.remove(at)
}

pub fn example_secrets() -> SecretValues {
    example_manifests().secrets_in("multicomms-dev").clone()
}

/// Answers the next `times` calls of `operation` with an AWS JSON-protocol error, as AWS would
/// where the emulator behaves differently. The request still reaches the emulator.
#[derive(Debug, Clone)]
pub struct Fault {
    pub operation: &'static str,
    pub code: &'static str,
    pub message: &'static str,
    /// 400 for a refusal; a 5xx makes the SDK retry (the first attempt was still applied).
    pub status: u16,
    pub remaining: Arc<AtomicUsize>,
}

impl Fault {
    pub fn new(operation: &'static str, code: &'static str, message: &'static str, times: usize) -> Self {
        Fault { operation, code, message, status: 400, remaining: Arc::new(AtomicUsize::new(times)) }
    }

    /// The answer of a call AWS applied but whose response was lost: a 500 the SDK retries.
    pub fn lost_answer(operation: &'static str, times: usize) -> Self {
        Fault { status: 500, ..Fault::new(operation, "InternalServerError", "the answer was lost", times) }
    }
}

impl Intercept for Fault {
    fn name(&self) -> &'static str {
        "Fault"
    }

    /// A refusal (4xx) must not change anything, as with AWS: the request is sent to an
    /// operation the emulator does not have. A lost answer (5xx) goes through as it is.
    fn modify_before_transmit(
        &self,
        context: &mut BeforeTransmitInterceptorContextMut<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let matches = cfg.load::<Metadata>().is_some_and(|m| m.name() == self.operation);
        if matches && self.status < 500 && self.remaining.load(Ordering::SeqCst) > 0 {
            context.request_mut().headers_mut().insert("x-amz-target", "Refused.ByTheTest");
        }
        Ok(())
    }

    fn modify_before_deserialization(
        &self,
        context: &mut BeforeDeserializationInterceptorContextMut<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let matches = cfg.load::<Metadata>().is_some_and(|m| m.name() == self.operation);
        if matches && self.remaining.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok() {
            let body = serde_json::json!({"__type": self.code, "message": self.message}).to_string();
            let mut response = HttpResponse::new(self.status.try_into()?, SdkBody::from(body));
            response.headers_mut().insert("x-amzn-errortype", self.code);
            response.headers_mut().insert("content-type", "application/x-amz-json-1.1");
            *context.response_mut() = response;
        }
        Ok(())
    }
}

/// A Secrets Manager adapter whose client carries `fault` (besides the usual call counter).
pub async fn secrets_with_fault(ctx: &Context, fault: Fault) -> multicomms_operator::aws::secrets::SecretsManager {
    let config = aws_sdk_secretsmanager::config::Builder::from(&sdk_config().await)
        .interceptor(ctx.aws.calls.clone())
        .interceptor(fault)
        .build();
    multicomms_operator::aws::secrets::SecretsManager::new(aws_sdk_secretsmanager::Client::from_conf(config))
}

/// A DynamoDB adapter whose client carries `fault` (besides the usual call counter).
pub async fn dynamodb_with_fault(ctx: &Context, fault: Fault) -> multicomms_operator::aws::dynamodb::Dynamo {
    let config = aws_sdk_dynamodb::config::Builder::from(&sdk_config().await)
        .interceptor(ctx.aws.calls.clone())
        .interceptor(fault)
        .build();
    multicomms_operator::aws::dynamodb::Dynamo::new(aws_sdk_dynamodb::Client::from_conf(config))
}

/// Plain SDK clients, for changing AWS behind the operator's back.
pub struct RawClients {
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub secrets: aws_sdk_secretsmanager::Client,
}

pub async fn raw_clients() -> RawClients {
    let config = sdk_config().await;
    RawClients {
        dynamodb: aws_sdk_dynamodb::Client::new(&config),
        sqs: aws_sdk_sqs::Client::new(&config),
        secrets: aws_sdk_secretsmanager::Client::new(&config),
    }
}

/// Writes the record the original onboarding scripts would have written for `company` (no
/// ownership marker), after `edit`.
pub async fn put_legacy_record(
    ctx: &Context,
    company: &Company,
    edit: impl FnOnce(&mut multicomms_wire::CompanyRecord),
) {
    let stranger = multicomms_operator::desired::Owner { kind: "Company", namespace: "x".into(), name: "x".into() };
    let mut legacy =
        multicomms_operator::desired::company::record(&company.spec, &ctx.naming, &stranger, &Default::default());
    legacy.managed_by = None;
    edit(&mut legacy);
    let item = legacy.to_item().expect("item");
    let table = ctx.naming.company_data_table();
    raw_clients().await.dynamodb.put_item().table_name(table).set_item(Some(item)).send().await.expect("legacy record");
}
