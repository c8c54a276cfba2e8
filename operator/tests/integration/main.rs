//! The operator's integration tests, in one binary: every test binary links the whole AWS SDK
//! and kube stack, so one binary instead of nine saves most of the link time and disk.
//! Run one group with e.g. `scripts/test.sh -p multicomms-operator --test integration company::`.
mod support;

mod channel;
mod company;
mod controller;
mod crds;
mod examples;
mod leader;
mod plan;
mod secrets;
mod tables;
mod workers;
