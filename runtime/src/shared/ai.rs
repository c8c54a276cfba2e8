//! The first message's variables, and each reply, from OpenAI's Responses API
//! (`POST {base}/responses`) with structured output: the Company's JSON Schema (or the default)
//! is sent as `text.format` and the model's output is checked against it here as well, since
//! OpenAI-compatible endpoints do not all enforce it. A reply continues the conversation with
//! `previous_response_id` (the Assistants API threads the original used are gone).
use super::body::{read_capped, BodyError, MAX_AI_ANSWER_BYTES};
use super::failure::Failure;
use super::secrets::Secrets;
use multicomms_wire::company::AiChannelConfig;
use multicomms_wire::ChannelKind;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{json, Map, Value};
use std::sync::Arc;

pub const DEFAULT_BASE_URL: &str = "https://api.openai.com/v1";
pub const DEFAULT_MODEL: &str = "gpt-4o-mini";
/// Used when the Company gives neither instructions nor a stored prompt.
pub const DEFAULT_INSTRUCTIONS: &str =
    "Write the first message of this conversation to the recipient described in the \
    context, on behalf of the company. Answer only with JSON matching the given schema.";
/// Used for replies when the Company gives neither reply instructions nor a stored prompt.
pub const DEFAULT_REPLY_INSTRUCTIONS: &str =
    "Continue this conversation on behalf of the company: answer everything the recipient wrote \
    since your last message in one short reply. Answer only with JSON: {\"content\": \"<the reply>\"}.";

pub struct Ai {
    http: reqwest::Client,
    base_url: String,
    /// The Channel's shared key (its Secrets Manager name): only ever sent to `base_url`.
    shared_key_secret: String,
    /// Where the shared key's value is read, to refuse it under another name.
    secrets: Arc<Secrets>,
    /// Whether a company may name an endpoint on this machine (development only: in a pod,
    /// loopback reaches its sidecars' admin ports).
    allow_loopback: bool,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub total_tokens: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    /// The structured output: WhatsApp template variables, `{"body"}` for SMS, email template data.
    pub variables: Map<String, Value>,
    pub response_id: String,
    pub usage: Usage,
}

/// What the model must produce when the Company declares no schema.
pub fn default_schema(channel: ChannelKind) -> Value {
    match channel {
        ChannelKind::Sms => json!({
            "type": "object",
            "properties": {"body": {"type": "string", "minLength": 1, "maxLength": 1600}},
            "required": ["body"],
            "additionalProperties": false
        }),
        // Template variables / template data: string values, names chosen by the template.
        ChannelKind::Whatsapp | ChannelKind::Email => {
            json!({"type": "object", "additionalProperties": {"type": "string"}})
        }
    }
}

impl Ai {
    /// `base_url` is the default for companies whose config names none; `shared_key_secret`
    /// names the Channel's shared key, which no company may send elsewhere.
    pub fn new(
        http: reqwest::Client,
        base_url: impl Into<String>,
        shared_key_secret: impl Into<String>,
        secrets: Arc<Secrets>,
        allow_loopback: bool,
    ) -> Self {
        let (base_url, shared_key_secret) = (base_url.into(), shared_key_secret.into());
        Ai { http, base_url, shared_key_secret, secrets, allow_loopback }
    }

    /// Where this company's requests go with `key`. The operator refuses a custom endpoint
    /// without the company's own key, a Secret not bound to the company, and hosts the platform
    /// did not allow; this guard holds the same line for a record written by other hands: the
    /// Channel's shared key never leaves for a company's endpoint, by name or by value.
    async fn endpoint<'a>(&'a self, config: &'a AiChannelConfig, key: &SecretString) -> Result<&'a str, Failure> {
        let url = self.checked_endpoint(config)?;
        if url != self.base_url && self.is_shared_key(key).await? {
            return Err(Failure::Permanent(
                "the company's own key holds the channel's shared key; it is only sent to the default endpoint".into(),
            ));
        }
        Ok(url)
    }

    /// Whether `key` is the Channel's shared key (copied under the company's name). No shared
    /// key to read: nothing to compare with.
    async fn is_shared_key(&self, key: &SecretString) -> Result<bool, Failure> {
        match self.secrets.ai_key(&self.shared_key_secret).await {
            Ok(shared) => Ok(shared.expose_secret() == key.expose_secret()),
            Err(Failure::Permanent(_)) => Ok(false),
            Err(transient) => Err(transient),
        }
    }

