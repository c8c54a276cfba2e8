//! The test kit: what every test suite and benchmark of the workspace shares. `fault_proxy` is a
//! TCP proxy that fails on command (outages for the fault suite). `aws_calls` counts
//! a component's AWS calls. `environment` is
//! the AWS emulator's configuration (loopback only), the example manifests from config/, a unique
//! naming per test and the router as its binary builds it; `fakes` are the fake OpenAI, Twilio
//! and SendGrid servers; `twilio` builds signed inbound webhooks. Its binaries are tools: `fake-providers` (the fakes as a process, for
//! the demo and the benchmarks) and `load-generator` (the router benchmark's client).
pub mod aws_calls;
pub mod environment;
pub mod fakes;
pub mod fault_proxy;
pub mod twilio;
