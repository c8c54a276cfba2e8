//! The router's OpenAPI 3.1 document, served at `/openapi.json` for client teams. It is built
//! from what the handlers answer from (the error catalogue with each code's status, the
//! channels, the body limit), so it cannot drift from them; the request schema states the
//! checks of [`super::request::validate`] that a schema can state.
use super::error::ErrorCode;
use crate::replies::webhook;
use multicomms_wire::ChannelKind;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

pub const PATH: &str = "/openapi.json";

/// The document for a router of `version` taking bodies of at most `max_body_bytes`.
pub fn document(version: &str, max_body_bytes: usize) -> Value {
    let mut paths = Map::new();
    paths.insert("/initiate-conversation".into(), initiate_conversation(max_body_bytes));
    paths.insert(super::erasure::ERASURE_PATH.into(), erasure());
    let sendgrid = format!("{}/{{company_id}}/{{project_id}}", multicomms_wire::delivery::SENDGRID_EVENTS_PATH);
    paths.insert(sendgrid, sendgrid_events());
    for channel in [ChannelKind::Whatsapp, ChannelKind::Sms] {
        paths.insert(webhook::path(channel), twilio_webhook(channel));
    }
    paths.insert(multicomms_wire::delivery::TWILIO_STATUS_PATH.into(), twilio_status_callback());
    paths.extend(conversations());
    let text = |description: &str| json!({"description": description, "content": {"text/plain": {"schema": {"type": "string"}}}});
    paths.insert("/healthz".into(), json!({"get": {"summary": "Liveness", "responses": {"200": text("ok")}}}));
    paths.insert(
        "/readyz".into(),
        json!({"get": {"summary": "Readiness: a channel queue was found", "responses": {
            "200": text("ready"), "503": text("why not ready")}}}),
    );
    paths.insert(
        PATH.into(),
        json!({"get": {"summary": "This document", "responses": {"200": {"description": "OpenAPI 3.1",
            "content": {"application/json": {"schema": {"type": "object"}}}}}}}),
    );
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "multicomms router",
            "version": version,
            "description": "Starts AI-written conversations on WhatsApp, SMS and email, and takes the recipients' \
                answers from Twilio. Every error answer is the envelope `Error` with an `error_code` from the \
                catalogue listed per status.",
        },
        "paths": paths,
        "components": {
            "securitySchemes": {
                "apiKey": {"type": "apiKey", "in": "header", "name": "x-api-key"},
                "agentToken": {"type": "http", "scheme": "bearer", "description": "An agent's token (spec.agents of the Company)"},
                "inboxSession": {"type": "apiKey", "in": "cookie", "name": "__Host-multicomms_session",
                    "description": "The inbox's session (multicomms_session on loopback); changes also send x-csrf-token"},
            },
            "schemas": {
                "InitiateConversation": initiate_conversation_schema(),
                "Accepted": {
                    "type": "object",
                    "required": ["status", "request_id", "message", "queue_timestamp"],
                    "properties": {
                        "status": {"const": "success"},
                        "request_id": {"type": "string"},
                        "message": {"type": "string"},
                        "queue_timestamp": {"type": "string"},
                    },
                    "additionalProperties": false,
                },
                "Error": error_schema(ErrorCode::ALL),
            },
        },
    })
}

fn error_schema(codes: &[ErrorCode]) -> Value {
    let codes: Vec<&str> = codes.iter().map(|c| c.as_str()).collect();
    json!({
        "type": "object",
        "required": ["status", "error_code", "message", "request_id"],
        "properties": {
            "status": {"const": "error"},
            "error_code": {"enum": codes},
            "message": {"type": "string"},
            "request_id": {"type": "string"},
        },
        "additionalProperties": false,
    })
}

