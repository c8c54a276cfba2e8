//! Secrets Manager secrets a resource produces: a name and a JSON object whose values come from
//! Kubernetes Secret keys (or, for non-secret settings like a template SID, from the spec).
use crate::crd::{SecretKeyRef, SecretValue};
use secrecy::{ExposeSecret, SecretString};
use std::collections::BTreeMap;

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

    /// Looks the values up and renders the secret's JSON. The error names the spec field whose
    /// reference is missing; it never contains a value.
    pub fn resolve(&self, values: &SecretValues) -> Result<DesiredSecret, MissingSecret> {
        let mut object = serde_json::Map::new();
        for (key, source) in &self.keys {
            let value = match source {
                Source::Literal(v) => v.clone(),
                Source::Secret { field, reference } => values.get(field, reference)?.expose_secret().to_string(),
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

/// A reference whose Secret or key does not exist. The message names the spec field.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MissingSecret {
    #[error("{field}: Secret not found: {:?} (key {:?})", .reference.name, .reference.key)]
    Secret { field: String, reference: SecretKeyRef },
    #[error("{field}: Secret has no key {:?} in Secret {:?}", .reference.key, .reference.name)]
    Key { field: String, reference: SecretKeyRef },
}

/// Values of the Kubernetes Secrets in one namespace, by Secret name and key.
#[derive(Default, Clone)]
pub struct SecretValues {
    secrets: BTreeMap<String, BTreeMap<String, SecretString>>,
}

impl std::fmt::Debug for SecretValues {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Names only: values never reach a log line.
        f.debug_list().entries(self.secrets.keys()).finish()
    }
}

impl SecretValues {
    pub const EMPTY: SecretValues = SecretValues { secrets: BTreeMap::new() };

    pub fn insert(&mut self, secret: &str, key: &str, value: SecretString) {
        self.secrets.entry(secret.to_string()).or_default().insert(key.to_string(), value);
    }

    /// The value `reference` (made in spec field `field`) points at.
    pub fn get(&self, field: &str, reference: &SecretKeyRef) -> Result<&SecretString, MissingSecret> {
        let missing = |secret_exists: bool| {
            let (field, reference) = (field.to_string(), reference.clone());
            if secret_exists {
                MissingSecret::Key { field, reference }
            } else {
                MissingSecret::Secret { field, reference }
            }
        };
        let secret = self.secrets.get(&reference.name).ok_or_else(|| missing(false))?;
        secret.get(&reference.key).ok_or_else(|| missing(true))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(name: &str, key: &str) -> SecretKeyRef {
        SecretKeyRef { name: name.into(), key: key.into() }
    }

    #[test]
    fn resolves_values_and_literals_into_json() {
        let mut values = SecretValues::default();
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
        let desired = spec.resolve(&values).expect("resolves");
        assert!(desired.matches(r#"{"twilio_template_sid":"HX1", "twilio_account_sid":"AC1"}"#));
        assert!(!desired.matches(r#"{"twilio_account_sid":"AC2","twilio_template_sid":"HX1"}"#));
        assert!(!desired.matches("not json"));
    }

    #[test]
    fn missing_reference_names_the_field_and_never_a_value() {
        let mut values = SecretValues::default();
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
        let err = spec.resolve(&values).expect_err("key is missing");
        let text = err.to_string();
        assert!(text.starts_with("spec.channels.sms.twilio.authToken: Secret has no key"), "{text}");
        assert!(!text.contains("AC-very-secret"));
        let spec = SecretSpec {
            name: "s".into(),
            keys: vec![("a", Source::Secret { field: "spec.apiKey".into(), reference: reference("nope", "k") })],
        };
        let text = spec.resolve(&values).expect_err("secret is missing").to_string();
        assert_eq!(text, r#"spec.apiKey: Secret not found: "nope" (key "k")"#);
        assert!(!format!("{values:?}").contains("AC-very-secret"));
    }
}
