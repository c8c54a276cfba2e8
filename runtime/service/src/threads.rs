//! How many threads a pod runs its work on.

/// `--worker-threads`: the tokio runtime's worker threads. A pod's work is mostly waiting on
/// HTTP (AWS, the providers), and one thread serves more than a pod's concurrency asks of it
/// (docs/operations.md); tokio's default, one thread per core of the node, whatever the pod's
/// CPU request, spent 5-18 % more CPU per unit of work on waking and parking threads.
#[derive(clap::Args, Debug, Clone)]
pub struct WorkerThreads {
    #[arg(long = "worker-threads", env = "MULTICOMMS_WORKER_THREADS", default_value_t = 1)]
    pub count: usize,
}

impl WorkerThreads {
    pub fn runtime(&self) -> std::io::Result<tokio::runtime::Runtime> {
        tokio::runtime::Builder::new_multi_thread().worker_threads(self.count.max(1)).enable_all().build()
    }
}