/// Every error status the route can answer, with the codes it answers them with.
fn error_responses(codes: &[ErrorCode]) -> Map<String, Value> {
    let mut by_status: BTreeMap<u16, Vec<ErrorCode>> = BTreeMap::new();
    for code in codes {
        by_status.entry(code.status().as_u16()).or_default().push(*code);
    }
    by_status
        .into_iter()
        .map(|(status, codes)| {
            let names: Vec<&str> = codes.iter().map(|c| c.as_str()).collect();
            let mut response = json!({
                "description": names.join(", "),
                "content": {"application/json": {"schema": error_schema(&codes)}},
            });
            if codes.contains(&ErrorCode::RateLimitExceeded) {
                response["headers"] =
                    json!({"Retry-After": {"description": "Seconds until a retry may pass", "schema": {"type": "integer"}}});
            }
            (status.to_string(), response)
        })
        .collect()
}

fn initiate_conversation(max_body_bytes: usize) -> Value {
    let mut responses = error_responses(ErrorCode::ALL);
    responses.insert(
        "200".into(),
        json!({"description": "Accepted and queued (a retry with the same request_id gets the same answer)",
               "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Accepted"}}}}),
    );
    json!({
        "post": {
            "summary": "Start a conversation: the AI writes the first message, the channel's processor sends it",
            "security": [{"apiKey": []}],
            "requestBody": {
                "required": true,
                "description": format!("At most {max_body_bytes} bytes. The body travels on verbatim to the AI as context."),
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/InitiateConversation"}}},
                "x-max-body-bytes": max_body_bytes,
            },
            "responses": responses,
        },
        "options": {"summary": "CORS preflight", "responses": {"200": {"description": "The CORS headers"}}},
    })
}

fn initiate_conversation_schema() -> Value {
    let channels: Vec<&str> = ChannelKind::ALL.iter().map(|c| c.as_str()).collect();
    let non_empty = json!({"type": "string", "minLength": 1, "pattern": "\\S"});
    json!({
        "type": "object",
        "required": ["company_data", "recipient_data", "request_data"],
        "properties": {
            "company_data": {
                "type": "object",
                "required": ["company_id", "project_id"],
                "properties": {"company_id": {"type": "string", "minLength": 1}, "project_id": {"type": "string", "minLength": 1}},
            },
            "recipient_data": {
                "type": "object",
                "description": "`recipient_tel` is required for whatsapp and sms (kept in E.164; a number without a country code is read in the company's default region), `recipient_email` for email.",
                "required": ["comms_consent"],
                "properties": {
                    "recipient_first_name": {"type": "string"},
                    "recipient_last_name": {"type": "string"},
                    "recipient_tel": non_empty,
                    "recipient_email": non_empty,
                    "comms_consent": {"type": "boolean"},
                },
            },
            "request_data": {
                "type": "object",
                "required": ["request_id", "channel_method", "initial_request_timestamp"],
                "properties": {
                    "request_id": {
                        "type": "string",
                        "description": "A lower-case UUID v4: the idempotency key",
                        "pattern": "^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$",
                    },
                    "channel_method": {"enum": channels},
                    "initial_request_timestamp": {"type": "string", "format": "date-time"},
                },
            },
            "project_data": {"type": "object", "description": "What the AI is told about the project"},
        },
    })
}

fn twilio_webhook(channel: ChannelKind) -> Value {
    let twiml = |description: &str| json!({"description": description, "content": {"text/xml": {"schema": {"type": "string"}}}});
    json!({
        "post": {
            "summary": format!("Twilio's inbound {} webhook (on when the router has a public base URL)", channel.as_str()),
            "parameters": [{"name": "X-Twilio-Signature", "in": "header", "required": true, "schema": {"type": "string"},
                            "description": "HMAC-SHA1 of the public URL and the form, with the company's auth token"}],
            "requestBody": {
                "required": true,
                "content": {"application/x-www-form-urlencoded": {"schema": {
                    "type": "object",
                    "required": ["MessageSid", "From", "To"],
                    "properties": {
                        "MessageSid": {"type": "string"}, "AccountSid": {"type": "string"},
                        "From": {"type": "string"}, "To": {"type": "string"}, "Body": {"type": "string"},
                        "NumMedia": {"type": "string"},
                    },
                }}},
            },
            "responses": {
                "200": twiml("Taken, or not answered for good (an unknown conversation, a company that takes no replies): Twilio does not retry"),
                "400": twiml("Not a Twilio form (no MessageSid, From or To)"),
                "403": twiml("A missing or wrong X-Twilio-Signature"),
                "404": {"description": "The webhooks are off"},
                "413": {"description": "The body is over the router's limit", "content": {"text/plain": {"schema": {"type": "string"}}}},
                "503": twiml("Not taken for now (AWS unavailable, or the router's request bodies in flight at their budget): Twilio may retry"),
                "504": {"description": "REQUEST_TIMEOUT", "content": {"application/json": {"schema": error_schema(&[ErrorCode::RequestTimeout])}}},
            },
        },
    })
}