    /// The checks that need no secret: the shared key's name, and a safe URL.
    fn checked_endpoint<'a>(&'a self, config: &'a AiChannelConfig) -> Result<&'a str, Failure> {
        let Some(url) = config.base_url.as_deref().filter(|url| *url != self.base_url) else {
            return Ok(&self.base_url);
        };
        if config.api_key_reference == self.shared_key_secret {
            return Err(Failure::Permanent(
                "a custom baseUrl is configured without the company's own key; the channel's shared key is \
                 only sent to the default endpoint"
                    .into(),
            ));
        }
        if !endpoint_is_safe(url, self.allow_loopback) {
            return Err(Failure::Permanent(
                "baseUrl must be https with no credentials in it, and not on this machine (loopback is for \
                 development: --allow-loopback-ai-endpoints)"
                    .into(),
            ));
        }
        Ok(url)
    }

    /// The first message's variables (the channel's template variables, SMS body or email data).
    pub async fn first_message(
        &self,
        channel: ChannelKind,
        config: &AiChannelConfig,
        key: &SecretString,
        input: String,
        conversation_id: &str,
    ) -> Result<Reply, Failure> {
        let call = Call {
            model: config.model.as_deref(),
            instructions: config.instructions.as_deref(),
            default_instructions: DEFAULT_INSTRUCTIONS,
            prompt_id: config.prompt_id.as_deref(),
            schema: config.output_schema.clone().unwrap_or_else(|| default_schema(channel)),
            schema_name: "message_variables",
            input,
            previous_response_id: None,
        };
        self.respond(config, key, call, conversation_id).await
    }

    /// The answer to the recipient's messages, continuing the conversation of
    /// `previous_response_id` (the record's last response). Returns the reply and its text, the
    /// output's `content`.
    pub async fn reply(
        &self,
        config: &AiChannelConfig,
        key: &SecretString,
        input: String,
        previous_response_id: Option<&str>,
        conversation_id: &str,
    ) -> Result<(Reply, String), Failure> {
        let replies = config.replies.clone().unwrap_or_default();
        let call = Call {
            model: replies.model.as_deref().or(config.model.as_deref()),
            instructions: replies.instructions.as_deref(),
            default_instructions: DEFAULT_REPLY_INSTRUCTIONS,
            prompt_id: replies.prompt_id.as_deref(),
            schema: replies.output_schema.clone().unwrap_or_else(reply_schema),
            schema_name: "reply",
            input,
            previous_response_id,
        };
        let reply = self.respond(config, key, call, conversation_id).await?;
        match reply.variables.get("content").and_then(Value::as_str).filter(|c| !c.trim().is_empty()) {
            Some(content) => {
                let content = content.to_string();
                Ok((reply, content))
            }
            None => Err(Failure::Permanent("the reply output has no non-empty string `content`".into())),
        }
    }

    async fn respond(
        &self,
        config: &AiChannelConfig,
        key: &SecretString,
        call: Call<'_>,
        conversation_id: &str,
    ) -> Result<Reply, Failure> {
        let validator = jsonschema::validator_for(&call.schema)
            .map_err(|e| Failure::Permanent(format!("the output schema is not a valid JSON Schema: {e}")))?;
        let mut request = json!({
            "model": call.model.unwrap_or(DEFAULT_MODEL),
            "input": call.input,
            "text": {"format": {
                "type": "json_schema",
                "name": call.schema_name,
                "schema": call.schema,
                "strict": strict_compatible(&call.schema),
            }},
            "metadata": {"conversation_id": truncate(conversation_id, 512)},
            "store": true,
        });
        // Instructions do not carry over from a previous response: each call sends its own.
        if let Some(instructions) = call.instructions {
            request["instructions"] = json!(instructions);
        } else if call.prompt_id.is_none() {
            request["instructions"] = json!(call.default_instructions);
        }
        if let Some(prompt_id) = call.prompt_id {
            request["prompt"] = json!({"id": prompt_id});
        }
        if let Some(previous) = call.previous_response_id {
            request["previous_response_id"] = json!(previous);
        }
        let base = self.endpoint(config, key).await?.trim_end_matches('/');
        let response = self
            .http
            .post(format!("{base}/responses"))
            .bearer_auth(key.expose_secret())
            .json(&request)
            .send()
            .await
            .map_err(|e| Failure::from_http(&e, "OpenAI"))?;
        let status = response.status().as_u16();
        let body: Value = match read_capped(response, MAX_AI_ANSWER_BYTES).await {
            Err(too_large @ BodyError::TooLarge(_)) => return Err(Failure::Permanent(format!("OpenAI: {too_large}"))),
            Err(e) if status < 300 => return Err(Failure::Transient(format!("OpenAI: {e}"))),
            Err(_) => Value::Null,
            Ok(bytes) => match serde_json::from_slice(&bytes) {
                Ok(body) => body,
                Err(e) if status < 300 => return Err(Failure::Transient(format!("OpenAI answer unreadable: {e}"))),
                Err(_) => Value::Null,
            },
        };
        if status >= 300 {
            let detail = body["error"]["message"].as_str().unwrap_or("no error message");
            return Err(Failure::from_status(status, "OpenAI", detail));
        }
        parse_reply(&body, &validator)
    }
}

