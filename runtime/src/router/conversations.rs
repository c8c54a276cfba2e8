//! The conversations API, for the company's people (the inbox calls it too), under
//! `/companies/{company_id}/projects/{project_id}/conversations`: list by state, read one whole,
//! answer the recipient (`/messages`), take over, give back to the AI, close. Every request is an
//! agent's ([`super::agents`]) and reaches only its own company's conversations: another
//! company's conversation answers exactly as one that does not exist. Every change is written
//! to the record with the agent's name and to an audit log line (target `audit`).
//!
//! A person's message goes out as a reply turn's does: under the conversation's lease (no AI
//! turn runs meanwhile) and the never-twice claim; a send whose outcome is unknown is never
//! repeated, and the agent is told so.
use super::agents::{authenticate, Credentials, Sessions};
use super::error::RouterError;
use crate::shared::companies::{Companies, Company};
use crate::shared::conversations::{ConversationStore, Written};
use crate::shared::failure::Failure;
use crate::shared::secrets::Secrets;
use crate::shared::senders::{Addressed, SendError, Senders};
use multicomms_wire::channel::ChannelKind;
use multicomms_wire::client_events::EventType;
use multicomms_wire::company::Agent;
use multicomms_wire::conversation::{
    ConversationKey, ConversationRecord, ConversationStatus, Message, ROLE_HUMAN, ROLE_USER,
};
use multicomms_wire::inbox::{ConversationRef, InboxState};
use multicomms_wire::timestamp::{epoch_seconds, now};
use serde_json::{json, Value};
use std::time::Duration;

pub const CONVERSATIONS_PATH: &str = "/companies/{company_id}/projects/{project_id}/conversations";
/// Conversations a page holds unless the request says.
pub const DEFAULT_PAGE: usize = 25;
pub const MAX_PAGE: usize = 100;
/// The longest a person's message may be before the channel's own limit.
pub const MAX_PERSON_MESSAGE_CHARS: usize = 1_600;

/// What the API reads and writes through.
pub struct Desk {
    pub companies: std::sync::Arc<Companies>,
    pub store: ConversationStore,
    pub sessions: Sessions,
    pub secrets: Secrets,
    pub senders: Senders,
    pub opt_outs: crate::shared::opt_outs::OptOuts,
    /// The companies' events (taken over, given back, closed, a person's message sent).
    pub events: std::sync::Arc<crate::shared::client_events::ClientEvents>,
    /// How long a person's send holds the conversation's lease at most.
    pub lease: Duration,
}

/// The request's company, project and credentials.
pub struct Asked<'a> {
    pub company_id: &'a str,
    pub project_id: &'a str,
    pub credentials: Credentials<'a>,
}

/// An action on one conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    TakeOver,
    GiveBack,
    Close,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::TakeOver => "take_over",
            Action::GiveBack => "give_back",
            Action::Close => "close",
        }
    }
}

impl Desk {
    /// The agent and their company, or the refusal.
    pub async fn agent(
        &self,
        asked: &Asked<'_>,
        changes: bool,
    ) -> Result<(std::sync::Arc<Company>, Agent), RouterError> {
        if matches!(asked.credentials, Credentials::None) {
            return Err(RouterError::missing_agent_credentials());
        }
        let company = self.companies.get(asked.company_id, asked.project_id).await?;
        let agent = authenticate(company.as_deref(), &asked.credentials, &self.sessions, changes, epoch_seconds())?;
        let agent = agent.clone();
        let company = company.ok_or_else(RouterError::invalid_agent_token)?;
        Ok((company, agent))
    }

