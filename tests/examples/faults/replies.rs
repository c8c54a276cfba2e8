//! Scenario 5: Replies under faults: open conversations answer in bursts (signed Twilio webhooks into the
//! router) while the reply processor is SIGKILLed at random moments and the fake OpenAI fails
//! 20 % of its calls.
use crate::harness::*;
use aws_sdk_dynamodb::types::AttributeValue;
use futures::StreamExt;
use multicomms_runtime::replies::webhook::path;
use multicomms_testkit::fakes::{Fakes, Fault, Service};
use multicomms_testkit::twilio::Inbound;
use multicomms_wire::conversation::{attribute, ConversationRecord, ROLE_ASSISTANT, ROLE_USER};
use multicomms_wire::ChannelKind;
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

const COMPANY_NUMBER: &str = "+447588713814";

pub async fn run(config: &aws_config::SdkConfig, endpoint: &str, sizes: Sizes, credentials: &Credentials) -> Row {
    // The conversations, opened the normal way (no faults yet).
    let queued = Queued::start(config, endpoint, "replies", sizes.reply_conversations, credentials).await;
    let (naming, fakes) = (&queued.naming, &queued.fakes);
    fakes.set_latency(Service::Twilio, Duration::from_millis(50));
    let mut first = queued.processor(endpoint);
    let (initial, _) = first.spawn();
    let opened = &queued.recipients;
    converge(config, naming, ChannelKind::Whatsapp, opened, Instant::now(), CONVERGE_LIMIT).await;
    initial.stop().await;
    let initial_sends = sends(fakes);
    let conversations: Vec<String> = opened.iter().filter(|r| initial_sends.get(*r) == Some(&1)).cloned().collect();
    let router_port = free_port();
    let router = router(&queued.dir, naming, endpoint, router_port);
    wait_port(router_port).await;

    fakes.set_fault_mix(Service::OpenAi, vec![(0.1, Fault::Status(429)), (0.1, Fault::Status(500))], 56);
    first.replies = true;
    let started = Instant::now();
    let (replier, _) = first.spawn();
    let kills = async {
        let mut replier = replier;
        let mut draws = Draws::new(sizes.reply_conversations as u64 + 7);
        for _ in 0..sizes.reply_kills {
            tokio::time::sleep(draws.between_ms(1000, 4000)).await;
            replier.kill().await;
            replier = first.spawn().0;
        }
        replier
    };
    let bursts = async {
        let mut acknowledged: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for round in 0..2 {
            let sids: Vec<(String, Vec<String>)> = futures::stream::iter(conversations.clone())
                .map(|recipient| burst(router_port, &credentials.twilio_token, recipient, round))
                .buffer_unordered(32)
                .collect()
                .await;
            for (recipient, sids) in sids {
                acknowledged.entry(recipient).or_default().extend(sids);
            }
            tokio::time::sleep(Duration::from_secs(3)).await;
        }
        acknowledged
    };
    let (replier, acknowledged) = tokio::join!(kills, bursts);
    let mut row = Row {
        scenario: "5 replies under faults".into(),
        injected: format!("{} × SIGKILL of the reply processor, OpenAI 10 % 429 + 10 % 500", sizes.reply_kills),
        unit: "inbound msgs",
        ..Row::default()
    };
    let limit = CONVERGE_LIMIT;
    loop {
        // The replies queue first: scans are the emulator's most expensive calls.
        if depth(config, &naming.replies_queue(ChannelKind::Whatsapp)).await > 0 && started.elapsed() < limit {
            tokio::time::sleep(Duration::from_secs(2)).await;
            continue;
        }
        let tally = tally(config, naming, fakes, &acknowledged).await;
        if tally.settled || started.elapsed() > limit {
            row.total = acknowledged.values().map(Vec::len).sum();
            (row.ok, row.handed_off, row.failed, row.lost, row.duplicated) =
                (tally.answered, tally.handed_off, tally.failed, tally.lost + tally.locked, tally.duplicated);
            row.notes.push(format!(
                "{} conversations; {} still leased at the end; {} reply sends, {} AI calls",
                conversations.len(),
                tally.locked,
                tally.reply_sends,
                fakes.requests(Service::OpenAi).len()
            ));
            break;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    row.converged = started.elapsed();
    replier.stop().await;
    router.stop().await;
    row
}

/// Two messages 200 ms apart from `recipient`; the SIDs the webhook acknowledged (200).
async fn burst(router_port: u16, token: &str, recipient: String, round: usize) -> (String, Vec<String>) {
    let client = reqwest::Client::new();
    let mut acknowledged = Vec::new();
    for part in 0..2 {
        let text = format!("round {round} part {part}");
        let message = Inbound::text(ChannelKind::Whatsapp, &recipient, COMPANY_NUMBER, &text);
        let (body, signature) = message.signed(token, &format!("{PUBLIC_BASE_URL}{}", path(ChannelKind::Whatsapp)));
        let response = client
            .post(format!("http://127.0.0.1:{router_port}{}", path(ChannelKind::Whatsapp)))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("x-twilio-signature", signature)
            .body(body)
            .send()
            .await;
        match response {
            Ok(r) if r.status() == 200 => acknowledged.push(message.sid.clone()),
            Ok(r) => eprintln!("webhook: {} for {recipient}", r.status()),
            Err(e) => eprintln!("webhook: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    (recipient, acknowledged)
}

#[derive(Default)]
struct Tally {
    answered: usize,
    handed_off: usize,
    failed: usize,
    lost: usize,
    locked: usize,
    duplicated: usize,
    reply_sends: usize,
    /// Nothing is staged, leased or unanswered any more.
    settled: bool,
}

/// Each acknowledged message: answered (in its record, a reply after it), in a conversation
/// handed to a person, or in one whose reply failed with a status; otherwise lost. A
/// conversation with more reply sends at the provider than replies recorded sent one twice.
async fn tally(
    config: &aws_config::SdkConfig,
    naming: &multicomms_wire::Naming,
    fakes: &Fakes,
    acknowledged: &BTreeMap<String, Vec<String>>,
) -> Tally {
    let items = scan_all(config, &naming.conversations_table()).await;
    let staged = scan_all(config, &naming.replies_stage_table()).await;
    let staged = staged.iter().filter(|i| !matches!(i.get("handed_off"), Some(AttributeValue::Bool(true)))).count();
    let mut by_recipient: HashMap<String, (ConversationRecord, bool)> = HashMap::new();
    for item in items {
        // A lease past its expiry blocks nobody: the next turn takes the conversation over.
        let until = match item.get(attribute::REPLY_LEASE_EXPIRES_AT) {
            Some(AttributeValue::N(ms)) => ms.parse::<u128>().unwrap_or(0),
            _ => 0,
        };
        let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis());
        let leased = item.contains_key(attribute::REPLY_LEASE_ID) && until > now_ms;
        if let Ok(record) = serde_dynamo::from_item::<_, ConversationRecord>(item) {
            by_recipient.insert(record.primary_channel.clone(), (record, leased));
        }
    }
    let sends = sends(fakes);
    let mut tally = Tally::default();
    for (recipient, sids) in acknowledged {
        let Some((record, leased)) = by_recipient.get(recipient) else {
            tally.lost += sids.len();
            continue;
        };
        tally.locked += usize::from(*leased);
        let replies_recorded = record.messages.iter().filter(|m| m.role == ROLE_ASSISTANT).count().saturating_sub(1);
        let reply_sends = sends.get(recipient).copied().unwrap_or(0).saturating_sub(1);
        tally.reply_sends += reply_sends;
        tally.duplicated += usize::from(reply_sends > replies_recorded);
        let failed = record.conversation_status.as_str().starts_with("failed");
        for sid in sids {
            let at = record.messages.iter().position(|m| m.role == ROLE_USER && &m.message_id == sid);
            let answered = at.is_some_and(|at| record.messages[at..].iter().any(|m| m.role == ROLE_ASSISTANT));
            match (answered, record.hand_off_to_human, failed) {
                (true, _, _) => tally.answered += 1,
                (false, true, _) => tally.handed_off += 1,
                (false, false, true) => tally.failed += 1,
                _ => tally.lost += 1,
            }
        }
    }
    tally.settled = staged == 0 && tally.locked == 0 && tally.lost == 0;
    tally
}