/// What differs between the first message's call and a reply's.
struct Call<'a> {
    model: Option<&'a str>,
    instructions: Option<&'a str>,
    default_instructions: &'static str,
    prompt_id: Option<&'a str>,
    schema: Value,
    schema_name: &'static str,
    input: String,
    previous_response_id: Option<&'a str>,
}

/// What a reply must produce when the Company declares no schema (the original's contract with
/// its replies assistant).
pub fn reply_schema() -> Value {
    json!({
        "type": "object",
        "properties": {"content": {"type": "string", "minLength": 1}},
        "required": ["content"],
        "additionalProperties": false
    })
}

/// The response object: `status` must be `completed`; the first `output_text` of the first
/// `message` output is the JSON the schema describes; a `refusal` is a permanent failure.
fn parse_reply(body: &Value, validator: &jsonschema::Validator) -> Result<Reply, Failure> {
    let response_id = body["id"].as_str().unwrap_or_default().to_string();
    completed(body)?;
    let text = output_text(body)?;
    // Errors name where the output went wrong, never what it said (it is message text).
    let output: Value = serde_json::from_str(text).map_err(|_| {
        Failure::Permanent(format!("the model's output is not JSON ({} characters)", text.chars().count()))
    })?;
    let problems: Vec<String> = validator
        .iter_errors(&output)
        .take(3)
        .map(|e| format!("{} fails {}", pointer_or_root(&e.instance_path().to_string()), e.schema_path()))
        .collect();
    if !problems.is_empty() {
        return Err(Failure::Permanent(format!("the model's output breaks the schema: {}", problems.join("; "))));
    }
    let Value::Object(variables) = output else {
        return Err(Failure::Permanent("the model's output is not a JSON object".into()));
    };
    let usage = &body["usage"];
    let count = |k: &str| usage[k].as_u64().unwrap_or(0);
    Ok(Reply {
        variables,
        response_id,
        usage: Usage {
            input_tokens: count("input_tokens"),
            output_tokens: count("output_tokens"),
            total_tokens: count("total_tokens"),
        },
    })
}

/// `status` must be `completed`; an incomplete or failed response says why (a server error is
/// worth a retry).
fn completed(body: &Value) -> Result<(), Failure> {
    match body["status"].as_str() {
        Some("completed") => Ok(()),
        Some(other) => {
            let why = body["incomplete_details"]["reason"].as_str().or(body["error"]["code"].as_str());
            let message = format!("OpenAI response {other}: {}", why.unwrap_or("no reason given"));
            Err(if body["error"]["code"] == "server_error" {
                Failure::Transient(message)
            } else {
                Failure::Permanent(message)
            })
        }
        None => Err(Failure::Permanent("OpenAI answer has no status".into())),
    }
}

/// The first `output_text` of the `message` outputs; a `refusal` before it is permanent.
fn output_text(body: &Value) -> Result<&str, Failure> {
    let contents = body["output"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|o| o["type"] == "message")
        .flat_map(|o| o["content"].as_array().into_iter().flatten());
    for content in contents {
        match content["type"].as_str() {
            Some("output_text") => {
                return content["text"].as_str().ok_or_else(|| Failure::Permanent("output_text has no text".into()))
            }
            // The refusal's text may quote the recipient's data: it is not kept.
            Some("refusal") => return Err(Failure::Permanent("the model refused".into())),
            _ => {}
        }
    }
    Err(Failure::Permanent("OpenAI answer has no output_text".into()))
}

/// https without credentials in the URL, off this machine; with `allow_loopback`, also http or
/// https to this machine.
fn endpoint_is_safe(url: &str, allow_loopback: bool) -> bool {
    let Ok(url) = reqwest::Url::parse(url) else { return false };
    let no_credentials = url.username().is_empty() && url.password().is_none();
    let host = url.host_str().unwrap_or("");
    let ip = host.trim_start_matches('[').trim_end_matches(']').parse::<std::net::IpAddr>();
    let loopback = host == "localhost" || ip.is_ok_and(|ip| ip.is_loopback());
    let scheme = url.scheme();
    no_credentials
        && if loopback { allow_loopback && (scheme == "http" || scheme == "https") } else { scheme == "https" }
}

