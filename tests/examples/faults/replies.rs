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
    // Each reply names the AI answer it carries, and that answer the messages it answered.
    fakes.tag_answers();
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
        let mut acknowledged: BTreeMap<String, Vec<Acknowledged>> = BTreeMap::new();
        for round in 0..2 {
            let sids: Vec<(String, Vec<Acknowledged>)> = futures::stream::iter(conversations.clone())
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
                "{} conversations; {} still leased at the end; {} reply sends ({} not in their record, each \
                 in a conversation handed to a person: {}), {} AI calls",
                conversations.len(),
                tally.locked,
                tally.reply_sends,
                tally.unrecorded_sends,
                tally.unrecorded_sends == tally.unrecorded_handed_off,
                fakes.requests(Service::OpenAi).len()
            ));
            row.notes.extend(tally.problems);
            break;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    row.converged = started.elapsed();
    replier.stop().await;
    router.stop().await;
    row
}

/// An inbound message the webhook acknowledged (200).
struct Acknowledged {
    sid: String,
    text: String,
}

/// Two messages 200 ms apart from `recipient`; those the webhook acknowledged.
async fn burst(router_port: u16, token: &str, recipient: String, round: usize) -> (String, Vec<Acknowledged>) {
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
            Ok(r) if r.status() == 200 => acknowledged.push(Acknowledged { sid: message.sid.clone(), text }),
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
    /// Messages answered by more than one reply the provider accepted: a send made twice.
    duplicated: usize,
    reply_sends: usize,
    /// Replies the provider accepted that their conversation's record does not hold (a send
    /// whose outcome was unknown), and how many of those are in a conversation handed to a person.
    unrecorded_sends: usize,
    unrecorded_handed_off: usize,
    /// What was lost or duplicated, conversation by conversation.
    problems: Vec<String>,
    /// Nothing is staged, leased or unanswered any more.
    settled: bool,
}

/// Each acknowledged message: answered (in its record, a reply after it), in a conversation
/// handed to a person, or in one whose reply failed with a status; otherwise lost. A message
/// that more than one accepted reply answered was sent twice: each reply's text names the AI
/// answer it carries ([`Fakes::tag_answers`]) and that answer's input the messages it answered,
/// so a reply sent once and then handed off (its outcome unknown) is not a duplicate.
async fn tally(
    config: &aws_config::SdkConfig,
    naming: &multicomms_wire::Naming,
    fakes: &Fakes,
    acknowledged: &BTreeMap<String, Vec<Acknowledged>>,
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
    let replies = replies_sent(fakes);
    let mut tally = Tally::default();
    for (recipient, messages) in acknowledged {
        let Some((record, leased)) = by_recipient.get(recipient) else {
            tally.lost += messages.len();
            tally.problems.push(format!("{recipient}: no conversation record"));
            continue;
        };
        tally.locked += usize::from(*leased);
        let sent = replies.get(recipient).map(Vec::as_slice).unwrap_or_default();
        tally.reply_sends += sent.len();
        for reply in sent {
            let recorded =
                record.messages.iter().any(|m| m.role == ROLE_ASSISTANT && m.content.contains(&reply.answer));
            if !recorded {
                tally.unrecorded_sends += 1;
                tally.unrecorded_handed_off += usize::from(record.hand_off_to_human);
            }
        }
        let failed = record.conversation_status.as_str().starts_with("failed");
        for message in messages {
            let answers = sent.iter().filter(|reply| reply.answered.iter().any(|t| t == &message.text)).count();
            if answers > 1 {
                tally.duplicated += 1;
                tally.problems.push(format!("{recipient}: {:?} answered by {answers} replies", message.text));
            }
            let at = record.messages.iter().position(|m| m.role == ROLE_USER && m.message_id == message.sid);
            let answered = at.is_some_and(|at| record.messages[at..].iter().any(|m| m.role == ROLE_ASSISTANT));
            match (answered, record.hand_off_to_human, failed) {
                (true, _, _) => tally.answered += 1,
                (false, true, _) => tally.handed_off += 1,
                (false, false, true) => tally.failed += 1,
                _ => {
                    tally.lost += 1;
                    tally.problems.push(format!(
                        "{recipient}: {:?} neither answered nor handed off (status {}, leased {leased})",
                        message.text, record.conversation_status
                    ));
                }
            }
        }
    }
    tally.settled = staged == 0 && tally.locked == 0 && tally.lost == 0;
    tally
}

/// A free-form reply the provider accepted: the AI answer it carries and the messages (texts)
/// that answer was asked to answer.
struct ReplySent {
    answer: String,
    answered: Vec<String>,
}

/// The replies each recipient was sent (not the first messages, which are templates).
fn replies_sent(fakes: &Fakes) -> HashMap<String, Vec<ReplySent>> {
    let mut per: HashMap<String, Vec<ReplySent>> = HashMap::new();
    for sent in fakes.sent().iter().filter(|s| s.field("ContentSid").is_none()) {
        let to = sent.field("To").unwrap_or_default().trim_start_matches("whatsapp:").to_string();
        let body = sent.field("Body").unwrap_or_default();
        let answer = body.rsplit_once(" [").map(|(_, tag)| tag.trim_end_matches(']').to_string()).unwrap_or_default();
        let input = fakes.answered(&answer).and_then(|input| input.as_str().map(str::to_string)).unwrap_or_default();
        let answered = input.lines().map(str::to_string).collect();
        per.entry(to).or_default().push(ReplySent { answer, answered });
    }
    per
}
