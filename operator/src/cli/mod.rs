//! The command line: `apply` and `plan` a checkout's manifests against AWS ([`batch`]), `run` the
//! in-cluster controller, print the CRDs. `main` parses the flags and calls [`run`].
pub mod batch;
pub mod manifests;
pub mod output;

use crate::controller::{self, leader::LeaderElector, State};
use crate::reconcile::validate::AiEndpoints;
use crate::reconcile::{AdoptionPolicy, Context, Mode};
use crate::{aws, crd};
use anyhow::Context as _;
use clap::{Parser, Subcommand};
use multicomms_service::logging::LogFormat;
use multicomms_service::threads::Threads;
use multicomms_wire::{Naming, NamingArgs};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

#[derive(Parser)]
#[command(version, about = "Reconciles multicomms Company and Channel resources into AWS")]
pub struct Cli {
    #[command(flatten)]
    pub naming: NamingArgs,
    /// Namespaces whose resources may adopt AWS objects that carry no ownership marker (with the
    /// multicomms.io/adopt annotation); `*` for all. Default: none.
    #[arg(long, env = "MULTICOMMS_ADOPT_NAMESPACES", value_delimiter = ',', global = true)]
    pub adopt_namespaces: Vec<String>,
    /// Hosts a Company may name in `ai.baseUrl` (its own OpenAI-compatible endpoint); default:
    /// none, so every Company's AI requests go to the processors' endpoint.
    #[arg(long, env = "MULTICOMMS_AI_ENDPOINT_HOSTS", value_delimiter = ',', global = true)]
    pub ai_endpoint_hosts: Vec<String>,
    /// Development only: let a Company's `ai.baseUrl` name this machine (localhost).
    #[arg(long, env = "MULTICOMMS_ALLOW_LOOPBACK_AI_ENDPOINTS", global = true)]
    pub allow_loopback_ai_endpoints: bool,
    /// Log format on stderr.
    #[arg(long, env = "MULTICOMMS_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
    #[command(flatten)]
    pub threads: Threads,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Make AWS match the manifests under a directory (a git checkout); exits 1 unless all are Ready.
    Apply(Target),
    /// Show what `apply` would change, per resource and field; changes nothing.
    Plan {
        #[command(flatten)]
        target: Target,
        /// Exit 2 when there are changes (0: none, 1: errors), like `terraform plan`.
        #[arg(long)]
        detailed_exitcode: bool,
    },
    /// Run in a cluster: reconcile Company and Channel resources as they change, and resync
    /// them periodically. Stops cleanly on SIGTERM.
    Run(RunArgs),
    /// Print the CRDs, or write them as files into directories (crds/ and the chart's crds/).
    Crd {
        #[arg(long)]
        out: Vec<PathBuf>,
    },
}

#[derive(clap::Args)]
pub struct RunArgs {
    /// Seconds between full resyncs of each resource (jittered ±10 %); also repairs AWS drift.
    #[arg(long, env = "MULTICOMMS_RESYNC_SECONDS", default_value_t = 3600)]
    pub resync_seconds: u64,
    /// Seconds a secret found in sync stays trusted: resyncs within it skip reading secrets
    /// whose desired value is unchanged (a changed Kubernetes Secret is always written). Drift
    /// made by hand in Secrets Manager is repaired within this time; 0 reads them every resync.
    #[arg(long, env = "MULTICOMMS_SECRET_RECHECK_SECONDS", default_value_t = 43200)]
    pub secret_recheck_seconds: u64,
    /// Resources reconciled at once, per kind.
    #[arg(long, env = "MULTICOMMS_CONCURRENCY", default_value_t = 8)]
    pub concurrency: u16,
    /// Elect a leader on a Lease so several replicas can run with one active.
    #[arg(long, env = "MULTICOMMS_LEADER_ELECTION", default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_election: bool,
    /// Namespace of the Lease (the operator's own namespace in a cluster).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    pub lease_namespace: String,
    /// Namespaces whose Companies and Channels this operator reconciles (comma-separated; `*`:
    /// all). Empty: its own (`--lease-namespace`). Two environments on one cluster each watch
    /// their own.
    #[arg(long, env = "MULTICOMMS_WATCH_NAMESPACES", value_delimiter = ',')]
    pub watch_namespaces: Vec<String>,
    /// Seconds between lease renewals; the lease lasts three times as long.
    #[arg(long, default_value_t = 5)]
    pub lease_renew_seconds: u64,
    /// Where /metrics, /healthz and /readyz are served.
    #[arg(long, env = "MULTICOMMS_METRICS_ADDRESS", default_value = "0.0.0.0:8080")]
    pub metrics_address: std::net::SocketAddr,
    /// This replica's name in Events and the Lease (the Deployment sets the pod's name).
    #[arg(long, env = "POD_NAME")]
    pub pod_name: Option<String>,
    #[command(flatten)]
    pub workers: WorkerArgs,
}