fn erasure() -> Value {
    let error = |description: &str, codes: &[ErrorCode]| json!({"description": description, "content": {"application/json": {"schema": error_schema(codes)}}});
    let path_parameter = |name: &str, description: &str| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string", "minLength": 1}, "description": description});
    let query_parameter =
        |name: &str| json!({"name": name, "in": "query", "required": true, "schema": {"type": "string"}});
    json!({
        "delete": {
            "summary": "Erase a recipient: the company's conversations with them on the channel and their staged messages (an opt-out is kept)",
            "parameters": [
                path_parameter("channel", "whatsapp, sms or email"),
                path_parameter("address", "The recipient's number (read as the router reads recipient_tel) or email address"),
                query_parameter("company_id"),
                query_parameter("project_id"),
                {"name": "x-api-key", "in": "header", "required": true, "schema": {"type": "string"}},
            ],
            "responses": {
                "200": {"description": "Erased (a repeat finds nothing more)", "content": {"application/json": {"schema": {
                    "type": "object",
                    "required": ["status", "channel", "recipient", "erased", "opt_out_kept"],
                    "properties": {
                        "status": {"const": "success"}, "message": {"type": "string"},
                        "channel": {"type": "string"}, "recipient": {"type": "string"},
                        "erased": {"type": "object", "properties": {
                            "conversations": {"type": "integer"}, "staged_messages": {"type": "integer"}}},
                        "opt_out_kept": {"type": "boolean", "description": "The recipient stays opted out"},
                    },
                }}}},
                "400": error("A bad channel, number or query", &[ErrorCode::MissingIdentifiers, ErrorCode::UnsupportedChannel, ErrorCode::InvalidRecipientTel]),
                "401": error("No API key", &[ErrorCode::MissingApiKey]),
                "403": error("Not this company's key", &[ErrorCode::InvalidApiKey]),
                "404": {"description": "No such route (an empty channel or address)"},
                "500": error("AWS failed; a retry erases the rest", &[ErrorCode::DatabaseError]),
                "504": error("REQUEST_TIMEOUT", &[ErrorCode::RequestTimeout]),
            },
        },
    })
}

