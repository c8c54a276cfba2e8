//! The queue worker both processors run: the SQS loop (`queue`: long poll, concurrency,
//! heartbeat, shutdown, the `Worker` trait a flow implements), how a message ends (`outcome`)
//! the processors' metrics (`metrics`), what a processor pod is built from (`pod`), and the
//! writes around a send with their retry policy and CRITICAL alarm (`around_send`).
pub mod around_send;
pub mod metrics;
pub mod outcome;
pub mod pod;
pub mod queue;
