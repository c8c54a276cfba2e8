//! The JSON keys of the Secrets Manager secrets (spec §6): the operator writes them, the
//! processors read them.

/// `{prefix}/router-api-key/{company}/{project}-{env}`.
pub const ROUTER_API_KEY: &str = "api_key";
/// The OpenAI key secrets, shared per channel or a company's own.
pub const AI_API_KEY: &str = "ai_api_key";
/// The WhatsApp and SMS credentials secrets.
pub const TWILIO_ACCOUNT_SID: &str = "twilio_account_sid";
pub const TWILIO_AUTH_TOKEN: &str = "twilio_auth_token";
/// WhatsApp only: the Content API template (`HX…`).
pub const TWILIO_TEMPLATE_SID: &str = "twilio_template_sid";
/// The email credentials secret.
pub const SENDGRID_API_KEY: &str = "sendgrid_api_key";
/// `{prefix}/client-events/{company}/{project}-{env}`: the key a company's events are signed with.
pub const CLIENT_EVENTS_SIGNING_SECRET: &str = "signing_secret";
