//! Who is asking the conversations API: one of the company's agents, by their token
//! (`Authorization: Bearer …`, compared in constant time with the hashes the company record
//! keeps) or by the inbox's session cookie. A session is a signed, expiring statement of
//! company, project, agent and a CSRF token; it ends early when the agent is removed from the
//! Company or their token changes (it carries a fingerprint of the token's hash). A request that
//! changes anything with a session must echo its CSRF token in `x-csrf-token`.
use super::error::RouterError;
use crate::shared::companies::Company;
use base64::Engine;
use multicomms_wire::company::{api_key_hash, Agent};
use ring::hmac;
use std::time::Duration;

/// The session cookie's name. `__Host-` (Secure, path `/`, no domain) outside loopback.
pub const SESSION_COOKIE: &str = "multicomms_session";
pub const SECURE_SESSION_COOKIE: &str = "__Host-multicomms_session";
/// The header a session's changing requests carry its CSRF token in.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// How long a session lasts.
pub const SESSION_LIFETIME: Duration = Duration::from_secs(8 * 3600);

/// The agent `token` names in `company`, if any (every agent compared, in constant time).
pub fn agent_with_token<'a>(company: &'a Company, token: &str) -> Option<&'a Agent> {
    use subtle::ConstantTimeEq;
    let offered = api_key_hash(token);
    let mut found = None;
    for agent in &company.record.agents {
        if bool::from(offered.as_bytes().ct_eq(agent.token_hash.as_bytes())) {
            found = Some(agent);
        }
    }
    found
}

/// What a session says.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Session {
    pub company_id: String,
    pub project_id: String,
    pub agent: String,
    /// The first 16 characters of the agent's token hash when the session began.
    pub token: String,
    /// Epoch seconds.
    pub expires_at: u64,
    pub csrf: String,
}

impl Session {
    pub fn begin(company: &Company, agent: &Agent, now_seconds: u64) -> Session {
        Session {
            company_id: company.record.company_id.clone(),
            project_id: company.record.project_id.clone(),
            agent: agent.name.clone(),
            token: fingerprint(agent),
            expires_at: now_seconds + SESSION_LIFETIME.as_secs(),
            csrf: uuid::Uuid::new_v4().simple().to_string(),
        }
    }

    /// The agent of `company` this session still speaks for at `now_seconds`.
    pub fn agent_in<'a>(&self, company: &'a Company, now_seconds: u64) -> Option<&'a Agent> {
        let same = company.record.company_id == self.company_id && company.record.project_id == self.project_id;
        let agent = company.record.agents.iter().find(|a| a.name == self.agent && fingerprint(a) == self.token)?;
        (same && now_seconds < self.expires_at).then_some(agent)
    }
}

fn fingerprint(agent: &Agent) -> String {
    agent.token_hash.chars().rev().take(16).collect()
}

/// Signs and reads sessions with the router's key: one shared by every replica
/// (`--session-key`), or one of this process's own.
pub struct Sessions {
    key: hmac::Key,
}

impl Sessions {
    pub fn new(secret: Option<&[u8]>) -> Sessions {
        let key = match secret {
            Some(secret) => hmac::Key::new(hmac::HMAC_SHA256, secret),
            None => {
                let random = [uuid::Uuid::new_v4().into_bytes(), uuid::Uuid::new_v4().into_bytes()].concat();
                hmac::Key::new(hmac::HMAC_SHA256, &random)
            }
        };
        Sessions { key }
    }

    /// The cookie's value: the session as base64url JSON, a dot, its signature.
    pub fn seal(&self, session: &Session) -> String {
        let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let payload = engine.encode(serde_json::to_vec(session).unwrap_or_default());
        let tag = engine.encode(hmac::sign(&self.key, payload.as_bytes()));
        format!("{payload}.{tag}")
    }

    /// The session `value` states, if this router (or one sharing its key) signed it.
    pub fn open(&self, value: &str) -> Option<Session> {
        let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let (payload, tag) = value.split_once('.')?;
        hmac::verify(&self.key, payload.as_bytes(), &engine.decode(tag).ok()?).ok()?;
        serde_json::from_slice(&engine.decode(payload).ok()?).ok()
    }
}

/// How a request presented itself.
pub enum Credentials<'a> {
    Token(&'a str),
    /// A session cookie's value, and the CSRF header when the request changes something.
    Session {
        cookie: &'a str,
        csrf: Option<&'a str>,
    },
    None,
}

