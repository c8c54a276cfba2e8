//! Offline validation of a resource against the CEL rules of its own CRD: the rules the API
//! server enforces in a cluster, evaluated the same way for `apply` and `plan` from git.
use super::report::{Failure, Reason};
use crate::crd::{Channel, Company};
use kube::core::cel::{compile_schema, CompiledSchema, ValidationErrors, Validator};
use kube::{CustomResourceExt, Resource};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

pub fn company(company: &Company) -> Result<(), Failure> {
    COMPANY_RULES.with(|rules| rules.check(company))
}

pub fn channel(channel: &Channel) -> Result<(), Failure> {
    CHANNEL_RULES.with(|rules| rules.check(channel))
}

/// The generation each cluster object (by uid) last passed its rules at. A generation's spec
/// never changes, so the controller's resyncs skip rules already passed: they cost about 0.9 ms
/// a Company, most of a resync's CPU (CEL's `matches` compiles its regex on every call).
/// Objects without uid or generation (manifests read from git) are always checked.
#[derive(Clone, Default)]
pub struct Validated(Arc<Mutex<HashMap<String, i64>>>);

impl Validated {
    /// `rules(resource)`, unless this generation of `resource` already passed them.
    pub fn check<K: Resource>(
        &self,
        resource: &K,
        rules: impl FnOnce(&K) -> Result<(), Failure>,
    ) -> Result<(), Failure> {
        let meta = resource.meta();
        let (Some(uid), Some(generation)) = (meta.uid.as_ref(), meta.generation) else { return rules(resource) };
        let passed = || self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if passed().get(uid) == Some(&generation) {
            return Ok(());
        }
        rules(resource)?;
        passed().insert(uid.clone(), generation);
        Ok(())
    }

    /// After a deletion.
    pub fn forget<K: Resource>(&self, resource: &K) {
        if let Some(uid) = &resource.meta().uid {
            self.0.lock().unwrap_or_else(PoisonError::into_inner).remove(uid);
        }
    }
}

/// The AI endpoints a Company may name in `ai.baseUrl`: the hosts the platform lists
/// (`--ai-endpoint-hosts`, none by default) and, in development only, this machine
/// (`--allow-loopback-ai-endpoints`; in a pod, loopback reaches the sidecars' admin ports). The
/// CRD's rules already require https (http only on loopback) and no credentials in the URL.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AiEndpoints {
    hosts: Vec<String>,
    loopback: bool,
}

impl AiEndpoints {
    pub fn new(hosts: impl IntoIterator<Item = impl Into<String>>, loopback: bool) -> Self {
        let hosts = hosts.into_iter().map(|h| h.into().to_ascii_lowercase()).filter(|h| !h.is_empty()).collect();
        AiEndpoints { hosts, loopback }
    }

    pub fn check(&self, company: &Company) -> Result<(), Failure> {
        let spec = &company.spec;
        for kind in spec.configured_channels() {
            let Some(url) = spec.ai_settings(kind).and_then(|ai| ai.base_url.as_deref()) else { continue };
            let field = format!("spec.channels.{kind}.ai.baseUrl");
            let host = host_of(url).to_ascii_lowercase();
            let refused = |why: String| Err(Failure::new(Reason::InvalidSpec, format!("{field}: {why}")));
            if matches!(host.as_str(), "localhost" | "127.0.0.1" | "[::1]") {
                if !self.loopback {
                    return refused(
                        "an endpoint on the operator's own machine is for development only \
                         (--allow-loopback-ai-endpoints)"
                            .into(),
                    );
                }
            } else if !self.hosts.contains(&host) {
                let allowed = if self.hosts.is_empty() { "none".to_string() } else { self.hosts.join(", ") };
                return refused(format!(
                    "host {host:?} is not one the platform allows for custom AI endpoints (--ai-endpoint-hosts: {allowed})"
                ));
            }
        }
        Ok(())
    }
}

/// The host of an absolute URL, without port (IPv6 in brackets).
fn host_of(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let authority = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
    match authority.find(']') {
        Some(end) if authority.starts_with('[') => &authority[..=end],
        _ => authority.split(':').next().unwrap_or_default(),
    }
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

#[cfg(test)]
mod tests {
    use super::Validated;
    use crate::reconcile::{Failure, Reason};
    use std::cell::Cell;

    /// Any object will do: the memo reads only its uid and generation.
    type Object = k8s_openapi::api::core::v1::ConfigMap;

    fn company(uid: Option<&str>, generation: Option<i64>) -> Object {
        let mut object = Object::default();
        object.metadata.uid = uid.map(str::to_string);
        object.metadata.generation = generation;
        object
    }

    #[test]
    fn a_generation_that_passed_its_rules_is_not_checked_again_and_a_new_one_is() {
        let (validated, checks) = (Validated::default(), Cell::new(0));
        let rules = |_: &Object| {
            checks.set(checks.get() + 1);
            Ok(())
        };
        let first = company(Some("u1"), Some(1));
        assert!(validated.check(&first, rules).is_ok());
        assert!(validated.check(&first, rules).is_ok());
        assert_eq!(checks.get(), 1, "the same generation is checked once");
        assert!(validated.check(&company(Some("u1"), Some(2)), rules).is_ok());
        assert!(validated.check(&company(Some("u2"), Some(1)), rules).is_ok());
        assert_eq!(checks.get(), 3, "a new generation, or another object, is checked");
        let from_git = company(None, None);
        assert!(validated.check(&from_git, rules).is_ok());
        assert!(validated.check(&from_git, rules).is_ok());
        assert_eq!(checks.get(), 5, "manifests from git are always checked");
        validated.forget(&first);
        assert!(validated.check(&first, rules).is_ok());
        assert_eq!(checks.get(), 6, "forgotten after a deletion");
    }

    #[test]
    fn a_generation_that_failed_its_rules_is_checked_again() {
        let (validated, checks) = (Validated::default(), Cell::new(0));
        let failing = |_: &Object| {
            checks.set(checks.get() + 1);
            Err(Failure::new(Reason::InvalidSpec, "spec.x: no"))
        };
        let invalid = company(Some("u1"), Some(1));
        assert!(validated.check(&invalid, failing).is_err());
        assert!(validated.check(&invalid, failing).is_err());
        assert_eq!(checks.get(), 2);
    }
}
