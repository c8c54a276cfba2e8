//! The wire contract: every format that crosses a process boundary (DynamoDB records, SQS
//! messages), the AWS resource names derived from a deployment's prefix and environment, and the
//! timestamp format. The operator writes through these types and the pods read through them, so
//! writer and reader cannot drift; nothing else spells an attribute or a resource name.
//!
//! "spec §N" in this crate's comments is a section of `docs/spec/template-sender.md` in this
//! repository (`docs/spec/replies-engine.md` where a comment says replies-engine): the behaviour
//! of the original system this project rebuilds.
pub mod channel;
pub mod client_events;
pub mod company;
pub mod context;
pub mod conversation;
pub mod delivery;
pub mod inbox;
pub mod names;
pub mod opt_out;
pub mod replies;
pub mod secret_keys;
pub mod timestamp;

pub use channel::ChannelKind;
pub use company::CompanyRecord;
pub use names::{Naming, NamingArgs};

/// A DynamoDB item as the SDK represents it.
pub type Item = std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>;
