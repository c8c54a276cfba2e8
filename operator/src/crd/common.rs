//! Types shared by both resources.
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

/// When a condition of `type_` took `status`: as `previous` says if it already had it, else now.
pub fn transition_time(
    previous: &[Condition],
    type_: &str,
    status: &str,
    now: &k8s_openapi::apimachinery::pkg::apis::meta::v1::Time,
) -> k8s_openapi::apimachinery::pkg::apis::meta::v1::Time {
    previous
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| now.clone())
}

/// A value held in a key of a Kubernetes Secret in the resource's namespace, never in git.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretValue {
    pub secret_key_ref: SecretKeyRef,
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, JsonSchema)]
pub struct SecretKeyRef {
    /// Name of the Secret in the resource's namespace.
    pub name: String,
    /// Key within the Secret.
    pub key: String,
}

/// What happens to the AWS objects a resource owns when the resource is deleted.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum DeletionPolicy {
    /// Leave them in AWS (the default: deleting YAML never deletes data by accident).
    #[default]
    Retain,
    /// Delete the objects that carry this resource's ownership marker.
    Delete,
}
