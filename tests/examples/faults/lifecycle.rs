//! Scenario 8: The recipient's word and the message's fate. Every recipient has a conversation;
//! then (a) a second first message is queued for each while half of them answer STOP, (b) every
//! status callback Twilio owes is delivered shuffled, a third of them twice, and (c) a quarter
//! answer and are erased while their reply turns wait on the AI, beside a quarter who answer and
//! are not.
use crate::harness::*;
use aws_sdk_dynamodb::types::AttributeValue;
use futures::StreamExt;
use multicomms_runtime::replies::webhook::path;
use multicomms_testkit::eventually::within;
use multicomms_testkit::fakes::{Fakes, Fault, Service, StatusCallback};
use multicomms_testkit::twilio::Inbound;
use multicomms_wire::conversation::{ConversationRecord, ROLE_ASSISTANT};
use multicomms_wire::delivery::DeliveryStatus;
use multicomms_wire::ChannelKind;
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

const COMPANY_NUMBER: &str = "+447588713814";

pub async fn run(config: &aws_config::SdkConfig, endpoint: &str, sizes: Sizes, credentials: &Credentials) -> Row {
    let n = sizes.lifecycle_recipients;
    let queued = Queued::start(config, endpoint, "lifecycle", n, credentials).await;
    let (naming, fakes) = (&queued.naming, &queued.fakes);
    // A tenth of the messages never arrive: their callbacks end `undelivered` (30003).
    fakes.set_fault_mix(Service::Twilio, vec![(0.1, Fault::Undelivered(30003))], 81);
    let started = Instant::now();
    let run = queued.processor(endpoint);
    let (processor, _) = run.spawn();
    let recipients = queued.recipients.clone();
    converge(config, naming, ChannelKind::Whatsapp, &recipients, started, CONVERGE_LIMIT).await;
    let router_port = free_port();
    let router = router(&queued.dir, naming, endpoint, router_port);
    wait_port(router_port).await;
    let mut row = Row {
        scenario: "8 recipient lifecycle".into(),
        injected: "STOP racing queued messages; callbacks shuffled and repeated; erasure during reply turns".into(),
        unit: "recipients",
        total: recipients.len(),
        ..Row::default()
    };
    let token = &credentials.twilio_token;

    // (a) A second message queued for everyone; every other recipient says STOP while the
    // processor asks the AI for theirs (the pointer still names the first conversation). The
    // AI's answers are held for less than the processor's 5 s timeout.
    let client = reqwest::Client::new();
    let ai_before = fakes.requests(Service::OpenAi).len();
    fakes.hold(Service::OpenAi);
    let second: Vec<String> = futures::stream::iter(recipients.iter().enumerate())
        .map(|(i, r)| request(&client, router_port, &credentials.router_key, 1_000_000 + i, r))
        .buffer_unordered(32)
        .filter_map(|accepted| async move { accepted })
        .collect()
        .await;
    let in_flight = second.len().min(run.concurrency);
    let held = || async { ready(fakes.requests(Service::OpenAi).len() - ai_before >= in_flight) };
    let _ = within(Duration::from_secs(30), held).await;
    let stoppers: Vec<String> = recipients.iter().step_by(2).cloned().collect();
    let acked: HashMap<String, Instant> = futures::stream::iter(stoppers.clone())
        .map(|r| async move { inbound(router_port, token, &r, "STOP").await.map(|at| (r, at)) })
        .buffer_unordered(16)
        .filter_map(|acked| async move { acked })
        .collect()
        .await;
    fakes.release(Service::OpenAi);
    converge_second(config, naming, &second, started).await;
    let late_after_stop: Vec<String> = fakes
        .sent()
        .iter()
        .filter_map(|s| {
            let to = s.field("To")?.trim_start_matches("whatsapp:");
            acked.get(to).filter(|at| s.at > **at).map(|_| to.to_string())
        })
        .collect();
    row.duplicated += late_after_stop.len();
    if !late_after_stop.is_empty() {
        row.notes.push(format!("sent after the STOP was acknowledged to: {late_after_stop:?}"));
    }
    let (not_stopped, queued_left) = (acked.len() < stoppers.len(), second.len() < recipients.len());
    if not_stopped || queued_left {
        row.lost += 1;
        row.notes.push(format!(
            "{} of {} STOPs acknowledged, {} of {} second requests accepted",
            acked.len(),
            stoppers.len(),
            second.len(),
            recipients.len()
        ));
    }

    // (b) Every callback owed, shuffled, a third twice.
    let owed = fakes.status_callbacks();
    let mut draws = Draws::new(88);
    let mut deliveries: Vec<&StatusCallback> = owed.iter().chain(owed.iter().filter(|_| draws.below(3) == 0)).collect();
    for i in (1..deliveries.len()).rev() {
        deliveries.swap(i, draws.below(i as u64 + 1) as usize);
    }
    let refused = futures::stream::iter(deliveries.iter().copied())
        .map(|callback| deliver(&client, router_port, callback))
        .buffer_unordered(16)
        .filter(|status| std::future::ready(*status != 200))
        .count()
        .await;
    let wrong = statuses_wrong(config, naming, &owed).await;
    row.lost += wrong.len() + refused;
    if refused > 0 || !wrong.is_empty() {
        row.notes.push(format!("{refused} callbacks refused; statuses not as Twilio's last word: {wrong:?}"));
    }

    // (c) A quarter answer and are erased while their turns wait on the AI; a quarter answer.
    let talkers: Vec<&String> = recipients.iter().skip(1).step_by(2).collect();
    let (erased, kept) = talkers.split_at(talkers.len() / 2);
    let replies_before = replies_to(fakes);
    fakes.hold(Service::OpenAi);
    let replier = ProcessorRun { replies: true, ..queued.processor(endpoint) }.spawn().0;
    for r in talkers.iter() {
        inbound(router_port, token, r, "is the job still open?").await;
    }
    let asked =
        || fakes.requests(Service::OpenAi).iter().filter(|r| r.json.get("previous_response_id").is_some()).count();
    // The turns the replier runs at once wait on the AI (held for less than its 5 s timeout);
    // the others start after the release and find their conversation erased.
    let in_flight = talkers.len().min(run.concurrency);
    let _ = within(Duration::from_secs(30), || async { ready(asked() >= in_flight) }).await;
    let erased_at: Vec<(String, Instant)> = futures::stream::iter(erased.iter())
        .map(|r| erase(&client, router_port, &credentials.router_key, r))
        .buffer_unordered(8)
        .filter_map(|done| async move { done })
        .collect()
        .await;
    fakes.release(Service::OpenAi);
    let replies_queue = naming.replies_queue(ChannelKind::Whatsapp);
    let drained = || async { ready(depth(config, &replies_queue).await == 0) };
    let _ = within(CONVERGE_LIMIT.saturating_sub(started.elapsed()), drained).await;
    let replies = replies_to(fakes);
    let new_replies = |r: &str| replies.get(r).copied().unwrap_or(0) - replies_before.get(r).copied().unwrap_or(0);
    let records = all_records(config, naming).await;
    let staged = scan_all(config, &naming.replies_stage_table()).await;
    for (r, at) in &erased_at {
        let sent_after = fakes
            .sent()
            .iter()
            .filter(|s| s.field("To").is_some_and(|to| to.ends_with(r.as_str())) && s.at > *at)
            .count();
        let left = records.iter().filter(|c| &c.primary_channel == r).count()
            + staged
                .iter()
                .filter(|i| matches!(i.get("primary_channel"), Some(AttributeValue::S(p)) if p == r))
                .count();
        row.duplicated += sent_after;
        row.lost += left;
        if sent_after + left > 0 {
            row.notes.push(format!("{r}: {sent_after} sends after the erasure, {left} items left"));
        }
    }
    let unanswered: Vec<&&String> = kept.iter().filter(|r| new_replies(r) != 1).collect();
    row.lost += unanswered.len() + erased.len() - erased_at.len();
    if !unanswered.is_empty() {
        row.notes.push(format!("not answered exactly once: {unanswered:?}"));
    }
    let dead = depth(config, &naming.replies_dlq(ChannelKind::Whatsapp)).await;
    row.lost += dead as usize;
    row.ok = row.total.saturating_sub(row.lost.min(row.total));
    row.converged = started.elapsed();
    row.notes.push(format!(
        "{} STOPs racing {} queued messages; {} callbacks delivered ({} distinct); {} erased mid-turn, {} answered",
        acked.len(),
        second.len(),
        deliveries.len(),
        owed.len(),
        erased_at.len(),
        kept.len()
    ));
    replier.stop().await;
    processor.stop().await;
    router.stop().await;
    row
}