/// The processor Deployments the controller runs for each Channel.
#[derive(clap::Args, Debug, Clone)]
pub struct WorkerArgs {
    /// Run each Channel's processors (off: they are deployed some other way).
    #[arg(long = "manage-workers", env = "MULTICOMMS_MANAGE_WORKERS", default_value_t = true, action = clap::ArgAction::Set)]
    pub manage: bool,
    /// The runtime image the processors run.
    #[arg(long = "worker-image", env = "MULTICOMMS_WORKER_IMAGE",
          default_value = concat!("ghcr.io/multicomms/multicomms-runtime:", env!("CARGO_PKG_VERSION")))]
    pub image: String,
    /// The processors' ServiceAccount (annotate it with their IAM role).
    #[arg(
        long = "worker-service-account",
        env = "MULTICOMMS_WORKER_SERVICE_ACCOUNT",
        default_value = "multicomms-processor"
    )]
    pub service_account: String,
    /// Provider base URLs given to the processors (empty: the providers' public APIs).
    #[arg(long = "worker-openai-base-url", env = "MULTICOMMS_WORKER_OPENAI_BASE_URL")]
    pub openai_base_url: Option<String>,
    #[arg(long = "worker-twilio-base-url", env = "MULTICOMMS_WORKER_TWILIO_BASE_URL")]
    pub twilio_base_url: Option<String>,
    #[arg(long = "worker-sendgrid-base-url", env = "MULTICOMMS_WORKER_SENDGRID_BASE_URL")]
    pub sendgrid_base_url: Option<String>,
    /// The router's public URL, given to the processors: each Twilio send asks for its status
    /// callbacks there (the chart passes `router.publicBaseUrl`).
    #[arg(long = "worker-public-base-url", env = "MULTICOMMS_WORKER_PUBLIC_BASE_URL")]
    pub public_base_url: Option<String>,
}

impl WorkerArgs {
    /// The settings, or `None` when workers are not managed. The processors talk to the AWS
    /// region and endpoint the operator does.
    pub fn settings(&self, naming: &Naming) -> Option<crate::desired::workers::WorkerSettings> {
        self.manage.then(|| crate::desired::workers::WorkerSettings {
            image: self.image.clone(),
            service_account: self.service_account.clone(),
            naming: naming.clone(),
            version: env!("CARGO_PKG_VERSION").into(),
            openai_base_url: self.openai_base_url.clone(),
            twilio_base_url: self.twilio_base_url.clone(),
            sendgrid_base_url: self.sendgrid_base_url.clone(),
            public_base_url: self.public_base_url.clone(),
            aws_region: std::env::var("AWS_REGION").ok(),
            aws_endpoint_url: std::env::var("AWS_ENDPOINT_URL").ok(),
        })
    }
}

#[derive(clap::Args)]
pub struct Target {
    /// Directories (searched recursively) or files of YAML manifests; repeatable.
    #[arg(short = 'f', long = "filename", required = true)]
    pub paths: Vec<PathBuf>,
    /// Namespace for resources that name none.
    #[arg(short, long, default_value = "default")]
    pub namespace: String,
    /// Resources reconciled at once.
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// `table`: changes and a result table; `json`: per resource, its conditions, changes and
    /// outputs (queue URLs, ARNs, secret version ids, record version).
    #[arg(short, long, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
    /// Also list what the in-cluster controller would change in each Channel's worker
    /// Deployments, against the cluster of the current kubeconfig (read-only).
    #[arg(long)]
    pub workloads: bool,
    #[command(flatten)]
    pub workers: WorkerArgs,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    Table,
    Json,
}

/// Carries out the command; the exit code says how it went.
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let naming = cli.naming.naming();
    let policy = Policy {
        adoption: AdoptionPolicy::namespaces(cli.adopt_namespaces),
        ai_endpoints: AiEndpoints::new(cli.ai_endpoint_hosts, cli.allow_loopback_ai_endpoints),
    };
    match cli.command {
        Command::Crd { out } => write_crds(out),
        Command::Run(args) => run_controller(naming, policy, args).await,
        Command::Apply(target) => reconcile_checkout(naming, policy, target, Mode::Apply, false).await,
        Command::Plan { target, detailed_exitcode } => {
            reconcile_checkout(naming, policy, target, Mode::Plan, detailed_exitcode).await
        }
    }
}

/// What the platform allows its resources, the same for `run`, `apply` and `plan`.
struct Policy {
    adoption: AdoptionPolicy,
    ai_endpoints: AiEndpoints,
}

impl Policy {
    fn context(self, naming: Naming, mode: Mode, aws: aws::Aws) -> Context {
        Context::new(aws, naming, mode).adopting_in(self.adoption).allowing_ai_endpoints(self.ai_endpoints)
    }
}

