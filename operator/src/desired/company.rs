//! Company → company-data record + Secrets Manager secrets.
use super::secret::{SecretSpec, Source};
use super::Owner;
use crate::crd::company::{AiSettings, CompanySpec, TwilioCredentials};
use crate::crd::JsonText;
use multicomms_wire::company::{
    api_key_hash, Agent, AiChannelConfig, AiConfig, ChannelConfig, ClientEventsTarget, EmailConfig, PerChannel,
    RateLimits, ReplyAiConfig, SmsConfig, WhatsappConfig,
};
use multicomms_wire::{secret_keys, ChannelKind, CompanyRecord, Naming};

/// The credentials of which the record keeps only hashes: the router API key's value, and each
/// agent's name and token.
#[derive(Default)]
pub struct Hashed<'a> {
    pub api_key: Option<&'a str>,
    pub agents: Vec<(&'a str, &'a str)>,
}

/// The record the resource describes. Timestamps are left empty: the writer stamps them.
pub fn record(spec: &CompanySpec, naming: &Naming, owner: &Owner, hashed: &Hashed) -> CompanyRecord {
    let (company, project) = (&spec.company_name, &spec.project_name);
    let mut allowed_channels: Vec<ChannelKind> = Vec::new();
    for kind in &spec.allowed_channels {
        if !allowed_channels.contains(kind) {
            allowed_channels.push(*kind);
        }
    }

    let mut openai_config = PerChannel::default();
    for kind in spec.configured_channels() {
        openai_config.set(kind, ai_channel_config(spec.ai_settings(kind), kind, naming, company, project));
    }

    let channel_config = channel_config(spec, naming);

    let h = &spec.hand_off;
    CompanyRecord {
        company_id: spec.company_id.clone(),
        project_id: spec.project_id.clone(),
        company_name: company.clone(),
        project_name: project.clone(),
        api_key_reference: spec.api_key.as_ref().map(|_| naming.router_api_key_secret(company, project)),
        api_key_hash: hashed.api_key.map(api_key_hash),
        allowed_channels,
        project_status: spec.project_status.as_str().to_string(),
        rate_limits: RateLimits {
            requests_per_minute: spec.rate_limits.requests_per_minute,
            requests_per_day: spec.rate_limits.requests_per_day,
            concurrent_conversations: spec.rate_limits.concurrent_conversations,
            max_message_length: spec.rate_limits.max_message_length,
        },
        // The original always writes all five keys, unused ones NULL.
        company_rep: (1..=5).map(|i| (format!("company_rep_{i}"), spec.company_reps.get(i - 1).cloned())).collect(),
        ai_config: Some(AiConfig { openai_config }),
        channel_config,
        auto_queue_initial_message: h.auto_queue_initial_message,
        auto_queue_initial_message_from_number: h.auto_queue_initial_message_from_number.clone(),
        auto_queue_initial_message_from_email: h.auto_queue_initial_message_from_email.clone(),
        auto_queue_reply_message: h.auto_queue_reply_message,
        auto_queue_reply_message_from_number: h.auto_queue_reply_message_from_number.clone(),
        auto_queue_reply_message_from_email: h.auto_queue_reply_message_from_email.clone(),
        send_without_consent: spec.send_without_consent,
        hand_off_on_delivery_failure: h.on_delivery_failure,
        inactivity_days: Some(spec.inactivity_days),
        retention_days: spec.retention_days,
        reply_batch_window_seconds: spec.reply_batch_window_seconds,
        keyword_replies: spec.keyword_replies.as_ref().map(crate::crd::company::KeywordReplies::to_record),
        default_region: spec.default_region.clone(),
        agents: hashed
            .agents
            .iter()
            .map(|(name, token)| Agent { name: name.to_string(), token_hash: api_key_hash(token) })
            .collect(),
        client_events: spec.events.as_ref().map(|e| ClientEventsTarget {
            url: e.url.clone(),
            signing_secret_id: naming.client_events_secret(company, project),
        }),
        created_at: String::new(),
        updated_at: String::new(),
        managed_by: Some(owner.to_string()),
    }
}

