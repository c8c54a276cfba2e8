//! `multicomms-operator`: `apply` and `plan` a directory of manifests against AWS, `run` as the
//! in-cluster controller (the same reconcile, driven by the Kubernetes API), or print the CRDs.
use clap::Parser;
use multicomms_operator::cli::{self, Cli};
use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    multicomms_service::logging::init(cli.log_format, "warn,multicomms_operator=info");
    match cli::run(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}
