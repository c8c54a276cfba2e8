//! Reconcile: observe AWS → compare with the desired state → apply the minimum → report.
//! One code path serves `apply` (writes), `plan` (writes nothing, reports what it would do) and
//! the in-cluster controller. Each resource's result is a [`Report`]: the changes made or
//! planned, and one outcome per subsystem, from which [`conditions`] derives the status.
pub mod channel;
pub mod cleanup;
pub mod company;
pub mod conditions;
pub mod secrets;
pub mod tables;

use crate::aws::{Aws, AwsError};
use crate::desired::{Owner, Ownership};
use multicomms_wire::Naming;
use std::fmt;

pub struct Context {
    pub aws: Aws,
    pub naming: Naming,
    pub mode: Mode,
    /// Namespaces whose resources may adopt unmarked AWS objects.
    pub adoption: AdoptionPolicy,
}

impl Context {
    /// A context in which no resource may adopt (see [`Context::adopting_in`]).
    pub fn new(aws: Aws, naming: Naming, mode: Mode) -> Self {
        Context { aws, naming, mode, adoption: AdoptionPolicy::default() }
    }

    pub fn adopting_in(mut self, adoption: AdoptionPolicy) -> Self {
        self.adoption = adoption;
        self
    }
}

/// Which namespaces' resources may take over AWS objects that carry no ownership marker
/// (`--adopt-namespaces`; `*` for all). Adoption overwrites a record's API key hash and a secret's
/// value, so the platform team running the operator decides where it is allowed, not the resource
/// that asks for it: anyone who may create a Company in some namespace could otherwise take over
/// a legacy company by copying its ids. Empty (the default): nowhere.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AdoptionPolicy(Vec<String>);

impl AdoptionPolicy {
    pub fn namespaces(namespaces: impl IntoIterator<Item = impl Into<String>>) -> Self {
        AdoptionPolicy(namespaces.into_iter().map(Into::into).filter(|n: &String| !n.is_empty()).collect())
    }

    pub fn allows(&self, namespace: &str) -> bool {
        self.0.iter().any(|allowed| allowed == "*" || allowed == namespace)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Make AWS match the resources.
    Apply,
    /// Only report what `Apply` would change.
    Plan,
}

/// Annotation that lets a resource take over an AWS object that carries no ownership marker
/// (e.g. one made by the original onboarding scripts).
pub const ADOPT_ANNOTATION: &str = "multicomms.io/adopt";

/// One change to AWS, made (apply) or proposed (plan).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub action: Action,
    /// e.g. `item ai-multi-comms-company-data-dev[ci-aaa-001/pi-aaa-001]`.
    pub object: String,
    /// Changed fields; secret values appear only as `value`.
    pub fields: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Create,
    Update,
    Restore,
    Delete,
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verb = match self.action {
            Action::Create => "+ create",
            Action::Update => "~ update",
            Action::Restore => "^ restore",
            Action::Delete => "- delete",
        };
        write!(f, "{verb} {}", self.object)?;
        if !self.fields.is_empty() {
            write!(f, ": {}", self.fields.join(", "))?;
        }
        Ok(())
    }
}

/// Why a subsystem is not in sync. `reason` is the condition reason users see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub reason: Reason,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// The manifest breaks a rule; fix the YAML.
    InvalidSpec,
    /// A referenced Kubernetes Secret or key does not exist.
    SecretNotFound,
    /// The AWS object belongs to another resource or to nobody we know.
    OwnershipConflict,
    /// The AWS object exists in a shape we cannot use (e.g. a table with other keys); it is
    /// left untouched.
    Incompatible,
    /// AWS refused or failed the call after retries.
    AwsError,
    /// Waits for another subsystem of the same resource.
    Blocked,
    /// Other resources still use what this one would delete.
    InUse,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::InvalidSpec => "InvalidSpec",
            Reason::SecretNotFound => "SecretNotFound",
            Reason::OwnershipConflict => "OwnershipConflict",
            Reason::Incompatible => "Incompatible",
            Reason::AwsError => "AwsError",
            Reason::Blocked => "Blocked",
            Reason::InUse => "InUse",
        }
    }

    /// A user error: retrying will not help until the input changes.
    pub fn is_terminal(self) -> bool {
        matches!(self, Reason::InvalidSpec | Reason::SecretNotFound | Reason::OwnershipConflict | Reason::Incompatible)
    }
}

