//! Benchmark: the in-cluster controller holding N Companies. The release `multicomms-operator
//! run` binary runs in a process of its own, so its memory is its own; this process is its
//! Kubernetes API (kube-fake-client behind the test kit's watch shim, served over HTTP) and
//! watches the Companies turn Ready. AWS is the emulator.
//!
//! Two stretches are measured: from cold until every Company is Ready, then one resync period
//! (every Company reconciled again by the periodic resync, nothing changed). For each: AWS calls
//! and operator CPU per reconcile, from the operator's own /metrics and /proc; the operator's
//! resident memory at the end of each and its peak.
//!
//! With `MULTICOMMS_BENCH_CLUSTER=1` (`scripts/bench-controller.sh --cluster`) the API is the
//! local control plane of `scripts/cluster.sh` (KUBECONFIG) instead: a real kube-apiserver and
//! etcd, the objects created through it, and the API requests per Company counted from the API
//! server's own `apiserver_request_total`.
//!
//! Run through `scripts/bench-controller.sh`, which starts the emulator. Prints one Markdown
//! table row.
//!
//! usage: bench_controller <companies> [resync-seconds] [concurrency]
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::ByteString;
use kube::api::Api;
use multicomms_operator::aws::{self, Aws};
use multicomms_operator::crd::{Channel, Company};
use multicomms_operator::reconcile::{self, Context, Mode};
use multicomms_testkit::bench::{busy_and_limit, cpu_seconds, memory_mib, process_cpu_seconds, EmulatorMeter};
use multicomms_testkit::environment::{example_company_secrets_yaml, example_company_yaml};
use multicomms_testkit::watch_shim::{self, WatchShim};
use multicomms_wire::Naming;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const NS: &str = "bench";
/// Time between the watch shim's LISTs, and between the bench's counts of Ready Companies: each
/// one serialises every Company, so a second per thousand (and at least one) keeps the in-memory
/// API from taking the cores the operator is measured on.
fn poll_every(companies: usize) -> Duration {
    Duration::from_millis(companies.max(1000) as u64)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let companies: usize = args.next().unwrap_or_else(|| "1000".into()).parse()?;
    let resync: u64 = args.next().unwrap_or_else(|| "120".into()).parse()?;
    let concurrency: u16 = args.next().unwrap_or_else(|| "16".into()).parse()?;
    anyhow::ensure!(
        std::env::var("AWS_ENDPOINT_URL").is_ok_and(|e| e.starts_with("http://127.0.0.1:")),
        "AWS_ENDPOINT_URL must point at the local emulator: run scripts/bench-controller.sh"
    );
    let naming = Naming::new(format!("c{}", std::process::id()), "bench");
    // The tables are the environment's (created by `apply` in a cluster's setup), not a Company's.
    let engine = Context::new(Aws::new(&aws::load_config().await), naming.clone(), Mode::Apply);
    anyhow::ensure!(reconcile::tables::reconcile(&engine).await.is_ready(), "the environment's tables");

    let real = std::env::var("MULTICOMMS_BENCH_CLUSTER").is_ok_and(|v| v == "1");
    let (api_client, kubeconfig) = if real {
        let client = kube::Client::try_default().await?;
        populate_cluster(&client, companies).await?;
        (client, PathBuf::from(std::env::var("KUBECONFIG")?))
    } else {
        let fake = kube_fake_client::ClientBuilder::new()
            .with_resource::<Company>()
            .with_resource::<Channel>()
            .with_objects(generated_companies(companies)?)
            .with_objects(example_channels()?)
            .with_objects(example_secrets(companies)?)
            .build()
            .await?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let kubeconfig = write_kubeconfig(listener.local_addr()?)?;
        tokio::spawn(serve_api(listener, watch_shim::watching_every(fake.clone(), poll_every(companies))));
        (fake, kubeconfig)
    };
    let requests_at_start = if real { api_server_requests(&api_client).await? } else { 0.0 };
    let mut polls = 0u32;

    let metrics_address = free_address()?;
    let log = std::fs::File::create(repo("target/bench-controller.log"))?;
    // MULTICOMMS_OPERATOR_UNDER="heaptrack -o target/operator" runs it under a profiler (whose
    // process the memory figures then are).
    let under = std::env::var("MULTICOMMS_OPERATOR_UNDER").unwrap_or_default();
    // MULTICOMMS_OPERATOR_BINARY: another build of it, for a side-by-side comparison.
    let binary = std::env::var("MULTICOMMS_OPERATOR_BINARY")
        .unwrap_or_else(|_| repo("target/release/multicomms-operator").display().to_string());
    let command: Vec<&str> = under.split_whitespace().chain([binary.as_str()]).collect();
    let mut operator = tokio::process::Command::new(command[0])
        .args(&command[1..])
        .args(["run", "--leader-election", "false", "--manage-workers", "false", "--watch-namespaces", NS])
        .args(["--resync-seconds", &resync.to_string(), "--concurrency", &concurrency.to_string()])
        .args(["--metrics-address", &metrics_address.to_string()])
        .env("KUBECONFIG", &kubeconfig)
        .env("MULTICOMMS_PREFIX", &naming.prefix)
        .env("MULTICOMMS_ENV", "bench")
        .env("RUST_LOG", "warn")
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true)
        // Its own process group, so a profiler's child is stopped with it (see `stop`).
        .process_group(0)
        .spawn()?;
    let pid = operator.id().ok_or_else(|| anyhow::anyhow!("the operator exited at once"))?.to_string();
    let operator_at_start = Sample::take(&pid, metrics_address).await;

    // 1. Cold: every Company created in AWS and Ready.
    let (emulator, started, api_cpu) = (EmulatorMeter::start(), Instant::now(), cpu_seconds());
    let api: Api<Company> = Api::namespaced(api_client.clone(), NS);
    loop {
        tokio::time::sleep(poll_every(companies)).await;
        if let Some(status) = operator.try_wait()? {
            anyhow::bail!("the operator exited ({status}); see target/bench-controller.log");
        }
        polls += 1;
        if ready(&api).await? == companies {
            break;
        }
        anyhow::ensure!(started.elapsed() < Duration::from_secs(3600), "not all Ready within an hour");
    }
    let cold_seconds = started.elapsed().as_secs_f64();
    let (cold_busy, cold) = (emulator.busy(), Sample::take(&pid, metrics_address).await);
    if real {
        // The operator's requests: the API server's count, less the bench's own LISTs of Companies.
        let requests = api_server_requests(&api_client).await? - requests_at_start - f64::from(polls);
        eprintln!("API requests per Company while cold: {:.2}", requests / companies as f64);
    }
    let api_busy = (cpu_seconds() - api_cpu) / cold_seconds;

    // 2. One resync period: each Company reconciled again about once, with nothing to change.
    // MULTICOMMS_BENCH_COLD_ONLY=1: not waited for (a resync long enough for 10,000 Companies
    // is an hour); the resync columns then show what happened in the next few seconds only.
    let emulator = EmulatorMeter::start();
    let cold_only = std::env::var("MULTICOMMS_BENCH_COLD_ONLY").is_ok_and(|v| v == "1");
    tokio::time::sleep(Duration::from_secs(if cold_only { 5 } else { resync })).await;
    let (resync_busy, resynced) = (emulator.busy(), Sample::take(&pid, metrics_address).await);
    anyhow::ensure!(ready(&api).await? == companies, "a Company fell out of Ready during the resync");
    stop(&mut operator).await?;

    eprintln!("AWS calls while cold: {}", cold.calls_since(&operator_at_start));
    eprintln!("AWS calls in the resync: {}", resynced.calls_since(&cold));
    println!(
        "| {companies} | {concurrency} | {cold_seconds:.0} | {:.1} | {} | {:.1} | {resync} | {} | {:.1} | {:.1} | {} | {api_busy:.2} | {} |",
        companies as f64 / cold_seconds,
        cold.per_company_reconcile(&operator_at_start),
        cold.rss,
        resynced.per_company_reconcile(&cold),
        resynced.rss,
        resynced.peak,
        busy_and_limit(cold_busy),
        busy_and_limit(resync_busy),
    );
    Ok(())
}

