//! Company reconcile against the moto emulator over the real AWS wire protocol.

use crate::support::*;
use aws_sdk_dynamodb::types::AttributeValue;
use multicomms_operator::cli::manifests::Manifests;
use multicomms_operator::crd::Company;
use multicomms_operator::reconcile::{self, company, AdoptionPolicy, ChangeKind, Context, Mode, Reason, Report};
use multicomms_wire::{ChannelKind, CompanyRecord, Item};
use secrecy::ExposeSecret;

fn key(record_ids: (&str, &str)) -> Item {
    [
        ("company_id".to_string(), AttributeValue::S(record_ids.0.into())),
        ("project_id".to_string(), AttributeValue::S(record_ids.1.into())),
    ]
    .into()
}

async fn stored_record(ctx: &Context, company: &Company) -> Option<CompanyRecord> {
    let table = ctx.naming.company_data_table();
    let ids = (company.spec.company_id.as_str(), company.spec.project_id.as_str());
    let item = ctx.aws.dynamodb.get_item(&table, key(ids)).await.expect("GetItem")?;
    Some(CompanyRecord::from_item(item).expect("the runtime's reader type parses what the operator wrote"))
}

/// Tables first (as `apply` does), then the company.
async fn apply(ctx: &Context, company: &Company) -> Report {
    let tables = reconcile::tables::reconcile(ctx).await;
    assert!(tables.is_ready(), "{tables:?}");
    company::reconcile(ctx, company, &example_secrets()).await
}

fn assert_ready(report: &Report) {
    assert!(report.is_ready(), "not ready: {:?}", report.subsystems);
}

#[tokio::test]
async fn creates_record_and_secrets_then_a_second_apply_writes_nothing() {
    let ctx = context(Mode::Apply).await;
    let company = example_company();
    let report = apply(&ctx, &company).await;
    assert_ready(&report);
    assert_eq!(report.changes.iter().filter(|c| c.kind == ChangeKind::Create).count(), 5, "{:?}", report.changes);

    let record = stored_record(&ctx, &company).await.expect("record written");
    assert_eq!(record.company_name, "Cucumber Recruitment");
    assert_eq!(record.allowed_channels, vec![ChannelKind::Whatsapp, ChannelKind::Sms, ChannelKind::Email]);
    assert_eq!(record.managed_by.as_deref(), Some("Company/multicomms-dev/cucumber-recruitment-clarify-cv"));
    assert!(!record.created_at.is_empty() && record.created_at == record.updated_at);
    let credentials = record.channel_config.whatsapp.expect("whatsapp").whatsapp_credentials_id;
    let (value, _) = ctx.aws.secrets.current_value(&credentials).await.expect("secret readable");
    let value: serde_json::Value = serde_json::from_str(value.expect("string").expose_secret()).expect("json");
    assert_eq!(
        value,
        serde_json::json!({
            "twilio_account_sid": "AC00000000000000000000000000000000",
            "twilio_auth_token": "local-demo-twilio-token-not-a-secret",
            "twilio_template_sid": "HX0123456789abcdef0123456789abcdef"
        })
    );
    // Results name ARNs and versions, never values.
    let shown = format!("{report:?}");
    assert_eq!(report.outputs.secrets.len(), 4);
    assert!(report
        .outputs
        .secrets
        .iter()
        .all(|s| s.arn.starts_with("arn:aws:secretsmanager") && s.version_id.is_some()));
    assert!(report.outputs.record_version.is_some());
    for secret in ["local-demo-twilio-token-not-a-secret", "local-demo-router-key-not-a-secret", "SG.local-demo"] {
        assert!(!shown.contains(secret), "report shows a secret value");
    }

    let again = same_place(&ctx, Mode::Apply).await;
    let report = company::reconcile(&again, &company, &example_secrets()).await;
    assert_ready(&report);
    assert!(report.changes.is_empty(), "{:?}", report.changes);
    assert_eq!(again.aws.calls.writes(), 0, "calls: {:?}", again.aws.calls.by_operation());
    assert_eq!(stored_record(&ctx, &company).await.expect("record").updated_at, record.updated_at);
}

