//! `multicomms-processor --channel whatsapp|sms|email`: works the channel's queue. Configured
//! like the router (prefix and environment name the queue and tables) plus the standard AWS SDK
//! environment; provider base URLs are flags so tests and demos can point them at fakes.
use anyhow::Context;
use axum::extract::State;
use axum::http::StatusCode;
use clap::Parser;
use multicomms_runtime::processor::ai::{self, Ai};
use multicomms_runtime::processor::conversations::Conversations;
use multicomms_runtime::processor::metrics::Metrics;
use multicomms_runtime::processor::pipeline::Processor;
use multicomms_runtime::processor::queue::{self, Settings};
use multicomms_runtime::processor::secrets::Secrets;
use multicomms_runtime::processor::senders::{self, Senders};
use multicomms_runtime::wire::{names::DEFAULT_PREFIX, ChannelKind, Naming};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[derive(Parser)]
#[command(version, about = "multicomms processor: channel queue → AI → provider")]
struct Cli {
    #[arg(long, env = "MULTICOMMS_CHANNEL", value_parser = parse_channel)]
    channel: ChannelKind,
    #[arg(long, env = "MULTICOMMS_PREFIX", default_value = DEFAULT_PREFIX)]
    prefix: String,
    #[arg(long, env = "MULTICOMMS_ENV", default_value = "dev")]
    env: String,
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
    /// /healthz, /readyz, /metrics.
    #[arg(long, env = "MULTICOMMS_PROCESSOR_ADDRESS", default_value = "0.0.0.0:8080")]
    address: std::net::SocketAddr,
}

fn parse_channel(value: &str) -> Result<ChannelKind, String> {
    match value {
        "whatsapp" => Ok(ChannelKind::Whatsapp),
        "sms" => Ok(ChannelKind::Sms),
        "email" => Ok(ChannelKind::Email),
        other => Err(format!("unknown channel {other:?}: whatsapp, sms or email")),
    }
}

struct Health {
    metrics: Arc<Metrics>,
    ready: AtomicBool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt().json().with_writer(std::io::stderr).init();
    let cli = Cli::parse();
    let naming = Naming::new(cli.prefix, cli.env);
    let config = multicomms_runtime::pod::aws_config().await;
    let sqs = aws_sdk_sqs::Client::new(&config);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(cli.http_timeout_seconds))
        .connect_timeout(Duration::from_secs(10))
        .build()
        .context("building the HTTP client")?;
    let metrics = Arc::new(Metrics::default());
    let processor = Arc::new(Processor {
        channel: cli.channel,
        version: cli.processor_version,
        conversations: Conversations::new(aws_sdk_dynamodb::Client::new(&config), naming.conversations_table()),
        secrets: Secrets::new(
            aws_sdk_secretsmanager::Client::new(&config),
            Duration::from_secs(cli.secrets_cache_seconds),
            metrics.secrets_scheduled_for_deletion.clone(),
        ),
        ai: Ai::new(http.clone(), cli.openai_base_url, naming.shared_ai_key_secret(cli.channel)),
        senders: Senders::new(http, cli.twilio_base_url, cli.sendgrid_base_url),
        metrics: metrics.clone(),
        send_grace: Duration::from_secs(cli.http_timeout_seconds + 60),
    });

    let health = Arc::new(Health { metrics, ready: AtomicBool::new(false) });
    let listener =
        tokio::net::TcpListener::bind(cli.address).await.with_context(|| format!("binding {}", cli.address))?;
    let app = axum::Router::new()
        .route("/healthz", axum::routing::get(|| async { "ok" }))
        .route(
            "/readyz",
            axum::routing::get(|State(h): State<Arc<Health>>| async move {
                if h.ready.load(Ordering::Relaxed) {
                    (StatusCode::OK, "ready")
                } else {
                    (StatusCode::SERVICE_UNAVAILABLE, "queue not found yet")
                }
            }),
        )
        .route("/metrics", axum::routing::get(|State(h): State<Arc<Health>>| async move { h.metrics.render() }))
        .with_state(health.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let shutdown = multicomms_runtime::pod::shutdown_signal();
    tokio::pin!(shutdown);
    let queue_name = naming.channel_queue(cli.channel);
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
    health.ready.store(true, Ordering::Relaxed);
    let heartbeat =
        cli.heartbeat_seconds.map(Duration::from_secs).unwrap_or(queue.visibility / 3).max(Duration::from_secs(1));
    let settings = Settings {
        queue_url: queue.url,
        concurrency: cli.concurrency,
        visibility: queue.visibility,
        heartbeat,
        retry_base: Duration::from_secs(cli.retry_base_seconds),
        wait: Duration::from_secs(20),
        max_receive_count: queue.max_receive_count,
        dead_letter_queue_url: queue.dead_letter_queue_url,
        depth_interval: Duration::from_secs(30),
    };
    tracing::info!(queue = %queue_name, concurrency = settings.concurrency, "processing");
    queue::run(processor, sqs, settings, shutdown).await;
    tracing::info!("processor stopped");
    Ok(())
}
