//! Scenario 6: Secrets never leak: every scenario ran with distinctive credential values; this searches
//! what the suite produced for them: every log line and saved /metrics page (target/faults/),
//! every item of the suite's DynamoDB tables (records, staged messages, failure reasons), every
//! message left on its queues (hand-offs included), and every Company, Channel and Event status
//! the controller wrote. Secrets Manager, where the values belong, and the input Secrets
//! (target/faults/*/manifests/) are not searched.
use crate::harness::{Credentials, Row};
use multicomms_testkit::environment::repo_root;
use std::time::Instant;

/// The prefix of every name the suite gives (see [`crate::harness::suite_naming`]).
const SUITE_ENV: &str = "-faults";

pub async fn run(config: &aws_config::SdkConfig, credentials: &Credentials, api_objects: &[String]) -> Row {
    let started = Instant::now();
    let mut searched: Vec<(String, String)> = Vec::new();
    for entry in walkdir::WalkDir::new(repo_root().join("target/faults")).into_iter().flatten() {
        let path = entry.path();
        if entry.file_type().is_file() && !path.components().any(|c| c.as_os_str() == "manifests") {
            let text = String::from_utf8_lossy(&std::fs::read(path).unwrap_or_default()).into_owned();
            searched.push((path.display().to_string(), text));
        }
    }
    let log_files = searched.len();
    let dynamodb = aws_sdk_dynamodb::Client::new(config);
    let tables = dynamodb.list_tables().into_paginator().items().send().collect::<Vec<_>>().await;
    let mut items = 0;
    for table in tables.into_iter().flatten().filter(|t| t.ends_with(SUITE_ENV)) {
        for item in crate::harness::scan_all(config, &table).await {
            items += 1;
            searched.push((format!("an item of {table}"), format!("{item:?}")));
        }
    }
    let sqs = aws_sdk_sqs::Client::new(config);
    let queues = sqs.list_queues().queue_name_prefix("f").send().await.map(|q| q.queue_urls().to_vec());
    let mut messages = 0;
    for url in queues.unwrap_or_default().iter().filter(|u| u.contains(SUITE_ENV)) {
        // Peeked: visibility 0, so the message stays for whoever owns it.
        let received =
            sqs.receive_message().queue_url(url).max_number_of_messages(10).visibility_timeout(0).send().await;
        for message in received.map(|r| r.messages().to_vec()).unwrap_or_default() {
            messages += 1;
            searched.push((format!("a message on {url}"), message.body().unwrap_or_default().to_string()));
        }
    }
    searched.extend(api_objects.iter().map(|o| ("an API object".to_string(), o.clone())));

    let leaks: Vec<String> = searched
        .iter()
        .filter_map(|(place, text)| {
            let found: Vec<&str> = credentials.all().into_iter().filter(|value| text.contains(value)).collect();
            (!found.is_empty()).then(|| format!("LEAK in {place}: {} credential(s)", found.len()))
        })
        .collect();
    let mut notes = vec![format!(
        "searched {log_files} log and metrics files, {items} table items, {messages} queue messages, {} API objects",
        api_objects.len()
    )];
    notes.extend(leaks.iter().cloned());
    Row {
        scenario: "6 secrets never leak".into(),
        injected: "5 distinctive credentials in every scenario".into(),
        unit: "places",
        total: searched.len(),
        ok: searched.len() - leaks.len(),
        lost: leaks.len(),
        converged: started.elapsed(),
        notes,
        ..Row::default()
    }
}
