//! What every scenario uses: the manifests it applies (with distinctive credentials), the
//! binaries it runs as child processes, its requests through the router, and the tally that
//! turns the conversation records and the fake providers' log into a table row.
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_sqs::types::QueueAttributeName;
use futures::StreamExt;
use multicomms_operator::cli::manifests::{self, Manifests};
use multicomms_operator::desired::secret::{CHANNEL_LABEL, COMPANY_LABEL};
use multicomms_testkit::environment::{binary, example_request, repo_root};
use multicomms_testkit::fakes::{Fakes, Service};
use multicomms_wire::conversation::{attribute, ConversationStatus, PRIMARY_CHANNEL};
use multicomms_wire::{ChannelKind, Naming};
use serde_yaml::Value as Yaml;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

/// Credential values no code or fixture contains, so a grep for them finds only leaks.
#[derive(Clone, Debug)]
pub struct Credentials {
    pub router_key: String,
    pub twilio_token: String,
    pub sendgrid_key: String,
    pub openai_key: String,
    /// The agent carol's inbox token, in each company's `<company>-agents` Secret.
    pub agent_token: String,
}

/// A Kubernetes Secret of the suite: its name, the label that binds it, its data.
pub struct KubeSecret {
    pub name: String,
    pub label: (&'static str, String),
    pub data: Vec<(&'static str, String)>,
}

impl Credentials {
    pub fn distinctive() -> Self {
        let tag = uuid::Uuid::new_v4().simple().to_string();
        let tag = &tag[..12];
        Credentials {
            router_key: format!("faultsuite-router-key-{tag}"),
            twilio_token: format!("faultsuite-twilio-token-{tag}"),
            sendgrid_key: format!("SG.faultsuite-sendgrid-{tag}"),
            openai_key: format!("sk-faultsuite-openai-{tag}"),
            agent_token: format!("faultsuite-agent-token-{tag}-0123456789"),
        }
    }

    /// The Kubernetes Secrets that [`write_manifests`]' `companies` Companies and the Channels
    /// reference, with these values, each bound to its reader by its label (the tenancy rule).
    pub fn kube_secrets(&self, companies: usize) -> Vec<KubeSecret> {
        let mut secrets = Vec::new();
        for i in 0..companies {
            let company = format!("faults-{i:04}");
            let bound = |suffix: &str, data: Vec<(&'static str, String)>| KubeSecret {
                name: format!("{company}-{suffix}"),
                label: (COMPANY_LABEL, company.clone()),
                data,
            };
            secrets.push(bound("router", vec![("apiKey", self.router_key.clone())]));
            let account = ("accountSid", multicomms_testkit::twilio::ACCOUNT_SID.to_string());
            secrets.push(bound("twilio", vec![account, ("authToken", self.twilio_token.clone())]));
            secrets.push(bound("sendgrid", vec![("apiKey", self.sendgrid_key.clone())]));
            secrets.push(bound("agents", vec![("carol", self.agent_token.clone())]));
        }
        for channel in ["whatsapp", "sms", "email"] {
            secrets.push(KubeSecret {
                name: format!("openai-{channel}"),
                label: (CHANNEL_LABEL, channel.to_string()),
                data: vec![("apiKey", self.openai_key.clone())],
            });
        }
        secrets
    }

    pub fn all(&self) -> [&str; 5] {
        [&self.router_key, &self.twilio_token, &self.sendgrid_key, &self.openai_key, &self.agent_token]
    }
}

/// The sizes of one run: `--full` is what the issue asks, the default what CI runs.
#[derive(Clone, Copy, Debug)]
pub struct Sizes {
    pub crash_messages: usize,
    pub crash_kills: usize,
    pub outage_companies: usize,
    pub outage_messages: usize,
    pub outage: Duration,
    pub provider_messages: usize,
    pub abuse_bodies: usize,
    pub abuse_idle_connections: usize,
    pub reply_conversations: usize,
    pub reply_kills: usize,
    pub controller_companies: usize,
    pub controller_kills: usize,
    pub lifecycle_recipients: usize,
}

impl Sizes {
    pub const FULL: Sizes = Sizes {
        crash_messages: 1000,
        crash_kills: 10,
        outage_companies: 500,
        outage_messages: 500,
        outage: Duration::from_secs(30),
        provider_messages: 1000,
        abuse_bodies: 100_000,
        abuse_idle_connections: 5000,
        reply_conversations: 200,
        reply_kills: 8,
        controller_companies: 200,
        controller_kills: 10,
        lifecycle_recipients: 300,
    };
    pub const SMALL: Sizes = Sizes {
        crash_messages: 150,
        crash_kills: 3,
        outage_companies: 40,
        outage_messages: 100,
        outage: Duration::from_secs(8),
        provider_messages: 150,
        abuse_bodies: 5000,
        abuse_idle_connections: 500,
        reply_conversations: 20,
        reply_kills: 3,
        controller_companies: 30,
        controller_kills: 3,
        lifecycle_recipients: 40,
    };
}

/// One line of the report. For the operator's scenarios the unit is a Company and "ok" is Ready;
/// for the others it is a request and "ok" is exactly one send.
#[derive(Debug, Default)]
pub struct Row {
    pub scenario: String,
    pub injected: String,
    pub unit: &'static str,
    pub total: usize,
    pub ok: usize,
    pub handed_off: usize,
    pub failed: usize,
    pub lost: usize,
    pub duplicated: usize,
    pub converged: Duration,
    /// Scenario-specific figures and, for a row that is not clean, what was wrong.
    pub notes: Vec<String>,
}

impl Row {
    pub fn clean(&self) -> bool {
        self.lost == 0 && self.duplicated == 0 && self.ok + self.handed_off + self.failed == self.total
    }
}

/// The scenario's working directory (logs, manifests) under target/faults/.
pub fn workdir(scenario: &str) -> PathBuf {
    let dir = repo_root().join("target").join("faults").join(scenario);
    std::fs::create_dir_all(&dir).expect("target/faults is writable");
    dir
}

/// A free loopback port.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

pub async fn wait_port(port: u16) {
    for _ in 0..300 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("nothing listens on port {port}");
}

/// Random draws, repeatable from a seed (xorshift64).
pub struct Draws(u64);

impl Draws {
    pub fn new(seed: u64) -> Self {
        Draws(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    /// A number in `0..n` (`0` when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }

    /// A moment between `min_ms` and `max_ms` from now.
    pub fn between_ms(&mut self, min_ms: u64, max_ms: u64) -> Duration {
        Duration::from_millis(min_ms + self.below(max_ms.saturating_sub(min_ms)))
    }
}

// ---- manifests ----

fn read_yaml(relative: &str) -> Vec<Yaml> {
    let text = std::fs::read_to_string(repo_root().join(relative)).expect("an example manifest");
    serde_yaml::Deserializer::from_str(&text)
        .map(|doc| <Yaml as serde::Deserialize>::deserialize(doc).expect("YAML"))
        .filter(|doc| !doc.is_null())
        .collect()
}

fn set(doc: &mut Yaml, path: &[&str], value: Yaml) {
    let mut at = doc;
    for key in &path[..path.len() - 1] {
        at = &mut at[*key];
    }
    at[path[path.len() - 1]] = value;
}

/// Writes the three example Channels, `companies` copies of
/// the example Company (`faults-0000` …, company ids `ci-f0000` …, rate limits out of the way)
/// and the Secrets with `credentials` into `dir`; returns them loaded as `apply` loads them.
pub fn write_manifests(dir: &Path, companies: usize, credentials: &Credentials) -> Manifests {
    let manifests_dir = dir.join("manifests");
    std::fs::create_dir_all(&manifests_dir).expect("manifests dir");
    let mut docs = Vec::new();
    for name in ["whatsapp", "sms", "email"] {
        for mut channel in read_yaml(&format!("config/channels/{name}.yaml")) {
            // An interrupted message returns in 20 s instead of 15 min; the receives still cover
            // a send claim's 180 s, as the operator requires. A reply trigger keeps the default
            // three receives (in 90 s instead of 905 s), so that crashes reach its last receive.
            set(&mut channel, &["spec", "queue", "visibilityTimeoutSeconds"], 20.into());
            set(&mut channel, &["spec", "queue", "maxReceiveCount"], 10.into());
            set(&mut channel, &["spec", "repliesQueue", "visibilityTimeoutSeconds"], 90.into());
            set(&mut channel, &["spec", "repliesQueue", "maxReceiveCount"], 3.into());
            docs.push(channel);
        }
    }
    let example = read_yaml("config/companies/cucumber-recruitment-clarify-cv.yaml").remove(0);
    let example = serde_yaml::to_string(&example).expect("YAML");
    for i in 0..companies {
        // Its own Secrets (`kube_secrets`): a Company reads only Secrets bound to it.
        let own = example.replace("name: cucumber-recruitment-", &format!("name: faults-{i:04}-"));
        let mut company: Yaml = serde_yaml::from_str(&own).expect("YAML");
        set(&mut company, &["metadata", "name"], format!("faults-{i:04}").into());
        set(&mut company, &["spec", "companyId"], format!("ci-f{i:04}").into());
        set(&mut company, &["spec", "projectId"], format!("pi-f{i:04}").into());
        // Secrets are named after the company and project names.
        set(&mut company, &["spec", "companyName"], format!("Faults Company {i:04}").into());
        set(&mut company, &["spec", "rateLimits", "requestsPerMinute"], 10_000_000.into());
        set(&mut company, &["spec", "rateLimits", "requestsPerDay"], 100_000_000.into());
        set(&mut company, &["spec", "rateLimits", "concurrentConversations"], 100_000_000.into());
        set(&mut company, &["spec", "replyBatchWindowSeconds"], 2.into());
        docs.push(company);
    }
    for secret in credentials.kube_secrets(companies) {
        let data: serde_yaml::Mapping = secret.data.into_iter().map(|(k, v)| (k.into(), v.into())).collect();
        let mut doc: Yaml = serde_yaml::from_str("{apiVersion: v1, kind: Secret, metadata: {}}").expect("YAML");
        set(&mut doc, &["metadata", "name"], secret.name.into());
        set(&mut doc, &["metadata", "labels", secret.label.0], secret.label.1.into());
        doc["stringData"] = Yaml::Mapping(data);
        docs.push(doc);
    }
    let text: Vec<String> = docs.iter().map(|d| serde_yaml::to_string(d).expect("YAML")).collect();
    std::fs::write(manifests_dir.join("all.yaml"), text.join("---\n")).expect("write manifests");
    manifests::load(&[manifests_dir], "multicomms-dev").expect("the suite's manifests load")
}

/// The directory [`write_manifests`] wrote (what `multicomms-operator apply -f` takes).
pub fn manifests_path(dir: &Path) -> PathBuf {
    dir.join("manifests")
}

/// Applies `manifests` in-process under `naming` (the operator's own reconcile); all must be Ready.
pub async fn apply(config: &aws_config::SdkConfig, naming: &Naming, manifests: &Manifests) {
    use multicomms_operator::reconcile::{Context, Mode};
    let ctx = Context::new(multicomms_operator::aws::Aws::new(config), naming.clone(), Mode::Apply);
    let reports = multicomms_operator::cli::batch::reconcile_manifests(&ctx, manifests.clone(), 8).await;
    let not_ready: Vec<_> = reports.iter().filter(|r| !r.is_ready()).collect();
    assert!(not_ready.is_empty(), "the suite's manifests did not apply: {not_ready:?}");
}

pub fn suite_naming(scenario: &str) -> Naming {
    Naming::new(format!("f{}{}", scenario, &uuid::Uuid::new_v4().simple().to_string()[..6]), "faults")
}

// ---- processes ----

/// A workspace binary running as a child process, its output in `<dir>/<name>-<n>.log`.
pub struct Process {
    child: tokio::process::Child,
    pub log: PathBuf,
    /// Where it serves /metrics: saved beside the log when it stops (for the leak scan).
    metrics_port: Option<u16>,
}

impl Process {
    pub fn spawn(
        dir: &Path,
        name: &str,
        args: &[String],
        env: &[(&str, String)],
        metrics_port: Option<u16>,
    ) -> Process {
        let mut n = 0;
        let log = loop {
            let log = dir.join(format!("{name}-{n}.log"));
            if !log.exists() {
                break log;
            }
            n += 1;
        };
        let out = std::fs::File::create(&log).expect("a log file");
        let err = out.try_clone().expect("a log file");
        let mut command = tokio::process::Command::new(binary(name));
        command.args(args).stdout(Stdio::from(out)).stderr(Stdio::from(err)).kill_on_drop(true);
        command.env("MULTICOMMS_LOG_FORMAT", "json");
        command.env("RUST_LOG", std::env::var("FAULTS_LOG").unwrap_or_else(|_| "info".into()));
        for (key, value) in env {
            command.env(key, value);
        }
        let child = command.spawn().unwrap_or_else(|e| panic!("{name} did not start: {e}"));
        Process { child, log, metrics_port }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Waits for the process to exit; its exit code.
    pub async fn wait(mut self) -> Option<i32> {
        self.child.wait().await.ok().and_then(|status| status.code())
    }

    /// SIGKILL: no shutdown, no cleanup, as when a node dies.
    pub async fn kill(mut self) {
        let _ = self.child.kill().await;
    }

    /// SIGTERM, then wait: the binary's graceful shutdown.
    pub async fn stop(mut self) {
        if let Some(port) = self.metrics_port {
            let metrics = reqwest::get(format!("http://127.0.0.1:{port}/metrics")).await;
            if let Ok(text) = match metrics {
                Ok(response) => response.text().await,
                Err(e) => Err(e),
            } {
                let _ = std::fs::write(self.log.with_extension("metrics"), text);
            }
        }
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill").arg("-TERM").arg(pid.to_string()).status();
        }
        let _ = tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await;
        let _ = self.child.kill().await;
    }
}

/// The environment a binary gets: the suite's names and an AWS endpoint (the emulator or a
/// fault proxy in front of it).
pub fn aws_env(naming: &Naming, endpoint: &str) -> Vec<(&'static str, String)> {
    vec![
        ("MULTICOMMS_PREFIX", naming.prefix.clone()),
        ("MULTICOMMS_ENV", naming.env.clone()),
        ("AWS_ENDPOINT_URL", endpoint.to_string()),
    ]
}

/// The public URL prefix the suite's router signs its inbound webhooks for.
pub const PUBLIC_BASE_URL: &str = "https://hooks.faults.test";

pub fn router(dir: &Path, naming: &Naming, endpoint: &str, port: u16) -> Process {
    let metrics_port = free_port();
    let args = [
        "--address".into(),
        format!("127.0.0.1:{port}"),
        "--metrics-address".into(),
        format!("127.0.0.1:{metrics_port}"),
        "--request-timeout-ms".into(),
        "30000".into(),
        "--public-base-url".into(),
        PUBLIC_BASE_URL.into(),
    ];
    Process::spawn(dir, "multicomms-router", &args, &aws_env(naming, endpoint), Some(metrics_port))
}

/// How a processor is run in the suite: short timeouts and retries so faults resolve in seconds.
pub struct ProcessorRun<'a> {
    pub dir: &'a Path,
    pub naming: &'a Naming,
    pub endpoint: &'a str,
    pub fakes: &'a Fakes,
    pub channel: ChannelKind,
    pub replies: bool,
    pub concurrency: usize,
    pub http_timeout_seconds: u64,
}

impl ProcessorRun<'_> {
    pub fn spawn(&self) -> (Process, u16) {
        let port = free_port();
        let mut args: Vec<String> = [
            "--channel",
            self.channel.as_str(),
            "--flow",
            if self.replies { "replies" } else { "initial" },
            "--lease-seconds",
            "10",
            "--retry-base-seconds",
            "1",
            "--heartbeat-seconds",
            "2",
        ]
        .map(str::to_string)
        .to_vec();
        args.extend([
            "--concurrency".into(),
            self.concurrency.to_string(),
            "--http-timeout-seconds".into(),
            self.http_timeout_seconds.to_string(),
            "--address".into(),
            format!("127.0.0.1:{port}"),
            "--openai-base-url".into(),
            self.fakes.openai_url(),
            "--twilio-base-url".into(),
            self.fakes.url.clone(),
            "--sendgrid-base-url".into(),
            self.fakes.url.clone(),
            // Each Twilio send asks for status callbacks, which the fakes owe (not post).
            "--public-base-url".into(),
            PUBLIC_BASE_URL.into(),
        ]);
        let env = aws_env(self.naming, self.endpoint);
        (Process::spawn(self.dir, "multicomms-processor", &args, &env, Some(port)), port)
    }
}

// ---- requests ----

/// How long a scenario waits for its work to settle before it counts what did not as lost.
pub const CONVERGE_LIMIT: Duration = Duration::from_secs(900);

/// Where most scenarios start: the example Company applied under a fresh naming, the fake
/// providers (AI 300 ms, Twilio 100 ms), and WhatsApp requests accepted by the router binary,
/// waiting on the channel's queue.
pub struct Queued {
    pub dir: PathBuf,
    pub naming: Naming,
    pub fakes: Fakes,
    /// The recipients whose request the router accepted.
    pub recipients: Vec<String>,
}

impl Queued {
    pub async fn start(
        config: &aws_config::SdkConfig,
        endpoint: &str,
        scenario: &str,
        requests: usize,
        credentials: &Credentials,
    ) -> Queued {
        let dir = workdir(scenario);
        let naming = suite_naming(&scenario[..1]);
        apply(config, &naming, &write_manifests(&dir, 1, credentials)).await;
        let fakes = Fakes::start("127.0.0.1:0").await.expect("fakes");
        fakes.set_latency(Service::OpenAi, Duration::from_millis(300));
        fakes.set_latency(Service::Twilio, Duration::from_millis(100));
        let port = free_port();
        let router = router(&dir, &naming, endpoint, port);
        wait_port(port).await;
        let recipients = post_requests(port, &credentials.router_key, 0, requests).await;
        router.stop().await;
        Queued { dir, naming, fakes, recipients }
    }

    /// The WhatsApp processor that drains them (concurrency 64, 5 s HTTP timeout), its AWS calls
    /// to `endpoint`.
    pub fn processor<'a>(&'a self, endpoint: &'a str) -> ProcessorRun<'a> {
        ProcessorRun {
            dir: &self.dir,
            naming: &self.naming,
            endpoint,
            fakes: &self.fakes,
            channel: ChannelKind::Whatsapp,
            replies: false,
            concurrency: 64,
            http_timeout_seconds: 5,
        }
    }

    /// Waits until every request settled ([`converge`], at most [`CONVERGE_LIMIT`]), then counts
    /// them into `row`.
    pub async fn settle(&self, config: &aws_config::SdkConfig, started: Instant, row: &mut Row) {
        let channel = ChannelKind::Whatsapp;
        row.converged = converge(config, &self.naming, channel, &self.recipients, started, CONVERGE_LIMIT).await;
        tally_first_messages(config, &self.naming, channel, &self.fakes, &self.recipients, row).await;
    }
}

/// The recipient of request `i` (each request its own, so the provider's log maps to records).
pub fn recipient(i: usize) -> String {
    format!("+4477{i:08}")
}

/// Posts `count` WhatsApp requests for company `ci-f0000` (recipients [`recipient`] from
/// `first`), 32 at a time; returns the recipients whose request the router accepted.
pub async fn post_requests(router_port: u16, key: &str, first: usize, count: usize) -> Vec<String> {
    let client = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{router_port}/initiate-conversation");
    let accepted = futures::stream::iter(first..first + count)
        .map(|i| {
            let (client, url) = (client.clone(), url.clone());
            async move {
                let mut body = example_request();
                body["company_data"] = serde_json::json!({"company_id": "ci-f0000", "project_id": "pi-f0000"});
                body["request_data"]["request_id"] = format!("550e8400-e29b-41d4-a716-{i:012x}").into();
                body["recipient_data"]["recipient_tel"] = recipient(i).into();
                let response = client.post(&url).header("x-api-key", key).body(body.to_string()).send().await;
                match response {
                    Ok(r) if r.status() == 200 => Some(recipient(i)),
                    Ok(r) => {
                        eprintln!("request {i}: {} {}", r.status(), r.text().await.unwrap_or_default());
                        None
                    }
                    Err(e) => {
                        eprintln!("request {i}: {e}");
                        None
                    }
                }
            }
        })
        .buffer_unordered(32)
        .filter_map(|r| async move { r })
        .collect()
        .await;
    accepted
}

// ---- the tally ----

/// Every item of a table (all pages of a Scan).
pub async fn scan_all(config: &aws_config::SdkConfig, table: &str) -> Vec<HashMap<String, AttributeValue>> {
    let dynamodb = aws_sdk_dynamodb::Client::new(config);
    let mut all = Vec::new();
    let mut start = None;
    loop {
        let page = dynamodb.scan().table_name(table).set_exclusive_start_key(start).send().await;
        let page =
            page.unwrap_or_else(|e| panic!("scan {table}: {}", aws_sdk_dynamodb::error::DisplayErrorContext(&e)));
        all.extend(page.items().iter().cloned());
        start = page.last_evaluated_key().cloned();
        if start.is_none() {
            return all;
        }
    }
}

/// Every conversation record of the table: primary channel → (status, handed off).
pub async fn records(config: &aws_config::SdkConfig, naming: &Naming) -> HashMap<String, (String, bool)> {
    let text = |item: &HashMap<String, AttributeValue>, name: &str| match item.get(name) {
        Some(AttributeValue::S(s)) => s.clone(),
        _ => String::new(),
    };
    let items = scan_all(config, &naming.conversations_table()).await;
    items
        .iter()
        .map(|item| {
            let handed_off = matches!(item.get(attribute::HAND_OFF), Some(AttributeValue::Bool(true)));
            (text(item, PRIMARY_CHANNEL), (text(item, attribute::STATUS), handed_off))
        })
        .collect()
}

/// Messages waiting or in flight on a queue.
pub async fn depth(config: &aws_config::SdkConfig, queue: &str) -> u64 {
    let sqs = aws_sdk_sqs::Client::new(config);
    let Ok(url) = sqs.get_queue_url().queue_name(queue).send().await else { return 0 };
    let attributes = sqs
        .get_queue_attributes()
        .queue_url(url.queue_url().unwrap_or_default())
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesDelayed)
        .send()
        .await;
    let Ok(attributes) = attributes else { return 0 };
    attributes.attributes().map(|a| a.values().filter_map(|v| v.parse::<u64>().ok()).sum()).unwrap_or(0)
}

fn is_final(status: &str) -> bool {
    let unfinished = [ConversationStatus::Initiated, ConversationStatus::Processing, ConversationStatus::Sending];
    !status.is_empty() && !unfinished.iter().any(|s| s.to_string() == status)
}

/// Accepted sends per recipient at the fake provider (WhatsApp's `whatsapp:` prefix dropped).
pub fn sends(fakes: &Fakes) -> BTreeMap<String, usize> {
    let mut per = BTreeMap::new();
    for sent in fakes.sent() {
        let to = sent.field("To").unwrap_or_default().trim_start_matches("whatsapp:").to_string();
        *per.entry(to).or_default() += 1;
    }
    per
}

/// Waits until the queue and its DLQ are empty and every accepted request's record is final (or
/// `limit` passes); returns how long that took. The queue is watched first: a full scan of the
/// records is the emulator's most expensive call, and polling it would slow what it waits for.
pub async fn converge(
    config: &aws_config::SdkConfig,
    naming: &Naming,
    channel: ChannelKind,
    recipients: &[String],
    started: Instant,
    limit: Duration,
) -> Duration {
    while started.elapsed() < limit {
        let queues =
            depth(config, &naming.channel_queue(channel)).await + depth(config, &naming.channel_dlq(channel)).await;
        if queues == 0 {
            let records = records(config, naming).await;
            if recipients.iter().all(|r| records.get(r).is_some_and(|(status, _)| is_final(status))) {
                break;
            }
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    started.elapsed()
}

/// The row for first messages: each accepted request must end as exactly one send with
/// `initial_message_sent`, or a hand-off (at most one send), or a failure status with none.
pub async fn tally_first_messages(
    config: &aws_config::SdkConfig,
    naming: &Naming,
    channel: ChannelKind,
    fakes: &Fakes,
    recipients: &[String],
    row: &mut Row,
) {
    let records = records(config, naming).await;
    let sends = sends(fakes);
    row.unit = "requests";
    row.total = recipients.len();
    let mut wrong = BTreeMap::<String, usize>::new();
    for recipient in recipients {
        let sent = sends.get(recipient).copied().unwrap_or(0);
        if sent > 1 {
            row.duplicated += 1;
        }
        let Some((status, handed_off)) = records.get(recipient) else {
            row.lost += 1;
            *wrong.entry("no record".into()).or_default() += 1;
            continue;
        };
        let sent_status = status == &ConversationStatus::InitialMessageSent.to_string();
        match (is_final(status), sent_status, *handed_off, sent) {
            (true, true, _, 1) => row.ok += 1,
            (true, false, true, 0 | 1) => row.handed_off += 1,
            (true, false, false, 0) if status.starts_with("failed") => row.failed += 1,
            _ => {
                row.lost += 1;
                *wrong.entry(format!("{status} with {sent} sends")).or_default() += 1;
            }
        }
    }
    let left = depth(config, &naming.channel_queue(channel)).await + depth(config, &naming.channel_dlq(channel)).await;
    if left > 0 {
        row.notes.push(format!("{left} messages left on the queue or its DLQ"));
        row.lost = row.lost.max(1);
    }
    for (what, n) in wrong {
        row.notes.push(format!("{n} × {what}"));
    }
    let ai_calls = fakes.requests(Service::OpenAi).len();
    row.notes.push(format!("{ai_calls} AI calls for {} requests", recipients.len()));
}
