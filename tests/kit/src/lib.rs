//! The test kit: what every test suite and benchmark of the workspace shares.
//! - `environment`: the AWS emulator's configuration (loopback only), the example manifests from
//!   config/, a unique naming per test and the router as its binary builds it;
//! - `fakes`: the fake OpenAI, Twilio and SendGrid servers; `twilio`: signed inbound webhooks;
//! - `aws_calls`: a component's AWS calls, counted; `fault_proxy`: a TCP proxy that fails on
//!   command (outages for the fault suite);
//! - `watch_shim`: watches for the in-memory Kubernetes API (kube-fake-client), so a real
//!   `Controller` loop runs on it;
//! - `bench`: CPU, peak memory and the emulator's load, for the benchmarks;
//! - `webdriver`: headless Chromium through ChromeDriver, for the inbox;
//! - `cluster`: the local control plane of `scripts/cluster.sh` (kubectl, helm, ServiceAccount
//!   credentials, Argo CD's waves, a pod template's container as a local process).
//!
//! Its binaries are tools: `fake-providers` (the fakes as a process, for the demo and the
//! benchmarks) and `load-generator` (the router benchmark's client).
pub mod aws_calls;
pub mod bench;
pub mod cluster;
pub mod environment;
pub mod eventually;
pub mod fakes;
pub mod fault_proxy;
pub mod twilio;
pub mod watch_shim;
pub mod webdriver;
