//! HTTP serving for every binary: connection limits a slow or idle client cannot get around,
//! a shutdown that does not wait on idle connections, and the health and metrics routes.
use axum::extract::ConnectInfo;
use axum::http::StatusCode;
use axum::routing::get;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// What one HTTP server holds open, whatever its clients do.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// Longest a connection may wait for a request's headers: a new connection, one sending
    /// them slowly, or a keep-alive connection idle between requests (hyper runs one timer for
    /// all three). A load balancer in front should close idle connections sooner.
    pub header_timeout: Duration,
    /// Connections served at once; more wait in the listen backlog.
    pub max_connections: usize,
}

/// Serves `app` until `shutdown` resolves; then stops accepting, closes idle connections at once,
/// and lets requests in flight finish (each is bounded by its own timeout; the drain as a whole
/// by `limits.header_timeout`). Each request carries its connection's peer address as axum's
/// `ConnectInfo<SocketAddr>` extension. Unlike
/// `axum::serve`, a client that sends headers slowly or never, or idles on a keep-alive
/// connection, is cut off after `limits.header_timeout`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()>,
) {
    use hyper_util::rt::{TokioIo, TokioTimer};
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(limits.header_timeout);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections.max(1)));
    tokio::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => match slot { Ok(slot) => slot, Err(_) => break },
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: wait rather than spin.
                    tracing::warn!(error = %e, "accept failed; retrying in 1 s");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let app = tower_layer::Layer::layer(&axum::Extension(ConnectInfo(peer)), app.clone());
        let service = hyper_util::service::TowerToHyperService::new(app);
        let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            // Timeouts and resets are a client's business, not the server's.
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "connection closed");
            }
            drop(slot);
        });
    }
    drop(listener);
    // Requests in flight are bounded by their own timeouts; a client that stopped reading its
    // answers is not waited for beyond the header timeout.
    if tokio::time::timeout(limits.header_timeout, graceful.shutdown()).await.is_err() {
        tracing::warn!("connections still open after the drain time; closing them");
    }
}

/// `/healthz` (the process is alive), `/readyz` (503 with `ready`'s reason until it says yes)
/// and `/metrics` (`render`'s Prometheus text).
pub fn health_routes<R, M>(ready: R, render: M) -> axum::Router
where
    R: Fn() -> Result<(), &'static str> + Clone + Send + Sync + 'static,
    M: Fn() -> String + Clone + Send + Sync + 'static,
{
    probe_routes(ready).merge(metrics_route(render))
}

/// `/healthz` and `/readyz` alone (the router serves `/metrics` on a listener of its own).
pub fn probe_routes<R>(ready: R) -> axum::Router
where
    R: Fn() -> Result<(), &'static str> + Clone + Send + Sync + 'static,
{
    axum::Router::new().route("/healthz", get(|| async { "ok" })).route(
        "/readyz",
        get(move || {
            let ready = ready.clone();
            async move {
                match ready() {
                    Ok(()) => (StatusCode::OK, "ready"),
                    Err(why) => (StatusCode::SERVICE_UNAVAILABLE, why),
                }
            }
        }),
    )
}

/// `/metrics`: `render`'s Prometheus text.
pub fn metrics_route<M>(render: M) -> axum::Router
where
    M: Fn() -> String + Clone + Send + Sync + 'static,
{
    axum::Router::new().route(
        "/metrics",
        get(move || {
            let render = render.clone();
            async move { render() }
        }),
    )
}
