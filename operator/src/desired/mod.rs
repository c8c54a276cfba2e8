//! Desired state: pure functions from a resource (and the secret values it references) to the
//! AWS objects it should produce. No I/O here; the reconcilers compare these with what AWS holds.
pub mod channel;
pub mod company;
pub mod secret;
pub mod tables;
pub mod workers;

use std::fmt;

/// The resource that owns an AWS object, written on the object as its ownership marker
/// (`managed_by` on items, the [`OWNER_TAG`] tag on queues and secrets).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Owner {
    pub kind: &'static str,
    pub namespace: String,
    pub name: String,
}

/// Tag key of the ownership marker on SQS queues and Secrets Manager secrets.
pub const OWNER_TAG: &str = "multicomms.io/managed-by";

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.kind, self.namespace, self.name)
    }
}

/// Who holds an AWS object, judged by its ownership marker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ownership {
    /// Marked with this resource.
    Ours,
    /// Marked with another resource.
    Other(String),
    /// No marker: made by hand or by another tool.
    Unmarked,
}

impl Owner {
    pub fn judge(&self, marker: Option<&str>) -> Ownership {
        match marker {
            Some(m) if m == self.to_string() => Ownership::Ours,
            Some(m) => Ownership::Other(m.to_string()),
            None => Ownership::Unmarked,
        }
    }
}
