//! What the benchmarks measure besides their own figures: this process's CPU and peak memory,
//! and how busy the AWS emulator was, so each row can say whose limit it shows.
use std::time::Instant;

/// An emulator busier than this (CPU seconds per wall second; it serves on one core) is the
/// bottleneck of the row.
pub const EMULATOR_SATURATED: f64 = 0.85;

/// CPU time of every thread of this process so far (nanosecond counters of
/// /proc/self/task/*/schedstat: precise enough for a single message).
pub fn cpu_seconds() -> f64 {
    cpu_seconds_without("")
}

/// [`cpu_seconds`] of every thread but those named `left_out` (such as the fake providers').
pub fn cpu_seconds_without(left_out: &str) -> f64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else { return 0.0 };
    let named = |task: &std::fs::DirEntry| std::fs::read_to_string(task.path().join("comm")).ok();
    let on_cpu_ns: u64 = tasks
        .flatten()
        .filter(|task| left_out.is_empty() || named(task).is_none_or(|name| name.trim_end() != left_out))
        .filter_map(|task| std::fs::read_to_string(task.path().join("schedstat")).ok())
        .filter_map(|stat| stat.split_whitespace().next().and_then(|ns| ns.parse::<u64>().ok()))
        .sum();
    on_cpu_ns as f64 / 1e9
}

/// Peak resident set size (VmHWM) of this process in MiB.
pub fn peak_rss_mib() -> f64 {
    memory_mib("self", "VmHWM")
}

/// A memory figure of process `pid` ("self" for this one) in MiB: `VmRSS` (resident now) or
/// `VmHWM` (peak resident).
pub fn memory_mib(pid: &str, field: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// The emulator's CPU use over a stretch of a benchmark. The bench scripts export the
/// emulator's pid as `MULTICOMMS_EMULATOR_PID` (scripts/emulator.sh).
pub struct EmulatorMeter {
    pid: Option<String>,
    cpu: f64,
    at: Instant,
}

impl EmulatorMeter {
    pub fn start() -> Self {
        let pid = std::env::var("MULTICOMMS_EMULATOR_PID").ok();
        let cpu = pid.as_deref().map_or(0.0, process_cpu_seconds);
        EmulatorMeter { pid, cpu, at: Instant::now() }
    }

    /// The emulator's CPU seconds per wall second since the start (1.0: one core saturated);
    /// `None` when the script did not say which process it is.
    pub fn busy(&self) -> Option<f64> {
        let pid = self.pid.as_deref()?;
        Some((process_cpu_seconds(pid) - self.cpu) / self.at.elapsed().as_secs_f64().max(1e-9))
    }
}

/// "0.42 (ours)" or "0.97 (emulator)": the emulator's busy share and whose limit the row shows.
pub fn busy_and_limit(busy: Option<f64>) -> String {
    match busy {
        Some(busy) if busy >= EMULATOR_SATURATED => format!("{busy:.2} (emulator)"),
        Some(busy) => format!("{busy:.2} (ours)"),
        None => "? (emulator pid unknown)".into(),
    }
}

/// User + system CPU of process `pid` (Linux /proc, clock ticks of 1/100 s).
pub fn process_cpu_seconds(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or_default().split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}
