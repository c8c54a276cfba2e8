//! multicomms pods: the router (`POST /initiate-conversation` → the channel's queue) and the
//! channel processors (queue → AI → Twilio/SendGrid). They read what the operator writes through
//! the wire contract (`multicomms-wire`) and share their process plumbing with it
//! (`multicomms-service`).
pub mod processor;
pub mod router;