#[tokio::test]
async fn plan_lists_exactly_the_edited_fields_and_apply_writes_only_that_record() {
    let ctx = context(Mode::Apply).await;
    let company = example_company();
    let mut manifests = example_manifests();
    let mut other = company_copy(&mut manifests, "other-project");
    other.spec.project_id = "pi-aaa-002".into();
    other.spec.project_name = "Other".into();
    assert_ready(&apply(&ctx, &company).await);
    assert_ready(&company::reconcile(&ctx, &other, manifests.secrets_in("multicomms-dev")).await);
    let other_before = stored_record(&ctx, &other).await.expect("other record");

    let mut edited = company.clone();
    edited.spec.rate_limits.requests_per_minute = 120;
    edited.spec.channels.whatsapp.as_mut().expect("whatsapp").sender_number = "+447000000002".into();

    let plan = same_place(&ctx, Mode::Plan).await;
    let report = company::reconcile(&plan, &edited, &example_secrets()).await;
    assert_eq!(report.changes.len(), 1, "{:?}", report.changes);
    assert_eq!(report.changes[0].kind, ChangeKind::Update);
    assert_eq!(
        report.changes[0].fields,
        ["channel_config.whatsapp.company_whatsapp_number", "rate_limits.requests_per_minute"]
    );
    assert_eq!(plan.aws.calls.writes(), 0, "plan wrote: {:?}", plan.aws.calls.by_operation());

    let apply_ctx = same_place(&ctx, Mode::Apply).await;
    assert_ready(&company::reconcile(&apply_ctx, &edited, &example_secrets()).await);
    assert_eq!(apply_ctx.aws.calls.writes(), 1, "{:?}", apply_ctx.aws.calls.by_operation());
    assert_eq!(apply_ctx.aws.calls.by_operation().get("PutItem"), Some(&1));
    let record = stored_record(&ctx, &edited).await.expect("record");
    assert_eq!(record.rate_limits.requests_per_minute, 120);
    assert_ne!(record.updated_at, record.created_at);
    assert_eq!(stored_record(&ctx, &other).await.expect("other"), other_before, "the other record is untouched");
}

#[tokio::test]
async fn drift_in_record_and_secret_is_repaired() {
    let ctx = context(Mode::Apply).await;
    let company = example_company();
    assert_ready(&apply(&ctx, &company).await);
    let record = stored_record(&ctx, &company).await.expect("record");

    // Someone edits AWS by hand.
    let mut drifted = record.clone();
    drifted.project_status = "inactive".into();
    let table = ctx.naming.company_data_table();
    let raw = raw_clients().await;
    raw.dynamodb
        .put_item()
        .table_name(&table)
        .set_item(Some(drifted.to_item().expect("item")))
        .send()
        .await
        .expect("put");
    let credentials = record.channel_config.sms.expect("sms").sms_credentials_id;
    let tampered = r#"{"twilio_account_sid":"tampered"}"#;
    raw.secrets.put_secret_value().secret_id(&credentials).secret_string(tampered).send().await.expect("put");

    let plan = same_place(&ctx, Mode::Plan).await;
    let report = company::reconcile(&plan, &company, &example_secrets()).await;
    let shown: Vec<String> = report.changes.iter().map(ToString::to_string).collect();
    // In the order `apply` writes them: the secrets, then the record that points at them.
    assert_eq!(
        shown,
        [
            format!("~ update secret {credentials}: value"),
            format!("~ update item {table}[ci-aaa-001/pi-aaa-001]: project_status"),
        ]
    );
    assert!(!format!("{report:?}").contains("tampered"));

    let repair = same_place(&ctx, Mode::Apply).await;
    assert_ready(&company::reconcile(&repair, &company, &example_secrets()).await);
    assert_eq!(stored_record(&ctx, &company).await.expect("record").project_status, "active");
    let (value, _) = ctx.aws.secrets.current_value(&credentials).await.expect("secret");
    assert!(value.expect("value").expose_secret().contains("AC00000000000000000000000000000000"));
}

#[tokio::test]
async fn a_new_company_makes_no_call_its_creation_does_not_need_and_a_lost_record_finds_its_secrets() {
    let ctx = context(Mode::Apply).await;
    assert!(reconcile::tables::reconcile(&ctx).await.is_ready());
    let company = example_company();
    let cold = same_place(&ctx, Mode::Apply).await;
    assert_ready(&company::reconcile(&cold, &company, &example_secrets()).await);
    // The record's read, one create per secret, the record's put: no read of what is not there.
    let calls = cold.aws.calls.by_operation();
    assert_eq!(calls.get("DescribeSecret"), None, "{calls:?}");
    assert_eq!(calls.get("CreateSecret"), Some(&4), "{calls:?}");
    assert_eq!(cold.aws.calls.total(), 6, "{calls:?}");

    // The record deleted by hand: the Company looks new again, its secrets are found taken
    // (by itself), read, and left as they are.
    let table = ctx.naming.company_data_table();
    let ids = (company.spec.company_id.as_str(), company.spec.project_id.as_str());
    raw_clients().await.dynamodb.delete_item().table_name(&table).set_key(Some(key(ids))).send().await.expect("delete");
    let again = same_place(&ctx, Mode::Apply).await;
    let report = company::reconcile(&again, &company, &example_secrets()).await;
    assert_ready(&report);
    let calls = again.aws.calls.by_operation();
    assert_eq!((calls.get("DescribeSecret"), calls.get("PutSecretValue")), (Some(&4), None), "{calls:?}");
    assert_eq!(report.changes.len(), 1, "only the record is created: {:?}", report.changes);
    assert!(stored_record(&ctx, &company).await.is_some());
}