fn pointer_or_root(pointer: &str) -> &str {
    if pointer.is_empty() {
        "the output"
    } else {
        pointer
    }
}

/// Whether OpenAI's strict structured output accepts the schema: every object closed
/// (`additionalProperties: false`) and every property required. Otherwise the request goes
/// without `strict` and the schema is enforced here only.
fn strict_compatible(schema: &Value) -> bool {
    match schema {
        Value::Object(map) => {
            let is_object = map.get("type") == Some(&json!("object")) || map.contains_key("properties");
            if is_object {
                let properties = map.get("properties").and_then(Value::as_object);
                let required: Vec<&str> = map
                    .get("required")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .collect();
                let all_required = properties.is_none_or(|p| p.keys().all(|k| required.contains(&k.as_str())));
                if map.get("additionalProperties") != Some(&Value::Bool(false)) || !all_required {
                    return false;
                }
            }
            map.values().all(strict_compatible)
        }
        Value::Array(items) => items.iter().all(strict_compatible),
        _ => true,
    }
}

fn truncate(text: &str, max_chars: usize) -> String {
    text.chars().take(max_chars).collect()
}

/// The user input: the original's "Initial context" document (spec §5.7), with the contact map
/// built from the right keys (the original looked for `company_email_address` and never
/// included email or SMS).
pub fn initial_context(
    company_name: Option<&str>,
    project_name: Option<&str>,
    company_rep: Option<&Value>,
    recipient_data: &Value,
    contacts: &Map<String, Value>,
    project_data: Option<&Value>,
) -> String {
    let block = |value: Option<&Value>| match value {
        Some(v) if !is_empty(v) => {
            format!("```json\n{}\n```", serde_json::to_string_pretty(v).unwrap_or_default())
        }
        _ => "Not provided".to_string(),
    };
    let contacts = Value::Object(contacts.clone());
    format!(
        "\nInitial context:\n\n**Company & Project:**\n- Company Name: {}\n- Project Name: {}\n\n\
         **Company Representative(s):**\n{}\n\n**Recipient Data:**\n{}\n\n**Company Contact Info:**\n{}\n\n\
         **Project-Specific Data:**\n{}\n",
        company_name.filter(|n| !n.is_empty()).unwrap_or("Not provided"),
        project_name.filter(|n| !n.is_empty()).unwrap_or("Not provided"),
        block(company_rep),
        block(Some(recipient_data)),
        block(Some(&contacts)),
        block(project_data),
    )
}

