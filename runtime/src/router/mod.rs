//! The HTTP router: `POST /initiate-conversation` validates a request, checks the company and
//! its API key, and puts the context object on its channel's queue.
pub mod companies;
pub mod error;
pub mod guards;
pub mod http;
pub mod metrics;
pub mod queues;
pub mod request;
pub mod timestamp;
