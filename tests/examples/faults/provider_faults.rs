//! Scenario 3: Provider faults: the fake Twilio answers 500 or hangs on 20 % of sends and 429 on 10 %;
//! the fake OpenAI answers 429 or 500 on 20 % of calls.
use crate::harness::*;
use multicomms_testkit::fakes::{Fakes, Fault, Service};
use multicomms_wire::ChannelKind;
use std::time::{Duration, Instant};

pub async fn run(config: &aws_config::SdkConfig, endpoint: &str, sizes: Sizes, credentials: &Credentials) -> Row {
    let dir = workdir("provider-faults");
    let naming = suite_naming("p");
    apply(config, &naming, &write_manifests(&dir, 1, credentials)).await;
    let fakes = Fakes::start("127.0.0.1:0").await.expect("fakes");
    fakes.set_latency(Service::OpenAi, Duration::from_millis(100));
    fakes.set_latency(Service::Twilio, Duration::from_millis(50));
    let twilio = vec![(0.1, Fault::Status(500)), (0.1, Fault::Hang), (0.1, Fault::Status(429))];
    fakes.set_fault_mix(Service::Twilio, twilio, 12);
    fakes.set_fault_mix(Service::OpenAi, vec![(0.1, Fault::Status(429)), (0.1, Fault::Status(500))], 34);

    let router_port = free_port();
    let router = router(&dir, &naming, endpoint, router_port);
    wait_port(router_port).await;
    let recipients = post_requests(router_port, &credentials.router_key, 0, sizes.provider_messages).await;
    router.stop().await;

    let run = ProcessorRun {
        dir: &dir,
        naming: &naming,
        endpoint,
        fakes: &fakes,
        channel: ChannelKind::Whatsapp,
        replies: false,
        concurrency: 64,
        http_timeout_seconds: 3,
    };
    let started = Instant::now();
    let (processor, _) = run.spawn();
    let converged =
        converge(config, &naming, ChannelKind::Whatsapp, &recipients, started, Duration::from_secs(300)).await;
    processor.stop().await;
    let mut row = Row {
        scenario: "3 provider faults".into(),
        injected: "Twilio 10 % 500, 10 % hang, 10 % 429; OpenAI 10 % 429, 10 % 500".into(),
        converged,
        ..Row::default()
    };
    tally_first_messages(config, &naming, ChannelKind::Whatsapp, &fakes, &recipients, &mut row).await;
    let throttled_then_sent = throttled_then_sent(&fakes);
    row.notes.push(format!("{throttled_then_sent} sends throttled (429) first and sent once after a retry"));
    row
}

/// Recipients whose first Twilio request was answered 429 and who then got exactly one send.
fn throttled_then_sent(fakes: &Fakes) -> usize {
    let requests = fakes.requests(Service::Twilio);
    let sends = sends(fakes);
    let mut first_refused = std::collections::BTreeSet::new();
    let mut seen = std::collections::BTreeSet::new();
    for request in &requests {
        let to = request.field("To").unwrap_or_default().trim_start_matches("whatsapp:").to_string();
        if seen.insert(to.clone()) && !request.accepted {
            first_refused.insert(to);
        }
    }
    first_refused.iter().filter(|to| sends.get(*to) == Some(&1)).count()
}
