//! Secrets Manager secrets a resource produces: a name and a JSON object whose values come from
//! Kubernetes Secret keys (or, for non-secret settings like a template SID, from the spec).
//!
//! The tenancy rule lives here, in one place for `plan`, `apply` and the controller: a resource
//! reads a Kubernetes Secret only if the Secret is bound to it, by a label the platform's secret
//! tooling sets and a Company author does not write: `multicomms.io/company: <Company name>` or
//! `multicomms.io/channel: <Channel name>`. A Secret bound to a Channel is never a Company's, so
//! no Company can name the platform's shared AI key, or another tenant's credentials.
use super::Owner;
use crate::crd::{SecretKeyRef, SecretValue};
use secrecy::{ExposeSecret, SecretString};
use std::collections::BTreeMap;

/// The label that binds a Kubernetes Secret to the Company of that name (in its namespace).
pub const COMPANY_LABEL: &str = "multicomms.io/company";
/// The label that binds a Kubernetes Secret to the Channel of that name (in its namespace).
pub const CHANNEL_LABEL: &str = "multicomms.io/channel";

/// Whom a Kubernetes Secret is bound to, from its labels.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Binding {
    company: Option<String>,
    channel: Option<String>,
}

impl Binding {
    pub fn from_labels<'a>(labels: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let mut binding = Binding::default();
        for (key, value) in labels {
            match key {
                COMPANY_LABEL => binding.company = Some(value.to_string()),
                CHANNEL_LABEL => binding.channel = Some(value.to_string()),
                _ => {}
            }
        }
        binding
    }

    /// Whether `reader` may read the Secret: bound to it by name, and to no resource of the
    /// other kind (a Secret labelled for a Channel and a Company is a mistake, read by neither).
    pub fn allows(&self, reader: &Owner) -> bool {
        let (own, other) = match reader.kind {
            "Company" => (&self.company, &self.channel),
            "Channel" => (&self.channel, &self.company),
            _ => return false,
        };
        own.as_deref() == Some(reader.name.as_str()) && other.is_none()
    }
}

/// One key of the secret's JSON object and where its value comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    /// A key of a Kubernetes Secret; `field` is the spec path that references it.
    Secret { field: String, reference: SecretKeyRef },
    /// A plain value from the spec.
    Literal(String),
}

/// A secret to write, before its values are looked up.
#[derive(Debug, Clone, PartialEq)]
pub struct SecretSpec {
    pub name: String,
    pub keys: Vec<(&'static str, Source)>,
}

impl SecretSpec {
    pub fn from_ref(field: impl Into<String>, value: &SecretValue) -> Source {
        Source::Secret { field: field.into(), reference: value.secret_key_ref.clone() }
    }

    /// Looks the values up for `reader` and renders the secret's JSON. The error names the spec
    /// field whose reference is missing or not bound to `reader`; it never contains a value.
    pub fn resolve(&self, values: &SecretValues, reader: &Owner) -> Result<DesiredSecret, UnusableSecret> {
        let mut object = serde_json::Map::new();
        for (key, source) in &self.keys {
            let value = match source {
                Source::Literal(v) => v.clone(),
                Source::Secret { field, reference } => {
                    values.get(field, reference, reader)?.expose_secret().to_string()
                }
            };
            object.insert((*key).to_string(), serde_json::Value::String(value));
        }
        Ok(DesiredSecret {
            name: self.name.clone(),
            value: SecretString::from(serde_json::Value::Object(object).to_string()),
        })
    }
}

/// A secret with its value, ready to compare and write.
#[derive(Debug, Clone)]
pub struct DesiredSecret {
    pub name: String,
    pub value: SecretString,
}

impl DesiredSecret {
    /// Whether a stored value holds the same JSON (key order and spacing do not count).
    pub fn matches(&self, stored: &str) -> bool {
        let parse = |s: &str| serde_json::from_str::<serde_json::Value>(s).ok();
        match (parse(self.value.expose_secret()), parse(stored)) {
            (Some(a), Some(b)) => a == b,
            _ => false,
        }
    }
}

/// A reference the resource cannot use: its Secret or key does not exist, or the Secret is not
/// bound to the resource. The message names the spec field and the Secret, never a value.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum UnusableSecret {
    #[error("{field}: Secret not found: {:?} (key {:?})", .reference.name, .reference.key)]
    Secret { field: String, reference: SecretKeyRef },
    #[error("{field}: Secret has no key {:?} in Secret {:?}", .reference.key, .reference.name)]
    Key { field: String, reference: SecretKeyRef },
    #[error(
        "{field}: Secret {:?} is not bound to this {kind}: only a Secret labelled {}={name} (and for no \
         other kind of resource) may be read for it",
        .reference.name,
        binding_label(kind)
    )]
    NotAllowed { field: String, reference: SecretKeyRef, kind: &'static str, name: String },
}

