//! `multicomms-processor --channel whatsapp|sms|email [--flow initial|replies]`: works the
//! channel's queue (first messages) or its replies queue (the AI's replies);
//! `multicomms-processor --flow events` delivers the companies' events to their webhooks from
//! the environment's client-events queue. Configured
//! like the router (prefix and environment name the queue and tables) plus the standard AWS SDK
//! environment; provider base URLs are flags so tests and demos can point them at fakes.
use anyhow::Context;
use clap::Parser;
use multicomms_runtime::events::EventDelivery;
use multicomms_runtime::processor::pipeline::{Processor, ProcessorConfig};
use multicomms_runtime::replies::sweep;
use multicomms_runtime::replies::turn::{ReplyConfig, ReplyProcessor};
use multicomms_runtime::shared::{ai, senders};
use multicomms_runtime::worker::pod::PodConfig;
use multicomms_runtime::worker::queue::{self, QueueFacts, Settings, Worker};
use multicomms_service::http::{health_routes, ConnectionLimits};
use multicomms_service::logging::{self, LogFormat};
use multicomms_service::threads::Threads;
use multicomms_service::{aws, shutdown::shutdown_signal};
use multicomms_wire::{ChannelKind, NamingArgs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Which queue the processor works.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Flow {
    /// The channel queue: first messages of conversations.
    Initial,
    /// The channel's replies queue: the AI's answers to the recipient's messages.
    Replies,
    /// The environment's client-events queue: the companies' events, posted to their webhooks
    /// (no channel).
    Events,
}

#[derive(Parser)]
#[command(version, about = "multicomms processor: channel queue → AI → provider")]
struct Cli {
    /// The channel whose queue is worked (required by the initial and replies flows).
    #[arg(long, env = "MULTICOMMS_CHANNEL", value_enum)]
    channel: Option<ChannelKind>,
    #[arg(long, env = "MULTICOMMS_FLOW", value_enum, default_value_t = Flow::Initial)]
    flow: Flow,
    /// Replies: seconds a reply turn's lease on a conversation lasts without renewal (a crashed
    /// turn blocks the conversation no longer than this).
    #[arg(long, env = "MULTICOMMS_LEASE_SECONDS", default_value_t = 60)]
    lease_seconds: u64,
    /// Replies: seconds between sweeps for staged messages with no trigger on its way (older
    /// than this; e.g. their turn crashed on its trigger's last receive).
    #[arg(long, env = "MULTICOMMS_SWEEP_SECONDS", default_value_t = 30)]
    sweep_seconds: u64,
    #[command(flatten)]
    naming: NamingArgs,
    /// `processor_version` on new records ("processor-" is dropped, as in the original).
    #[arg(long = "processor-version", env = "VERSION", default_value = concat!("processor-", env!("CARGO_PKG_VERSION")))]
    processor_version: String,
    /// Messages worked on at once.
    #[arg(long, env = "MULTICOMMS_CONCURRENCY", default_value_t = 16)]
    concurrency: usize,
    /// Seconds between visibility extensions; default a third of the queue's visibility timeout.
    #[arg(long, env = "MULTICOMMS_HEARTBEAT_SECONDS")]
    heartbeat_seconds: Option<u64>,
    /// First retry delay after a transient failure (doubles per receive).
    #[arg(long, env = "MULTICOMMS_RETRY_BASE_SECONDS", default_value_t = 30)]
    retry_base_seconds: u64,
    /// Seconds a secret value is cached.
    #[arg(long, env = "MULTICOMMS_SECRETS_CACHE_SECONDS", default_value_t = 300)]
    secrets_cache_seconds: u64,
    /// Per-request timeout of the AI and provider calls.
    #[arg(long, env = "MULTICOMMS_HTTP_TIMEOUT_SECONDS", default_value_t = 120)]
    http_timeout_seconds: u64,
    #[arg(long, env = "MULTICOMMS_OPENAI_BASE_URL", default_value = ai::DEFAULT_BASE_URL)]
    openai_base_url: String,
    #[arg(long, env = "MULTICOMMS_TWILIO_BASE_URL", default_value = senders::TWILIO_BASE_URL)]
    twilio_base_url: String,
    #[arg(long, env = "MULTICOMMS_SENDGRID_BASE_URL", default_value = senders::SENDGRID_BASE_URL)]
    sendgrid_base_url: String,
    /// The router's public URL (as Twilio reaches it): every Twilio send asks for its status
    /// callbacks at `<url>/webhooks/twilio/status`. Without it no delivery status is recorded.
    #[arg(long, env = "MULTICOMMS_PUBLIC_BASE_URL")]
    public_base_url: Option<String>,
    /// Development only: let a company's `ai.baseUrl` name this machine (in a pod, loopback
    /// reaches the sidecars' admin ports, so it is refused by default).
    #[arg(long, env = "MULTICOMMS_ALLOW_LOOPBACK_AI_ENDPOINTS")]
    allow_loopback_ai_endpoints: bool,
    /// /healthz, /readyz, /metrics.
    #[arg(long, env = "MULTICOMMS_PROCESSOR_ADDRESS", default_value = "0.0.0.0:8080")]
    address: std::net::SocketAddr,
    #[arg(long, env = "MULTICOMMS_LOG_FORMAT", value_enum, default_value_t = LogFormat::Json)]
    log_format: LogFormat,
    #[command(flatten)]
    threads: Threads,
}

impl Cli {
    fn pod(&self) -> PodConfig {
        let http_timeout = Duration::from_secs(self.http_timeout_seconds);
        PodConfig {
            channel: self.channel.unwrap_or(ChannelKind::Whatsapp),
            naming: self.naming.naming(),
            secrets_cache: Duration::from_secs(self.secrets_cache_seconds),
            http_timeout,
            send_grace: http_timeout + Duration::from_secs(60),
            openai_base_url: self.openai_base_url.clone(),
            twilio_base_url: self.twilio_base_url.clone(),
            sendgrid_base_url: self.sendgrid_base_url.clone(),
            public_base_url: self.public_base_url.clone(),
            allow_loopback_ai_endpoints: self.allow_loopback_ai_endpoints,
        }
    }

    fn processor(&self) -> ProcessorConfig {
        ProcessorConfig { pod: self.pod(), version: self.processor_version.clone() }
    }

    fn replies(&self) -> ReplyConfig {
        ReplyConfig {
            pod: self.pod(),
            company_cache: Duration::from_secs(30),
            lease: Duration::from_secs(self.lease_seconds.max(3)),
        }
    }

    fn queue_name(&self) -> String {
        let channel = self.channel.unwrap_or(ChannelKind::Whatsapp);
        match self.flow {
            Flow::Initial => self.naming.naming().channel_queue(channel),
            Flow::Replies => self.naming.naming().replies_queue(channel),
            Flow::Events => self.naming.naming().client_events_queue(),
        }
    }

    fn queue(&self, queue: QueueFacts, hand_off_queue_url: Option<String>) -> Settings {
        let heartbeat = self.heartbeat_seconds.map(Duration::from_secs).unwrap_or(queue.visibility / 3);
        Settings {
            queue_url: queue.url,
            concurrency: self.concurrency,
            visibility: queue.visibility,
            heartbeat: heartbeat.max(Duration::from_secs(1)),
            retry_base: Duration::from_secs(self.retry_base_seconds),
            wait: Duration::from_secs(20),
            max_receive_count: queue.max_receive_count,
            dead_letter_queue_url: queue.dead_letter_queue_url,
            hand_off_queue_url,
            depth_interval: Duration::from_secs(30),
        }
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    cli.threads.runtime().context("starting the runtime")?.block_on(run(cli))
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    logging::init(cli.log_format, "info");
    let config = aws::load_config(aws::POD_ATTEMPTS).await;
    match cli.flow {
        Flow::Initial => {
            let processor = Processor::build(&config, cli.processor()).context("building the HTTP client")?;
            work(&cli, &config, Arc::new(processor)).await
        }
        Flow::Events => {
            let timeout = Duration::from_secs(10);
            let delivery =
                EventDelivery::build(&config, &cli.naming.naming(), timeout).context("building the HTTP client")?;
            work(&cli, &config, Arc::new(delivery)).await
        }
        _ if cli.channel.is_none() => anyhow::bail!("--channel is required for the {:?} flow", cli.flow),
        Flow::Replies => {
            anyhow::ensure!(cli.channel != Some(ChannelKind::Email), "replies are answered on whatsapp and sms only");
            let processor =
                Arc::new(ReplyProcessor::build(&config, cli.replies()).context("building the HTTP client")?);
            let every = Duration::from_secs(cli.sweep_seconds.max(1));
            let sweeper = processor.clone();
            let sweeping = tokio::spawn(async move { sweep::run(&sweeper, every).await });
            let worked = work(&cli, &config, processor).await;
            sweeping.abort();
            worked
        }
    }
}

/// Serves health and metrics, finds the queue, and works it until the stop signal.
async fn work<W: Worker>(cli: &Cli, config: &aws_config::SdkConfig, worker: Arc<W>) -> anyhow::Result<()> {
    let sqs = aws_sdk_sqs::Client::new(config);
    let ready = Arc::new(AtomicBool::new(false));
    let listener =
        tokio::net::TcpListener::bind(cli.address).await.with_context(|| format!("binding {}", cli.address))?;
    let (is_ready, metrics) = (ready.clone(), worker.clone());
    let health = health_routes(
        move || if is_ready.load(Ordering::Relaxed) { Ok(()) } else { Err("queue not found yet") },
        move || metrics.metrics().render(),
    );
    let limits = ConnectionLimits { header_timeout: Duration::from_secs(30), max_connections: 64 };
    tokio::spawn(multicomms_service::http::serve(listener, health, limits, std::future::pending()));

    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    let queue_name = cli.queue_name();
    // The operator may create the queue after this pod starts.
    let queue = loop {
        match queue::discover(&sqs, &queue_name).await {
            Ok(found) => break found,
            Err(e) => tracing::warn!(queue = %queue_name, error = %e, "queue not usable yet; looking again in 10 s"),
        }
        tokio::select! {
            _ = &mut shutdown => return Ok(()),
            _ = tokio::time::sleep(Duration::from_secs(10)) => {}
        }
    };
    ready.store(true, Ordering::Relaxed);
    // Reply processors export the hand-off queue's depth too (found once; the operator makes it
    // with the tables).
    let hand_off = match cli.flow {
        Flow::Replies => {
            let name = cli.naming.naming().handoff_queue();
            sqs.get_queue_url().queue_name(name).send().await.ok().and_then(|out| out.queue_url)
        }
        Flow::Initial | Flow::Events => None,
    };
    let settings = cli.queue(queue, hand_off);
    tracing::info!(queue = %queue_name, concurrency = settings.concurrency, "processing");
    queue::run(worker, sqs, settings, shutdown).await;
    tracing::info!("processor stopped");
    Ok(())
}
