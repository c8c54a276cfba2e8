//! What became of a message: it decides how the message is settled on its queue, and names the
//! metric's `outcome` label. And how a step failed, which decides what the record says.
use crate::shared::failure::Failure;
use multicomms_wire::conversation::ConversationStatus;

#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The provider accepted the message and the record says so.
    Sent,
    /// Failed for good; the record says which step and why.
    Failed,
    /// The conversation was already finished (a duplicate delivery or a redelivery).
    Duplicate,
    /// The send may have happened: handed to a person (`send_outcome_unknown`).
    NeedsAttention,
    /// A reply turn's messages went to the human hand-off queue instead of the AI.
    HandedOff,
    /// The recipient is still writing: a later trigger answers.
    Deferred,
    /// Worth another try: left for SQS to deliver again after a backoff.
    Retry(String),
    /// Another reply turn holds the conversation: left for SQS to deliver again when that turn's
    /// lease ends (a crashed turn's lease expires), not after a growing backoff.
    Busy(std::time::Duration),
    /// Not a context object for this channel: left for SQS to move to the DLQ.
    Poison(String),
}

impl Outcome {
    /// The `outcome` label of `multicomms_processor_messages_total`.
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Sent => "sent",
            Outcome::Failed => "failed",
            Outcome::Duplicate => "duplicate",
            Outcome::NeedsAttention => "needs_attention",
            Outcome::HandedOff => "handed_off",
            Outcome::Deferred => "deferred",
            Outcome::Retry(_) => "retry",
            Outcome::Busy(_) => "busy",
            Outcome::Poison(_) => "poison",
        }
    }
}

/// A step that failed: the status the conversation record gets, the step, and why. Both flows'
/// steps fail this way; `failed_at(status, step)` makes one from a [`Failure`] in `map_err`.
pub struct StepFailure {
    pub status: ConversationStatus,
    pub step: &'static str,
    pub failure: Failure,
}

pub fn failed_at(status: ConversationStatus, step: &'static str) -> impl FnOnce(Failure) -> StepFailure {
    move |failure| StepFailure { status, step, failure }
}