/// Names of the Kubernetes Secrets that `specs` read.
pub fn read_by(specs: &[SecretSpec]) -> std::collections::BTreeSet<String> {
    specs
        .iter()
        .flat_map(|s| &s.keys)
        .filter_map(|(_, source)| match source {
            Source::Secret { reference, .. } => Some(reference.name.clone()),
            Source::Literal(_) => None,
        })
        .collect()
}

/// The label that binds a Secret to a resource of `kind`.
fn binding_label(kind: &str) -> &'static str {
    if kind == "Channel" {
        CHANNEL_LABEL
    } else {
        COMPANY_LABEL
    }
}

/// Values of the Kubernetes Secrets in one namespace, by Secret name and key, with each Secret's
/// [`Binding`].
#[derive(Default, Clone)]
pub struct SecretValues {
    secrets: BTreeMap<String, BTreeMap<String, SecretString>>,
    bindings: BTreeMap<String, Binding>,
}

impl std::fmt::Debug for SecretValues {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Names only: values never reach a log line.
        f.debug_list().entries(self.secrets.keys()).finish()
    }
}

impl SecretValues {
    pub const EMPTY: SecretValues = SecretValues { secrets: BTreeMap::new(), bindings: BTreeMap::new() };

    /// Notes that Secret `secret` exists, bound as its labels say.
    pub fn bind(&mut self, secret: &str, binding: Binding) {
        self.secrets.entry(secret.to_string()).or_default();
        self.bindings.insert(secret.to_string(), binding);
    }

    /// Whether Secret `secret` may be read for `reader` (the controller loads no other values).
    pub fn allows(&self, secret: &str, reader: &Owner) -> bool {
        self.bindings.get(secret).is_some_and(|binding| binding.allows(reader))
    }

    pub fn insert(&mut self, secret: &str, key: &str, value: SecretString) {
        self.secrets.entry(secret.to_string()).or_default().insert(key.to_string(), value);
    }

