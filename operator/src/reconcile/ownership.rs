//! Who may change an AWS object: the resource whose marker it carries, or — for an unmarked
//! object — a resource that asks to adopt it where the operator allows adoption.
use super::report::{Failure, Reason, Report};
use super::Context;
use crate::desired::{Owner, Ownership};

/// Annotation that lets a resource take over an AWS object that carries no ownership marker
/// (e.g. one made by the original onboarding scripts).
pub const ADOPT_ANNOTATION: &str = "multicomms.io/adopt";

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
