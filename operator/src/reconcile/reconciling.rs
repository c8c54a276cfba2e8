//! One resource's reconcile in progress: the shared [`Context`], the owner its AWS objects are
//! marked with, whether it may adopt unmarked ones, and its [`Report`]. Every AWS write of a
//! reconcile goes through [`Reconciling::write`], which passes the write gate and records the
//! change in one call, so a change can be neither written unreported nor reported unwritten.
use super::ownership::ADOPT_ANNOTATION;
use super::report::{ChangeKind, Failure, Outcome, Outputs, Reason, Report};
use super::{Context, Mode};
use crate::aws::Writes;
use crate::desired::{Owner, Ownership};
use std::future::Future;

pub struct Reconciling<'a> {
    pub ctx: &'a Context,
    pub owner: Owner,
    adopt: bool,
    report: Report,
}

/// Whose an AWS object the resource may manage is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// It carries the resource's marker.
    Ours,
    /// It carries none, and the resource adopts it (the caller writes the marker).
    Adopting,
}

impl<'a> Reconciling<'a> {
    /// An empty report for `resource`, its owner marker, and whether it may adopt unmarked
    /// objects: it asks ([`ADOPT_ANNOTATION`]) and the operator allows it in its namespace.
    pub fn begin<K: kube::ResourceExt>(ctx: &'a Context, kind: &'static str, resource: &K) -> Self {
        let owner = Owner { kind, namespace: resource.namespace().unwrap_or_default(), name: resource.name_any() };
        let asks = resource.annotations().get(ADOPT_ANNOTATION).is_some_and(|v| v == "true");
        let adopt = asks && ctx.adoption.allows(&owner.namespace);
        Reconciling {
            report: Report::new(kind, &owner.namespace, &owner.name, resource.meta().generation),
            ..Self::new(ctx, owner, adopt)
        }
    }

    /// For `owner`'s objects, adopting unmarked ones if `adopt`.
    pub fn new(ctx: &'a Context, owner: Owner, adopt: bool) -> Self {
        let report = Report::new(owner.kind, &owner.namespace, &owner.name, None);
        Reconciling { ctx, owner, adopt, report }
    }

    /// For what the environment owns (its tables and hand-off queue): it adopts what an earlier
    /// deployment made.
    pub fn environment(ctx: &'a Context) -> Self {
        let report = Report::new("Environment", "", &format!("{}-*-{}", ctx.naming.prefix, ctx.naming.env), None);
        let name = format!("{}-{}", ctx.naming.prefix, ctx.naming.env);
        let owner = Owner { kind: "Environment", namespace: String::new(), name };
        Reconciling { report, ..Self::new(ctx, owner, true) }
    }

    /// Whether this resource may manage an object carrying ownership `marker`, adopting an
    /// unmarked one where allowed.
    pub fn claim(&self, marker: Option<&str>, object: &str) -> Result<Claim, Failure> {
        judge(&self.owner, marker, self.adopt, object)
    }

    /// That an object this resource just made (or found made by its own earlier attempt) is
    /// its own: never adopted.
    pub fn require_ours(&self, marker: Option<&str>, object: &str) -> Result<(), Failure> {
        judge(&self.owner, marker, false, object).map(|_| ())
    }

    /// Whether an object carries this resource's marker (what deletion may touch).
    pub fn owns(&self, marker: Option<&str>) -> bool {
        self.owner.judge(marker) == Ownership::Ours
    }

    /// A `plan`: nothing is written, and nothing learnt from a write can be relied on.
    pub fn is_plan(&self) -> bool {
        self.ctx.mode == Mode::Plan
    }

    /// Runs `write` through the gate (not at all in a `plan`: `Ok(None)`) and, when it
    /// succeeds or would run, records the change: `kind` of `object`, those `fields`.
    pub async fn write<T, E, F, Fut>(
        &mut self,
        kind: ChangeKind,
        object: impl Into<String>,
        fields: Vec<String>,
        write: F,
    ) -> Result<Option<T>, E>
    where
        F: FnOnce(Writes) -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let written = self.ctx.apply(write).await?;
        self.report.change(kind, object, fields);
        Ok(written)
    }

    /// Where the resource's objects are, as the report tells it.
    pub fn outputs(&mut self) -> &mut Outputs {
        &mut self.report.outputs
    }

    /// The report, with one outcome per subsystem.
    pub fn finish(self, subsystems: Vec<(&'static str, Outcome)>) -> Report {
        Report { subsystems, ..self.report }
    }
}

fn judge(owner: &Owner, marker: Option<&str>, adopt: bool, object: &str) -> Result<Claim, Failure> {
    match owner.judge(marker) {
        Ownership::Ours => Ok(Claim::Ours),
        Ownership::Unmarked if adopt => Ok(Claim::Adopting),
        Ownership::Unmarked => Err(Failure::new(
            Reason::OwnershipConflict,
            format!(
                "{object} exists without an ownership marker and was left untouched; to take it over, \
                 annotate the resource with {ADOPT_ANNOTATION}=\"true\" in a namespace the operator allows \
                 to adopt (--adopt-namespaces)"
            ),
        )),
        Ownership::Other(other) => Err(Failure::new(
            Reason::OwnershipConflict,
            format!("{object} is managed by {other} and was left untouched"),
        )),
    }
}
