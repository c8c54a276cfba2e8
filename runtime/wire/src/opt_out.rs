//! A recipient's word on being messaged: the keywords an inbound message may be (STOP and its
//! kin, START, HELP), the opt-outs table's row, and the replies a company gives to each.
//!
//! An opt-out holds for one recipient with one company on one channel. Its row is keyed by a
//! SHA-256 of the three, so the table names no one: a recipient who is later erased stays opted
//! out without the table keeping their address.
use crate::ChannelKind;
use serde::{Deserialize, Serialize};
use sha2::Digest;

/// The opt-outs table's partition key.
pub const RECIPIENT_KEY: &str = "recipient_key";
/// When the recipient opted out, and with which word.
pub const OPTED_OUT_AT: &str = "opted_out_at";
pub const KEYWORD: &str = "keyword";

/// The row key of `address` (a phone number in E.164, or an email address) with `company_id`
/// on `channel`: hex SHA-256 of the three, NUL-separated (none of them holds a NUL).
pub fn recipient_key(company_id: &str, channel: ChannelKind, address: &str) -> String {
    let mut hash = sha2::Sha256::new();
    for part in [company_id, channel.as_str(), address.trim().to_lowercase().as_str()] {
        hash.update(part.as_bytes());
        hash.update([0]);
    }
    hex::encode(hash.finalize())
}

/// What an inbound message that is a keyword asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keyword {
    /// No more messages from this company on this channel.
    OptOut,
    /// Messages again (only said by someone opted out: `YES` is otherwise an answer).
    OptIn,
    /// The company's help text, instead of the AI.
    Help,
}

/// Twilio's default opt-out words (Advanced Opt-Out), which carriers also honour for SMS.
const OPT_OUT: [&str; 8] = ["STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "OPTOUT", "REVOKE"];
const OPT_IN: [&str; 3] = ["START", "UNSTOP", "YES"];
const HELP: [&str; 2] = ["HELP", "INFO"];

/// The keyword `body` is: the whole message, trimmed, in any case ("stop please" is not one,
/// as Twilio and the carriers count it).
pub fn keyword(body: &str) -> Option<Keyword> {
    let word = body.trim().to_uppercase();
    let is = |words: &[&str]| words.contains(&word.as_str());
    if is(&OPT_OUT) {
        Some(Keyword::OptOut)
    } else if is(&OPT_IN) {
        Some(Keyword::OptIn)
    } else if is(&HELP) {
        Some(Keyword::Help)
    } else {
        None
    }
}

/// What a company answers to each keyword, from its record (`keyword_replies`); the defaults
/// below where it says nothing.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct KeywordReplies {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opt_out: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opt_in: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub help: Option<String>,
}

pub const DEFAULT_OPT_OUT_REPLY: &str =
    "You have been unsubscribed and will receive no more messages from us here. Reply START to resubscribe.";
pub const DEFAULT_OPT_IN_REPLY: &str = "You have been resubscribed. Reply STOP to unsubscribe.";
pub const DEFAULT_HELP_REPLY: &str = "Reply STOP to unsubscribe. A person will read your messages here.";

impl KeywordReplies {
    /// The reply to `keyword`.
    pub fn reply(&self, keyword: Keyword) -> &str {
        match keyword {
            Keyword::OptOut => self.opt_out.as_deref().unwrap_or(DEFAULT_OPT_OUT_REPLY),
            Keyword::OptIn => self.opt_in.as_deref().unwrap_or(DEFAULT_OPT_IN_REPLY),
            Keyword::Help => self.help.as_deref().unwrap_or(DEFAULT_HELP_REPLY),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_keyword_is_the_whole_message_in_any_case() {
        assert_eq!(keyword("STOP"), Some(Keyword::OptOut));
        assert_eq!(keyword("  stop \n"), Some(Keyword::OptOut));
        assert_eq!(keyword("Unsubscribe"), Some(Keyword::OptOut));
        assert_eq!(keyword("start"), Some(Keyword::OptIn));
        assert_eq!(keyword("Yes"), Some(Keyword::OptIn));
        assert_eq!(keyword("help"), Some(Keyword::Help));
        assert_eq!(keyword("stop please"), None, "a sentence is an answer, not a keyword");
        assert_eq!(keyword("I'd like to stop"), None);
        assert_eq!(keyword(""), None);
    }

    #[test]
    fn the_row_key_names_no_one_and_separates_companies_channels_and_case() {
        let key = recipient_key("ci-aaa-001", ChannelKind::Whatsapp, "+447835065013");
        assert_eq!(key.len(), 64);
        assert!(!key.contains("447835065013"));
        assert_eq!(key, recipient_key("ci-aaa-001", ChannelKind::Whatsapp, " +447835065013 "));
        assert_ne!(key, recipient_key("ci-bbb-002", ChannelKind::Whatsapp, "+447835065013"));
        assert_ne!(key, recipient_key("ci-aaa-001", ChannelKind::Sms, "+447835065013"));
        let email = recipient_key("c", ChannelKind::Email, "Lee@Example.com");
        assert_eq!(email, recipient_key("c", ChannelKind::Email, "lee@example.com"));
    }

    #[test]
    fn a_company_says_its_own_replies_or_gets_the_defaults() {
        let own = KeywordReplies { opt_out: Some("Bye from Cucumber".into()), ..KeywordReplies::default() };
        assert_eq!(own.reply(Keyword::OptOut), "Bye from Cucumber");
        assert_eq!(own.reply(Keyword::Help), DEFAULT_HELP_REPLY);
    }
}