/// A second first message for `recipient` (request `i`); the recipient when accepted.
async fn request(client: &reqwest::Client, port: u16, key: &str, i: usize, recipient: &str) -> Option<String> {
    let mut body = multicomms_testkit::environment::example_request();
    body["company_data"] = serde_json::json!({"company_id": "ci-f0000", "project_id": "pi-f0000"});
    body["request_data"]["request_id"] = format!("550e8400-e29b-41d4-a716-{i:012x}").into();
    body["recipient_data"]["recipient_tel"] = recipient.into();
    let url = format!("http://127.0.0.1:{port}/initiate-conversation");
    let response = client.post(url).header("x-api-key", key).body(body.to_string()).send().await.ok()?;
    (response.status() == 200).then(|| recipient.to_string())
}

/// A signed inbound WhatsApp message; when its 200 came back.
async fn inbound(port: u16, token: &str, recipient: &str, text: &str) -> Option<Instant> {
    let message = Inbound::text(ChannelKind::Whatsapp, recipient, COMPANY_NUMBER, text);
    let (body, signature) = message.signed(token, &format!("{PUBLIC_BASE_URL}{}", path(ChannelKind::Whatsapp)));
    let response = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}{}", path(ChannelKind::Whatsapp)))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-twilio-signature", signature)
        .body(body)
        .send()
        .await
        .ok()?;
    (response.status() == 200).then(Instant::now)
}

