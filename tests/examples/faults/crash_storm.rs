//! Scenario 1: Processor crash storm: requests through the router, then the WhatsApp processor (64 at a
//! time) SIGKILLed at random moments while it drains, restarted each time.
use crate::harness::*;
use multicomms_testkit::fakes::{Fakes, Service};
use multicomms_wire::ChannelKind;
use std::time::{Duration, Instant};

pub async fn run(config: &aws_config::SdkConfig, endpoint: &str, sizes: Sizes, credentials: &Credentials) -> Row {
    let dir = workdir("crash-storm");
    let naming = suite_naming("c");
    apply(config, &naming, &write_manifests(&dir, 1, credentials)).await;
    let fakes = Fakes::start("127.0.0.1:0").await.expect("fakes");
    fakes.set_latency(Service::OpenAi, Duration::from_millis(300));
    fakes.set_latency(Service::Twilio, Duration::from_millis(100));

    let router_port = free_port();
    let router = router(&dir, &naming, endpoint, router_port);
    wait_port(router_port).await;
    let recipients = post_requests(router_port, &credentials.router_key, 0, sizes.crash_messages).await;
    router.stop().await;

    let run = ProcessorRun {
        dir: &dir,
        naming: &naming,
        endpoint,
        fakes: &fakes,
        channel: ChannelKind::Whatsapp,
        replies: false,
        concurrency: 64,
        http_timeout_seconds: 5,
    };
    let started = Instant::now();
    let (mut processor, _) = run.spawn();
    let mut draws = Draws::new(sizes.crash_messages as u64);
    for _ in 0..sizes.crash_kills {
        tokio::time::sleep(draws.between_ms(300, 2500)).await;
        processor.kill().await;
        processor = run.spawn().0;
    }
    let converged =
        converge(config, &naming, ChannelKind::Whatsapp, &recipients, started, Duration::from_secs(300)).await;
    processor.stop().await;
    let mut row = Row {
        scenario: "1 processor crash storm".into(),
        injected: format!("{} × SIGKILL while draining, concurrency 64", sizes.crash_kills),
        converged,
        ..Row::default()
    };
    tally_first_messages(config, &naming, ChannelKind::Whatsapp, &fakes, &recipients, &mut row).await;
    if recipients.len() < sizes.crash_messages {
        row.notes.push(format!("the router refused {} requests", sizes.crash_messages - recipients.len()));
    }
    row
}
