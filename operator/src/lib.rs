//! The multicomms operator: reconciles `Company` and `Channel` resources into AWS.
//!
//! Read in this order: [`crd`] (what users write), [`desired`] (pure: resource → AWS objects),
//! [`aws`] (thin SDK adapters), [`reconcile`] (observe → diff → apply, one path for `apply`,
//! `plan` and the controller), then its two drivers: [`cli`] (a git checkout's manifests) and
//! [`controller`] (the Kubernetes API).
pub mod aws;
pub mod cli;
pub mod controller;
pub mod crd;
pub mod desired;
pub mod diff;
pub mod reconcile;
