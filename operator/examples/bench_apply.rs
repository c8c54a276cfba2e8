//! Benchmark: `apply` N generated Companies from cold against the AWS emulator, then re-apply
//! (no-op), beside the emulator's raw PutItem rate measured in the same run.
//!
//! Run through `scripts/bench-apply.sh`, which starts the emulator and runs one process per N
//! (so peak RSS is per N). Prints one Markdown table row.
//!
//! usage: bench_apply <companies> [concurrency]
use futures::StreamExt;
use multicomms_operator::aws::{self, Aws};
use multicomms_operator::cli::batch::reconcile_manifests;
use multicomms_operator::cli::manifests;
use multicomms_operator::desired::{self, Owner};
use multicomms_operator::reconcile::{Context, Mode};
use multicomms_wire::Naming;
use std::time::Instant;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let companies: usize = args.next().unwrap_or_else(|| "100".into()).parse()?;
    let concurrency: usize = args.next().unwrap_or_else(|| "16".into()).parse()?;
    anyhow::ensure!(
        std::env::var("AWS_ENDPOINT_URL").is_ok_and(|e| e.starts_with("http://127.0.0.1:")),
        "AWS_ENDPOINT_URL must point at the local emulator: run scripts/bench-apply.sh"
    );
    let config = aws::load_config().await;
    let naming = Naming::new(format!("b{}", std::process::id()), "bench");

    // Manifests on disk, read the way `apply -f` reads them.
    let dir = std::env::temp_dir().join(format!("multicomms-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let template = std::fs::read_to_string(repo("config/companies/cucumber-recruitment-clarify-cv.yaml"))?;
    for i in 0..companies {
        let yaml = template
            .replace("name: cucumber-recruitment-clarify-cv", &format!("name: company-{i}"))
            .replace("companyId: ci-aaa-001", &format!("companyId: ci-bench-{i}"))
            .replace("companyName: Cucumber Recruitment", &format!("companyName: Bench Company {i}"));
        std::fs::write(dir.join(format!("company-{i}.yaml")), yaml)?;
    }
    let paths = [dir.clone(), repo("config/examples/local")];

    let cpu_start = cpu_seconds();
    let started = Instant::now();
    let loaded = manifests::load(&paths, "bench")?;
    let first = Context::new(Aws::new(&config), naming.clone(), Mode::Apply);
    let reports = reconcile_manifests(&first, &loaded, concurrency).await;
    let cold_secs = started.elapsed().as_secs_f64();
    let cold_cpu = cpu_seconds() - cpu_start;
    let failed = reports.iter().filter(|r| !r.is_ready()).count();
    anyhow::ensure!(failed == 0, "{failed} resources not ready: {:?}", reports.iter().find(|r| !r.is_ready()));

    let started = Instant::now();
    let again = Context::new(Aws::new(&config), naming.clone(), Mode::Apply);
    let loaded = manifests::load(&paths, "bench")?;
    let reports = reconcile_manifests(&again, &loaded, concurrency).await;
    let noop_secs = started.elapsed().as_secs_f64();
    anyhow::ensure!(reports.iter().all(|r| r.changes.is_empty()), "re-apply changed something");

    // The emulator's raw PutItem rate, same items, same concurrency, into the same table.
    let put_ctx = Context::new(Aws::new(&config), naming.clone(), Mode::Apply);
    let table = naming.company_data_table();
    let owner = Owner { kind: "Company", namespace: "bench".into(), name: "raw".into() };
    let items: Vec<_> = loaded
        .companies
        .iter()
        .map(|c| {
            let mut record = desired::company::record(&c.spec, &naming, &owner, Some("bench-key"));
            record.project_id = "raw-put".into();
            record.to_item()
        })
        .collect::<Result<_, _>>()?;
    let started = Instant::now();
    let puts: Vec<_> = futures::stream::iter(items)
        .map(|item| {
            let condition = aws::dynamodb::WriteCondition::Absent { partition_key: "company_id" };
            put_ctx.apply(|w| put_ctx.aws.dynamodb.put_item(w, &table, item, condition))
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let put_secs = started.elapsed().as_secs_f64();
    anyhow::ensure!(puts.iter().all(Result::is_ok), "raw PutItem failed");
    std::fs::remove_dir_all(&dir).ok();

    let n = companies as f64;
    let companies_per_sec = n / cold_secs;
    let puts_per_sec = n / put_secs;
    println!(
        "| {companies} | {concurrency} | {companies_per_sec:.1} | {:.1} | {:.2} | {:.2} | {:.2} | {:.1} | {puts_per_sec:.1} | {:.3} | {} |",
        n / noop_secs,
        first.aws.calls.total() as f64 / n,
        again.aws.calls.total() as f64 / n,
        again.aws.calls.writes() as f64,
        cold_cpu * 1000.0 / n,
        companies_per_sec / puts_per_sec,
        peak_rss_mib(),
    );
    Ok(())
}

fn repo(relative: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(relative)
}

/// User + system CPU of this process (Linux /proc, clock ticks of 1/100 s).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or_default().split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

/// Peak resident set size (VmHWM) in MiB.
fn peak_rss_mib() -> String {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map(|kb| format!("{:.1}", kb / 1024.0))
        .unwrap_or_else(|| "?".into())
}
