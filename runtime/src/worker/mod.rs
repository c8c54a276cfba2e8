//! The queue worker both processors run: the SQS loop (`queue`: long poll, concurrency,
//! heartbeat, shutdown, the `Worker` trait a flow implements), how a message ends (`outcome`)
//! the processors' metrics (`metrics`), and what a processor pod is built from (`pod`).
pub mod metrics;
pub mod outcome;
pub mod pod;
pub mod queue;