fn is_empty(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::String(s) => s.is_empty(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shared_key_never_goes_to_a_company_chosen_endpoint() {
        let secrets_client = aws_sdk_secretsmanager::Client::from_conf(
            aws_sdk_secretsmanager::Config::builder().behavior_version_latest().build(),
        );
        let secrets = Arc::new(Secrets::new(secrets_client, std::time::Duration::ZERO, Default::default()));
        let ai = |loopback| {
            Ai::new(
                reqwest::Client::new(),
                DEFAULT_BASE_URL,
                "p/openai-api-key/whatsapp-dev",
                secrets.clone(),
                loopback,
            )
        };
        let (ai, development) = (ai(false), ai(true));
        let config = |key: &str, url: Option<&str>| AiChannelConfig {
            api_key_reference: key.into(),
            model: None,
            instructions: None,
            prompt_id: None,
            output_schema: None,
            base_url: url.map(str::to_string),
            replies: None,
        };
        let shared = "p/openai-api-key/whatsapp-dev";
        let own = "p/openai-api-key/acme/hiring/whatsapp-dev";
        assert_eq!(ai.checked_endpoint(&config(shared, None)), Ok(DEFAULT_BASE_URL));
        assert_eq!(ai.checked_endpoint(&config(shared, Some(DEFAULT_BASE_URL))), Ok(DEFAULT_BASE_URL));
        let refused = ai.checked_endpoint(&config(shared, Some("https://attacker.example/v1"))).expect_err("shared");
        assert!(refused.message().contains("without the company's own key"), "{refused}");
        let chosen = "https://llm.example.net/v1";
        assert_eq!(ai.checked_endpoint(&config(own, Some(chosen))), Ok(chosen));
        for unsafe_url in ["http://10.0.0.5/v1", "http://localhost.example/v1", "https://u:p@llm.example.net", "x"] {
            assert!(ai.checked_endpoint(&config(own, Some(unsafe_url))).is_err(), "{unsafe_url}");
        }
        // Loopback (a pod's sidecars: a service mesh's admin ports) only in development.
        for local in ["http://127.0.0.1:9/v1", "http://localhost:15020/quitquitquit?x=", "https://[::1]/v1"] {
            let refused = ai.checked_endpoint(&config(own, Some(local))).expect_err(local);
            assert!(refused.message().contains("--allow-loopback-ai-endpoints"), "{refused}");
            assert_eq!(development.checked_endpoint(&config(own, Some(local))), Ok(local));
        }
    }

    fn validator(channel: ChannelKind) -> jsonschema::Validator {
        jsonschema::validator_for(&default_schema(channel)).expect("schema")
    }

    fn answer(text: &str) -> Value {
        json!({"id": "resp_1", "object": "response", "status": "completed",
               "output": [{"type": "reasoning", "summary": []},
                          {"type": "message", "role": "assistant", "status": "completed",
                           "content": [{"type": "output_text", "text": text, "annotations": []}]}],
               "usage": {"input_tokens": 120, "output_tokens": 30, "total_tokens": 150}})
    }

    #[test]
    fn reads_the_structured_output_and_usage() {
        let reply = parse_reply(&answer(r#"{"body": "Hi Lee"}"#), &validator(ChannelKind::Sms)).expect("reply");
        assert_eq!(reply.variables["body"], "Hi Lee");
        assert_eq!(reply.response_id, "resp_1");
        assert_eq!(reply.usage, Usage { input_tokens: 120, output_tokens: 30, total_tokens: 150 });
    }

    #[test]
    fn output_outside_the_schema_is_a_permanent_failure() {
        for text in ["not json", "```json\n{}\n```", r#"{"body": 7}"#, r#"{"body": "x", "extra": "y"}"#, "[1]"] {
            let failure = parse_reply(&answer(text), &validator(ChannelKind::Sms)).expect_err(text);
            assert!(matches!(failure, Failure::Permanent(_)), "{text}: {failure:?}");
        }
        let refused = json!({"id": "r", "status": "completed", "output": [{"type": "message",
            "content": [{"type": "refusal", "refusal": "I can't help with that."}]}]});
        let failure = parse_reply(&refused, &validator(ChannelKind::Whatsapp)).expect_err("refusal");
        assert_eq!(failure.message(), "the model refused", "the refusal's text is not kept");
        let incomplete =
            json!({"id": "r", "status": "incomplete", "incomplete_details": {"reason": "max_output_tokens"}});
        let failure = parse_reply(&incomplete, &validator(ChannelKind::Whatsapp)).expect_err("incomplete");
        assert_eq!(failure.message(), "OpenAI response incomplete: max_output_tokens");
    }

    #[test]
    fn failures_name_where_the_output_went_wrong_but_not_what_it_said() {
        let failure = parse_reply(&answer(r#"{"body": 7}"#), &validator(ChannelKind::Sms)).expect_err("off schema");
        assert_eq!(failure.message(), "the model's output breaks the schema: /body fails /properties/body/type");
        let failure = parse_reply(&answer("Dear Lee Hayton, ..."), &validator(ChannelKind::Sms)).expect_err("text");
        assert_eq!(failure.message(), "the model's output is not JSON (20 characters)");
    }

    #[test]
    fn strict_mode_only_for_schemas_openai_accepts_as_strict() {
        assert!(strict_compatible(&default_schema(ChannelKind::Sms)));
        assert!(!strict_compatible(&default_schema(ChannelKind::Whatsapp)), "open object");
        let optional =
            json!({"type": "object", "properties": {"a": {"type": "string"}}, "additionalProperties": false});
        assert!(!strict_compatible(&optional), "a property not required");
        let nested_open = json!({"type": "object", "required": ["a"], "additionalProperties": false,
                                 "properties": {"a": {"type": "object", "properties": {}}}});
        assert!(!strict_compatible(&nested_open));
    }

    #[test]
    fn the_initial_context_document_has_the_original_layout() {
        let text = initial_context(
            Some("Cucumber Recruitment"),
            None,
            Some(&json!({"company_rep_1": "Carol"})),
            &json!({"recipient_first_name": "Lee"}),
            &Map::new(),
            None,
        );
        assert!(text.starts_with("\nInitial context:\n\n**Company & Project:**\n- Company Name: Cucumber Recruitment\n- Project Name: Not provided\n"));
        assert!(text.contains("**Company Representative(s):**\n```json\n{\n  \"company_rep_1\": \"Carol\"\n}\n```\n"));
        assert!(text.contains("**Company Contact Info:**\nNot provided\n"));
        assert!(text.ends_with("**Project-Specific Data:**\nNot provided\n"));
    }
}
