//! Benchmark: `apply` N generated Companies from cold against the AWS emulator, then a no-op
//! re-apply by a new process (as CI runs `apply`), then a no-op resync by the same operator (as
//! the controller resyncs, remembering verified secrets), beside the emulator's raw PutItem rate
//! measured in the same run.
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
use multicomms_testkit::bench::{busy_and_limit, cpu_seconds, peak_rss_mib, EmulatorMeter};
use multicomms_testkit::environment::{example_company_secrets_yaml, example_company_yaml};
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
    for i in 0..companies {
        let name = format!("company-{i}");
        let yaml = example_company_yaml(&name)
            .replace("companyId: ci-aaa-001", &format!("companyId: ci-bench-{i}"))
            .replace("companyName: Cucumber Recruitment", &format!("companyName: Bench Company {i}"));
        // Its own Secrets, bound to it (a Company reads no other).
        let yaml = format!("{yaml}\n---\n{}", example_company_secrets_yaml(&name));
        std::fs::write(dir.join(format!("{name}.yaml")), yaml)?;
    }
    let paths = [dir.clone(), repo("config/examples/local")];

    // 1. Cold apply, by an operator that remembers verified secrets as the controller does.
    let loaded = manifests::load(&paths, "bench")?;
    let operator = Context::new(Aws::new(&config), naming.clone(), Mode::Apply)
        .rechecking_secrets_every(std::time::Duration::from_secs(43200));
    let cold = Pass::run(&operator, &loaded, concurrency).await?;
    // 2. No-op re-apply by a new process (`apply` in CI): nothing remembered.
    let again = Context::new(Aws::new(&config), naming.clone(), Mode::Apply);
    let noop = Pass::run(&again, &manifests::load(&paths, "bench")?, concurrency).await?;
    anyhow::ensure!(noop.changes == 0, "re-apply changed something");
    // 3. The controller's resync: the same operator again.
    let resync = Pass::run(&operator, &loaded, concurrency).await?;
    anyhow::ensure!(resync.changes == 0, "resync changed something");

    // The emulator's raw PutItem rate, same items, same concurrency, into the same table.
    let put_ctx = Context::new(Aws::new(&config), naming.clone(), Mode::Apply);
    let table = naming.company_data_table();
    let owner = Owner { kind: "Company", namespace: "bench".into(), name: "raw".into() };
    let items: Vec<_> = loaded
        .companies
        .iter()
        .map(|c| {
            let mut record = desired::company::record(
                &c.spec,
                &naming,
                &owner,
                &desired::company::Hashed { api_key: Some("bench-key"), ..Default::default() },
            );
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
    let puts_per_sec = n / put_secs;
    let per_company = |pass: &Pass| format!("{:.1} | {:.2}", n / pass.seconds, pass.calls as f64 / n);
    println!(
        "| {companies} | {concurrency} | {} | {:.3} | {} | {} | {} | {:.1} | {:.2} | {puts_per_sec:.1} | {:.1} | {} | {} | {} |",
        per_company(&cold),
        cold.calls as f64 / cold.seconds / puts_per_sec,
        per_company(&noop),
        per_company(&resync),
        noop.writes + resync.writes,
        cold.cpu * 1000.0 / n,
        resync.cpu * 1000.0 / n,
        peak_rss_mib(),
        busy_and_limit(cold.emulator_busy),
        busy_and_limit(noop.emulator_busy),
        busy_and_limit(resync.emulator_busy),
    );
    Ok(())
}

/// One reconcile of every manifest, measured.
struct Pass {
    seconds: f64,
    cpu: f64,
    calls: u64,
    writes: u64,
    changes: usize,
    emulator_busy: Option<f64>,
}

impl Pass {
    async fn run(ctx: &Context, loaded: &manifests::Manifests, concurrency: usize) -> anyhow::Result<Pass> {
        let (calls, writes) = (ctx.aws.calls.total(), ctx.aws.calls.writes());
        let (cpu, emulator, started) = (cpu_seconds(), EmulatorMeter::start(), Instant::now());
        let reports = reconcile_manifests(ctx, loaded.clone(), concurrency).await;
        let pass = Pass {
            seconds: started.elapsed().as_secs_f64(),
            cpu: cpu_seconds() - cpu,
            calls: ctx.aws.calls.total() - calls,
            writes: ctx.aws.calls.writes() - writes,
            changes: reports.iter().map(|r| r.changes.len()).sum(),
            emulator_busy: emulator.busy(),
        };
        let failed = reports.iter().filter(|r| !r.is_ready()).count();
        anyhow::ensure!(failed == 0, "{failed} resources not ready: {:?}", reports.iter().find(|r| !r.is_ready()));
        Ok(pass)
    }
}

fn repo(relative: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(relative)
}
