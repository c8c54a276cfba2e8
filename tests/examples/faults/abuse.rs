//! Scenario 4: Router under abuse: the router binary gets a property-based run of schemathesis against
//! its own OpenAPI document, then generated bodies over real HTTP (the example request mutated
//! field by field, truncated, deeply nested, and random bytes), while thousands of idle and
//! half-sent connections are held open. Every answer must be documented (status, and for JSON
//! the error envelope with a code listed for that status), none a 5xx, no panic in the log;
//! memory is read before and after, latency of valid requests with and without the idle load.
use crate::harness::*;
use futures::StreamExt;
use multicomms_testkit::environment::example_request;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;

pub async fn run(config: &aws_config::SdkConfig, endpoint: &str, sizes: Sizes, credentials: &Credentials) -> Row {
    let dir = workdir("router-abuse");
    let naming = suite_naming("a");
    apply(config, &naming, &write_manifests(&dir, 1, credentials)).await;
    let port = free_port();
    let router = router(&dir, &naming, endpoint, port);
    wait_port(port).await;
    let pid = router.pid().expect("the router runs");
    let base = format!("http://127.0.0.1:{port}");
    let document: Value = reqwest::get(format!("{base}/openapi.json"))
        .await
        .expect("openapi.json")
        .json()
        .await
        .expect("a JSON document");
    let mut notes = Vec::new();

    let schemathesis = schemathesis(&dir, &base, &credentials.router_key, sizes);
    notes.push(schemathesis.clone());

    let rss_before = rss_kib(pid);
    let valid_alone = valid_latencies(&base, &credentials.router_key, 200, 1_000_000).await;
    let started = Instant::now();
    let idle = hold_idle_connections(port, sizes.abuse_idle_connections).await;
    let valid_beside_idle = valid_latencies(&base, &credentials.router_key, 200, 2_000_000).await;
    notes.push(format!(
        "valid requests p50/p99: {:.1}/{:.1} ms alone, {:.1}/{:.1} ms beside {} idle or half-sent connections",
        ms(percentile(&valid_alone, 0.5)),
        ms(percentile(&valid_alone, 0.99)),
        ms(percentile(&valid_beside_idle, 0.5)),
        ms(percentile(&valid_beside_idle, 0.99)),
        idle.len()
    ));

    // In quarters, memory read after each: it must level off, not grow with the count.
    let mut outcomes = Vec::new();
    let mut rss = vec![rss_before];
    for quarter in 0..4 {
        let range = quarter * sizes.abuse_bodies / 4..(quarter + 1) * sizes.abuse_bodies / 4;
        outcomes.extend(generated_bodies(&base, &credentials.router_key, &document, range).await);
        rss.push(rss_kib(pid));
    }
    drop(idle);
    let panics = std::fs::read_to_string(&router.log).unwrap_or_default().matches("panicked").count();
    router.stop().await;

    let (mut latencies, mut statuses, mut undocumented) = (Vec::new(), BTreeMap::<u16, usize>::new(), Vec::new());
    for outcome in &outcomes {
        latencies.push(outcome.took);
        *statuses.entry(outcome.status).or_default() += 1;
        if let Some(why) = &outcome.undocumented {
            undocumented.push(why.clone());
        }
    }
    latencies.sort_unstable();
    notes.push(format!(
        "statuses {statuses:?}; p50 {:.1} ms, p99 {:.1} ms",
        ms(percentile(&latencies, 0.5)),
        ms(percentile(&latencies, 0.99))
    ));
    let rss: Vec<String> = rss.iter().map(|kib| format!("{:.1}", kib / 1024.0)).collect();
    notes.push(format!(
        "router RSS (MiB) before and after each quarter of the bodies: {}; {panics} panics in its log",
        rss.join(" → ")
    ));
    undocumented.sort();
    undocumented.dedup();
    notes.extend(undocumented.iter().take(5).map(|u| format!("undocumented: {u}")));
    let bad = outcomes.iter().filter(|o| o.status >= 500 || o.undocumented.is_some()).count();
    let schemathesis_failed = usize::from(!schemathesis.starts_with("schemathesis passed"));
    Row {
        scenario: "4 router under abuse".into(),
        injected: format!(
            "schemathesis + {} generated bodies, {} idle/half-sent connections",
            sizes.abuse_bodies, sizes.abuse_idle_connections
        ),
        unit: "requests",
        total: outcomes.len(),
        ok: outcomes.len() - bad,
        lost: bad + panics + schemathesis_failed,
        converged: started.elapsed(),
        notes,
        ..Row::default()
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len().max(1)) - 1;
    sorted.get(index).copied().unwrap_or_default()
}

