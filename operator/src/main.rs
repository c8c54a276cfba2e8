//! `multicomms-operator`: `apply` and `plan` a directory of manifests against AWS, `run` as the
//! in-cluster controller (the same reconcile, driven by the Kubernetes API), or print the CRDs.
use anyhow::Context as _;
use clap::{Parser, Subcommand};
use multicomms_operator::reconcile::{self, AdoptionPolicy, Context, Mode};
use multicomms_operator::{aws, controller, crd, manifests, output};
use multicomms_wire::{names::DEFAULT_PREFIX, Naming};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(version, about = "Reconciles multicomms Company and Channel resources into AWS")]
struct Cli {
    /// Prefix of every AWS resource name.
    #[arg(long, env = "MULTICOMMS_PREFIX", default_value = DEFAULT_PREFIX, global = true)]
    prefix: String,
    /// Environment suffix of every AWS resource name (dev, prod, ...).
    #[arg(long, env = "MULTICOMMS_ENV", default_value = "dev", global = true)]
    env: String,
    /// Namespaces whose resources may adopt AWS objects that carry no ownership marker (with the
    /// multicomms.io/adopt annotation); `*` for all. Default: none.
    #[arg(long, env = "MULTICOMMS_ADOPT_NAMESPACES", value_delimiter = ',', global = true)]
    adopt_namespaces: Vec<String>,
    /// Log format on stderr.
    #[arg(long, env = "MULTICOMMS_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
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
    Run {
        /// Seconds between full resyncs of each resource (jittered ±10 %); also repairs AWS drift.
        #[arg(long, env = "MULTICOMMS_RESYNC_SECONDS", default_value_t = 3600)]
        resync_seconds: u64,
        /// Resources reconciled at once, per kind.
        #[arg(long, env = "MULTICOMMS_CONCURRENCY", default_value_t = 8)]
        concurrency: u16,
        /// Elect a leader on a Lease so several replicas can run with one active.
        #[arg(long, env = "MULTICOMMS_LEADER_ELECTION", default_value_t = true, action = clap::ArgAction::Set)]
        leader_election: bool,
        /// Namespace of the Lease (the operator's own namespace in a cluster).
        #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
        lease_namespace: String,
        /// Seconds between lease renewals; the lease lasts three times as long.
        #[arg(long, default_value_t = 5)]
        lease_renew_seconds: u64,
        /// Where /metrics, /healthz and /readyz are served.
        #[arg(long, env = "MULTICOMMS_METRICS_ADDRESS", default_value = "0.0.0.0:8080")]
        metrics_address: std::net::SocketAddr,
    },
    /// Print the CRDs, or write them as files into directories (crds/ and the chart's crds/).
    Crd {
        #[arg(long)]
        out: Vec<PathBuf>,
    },
}

#[derive(clap::Args)]
struct Target {
    /// Directories (searched recursively) or files of YAML manifests; repeatable.
    #[arg(short = 'f', long = "filename", required = true)]
    paths: Vec<PathBuf>,
    /// Namespace for resources that name none.
    #[arg(short, long, default_value = "default")]
    namespace: String,
    /// Resources reconciled at once.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// `table`: changes and a result table; `json`: per resource, its conditions, changes and
    /// outputs (queue URLs, ARNs, secret version ids, record version).
    #[arg(short, long, value_enum, default_value_t = Output::Table)]
    output: Output,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Output {
    Table,
    Json,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    match run(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let naming = Naming::new(cli.prefix, cli.env);
    let adoption = AdoptionPolicy::namespaces(cli.adopt_namespaces);
    let (target, mode, detailed) = match cli.command {
        Command::Crd { out } => return write_crds(out),
        Command::Run {
            resync_seconds,
            concurrency,
            leader_election,
            lease_namespace,
            lease_renew_seconds,
            metrics_address,
        } => {
            let client = kube::Client::try_default().await.context("connecting to the Kubernetes API")?;
            let engine =
                Context::new(aws::Aws::new(&aws::load_config().await), naming, Mode::Apply).adopting_in(adoption);
            let resync = std::time::Duration::from_secs(resync_seconds);
            let state = std::sync::Arc::new(controller::State::new(engine, client.clone(), resync));
            let listener = tokio::net::TcpListener::bind(metrics_address)
                .await
                .with_context(|| format!("binding the metrics endpoint to {metrics_address}"))?;
            let metrics = state.metrics.clone();
            tokio::spawn(async move {
                if let Err(error) = controller::metrics::serve(metrics, listener).await {
                    tracing::error!(%error, "metrics endpoint failed");
                }
            });
            state.metrics.ready.store(true, std::sync::atomic::Ordering::Relaxed);
            tracing::info!(resync_seconds, concurrency, leader_election, %metrics_address, "controller starting");
            if leader_election {
                let identity = controller::leader::identity(std::env::var("POD_NAME").ok());
                let renew = std::time::Duration::from_secs(lease_renew_seconds.max(1));
                let elector = controller::leader::LeaderElector::new(
                    client,
                    &lease_namespace,
                    controller::MANAGER,
                    &identity,
                    renew * 3,
                );
                if let Err(error) = controller::run_as_leader(state, concurrency, elector, renew).await {
                    tracing::error!(%error, "stopped leading; exiting so that a standby takes over");
                    return Ok(ExitCode::from(1));
                }
            } else {
                controller::run(state, concurrency).await;
            }
            tracing::info!("controller stopped");
            return Ok(ExitCode::SUCCESS);
        }
        Command::Apply(target) => (target, Mode::Apply, false),
        Command::Plan { target, detailed_exitcode } => (target, Mode::Plan, detailed_exitcode),
    };
    let manifests = manifests::load(&target.paths, &target.namespace)?;
    for ignored in &manifests.ignored {
        tracing::debug!(document = %ignored, "not a multicomms resource; passed over");
    }
    let ctx = Context::new(aws::Aws::new(&aws::load_config().await), naming, mode).adopting_in(adoption);
    let reports = reconcile::reconcile_manifests(&ctx, &manifests, target.concurrency).await;
    match target.output {
        Output::Table => {
            print!("{}", output::changes(&reports, mode));
            println!();
            print!("{}", output::result_table(&reports, mode));
        }
        Output::Json => println!("{}", output::json(&reports)?),
    }
    tracing::info!(aws_calls = ctx.aws.calls.total(), aws_writes = ctx.aws.calls.writes(), "done");

    let failed = reports.iter().any(|r| !r.is_ready());
    let changed = reports.iter().any(|r| !r.changes.is_empty());
    Ok(match (failed, detailed && changed) {
        (true, _) => ExitCode::from(1),
        (false, true) => ExitCode::from(2),
        (false, false) => ExitCode::SUCCESS,
    })
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

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,multicomms_operator=info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().with_current_span(true).with_span_list(false).init(),
    }
}
