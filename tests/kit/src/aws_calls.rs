//! Counting the AWS calls a component makes: an SDK configuration whose HTTP connector records
//! each request's `X-Amz-Target` (the JSON protocols of DynamoDB, SQS and Secrets Manager name
//! the operation there). The replies benchmark counts calls per message with it; the IAM test
//! compares a component's calls with its policy.
use aws_smithy_runtime_api::client::http::{
    http_client_fn, HttpClient, HttpConnector, HttpConnectorFuture, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

/// Requests by `X-Amz-Target` (e.g. `DynamoDB_20120810.PutItem`).
#[derive(Debug, Clone, Default)]
pub struct Calls(Arc<Mutex<BTreeMap<String, u64>>>);

impl Calls {
    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        self.0.lock().map(|c| c.clone()).unwrap_or_default()
    }

    /// The IAM actions the calls so far need, e.g. `dynamodb:PutItem`.
    pub fn actions(&self) -> BTreeSet<String> {
        self.snapshot().keys().filter_map(|target| iam_action(target)).collect()
    }
}

/// The IAM action of a request's `X-Amz-Target`. SQS's batch calls need the single call's
/// action (`SendMessageBatch` is allowed by `sqs:SendMessage`).
pub fn iam_action(target: &str) -> Option<String> {
    let (service, operation) = target.split_once('.')?;
    let service = match service {
        s if s.starts_with("DynamoDB_") => "dynamodb",
        "AmazonSQS" => "sqs",
        "secretsmanager" => "secretsmanager",
        _ => return None,
    };
    let operation = match (service, operation) {
        ("sqs", "SendMessageBatch") => "SendMessage",
        ("sqs", "DeleteMessageBatch") => "DeleteMessage",
        ("sqs", "ChangeMessageVisibilityBatch") => "ChangeMessageVisibility",
        (_, operation) => operation,
    };
    Some(format!("{service}:{operation}"))
}

#[derive(Debug)]
struct Counting {
    inner: SharedHttpConnector,
    calls: Calls,
}

impl HttpConnector for Counting {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let target = request.headers().get("x-amz-target").unwrap_or("other").to_string();
        if let Ok(mut calls) = self.calls.0.lock() {
            *calls.entry(target).or_insert(0) += 1;
        }
        self.inner.call(request)
    }
}

/// `config` with every request counted in the returned [`Calls`].
pub fn counting(config: &aws_config::SdkConfig) -> (aws_config::SdkConfig, Calls) {
    let calls = Calls::default();
    let http = aws_smithy_http_client::Builder::new().build_http();
    let counted = calls.clone();
    let client = http_client_fn(move |settings, components| {
        SharedHttpConnector::new(Counting { inner: http.http_connector(settings, components), calls: counted.clone() })
    });
    (config.to_builder().http_client(client).build(), calls)
}