/// Resident memory of a process, KiB.
fn rss_kib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap_or_default();
    line.split_whitespace().nth(1).and_then(|v| v.parse().ok()).unwrap_or(0.0)
}

/// Runs schemathesis (`SCHEMATHESIS`, installed by scripts/faults.sh) against the document; its
/// summary line. Not checked: `positive_data_acceptance` (a schema-valid request names a company
/// that does not exist, which is a 403, not a 2xx).
fn schemathesis(dir: &Path, base: &str, key: &str, sizes: Sizes) -> String {
    let Ok(program) = std::env::var("SCHEMATHESIS") else {
        return "schemathesis not run: SCHEMATHESIS is not set (scripts/faults.sh sets it)".into();
    };
    let examples = if sizes.abuse_bodies >= Sizes::FULL.abuse_bodies { "200" } else { "30" };
    let output = std::process::Command::new(program)
        .current_dir(dir)
        .args([
            "run",
            &format!("{base}/openapi.json"),
            "--checks",
            "all",
            "--exclude-checks",
            "positive_data_acceptance",
        ])
        .args(["--max-examples", examples, "--seed", "1", "--no-color", "--request-timeout", "20"])
        .args(["-H", &format!("x-api-key: {key}")])
        .output();
    let Ok(output) = output else { return "schemathesis did not start".into() };
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    let _ = std::fs::write(dir.join("schemathesis.log"), &text);
    // The line under "Test cases:", e.g. "255 generated, 255 passed".
    let lines: Vec<&str> = text.lines().collect();
    let at = lines.iter().position(|l| l.trim() == "Test cases:");
    let summary = at.and_then(|at| lines.get(at + 1)).map_or("no summary", |l| l.trim()).to_string();
    if output.status.success() {
        format!("schemathesis passed: {summary}")
    } else {
        format!("schemathesis FAILED (see target/faults/router-abuse/schemathesis.log): {summary}")
    }
}