impl<'a> Credentials<'a> {
    pub fn of(headers: &'a axum::http::HeaderMap) -> Credentials<'a> {
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        if let Some(token) = header("authorization").and_then(|v| v.strip_prefix("Bearer ")) {
            return Credentials::Token(token.trim());
        }
        let cookie = headers
            .get_all(axum::http::header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(name, _)| *name == SESSION_COOKIE || *name == SECURE_SESSION_COOKIE)
            .map(|(_, value)| value);
        match cookie {
            Some(cookie) => Credentials::Session { cookie, csrf: header(CSRF_HEADER) },
            None => Credentials::None,
        }
    }
}

/// The agent of `company` the credentials prove (`changes`: the request writes, so a session
/// must carry its CSRF token). An unknown company answers as a wrong token does.
pub fn authenticate<'a>(
    company: Option<&'a Company>,
    credentials: &Credentials<'_>,
    sessions: &Sessions,
    changes: bool,
    now_seconds: u64,
) -> Result<&'a Agent, RouterError> {
    match credentials {
        Credentials::None => Err(RouterError::missing_agent_credentials()),
        Credentials::Token(token) => {
            company.and_then(|c| agent_with_token(c, token)).ok_or_else(RouterError::invalid_agent_token)
        }
        Credentials::Session { cookie, csrf } => {
            let session = sessions.open(cookie).ok_or_else(RouterError::invalid_session)?;
            let agent =
                company.and_then(|c| session.agent_in(c, now_seconds)).ok_or_else(RouterError::invalid_session)?;
            let csrf_ok = csrf.is_some_and(|offered| {
                use subtle::ConstantTimeEq;
                bool::from(offered.as_bytes().ct_eq(session.csrf.as_bytes()))
            });
            if changes && !csrf_ok {
                return Err(RouterError::csrf_token_invalid());
            }
            Ok(agent)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use multicomms_wire::CompanyRecord;

    const TOKEN: &str = "carol-token-0123456789abcdef0123456789";

    fn company(company_id: &str, agents: &[(&str, &str)]) -> Company {
        let mut record: CompanyRecord = serde_json::from_value(serde_json::json!({
            "company_id": company_id, "project_id": "pi", "company_name": "C", "project_name": "P",
            "allowed_channels": ["whatsapp"], "project_status": "active",
            "rate_limits": {"requests_per_minute": 1, "requests_per_day": 1, "concurrent_conversations": 1,
                            "max_message_length": 1},
            "channel_config": {}
        }))
        .expect("record");
        record.agents = agents
            .iter()
            .map(|(name, token)| Agent { name: name.to_string(), token_hash: api_key_hash(token) })
            .collect();
        Company { payload: serde_json::Value::Null, record }
    }

    fn headers(pairs: &[(&str, &str)]) -> axum::http::HeaderMap {
        let mut map = axum::http::HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                axum::http::HeaderName::from_bytes(name.as_bytes()).expect("name"),
                value.parse().expect("value"),
            );
        }
        map
    }

    #[test]
    fn a_token_names_its_agent_in_its_company_and_nowhere_else() {
        let (acme, other) = (company("acme", &[("carol", TOKEN), ("dan", "d")]), company("other", &[("eve", "e")]));
        let sessions = Sessions::new(None);
        let bearer = format!("Bearer {TOKEN}");
        let h = headers(&[("authorization", &bearer)]);
        let agent = authenticate(Some(&acme), &Credentials::of(&h), &sessions, true, 0).expect("carol");
        assert_eq!(agent.name, "carol");
        for company in [Some(&other), None] {
            let refused = authenticate(company, &Credentials::of(&h), &sessions, false, 0).expect_err("not theirs");
            assert_eq!(refused, RouterError::invalid_agent_token(), "another company and no company answer alike");
        }
        let none = authenticate(Some(&acme), &Credentials::of(&headers(&[])), &sessions, false, 0);
        assert_eq!(none.expect_err("no credentials"), RouterError::missing_agent_credentials());
    }

    #[test]
    fn a_session_is_refused_when_forged_expired_moved_revoked_or_missing_its_csrf_token() {
        let acme = company("acme", &[("carol", TOKEN)]);
        let sessions = Sessions::new(Some(b"key"));
        let session = Session::begin(&acme, &acme.record.agents[0], 1_000);
        let sealed = sessions.seal(&session);
        let cookie = format!("{SESSION_COOKIE}={sealed}");
        let with = |csrf: &str| headers(&[("cookie", cookie.as_str()), (CSRF_HEADER, csrf)]);
        let check = |company: &Company, h: &axum::http::HeaderMap, changes: bool, now: u64| {
            authenticate(Some(company), &Credentials::of(h), &sessions, changes, now).map(|a| a.name.clone())
        };
        assert_eq!(check(&acme, &with(&session.csrf), true, 1_001), Ok("carol".into()));
        assert_eq!(check(&acme, &with("wrong"), false, 1_001), Ok("carol".into()), "a read needs no CSRF token");
        assert_eq!(check(&acme, &with("wrong"), true, 1_001), Err(RouterError::csrf_token_invalid()));
        let expired = 1_000 + SESSION_LIFETIME.as_secs();
        assert_eq!(check(&acme, &with(&session.csrf), false, expired), Err(RouterError::invalid_session()));
        let other_key = Sessions::new(Some(b"other"));
        assert_eq!(other_key.open(&sealed), None, "signed with another key");
        let mut forged = session.clone();
        forged.company_id = "other".into();
        let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let tampered = format!(
            "{}.{}",
            engine.encode(serde_json::to_vec(&forged).expect("json")),
            sealed.split_once('.').expect("tag").1
        );
        assert_eq!(sessions.open(&tampered), None, "a changed session fails its signature");
        let other = company("other", &[("carol", TOKEN)]);
        assert_eq!(check(&other, &with(&session.csrf), false, 1_001), Err(RouterError::invalid_session()));
        let rotated = company("acme", &[("carol", "carol-new-token-0123456789abcdef012345")]);
        assert_eq!(check(&rotated, &with(&session.csrf), false, 1_001), Err(RouterError::invalid_session()));
        let removed = company("acme", &[]);
        assert_eq!(check(&removed, &with(&session.csrf), false, 1_001), Err(RouterError::invalid_session()));
    }
}
