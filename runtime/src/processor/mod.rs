//! Channel processors: one binary per channel (whatsapp, sms, email) reading its queue.
//!
//! A message's life (spec template-sender §5, with the original's failure handling fixed):
//! context → conversation record (created if absent, the idempotency key) → credentials →
//! AI (OpenAI Responses API, structured output checked against the Company's schema) → the
//! send is *claimed* on the record (`processing` → `sending`, conditional) → provider call →
//! final record update. A redelivered message resumes from the record: `processing` means
//! nothing was sent (start over), `sending` means the send may have happened (never repeated:
//! `send_outcome_unknown` + hand-off to a person), anything else is a duplicate.
//!
//! `pipeline` decides; `conversations`, `secrets`, `ai` and `senders` are thin adapters;
//! `queue` is the SQS loop (long poll, concurrency, heartbeat, shutdown).
pub mod ai;
pub mod body;
pub mod conversations;
pub mod failure;
pub mod metrics;
pub mod pipeline;
pub mod queue;
pub mod secrets;
pub mod senders;