    /// `GET …/conversations?state=&limit=&cursor=`: newest activity first.
    pub async fn list(&self, asked: Asked<'_>, query: Option<&str>) -> Result<Value, RouterError> {
        let (company, _) = self.agent(&asked, false).await?;
        let page = PageRequest::parse(query)?;
        let records = self.store.project_conversations(asked.company_id, asked.project_id).await.map_err(database)?;
        let idle = company.record.inactivity_days();
        let now = chrono::Utc::now();
        let (shown, next) = page.of(records, |r| InboxState::of(r, idle, now));
        let conversations: Vec<Value> = shown.iter().map(|(r, state)| summary(r, *state)).collect();
        Ok(json!({"status": "success", "conversations": conversations, "next_cursor": next}))
    }

    /// `GET …/conversations/{id}`: the conversation and every message.
    pub async fn read(&self, asked: Asked<'_>, id: &str) -> Result<Value, RouterError> {
        let (company, _) = self.agent(&asked, false).await?;
        let record = self.record_of(&asked, id).await?;
        let state = InboxState::of(&record, company.record.inactivity_days(), chrono::Utc::now());
        Ok(json!({"status": "success", "conversation": whole(&record, state)}))
    }

    /// Take over, give back, close.
    pub async fn act(&self, asked: Asked<'_>, id: &str, action: Action) -> Result<Value, RouterError> {
        let (company, agent) = self.agent(&asked, true).await?;
        let record = self.record_of(&asked, id).await?;
        let state = InboxState::of(&record, company.record.inactivity_days(), chrono::Utc::now());
        let key = record.key();
        let written = match action {
            Action::Close if record.closed_at.is_some() => Ok(Written::Applied),
            Action::Close => self.store.close(&key, &agent.name).await,
            _ if state == InboxState::Closed => return Err(RouterError::conversation_closed()),
            Action::TakeOver => self.store.agent_takes_over(&key, &agent.name).await,
            Action::GiveBack if !record.hand_off_to_human => return Err(RouterError::not_handed_to_person()),
            Action::GiveBack => {
                let from = record.conversation_status;
                self.store.give_back(&key, &agent.name, (from, given_back_status(from))).await
            }
        }
        .map_err(database)?;
        if written == Written::Superseded {
            // A reply turn holds the lease, or the record moved on since it was read.
            return Err(RouterError::conversation_busy());
        }
        audit(&asked, &agent, action.as_str(), id);
        let record = self.record_of(&asked, id).await?;
        let kind = match action {
            Action::TakeOver => EventType::TakenOver,
            Action::GiveBack => EventType::GivenBack,
            Action::Close => EventType::Closed,
        };
        self.events.emit(Some(&company.record), &record, kind, json!({"agent": agent.name})).await;
        let state = InboxState::of(&record, company.record.inactivity_days(), chrono::Utc::now());
        Ok(json!({"status": "success", "conversation": summary(&record, state)}))
    }

    /// `POST …/conversations/{id}/messages` `{"text": "…"}`: the agent's message to the
    /// recipient, sent under the claim and recorded with role `human` and their name.
    pub async fn write(&self, asked: Asked<'_>, id: &str, body: &[u8]) -> Result<Value, RouterError> {
        let (company, agent) = self.agent(&asked, true).await?;
        let text = person_text(body)?;
        let record = self.record_of(&asked, id).await?;
        let state = InboxState::of(&record, company.record.inactivity_days(), chrono::Utc::now());
        may_write(&record, state, chrono::Utc::now())?;
        if let Some(why) = company.record.rate_limits.too_long(record.channel_method, &text) {
            return Err(RouterError::invalid_message(&why));
        }
        let opted_out = self.opt_outs.opted_out(asked.company_id, record.channel_method, &record.primary_channel).await;
        if opted_out.map_err(database)? {
            return Err(RouterError::recipient_opted_out(record.channel_method.as_str()));
        }
        let key = record.key();
        let token = uuid::Uuid::new_v4().to_string();
        match self.store.lease(&key, &token, self.lease).await.map_err(database)? {
            crate::shared::conversations::Leased::Ours(_) => {}
            crate::shared::conversations::Leased::Held(_) => return Err(RouterError::conversation_busy()),
            crate::shared::conversations::Leased::NoConversation => return Err(RouterError::conversation_not_found()),
        }
        let sent = self.send_claimed(&company, &record, &token, &text).await;
        let message = match sent {
            Ok(sent) => Message {
                message_id: sent.message_id,
                timestamp: now(),
                role: ROLE_HUMAN.into(),
                content: sent.content,
                agent: Some(agent.name.clone()),
                ..Default::default()
            },
            Err(error) => {
                audit(&asked, &agent, "message_not_sent", id);
                return Err(error);
            }
        };
        let expires_at = company.record.expires_at(epoch_seconds());
        if let Err(e) = self.store.person_reply_sent(&key, &token, &message, expires_at).await {
            // Sent, so never sent again: the record is behind, which the log says loudly.
            tracing::error!(error = %e, message_id = message.message_id, "a person's message was sent but not recorded");
        }
        audit(&asked, &agent, "message", id);
        let data = json!({"message_id": message.message_id, "text": message.content, "agent": agent.name});
        self.events.emit(Some(&company.record), &record, EventType::MessageSent, data).await;
        Ok(json!({"status": "success", "message": message_json(&message)}))
    }

