//! Secrets Manager behaviour of reconcile: restore of secrets scheduled for deletion, against
//! moto, and with AWS's refusal of writes to such secrets injected where moto accepts them.

use crate::support::*;
use multicomms_operator::crd::SecretKeyRef;
use multicomms_operator::desired::secret::{Binding, SecretSpec, SecretValues, Source, COMPANY_LABEL};
use multicomms_operator::desired::Owner;
use multicomms_operator::reconcile::secrets::{self, Expect};
use multicomms_operator::reconcile::{ChangeKind, Context, Mode, Reconciling, Report};
use secrecy::{ExposeSecret, SecretString};

fn owner() -> Owner {
    Owner { kind: "Company", namespace: "ns".into(), name: "c".into() }
}

fn spec(ctx: &Context) -> SecretSpec {
    SecretSpec {
        name: format!("{}/twilio", ctx.naming.prefix),
        keys: vec![(
            "twilio_auth_token",
            Source::Secret {
                field: "spec.x".into(),
                reference: SecretKeyRef { name: "k8s".into(), key: "token".into() },
            },
        )],
    }
}

fn values(token: &str) -> SecretValues {
    let mut values = SecretValues::default();
    values.bind("k8s", Binding::from_labels([(COMPANY_LABEL, "c")]));
    values.insert("k8s", "token", SecretString::from(token.to_string()));
    values
}

async fn sync(ctx: &Context, token: &str) -> Report {
    let mut r = Reconciling::new(ctx, owner(), false);
    let outcome = secrets::sync(&mut r, &[spec(ctx)], &values(token), Expect::Unknown).await;
    r.finish(vec![("SecretsSynced", outcome)])
}

async fn stored(ctx: &Context) -> String {
    let (value, _) = ctx.aws.secrets.current_value(&spec(ctx).name).await.expect("readable");
    value.expect("string").expose_secret().to_string()
}

#[tokio::test]
async fn a_secret_scheduled_for_deletion_is_restored_and_rewritten() {
    let ctx = context(Mode::Apply).await;
    assert!(sync(&ctx, "one").await.is_ready());
    let raw = raw_clients().await;
    raw.secrets.delete_secret().secret_id(spec(&ctx).name).recovery_window_in_days(7).send().await.expect("delete");

    let plan = same_place(&ctx, Mode::Plan).await;
    let planned = sync(&plan, "two").await;
    let actions: Vec<ChangeKind> = planned.changes.iter().map(|c| c.kind).collect();
    assert_eq!(actions, [ChangeKind::Restore, ChangeKind::Update]);
    assert_eq!(plan.aws.calls.writes(), 0);

    let report = sync(&ctx, "two").await;
    assert!(report.is_ready(), "{:?}", report.subsystems);
    assert!(report.changes.iter().any(|c| c.kind == ChangeKind::Restore));
    assert_eq!(stored(&ctx).await, r#"{"twilio_auth_token":"two"}"#);
}

#[tokio::test]
async fn a_write_refused_because_of_a_pending_deletion_restores_then_writes() {
    let mut ctx = context(Mode::Apply).await;
    assert!(sync(&ctx, "one").await.is_ready());
    // AWS refuses PutSecretValue on a secret deleted between our read and our write; moto
    // accepts it, so the refusal is injected for the first attempt.
    ctx.aws.secrets = secrets_with_fault(
        &ctx,
        Fault::new(
            "PutSecretValue",
            "InvalidRequestException",
            "You can't perform this operation on the secret because it was marked for deletion.",
            1,
        ),
    )
    .await;
    let report = sync(&ctx, "two").await;
    assert!(report.is_ready(), "{:?}", report.subsystems);
    let calls = ctx.aws.calls.by_operation();
    assert_eq!(calls.get("RestoreSecret"), Some(&1), "{calls:?}");
    assert_eq!(calls.get("PutSecretValue"), Some(&2), "{calls:?}");
    assert_eq!(stored(&ctx).await, r#"{"twilio_auth_token":"two"}"#);
}

#[tokio::test]
async fn a_secret_owned_by_another_resource_is_left_alone() {
    let ctx = context(Mode::Apply).await;
    let raw = raw_clients().await;
    let tag = aws_sdk_secretsmanager::types::Tag::builder()
        .key(multicomms_operator::desired::OWNER_TAG)
        .value("Company/ns/someone-else")
        .build();
    raw.secrets.create_secret().name(spec(&ctx).name).secret_string("{}").tags(tag).send().await.expect("create");
    let fresh = same_place(&ctx, Mode::Apply).await;
    let report = sync(&fresh, "mine").await;
    let failure = report.failure().expect("conflict");
    assert!(failure.message.contains("managed by Company/ns/someone-else"), "{}", failure.message);
    assert_eq!(fresh.aws.calls.writes(), 0);
    assert_eq!(stored(&ctx).await, "{}");
}

#[tokio::test]
async fn throttling_is_retried_with_backoff_and_hard_errors_are_reported() {
    let mut ctx = context(Mode::Apply).await;
    ctx.aws.secrets =
        secrets_with_fault(&ctx, Fault::new("DescribeSecret", "ThrottlingException", "Rate exceeded", 2)).await;
    let report = sync(&ctx, "one").await;
    assert!(report.is_ready(), "the SDK's retries absorb two throttles: {:?}", report.subsystems);
    assert_eq!(stored(&ctx).await, r#"{"twilio_auth_token":"one"}"#);

    ctx.aws.secrets = secrets_with_fault(
        &ctx,
        Fault::new("DescribeSecret", "AccessDeniedException", "not authorized to perform DescribeSecret", 1),
    )
    .await;
    let report = sync(&ctx, "two").await;
    let failure = report.failure().expect("access denied");
    assert_eq!(failure.reason, multicomms_operator::reconcile::Reason::AwsError);
    assert!(!failure.reason.is_terminal(), "AWS errors are retried by the next reconcile");
    assert!(failure.message.starts_with("DescribeSecret "), "{}", failure.message);
    assert!(failure.message.contains("AccessDeniedException: not authorized"), "{}", failure.message);
    assert!(!failure.message.contains("two"));
}
