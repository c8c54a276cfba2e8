//! Reading a directory of manifests (a git checkout) for `apply` and `plan`: `Company` and
//! `Channel` resources, plus Kubernetes `Secret`s for local use. Other kinds (kustomizations,
//! Argo CD applications, ...) are passed over. A document that does not parse becomes a report
//! whose message names the offending field, so one bad file never hides the others.
use crate::crd::{Channel, Company, GROUP};
use crate::desired::secret::{Binding, SecretValues};
use crate::reconcile::{Failure, Reason, Report};
use base64::Engine;
use kube::ResourceExt;
use secrecy::SecretString;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, Default, Clone)]
pub struct Manifests {
    pub companies: Vec<Company>,
    pub channels: Vec<Channel>,
    /// Kubernetes Secret values by namespace.
    pub secrets: BTreeMap<String, SecretValues>,
    /// Documents that could not be read as the resource they claim to be.
    pub invalid: Vec<Report>,
    /// Documents of other kinds, as `path: kind`.
    pub ignored: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{0} is not a directory or a manifest file")]
    NotFound(PathBuf),
}

impl Manifests {
    /// Values of the Secrets in `resource`'s namespace.
    pub fn secrets_for<K: ResourceExt>(&self, resource: &K) -> &SecretValues {
        self.secrets_in(&resource.namespace().unwrap_or_default())
    }

    pub fn secrets_in(&self, namespace: &str) -> &SecretValues {
        static NONE: SecretValues = SecretValues::EMPTY;
        self.secrets.get(namespace).unwrap_or(&NONE)
    }
}

/// Reads every `*.yaml` / `*.yml` below each path (a directory or one file), in path order.
/// Resources without a namespace get `default_namespace`, as `kubectl apply` would.
pub fn load(paths: &[PathBuf], default_namespace: &str) -> Result<Manifests, LoadError> {
    let mut files = Vec::new();
    for path in paths {
        if !path.exists() {
            return Err(LoadError::NotFound(path.clone()));
        }
        if path.is_file() {
            // A file named explicitly is read whatever its extension.
            files.push(path.clone());
            continue;
        }
        files.extend(
            walkdir::WalkDir::new(path)
                .into_iter()
                .filter_map(Result::ok)
                .filter(|e| e.file_type().is_file())
                .map(|e| e.into_path())
                .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml")),
        );
    }
    files.sort();
    files.dedup();
    let mut manifests = Manifests::default();
    for file in files {
        let text = std::fs::read_to_string(&file).map_err(|source| LoadError::Io { path: file.clone(), source })?;
        read_file(&file, &text, default_namespace, &mut manifests);
    }
    Ok(manifests)
}

fn read_file(file: &Path, text: &str, default_namespace: &str, out: &mut Manifests) {
    let shown = file.display().to_string();
    for (index, document) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let value = match serde_yaml::Value::deserialize(document) {
            Ok(serde_yaml::Value::Null) => continue,
            Ok(value) => value,
            Err(e) => {
                out.invalid.push(invalid("File", "", &format!("{shown}#{index}"), format!("not valid YAML: {e}")));
                continue;
            }
        };
        let api_version = value.get("apiVersion").and_then(|v| v.as_str()).unwrap_or_default();
        let kind = value.get("kind").and_then(|v| v.as_str()).unwrap_or_default();
        let group = api_version.split('/').next().unwrap_or_default();
        match (group, kind) {
            (GROUP, "Company") => {
                if let Some(c) = typed::<Company>(value, &shown, default_namespace, out) {
                    out.companies.push(c);
                }
            }
            (GROUP, "Channel") => {
                if let Some(c) = typed::<Channel>(value, &shown, default_namespace, out) {
                    out.channels.push(c);
                }
            }
            ("v1", "Secret") => read_secret(&value, &shown, default_namespace, out),
            _ => out.ignored.push(format!("{shown}: {}", if kind.is_empty() { "(no kind)" } else { kind })),
        }
    }
}