/// The operator's counters and memory at one moment.
struct Sample {
    cpu: f64,
    /// AWS calls by operation.
    calls: BTreeMap<String, f64>,
    /// Reconciles by kind.
    reconciles: BTreeMap<String, f64>,
    rss: f64,
    peak: f64,
}

impl Sample {
    async fn take(pid: &str, metrics: std::net::SocketAddr) -> Sample {
        let text = scrape(metrics).await.unwrap_or_default();
        let by_label = |prefix: &str, label: &str| -> BTreeMap<String, f64> {
            let mut out = BTreeMap::new();
            for line in text.lines().filter(|l| l.starts_with(prefix)) {
                let value = line.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
                let name = line.split(&format!("{label}=\"")).nth(1).and_then(|rest| rest.split('"').next());
                *out.entry(name.unwrap_or_default().to_string()).or_default() += value;
            }
            out
        };
        Sample {
            cpu: process_cpu_seconds(pid),
            calls: by_label("multicomms_aws_calls_total", "operation"),
            reconciles: by_label("multicomms_reconciles_total", "kind"),
            rss: memory_mib(pid, "VmRSS"),
            peak: memory_mib(pid, "VmHWM"),
        }
    }

    /// Company and Channel reconciles since `earlier`, then every AWS call and the operator's CPU
    /// per Company reconcile (the Channels' share included).
    fn per_company_reconcile(&self, earlier: &Sample) -> String {
        let since = |now: &BTreeMap<String, f64>, then: &BTreeMap<String, f64>, key: &str| {
            now.get(key).copied().unwrap_or(0.0) - then.get(key).copied().unwrap_or(0.0)
        };
        let companies = since(&self.reconciles, &earlier.reconciles, "Company");
        let channels = since(&self.reconciles, &earlier.reconciles, "Channel");
        let calls: f64 = self.calls.keys().map(|op| since(&self.calls, &earlier.calls, op)).sum();
        let per = companies.max(1.0);
        format!("{companies:.0} / {channels:.0} | {:.2} | {:.2}", calls / per, (self.cpu - earlier.cpu) * 1000.0 / per)
    }

