//! Counting the AWS calls a component makes: an SDK configuration whose HTTP connector records
//! each request's `X-Amz-Target` (the JSON protocols of DynamoDB, SQS and Secrets Manager name
//! the operation there) and the resources its body names. The replies benchmark counts calls
//! per message with it; the IAM test compares a component's calls with its policy, action by
//! action and resource by resource.
use aws_smithy_runtime_api::client::http::{
    http_client_fn, HttpClient, HttpConnector, HttpConnectorFuture, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

/// Requests by `X-Amz-Target` (e.g. `DynamoDB_20120810.PutItem`), and each target's resources.
#[derive(Debug, Clone, Default)]
pub struct Calls {
    counts: Arc<Mutex<BTreeMap<String, u64>>>,
    resources: Arc<Mutex<BTreeSet<(String, Resource)>>>,
    /// Counts only: a benchmark measuring CPU leaves the bodies unread (reading them costs about
    /// as much as a small request's own work).
    counts_only: bool,
}

/// What a request's body names, as IAM would judge it (see [`Resource::arn`]).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Resource {
    Table(String),
    Index {
        table: String,
        index: String,
    },
    Queue(String),
    Secret(String),
    /// Named by its ARN in the request (`ResourceArn`).
    Arn(String),
}

impl Resource {
    /// Its ARN in `region` and `account`; a secret's ends in a six-character suffix, as
    /// Secrets Manager's do.
    pub fn arn(&self, region: &str, account: &str) -> String {
        match self {
            Resource::Table(name) => format!("arn:aws:dynamodb:{region}:{account}:table/{name}"),
            Resource::Index { table, index } => {
                format!("arn:aws:dynamodb:{region}:{account}:table/{table}/index/{index}")
            }
            Resource::Queue(name) => format!("arn:aws:sqs:{region}:{account}:{name}"),
            Resource::Secret(name) => format!("arn:aws:secretsmanager:{region}:{account}:secret:{name}-AbC123"),
            Resource::Arn(arn) => arn.clone(),
        }
    }
}

impl Calls {
    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        self.counts.lock().map(|c| c.clone()).unwrap_or_default()
    }

    /// The IAM actions the calls so far need, e.g. `dynamodb:PutItem`.
    pub fn actions(&self) -> BTreeSet<String> {
        self.snapshot().keys().filter_map(|target| iam_action(target)).collect()
    }

    /// Each IAM action with each resource it was called on.
    pub fn actions_on(&self) -> BTreeSet<(String, Resource)> {
        let resources = self.resources.lock().map(|r| r.clone()).unwrap_or_default();
        resources.into_iter().filter_map(|(target, resource)| Some((iam_action(&target)?, resource))).collect()
    }

    fn record(&self, target: String, body: Option<&[u8]>) {
        let body = body.filter(|_| !self.counts_only).and_then(|b| serde_json::from_slice::<serde_json::Value>(b).ok());
        let named = body.map(|body| {
            transacted(&target, &body)
                .unwrap_or_else(|| resources(&body).into_iter().map(|r| (target.clone(), r)).collect())
        });
        if let Ok(mut resources) = self.resources.lock() {
            resources.extend(named.unwrap_or_default());
        }
        if let Ok(mut counts) = self.counts.lock() {
            *counts.entry(target).or_insert(0) += 1;
        }
    }
}

/// A transaction's items, each as the single call IAM judges it by (a `Put` needs
/// `dynamodb:PutItem` on its table), with its table.
fn transacted(target: &str, body: &serde_json::Value) -> Option<Vec<(String, Resource)>> {
    let (service, "TransactWriteItems") = target.split_once('.')? else { return None };
    let items = body.get("TransactItems")?.as_array()?;
    let single = |kind: &str| match kind {
        "ConditionCheck" => "ConditionCheckItem".to_string(),
        kind => format!("{kind}Item"),
    };
    let each = items.iter().filter_map(|item| item.as_object()?.iter().next()).filter_map(|(kind, op)| {
        let table = op.get("TableName")?.as_str()?.to_string();
        Some((format!("{service}.{}", single(kind)), Resource::Table(table)))
    });
    Some(each.collect())
}

/// The tables, indexes, queues and secrets a JSON request body names.
fn resources(body: &serde_json::Value) -> Vec<Resource> {
    let text = |key: &str| body.get(key).and_then(|v| v.as_str()).map(str::to_string);
    let mut named = Vec::new();
    if let Some(table) = text("TableName") {
        named.push(match text("IndexName") {
            Some(index) => Resource::Index { table, index },
            None => Resource::Table(table),
        });
    }
    if let Some(items) = body.get("RequestItems").and_then(|i| i.as_object()) {
        named.extend(items.keys().map(|table| Resource::Table(table.clone())));
    }
    // SQS: a queue URL's last segment is its name.
    if let Some(queue) = text("QueueUrl").and_then(|u| u.rsplit('/').next().map(str::to_string)).or(text("QueueName")) {
        named.push(Resource::Queue(queue));
    }
    if let Some(arn) = text("ResourceArn") {
        named.push(Resource::Arn(arn));
    }
    if let Some(secret) = text("SecretId").or(text("Name")) {
        // An ARN already (as some calls pass it): its name is what follows `secret:`, less the suffix.
        let name = match secret.split_once(":secret:") {
            Some((_, name)) => name.rsplit_once('-').map_or(name, |(name, _)| name).to_string(),
            None => secret,
        };
        named.push(Resource::Secret(name));
    }
    named
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
        self.calls.record(target, request.body().bytes());
        self.inner.call(request)
    }
}

/// `config` with every request counted in the returned [`Calls`].
pub fn counting(config: &aws_config::SdkConfig) -> (aws_config::SdkConfig, Calls) {
    counted(config, Calls::default())
}

/// [`counting`] without the resources, for benchmarks.
pub fn counting_only(config: &aws_config::SdkConfig) -> (aws_config::SdkConfig, Calls) {
    counted(config, Calls { counts_only: true, ..Calls::default() })
}

fn counted(config: &aws_config::SdkConfig, calls: Calls) -> (aws_config::SdkConfig, Calls) {
    let http = aws_smithy_http_client::Builder::new().build_http();
    let counted = calls.clone();
    let client = http_client_fn(move |settings, components| {
        SharedHttpConnector::new(Counting { inner: http.http_connector(settings, components), calls: counted.clone() })
    });
    (config.to_builder().http_client(client).build(), calls)
}
