//! The fault suite: each scenario drives the real binaries (router, processors, operator) against
//! the AWS emulator and the fake providers, injects a fault at a size users run, and ends as one
//! table row: what was injected, how many went in, how many were sent once (or, for the
//! operator, became Ready), handed off to a person, failed with a status, lost, duplicated, and
//! how long it took to converge. Then every log line, record, queue message, metric, status and
//! Event the suite produced is searched for the credentials it used.
//!
//! Run through `scripts/faults.sh [--full]` (which starts the emulator); exits non-zero when a
//! row lost or duplicated anything, or a credential leaked.
//! usage: faults [--full] [scenario-number ...]
mod abuse;
mod crash_storm;
mod harness;
mod leaks;
mod lifecycle;
mod operator_restart;
mod outage;
mod provider_faults;
mod replies;

use harness::{Credentials, Row, Sizes};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let sizes = if args.iter().any(|a| a == "--full") { Sizes::FULL } else { Sizes::SMALL };
    let only: Vec<u32> = args.iter().filter_map(|a| a.parse().ok()).collect();
    let wanted = |n: u32| only.is_empty() || only.contains(&n);
    let endpoint = std::env::var("AWS_ENDPOINT_URL").unwrap_or_default();
    anyhow::ensure!(
        endpoint.starts_with("http://127.0.0.1:"),
        "AWS_ENDPOINT_URL must point at the local emulator: run scripts/faults.sh"
    );
    let config = multicomms_testkit::environment::emulator_config().await;
    let credentials = Credentials::distinctive();
    // Only this run's logs: the leak search reads them all. The suite's own (the in-process
    // controller's among them) go to target/faults/suite.log.
    let logs = multicomms_testkit::environment::repo_root().join("target/faults");
    let _ = std::fs::remove_dir_all(&logs);
    std::fs::create_dir_all(&logs)?;
    let log = std::sync::Arc::new(std::fs::File::create(logs.join("suite.log"))?);
    let filter = std::env::var("FAULTS_LOG").unwrap_or_else(|_| "info".into());
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(move || log.clone())
        .init();

    let mut rows: Vec<Row> = Vec::new();
    let started = std::time::Instant::now();
    if wanted(1) {
        rows.push(crash_storm::run(&config, &endpoint, sizes, &credentials).await);
        print_row(rows.last());
    }
    if wanted(2) {
        rows.extend(outage::run(&config, &endpoint, sizes, &credentials).await);
        rows.iter().rev().take(2).rev().for_each(|r| print_row(Some(r)));
    }
    if wanted(3) {
        rows.push(provider_faults::run(&config, &endpoint, sizes, &credentials).await);
        print_row(rows.last());
    }
    if wanted(4) {
        rows.push(abuse::run(&config, &endpoint, sizes, &credentials).await);
        print_row(rows.last());
    }
    if wanted(5) {
        rows.push(replies::run(&config, &endpoint, sizes, &credentials).await);
        print_row(rows.last());
    }
    let mut kube_objects = Vec::new();
    if wanted(7) {
        let (row, objects) = operator_restart::run(&config, sizes, &credentials).await;
        rows.push(row);
        kube_objects = objects;
        print_row(rows.last());
    }
    if wanted(8) {
        rows.push(lifecycle::run(&config, &endpoint, sizes, &credentials).await);
        print_row(rows.last());
    }
    rows.push(leaks::run(&config, &credentials, &kube_objects).await);

    println!(
        "\n## Fault suite ({}, {:.0} s)\n",
        if sizes.crash_messages == Sizes::FULL.crash_messages { "full" } else { "small" },
        started.elapsed().as_secs_f64()
    );
    println!("| scenario | injected | in | sent once / ready | handed off | failed (status) | lost | duplicated | converged in |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for row in &rows {
        println!(
            "| {} | {} | {} {} | {} | {} | {} | {} | {} | {:.1} s |",
            row.scenario,
            row.injected,
            row.total,
            row.unit,
            row.ok,
            row.handed_off,
            row.failed,
            row.lost,
            row.duplicated,
            row.converged.as_secs_f64()
        );
    }
    println!();
    for row in &rows {
        for note in &row.notes {
            println!("- {}: {note}", row.scenario);
        }
    }
    let broken: Vec<&str> = rows.iter().filter(|r| !r.clean()).map(|r| r.scenario.as_str()).collect();
    anyhow::ensure!(broken.is_empty(), "lost, duplicated or unaccounted for in: {}", broken.join(", "));
    Ok(())
}

/// A row as soon as its scenario ends (the table comes at the end).
fn print_row(row: Option<&Row>) {
    if let Some(row) = row {
        eprintln!(
            "[faults] {}: in {} ok {} handed off {} failed {} lost {} duplicated {} ({:.1} s) {:?}",
            row.scenario,
            row.total,
            row.ok,
            row.handed_off,
            row.failed,
            row.lost,
            row.duplicated,
            row.converged.as_secs_f64(),
            row.notes
        );
    }
}
