//! Channel reconcile against the moto emulator: queues, dead-letter queues, drift, ownership.

use crate::support::*;
use multicomms_operator::reconcile::{channel, ChangeKind, Mode, Reason};
use multicomms_wire::ChannelKind;

#[tokio::test]
async fn creates_queue_and_dlq_with_the_original_settings_then_writes_nothing() {
    let ctx = context(Mode::Apply).await;
    let whatsapp = example_channel("whatsapp");
    let report = channel::reconcile(&ctx, &whatsapp, &example_secrets()).await;
    assert!(report.is_ready(), "{:?}", report.subsystems);
    let created: Vec<String> =
        report.changes.iter().filter(|c| c.kind == ChangeKind::Create).map(|c| c.object.clone()).collect();
    let (queue, dlq) = (ctx.naming.channel_queue(ChannelKind::Whatsapp), ctx.naming.channel_dlq(ChannelKind::Whatsapp));
    let (replies, replies_dlq) =
        (ctx.naming.replies_queue(ChannelKind::Whatsapp), ctx.naming.replies_dlq(ChannelKind::Whatsapp));
    assert_eq!(
        created,
        [
            format!("queue {dlq}"),
            format!("queue {queue}"),
            format!("queue {replies_dlq}"),
            format!("queue {replies}"),
            format!("secret {}", ctx.naming.shared_ai_key_secret(ChannelKind::Whatsapp))
        ]
    );
    let replies_queue = ctx.aws.sqs.observe(&replies).await.expect("observe").expect("replies queue exists");
    let replies_dead = ctx.aws.sqs.observe(&replies_dlq).await.expect("observe").expect("replies dlq exists");
    let redrive: serde_json::Value = serde_json::from_str(&replies_queue.attributes["RedrivePolicy"]).expect("json");
    assert_eq!(redrive["deadLetterTargetArn"], replies_dead.arn().expect("arn"));
    assert_eq!(report.outputs.replies_queue.as_ref().map(|q| q.url.as_str()), Some(replies_queue.url.as_str()));

    let main = ctx.aws.sqs.observe(&queue).await.expect("observe").expect("queue exists");
    let dead = ctx.aws.sqs.observe(&dlq).await.expect("observe").expect("dlq exists");
    assert_eq!(main.attributes["VisibilityTimeout"], "905");
    assert_eq!(main.attributes["MessageRetentionPeriod"], "345600");
    assert_eq!(dead.attributes["MessageRetentionPeriod"], "1209600");
    let redrive: serde_json::Value = serde_json::from_str(&main.attributes["RedrivePolicy"]).expect("json");
    assert_eq!(redrive["deadLetterTargetArn"], dead.arn().expect("arn"));
    assert_eq!(redrive["maxReceiveCount"].to_string().trim_matches('"'), "3");
    assert_eq!(main.tags["multicomms.io/managed-by"], "Channel/multicomms-dev/whatsapp");
    assert_eq!(report.outputs.queue.as_ref().map(|q| q.url.as_str()), Some(main.url.as_str()));
    assert_eq!(report.outputs.dead_letter_queue.as_ref().map(|q| q.arn.as_str()), dead.arn());

    let again = same_place(&ctx, Mode::Apply).await;
    let report = channel::reconcile(&again, &whatsapp, &example_secrets()).await;
    assert!(report.changes.is_empty(), "{:?}", report.changes);
    assert_eq!(again.aws.calls.writes(), 0, "{:?}", again.aws.calls.by_operation());
}

#[tokio::test]
async fn attribute_drift_is_planned_then_repaired() {
    let ctx = context(Mode::Apply).await;
    let sms = example_channel("sms");
    assert!(channel::reconcile(&ctx, &sms, &example_secrets()).await.is_ready());
    let main = ctx.aws.sqs.observe(&ctx.naming.channel_queue(ChannelKind::Sms)).await.expect("observe").expect("queue");
    let dead = ctx.aws.sqs.observe(&ctx.naming.channel_dlq(ChannelKind::Sms)).await.expect("observe").expect("dlq");
    let drifted_redrive = format!(r#"{{"deadLetterTargetArn":"{}","maxReceiveCount":9}}"#, dead.arn().expect("arn"));
    let raw = raw_clients().await;
    raw.sqs
        .set_queue_attributes()
        .queue_url(&main.url)
        .attributes(aws_sdk_sqs::types::QueueAttributeName::VisibilityTimeout, "30")
        .attributes(aws_sdk_sqs::types::QueueAttributeName::RedrivePolicy, drifted_redrive)
        .send()
        .await
        .expect("drift");

    let plan = same_place(&ctx, Mode::Plan).await;
    let report = channel::reconcile(&plan, &sms, &example_secrets()).await;
    assert_eq!(report.changes.len(), 1, "{:?}", report.changes);
    assert_eq!(report.changes[0].fields, ["RedrivePolicy", "VisibilityTimeout"]);
    assert_eq!(plan.aws.calls.writes(), 0);

    let repair = same_place(&ctx, Mode::Apply).await;
    assert!(channel::reconcile(&repair, &sms, &example_secrets()).await.is_ready());
    assert_eq!(repair.aws.calls.by_operation().get("SetQueueAttributes"), Some(&1));
    let main = ctx.aws.sqs.observe(&ctx.naming.channel_queue(ChannelKind::Sms)).await.expect("observe").expect("queue");
    assert_eq!(main.attributes["VisibilityTimeout"], "600");
    let redrive: serde_json::Value = serde_json::from_str(&main.attributes["RedrivePolicy"]).expect("json");
    assert_eq!(redrive["maxReceiveCount"].to_string().trim_matches('"'), "3");
}

#[tokio::test]
async fn a_second_channel_of_the_same_type_conflicts() {
    let ctx = context(Mode::Apply).await;
    let email = example_channel("email");
    assert!(channel::reconcile(&ctx, &email, &example_secrets()).await.is_ready());
    let mut rival = example_channel("email");
    rival.metadata.namespace = Some("someone-else".into());
    let again = same_place(&ctx, Mode::Apply).await;
    let report = channel::reconcile(&again, &rival, &example_secrets()).await;
    let failure = report.failure().expect("conflict");
    assert_eq!(failure.reason, Reason::OwnershipConflict);
    assert!(failure.message.contains("managed by Channel/multicomms-dev/email"), "{}", failure.message);
    assert_eq!(again.aws.calls.writes(), 0);
}
