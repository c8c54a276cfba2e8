//! `multicomms-operator`: `apply` and `plan` a directory of manifests against AWS, `run` as the
//! in-cluster controller (the same reconcile, driven by the Kubernetes API), or print the CRDs.
use clap::Parser;
use multicomms_operator::cli::{self, Cli};
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    multicomms_service::logging::init(cli.log_format, "warn,multicomms_operator=info");
    let outcome = match cli.threads.runtime() {
        Ok(runtime) => runtime.block_on(cli::run(cli)),
        Err(e) => Err(anyhow::Error::new(e).context("starting the runtime")),
    };
    match outcome {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}
