//! Counts AWS API calls by service, operation and outcome: the numbers behind "no AWS write
//! when nothing changed" and the benchmark's calls per company.
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::FinalizerInterceptorContextRef;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Call {
    pub service: String,
    pub operation: String,
    pub ok: bool,
}

#[derive(Debug, Clone, Default)]
pub struct CallCounter {
    counts: Arc<Mutex<BTreeMap<Call, u64>>>,
}

/// Operations that only read. Everything else counts as a write.
const READ_PREFIXES: [&str; 5] = ["Get", "BatchGet", "Describe", "List", "Query"];

impl CallCounter {
    pub fn snapshot(&self) -> BTreeMap<Call, u64> {
        self.counts.lock().map(|c| c.clone()).unwrap_or_default()
    }

    pub fn total(&self) -> u64 {
        self.snapshot().values().sum()
    }

    /// Calls that may change AWS state (successful or not).
    pub fn writes(&self) -> u64 {
        self.snapshot()
            .iter()
            .filter(|(call, _)| !READ_PREFIXES.iter().any(|p| call.operation.starts_with(p)))
            .map(|(_, n)| n)
            .sum()
    }

    /// Operation names called, with counts, e.g. `("PutItem", 1)`.
    pub fn by_operation(&self) -> BTreeMap<String, u64> {
        let mut out = BTreeMap::new();
        for (call, n) in self.snapshot() {
            *out.entry(call.operation).or_insert(0) += n;
        }
        out
    }
}

impl Intercept for CallCounter {
    fn name(&self) -> &'static str {
        "CallCounter"
    }

    fn read_after_execution(
        &self,
        context: &FinalizerInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Some(metadata) = cfg.load::<Metadata>() {
            let ok = matches!(context.output_or_error(), Some(Ok(_)));
            let call = Call { service: metadata.service().to_string(), operation: metadata.name().to_string(), ok };
            if let Ok(mut counts) = self.counts.lock() {
                *counts.entry(call).or_insert(0) += 1;
            }
        }
        Ok(())
    }
}