#[tokio::test]
async fn a_new_company_whose_secret_name_is_taken_by_another_leaves_that_secret_and_the_record_alone() {
    let ctx = context(Mode::Apply).await;
    assert!(reconcile::tables::reconcile(&ctx).await.is_ready());
    let company = example_company();
    let taken =
        ctx.naming.channel_credentials_secret(ChannelKind::Sms, &company.spec.company_name, &company.spec.project_name);
    let tag = aws_sdk_secretsmanager::types::Tag::builder()
        .key(multicomms_operator::desired::OWNER_TAG)
        .value("Company/other/someone-else")
        .build();
    let raw = raw_clients().await;
    raw.secrets.create_secret().name(&taken).secret_string("{}").tags(tag).send().await.expect("create");

    let report = company::reconcile(&ctx, &company, &example_secrets()).await;
    let failure = report.failure().expect("conflict");
    assert_eq!(failure.reason, Reason::OwnershipConflict);
    assert!(failure.message.contains("managed by Company/other/someone-else"), "{}", failure.message);
    let (value, _) = ctx.aws.secrets.current_value(&taken).await.expect("readable");
    assert_eq!(value.expect("string").expose_secret(), "{}");
    assert!(stored_record(&ctx, &company).await.is_none(), "no record points at secrets that are not ours");
}

#[tokio::test]
async fn a_second_resource_claiming_the_same_ids_conflicts_and_changes_nothing() {
    let ctx = context(Mode::Apply).await;
    let company = example_company();
    assert_ready(&apply(&ctx, &company).await);
    let before = stored_record(&ctx, &company).await.expect("record");

    let mut rival = example_company();
    rival.metadata.name = Some("rival".into());
    rival.spec.company_name = "Rival Recruitment".into(); // other secret names, same record key
    let again = same_place(&ctx, Mode::Apply).await;
    let report = company::reconcile(&again, &rival, &example_secrets()).await;
    let failure = report.failure().expect("conflict");
    assert_eq!(failure.reason, Reason::OwnershipConflict);
    assert!(
        failure.message.contains("managed by Company/multicomms-dev/cucumber-recruitment-clarify-cv"),
        "{}",
        failure.message
    );
    assert!(report.changes.is_empty());
    assert_eq!(again.aws.calls.writes(), 0, "{:?}", again.aws.calls.by_operation());
    assert_eq!(stored_record(&ctx, &company).await.expect("record"), before);
}

#[tokio::test]
async fn a_record_from_the_old_onboarding_script_is_adopted_only_when_annotated() {
    let ctx = context(Mode::Apply).await;
    assert!(reconcile::tables::reconcile(&ctx).await.is_ready());
    let company = example_company();
    // The original script's record: no ownership marker, its own created_at.
    put_legacy_record(&ctx, &company, |r| r.created_at = "2023-10-27T10:00:00Z".into()).await;

    let report = company::reconcile(&ctx, &company, &example_secrets()).await;
    let failure = report.failure().expect("unmarked item is not ours");
    assert_eq!(failure.reason, Reason::OwnershipConflict);
    assert!(failure.message.contains("multicomms.io/adopt"), "{}", failure.message);

    let mut adopting = company.clone();
    adopting.metadata.annotations = Some([("multicomms.io/adopt".to_string(), "true".to_string())].into());
    // The annotation alone is not enough: the operator must allow adoption in the namespace.
    let report = company::reconcile(&ctx, &adopting, &example_secrets()).await;
    assert_eq!(report.failure().map(|f| f.reason), Some(Reason::OwnershipConflict));
    let ctx = same_place(&ctx, Mode::Apply).await.adopting_in(AdoptionPolicy::namespaces(["multicomms-dev"]));
    assert_ready(&company::reconcile(&ctx, &adopting, &example_secrets()).await);
    let record = stored_record(&ctx, &company).await.expect("record");
    assert_eq!(record.managed_by.as_deref(), Some("Company/multicomms-dev/cucumber-recruitment-clarify-cv"));
    assert_eq!(record.created_at, "2023-10-27T10:00:00Z", "adoption keeps the original creation time");
    // Once adopted, the annotation is no longer needed.
    assert_ready(&company::reconcile(&ctx, &company, &example_secrets()).await);
}

