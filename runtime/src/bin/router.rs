//! `multicomms-router`: serves `POST /initiate-conversation` and, with `--public-base-url`,
//! Twilio's inbound webhooks. Configured like the operator (prefix and environment name the
//! tables and queues) plus the standard AWS SDK environment.
use anyhow::Context;
use clap::Parser;
use multicomms_runtime::router::app::{self, AppState, RouterSettings};
use multicomms_service::http::ConnectionLimits;
use multicomms_service::logging::{self, LogFormat};
use multicomms_wire::NamingArgs;
use std::sync::Arc;
use std::time::Duration;

/// mimalloc, not glibc's malloc: measured side by side, 17 % less CPU per accepted request
/// (the router allocates a body, a context object and a batch entry per request); it gives
/// memory back as connections close (docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(version, about = "multicomms router: POST /initiate-conversation → channel queue")]
struct Cli {
    #[command(flatten)]
    naming: NamingArgs,
    /// `metadata.router_version` in every context object.
    #[arg(long = "router-version", env = "VERSION", default_value = concat!("router-", env!("CARGO_PKG_VERSION")))]
    router_version: String,
    #[arg(long, env = "MULTICOMMS_ROUTER_ADDRESS", default_value = "0.0.0.0:8080")]
    address: std::net::SocketAddr,
    /// Where /metrics is served: not on `address`, which is public for Twilio's webhooks.
    #[arg(long, env = "MULTICOMMS_METRICS_ADDRESS", default_value = "0.0.0.0:9090")]
    metrics_address: std::net::SocketAddr,
    /// Largest accepted body (SQS takes 256 KiB per message, the company data included).
    #[arg(long, env = "MULTICOMMS_MAX_BODY_BYTES", default_value_t = 128 * 1024)]
    max_body_bytes: usize,
    /// The most request-body bytes held at once across all connections; a request that would
    /// go over gets 503 (SERVER_BUSY) before its body is read. Size the memory limit for it.
    #[arg(long, env = "MULTICOMMS_BODY_BUDGET_BYTES", default_value_t = 64 * 1024 * 1024)]
    body_budget_bytes: usize,
    /// Seconds a company record is cached.
    #[arg(long, env = "MULTICOMMS_COMPANY_CACHE_SECONDS", default_value_t = 30)]
    company_cache_seconds: u64,
    /// Milliseconds a queue message waits for others to share its SendMessageBatch call.
    #[arg(long, env = "MULTICOMMS_BATCH_LINGER_MS", default_value_t = 5)]
    batch_linger_ms: u64,
    /// Seconds a request id's first success is remembered and returned to retries.
    #[arg(long, env = "MULTICOMMS_IDEMPOTENCY_SECONDS", default_value_t = 600)]
    idempotency_seconds: u64,
    /// Milliseconds a request may take, body upload included; then 504 REQUEST_TIMEOUT.
    #[arg(long, env = "MULTICOMMS_REQUEST_TIMEOUT_MS", default_value_t = 10_000)]
    request_timeout_ms: u64,
    /// Seconds a connection may wait for a request's headers, which also closes keep-alive
    /// connections idle that long (keep a load balancer's idle timeout below it).
    #[arg(long, env = "MULTICOMMS_HEADER_TIMEOUT_SECONDS", default_value_t = 30)]
    header_timeout_seconds: u64,
    /// Connections served at once; more wait to be accepted.
    #[arg(long, env = "MULTICOMMS_MAX_CONNECTIONS", default_value_t = 10_000)]
    max_connections: usize,
    /// The URL prefix Twilio calls through the ingress, e.g. `https://hooks.example.com`: Twilio
    /// is configured with `<this>/webhooks/twilio/whatsapp` and `<this>/webhooks/twilio/sms`, and
    /// signatures are checked against it. Without it the inbound webhooks are off (404).
    #[arg(long, env = "MULTICOMMS_PUBLIC_BASE_URL")]
    public_base_url: Option<String>,
    /// Seconds a Twilio auth token read for the webhooks is cached.
    #[arg(long, env = "MULTICOMMS_SECRETS_CACHE_SECONDS", default_value_t = 300)]
    secrets_cache_seconds: u64,
    /// Webhook requests one source may send a minute that are not shown to come from Twilio
    /// (forged, unsigned, unknown numbers); then 429 until the next minute, before any lookup.
    /// Twilio's own requests verify and never count. 0: no limit.
    #[arg(long, env = "MULTICOMMS_UNVERIFIED_PER_MINUTE", default_value_t = 60)]
    unverified_per_minute: u32,
    /// Behind an ingress: the header it sets to the client's address (e.g. X-Forwarded-For); its
    /// last value is the source the limit above counts. Only set it when every request comes
    /// through that ingress: a client reaching the router directly could choose its own.
    #[arg(long, env = "MULTICOMMS_CLIENT_ADDRESS_HEADER")]
    client_address_header: Option<axum::http::HeaderName>,
    /// Twilio's API, where agents' messages from the inbox and the conversations API go.
    #[arg(long, env = "MULTICOMMS_TWILIO_BASE_URL", default_value = multicomms_runtime::shared::senders::TWILIO_BASE_URL)]
    twilio_base_url: String,
    /// The key inbox sessions are signed with (at least 32 bytes), the same on every replica;
    /// without it each replica signs its own, and a session holds only where it began.
    #[arg(long, env = "MULTICOMMS_SESSION_KEY", hide_env_values = true)]
    session_key: Option<String>,
    #[arg(long, env = "MULTICOMMS_LOG_FORMAT", value_enum, default_value_t = LogFormat::Json)]
    log_format: LogFormat,
    /// Print the OpenAPI document this router serves at /openapi.json, and exit.
    #[arg(long)]
    openapi: bool,
    /// Threads the work runs on. Two, not the other pods' one: with one, 10,000 clients
    /// connecting at once took 31-56 s to be served instead of 31-33 (connections beyond the
    /// listen backlog wait for the client to retry), for 4-6 % less CPU a request (docs/benchmarks.md).
    #[arg(long, env = "MULTICOMMS_THREADS", default_value_t = 2)]
    threads: usize,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    multicomms_service::threads::runtime(cli.threads).context("starting the runtime")?.block_on(run(cli))
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let settings = RouterSettings {
        version: cli.router_version.clone(),
        max_body_bytes: cli.max_body_bytes,
        body_budget_bytes: cli.body_budget_bytes,
        request_timeout: Duration::from_millis(cli.request_timeout_ms),
        company_cache: Duration::from_secs(cli.company_cache_seconds),
        batch_linger: Duration::from_millis(cli.batch_linger_ms),
        idempotency_window: Duration::from_secs(cli.idempotency_seconds),
        public_base_url: cli.public_base_url.clone(),
        secrets_cache: Duration::from_secs(cli.secrets_cache_seconds),
        unverified_per_minute: cli.unverified_per_minute,
        client_address_header: cli.client_address_header.clone(),
        twilio_base_url: cli.twilio_base_url.clone(),
        session_key: cli.session_key.as_ref().map(|k| k.as_bytes().to_vec()),
    };
    if settings.session_key.as_ref().is_some_and(|k| k.len() < 32) {
        anyhow::bail!("--session-key must be at least 32 bytes");
    }
    if cli.openapi {
        println!(
            "{}",
            serde_json::to_string_pretty(&multicomms_runtime::router::openapi::document(
                &settings.version,
                settings.max_body_bytes
            ))?
        );
        return Ok(());
    }
    logging::init(cli.log_format, "info");
    let config = multicomms_service::aws::load_config(multicomms_service::aws::POD_ATTEMPTS).await;
    match &settings.public_base_url {
        Some(url) => tracing::info!(public_base_url = %url, "inbound Twilio webhooks on"),
        None => tracing::info!("inbound Twilio webhooks off (no --public-base-url)"),
    }
    let state = Arc::new(AppState::build(&config, &cli.naming.naming(), settings).await);
    let listener =
        tokio::net::TcpListener::bind(cli.address).await.with_context(|| format!("binding {}", cli.address))?;
    let metrics = tokio::net::TcpListener::bind(cli.metrics_address)
        .await
        .with_context(|| format!("binding {}", cli.metrics_address))?;
    let metrics_limits = ConnectionLimits { header_timeout: Duration::from_secs(30), max_connections: 16 };
    tokio::spawn(multicomms_service::http::serve(
        metrics,
        app::metrics(&state),
        metrics_limits,
        std::future::pending(),
    ));
    tracing::info!(address = %cli.address, metrics = %cli.metrics_address, "router listening");
    let limits = ConnectionLimits {
        header_timeout: Duration::from_secs(cli.header_timeout_seconds),
        max_connections: cli.max_connections,
    };
    app::serve(listener, state, limits, multicomms_service::shutdown::shutdown_signal()).await;
    tracing::info!("router stopped; every accepted request was queued");
    Ok(())
}
