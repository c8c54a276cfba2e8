//! The custom resources teams commit to git: `Company` (one per company + project) and
//! `Channel` (one per channel per environment). Field rules that the API server enforces are CEL
//! rules on the types, and `apply`/`plan` evaluate the very same rules offline
//! ([`validate`]), so a manifest is judged the same way with or without a cluster.
pub mod channel;
pub mod common;
pub mod company;

pub use channel::{Channel, ChannelSpec, ChannelStatus};
pub use common::{Condition, DeletionPolicy, JsonText, SecretKeyRef, SecretValue};
pub use company::{Company, CompanySpec, CompanyStatus};

use kube::CustomResourceExt;

pub const GROUP: &str = "multicomms.io";

/// The generated CRD manifests, as `crd` prints them and crds/ holds them.
pub fn crd_yaml() -> Result<Vec<(String, String)>, serde_yaml::Error> {
    Ok(vec![
        ("companies.yaml".to_string(), serde_yaml::to_string(&kept(Company::crd()))?),
        ("channels.yaml".to_string(), serde_yaml::to_string(&kept(Channel::crd()))?),
    ])
}

/// A CRD is shared by every environment on a cluster, and deleting it deletes every resource
/// of its kind: neither Argo CD (deleting or pruning one environment's Application) nor Helm
/// (uninstalling one release) may remove it.
fn kept(
    mut crd: k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
) -> k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition {
    crd.metadata.annotations = Some(
        [
            ("argocd.argoproj.io/sync-options".to_string(), "Delete=false,Prune=false".to_string()),
            ("helm.sh/resource-policy".to_string(), "keep".to_string()),
        ]
        .into(),
    );
    crd
}
