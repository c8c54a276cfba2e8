//! The multicomms operator: reconciles `Company` and `Channel` resources into AWS.
//!
//! Read in this order: [`crd`] (what users write), [`desired`] (pure: resource → AWS objects),
//! [`aws`] (thin SDK adapters), [`reconcile`] (observe → diff → apply, one path for `apply`,
//! `plan` and the controller), [`manifests`] (reading a git checkout) and `main.rs` (the CLI).
pub mod aws;
pub mod controller;
pub mod crd;
pub mod desired;
pub mod diff;
pub mod manifests;
pub mod output;
pub mod reconcile;
pub mod validate;
