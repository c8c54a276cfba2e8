//! Reconcile: observe AWS → compare with the desired state → apply the minimum → report.
//! One code path serves `apply` (writes), `plan` (writes nothing, reports what it would do) and
//! the in-cluster controller. Each resource's result is a [`Report`]: the changes made or
//! planned, and one outcome per subsystem, from which [`conditions`] derives the status.
pub mod channel;
pub mod cleanup;
pub mod company;
pub mod conditions;
pub mod ownership;
pub mod reconciling;
pub mod report;
pub mod secrets;
pub mod tables;
pub mod validate;

pub use ownership::{AdoptionPolicy, ADOPT_ANNOTATION};
pub use reconciling::{Claim, Reconciling};
pub use report::{Change, ChangeKind, Failure, Outcome, Outputs, QueueOutput, Reason, Report};

use crate::aws::{Aws, Writes};
use multicomms_wire::Naming;
use std::future::Future;

pub struct Context {
    pub aws: Aws,
    pub naming: Naming,
    pub mode: Mode,
    /// Namespaces whose resources may adopt unmarked AWS objects.
    pub adoption: AdoptionPolicy,
    /// Secrets verified lately, whose reads a resync skips (off unless asked for).
    pub verified_secrets: secrets::VerifiedSecrets,
    /// Cluster objects whose current generation passed their CRD's rules.
    pub validated: validate::Validated,
    /// The custom AI endpoints Companies may name.
    pub ai_endpoints: validate::AiEndpoints,
}

impl Context {
    /// A context in which no resource may adopt (see [`Context::adopting_in`]).
    pub fn new(aws: Aws, naming: Naming, mode: Mode) -> Self {
        let (adoption, verified_secrets, validated, ai_endpoints) = Default::default();
        Context { aws, naming, mode, adoption, verified_secrets, validated, ai_endpoints }
    }

    /// Lets Companies name these custom AI endpoints (none otherwise).
    pub fn allowing_ai_endpoints(mut self, endpoints: validate::AiEndpoints) -> Self {
        self.ai_endpoints = endpoints;
        self
    }

    /// Remembers verified secrets for `recheck` (see [`secrets::VerifiedSecrets`]): the
    /// in-cluster controller's resyncs then read them only that often.
    pub fn rechecking_secrets_every(mut self, recheck: std::time::Duration) -> Self {
        self.verified_secrets = secrets::VerifiedSecrets::rechecked_every(recheck);
        self
    }

    pub fn adopting_in(mut self, adoption: AdoptionPolicy) -> Self {
        self.adoption = adoption;
        self
    }

    /// The write gate: in apply mode runs `write` with the permission the adapters' write
    /// methods ask for; in plan mode never starts it (`Ok(None)`). Resources write through
    /// [`Reconciling::write`], which records the change either way, so `plan` shows what
    /// `apply` does.
    pub async fn apply<T, E, F, Fut>(&self, write: F) -> Result<Option<T>, E>
    where
        F: FnOnce(Writes) -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        match self.mode {
            Mode::Plan => Ok(None),
            Mode::Apply => write(Writes::granted()).await.map(Some),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Make AWS match the resources.
    Apply,
    /// Only report what `Apply` would change.
    Plan,
}
