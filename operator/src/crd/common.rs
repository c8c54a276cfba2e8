//! Types shared by both resources.
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

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
