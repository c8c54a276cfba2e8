//! Offline validation of a resource against the CEL rules of its own CRD: the rules the API
//! server enforces in a cluster, evaluated the same way for `apply` and `plan` from git.
use crate::crd::{Channel, Company};
use crate::reconcile::{Failure, Reason};
use kube::core::cel::ValidationErrors;

pub fn company(company: &Company) -> Result<(), Failure> {
    company.validate_cel().map_err(invalid)
}

pub fn channel(channel: &Channel) -> Result<(), Failure> {
    channel.validate_cel().map_err(invalid)
}

/// Every failed rule as `field: message`, joined.
fn invalid(errors: ValidationErrors) -> Failure {
    let messages: Vec<String> = errors.iter().map(ToString::to_string).collect();
    Failure::new(Reason::InvalidSpec, messages.join("; "))
}
