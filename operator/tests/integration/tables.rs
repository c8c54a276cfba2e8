//! The environment's tables against the moto emulator: created, adopted, never modified.

use crate::support::*;
use aws_sdk_dynamodb::types::{AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType};
use multicomms_operator::reconcile::{tables, Mode, Reason};

async fn create_table(ctx_table: &str, partition: &str) {
    let raw = raw_clients().await;
    raw.dynamodb
        .create_table()
        .table_name(ctx_table)
        .billing_mode(BillingMode::PayPerRequest)
        .key_schema(KeySchemaElement::builder().attribute_name(partition).key_type(KeyType::Hash).build().expect("key"))
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name(partition)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .expect("attribute"),
        )
        .send()
        .await
        .expect("create table");
}

async fn ttl(ctx: &multicomms_operator::reconcile::Context, table: &str) -> Option<String> {
    ctx.aws.dynamodb.ttl_attribute(table).await.expect("DescribeTimeToLive")
}

#[tokio::test]
async fn creates_missing_tables_with_keys_indexes_and_ttl_then_leaves_them_alone() {
    let ctx = context(Mode::Apply).await;
    let report = tables::reconcile(&ctx).await;
    assert!(report.is_ready(), "{:?}", report.subsystems);
    assert_eq!(
        report.changes.len(),
        8,
        "five tables, the hand-off queue, the client-events queue and DLQ: {:?}",
        report.changes
    );
    let handoff = ctx.aws.sqs.observe(&ctx.naming.handoff_queue()).await.expect("observe").expect("hand-off queue");
    assert_eq!(handoff.attributes["VisibilityTimeout"], "3600");
    assert_eq!(handoff.attributes["MessageRetentionPeriod"], "604800");
    let events = ctx.aws.sqs.observe(&ctx.naming.client_events_queue()).await.expect("observe").expect("events queue");
    assert!(events.attributes["RedrivePolicy"].contains("client-events-dlq"), "{:?}", events.attributes);
    let conversations =
        ctx.aws.dynamodb.describe_table(&ctx.naming.conversations_table()).await.expect("describe").expect("table");
    assert_eq!(conversations.indexes.len(), 8);
    assert_eq!(ttl(&ctx, &ctx.naming.replies_stage_table()).await, Some("expires_at".to_string()));
    let expiring = ttl(&ctx, &ctx.naming.conversations_table()).await;
    assert_eq!(expiring, Some("expires_at".to_string()), "records expire after their company's retention");
    assert_eq!(ttl(&ctx, &ctx.naming.company_data_table()).await, None);

    let again = same_place(&ctx, Mode::Apply).await;
    assert!(tables::reconcile(&again).await.changes.is_empty());
    assert_eq!(again.aws.calls.writes(), 0);
}

#[tokio::test]
async fn a_present_table_is_adopted_and_gets_ttl_switched_on() {
    let ctx = context(Mode::Apply).await;
    create_table(&ctx.naming.replies_trigger_lock_table(), "conversation_id").await;
    let report = tables::reconcile(&ctx).await;
    assert!(report.is_ready(), "{:?}", report.subsystems);
    let lock = format!("table {}", ctx.naming.replies_trigger_lock_table());
    let change = report.changes.iter().find(|c| c.object == lock).expect("ttl change");
    assert_eq!(change.fields, ["ttl expires_at"]);
    assert_eq!(ttl(&ctx, &ctx.naming.replies_trigger_lock_table()).await, Some("expires_at".to_string()));
}

#[tokio::test]
async fn a_table_with_other_keys_is_reported_and_left_untouched() {
    let ctx = context(Mode::Apply).await;
    create_table(&ctx.naming.company_data_table(), "id").await;
    let report = tables::reconcile(&ctx).await;
    let failure = report.failure().expect("wrong keys");
    assert_eq!(failure.reason, Reason::Incompatible);
    assert!(failure.message.contains("company_id (S) / project_id (S)"), "{}", failure.message);
    let table =
        ctx.aws.dynamodb.describe_table(&ctx.naming.company_data_table()).await.expect("describe").expect("table");
    assert_eq!(table.partition.0, "id");
}

#[tokio::test]
async fn ttl_on_another_attribute_is_reported_and_every_table_still_checked() {
    let ctx = context(Mode::Apply).await;
    create_table(&ctx.naming.replies_trigger_lock_table(), "conversation_id").await;
    let raw = raw_clients().await;
    let other_ttl = aws_sdk_dynamodb::types::TimeToLiveSpecification::builder()
        .enabled(true)
        .attribute_name("ttl")
        .build()
        .expect("spec");
    raw.dynamodb
        .update_time_to_live()
        .table_name(ctx.naming.replies_trigger_lock_table())
        .time_to_live_specification(other_ttl)
        .send()
        .await
        .expect("ttl");
    let report = tables::reconcile(&ctx).await;
    let failure = report.failure().expect("incompatible TTL");
    assert_eq!(failure.reason, Reason::Incompatible);
    assert!(failure.message.contains(r#"expires items by "ttl", not "expires_at""#), "{}", failure.message);
    // The other four tables (and the hand-off and client-events queues) were still created.
    let created = report.changes.iter().filter(|c| c.kind == multicomms_operator::reconcile::ChangeKind::Create);
    assert_eq!(created.count(), 7);
}
