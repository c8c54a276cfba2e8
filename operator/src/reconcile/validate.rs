//! Offline validation of a resource against the CEL rules of its own CRD: the rules the API
//! server enforces in a cluster, evaluated the same way for `apply` and `plan` from git.
use super::report::{Failure, Reason};
use crate::crd::{Channel, Company};
use kube::core::cel::{compile_schema, CompiledSchema, ValidationErrors, Validator};
use kube::CustomResourceExt;

pub fn company(company: &Company) -> Result<(), Failure> {
    COMPANY_RULES.with(|rules| rules.check(company))
}

pub fn channel(channel: &Channel) -> Result<(), Failure> {
    CHANNEL_RULES.with(|rules| rules.check(channel))
}

// Compiling a CRD's rules costs milliseconds; once per thread and kind, not per resource.
thread_local! {
    static COMPANY_RULES: Rules = Rules::of::<Company>();
    static CHANNEL_RULES: Rules = Rules::of::<Channel>();
}

struct Rules {
    validator: Validator,
    schema: CompiledSchema,
}

impl Rules {
    fn of<K: CustomResourceExt>() -> Self {
        let crd = K::crd();
        // Our own derived CRD always has one version with a schema.
        let schema =
            crd.spec.versions.first().and_then(|v| v.schema.as_ref()).and_then(|s| s.open_api_v3_schema.as_ref());
        let schema = serde_json::to_value(schema).unwrap_or_default();
        Rules { validator: Validator::new(), schema: compile_schema(&schema) }
    }

    fn check(&self, resource: &impl serde::Serialize) -> Result<(), Failure> {
        let object = serde_json::to_value(resource)
            .map_err(|e| Failure::new(Reason::InvalidSpec, format!("cannot be serialised: {e}")))?;
        self.validator.validate_compiled(&self.schema, &object, None).map_err(invalid)
    }
}

/// Every failed rule as `field: message`, joined.
fn invalid(errors: ValidationErrors) -> Failure {
    let messages: Vec<String> = errors.iter().map(ToString::to_string).collect();
    Failure::new(Reason::InvalidSpec, messages.join("; "))
}
