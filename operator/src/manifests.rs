//! Reading a directory of manifests (a git checkout) for `apply` and `plan`: `Company` and
//! `Channel` resources, plus Kubernetes `Secret`s for local use. Other kinds (kustomizations,
//! Argo CD applications, ...) are passed over. A document that does not parse becomes a report
//! whose message names the offending field, so one bad file never hides the others.
use crate::crd::{Channel, Company, GROUP};
use crate::desired::secret::SecretValues;
use crate::reconcile::{Failure, Reason, Report};
use base64::Engine;
use kube::ResourceExt;
use secrecy::SecretString;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, Default)]
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
    pub fn secrets_in(&self, namespace: &str) -> SecretValues {
        self.secrets.get(namespace).cloned().unwrap_or_default()
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
        let text = std::fs::read_to_string(&file).map_err(|source| LoadError::Io {
            path: file.clone(),
            source,
        })?;
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
                out.invalid.push(invalid(
                    "File",
                    "",
                    &format!("{shown}#{index}"),
                    format!("not valid YAML: {e}"),
                ));
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
            _ => out
                .ignored
                .push(format!("{shown}: {}", if kind.is_empty() { "(no kind)" } else { kind })),
        }
    }
}

/// Deserialises a resource; on failure records a report naming the field (`spec.channels...`).
fn typed<K>(value: serde_yaml::Value, file: &str, default_namespace: &str, out: &mut Manifests) -> Option<K>
where
    K: DeserializeOwned + kube::Resource<DynamicType = ()> + ResourceExt,
{
    let name = value
        .get("metadata")
        .and_then(|m| m.get("name"))
        .and_then(|n| n.as_str())
        .unwrap_or("(unnamed)")
        .to_string();
    let namespace = value
        .get("metadata")
        .and_then(|m| m.get("namespace"))
        .and_then(|n| n.as_str())
        .unwrap_or(default_namespace)
        .to_string();
    match serde_path_to_error::deserialize::<_, K>(value) {
        Ok(mut resource) => {
            if resource.namespace().is_none() {
                resource.meta_mut().namespace = Some(default_namespace.to_string());
            }
            Some(resource)
        }
        Err(e) => {
            let path = e.path().to_string();
            let message = format!("{path}: {} ({file})", redact_strings(&e.into_inner().to_string()));
            let kind = match K::kind(&()) {
                std::borrow::Cow::Borrowed(kind) => kind,
                std::borrow::Cow::Owned(_) => "Resource",
            };
            out.invalid.push(invalid(kind, &namespace, &name, message));
            None
        }
    }
}

/// serde quotes the offending value (`invalid type: string "sk-..."`); a credential pasted where
/// a `secretKeyRef` belongs must not travel on into output, status or logs.
fn redact_strings(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(start) = rest.find("string \"") {
        out.push_str(&rest[..start]);
        out.push_str("a string");
        let after = &rest[start + "string \"".len()..];
        // The value ends at the last quote before serde's ", expected ..." tail (values may hold quotes).
        let end = after
            .find("\", expected")
            .or_else(|| after.rfind('"'))
            .unwrap_or(after.len());
        rest = after[end..].strip_prefix('"').unwrap_or(&after[end..]);
    }
    out.push_str(rest);
    out
}

fn invalid(kind: &'static str, namespace: &str, name: &str, message: String) -> Report {
    let mut report = Report::new(kind, namespace, name, None);
    report
        .subsystems
        .push(("Valid", Err(Failure::new(Reason::InvalidSpec, message))));
    report
}

/// A Kubernetes Secret manifest: `data` (base64) and `stringData` (plain, wins on conflicts).
fn read_secret(value: &serde_yaml::Value, file: &str, default_namespace: &str, out: &mut Manifests) {
    let meta = value.get("metadata");
    let Some(name) = meta.and_then(|m| m.get("name")).and_then(|n| n.as_str()) else {
        out.invalid.push(invalid(
            "Secret",
            default_namespace,
            "(unnamed)",
            format!("metadata.name: missing ({file})"),
        ));
        return;
    };
    let namespace = meta
        .and_then(|m| m.get("namespace"))
        .and_then(|n| n.as_str())
        .unwrap_or(default_namespace);
    let values = out.secrets.entry(namespace.to_string()).or_default();
    let entries = |field: &str| -> Vec<(String, String)> {
        value
            .get(field)
            .and_then(|d| d.as_mapping())
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| Some((k.as_str()?.to_string(), v.as_str()?.to_string())))
                    .collect()
            })
            .unwrap_or_default()
    };
    for (key, encoded) in entries("data") {
        match base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .map(String::from_utf8)
        {
            Ok(Ok(plain)) => values.insert(name, &key, SecretString::from(plain)),
            _ => out.invalid.push(invalid(
                "Secret",
                namespace,
                name,
                format!("data.{key}: not base64-encoded UTF-8 ({file})"),
            )),
        }
    }
    for (key, plain) in entries("stringData") {
        values.insert(name, &key, SecretString::from(plain));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_in_serde_messages_are_redacted() {
        assert_eq!(
            redact_strings(r#"invalid type: string "sk-secret", expected struct SecretValue"#),
            "invalid type: a string, expected struct SecretValue"
        );
        assert_eq!(
            redact_strings(r#"invalid type: string "a\"b""#),
            "invalid type: a string"
        );
        assert_eq!(redact_strings("missing field `projectId`"), "missing field `projectId`");
    }

    #[test]
    fn reads_secrets_from_data_and_string_data() {
        let yaml = "apiVersion: v1\nkind: Secret\nmetadata: {name: s, namespace: ns}\ndata: {a: YWJj}\nstringData: {b: plain}\n---\nkind: Kustomization\n";
        let mut out = Manifests::default();
        read_file(Path::new("x.yaml"), yaml, "default", &mut out);
        let values = out.secrets_in("ns");
        let get = |key: &str| {
            let reference = crate::crd::SecretKeyRef {
                name: "s".into(),
                key: key.into(),
            };
            values
                .get("spec.x", &reference)
                .map(|v| secrecy::ExposeSecret::expose_secret(v).to_string())
        };
        assert_eq!(get("a"), Ok("abc".to_string()));
        assert_eq!(get("b"), Ok("plain".to_string()));
        assert_eq!(out.ignored, ["x.yaml: Kustomization"]);
    }
}
