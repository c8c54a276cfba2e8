//! The fake OpenAI, Twilio and SendGrid servers as a process, for local demos:
//! `fake-providers [address] [ai-latency-ms] [send-latency-ms]` (default 127.0.0.1:8090, 0, 0).
//! Point the processor's `--openai-base-url` at `<url>/v1` and the Twilio and SendGrid base URLs
//! at `<url>`; a Company's `spec.events.url` at `<url>/client/events` (a fake applicant tracking
//! system that checks each event's signature; `GET` lists what it got).
use multicomms_testkit::fakes::{Fakes, Service};
use std::time::Duration;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let address = args.get(1).map(String::as_str).unwrap_or("127.0.0.1:8090");
    let millis = |i: usize| -> Result<Duration, std::num::ParseIntError> {
        Ok(Duration::from_millis(args.get(i).map(|v| v.parse()).transpose()?.unwrap_or(0)))
    };
    let fakes = Fakes::start(address).await?;
    fakes.set_latency(Service::OpenAi, millis(2)?);
    fakes.set_latency(Service::Twilio, millis(3)?);
    fakes.set_latency(Service::SendGrid, millis(3)?);
    // The processors name the router as the status callback URL; the fake Twilio posts there.
    fakes.post_status_callbacks();
    println!("fake providers on {} (OpenAI base URL {})", fakes.url, fakes.openai_url());
    tokio::signal::ctrl_c().await?;
    Ok(())
}
