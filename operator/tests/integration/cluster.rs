//! The controller against a real Kubernetes cluster (e.g. kind), with AWS on the local
//! emulator: the in-memory checks of `controller.rs`, end to end through a real API server
//! (CRD validation, finalizers on delete, watches). `scripts/test-cluster.sh` runs it; asked to
//! run without a reachable cluster it fails, it never skips.

use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::CustomResourceExt;
use multicomms_operator::controller::{self, State};
use multicomms_operator::crd::{Channel, Company, DeletionPolicy};
use multicomms_operator::reconcile::{self, Mode};
use std::sync::Arc;
use std::time::Duration;

/// Polls `check` every 500 ms until it holds or `timeout` passes.
async fn eventually<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test]
#[ignore = "needs a Kubernetes cluster: scripts/test-cluster.sh runs it (KUBECONFIG) and it fails without one"]
async fn a_company_becomes_ready_recovers_from_a_missing_secret_and_is_cleaned_up_on_delete() {
    assert!(std::env::var("KUBECONFIG").is_ok(), "KUBECONFIG must name the test cluster");
    let client = kube::Client::try_default().await.expect("the cluster's API server is reachable");
    let apply = PatchParams::apply("multicomms-tests").force();
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in [Company::crd(), Channel::crd()] {
        let name = crd.metadata.name.clone().expect("crd name");
        crds.patch(&name, &apply, &Patch::Apply(&crd)).await.expect("install CRD");
    }
    tokio::time::sleep(Duration::from_secs(2)).await; // CRD established

    let namespace = format!("multicomms-test-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns = serde_json::from_value(serde_json::json!({"metadata": {"name": namespace}})).expect("namespace");
    namespaces.create(&PostParams::default(), &ns).await.expect("create namespace");

    let engine = crate::support::context(Mode::Apply).await;
    assert!(reconcile::tables::reconcile(&engine).await.is_ready());
    let table = engine.naming.company_data_table();
    let state = Arc::new(State::new(engine, client.clone(), Duration::from_secs(300), None));
    let running = tokio::spawn(controller::run(state.clone(), 2));

    // The company first, its Secrets later: it must report the missing one, then recover.
    let mut company = crate::support::example_company();
    company.metadata.namespace = Some(namespace.clone());
    company.spec.deletion_policy = DeletionPolicy::Delete;
    let companies: Api<Company> = Api::namespaced(client.clone(), &namespace);
    companies.create(&PostParams::default(), &company).await.expect("create company");
    let name = "cucumber-recruitment-clarify-cv";
    let ready = |reason: &'static str| {
        let companies = companies.clone();
        move || {
            let companies = companies.clone();
            async move {
                let c = companies.get(name).await.expect("get");
                c.status.is_some_and(|s| {
                    s.observed_generation == c.metadata.generation
                        && s.conditions.first().is_some_and(|r| r.type_ == "Ready" && r.reason == reason)
                })
            }
        }
    };
    eventually("Ready=False SecretNotFound", Duration::from_secs(60), ready("SecretNotFound")).await;

    let secrets: Api<Secret> = Api::namespaced(client.clone(), &namespace);
    for (secret_name, data) in [
        ("cucumber-recruitment-router", serde_json::json!({"apiKey": "router-key"})),
        ("cucumber-recruitment-twilio", serde_json::json!({"accountSid": "AC0", "authToken": "tok"})),
        ("cucumber-recruitment-sendgrid", serde_json::json!({"apiKey": "SG.key"})),
    ] {
        let secret = serde_json::from_value(serde_json::json!({"metadata": {"name": secret_name}, "stringData": data}))
            .expect("secret");
        secrets.create(&PostParams::default(), &secret).await.expect("create secret");
    }
    eventually("Ready=True Synced (by itself, through the Secret watch)", Duration::from_secs(60), ready("Synced"))
        .await;
    assert!(companies
        .get(name)
        .await
        .expect("get")
        .metadata
        .finalizers
        .is_some_and(|f| f.contains(&controller::FINALIZER.to_string())));

    companies.delete(name, &DeleteParams::default()).await.expect("delete");
    eventually("the company is gone", Duration::from_secs(60), || {
        let companies = companies.clone();
        async move { companies.get_opt(name).await.expect("get").is_none() }
    })
    .await;
    let key = [
        ("company_id".to_string(), aws_sdk_dynamodb::types::AttributeValue::S("ci-aaa-001".into())),
        ("project_id".to_string(), aws_sdk_dynamodb::types::AttributeValue::S("pi-aaa-001".into())),
    ]
    .into();
    assert!(state.engine.aws.dynamodb.get_item(&table, key).await.expect("get").is_none(), "record deleted");

    running.abort();
    namespaces.delete(&namespace, &DeleteParams::default()).await.expect("delete namespace");
}
