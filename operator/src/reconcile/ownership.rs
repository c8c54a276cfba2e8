//! Who may change an AWS object: the resource whose marker it carries, or — for an unmarked
//! object — a resource that asks to adopt it where the operator allows adoption.

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
