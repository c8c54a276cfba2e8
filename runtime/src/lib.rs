//! multicomms pods: the router (`POST /initiate-conversation` → the channel's queue, and Twilio's
//! inbound webhooks), the channel processors (queue → AI → Twilio/SendGrid) and the reply
//! processors (replies queue → AI → Twilio). They read what the operator writes through
//! the wire contract (`multicomms-wire`) and share their process plumbing with it
//! (`multicomms-service`).
//!
//! "spec §N" in this crate's comments is a section of `docs/spec/template-sender.md` in this
//! repository (`docs/spec/replies-engine.md` where a comment says replies-engine): the behaviour
//! of the original system this project rebuilds.
//!
//! Floors, read bottom up: `shared` (the company lookup, the conversations table, the claim
//! decisions and the provider adapters) and `worker` (the SQS loop) below; the three flows
//! above them as peers: `processor` (first messages), `replies` (the reply turn and Twilio's
//! webhook), `events` (the companies' events delivered to their webhooks) and `router` (the HTTP
//! edge, which serves the webhook). No import runs down to up.
pub mod events;
pub mod processor;
pub mod replies;
pub mod router;
pub mod shared;
pub mod worker;
