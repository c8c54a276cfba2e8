//! The first-message flow: one channel processor per channel (whatsapp, sms, email) reading its
//! queue.
//!
//! A message's life (spec template-sender §5, with the original's failure handling fixed):
//! context → conversation record (created if absent, the idempotency key) → credentials →
//! AI (OpenAI Responses API, structured output checked against the Company's schema) → the
//! send is *claimed* on the record (`processing` → `sending`, conditional) → provider call →
//! final record update. A redelivered message resumes from the record: `processing` means
//! nothing was sent (start over), `sending` means the send may have happened (never repeated:
//! `send_outcome_unknown` + hand-off to a person), anything else is a duplicate.
//!
//! Read in this order: `incoming` (the message, parsed once), `crate::shared::claim` (the
//! never-twice decisions, pure), `pipeline` (the steps of one message). The queue loop is
//! `crate::worker`; the adapters are in `crate::shared`.
pub mod incoming;
pub mod pipeline;