    /// The claim, the send, and what an unsent or unknown send leaves on the record.
    async fn send_claimed(
        &self,
        company: &Company,
        record: &ConversationRecord,
        token: &str,
        text: &str,
    ) -> Result<crate::shared::senders::Sent, RouterError> {
        let key = record.key();
        let give_back = |reason: String| async move {
            let outcome = Some((record.conversation_status, reason.as_str()));
            if let Err(e) = self.store.handed_off(&record.key(), token, &[], outcome).await {
                tracing::warn!(error = %e, "the lease was not given back; it expires");
            }
        };
        match self.store.claim_person_reply(&record.key(), token).await {
            Ok(Written::Applied) => {}
            Ok(Written::Superseded) => {
                // A first message is being sent: the lease this request took goes back.
                if let Err(e) = self.store.release_lease(&key, token, None).await {
                    tracing::warn!(error = %e, "the lease was not given back; it expires");
                }
                return Err(RouterError::conversation_busy());
            }
            Err(e) => {
                give_back(format!("claim: {e}")).await;
                return Err(database(e));
            }
        }
        let channel = record.channel_method;
        let credentials_id = company.record.channel_config.credentials_id(channel).unwrap_or_default();
        let credentials = match self.secrets.twilio(credentials_id).await {
            Ok(credentials) => credentials,
            Err(e) => {
                tracing::error!(error = %e, "the channel's credentials were not read");
                give_back("the channel's credentials were not read".into()).await;
                return Err(RouterError::send_failed("the channel's credentials could not be read"));
            }
        };
        let sender = company.record.channel_config.sender(channel).unwrap_or_default();
        let to = Addressed { from: sender, to: &record.primary_channel, conversation_id: &record.conversation_id };
        let sent = match channel {
            ChannelKind::Whatsapp => self.senders.whatsapp_text(&credentials, to, text).await,
            _ => self.senders.sms(&credentials, to, text).await,
        };
        match sent {
            Ok(sent) => Ok(sent),
            Err(SendError::NotSent(failure)) => {
                self.secrets.forget(credentials_id);
                give_back(format!("a person's message was not sent: {failure}")).await;
                let why = match failure {
                    Failure::Transient(_) => "the provider is unavailable; try again",
                    Failure::Permanent(_) => "the provider refused it",
                };
                Err(RouterError::send_failed(why))
            }
            Err(SendError::Unknown(why)) => {
                let reason = format!("a person's message may have been delivered ({why}); it is not sent again");
                let outcome = Some((ConversationStatus::SendOutcomeUnknown, reason.as_str()));
                if let Err(e) = self.store.handed_off(&key, token, &[], outcome).await {
                    tracing::error!(error = %e, "the unknown send was not recorded");
                }
                Err(RouterError::send_outcome_unknown())
            }
        }
    }

