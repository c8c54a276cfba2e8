//! `plan` cannot write: every reconcile path, run in plan mode against the emulator, reports its
//! changes and makes zero AWS writes (the adapters' write methods need a permission only the
//! write gate hands out, in apply mode).

use crate::support::*;
use multicomms_operator::reconcile::{self, channel, cleanup, company, AdoptionPolicy, ChangeKind, Context, Mode};
use multicomms_wire::ChannelKind;
use secrecy::SecretString;

/// Runs `reconcile` in plan mode at `ctx`'s place and returns the kinds of change it planned,
/// after checking it wrote nothing.
async fn planned<F, Fut>(ctx: &Context, reconcile: F) -> Vec<ChangeKind>
where
    F: FnOnce(Context) -> Fut,
    Fut: std::future::Future<Output = (Context, reconcile::Report)>,
{
    let plan = same_place(ctx, Mode::Plan).await.adopting_in(AdoptionPolicy::namespaces(["*"]));
    let (plan, report) = reconcile(plan).await;
    assert_eq!(plan.aws.calls.writes(), 0, "{}: {:?}", report.name, plan.aws.calls.by_operation());
    report.changes.iter().map(|c| c.kind).collect()
}

#[tokio::test]
async fn every_reconcile_path_in_plan_mode_makes_zero_aws_writes() {
    let ctx = context(Mode::Apply).await;
    let (company_resource, whatsapp) = (example_company(), example_channel("whatsapp"));

    // Nothing exists yet: tables, queues, secrets and the record would all be created.
    let tables = planned(&ctx, |p| async move {
        let report = reconcile::tables::reconcile(&p).await;
        (p, report)
    })
    .await;
    assert!(!tables.is_empty() && tables.iter().all(|k| *k == ChangeKind::Create), "{tables:?}");
    let (c, w) = (company_resource.clone(), whatsapp.clone());
    let creates = planned(&ctx, |p| async move {
        let report = channel::reconcile(&p, &w, &example_secrets()).await;
        (p, report)
    })
    .await;
    assert!(creates.contains(&ChangeKind::Create), "{creates:?}");
    let creates = planned(&ctx, |p| async move {
        let report = company::reconcile(&p, &c, &example_secrets()).await;
        (p, report)
    })
    .await;
    assert!(creates.contains(&ChangeKind::Create), "{creates:?}");

    // Everything applied, then drift everywhere: a record field, a secret value, a secret
    // scheduled for deletion, a queue attribute.
    assert!(reconcile::tables::reconcile(&ctx).await.is_ready());
    assert!(channel::reconcile(&ctx, &whatsapp, &example_secrets()).await.is_ready());
    assert!(company::reconcile(&ctx, &company_resource, &example_secrets()).await.is_ready());
    let mut edited = company_resource.clone();
    edited.spec.rate_limits.requests_per_minute += 1;
    let mut rotated = example_secrets();
    rotated.insert("cucumber-recruitment-twilio", "authToken", SecretString::from("rotated-token".to_string()));
    let router_key = ctx.naming.router_api_key_secret("Cucumber Recruitment", "Clarify CV");
    let raw = raw_clients().await;
    raw.secrets.delete_secret().secret_id(&router_key).recovery_window_in_days(7).send().await.expect("schedule");
    let mut slower = whatsapp.clone();
    slower.spec.queue.visibility_timeout_seconds = Some(1200);

    let (e, r) = (edited.clone(), rotated.clone());
    let updates = planned(&ctx, |p| async move {
        let report = company::reconcile(&p, &e, &r).await;
        (p, report)
    })
    .await;
    assert!(updates.contains(&ChangeKind::Update) && updates.contains(&ChangeKind::Restore), "{updates:?}");
    let s = slower.clone();
    let updates = planned(&ctx, |p| async move {
        let report = channel::reconcile(&p, &s, &example_secrets()).await;
        (p, report)
    })
    .await;
    assert_eq!(updates, [ChangeKind::Update], "the main queue's visibility timeout");

    // Adoption of an unmarked record, and both deletions.
    put_legacy_record(&ctx, &company_resource, |r| r.project_id = "pi-legacy".into()).await;
    let mut adopting = company_resource.clone();
    adopting.spec.project_id = "pi-legacy".into();
    adopting.metadata.annotations = Some([("multicomms.io/adopt".to_string(), "true".to_string())].into());
    let a = adopting.clone();
    let adopts = planned(&ctx, |p| async move {
        let report = company::reconcile(&p, &a, &example_secrets()).await;
        (p, report)
    })
    .await;
    assert!(adopts.contains(&ChangeKind::Update), "{adopts:?}");
    // Deleting it would leave the legacy record alone (not ours): the plan says no record deletion.
    let plan = same_place(&ctx, Mode::Plan).await;
    let report = cleanup::delete_company(&plan, &adopting).await;
    assert!(!report.changes.iter().any(|c| c.object.starts_with("item ")), "{:?}", report.changes);
    assert_eq!(plan.aws.calls.writes(), 0);
    let c = company_resource.clone();
    let deletes = planned(&ctx, |p| async move {
        let report = cleanup::delete_company(&p, &c).await;
        (p, report)
    })
    .await;
    assert!(deletes.iter().filter(|k| **k == ChangeKind::Delete).count() >= 2, "{deletes:?}");
    let w = whatsapp.clone();
    let deletes = planned(&ctx, |p| async move {
        let report = cleanup::delete_channel(&p, &w, &[]).await;
        (p, report)
    })
    .await;
    assert!(deletes.contains(&ChangeKind::Delete), "{deletes:?}");

    // And AWS is as the apply left it.
    let scheduled = ctx.aws.secrets.describe(&router_key).await.expect("describe").expect("exists");
    assert!(scheduled.scheduled_for_deletion, "plan restored nothing");
    assert!(ctx.aws.sqs.observe(&ctx.naming.channel_queue(ChannelKind::Whatsapp)).await.expect("observe").is_some());
}
