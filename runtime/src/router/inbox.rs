//! The inbox: a page served at `/inbox` (plain HTML, CSS and JavaScript built into the binary;
//! nothing to build) from which an agent signs in with their token and answers the company's
//! handed-off conversations through the conversations API. Signing in sets the session cookie
//! ([`super::agents::Sessions`]): HttpOnly, SameSite=Strict, Secure (with the `__Host-` prefix)
//! unless the page is on loopback; the page keeps the session's CSRF token in memory and sends
//! it with every change. The page may run no script but its own (Content-Security-Policy) and
//! may not be framed.
use super::agents::{agent_with_token, Session, Sessions, SECURE_SESSION_COOKIE, SESSION_COOKIE, SESSION_LIFETIME};
use super::error::RouterError;
use crate::shared::companies::Companies;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use multicomms_wire::timestamp::epoch_seconds;
use serde_json::{json, Value};

pub const INBOX_PATH: &str = "/inbox";
pub const SESSION_PATH: &str = "/inbox/session";

const PAGE: &str = include_str!("inbox/inbox.html");
const SCRIPT: &str = include_str!("inbox/inbox.js");
const STYLE: &str = include_str!("inbox/inbox.css");

/// The page and its two files, with headers that keep it to itself; 404 for anything else.
pub fn asset(name: &str) -> Response {
    let (body, content_type) = match name {
        "inbox.js" => (SCRIPT, "text/javascript; charset=utf-8"),
        "inbox.css" => (STYLE, "text/css; charset=utf-8"),
        "" | "inbox.html" => (PAGE, "text/html; charset=utf-8"),
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    let headers = [
        (header::CONTENT_TYPE, content_type),
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; \
             form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::CACHE_CONTROL, "no-store"),
    ];
    (headers, body).into_response()
}

/// Whether the page is served on this machine (plain HTTP there: no Secure cookie).
fn on_loopback(headers: &HeaderMap) -> bool {
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or("");
    let name = host.rsplit_once(':').map_or(host, |(name, port)| if port.contains(']') { host } else { name });
    matches!(name, "localhost" | "127.0.0.1" | "[::1]")
}

fn cookie(headers: &HeaderMap, value: &str, max_age: u64) -> HeaderValue {
    let text = if on_loopback(headers) {
        format!("{SESSION_COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}")
    } else {
        format!("{SECURE_SESSION_COOKIE}={value}; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age={max_age}")
    };
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

fn session_json(session: &Session) -> Value {
    json!({
        "status": "success",
        "agent": session.agent,
        "company_id": session.company_id,
        "project_id": session.project_id,
        "csrf_token": session.csrf,
        "expires_at": session.expires_at,
    })
}

/// `POST /inbox/session` `{"company_id", "project_id", "token"}` (JSON only, which a form of
/// another site cannot send): the session cookie, and the session with its CSRF token.
pub async fn sign_in(
    companies: &Companies,
    sessions: &Sessions,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, RouterError> {
    #[derive(serde::Deserialize)]
    struct SignIn {
        company_id: String,
        project_id: String,
        token: String,
    }
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let sign_in: SignIn = serde_json::from_slice(body).ok().filter(|_| json).ok_or_else(|| {
        RouterError::invalid_message("sign in with a JSON body {\"company_id\", \"project_id\", \"token\"}")
    })?;
    let company = companies.get(&sign_in.company_id, &sign_in.project_id).await?;
    let found = company.as_deref().and_then(|c| agent_with_token(c, &sign_in.token).map(|a| (c, a)));
    let Some((company, agent)) = found else {
        tracing::info!(target: "audit", company_id = sign_in.company_id, action = "sign_in_refused", "agent action");
        return Err(RouterError::invalid_agent_token());
    };
    let session = Session::begin(company, agent, epoch_seconds());
    tracing::info!(
        target: "audit",
        company_id = session.company_id,
        project_id = session.project_id,
        agent = session.agent,
        action = "sign_in",
        "agent action"
    );
    let set = cookie(headers, &sessions.seal(&session), SESSION_LIFETIME.as_secs());
    Ok(([(header::SET_COOKIE, set)], axum::Json(session_json(&session))).into_response())
}

/// `GET /inbox/session`: the session the cookie carries, still valid for its agent.
pub async fn current(companies: &Companies, sessions: &Sessions, headers: &HeaderMap) -> Result<Value, RouterError> {
    let credentials = super::agents::Credentials::of(headers);
    let super::agents::Credentials::Session { cookie, .. } = credentials else {
        return Err(RouterError::invalid_session());
    };
    let session = sessions.open(cookie).ok_or_else(RouterError::invalid_session)?;
    let company = companies.get(&session.company_id, &session.project_id).await?;
    company.as_deref().and_then(|c| session.agent_in(c, epoch_seconds())).ok_or_else(RouterError::invalid_session)?;
    Ok(session_json(&session))
}

/// `DELETE /inbox/session`: the cookie cleared.
pub fn sign_out(headers: &HeaderMap) -> Response {
    (StatusCode::NO_CONTENT, [(header::SET_COOKIE, cookie(headers, "", 0))]).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_inbox_serves_its_three_files_under_its_policy_and_nothing_else() {
        for (name, kind) in [("", "text/html"), ("inbox.js", "text/javascript"), ("inbox.css", "text/css")] {
            let served = asset(name);
            assert_eq!(served.status(), StatusCode::OK);
            let header = |h| served.headers().get(h).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
            assert!(header(header::CONTENT_TYPE).starts_with(kind), "{name}");
            let policy = header(header::CONTENT_SECURITY_POLICY);
            assert!(policy.contains("script-src 'self'") && policy.contains("frame-ancestors 'none'"), "{policy}");
        }
        assert_eq!(asset("../Cargo.toml").status(), StatusCode::NOT_FOUND);
        assert!(!SCRIPT.contains("innerHTML"), "server text is only set as textContent");
    }

    #[test]
    fn the_session_cookie_is_secure_everywhere_but_loopback() {
        let with_host = |host: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::HOST, host.parse().expect("host"));
            cookie(&headers, "v", 60).to_str().expect("text").to_string()
        };
        for host in ["127.0.0.1:8080", "localhost", "[::1]:80"] {
            let set = with_host(host);
            assert!(set.starts_with("multicomms_session=v;") && !set.contains("Secure"), "{host}: {set}");
        }
        let public = with_host("inbox.example.com");
        assert!(public.starts_with("__Host-multicomms_session=v;"), "{public}");
        for attribute in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/"] {
            assert!(public.contains(attribute), "{public} lacks {attribute}");
        }
    }
}
