//! multicomms runtime.
//!
//! `wire` holds the one definition of every format that crosses a process boundary (DynamoDB
//! records, SQS messages) and of the AWS resource names derived from the deployment's prefix and
//! environment. The operator writes through these types and the runtime pods read through them,
//! so writer and reader cannot drift.
pub mod aws_policy;
#[cfg(feature = "pod")]
pub mod pod;
#[cfg(feature = "processor")]
pub mod processor;
#[cfg(feature = "router")]
pub mod router;
pub mod wire;