    /// The record `id` names, if it is this company's and project's.
    async fn record_of(&self, asked: &Asked<'_>, id: &str) -> Result<ConversationRecord, RouterError> {
        let key = ConversationRef::decode(id).ok_or_else(RouterError::conversation_not_found)?;
        let prefix = format!("{}#{}#", asked.company_id, asked.project_id);
        if !key.conversation_id.starts_with(&prefix) {
            return Err(RouterError::conversation_not_found());
        }
        let record = self.store.record(&key).await.map_err(database)?;
        record
            .filter(|r| r.company_id == asked.company_id && r.project_id == asked.project_id)
            .ok_or_else(RouterError::conversation_not_found)
    }
}

fn database(e: Failure) -> RouterError {
    tracing::error!(error = %e, "the conversations table was not read or written");
    RouterError::database_error()
}

/// One line per action, with who did it to what.
fn audit(asked: &Asked<'_>, agent: &Agent, action: &str, conversation: &str) {
    tracing::info!(
        target: "audit",
        company_id = asked.company_id,
        project_id = asked.project_id,
        agent = agent.name,
        action,
        conversation,
        "agent action"
    );
}

/// The status a conversation given back to the AI moves to: one the reply turn proceeds from.
pub fn given_back_status(status: ConversationStatus) -> ConversationStatus {
    match status {
        ConversationStatus::InitialMessageSent | ConversationStatus::ReplySent | ConversationStatus::Retry => status,
        // A failure, an unknown send a person has now checked: the AI's next turn starts over.
        _ => ConversationStatus::Retry,
    }
}

/// Why a person may not write to the recipient of `record` now, if they may not.
pub fn may_write(
    record: &ConversationRecord,
    state: InboxState,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(), RouterError> {
    if !state.person_may_answer() {
        return Err(RouterError::conversation_closed());
    }
    if record.channel_method == ChannelKind::Email {
        return Err(RouterError::reply_channel_unsupported(record.channel_method.as_str()));
    }
    if !record.hand_off_to_human && record.taken_over_by.is_none() {
        return Err(RouterError::ai_is_answering());
    }
    if record.channel_method == ChannelKind::Whatsapp {
        let last_inbound = record.messages.iter().rev().find(|m| m.role == ROLE_USER);
        let at = last_inbound.and_then(|m| chrono::DateTime::parse_from_rfc3339(&m.timestamp).ok());
        let open = at.is_some_and(|at| now.signed_duration_since(at) < chrono::Duration::hours(24));
        if !open {
            return Err(RouterError::whatsapp_window_closed());
        }
    }
    Ok(())
}

/// The text of a `{"text": "…"}` body.
fn person_text(body: &[u8]) -> Result<String, RouterError> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Written {
        text: String,
    }
    let written: Written = serde_json::from_slice(body)
        .map_err(|_| RouterError::invalid_message("the body must be {\"text\": \"<the message>\"}"))?;
    let text = written.text.trim().to_string();
    if text.is_empty() {
        return Err(RouterError::invalid_message("'text' must not be empty"));
    }
    if text.chars().count() > MAX_PERSON_MESSAGE_CHARS {
        return Err(RouterError::invalid_message(&format!(
            "'text' is longer than {MAX_PERSON_MESSAGE_CHARS} characters"
        )));
    }
    Ok(text)
}

/// A list request: which state, how many, after which conversation.
#[derive(Debug, Clone, PartialEq)]
pub struct PageRequest {
    pub state: Option<InboxState>,
    pub limit: usize,
    /// `updated_at` and conversation id of the last conversation of the previous page.
    pub after: Option<(String, String)>,
}

