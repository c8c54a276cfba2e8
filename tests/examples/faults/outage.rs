//! Scenario 2: AWS outage: a fault proxy between the binaries and the emulator black-holes every
//! connection (and drops the open ones) for a while, once during an `apply` of many Companies
//! and once while a processor drains its queue.
use crate::harness::*;
use aws_sdk_dynamodb::types::AttributeValue;
use multicomms_operator::desired::OWNER_TAG;
use multicomms_testkit::fault_proxy::{FaultProxy, Mode};
use multicomms_wire::Naming;
use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

pub async fn run(config: &aws_config::SdkConfig, endpoint: &str, sizes: Sizes, credentials: &Credentials) -> Vec<Row> {
    let upstream = endpoint.trim_start_matches("http://").parse().expect("the emulator's address");
    let proxy = FaultProxy::start(upstream).await.expect("fault proxy");
    vec![apply(config, &proxy, sizes, credentials).await, drain(config, endpoint, &proxy, sizes, credentials).await]
}

/// Black-holes the proxy for `outage`, once `started` resolves (the work is under way).
async fn outage(proxy: &FaultProxy, started: impl std::future::Future<Output = ()>, outage: Duration) {
    started.await;
    proxy.set(Mode::BlackHole);
    proxy.cut();
    tokio::time::sleep(outage).await;
    proxy.set(Mode::Pass);
    proxy.cut();
}

fn operator_apply(dir: &Path, naming: &Naming, proxy: &FaultProxy) -> Process {
    let args = [
        "--prefix",
        &naming.prefix,
        "--env",
        &naming.env,
        "apply",
        "-f",
        &manifests_path(dir).display().to_string(),
        "--namespace",
        "multicomms-dev",
    ]
    .map(str::to_string);
    Process::spawn(dir, "multicomms-operator", &args, &[("AWS_ENDPOINT_URL", proxy.url.clone())], None)
}

