//! Why an inbound message is not answered: the replies-engine's error codes, one catalogue for
//! the webhook and the routing rules. The code is the router's `inbound_messages` metric's
//! `outcome` label and appears in the logs; Twilio sees only the HTTP status.
use std::fmt;

macro_rules! refusals {
    ($($variant:ident => $code:literal,)*) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Refusal {
            $($variant,)*
        }

        impl Refusal {
            pub const ALL: &'static [Refusal] = &[$(Refusal::$variant,)*];

            pub fn as_str(self) -> &'static str {
                match self {
                    $(Refusal::$variant => $code,)*
                }
            }
        }
    };
}

refusals! {
    ParsingError => "PARSING_ERROR",
    InvalidSignature => "INVALID_SIGNATURE",
    ConversationNotFound => "CONVERSATION_NOT_FOUND",
    DbQueryError => "DB_QUERY_ERROR",
    SecretFetchFailed => "SECRET_FETCH_FAILED",
    CompanyNotFound => "COMPANY_NOT_FOUND",
    ProjectInactive => "PROJECT_INACTIVE",
    ChannelNotAllowed => "CHANNEL_NOT_ALLOWED",
    WebhookOff => "WEBHOOK_OFF",
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::Refusal;

    #[test]
    fn every_code_is_distinct_and_upper_snake_case() {
        let codes: std::collections::BTreeSet<_> = Refusal::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(codes.len(), Refusal::ALL.len());
        assert!(codes.iter().all(|c| c.chars().all(|ch| ch.is_ascii_uppercase() || ch == '_')), "{codes:?}");
    }
}