#[tokio::test]
async fn a_missing_kubernetes_secret_is_terminal_names_the_field_and_writes_nothing() {
    let ctx = context(Mode::Apply).await;
    assert!(reconcile::tables::reconcile(&ctx).await.is_ready());
    let mut company = example_company();
    company.spec.channels.email.as_mut().expect("email").sendgrid.api_key.secret_key_ref.name = "not-there".into();
    let fresh = same_place(&ctx, Mode::Apply).await;
    let report = company::reconcile(&fresh, &company, &example_secrets()).await;
    let failure = report.failure().expect("missing secret");
    assert_eq!(failure.reason, Reason::SecretNotFound);
    assert!(failure.reason.is_terminal());
    assert_eq!(failure.message, r#"spec.channels.email.sendgrid.apiKey: Secret not found: "not-there" (key "apiKey")"#);
    assert_eq!(fresh.aws.calls.writes(), 0, "{:?}", fresh.aws.calls.by_operation());
    assert!(stored_record(&ctx, &company).await.is_none(), "no record without its secrets");
    let conditions = reconcile::conditions::conditions(&report, &[], &k8s_now());
    assert_eq!((conditions[0].type_.as_str(), conditions[0].status.as_str()), ("Ready", "False"));
    assert_eq!(conditions[0].reason, "SecretNotFound");
}

fn k8s_now() -> k8s_openapi::apimachinery::pkg::apis::meta::v1::Time {
    k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::now())
}

#[tokio::test]
async fn two_manifests_claiming_the_same_ids_in_one_apply_leave_one_owner_and_no_stray_secrets() {
    let ctx = context(Mode::Apply).await;
    let mut manifests = example_manifests();
    manifests.channels.clear();
    let mut rival = manifests.companies[0].clone();
    rival.metadata.name = Some("a-rival".into());
    rival.spec.company_name = "Rival Recruitment".into();
    manifests.companies.push(rival);

    let reports = multicomms_operator::cli::batch::reconcile_manifests(&ctx, manifests, 16).await;
    let companies: Vec<&Report> = reports.iter().filter(|r| r.kind == "Company").collect();
    assert_eq!(companies.len(), 2);
    let (winner, loser) = (companies[1], companies[0]); // sorted by name: "a-rival" first
    assert!(winner.is_ready(), "{:?}", winner.subsystems);
    assert_eq!(loser.failure().map(|f| f.reason), Some(Reason::OwnershipConflict));
    assert!(loser.changes.is_empty(), "{:?}", loser.changes);
    let stray = ctx.naming.router_api_key_secret("Rival Recruitment", "Clarify CV");
    assert!(ctx.aws.secrets.describe(&stray).await.expect("describe").is_none(), "the loser wrote {stray}");
}

#[tokio::test]
async fn a_company_in_a_namespace_the_operator_does_not_allow_cannot_adopt_a_legacy_record() {
    let ctx = context(Mode::Apply).await.adopting_in(AdoptionPolicy::namespaces(["multicomms-dev"]));
    assert!(reconcile::tables::reconcile(&ctx).await.is_ready());
    let company = example_company();
    put_legacy_record(&ctx, &company, |r| r.api_key_hash = Some("sha256:the-real-companys-key".into())).await;

    // Someone who may create Companies in another namespace copies the legacy ids and asks to adopt.
    let mut intruder = company.clone();
    intruder.metadata.namespace = Some("other".into());
    intruder.metadata.annotations = Some([("multicomms.io/adopt".to_string(), "true".to_string())].into());
    let report = company::reconcile(&ctx, &intruder, &example_secrets()).await;
    let failure = report.failure().expect("not allowed to adopt there");
    assert_eq!(failure.reason, Reason::OwnershipConflict);
    assert!(failure.message.contains("--adopt-namespaces"), "{}", failure.message);
    let record = stored_record(&ctx, &company).await.expect("record");
    assert_eq!(record.api_key_hash.as_deref(), Some("sha256:the-real-companys-key"), "the legacy record is untouched");
    assert_eq!(record.managed_by, None);
}