/// A status callback, as Twilio posts it to the router's public URL; the HTTP status.
async fn deliver(client: &reqwest::Client, port: u16, callback: &StatusCallback) -> u16 {
    let path = callback.url.strip_prefix(PUBLIC_BASE_URL).unwrap_or_default();
    let response = client
        .post(format!("http://127.0.0.1:{port}{path}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-twilio-signature", &callback.signature)
        .body(callback.body())
        .send()
        .await;
    response.map_or(0, |r| r.status().as_u16())
}

/// Erases `recipient` with the company's key; when the 200 came back.
async fn erase(client: &reqwest::Client, port: u16, key: &str, recipient: &str) -> Option<(String, Instant)> {
    let url =
        format!("http://127.0.0.1:{port}/recipients/whatsapp/{recipient}?company_id=ci-f0000&project_id=pi-f0000");
    let response = client.delete(url).header("x-api-key", key).send().await.ok()?;
    (response.status() == 200).then(|| (recipient.to_string(), Instant::now()))
}

/// Waits until the second requests' records are final and the queue is empty.
async fn converge_second(
    config: &aws_config::SdkConfig,
    naming: &multicomms_wire::Naming,
    second: &[String],
    started: Instant,
) {
    let settled = || async {
        // The queue first: a scan is the emulator's most expensive call.
        if depth(config, &naming.channel_queue(ChannelKind::Whatsapp)).await > 0 {
            return Err(());
        }
        let records = all_records(config, naming).await;
        let per: usize =
            second.iter().map(|r| records.iter().filter(|c| &c.primary_channel == r && is_settled(c)).count()).sum();
        ready(per >= 2 * second.len())
    };
    let _ = within(CONVERGE_LIMIT.saturating_sub(started.elapsed()), settled).await;
}

/// A poll's answer for [`within`]: whether what is awaited holds.
fn ready(holds: bool) -> Result<(), ()> {
    if holds {
        Ok(())
    } else {
        Err(())
    }
}

fn is_settled(record: &ConversationRecord) -> bool {
    use multicomms_wire::conversation::ConversationStatus::*;
    !matches!(record.conversation_status, Initiated | Processing | Sending)
}

/// Every conversation record (not the pointers).
async fn all_records(config: &aws_config::SdkConfig, naming: &multicomms_wire::Naming) -> Vec<ConversationRecord> {
    let items = scan_all(config, &naming.conversations_table()).await;
    items.into_iter().filter_map(|item| serde_dynamo::from_item(item).ok()).collect()
}

/// The messages whose recorded status is not the furthest one Twilio sent for them.
async fn statuses_wrong(
    config: &aws_config::SdkConfig,
    naming: &multicomms_wire::Naming,
    owed: &[StatusCallback],
) -> Vec<String> {
    let mut last: BTreeMap<String, DeliveryStatus> = BTreeMap::new();
    for callback in owed {
        let (Some(sid), Some(status)) =
            (callback.field("MessageSid"), callback.field("MessageStatus").and_then(DeliveryStatus::parse))
        else {
            continue;
        };
        let entry = last.entry(sid.to_string()).or_insert(status);
        if status.advances(Some(*entry)) {
            *entry = status;
        }
    }
    let records = all_records(config, naming).await;
    let recorded: HashMap<&str, Option<DeliveryStatus>> = records
        .iter()
        .flat_map(|r| r.messages.iter().filter(|m| m.role == ROLE_ASSISTANT))
        .map(|m| (m.message_id.as_str(), m.delivery_status))
        .collect();
    last.iter()
        .filter(|(sid, status)| recorded.get(sid.as_str()).is_some_and(|found| *found != Some(**status)))
        .map(|(sid, status)| format!("{sid}: {status} expected, {:?} recorded", recorded.get(sid.as_str())))
        .collect()
}

/// Free-form replies the fake Twilio accepted, per recipient.
fn replies_to(fakes: &Fakes) -> HashMap<String, usize> {
    let mut per = HashMap::new();
    for sent in fakes.sent().iter().filter(|s| s.field("ContentSid").is_none()) {
        *per.entry(sent.field("To").unwrap_or_default().trim_start_matches("whatsapp:").to_string()).or_default() += 1;
    }
    per
}