    /// The value `reference` (made in spec field `field` of `reader`) points at. The binding is
    /// checked before any value is looked at.
    pub fn get(&self, field: &str, reference: &SecretKeyRef, reader: &Owner) -> Result<&SecretString, UnusableSecret> {
        let (field, reference) = (field.to_string(), reference.clone());
        let Some(secret) = self.secrets.get(&reference.name) else {
            return Err(UnusableSecret::Secret { field, reference });
        };
        if !self.allows(&reference.name, reader) {
            let (kind, name) = (reader.kind, reader.name.clone());
            return Err(UnusableSecret::NotAllowed { field, reference, kind, name });
        }
        secret.get(&reference.key).ok_or(UnusableSecret::Key { field, reference })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(name: &str, key: &str) -> SecretKeyRef {
        SecretKeyRef { name: name.into(), key: key.into() }
    }

    fn company(name: &str) -> Owner {
        Owner { kind: "Company", namespace: "ns".into(), name: name.into() }
    }

    fn bound_to(values: &mut SecretValues, secret: &str, label: &str, name: &str) {
        values.bind(secret, Binding::from_labels([(label, name)]));
    }

    #[test]
    fn resolves_values_and_literals_into_json() {
        let mut values = SecretValues::default();
        bound_to(&mut values, "twilio", COMPANY_LABEL, "acme");
        values.insert("twilio", "sid", SecretString::from("AC1"));
        let spec = SecretSpec {
            name: "s".into(),
            keys: vec![
                (
                    "twilio_account_sid",
                    Source::Secret { field: "spec.x".into(), reference: reference("twilio", "sid") },
                ),
                ("twilio_template_sid", Source::Literal("HX1".into())),
            ],
        };
        let desired = spec.resolve(&values, &company("acme")).expect("resolves");
        assert!(desired.matches(r#"{"twilio_template_sid":"HX1", "twilio_account_sid":"AC1"}"#));
        assert!(!desired.matches(r#"{"twilio_account_sid":"AC2","twilio_template_sid":"HX1"}"#));
        assert!(!desired.matches("not json"));
    }

    #[test]
    fn missing_reference_names_the_field_and_never_a_value() {
        let mut values = SecretValues::default();
        bound_to(&mut values, "twilio", COMPANY_LABEL, "acme");
        values.insert("twilio", "sid", SecretString::from("AC-very-secret"));
        let spec = SecretSpec {
            name: "s".into(),
            keys: vec![(
                "a",
                Source::Secret {
                    field: "spec.channels.sms.twilio.authToken".into(),
                    reference: reference("twilio", "token"),
                },
            )],
        };
        let err = spec.resolve(&values, &company("acme")).expect_err("key is missing");
        let text = err.to_string();
        assert!(text.starts_with("spec.channels.sms.twilio.authToken: Secret has no key"), "{text}");
        assert!(!text.contains("AC-very-secret"));
        let spec = SecretSpec {
            name: "s".into(),
            keys: vec![("a", Source::Secret { field: "spec.apiKey".into(), reference: reference("nope", "k") })],
        };
        let text = spec.resolve(&values, &company("acme")).expect_err("secret is missing").to_string();
        assert_eq!(text, r#"spec.apiKey: Secret not found: "nope" (key "k")"#);
        assert!(!format!("{values:?}").contains("AC-very-secret"));
    }

    #[test]
    fn a_company_reads_only_secrets_bound_to_it_and_never_a_channels() {
        let mut values = SecretValues::default();
        bound_to(&mut values, "acme-twilio", COMPANY_LABEL, "acme");
        bound_to(&mut values, "openai-whatsapp", CHANNEL_LABEL, "whatsapp");
        values.bind("unlabelled", Binding::default());
        values.bind("both", Binding::from_labels([(COMPANY_LABEL, "acme"), (CHANNEL_LABEL, "whatsapp")]));
        for secret in ["acme-twilio", "openai-whatsapp", "unlabelled", "both"] {
            values.insert(secret, "k", SecretString::from("sk-value"));
        }
        let field = "spec.channels.whatsapp.ai.apiKey";
        assert!(values.get(field, &reference("acme-twilio", "k"), &company("acme")).is_ok());
        for (secret, reader) in [
            ("acme-twilio", company("other-tenant")),
            ("openai-whatsapp", company("acme")),
            ("unlabelled", company("acme")),
            ("both", company("acme")),
        ] {
            let refused = values.get(field, &reference(secret, "k"), &reader).expect_err("not bound to the reader");
            let text = refused.to_string();
            assert!(matches!(refused, UnusableSecret::NotAllowed { .. }), "{text}");
            assert!(text.starts_with(&format!("{field}: Secret {secret:?} is not bound to this Company")), "{text}");
            assert!(text.contains(&format!("multicomms.io/company={}", reader.name)), "{text}");
            assert!(!text.contains("sk-value"));
        }
        let channel = Owner { kind: "Channel", namespace: "ns".into(), name: "whatsapp".into() };
        assert!(values.get("spec.aiApiKey", &reference("openai-whatsapp", "k"), &channel).is_ok());
        assert!(values.get("spec.aiApiKey", &reference("acme-twilio", "k"), &channel).is_err(), "a tenant's");
    }
}
