//! The replies flow (replies-engine spec): the recipient answers on WhatsApp or SMS and the AI
//! carries the conversation on.
//!
//! Twilio → `webhook` (served by the router), in two steps: authenticate (`inbound` parses the
//! form, `signature` checks `X-Twilio-Signature` with the tenant's auth token), then dispatch
//! (`route` picks the conversation and decides reply / hand-off / refuse, pure; `staging` stages
//! the message and sends one delayed trigger per batching window on the channel's replies queue,
//! or puts it on the human hand-off queue); `keywords` answers STOP, START and HELP with the
//! company's text instead. `refusal` is the catalogue of why a message is not answered.
//! The trigger → `turn` (the reply processor, `multicomms-processor --flow replies`): a lease on
//! the conversation, the staged messages, batching, clean-up and hand-offs; `reply` prepares the
//! AI's continuation, sends it under the first message's never-twice claim and records it in
//! one conditional update. The conversation-record operations both use are in
//! `crate::shared::conversations`; `sweep` gives a trigger to staged messages left without one
//! (a turn that crashed on its trigger's last receive).
pub mod inbound;
pub mod keywords;
pub mod refusal;
pub mod reply;
pub mod route;
pub mod signature;
pub mod staging;
pub mod sweep;
pub mod turn;
pub mod webhook;