/// The senders and the names of their credentials' secrets, per configured channel.
fn channel_config(spec: &CompanySpec, naming: &Naming) -> ChannelConfig {
    let (company, project) = (&spec.company_name, &spec.project_name);
    let c = &spec.channels;
    let credentials = |kind| naming.channel_credentials_secret(kind, company, project);
    ChannelConfig {
        whatsapp: c.whatsapp.as_ref().map(|w| WhatsappConfig {
            company_whatsapp_number: w.sender_number.clone(),
            whatsapp_credentials_id: credentials(ChannelKind::Whatsapp),
            reengagement_content_sid: w.reengagement_content_sid.clone(),
        }),
        sms: c.sms.as_ref().map(|s| SmsConfig {
            company_sms_number: s.sender_number.clone(),
            sms_credentials_id: credentials(ChannelKind::Sms),
        }),
        email: c.email.as_ref().map(|e| EmailConfig {
            company_email: e.sender_email.clone(),
            email_credentials_id: credentials(ChannelKind::Email),
            email_from_name: e.sender_name.clone(),
            sendgrid_template_id: e.template_id.clone(),
            unsubscribe_group_id: e.unsubscribe_group_id,
            event_webhook_public_key: e.event_webhook_public_key.clone(),
        }),
    }
}

fn ai_channel_config(
    ai: Option<&AiSettings>,
    kind: ChannelKind,
    naming: &Naming,
    company: &str,
    project: &str,
) -> AiChannelConfig {
    let api_key_reference = match ai.and_then(|a| a.api_key.as_ref()) {
        Some(_) => naming.company_ai_key_secret(kind, company, project),
        None => naming.shared_ai_key_secret(kind),
    };
    AiChannelConfig {
        api_key_reference,
        model: ai.and_then(|a| a.model.clone()),
        instructions: ai.and_then(|a| a.instructions.clone()),
        prompt_id: ai.and_then(|a| a.prompt_id.clone()),
        output_schema: ai.and_then(|a| a.output_schema.as_ref()).map(JsonText::value),
        base_url: ai.and_then(|a| a.base_url.clone()),
        replies: ai.and_then(|a| a.replies.as_ref()).map(|r| ReplyAiConfig {
            model: r.model.clone(),
            instructions: r.instructions.clone(),
            prompt_id: r.prompt_id.clone(),
            output_schema: r.output_schema.as_ref().map(JsonText::value),
        }),
    }
}

/// The secrets the resource produces, in the original JSON shapes (spec §6).
pub fn secrets(spec: &CompanySpec, naming: &Naming) -> Vec<SecretSpec> {
    let (company, project) = (&spec.company_name, &spec.project_name);
    let mut out = Vec::new();
    if let Some(key) = &spec.api_key {
        out.push(SecretSpec {
            name: naming.router_api_key_secret(company, project),
            keys: vec![(secret_keys::ROUTER_API_KEY, SecretSpec::from_ref("spec.apiKey", key))],
        });
    }
    let c = &spec.channels;
    if let Some(w) = &c.whatsapp {
        let mut keys = twilio_keys(ChannelKind::Whatsapp, &w.twilio);
        keys.push((secret_keys::TWILIO_TEMPLATE_SID, Source::Literal(w.content_sid.clone())));
        let name = naming.channel_credentials_secret(ChannelKind::Whatsapp, company, project);
        out.push(SecretSpec { name, keys });
    }
    if let Some(s) = &c.sms {
        let name = naming.channel_credentials_secret(ChannelKind::Sms, company, project);
        out.push(SecretSpec { name, keys: twilio_keys(ChannelKind::Sms, &s.twilio) });
    }
    if let Some(e) = &c.email {
        out.push(SecretSpec {
            name: naming.channel_credentials_secret(ChannelKind::Email, company, project),
            keys: vec![(
                secret_keys::SENDGRID_API_KEY,
                SecretSpec::from_ref("spec.channels.email.sendgrid.apiKey", &e.sendgrid.api_key),
            )],
        });
    }
    if let Some(events) = &spec.events {
        out.push(SecretSpec {
            name: naming.client_events_secret(company, project),
            keys: vec![(
                secret_keys::CLIENT_EVENTS_SIGNING_SECRET,
                SecretSpec::from_ref("spec.events.signingSecret", &events.signing_secret),
            )],
        });
    }
    for kind in spec.configured_channels() {
        if let Some(key) = spec.ai_settings(kind).and_then(|a| a.api_key.as_ref()) {
            out.push(SecretSpec {
                name: naming.company_ai_key_secret(kind, company, project),
                keys: vec![(
                    secret_keys::AI_API_KEY,
                    SecretSpec::from_ref(format!("spec.channels.{kind}.ai.apiKey"), key),
                )],
            });
        }
    }
    out
}

/// The Kubernetes Secrets the resource reads: those of its [`secrets`] and its agents' tokens.
pub fn secrets_read(spec: &CompanySpec, naming: &Naming) -> std::collections::BTreeSet<String> {
    let mut names = super::secret::read_by(&secrets(spec, naming));
    names.extend(spec.agents.iter().map(|a| a.token.secret_key_ref.name.clone()));
    names
}

