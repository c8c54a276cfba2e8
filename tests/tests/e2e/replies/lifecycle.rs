//! A conversation's time: WhatsApp's 24-hour window (a reply due after it is never sent
//! free-form, nor paid for), a conversation closed after the company's inactivity period, and
//! records that expire after its retention.
use super::*;
use aws_sdk_dynamodb::types::AttributeValue;

const DAY_MS: u64 = 24 * 3600 * 1000;

impl Env {
    /// Moves every staged fragment of the conversation `ms` into the past.
    async fn age_staged(&self, key: &ConversationKey, ms: u64) {
        for fragment in self.staged(key).await {
            self.dynamodb
                .update_item()
                .table_name(self.naming.replies_stage_table())
                .set_key(Some(fragment.stage_key()))
                .update_expression("SET received_at_ms = :at")
                .expression_attribute_values(":at", AttributeValue::N((fragment.received_at_ms - ms).to_string()))
                .send()
                .await
                .expect("UpdateItem");
        }
    }
}

#[tokio::test]
async fn a_reply_due_after_whatsapps_24_hour_window_goes_to_a_person_without_an_ai_call() {
    let env = env(1).await;
    let router = env.router().await;
    let key = env.open(&router, ChannelKind::Whatsapp, 0x81).await;
    let replier = env.replier(ChannelKind::Whatsapp, LONG, LONG);
    env.send(&router, &whatsapp("sorry for the late answer: yes, still interested")).await;
    let trigger = env.take(&env.naming.replies_queue(ChannelKind::Whatsapp), 10).await.expect("trigger");
    // The turn comes a day later (a backlog, an outage): the window the message opened is shut.
    env.age_staged(&key, DAY_MS + 60_000).await;
    let (ai_calls, sent) = (env.fakes.requests(Service::OpenAi).len(), env.fakes.sent().len());

    assert_eq!(replier.process(&trigger, false).await, Outcome::HandedOff);
    assert_eq!(env.fakes.requests(Service::OpenAi).len(), ai_calls, "the AI is not paid for a reply that cannot go");
    assert_eq!(env.fakes.sent().len(), sent, "nothing free-form outside the window");
    let handed = env.handed_off().await.expect("the message, for a person");
    assert!(handed.reason.contains("24-hour"), "{}", handed.reason);
    assert!(env.record(&key).await.hand_off_to_human);
}

#[tokio::test]
async fn a_conversation_idle_past_the_companys_inactivity_period_is_closed_and_its_records_expire() {
    let env = env(1).await;
    env.set_company("SET inactivity_days = :v", json!(30)).await;
    env.set_company("SET retention_days = :v", json!(365)).await;
    let router = env.router().await;
    let key = env.open(&router, ChannelKind::Whatsapp, 0x82).await;
    let year_on = multicomms_wire::timestamp::epoch_seconds() + 365 * 86_400;
    let expires_at = env.record(&key).await.expires_at.expect("an expiry");
    assert!((year_on - 60..=year_on).contains(&expires_at), "DynamoDB's TTL deletes it a year on: {expires_at}");

    // Years without a word from either side (an RFC 3339 time, as the record keeps them).
    let idle = "2020-01-01T00:00:00.000000+00:00";
    env.dynamodb
        .update_item()
        .table_name(env.naming.conversations_table())
        .set_key(Some(key.to_item()))
        .update_expression("SET updated_at = :at")
        .expression_attribute_values(":at", AttributeValue::S(idle.into()))
        .send()
        .await
        .expect("UpdateItem");
    env.send(&router, &whatsapp("hello again, is the job still open?")).await;
    let handed = env.handed_off().await.expect("the late answer, for a person");
    assert!(handed.reason.contains("30 days"), "{}", handed.reason);
    assert!(env.staged(&key).await.is_empty(), "not for the AI");
}

#[tokio::test]
async fn after_the_window_the_companys_reengagement_template_goes_instead_of_an_ai_reply() {
    let env = env(1).await;
    let template = "HX99999999999999999999999999999999";
    env.set_company("SET channel_config.whatsapp.reengagement_content_sid = :v", json!(template)).await;
    let router = env.router().await;
    let key = env.open(&router, ChannelKind::Whatsapp, 0x83).await;
    let before = env.record(&key).await;
    let replier = env.replier(ChannelKind::Whatsapp, LONG, LONG);
    env.send(&router, &whatsapp("back from holiday: yes please")).await;
    let trigger = env.take(&env.naming.replies_queue(ChannelKind::Whatsapp), 10).await.expect("trigger");
    env.age_staged(&key, DAY_MS + 60_000).await;
    let ai_calls = env.fakes.requests(Service::OpenAi).len();

    assert_eq!(replier.process(&trigger, false).await, Outcome::Sent);
    assert_eq!(env.fakes.requests(Service::OpenAi).len(), ai_calls, "no AI reply to pay for");
    let sent = env.fakes.sent().pop().expect("the template");
    assert_eq!(sent.field("ContentSid"), Some(template));
    assert_eq!(sent.field("ContentVariables"), Some(r#"{"1":"Lee"}"#), "the recipient's first name");
    let record = env.record(&key).await;
    assert_eq!(record.conversation_status, ConversationStatus::ReplySent);
    let last = record.messages.last().expect("the template in the record");
    assert!(last.content.starts_with(&format!("[{template}]")), "{last:?}");
    assert_eq!(record.response_id, before.response_id, "the AI's conversation goes on from its last answer");
    assert!(!record.hand_off_to_human);
}

#[tokio::test]
async fn each_reply_moves_the_records_expiry_a_retention_period_on() {
    let env = env(1).await;
    env.set_company("SET retention_days = :v", json!(7)).await;
    let router = env.router().await;
    let key = env.open(&router, ChannelKind::Whatsapp, 0x84).await;
    env.dynamodb
        .update_item()
        .table_name(env.naming.conversations_table())
        .set_key(Some(key.to_item()))
        .update_expression("SET expires_at = :soon")
        .expression_attribute_values(":soon", AttributeValue::N("1000".into()))
        .send()
        .await
        .expect("UpdateItem");
    env.send(&router, &whatsapp("still interested")).await;
    let trigger = env.take(&env.naming.replies_queue(ChannelKind::Whatsapp), 10).await.expect("trigger");
    let replier = env.replier(ChannelKind::Whatsapp, LONG, LONG);
    assert_eq!(replier.process(&trigger, false).await, Outcome::Sent);
    let week_on = multicomms_wire::timestamp::epoch_seconds() + 7 * 86_400;
    let expires_at = env.record(&key).await.expires_at.expect("an expiry");
    assert!((week_on - 60..=week_on).contains(&expires_at), "a week after the reply: {expires_at}");
}
