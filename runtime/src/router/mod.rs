//! The HTTP router: `POST /initiate-conversation` validates a request (`request`), finds the
//! company (`crate::shared::companies`), decides whether the caller may send it and builds the context object
//! (`accept`, pure), and puts it on its channel's queue (`queues`), once per request id and
//! within the company's limits (`guards`, `open_conversations`). `app` is the axum application around them; `error`
//! the catalogue of answers; `openapi` the document of it all, served at `/openapi.json`.
//! `conversations` is the API the company's people answer handed-off conversations with
//! (`agents` says who they are); `inbox` the page they do it from. `delivery` records Twilio's status callbacks on the messages they are about, and
//! `sendgrid_events` SendGrid's events (`sendgrid_signature` checks them); `erasure` forgets a
//! recipient for a company.
pub mod accept;
pub mod agents;
pub mod app;
pub mod conversations;
pub mod delivery;
pub mod erasure;
pub mod error;
pub mod guards;
pub mod inbox;
pub mod metrics;
pub mod open_conversations;
pub mod openapi;
pub mod queues;
pub mod request;
pub mod sendgrid_events;
pub mod sendgrid_signature;
pub mod timestamp;
