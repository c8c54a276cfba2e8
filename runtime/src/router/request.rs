//! Validation of a `POST /initiate-conversation` body: the original's checks in the original's
//! order, first failure wins (spec template-sender §1.4 steps 3–6), with the deliberate fixes
//! listed in docs/differences.md (non-object bodies and sections are 400s, not crashes; a channel must be
//! written in lower case, since the processors only accept that).
use super::error::{ErrorCode, Rejected, RouterError};
use super::timestamp;
use multicomms_wire::ChannelKind;
use serde_json::{Map, Value};

/// A request that passed every check.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidRequest {
    /// The body as sent: it travels on verbatim as the context's `frontend_payload`.
    pub body: Value,
    pub request_id: String,
    pub company_id: String,
    pub project_id: String,
    pub channel: ChannelKind,
    /// `recipient_tel` (whatsapp, sms) or `recipient_email` (email).
    pub recipient: String,
    pub comms_consent: bool,
}

/// `fallback_id` is echoed when the body carries no `request_data.request_id`.
pub fn validate(body: &[u8], fallback_id: &str) -> Result<ValidRequest, Rejected> {
    let reject = |error, request_id: &str| Rejected { error, request_id: request_id.to_string() };
    let text = std::str::from_utf8(body).map_err(|_| reject(RouterError::invalid_request(), fallback_id))?;
    if text.trim().is_empty() {
        return Err(reject(RouterError::invalid_request(), fallback_id));
    }
    let parsed: Value = serde_json::from_str(text).map_err(|_| reject(RouterError::invalid_request(), fallback_id))?;
    // The original crashed (500) on a JSON array, number or string; here it is a bad request.
    let Value::Object(root) = &parsed else { return Err(reject(RouterError::invalid_request(), fallback_id)) };

    let request_id = match root.get("request_data").and_then(|r| r.get("request_id")) {
        Some(id) => echoed_id(id),
        None => fallback_id.to_string(),
    };
    let rejected = |error| Rejected { error, request_id: request_id.clone() };

    let (company_id, project_id) = match root.get("company_data") {
        Some(Value::Object(c)) => match (truthy_str(c.get("company_id")), truthy_str(c.get("project_id"))) {
            (Some(company), Some(project)) => (company.to_string(), project.to_string()),
            _ => return Err(rejected(RouterError::missing_identifiers())),
        },
        // A non-object company_data crashed the original; it is a type error here.
        Some(_) => return Err(rejected(RouterError::section_type(ErrorCode::InvalidCompanyDataType, "company_data"))),
        None => return Err(rejected(RouterError::missing_identifiers())),
    };
    let recipient_data =
        section(root, "recipient_data", ErrorCode::MissingRecipientData, ErrorCode::InvalidRecipientDataType)
            .map_err(rejected)?;
    let request_data = section(root, "request_data", ErrorCode::MissingRequestData, ErrorCode::InvalidRequestDataType)
        .map_err(rejected)?;

    let field = |name: &str, missing: ErrorCode, format: ErrorCode| -> Result<String, RouterError> {
        match request_data.get(name) {
            None => Err(RouterError::missing_field(missing, name)),
            Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.clone()),
            Some(_) => Err(RouterError::field_format(format, name)),
        }
    };
    let id = field("request_id", ErrorCode::MissingRequestId, ErrorCode::InvalidRequestIdFormat).map_err(rejected)?;
    let channel_sent = field("channel_method", ErrorCode::MissingChannelMethod, ErrorCode::InvalidChannelMethodFormat)
        .map_err(rejected)?;
    let timestamp = field(
        "initial_request_timestamp",
        ErrorCode::MissingInitialRequestTimestamp,
        ErrorCode::InvalidInitialRequestTimestampFormat,
    )
    .map_err(rejected)?;
    if !is_uuid_v4(&id) {
        return Err(rejected(RouterError::invalid_request_id()));
    }
    // Exactly lower case: the original let "WhatsApp" through, and its processor then failed.
    let channel: ChannelKind =
        channel_sent.parse().map_err(|_| rejected(RouterError::unsupported_channel(&channel_sent)))?;
    if !timestamp::is_valid(&timestamp) {
        return Err(rejected(RouterError::invalid_timestamp()));
    }
    let (missing, invalid) = match channel {
        ChannelKind::Whatsapp | ChannelKind::Sms => (ErrorCode::MissingRecipientTel, ErrorCode::InvalidRecipientTel),
        ChannelKind::Email => (ErrorCode::MissingRecipientEmail, ErrorCode::InvalidRecipientEmail),
    };
    let field_name = channel.recipient_field();
    let recipient = match recipient_data.get(field_name) {
        None => return Err(rejected(RouterError::missing_recipient(missing, channel.as_str(), field_name))),
        Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
        Some(_) => return Err(rejected(RouterError::invalid_recipient(invalid, field_name))),
    };
    let comms_consent = match recipient_data.get("comms_consent") {
        None => return Err(rejected(RouterError::missing_consent())),
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(rejected(RouterError::consent_type())),
    };
    Ok(ValidRequest { request_id: id, company_id, project_id, channel, recipient, comms_consent, body: parsed.clone() })
}

