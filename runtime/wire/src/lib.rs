//! Wire formats and resource names shared by the operator (writer) and the runtime (reader).
pub mod channel;
pub mod company;
pub mod context;
pub mod conversation;
pub mod names;
pub mod secret_keys;

pub use channel::ChannelKind;
pub use company::CompanyRecord;
pub use names::Naming;

/// A DynamoDB item as the SDK represents it.
pub type Item = std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>;
