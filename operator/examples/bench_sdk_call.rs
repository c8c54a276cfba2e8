//! Benchmark: what one AWS call costs this process, the floor under every figure of ours that
//! counts calls. DynamoDB GetItem of a missing key against the emulator, through the official
//! SDK with the operator's configuration, one and 16 in flight. Prints one line per concurrency.
//!
//! Run through `scripts/bench-apply.sh`, which starts the emulator.
//!
//! usage: bench_sdk_call [calls]
use aws_sdk_dynamodb::types::{AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType};
use futures::StreamExt;
use multicomms_testkit::bench::{busy_and_limit, cpu_seconds, EmulatorMeter};
use std::time::Instant;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let calls: usize = std::env::args().nth(1).unwrap_or_else(|| "2000".into()).parse()?;
    anyhow::ensure!(
        std::env::var("AWS_ENDPOINT_URL").is_ok_and(|e| e.starts_with("http://127.0.0.1:")),
        "AWS_ENDPOINT_URL must point at the local emulator: run scripts/bench-apply.sh"
    );
    let client = aws_sdk_dynamodb::Client::new(&multicomms_operator::aws::load_config().await);
    let table = format!("sdk-call-{}", std::process::id());
    client
        .create_table()
        .table_name(&table)
        .attribute_definitions(AttributeDefinition::builder().attribute_name("k").attribute_type("S".into()).build()?)
        .key_schema(KeySchemaElement::builder().attribute_name("k").key_type(KeyType::Hash).build()?)
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await?;
    for in_flight in [1, 16] {
        let (cpu, emulator, started) = (cpu_seconds(), EmulatorMeter::start(), Instant::now());
        let answers: Vec<_> = futures::stream::iter(0..calls)
            .map(|i| client.get_item().table_name(&table).key("k", AttributeValue::S(format!("k{i}"))).send())
            .buffer_unordered(in_flight)
            .collect()
            .await;
        anyhow::ensure!(answers.iter().all(Result::is_ok), "a GetItem failed");
        println!(
            "one GetItem through the AWS SDK, {in_flight} in flight: {:.0} µs of our CPU, {:.0} calls/s, emulator busy {}",
            (cpu_seconds() - cpu) * 1e6 / calls as f64,
            calls as f64 / started.elapsed().as_secs_f64(),
            busy_and_limit(emulator.busy())
        );
    }
    Ok(())
}
