//! Leader election on a Lease, against the in-memory Kubernetes API.
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, PostParams};
use kube_fake_client::ClientBuilder;
use multicomms_operator::controller::leader::{identity, LeaderElector, LostLease, Round};
use multicomms_testkit::eventually::{eventually, eventually_ok};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
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
async fn a_standby_judges_expiry_by_its_own_clock_not_the_holders_renew_time() {
    let client = ClientBuilder::new().build().await.expect("fake");
    let short = |identity: &str| {
        LeaderElector::new(client.clone(), NS, "multicomms-operator", identity, Duration::from_secs(1))
    };
    assert_eq!(short("replica-a").try_lead().await.expect("a"), Round::Leading);
    // replica-a's renewTime says a minute ago (its clock runs behind, or it stopped renewing).
    let api = Api::<Lease>::namespaced(client.clone(), NS);
    let mut lease = api.get("multicomms-operator").await.expect("lease");
    let stale = k8s_openapi::jiff::Timestamp::now() - k8s_openapi::jiff::SignedDuration::from_secs(60);
    if let Some(spec) = lease.spec.as_mut() {
        spec.renew_time = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(stale));
    }
    api.replace("multicomms-operator", &PostParams::default(), &lease).await.expect("age");
    // A standby that first sees the lease waits a full lease duration on its own clock.
    let b = short("replica-b");
    assert_eq!(b.try_lead().await.expect("b"), Round::Following { holder: "replica-a".into() });
    // Time is the subject: the lease must stay unchanged for a whole duration on b's clock.
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    assert_eq!(b.try_lead().await.expect("b"), Round::Leading, "unchanged for a lease duration: expired");
}

/// A client that passes requests to `fake` until `stall` is set, then holds each for a minute
/// (an API server throttling the replica, or a half-open connection).
fn stalling(fake: kube::Client, stall: Arc<AtomicBool>) -> kube::Client {
    let service = tower::service_fn(move |request: http::Request<kube::client::Body>| {
        let (fake, stall) = (fake.clone(), stall.clone());
        async move {
            if stall.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_secs(60)).await;
            }
            fake.send(request).await
        }
    });
    kube::Client::new(service, "default")
}

#[tokio::test]
async fn a_leader_that_cannot_renew_stops_before_a_standby_can_take_over() {
    let fake = ClientBuilder::new().build().await.expect("fake");
    let stall = Arc::new(AtomicBool::new(false));
    // Lease 3 s, renewed every second; the renew deadline is 2 s.
    let a = LeaderElector::new(
        stalling(fake.clone(), stall.clone()),
        NS,
        "multicomms-operator",
        "replica-a",
        Duration::from_secs(3),
    );
    let b = LeaderElector::new(fake.clone(), NS, "multicomms-operator", "replica-b", Duration::from_secs(3));
    let led_since = a.wait_until_leading(Duration::from_secs(1)).await.expect("a leads");
    let reconciling = Arc::new(AtomicBool::new(false));
    let working = reconciling.clone();
    let a_leads = tokio::spawn(async move {
        let work = async {
            working.store(true, Ordering::SeqCst);
            std::future::pending::<()>().await
        };
        let lost = a.lead(Duration::from_secs(1), led_since, work).await;
        let stopped = std::time::Instant::now();
        (lost, stopped)
    });
    let started_work = || async { reconciling.load(Ordering::SeqCst) };
    eventually("replica-a working as the leader", Duration::from_secs(5), started_work).await;
    // From now on every call of replica-a hangs for a minute.
    stall.store(true, Ordering::SeqCst);
    let b_leads =
        eventually_ok("replica-b leading once replica-a's lease ran out", Duration::from_secs(15), || async {
            match b.try_lead().await.expect("b") {
                Round::Leading => Ok(std::time::Instant::now()),
                other => Err(other),
            }
        })
        .await;
    let (lost, a_stopped) = a_leads.await.expect("replica-a's task");
    assert!(matches!(lost, Err(LostLease::NotRenewed(_))), "{lost:?}");
    assert!(a_stopped < b_leads, "replica-a still led when replica-b took over");
}

#[test]
fn two_replicas_without_a_pod_name_get_different_identities() {
    assert_eq!(identity(Some("multicomms-operator-7d9f-abcde".into())), "multicomms-operator-7d9f-abcde");
    assert_ne!(identity(None), identity(None), "the PID is 1 in every container; it cannot tell replicas apart");
}
