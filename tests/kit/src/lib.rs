//! End-to-end tests live in `tests/`: they run the workspace's binaries and in-process pods as a
//! user would, against the AWS emulator that `scripts/test.sh` starts. This library holds what
//! they share: the environment setup and the fake providers.
pub mod environment;
pub mod fakes;