#[tokio::test]
async fn a_record_write_whose_answer_was_lost_is_recognised_as_ours_on_the_sdk_retry() {
    let mut ctx = context(Mode::Apply).await;
    assert!(reconcile::tables::reconcile(&ctx).await.is_ready());
    // The first PutItem reaches the emulator, its answer is replaced by a 500: the SDK retries
    // and the retry's "only if absent" fails on the item the first attempt wrote.
    let lost = Fault::lost_answer("PutItem", 1);
    ctx.aws.dynamodb = dynamodb_with_fault(&ctx, lost.clone()).await;
    let company = example_company();
    let report = company::reconcile(&ctx, &company, &example_secrets()).await;
    assert_eq!(lost.remaining.load(std::sync::atomic::Ordering::SeqCst), 0, "the first answer was lost");
    assert_ready(&report);
    let record = stored_record(&ctx, &company).await.expect("record");
    assert_eq!(report.outputs.record_version.as_deref(), Some(record.updated_at.as_str()));
}

#[tokio::test]
async fn operator_aws_calls_have_the_timeouts_the_pods_have() {
    let config = sdk_config().await;
    let timeouts = config.timeout_config().expect("timeouts set");
    assert!(timeouts.connect_timeout().is_some());
    assert!(timeouts.operation_attempt_timeout().is_some(), "a stalled call is cut and retried");
    assert!(timeouts.operation_timeout().is_some(), "no call, retries included, waits forever");
    assert_eq!(timeouts.operation_timeout(), multicomms_service::aws::timeouts().operation_timeout());
}

/// `n` copies of the example Company with ids, names and Secrets of their own (in `manifests`).
fn companies(manifests: &mut Manifests, n: usize) -> Vec<Company> {
    (0..n)
        .map(|i| {
            let mut company = company_copy(manifests, &format!("company-{i}"));
            company.spec.company_id = format!("ci-resync-{i}");
            company.spec.company_name = format!("Resync Company {i}");
            company
        })
        .collect()
}

/// Reconciles `all` eight at a time (the controller's default concurrency).
async fn resync(ctx: &Context, all: &[Company], secrets: &multicomms_operator::desired::secret::SecretValues) {
    use futures::StreamExt;
    let reports: Vec<Report> =
        futures::stream::iter(all).map(|c| company::reconcile(ctx, c, secrets)).buffer_unordered(8).collect().await;
    reports.iter().for_each(assert_ready);
}

#[tokio::test]
async fn a_resync_of_companies_in_sync_costs_less_than_one_aws_call_each_and_a_rotated_secret_is_still_written() {
    let ctx = context(Mode::Apply).await.rechecking_secrets_every(std::time::Duration::from_secs(3600));
    assert!(reconcile::tables::reconcile(&ctx).await.is_ready());
    let mut manifests = example_manifests();
    let all = companies(&mut manifests, 24);
    let secrets = manifests.secrets_in("multicomms-dev").clone();
    resync(&ctx, &all, &secrets).await;

    let before = ctx.aws.calls.snapshot();
    resync(&ctx, &all, &secrets).await;
    let after = ctx.aws.calls.snapshot();
    let calls: u64 = after.iter().map(|(call, n)| n - before.get(call).copied().unwrap_or(0)).sum();
    assert!(calls < all.len() as u64, "{calls} AWS calls to resync {} Companies: {after:?}", all.len());

    // A rotated Kubernetes Secret is written at once, recheck interval or not.
    let mut rotated = secrets.clone();
    rotated.insert("company-0-twilio", "authToken", secrecy::SecretString::from("rotated".to_string()));
    let puts = || ctx.aws.calls.by_operation().get("PutSecretValue").copied().unwrap_or(0);
    let before = puts();
    resync(&ctx, &all[..1], &rotated).await;
    assert_eq!(
        puts() - before,
        2,
        "the WhatsApp and SMS credentials of the one Company: {:?}",
        ctx.aws.calls.by_operation()
    );
    let credentials = ctx.naming.channel_credentials_secret(ChannelKind::Sms, "Resync Company 0", "Clarify CV");
    let (value, _) = ctx.aws.secrets.current_value(&credentials).await.expect("secret");
    assert!(value.expect("value").expose_secret().contains("rotated"));
}

#[tokio::test]
async fn a_change_is_reported_only_with_its_write_so_a_record_blocked_by_its_secrets_is_not() {
    let ctx = context(Mode::Apply).await;
    assert!(reconcile::tables::reconcile(&ctx).await.is_ready());
    let company = example_company();
    // No Kubernetes Secrets at all: the secrets fail, so the record is never written.
    let report =
        company::reconcile(&ctx, &company, &multicomms_operator::desired::secret::SecretValues::default()).await;
    assert_eq!(report.failure().map(|f| f.reason), Some(Reason::SecretNotFound), "{report:?}");
    assert!(stored_record(&ctx, &company).await.is_none(), "nothing written");
    assert!(report.changes.is_empty(), "and nothing reported as changed: {:?}", report.changes);
}
