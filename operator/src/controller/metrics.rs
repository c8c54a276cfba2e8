//! Prometheus metrics of the controller, served with /healthz and /readyz.
use crate::aws::CallCounter;
use crate::reconcile::Report;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{text::encode, DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::{counter::Counter, family::Family, histogram::Histogram};
use prometheus_client::registry::Registry;
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

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    service: String,
    operation: String,
    outcome: &'static str,
}

/// The AWS calls the adapters counted, read at each scrape: `multicomms_aws_calls_total`.
#[derive(Debug)]
struct AwsCalls(CallCounter);

impl Collector for AwsCalls {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let help = "AWS API calls by service, operation and outcome";
        let mut family =
            encoder.encode_descriptor("aws_calls", help, None, prometheus_client::metrics::MetricType::Counter)?;
        for (call, n) in self.0.snapshot() {
            let outcome = if call.ok { "ok" } else { "error" };
            let labels = CallLabels { service: call.service, operation: call.operation, outcome };
            ConstCounter::new(n).encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

pub struct Metrics {
    registry: Registry,
    reconciles: Family<Kind, Counter>,
    failures: Family<KindReason, Counter>,
    duration: Family<Kind, Histogram>,
    time_to_ready: Family<Kind, Histogram>,
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
        registry.register_collector(Box::new(AwsCalls(aws_calls)));
        Metrics { registry, reconciles, failures, duration, time_to_ready, ready: AtomicBool::new(false) }
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

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        match encode(&mut out, &self.registry) {
            Ok(()) => out,
            Err(_) => String::new(),
        }
    }
}

/// Serves /metrics, /healthz and /readyz on `listener` until the process ends.
pub async fn serve(metrics: Arc<Metrics>, listener: tokio::net::TcpListener) {
    let (ready, rendered) = (metrics.clone(), metrics);
    let routes = multicomms_service::http::health_routes(
        move || if ready.ready.load(Ordering::Relaxed) { Ok(()) } else { Err("starting") },
        move || rendered.render(),
    );
    let limits =
        multicomms_service::http::ConnectionLimits { header_timeout: Duration::from_secs(30), max_connections: 64 };
    multicomms_service::http::serve(listener, routes, limits, std::future::pending()).await
}