async fn apply(config: &aws_config::SdkConfig, proxy: &FaultProxy, sizes: Sizes, credentials: &Credentials) -> Row {
    let dir = workdir("outage-apply");
    let naming = suite_naming("o");
    let manifests = write_manifests(&dir, sizes.outage_companies, credentials);
    let started = Instant::now();
    let first = operator_apply(&dir, &naming, proxy);
    // Dark once a quarter of the Companies have their record.
    let quarter = async {
        let table = naming.company_data_table();
        while scan_count(config, &table).await < sizes.outage_companies / 4 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let (exit, ()) = tokio::join!(first.wait(), outage(proxy, quarter, sizes.outage));
    // What CI (or Argo CD's next sync, or the controller's requeue) does after a failed apply:
    // apply again.
    let (mut runs, mut converged) = (1, exit == Some(0));
    while !converged && runs < 5 {
        runs += 1;
        converged = operator_apply(&dir, &naming, proxy).wait().await == Some(0);
    }
    let took = started.elapsed();
    let mut notes =
        vec![format!("the apply during the outage exited with {exit:?}; converged: {converged} after {runs} applies")];
    let audit = audit(config, &naming, &owners(&manifests)).await;
    notes.push(format!(
        "{} records, {} secrets, {} queues checked; every one marked by an existing resource: {}",
        audit.records,
        audit.secrets,
        audit.queues,
        audit.orphans.is_empty()
    ));
    notes.extend(audit.orphans.iter().map(|o| format!("orphan: {o}")));
    let missing = sizes.outage_companies.saturating_sub(audit.records);
    Row {
        scenario: "2a AWS outage during apply".into(),
        injected: format!(
            "AWS black-holed {} s during apply of {} Companies",
            sizes.outage.as_secs(),
            sizes.outage_companies
        ),
        unit: "Companies",
        total: sizes.outage_companies,
        ok: if converged { audit.records.min(sizes.outage_companies) } else { 0 },
        lost: missing + audit.orphans.len() + usize::from(!converged),
        duplicated: audit.duplicated,
        converged: took,
        notes,
        ..Row::default()
    }
}

async fn drain(
    config: &aws_config::SdkConfig,
    endpoint: &str,
    proxy: &FaultProxy,
    sizes: Sizes,
    credentials: &Credentials,
) -> Row {
    let queued = Queued::start(config, endpoint, "outage-drain", sizes.outage_messages, credentials).await;
    let started = Instant::now();
    let (processor, _) = queued.processor(&proxy.url).spawn();
    // Dark once a quarter of the messages went out.
    let quarter = async {
        while queued.fakes.sent().len() < queued.recipients.len() / 4 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    outage(proxy, quarter, sizes.outage).await;
    let mut row = Row {
        scenario: "2b AWS outage while draining".into(),
        injected: format!("AWS black-holed {} s while the processor drains", sizes.outage.as_secs()),
        ..Row::default()
    };
    queued.settle(config, started, &mut row).await;
    processor.stop().await;
    row
}

/// `Kind/namespace/name` of every Company and Channel in `manifests`.
pub fn owners(manifests: &multicomms_operator::cli::manifests::Manifests) -> BTreeSet<String> {
    let marker = |kind: &str, meta: &kube::api::ObjectMeta| {
        format!("{kind}/{}/{}", meta.namespace.as_deref().unwrap_or_default(), meta.name.as_deref().unwrap_or_default())
    };
    let companies = manifests.companies.iter().map(|c| marker("Company", &c.metadata));
    companies.chain(manifests.channels.iter().map(|c| marker("Channel", &c.metadata))).collect()
}

/// The AWS objects under a naming, checked against the resources that exist.
pub struct Audit {
    pub records: usize,
    pub secrets: usize,
    pub queues: usize,
    /// Objects whose ownership marker is missing or names no existing resource.
    pub orphans: Vec<String>,
    /// Owners holding two objects where they should hold one.
    pub duplicated: usize,
}

/// Every company record, secret and queue under `naming` must carry the marker of one of
/// `owners` (`Kind/namespace/name`) or of the environment itself (the tables and the hand-off
/// queue belong to no one resource).
pub async fn audit(config: &aws_config::SdkConfig, naming: &Naming, owners: &BTreeSet<String>) -> Audit {
    let mut owners = owners.clone();
    owners.insert(format!("Environment//{}-{}", naming.prefix, naming.env));
    let mut orphans = Vec::new();
    let mut check = |what: String, marker: Option<String>| match marker {
        Some(owner) if owners.contains(&owner) => {}
        marker => orphans.push(format!("{what} marked {marker:?}")),
    };
    let items = scan_all(config, &naming.company_data_table()).await;
    let mut record_owners = BTreeSet::new();
    let mut duplicated = 0;
    for item in &items {
        let marker = match item.get(multicomms_wire::company::MANAGED_BY) {
            Some(AttributeValue::S(owner)) => Some(owner.clone()),
            _ => None,
        };
        if let Some(owner) = &marker {
            if !record_owners.insert(owner.clone()) {
                duplicated += 1;
            }
        }
        check(format!("record {:?}", item.get("company_id")), marker);
    }
    let secrets_client = aws_sdk_secretsmanager::Client::new(config);
    let mut secrets = 0;
    let mut token = None;
    loop {
        let page = secrets_client
            .list_secrets()
            .filters(
                aws_sdk_secretsmanager::types::Filter::builder()
                    .key(aws_sdk_secretsmanager::types::FilterNameStringType::Name)
                    .values(naming.prefix.clone())
                    .build(),
            )
            .set_next_token(token)
            .send()
            .await
            .expect("list secrets");
        for secret in page.secret_list() {
            secrets += 1;
            let marker =
                secret.tags().iter().find(|t| t.key() == Some(OWNER_TAG)).and_then(|t| t.value()).map(str::to_string);
            check(format!("secret {}", secret.name().unwrap_or_default()), marker);
        }
        token = page.next_token().map(str::to_string);
        if token.is_none() {
            break;
        }
    }
    let sqs = aws_sdk_sqs::Client::new(config);
    let queues = sqs.list_queues().queue_name_prefix(&naming.prefix).send().await.expect("list queues");
    for url in queues.queue_urls() {
        let tags = sqs.list_queue_tags().queue_url(url).send().await.expect("queue tags");
        let marker = tags.tags().and_then(|t| t.get(OWNER_TAG)).cloned();
        check(format!("queue {url}"), marker);
    }
    Audit { records: items.len(), secrets, queues: queues.queue_urls().len(), orphans, duplicated }
}

/// How many items a table holds (a Scan with `Select=COUNT`).
async fn scan_count(config: &aws_config::SdkConfig, table: &str) -> usize {
    let dynamodb = aws_sdk_dynamodb::Client::new(config);
    let counted = dynamodb.scan().table_name(table).select(aws_sdk_dynamodb::types::Select::Count).send().await;
    counted.map(|c| c.count() as usize).unwrap_or(0)
}
