//! An inbound message that is a keyword is answered by the company's text, never by the AI:
//! STOP (and its kin) opts the recipient out of the company's messages on this channel and ends
//! the conversation; START (or UNSTOP, YES) from someone opted out opts them back in; HELP
//! answers the company's help text. An opt-in word from someone not opted out is an ordinary
//! answer ("yes"), and goes on to the AI like any other.
//!
//! The conversation the numbers' pointer names tells whose recipient this is, whatever its
//! state: a conversation ended by STOP still knows its company when START comes.
use super::inbound::Inbound;
use crate::shared::client_events::ClientEvents;
use crate::shared::companies::Companies;
use crate::shared::conversations::{ConversationStore, Written};
use crate::shared::failure::Failure;
use crate::shared::opt_outs::OptOuts;
use multicomms_wire::client_events::EventType;
use multicomms_wire::conversation::ActivePointer;
use multicomms_wire::opt_out::{Keyword, KeywordReplies};

/// The text to answer with. `Ok(None)`: not the company's business as a keyword (no
/// conversation to tell whose it is, or an opt-in word from someone not opted out); the message
/// goes on as any other.
pub async fn answer(
    companies: &Companies,
    (store, opt_outs, events): (&ConversationStore, &OptOuts, &ClientEvents),
    inbound: &Inbound,
    pointer: &ActivePointer,
    keyword: Keyword,
) -> Result<Option<String>, Failure> {
    let Some(conversation) = store.record(&pointer.conversation()).await? else { return Ok(None) };
    let (company_id, channel, recipient) = (&conversation.company_id, inbound.channel, &inbound.from);
    match keyword {
        Keyword::OptOut => {
            opt_outs.opt_out(company_id, channel, recipient, inbound.body.trim()).await?;
            match store.opted_out(&conversation.key(), inbound.body.trim()).await? {
                Written::Applied => tracing::info!("the recipient opted out; the conversation is over"),
                Written::Superseded => {
                    tracing::warn!("the recipient opted out during a send; nothing is sent after it")
                }
            }
        }
        Keyword::OptIn => {
            if !opt_outs.opt_in(company_id, channel, recipient).await? {
                return Ok(None);
            }
            tracing::info!("the recipient opted back in");
        }
        Keyword::Help => {}
    }
    let company = companies.get(company_id, &conversation.project_id).await?;
    if keyword == Keyword::OptOut {
        let data = serde_json::json!({"keyword": inbound.body.trim()});
        events.emit(company.as_ref().map(|c| &c.record), &conversation, EventType::OptedOut, data).await;
    }
    let replies = company.and_then(|c| c.record.keyword_replies.clone()).unwrap_or_default();
    Ok(Some(KeywordReplies::reply(&replies, keyword).to_string()))
}