impl PageRequest {
    pub fn parse(query: Option<&str>) -> Result<Self, RouterError> {
        let pairs: Vec<(String, String)> = match query {
            Some(q) => serde_urlencoded::from_str(q)
                .map_err(|_| RouterError::invalid_conversation_query("the query string does not read"))?,
            None => Vec::new(),
        };
        let mut page = PageRequest { state: None, limit: DEFAULT_PAGE, after: None };
        for (name, value) in pairs {
            match name.as_str() {
                "state" => {
                    let state = InboxState::parse(&value).ok_or_else(|| {
                        RouterError::invalid_conversation_query(
                            "'state' must be one of handed_off, waiting_for_person, open, closed",
                        )
                    })?;
                    page.state = Some(state);
                }
                "limit" => {
                    page.limit = value.parse().ok().filter(|n| (1..=MAX_PAGE).contains(n)).ok_or_else(|| {
                        RouterError::invalid_conversation_query(&format!("'limit' must be 1 to {MAX_PAGE}"))
                    })?;
                }
                "cursor" => {
                    let key = ConversationRef::decode(&value)
                        .ok_or_else(|| RouterError::invalid_conversation_query("'cursor' is not one this API gave"))?;
                    page.after = Some((key.primary_channel, key.conversation_id));
                }
                other => {
                    return Err(RouterError::invalid_conversation_query(&format!(
                        "unknown query parameter '{other}' (state, limit, cursor)"
                    )))
                }
            }
        }
        Ok(page)
    }

    /// The page of `records` (in `state_of`'s state, newest activity first) and the cursor of
    /// the next page, if there is one.
    pub fn of(
        &self,
        records: Vec<ConversationRecord>,
        state_of: impl Fn(&ConversationRecord) -> InboxState,
    ) -> (Vec<(ConversationRecord, InboxState)>, Option<String>) {
        let mut chosen: Vec<(ConversationRecord, InboxState)> = records
            .into_iter()
            .map(|r| {
                let state = state_of(&r);
                (r, state)
            })
            .filter(|(_, state)| self.state.is_none_or(|wanted| wanted == *state))
            .collect();
        let order = |r: &ConversationRecord| (std::cmp::Reverse(r.updated_at.clone()), r.conversation_id.clone());
        chosen.sort_by_key(|(r, _)| order(r));
        if let Some((updated_at, conversation_id)) = &self.after {
            let after = (std::cmp::Reverse(updated_at.clone()), conversation_id.clone());
            chosen.retain(|(r, _)| order(r) > after);
        }
        let more = chosen.len() > self.limit;
        chosen.truncate(self.limit);
        // The cursor: the last conversation's place in the order, written as an id is.
        let next = more.then(|| chosen.last()).flatten().map(|(r, _)| {
            ConversationRef::encode(&ConversationKey {
                primary_channel: r.updated_at.clone(),
                conversation_id: r.conversation_id.clone(),
            })
        });
        (chosen, next)
    }
}

/// A conversation as a list shows it.
pub fn summary(record: &ConversationRecord, state: InboxState) -> Value {
    let name = [record.recipient_first_name.as_deref(), record.recipient_last_name.as_deref()]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" ");
    let last = record.messages.last().map(|m| {
        let preview: String = m.content.chars().take(140).collect();
        json!({"role": m.role, "timestamp": m.timestamp, "content": preview})
    });
    json!({
        "id": ConversationRef::encode(&record.key()),
        "state": state.as_str(),
        "channel": record.channel_method.as_str(),
        "recipient": record.primary_channel,
        "recipient_name": name,
        "conversation_status": record.conversation_status.as_str(),
        "hand_off_reason": record.hand_off_to_human_reason,
        "taken_over_by": record.taken_over_by,
        "closed_by": record.closed_by,
        "created_at": record.created_at,
        "updated_at": record.updated_at,
        "last_message": last,
    })
}

/// A conversation with every message.
pub fn whole(record: &ConversationRecord, state: InboxState) -> Value {
    let mut value = summary(record, state);
    value["messages"] = record.messages.iter().map(message_json).collect();
    value
}

