//! How many threads a binary runs its work on.

/// `--threads`: the tokio runtime's worker threads. The work of every multicomms binary is
/// mostly waiting on HTTP (AWS, the providers, the Kubernetes API), and one thread served what
/// the benchmarks asked of the processor and the operator (docs/operations.md); tokio's default,
/// one thread per core of the node whatever the pod's CPU limit, spent up to 17 % more CPU per
/// unit of work on waking and parking threads. The router defaults to two (see its flag).
#[derive(clap::Args, Debug, Clone)]
pub struct Threads {
    /// Threads the work runs on; raise it with the pod's CPU limit when one core is not enough.
    #[arg(long = "threads", env = "MULTICOMMS_THREADS", default_value_t = 1, global = true)]
    pub count: usize,
}

impl Threads {
    pub fn runtime(&self) -> std::io::Result<tokio::runtime::Runtime> {
        runtime(self.count)
    }
}

/// A multi-threaded tokio runtime on `count` threads (at least one).
pub fn runtime(count: usize) -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().worker_threads(count.max(1)).enable_all().build()
}