fn twilio_keys(kind: ChannelKind, twilio: &TwilioCredentials) -> Vec<(&'static str, Source)> {
    vec![
        (
            secret_keys::TWILIO_ACCOUNT_SID,
            SecretSpec::from_ref(format!("spec.channels.{kind}.twilio.accountSid"), &twilio.account_sid),
        ),
        (
            secret_keys::TWILIO_AUTH_TOKEN,
            SecretSpec::from_ref(format!("spec.channels.{kind}.twilio.authToken"), &twilio.auth_token),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::Company;
    use aws_sdk_dynamodb::types::AttributeValue;

    fn example() -> Company {
        serde_yaml::from_str(include_str!("../../../config/companies/cucumber-recruitment-clarify-cv.yaml"))
            .expect("example parses")
    }

    fn owner() -> Owner {
        Owner { kind: "Company", namespace: "multicomms-dev".into(), name: "cucumber-recruitment-clarify-cv".into() }
    }

    #[test]
    fn example_company_becomes_the_seed_record() {
        let naming = Naming::new("ai-multi-comms", "dev");
        let record = record(&example().spec, &naming, &owner(), &Hashed::default());
        assert_eq!(record.company_id, "ci-aaa-001");
        assert_eq!(record.allowed_channels, vec![ChannelKind::Whatsapp, ChannelKind::Sms, ChannelKind::Email]);
        assert_eq!(record.project_status, "active");
        assert_eq!(record.company_rep["company_rep_1"].as_deref(), Some("Carol"));
        assert_eq!(record.company_rep["company_rep_5"], None);
        let whatsapp = record.channel_config.whatsapp.as_ref().expect("whatsapp block");
        assert_eq!(whatsapp.company_whatsapp_number, "+447588713814");
        assert_eq!(
            whatsapp.whatsapp_credentials_id,
            "ai-multi-comms/whatsapp-credentials/cucumber-recruitment/clarify-cv/twilio-dev"
        );
        let ai = record.ai_config.as_ref().expect("ai config");
        let whatsapp_ai = ai.openai_config.whatsapp.as_ref().expect("whatsapp ai");
        assert_eq!(whatsapp_ai.api_key_reference, "ai-multi-comms/openai-api-key/whatsapp-dev");
        assert!(whatsapp_ai.output_schema.is_some());
        assert_eq!(record.managed_by.as_deref(), Some("Company/multicomms-dev/cucumber-recruitment-clarify-cv"));
        let item = record.to_item().expect("item");
        assert_eq!(item["project_status"], AttributeValue::S("active".into()));
    }

    #[test]
    fn secrets_use_the_seed_shapes_and_names() {
        let naming = Naming::new("ai-multi-comms", "dev");
        let specs = secrets(&example().spec, &naming);
        let names: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "ai-multi-comms/router-api-key/cucumber-recruitment/clarify-cv-dev",
                "ai-multi-comms/whatsapp-credentials/cucumber-recruitment/clarify-cv/twilio-dev",
                "ai-multi-comms/sms-credentials/cucumber-recruitment/clarify-cv/twilio-dev",
                "ai-multi-comms/email-credentials/cucumber-recruitment/clarify-cv/sendgrid-dev",
            ]
        );
        let keys: Vec<&str> = specs[1].keys.iter().map(|(k, _)| *k).collect();
        assert_eq!(keys, ["twilio_account_sid", "twilio_auth_token", "twilio_template_sid"]);
    }

    #[test]
    fn a_company_key_replaces_the_shared_one() {
        let naming = Naming::new("p", "prod");
        let mut company = example();
        let whatsapp = company.spec.channels.whatsapp.as_mut().expect("whatsapp");
        let ai = whatsapp.ai.as_mut().expect("ai");
        ai.api_key = Some(crate::crd::SecretValue {
            secret_key_ref: crate::crd::SecretKeyRef { name: "own".into(), key: "k".into() },
        });
        let record = record(&company.spec, &naming, &owner(), &Hashed::default());
        let ai = record.ai_config.expect("ai").openai_config.whatsapp.expect("whatsapp");
        assert_eq!(ai.api_key_reference, "p/openai-api-key/cucumber-recruitment/clarify-cv/whatsapp-prod");
        assert!(secrets(&company.spec, &naming)
            .iter()
            .any(|s| s.name == "p/openai-api-key/cucumber-recruitment/clarify-cv/whatsapp-prod"));
    }
}