impl Failure {
    pub fn new(reason: Reason, message: impl Into<String>) -> Self {
        Failure { reason, message: message.into() }
    }
}

impl From<AwsError> for Failure {
    fn from(e: AwsError) -> Self {
        let retry = if e.retryable { " (transient)" } else { "" };
        Failure::new(Reason::AwsError, format!("{e}{retry}"))
    }
}

/// Outcome of one subsystem: a message when in sync, a failure otherwise.
pub type Outcome = Result<String, Failure>;

/// Where a resource's AWS objects are: what `-o json` prints and the controller writes to status.
/// Never a secret value.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Outputs {
    /// `updated_at` of the company-data record.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record_version: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<crate::crd::company::SecretStatus>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue: Option<QueueOutput>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dead_letter_queue: Option<QueueOutput>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tables: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct QueueOutput {
    pub url: String,
    pub arn: String,
}

/// The result of reconciling one resource.
#[derive(Debug, Clone)]
pub struct Report {
    pub kind: &'static str,
    pub namespace: String,
    pub name: String,
    pub generation: Option<i64>,
    pub changes: Vec<Change>,
    /// Condition type (e.g. `RecordSynced`) and outcome, in order.
    pub subsystems: Vec<(&'static str, Outcome)>,
    /// Where things are, as far as this run saw them.
    pub outputs: Outputs,
}

impl Report {
    pub fn new(kind: &'static str, namespace: &str, name: &str, generation: Option<i64>) -> Self {
        Report {
            kind,
            namespace: namespace.to_string(),
            name: name.to_string(),
            generation,
            changes: vec![],
            subsystems: vec![],
            outputs: Outputs::default(),
        }
    }

    pub fn change(&mut self, action: Action, object: impl Into<String>, fields: Vec<String>) {
        self.changes.push(Change { action, object: object.into(), fields });
    }

    /// The failure that decides `Ready`: the first that is a cause, not a `Blocked` consequence.
    pub fn failure(&self) -> Option<&Failure> {
        self.failed_subsystem().map(|(_, failure)| failure)
    }

    /// The subsystem behind [`Report::failure`] and its failure.
    pub fn failed_subsystem(&self) -> Option<(&'static str, &Failure)> {
        let failures = || self.subsystems.iter().filter_map(|(t, o)| o.as_ref().err().map(|f| (*t, f)));
        failures().find(|(_, f)| f.reason != Reason::Blocked).or_else(|| failures().next())
    }

