//! Scenario 1: Processor crash storm: requests through the router, then the WhatsApp processor (64 at a
//! time) SIGKILLed at random moments while it drains, restarted each time.
use crate::harness::*;
use std::time::{Duration, Instant};

pub async fn run(config: &aws_config::SdkConfig, endpoint: &str, sizes: Sizes, credentials: &Credentials) -> Row {
    let queued = Queued::start(config, endpoint, "crash-storm", sizes.crash_messages, credentials).await;
    let run = queued.processor(endpoint);
    let started = Instant::now();
    let (mut processor, _) = run.spawn();
    let mut draws = Draws::new(sizes.crash_messages as u64);
    for _ in 0..sizes.crash_kills {
        // Each incarnation is killed while messages flow: after its first sends, at a random moment.
        let sent = queued.fakes.sent().len();
        while queued.fakes.sent().len() < sent + 10 && started.elapsed() < CONVERGE_LIMIT {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(draws.between_ms(0, 1500)).await;
        processor.kill().await;
        processor = run.spawn().0;
    }
    let mut row = Row {
        scenario: "1 processor crash storm".into(),
        injected: format!("{} × SIGKILL while draining, concurrency 64", sizes.crash_kills),
        ..Row::default()
    };
    queued.settle(config, started, &mut row).await;
    processor.stop().await;
    if queued.recipients.len() < sizes.crash_messages {
        row.notes.push(format!("the router refused {} requests", sizes.crash_messages - queued.recipients.len()));
    }
    row
}
