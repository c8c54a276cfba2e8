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
    /// An HTTP error answer: 408, 429 and 5xx are transient, other statuses permanent.
    pub fn from_status(status: u16, what: &str, detail: &str) -> Self {
        let message = format!("{what} answered {status}: {detail}");
        if status == 408 || status == 429 || status >= 500 {
            Failure::Transient(message)
        } else {
            Failure::Permanent(message)
        }
    }

    /// A request that got no answer (connect error, timeout).
    pub fn from_http(error: &reqwest::Error, what: &str) -> Self {
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