/// The conversations API (see [`super::conversations`]) and the inbox's session.
fn conversations() -> Map<String, Value> {
    use super::conversations::{CONVERSATIONS_PATH, DEFAULT_PAGE, MAX_PAGE};
    use ErrorCode::*;
    let auth = [MissingAgentCredentials, InvalidAgentToken, InvalidSession, DatabaseError, RequestTimeout];
    let responses = |ok: &str, codes: &[ErrorCode]| {
        let mut all = error_responses(&[&auth[..], codes].concat());
        all.insert(
            "200".into(),
            json!({"description": ok, "content": {"application/json": {"schema": {"type": "object"}}}}),
        );
        Value::Object(all)
    };
    let ids = [("company_id", "The company"), ("project_id", "The project"), ("id", "A conversation's id, as listed")];
    let parameters = |n: usize| -> Vec<Value> {
        ids[..n]
            .iter()
            .map(|(name, description)| {
                json!({"name": name, "in": "path", "required": true,
            "schema": {"type": "string", "minLength": 1}, "description": description})
            })
            .collect()
    };
    let security = json!([{"agentToken": []}, {"inboxSession": []}]);
    let change = |summary: &str, codes: &[ErrorCode]| {
        json!({"post": {"summary": summary, "security": security,
        "parameters": parameters(3), "responses": responses("Done; the conversation as it now is", &[&[CsrfTokenInvalid, ConversationNotFound, ConversationBusy][..], codes].concat())}})
    };
    let one = format!("{CONVERSATIONS_PATH}/{{id}}");
    let mut paths = Map::new();
    let mut list_parameters = parameters(2);
    list_parameters.push(json!({"name": "state", "in": "query", "schema": {"enum": ["handed_off", "waiting_for_person", "open", "closed"]}}));
    list_parameters.push(json!({"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE, "default": DEFAULT_PAGE}}));
    list_parameters.push(json!({"name": "cursor", "in": "query", "schema": {"type": "string"}, "description": "next_cursor of the previous page"}));
    paths.insert(
        CONVERSATIONS_PATH.into(),
        json!({"get": {"summary": "The company's conversations, newest activity first",
        "security": security, "parameters": list_parameters,
        "responses": responses("{conversations: [...], next_cursor}", &[InvalidConversationQuery])}}),
    );
    paths.insert(one.clone(), json!({"get": {"summary": "One conversation with every message (role, agent, time, delivery status, media)",
        "security": security, "parameters": parameters(3), "responses": responses("{conversation}", &[ConversationNotFound])}}));
    let mut write = change(
        "A person's message to the recipient, sent under the never-twice claim and recorded with role human and the agent's name",
        &[InvalidMessage, AiIsAnswering, ConversationClosed, WhatsappWindowClosed, RecipientOptedOut, ReplyChannelUnsupported, SendFailed, SendOutcomeUnknown],
    );
    write["post"]["requestBody"] = json!({"required": true, "content": {"application/json": {"schema": {
        "type": "object", "required": ["text"], "properties": {"text": {"type": "string", "minLength": 1, "maxLength": super::conversations::MAX_PERSON_MESSAGE_CHARS}},
        "additionalProperties": false}}}});
    paths.insert(format!("{one}/messages"), write);
    paths.insert(
        format!("{one}/take-over"),
        change("Take the conversation over: the AI stops answering it", &[ConversationClosed]),
    );
    paths.insert(
        format!("{one}/give-back"),
        change(
            "Give the conversation back to the AI: it answers the next message",
            &[ConversationClosed, NotHandedToPerson],
        ),
    );
    paths.insert(format!("{one}/close"), change("Close the conversation: an answer to it goes to a person", &[]));
    paths.insert(super::inbox::SESSION_PATH.into(), json!({
        "post": {"summary": "Sign in to the inbox with an agent's token: sets the session cookie",
            "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object",
                "required": ["company_id", "project_id", "token"], "properties": {
                "company_id": {"type": "string"}, "project_id": {"type": "string"}, "token": {"type": "string"}}}}}},
            "responses": responses("The session, with its CSRF token", &[InvalidMessage])},
        "get": {"summary": "The inbox's current session", "responses": responses("The session, with its CSRF token", &[])},
        "delete": {"summary": "Sign out", "responses": {"204": {"description": "The cookie is cleared"}}},
    }));
    paths
}

