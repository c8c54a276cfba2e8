//! End-to-end tests live in `tests/`: they run the workspace's binaries as a user would, against
//! the AWS emulator that `scripts/test.sh` starts.