    /// AWS calls since `earlier`, by operation.
    fn calls_since(&self, earlier: &Sample) -> String {
        let counts = self.calls.iter().map(|(op, n)| (op, n - earlier.calls.get(op).copied().unwrap_or(0.0)));
        counts.filter(|(_, n)| *n > 0.0).map(|(op, n)| format!("{op} {n:.0}")).collect::<Vec<_>>().join(", ")
    }
}

async fn scrape(address: std::net::SocketAddr) -> std::io::Result<String> {
    let mut stream = tokio::net::TcpStream::connect(address).await?;
    stream.write_all(b"GET /metrics HTTP/1.0\r\nHost: bench\r\n\r\n").await?;
    let mut text = String::new();
    stream.read_to_string(&mut text).await?;
    Ok(text)
}

async fn ready(api: &Api<Company>) -> kube::Result<usize> {
    let list = api.list(&Default::default()).await?;
    Ok(list.items.iter().filter(|c| is_ready(c)).count())
}

fn is_ready(company: &Company) -> bool {
    let Some(status) = &company.status else { return false };
    status.observed_generation == company.metadata.generation
        && status.conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True")
}

/// Serves the in-memory API over HTTP, as an API server would (no authentication: loopback),
/// paging LISTs that ask for it (`limit`, `continue`) as an API server does: from one snapshot
/// taken at the first page, so a LIST of 10,000 Companies in pages of 100 costs the in-memory
/// API one listing, not a hundred.
async fn serve_api(listener: tokio::net::TcpListener, api: WatchShim) {
    use axum::response::IntoResponse;
    let snapshots = Snapshots::default();
    let forward = move |request: axum::extract::Request| {
        let (api, snapshots) = (api.clone(), snapshots.clone());
        async move {
            let (mut parts, body) = request.into_parts();
            let page = Page::asked(&mut parts.uri);
            if let Some(Page { limit, after: Some(after) }) = page {
                return snapshots.next_page(after, limit).into_response();
            }
            let body = match axum::body::to_bytes(body, 64 << 20).await {
                Ok(body) => body,
                Err(e) => return (http::StatusCode::BAD_REQUEST, e.to_string()).into_response(),
            };
            let request = http::Request::from_parts(parts, kube::client::Body::from(body.to_vec()));
            let response = match tower::ServiceExt::oneshot(api, request).await {
                Ok(response) => response,
                Err(e) => return (http::StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
            };
            let response = response.map(axum::body::Body::new);
            match page {
                None => response.into_response(),
                Some(page) => snapshots.first_page(response, page.limit).await.into_response(),
            }
        }
    };
    let app = axum::Router::new().fallback(forward);
    if let Err(e) = axum::serve(listener, app).await {
        eprintln!("the in-memory API stopped: {e}");
    }
}

/// Stops the operator's process group: the operator and, when it runs under a profiler, the
/// profiler, which an interrupt lets write its data first.
async fn stop(operator: &mut tokio::process::Child) -> anyhow::Result<()> {
    if let Some(group) = operator.id() {
        tokio::process::Command::new("kill").args(["-INT", "--", &format!("-{group}")]).status().await?;
        if tokio::time::timeout(Duration::from_secs(30), operator.wait()).await.is_ok() {
            return Ok(());
        }
        tokio::process::Command::new("kill").args(["-KILL", "--", &format!("-{group}")]).status().await?;
    }
    operator.wait().await?;
    Ok(())
}

/// The page a LIST asks for: `limit` items, after the place a `continue` token names.
struct Page {
    limit: usize,
    after: Option<Continue>,
}

/// A `continue` token: which snapshot, and how many of its items were already sent.
#[derive(Clone, Copy)]
struct Continue {
    snapshot: u64,
    sent: usize,
}

impl Page {
    /// The page a LIST asks for, taken out of its URI (the in-memory API answers whole lists).
    fn asked(uri: &mut http::Uri) -> Option<Page> {
        let query = uri.query()?;
        let value = |name: &str| query.split('&').find_map(|p| p.strip_prefix(name)?.strip_prefix('='));
        if value("watch").is_some() {
            return None;
        }
        let limit = value("limit")?.parse().ok()?;
        let after = value("continue").and_then(|token| {
            let (snapshot, sent) = token.split_once('-')?;
            Some(Continue { snapshot: snapshot.parse().ok()?, sent: sent.parse().ok()? })
        });
        let rest: Vec<&str> =
            query.split('&').filter(|p| !p.starts_with("limit=") && !p.starts_with("continue=")).collect();
        *uri = format!("{}?{}", uri.path(), rest.join("&")).parse().ok()?;
        Some(Page { limit, after })
    }
}

/// The LISTs being paged: each one's answer, kept from its first page until its last is sent.
#[derive(Clone, Default)]
struct Snapshots(std::sync::Arc<std::sync::Mutex<Snapshotted>>);

#[derive(Default)]
struct Snapshotted {
    next_id: u64,
    lists: std::collections::HashMap<u64, serde_json::Value>,
}

impl Snapshots {
    /// Keeps the whole list the in-memory API answered and sends its first page.
    async fn first_page(
        &self,
        response: http::Response<axum::body::Body>,
        limit: usize,
    ) -> (http::StatusCode, Vec<u8>) {
        let status = response.status();
        let Ok(body) = axum::body::to_bytes(response.into_body(), usize::MAX).await else {
            return (http::StatusCode::BAD_GATEWAY, b"the in-memory API's answer broke off".to_vec());
        };
        let Ok(list) = serde_json::from_slice::<serde_json::Value>(&body) else { return (status, body.to_vec()) };
        if !list["items"].is_array() {
            return (status, body.to_vec());
        }
        let snapshot = {
            let Ok(mut snapshots) = self.0.lock() else { return (http::StatusCode::INTERNAL_SERVER_ERROR, vec![]) };
            snapshots.next_id += 1;
            let id = snapshots.next_id;
            snapshots.lists.insert(id, list);
            id
        };
        self.next_page(Continue { snapshot, sent: 0 }, limit)
    }

    /// The `limit` items after `after.sent` of a snapshot, with the token for the rest; the
    /// snapshot is dropped with its last page.
    fn next_page(&self, after: Continue, limit: usize) -> (http::StatusCode, Vec<u8>) {
        let Ok(mut snapshots) = self.0.lock() else { return (http::StatusCode::INTERNAL_SERVER_ERROR, vec![]) };
        let Some(list) = snapshots.lists.get(&after.snapshot) else {
            // As an API server answers a continue token it no longer holds.
            return (http::StatusCode::GONE, br#"{"kind":"Status","code":410,"reason":"Expired"}"#.to_vec());
        };
        let items = list["items"].as_array().map(Vec::as_slice).unwrap_or_default();
        let sent = after.sent + limit;
        let mut page = serde_json::Map::new();
        for (field, value) in list.as_object().into_iter().flatten().filter(|(field, _)| *field != "items") {
            page.insert(field.clone(), value.clone());
        }
        page.insert("items".into(), items.iter().skip(after.sent).take(limit).cloned().collect());
        let mut page = serde_json::Value::Object(page);
        let token = if sent < items.len() { format!("{}-{sent}", after.snapshot) } else { String::new() };
        page["metadata"]["continue"] = token.into();
        let body = serde_json::to_vec(&page).unwrap_or_default();
        if sent >= items.len() {
            snapshots.lists.remove(&after.snapshot);
        }
        (http::StatusCode::OK, body)
    }
}

fn write_kubeconfig(api: std::net::SocketAddr) -> anyhow::Result<PathBuf> {
    let path = std::env::temp_dir().join(format!("multicomms-bench-kubeconfig-{}", std::process::id()));
    let config = format!(
        "apiVersion: v1\nkind: Config\ncurrent-context: fake\n\
         clusters: [{{name: fake, cluster: {{server: 'http://{api}'}}}}]\n\
         users: [{{name: bench, user: {{}}}}]\n\
         contexts: [{{name: fake, context: {{cluster: fake, user: bench, namespace: {NS}}}}}]\n"
    );
    std::fs::write(&path, config)?;
    Ok(path)
}

fn free_address() -> std::io::Result<std::net::SocketAddr> {
    std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()
}

/// The API server's requests so far (`apiserver_request_total`, every verb and resource).
async fn api_server_requests(client: &kube::Client) -> anyhow::Result<f64> {
    let request = http::Request::get("/metrics").body(Vec::new())?;
    let text = client.request_text(request).await?;
    let counts = text.lines().filter(|l| l.starts_with("apiserver_request_total{"));
    Ok(counts.filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok()).sum())
}

/// The bench's objects created through a real API server: its CRDs (crds/, under Helm's field
/// manager), namespace, the Channels, every Secret and the Companies (32 requests at a time).
async fn populate_cluster(client: &kube::Client, companies: usize) -> anyhow::Result<()> {
    use kube::api::{Patch, PatchParams, PostParams};
    use kube::CustomResourceExt;
    let crds: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> =
        Api::all(client.clone());
    for crd in [Company::crd(), Channel::crd()] {
        let name = crd.metadata.name.clone().unwrap_or_default();
        crds.patch(&name, &PatchParams::apply("helm").force(), &Patch::Apply(&crd)).await?;
    }
    for name in ["companies.multicomms.io", "channels.multicomms.io"] {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !crds
            .get(name)
            .await?
            .status
            .and_then(|s| s.conditions)
            .unwrap_or_default()
            .iter()
            .any(|c| c.type_ == "Established" && c.status == "True")
        {
            anyhow::ensure!(Instant::now() < deadline, "CRD {name} not Established within 30 s");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    let namespace = serde_json::from_value(serde_json::json!({"metadata": {"name": NS}}))?;
    namespaces.create(&PostParams::default(), &namespace).await?;
    let create = PostParams::default();
    for channel in example_channels()? {
        Api::<Channel>::namespaced(client.clone(), NS).create(&create, &channel).await?;
    }
    create_all(Api::<Secret>::namespaced(client.clone(), NS), example_secrets(companies)?).await?;
    let generated = generated_companies(companies)?.into_iter().map(|mut company| {
        // The server keeps its own field sets; the applied manifest (the annotation) stays.
        company.metadata.managed_fields = None;
        company.metadata.generation = None;
        company
    });
    create_all(Api::<Company>::namespaced(client.clone(), NS), generated.collect()).await?;
    Ok(())
}

/// Creates `objects` through `api`, 32 requests at a time.
async fn create_all<K>(api: Api<K>, objects: Vec<K>) -> anyhow::Result<()>
where
    K: Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    use futures::{StreamExt, TryStreamExt};
    let create = kube::api::PostParams::default();
    futures::stream::iter(objects)
        .map(|object| {
            let (api, create) = (api.clone(), create.clone());
            async move { api.create(&create, &object).await }
        })
        .buffer_unordered(32)
        .try_collect::<Vec<_>>()
        .await?;
    Ok(())
}

/// The example Company, N times under other names and ids (as bench_apply generates them).
fn generated_companies(n: usize) -> anyhow::Result<Vec<Company>> {
    (0..n)
        .map(|i| {
            let yaml = example_company_yaml(&format!("company-{i}"))
                .replace("companyId: ci-aaa-001", &format!("companyId: ci-bench-{i}"))
                .replace("companyName: Cucumber Recruitment", &format!("companyName: Bench Company {i}"));
            let mut company: Company = serde_yaml::from_str(&yaml)?;
            in_namespace(&mut company.metadata);
            as_synced_by_argo_cd(&mut company)?;
            Ok(company)
        })
        .collect()
}

/// What a cluster adds to a Company that Argo CD synced (with `kubectl apply`, its default): the
/// manifest as applied, in an annotation, and the applier's set of fields. The in-memory API
/// keeps them, and adds the operator's own field set at its first status write, so the operator
/// receives the metadata it would on a cluster.
fn as_synced_by_argo_cd(company: &mut Company) -> anyhow::Result<()> {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{FieldsV1, ManagedFieldsEntry, Time};
    use kube::ResourceExt;
    const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";
    let manifest = serde_json::to_value(&*company)?;
    let fields = serde_json::json!({
        "f:metadata": {"f:annotations": {".": {}, format!("f:{LAST_APPLIED}"): {}}},
        "f:spec": field_set(&manifest["spec"]),
    });
    company.annotations_mut().insert(LAST_APPLIED.into(), serde_json::to_string(&manifest)?);
    company.managed_fields_mut().push(ManagedFieldsEntry {
        manager: Some("argocd-controller".into()),
        operation: Some("Update".into()),
        api_version: Some("multicomms.io/v1alpha1".into()),
        fields_type: Some("FieldsV1".into()),
        fields_v1: Some(FieldsV1(fields)),
        time: Some(Time(k8s_openapi::jiff::Timestamp::now())),
        subresource: None,
    });
    Ok(())
}

/// The `fieldsV1` form of the fields of `value` (lists as one field each).
fn field_set(value: &serde_json::Value) -> serde_json::Value {
    match value {
        serde_json::Value::Object(fields) => {
            fields.iter().map(|(name, value)| (format!("f:{name}"), field_set(value))).collect()
        }
        _ => serde_json::json!({}),
    }
}

fn example_channels() -> anyhow::Result<Vec<Channel>> {
    let mut channels = Vec::new();
    for entry in std::fs::read_dir(repo("config/channels"))? {
        let document: serde_yaml::Value = serde_yaml::from_str(&std::fs::read_to_string(entry?.path())?)?;
        if document.get("kind").and_then(|k| k.as_str()) == Some("Channel") {
            let mut channel: Channel = serde_yaml::from_value(document)?;
            in_namespace(&mut channel.metadata);
            channels.push(channel);
        }
    }
    Ok(channels)
}

/// The Channels' local example Secrets and each generated Company's own (bound to it), with
/// `stringData` folded into `data` as an API server does.
fn example_secrets(companies: usize) -> anyhow::Result<Vec<Secret>> {
    let channels = std::fs::read_to_string(repo("config/examples/local/secrets.yaml"))?;
    let channels = channels.split("\n---\n").filter(|d| d.contains("multicomms.io/channel:"));
    let own = (0..companies).map(|i| example_company_secrets_yaml(&format!("company-{i}")));
    let text = channels.map(str::to_string).chain(own).collect::<Vec<_>>().join("\n---\n");
    let mut secrets = Vec::new();
    for document in serde_yaml::Deserializer::from_str(&text) {
        let mut secret: Secret = serde::Deserialize::deserialize(document)?;
        let plain = secret.string_data.take().unwrap_or_default();
        let data = secret.data.get_or_insert_with(Default::default);
        data.extend(plain.into_iter().map(|(k, v)| (k, ByteString(v.into_bytes()))));
        secret.metadata.namespace = Some(NS.into());
        secrets.push(secret);
    }
    Ok(secrets)
}

fn in_namespace(meta: &mut kube::api::ObjectMeta) {
    meta.namespace = Some(NS.into());
    meta.generation = Some(1);
}

fn repo(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(relative)
}
