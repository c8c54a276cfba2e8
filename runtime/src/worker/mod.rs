//! The queue worker both processors run: the SQS loop (`queue`: long poll, concurrency,
//! heartbeat, shutdown, the `Worker` trait a flow implements), how a message ends (`outcome`)
//! and the processors' metrics (`metrics`).
pub mod metrics;
pub mod outcome;
pub mod queue;
