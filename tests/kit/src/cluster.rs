//! The local control plane that `scripts/cluster.sh up` starts (a real kube-apiserver, its
//! controllers, a scheduler and kwok's simulated nodes): a client for it, its kubectl and helm,
//! a ServiceAccount's own credentials (so the real API server enforces the chart's RBAC),
//! manifests applied as Argo CD applies them (server-side, wave by wave) and a pod template's
//! container run as a local process (kwok's pods run nothing).
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{PodTemplateSpec, ServiceAccount};
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::discovery::Scope;
use kube::ResourceExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// The admin kubeconfig `scripts/cluster.sh env` exports; the suite fails (never skips) without it.
pub fn kubeconfig() -> PathBuf {
    let path = std::env::var("KUBECONFIG").unwrap_or_default();
    assert!(
        !path.is_empty() && Path::new(&path).exists(),
        "KUBECONFIG must name the local control plane's kubeconfig: run scripts/test-cluster.sh \
         (or scripts/cluster.sh up; eval \"$(scripts/cluster.sh env)\")"
    );
    PathBuf::from(path)
}

/// A client as the cluster's administrator.
pub async fn admin() -> kube::Client {
    client_for(&kubeconfig()).await
}

pub async fn client_for(kubeconfig: &Path) -> kube::Client {
    let config = kube::config::Kubeconfig::read_from(kubeconfig).expect("a readable kubeconfig");
    let options = kube::config::KubeConfigOptions::default();
    let config = kube::Config::from_custom_kubeconfig(config, &options).await.expect("a usable kubeconfig");
    kube::Client::try_from(config).expect("a client")
}

/// Runs `kubectl` or `helm` (on PATH, from `scripts/cluster.sh env`) against the cluster;
/// its standard output, or a panic with what it printed.
pub fn tool(name: &str, args: &[&str]) -> String {
    let out = Command::new(name)
        .args(args)
        .env("KUBECONFIG", kubeconfig())
        .output()
        .unwrap_or_else(|e| panic!("{name} is not on PATH ({e}): eval \"$(scripts/cluster.sh env)\""));
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    assert!(out.status.success(), "{name} {args:?} failed: {}{}", text(&out.stdout), text(&out.stderr));
    text(&out.stdout)
}

/// A kubeconfig that authenticates as ServiceAccount `name` in `namespace`, with a token from
/// the TokenRequest API, written under `dir`.
pub async fn service_account_kubeconfig(admin: &kube::Client, namespace: &str, name: &str, dir: &Path) -> PathBuf {
    let accounts: Api<ServiceAccount> = Api::namespaced(admin.clone(), namespace);
    let request = TokenRequest {
        spec: Some(TokenRequestSpec { expiration_seconds: Some(3600), ..Default::default() }),
        ..Default::default()
    };
    let issued = accounts.create_token_request(name, &PostParams::default(), &request).await.expect("a token");
    let token = issued.status.expect("the token request's status").token;
    let admin_config = kube::config::Kubeconfig::read_from(kubeconfig()).expect("the admin kubeconfig");
    let cluster =
        admin_config.clusters.first().and_then(|c| c.cluster.clone()).expect("the admin kubeconfig's cluster");
    let path = dir.join(format!("kubeconfig-{namespace}-{name}"));
    let config = serde_json::json!({
        "apiVersion": "v1", "kind": "Config", "current-context": "sa",
        "clusters": [{"name": "local", "cluster": {
            "server": cluster.server, "certificate-authority": cluster.certificate_authority}}],
        "users": [{"name": name, "user": {"token": token}}],
        "contexts": [{"name": "sa", "context": {"cluster": "local", "user": name, "namespace": namespace}}],
    });
    std::fs::write(&path, serde_json::to_string(&config).expect("json")).expect("write kubeconfig");
    path
}

/// The objects of a multi-document YAML text.
pub fn documents(yaml: &str) -> Vec<DynamicObject> {
    use serde::Deserialize;
    serde_yaml::Deserializer::from_str(yaml)
        .filter_map(|doc| {
            let value = serde_json::Value::deserialize(doc).expect("YAML");
            (!value.is_null()).then(|| serde_json::from_value(value).expect("a Kubernetes object"))
        })
        .collect()
}

