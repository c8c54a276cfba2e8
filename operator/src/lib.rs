//! The multicomms operator: reconciles `Company` and `Channel` resources into AWS.
//!
//! Read in this order: [`crd`] (what users write), [`desired`] (pure: resource → AWS objects),
//! [`aws`] (thin SDK adapters), [`reconcile`] (observe → diff → apply, one path for `apply`,
//! `plan` and the controller), then its two drivers: [`cli`] (a git checkout's manifests) and
//! [`controller`] (the Kubernetes API).
//!
//! "spec §N" in this crate's comments is a section of `docs/spec/template-sender.md` in this
//! repository (`docs/spec/replies-engine.md` where a comment says replies-engine): the behaviour
//! of the original system this project rebuilds.
pub mod aws;
pub mod cli;
pub mod controller;
pub mod crd;
pub mod desired;
pub mod diff;
pub mod reconcile;
