//! The messaging channels the platform serves.
use serde::{Deserialize, Serialize};
use std::fmt;

/// A messaging channel. Serialised lower-case, as in the original records and requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, clap::ValueEnum)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum ChannelKind {
    Whatsapp,
    Sms,
    Email,
}

impl ChannelKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChannelKind::Whatsapp => "whatsapp",
            ChannelKind::Sms => "sms",
            ChannelKind::Email => "email",
        }
    }
}

impl fmt::Display for ChannelKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for ChannelKind {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, String> {
        match value {
            "whatsapp" => Ok(ChannelKind::Whatsapp),
            "sms" => Ok(ChannelKind::Sms),
            "email" => Ok(ChannelKind::Email),
            other => Err(format!("unknown channel {other:?}: whatsapp, sms or email")),
        }
    }
}

impl ChannelKind {
    pub const ALL: [ChannelKind; 3] = [ChannelKind::Whatsapp, ChannelKind::Sms, ChannelKind::Email];

    /// The request's `recipient_data` field that addresses a recipient on this channel (and
    /// keys the conversation record).
    pub fn recipient_field(self) -> &'static str {
        match self {
            ChannelKind::Whatsapp | ChannelKind::Sms => "recipient_tel",
            ChannelKind::Email => "recipient_email",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ChannelKind;

    #[test]
    fn a_channel_reads_back_from_its_own_name_only() {
        for kind in ChannelKind::ALL {
            assert_eq!(kind.as_str().parse::<ChannelKind>(), Ok(kind));
        }
        assert!("WhatsApp".parse::<ChannelKind>().is_err(), "lower case, as requests must spell it");
    }
}
