//! How a step failed, which decides the message's fate.
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Worth another attempt later (throttling, 5xx, timeouts, connection errors): the message
    /// stays on the queue and comes back after a backoff.
    Transient(String),
    /// Fails the same way every time (bad credentials, a 4xx, output that breaks the schema):
    /// the record says which step and why, and the message is removed.
    Permanent(String),
}

impl Failure {
    /// An HTTP error answer: 408, 429 and 5xx are transient, and so are 401 and 403 (the
    /// credential may be mid-rotation; the cached secret is dropped); other statuses are
    /// permanent.
    pub fn from_status(status: u16, what: &str, detail: &str) -> Self {
        let message = format!("{what} answered {status}: {detail}");
        if matches!(status, 401 | 403 | 408 | 429) || status >= 500 {
            Failure::Transient(message)
        } else {
            Failure::Permanent(message)
        }
    }

    /// A request that got no answer (connect error, timeout); one that could not even be
    /// built (a malformed base URL) is permanent.
    pub fn from_http(error: &reqwest::Error, what: &str) -> Self {
        if error.is_builder() {
            return Failure::Permanent(format!("{what} request could not be made: {}", without_url(error)));
        }
        let kind = if error.is_timeout() { "timed out" } else { "could not be reached" };
        Failure::Transient(format!("{what} {kind}: {}", without_url(error)))
    }

    pub fn message(&self) -> &str {
        match self {
            Failure::Transient(m) | Failure::Permanent(m) => m,
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

/// reqwest's error text without the URL (a Twilio URL carries the account SID).
pub fn without_url(error: &reqwest::Error) -> String {
    let mut source: Option<&dyn std::error::Error> = std::error::Error::source(error);
    let mut innermost = None;
    while let Some(s) = source {
        innermost = Some(s.to_string());
        source = s.source();
    }
    innermost.unwrap_or_else(|| "request failed".to_string())
}
