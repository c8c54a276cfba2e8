//! Leader election on a Lease, against the in-memory Kubernetes API.
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, PostParams};
use kube_fake_client::ClientBuilder;
use multicomms_operator::controller::leader::{LeaderElector, Round};
use std::time::Duration;

const NS: &str = "multicomms-system";

fn elector(client: &kube::Client, identity: &str) -> LeaderElector {
    LeaderElector::new(client.clone(), NS, "multicomms-operator", identity, Duration::from_secs(15))
}

#[tokio::test]
async fn one_replica_leads_the_other_stands_by_until_the_lease_is_released() {
    let client = ClientBuilder::new().build().await.expect("fake");
    let (a, b) = (elector(&client, "replica-a"), elector(&client, "replica-b"));
    assert_eq!(a.try_lead().await.expect("a"), Round::Leading);
    assert_eq!(b.try_lead().await.expect("b"), Round::Following { holder: "replica-a".into() });
    assert_eq!(a.try_lead().await.expect("renew"), Round::Leading);
    assert_eq!(b.try_lead().await.expect("b"), Round::Following { holder: "replica-a".into() });

    a.release().await.expect("release");
    assert_eq!(b.try_lead().await.expect("b"), Round::Leading);
    assert_eq!(a.try_lead().await.expect("a"), Round::Following { holder: "replica-b".into() });
    let lease = Api::<Lease>::namespaced(client, NS).get("multicomms-operator").await.expect("lease");
    let spec = lease.spec.expect("spec");
    assert_eq!(spec.holder_identity.as_deref(), Some("replica-b"));
    assert_eq!(spec.lease_transitions, Some(1));
}

#[tokio::test]
async fn an_expired_lease_is_taken_over() {
    let client = ClientBuilder::new().build().await.expect("fake");
    assert_eq!(elector(&client, "replica-a").try_lead().await.expect("a"), Round::Leading);
    // replica-a stops renewing: age its lease past its 15 s duration.
    let api = Api::<Lease>::namespaced(client.clone(), NS);
    let mut lease = api.get("multicomms-operator").await.expect("lease");
    let stale = k8s_openapi::jiff::Timestamp::now() - k8s_openapi::jiff::SignedDuration::from_secs(60);
    if let Some(spec) = lease.spec.as_mut() {
        spec.renew_time = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(stale));
    }
    api.replace("multicomms-operator", &PostParams::default(), &lease).await.expect("age");
    assert_eq!(elector(&client, "replica-b").try_lead().await.expect("b"), Round::Leading);
}
