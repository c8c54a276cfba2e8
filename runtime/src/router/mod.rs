//! The HTTP router: `POST /initiate-conversation` puts a validated request's context object on
//! its channel's queue.
pub mod error;
pub mod request;
pub mod timestamp;
