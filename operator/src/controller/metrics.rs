//! Prometheus metrics of the controller, served with /healthz and /readyz.
use crate::aws::CallCounter;
use crate::reconcile::Report;
use prometheus_client::encoding::{text::encode, EncodeLabelSet};
use prometheus_client::metrics::{counter::Counter, family::Family, histogram::Histogram};
use prometheus_client::registry::Registry;
use std::fmt::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Kind {
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindReason {
    kind: String,
    reason: String,
}

pub struct Metrics {
    registry: Registry,
    reconciles: Family<Kind, Counter>,
    failures: Family<KindReason, Counter>,
    duration: Family<Kind, Histogram>,
    time_to_ready: Family<Kind, Histogram>,
    aws_calls: CallCounter,
    /// Set once the controller is connected and serving (leader or standby).
    pub ready: AtomicBool,
}

impl Metrics {
    pub fn new(aws_calls: CallCounter) -> Self {
        let mut registry = Registry::with_prefix("multicomms");
        let reconciles = Family::<Kind, Counter>::default();
        let failures = Family::<KindReason, Counter>::default();
        let duration = Family::<Kind, Histogram>::new_with_constructor(|| {
            Histogram::new([0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0])
        });
        let time_to_ready = Family::<Kind, Histogram>::new_with_constructor(|| {
            Histogram::new([1.0, 5.0, 15.0, 30.0, 60.0, 300.0, 900.0, 3600.0])
        });
        registry.register("reconciles", "Reconciles run", reconciles.clone());
        registry.register("reconcile_failures", "Reconciles that ended not Ready, by reason", failures.clone());
        registry.register("reconcile_duration_seconds", "Time one reconcile took", duration.clone());
        registry.register(
            "time_to_ready_seconds",
            "From a resource's creation to its first Ready=True",
            time_to_ready.clone(),
        );
        Metrics { registry, reconciles, failures, duration, time_to_ready, aws_calls, ready: AtomicBool::new(false) }
    }

    /// Records one reconcile; `age_when_first_ready` when this run made the resource Ready.
    pub fn observe(&self, report: &Report, took: Duration, age_when_first_ready: Option<Duration>) {
        let kind = Kind { kind: report.kind.to_string() };
        self.reconciles.get_or_create(&kind).inc();
        self.duration.get_or_create(&kind).observe(took.as_secs_f64());
        if let Some(failure) = report.failure() {
            let labels = KindReason { kind: kind.kind.clone(), reason: failure.reason.as_str().to_string() };
            self.failures.get_or_create(&labels).inc();
        }
        if let Some(age) = age_when_first_ready {
            self.time_to_ready.get_or_create(&kind).observe(age.as_secs_f64());
        }
    }

    /// The Prometheus text exposition, AWS calls by service, operation and outcome included.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if encode(&mut out, &self.registry).is_err() {
            return String::new();
        }
        // `encode` ends with "# EOF"; the AWS call counts go before it.
        let eof = out.rfind("# EOF").unwrap_or(out.len());
        out.truncate(eof);
        let _ = writeln!(out, "# HELP multicomms_aws_calls AWS API calls by service, operation and outcome.");
        let _ = writeln!(out, "# TYPE multicomms_aws_calls counter");
        for (call, n) in self.aws_calls.snapshot() {
            let outcome = if call.ok { "ok" } else { "error" };
            let _ = writeln!(
                out,
                "multicomms_aws_calls_total{{service=\"{}\",operation=\"{}\",outcome=\"{outcome}\"}} {n}",
                call.service, call.operation
            );
        }
        out.push_str("# EOF\n");
        out
    }
}

/// Serves /metrics, /healthz and /readyz on `listener` until the process ends.
pub async fn serve(metrics: Arc<Metrics>, listener: tokio::net::TcpListener) -> std::io::Result<()> {
    use axum::{http::StatusCode, routing::get, Router};
    let app = Router::new()
        .route("/metrics", get(|axum::extract::State(m): axum::extract::State<Arc<Metrics>>| async move { m.render() }))
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(|axum::extract::State(m): axum::extract::State<Arc<Metrics>>| async move {
                if m.ready.load(Ordering::Relaxed) {
                    (StatusCode::OK, "ready")
                } else {
                    (StatusCode::SERVICE_UNAVAILABLE, "starting")
                }
            }),
        )
        .with_state(metrics);
    axum::serve(listener, app).await
}
