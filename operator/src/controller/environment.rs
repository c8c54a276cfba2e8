//! The environment every resource needs (its tables and the hand-off queue), reconciled by the
//! controller when it starts leading and at each resync, so a fresh cluster and a fresh AWS
//! account need nothing made by hand. Reported like a resource: a log line, the reconcile
//! metrics (kind `Environment`) and Events on the operator's namespace.
use super::{events, jittered, State};
use crate::reconcile::tables;
use k8s_openapi::api::core::v1::ObjectReference;
use std::sync::Arc;
use std::time::Duration;

/// Reconciles the environment once; whether it is ready.
pub async fn reconcile(state: &State) -> bool {
    let started = std::time::Instant::now();
    let report = tables::reconcile(&state.engine).await;
    state.metrics.observe(&report, started.elapsed(), None);
    match report.failure() {
        None => tracing::info!(environment = report.name, changes = report.changes.len(), "environment in sync"),
        Some(failure) => tracing::warn!(environment = report.name, %failure.message, "environment not in sync"),
    }
    events::publish_about(&state.events, &regarding(state), &report).await;
    report.is_ready()
}

/// After the first [`reconcile`]: again at each resync, or in 30 s while it is not ready.
pub async fn keep(state: Arc<State>, mut ready: bool) {
    loop {
        let wait = if ready { state.resync } else { Duration::from_secs(30) };
        tokio::time::sleep(jittered(wait)).await;
        ready = reconcile(&state).await;
    }
}

/// The environment's Events are about the operator's namespace.
fn regarding(state: &State) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Namespace".into()),
        name: Some(state.home_namespace.clone()),
        namespace: Some(state.home_namespace.clone()),
        ..Default::default()
    }
}