fn sendgrid_events() -> Value {
    let plain = |description: &str| json!({"description": description});
    let path_parameter = |name: &str| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string", "minLength": 1}});
    json!({
        "post": {
            "summary": "A company's SendGrid Event Webhook: delivery events on their messages, unsubscribes and spam reports as opt-outs",
            "parameters": [
                path_parameter("company_id"),
                path_parameter("project_id"),
                {"name": "X-Twilio-Email-Event-Webhook-Signature", "in": "header", "required": true, "schema": {"type": "string"},
                 "description": "ECDSA P-256 signature (base64 DER) over the timestamp and the body, with the account's key"},
                {"name": "X-Twilio-Email-Event-Webhook-Timestamp", "in": "header", "required": true, "schema": {"type": "string"}},
            ],
            "requestBody": {
                "required": true,
                "content": {"application/json": {"schema": {"type": "array", "items": {
                    "type": "object",
                    "required": ["email", "event"],
                    "properties": {
                        "email": {"type": "string"}, "event": {"type": "string"}, "timestamp": {"type": "integer"},
                        "sg_message_id": {"type": "string"}, "conversation_id": {"type": "string"},
                        "status": {"type": "string"}, "asm_group_id": {"type": "integer"},
                    },
                }}}},
            },
            "responses": {
                "200": plain("Taken (each event recorded, already recorded, or not this service's)"),
                "400": plain("Signed, but not a JSON array"),
                "403": plain("Not signed with the company's Event Webhook key (or no such company)"),
                "404": plain("No such route (an empty company or project id)"),
                "413": plain("The body is over the router's limit"),
                "503": plain("Not recorded for now (AWS unavailable, or the router's request bodies in flight at their budget): SendGrid retries"),
                "504": {"description": "REQUEST_TIMEOUT", "content": {"application/json": {"schema": error_schema(&[ErrorCode::RequestTimeout])}}},
            },
        },
    })
}

fn twilio_status_callback() -> Value {
    let twiml = |description: &str| json!({"description": description, "content": {"text/xml": {"schema": {"type": "string"}}}});
    json!({
        "post": {
            "summary": "Twilio's message status callbacks (each Twilio send names this URL, its conversation in the query)",
            "parameters": [
                {"name": "conversation", "in": "query", "required": true, "schema": {"type": "string"},
                 "description": "The conversation the message belongs to, as the processor named it"},
                {"name": "X-Twilio-Signature", "in": "header", "required": true, "schema": {"type": "string"},
                 "description": "HMAC-SHA1 of the public URL (query included) and the form, with the sending account's auth token"},
            ],
            "requestBody": {
                "required": true,
                "content": {"application/x-www-form-urlencoded": {"schema": {
                    "type": "object",
                    "required": ["MessageSid", "MessageStatus", "AccountSid", "From", "To"],
                    "properties": {
                        "MessageSid": {"type": "string"}, "MessageStatus": {"type": "string"},
                        "AccountSid": {"type": "string"}, "From": {"type": "string"}, "To": {"type": "string"},
                        "ErrorCode": {"type": "string"},
                    },
                }}},
            },
            "responses": {
                "200": twiml("Recorded, or nothing to change (a repeat, a status behind the recorded one, an unknown message)"),
                "400": twiml("Not a status callback form"),
                "403": twiml("A missing or wrong X-Twilio-Signature, or a conversation that is not the sender's"),
                "404": {"description": "The webhooks are off"},
                "429": twiml("Too many unverified webhook requests from this source this minute (see Retry-After)"),
                "503": twiml("Not recorded for now (AWS unavailable, or the message's send not recorded yet)"),
            },
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_code_is_documented_under_its_status() {
        let document = document("router-1", 1024);
        let responses = &document["paths"]["/initiate-conversation"]["post"]["responses"];
        for code in ErrorCode::ALL {
            let status = code.status().as_u16().to_string();
            let codes =
                &responses[&status]["content"]["application/json"]["schema"]["properties"]["error_code"]["enum"];
            assert!(codes.as_array().is_some_and(|c| c.contains(&json!(code.as_str()))), "{code} under {status}");
        }
        assert!(responses["200"].is_object());
        assert_eq!(responses["429"]["headers"]["Retry-After"]["schema"]["type"], "integer");
    }

    #[test]
    fn the_request_schema_names_every_channel_and_the_required_sections() {
        let schema = initiate_conversation_schema();
        assert_eq!(schema["required"], json!(["company_data", "recipient_data", "request_data"]));
        assert_eq!(
            schema["properties"]["request_data"]["properties"]["channel_method"]["enum"],
            json!(["whatsapp", "sms", "email"])
        );
        let pattern =
            schema["properties"]["request_data"]["properties"]["request_id"]["pattern"].as_str().unwrap_or("");
        assert!(pattern.contains("-4[0-9a-f]{3}-[89ab]"), "the UUID v4 rule of request::is_uuid_v4");
    }
}
