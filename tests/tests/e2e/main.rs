//! The end-to-end tests, in one binary (each test binary links the whole AWS SDK, kube and
//! axum stack, so one instead of seven saves most of the link time and disk), a module per
//! part of the system: the router, the processors, the replies flow, the IAM policies, the
//! pods as built binaries, a GitOps apply, and the real control plane (`cluster`, ignored
//! unless `scripts/test-cluster.sh` runs it).
//! Run one part with e.g. `scripts/test.sh -p multicomms-e2e --test e2e replies::`.
mod cluster;
mod gitops_apply;
mod iam;
mod pods;
mod processor;
mod replies;
mod router;
