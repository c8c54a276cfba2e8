//! Names of the AWS resources of one deployment, derived from its prefix and environment
//! (spec template-sender §0, §2.4, §4.1; replies-engine §2). The operator creates resources under
//! these names and the runtime finds them by the same names, so nobody copies URLs by hand.
use crate::ChannelKind;

/// The original system's prefix.
pub const DEFAULT_PREFIX: &str = "ai-multi-comms";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Naming {
    /// e.g. `ai-multi-comms`.
    pub prefix: String,
    /// e.g. `dev` or `prod`.
    pub env: String,
}

/// `--prefix` and `--env`, as every binary takes them.
#[derive(Debug, Clone, clap::Args)]
pub struct NamingArgs {
    /// Prefix of every AWS resource name.
    #[arg(long, env = "MULTICOMMS_PREFIX", default_value = DEFAULT_PREFIX, global = true)]
    pub prefix: String,
    /// Environment suffix of every AWS resource name (dev, prod, ...).
    #[arg(long, env = "MULTICOMMS_ENV", default_value = "dev", global = true)]
    pub env: String,
}

impl NamingArgs {
    pub fn naming(&self) -> Naming {
        Naming::new(&self.prefix, &self.env)
    }
}

impl Naming {
    pub fn new(prefix: impl Into<String>, env: impl Into<String>) -> Self {
        Naming { prefix: prefix.into(), env: env.into() }
    }

    pub fn company_data_table(&self) -> String {
        format!("{}-company-data-{}", self.prefix, self.env)
    }

    pub fn conversations_table(&self) -> String {
        format!("{}-conversations-{}", self.prefix, self.env)
    }

    /// Recipients who opted out, per company and channel (keyed by a hash: it names no one).
    pub fn opt_outs_table(&self) -> String {
        format!("{}-opt-outs-{}", self.prefix, self.env)
    }

    pub fn replies_stage_table(&self) -> String {
        format!("{}-replies-conversations-stage-{}", self.prefix, self.env)
    }

    pub fn replies_trigger_lock_table(&self) -> String {
        format!("{}-replies-conversations-trigger-lock-{}", self.prefix, self.env)
    }

    pub fn channel_queue(&self, channel: ChannelKind) -> String {
        format!("{}-{}-queue-{}", self.prefix, channel, self.env)
    }

    pub fn channel_dlq(&self, channel: ChannelKind) -> String {
        format!("{}-{}-dlq-{}", self.prefix, channel, self.env)
    }

    /// The queue of a channel's reply triggers (the replies engine's delayed trigger messages).
    pub fn replies_queue(&self, channel: ChannelKind) -> String {
        format!("{}-replies-{}-queue-{}", self.prefix, channel, self.env)
    }

    pub fn replies_dlq(&self, channel: ChannelKind) -> String {
        format!("{}-replies-{}-dlq-{}", self.prefix, channel, self.env)
    }

    /// The environment's queue of messages handed to a person instead of the AI.
    pub fn handoff_queue(&self) -> String {
        format!("{}-replies-human-handoff-queue-{}", self.prefix, self.env)
    }

    /// The environment's queue of events on their way to the companies' webhooks.
    pub fn client_events_queue(&self) -> String {
        format!("{}-client-events-queue-{}", self.prefix, self.env)
    }

    /// Where an event goes after its retries.
    pub fn client_events_dlq(&self) -> String {
        format!("{}-client-events-dlq-{}", self.prefix, self.env)
    }

    /// The key a company's events are signed with.
    pub fn client_events_secret(&self, company: &str, project: &str) -> String {
        format!("{}/client-events/{}/{}-{}", self.prefix, slug(company), slug(project), self.env)
    }

