//! Load generator for the router benchmark (`scripts/bench-router.sh`): sends `requests` valid
//! requests (unique request ids, channels round-robin) with `concurrency` connections in flight
//! and prints accepted/s and latency percentiles. Loopback only.
//!
//! usage: load-generator <url> <api-key> <requests> <concurrency> [channel] [first-id]
//! (`channel`: whatsapp, sms, email or all (round-robin, the default); request ids start at
//! `first-id`, default 0, so repeated runs against one router are not idempotent retries.)
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let (url, key, requests, concurrency) = match args.as_slice() {
        [_, url, key, requests, concurrency, ..] => (url, key, requests, concurrency),
        _ => return Err("usage: load-generator <url> <api-key> <requests> <concurrency> [channel] [first-id]".into()),
    };
    let only_channel = args.get(5).filter(|c| c.as_str() != "all").cloned();
    let first_id: usize = args.get(6).map(|v| v.parse()).transpose()?.unwrap_or(0);
    if !url.starts_with("http://127.0.0.1:") {
        return Err("the load generator only targets the loopback router".into());
    }
    let (total, concurrency): (usize, usize) = (requests.parse()?, concurrency.parse()?);
    let client: Client<_, Full<bytes::Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    // Collected, so every worker is spawned before the first is awaited.
    let workers: Vec<_> = (0..concurrency).map(|_| {
        let (client, next, url, key) = (client.clone(), next.clone(), url.clone(), key.clone());
        let only_channel = only_channel.clone();
        tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut accepted = 0usize;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    return (latencies, accepted);
                }
                let channel = only_channel.as_deref().unwrap_or(["whatsapp", "sms", "email"][i % 3]);
                let id = first_id + i;
                let body = serde_json::json!({
                    "company_data": {"company_id": "ci-aaa-001", "project_id": "pi-aaa-001"},
                    "recipient_data": {"recipient_first_name": "Lee", "recipient_tel": "+447835065013",
                                       "recipient_email": "lee@example.com", "comms_consent": true},
                    "project_data": {"jobID": "9999", "jobRole": "Healthcare Assistant"},
                    "request_data": {"request_id": format!("550e8400-e29b-41d4-a716-{id:012x}"), "channel_method": channel,
                                     "initial_request_timestamp": "2023-09-15T11:45:32.789Z"}
                });
                let request = hyper::Request::post(&url)
                    .header("content-type", "application/json")
                    .header("x-api-key", &key)
                    .body(Full::from(body.to_string()));
                let Ok(request) = request else { continue };
                let sent = Instant::now();
                if let Ok(response) = client.request(request).await {
                    let ok = response.status().is_success();
                    let _ = response.into_body().collect().await;
                    latencies.push(sent.elapsed());
                    accepted += usize::from(ok);
                }
            }
        })
    }).collect();
    let mut latencies: Vec<Duration> = Vec::new();
    let mut accepted = 0;
    for worker in workers {
        let (l, a) = worker.await?;
        latencies.extend(l);
        accepted += a;
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort();
    let percentile =
        |p: f64| latencies.get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)));
    println!(
        "requests={total} concurrency={concurrency} accepted={accepted} seconds={elapsed:.2} accepted_per_s={:.1} p50_ms={:.1} p99_ms={:.1}",
        accepted as f64 / elapsed,
        percentile(0.50).map_or(0.0, |d| d.as_secs_f64() * 1000.0),
        percentile(0.99).map_or(0.0, |d| d.as_secs_f64() * 1000.0),
    );
    Ok(())
}
