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

/// A free-form JSON value kept as its text. A JSON Schema parsed into `serde_json::Value` is a
/// tree of map nodes: the example Company's four-property output schema took 5 KB of the 8 KB a
/// parsed Company holds, and the controller keeps every Company in memory. As text it costs its
/// length. It reads and writes as the JSON value itself, keys in their order; two are equal when
/// their values are, whatever the order of keys.
#[derive(Clone)]
pub struct JsonText(Box<str>);

impl PartialEq for JsonText {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0 || self.value() == other.value()
    }
}

impl JsonText {
    pub fn value(&self) -> serde_json::Value {
        // Made from a value, so it parses.
        serde_json::from_str(&self.0).unwrap_or_default()
    }
}

impl From<serde_json::Value> for JsonText {
    fn from(value: serde_json::Value) -> Self {
        JsonText(value.to_string().into_boxed_str())
    }
}

impl std::fmt::Debug for JsonText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for JsonText {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.value().serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for JsonText {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        serde_json::Value::deserialize(deserializer).map(JsonText::from)
    }
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

#[cfg(test)]
mod tests {
    use super::JsonText;

    #[test]
    fn json_text_reads_and_writes_as_the_value_it_holds_from_yaml_and_json() {
        let yaml = "type: object\nproperties:\n  \"1\": {type: string}\nrequired: [\"1\"]\n";
        let from_yaml: JsonText = serde_yaml::from_str(yaml).expect("yaml");
        let value: serde_json::Value = serde_yaml::from_str(yaml).expect("value");
        assert_eq!(from_yaml.value(), value);
        assert_eq!(serde_json::to_value(&from_yaml).expect("json"), value, "written as the value, not as text");
        assert_eq!(
            format!("{from_yaml:?}"),
            r#"{"type":"object","properties":{"1":{"type":"string"}},"required":["1"]}"#
        );
        let reordered: JsonText =
            serde_json::from_str(r#"{"required":["1"],"properties":{"1":{"type":"string"}},"type":"object"}"#)
                .expect("json");
        assert_eq!(reordered, from_yaml, "equal values are equal, whatever the order of keys");
    }
}