/// `count` valid requests (fresh request ids from `first_id`), 8 at a time; their latencies, sorted.
async fn valid_latencies(base: &str, key: &str, count: usize, first_id: usize) -> Vec<Duration> {
    let client = reqwest::Client::new();
    let mut latencies: Vec<Duration> = futures::stream::iter(first_id..first_id + count)
        .map(|i| {
            let client = client.clone();
            async move {
                let mut body = example_request();
                body["company_data"] = json!({"company_id": "ci-f0000", "project_id": "pi-f0000"});
                body["request_data"]["request_id"] = format!("550e8400-e29b-41d4-a716-{i:012x}").into();
                let started = Instant::now();
                let sent = client
                    .post(format!("{base}/initiate-conversation"))
                    .header("x-api-key", key)
                    .body(body.to_string());
                let status = sent.send().await.map(|r| r.status().as_u16()).unwrap_or(0);
                if status != 200 {
                    eprintln!("a valid request got {status}");
                }
                started.elapsed()
            }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    latencies.sort_unstable();
    latencies
}

/// Opens `count` connections: half send nothing, half the start of a request and never the rest.
async fn hold_idle_connections(port: u16, count: usize) -> Vec<tokio::net::TcpStream> {
    let mut held = Vec::with_capacity(count);
    for i in 0..count {
        let Ok(mut stream) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else { break };
        if i % 2 == 1 {
            let _ = stream
                .write_all(b"POST /initiate-conversation HTTP/1.1\r\nHost: router\r\nContent-Length: 500\r\n")
                .await;
        }
        held.push(stream);
    }
    held
}

struct Outcome {
    status: u16,
    took: Duration,
    /// Why the answer is not what the document says, if it is not.
    undocumented: Option<String>,
}

/// Bodies `range`: mutations of the example request, random bytes, truncations, deep nesting;
/// one in ten without or with a wrong API key.
async fn generated_bodies(base: &str, key: &str, document: &Value, range: std::ops::Range<usize>) -> Vec<Outcome> {
    let client = reqwest::Client::new();
    let responses = &document["paths"]["/initiate-conversation"]["post"]["responses"];
    let max_body = max_body_bytes(document);
    futures::stream::iter(range)
        .map(|i| {
            let client = client.clone();
            async move {
                let body = generated_body(i, &mut Draws::new(i as u64 + 1));
                let (oversized, body_len) = (body.len() > max_body, body.len());
                let mut request = client.post(format!("{base}/initiate-conversation")).body(body);
                request = match i % 10 {
                    0 => request,
                    1 => request.header("x-api-key", "not-the-key"),
                    _ => request.header("x-api-key", key),
                };
                let started = Instant::now();
                let response = request.send().await;
                let took = started.elapsed();
                match response {
                    Ok(response) => {
                        let status = response.status().as_u16();
                        let text = response.text().await.unwrap_or_default();
                        Outcome { status, took, undocumented: check(responses, status, &text) }
                    }
                    // Over the limit, the router answers 413 before the upload ends and closes the
                    // connection: a client still sending may see the close instead of the 413.
                    Err(_) if oversized => Outcome { status: 413, took, undocumented: None },
                    Err(e) => Outcome {
                        status: 0,
                        took,
                        undocumented: Some(format!("no answer to body {i} ({} bytes): {e:?}", body_len)),
                    },
                }
            }
        })
        .buffer_unordered(32)
        .collect()
        .await
}

/// The body limit the document states.
fn max_body_bytes(document: &Value) -> usize {
    let limit = &document["paths"]["/initiate-conversation"]["post"]["requestBody"]["x-max-body-bytes"];
    limit.as_u64().map_or(usize::MAX, |n| n as usize)
}

/// `None` when `status` and `body` are what the document lists for the route.
fn check(responses: &Value, status: u16, body: &str) -> Option<String> {
    let documented = &responses[status.to_string()];
    if !documented.is_object() {
        return Some(format!("status {status}"));
    }
    let Ok(answer) = serde_json::from_str::<Value>(body) else { return Some(format!("{status} with a non-JSON body")) };
    let schema = &documented["content"]["application/json"]["schema"];
    if status == 200 {
        let keys = ["status", "request_id", "message", "queue_timestamp"];
        return (answer["status"] != "success" || !keys.iter().all(|k| answer[k].is_string()))
            .then(|| format!("200 {answer}"));
    }
    let codes = schema["properties"]["error_code"]["enum"].as_array().cloned().unwrap_or_default();
    let keys: Vec<&str> = answer.as_object().map(|o| o.keys().map(String::as_str).collect()).unwrap_or_default();
    let envelope =
        keys.len() == 4 && ["status", "error_code", "message", "request_id"].iter().all(|k| keys.contains(k));
    (!envelope || answer["status"] != "error" || !codes.contains(&answer["error_code"]))
        .then(|| format!("{status} {}", answer["error_code"]))
}

/// Body `i`: a quarter random bytes, a tenth truncated JSON, a few deep nestings, the rest the
/// example request with one field replaced or removed.
fn generated_body(i: usize, draws: &mut Draws) -> Vec<u8> {
    let mut draw = |n: u64| draws.below(n);
    let mut example = example_request();
    example["company_data"] = json!({"company_id": "ci-f0000", "project_id": "pi-f0000"});
    // One request id for them all: an accepted body is an idempotent retry, answered without a
    // second send, so the emulator's queue (slower the deeper it gets) does not set the pace.
    example["request_data"]["request_id"] = "550e8400-e29b-41d4-a716-446655440999".into();
    match i % 20 {
        0..=4 => (0..draw(4096)).map(|_| draw(256) as u8).collect(),
        5 | 6 => {
            let text = example.to_string();
            text.as_bytes()[..draw(text.len() as u64) as usize].to_vec()
        }
        7 => format!("{}1{}", "[".repeat(100_000), "]".repeat(100_000)).into_bytes(),
        _ => {
            let fields = [
                &["company_data", "company_id"][..],
                &["company_data", "project_id"],
                &["company_data"],
                &["recipient_data", "recipient_tel"],
                &["recipient_data", "recipient_email"],
                &["recipient_data", "comms_consent"],
                &["recipient_data"],
                &["request_data", "request_id"],
                &["request_data", "channel_method"],
                &["request_data", "initial_request_timestamp"],
                &["request_data"],
                &["project_data"],
            ];
            let nasty = [
                Value::Null,
                json!(0),
                json!(-1),
                json!(1e308),
                json!(""),
                json!(" "),
                json!(true),
                json!([]),
                json!({}),
                json!("x".repeat(10_000)),
                json!("\u{0000}\u{202e}😀"),
                json!("WhatsApp"),
                json!("2023-02-30T25:61:00Z"),
                json!({"$ne": 1}),
            ];
            let path = fields[draw(fields.len() as u64) as usize];
            let (parent, last) = path.split_at(path.len() - 1);
            let mut at = &mut example;
            for key in parent {
                at = &mut at[*key];
            }
            let choice = draw(nasty.len() as u64 + 1) as usize;
            match (at.as_object_mut(), nasty.get(choice)) {
                (Some(object), Some(value)) => {
                    object.insert(last[0].to_string(), value.clone());
                }
                (Some(object), None) => {
                    object.remove(last[0]);
                }
                _ => {}
            }
            example.to_string().into_bytes()
        }
    }
}
