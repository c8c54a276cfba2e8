//! Scenario 1: Processor crash storm: requests through the router, then the WhatsApp processor (64 at a
//! time) SIGKILLed at random moments while it drains, restarted each time.
use crate::harness::*;
use std::time::Instant;

pub async fn run(config: &aws_config::SdkConfig, endpoint: &str, sizes: Sizes, credentials: &Credentials) -> Row {
    let queued = Queued::start(config, endpoint, "crash-storm", sizes.crash_messages, credentials).await;
    let run = queued.processor(endpoint);
    let started = Instant::now();
    let (mut processor, _) = run.spawn();
    let mut draws = Draws::new(sizes.crash_messages as u64);
    for _ in 0..sizes.crash_kills {
        tokio::time::sleep(draws.between_ms(300, 2500)).await;
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