    pub fn is_ready(&self) -> bool {
        self.failure().is_none()
    }
}

/// What every resource's reconcile starts from: an empty report, the ownership marker its AWS
/// objects carry, and whether it may adopt unmarked objects: it asks ([`ADOPT_ANNOTATION`]) and
/// the operator allows it in its namespace ([`AdoptionPolicy`]).
pub fn begin<K: kube::ResourceExt>(ctx: &Context, kind: &'static str, resource: &K) -> (Report, Owner, bool) {
    let namespace = resource.namespace().unwrap_or_default();
    let name = resource.name_any();
    let report = Report::new(kind, &namespace, &name, resource.meta().generation);
    let asks = resource.annotations().get(ADOPT_ANNOTATION).is_some_and(|v| v == "true");
    let adopt = asks && ctx.adoption.allows(&namespace);
    (report, Owner { kind, namespace, name }, adopt)
}

/// Whether `owner` may manage an object carrying ownership `marker`. `Ok(true)` means the object
/// is unmarked and `adopt` allows taking it over (the caller then writes the marker).
pub fn claim(owner: &Owner, marker: Option<&str>, adopt: bool, object: &str) -> Result<bool, Failure> {
    match owner.judge(marker) {
        Ownership::Ours => Ok(false),
        Ownership::Unmarked if adopt => Ok(true),
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

/// Reconciles everything read from a directory: the tables first, then channels and companies
/// (`concurrency` at a time). Resources that would touch the same AWS objects (two Channels of
/// one type; two Companies with the same ids or names) run one after the other, so the first
/// claims the objects and the others get a conflict without writing anything. Reports come back
/// tables first, then by kind, namespace and name; manifests that did not parse report among
/// their kind.
pub async fn reconcile_manifests(
    ctx: &Context,
    manifests: &crate::manifests::Manifests,
    concurrency: usize,
) -> Vec<Report> {
    let tables = tables::reconcile(ctx).await;
    let channel_groups = overlapping(&manifests.channels, |c| vec![c.spec.kind.to_string()]);
    let company_groups = overlapping(&manifests.companies, |c| {
        let names = [&c.spec.company_name, &c.spec.project_name].map(|n| multicomms_wire::names::slug(n));
        vec![format!("ids {} {}", c.spec.company_id, c.spec.project_id), format!("names {} {}", names[0], names[1])]
    });
    let channels = run_groups(channel_groups, concurrency, |c| async move {
        channel::reconcile(ctx, c, manifests.secrets_for(c)).await
    })
    .await;
    let companies = run_groups(company_groups, concurrency, |c| async move {
        company::reconcile(ctx, c, manifests.secrets_for(c)).await
    })
    .await;
    let mut resources: Vec<Report> = manifests.invalid.iter().cloned().chain(channels).chain(companies).collect();
    resources.sort_by(|a, b| (a.kind, &a.namespace, &a.name).cmp(&(b.kind, &b.namespace, &b.name)));
    std::iter::once(tables).chain(resources).collect()
}

/// Groups resources that share any key (transitively), each group in input order.
fn overlapping<K>(resources: &[K], keys: impl Fn(&K) -> Vec<String>) -> Vec<Vec<&K>> {
    // Union-find over resource indices, joined through the first resource seen with each key.
    let mut parent: Vec<usize> = (0..resources.len()).collect();
    fn root(parent: &mut [usize], mut i: usize) -> usize {
        while parent[i] != i {
            parent[i] = parent[parent[i]];
            i = parent[i];
        }
        i
    }
    let mut first_with_key: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for (i, resource) in resources.iter().enumerate() {
        for key in keys(resource) {
            let j = *first_with_key.entry(key).or_insert(i);
            let (a, b) = (root(&mut parent, i), root(&mut parent, j));
            parent[a.max(b)] = a.min(b);
        }
    }
    let mut groups: std::collections::BTreeMap<usize, Vec<&K>> = std::collections::BTreeMap::new();
    for (i, resource) in resources.iter().enumerate() {
        let r = root(&mut parent, i);
        groups.entry(r).or_default().push(resource);
    }
    groups.into_values().collect()
}

/// Groups run `concurrency` at a time; the members of one group one after the other.
async fn run_groups<'a, K, F, Fut>(groups: Vec<Vec<&'a K>>, concurrency: usize, reconcile: F) -> Vec<Report>
where
    F: Fn(&'a K) -> Fut,
    Fut: std::future::Future<Output = Report>,
{
    use futures::StreamExt;
    let reconcile = &reconcile;
    let per_group = futures::stream::iter(groups)
        .map(|group| async move {
            let mut reports = Vec::with_capacity(group.len());
            for resource in group {
                reports.push(reconcile(resource).await);
            }
            reports
        })
        .buffer_unordered(concurrency.max(1))
        .collect::<Vec<_>>()
        .await;
    per_group.into_iter().flatten().collect()
}

#[cfg(test)]
mod tests {
    use super::overlapping;

    #[test]
    fn resources_sharing_a_key_are_grouped_transitively_in_order() {
        let items = [("a", "x"), ("b", "y"), ("c", "x"), ("d", "z"), ("e", "y")];
        // c shares x with a; e shares y with b; d is alone. Link b and d through a second key.
        let groups = overlapping(&items, |(name, key)| {
            let mut keys = vec![key.to_string()];
            if *name == "d" || *name == "b" {
                keys.push("bd".into());
            }
            keys
        });
        let names: Vec<Vec<&str>> = groups.iter().map(|g| g.iter().map(|(n, _)| *n).collect()).collect();
        assert_eq!(names, [vec!["a", "c"], vec!["b", "d", "e"]]);
    }
}