    /// Twilio (whatsapp, sms) or SendGrid (email) credentials of one company + project.
    pub fn channel_credentials_secret(&self, channel: ChannelKind, company: &str, project: &str) -> String {
        let provider = match channel {
            ChannelKind::Whatsapp | ChannelKind::Sms => "twilio",
            ChannelKind::Email => "sendgrid",
        };
        format!("{}/{channel}-credentials/{}/{}/{provider}-{}", self.prefix, slug(company), slug(project), self.env)
    }

    /// The channel's OpenAI key, shared by every company that brings no key of its own.
    pub fn shared_ai_key_secret(&self, channel: ChannelKind) -> String {
        format!("{}/openai-api-key/{channel}-{}", self.prefix, self.env)
    }

    /// A company's own OpenAI key for one channel.
    pub fn company_ai_key_secret(&self, channel: ChannelKind, company: &str, project: &str) -> String {
        format!("{}/openai-api-key/{}/{}/{channel}-{}", self.prefix, slug(company), slug(project), self.env)
    }

    /// The key clients of one company + project send in `x-api-key` to the router.
    pub fn router_api_key_secret(&self, company: &str, project: &str) -> String {
        format!("{}/router-api-key/{}/{}-{}", self.prefix, slug(company), slug(project), self.env)
    }
}

/// The onboarding scripts' slug: lower-case; each run of white space, `_`, `/`, `\` or `.`
/// becomes `-`; anything else outside `[a-z0-9-]` is dropped; no leading or trailing `-`.
/// "Cucumber Recruitment" → `cucumber-recruitment`.
pub fn slug(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut in_separator_run = false;
    for c in name.trim().to_lowercase().chars() {
        if c.is_whitespace() || matches!(c, '_' | '/' | '\\' | '.') {
            if !in_separator_run {
                out.push('-');
            }
            in_separator_run = true;
        } else {
            in_separator_run = false;
            if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' {
                out.push(c);
            }
        }
    }
    out.trim_matches('-').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_original_conventions() {
        let n = Naming::new(DEFAULT_PREFIX, "dev");
        assert_eq!(n.company_data_table(), "ai-multi-comms-company-data-dev");
        assert_eq!(n.channel_queue(ChannelKind::Whatsapp), "ai-multi-comms-whatsapp-queue-dev");
        assert_eq!(n.channel_dlq(ChannelKind::Email), "ai-multi-comms-email-dlq-dev");
        assert_eq!(
            n.channel_credentials_secret(ChannelKind::Whatsapp, "Cucumber Recruitment", "Clarify CV"),
            "ai-multi-comms/whatsapp-credentials/cucumber-recruitment/clarify-cv/twilio-dev"
        );
        assert_eq!(
            n.channel_credentials_secret(ChannelKind::Email, "Cucumber Recruitment", "Clarify CV"),
            "ai-multi-comms/email-credentials/cucumber-recruitment/clarify-cv/sendgrid-dev"
        );
        assert_eq!(n.shared_ai_key_secret(ChannelKind::Sms), "ai-multi-comms/openai-api-key/sms-dev");
        assert_eq!(n.replies_trigger_lock_table(), "ai-multi-comms-replies-conversations-trigger-lock-dev");
        assert_eq!(n.replies_queue(ChannelKind::Whatsapp), "ai-multi-comms-replies-whatsapp-queue-dev");
        assert_eq!(n.replies_dlq(ChannelKind::Whatsapp), "ai-multi-comms-replies-whatsapp-dlq-dev");
        assert_eq!(n.handoff_queue(), "ai-multi-comms-replies-human-handoff-queue-dev");
    }

    #[test]
    fn slug_matches_the_onboarding_script() {
        assert_eq!(slug("Cucumber Recruitment"), "cucumber-recruitment");
        assert_eq!(slug("  A_b / c.d\\e  "), "a-b-c-d-e");
        assert_eq!(slug("Ünïcode & Co!"), "ncode--co");
        assert_eq!(slug("--x--"), "x");
        assert_eq!(slug("a  _ b"), "a-b");
    }
}