/// Deserialises a resource; on failure records a report naming the field (`spec.channels...`).
fn typed<K>(value: serde_yaml::Value, file: &str, default_namespace: &str, out: &mut Manifests) -> Option<K>
where
    K: DeserializeOwned + kube::Resource<DynamicType = ()> + ResourceExt,
{
    let name =
        value.get("metadata").and_then(|m| m.get("name")).and_then(|n| n.as_str()).unwrap_or("(unnamed)").to_string();
    let namespace = value
        .get("metadata")
        .and_then(|m| m.get("namespace"))
        .and_then(|n| n.as_str())
        .unwrap_or(default_namespace)
        .to_string();
    let kind = match K::kind(&()) {
        std::borrow::Cow::Borrowed(kind) => kind,
        std::borrow::Cow::Owned(_) => "Resource",
    };
    // Unknown fields are errors, as with `kubectl apply --validate=strict`: a misspelt optional
    // field would otherwise vanish silently (e.g. `ai.apikey`, and the shared key is used).
    let mut unknown = Vec::new();
    let mut record_unknown = |path: serde_ignored::Path<'_>| {
        // `?` marks an Option level in serde_ignored's paths; apiVersion and kind were read above.
        let path = path.to_string().replace(".?", "");
        if path != "apiVersion" && path != "kind" {
            unknown.push(path);
        }
    };
    let ignoring = serde_ignored::Deserializer::new(value, &mut record_unknown);
    match serde_path_to_error::deserialize::<_, K>(ignoring) {
        Ok(_) if !unknown.is_empty() => {
            let fields: Vec<String> = unknown.iter().map(|p| format!("{p}: unknown field")).collect();
            out.invalid.push(invalid(kind, &namespace, &name, format!("{} ({file})", fields.join("; "))));
            None
        }
        Ok(mut resource) => {
            if resource.namespace().is_none() {
                resource.meta_mut().namespace = Some(default_namespace.to_string());
            }
            Some(resource)
        }
        Err(e) => {
            let path = e.path().to_string();
            let message = format!("{path}: {} ({file})", redact_values(&e.into_inner().to_string()));
            out.invalid.push(invalid(kind, &namespace, &name, message));
            None
        }
    }
}

/// serde quotes the offending value (`invalid type: string "sk-...", expected ...`). A
/// credential pasted where a `secretKeyRef` belongs must not travel on into output, status or
/// logs, so only the value's kind is kept.
fn redact_values(message: &str) -> String {
    for marker in ["invalid type: ", "invalid value: "] {
        if let Some(start) = message.find(marker) {
            let from = start + marker.len();
            // The last ", expected" is serde's own; the value may contain that text too.
            let end = message[from..].rfind(", expected").map_or(message.len(), |e| from + e);
            let kind = match message[from..end].split_whitespace().next() {
                Some("string") => "a string",
                Some("integer") => "an integer",
                Some("floating") => "a number",
                Some("boolean") => "a boolean",
                Some("map") => "a map",
                Some("sequence") => "a list",
                _ => "a value",
            };
            return format!("{}{kind}{}", &message[..from], &message[end..]);
        }
    }
    message.to_string()
}

fn invalid(kind: &'static str, namespace: &str, name: &str, message: String) -> Report {
    let mut report = Report::new(kind, namespace, name, None);
    report.subsystems.push(("Valid", Err(Failure::new(Reason::InvalidSpec, message))));
    report
}

