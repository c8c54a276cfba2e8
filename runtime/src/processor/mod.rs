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
//! Read in this order: `incoming` (the message, parsed once), `decide` (the never-twice
//! decisions, pure), `pipeline` (the steps of one message), `outcome` (how it ends), `queue`
//! (the SQS loop: long poll, concurrency, heartbeat, shutdown). `store`, `secrets`, `ai` and
//! `senders` are the thin adapters.
pub mod ai;
pub mod body;
pub mod decide;
pub mod failure;
pub mod incoming;
pub mod metrics;
pub mod outcome;
pub mod pipeline;
pub mod queue;
pub mod secrets;
pub mod senders;
pub mod store;