fn section<'a>(
    root: &'a Map<String, Value>,
    name: &str,
    missing: ErrorCode,
    wrong_type: ErrorCode,
) -> Result<&'a Map<String, Value>, RouterError> {
    match root.get(name) {
        None => Err(RouterError::missing_section(missing, name)),
        Some(Value::Object(map)) => Ok(map),
        Some(_) => Err(RouterError::section_type(wrong_type, name)),
    }
}

/// A non-empty string id (the ids are DynamoDB string keys).
fn truthy_str(value: Option<&Value>) -> Option<&str> {
    value.and_then(Value::as_str).filter(|s| !s.is_empty())
}

/// The request id as the envelope echoes it: `unknown` when empty, null or false.
fn echoed_id(id: &Value) -> String {
    match id {
        Value::String(s) if !s.is_empty() => s.clone(),
        Value::Null | Value::Bool(false) => "unknown".into(),
        Value::String(_) => "unknown".into(),
        other => other.to_string(),
    }
}

/// Canonical lower-case UUID v4: 8-4-4-4-12 hex, version nibble 4, variant 8, 9, a or b.
pub fn is_uuid_v4(id: &str) -> bool {
    let bytes = id.as_bytes();
    bytes.len() == 36
        && bytes.iter().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => *b == b'-',
            14 => *b == b'4',
            19 => matches!(b, b'8' | b'9' | b'a' | b'b'),
            _ => b.is_ascii_digit() || (b'a'..=b'f').contains(b),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The spec's example request (§1.7), abbreviated.
    fn example() -> Value {
        json!({
            "company_data": {"company_id": "ci-aaa-001", "project_id": "pi-aaa-001"},
            "recipient_data": {"recipient_first_name": "Lee", "recipient_tel": "+447835065013",
                               "recipient_email": "lee@example.com", "comms_consent": true},
            "project_data": {"jobID": "9999"},
            "request_data": {"request_id": "550e8400-e29b-41d4-a716-446655440001", "channel_method": "whatsapp",
                             "initial_request_timestamp": "2023-09-15T11:45:32.789Z"}
        })
    }

    fn edited(edit: impl FnOnce(&mut Value)) -> Vec<u8> {
        let mut body = example();
        edit(&mut body);
        body.to_string().into_bytes()
    }

    fn rejected(body: &[u8]) -> Rejected {
        validate(body, "fallback-id").expect_err("rejected")
    }

    #[test]
    fn the_example_passes() {
        let ok = validate(&example().to_string().into_bytes(), "x").expect("valid");
        assert_eq!(ok.request_id, "550e8400-e29b-41d4-a716-446655440001");
        assert_eq!((ok.company_id.as_str(), ok.project_id.as_str()), ("ci-aaa-001", "pi-aaa-001"));
        assert_eq!(ok.channel, ChannelKind::Whatsapp);
        assert_eq!(ok.recipient, "+447835065013");
        assert!(ok.comms_consent);
        assert_eq!(ok.body, example(), "the body travels on verbatim");
    }

    #[test]
    fn every_validation_error_of_the_catalogue_in_order() {
        type Edit = Box<dyn FnOnce(&mut Value)>;
        let cases: Vec<(&str, Edit, &str)> = vec![
            (
                "MISSING_IDENTIFIERS",
                Box::new(|b| {
                    b.as_object_mut().map(|o| o.remove("company_data"));
                }),
                "company_id and project_id are required in company_data",
            ),
            (
                "MISSING_IDENTIFIERS",
                Box::new(|b| b["company_data"]["project_id"] = json!("")),
                "company_id and project_id are required in company_data",
            ),
            (
                "INVALID_COMPANY_DATA_TYPE",
                Box::new(|b| b["company_data"] = json!("ci-aaa-001")),
                "'company_data' must be a dictionary",
            ),
            (
                "MISSING_RECIPIENT_DATA",
                Box::new(|b| {
                    b.as_object_mut().map(|o| o.remove("recipient_data"));
                }),
                "'recipient_data' section is required",
            ),
            (
                "INVALID_RECIPIENT_DATA_TYPE",
                Box::new(|b| b["recipient_data"] = json!([1])),
                "'recipient_data' must be a dictionary",
            ),
            (
                "MISSING_REQUEST_DATA",
                Box::new(|b| {
                    b.as_object_mut().map(|o| o.remove("request_data"));
                }),
                "'request_data' section is required",
            ),
            (
                "INVALID_REQUEST_DATA_TYPE",
                Box::new(|b| b["request_data"] = json!(7)),
                "'request_data' must be a dictionary",
            ),
            (
                "MISSING_REQUEST_ID",
                Box::new(|b| {
                    b["request_data"].as_object_mut().map(|o| o.remove("request_id"));
                }),
                "'request_id' is required in request_data",
            ),
            (
                "INVALID_REQUEST_ID_FORMAT",
                Box::new(|b| b["request_data"]["request_id"] = json!("  ")),
                "'request_id' must be a non-empty string",
            ),
            (
                "MISSING_CHANNEL_METHOD",
                Box::new(|b| {
                    b["request_data"].as_object_mut().map(|o| o.remove("channel_method"));
                }),
                "'channel_method' is required in request_data",
            ),
            (
                "INVALID_CHANNEL_METHOD_FORMAT",
                Box::new(|b| b["request_data"]["channel_method"] = json!(3)),
                "'channel_method' must be a non-empty string",
            ),
            (
                "MISSING_INITIAL_REQUEST_TIMESTAMP",
                Box::new(|b| {
                    b["request_data"].as_object_mut().map(|o| o.remove("initial_request_timestamp"));
                }),
                "'initial_request_timestamp' is required in request_data",
            ),
            (
                "INVALID_INITIAL_REQUEST_TIMESTAMP_FORMAT",
                Box::new(|b| b["request_data"]["initial_request_timestamp"] = json!("")),
                "'initial_request_timestamp' must be a non-empty string",
            ),
            (
                "INVALID_REQUEST_ID",
                Box::new(|b| b["request_data"]["request_id"] = json!("550E8400-E29B-41D4-A716-446655440001")),
                "request_id must be a valid UUID v4 string",
            ),
            (
                "UNSUPPORTED_CHANNEL",
                Box::new(|b| b["request_data"]["channel_method"] = json!("telegram")),
                "Channel method 'telegram' is not supported. Must be one of: ['whatsapp', 'email', 'sms']",
            ),
            (
                "UNSUPPORTED_CHANNEL",
                Box::new(|b| b["request_data"]["channel_method"] = json!("WhatsApp")),
                "Channel method 'WhatsApp' is not supported",
            ),
            (
                "INVALID_TIMESTAMP",
                Box::new(|b| b["request_data"]["initial_request_timestamp"] = json!("2024/01/01 12:00:00")),
                "initial_request_timestamp must be a valid ISO 8601 string",
            ),
            (
                "MISSING_RECIPIENT_TEL",
                Box::new(|b| {
                    b["recipient_data"].as_object_mut().map(|o| o.remove("recipient_tel"));
                }),
                "whatsapp channel requires 'recipient_tel' in recipient_data",
            ),
            (
                "INVALID_RECIPIENT_TEL",
                Box::new(|b| b["recipient_data"]["recipient_tel"] = json!(" ")),
                "'recipient_tel' must be a non-empty string",
            ),
            (
                "MISSING_RECIPIENT_EMAIL",
                Box::new(|b| {
                    b["request_data"]["channel_method"] = json!("email");
                    b["recipient_data"].as_object_mut().map(|o| o.remove("recipient_email"));
                }),
                "email channel requires 'recipient_email' in recipient_data",
            ),
            (
                "INVALID_RECIPIENT_EMAIL",
                Box::new(|b| {
                    b["request_data"]["channel_method"] = json!("email");
                    b["recipient_data"]["recipient_email"] = json!(false);
                }),
                "'recipient_email' must be a non-empty string",
            ),
            (
                "MISSING_COMMS_CONSENT",
                Box::new(|b| {
                    b["recipient_data"].as_object_mut().map(|o| o.remove("comms_consent"));
                }),
                "'comms_consent' is required in recipient_data",
            ),
            (
                "INVALID_COMMS_CONSENT_TYPE",
                Box::new(|b| b["recipient_data"]["comms_consent"] = json!("true")),
                "'comms_consent' must be a boolean (true or false)",
            ),
        ];
        for (code, edit, message) in cases {
            let rejection = rejected(&edited(edit));
            assert_eq!(rejection.error.code.as_str(), code, "{rejection:?}");
            assert_eq!(rejection.error.status().as_u16(), 400);
            assert!(rejection.error.message.starts_with(message), "{code}: {:?}", rejection.error.message);
        }
    }

    #[test]
    fn unreadable_bodies_are_invalid_requests_with_the_fallback_id() {
        for body in [&b""[..], b"   ", b"{not json", b"null", b"[1,2]", b"42", b"\"text\"", b"\xff\xfe"] {
            let rejection = rejected(body);
            assert_eq!(rejection.error.code, ErrorCode::InvalidRequest, "{body:?}");
            assert_eq!(rejection.request_id, "fallback-id");
        }
    }

    #[test]
    fn the_request_id_is_echoed_as_sent_even_when_invalid() {
        let body = edited(|b| b["request_data"]["request_id"] = json!("not-a-uuid"));
        assert_eq!(rejected(&body).request_id, "not-a-uuid");
        let body = edited(|b| b["request_data"]["request_id"] = json!(null));
        assert_eq!(rejected(&body).request_id, "unknown");
        let body = edited(|b| {
            b.as_object_mut().map(|o| o.remove("company_data"));
        });
        assert_eq!(rejected(&body).request_id, "550e8400-e29b-41d4-a716-446655440001");
    }

    #[test]
    fn uuid_v4_is_canonical_lower_case() {
        assert!(is_uuid_v4("550e8400-e29b-41d4-a716-446655440001"));
        assert!(!is_uuid_v4("550e8400-e29b-11d4-a716-446655440001"), "version 1");
        assert!(!is_uuid_v4("550e8400-e29b-41d4-c716-446655440001"), "variant");
        assert!(!is_uuid_v4("{550e8400-e29b-41d4-a716-446655440001}"));
        assert!(!is_uuid_v4("550e8400e29b41d4a716446655440001"));
    }
}
