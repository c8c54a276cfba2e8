//! Provider answers are read with a size cap: one hostile or broken endpoint cannot grow the
//! memory of a processor that every company on the channel shares.
use super::failure::without_url;

/// An OpenAI response object with its output and usage: well under a megabyte in practice.
pub const MAX_AI_ANSWER_BYTES: usize = 4 * 1024 * 1024;
/// Twilio's message resource and SendGrid's error list are a few kilobytes.
pub const MAX_PROVIDER_ANSWER_BYTES: usize = 256 * 1024;

#[derive(Debug)]
pub enum BodyError {
    /// The answer is longer than the cap (reading stopped there).
    TooLarge(usize),
    /// The connection failed while the answer was read.
    Read(String),
}

impl std::fmt::Display for BodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BodyError::TooLarge(cap) => write!(f, "the answer is larger than {cap} bytes"),
            BodyError::Read(why) => write!(f, "the answer could not be read: {why}"),
        }
    }
}

/// The whole body, or [`BodyError::TooLarge`] as soon as it exceeds `cap` (announced or not).
pub async fn read_capped(mut response: reqwest::Response, cap: usize) -> Result<Vec<u8>, BodyError> {
    if response.content_length().is_some_and(|length| length > cap as u64) {
        return Err(BodyError::TooLarge(cap));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| BodyError::Read(without_url(&e)))? {
        if body.len() + chunk.len() > cap {
            return Err(BodyError::TooLarge(cap));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