/// Server-side applies `object` under field manager `manager` (into `namespace` when it is
/// namespaced and names none); the API server's answer.
pub async fn apply(
    client: &kube::Client,
    object: &DynamicObject,
    namespace: &str,
    manager: &str,
) -> Result<DynamicObject, kube::Error> {
    let api = api_for(client, object, namespace).await;
    api.patch(&object.name_any(), &PatchParams::apply(manager).force(), &Patch::Apply(object)).await
}

/// [`apply`] as a dry run: whether the API server (schema, CEL rules, admission) accepts it.
pub async fn dry_run(client: &kube::Client, object: &DynamicObject, namespace: &str) -> Result<(), kube::Error> {
    let api = api_for(client, object, namespace).await;
    let params = PatchParams::apply("multicomms-tests").force().dry_run();
    api.patch(&object.name_any(), &params, &Patch::Apply(object)).await.map(|_| ())
}

/// The API of `object`'s kind, as discovery finds it.
pub async fn api_for(client: &kube::Client, object: &DynamicObject, namespace: &str) -> Api<DynamicObject> {
    let types = object.types.as_ref().expect("apiVersion and kind");
    let gvk = kube::api::GroupVersionKind::try_from(types).expect("a group, version and kind");
    let (resource, capabilities) =
        kube::discovery::pinned_kind(client, &gvk).await.unwrap_or_else(|e| panic!("the API serves {gvk:?}: {e}"));
    match capabilities.scope {
        Scope::Namespaced => {
            let namespace = object.namespace().unwrap_or_else(|| namespace.to_string());
            Api::namespaced_with(client.clone(), &namespace, &resource)
        }
        Scope::Cluster => Api::all_with(client.clone(), &resource),
    }
}

/// Argo CD's sync wave of an object (annotation `argocd.argoproj.io/sync-wave`, default 0).
pub fn sync_wave(object: &DynamicObject) -> i64 {
    object.annotations().get("argocd.argoproj.io/sync-wave").and_then(|w| w.parse().ok()).unwrap_or(0)
}

/// A container of a pod template, started as a local process with the image's entrypoint
/// mapped to the workspace binary (the Dockerfile: the operator image's ENTRYPOINT is
/// `multicomms-operator`; the runtime image has none, so `args[0]` names its binary); its environment
/// is the template's (fieldRefs to the pod's name and namespace filled in) over the test's own
/// (the AWS credentials of the emulator), then `overrides` (listen addresses, a kubeconfig).
/// Stopped when dropped; its output goes to `log`.
pub struct Process {
    pub name: String,
    child: Child,
    pub log: PathBuf,
}

impl Process {
    pub fn start(template: &PodTemplateSpec, pod: (&str, &str), overrides: &[(&str, String)], log: PathBuf) -> Self {
        let spec = template.spec.as_ref().expect("a pod spec");
        let container = &spec.containers[0];
        let mut args = container.args.clone().unwrap_or_default();
        let image = container.image.clone().unwrap_or_default();
        let repository = image.rsplit_once(':').map_or(image.as_str(), |(repository, _)| repository);
        if repository.ends_with("/multicomms-operator") {
            args.insert(0, "multicomms-operator".into());
        }
        let (binary, rest) = args.split_first().expect("the container's binary");
        let mut command = Command::new(crate::environment::binary(binary));
        command.args(rest);
        for var in container.env.iter().flatten() {
            let field = var.value_from.as_ref().and_then(|v| v.field_ref.as_ref()).map(|f| f.field_path.as_str());
            let value = match field {
                Some("metadata.name") => Some(pod.0.to_string()),
                Some("metadata.namespace") => Some(pod.1.to_string()),
                _ => var.value.clone(),
            };
            if let Some(value) = value {
                command.env(&var.name, value);
            }
        }
        command.envs(overrides.iter().map(|(k, v)| (*k, v.as_str())));
        let file = std::fs::File::create(&log).expect("log file");
        let child = command
            .stdout(file.try_clone().expect("log file"))
            .stderr(file)
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {binary}: {e}"));
        Process { name: pod.0.to_string(), child, log }
    }

    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// What it has logged so far.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Killed at once (a crash, not a shutdown).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A loopback address no one listens on yet.
pub fn free_address() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("address").to_string()
}