fn message_json(m: &Message) -> Value {
    json!({
        "id": m.message_id,
        "role": m.role,
        "agent": m.agent,
        "timestamp": m.timestamp,
        "content": m.content,
        "media": m.media.iter().map(|media| json!({"url": media.url, "content_type": media.content_type})).collect::<Vec<_>>(),
        "delivery_status": m.delivery_status.map(|s| s.as_str()),
        "delivery_error_code": m.delivery_error_code,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str, updated_at: &str) -> ConversationRecord {
        let mut r = crate::replies::route::tests::conversation(updated_at, 0);
        r.conversation_id = id.into();
        r
    }

    #[test]
    fn pages_run_newest_first_in_the_state_asked_and_go_on_from_their_cursor() {
        let records =
            || (0..5).map(|i| record(&format!("c{i}"), &format!("2026-12-07T10:0{i}:00Z"))).collect::<Vec<_>>();
        let state_of = |r: &ConversationRecord| {
            if r.conversation_id == "c2" {
                InboxState::Closed
            } else {
                InboxState::HandedOff
            }
        };
        let page = PageRequest::parse(Some("state=handed_off&limit=2")).expect("query");
        let (first, cursor) = page.of(records(), state_of);
        let ids = |page: &[(ConversationRecord, InboxState)]| {
            page.iter().map(|(r, _)| r.conversation_id.clone()).collect::<Vec<_>>()
        };
        assert_eq!(ids(&first), ["c4", "c3"]);
        let cursor = cursor.expect("more");
        let next = PageRequest::parse(Some(&format!("state=handed_off&limit=2&cursor={cursor}"))).expect("query");
        let (second, cursor) = next.of(records(), state_of);
        assert_eq!(ids(&second), ["c1", "c0"], "c2 is closed");
        assert_eq!(cursor, None);
        for bad in ["state=lost", "limit=0", "limit=101", "cursor=%21", "colour=red"] {
            let error = PageRequest::parse(Some(bad)).expect_err(bad);
            assert_eq!(error.code, super::super::error::ErrorCode::InvalidConversationQuery, "{bad}");
        }
    }

    #[test]
    fn a_person_writes_only_where_the_ai_is_not_answering_the_conversation_is_open_and_whatsapp_allows() {
        let now: chrono::DateTime<chrono::Utc> = "2026-12-07T12:00:00Z".parse().expect("time");
        let mut r = record("c", "2026-12-07T11:00:00Z");
        r.messages.push(Message {
            role: ROLE_USER.into(),
            timestamp: "2026-12-07T11:00:00Z".into(),
            ..Default::default()
        });
        let code = |r: &ConversationRecord, state| may_write(r, state, now).map_err(|e| e.code);
        use super::super::error::ErrorCode::*;
        assert_eq!(code(&r, InboxState::Open), Err(AiIsAnswering));
        r.hand_off_to_human = true;
        assert_eq!(code(&r, InboxState::HandedOff), Ok(()));
        assert_eq!(code(&r, InboxState::Closed), Err(ConversationClosed));
        r.messages[0].timestamp = "2026-12-06T11:59:00Z".into();
        assert_eq!(code(&r, InboxState::HandedOff), Err(WhatsappWindowClosed), "24 hours and a minute ago");
        r.channel_method = ChannelKind::Sms;
        assert_eq!(code(&r, InboxState::HandedOff), Ok(()), "SMS has no window");
        r.channel_method = ChannelKind::Email;
        assert_eq!(code(&r, InboxState::HandedOff), Err(ReplyChannelUnsupported));
        assert_eq!(given_back_status(ConversationStatus::SendOutcomeUnknown), ConversationStatus::Retry);
        assert_eq!(given_back_status(ConversationStatus::ReplySent), ConversationStatus::ReplySent);
    }
}