async fn run_controller(naming: Naming, policy: Policy, args: RunArgs) -> anyhow::Result<ExitCode> {
    let client = kube::Client::try_default().await.context("connecting to the Kubernetes API")?;
    let workers = args.workers.settings(&naming);
    let engine = policy
        .context(naming, Mode::Apply, aws::Aws::new(&aws::load_config().await))
        .rechecking_secrets_every(Duration::from_secs(args.secret_recheck_seconds));
    let identity = controller::leader::identity(args.pod_name.clone());
    let resync = Duration::from_secs(args.resync_seconds);
    let watch = controller::Watch::parse(args.watch_namespaces.clone(), &args.lease_namespace);
    let mut state =
        State::new(engine, client.clone(), resync, Some(identity.clone())).watching(watch, &args.lease_namespace);
    if let Some(workers) = workers {
        state = state.with_workers(workers);
    }
    let state = Arc::new(state);
    let listener = tokio::net::TcpListener::bind(args.metrics_address)
        .await
        .with_context(|| format!("binding the metrics endpoint to {}", args.metrics_address))?;
    tokio::spawn(controller::metrics::serve(state.metrics.clone(), listener));
    state.metrics.ready.store(true, std::sync::atomic::Ordering::Relaxed);
    tracing::info!(args.resync_seconds, args.concurrency, args.leader_election, %args.metrics_address, watch = ?state.watch, "controller starting");
    if !args.leader_election {
        controller::run(state, args.concurrency).await;
        return Ok(ExitCode::SUCCESS);
    }
    let renew = Duration::from_secs(args.lease_renew_seconds.max(1));
    let elector = LeaderElector::new(client, &args.lease_namespace, &state.manager, &identity, renew * 3);
    if let Err(error) = controller::run_as_leader(state, args.concurrency, elector, renew).await {
        tracing::error!(%error, "stopped leading; exiting so that a standby takes over");
        return Ok(ExitCode::from(1));
    }
    tracing::info!("controller stopped");
    Ok(ExitCode::SUCCESS)
}

async fn reconcile_checkout(
    naming: Naming,
    policy: Policy,
    target: Target,
    mode: Mode,
    detailed_exitcode: bool,
) -> anyhow::Result<ExitCode> {
    let manifests = manifests::load(&target.paths, &target.namespace)?;
    for ignored in &manifests.ignored {
        tracing::debug!(document = %ignored, "not a multicomms resource; passed over");
    }
    let ctx = policy.context(naming, mode, aws::Aws::new(&aws::load_config().await));
    // The Channels again after the reconcile, which consumes the manifests (few: cloned).
    let channels = if target.workloads { manifests.channels.clone() } else { Vec::new() };
    let reports = batch::reconcile_manifests(&ctx, manifests, target.concurrency).await;
    match target.output {
        OutputFormat::Table => {
            print!("{}", output::changes(&reports, mode));
            println!();
            print!("{}", output::result_table(&reports, mode));
        }
        OutputFormat::Json => println!("{}", output::json(&reports)?),
    }
    if target.workloads {
        print!("{}", plan_workloads(&channels, &target.workers, &ctx.naming).await?);
    }
    tracing::info!(aws_calls = ctx.aws.calls.total(), aws_writes = ctx.aws.calls.writes(), "done");
    let failed = reports.iter().any(|r| !r.is_ready());
    let changed = reports.iter().any(|r| !r.changes.is_empty());
    Ok(match (failed, detailed_exitcode && changed) {
        (true, _) => ExitCode::from(1),
        (false, true) => ExitCode::from(2),
        (false, false) => ExitCode::SUCCESS,
    })
}

/// The worker Deployment changes per Channel, read against the current kubeconfig's cluster.
async fn plan_workloads(channels: &[crd::Channel], workers: &WorkerArgs, naming: &Naming) -> anyhow::Result<String> {
    let Some(settings) = workers.settings(naming) else { return Ok(String::new()) };
    let client = kube::Client::try_default().await.context("connecting to the Kubernetes API for --workloads")?;
    let mut out = String::from("\nWorkloads (the in-cluster controller applies them):\n");
    for channel in channels {
        let existing = controller::kube_io::existing_workers(&client, channel).await?;
        // Fixed replicas as planned; with KEDA the cluster's autoscaler owns them.
        let desired = crate::desired::workers::deployments(channel, &settings, false);
        let changes = crate::desired::workers::changes(&desired, &existing);
        use kube::ResourceExt;
        let name = format!("Channel {}/{}", channel.namespace().unwrap_or_default(), channel.name_any());
        if changes.is_empty() {
            let _ = std::fmt::Write::write_fmt(&mut out, format_args!("{name}: in sync\n"));
        }
        for change in changes {
            let _ = std::fmt::Write::write_fmt(&mut out, format_args!("{name}: {change}\n"));
        }
    }
    Ok(out)
}

fn write_crds(dirs: Vec<PathBuf>) -> anyhow::Result<ExitCode> {
    let crds = crd::crd_yaml()?;
    if dirs.is_empty() {
        for (_, yaml) in &crds {
            print!("---\n{yaml}");
        }
    }
    for dir in dirs {
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        for (file, yaml) in &crds {
            let path = dir.join(file);
            std::fs::write(&path, yaml).with_context(|| format!("writing {}", path.display()))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