/// A Kubernetes Secret manifest: `data` (base64) and `stringData` (plain, wins on conflicts).
fn read_secret(value: &serde_yaml::Value, file: &str, default_namespace: &str, out: &mut Manifests) {
    let meta = value.get("metadata");
    let Some(name) = meta.and_then(|m| m.get("name")).and_then(|n| n.as_str()) else {
        out.invalid.push(invalid("Secret", default_namespace, "(unnamed)", format!("metadata.name: missing ({file})")));
        return;
    };
    let namespace = meta.and_then(|m| m.get("namespace")).and_then(|n| n.as_str()).unwrap_or(default_namespace);
    let mut entries = |field: &str| -> Vec<(String, String)> {
        let Some(mapping) = value.get(field).and_then(|d| d.as_mapping()) else {
            return vec![];
        };
        let mut out_entries = Vec::new();
        for (key, v) in mapping {
            match (key.as_str(), v.as_str()) {
                (Some(key), Some(v)) => out_entries.push((key.to_string(), v.to_string())),
                // Kubernetes takes only strings here; say so rather than drop the key.
                _ => out.invalid.push(invalid(
                    "Secret",
                    namespace,
                    name,
                    format!("{field}.{}: must be a string ({file})", key.as_str().unwrap_or("?")),
                )),
            }
        }
        out_entries
    };
    let data = entries("data");
    let string_data = entries("stringData");
    let labels = meta.and_then(|m| m.get("labels")).and_then(|l| l.as_mapping()).into_iter().flatten();
    let labels = labels.filter_map(|(k, v)| Some((k.as_str()?, v.as_str()?)));
    let values = out.secrets.entry(namespace.to_string()).or_default();
    values.bind(name, Binding::from_labels(labels));
    let mut bad = Vec::new();
    for (key, encoded) in data {
        match base64::engine::general_purpose::STANDARD.decode(encoded.trim()).map(String::from_utf8) {
            Ok(Ok(plain)) => values.insert(name, &key, SecretString::from(plain)),
            _ => bad.push(format!("data.{key}: not base64-encoded UTF-8 ({file})")),
        }
    }
    for (key, plain) in string_data {
        values.insert(name, &key, SecretString::from(plain));
    }
    for message in bad {
        out.invalid.push(invalid("Secret", namespace, name, message));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_in_serde_messages_are_redacted() {
        assert_eq!(
            redact_values(r#"invalid type: string "sk-secret", expected struct SecretValue"#),
            "invalid type: a string, expected struct SecretValue"
        );
        assert_eq!(
            redact_values(r#"invalid type: string "a, expected b", expected struct SecretValue"#),
            "invalid type: a string, expected struct SecretValue"
        );
        assert_eq!(
            redact_values("invalid type: integer `123456`, expected u32"),
            "invalid type: an integer, expected u32"
        );
        assert_eq!(redact_values("invalid value: boolean `true`, expected x"), "invalid value: a boolean, expected x");
        assert_eq!(redact_values("missing field `projectId`"), "missing field `projectId`");
    }

    #[test]
    fn unknown_fields_are_rejected_by_path() {
        let yaml = include_str!("../../../config/companies/cucumber-recruitment-clarify-cv.yaml").replace(
            "senderNumber: \"+447588713814\"\n      contentSid",
            "senderNumbr: \"+447588713814\"\n      senderNumber: \"+447588713814\"\n      contentSid",
        );
        let mut out = Manifests::default();
        read_file(Path::new("c.yaml"), &yaml, "default", &mut out);
        assert!(out.companies.is_empty());
        let failure = out.invalid[0].failure().expect("invalid");
        assert_eq!(failure.message, "spec.channels.whatsapp.senderNumbr: unknown field (c.yaml)");
    }

    #[test]
    fn reads_secrets_from_data_and_string_data() {
        let yaml = "apiVersion: v1\nkind: Secret\nmetadata: {name: s, namespace: ns, labels: {multicomms.io/company: acme}}\ndata: {a: YWJj}\nstringData: {b: plain}\n---\nkind: Kustomization\n";
        let mut out = Manifests::default();
        read_file(Path::new("x.yaml"), yaml, "default", &mut out);
        let values = out.secrets_in("ns");
        let acme = crate::desired::Owner { kind: "Company", namespace: "ns".into(), name: "acme".into() };
        let get = |key: &str| {
            let reference = crate::crd::SecretKeyRef { name: "s".into(), key: key.into() };
            values.get("spec.x", &reference, &acme).map(|v| secrecy::ExposeSecret::expose_secret(v).to_string())
        };
        assert_eq!(get("a"), Ok("abc".to_string()));
        assert_eq!(get("b"), Ok("plain".to_string()));
        assert_eq!(out.ignored, ["x.yaml: Kustomization"]);
    }
}
