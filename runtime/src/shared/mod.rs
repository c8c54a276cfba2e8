//! What every pod uses, below the three flows (the router, the first-message processor and the
//! replies flow are peers above it; nothing here imports them): the company lookup
//! (`companies`), the conversations table (`conversations`), the never-twice claim decisions
//! (`claim`, pure), the opt-outs table (`opt_outs`), phone numbers in E.164 (`phone`), and the adapters: Secrets Manager (`secrets`), OpenAI (`ai`), Twilio and
//! SendGrid (`senders`), capped provider answers (`body`), transient vs permanent (`failure`), and the companies' events
//! on their way to their webhooks (`client_events`).
pub mod ai;
pub mod batched;
pub mod body;
pub mod claim;
pub mod client_events;
pub mod companies;
pub mod conversations;
pub mod failure;
pub mod opt_outs;
pub mod phone;
pub mod secrets;
pub mod senders;
