//! Scenario 3: Provider faults: the fake Twilio answers 500 or hangs on 20 % of sends and 429 on 10 %;
//! the fake OpenAI answers 429 or 500 on 20 % of calls.
use crate::harness::*;
use multicomms_testkit::fakes::{Fakes, Fault, Service};
use std::time::Instant;

pub async fn run(config: &aws_config::SdkConfig, endpoint: &str, sizes: Sizes, credentials: &Credentials) -> Row {
    let queued = Queued::start(config, endpoint, "provider-faults", sizes.provider_messages, credentials).await;
    let fakes = &queued.fakes;
    let twilio = vec![(0.1, Fault::Status(500)), (0.1, Fault::Hang), (0.1, Fault::Status(429))];
    fakes.set_fault_mix(Service::Twilio, twilio, 12);
    fakes.set_fault_mix(Service::OpenAi, vec![(0.1, Fault::Status(429)), (0.1, Fault::Status(500))], 34);
    let run = ProcessorRun { http_timeout_seconds: 3, ..queued.processor(endpoint) };
    let started = Instant::now();
    let (processor, _) = run.spawn();
    let mut row = Row {
        scenario: "3 provider faults".into(),
        injected: "Twilio 10 % 500, 10 % hang, 10 % 429; OpenAI 10 % 429, 10 % 500".into(),
        ..Row::default()
    };
    queued.settle(config, started, &mut row).await;
    processor.stop().await;
    let throttled_then_sent = throttled_then_sent(fakes);
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
