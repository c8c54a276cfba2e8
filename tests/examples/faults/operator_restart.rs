//! Scenario 7: Operator restart mid-reconcile: the in-cluster controller (its real `Controller` loop, on
//! an in-memory Kubernetes API with watches) reconciles many Companies, is killed at random
//! moments and restarted with nothing kept in memory; then, once it runs on, AWS goes dark for a
//! while behind a fault proxy and its requeues must bring everything back.
//!
//! A kill here drops the controller's task mid-await (the in-process form of SIGKILL: every
//! in-flight reconcile stops wherever it was); the API server and AWS keep what was written.
use crate::harness::*;
use crate::outage::{audit, owners};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::ByteString;
use kube::api::{Api, ObjectMeta};
use multicomms_operator::controller::{self, State};
use multicomms_operator::crd::{Channel, Company};
use multicomms_operator::reconcile::{self, Context, Mode};
use multicomms_testkit::fault_proxy::{FaultProxy, Mode as ProxyMode};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

const NS: &str = "multicomms-dev";

/// The row, and every Company, Channel and Event the API holds at the end (as JSON, for the
/// leak scan).
pub async fn run(config: &aws_config::SdkConfig, sizes: Sizes, credentials: &Credentials) -> (Row, Vec<String>) {
    let dir = workdir("operator-restart");
    let naming = suite_naming("k");
    let manifests = write_manifests(&dir, sizes.controller_companies, credentials);
    let secrets = credentials.kube_secrets(sizes.controller_companies).into_iter().map(|secret| Secret {
        metadata: ObjectMeta {
            name: Some(secret.name),
            namespace: Some(NS.into()),
            labels: Some([(secret.label.0.to_string(), secret.label.1)].into()),
            ..Default::default()
        },
        data: Some(secret.data.into_iter().map(|(k, v)| (k.to_string(), ByteString(v.into_bytes()))).collect()),
        ..Default::default()
    });
    let secrets: Vec<Secret> = secrets.collect();
    let with_generation = |mut meta: ObjectMeta| {
        meta.namespace = Some(NS.into());
        meta.generation = Some(1);
        meta
    };
    let companies = manifests.companies.iter().cloned().map(|mut c| {
        c.metadata = with_generation(c.metadata);
        c
    });
    let companies: Vec<Company> = companies.collect();
    let channels = manifests.channels.iter().cloned().map(|mut c| {
        c.metadata = with_generation(c.metadata);
        c
    });
    let channels: Vec<Channel> = channels.collect();
    let fake = kube_fake_client::ClientBuilder::new()
        .with_resource::<Company>()
        .with_resource::<Channel>()
        .with_objects(companies)
        .with_objects(channels)
        .with_objects(secrets)
        .build()
        .await
        .expect("the in-memory API");
    let client = multicomms_testkit::watch_shim::watching(fake);

    let upstream = config.endpoint_url().and_then(|u| u.trim_start_matches("http://").parse().ok()).expect("emulator");
    let proxy = FaultProxy::start(upstream).await.expect("fault proxy");
    let through_proxy = multicomms_testkit::environment::with_endpoint(config, &proxy.url);
    let engine = || Context::new(multicomms_operator::aws::Aws::new(&through_proxy), naming.clone(), Mode::Apply);
    assert!(reconcile::tables::reconcile(&engine()).await.is_ready(), "the environment's tables");
    let start = |client: kube::Client| {
        let state = Arc::new(State::new(engine(), client, Duration::from_secs(600), None));
        tokio::spawn(controller::run(state, 4))
    };

    let started = Instant::now();
    let mut draws = Draws::new(sizes.controller_companies as u64);
    for _ in 0..sizes.controller_kills {
        let running = start(client.clone());
        tokio::time::sleep(draws.between_ms(200, 2000)).await;
        running.abort();
        let _ = running.await;
    }
    // The last start reconciles everything again (its initial list): AWS goes dark under it.
    let companies: Api<Company> = Api::namespaced(client.clone(), NS);
    let ready_before = ready_count(&companies).await;
    let running = start(client.clone());
    tokio::time::sleep(Duration::from_millis(300)).await;
    proxy.set(ProxyMode::BlackHole);
    proxy.cut();
    tokio::time::sleep(sizes.outage).await;
    proxy.set(ProxyMode::Pass);
    proxy.cut();

    let limit = CONVERGE_LIMIT;
    let ready = loop {
        let ready = ready_count(&companies).await;
        if ready == sizes.controller_companies || started.elapsed() > limit {
            break ready;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let converged = started.elapsed();
    let not_ready: Vec<String> = companies
        .list(&Default::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default()
        .iter()
        .filter(|c| !is_ready(c))
        .map(|c| {
            let ready = c.status.as_ref().and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"));
            let why = ready.map_or("no Ready condition".to_string(), |r| format!("{}: {}", r.reason, r.message));
            format!("not ready: {} ({why})", c.metadata.name.as_deref().unwrap_or_default())
        })
        .collect();
    running.abort();
    let _ = running.await;

    let audit = audit(config, &naming, &owners(&manifests)).await;
    let (extra, missing) = secrets_per_company(config, &naming).await;
    let mut notes = vec![format!(
        "{ready_before} Companies Ready after {} kills, then AWS black-holed {} s; {} records, {} secrets, {} queues, every one marked by an existing resource: {}",
        sizes.controller_kills,
        sizes.outage.as_secs(),
        audit.records,
        audit.secrets,
        audit.queues,
        audit.orphans.is_empty()
    )];
    notes.extend(audit.orphans.iter().map(|o| format!("orphan: {o}")));
    notes.extend(not_ready.into_iter().take(5));
    if extra + missing > 0 {
        notes.push(format!("{extra} Companies hold more secrets than the others, {missing} fewer"));
    }
    let row = Row {
        scenario: "7 operator restart mid-reconcile".into(),
        injected: format!(
            "controller killed {} × mid-reconcile, then AWS dark {} s",
            sizes.controller_kills,
            sizes.outage.as_secs()
        ),
        unit: "Companies",
        total: sizes.controller_companies,
        ok: ready,
        lost: sizes.controller_companies - ready + audit.orphans.len() + missing,
        duplicated: audit.duplicated + extra,
        converged,
        notes,
        ..Row::default()
    };
    (row, api_objects(&client).await)
}

async fn ready_count(companies: &Api<Company>) -> usize {
    companies.list(&Default::default()).await.map_or(0, |l| l.items.iter().filter(|c| is_ready(c)).count())
}

fn is_ready(company: &Company) -> bool {
    let Some(status) = &company.status else { return false };
    status.observed_generation == company.metadata.generation
        && status.conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True")
}

/// Companies holding more (and fewer) Secrets Manager secrets than most do.
async fn secrets_per_company(config: &aws_config::SdkConfig, naming: &multicomms_wire::Naming) -> (usize, usize) {
    let client = aws_sdk_secretsmanager::Client::new(config);
    let mut per_owner: BTreeMap<String, usize> = BTreeMap::new();
    let mut pages = client.list_secrets().into_paginator().send();
    while let Some(Ok(page)) = pages.next().await {
        for secret in page.secret_list() {
            if !secret.name().unwrap_or_default().contains(&naming.prefix) {
                continue;
            }
            let owner = secret.tags().iter().find(|t| t.key() == Some(multicomms_operator::desired::OWNER_TAG));
            if let Some(owner) = owner.and_then(|t| t.value()).filter(|o| o.starts_with("Company/")) {
                *per_owner.entry(owner.to_string()).or_default() += 1;
            }
        }
    }
    let mut counts: Vec<usize> = per_owner.values().copied().collect();
    counts.sort_unstable();
    let usual = counts.get(counts.len() / 2).copied().unwrap_or(0);
    (counts.iter().filter(|&&n| n > usual).count(), counts.iter().filter(|&&n| n < usual).count())
}

async fn api_objects(client: &kube::Client) -> Vec<String> {
    let params = Default::default();
    let mut objects = as_json(Api::<Company>::namespaced(client.clone(), NS).list(&params).await);
    objects.extend(as_json(Api::<Channel>::namespaced(client.clone(), NS).list(&params).await));
    objects.extend(as_json(Api::<Event>::namespaced(client.clone(), NS).list(&params).await));
    objects
}

fn as_json<T: Clone + serde::Serialize>(list: kube::Result<kube::api::ObjectList<T>>) -> Vec<String> {
    let items = list.map(|l| l.items).unwrap_or_default();
    items.iter().map(|item| serde_json::to_string(item).unwrap_or_default()).collect()
}
